//! Scenarios and quorums against the real server: approval chains that run
//! step by step (and stop at a rejection), agent steps on the agent stream,
//! n-of-m quorums, cancellation, step timeouts, and bundles that are refused
//! with every error at its JSON path.

mod common;

use std::time::Duration;

use common::{TestServer, next_matching, task_intent};
use futures::StreamExt;
use serde_json::{Map, Value, json};
use signoff::client::{Bounded, Client};
use signoff::domain::{Intent, Status, TaskStreamItem};

const MANAGER: &str = "mia@example.com";
const FINANCE: &str = "fred@example.com";

/// A manager approves, then finance approves; a rejection stops the chain.
fn approval_chain() -> Value {
    json!({
        "scenario_id": "purchase-approval",
        "title": "Buy 40 GPUs",
        "humans": [
            {"role": "manager", "assignees": [MANAGER]},
            {"role": "finance", "assignees": [FINANCE]},
        ],
        "workflow": {"steps": [
            {"step_id": "manager_approval", "assigned_to": "manager",
             "human_task": {"title": "Approve the GPU purchase?", "task_type": "approval"}},
            {"step_id": "finance_approval", "assigned_to": "finance",
             "human_task": {"title": "Release the budget?", "task_type": "approval"}},
        ]},
        "intent": {"type": "intent.purchase.approval.v1", "payload": {"amount_usd": 96000}},
    })
}

async fn apply(agent: &Client, bundle: &Value) -> String {
    let applied = agent.apply_scenario(bundle, None).await.expect("apply");
    assert_eq!(applied["ok"], true, "{applied}");
    applied["intent_id"]
        .as_str()
        .expect("intent_id")
        .to_string()
}

/// Polls until `check` holds for the intent, or fails after 10 s.
async fn until(
    client: &Client,
    intent_id: &str,
    what: &str,
    check: impl Fn(&Intent) -> bool,
) -> Intent {
    for _ in 0..200 {
        let intent = client.intent(intent_id).await.expect("intent");
        if check(&intent) {
            return intent;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "{intent_id} never became {what}: {:#?}",
        client.intent(intent_id).await
    );
}

/// The intent once it has ended.
async fn ended(client: &Client, intent_id: &str) -> Intent {
    until(client, intent_id, "ended", |intent| {
        intent.status.is_terminal()
    })
    .await
}

/// The intent of the step running now.
async fn running_step(client: &Client, workflow_id: &str, step_id: &str) -> Intent {
    let workflow = until(
        client,
        workflow_id,
        &format!("running {step_id}"),
        |intent| {
            intent
                .workflow
                .as_ref()
                .and_then(|workflow| workflow.running())
                .is_some_and(|run| run.step_id == step_id)
        },
    )
    .await;
    let run = workflow.workflow.unwrap().running().cloned().unwrap();
    client.intent(&run.intent_id).await.expect("step intent")
}

async fn task_ids(reviewer: &Client) -> Vec<String> {
    reviewer
        .my_tasks()
        .await
        .expect("tasks")
        .into_iter()
        .map(|task| task.intent_id)
        .collect()
}

fn event_types(events: &[signoff::domain::Event]) -> Vec<&str> {
    events
        .iter()
        .map(|event| event.event_type.as_str())
        .collect()
}

#[tokio::test]
async fn a_two_step_chain_runs_each_step_in_turn_and_completes() {
    let Some(server) = TestServer::start().await else {
        return;
    };
    let agent = server.agent("agent://acme/buyer").await;
    let manager = server.reviewer(MANAGER, &[]).await;
    let finance = server.reviewer(FINANCE, &[]).await;

    let workflow_id = apply(&agent, &approval_chain()).await;
    let first = running_step(&agent, &workflow_id, "manager_approval").await;
    assert_eq!(first.status, Status::Waiting);
    assert_eq!(first.assignees, vec![MANAGER]);
    assert_eq!(
        first.payload["amount_usd"], 96000,
        "steps carry the scenario's payload"
    );
    assert_eq!(first.step_of.as_ref().unwrap().workflow_id, workflow_id);
    assert!(
        task_ids(&finance).await.is_empty(),
        "finance is asked only after the manager approves"
    );

    manager
        .decide(
            &first.intent_id,
            "approved",
            Some("within budget"),
            Map::new(),
        )
        .await
        .unwrap();
    let second = running_step(&agent, &workflow_id, "finance_approval").await;
    assert_eq!(task_ids(&finance).await, vec![second.intent_id.clone()]);
    assert_eq!(
        second.correlation_id, first.correlation_id,
        "steps share the scenario's correlation id"
    );

    finance
        .decide(&second.intent_id, "approved", None, Map::new())
        .await
        .unwrap();
    let done = ended(&agent, &workflow_id).await;
    assert_eq!(done.status, Status::Completed);
    let result = done.result.unwrap();
    assert_eq!(result["outcome"], "approved");
    assert_eq!(result["decided_by"], "system:workflow");
    let steps = result["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 2);
    assert_eq!(steps[0]["decided_by"], MANAGER);
    assert_eq!(steps[1]["decided_by"], FINANCE);

    // Each step is audited on the scenario's own history, in order.
    let events = agent.events(&workflow_id, 0).await.unwrap();
    assert_eq!(
        event_types(&events),
        [
            "intent.created",
            "intent.submitted",
            "intent.in_progress",
            "intent.step_started",
            "intent.step_ended",
            "intent.step_started",
            "intent.step_ended",
            "intent.completed",
        ]
    );
    assert_eq!(events[4].details["decided_by"], MANAGER);
    assert_eq!(
        events[4].details["next"],
        json!({"step": "finance_approval"})
    );
    // The hash chain verifies with steps created inside other intents' writes.
    verify_audit_chain(&server.database.arg());
    server.stop().await;
}

/// `signoff audit verify` passes on the database file: the scenario's 8 events
/// and 4 per step (created, submitted, assigned, completed).
fn verify_audit_chain(database: &str) {
    assert_eq!(verified_events(database), 8 + 2 * 4);
}

/// Runs `signoff audit verify` on the database, expects it to pass, and
/// returns how many events it verified.
fn verified_events(database: &str) -> u64 {
    let verified = std::process::Command::new(common::binary())
        .args(["audit", "verify", "--json", "--db"])
        .arg(database)
        .output()
        .unwrap();
    assert!(
        verified.status.success(),
        "{}",
        String::from_utf8_lossy(&verified.stderr)
    );
    let report: Value = serde_json::from_slice(&verified.stdout).unwrap();
    report["events"].as_u64().unwrap()
}

/// Whether `text` is one of the strings anywhere in `value`.
fn holds_text(value: &Value, text: &str) -> bool {
    match value {
        Value::String(found) => found == text,
        Value::Array(items) => items.iter().any(|item| holds_text(item, text)),
        Value::Object(fields) => fields.values().any(|field| holds_text(field, text)),
        _ => false,
    }
}

/// The audit chain verifies whatever text the events carry (quotes, escapes,
/// line breaks, any script, emoji, text that looks like the canonical JSON's own
/// keys): what each backend stores and reads back hashes as it was written.
#[tokio::test]
async fn the_audit_chain_verifies_over_any_text() {
    let Some(server) = TestServer::start().await else {
        return;
    };
    let agent = server.agent("agent://acme/deployer").await;
    let manager = server.reviewer(MANAGER, &[]).await;
    let comments = [
        "quotes \" and \\ backslashes",
        "a line\nbreak, a\ttab and \u{7f}",
        "ünïcödé — 中文 — עברית — 😀👍🏽",
        "\"cursor\":0,\"details\":{}",
    ];
    for comment in comments {
        let task = json!({"title": comment, "task_type": "approval", "assignees": [MANAGER]});
        let created = agent.create_intent(&task_intent(task), None).await.unwrap();
        manager
            .decide(&created.intent_id, "approved", Some(comment), Map::new())
            .await
            .unwrap();
        let events = agent.events(&created.intent_id, 0).await.unwrap();
        assert!(
            events
                .iter()
                .any(|event| holds_text(&event.details, comment)),
            "the comment {comment:?} is in the audited events"
        );
    }
    let events = verified_events(&server.database.arg());
    assert!(events >= 3 * comments.len() as u64, "{events}");
    server.stop().await;
}

#[tokio::test]
async fn a_rejection_at_the_first_step_stops_the_chain() {
    let Some(server) = TestServer::start().await else {
        return;
    };
    let agent = server.agent("agent://acme/buyer").await;
    let manager = server.reviewer(MANAGER, &[]).await;
    let finance = server.reviewer(FINANCE, &[]).await;

    let workflow_id = apply(&agent, &approval_chain()).await;
    let first = running_step(&agent, &workflow_id, "manager_approval").await;
    manager
        .decide(
            &first.intent_id,
            "rejected",
            Some("not this quarter"),
            Map::new(),
        )
        .await
        .unwrap();
    let done = ended(&agent, &workflow_id).await;
    assert_eq!(done.status, Status::Failed);
    let result = done.result.unwrap();
    assert_eq!(result["outcome"], "rejected");
    assert_eq!(result["last_step"], "manager_approval");
    assert_eq!(
        result["steps"].as_array().unwrap().len(),
        1,
        "finance never ran"
    );
    assert!(task_ids(&finance).await.is_empty());
    let events = agent.events(&workflow_id, 0).await.unwrap();
    let ended = events
        .iter()
        .find(|e| e.event_type == "intent.step_ended")
        .unwrap();
    assert_eq!(ended.details["succeeded"], false);
    assert_eq!(ended.details["next"], "fail");
    server.stop().await;
}

#[tokio::test]
async fn on_failure_can_lead_to_another_step_and_agent_steps_go_to_the_agent() {
    let Some(server) = TestServer::start().await else {
        return;
    };
    let buyer = server.agent("agent://acme/buyer").await;
    let worker = server.agent("agent://acme/purchasing").await;
    let manager = server.reviewer(MANAGER, &[]).await;
    let bundle = json!({
        "scenario_id": "with-fallback",
        "agents": [{"role": "purchasing", "address": "acme/purchasing"}],
        "humans": [{"role": "manager", "assignees": MANAGER}],
        "workflow": {"steps": [
            {"step_id": "ask", "assigned_to": "manager", "on_failure": "notify_requester"},
            {"step_id": "order", "assigned_to": "purchasing", "on_success": "complete"},
            {"step_id": "notify_requester", "assigned_to": "purchasing", "on_success": "fail"},
        ]},
        "intent": {"type": "intent.purchase.approval.v1"},
    });
    let applied = buyer.apply_scenario(&bundle, None).await.unwrap();
    assert_eq!(applied["agents"], json!(["agent://acme/purchasing"]));
    let workflow_id = applied["intent_id"].as_str().unwrap().to_string();
    let ask = running_step(&buyer, &workflow_id, "ask").await;
    manager
        .decide(&ask.intent_id, "rejected", Some("no"), Map::new())
        .await
        .unwrap();

    // The failure path: an agent step, delivered to the agent's stream.
    let notify = running_step(&buyer, &workflow_id, "notify_requester").await;
    assert_eq!(notify.to_agent.as_deref(), Some("agent://acme/purchasing"));
    assert!(notify.human_task.is_none());
    let delivered: Vec<String> = worker
        .agent_stream("agent://acme/purchasing", 0, 1, None)
        .await
        .expect("agent stream")
        .filter_map(|item| async move {
            match item {
                Ok(Bounded::Item(delivery)) => Some(delivery.intent_id),
                _ => None,
            }
        })
        .collect()
        .await;
    assert_eq!(
        delivered,
        vec![notify.intent_id.clone()],
        "only the step that ran reaches the agent"
    );
    worker
        .resolve(
            &notify.intent_id,
            &json!({"status": "COMPLETED", "result": {"sent": true}}),
            None,
            None,
        )
        .await
        .unwrap();
    let done = ended(&buyer, &workflow_id).await;
    assert_eq!(
        done.status,
        Status::Failed,
        "notify_requester leads to fail on success"
    );
    let ran: Vec<&str> = done.result.as_ref().unwrap()["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|run| run["step_id"].as_str().unwrap())
        .collect();
    assert_eq!(ran, ["ask", "notify_requester"], "order never ran");
    server.stop().await;
}

#[tokio::test]
async fn canceling_a_scenario_cancels_its_running_step() {
    let Some(server) = TestServer::start().await else {
        return;
    };
    let agent = server.agent("agent://acme/buyer").await;
    let manager = server.reviewer(MANAGER, &[]).await;
    let workflow_id = apply(&agent, &approval_chain()).await;
    let first = running_step(&agent, &workflow_id, "manager_approval").await;
    agent
        .resolve(
            &workflow_id,
            &json!({"status": "CANCELED", "reason": "bought elsewhere"}),
            None,
            None,
        )
        .await
        .unwrap();
    let step = ended(&agent, &first.intent_id).await;
    assert_eq!(step.status, Status::Canceled);
    assert_eq!(
        step.result.as_ref().unwrap()["decided_by"],
        "system:workflow"
    );
    assert!(
        task_ids(&manager).await.is_empty(),
        "the manager's inbox drops the step"
    );
    let late = manager
        .decide(&first.intent_id, "approved", None, Map::new())
        .await
        .unwrap_err();
    assert_eq!(late.status(), Some(409));
    // The scenario's record closes the stopped step instead of showing it running.
    let workflow = agent.intent(&workflow_id).await.unwrap().workflow.unwrap();
    assert!(workflow.running().is_none(), "{workflow:?}");
    assert_eq!(workflow.runs[0].status, Some(Status::Canceled));
    server.stop().await;
}

#[tokio::test]
async fn only_a_persons_decision_moves_a_chain_on() {
    let Some(server) = TestServer::start().await else {
        return;
    };
    let agent = server.agent("agent://acme/buyer").await;

    // The sender resolving its own human step, claiming approval, is a withdrawal.
    let workflow_id = apply(&agent, &approval_chain()).await;
    let first = running_step(&agent, &workflow_id, "manager_approval").await;
    let claim = json!({"status": "COMPLETED", "result": {"outcome": "approved"}});
    agent
        .resolve(&first.intent_id, &claim, None, None)
        .await
        .unwrap();
    let done = ended(&agent, &workflow_id).await;
    assert_eq!(done.status, Status::Failed, "the finance step never starts");
    let run = &done.result.unwrap()["steps"][0];
    assert_eq!(run["succeeded"], false);
    assert!(run.get("outcome").is_none(), "{run}");

    // A timeout whose fallback outcome approves is still nobody's approval.
    let mut bundle = approval_chain();
    bundle["workflow"]["steps"][0]["lifecycle"] =
        json!({"timeout": {"after_seconds": 1, "fallback": {"outcome": "approved"}}});
    let workflow_id = apply(&agent, &bundle).await;
    let done = ended(&agent, &workflow_id).await;
    assert_eq!(done.status, Status::Failed);
    let result = done.result.unwrap();
    assert_eq!(result["steps"][0]["outcome"], "approved");
    assert_eq!(result["steps"][0]["decided_by"], "system:timeout");
    assert_eq!(result["steps"][0]["succeeded"], false);
    server.stop().await;
}

#[tokio::test]
async fn a_step_that_times_out_fails_the_chain_as_a_system_ending() {
    let Some(server) = TestServer::start().await else {
        return;
    };
    let agent = server.agent("agent://acme/buyer").await;
    let mut bundle = approval_chain();
    bundle["workflow"]["steps"][0]["step_deadline_seconds"] = json!(1);
    let workflow_id = apply(&agent, &bundle).await;
    let first = running_step(&agent, &workflow_id, "manager_approval").await;
    assert!(
        first.due_at.is_some(),
        "the step deadline is the step's timeout"
    );
    let done = ended(&agent, &workflow_id).await;
    assert_eq!(done.status, Status::Failed);
    let result = done.result.unwrap();
    assert_eq!(result["last_step_status"], "TIMED_OUT");
    assert_eq!(result["steps"][0]["decided_by"], "system:timeout");
    server.stop().await;
}

#[tokio::test]
async fn invalid_bundles_are_refused_with_every_error_at_its_path_and_nothing_created() {
    let Some(server) = TestServer::start().await else {
        return;
    };
    let agent = server.agent("agent://acme/buyer").await;
    let bundle = json!({
        "scenario_id": "broken",
        "humans": [{"role": "manager", "assignees": ["team:"]}],
        "workflow": {"steps": [
            {"step_id": "a", "assigned_to": "manager", "on_success": "nowhere"},
            {"step_id": "b", "assigned_to": "cfo", "quorum": 2},
            {"step_id": "c", "assigned_to": "manager", "human_task": {"task_type": "approval", "allowed_outcomes": "yes"}},
        ]},
        "intent": {"type": "intent.purchase.approval.v1"},
    });
    let report = agent.validate_scenario(&bundle).await.unwrap();
    assert_eq!(report["valid"], false);
    let paths: Vec<&str> = report["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|error| error["path"].as_str().unwrap())
        .collect();
    for expected in [
        "$.humans[0].assignees[0]",
        "$.workflow.steps[0].on_success",
        "$.workflow.steps[1].assigned_to",
        "$.workflow.steps[2].human_task.allowed_outcomes",
    ] {
        assert!(
            paths.contains(&expected),
            "{expected} missing from {report:#}"
        );
    }

    let refused = agent.apply_scenario(&bundle, None).await.unwrap_err();
    assert_eq!(refused.status(), Some(422));
    assert_eq!(refused.code(), Some("invalid_scenario"));
    let more = format!("(and {} more)", paths.len() - 1);
    assert!(refused.to_string().contains(&more), "{refused}");

    let admin = server.admin_client();
    let everything: Vec<String> = admin
        .my_tasks()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.intent_id)
        .collect();
    assert!(everything.is_empty(), "a refused bundle creates nothing");

    assert_eq!(
        agent.validate_scenario(&approval_chain()).await.unwrap()["valid"],
        true
    );
    // Not an object at all is a malformed request, as everywhere in the API; an
    // empty object is a bundle missing its parts.
    for (not_a_bundle, status) in [(json!([]), 400), (json!("chain"), 400), (json!({}), 422)] {
        let refused = agent.apply_scenario(&not_a_bundle, None).await.unwrap_err();
        assert_eq!(refused.status(), Some(status), "{not_a_bundle}: {refused}");
    }
    let reviewer = server.reviewer(MANAGER, &[]).await;
    let forbidden = reviewer
        .apply_scenario(&approval_chain(), None)
        .await
        .unwrap_err();
    assert_eq!(forbidden.status(), Some(403));
    server.stop().await;
}

fn quorum_task(needed: u32) -> Value {
    task_intent(json!({
        "title": "Merge the schema change?",
        "task_type": "approval",
        "assignees": ["ann@example.com", "bob@example.com", "cat@example.com"],
        "quorum": needed,
    }))
}

/// A server, an agent that has asked ann, bob and cat for a quorum, the task's
/// id, and the three reviewers' clients; `None` when the test is skipped.
async fn quorum_started(needed: u32) -> Option<(TestServer, Client, String, [Client; 3])> {
    let server = TestServer::start().await?;
    let agent = server.agent("agent://acme/deployer").await;
    let created = agent.create_intent(&quorum_task(needed), None).await;
    let id = created.unwrap().intent_id;
    let reviewers = [
        server.reviewer("ann@example.com", &[]).await,
        server.reviewer("bob@example.com", &[]).await,
        server.reviewer("cat@example.com", &[]).await,
    ];
    Some((server, agent, id, reviewers))
}

#[tokio::test]
async fn two_of_three_completes_on_the_second_approval() {
    let Some((server, agent, id, [ann, bob, cat])) = quorum_started(2).await else {
        return;
    };

    let after_ann = ann
        .decide(&id, "approved", Some("lgtm"), Map::new())
        .await
        .unwrap();
    assert_eq!(
        after_ann.status,
        Status::Waiting,
        "one approval of two is not enough"
    );
    assert_eq!(after_ann.votes.len(), 1);
    assert_eq!(after_ann.assignees, ["bob@example.com", "cat@example.com"]);
    assert!(
        task_ids(&ann).await.is_empty(),
        "a voter's inbox drops the task"
    );
    assert_eq!(task_ids(&cat).await, vec![id.clone()]);

    let again = ann
        .decide(&id, "approved", None, Map::new())
        .await
        .unwrap_err();
    assert_eq!(again.status(), Some(409));
    assert_eq!(again.code(), Some("already_voted"));
    let done = bob.decide(&id, "approved", None, Map::new()).await.unwrap();
    assert_eq!(done.status, Status::Completed);
    let result = done.result.unwrap();
    assert_eq!(result["outcome"], "approved");
    assert_eq!(result["decided_by"], "bob@example.com", "the deciding vote");
    assert_eq!(result["quorum"]["needed"], 2);
    assert_eq!(result["quorum"]["votes"].as_array().unwrap().len(), 2);
    assert!(
        task_ids(&cat).await.is_empty(),
        "the last voter's inbox drops it too"
    );
    let late = cat
        .decide(&id, "rejected", Some("late"), Map::new())
        .await
        .unwrap_err();
    assert_eq!(late.code(), Some("already_decided"));
    // Voters can still read the task they voted on.
    assert_eq!(ann.intent(&id).await.unwrap().status, Status::Completed);

    let events = agent.events(&id, 0).await.unwrap();
    let votes: Vec<&str> = events
        .iter()
        .filter(|event| event.event_type == "intent.voted")
        .map(|event| event.actor.as_str())
        .collect();
    assert_eq!(votes, ["ann@example.com", "bob@example.com"]);
    server.stop().await;
}

#[tokio::test]
async fn two_of_three_fails_once_approval_is_out_of_reach() {
    let Some((server, agent, id, [ann, bob, _])) = quorum_started(2).await else {
        return;
    };
    let waiting = ann
        .decide(&id, "rejected", Some("breaks replicas"), Map::new())
        .await
        .unwrap();
    assert_eq!(
        waiting.status,
        Status::Waiting,
        "two approvals are still possible"
    );
    let done = bob
        .decide(&id, "rejected", Some("agree"), Map::new())
        .await
        .unwrap();
    assert_eq!(done.status, Status::Completed);
    assert_eq!(done.result.unwrap()["outcome"], "rejected");

    // A quorum task cannot be handed to one person.
    let another = agent
        .create_intent(&quorum_task(3), None)
        .await
        .unwrap()
        .intent_id;
    let delegate = json!({"delegate_to": "dan@example.com"});
    let refused = ann
        .inbox_action(&another, "delegate", &delegate, None)
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Some("quorum_task"), "{refused}");
    server.stop().await;
}

#[tokio::test]
async fn a_scenario_step_can_need_a_quorum() {
    let Some(server) = TestServer::start().await else {
        return;
    };
    let agent = server.agent("agent://acme/buyer").await;
    let bundle = json!({
        "scenario_id": "board-vote",
        "humans": [{"role": "board", "assignees": ["ann@example.com", "bob@example.com", "cat@example.com"]}],
        "workflow": {"steps": [{"step_id": "vote", "assigned_to": "board", "quorum": 2}]},
        "intent": {"type": "intent.board.vote.v1"},
    });
    let workflow_id = apply(&agent, &bundle).await;
    let step = running_step(&agent, &workflow_id, "vote").await;
    assert_eq!(step.human_task.as_ref().unwrap().quorum, Some(2));
    for voter in ["ann@example.com", "cat@example.com"] {
        let reviewer = server.reviewer(voter, &[]).await;
        reviewer
            .decide(&step.intent_id, "approved", None, Map::new())
            .await
            .unwrap();
    }
    let done = ended(&agent, &workflow_id).await;
    assert_eq!(done.status, Status::Completed);
    assert_eq!(
        done.result.unwrap()["steps"][0]["decided_by"],
        "cat@example.com"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_voter_who_becomes_the_escalation_target_decides_alone() {
    let Some(server) = TestServer::start().await else {
        return;
    };
    let agent = server.agent("agent://acme/deployer").await;
    let ann = server.reviewer("ann@example.com", &[]).await;
    let mut body = quorum_task(2);
    body["lifecycle"] = json!({"escalate": [{"after_seconds": 1, "to": "ann@example.com"}]});
    let id = agent.create_intent(&body, None).await.unwrap().intent_id;
    ann.decide(&id, "approved", None, Map::new()).await.unwrap();
    until(&agent, &id, "escalated", |intent| {
        intent.escalation_stage == 1
    })
    .await;
    let done = ann
        .decide(&id, "approved", Some("taking it"), Map::new())
        .await
        .unwrap();
    assert_eq!(done.status, Status::Completed);
    assert_eq!(done.result.unwrap()["decided_by"], "ann@example.com");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_inboxes_drop_a_vote_and_receive_the_next_step() {
    let Some(server) = TestServer::start().await else {
        return;
    };
    let agent = server.agent("agent://acme/buyer").await;
    let manager = server.reviewer(MANAGER, &[]).await;
    let finance = server.reviewer(FINANCE, &[]).await;
    let mut finance_inbox = Box::pin(finance.task_stream(None).unwrap());
    next_matching(&mut finance_inbox, 10, "snapshot", |item| {
        matches!(item, TaskStreamItem::Snapshot(_))
    })
    .await;

    let workflow_id = apply(&agent, &approval_chain()).await;
    let first = running_step(&agent, &workflow_id, "manager_approval").await;
    manager
        .decide(&first.intent_id, "approved", None, Map::new())
        .await
        .unwrap();
    let arrived = next_matching(&mut finance_inbox, 10, "the finance step", |item| {
        matches!(item, TaskStreamItem::Upserted(upsert) if upsert.task.human_task.title == "Release the budget?")
    })
    .await;
    let TaskStreamItem::Upserted(upsert) = arrived else {
        unreachable!()
    };
    assert_eq!(upsert.reason, "assigned");

    // A quorum voter's live inbox drops the task as they vote.
    let ann = server.reviewer("ann@example.com", &[]).await;
    let mut ann_inbox = Box::pin(ann.task_stream(None).unwrap());
    let id = agent
        .create_intent(&quorum_task(2), None)
        .await
        .unwrap()
        .intent_id;
    next_matching(&mut ann_inbox, 10, "the quorum task", |item| {
        matches!(item, TaskStreamItem::Upserted(upsert) if upsert.task.intent_id == id)
            || matches!(item, TaskStreamItem::Snapshot(snapshot) if snapshot.tasks.iter().any(|t| t.intent_id == id))
    })
    .await;
    ann.decide(&id, "approved", None, Map::new()).await.unwrap();
    let removed = next_matching(
        &mut ann_inbox,
        10,
        "the removal",
        |item| matches!(item, TaskStreamItem::Removed(removal) if removal.intent_id == id),
    )
    .await;
    let TaskStreamItem::Removed(removal) = removed else {
        unreachable!()
    };
    assert_eq!(removal.reason, "voted");
    assert_eq!(
        removal.status,
        Status::Waiting,
        "the task still waits for the others"
    );
    // The others see the vote on their copy of the task.
    let cat = server.reviewer("cat@example.com", &[]).await;
    let mut cat_inbox = Box::pin(cat.task_stream(None).unwrap());
    let seen = next_matching(&mut cat_inbox, 10, "the quorum task", |item| {
        matches!(item, TaskStreamItem::Snapshot(snapshot) if snapshot.tasks.iter().any(|t| t.intent_id == id))
    })
    .await;
    let TaskStreamItem::Snapshot(snapshot) = seen else {
        unreachable!()
    };
    let task = snapshot.tasks.iter().find(|t| t.intent_id == id).unwrap();
    assert_eq!(task.votes.len(), 1);
    assert_eq!(task.assignees, ["bob@example.com", "cat@example.com"]);
    let bob = server.reviewer("bob@example.com", &[]).await;
    bob.decide(&id, "rejected", Some("not yet"), Map::new())
        .await
        .unwrap();
    let updated = next_matching(
        &mut cat_inbox,
        10,
        "the second vote",
        |item| matches!(item, TaskStreamItem::Upserted(upsert) if upsert.task.intent_id == id),
    )
    .await;
    let TaskStreamItem::Upserted(upsert) = updated else {
        unreachable!()
    };
    assert_eq!(upsert.reason, "voted");
    assert_eq!(upsert.task.votes.len(), 2);
    assert_eq!(
        upsert.task.assignees,
        ["cat@example.com"],
        "cat's vote decides it now"
    );
    server.stop().await;
}
