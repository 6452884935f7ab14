//! `signoff demo`: a server on a throwaway database, simulated agents that ask for
//! decisions of all eight kinds over the next few minutes, and the inbox to make
//! them in. Each agent blocks in `wait_for` like a real one and reports when it
//! resumes, so the reviewer sees every decision reach its agent.

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
use crate::domain::{Event, Principal, PrincipalKind};
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
    if crate::domain::lifecycle::is_system_actor(by) {
        return format!("{agent} resumed with outcome {outcome}: nobody decided in time ({by})");
    }
    format!("{agent} resumed with outcome {outcome} (decided by {by})")
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
        let mut agents = JoinSet::new();
        for task in scenario()? {
            let principal = Principal::new(PrincipalKind::Agent, &task.agent, vec![])?;
            let (_, key) = engine
                .create_key(&admin, principal, Some("demo agent".into()))
                .await?;
            let client = Client::new(&url, &key)?;
            let (notices, clock) = (notices.clone(), clock.clone());
            agents.spawn(async move {
                tokio::time::sleep(Duration::from_secs(task.after_seconds)).await;
                if let Err(err) = simulate(&client, &task, clock.as_ref(), &notices).await {
                    let _ = notices.send(format!("{} gave up: {err}", task.agent));
                }
            });
        }
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
    let mut body = task.intent.clone();
    body["correlation_id"] = json!(uuid::Uuid::new_v4().to_string());
    if let Some(seconds) = task.due_in_seconds {
        body["deadline_at"] = json!(clock.now().plus_seconds(seconds));
    }
    let created = client.create_intent(&body, None).await?;
    let terminal = client
        .wait_for(&created.intent_id, WaitOptions::default())
        .await?;
    let _ = notices.send(resumed_line(&task.agent, &terminal));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::lifecycle::PolicyContext;
    use crate::domain::{IntentRequest, LifecyclePolicy, Status, TaskType};

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
