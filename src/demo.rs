//! `signoff demo`: a server on a throwaway database, simulated agents that ask for
//! decisions of all eight kinds over the next few minutes, and the inbox to make
//! them in. Each agent blocks in `wait_for` like a real one and reports when it
//! resumes, so the reviewer sees every decision reach its agent.
//!
//! Durations are compressed so that the first two minutes show the whole
//! lifecycle live: a reminder (~45 s), an escalation into your inbox (~50 s) and
//! a system timeout with its fallback (~95 s, if nobody decides first). At ~30 s
//! an agent also applies a ScenarioBundle (`assets/demo/chain.json`): a two-step
//! approval chain where the manager step comes to you and, once approved, the
//! finance step goes to your team; the agent waits for the scenario to end and
//! reports how each step went.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::mpsc::UnboundedSender;
use tokio::task::JoinSet;

use crate::client::{Client, WaitOptions};
use crate::clock::{Clock, SystemClock};
use crate::domain::workflow::{StepRun, WORKFLOW_ACTOR};
use crate::domain::{Event, Principal, PrincipalKind, Status, Timestamp};
use crate::engine::{Engine, EngineSettings};
use crate::server::RunningServer;
use crate::store::Durability;

/// The reviewer the demo's tasks go to (directly or through the team).
pub const REVIEWER: &str = "you@example.com";
pub const TEAM: &str = "oncall";

/// One task a simulated agent asks for, from `assets/demo/tasks.json`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DemoTask {
    pub agent: String,
    /// Seconds after the demo starts.
    pub after_seconds: u64,
    /// Gives the task a deadline this many seconds after it is created.
    #[serde(default)]
    pub due_in_seconds: Option<i64>,
    /// The AXP intent body, without `correlation_id` and `deadline_at`.
    pub intent: Value,
}

pub fn scenario() -> Result<Vec<DemoTask>> {
    serde_json::from_str(include_str!("../assets/demo/tasks.json"))
        .context("the built-in demo scenario is invalid")
}

/// The approval chain an agent applies as a ScenarioBundle, from
/// `assets/demo/chain.json`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DemoChain {
    pub agent: String,
    /// Seconds after the demo starts.
    pub after_seconds: u64,
    /// The ScenarioBundle for `POST /v1/scenarios/apply`.
    pub bundle: Value,
}

pub fn chain() -> Result<DemoChain> {
    serde_json::from_str(include_str!("../assets/demo/chain.json"))
        .context("the built-in demo approval chain is invalid")
}

/// The intent body a demo agent creates at `now`.
fn intent_body(task: &DemoTask, now: Timestamp) -> Value {
    let mut body = task.intent.clone();
    body["correlation_id"] = json!(uuid::Uuid::new_v4().to_string());
    if let Some(seconds) = task.due_in_seconds {
        body["deadline_at"] = json!(now.plus_seconds(seconds));
    }
    body
}

/// How an agent describes the end of its wait.
pub fn resumed_line(agent: &str, event: &Event) -> String {
    let outcome = event
        .details
        .pointer("/result/outcome")
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| event.status.as_str().to_lowercase());
    let by = event
        .details
        .get("decided_by")
        .and_then(Value::as_str)
        .unwrap_or("the system");
    if by == WORKFLOW_ACTOR {
        // A scenario ends by its workflow, which is not a timeout: the people
        // who decided are in its steps.
        return chain_line(agent, event);
    }
    if crate::domain::lifecycle::is_system_actor(by) {
        return format!("{agent} resumed with outcome {outcome}: nobody decided in time ({by})");
    }
    format!("{agent} resumed with outcome {outcome} (decided by {by})")
}

/// How an agent describes the end of a scenario it applied: how the chain
/// ended, and who decided each step.
pub fn chain_line(agent: &str, event: &Event) -> String {
    let result = event.details.get("result").unwrap_or(&Value::Null);
    let steps: Vec<StepRun> = result
        .get("steps")
        .cloned()
        .and_then(|steps| serde_json::from_value(steps).ok())
        .unwrap_or_default();
    let last_step = result.get("last_step").and_then(Value::as_str);
    let error = result
        .get("error")
        .or_else(|| event.details.get("error"))
        .or_else(|| event.details.get("reason"))
        .and_then(Value::as_str);
    let status = event.status.as_str().to_lowercase();
    let how = match (event.status, error, last_step) {
        (Status::Completed, _, _) => status,
        (_, Some(error), _) => format!("{status}: {error}"),
        (_, None, Some(step)) => format!("{status} at step {step}"),
        (_, None, None) => status,
    };
    let mut line = format!("{agent} resumed: its approval chain {how}");
    if !steps.is_empty() {
        let runs: Vec<String> = steps.iter().map(step_summary).collect();
        line.push_str(&format!(" ({})", runs.join("; ")));
    }
    line
}

/// One step of a chain: `manager: approved by you@example.com`.
fn step_summary(run: &StepRun) -> String {
    let Some(status) = run.status else {
        return format!("{}: undecided", run.step_id);
    };
    let outcome = run
        .outcome
        .clone()
        .unwrap_or_else(|| status.as_str().to_lowercase());
    match run.decided_by.as_deref() {
        Some(by) if crate::domain::lifecycle::is_system_actor(by) => {
            format!("{}: {outcome}, nobody decided in time ({by})", run.step_id)
        }
        Some(by) => format!("{}: {outcome} by {by}", run.step_id),
        None => format!("{}: {outcome}", run.step_id),
    }
}

pub struct Demo {
    pub server: RunningServer,
    /// A client with the demo reviewer's key, for the inbox.
    pub reviewer: Client,
    agents: JoinSet<()>,
}

impl Demo {
    /// Starts the server on `database` and the simulated agents; their progress
    /// goes to `notices`.
    pub async fn start(database: &Path, notices: UnboundedSender<String>) -> Result<Demo> {
        let clock = Arc::new(SystemClock);
        let engine = Engine::open_sqlite(
            database,
            Durability::Normal,
            clock.clone(),
            EngineSettings::default(),
        )?;
        // In-process, the demo is its own admin; no key needs to leave this process.
        let admin = Principal::new(PrincipalKind::Admin, "demo", vec![])?;
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("cannot open a local port")?;
        let server = RunningServer::spawn(listener, engine.clone())?;
        let url = format!("http://{}", server.address);
        let reviewer = Principal::new(PrincipalKind::Reviewer, REVIEWER, vec![TEAM.to_string()])?;
        let (_, reviewer_key) = engine
            .create_key(&admin, reviewer, Some("demo reviewer".into()))
            .await?;
        let agent_client = async |identity: &str| -> Result<Client> {
            let principal = Principal::new(PrincipalKind::Agent, identity, vec![])?;
            let (_, key) = engine
                .create_key(&admin, principal, Some("demo agent".into()))
                .await?;
            Ok(Client::new(&url, &key)?)
        };
        let mut agents = JoinSet::new();
        for task in scenario()? {
            let client = agent_client(&task.agent).await?;
            let (notices, clock) = (notices.clone(), clock.clone());
            agents.spawn(async move {
                tokio::time::sleep(Duration::from_secs(task.after_seconds)).await;
                if let Err(err) = simulate(&client, &task, clock.as_ref(), &notices).await {
                    let _ = notices.send(format!("{} gave up: {err}", task.agent));
                }
            });
        }
        let chain = chain()?;
        let client = agent_client(&chain.agent).await?;
        let chain_notices = notices.clone();
        agents.spawn(async move {
            tokio::time::sleep(Duration::from_secs(chain.after_seconds)).await;
            if let Err(err) = simulate_chain(&client, &chain, &chain_notices).await {
                let _ = chain_notices.send(format!("{} gave up: {err}", chain.agent));
            }
        });
        Ok(Demo {
            server,
            reviewer: Client::new(&url, &reviewer_key)?.with_via("tui"),
            agents,
        })
    }

    pub async fn stop(mut self) -> Result<()> {
        self.agents.abort_all();
        self.server.stop().await.context("stopping the demo server")
    }
}

/// One agent: ask, wait as long as it takes, report.
async fn simulate(
    client: &Client,
    task: &DemoTask,
    clock: &dyn Clock,
    notices: &UnboundedSender<String>,
) -> Result<(), crate::client::ClientError> {
    let body = intent_body(task, clock.now());
    let created = client.create_intent(&body, None).await?;
    let terminal = client
        .wait_for(&created.intent_id, WaitOptions::default())
        .await?;
    let _ = notices.send(resumed_line(&task.agent, &terminal));
    Ok(())
}

/// The chain's agent: apply the scenario, wait for its own intent to end, report.
async fn simulate_chain(
    client: &Client,
    chain: &DemoChain,
    notices: &UnboundedSender<String>,
) -> Result<(), crate::client::ClientError> {
    let applied = client.apply_scenario(&chain.bundle, None).await?;
    let Some(intent_id) = applied.get("intent_id").and_then(Value::as_str) else {
        return Err(crate::client::ClientError::Protocol(format!(
            "applying the scenario answered no intent_id: {applied}"
        )));
    };
    let terminal = client.wait_for(intent_id, WaitOptions::default()).await?;
    let _ = notices.send(chain_line(&chain.agent, &terminal));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    use crate::domain::lifecycle::{PolicyContext, TIMEOUT_ACTOR};
    use crate::domain::workflow::{Next, compile};
    use crate::domain::{IntentRequest, LifecyclePolicy, TaskType, TimerKind};

    /// The first two minutes of the demo, which must show the whole lifecycle.
    const FIRST_MINUTES: i64 = 120;

    /// When each kind of timer first fires, in seconds after the demo starts, with
    /// the agent whose task it is: every task's lifecycle resolved exactly as the
    /// server resolves it when the agent creates the task.
    fn first_timers() -> HashMap<TimerKind, (i64, String)> {
        let start = Timestamp::parse("2026-11-21T12:00:00Z").unwrap();
        let mut first: HashMap<TimerKind, (i64, String)> = HashMap::new();
        for task in scenario().unwrap() {
            let agent = Principal::new(PrincipalKind::Agent, &task.agent, vec![]).unwrap();
            let created_at = start.plus_seconds(task.after_seconds as i64);
            let request = IntentRequest::parse(&intent_body(&task, created_at), &agent).unwrap();
            let human_task = request.human_task.as_ref().unwrap();
            let policy = LifecyclePolicy::resolve(
                &request.timing,
                &PolicyContext {
                    started_at: created_at,
                    task_type: Some(human_task.task_type),
                    allowed_outcomes: &human_task.allowed_outcomes,
                    defaults: None,
                },
            )
            .unwrap();
            for timer in policy.initial_timers(created_at) {
                let at = start.seconds_until(&timer.due_at);
                let earlier = first.get(&timer.kind).is_none_or(|(seen, _)| at < *seen);
                if earlier {
                    first.insert(timer.kind, (at, task.agent.clone()));
                }
            }
        }
        first
    }

    #[test]
    fn a_reminder_an_escalation_and_a_timeout_happen_in_the_first_two_minutes() {
        let first = first_timers();
        for kind in [TimerKind::Remind, TimerKind::Escalate, TimerKind::Timeout] {
            let (at, agent) = first.get(&kind).unwrap_or_else(|| {
                panic!("no task of the demo ever has a {} timer", kind.as_str())
            });
            assert!(
                *at < FIRST_MINUTES,
                "the first {} ({agent}) fires {at}s into the demo, after the first two minutes",
                kind.as_str()
            );
        }
        // In order, so each is seen on its own: reminder, escalation, timeout.
        assert!(first[&TimerKind::Remind].0 < first[&TimerKind::Escalate].0);
        assert!(first[&TimerKind::Escalate].0 < first[&TimerKind::Timeout].0);
    }

    #[test]
    fn the_early_escalation_reaches_the_reviewer_and_its_timeout_has_a_fallback() {
        let tasks = scenario().unwrap();
        let reviewer =
            Principal::new(PrincipalKind::Reviewer, REVIEWER, vec![TEAM.to_string()]).unwrap();
        let escalating = tasks
            .iter()
            .find(|task| task.intent.pointer("/lifecycle/escalate/0").is_some())
            .expect("a task that escalates");
        let lifecycle = &escalating.intent["lifecycle"];
        // Computed from the JSON alone: the task's start plus each stage's delay.
        let escalates_at =
            escalating.after_seconds + lifecycle["escalate"][0]["after_seconds"].as_u64().unwrap();
        let times_out_at =
            escalating.after_seconds + lifecycle["timeout"]["after_seconds"].as_u64().unwrap();
        assert!(escalates_at < times_out_at && times_out_at < FIRST_MINUTES as u64);
        let to: Vec<String> =
            serde_json::from_value(lifecycle["escalate"][0]["to"].clone()).unwrap();
        assert!(reviewer.may_decide(&to), "the escalation goes to {to:?}");
        let first_assignees: Vec<String> =
            serde_json::from_value(escalating.intent["human_task"]["assignees"].clone()).unwrap();
        assert!(
            !reviewer.may_decide(&first_assignees),
            "the task only reaches the reviewer by escalating"
        );
        assert!(lifecycle.pointer("/timeout/fallback").is_some());
    }

    #[test]
    fn the_approval_chain_is_two_approvals_the_reviewer_can_make() {
        let chain = chain().unwrap();
        assert!((chain.after_seconds as i64) < FIRST_MINUTES);
        Principal::new(PrincipalKind::Agent, &chain.agent, vec![]).unwrap();
        let reviewer =
            Principal::new(PrincipalKind::Reviewer, REVIEWER, vec![TEAM.to_string()]).unwrap();
        let scenario = compile(&chain.bundle).unwrap_or_else(|errors| panic!("{errors:#?}"));
        let steps = &scenario.workflow.steps;
        assert_eq!(steps.len(), 2);
        for step in steps {
            assert_eq!(step.kind, "human", "{}", step.step_id);
            assert_eq!(step.body["human_task"]["task_type"], "approval");
            let assignees: Vec<String> =
                serde_json::from_value(step.body["human_task"]["assignees"].clone()).unwrap();
            assert!(
                reviewer.may_decide(&assignees),
                "{}: {assignees:?}",
                step.step_id
            );
        }
        assert_eq!(steps[0].body["human_task"]["assignees"], json!([REVIEWER]));
        assert_eq!(steps[0].on_success, Next::Step(steps[1].step_id.clone()));
        assert_eq!(steps[0].on_failure, Next::Fail);
        assert_eq!(steps[1].on_success, Next::Complete);
        assert_eq!(steps[1].on_failure, Next::Fail);
    }

    /// The chain's agent against a real server: it applies the bundle, the
    /// reviewer approves both steps from the inbox, and the agent says so.
    #[tokio::test]
    async fn the_chain_agent_reports_both_approvals() {
        let scratch = tempfile::tempdir().unwrap();
        let engine = Engine::open_sqlite(
            &scratch.path().join("demo.db"),
            Durability::Normal,
            Arc::new(SystemClock),
            EngineSettings::default(),
        )
        .unwrap();
        let admin = Principal::new(PrincipalKind::Admin, "demo", vec![]).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server = RunningServer::spawn(listener, engine.clone()).unwrap();
        let url = format!("http://{}", server.address);
        let chain = chain().unwrap();
        let mut keys = Vec::new();
        for principal in [
            Principal::new(PrincipalKind::Reviewer, REVIEWER, vec![TEAM.to_string()]).unwrap(),
            Principal::new(PrincipalKind::Agent, &chain.agent, vec![]).unwrap(),
        ] {
            let (_, key) = engine.create_key(&admin, principal, None).await.unwrap();
            keys.push(Client::new(&url, &key).unwrap());
        }
        let (reviewer, agent) = (keys[0].clone(), keys[1].clone());
        let (notices, mut incoming) = tokio::sync::mpsc::unbounded_channel();
        let waiting = tokio::spawn(async move { simulate_chain(&agent, &chain, &notices).await });
        for step in ["Chain step 1 of 2", "Chain step 2 of 2"] {
            let task = loop {
                let tasks = reviewer.my_tasks().await.unwrap();
                if let Some(task) = tasks
                    .into_iter()
                    .find(|task| task.human_task.title.starts_with(step))
                {
                    break task;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            };
            reviewer
                .decide(&task.intent_id, "approved", None, Default::default())
                .await
                .unwrap();
        }
        let line = tokio::time::timeout(Duration::from_secs(10), incoming.recv())
            .await
            .unwrap()
            .unwrap();
        waiting.await.unwrap().unwrap();
        assert_eq!(
            line,
            "agent://demo/procurement resumed: its approval chain completed \
             (manager: approved by you@example.com; finance: approved by you@example.com)"
        );
        server.stop().await.unwrap();
    }

    fn chain_end(status: Status, result: Value) -> Event {
        Event {
            intent_id: "scenario".into(),
            seq: 9,
            event_type: status.event_type().into(),
            status,
            waiting_reason: None,
            actor: WORKFLOW_ACTOR.into(),
            at: SystemClock.now(),
            details: json!({"result": result, "decided_by": WORKFLOW_ACTOR}),
        }
    }

    fn run(step_id: &str, status: Status, outcome: Option<&str>, by: &str) -> Value {
        json!({
            "step_id": step_id,
            "intent_id": format!("i-{step_id}"),
            "started_at": "2026-11-21T12:00:30Z",
            "ended_at": "2026-11-21T12:01:00Z",
            "status": status,
            "outcome": outcome,
            "decided_by": by,
            "succeeded": outcome != Some("rejected"),
        })
    }

    #[test]
    fn a_chain_is_reported_step_by_step_not_as_a_timeout() {
        let approved = chain_end(
            Status::Completed,
            json!({
                "scenario_id": "demo.purchase.laptops",
                "outcome": "approved",
                "last_step": "finance",
                "last_step_status": "COMPLETED",
                "steps": [
                    run("manager", Status::Completed, Some("approved"), REVIEWER),
                    run("finance", Status::Completed, Some("approved"), REVIEWER),
                ],
                "decided_by": WORKFLOW_ACTOR,
            }),
        );
        let expected = "agent://demo/procurement resumed: its approval chain completed \
             (manager: approved by you@example.com; finance: approved by you@example.com)";
        assert_eq!(chain_line("agent://demo/procurement", &approved), expected);
        assert_eq!(
            resumed_line("agent://demo/procurement", &approved),
            expected,
            "the workflow ending a scenario is not a timeout"
        );

        let rejected = chain_end(
            Status::Failed,
            json!({
                "outcome": "rejected",
                "last_step": "finance",
                "steps": [
                    run("manager", Status::Completed, Some("approved"), REVIEWER),
                    run("finance", Status::Completed, Some("rejected"), REVIEWER),
                ],
            }),
        );
        assert_eq!(
            resumed_line("agent://demo/procurement", &rejected),
            "agent://demo/procurement resumed: its approval chain failed at step finance \
             (manager: approved by you@example.com; finance: rejected by you@example.com)"
        );

        let timed_out = chain_end(
            Status::Failed,
            json!({
                "last_step": "manager",
                "steps": [run("manager", Status::Failed, None, TIMEOUT_ACTOR)],
            }),
        );
        assert_eq!(
            resumed_line("agent://demo/procurement", &timed_out),
            "agent://demo/procurement resumed: its approval chain failed at step manager \
             (manager: failed, nobody decided in time (system:timeout))"
        );

        let broken = chain_end(
            Status::Failed,
            json!({"steps": [], "error": "step manager could not start: no"}),
        );
        assert_eq!(
            resumed_line("agent://demo/procurement", &broken),
            "agent://demo/procurement resumed: its approval chain failed: step manager could not start: no"
        );
    }

    #[test]
    fn the_scenario_is_valid_and_covers_every_task_type() {
        let tasks = scenario().unwrap();
        let agent = Principal::new(PrincipalKind::Agent, "agent://demo/x", vec![]).unwrap();
        let mut types = Vec::new();
        for task in &tasks {
            let mut body = task.intent.clone();
            body["correlation_id"] = json!(uuid::Uuid::new_v4().to_string());
            let request = IntentRequest::parse(&body, &agent)
                .unwrap_or_else(|err| panic!("{}: {err}", task.agent));
            let task_type = request.human_task.as_ref().map(|t| t.task_type);
            let outcomes = request
                .human_task
                .as_ref()
                .unwrap()
                .allowed_outcomes
                .clone();
            LifecyclePolicy::resolve(
                &request.timing,
                &PolicyContext {
                    started_at: SystemClock.now(),
                    task_type,
                    allowed_outcomes: &outcomes,
                    defaults: None,
                },
            )
            .unwrap_or_else(|err| panic!("{}'s lifecycle: {err}", task.agent));
            types.push(request.human_task.unwrap().task_type);
            Principal::new(PrincipalKind::Agent, &task.agent, vec![]).unwrap();
        }
        for task_type in TaskType::ALL {
            assert!(
                types.contains(&task_type),
                "{task_type} is missing from the demo"
            );
        }
    }

    #[test]
    fn resumed_lines_name_the_outcome_and_the_decider() {
        let event = Event {
            intent_id: "i".into(),
            seq: 4,
            event_type: "intent.completed".into(),
            status: Status::Completed,
            waiting_reason: None,
            actor: REVIEWER.into(),
            at: SystemClock.now(),
            details: json!({"result": {"outcome": "approved"}, "decided_by": REVIEWER}),
        };
        assert_eq!(
            resumed_line("agent://demo/deployer", &event),
            "agent://demo/deployer resumed with outcome approved (decided by you@example.com)"
        );
        let timed_out = Event {
            actor: "system:timeout".into(),
            details: json!({"result": {"outcome": "rejected"}, "decided_by": "system:timeout"}),
            ..event
        };
        assert_eq!(
            resumed_line("agent://demo/cost-guard", &timed_out),
            "agent://demo/cost-guard resumed with outcome rejected: nobody decided in time (system:timeout)"
        );
    }
}
