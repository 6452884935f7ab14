//! Running scenarios. A scenario is an intent of its own (IN_PROGRESS while it
//! runs) whose steps are intents too: each step's intent is created in the
//! same transaction that ends the step before it, and the scenario ends in the
//! same transaction as its last step. A crash can therefore never leave a chain
//! between two steps, and every step is in the audit twice: on its own intent,
//! and as `intent.step_started` / `intent.step_ended` on the scenario's.

use std::sync::Arc;

use serde_json::{Map, Value, json};

use super::decisions::{Shown, Via, finish};
use super::{Engine, EngineSettings, new_intent, open_intent};
use crate::domain::event::{CREATED, IN_PROGRESS, STEP_ENDED, STEP_STARTED, SUBMITTED};
use crate::domain::workflow::{
    Next, Scenario, ScenarioError, StepEnd, StepLink, StepRun, WORKFLOW_ACTOR, Workflow, compile,
};
use crate::domain::{Error, Intent, IntentRequest, Principal, PrincipalKind, Result, Status};
use crate::store::{Change, IdempotencyClaim, Target};

/// The 422 for a bundle that does not compile: every problem, with its path.
fn invalid_bundle(errors: &[ScenarioError]) -> Error {
    let first = errors
        .first()
        .map(|error| format!("{}: {}", error.path, error.message))
        .unwrap_or_default();
    let more = match errors.len() {
        0 | 1 => String::new(),
        n => format!(" (and {} more)", n - 1),
    };
    Error::invalid(
        "invalid_scenario",
        format!("the scenario is not valid: {first}{more}"),
    )
    .with_details(json!({ "errors": errors }))
}

/// Starts `step_id` of the workflow on `change`: its intent is created after
/// this change, in the same transaction. A step whose intent cannot be created
/// now (a `deadline_at` that has passed, say) fails the workflow instead of
/// undoing the decision that led to it.
fn start_step(change: &mut Change, settings: &Arc<EngineSettings>, step_id: &str) -> Result<()> {
    let Some(plan) = change
        .intent
        .workflow
        .as_ref()
        .and_then(|workflow| workflow.step(step_id))
        .cloned()
    else {
        return Err(Error::internal(format!("workflow step {step_id} vanished")));
    };
    let mut body = plan.body;
    body["correlation_id"] = json!(change.intent.correlation_id);
    body["payload"] = change.intent.payload.clone();
    // Steps are sent by whoever applied the scenario, so they can read them all.
    let sender = Principal {
        kind: PrincipalKind::Agent,
        identity: change.intent.from_agent.clone(),
        teams: vec![],
    };
    let prepared = IntentRequest::parse(&body, &sender)
        .and_then(|request| new_intent(settings, request, change.now));
    let mut step = match prepared {
        Ok(step) => step,
        Err(err) => {
            let why = format!("step {step_id} could not start: {}", err.message);
            return end_workflow(change, settings, Status::Failed, Some(why));
        }
    };
    step.step_of = Some(StepLink {
        workflow_id: change.intent.intent_id.clone(),
        step_id: step_id.to_string(),
    });
    let mut started =
        json!({ "step_id": step_id, "step_intent_id": step.intent_id, "kind": plan.kind });
    match &step.human_task {
        Some(task) => started["assignees"] = json!(task.assignees),
        None => started["to_agent"] = json!(step.to_agent),
    }
    if let Some(workflow) = change.intent.workflow.as_mut() {
        workflow.runs.push(StepRun {
            step_id: step_id.to_string(),
            intent_id: step.intent_id.clone(),
            started_at: change.now,
            ended_at: None,
            status: None,
            outcome: None,
            decided_by: None,
            succeeded: None,
        });
    }
    change.record(STEP_STARTED, WORKFLOW_ACTOR, started);
    let settings = settings.clone();
    change.also(
        Target::New(Box::new(step)),
        Box::new(move |step_change| {
            open_intent(step_change, &settings)?;
            Ok(Value::Null)
        }),
    );
    Ok(())
}

/// Ends the workflow on `change` as `status`, with every step's run as the result.
fn end_workflow(
    change: &mut Change,
    settings: &Arc<EngineSettings>,
    status: Status,
    error: Option<String>,
) -> Result<()> {
    let Some(workflow) = change.intent.workflow.clone() else {
        return Ok(());
    };
    let last = workflow
        .runs
        .iter()
        .rev()
        .find(|run| run.ended_at.is_some());
    let mut record = json!({
        "scenario_id": workflow.scenario_id,
        "outcome": last.and_then(|run| run.outcome.clone()),
        "last_step": last.map(|run| run.step_id.clone()),
        "last_step_status": last.and_then(|run| run.status),
        "steps": workflow.runs,
        "decided_by": WORKFLOW_ACTOR,
        "decided_at": change.now,
        "via": "workflow",
    });
    let mut extra = Map::new();
    if let Some(error) = error {
        record["error"] = json!(error);
        extra.insert("error".into(), json!(error));
    }
    end_as_workflow(change, settings, status, record, extra)
}

/// Ends the intent on `change` in the workflow's name, showing `record` (also
/// as the flat data agents read, when it completed).
fn end_as_workflow(
    change: &mut Change,
    settings: &Arc<EngineSettings>,
    status: Status,
    record: Value,
    extra: Map<String, Value>,
) -> Result<()> {
    let shown = Shown {
        data: (status == Status::Completed).then(|| record.clone()),
        result: record.clone(),
    };
    finish(
        change,
        settings,
        status,
        WORKFLOW_ACTOR,
        record,
        shown,
        extra,
    )?;
    Ok(())
}

/// A step's intent ended: record it on the workflow and go where it leads.
fn advance(
    change: &mut Change,
    settings: &Arc<EngineSettings>,
    step_id: &str,
    end: &StepEnd,
) -> Result<()> {
    let now = change.now;
    let ended_first = change.intent.status.is_terminal();
    let Some(next) = change
        .intent
        .workflow
        .as_mut()
        .and_then(|workflow| workflow.finish_step(step_id, end, now))
    else {
        return Ok(());
    };
    if ended_first {
        // The scenario ended first (it was canceled) and stopped this step: the
        // run is closed, but an ended intent gains no events and goes nowhere.
        return Ok(());
    }
    change.record(
        STEP_ENDED,
        WORKFLOW_ACTOR,
        json!({
            "step_id": step_id,
            "step_intent_id": end.intent_id,
            "status": end.status,
            "outcome": end.outcome,
            "decided_by": end.decided_by,
            "succeeded": end.succeeded(),
            "next": next,
        }),
    );
    match next {
        Next::Step(following) => start_step(change, settings, &following),
        Next::Complete => end_workflow(change, settings, Status::Completed, None),
        Next::Fail => end_workflow(change, settings, Status::Failed, None),
    }
}

/// Ends a step's intent because its workflow ended first (it was canceled).
fn stop_step(
    change: &mut Change,
    settings: &Arc<EngineSettings>,
    workflow_status: Status,
) -> Result<()> {
    if change.intent.status.is_terminal() {
        return Ok(());
    }
    let reason = format!("its scenario ended as {workflow_status}");
    let record = json!({
        "decided_by": WORKFLOW_ACTOR,
        "decided_at": change.now,
        "via": "workflow",
        "system": true,
        "reason": reason,
    });
    let mut extra = Map::new();
    extra.insert("reason".into(), json!(reason));
    end_as_workflow(change, settings, Status::Canceled, record, extra)
}

/// Called as any intent ends, inside that transaction: a step reports to its
/// workflow, and a workflow that ends early stops its running step.
pub(super) fn after_end(change: &mut Change, settings: &Arc<EngineSettings>) {
    let intent = &change.intent;
    if let Some(link) = intent.step_of.clone() {
        let end = StepEnd {
            intent_id: intent.intent_id.clone(),
            status: intent.status,
            outcome: result_text(intent, "outcome"),
            decided_by: result_text(intent, "decided_by"),
            withdrawn: intent.human_task.is_some()
                && result_text(intent, "via").as_deref() == Some(Via::Agent.as_str()),
        };
        let settings = settings.clone();
        change.also(
            Target::Existing(link.workflow_id),
            Box::new(move |workflow_change| {
                advance(workflow_change, &settings, &link.step_id, &end)?;
                Ok(Value::Null)
            }),
        );
    }
    if let Some(running) = change.intent.workflow.as_ref().and_then(Workflow::running) {
        let status = change.intent.status;
        let settings = settings.clone();
        change.also(
            Target::Existing(running.intent_id.clone()),
            Box::new(move |step_change| {
                stop_step(step_change, &settings, status)?;
                Ok(Value::Null)
            }),
        );
    }
}

fn result_text(intent: &Intent, key: &str) -> Option<String> {
    intent
        .result
        .as_ref()
        .and_then(|result| result.get(key))
        .and_then(Value::as_str)
        .map(str::to_string)
}

impl Engine {
    /// `POST /v1/scenarios/apply`: compiles the bundle and starts its first step.
    pub async fn apply_scenario(
        &self,
        caller: &Principal,
        bundle: &Value,
        claim: Option<IdempotencyClaim>,
    ) -> Result<Value> {
        if caller.kind == PrincipalKind::Reviewer {
            return Err(Error::forbidden(
                "reviewers decide tasks; only agent and admin keys may apply scenarios",
            ));
        }
        let scenario = compile(bundle).map_err(|errors| invalid_bundle(&errors))?;
        let Scenario {
            scenario_id,
            title,
            intent_type,
            payload,
            agents,
            workflow,
        } = scenario;
        let now = self.clock.now();
        let mut intent = new_intent(
            &self.settings,
            IntentRequest::for_workflow(intent_type, payload, caller.identity.clone()),
            now,
        )?;
        let first_step = workflow.steps.first().map(|step| step.step_id.clone());
        intent.workflow = Some(workflow);
        let settings = self.settings.clone();
        let written = self
            .store
            .write_intent(
                Target::New(Box::new(intent)),
                claim,
                Box::new(move |change| {
                    let actor = change.intent.from_agent.clone();
                    change.intent.created_at = change.now;
                    let created = json!({
                        "intent_type": change.intent.intent_type,
                        "correlation_id": change.intent.correlation_id,
                        "scenario_id": scenario_id.clone(),
                        "title": title,
                    });
                    change.record(CREATED, &actor, created);
                    change.intent.transition(Status::Submitted, None)?;
                    change.record(SUBMITTED, &actor, json!({}));
                    change.intent.transition(Status::InProgress, None)?;
                    change.record(IN_PROGRESS, WORKFLOW_ACTOR, json!({}));
                    if let Some(first) = first_step {
                        start_step(change, &settings, &first)?;
                    }
                    Ok(json!({
                        "ok": true,
                        "intent_id": change.intent.intent_id,
                        "scenario_id": scenario_id,
                        "compile_id": change.intent.intent_id,
                        "status": change.intent.status,
                        "agents": agents,
                        // Agents need no provisioning here: an address is a route,
                        // and its key is made with `signoff keys create`.
                        "agents_provisioned": [],
                        "first_step_intent_id": change.intent.workflow.as_ref()
                            .and_then(Workflow::running)
                            .map(|run| run.intent_id.clone()),
                    }))
                }),
            )
            .await?;
        Ok(written.response)
    }
}
