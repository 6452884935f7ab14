//! API integration tests: the real router on 127.0.0.1, a temporary SQLite file,
//! the Rust client for good input and raw HTTP for bad input.

mod common;

use common::{TestServer, task_intent};
use serde_json::json;

#[tokio::test]
async fn a_human_approval_reaches_the_waiting_agent() {
    let server = TestServer::start().await;
    let agent = server.agent("agent://acme/deployer").await;
    let alice = server.reviewer("alice@example.com", &[]).await;
    let created = agent
        .create_intent(&task_intent(json!({"title": "Deploy?", "assignees": ["alice@example.com"]})), None)
        .await
        .unwrap();
    let waiter = {
        let agent = agent.clone();
        let id = created.intent_id.clone();
        tokio::spawn(async move { agent.wait_for(&id, Default::default()).await })
    };
    alice
        .decide(&created.intent_id, "approved", Some("ship it"), Default::default())
        .await
        .unwrap();
    let terminal = waiter.await.unwrap().unwrap();
    assert_eq!(terminal.event_type, "intent.completed");
    assert_eq!(terminal.details["data"]["approved"], true);
    assert_eq!(terminal.details["result"]["decided_by"], "alice@example.com");
    server.stop().await;
}
