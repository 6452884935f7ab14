//! Long-lived streams against a real `signoff serve` process: graceful shutdown
//! ends them, and the Rust client's task stream survives a `kill -9` without
//! losing or repeating a task.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{ServeProcess, task_intent};
use futures::StreamExt;
use serde_json::json;
use signoff::client::{Client, TaskStreamMessage};
use signoff::domain::TaskStreamItem;

async fn keys(server: &ServeProcess) -> (Client, Client) {
    let (agent, reviewer) = server.deployer_and_alice_keys().await;
    (
        Client::new(&server.url, &agent).unwrap(),
        Client::new(&server.url, &reviewer).unwrap(),
    )
}

/// Polls `condition` until it holds or 30 seconds pass. A client whose server
/// was slow to come back (a loaded machine, the whole suite running) may be
/// sleeping through an 8 s reconnect backoff when the server is already up.
async fn eventually(what: &str, condition: impl Fn() -> bool) {
    for _ in 0..600 {
        if condition() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting until {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ends_open_streams_and_exits_cleanly() {
    let home = tempfile::tempdir().unwrap();
    let mut server = ServeProcess::start(home.path(), &[]);
    let (agent, reviewer) = keys(&server).await;
    let created = agent
        .create_intent(
            &task_intent(json!({"title": "t", "assignees": ["alice@example.com"]})),
            None,
        )
        .await
        .unwrap();
    let mut tasks = Box::pin(reviewer.task_stream(None).unwrap());
    assert_eq!(tasks.next().await, Some(TaskStreamMessage::Connected));
    let raw = reqwest::Client::new()
        .get(format!(
            "{}/v1/intents/{}/events/stream?wait_seconds=60",
            server.url, created.intent_id
        ))
        .header("x-api-key", server.admin_key())
        .send()
        .await
        .unwrap();
    let mut body = raw.bytes_stream();
    assert!(
        body.next().await.is_some(),
        "the replay arrives before shutdown"
    );

    let status = tokio::task::spawn_blocking(move || server.terminate())
        .await
        .unwrap();
    assert!(status.success(), "graceful exit, got {status:?}");
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(chunk) = body.next().await {
            if chunk.is_err() {
                break;
            }
        }
    })
    .await;
    assert!(
        ended.is_ok(),
        "the intent stream was closed by the shutdown"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_stream_resumes_across_a_crash_without_gaps_or_duplicates() {
    let home = tempfile::tempdir().unwrap();
    let mut server = ServeProcess::start(home.path(), &[]);
    let (agent, reviewer) = keys(&server).await;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let stream = reviewer.task_stream(None).unwrap();
    let collector = {
        let seen = seen.clone();
        tokio::spawn(async move {
            futures::pin_mut!(stream);
            while let Some(message) = stream.next().await {
                seen.lock().unwrap().push(message);
            }
        })
    };
    let create = |title: &'static str| {
        let agent = agent.clone();
        async move {
            agent
                .create_intent(
                    &task_intent(json!({"title": title, "assignees": ["team:oncall"]})),
                    None,
                )
                .await
                .unwrap()
                .intent_id
        }
    };
    let upserts_of = |seen: &[TaskStreamMessage], id: &str| {
        seen.iter()
            .filter(|m| matches!(m, TaskStreamMessage::Item(TaskStreamItem::Upserted(upsert)) if upsert.task.intent_id == id))
            .count()
    };
    let removals_of = |seen: &[TaskStreamMessage], id: &str| {
        seen.iter()
            .filter(|m| matches!(m, TaskStreamMessage::Item(TaskStreamItem::Removed(removal)) if removal.intent_id == id))
            .count()
    };

    // A task created before the stream's first connection would arrive inside
    // the snapshot instead of as an upsert, so the stream must be live first.
    eventually("the stream's snapshot arrives", || {
        seen.lock()
            .unwrap()
            .iter()
            .any(|m| matches!(m, TaskStreamMessage::Item(TaskStreamItem::Snapshot(_))))
    })
    .await;
    let before = create("before the crash").await;
    eventually("the first task streams in", || {
        upserts_of(&seen.lock().unwrap(), &before) == 1
    })
    .await;

    server.restart();
    // Created right after the restart, possibly before the client has reconnected:
    // the resume from the last cursor must still deliver it once.
    let after = create("after the crash").await;
    reviewer
        .decide(&before, "approved", None, Default::default())
        .await
        .unwrap();
    eventually("the stream catches up", || {
        let seen = seen.lock().unwrap();
        upserts_of(&seen, &after) == 1 && removals_of(&seen, &before) == 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    let seen = seen.lock().unwrap().clone();
    collector.abort();
    assert_eq!(upserts_of(&seen, &before), 1, "{seen:#?}");
    assert_eq!(upserts_of(&seen, &after), 1, "{seen:#?}");
    assert_eq!(removals_of(&seen, &before), 1, "{seen:#?}");
    let snapshots = seen
        .iter()
        .filter(|m| matches!(m, TaskStreamMessage::Item(TaskStreamItem::Snapshot(_))))
        .count();
    assert_eq!(
        snapshots, 1,
        "a resumed stream does not start over: {seen:#?}"
    );
    assert!(
        seen.iter()
            .any(|m| matches!(m, TaskStreamMessage::Disconnected { .. }))
    );
    let connects = seen
        .iter()
        .filter(|m| matches!(m, TaskStreamMessage::Connected))
        .count();
    assert!(connects >= 2, "{seen:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_client_wait_for_survives_a_restart() {
    let home = tempfile::tempdir().unwrap();
    let mut server = ServeProcess::start(home.path(), &[]);
    let (agent, reviewer) = keys(&server).await;
    let created = agent
        .create_intent(
            &task_intent(json!({"title": "t", "assignees": ["alice@example.com"]})),
            None,
        )
        .await
        .unwrap();
    let waiter = {
        let agent = agent.clone();
        let id = created.intent_id.clone();
        tokio::spawn(async move { agent.wait_for(&id, Default::default()).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.restart();
    reviewer
        .decide(
            &created.intent_id,
            "rejected",
            Some("not today"),
            Default::default(),
        )
        .await
        .unwrap();
    let terminal = tokio::time::timeout(Duration::from_secs(20), waiter)
        .await
        .expect("wait_for returned")
        .unwrap()
        .unwrap();
    assert_eq!(terminal.details["result"]["outcome"], "rejected");
    assert_eq!(terminal.details["data"]["approved"], false);
}
