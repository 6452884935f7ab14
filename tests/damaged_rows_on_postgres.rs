//! A row changed outside signoff, on PostgreSQL: only the writes that read it
//! fail (with a message naming it), never the other writes of their batch, and
//! the server keeps working. (SQLite does the same; see tests/audit.rs.)

mod common;

use common::backend::TestDatabase;
use common::{TestServer, task_intent};
use serde_json::{Map, json};
use signoff::client::ClientError;

/// Sets a status no signoff writes, straight in the database.
async fn damage_status(database: &TestDatabase, intent_id: &str) {
    let TestDatabase::Postgres(schema) = database else {
        panic!("this crate runs on PostgreSQL");
    };
    let (client, connection) = tokio_postgres::connect(&schema.url(), tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(connection);
    let changed = client
        .execute(
            "UPDATE intents SET status = 'BOGUS' WHERE intent_id = $1",
            &[&intent_id],
        )
        .await
        .expect("update");
    assert_eq!(changed, 1);
}

#[tokio::test]
async fn a_damaged_intent_fails_only_the_writes_that_read_it() {
    let Some(server) = TestServer::start().await else {
        return;
    };
    let agent = server.agent("agent://acme/deployer").await;
    let alice = server.reviewer("alice@example.com", &[]).await;
    let approval =
        json!({"title": "Deploy?", "task_type": "approval", "assignees": ["alice@example.com"]});
    let mut ids = Vec::new();
    for _ in 0..6 {
        let created = agent
            .create_intent(&task_intent(approval.clone()), None)
            .await;
        ids.push(created.unwrap().intent_id);
    }
    damage_status(&server.database, &ids[0]).await;

    // All at once, so they share the writer's batches.
    let decisions = futures::future::join_all(
        ids.iter()
            .map(|id| alice.decide(id, "approved", None, Map::new())),
    )
    .await;
    match &decisions[0] {
        Err(ClientError::Api {
            status, message, ..
        }) => {
            assert_eq!(*status, 500, "{message}");
            assert!(message.contains(&ids[0]), "names the intent: {message}");
            assert!(message.contains("changed outside signoff"), "{message}");
        }
        other => panic!("deciding the damaged intent must fail: {other:?}"),
    }
    for (id, decided) in ids.iter().zip(&decisions).skip(1) {
        let decided = decided.as_ref().unwrap_or_else(|err| panic!("{id}: {err}"));
        assert_eq!(decided.status.as_str(), "COMPLETED", "{id}");
    }
    // Still serving: a new task is created and decided.
    let later = agent
        .create_intent(&task_intent(approval), None)
        .await
        .unwrap();
    let decided = alice
        .decide(&later.intent_id, "approved", None, Map::new())
        .await;
    assert_eq!(decided.unwrap().status.as_str(), "COMPLETED");
    server.stop().await;
}
