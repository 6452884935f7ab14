//! Human tasks: the eight task types, their default outcomes, and the rules that a
//! reviewer's decision (`task_result`) must satisfy.

use std::collections::HashSet;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::error::{Error, Result};
use super::principal::validate_assignee;
use super::time::Timestamp;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskType {
    Approval,
    Review,
    Form,
    Override,
    Confirmation,
    Assignment,
    Clarification,
    ManualAction,
}

impl TaskType {
    pub const ALL: [TaskType; 8] = [
        TaskType::Approval,
        TaskType::Review,
        TaskType::Form,
        TaskType::Override,
        TaskType::Confirmation,
        TaskType::Assignment,
        TaskType::Clarification,
        TaskType::ManualAction,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            TaskType::Approval => "approval",
            TaskType::Review => "review",
            TaskType::Form => "form",
            TaskType::Override => "override",
            TaskType::Confirmation => "confirmation",
            TaskType::Assignment => "assignment",
            TaskType::Clarification => "clarification",
            TaskType::ManualAction => "manual_action",
        }
    }

    pub fn parse(text: &str) -> Result<TaskType> {
        TaskType::ALL
            .into_iter()
            .find(|task_type| task_type.as_str() == text)
            .ok_or_else(|| {
                let names: Vec<&str> = TaskType::ALL.iter().map(TaskType::as_str).collect();
                Error::invalid(
                    "unknown_task_type",
                    format!(
                        "human_task.task_type `{text}` is not one of the eight task types: {}",
                        names.join(", ")
                    ),
                )
                .with_details(json!({ "field": "human_task.task_type", "allowed": names }))
            })
    }

    /// Used when the agent does not list `allowed_outcomes`.
    pub fn default_outcomes(&self) -> &'static [&'static str] {
        match self {
            TaskType::Approval => &["approved", "rejected"],
            TaskType::Review => &["approved", "changes_requested", "rejected"],
            TaskType::Form => &["submitted", "declined"],
            TaskType::Override => &["override_approved", "rejected"],
            TaskType::Confirmation => &["confirmed", "denied"],
            TaskType::Assignment => &["assigned", "declined"],
            TaskType::Clarification => &["provided", "declined"],
            TaskType::ManualAction => &["completed", "failed"],
        }
    }

    /// Outcomes for which this type always wants a comment, whatever `required_comment` says.
    fn outcome_needs_comment(&self, outcome: &str) -> bool {
        match self {
            TaskType::Review => matches!(outcome, "changes_requested" | "rejected"),
            TaskType::Clarification => outcome == "provided",
            _ => false,
        }
    }
}

impl fmt::Display for TaskType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether an outcome says yes, no, or neither. It decides the `approved` flag the
/// agent sees, which inbox button maps to which outcome, and the exit code of
/// `signoff ask --wait`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Approving,
    Rejecting,
    Neutral,
}

pub fn verdict_of(outcome: &str) -> Verdict {
    match outcome {
        "approved" | "override_approved" | "confirmed" | "submitted" | "assigned" | "provided"
        | "completed" | "accepted" | "yes" => Verdict::Approving,
        "rejected" | "changes_requested" | "denied" | "declined" | "failed" | "no" => {
            Verdict::Rejecting
        }
        _ => Verdict::Neutral,
    }
}

/// A human task as stored: the agent's request with every default filled in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HumanTask {
    pub title: String,
    #[serde(default)]
    pub description: Option<String>,
    pub task_type: TaskType,
    pub allowed_outcomes: Vec<String>,
    #[serde(default)]
    pub required_comment: bool,
    /// The assignees the agent asked for (the intent holds the current ones).
    #[serde(default)]
    pub assignees: Vec<String>,
    #[serde(default)]
    pub evidence_required: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub form_schema: Option<Value>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notify_email: Vec<String>,
    /// [ext] n-of-m: the task completes when this many assignees approve, and
    /// is rejected as soon as that many approvals are no longer possible.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quorum: Option<u32>,
}

/// A field that takes one string or a list of them.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(item) => vec![item],
            OneOrMany::Many(items) => items,
        }
    }
}

#[derive(Deserialize)]
struct HumanTaskInput {
    title: Option<String>,
    description: Option<String>,
    task_type: Option<String>,
    allowed_outcomes: Option<Vec<String>>,
    required_comment: Option<bool>,
    assignees: Option<Vec<String>>,
    evidence_required: Option<bool>,
    form_schema: Option<Value>,
    notify_email: Option<OneOrMany>,
    quorum: Option<u32>,
}

const MAX_TITLE_CHARS: usize = 255;
const MAX_DESCRIPTION_CHARS: usize = 2000;
const MAX_OUTCOMES: usize = 20;
const MAX_ASSIGNEES: usize = 20;
const MAX_OUTCOME_CHARS: usize = 64;

/// Deserialises `value` as `T`, naming the offending field (under `prefix`) on failure.
pub fn parse_fields<T: serde::de::DeserializeOwned>(prefix: &str, value: &Value) -> Result<T> {
    serde_path_to_error::deserialize(value).map_err(|err| {
        let message = err.inner().to_string();
        // serde reports a missing field at its parent's path; name the field itself.
        let missing = message
            .strip_prefix("missing field `")
            .and_then(|rest| rest.split('`').next());
        let mut path: Vec<String> = Vec::new();
        if !prefix.is_empty() {
            path.push(prefix.to_string());
        }
        let inner = err.path().to_string();
        if inner != "." {
            path.push(inner);
        }
        if let Some(name) = missing {
            path.push(name.to_string());
        }
        let message = if missing.is_some() {
            "is required".to_string()
        } else {
            message
        };
        Error::invalid_field(&path.join("."), message)
    })
}

impl HumanTask {
    /// Validates an agent's `human_task` object and fills in the defaults.
    pub fn from_request(value: &Value) -> Result<HumanTask> {
        if !value.is_object() {
            return Err(Error::invalid_field("human_task", "must be an object"));
        }
        let input: HumanTaskInput = parse_fields("human_task", value)?;

        let title = input
            .title
            .map(|t| t.trim().to_string())
            .unwrap_or_default();
        if title.is_empty() {
            return Err(Error::invalid_field("human_task.title", "is required"));
        }
        if title.chars().count() > MAX_TITLE_CHARS {
            return Err(Error::invalid_field(
                "human_task.title",
                format!("must be at most {MAX_TITLE_CHARS} characters"),
            ));
        }
        let description = input.description.filter(|d| !d.trim().is_empty());
        if description
            .as_ref()
            .is_some_and(|d| d.chars().count() > MAX_DESCRIPTION_CHARS)
        {
            return Err(Error::invalid_field(
                "human_task.description",
                format!("must be at most {MAX_DESCRIPTION_CHARS} characters"),
            ));
        }

        let task_type = match (&input.task_type, &input.form_schema) {
            (Some(name), _) => TaskType::parse(name)?,
            (None, Some(_)) => TaskType::Form,
            (None, None) => TaskType::Approval,
        };

        let allowed_outcomes = match input.allowed_outcomes {
            None => task_type
                .default_outcomes()
                .iter()
                .map(|o| o.to_string())
                .collect(),
            Some(outcomes) => validate_outcomes(outcomes)?,
        };

        let assignees = match input.assignees {
            None => vec![],
            Some(list) => validate_assignee_list("human_task.assignees", list)?,
        };

        let form_schema = match input.form_schema {
            None | Some(Value::Null) => None,
            Some(schema) => Some(validate_form_schema(schema)?),
        };

        let notify_email = match input.notify_email {
            None => vec![],
            Some(addresses) => addresses.into_vec(),
        };
        for address in &notify_email {
            if !looks_like_email(address) {
                return Err(Error::invalid_field(
                    "human_task.notify_email",
                    format!("`{address}` is not an email address"),
                ));
            }
        }

        if let Some(quorum) = input.quorum {
            validate_quorum(quorum, &assignees, &allowed_outcomes)?;
        }

        Ok(HumanTask {
            title,
            description,
            task_type,
            allowed_outcomes,
            required_comment: input
                .required_comment
                .unwrap_or(task_type == TaskType::Override),
            assignees,
            evidence_required: input.evidence_required.unwrap_or(false),
            form_schema,
            notify_email,
            quorum: input.quorum,
        })
    }

    /// The first allowed outcome with the given verdict: what "approve" or "reject"
    /// means for this task when a client only says yes or no.
    pub fn outcome_with_verdict(&self, verdict: Verdict) -> Option<&str> {
        self.allowed_outcomes
            .iter()
            .map(String::as_str)
            .find(|outcome| verdict_of(outcome) == verdict)
    }

    /// What a decision with `outcome` must carry, so clients can ask for it up
    /// front; [`HumanTask::validate_result`] enforces the same.
    pub fn needs(&self, outcome: &str) -> OutcomeNeeds {
        let saying_no = verdict_of(outcome) == Verdict::Rejecting;
        OutcomeNeeds {
            comment: self.required_comment || self.task_type.outcome_needs_comment(outcome),
            evidence: self.evidence_required && !saying_no,
            assignee: outcome == "assigned",
            form: self.form_schema.is_some() && !saying_no,
        }
    }

    /// The outcome a command-line verb means for this task (wire-contract §7):
    /// `approve` and `reject` take the task's own yes or no (`override_approved`,
    /// `denied`...); the others name one outcome, which the task must allow.
    pub fn outcome_for(&self, verb: DecisionVerb) -> Result<String> {
        let named = verb.outcome();
        if self.allowed_outcomes.iter().any(|outcome| outcome == named) {
            return Ok(named.to_string());
        }
        let by_verdict = match verb {
            DecisionVerb::Approve => self.outcome_with_verdict(Verdict::Approving),
            DecisionVerb::Reject => self.outcome_with_verdict(Verdict::Rejecting),
            _ => None,
        };
        by_verdict.map(str::to_string).ok_or_else(|| {
            Error::invalid(
                "outcome_not_allowed",
                format!(
                    "`{}` means outcome `{named}`, which this {} task does not allow (allowed: {}); use `submit --outcome`",
                    verb.as_str(),
                    self.task_type,
                    self.allowed_outcomes.join(", ")
                ),
            )
            .with_details(json!({ "allowed_outcomes": self.allowed_outcomes }))
        })
    }

    /// Checks a reviewer's decision against every rule of this task and returns it
    /// with form fields coerced to their schema types.
    pub fn validate_result(&self, input: TaskResultInput) -> Result<ValidDecision> {
        let TaskResultInput {
            outcome,
            comment,
            mut data,
        } = input;
        if !self.allowed_outcomes.contains(&outcome) {
            return Err(Error::invalid(
                "outcome_not_allowed",
                format!(
                    "outcome `{outcome}` is not allowed for this {} task; allowed: {}",
                    self.task_type,
                    self.allowed_outcomes.join(", ")
                ),
            )
            .with_details(json!({ "field": "task_result.outcome", "allowed_outcomes": self.allowed_outcomes })));
        }
        let needs = self.needs(&outcome);
        let comment = comment.filter(|c| !c.trim().is_empty());
        if comment.is_none() && needs.comment {
            let why = if self.task_type == TaskType::Override {
                "an override needs a written justification".to_string()
            } else {
                format!(
                    "outcome `{outcome}` needs a comment on this {} task",
                    self.task_type
                )
            };
            return Err(Error::invalid("comment_required", why)
                .with_details(json!({ "field": "task_result.comment" })));
        }
        if needs.evidence && !data.get("evidence").is_some_and(is_present) {
            return Err(Error::invalid(
                "evidence_required",
                format!("outcome `{outcome}` needs evidence in data.evidence"),
            )
            .with_details(json!({ "field": "task_result.data.evidence" })));
        }
        if needs.assignee {
            let assignee = data
                .get("assignee")
                .and_then(Value::as_str)
                .map(str::trim)
                .unwrap_or_default();
            if assignee.is_empty() {
                return Err(Error::invalid(
                    "assignee_required",
                    "outcome `assigned` needs data.assignee",
                )
                .with_details(json!({ "field": "task_result.data.assignee" })));
            }
            validate_assignee("task_result.data.assignee", assignee)?;
        }
        if let Some(schema) = self.form_schema.as_ref().filter(|_| needs.form) {
            coerce_to_schema(&mut data, schema);
            check_form(schema, &data)?;
        }
        Ok(ValidDecision {
            outcome,
            comment,
            data,
        })
    }
}

/// A quorum counts people: it needs named reviewers (not teams, whose size the
/// server does not know), at least as many as the quorum, an outcome that
/// approves (or it could never be reached) and one that rejects (what the task
/// ends with once approval is out of reach).
fn validate_quorum(quorum: u32, assignees: &[String], allowed_outcomes: &[String]) -> Result<()> {
    for (verdict, word) in [
        (Verdict::Approving, "approves"),
        (Verdict::Rejecting, "rejects"),
    ] {
        if !allowed_outcomes
            .iter()
            .any(|outcome| verdict_of(outcome) == verdict)
        {
            return Err(Error::invalid_field(
                "human_task.quorum",
                format!(
                    "a quorum needs an outcome that approves and one that rejects; none of ({}) {word}",
                    allowed_outcomes.join(", ")
                ),
            ));
        }
    }
    let distinct: HashSet<String> = assignees.iter().map(|a| a.to_lowercase()).collect();
    if distinct.len() != assignees.len() {
        return Err(Error::invalid_field(
            "human_task.quorum",
            "a quorum counts people: each assignee must be listed once",
        ));
    }
    if let Some(team) = assignees
        .iter()
        .find(|a| a.starts_with(super::principal::TEAM_PREFIX))
    {
        return Err(Error::invalid_field(
            "human_task.quorum",
            format!("a quorum counts people: list reviewers by name, not `{team}`"),
        ));
    }
    if quorum == 0 || quorum as usize > assignees.len() {
        return Err(Error::invalid_field(
            "human_task.quorum",
            format!(
                "must be between 1 and the number of assignees ({}), not {quorum}",
                assignees.len()
            ),
        ));
    }
    Ok(())
}

fn validate_outcomes(outcomes: Vec<String>) -> Result<Vec<String>> {
    if outcomes.is_empty() || outcomes.len() > MAX_OUTCOMES {
        return Err(Error::invalid_field(
            "human_task.allowed_outcomes",
            format!("must list 1-{MAX_OUTCOMES} outcomes"),
        ));
    }
    let mut seen = Vec::with_capacity(outcomes.len());
    for outcome in outcomes {
        let outcome = outcome.trim().to_string();
        let valid = !outcome.is_empty()
            && outcome.chars().count() <= MAX_OUTCOME_CHARS
            && !outcome.chars().any(char::is_control);
        if !valid {
            return Err(Error::invalid_field(
                "human_task.allowed_outcomes",
                format!("`{outcome}` must be 1-{MAX_OUTCOME_CHARS} printable characters"),
            ));
        }
        if seen.contains(&outcome) {
            return Err(Error::invalid_field(
                "human_task.allowed_outcomes",
                format!("`{outcome}` is listed twice"),
            ));
        }
        seen.push(outcome);
    }
    Ok(seen)
}

/// Validates a list of reviewer identities or `team:NAME` entries.
pub fn validate_assignee_list(field: &str, list: Vec<String>) -> Result<Vec<String>> {
    if list.is_empty() || list.len() > MAX_ASSIGNEES {
        return Err(Error::invalid_field(
            field,
            format!("must list 1-{MAX_ASSIGNEES} reviewers or teams"),
        ));
    }
    let mut unique = Vec::with_capacity(list.len());
    for entry in list {
        let entry = entry.trim().to_string();
        validate_assignee(field, &entry)?;
        if !unique.contains(&entry) {
            unique.push(entry);
        }
    }
    Ok(unique)
}

fn validate_form_schema(schema: Value) -> Result<Value> {
    if !schema.is_object() {
        return Err(Error::invalid_field(
            "human_task.form_schema",
            "must be a JSON Schema object",
        ));
    }
    jsonschema::validator_for(&schema).map_err(|err| {
        Error::invalid_field(
            "human_task.form_schema",
            format!("is not a valid JSON Schema: {err}"),
        )
    })?;
    Ok(schema)
}

fn looks_like_email(address: &str) -> bool {
    let mut parts = address.split('@');
    matches!(
        (parts.next(), parts.next(), parts.next()),
        (Some(local), Some(domain), None)
            if !local.is_empty() && domain.contains('.') && !address.contains(char::is_whitespace)
    )
}

fn is_present(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::String(text) => !text.trim().is_empty(),
        Value::Array(items) => !items.is_empty(),
        Value::Object(fields) => !fields.is_empty(),
        _ => true,
    }
}

/// The JSON types a schema property accepts (`type` may be a string or a list).
fn declared_types(property: &Value) -> Vec<&str> {
    match property.get("type") {
        Some(Value::String(name)) => vec![name.as_str()],
        Some(Value::Array(names)) => names.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    }
}

/// Clients that flatten fields (the Go CLI, `--data k=v`) send every value as a
/// string. Convert such strings to the type the schema declares; anything that does
/// not convert is left alone so the schema reports it.
fn coerce_to_schema(data: &mut Map<String, Value>, schema: &Value) {
    let Some(properties) = schema.get("properties").and_then(Value::as_object) else {
        return;
    };
    for (name, value) in data.iter_mut() {
        let Value::String(text) = value else { continue };
        let Some(property) = properties.get(name) else {
            continue;
        };
        let types = declared_types(property);
        if types.is_empty() || types.contains(&"string") {
            continue;
        }
        if let Some(converted) = types.iter().find_map(|kind| coerce_text(text, kind)) {
            *value = converted;
        }
    }
}

fn coerce_text(text: &str, kind: &str) -> Option<Value> {
    let trimmed = text.trim();
    match kind {
        "boolean" => match trimmed.to_ascii_lowercase().as_str() {
            "true" => Some(Value::Bool(true)),
            "false" => Some(Value::Bool(false)),
            _ => None,
        },
        "integer" => trimmed.parse::<i64>().ok().map(Value::from),
        "number" => match trimmed.parse::<i64>() {
            Ok(whole) => Some(Value::from(whole)),
            Err(_) => trimmed
                .parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
                .map(Value::Number),
        },
        "null" => (trimmed == "null").then_some(Value::Null),
        "array" | "object" => serde_json::from_str::<Value>(trimmed)
            .ok()
            .filter(|parsed| parsed.is_array() == (kind == "array") && !parsed.is_string()),
        _ => None,
    }
}

fn check_form(schema: &Value, data: &Map<String, Value>) -> Result<()> {
    let validator = jsonschema::validator_for(schema)
        .map_err(|err| Error::internal(format!("stored form schema no longer compiles: {err}")))?;
    let instance = Value::Object(data.clone());
    let errors: Vec<Value> = validator
        .iter_errors(&instance)
        .map(|err| {
            let path = err.instance_path().to_string();
            json!({ "path": if path.is_empty() { "/".to_string() } else { path }, "message": err.to_string() })
        })
        .collect();
    if errors.is_empty() {
        return Ok(());
    }
    let summary: Vec<String> = errors
        .iter()
        .map(|e| {
            format!(
                "{} {}",
                e["path"].as_str().unwrap_or("/"),
                e["message"].as_str().unwrap_or("")
            )
        })
        .collect();
    Err(Error::invalid(
        "form_invalid",
        format!(
            "the form data does not match the task's schema: {}",
            summary.join("; ")
        ),
    )
    .with_details(json!({ "field": "task_result.data", "errors": errors })))
}

/// A decision as submitted, before validation. Form fields may arrive nested under
/// `data` or flattened next to `outcome`.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskResultInput {
    pub outcome: String,
    pub comment: Option<String>,
    pub data: Map<String, Value>,
}

impl TaskResultInput {
    pub fn parse(value: &Value) -> Result<TaskResultInput> {
        let Some(fields) = value.as_object() else {
            return Err(Error::invalid_field("task_result", "must be an object"));
        };
        let outcome = match fields.get("outcome") {
            Some(Value::String(outcome)) if !outcome.trim().is_empty() => {
                outcome.trim().to_string()
            }
            Some(Value::String(_)) | None | Some(Value::Null) => {
                return Err(Error::invalid_field("task_result.outcome", "is required"));
            }
            Some(_) => {
                return Err(Error::invalid_field(
                    "task_result.outcome",
                    "must be a string",
                ));
            }
        };
        let comment = match fields.get("comment") {
            None | Some(Value::Null) => None,
            Some(Value::String(comment)) => Some(comment.clone()),
            Some(_) => {
                return Err(Error::invalid_field(
                    "task_result.comment",
                    "must be a string",
                ));
            }
        };
        let mut data = match fields.get("data") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(data)) => data.clone(),
            Some(_) => {
                return Err(Error::invalid_field(
                    "task_result.data",
                    "must be an object",
                ));
            }
        };
        for (name, value) in fields {
            if !matches!(name.as_str(), "outcome" | "comment" | "data") {
                data.entry(name.clone()).or_insert_with(|| value.clone());
            }
        }
        Ok(TaskResultInput {
            outcome,
            comment,
            data,
        })
    }
}

/// What a decision with one outcome must carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutcomeNeeds {
    pub comment: bool,
    /// `data.evidence`.
    pub evidence: bool,
    /// `data.assignee`.
    pub assignee: bool,
    /// The form's fields, checked against `form_schema`.
    pub form: bool,
}

/// The verbs of `signoff tasks` (and the Go CLI's `tasks`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecisionVerb {
    Approve,
    Reject,
    Confirm,
    Complete,
    Assign,
}

impl DecisionVerb {
    pub const ALL: [DecisionVerb; 5] = [
        DecisionVerb::Approve,
        DecisionVerb::Reject,
        DecisionVerb::Confirm,
        DecisionVerb::Complete,
        DecisionVerb::Assign,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            DecisionVerb::Approve => "approve",
            DecisionVerb::Reject => "reject",
            DecisionVerb::Confirm => "confirm",
            DecisionVerb::Complete => "complete",
            DecisionVerb::Assign => "assign",
        }
    }

    /// The outcome the verb names.
    pub fn outcome(&self) -> &'static str {
        match self {
            DecisionVerb::Approve => "approved",
            DecisionVerb::Reject => "rejected",
            DecisionVerb::Confirm => "confirmed",
            DecisionVerb::Complete => "completed",
            DecisionVerb::Assign => "assigned",
        }
    }
}

/// One assignee's vote on a quorum task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Vote {
    pub voter: String,
    pub outcome: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    pub at: Timestamp,
}

/// Where the votes of a quorum task stand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    pub approvals: u32,
    /// Votes for any outcome that does not approve.
    pub others: u32,
    pub needed: u32,
    /// Everyone who may vote: those who did and those who still may.
    pub voters: u32,
}

impl Tally {
    pub fn of(needed: u32, voters: usize, votes: &[Vote]) -> Tally {
        let approvals = votes
            .iter()
            .filter(|vote| verdict_of(&vote.outcome) == Verdict::Approving)
            .count() as u32;
        Tally {
            approvals,
            others: votes.len() as u32 - approvals,
            needed,
            voters: voters as u32,
        }
    }

    /// The verdict once it is settled: enough approvals, or so many other votes
    /// that the voters left could no longer reach the quorum.
    pub fn settled(&self) -> Option<Verdict> {
        let still_open = self.voters.saturating_sub(self.approvals + self.others);
        if self.approvals >= self.needed {
            Some(Verdict::Approving)
        } else if self.approvals + still_open < self.needed {
            Some(Verdict::Rejecting)
        } else {
            None
        }
    }
}

/// A decision that passed every rule of its task.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidDecision {
    pub outcome: String,
    pub comment: Option<String>,
    pub data: Map<String, Value>,
}

impl ValidDecision {
    /// The flat object agents read as `event["data"]`: form fields, outcome, comment,
    /// and `approved` when the outcome is a yes or a no.
    pub fn flat_data(&self) -> Value {
        let mut flat = self.data.clone();
        flat.insert("outcome".into(), Value::String(self.outcome.clone()));
        flat.insert(
            "comment".into(),
            self.comment
                .clone()
                .map(Value::String)
                .unwrap_or(Value::Null),
        );
        match verdict_of(&self.outcome) {
            Verdict::Approving => {
                flat.insert("approved".into(), Value::Bool(true));
            }
            Verdict::Rejecting => {
                flat.insert("approved".into(), Value::Bool(false));
            }
            Verdict::Neutral => {}
        }
        Value::Object(flat)
    }
}

#[cfg(test)]
mod tests {

    fn votes(outcomes: &[&str]) -> Vec<Vote> {
        let at = Timestamp::parse("2026-11-21T12:00:00Z").unwrap();
        outcomes
            .iter()
            .enumerate()
            .map(|(index, outcome)| Vote {
                voter: format!("r{index}@example.com"),
                outcome: outcome.to_string(),
                comment: None,
                at,
            })
            .collect()
    }

    #[test]
    fn a_quorum_settles_once_approval_is_reached_or_out_of_reach() {
        let two_of_three = |cast: &[&str]| Tally::of(2, 3, &votes(cast)).settled();
        assert_eq!(two_of_three(&[]), None);
        assert_eq!(two_of_three(&["approved"]), None);
        assert_eq!(
            two_of_three(&["approved", "approved"]),
            Some(Verdict::Approving)
        );
        assert_eq!(two_of_three(&["rejected"]), None);
        assert_eq!(two_of_three(&["approved", "rejected"]), None);
        assert_eq!(
            two_of_three(&["rejected", "rejected"]),
            Some(Verdict::Rejecting)
        );
        // Votes that neither approve nor reject still use up a voter.
        assert_eq!(
            two_of_three(&["needs_changes", "commented"]),
            Some(Verdict::Rejecting)
        );
        assert_eq!(
            Tally::of(3, 3, &votes(&["rejected"])).settled(),
            Some(Verdict::Rejecting)
        );
        assert_eq!(
            Tally::of(1, 3, &votes(&["approved"])).settled(),
            Some(Verdict::Approving)
        );
    }

    #[test]
    fn quorums_need_named_distinct_reviewers_and_an_approving_outcome() {
        let task = |extra: Value| {
            let mut spec = json!({
                "title": "Ship it?",
                "task_type": "approval",
                "assignees": ["a@x.io", "b@x.io", "c@x.io"],
            });
            spec.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            HumanTask::from_request(&spec)
        };
        assert_eq!(task(json!({"quorum": 2})).unwrap().quorum, Some(2));
        for (extra, says) in [
            (
                json!({"quorum": 0}),
                "between 1 and the number of assignees (3)",
            ),
            (
                json!({"quorum": 4}),
                "between 1 and the number of assignees (3)",
            ),
            (
                json!({"quorum": 2, "assignees": ["a@x.io", "team:ops"]}),
                "not `team:ops`",
            ),
            (
                json!({"quorum": 2, "assignees": ["a@x.io", "A@x.io"]}),
                "listed once",
            ),
            (
                json!({"quorum": 1, "allowed_outcomes": ["noted"]}),
                "none of (noted) approves",
            ),
            (
                json!({"quorum": 1, "allowed_outcomes": ["approved", "abstain"]}),
                "none of (approved, abstain) rejects",
            ),
        ] {
            let err = task(extra.clone()).unwrap_err();
            assert!(err.message.contains(says), "{extra}: {}", err.message);
            assert_eq!(err.details["field"], "human_task.quorum");
        }
    }
    use super::*;
    use proptest::prelude::*;

    fn task(spec: Value) -> HumanTask {
        HumanTask::from_request(&spec).unwrap()
    }

    fn decide(task: &HumanTask, result: Value) -> Result<ValidDecision> {
        task.validate_result(TaskResultInput::parse(&result)?)
    }

    #[test]
    fn verbs_take_the_tasks_own_yes_and_no_and_name_the_rest() {
        let outcome = |task_type: &str, verb| {
            task(json!({"title": "t", "task_type": task_type})).outcome_for(verb)
        };
        assert_eq!(
            outcome("approval", DecisionVerb::Approve).unwrap(),
            "approved"
        );
        assert_eq!(
            outcome("override", DecisionVerb::Approve).unwrap(),
            "override_approved"
        );
        assert_eq!(
            outcome("confirmation", DecisionVerb::Approve).unwrap(),
            "confirmed"
        );
        assert_eq!(
            outcome("confirmation", DecisionVerb::Reject).unwrap(),
            "denied"
        );
        assert_eq!(outcome("review", DecisionVerb::Reject).unwrap(), "rejected");
        assert_eq!(
            outcome("manual_action", DecisionVerb::Complete).unwrap(),
            "completed"
        );
        assert_eq!(
            outcome("assignment", DecisionVerb::Assign).unwrap(),
            "assigned"
        );
        let refused = outcome("approval", DecisionVerb::Confirm).unwrap_err();
        assert!(
            refused.message.contains("approved, rejected"),
            "{}",
            refused.message
        );
    }

    #[test]
    fn needs_say_what_each_outcome_must_carry() {
        let review = task(json!({"title": "t", "task_type": "review"}));
        assert!(!review.needs("approved").comment);
        assert!(review.needs("changes_requested").comment);
        let evidence =
            task(json!({"title": "t", "task_type": "manual_action", "evidence_required": true}));
        assert!(evidence.needs("completed").evidence && !evidence.needs("failed").evidence);
        let form = task(json!({"title": "t", "form_schema": {"type": "object"}}));
        assert!(form.needs("submitted").form && !form.needs("declined").form);
        assert!(
            task(json!({"title": "t", "task_type": "assignment"}))
                .needs("assigned")
                .assignee
        );
    }

    #[test]
    fn every_type_has_its_default_outcomes() {
        for task_type in TaskType::ALL {
            let t = task(json!({"title": "t", "task_type": task_type.as_str()}));
            assert_eq!(t.allowed_outcomes, task_type.default_outcomes());
            assert_eq!(t.required_comment, task_type == TaskType::Override);
        }
    }

    #[test]
    fn a_schema_without_a_type_makes_a_form() {
        let t = task(json!({"title": "t", "form_schema": {"type": "object"}}));
        assert_eq!(t.task_type, TaskType::Form);
        assert_eq!(task(json!({"title": "t"})).task_type, TaskType::Approval);
    }

    #[test]
    fn unknown_task_types_name_the_eight() {
        let err = HumanTask::from_request(&json!({"title": "t", "task_type": "vote"})).unwrap_err();
        assert_eq!(err.code, "unknown_task_type");
        assert!(err.message.contains("manual_action"), "{}", err.message);
    }

    #[test]
    fn bad_specs_name_their_field() {
        for (spec, field) in [
            (json!({}), "human_task.title"),
            (json!({"title": "   "}), "human_task.title"),
            (json!({"title": "x".repeat(256)}), "human_task.title"),
            (
                json!({"title": "t", "description": "d".repeat(2001)}),
                "human_task.description",
            ),
            (
                json!({"title": "t", "allowed_outcomes": []}),
                "human_task.allowed_outcomes",
            ),
            (
                json!({"title": "t", "allowed_outcomes": ["a", "a"]}),
                "human_task.allowed_outcomes",
            ),
            (
                json!({"title": "t", "assignees": []}),
                "human_task.assignees",
            ),
            (
                json!({"title": "t", "assignees": ["team:"]}),
                "human_task.assignees",
            ),
            (json!({"title": 5}), "human_task.title"),
            (
                json!({"title": "t", "required_comment": "yes"}),
                "human_task.required_comment",
            ),
            (
                json!({"title": "t", "form_schema": "object"}),
                "human_task.form_schema",
            ),
            (
                json!({"title": "t", "form_schema": {"type": "nonsense"}}),
                "human_task.form_schema",
            ),
            (
                json!({"title": "t", "notify_email": "not-an-email"}),
                "human_task.notify_email",
            ),
        ] {
            let err = HumanTask::from_request(&spec).unwrap_err();
            assert_eq!(err.details["field"], field, "{spec} -> {err:?}");
        }
    }

    #[test]
    fn missing_fields_are_named_by_their_own_path() {
        #[derive(Debug, serde::Deserialize)]
        struct Inner {
            #[allow(dead_code)]
            name: String,
        }
        #[derive(Debug, serde::Deserialize)]
        struct Outer {
            #[allow(dead_code)]
            inner: Inner,
        }
        let err = parse_fields::<Outer>("body", &json!({"inner": {}})).unwrap_err();
        assert_eq!(err.details["field"], "body.inner.name");
        assert_eq!(err.message, "body.inner.name: is required");
        let err = parse_fields::<Inner>("", &json!({})).unwrap_err();
        assert_eq!(err.details["field"], "name");
        let err = parse_fields::<Inner>("", &json!({"name": 1})).unwrap_err();
        assert_eq!(err.details["field"], "name");
    }

    #[test]
    fn outcomes_must_be_allowed() {
        let t = task(json!({"title": "t"}));
        let err = decide(&t, json!({"outcome": "maybe"})).unwrap_err();
        assert_eq!(err.code, "outcome_not_allowed");
        assert!(decide(&t, json!({"outcome": "approved"})).is_ok());
        assert!(decide(&t, json!({"comment": "no outcome"})).is_err());
        assert!(decide(&t, json!({"outcome": 1})).is_err());
    }

    #[test]
    fn reviews_need_comments_for_changes_and_rejections() {
        let t = task(json!({"title": "t", "task_type": "review"}));
        assert!(decide(&t, json!({"outcome": "approved"})).is_ok());
        for outcome in ["changes_requested", "rejected"] {
            let err = decide(&t, json!({"outcome": outcome, "comment": "  "})).unwrap_err();
            assert_eq!(err.code, "comment_required");
            assert!(decide(&t, json!({"outcome": outcome, "comment": "fix it"})).is_ok());
        }
    }

    #[test]
    fn overrides_need_a_justification() {
        let t = task(json!({"title": "t", "task_type": "override"}));
        let err = decide(&t, json!({"outcome": "override_approved"})).unwrap_err();
        assert!(err.message.contains("justification"));
        assert!(
            decide(
                &t,
                json!({"outcome": "override_approved", "comment": "incident 42"})
            )
            .is_ok()
        );
    }

    #[test]
    fn clarifications_need_an_answer() {
        let t = task(json!({"title": "t", "task_type": "clarification"}));
        assert!(decide(&t, json!({"outcome": "provided"})).is_err());
        assert!(decide(&t, json!({"outcome": "declined"})).is_ok());
    }

    #[test]
    fn manual_actions_need_evidence_when_asked() {
        let t =
            task(json!({"title": "t", "task_type": "manual_action", "evidence_required": true}));
        let err = decide(&t, json!({"outcome": "completed"})).unwrap_err();
        assert_eq!(err.code, "evidence_required");
        assert!(
            decide(
                &t,
                json!({"outcome": "completed", "data": {"evidence": ""}})
            )
            .is_err()
        );
        assert!(
            decide(
                &t,
                json!({"outcome": "completed", "evidence": "https://ci/run/1"})
            )
            .is_ok()
        );
        assert!(decide(&t, json!({"outcome": "failed"})).is_ok());
    }

    #[test]
    fn assignments_need_a_valid_assignee() {
        let t = task(json!({"title": "t", "task_type": "assignment"}));
        assert_eq!(
            decide(&t, json!({"outcome": "assigned"})).unwrap_err().code,
            "assignee_required"
        );
        assert!(decide(&t, json!({"outcome": "assigned", "assignee": "has space"})).is_err());
        assert!(decide(&t, json!({"outcome": "assigned", "assignee": "bob@x.io"})).is_ok());
        assert!(decide(&t, json!({"outcome": "declined"})).is_ok());
    }

    fn deploy_form() -> HumanTask {
        task(json!({"title": "t", "form_schema": {
            "type": "object",
            "required": ["replicas", "region"],
            "properties": {
                "replicas": {"type": "integer", "minimum": 1},
                "ratio": {"type": "number"},
                "canary": {"type": "boolean"},
                "region": {"type": "string", "enum": ["eu", "us"]},
                "tags": {"type": "array"}
            }
        }}))
    }

    #[test]
    fn flattened_string_fields_are_coerced_before_validation() {
        let decision = decide(
            &deploy_form(),
            json!({"outcome": "submitted", "replicas": "3", "ratio": "0.5", "canary": "TRUE", "region": "eu", "tags": "[\"a\"]"}),
        )
        .unwrap();
        assert_eq!(decision.data["replicas"], 3);
        assert_eq!(decision.data["ratio"], 0.5);
        assert_eq!(decision.data["canary"], true);
        assert_eq!(decision.data["tags"], json!(["a"]));
        assert_eq!(decision.data["region"], "eu");
    }

    #[test]
    fn form_errors_list_every_failing_field() {
        let err = decide(
            &deploy_form(),
            json!({"outcome": "submitted", "data": {"replicas": "many", "region": "mars"}}),
        )
        .unwrap_err();
        assert_eq!(err.code, "form_invalid");
        let paths: Vec<&str> = err.details["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["path"].as_str().unwrap())
            .collect();
        assert!(
            paths.contains(&"/replicas") && paths.contains(&"/region"),
            "{paths:?}"
        );
        assert!(decide(&deploy_form(), json!({"outcome": "declined"})).is_ok());
    }

    #[test]
    fn flat_data_carries_the_verdict() {
        let t = task(json!({"title": "t"}));
        let yes = decide(&t, json!({"outcome": "approved", "comment": "ok"})).unwrap();
        assert_eq!(yes.flat_data()["approved"], true);
        assert_eq!(yes.flat_data()["comment"], "ok");
        let no = decide(&t, json!({"outcome": "rejected"})).unwrap();
        assert_eq!(no.flat_data()["approved"], false);
        let custom = task(json!({"title": "t", "allowed_outcomes": ["plan_b"]}));
        let neutral = decide(&custom, json!({"outcome": "plan_b"})).unwrap();
        assert!(neutral.flat_data().get("approved").is_none());
    }

    proptest! {
        /// Whatever the reviewer sends, validation answers with a decision or an error;
        /// an accepted decision always carries an allowed outcome.
        #[test]
        fn validation_never_panics(outcome in ".{0,12}", comment in proptest::option::of(".{0,8}"), replicas in ".{0,6}") {
            let form = deploy_form();
            let result = json!({"outcome": outcome, "comment": comment, "replicas": replicas, "region": "eu"});
            if let Ok(decision) = decide(&form, result) {
                prop_assert!(form.allowed_outcomes.contains(&decision.outcome));
            }
        }
    }
}
