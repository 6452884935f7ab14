//! Crash durability: agents blocked waiting for human decisions while the server
//! is killed with SIGKILL (no shutdown code runs) and restarted on the same port
//! and database. Nothing acknowledged may be lost or changed, every agent must
//! get the decision for its own intent, and no intent may be decided twice.

mod common;

use std::time::Duration;

use common::{ServeProcess, compat_dir, sdk_python, task_intent};
use serde_json::{Map, Value, json};
use signoff::client::{Client, ClientError, WaitOptions};
use signoff::domain::{Event, PrincipalKind, Status, WaitingReason};
use tempfile::TempDir;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{ChildStdout, Command};

const WAITERS: usize = 100;
const AGENT: &str = "agent://acme/deployer";
const REVIEWER: &str = "alice@example.com";
/// A safety net for everything that waits on the waiters; never reached when the server works.
const PATIENCE: Duration = Duration::from_secs(240);

/// A `signoff serve` child with its own home, an agent and a reviewer.
struct Setup {
    server: ServeProcess,
    agent_key: String,
    agent: Client,
    reviewer: Client,
    // Dropped last: the server's database lives here.
    home: TempDir,
}

async fn setup() -> Setup {
    let home = tempfile::tempdir().expect("temp dir");
    let server = ServeProcess::start(home.path(), &[]);
    let admin = Client::new(&server.url, &server.admin_key()).expect("admin client");
    let agent_key = admin
        .create_key(PrincipalKind::Agent, AGENT, &[], None)
        .await
        .expect("agent key")
        .key;
    let reviewer_key = admin
        .create_key(PrincipalKind::Reviewer, REVIEWER, &[], None)
        .await
        .expect("reviewer key")
        .key;
    Setup {
        agent: Client::new(&server.url, &agent_key).expect("agent client"),
        reviewer: Client::new(&server.url, &reviewer_key).expect("reviewer client"),
        agent_key,
        server,
        home,
    }
}

/// `kill -9`, then the same binary on the same port and database. Blocking, so
/// it runs where the runtime allows blocking.
fn crash_and_restart(server: &mut ServeProcess) {
    tokio::task::block_in_place(|| server.restart());
}

/// The reviewer's choice for the intent at `index`: a mix of both verdicts.
fn outcome_for(index: usize) -> &'static str {
    if index.is_multiple_of(3) {
        "rejected"
    } else {
        "approved"
    }
}

/// Every intent's full event history, in order.
async fn histories(observer: &Client, intent_ids: &[String]) -> Vec<Vec<Event>> {
    let mut all = Vec::with_capacity(intent_ids.len());
    for intent_id in intent_ids {
        all.push(observer.events(intent_id, 0).await.expect("events"));
    }
    all
}

async fn assert_waiting_for_human(observer: &Client, intent_ids: &[String]) {
    for intent_id in intent_ids {
        let intent = observer.intent(intent_id).await.expect("intent");
        assert_eq!(
            intent.status,
            Status::Waiting,
            "{intent_id} should still wait"
        );
        assert_eq!(
            intent.waiting_reason,
            Some(WaitingReason::WaitingForHuman),
            "{intent_id}"
        );
        assert!(intent.result.is_none(), "{intent_id} has no decision yet");
    }
}

/// Checks that the restart changed nothing: same statuses, same events.
async fn assert_survived(observer: &Client, intent_ids: &[String], before: &[Vec<Event>]) {
    let after = histories(observer, intent_ids).await;
    for ((intent_id, before), after) in intent_ids.iter().zip(before).zip(&after) {
        assert!(
            !before.is_empty(),
            "{intent_id} had events before the crash"
        );
        assert_eq!(
            before, after,
            "{intent_id}: the events changed across kill -9"
        );
    }
}

async fn decide(reviewer: &Client, index: usize, intent_id: &str) {
    let comment = format!("decision {index}");
    reviewer
        .decide(intent_id, outcome_for(index), Some(&comment), Map::new())
        .await
        .unwrap_or_else(|err| panic!("deciding {intent_id}: {err}"));
}

/// Asserts that `event` is the terminal event of intent `index` carrying the decision made for it.
fn assert_decision_event(index: usize, intent_id: &str, event: &Value) {
    let outcome = outcome_for(index);
    assert_eq!(
        event["intent_id"], intent_id,
        "agent {index} got another intent's event"
    );
    assert_eq!(
        event["event_type"], "intent.completed",
        "agent {index}: {event}"
    );
    assert_eq!(event["status"], "COMPLETED", "agent {index}");
    assert_eq!(
        event["result"]["outcome"], outcome,
        "agent {index}: wrong decision"
    );
    assert_eq!(event["result"]["decided_by"], REVIEWER, "agent {index}");
    assert_eq!(
        event["data"]["approved"],
        outcome == "approved",
        "agent {index}"
    );
    assert_eq!(
        event["data"]["comment"],
        format!("decision {index}"),
        "agent {index}"
    );
}

/// Exactly one completion per intent, after the untouched pre-crash history, and a
/// second decision is refused with 409 naming the first decider.
async fn assert_decided_once(setup: &Setup, intent_ids: &[String], before: &[Vec<Event>]) {
    let after = histories(&setup.agent, intent_ids).await;
    for (index, ((intent_id, before), after)) in
        intent_ids.iter().zip(before).zip(&after).enumerate()
    {
        assert!(
            after.starts_with(before),
            "{intent_id}: the history was rewritten"
        );
        let completions: Vec<&Event> = after
            .iter()
            .filter(|event| event.event_type == "intent.completed")
            .collect();
        assert_eq!(
            completions.len(),
            1,
            "{intent_id}: exactly one intent.completed: {after:#?}"
        );
        let seqs: Vec<u64> = after.iter().map(|event| event.seq).collect();
        assert_eq!(
            seqs,
            (1..=after.len() as u64).collect::<Vec<_>>(),
            "{intent_id}: gap-free seq"
        );
        assert_decision_event(
            index,
            intent_id,
            &serde_json::to_value(completions[0]).expect("event as JSON"),
        );

        let again = setup
            .reviewer
            .decide(intent_id, "approved", Some("again"), Map::new())
            .await;
        match again {
            Err(ClientError::Api {
                status: 409,
                details,
                ..
            }) => {
                assert_eq!(
                    details["decided_by"], REVIEWER,
                    "{intent_id}: 409 names the decider"
                );
                assert!(
                    details["decided_at"].is_string(),
                    "{intent_id}: 409 says when"
                );
            }
            other => panic!("{intent_id}: a second decision must be 409, got {other:?}"),
        }
    }
}

/// What `crash_waiters.py` reported about one agent.
struct WaiterReport {
    index: usize,
    intent_id: String,
    event: Value,
    reconnects: u64,
}

async fn next_line(lines: &mut Lines<BufReader<ChildStdout>>) -> Option<String> {
    tokio::time::timeout(PATIENCE, lines.next_line())
        .await
        .expect("crash_waiters.py went silent")
        .expect("read crash_waiters.py output")
}

/// Reads `INTENT <index> <id>` lines up to `READY`; returns the ids by index.
async fn read_sent_intents(lines: &mut Lines<BufReader<ChildStdout>>) -> Vec<String> {
    let mut intent_ids = vec![String::new(); WAITERS];
    while let Some(line) = next_line(lines).await {
        if line == "READY" {
            break;
        }
        if let Some(rest) = line.strip_prefix("INTENT ") {
            let (index, intent_id) = rest.split_once(' ').expect("INTENT <index> <id>");
            intent_ids[index.parse::<usize>().expect("index")] = intent_id.to_string();
        }
    }
    assert!(
        intent_ids.iter().all(|id| !id.is_empty()),
        "every agent sent an intent"
    );
    intent_ids
}

async fn read_reports(lines: &mut Lines<BufReader<ChildStdout>>) -> Vec<WaiterReport> {
    let mut reports = Vec::new();
    while let Some(line) = next_line(lines).await {
        let Some(json) = line.strip_prefix("RESULT ") else {
            continue;
        };
        let report: Value = serde_json::from_str(json).expect("RESULT is JSON");
        reports.push(WaiterReport {
            index: report["index"].as_u64().expect("index") as usize,
            intent_id: report["intent_id"].as_str().expect("intent_id").to_string(),
            event: report["event"].clone(),
            reconnects: report["reconnects"].as_u64().expect("reconnects"),
        });
    }
    reports
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_waiters_survive_kill9_and_each_gets_its_own_decision() {
    let python = tokio::task::spawn_blocking(sdk_python).await.expect("venv");
    let mut setup = setup().await;
    let stderr_path = setup.home.path().join("crash_waiters.stderr");
    let mut waiters = Command::new(python)
        .arg(compat_dir().join("crash_waiters.py"))
        .current_dir(compat_dir())
        .env("SIGNOFF_URL", &setup.server.url)
        .env("AGENT_KEY", &setup.agent_key)
        .env("AGENT_ADDRESS", AGENT)
        .env("REVIEWER_ID", REVIEWER)
        .env("WAITERS", WAITERS.to_string())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(&stderr_path).expect("stderr file"))
        .kill_on_drop(true)
        .spawn()
        .expect("start crash_waiters.py");
    let mut lines = BufReader::new(waiters.stdout.take().expect("stdout")).lines();

    let intent_ids = read_sent_intents(&mut lines).await;
    // Give the agents a moment to open their streams, so the crash cuts them off
    // mid-wait (the assertions hold either way).
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_waiting_for_human(&setup.agent, &intent_ids).await;
    let before = histories(&setup.agent, &intent_ids).await;

    crash_and_restart(&mut setup.server);
    assert_waiting_for_human(&setup.agent, &intent_ids).await;
    assert_survived(&setup.agent, &intent_ids, &before).await;

    for (index, intent_id) in intent_ids.iter().enumerate() {
        decide(&setup.reviewer, index, intent_id).await;
    }
    let reports = read_reports(&mut lines).await;
    let status = tokio::time::timeout(PATIENCE, waiters.wait())
        .await
        .expect("crash_waiters.py did not finish")
        .expect("wait for crash_waiters.py");
    assert!(
        status.success(),
        "crash_waiters.py failed ({status}):\n{}\n--- server log\n{}",
        std::fs::read_to_string(&stderr_path).unwrap_or_default(),
        setup.server.log()
    );

    assert_eq!(reports.len(), WAITERS, "every agent's wait_for returned");
    for report in &reports {
        assert_eq!(
            report.intent_id, intent_ids[report.index],
            "agent {} reported its own intent",
            report.index
        );
        assert_decision_event(report.index, &report.intent_id, &report.event);
    }
    let reconnects: u64 = reports.iter().map(|report| report.reconnects).sum();
    println!("{WAITERS} SDK waiters reconnected {reconnects} times in all");
    assert!(
        reconnects > 0,
        "the crash should have cut the waiters' connections"
    );
    assert_decided_once(&setup, &intent_ids, &before).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_client_waiters_survive_kill9_and_acknowledged_decisions_persist() {
    let mut setup = setup().await;
    let mut intent_ids = Vec::with_capacity(WAITERS);
    for index in 0..WAITERS {
        let body = task_intent(
            json!({"title": format!("Deploy shard {index}?"), "assignees": [REVIEWER]}),
        );
        intent_ids.push(
            setup
                .agent
                .create_intent(&body, None)
                .await
                .expect("create")
                .intent_id,
        );
    }
    let options = WaitOptions {
        wait_seconds: 15,
        timeout: Some(PATIENCE),
    };
    let waiters: Vec<_> = intent_ids
        .iter()
        .map(|intent_id| {
            let agent = setup.agent.clone();
            let intent_id = intent_id.clone();
            tokio::spawn(async move { agent.wait_for(&intent_id, options).await })
        })
        .collect();

    // A decision the server acknowledged before the crash must survive it.
    let (early, late) = intent_ids.split_at(WAITERS / 10);
    for (index, intent_id) in early.iter().enumerate() {
        decide(&setup.reviewer, index, intent_id).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = histories(&setup.agent, &intent_ids).await;

    crash_and_restart(&mut setup.server);
    assert_survived(&setup.agent, &intent_ids, &before).await;
    assert_waiting_for_human(&setup.agent, late).await;

    for (index, intent_id) in late.iter().enumerate() {
        decide(&setup.reviewer, early.len() + index, intent_id).await;
    }
    for (index, (waiter, intent_id)) in waiters.into_iter().zip(&intent_ids).enumerate() {
        let event = waiter
            .await
            .expect("waiter task")
            .unwrap_or_else(|err| panic!("wait_for {intent_id}: {err}"));
        let event = serde_json::to_value(&event).expect("event as JSON");
        assert_decision_event(index, intent_id, &event);
    }
    assert_decided_once(&setup, &intent_ids, &before).await;
}
