//! Reminders, escalation ladders and timeouts.
//!
//! The first half drives the engine with a hand-moved clock: which timers a task
//! gets and what each firing does, exactly, with no waiting. The second half runs
//! the real server with 1–3 s durations: reminders and reassignments arrive live
//! on reviewers' task streams, bad policies are refused with a reason, and
//! `intent.viewed` is recorded only for people who may decide.

mod common;

use std::sync::Arc;

use common::backend::TestDatabase;
use common::{TestServer, next_matching, task_intent};
use serde_json::{Map, Value, json};
use signoff::client::Client;
use signoff::clock::ManualClock;
use signoff::domain::Verdict;
use signoff::domain::lifecycle::LifecycleInput;
use signoff::domain::{
    Event, Principal, PrincipalKind, SlaDefaults, Status, TaskStreamItem, TaskType, Timestamp,
};
use signoff::engine::decisions::{Decision, Via};
use signoff::engine::{Engine, EngineSettings};

const START: &str = "2026-11-21T12:00:00Z";

/// An engine on a temporary database whose clock only moves when told to.
struct ClockedEngine {
    engine: Engine,
    clock: Arc<ManualClock>,
    _database: TestDatabase,
}

fn agent() -> Principal {
    Principal::new(PrincipalKind::Agent, "agent://acme/deployer", vec![]).unwrap()
}

fn admin() -> Principal {
    Principal::new(PrincipalKind::Admin, "ops", vec![]).unwrap()
}

fn reviewer(identity: &str) -> Principal {
    Principal::new(PrincipalKind::Reviewer, identity, vec![]).unwrap()
}

impl ClockedEngine {
    /// `None` when the test is skipped (PostgreSQL without a database to use).
    async fn open(settings: EngineSettings) -> Option<ClockedEngine> {
        let database = TestDatabase::create().await?;
        let clock = Arc::new(ManualClock::new(Timestamp::parse(START).unwrap()));
        let engine = database.engine(clock.clone(), settings).await;
        Some(ClockedEngine {
            engine,
            clock,
            _database: database,
        })
    }

    async fn create(&self, task: Value, extra: Value) -> String {
        let mut body = task_intent(task);
        if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
            body.extend(extra.clone());
        }
        let created = self
            .engine
            .create_intent(&agent(), &body, None)
            .await
            .unwrap();
        created["intent_id"].as_str().unwrap().to_string()
    }

    /// Moves the clock to `seconds` after the start and fires what is due.
    async fn at(&self, seconds: i64) -> usize {
        let now = self.engine.now();
        let target = Timestamp::parse(START).unwrap().plus_seconds(seconds);
        self.clock.advance_seconds(now.seconds_until(&target));
        self.engine.fire_due_timers().await.unwrap()
    }

    async fn events(&self, intent_id: &str) -> Vec<Event> {
        self.engine.events(&admin(), intent_id, 0).await.unwrap()
    }

    async fn of_type(&self, intent_id: &str, event_type: &str) -> Vec<Event> {
        self.events(intent_id)
            .await
            .into_iter()
            .filter(|event| event.event_type == event_type)
            .collect()
    }

    async fn approve_as(&self, identity: &str, intent_id: &str) -> signoff::domain::Result<Value> {
        let yes = Decision::Verdict {
            verdict: Verdict::Approving,
            comment: None,
            data: Map::new(),
        };
        self.engine
            .decide(&reviewer(identity), intent_id, yes, Via::Api, None)
            .await
    }

    async fn next_due(&self) -> Option<i64> {
        let start = Timestamp::parse(START).unwrap();
        self.engine
            .next_timer_due()
            .await
            .unwrap()
            .map(|due| start.seconds_until(&due))
    }
}

fn approval(assignees: &[&str]) -> Value {
    json!({"title": "Deploy v2.3 to prod?", "task_type": "approval", "assignees": assignees})
}

#[tokio::test]
async fn a_task_gets_the_built_in_reminders_and_times_out_at_8h_failing() {
    let Some(clocked) = ClockedEngine::open(EngineSettings::default()).await else {
        return;
    };
    let id = clocked
        .create(approval(&["alice@example.com"]), json!({}))
        .await;
    let intent = clocked.engine.intent(&admin(), &id).await.unwrap();
    let eight_hours = Timestamp::parse(START).unwrap().plus_seconds(8 * 3600);
    assert_eq!(
        intent.due_at,
        Some(eight_hours),
        "the default deadline is shown as due_at"
    );
    assert_eq!(
        clocked.next_due().await,
        Some(300),
        "first reminder at 5 min"
    );

    assert_eq!(clocked.at(299).await, 0, "nothing before it is due");
    assert_eq!(clocked.at(300).await, 1);
    let reminders = clocked.of_type(&id, "intent.reminder").await;
    assert_eq!(reminders.len(), 1);
    assert_eq!(reminders[0].actor, "system:scheduler");
    assert_eq!(reminders[0].details["reminder_no"], 1);
    assert_eq!(reminders[0].details["to"], json!(["alice@example.com"]));
    assert_eq!(
        clocked.next_due().await,
        Some(300 + 1800),
        "then every 30 min"
    );

    clocked.at(2100).await;
    clocked.at(3900).await;
    assert_eq!(clocked.of_type(&id, "intent.reminder").await.len(), 3);
    assert_eq!(
        clocked
            .engine
            .intent(&admin(), &id)
            .await
            .unwrap()
            .remind_count,
        3
    );

    clocked.at(8 * 3600).await;
    let intent = clocked.engine.intent(&admin(), &id).await.unwrap();
    assert_eq!(intent.status, Status::TimedOut);
    let ended = clocked.events(&id).await.pop().unwrap();
    assert_eq!(ended.event_type, "intent.timed_out");
    assert_eq!(ended.actor, "system:timeout");
    assert_eq!(ended.details["decided_by"], "system:timeout");
    assert_eq!(ended.details["result"]["via"], "timeout");
    assert_eq!(
        clocked.next_due().await,
        None,
        "an ended task keeps no timers"
    );
}

#[tokio::test]
async fn a_reminder_hours_late_is_sent_once_and_the_next_follows_a_full_interval_later() {
    let Some(clocked) = ClockedEngine::open(EngineSettings::default()).await else {
        return;
    };
    let id = clocked
        .create(
            approval(&["alice@example.com"]),
            json!({"remind_after_seconds": 60, "remind_interval_seconds": 600}),
        )
        .await;
    // Five hours pass with the server down: 30 intervals were missed.
    assert_eq!(clocked.at(5 * 3600).await, 1);
    assert_eq!(clocked.of_type(&id, "intent.reminder").await.len(), 1);
    assert_eq!(clocked.next_due().await, Some(5 * 3600 + 600));
    assert_eq!(clocked.at(5 * 3600 + 599).await, 0);
    assert_eq!(clocked.at(5 * 3600 + 600).await, 1);
    assert_eq!(clocked.of_type(&id, "intent.reminder").await.len(), 2);
}

#[tokio::test]
async fn the_axp_fields_remind_max_times_then_escalate() {
    let Some(clocked) = ClockedEngine::open(EngineSettings::default()).await else {
        return;
    };
    let id = clocked
        .create(
            approval(&["alice@example.com"]),
            json!({
                "remind_after_seconds": 60,
                "remind_interval_seconds": 120,
                "max_reminders": 2,
                "escalate_to": "team:oncall",
            }),
        )
        .await;
    clocked.at(60).await;
    clocked.at(180).await;
    clocked.at(299).await;
    assert_eq!(
        clocked.of_type(&id, "intent.reminder").await.len(),
        2,
        "max_reminders"
    );
    assert!(clocked.of_type(&id, "intent.escalated").await.is_empty());
    // After the last reminder's interval: 60 + 2 * 120.
    clocked.at(300).await;
    let escalated = clocked.of_type(&id, "intent.escalated").await;
    assert_eq!(escalated.len(), 1);
    assert_eq!(escalated[0].details["escalated_to"], json!(["team:oncall"]));
    assert_eq!(
        escalated[0].details["previous_assignees"],
        json!(["alice@example.com"])
    );
    let intent = clocked.engine.intent(&admin(), &id).await.unwrap();
    assert_eq!(intent.assignees, ["team:oncall"]);
    assert_eq!(intent.escalation_stage, 1);
    clocked.at(3 * 3600).await;
    assert_eq!(
        clocked.of_type(&id, "intent.reminder").await.len(),
        2,
        "no reminders after max"
    );
}

#[tokio::test]
async fn a_three_stage_ladder_reassigns_the_same_task_stage_by_stage() {
    let Some(clocked) = ClockedEngine::open(EngineSettings::default()).await else {
        return;
    };
    let id = clocked
        .create(
            approval(&["a@example.com"]),
            json!({"lifecycle": {
                "remind": {"max": 0},
                "escalate": [
                    {"after_seconds": 1800, "to": "b@example.com"},
                    {"after_seconds": 3600, "to": ["team:oncall"]},
                    {"after_seconds": 7200, "to": ["c@example.com", "d@example.com"]},
                ],
            }}),
        )
        .await;
    let mut holders = vec![];
    for (at, stage) in [(1800, 1), (3600, 2), (7200, 3)] {
        assert_eq!(clocked.at(at - 1).await, 0);
        assert_eq!(clocked.at(at).await, 1);
        let intent = clocked.engine.intent(&admin(), &id).await.unwrap();
        assert_eq!(intent.escalation_stage, stage);
        assert_eq!(
            intent.status,
            Status::Waiting,
            "the same task, still waiting"
        );
        holders.push(intent.assignees);
    }
    assert_eq!(
        holders,
        [
            vec!["b@example.com".to_string()],
            vec!["team:oncall".to_string()],
            vec!["c@example.com".to_string(), "d@example.com".to_string()],
        ]
    );
    let stages: Vec<Value> = clocked
        .of_type(&id, "intent.escalated")
        .await
        .iter()
        .map(|event| event.details["stage"].clone())
        .collect();
    assert_eq!(stages, [json!(1), json!(2), json!(3)]);
    assert!(
        clocked.of_type(&id, "intent.reminder").await.is_empty(),
        "max 0: no reminders"
    );

    // The old assignee can no longer decide; the new one can.
    let refused = clocked.approve_as("a@example.com", &id).await.unwrap_err();
    assert!(
        refused.message.contains("not an assignee"),
        "{}",
        refused.message
    );
}

#[tokio::test]
async fn after_downtime_every_overdue_stage_fires_once_in_due_order_before_the_timeout() {
    let Some(clocked) = ClockedEngine::open(EngineSettings::default()).await else {
        return;
    };
    let id = clocked
        .create(
            approval(&["a@example.com"]),
            json!({"lifecycle": {
                "remind": {"max": 0},
                "escalate": [
                    {"after_seconds": 1800, "to": "b@example.com"},
                    {"after_seconds": 3600, "to": "c@example.com"},
                ],
                "timeout": {"after_seconds": 7200, "fallback": "fail"},
            }}),
        )
        .await;
    // Down from before the first stage until long after the timeout.
    assert_eq!(
        clocked.at(10_000).await,
        3,
        "both stages and the timeout, one firing each"
    );
    let fired: Vec<(String, Value)> = clocked
        .events(&id)
        .await
        .into_iter()
        .filter(|event| event.actor.starts_with("system:"))
        .map(|event| (event.event_type, event.details["stage"].clone()))
        .collect();
    assert_eq!(
        fired,
        [
            ("intent.escalated".to_string(), json!(1)),
            ("intent.escalated".to_string(), json!(2)),
            ("intent.timed_out".to_string(), Value::Null),
        ]
    );
}

#[tokio::test]
async fn deciding_cancels_every_timer_in_the_same_transaction() {
    let Some(clocked) = ClockedEngine::open(EngineSettings::default()).await else {
        return;
    };
    let id = clocked
        .create(
            approval(&["alice@example.com"]),
            json!({"escalate_to": "bob@example.com"}),
        )
        .await;
    assert!(clocked.next_due().await.is_some());
    clocked.approve_as("alice@example.com", &id).await.unwrap();
    assert_eq!(clocked.next_due().await, None);
    let before = clocked.events(&id).await.len();
    assert_eq!(clocked.at(9 * 3600).await, 0);
    assert_eq!(
        clocked.events(&id).await.len(),
        before,
        "nothing fires after the decision"
    );
}

#[tokio::test]
async fn fallbacks_cancel_or_complete_as_a_system_decision() {
    let Some(clocked) = ClockedEngine::open(EngineSettings::default()).await else {
        return;
    };
    let cancel = clocked
        .create(
            approval(&["alice@example.com"]),
            json!({"lifecycle": {"timeout": {"after_seconds": 600, "fallback": "cancel"}}}),
        )
        .await;
    let reject = clocked
        .create(
            approval(&["alice@example.com"]),
            json!({"lifecycle": {"timeout": {"after_seconds": 900, "fallback": {"outcome": "rejected"}}}}),
        )
        .await;
    assert_eq!(
        clocked.at(600).await,
        3,
        "the 5 min reminder of each, then the cancel"
    );
    clocked.at(900).await;

    let canceled = clocked.engine.intent(&admin(), &cancel).await.unwrap();
    assert_eq!(canceled.status, Status::Canceled);
    assert_eq!(canceled.result.unwrap()["decided_by"], "system:timeout");

    let completed = clocked.engine.intent(&admin(), &reject).await.unwrap();
    assert_eq!(completed.status, Status::Completed);
    let record = completed.result.unwrap();
    assert_eq!(
        (
            record["outcome"].clone(),
            record["decided_by"].clone(),
            record["via"].clone()
        ),
        (json!("rejected"), json!("system:timeout"), json!("timeout"))
    );
    let ended = clocked.events(&reject).await.pop().unwrap();
    assert_eq!(ended.event_type, "intent.completed");
    assert_eq!(ended.actor, "system:timeout", "never a person");
    assert_eq!(ended.details["data"]["approved"], false);
    assert_eq!(
        (
            ended.details["data"]["decided_by"].clone(),
            ended.details["data"]["timed_out"].clone()
        ),
        (json!("system:timeout"), json!(true)),
        "even the flat data says no person decided"
    );
    let late = clocked
        .approve_as("alice@example.com", &reject)
        .await
        .unwrap_err();
    assert_eq!(late.code, "timed_out");
    assert!(
        late.message.contains("nobody decided") && late.message.contains("rejected"),
        "{}",
        late.message
    );
    assert_eq!(
        ended.task_stream_effect().unwrap().reason,
        "timed_out",
        "reviewers see a timeout, not a decision"
    );
}

#[tokio::test]
async fn sla_defaults_fill_what_the_request_leaves_out_and_the_request_wins() {
    let sla = SlaDefaults {
        all: LifecycleInput::parse(&json!({"timeout": {"after_seconds": 3600}})).unwrap(),
        by_type: [(
            TaskType::Approval,
            LifecycleInput::parse(&json!({
                "remind": {"after_seconds": 120, "max": 1},
                "timeout": {"fallback": {"outcome": "rejected"}},
            }))
            .unwrap(),
        )]
        .into(),
    };
    let Some(clocked) = ClockedEngine::open(EngineSettings {
        sla,
        ..EngineSettings::default()
    })
    .await
    else {
        return;
    };
    let defaulted = clocked
        .create(approval(&["alice@example.com"]), json!({}))
        .await;
    let asked = clocked
        .create(
            approval(&["alice@example.com"]),
            json!({"lifecycle": {"timeout": {"after_seconds": 600, "fallback": "fail"}}}),
        )
        .await;
    let review = clocked
        .create(
            json!({"title": "Review", "task_type": "review", "assignees": ["alice@example.com"]}),
            json!({}),
        )
        .await;
    let policy = clocked
        .engine
        .intent(&admin(), &defaulted)
        .await
        .unwrap()
        .lifecycle;
    assert_eq!(
        policy.remind.as_ref().map(|r| (r.after_seconds, r.max)),
        Some((120, Some(1)))
    );
    clocked.at(3600).await;
    let status = |id: &str| {
        let engine = clocked.engine.clone();
        let id = id.to_string();
        async move { engine.intent(&admin(), &id).await.unwrap().status }
    };
    assert_eq!(
        status(&defaulted).await,
        Status::Completed,
        "approval SLA: fallback rejected at 1 h"
    );
    assert_eq!(
        status(&asked).await,
        Status::TimedOut,
        "the request's own timeout and fallback"
    );
    assert_eq!(
        status(&review).await,
        Status::TimedOut,
        "review: general SLA, built-in fallback"
    );
}

// ---------------------------------------------------------------------------
// Real time, real server.

async fn created(agent: &Client, body: Value) -> String {
    agent.create_intent(&body, None).await.unwrap().intent_id
}

fn with(task: Value, extra: Value) -> Value {
    let mut body = task_intent(task);
    if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
        body.extend(extra.clone());
    }
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reminders_arrive_live_on_the_reviewers_task_stream() {
    let Some(server) = TestServer::start().await else {
        return;
    };
    let agent = server.agent("agent://acme/deployer").await;
    let alice = server.reviewer("alice@example.com", &[]).await;
    let mut stream = Box::pin(alice.task_stream(None).unwrap());
    next_matching(&mut stream, 10, "snapshot", |item| {
        matches!(item, TaskStreamItem::Snapshot(_))
    })
    .await;
    let id = created(
        &agent,
        with(
            approval(&["alice@example.com"]),
            json!({"lifecycle": {"remind": {"after_seconds": 1, "every_seconds": 1, "max": 2}}}),
        ),
    )
    .await;
    for expected in [1, 2] {
        let item = next_matching(
            &mut stream,
            10,
            "reminder",
            |item| matches!(item, TaskStreamItem::Reminder(reminder) if reminder.intent_id == id),
        )
        .await;
        let TaskStreamItem::Reminder(reminder) = item else {
            unreachable!()
        };
        assert_eq!(reminder.reminder_no, expected);
        assert_eq!(reminder.task.reminders_sent, expected as u32);
    }
    let intent = alice.intent(&id).await.unwrap();
    assert_eq!(intent.remind_count, 2);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_three_stage_ladder_moves_the_task_between_live_inboxes() {
    let Some(server) = TestServer::start().await else {
        return;
    };
    let agent = server.agent("agent://acme/deployer").await;
    let ann = server.reviewer("ann@example.com", &[]).await;
    let ben = server.reviewer("ben@example.com", &[]).await;
    let cat = server.reviewer("cat@example.com", &["oncall"]).await;
    let mut streams = Vec::new();
    for reviewer in [&ann, &ben, &cat] {
        let mut stream = Box::pin(reviewer.task_stream(None).unwrap());
        next_matching(&mut stream, 10, "snapshot", |item| {
            matches!(item, TaskStreamItem::Snapshot(_))
        })
        .await;
        streams.push(stream);
    }
    let id = created(
        &agent,
        with(
            approval(&["ann@example.com"]),
            json!({"lifecycle": {
                "remind": {"max": 0},
                "escalate": [
                    {"after_seconds": 1, "to": "ben@example.com"},
                    {"after_seconds": 2, "to": "team:oncall"},
                    {"after_seconds": 3, "to": ["ann@example.com"]},
                ],
            }}),
        ),
    )
    .await;
    let gets = |item: &TaskStreamItem| matches!(item, TaskStreamItem::Upserted(upsert) if upsert.task.intent_id == id);
    let loses = |item: &TaskStreamItem| matches!(item, TaskStreamItem::Removed(removal) if removal.intent_id == id);
    let [ann_stream, ben_stream, cat_stream] = &mut streams[..] else {
        unreachable!()
    };
    next_matching(ann_stream, 10, "ann's new task", gets).await;
    // Stage 1: ann -> ben.
    next_matching(ann_stream, 10, "ann losing it", loses).await;
    let item = next_matching(ben_stream, 10, "ben getting it", gets).await;
    let TaskStreamItem::Upserted(upsert) = item else {
        unreachable!()
    };
    assert_eq!(
        (upsert.reason.as_str(), upsert.task.escalation_stage),
        ("escalated", 1)
    );
    // Stage 2: ben -> team:oncall (cat).
    next_matching(ben_stream, 10, "ben losing it", loses).await;
    let item = next_matching(cat_stream, 10, "cat getting it through her team", gets).await;
    let TaskStreamItem::Upserted(upsert) = item else {
        unreachable!()
    };
    assert_eq!(upsert.task.escalation_stage, 2);
    // Stage 3: back to ann, the same task id throughout.
    next_matching(cat_stream, 10, "cat losing it", loses).await;
    next_matching(ann_stream, 10, "ann getting it back", gets).await;
    let intent = ann.intent(&id).await.unwrap();
    assert_eq!(
        (intent.escalation_stage, intent.assignees.clone()),
        (3, vec!["ann@example.com".to_string()])
    );
    ann.decide(&id, "approved", None, Map::new()).await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn impossible_policies_are_refused_with_a_reason_and_nothing_is_created() {
    let Some(server) = TestServer::start().await else {
        return;
    };
    let agent = server.agent("agent://acme/deployer").await;
    let task = approval(&["alice@example.com"]);
    let past = Timestamp::parse("2020-01-01T00:00:00Z").unwrap();
    let cases = [
        (json!({"remind_after_seconds": -5}), "a negative duration"),
        (
            json!({"lifecycle": {"remind": {"every_seconds": 0}}}),
            "at least 1 second",
        ),
        (
            json!({"lifecycle": {"timeout": {"after_seconds": 1_000_000_000_000u64}}}),
            "lifecycle.timeout.after_seconds",
        ),
        (
            json!({"lifecycle": {"timeout": {"after_seconds": u64::MAX}}}),
            "10 years",
        ),
        (
            json!({"lifecycle": {"escalate": [{"after_seconds": u64::MAX, "to": "b@example.com"}]}}),
            "lifecycle.escalate[0].after_seconds",
        ),
        (
            json!({"lifecycle": {"timeout": {"after_seconds": 600}, "escalate": [{"after_seconds": 900, "to": "b@example.com"}]}}),
            "after the deadline",
        ),
        (
            json!({"lifecycle": {"escalate": [{"after_seconds": 900, "to": "b@example.com"}, {"after_seconds": 600, "to": "c@example.com"}]}}),
            "must come after stage 1",
        ),
        (
            json!({"lifecycle": {"timeout": {"fallback": {"outcome": "maybe"}}}}),
            "not one of the task's outcomes",
        ),
        (
            json!({"lifecycle": {"timeout": {"fallback": "explode"}}}),
            "not a fallback",
        ),
        (json!({"lifecycle": {"snooze": {}}}), "snooze"),
        (json!({"lifecycle": "soon"}), "must be an object"),
        (
            json!({"deadline_at": past.to_string()}),
            "not in the future",
        ),
        (
            json!({"lifecycle": {"timeout": {"after_seconds": 60}}, "remind_after_seconds": 120}),
            "first reminder",
        ),
        (
            json!({"lifecycle": {"escalate": [{"after_seconds": 60, "to": "not a reviewer"}]}}),
            "escalate[0].to",
        ),
    ];
    for (extra, expected) in cases {
        let Err(error) = agent
            .create_intent(&with(task.clone(), extra.clone()), None)
            .await
        else {
            panic!("{extra} was accepted");
        };
        assert_eq!(error.status(), Some(422), "{extra}: {error}");
        assert!(
            error.to_string().contains(expected),
            "{extra}: `{error}` should mention `{expected}`"
        );
    }
    let agent_work = json!({
        "intent_type": "intent.build.v1",
        "correlation_id": uuid::Uuid::new_v4().to_string(),
        "to_agent": "agent://acme/builder",
        "payload": {},
        "remind_after_seconds": 60,
    });
    let error = agent.create_intent(&agent_work, None).await.unwrap_err();
    assert!(
        error.to_string().contains("apply to human tasks"),
        "{error}"
    );
    assert!(
        server.admin_client().my_tasks().await.unwrap().is_empty(),
        "nothing was created"
    );
    server.stop().await;
}

#[tokio::test]
async fn agent_work_with_a_deadline_times_out_and_its_worker_hears_of_it() {
    let Some(server) = TestServer::start().await else {
        return;
    };
    let agent = server.agent("agent://acme/deployer").await;
    let deadline = signoff::clock::Clock::now(&signoff::clock::SystemClock).plus_seconds(1);
    let body = json!({
        "intent_type": "intent.build.v1",
        "correlation_id": uuid::Uuid::new_v4().to_string(),
        "to_agent": "agent://acme/builder",
        "payload": {},
        "deadline_at": deadline.to_string(),
    });
    let id = created(&agent, body).await;
    let ended = agent
        .wait_for(&id, signoff::client::WaitOptions::default())
        .await
        .unwrap();
    assert_eq!(ended.status, Status::TimedOut);
    assert!(ended.at >= deadline);
    server.stop().await;
}

#[tokio::test]
async fn viewed_is_recorded_for_people_who_may_decide_and_refused_for_others() {
    let Some(server) = TestServer::start().await else {
        return;
    };
    let agent = server.agent("agent://acme/deployer").await;
    let alice = server.reviewer("alice@example.com", &[]).await;
    let mallory = server.reviewer("mallory@example.com", &[]).await;
    let id = created(&agent, task_intent(approval(&["alice@example.com"]))).await;

    let event = alice.mark_viewed(&id).await.unwrap();
    assert_eq!(
        (event.event_type.as_str(), event.actor.as_str()),
        ("intent.viewed", "alice@example.com")
    );
    assert_eq!(
        mallory.mark_viewed(&id).await.unwrap_err().status(),
        Some(403)
    );
    assert_eq!(
        agent.mark_viewed(&id).await.unwrap_err().status(),
        Some(403)
    );
    assert_eq!(
        alice
            .mark_viewed("no-such-intent")
            .await
            .unwrap_err()
            .status(),
        Some(404)
    );
    let unauthenticated = Client::new(&server.url, "not-a-key").unwrap();
    assert_eq!(
        unauthenticated.mark_viewed(&id).await.unwrap_err().status(),
        Some(401)
    );

    alice
        .decide(&id, "approved", None, Map::new())
        .await
        .unwrap();
    let late = alice.mark_viewed(&id).await.unwrap_err();
    assert_eq!(
        late.status(),
        Some(409),
        "viewing after the end is not a view before deciding"
    );
    let viewed: Vec<String> = alice
        .events(&id, 0)
        .await
        .unwrap()
        .into_iter()
        .filter(|event| event.event_type == "intent.viewed")
        .map(|event| event.actor)
        .collect();
    assert_eq!(
        viewed,
        ["alice@example.com"],
        "refused views leave no trace"
    );
    server.stop().await;
}
