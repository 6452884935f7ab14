//! Everything that moves an existing intent forward: human decisions, agent
//! actions, control resumes, resolutions and delegation.

use serde_json::{Map, Value, json};

use super::Engine;
use crate::domain::event::{ACKNOWLEDGED, DELEGATED, DELIVERED, IN_PROGRESS};
use crate::domain::principal::validate_assignee;
use crate::domain::task::parse_fields;
use crate::domain::{
    Error, Principal, PrincipalKind, Result, Status, TaskResultInput, Verdict, WaitingReason,
};
use crate::store::{Change, ChangeFn, IdempotencyClaim, Target};

/// How a decision reached us; recorded as `via` in the decision record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    Api,
    Inbox,
    Approvals,
    Control,
    Named(&'static str),
}

impl Via {
    pub fn as_str(&self) -> &'static str {
        match self {
            Via::Api => "api",
            Via::Inbox => "inbox",
            Via::Approvals => "approvals",
            Via::Control => "control",
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
    /// A yes or no, from clients that only say approve or reject.
    Verdict {
        verdict: Verdict,
        comment: Option<String>,
        data: Map<String, Value>,
    },
}

/// The agent an agent-side action acts as: the key's own agent, or for an admin
/// the `owner_agent` it names.
fn acting_agent(caller: &Principal, owner_agent: Option<&str>) -> Result<String> {
    match (caller.kind, owner_agent) {
        (PrincipalKind::Admin, Some(owner)) => Ok(owner.to_string()),
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

/// Details every terminal event carries: who ended it, and for human tasks the
/// assignees whose task lists lose it.
fn terminal_details(change: &Change, actor: &str, mut details: Map<String, Value>) -> Value {
    details.insert("decided_by".into(), json!(actor));
    if change.intent.human_task.is_some() {
        details.insert("assignees".into(), json!(change.intent.assignees));
    }
    Value::Object(details)
}

/// A human decision, validated and applied. Shared by resume, the inbox and approvals.
fn apply_decision(
    change: &mut Change,
    decider: &Principal,
    input: TaskResultInput,
    via: Via,
    on_behalf_of: Option<String>,
) -> Result<()> {
    let intent = &change.intent;
    let Some(task) = intent.human_task.clone() else {
        if intent.status.is_terminal() {
            return Err(intent.already_ended());
        }
        return Err(Error::conflict(
            "not_a_human_task",
            format!("intent {} has no human task to decide", intent.intent_id),
        ));
    };
    if !decider.may_decide(&intent.assignees) {
        return Err(Error::forbidden(format!(
            "{} is not an assignee of this task (assignees: {})",
            decider.identity,
            if intent.assignees.is_empty() {
                "admins only".to_string()
            } else {
                intent.assignees.join(", ")
            }
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
    let decision = task.validate_result(input)?;
    let now = change.now;
    let mut result = json!({
        "outcome": decision.outcome,
        "comment": decision.comment,
        "data": decision.data,
        "decided_by": decider.identity,
        "decided_at": now,
        "via": via.as_str(),
    });
    if let Some(actor) = on_behalf_of {
        result["on_behalf_of"] = json!(actor);
    }
    change.intent.transition(Status::Completed, None)?;
    change.intent.result = Some(result.clone());
    let mut details = Map::new();
    details.insert("result".into(), result);
    details.insert("data".into(), decision.flat_data());
    let details = terminal_details(change, &decider.identity, details);
    change.record(Status::Completed.event_type(), &decider.identity, details);
    deliver_end(change);
    Ok(())
}

fn resumed(change: &Change) -> Value {
    json!({ "ok": true, "applied": true, "intent": change.intent })
}

/// The decision record of an agent or system resolution: the given result (if
/// any) plus who resolved it and when, so `decided_by` is always recorded.
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
    Value::Object(record)
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

    /// A reviewer's decision on a human task: an explicit outcome, or a plain yes/no
    /// that becomes the task's own approving or rejecting outcome.
    pub async fn decide(
        &self,
        decider: &Principal,
        intent_id: &str,
        decision: Decision,
        via: Via,
        claim: Option<IdempotencyClaim>,
    ) -> Result<Value> {
        let decider = decider.clone();
        self.change(
            intent_id,
            claim,
            Box::new(move |change| {
                let input = match decision {
                    Decision::Outcome(input) => input,
                    Decision::Verdict {
                        verdict,
                        comment,
                        data,
                    } => TaskResultInput {
                        outcome: outcome_for_verdict(change, verdict)?,
                        comment,
                        data,
                    },
                };
                apply_decision(change, &decider, input, via, None)?;
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
                if intent.is_waiting_for_human() {
                    return Err(Error::conflict(
                        "waiting_for_human",
                        format!(
                            "intent {} is waiting for a human decision; send task_result instead",
                            intent.intent_id
                        ),
                    ));
                }
                change.intent.transition(next, None)?;
                if next.is_terminal() {
                    let given = fields.get("result").cloned().unwrap_or_else(|| {
                        let mut rest = fields.clone();
                        rest.remove("action");
                        rest.remove("error");
                        Value::Object(rest)
                    });
                    let record = resolution_record(Some(&given), &agent, change);
                    change.intent.result = Some(record);
                    let mut details = Map::new();
                    if next == Status::Completed {
                        details.insert("result".into(), given.clone());
                        if given.is_object() {
                            details.insert("data".into(), given);
                        }
                    }
                    if let Some(error) = fields.get("error").or_else(|| fields.get("reason")) {
                        details.insert("error".into(), error.clone());
                    }
                    let details = terminal_details(change, &agent, details);
                    change.record(next.event_type(), &agent, details);
                    deliver_end(change);
                } else {
                    let event_type = if next == Status::Acknowledged {
                        ACKNOWLEDGED
                    } else {
                        IN_PROGRESS
                    };
                    change.record(event_type, &agent, json!({}));
                }
                Ok(resumed(change))
            }),
        )
        .await
    }

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
        // The key holder is the one who decides; an admin may record on whose behalf.
        let on_behalf_of = named_actor.filter(|_| caller.is_admin());
        let caller = caller.clone();
        self.change(
            intent_id,
            claim,
            Box::new(move |change| {
                if change.intent.human_task.is_some() {
                    let outcome = outcome_for_verdict(change, Verdict::Approving)?;
                    let input = TaskResultInput {
                        outcome,
                        comment: reason,
                        data: Map::new(),
                    };
                    apply_decision(change, &caller, input, Via::Control, on_behalf_of)?;
                    return Ok(resumed(change));
                }
                let intent = &change.intent;
                let involved = caller.is_admin()
                    || intent.from_agent == caller.identity
                    || intent.to_agent.as_deref() == Some(caller.identity.as_str());
                if !involved {
                    return Err(Error::forbidden(format!(
                        "{} may not approve steps of intent {}",
                        caller.identity, intent.intent_id
                    )));
                }
                if intent.status.is_terminal() {
                    return Err(intent.already_ended());
                }
                if intent.status != Status::Waiting {
                    return Err(Error::conflict(
                        "not_waiting",
                        format!("intent {} is {} and has no step waiting for approval", intent.intent_id, intent.status),
                    ));
                }
                change.intent.transition(Status::InProgress, None)?;
                change.record(
                    IN_PROGRESS,
                    &caller.identity,
                    json!({ "approved_by": caller.identity, "on_behalf_of": on_behalf_of, "reason": reason }),
                );
                Ok(resumed(change))
            }),
        )
        .await
    }

    /// `POST /v1/intents/{id}/resolve`: the sender, the recipient or an admin ends the intent.
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
        let actor = if caller.is_admin() {
            owner_agent
                .map(str::to_string)
                .unwrap_or_else(|| caller.identity.clone())
        } else {
            caller.identity.clone()
        };
        let is_admin = caller.is_admin();
        self.change(
            intent_id,
            claim,
            Box::new(move |change| {
                let intent = &change.intent;
                let involved = is_admin
                    || intent.from_agent == actor
                    || intent.to_agent.as_deref() == Some(actor.as_str());
                if !involved {
                    return Err(Error::forbidden(format!(
                        "only the sender, the recipient or an admin may resolve intent {}",
                        intent.intent_id
                    )));
                }
                if intent.status.is_terminal() {
                    return Err(intent.already_ended());
                }
                change.intent.transition(status, None)?;
                change.intent.result =
                    Some(resolution_record(input.result.as_ref(), &actor, change));
                let mut details = Map::new();
                if let Some(result) = input.result {
                    if result.is_object() {
                        details.insert("data".into(), result.clone());
                    }
                    details.insert("result".into(), result);
                }
                if let Some(error) = input.error {
                    details.insert("error".into(), error);
                }
                if let Some(reason) = input.reason {
                    details.insert("reason".into(), json!(reason));
                }
                let details = terminal_details(change, &actor, details);
                let event = change.record(status.event_type(), &actor, details);
                deliver_end(change);
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

    /// Hands a waiting task to another reviewer or team.
    pub async fn delegate(
        &self,
        caller: &Principal,
        intent_id: &str,
        to: String,
        note: Option<String>,
        claim: Option<IdempotencyClaim>,
    ) -> Result<crate::domain::Intent> {
        validate_assignee("delegate_to", &to)?;
        let caller = caller.clone();
        let written = self
            .store
            .write_intent(
                Target::Existing(intent_id.to_string()),
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
                    let previous = std::mem::replace(&mut change.intent.assignees, vec![to.clone()]);
                    change.intent.assigned_at = Some(change.now);
                    change.intent.waiting_reason = Some(WaitingReason::WaitingForHuman);
                    change.record(
                        DELEGATED,
                        &caller.identity,
                        json!({ "delegated_to": [to], "previous_assignees": previous, "note": note }),
                    );
                    Ok(json!({ "ok": true, "intent": change.intent }))
                }),
            )
            .await?;
        serde_json::from_value(written.response["intent"].clone())
            .map_err(|err| Error::internal(format!("delegate response: {err}")))
    }
}

fn outcome_for_verdict(change: &Change, verdict: Verdict) -> Result<String> {
    let task = change.intent.human_task.as_ref().ok_or_else(|| {
        Error::conflict(
            "not_a_human_task",
            format!(
                "intent {} has no human task to decide",
                change.intent.intent_id
            ),
        )
    })?;
    task.outcome_with_verdict(verdict)
        .map(str::to_string)
        .ok_or_else(|| {
            let word = if verdict == Verdict::Approving {
                "approving"
            } else {
                "rejecting"
            };
            Error::invalid(
                "no_matching_outcome",
                format!(
                    "this task allows no {word} outcome (allowed: {}); send an explicit outcome",
                    task.allowed_outcomes.join(", ")
                ),
            )
        })
}
