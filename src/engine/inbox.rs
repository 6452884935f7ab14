//! The AXP inbox. A thread is one intent as one owner sees it:
//! - `pending`: a human task the owner may decide;
//! - `done`: an ended intent whose `reply_to` is the owner (its completion
//!   thread), or a task that left the owner's list (decided, reassigned).
//!
//! Threads are derived from intents and their events, plus the messages owners add
//! with `reply`, so the inbox can never disagree with the intents themselves.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::decisions::{Decision, Via};
use super::{Engine, PAGE, holdings_of};
use crate::domain::{
    Error, Intent, Principal, Result, TaskResultInput, Thread, ThreadStatus, TimelineEntry, Verdict,
};
use crate::store::{IdempotencyClaim, Target};

const MAX_MESSAGE_CHARS: usize = 4000;
const MAX_CHANGES_PAGE: usize = 500;
/// Lists show each thread's latest entries; `GET /v1/inbox/{id}` shows them all.
const LIST_TIMELINE_ENTRIES: usize = 20;

/// One page of `GET /v1/inbox/changes`: threads in the order they last changed.
#[derive(Debug, Clone)]
pub struct InboxChanges {
    pub changes: Vec<(u64, Thread)>,
    pub next_cursor: u64,
    pub has_more: bool,
}

/// Whose inbox is read, and which tasks that owner holds.
#[derive(Debug, Clone)]
struct Owner {
    name: String,
    /// The caller, when reading its own inbox (its teams count too).
    principal: Option<Principal>,
}

impl Owner {
    fn holds(&self, assignees: &[String]) -> bool {
        match &self.principal {
            Some(principal) => principal.may_decide(assignees),
            None => assignees.iter().any(|a| a.eq_ignore_ascii_case(&self.name)),
        }
    }

    fn holdings(&self) -> Option<Vec<String>> {
        match &self.principal {
            Some(principal) => holdings_of(principal),
            None => Some(vec![self.name.clone()]),
        }
    }

    /// How this owner sees the intent, if at all.
    fn status_of(&self, intent: &Intent) -> Option<ThreadStatus> {
        if intent.is_waiting_for_human() && self.holds(&intent.assignees) {
            Some(ThreadStatus::Pending)
        } else if intent.reply_to.as_deref() == Some(self.name.as_str())
            && intent.status.is_terminal()
        {
            Some(ThreadStatus::Done)
        } else {
            None
        }
    }
}

fn owner_of(caller: &Principal, owner_agent: Option<&str>) -> Result<Owner> {
    match owner_agent.filter(|owner| !owner.trim().is_empty()) {
        None => Ok(Owner {
            name: caller.identity.clone(),
            principal: Some(caller.clone()),
        }),
        Some(owner) if owner == caller.identity => Ok(Owner {
            name: owner.to_string(),
            principal: Some(caller.clone()),
        }),
        Some(owner) if caller.is_admin() => Ok(Owner {
            name: owner.to_string(),
            principal: None,
        }),
        Some(owner) => Err(Error::forbidden(format!(
            "{} may not read the inbox of {owner}",
            caller.identity
        ))),
    }
}

impl Engine {
    /// The intents behind an owner's threads, with their status.
    async fn thread_intents(&self, owner: &Owner) -> Result<Vec<(Intent, ThreadStatus)>> {
        let mut threads: Vec<(Intent, ThreadStatus)> = self
            .store
            .waiting_tasks(owner.holdings())
            .await?
            .tasks
            .into_iter()
            .map(|intent| (intent, ThreadStatus::Pending))
            .collect();
        threads.extend(
            self.store
                .ended_intents_replying_to(&owner.name)
                .await?
                .into_iter()
                .map(|intent| (intent, ThreadStatus::Done)),
        );
        threads.sort_by_key(|(intent, _)| intent.last_cursor);
        Ok(threads)
    }

    /// Builds a thread with at most the latest `limit` timeline entries.
    async fn thread(
        &self,
        owner: &Owner,
        intent: Intent,
        status: ThreadStatus,
        limit: Option<usize>,
    ) -> Result<Thread> {
        let mut timeline: Vec<TimelineEntry> = Vec::new();
        let mut after = 0;
        loop {
            let page = self.store.events(&intent.intent_id, after, PAGE).await?;
            let full = page.len() == PAGE;
            for event in page {
                after = event.seq;
                timeline.push(TimelineEntry {
                    at: event.at,
                    kind: "event".into(),
                    actor: event.actor,
                    event_type: Some(event.event_type),
                    status: Some(event.status),
                    message: None,
                    details: Some(event.details),
                });
            }
            if !full {
                break;
            }
        }
        for message in self.store.inbox_messages(&intent.intent_id).await? {
            timeline.push(TimelineEntry {
                at: message.at,
                kind: "message".into(),
                actor: message.author,
                event_type: None,
                status: None,
                message: Some(message.message),
                details: None,
            });
        }
        // Events come in seq order; a stable sort by time slots messages between them.
        timeline.sort_by_key(|entry| entry.at);
        if let Some(limit) = limit {
            let excess = timeline.len().saturating_sub(limit);
            timeline.drain(..excess);
        }
        Ok(Thread {
            thread_id: intent.intent_id.clone(),
            intent_id: intent.intent_id.clone(),
            status,
            owner_agent: owner.name.clone(),
            from_agent: intent.from_agent.clone(),
            to_agent: intent.to_agent.clone(),
            title: intent.human_task.as_ref().map(|task| task.title.clone()),
            intent_status: intent.status,
            created_at: intent.created_at,
            updated_at: intent.updated_at,
            result: intent.result.clone(),
            cursor: intent.last_cursor.to_string(),
            timeline,
        })
    }

    /// `GET /v1/inbox`.
    pub async fn inbox(
        &self,
        caller: &Principal,
        owner_agent: Option<&str>,
    ) -> Result<Vec<Thread>> {
        let owner = owner_of(caller, owner_agent)?;
        let mut threads = Vec::new();
        for (intent, status) in self.thread_intents(&owner).await? {
            threads.push(
                self.thread(&owner, intent, status, Some(LIST_TIMELINE_ENTRIES))
                    .await?,
            );
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
        let owner = owner_of(caller, owner_agent)?;
        let not_found = || Error::not_found("inbox thread", thread_id);
        let intent = self.store.intent(thread_id).await?.ok_or_else(not_found)?;
        let status = owner.status_of(&intent).ok_or_else(not_found)?;
        self.thread(&owner, intent, status, None).await
    }

    /// `GET /v1/inbox/changes`: threads that changed after `cursor`, oldest change
    /// first, including threads that left the inbox (decided or reassigned), so a
    /// client syncing from this feed never keeps a stale pending thread.
    pub async fn inbox_changes(
        &self,
        caller: &Principal,
        owner_agent: Option<&str>,
        cursor: u64,
        limit: usize,
    ) -> Result<InboxChanges> {
        let owner = owner_of(caller, owner_agent)?;
        let limit = limit.clamp(1, MAX_CHANGES_PAGE);
        // Latest change per thread, by commit position.
        let mut changed: BTreeMap<String, (u64, Intent, ThreadStatus)> = BTreeMap::new();
        for (intent, status) in self.thread_intents(&owner).await? {
            if intent.last_cursor > cursor {
                changed.insert(
                    intent.intent_id.clone(),
                    (intent.last_cursor, intent, status),
                );
            }
        }
        let mut after = cursor;
        loop {
            let page = self.store.task_events_after(after, PAGE).await?;
            let full = page.len() == PAGE;
            for stored in page {
                after = stored.cursor;
                let left = stored.event.task_stream_effect().is_some_and(|effect| {
                    owner.holds(&effect.remove_for) && !owner.holds(&effect.upsert_for)
                });
                let id = &stored.event.intent_id;
                if left
                    && changed.get(id).is_none_or(|(at, _, _)| *at < stored.cursor)
                    && let Some(intent) = self.store.intent(id).await?
                    && owner.status_of(&intent).is_none()
                {
                    changed.insert(id.clone(), (stored.cursor, intent, ThreadStatus::Done));
                }
            }
            if !full {
                break;
            }
        }
        let mut ordered: Vec<(u64, Intent, ThreadStatus)> = changed.into_values().collect();
        ordered.sort_by_key(|(at, _, _)| *at);
        let has_more = ordered.len() > limit;
        let mut changes = Vec::new();
        for (at, intent, status) in ordered.into_iter().take(limit) {
            changes.push((
                at,
                self.thread(&owner, intent, status, Some(LIST_TIMELINE_ENTRIES))
                    .await?,
            ));
        }
        let next_cursor = changes.last().map_or(cursor, |(at, _)| *at);
        Ok(InboxChanges {
            changes,
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
    ) -> Result<Value> {
        let message = message.trim().to_string();
        if message.is_empty() || message.chars().count() > MAX_MESSAGE_CHARS {
            return Err(Error::invalid_field(
                "message",
                format!("must be 1-{MAX_MESSAGE_CHARS} characters"),
            ));
        }
        let owner = owner_of(caller, owner_agent)?;
        let author = caller.identity.clone();
        let id = thread_id.to_string();
        let written = self
            .store
            .write_intent(
                Target::Existing(thread_id.to_string()),
                claim,
                Box::new(move |change| {
                    // Checked inside the write, after an idempotent retry has been replayed.
                    if owner.status_of(&change.intent).is_none() {
                        return Err(Error::not_found("inbox thread", &id));
                    }
                    change.add_message(&author, &message);
                    Ok(json!({ "ok": true, "thread_id": id }))
                }),
            )
            .await
            .map_err(|err| match err.kind {
                crate::domain::ErrorKind::NotFound => Error::not_found("inbox thread", thread_id),
                _ => err,
            })?;
        Ok(written.response)
    }

    /// `POST /v1/inbox/{thread_id}/delegate`.
    pub async fn inbox_delegate(
        &self,
        caller: &Principal,
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
        self.delegate(caller, thread_id, to, note, claim).await
    }

    /// `POST /v1/inbox/{thread_id}/approve|reject`.
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
