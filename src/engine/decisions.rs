//! Everything that moves an existing intent forward: human decisions, agent
//! actions, control resumes, resolutions and delegation.
//!
//! Decision records are always built here, never taken from the caller: whoever
//! ends an intent, `decided_by`, `decided_at` and `via` say who, when and how, so
//! no agent can make its own resolution look like a person's.

use serde_json::{Map, Value, json};

use std::sync::Arc;

use super::workflow::after_end;
use super::{Engine, EngineSettings};
use crate::domain::event::{ACKNOWLEDGED, DELEGATED, DELIVERED, IN_PROGRESS, VIEWED, VOTED};
use crate::domain::lifecycle::TIMEOUT_ACTOR;
use crate::domain::principal::{validate_agent_address, validate_assignee};
use crate::domain::task::{Tally, ValidDecision, Vote, parse_fields};
use crate::domain::{
    Error, Fallback, Principal, PrincipalKind, Result, Status, TaskResultInput, Timestamp, Verdict,
    WaitingReason, verdict_of,
};
use crate::store::{Change, ChangeFn, IdempotencyClaim, Target};

/// How a decision reached us; recorded as `via` in the decision record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    Api,
    Inbox,
    Approvals,
    Control,
    /// An agent resolving or completing an intent itself.
    Agent,
    Named(&'static str),
}

impl Via {
    pub fn as_str(&self) -> &'static str {
        match self {
            Via::Api => "api",
            Via::Inbox => "inbox",
            Via::Approvals => "approvals",
            Via::Control => "control",
            Via::Agent => "agent",
            Via::Named(name) => name,
        }
    }

    /// Our own clients say which face they are (`X-Signoff-Via`); anything else is "api".
    pub fn from_header(value: Option<&str>) -> Via {
        match value {
            Some("tui") => Via::Named("tui"),
            Some("cli") => Via::Named("cli"),
            Some("sdk") => Via::Named("sdk"),
            _ => Via::Api,
        }
    }
}

/// What a reviewer decided.
#[derive(Debug, Clone)]
pub enum Decision {
    /// A named outcome (`task_result`).
    Outcome(TaskResultInput),
    /// A yes or no, from clients that only say approve or reject; it becomes the
    /// task's own approving or rejecting outcome.
    Verdict {
        verdict: Verdict,
        comment: Option<String>,
        data: Map<String, Value>,
    },
}

/// The agent an agent-side call acts as: the key's own agent, or for an admin the
/// `owner_agent` it names (which must be an agent address).
fn acting_agent(caller: &Principal, owner_agent: Option<&str>) -> Result<String> {
    match (caller.kind, owner_agent) {
        (PrincipalKind::Admin, Some(owner)) => {
            validate_agent_address("owner_agent", owner)?;
            Ok(owner.to_string())
        }
        (PrincipalKind::Admin, None) => Ok(caller.identity.clone()),
        (PrincipalKind::Agent, Some(owner)) if owner != caller.identity => Err(Error::forbidden(
            format!("{} may not act as owner_agent {owner}", caller.identity),
        )),
        (PrincipalKind::Agent, _) => Ok(caller.identity.clone()),
        (PrincipalKind::Reviewer, _) => Err(Error::forbidden(
            "reviewer keys decide tasks with task_result; agent actions need an agent key",
        )),
    }
}

/// Records the end of an intent on its recipient's agent stream, for agent work.
fn deliver_end(change: &mut Change) {
    if change.intent.human_task.is_none()
        && let Some(agent) = change.intent.to_agent.clone()
    {
        let event_type = change.intent.status.event_type();
        change.deliver_to_agent(&agent, event_type);
    }
}

/// What the terminal event shows as `result` (and lifts to `event["result"]`).
pub(super) struct Shown {
    pub(super) result: Value,
    /// The flat object agents read as `event["data"]`.
    pub(super) data: Option<Value>,
}

/// Ends the intent in `status`, storing the decision `record`, and appends the
/// terminal event showing `shown`. Every ending passes here, so a scenario
/// learns of its steps' endings (and they of its) in the same transaction.
pub(super) fn finish(
    change: &mut Change,
    settings: &Arc<EngineSettings>,
    status: Status,
    actor: &str,
    record: Value,
    shown: Shown,
    extra: Map<String, Value>,
) -> Result<Value> {
    change.intent.transition(status, None)?;
    change.intent.result = Some(record);
    let mut details = extra;
    details.insert("result".into(), shown.result);
    let data = shown.data;
    if let Some(data) = data {
        details.insert("data".into(), data);
    }
    details.insert("decided_by".into(), json!(actor));
    if change.intent.human_task.is_some() {
        // The assignees whose task lists lose it.
        details.insert("assignees".into(), json!(change.intent.assignees));
    }
    let response =
        serde_json::to_value(change.record(status.event_type(), actor, Value::Object(details)))
            .unwrap_or(Value::Null);
    deliver_end(change);
    after_end(change, settings);
    Ok(response)
}

/// The decision record of an agent or admin resolution: what the caller sent as
/// `result`, with `decided_by`, `decided_at` and `via` set by the server.
fn resolution_record(result: Option<&Value>, actor: &str, change: &Change) -> Value {
    let mut record = match result {
        Some(Value::Object(fields)) => fields.clone(),
        Some(Value::Null) | None => Map::new(),
        Some(other) => {
            let mut wrapped = Map::new();
            wrapped.insert("value".into(), other.clone());
            wrapped
        }
    };
    record.insert("decided_by".into(), json!(actor));
    record.insert("decided_at".into(), json!(change.now));
    record.insert("via".into(), json!(Via::Agent.as_str()));
    Value::Object(record)
}

/// The checks every human decision passes, in an order that tells the truth:
/// strangers learn nothing about the task, and a losing assignee learns who won.
fn check_decider(change: &Change, decider: &Principal) -> Result<()> {
    let intent = &change.intent;
    if intent.human_task.is_none() {
        if intent.status.is_terminal() {
            return Err(intent.already_ended());
        }
        return Err(Error::conflict(
            "not_a_human_task",
            format!("intent {} has no human task to decide", intent.intent_id),
        ));
    }
    if !decider.may_decide(&intent.assignees) {
        let assignees = if intent.assignees.is_empty() {
            "admins only".to_string()
        } else {
            intent.assignees.join(", ")
        };
        return Err(Error::forbidden(format!(
            "{} is not an assignee of this task (assignees: {assignees})",
            decider.identity
        ))
        .with_details(json!({ "assignees": intent.assignees })));
    }
    if intent.status.is_terminal() {
        return Err(intent.already_ended());
    }
    if !intent.is_waiting_for_human() {
        return Err(Error::conflict(
            "not_waiting_for_human",
            format!(
                "intent {} is {} and not waiting for a human",
                intent.intent_id, intent.status
            ),
        ));
    }
    Ok(())
}

/// A human decision, checked and applied. Shared by resume, the inbox, approvals
/// and control resumes.
fn apply_decision(
    change: &mut Change,
    settings: &Arc<EngineSettings>,
    decider: &Principal,
    decision: Decision,
    via: Via,
    on_behalf_of: Option<String>,
) -> Result<()> {
    if !change.intent.status.is_terminal()
        && change.intent.escalation_stage == 0
        && let Some(vote) = change
            .intent
            .votes
            .iter()
            .find(|vote| vote.voter.eq_ignore_ascii_case(&decider.identity))
    {
        return Err(Error::conflict(
            "already_voted",
            format!(
                "{} already voted {} at {}; the task waits for the other assignees ({})",
                vote.voter,
                vote.outcome,
                vote.at,
                change.intent.assignees.join(", ")
            ),
        )
        .with_details(json!({ "vote": vote, "assignees": change.intent.assignees })));
    }
    check_decider(change, decider)?;
    let Some(task) = change.intent.human_task.clone() else {
        return Err(Error::internal("checked human task vanished"));
    };
    let input = match decision {
        Decision::Outcome(input) => input,
        Decision::Verdict {
            verdict,
            comment,
            data,
        } => {
            let outcome = task.outcome_with_verdict(verdict).ok_or_else(|| {
                let word = if verdict == Verdict::Approving { "approving" } else { "rejecting" };
                Error::invalid(
                    "no_matching_outcome",
                    format!(
                        "this task allows no {word} outcome (allowed: {}); send an explicit outcome",
                        task.allowed_outcomes.join(", ")
                    ),
                )
            })?;
            TaskResultInput {
                outcome: outcome.to_string(),
                comment,
                data,
            }
        }
    };
    let mut decision = task.validate_result(input)?;
    // A quorum counts the votes of its named assignees until the task escalates
    // (then the escalation's target decides alone); an admin who is not an
    // assignee decides outright.
    let mut quorum = None;
    if let Some(needed) = task.quorum.filter(|_| change.intent.escalation_stage == 0)
        && let Some(seat) = change
            .intent
            .assignees
            .iter()
            .position(|assignee| assignee.eq_ignore_ascii_case(&decider.identity))
    {
        let Some(verdict) = cast_vote(change, &decision, via, needed, seat) else {
            return Ok(());
        };
        // Votes that neither approve nor reject can settle a quorum as failed;
        // the task then ends with its own rejecting outcome.
        if verdict_of(&decision.outcome) != verdict
            && let Some(outcome) = task.outcome_with_verdict(verdict)
        {
            decision.outcome = outcome.to_string();
        }
        quorum = Some(json!({ "needed": needed, "votes": change.intent.votes }));
    }
    let mut record = json!({
        "outcome": decision.outcome,
        "comment": decision.comment,
        "data": decision.data,
        "decided_by": decider.identity,
        "decided_at": change.now,
        "via": via.as_str(),
    });
    if let Some(actor) = on_behalf_of {
        record["on_behalf_of"] = json!(actor);
    }
    let mut flat = decision.flat_data();
    if let Some(quorum) = quorum {
        record["quorum"] = quorum.clone();
        flat["quorum"] = quorum;
    }
    let shown = Shown {
        result: record.clone(),
        data: Some(flat),
    };
    finish(
        change,
        settings,
        Status::Completed,
        &decider.identity,
        record,
        shown,
        Map::new(),
    )?;
    Ok(())
}

/// Records the vote of the assignee in `seat` on a quorum task, who leaves the
/// assignees (their inbox drops the task; reminders go to those yet to vote).
/// Returns the verdict once the votes settle it.
fn cast_vote(
    change: &mut Change,
    decision: &ValidDecision,
    via: Via,
    needed: u32,
    seat: usize,
) -> Option<Verdict> {
    let voter = change.intent.assignees.remove(seat);
    change.intent.votes.push(Vote {
        voter: voter.clone(),
        outcome: decision.outcome.clone(),
        comment: decision.comment.clone(),
        at: change.now,
    });
    let voters = change.intent.votes.len() + change.intent.assignees.len();
    let tally = Tally::of(needed, voters, &change.intent.votes);
    change.record(
        VOTED,
        &voter,
        json!({
            "outcome": decision.outcome,
            "comment": decision.comment,
            "data": decision.data,
            "via": via.as_str(),
            "approvals": tally.approvals,
            "others": tally.others,
            "needed": needed,
            "remaining": change.intent.assignees,
        }),
    );
    tally.settled()
}

/// Ends a task nobody decided in time, as its fallback says. The record names the
/// system as the decider (`system:timeout`, via `timeout`), so no client can take
/// it for a person's decision.
pub(super) fn time_out(
    change: &mut Change,
    settings: &Arc<EngineSettings>,
    fallback: &Fallback,
    deadline: Timestamp,
) -> Result<()> {
    let mut record = json!({
        "decided_by": TIMEOUT_ACTOR,
        "decided_at": change.now,
        "via": "timeout",
        "system": true,
        "deadline": deadline,
        "fallback": fallback,
    });
    if let Some(needed) = change
        .intent
        .human_task
        .as_ref()
        .and_then(|task| task.quorum)
        && !change.intent.votes.is_empty()
    {
        record["quorum"] = json!({ "needed": needed, "votes": change.intent.votes });
    }
    let mut extra = Map::new();
    extra.insert("fallback".into(), json!(fallback));
    extra.insert("deadline".into(), json!(deadline));
    let (status, data) = match fallback {
        Fallback::Fail => (Status::TimedOut, None),
        Fallback::Cancel => (Status::Canceled, None),
        Fallback::Outcome(outcome) => {
            let decision = ValidDecision {
                outcome: outcome.clone(),
                comment: None,
                data: Map::new(),
            };
            record["outcome"] = json!(outcome);
            record["comment"] = Value::Null;
            record["data"] = json!({});
            // An agent reading only `data` still learns that no person decided.
            let mut flat = decision.flat_data();
            flat["decided_by"] = json!(TIMEOUT_ACTOR);
            flat["timed_out"] = json!(true);
            (Status::Completed, Some(flat))
        }
    };
    let shown = Shown {
        result: record.clone(),
        data,
    };
    finish(
        change,
        settings,
        status,
        TIMEOUT_ACTOR,
        record,
        shown,
        extra,
    )?;
    Ok(())
}

fn resumed(change: &Change) -> Value {
    json!({ "ok": true, "applied": true, "intent": change.intent })
}

impl Engine {
    async fn change(
        &self,
        intent_id: &str,
        claim: Option<IdempotencyClaim>,
        apply: ChangeFn,
    ) -> Result<Value> {
        let written = self
            .store
            .write_intent(Target::Existing(intent_id.to_string()), claim, apply)
            .await?;
        Ok(written.response)
    }

    /// A reviewer's decision on a human task.
    pub async fn decide(
        &self,
        decider: &Principal,
        intent_id: &str,
        decision: Decision,
        via: Via,
        claim: Option<IdempotencyClaim>,
    ) -> Result<Value> {
        let decider = decider.clone();
        let settings = self.settings.clone();
        self.change(
            intent_id,
            claim,
            Box::new(move |change| {
                apply_decision(change, &settings, &decider, decision, via, None)?;
                Ok(resumed(change))
            }),
        )
        .await
    }

    /// `POST /v1/intents/{id}/resume` in all three body shapes.
    pub async fn resume(
        &self,
        caller: &Principal,
        intent_id: &str,
        body: &Value,
        owner_agent: Option<&str>,
        via: Via,
        claim: Option<IdempotencyClaim>,
    ) -> Result<Value> {
        let Some(fields) = body.as_object() else {
            return Err(Error::malformed("the request body must be a JSON object"));
        };
        if let Some(task_result) = fields.get("task_result") {
            let input = TaskResultInput::parse(task_result)?;
            return self
                .decide(caller, intent_id, Decision::Outcome(input), via, claim)
                .await;
        }
        if let Some(action) = fields.get("action") {
            let Some(action) = action.as_str() else {
                return Err(Error::invalid_field("action", "must be a string"));
            };
            let agent = acting_agent(caller, owner_agent)?;
            return self
                .agent_action(caller, agent, intent_id, action, fields.clone(), claim)
                .await;
        }
        match fields.get("approve_current_step") {
            Some(Value::Bool(true)) => {
                self.approve_current_step(caller, intent_id, fields, claim)
                    .await
            }
            Some(Value::Bool(false)) => Err(Error::invalid_field(
                "approve_current_step",
                "must be true to approve the current step",
            )),
            Some(_) => Err(Error::invalid_field(
                "approve_current_step",
                "must be a boolean",
            )),
            None => Err(Error::invalid(
                "unknown_resume_shape",
                "resume needs one of: task_result (a human decision), action (complete|fail), or approve_current_step",
            )),
        }
    }

    async fn agent_action(
        &self,
        caller: &Principal,
        agent: String,
        intent_id: &str,
        action: &str,
        fields: Map<String, Value>,
        claim: Option<IdempotencyClaim>,
    ) -> Result<Value> {
        let next = match action {
            "complete" => Status::Completed,
            "fail" => Status::Failed,
            "acknowledge" => Status::Acknowledged,
            "start" => Status::InProgress,
            other => {
                return Err(Error::invalid_field(
                    "action",
                    format!("`{other}` is not an action; use complete, fail, acknowledge or start"),
                ));
            }
        };
        let is_admin = caller.is_admin();
        let settings = self.settings.clone();
        self.change(
            intent_id,
            claim,
            Box::new(move |change| {
                let intent = &change.intent;
                if !is_admin && intent.to_agent.as_deref() != Some(agent.as_str()) {
                    return Err(Error::forbidden(format!(
                        "only the addressed agent ({}) may act on intent {}",
                        intent.to_agent.as_deref().unwrap_or("none"),
                        intent.intent_id
                    )));
                }
                if intent.status.is_terminal() {
                    return Err(intent.already_ended());
                }
                if intent.human_task.is_some() {
                    return Err(Error::conflict(
                        "waiting_for_human",
                        format!(
                            "intent {} is a human task; a reviewer decides it with task_result",
                            intent.intent_id
                        ),
                    ));
                }
                if !next.is_terminal() {
                    change.intent.transition(next, None)?;
                    let event_type = if next == Status::Acknowledged {
                        ACKNOWLEDGED
                    } else {
                        IN_PROGRESS
                    };
                    change.record(event_type, &agent, json!({}));
                    return Ok(resumed(change));
                }
                let given = fields.get("result").cloned().unwrap_or_else(|| {
                    let mut rest = fields.clone();
                    rest.remove("action");
                    rest.remove("error");
                    Value::Object(rest)
                });
                let record = resolution_record(Some(&given), &agent, change);
                let mut extra = Map::new();
                if let Some(error) = fields.get("error").or_else(|| fields.get("reason")) {
                    extra.insert("error".into(), error.clone());
                }
                // Agent work: the sender gets the worker's result as the worker sent it.
                let shown = Shown {
                    data: (next == Status::Completed && given.is_object()).then(|| given.clone()),
                    result: given,
                };
                finish(change, &settings, next, &agent, record, shown, extra)?;
                Ok(resumed(change))
            }),
        )
        .await
    }

    /// `approve_current_step`: approves the waiting human task with its own
    /// approving outcome, as the key holder (an admin may name on whose behalf).
    async fn approve_current_step(
        &self,
        caller: &Principal,
        intent_id: &str,
        fields: &Map<String, Value>,
        claim: Option<IdempotencyClaim>,
    ) -> Result<Value> {
        let reason = match fields.get("reason") {
            None | Some(Value::Null) => None,
            Some(Value::String(reason)) => Some(reason.clone()),
            Some(_) => return Err(Error::invalid_field("reason", "must be a string")),
        };
        let named_actor = match fields.get("actor") {
            None | Some(Value::Null) => None,
            Some(Value::String(actor)) => Some(actor.clone()),
            Some(_) => return Err(Error::invalid_field("actor", "must be a string")),
        };
        let on_behalf_of = named_actor.filter(|_| caller.is_admin());
        let caller = caller.clone();
        let settings = self.settings.clone();
        self.change(
            intent_id,
            claim,
            Box::new(move |change| {
                let decision = Decision::Verdict {
                    verdict: Verdict::Approving,
                    comment: reason,
                    data: Map::new(),
                };
                apply_decision(
                    change,
                    &settings,
                    &caller,
                    decision,
                    Via::Control,
                    on_behalf_of,
                )?;
                Ok(resumed(change))
            }),
        )
        .await
    }

    /// `POST /v1/intents/{id}/resolve`. Agent work may be ended by its sender, its
    /// recipient or an admin. A human task waits for a person: only its sender (to
    /// withdraw it) or an admin may resolve it instead.
    pub async fn resolve(
        &self,
        caller: &Principal,
        intent_id: &str,
        body: &Value,
        owner_agent: Option<&str>,
        claim: Option<IdempotencyClaim>,
    ) -> Result<Value> {
        #[derive(serde::Deserialize)]
        struct ResolveInput {
            status: Option<String>,
            result: Option<Value>,
            error: Option<Value>,
            reason: Option<String>,
        }
        if !body.is_object() {
            return Err(Error::malformed("the request body must be a JSON object"));
        }
        let input: ResolveInput = parse_fields("", body)?;
        let status = match input.status.as_deref() {
            Some("COMPLETED") => Status::Completed,
            Some("FAILED") => Status::Failed,
            Some("CANCELED") => Status::Canceled,
            Some(other) => {
                return Err(Error::invalid_field(
                    "status",
                    format!("`{other}` cannot be resolved to; use COMPLETED, FAILED or CANCELED"),
                ));
            }
            None => return Err(Error::invalid_field("status", "is required")),
        };
        let actor = match caller.kind {
            PrincipalKind::Reviewer => {
                return Err(Error::forbidden(
                    "reviewer keys decide tasks with task_result; resolving needs an agent or admin key",
                ));
            }
            _ => acting_agent(caller, owner_agent)?,
        };
        let is_admin = caller.is_admin();
        let settings = self.settings.clone();
        self.change(
            intent_id,
            claim,
            Box::new(move |change| {
                let intent = &change.intent;
                let is_sender = intent.from_agent == actor;
                let is_recipient = intent.to_agent.as_deref() == Some(actor.as_str());
                let allowed =
                    is_admin || is_sender || (is_recipient && intent.human_task.is_none());
                if !allowed {
                    let who = if intent.human_task.is_some() {
                        "the sender or an admin"
                    } else {
                        "the sender, the recipient or an admin"
                    };
                    return Err(Error::forbidden(format!(
                        "only {who} may resolve intent {}",
                        intent.intent_id
                    )));
                }
                if intent.status.is_terminal() {
                    return Err(intent.already_ended());
                }
                let record = resolution_record(input.result.as_ref(), &actor, change);
                // A human task ended without its human shows the server's record, so
                // the result can never pass for a person's decision; agent work shows
                // the result as its resolver sent it.
                let shown_result = match (&change.intent.human_task, &input.result) {
                    (None, Some(given)) => given.clone(),
                    _ => record.clone(),
                };
                let completed_object = status == Status::Completed && shown_result.is_object();
                let shown = Shown {
                    data: completed_object.then(|| shown_result.clone()),
                    result: shown_result,
                };
                let mut extra = Map::new();
                if let Some(error) = input.error {
                    extra.insert("error".into(), error);
                }
                if let Some(reason) = input.reason {
                    extra.insert("reason".into(), json!(reason));
                }
                let event = finish(change, &settings, status, &actor, record, shown, extra)?;
                let reply_to = change.intent.reply_to.clone();
                Ok(json!({
                    "ok": true,
                    "intent": change.intent,
                    "event": event,
                    "completion_delivery": {
                        "status": if reply_to.is_some() { "delivered" } else { "not_requested" },
                        "reply_to": reply_to,
                        "thread_id": reply_to.as_ref().map(|_| change.intent.intent_id.clone()),
                    },
                }))
            }),
        )
        .await
    }

    /// `POST /v1/intents/{id}/viewed` [ext]: a reviewer opened the task. Only
    /// someone who may decide it can say so, and only while it waits, so the
    /// audit's "who saw it before the decision" is trustworthy.
    pub async fn mark_viewed(
        &self,
        viewer: &Principal,
        intent_id: &str,
        via: Via,
        claim: Option<IdempotencyClaim>,
    ) -> Result<Value> {
        let viewer = viewer.clone();
        self.change(
            intent_id,
            claim,
            Box::new(move |change| {
                check_decider(change, &viewer)?;
                let event = change.record(VIEWED, &viewer.identity, json!({ "via": via.as_str() }));
                Ok(json!({ "ok": true, "event": event }))
            }),
        )
        .await
    }

    /// Marks an agent-addressed intent DELIVERED once its agent's stream has sent it.
    pub async fn mark_delivered(&self, agent: &str, intent_id: &str) -> Result<()> {
        let agent = agent.to_string();
        self.change(
            intent_id,
            None,
            Box::new(move |change| {
                if change.intent.status == Status::Submitted
                    && change.intent.to_agent.as_deref() == Some(agent.as_str())
                {
                    change.intent.transition(Status::Delivered, None)?;
                    change.record(DELIVERED, &agent, json!({}));
                }
                Ok(Value::Null)
            }),
        )
        .await
        .map(|_| ())
    }

    /// Hands a waiting task to another reviewer or team; returns the new assignees.
    pub async fn delegate(
        &self,
        caller: &Principal,
        intent_id: &str,
        to: String,
        note: Option<String>,
        claim: Option<IdempotencyClaim>,
    ) -> Result<Value> {
        validate_assignee("delegate_to", &to)?;
        let caller = caller.clone();
        self.change(
            intent_id,
            claim,
            Box::new(move |change| {
                let intent = &change.intent;
                if !caller.may_decide(&intent.assignees) {
                    return Err(Error::forbidden(format!(
                        "{} is not an assignee of this task and cannot delegate it",
                        caller.identity
                    )));
                }
                if intent.status.is_terminal() {
                    return Err(intent.already_ended());
                }
                if !intent.is_waiting_for_human() {
                    return Err(Error::conflict(
                        "not_waiting_for_human",
                        format!("intent {} is not waiting for a human", intent.intent_id),
                    ));
                }
                if intent.human_task.as_ref().is_some_and(|task| task.quorum.is_some())
                    && intent.escalation_stage == 0
                {
                    return Err(Error::conflict(
                        "quorum_task",
                        format!(
                            "intent {} needs votes from several assignees and cannot be handed to one; vote instead",
                            intent.intent_id
                        ),
                    ));
                }
                let previous = std::mem::replace(&mut change.intent.assignees, vec![to.clone()]);
                change.intent.assigned_at = Some(change.now);
                change.intent.waiting_reason = Some(WaitingReason::WaitingForHuman);
                change.record(
                    DELEGATED,
                    &caller.identity,
                    json!({ "delegated_to": [to], "previous_assignees": previous, "note": note }),
                );
                Ok(json!({ "ok": true, "thread_id": change.intent.intent_id, "assignees": change.intent.assignees }))
            }),
        )
        .await
    }
}
