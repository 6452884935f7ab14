//! Scenarios: a subset of the AXP ScenarioBundle that runs a workflow of
//! sequential steps, each an agent step (an intent delivered on the agent's
//! stream) or a human step (a human task with its own lifecycle, optionally an
//! n-of-m quorum). `on_success` / `on_failure` pick what comes next, which is
//! how approval chains work: a manager approves, then finance approves, and a
//! rejection stops the chain.
//!
//! A bundle is compiled once, here, into a [`Workflow`] whose steps carry the
//! exact intent body each step will create; compiling checks everything, so a
//! workflow that starts also runs. Every error names its JSON path.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::error::Error;
use super::intent::Status;
use super::lifecycle::{LifecyclePolicy, PolicyContext, is_system_actor};
use super::principal::{Principal, PrincipalKind, validate_agent_address, validate_assignee};
use super::request::{IntentRequest, is_valid_intent_type};
use super::task::{Verdict, verdict_of};
use super::time::Timestamp;

/// Who starts steps and ends a workflow: the workflow itself, never a person.
pub const WORKFLOW_ACTOR: &str = "system:workflow";

/// At most this many steps: a longer chain is a process, not an approval.
const MAX_STEPS: usize = 50;

/// One problem in a bundle, at a JSON path such as `$.workflow.steps[1].on_success`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScenarioError {
    pub path: String,
    pub message: String,
}

/// What comes after a step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Next {
    Step(String),
    Complete,
    Fail,
}

/// A compiled step: the intent body it creates, and where it leads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepPlan {
    pub step_id: String,
    /// `human` or `agent`.
    pub kind: String,
    /// The AXP intent body the step creates, without `correlation_id` and
    /// `payload`: those are the scenario's, stored once on its intent.
    pub body: Value,
    pub on_success: Next,
    pub on_failure: Next,
}

/// How one step went.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRun {
    pub step_id: String,
    pub intent_id: String,
    pub started_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub succeeded: Option<bool>,
}

/// A running workflow, stored on its own intent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Workflow {
    pub scenario_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    pub steps: Vec<StepPlan>,
    /// Every step started so far, in order; the last one may still be running.
    #[serde(default)]
    pub runs: Vec<StepRun>,
}

/// On a step's intent: the workflow it belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepLink {
    pub workflow_id: String,
    pub step_id: String,
}

/// How a step's intent ended, as its workflow learns it.
#[derive(Debug, Clone, PartialEq)]
pub struct StepEnd {
    pub intent_id: String,
    pub status: Status,
    pub outcome: Option<String>,
    pub decided_by: Option<String>,
    /// A human step that ended without a person's decision: its sender or an
    /// admin resolved it (`via: agent`).
    pub withdrawn: bool,
}

impl StepEnd {
    /// A step succeeds when its intent completes, decided by a person (or, for an
    /// agent step, by its agent), with an outcome that does not reject. A timeout
    /// never succeeds, whatever its fallback outcome: nobody approved.
    pub fn succeeded(&self) -> bool {
        self.status == Status::Completed
            && !self.withdrawn
            && !self.decided_by.as_deref().is_some_and(is_system_actor)
            && self
                .outcome
                .as_deref()
                .is_none_or(|outcome| verdict_of(outcome) != Verdict::Rejecting)
    }
}

impl Workflow {
    pub fn step(&self, step_id: &str) -> Option<&StepPlan> {
        self.steps.iter().find(|step| step.step_id == step_id)
    }

    /// The run of the step still going, if any.
    pub fn running(&self) -> Option<&StepRun> {
        self.runs.last().filter(|run| run.ended_at.is_none())
    }

    /// Records how a step ended and returns where the workflow goes next.
    /// `None` when the step is not the one running (a late or repeated report).
    pub fn finish_step(&mut self, step_id: &str, end: &StepEnd, at: Timestamp) -> Option<Next> {
        let succeeded = end.succeeded();
        let next = {
            let plan = self.step(step_id)?;
            if succeeded {
                plan.on_success.clone()
            } else {
                plan.on_failure.clone()
            }
        };
        let run = self.runs.last_mut().filter(|run| {
            run.step_id == step_id && run.intent_id == end.intent_id && run.ended_at.is_none()
        })?;
        run.ended_at = Some(at);
        run.status = Some(end.status);
        // What a sender claims when withdrawing a human step is not a decision.
        run.outcome = end.outcome.clone().filter(|_| !end.withdrawn);
        run.decided_by = end.decided_by.clone();
        run.succeeded = Some(succeeded);
        Some(next)
    }
}

/// A compiled bundle, ready to start.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    pub scenario_id: String,
    pub title: Option<String>,
    pub intent_type: String,
    pub payload: Value,
    /// Every agent the steps are delivered to.
    pub agents: Vec<String>,
    pub workflow: Workflow,
}

/// AXP bundle fields this subset accepts and does not use.
const IGNORED_TOP: &[&str] = &["durability", "idempotency_key", "description"];
const IGNORED_AGENT: &[&str] = &[
    "display_name",
    "delivery_mode",
    "handler",
    "description",
    "create_if_missing",
];
const IGNORED_HUMAN: &[&str] = &["display_name", "description", "handler"];
const IGNORED_STEP: &[&str] = &["tool_id", "requires_approval"];
const IGNORED_INTENT: &[&str] = &["max_delivery_attempts"];

/// Collects every problem instead of stopping at the first.
#[derive(Default)]
struct Checker {
    errors: Vec<ScenarioError>,
}

impl Checker {
    fn error(&mut self, path: &str, message: impl Into<String>) {
        self.errors.push(ScenarioError {
            path: path.to_string(),
            message: message.into(),
        });
    }

    /// `value` as an object whose keys are all `known` or `ignored`.
    fn object<'a>(
        &mut self,
        value: &'a Value,
        path: &str,
        known: &[&str],
        ignored: &[&str],
    ) -> Option<&'a Map<String, Value>> {
        let Some(fields) = value.as_object() else {
            self.error(path, "must be an object");
            return None;
        };
        for key in fields.keys() {
            if !known.contains(&key.as_str()) && !ignored.contains(&key.as_str()) {
                self.error(
                    &format!("{path}.{key}"),
                    format!("unknown field; expected one of: {}", known.join(", ")),
                );
            }
        }
        Some(fields)
    }

    fn string(
        &mut self,
        fields: &Map<String, Value>,
        key: &str,
        path: &str,
        required: bool,
    ) -> Option<String> {
        match fields.get(key) {
            Some(Value::String(text)) if !text.trim().is_empty() => Some(text.trim().to_string()),
            None | Some(Value::Null) if !required => None,
            None | Some(Value::Null) => {
                self.error(&format!("{path}.{key}"), "is required");
                None
            }
            Some(_) => {
                self.error(&format!("{path}.{key}"), "must be a non-empty string");
                None
            }
        }
    }

    fn list<'a>(&mut self, fields: &'a Map<String, Value>, key: &str, path: &str) -> &'a [Value] {
        match fields.get(key) {
            None | Some(Value::Null) => &[],
            Some(Value::Array(items)) => items,
            Some(_) => {
                self.error(&format!("{path}.{key}"), "must be a list");
                &[]
            }
        }
    }
}

fn valid_step_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        && !matches!(id, "complete" | "fail")
}

/// A role's assignees: one string or a list of reviewer identities / `team:NAME`.
fn assignees(checker: &mut Checker, value: Option<&Value>, path: &str) -> Vec<String> {
    let list: Vec<String> = match value {
        Some(Value::String(one)) => vec![one.clone()],
        Some(Value::Array(items)) if items.iter().all(Value::is_string) => items
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        None | Some(Value::Null) => {
            checker.error(
                path,
                "is required: the reviewers or team:NAME entries who play this role",
            );
            return vec![];
        }
        Some(_) => {
            checker.error(path, "must be a string or a list of strings");
            return vec![];
        }
    };
    if list.is_empty() {
        checker.error(path, "must name at least one reviewer or team");
    }
    for (index, entry) in list.iter().enumerate() {
        if let Err(err) = validate_assignee("assignee", entry) {
            let (_, message) = located(path, &err);
            checker.error(&format!("{path}[{index}]"), message);
        }
    }
    list
}

enum Role {
    Agent(String),
    Human(Vec<String>),
}

/// `on_success` / `on_failure`: a later step, `complete` or `fail`.
fn next(
    checker: &mut Checker,
    fields: &Map<String, Value>,
    key: &str,
    path: &str,
    later: &[String],
    default: Next,
) -> Next {
    match fields.get(key) {
        None | Some(Value::Null) => default,
        Some(Value::String(word)) if word == "complete" => Next::Complete,
        Some(Value::String(word)) if word == "fail" => Next::Fail,
        Some(Value::String(step)) if later.contains(step) => Next::Step(step.clone()),
        Some(Value::String(step)) => {
            checker.error(
                &format!("{path}.{key}"),
                format!("`{step}` is not a later step; name a step after this one, `complete` or `fail` (steps never loop back)"),
            );
            default
        }
        Some(_) => {
            checker.error(
                &format!("{path}.{key}"),
                "must be a step id, `complete` or `fail`",
            );
            default
        }
    }
}

/// A field error as (path under `base`, message without the field's name,
/// which the path already says).
fn located(base: &str, error: &Error) -> (String, String) {
    match error.details.get("field").and_then(Value::as_str) {
        Some(field) if !field.is_empty() => {
            let message = error
                .message
                .strip_prefix(&format!("{field}: "))
                .unwrap_or(&error.message);
            (format!("{base}.{field}"), message.to_string())
        }
        _ => (base.to_string(), error.message.clone()),
    }
}

/// Checks that a step's body creates a valid intent with a workable lifecycle,
/// exactly as the engine will create it.
fn check_body(checker: &mut Checker, body: &Value, path: &str, fields: &Map<String, Value>) {
    // Errors are reported where the bundle says it, not where the step's
    // shorthand put it in the intent body.
    let report = |checker: &mut Checker, err: &Error| {
        let (at, message) = located(path, err);
        let at = if fields.contains_key("quorum") && at == format!("{path}.human_task.quorum") {
            format!("{path}.quorum")
        } else if fields.contains_key("step_deadline_seconds")
            && at.starts_with(&format!("{path}.lifecycle.timeout"))
        {
            format!("{path}.step_deadline_seconds")
        } else {
            at
        };
        checker.error(&at, message);
    };
    let mut probe = body.clone();
    probe["correlation_id"] = json!(uuid::Uuid::nil().to_string());
    if probe["intent_type"] == "" {
        // The bundle's intent type is missing or invalid, which is reported
        // once at $.intent; a stand-in still lets every step be checked.
        probe["intent_type"] = json!("intent.scenario.step.v1");
    }
    let checker_principal = Principal {
        kind: PrincipalKind::Agent,
        identity: "agent://signoff/scenarios".to_string(),
        teams: vec![],
    };
    let request = match IntentRequest::parse(&probe, &checker_principal) {
        Ok(request) => request,
        Err(err) => {
            report(checker, &err);
            return;
        }
    };
    let outcomes = request
        .human_task
        .as_ref()
        .map(|task| task.allowed_outcomes.clone())
        .unwrap_or_default();
    let context = PolicyContext {
        started_at: Timestamp::from_datetime(time::OffsetDateTime::now_utc()),
        task_type: request.human_task.as_ref().map(|task| task.task_type),
        allowed_outcomes: &outcomes,
        defaults: None,
    };
    if let Err(err) = LifecyclePolicy::resolve(&request.timing, &context) {
        report(checker, &err);
    }
}

/// The AXP lifecycle fields a step may carry, copied onto its intent.
const STEP_TIMING_FIELDS: &[&str] = &[
    "remind_after_seconds",
    "remind_interval_seconds",
    "max_reminders",
    "escalate_to",
    "deadline_at",
    "lifecycle",
];

/// What every step's intent has in common.
struct StepShared {
    intent_type: String,
    /// Titles human steps that have none: "<scenario title>: <step id>".
    title_prefix: String,
}

/// Builds the intent body of one step.
fn step_body(
    checker: &mut Checker,
    fields: &Map<String, Value>,
    path: &str,
    role: &Role,
    shared: &StepShared,
    step_id: &str,
) -> Value {
    let title_prefix = &shared.title_prefix;
    let mut body = json!({ "intent_type": shared.intent_type });
    for field in STEP_TIMING_FIELDS {
        if let Some(value) = fields.get(*field) {
            body[*field] = value.clone();
        }
    }
    // `step_deadline_seconds` is the step's timeout (fallback: fail) unless the
    // step's own lifecycle says otherwise.
    if let Some(deadline) = fields.get("step_deadline_seconds") {
        if body.pointer("/lifecycle/timeout").is_some() {
            checker.error(
                &format!("{path}.step_deadline_seconds"),
                "give either step_deadline_seconds or lifecycle.timeout, not both",
            );
        } else if body["lifecycle"].is_object() || body["lifecycle"].is_null() {
            // (A lifecycle that is not an object is left for check_body to report.)
            body["lifecycle"]["timeout"] = json!({ "after_seconds": deadline, "fallback": "fail" });
        }
    }
    match role {
        Role::Agent(address) => {
            body["to_agent"] = json!(address);
            for human_only in ["human_task", "quorum"] {
                if fields.contains_key(human_only) {
                    checker.error(
                        &format!("{path}.{human_only}"),
                        "only human steps have this; this step is assigned to an agent",
                    );
                }
            }
        }
        Role::Human(role_assignees) => {
            let mut task = match fields.get("human_task") {
                None | Some(Value::Null) => Map::new(),
                Some(Value::Object(task)) => task.clone(),
                Some(_) => {
                    checker.error(&format!("{path}.human_task"), "must be an object");
                    Map::new()
                }
            };
            task.entry("title").or_insert_with(|| {
                let described = fields.get("description").and_then(Value::as_str);
                json!(
                    described.map_or_else(|| format!("{title_prefix}: {step_id}"), str::to_string)
                )
            });
            task.entry("assignees")
                .or_insert_with(|| json!(role_assignees));
            if let Some(quorum) = fields.get("quorum") {
                task.insert("quorum".into(), quorum.clone());
            }
            body["human_task"] = Value::Object(task);
        }
    }
    body
}

/// Compiles a bundle, or lists every problem in it.
pub fn compile(bundle: &Value) -> Result<Scenario, Vec<ScenarioError>> {
    let mut checker = Checker::default();
    let known_top = [
        "scenario_id",
        "title",
        "agents",
        "humans",
        "workflow",
        "workflow_steps",
        "intent",
    ];
    let Some(top) = checker.object(bundle, "$", &known_top, IGNORED_TOP) else {
        return Err(checker.errors);
    };
    let scenario_id = checker
        .string(top, "scenario_id", "$", true)
        .unwrap_or_default();
    if scenario_id.chars().count() > 128 {
        checker.error("$.scenario_id", "must be at most 128 characters");
    }
    let title = checker.string(top, "title", "$", false);

    // The intent every step works on.
    let (intent_type, payload) = match top.get("intent") {
        None => {
            checker.error(
                "$.intent",
                "is required: {\"type\": \"intent.….v1\", \"payload\": {…}}",
            );
            (String::new(), json!({}))
        }
        Some(intent) => {
            match checker.object(intent, "$.intent", &["type", "payload"], IGNORED_INTENT) {
                None => (String::new(), json!({})),
                Some(fields) => {
                    let mut intent_type = checker
                        .string(fields, "type", "$.intent", true)
                        .unwrap_or_default();
                    if !intent_type.is_empty() && !is_valid_intent_type(&intent_type) {
                        checker.error(
                        "$.intent.type",
                        format!("`{intent_type}` must look like `intent.purchase.approval.v1` (lowercase dotted names ending in .vN)"),
                    );
                        // Reported once here, not again for every step.
                        intent_type.clear();
                    }
                    let payload = match fields.get("payload") {
                        None | Some(Value::Null) => json!({}),
                        Some(Value::Object(payload)) => Value::Object(payload.clone()),
                        Some(_) => {
                            checker.error("$.intent.payload", "must be an object");
                            json!({})
                        }
                    };
                    (intent_type, payload)
                }
            }
        }
    };

    // Roles: agents and humans share one namespace.
    let mut roles: Vec<(String, Role)> = Vec::new();
    let mut agents = Vec::new();
    for (index, agent) in checker.list(top, "agents", "$").to_vec().iter().enumerate() {
        let path = format!("$.agents[{index}]");
        let Some(fields) = checker.object(agent, &path, &["role", "address"], IGNORED_AGENT) else {
            continue;
        };
        let role = checker.string(fields, "role", &path, true);
        let address = checker
            .string(fields, "address", &path, true)
            .map(|address| {
                if address.starts_with(super::principal::AGENT_PREFIX) {
                    address
                } else {
                    format!("{}{address}", super::principal::AGENT_PREFIX)
                }
            });
        if let Some(address) = &address
            && let Err(err) = validate_agent_address("address", address)
        {
            let (_, message) = located(&path, &err);
            checker.error(&format!("{path}.address"), message);
        }
        if let (Some(role), Some(address)) = (role, address) {
            agents.push(address.clone());
            roles.push((role, Role::Agent(address)));
        }
    }
    for (index, human) in checker.list(top, "humans", "$").to_vec().iter().enumerate() {
        let path = format!("$.humans[{index}]");
        let Some(fields) = checker.object(human, &path, &["role", "assignees"], IGNORED_HUMAN)
        else {
            continue;
        };
        let role = checker.string(fields, "role", &path, true);
        let list = assignees(
            &mut checker,
            fields.get("assignees"),
            &format!("{path}.assignees"),
        );
        if let Some(role) = role {
            roles.push((role, Role::Human(list)));
        }
    }
    let mut seen_roles = HashSet::new();
    for (role, _) in &roles {
        if !seen_roles.insert(role.clone()) {
            checker.error("$", format!("the role `{role}` is defined twice"));
        }
    }

    // The steps, from `workflow.steps` or the flat `workflow_steps`.
    let (steps, steps_path) = match (top.get("workflow"), top.get("workflow_steps")) {
        (Some(_), Some(_)) => {
            checker.error(
                "$",
                "give either workflow.steps or workflow_steps, not both",
            );
            (vec![], String::new())
        }
        (Some(workflow), None) => match checker.object(workflow, "$.workflow", &["steps"], &[]) {
            Some(fields) => (
                checker.list(fields, "steps", "$.workflow").to_vec(),
                "$.workflow.steps".to_string(),
            ),
            None => (vec![], String::new()),
        },
        (None, Some(Value::Array(steps))) => (steps.clone(), "$.workflow_steps".to_string()),
        (None, Some(_)) => {
            checker.error("$.workflow_steps", "must be a list");
            (vec![], String::new())
        }
        (None, None) => {
            checker.error("$.workflow", "is required: {\"steps\": [...]}");
            (vec![], String::new())
        }
    };
    if steps.is_empty() && !steps_path.is_empty() {
        checker.error(&steps_path, "must list at least one step");
    }
    if steps.len() > MAX_STEPS {
        checker.error(&steps_path, format!("must list at most {MAX_STEPS} steps"));
    }
    let step_ids: Vec<String> = steps
        .iter()
        .map(|step| {
            step.get("step_id")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    let shared = StepShared {
        intent_type: intent_type.clone(),
        title_prefix: title.clone().unwrap_or_else(|| scenario_id.clone()),
    };
    let known_step: Vec<&str> = [
        "step_id",
        "assigned_to",
        "human_task",
        "quorum",
        "step_deadline_seconds",
        "on_success",
        "on_failure",
        "description",
        "runtime_type",
    ]
    .into_iter()
    .chain(STEP_TIMING_FIELDS.iter().copied())
    .collect();
    let mut plans = Vec::new();
    for (index, step) in steps.iter().enumerate() {
        let path = format!("{steps_path}[{index}]");
        let Some(fields) = checker.object(step, &path, &known_step, IGNORED_STEP) else {
            continue;
        };
        let step_id = checker
            .string(fields, "step_id", &path, true)
            .unwrap_or_default();
        if !step_id.is_empty() && !valid_step_id(&step_id) {
            checker.error(
                &format!("{path}.step_id"),
                "must be 1-64 letters, digits, `_`, `-` or `.`, and not `complete` or `fail`",
            );
        }
        if step_ids.iter().filter(|id| **id == step_id).count() > 1 && !step_id.is_empty() {
            checker.error(
                &format!("{path}.step_id"),
                format!("`{step_id}` is used by more than one step"),
            );
        }
        if let Some(kind) = fields.get("runtime_type").and_then(Value::as_str)
            && !matches!(kind, "human" | "agent")
        {
            checker.error(
                &format!("{path}.runtime_type"),
                format!(
                    "`{kind}` steps are not supported; a step is assigned to an agent or to humans"
                ),
            );
        }
        let later = &step_ids[index + 1..];
        let default_success = match step_ids.get(index + 1) {
            Some(following) => Next::Step(following.clone()),
            None => Next::Complete,
        };
        let on_success = next(
            &mut checker,
            fields,
            "on_success",
            &path,
            later,
            default_success,
        );
        let on_failure = next(&mut checker, fields, "on_failure", &path, later, Next::Fail);
        let assigned_to = checker.string(fields, "assigned_to", &path, true);
        let Some(role) = assigned_to
            .as_ref()
            .and_then(|name| roles.iter().find(|(role, _)| role == name))
        else {
            if let Some(name) = assigned_to {
                checker.error(
                    &format!("{path}.assigned_to"),
                    format!("`{name}` is not a role of agents or humans in this bundle"),
                );
            }
            continue;
        };
        let body = step_body(&mut checker, fields, &path, &role.1, &shared, &step_id);
        check_body(&mut checker, &body, &path, fields);
        plans.push(StepPlan {
            step_id,
            kind: match role.1 {
                Role::Agent(_) => "agent".to_string(),
                Role::Human(_) => "human".to_string(),
            },
            body,
            on_success,
            on_failure,
        });
    }
    if !checker.errors.is_empty() {
        return Err(checker.errors);
    }
    agents.sort();
    agents.dedup();
    Ok(Scenario {
        scenario_id: scenario_id.clone(),
        title: title.clone(),
        intent_type,
        payload,
        agents,
        workflow: Workflow {
            scenario_id,
            title,
            steps: plans,
            runs: vec![],
        },
    })
}

/// What `POST /v1/scenarios/validate` answers.
pub fn validation_report(bundle: &Value) -> Value {
    match compile(bundle) {
        Ok(scenario) => json!({
            "ok": true,
            "valid": true,
            "errors": [],
            "scenario_id": scenario.scenario_id,
            "steps": scenario.workflow.steps.iter().map(|step| &step.step_id).collect::<Vec<_>>(),
        }),
        Err(errors) => json!({ "ok": true, "valid": false, "errors": errors }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain() -> Value {
        json!({
            "scenario_id": "purchase.approval.v1",
            "title": "Buy 40 laptops",
            "humans": [
                {"role": "manager", "assignees": "mgr@example.com"},
                {"role": "finance", "assignees": ["fin@example.com", "team:finance"], "display_name": "Finance"},
            ],
            "workflow": {"steps": [
                {"step_id": "manager", "assigned_to": "manager", "human_task": {"title": "Approve the purchase?"}},
                {"step_id": "finance", "assigned_to": "finance", "step_deadline_seconds": 3600, "tool_id": "x"},
            ]},
            "intent": {"type": "intent.purchase.approval.v1", "payload": {"amount": 52000}},
        })
    }

    #[test]
    fn a_chain_compiles_into_steps_that_lead_to_each_other() {
        let scenario = compile(&chain()).unwrap();
        let steps = &scenario.workflow.steps;
        assert_eq!(steps.len(), 2);
        assert_eq!(steps[0].on_success, Next::Step("finance".into()));
        assert_eq!(steps[0].on_failure, Next::Fail);
        assert_eq!(steps[1].on_success, Next::Complete);
        assert_eq!(
            steps[0].body["human_task"]["assignees"],
            json!(["mgr@example.com"])
        );
        assert_eq!(
            steps[1].body["human_task"]["title"],
            "Buy 40 laptops: finance"
        );
        assert_eq!(
            steps[1].body["lifecycle"]["timeout"],
            json!({"after_seconds": 3600, "fallback": "fail"})
        );
        assert!(
            steps[0].body.get("payload").is_none(),
            "the payload is stored once"
        );
    }

    #[test]
    fn agent_steps_go_to_the_agents_address() {
        let mut bundle = chain();
        bundle["agents"] =
            json!([{"role": "checker", "address": "budget-checker", "delivery_mode": "stream"}]);
        bundle["workflow"]["steps"].as_array_mut().unwrap().insert(
            0,
            json!({"step_id": "check", "assigned_to": "checker", "step_deadline_seconds": 60}),
        );
        let scenario = compile(&bundle).unwrap();
        assert_eq!(scenario.agents, ["agent://budget-checker"]);
        assert_eq!(
            scenario.workflow.steps[0].body["to_agent"],
            "agent://budget-checker"
        );
        assert_eq!(scenario.workflow.steps[0].kind, "agent");
    }

    #[test]
    fn every_error_is_listed_with_its_path() {
        let bundle = json!({
            "scenario_id": "",
            "humans": [{"role": "manager"}, {"role": "board", "assignees": ["not a reviewer"]}],
            "workflow": {"steps": [
                {"step_id": "a", "assigned_to": "manager", "on_success": "zzz"},
                {"step_id": "b", "assigned_to": "nobody"},
                {"step_id": "a", "assigned_to": "board", "human_task": {"task_type": "vote"}, "colour": "red"},
            ]},
            "intent": {"type": "Not A Type"},
        });
        let errors = compile(&bundle).unwrap_err();
        let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
        for expected in [
            "$.scenario_id",
            "$.humans[0].assignees",
            "$.humans[1].assignees[0]",
            "$.workflow.steps[0].on_success",
            "$.workflow.steps[1].assigned_to",
            "$.workflow.steps[2].step_id",
            "$.workflow.steps[2].colour",
            "$.workflow.steps[2].human_task.task_type",
            "$.intent.type",
        ] {
            assert!(
                paths.contains(&expected),
                "{expected} missing from {errors:#?}"
            );
        }
    }

    #[test]
    fn step_shorthands_are_reported_where_they_were_written() {
        let mut bundle = chain();
        bundle["workflow"]["steps"][0]["step_deadline_seconds"] = json!(-5);
        bundle["workflow"]["steps"][1]["step_deadline_seconds"] = json!(60);
        bundle["workflow"]["steps"][1]["lifecycle"] = json!([1]);
        let errors = compile(&bundle).unwrap_err();
        let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "$.workflow.steps[0].step_deadline_seconds",
                "$.workflow.steps[1].lifecycle"
            ],
            "{errors:#?}"
        );
    }

    #[test]
    fn quorums_are_checked_against_their_assignees() {
        let mut bundle = chain();
        bundle["workflow"]["steps"][1]["quorum"] = json!(5);
        let errors = compile(&bundle).unwrap_err();
        assert!(
            errors
                .iter()
                .any(|e| e.path == "$.workflow.steps[1].quorum"),
            "{errors:#?}"
        );
    }

    #[test]
    fn a_step_runs_once_and_leads_by_its_outcome() {
        let mut workflow = compile(&chain()).unwrap().workflow;
        let at = Timestamp::parse("2026-11-21T12:00:00Z").unwrap();
        workflow.runs.push(StepRun {
            step_id: "manager".into(),
            intent_id: "i1".into(),
            started_at: at,
            ended_at: None,
            status: None,
            outcome: None,
            decided_by: None,
            succeeded: None,
        });
        let rejected = StepEnd {
            intent_id: "i1".into(),
            status: Status::Completed,
            outcome: Some("rejected".into()),
            decided_by: Some("mgr@example.com".into()),
            withdrawn: false,
        };
        assert_eq!(
            workflow.finish_step("manager", &rejected, at),
            Some(Next::Fail)
        );
        assert_eq!(workflow.runs[0].succeeded, Some(false));
        assert_eq!(
            workflow.finish_step("manager", &rejected, at),
            None,
            "reported once"
        );
    }
}
