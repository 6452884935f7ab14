//! The AXP inbox. A thread is one intent as one owner sees it:
//! - `pending`: a human task the owner may decide;
//! - `done`: an ended intent whose `reply_to` is the owner (its completion thread).
//!
//! Threads are derived from intents and their events, plus the messages owners add
//! with `reply`, so the inbox can never disagree with the intents themselves.

use serde_json::{Map, Value, json};

use super::decisions::{Decision, Via};
use super::{Engine, holdings_of};
use crate::domain::{
    Error, Intent, Principal, Result, TaskResultInput, Thread, ThreadStatus, TimelineEntry, Verdict,
};
use crate::store::IdempotencyClaim;

const MAX_MESSAGE_CHARS: usize = 4000;
const MAX_CHANGES_PAGE: usize = 500;

/// One page of `GET /v1/inbox/changes`.
#[derive(Debug, Clone)]
pub struct InboxChanges {
    pub threads: Vec<Thread>,
    pub next_cursor: u64,
    pub has_more: bool,
}

impl Engine {
    /// The owner whose inbox is read: the caller, or for an admin any `owner_agent`.
    pub fn inbox_owner(&self, caller: &Principal, owner_agent: Option<&str>) -> Result<String> {
        match owner_agent.filter(|owner| !owner.trim().is_empty()) {
            None => Ok(caller.identity.clone()),
            Some(owner) if owner == caller.identity || caller.is_admin() => Ok(owner.to_string()),
            Some(owner) => Err(Error::forbidden(format!(
                "{} may not read the inbox of {owner}",
                caller.identity
            ))),
        }
    }

    /// The intents behind `owner`'s threads, with each thread's status.
    async fn thread_intents(
        &self,
        caller: &Principal,
        owner: &str,
    ) -> Result<Vec<(Intent, ThreadStatus)>> {
        let holdings = if owner == caller.identity {
            holdings_of(caller)
        } else {
            Some(vec![owner.to_string()])
        };
        let mut threads: Vec<(Intent, ThreadStatus)> = self
            .store
            .waiting_tasks(holdings)
            .await?
            .tasks
            .into_iter()
            .map(|intent| (intent, ThreadStatus::Pending))
            .collect();
        threads.extend(
            self.store
                .ended_intents_replying_to(owner)
                .await?
                .into_iter()
                .map(|intent| (intent, ThreadStatus::Done)),
        );
        threads.sort_by_key(|(intent, _)| intent.last_cursor);
        Ok(threads)
    }

    async fn thread(&self, owner: &str, intent: Intent, status: ThreadStatus) -> Result<Thread> {
        let mut timeline: Vec<(u64, TimelineEntry)> = Vec::new();
        let mut after = 0;
        loop {
            let page = self
                .store
                .events(&intent.intent_id, after, super::PAGE)
                .await?;
            let full = page.len() == super::PAGE;
            for event in page {
                after = event.seq;
                timeline.push((
                    event.seq,
                    TimelineEntry {
                        at: event.at,
                        kind: "event".into(),
                        actor: event.actor,
                        event_type: Some(event.event_type),
                        status: Some(event.status),
                        message: None,
                        details: Some(event.details),
                    },
                ));
            }
            if !full {
                break;
            }
        }
        for message in self.store.inbox_messages(&intent.intent_id).await? {
            timeline.push((
                u64::MAX,
                TimelineEntry {
                    at: message.at,
                    kind: "message".into(),
                    actor: message.author,
                    event_type: None,
                    status: None,
                    message: Some(message.message),
                    details: None,
                },
            ));
        }
        // Events keep their seq order; messages fall in by time.
        timeline.sort_by(|(seq_a, a), (seq_b, b)| a.at.cmp(&b.at).then(seq_a.cmp(seq_b)));
        Ok(Thread {
            thread_id: intent.intent_id.clone(),
            intent_id: intent.intent_id.clone(),
            status,
            owner_agent: owner.to_string(),
            from_agent: intent.from_agent.clone(),
            to_agent: intent.to_agent.clone(),
            title: intent.human_task.as_ref().map(|task| task.title.clone()),
            intent_status: intent.status,
            created_at: intent.created_at,
            updated_at: intent.updated_at,
            result: intent.result.clone(),
            cursor: intent.last_cursor.to_string(),
            timeline: timeline.into_iter().map(|(_, entry)| entry).collect(),
        })
    }

    /// `GET /v1/inbox`.
    pub async fn inbox(
        &self,
        caller: &Principal,
        owner_agent: Option<&str>,
    ) -> Result<Vec<Thread>> {
        let owner = self.inbox_owner(caller, owner_agent)?;
        let mut threads = Vec::new();
        for (intent, status) in self.thread_intents(caller, &owner).await? {
            threads.push(self.thread(&owner, intent, status).await?);
        }
        Ok(threads)
    }

    /// `GET /v1/inbox/{thread_id}`.
    pub async fn inbox_thread(
        &self,
        caller: &Principal,
        owner_agent: Option<&str>,
        thread_id: &str,
    ) -> Result<Thread> {
        let owner = self.inbox_owner(caller, owner_agent)?;
        let (intent, status) = self
            .thread_intents(caller, &owner)
            .await?
            .into_iter()
            .find(|(intent, _)| intent.intent_id == thread_id)
            .ok_or_else(|| Error::not_found("inbox thread", thread_id))?;
        self.thread(&owner, intent, status).await
    }

    /// `GET /v1/inbox/changes`: threads changed after `cursor`, oldest change first.
    pub async fn inbox_changes(
        &self,
        caller: &Principal,
        owner_agent: Option<&str>,
        cursor: u64,
        limit: usize,
    ) -> Result<InboxChanges> {
        let owner = self.inbox_owner(caller, owner_agent)?;
        let limit = limit.clamp(1, MAX_CHANGES_PAGE);
        let changed: Vec<(Intent, ThreadStatus)> = self
            .thread_intents(caller, &owner)
            .await?
            .into_iter()
            .filter(|(intent, _)| intent.last_cursor > cursor)
            .collect();
        let has_more = changed.len() > limit;
        let mut threads = Vec::new();
        for (intent, status) in changed.into_iter().take(limit) {
            threads.push(self.thread(&owner, intent, status).await?);
        }
        let next_cursor = threads
            .last()
            .and_then(|thread| thread.cursor.parse().ok())
            .unwrap_or(cursor);
        Ok(InboxChanges {
            threads,
            next_cursor,
            has_more,
        })
    }

    /// `POST /v1/inbox/{thread_id}/reply`: adds a message to a thread the owner can see.
    pub async fn inbox_reply(
        &self,
        caller: &Principal,
        owner_agent: Option<&str>,
        thread_id: &str,
        message: &str,
        claim: Option<IdempotencyClaim>,
    ) -> Result<Thread> {
        let message = message.trim().to_string();
        if message.is_empty() || message.chars().count() > MAX_MESSAGE_CHARS {
            return Err(Error::invalid_field(
                "message",
                format!("must be 1-{MAX_MESSAGE_CHARS} characters"),
            ));
        }
        self.inbox_thread(caller, owner_agent, thread_id).await?;
        let author = caller.identity.clone();
        self.store
            .write_intent(
                crate::store::Target::Existing(thread_id.to_string()),
                claim,
                Box::new(move |change| {
                    change.add_message(&author, &message);
                    Ok(json!({ "ok": true }))
                }),
            )
            .await?;
        self.inbox_thread(caller, owner_agent, thread_id).await
    }

    /// `POST /v1/inbox/{thread_id}/delegate`.
    pub async fn inbox_delegate(
        &self,
        caller: &Principal,
        owner_agent: Option<&str>,
        thread_id: &str,
        body: &Value,
        claim: Option<IdempotencyClaim>,
    ) -> Result<Value> {
        let fields = body
            .as_object()
            .ok_or_else(|| Error::malformed("the request body must be a JSON object"))?;
        let target = ["delegate_to", "to", "assignee"]
            .iter()
            .find_map(|name| fields.get(*name));
        let to = match target {
            Some(Value::String(to)) if !to.trim().is_empty() => to.trim().to_string(),
            Some(_) => {
                return Err(Error::invalid_field(
                    "delegate_to",
                    "must be a reviewer identity or team:NAME",
                ));
            }
            None => return Err(Error::invalid_field("delegate_to", "is required")),
        };
        let note = fields
            .get("note")
            .or_else(|| fields.get("message"))
            .and_then(Value::as_str)
            .map(str::to_string);
        self.inbox_thread(caller, owner_agent, thread_id).await?;
        let intent = self.delegate(caller, thread_id, to, note, claim).await?;
        Ok(json!({ "ok": true, "thread_id": thread_id, "assignees": intent.assignees }))
    }

    /// `POST /v1/inbox/{thread_id}/approve|reject` and `POST /v1/approvals/{id}/decision`.
    pub async fn inbox_decide(
        &self,
        caller: &Principal,
        thread_id: &str,
        verdict: Verdict,
        body: &Value,
        via: Via,
        claim: Option<IdempotencyClaim>,
    ) -> Result<Value> {
        let fields = body
            .as_object()
            .ok_or_else(|| Error::malformed("the request body must be a JSON object"))?;
        let comment = match fields.get("comment").or_else(|| fields.get("reason")) {
            None | Some(Value::Null) => None,
            Some(Value::String(comment)) => Some(comment.clone()),
            Some(_) => return Err(Error::invalid_field("comment", "must be a string")),
        };
        let data = match fields.get("data") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(data)) => data.clone(),
            Some(_) => return Err(Error::invalid_field("data", "must be an object")),
        };
        let decision = Decision::Verdict {
            verdict,
            comment,
            data,
        };
        self.decide(caller, thread_id, decision, via, claim).await
    }

    /// `POST /v1/approvals/{id}/decision`: `decision` is approve/reject (or yes/no),
    /// or any outcome the task allows.
    pub async fn approval_decision(
        &self,
        caller: &Principal,
        intent_id: &str,
        body: &Value,
        claim: Option<IdempotencyClaim>,
    ) -> Result<Value> {
        let decision = match body.get("decision") {
            Some(Value::String(decision)) if !decision.trim().is_empty() => {
                decision.trim().to_string()
            }
            Some(_) => {
                return Err(Error::invalid_field(
                    "decision",
                    "must be a non-empty string",
                ));
            }
            None => return Err(Error::invalid_field("decision", "is required")),
        };
        let verdict = match decision.as_str() {
            "approve" | "yes" => Some(Verdict::Approving),
            "reject" | "no" | "deny" => Some(Verdict::Rejecting),
            _ => None,
        };
        match verdict {
            Some(verdict) => {
                self.inbox_decide(caller, intent_id, verdict, body, Via::Approvals, claim)
                    .await
            }
            None => {
                let mut task_result = body.as_object().cloned().unwrap_or_default();
                task_result.remove("decision");
                task_result.insert("outcome".into(), Value::String(decision));
                let input = TaskResultInput::parse(&Value::Object(task_result))?;
                self.decide(
                    caller,
                    intent_id,
                    Decision::Outcome(input),
                    Via::Approvals,
                    claim,
                )
                .await
            }
        }
    }
}
