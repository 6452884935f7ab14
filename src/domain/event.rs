//! Events: the append-only history of an intent, and how each one shows up in a
//! reviewer's task stream.

use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;

use super::intent::{Intent, Status, WaitingReason};
use super::lifecycle::TIMEOUT_ACTOR;
use super::time::Timestamp;
use super::view::TaskView;

pub const CREATED: &str = "intent.created";
pub const SUBMITTED: &str = "intent.submitted";
pub const DELIVERED: &str = "intent.delivered";
pub const ACKNOWLEDGED: &str = "intent.acknowledged";
pub const IN_PROGRESS: &str = "intent.in_progress";
pub const HUMAN_TASK_ASSIGNED: &str = "intent.human_task_assigned";
pub const REMINDER: &str = "intent.reminder";
pub const ESCALATED: &str = "intent.escalated";
/// [ext] A reviewer handed the task to someone else from the inbox.
pub const DELEGATED: &str = "intent.delegated";
pub const NOTIFIED: &str = "intent.notified";
pub const VIEWED: &str = "intent.viewed";
/// [ext] An assignee of a quorum task voted; the task waits for the others.
pub const VOTED: &str = "intent.voted";
/// [ext] On a scenario's intent: a step began, as its own intent.
pub const STEP_STARTED: &str = "intent.step_started";
/// [ext] On a scenario's intent: a step's intent ended, and where that leads.
pub const STEP_ENDED: &str = "intent.step_ended";
pub const COMPLETED: &str = "intent.completed";
pub const FAILED: &str = "intent.failed";
pub const CANCELED: &str = "intent.canceled";
pub const TIMED_OUT: &str = "intent.timed_out";

/// One entry of an intent's history, exactly as `GET /v1/intents/{id}/events` serves it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Event {
    pub intent_id: String,
    pub seq: u64,
    pub event_type: String,
    pub status: Status,
    #[serde(default)]
    pub waiting_reason: Option<WaitingReason>,
    pub actor: String,
    pub at: Timestamp,
    #[serde(default)]
    pub details: Value,
}

impl Event {
    pub fn is_terminal(&self) -> bool {
        self.status.is_terminal()
    }

    /// The reviewers (or teams) this event concerns, read from its details.
    fn detail_list(&self, key: &str) -> Vec<String> {
        self.details
            .get(key)
            .and_then(Value::as_array)
            .map(|items| {
                items
                    .iter()
                    .filter_map(|item| item.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// What this event means for reviewers' live task lists, if anything. It is
    /// derived from the event alone, so a stream resumed from the database sees
    /// exactly what a live subscriber saw.
    pub fn task_stream_effect(&self) -> Option<TaskStreamEffect> {
        match self.event_type.as_str() {
            HUMAN_TASK_ASSIGNED => Some(TaskStreamEffect {
                upsert_for: self.detail_list("assignees"),
                remove_for: vec![],
                remind: vec![],
                reason: "assigned",
            }),
            REMINDER => {
                let to = self.detail_list("to");
                Some(TaskStreamEffect {
                    upsert_for: to.clone(),
                    remove_for: vec![],
                    remind: to,
                    reason: "reminded",
                })
            }
            ESCALATED | DELEGATED => {
                let new = self.detail_list(if self.event_type == ESCALATED {
                    "escalated_to"
                } else {
                    "delegated_to"
                });
                let removed = self
                    .detail_list("previous_assignees")
                    .into_iter()
                    .filter(|old| !new.contains(old))
                    .collect();
                Some(TaskStreamEffect {
                    upsert_for: new,
                    remove_for: removed,
                    remind: vec![],
                    reason: if self.event_type == ESCALATED {
                        "escalated"
                    } else {
                        "delegated"
                    },
                })
            }
            // A voter is done with the task; the others still hold it, and
            // see the vote.
            VOTED => Some(TaskStreamEffect {
                upsert_for: self.detail_list("remaining"),
                remove_for: vec![self.actor.clone()],
                remind: vec![],
                reason: "voted",
            }),
            _ if self.is_terminal() && self.details.get("assignees").is_some() => {
                Some(TaskStreamEffect {
                    upsert_for: vec![],
                    remove_for: self.detail_list("assignees"),
                    remind: vec![],
                    reason: match self.status {
                        // A fallback outcome completes the task, but nobody decided it.
                        _ if self.actor == TIMEOUT_ACTOR => "timed_out",
                        Status::Completed => "decided",
                        Status::TimedOut => "timed_out",
                        Status::Canceled => "canceled",
                        _ => "failed",
                    },
                })
            }
            _ => None,
        }
    }
}

/// How one event changes the live task lists: who gets the task (again), who loses it,
/// and who should be nudged with a reminder.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskStreamEffect {
    pub upsert_for: Vec<String>,
    pub remove_for: Vec<String>,
    pub remind: Vec<String>,
    pub reason: &'static str,
}

#[derive(Serialize)]
struct EventWire<'a> {
    intent_id: &'a str,
    seq: u64,
    event_type: &'a str,
    status: Status,
    waiting_reason: Option<WaitingReason>,
    actor: &'a str,
    at: Timestamp,
    details: &'a Value,
    /// Lifted out of `details` so `result["result"]["outcome"]` works on a terminal event.
    #[serde(skip_serializing_if = "Option::is_none")]
    result: Option<&'a Value>,
    /// The flat decision data, so `result["data"]["approved"]` works.
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a Value>,
}

impl Serialize for Event {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        EventWire {
            intent_id: &self.intent_id,
            seq: self.seq,
            event_type: &self.event_type,
            status: self.status,
            waiting_reason: self.waiting_reason,
            actor: &self.actor,
            at: self.at,
            details: &self.details,
            result: self.details.get("result"),
            data: self.details.get("data"),
        }
        .serialize(serializer)
    }
}

/// An event together with its position in the global, gap-free commit order (what
/// task streams resume from) and, for events that show a task to reviewers, the
/// task as it stood right after the event's commit. Live subscribers and streams
/// replayed from the database both read that same snapshot, so a resumed stream
/// sends exactly what a connected one sent.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    pub cursor: u64,
    pub event: Event,
    pub task: Option<TaskView>,
}

impl StoredEvent {
    /// `intent` is the intent as committed together with the event.
    pub fn new(cursor: u64, event: Event, intent: &Intent) -> StoredEvent {
        let shows_task = !event.is_terminal()
            && event.task_stream_effect().is_some()
            && intent.is_waiting_for_human();
        let task = if shows_task {
            TaskView::of(intent)
        } else {
            None
        };
        StoredEvent {
            cursor,
            event,
            task,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(event_type: &str, status: Status, details: Value) -> Event {
        Event {
            intent_id: "i1".into(),
            seq: 3,
            event_type: event_type.into(),
            status,
            waiting_reason: None,
            actor: "agent://a/b".into(),
            at: Timestamp::parse("2026-01-01T00:00:00Z").unwrap(),
            details,
        }
    }

    #[test]
    fn completed_events_lift_result_and_data() {
        let done = event(
            COMPLETED,
            Status::Completed,
            json!({"result": {"outcome": "approved"}, "data": {"approved": true}}),
        );
        let wire = serde_json::to_value(&done).unwrap();
        assert_eq!(wire["result"]["outcome"], "approved");
        assert_eq!(wire["data"]["approved"], true);
        assert_eq!(wire["waiting_reason"], Value::Null);
        let plain = serde_json::to_value(event(CREATED, Status::Created, json!({}))).unwrap();
        assert!(plain.get("result").is_none());
    }

    #[test]
    fn escalation_moves_the_task_between_reviewers() {
        let escalated = event(
            ESCALATED,
            Status::Waiting,
            json!({"escalated_to": ["bob", "team:ops"], "previous_assignees": ["alice", "bob"], "stage": 1}),
        );
        let effect = escalated.task_stream_effect().unwrap();
        assert_eq!(effect.upsert_for, vec!["bob", "team:ops"]);
        assert_eq!(effect.remove_for, vec!["alice"]);
    }

    #[test]
    fn terminal_events_remove_only_human_tasks() {
        let decided = event(
            COMPLETED,
            Status::Completed,
            json!({"assignees": ["alice"]}),
        );
        let effect = decided.task_stream_effect().unwrap();
        assert_eq!(effect.remove_for, vec!["alice"]);
        assert_eq!(effect.reason, "decided");
        let agent_work = event(COMPLETED, Status::Completed, json!({"result": {}}));
        assert!(agent_work.task_stream_effect().is_none());
    }
}
