//! Read-only projections served to reviewers and inbox clients.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::intent::{Intent, Status};
use super::task::{HumanTask, Vote};
use super::time::Timestamp;

/// One entry of `GET /v1/me/tasks` and of the task stream. The intent's payload
/// is left out: lists of thousands of tasks stay small, and a client reads the
/// payload of the one task it shows from `GET /v1/intents/{id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskView {
    pub intent_id: String,
    pub intent_type: String,
    pub status: Status,
    pub from_agent: String,
    #[serde(default)]
    pub to_agent: Option<String>,
    pub created_at: Timestamp,
    #[serde(default)]
    pub assigned_at: Option<Timestamp>,
    #[serde(default)]
    pub due_at: Option<Timestamp>,
    pub human_task: HumanTask,
    #[serde(default)]
    pub reminders_sent: u32,
    #[serde(default)]
    pub escalation_stage: u32,
    #[serde(default)]
    pub assignees: Vec<String>,
    /// [ext] On a quorum task: the votes cast so far (the voters have left
    /// `assignees`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub votes: Vec<Vote>,
}

impl TaskView {
    /// `None` for intents without a human task.
    pub fn of(intent: &Intent) -> Option<TaskView> {
        Some(TaskView {
            intent_id: intent.intent_id.clone(),
            intent_type: intent.intent_type.clone(),
            status: intent.status,
            from_agent: intent.from_agent.clone(),
            to_agent: intent.to_agent.clone(),
            created_at: intent.created_at,
            assigned_at: intent.assigned_at,
            due_at: intent.due_at,
            human_task: intent.human_task.clone()?,
            reminders_sent: intent.remind_count,
            escalation_stage: intent.escalation_stage,
            assignees: intent.assignees.clone(),
            votes: intent.votes.clone(),
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ThreadStatus {
    /// A task waiting for this owner's decision.
    Pending,
    /// A completed intent reported back to its `reply_to` owner, or a task that
    /// left this owner's list.
    Done,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimelineEntry {
    pub at: Timestamp,
    /// `event` or `message`.
    pub kind: String,
    pub actor: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<Value>,
}

/// An inbox thread: one intent as one owner sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Thread {
    pub thread_id: String,
    pub intent_id: String,
    pub status: ThreadStatus,
    pub owner_agent: String,
    pub from_agent: String,
    #[serde(default)]
    pub to_agent: Option<String>,
    #[serde(default)]
    pub title: Option<String>,
    pub intent_status: Status,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    #[serde(default)]
    pub result: Option<Value>,
    /// Position in the global change order, for `GET /v1/inbox/changes`.
    pub cursor: String,
    pub timeline: Vec<TimelineEntry>,
}

/// `tasks.snapshot`: every task the reviewer may decide, as of `cursor`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskSnapshot {
    pub cursor: u64,
    pub tasks: Vec<TaskView>,
}

/// `task.upserted`: a task appeared, or changed (reassigned, reminded, escalated).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskUpsert {
    pub cursor: u64,
    pub reason: String,
    pub task: TaskView,
}

/// `task.removed`: a task left the list, and who or what ended it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskRemoval {
    pub cursor: u64,
    pub intent_id: String,
    pub reason: String,
    pub status: Status,
    pub by: String,
    #[serde(default)]
    pub outcome: Option<String>,
}

/// `task.reminder`: a reminder is due for this reviewer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskReminder {
    pub cursor: u64,
    pub intent_id: String,
    pub reminder_no: u64,
    pub task: TaskView,
}

/// One message of a reviewer's task stream; the SSE event name says which.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum TaskStreamItem {
    Snapshot(TaskSnapshot),
    Upserted(TaskUpsert),
    Removed(TaskRemoval),
    Reminder(TaskReminder),
}

impl TaskStreamItem {
    /// Where a stream that received this item resumes.
    pub fn cursor(&self) -> u64 {
        match self {
            TaskStreamItem::Snapshot(item) => item.cursor,
            TaskStreamItem::Upserted(item) => item.cursor,
            TaskStreamItem::Removed(item) => item.cursor,
            TaskStreamItem::Reminder(item) => item.cursor,
        }
    }

    pub fn event_name(&self) -> &'static str {
        match self {
            TaskStreamItem::Snapshot(_) => "tasks.snapshot",
            TaskStreamItem::Upserted(_) => "task.upserted",
            TaskStreamItem::Removed(_) => "task.removed",
            TaskStreamItem::Reminder(_) => "task.reminder",
        }
    }

    /// Reads an item from its SSE event name and data. Unknown event names give
    /// `None`, so newer servers may add events without breaking older clients.
    pub fn parse(event_name: &str, data: &str) -> Option<Result<TaskStreamItem, String>> {
        fn decode<T: serde::de::DeserializeOwned>(name: &str, data: &str) -> Result<T, String> {
            serde_json::from_str(data).map_err(|err| format!("bad `{name}` event: {err}"))
        }
        let item = match event_name {
            "tasks.snapshot" => decode(event_name, data).map(TaskStreamItem::Snapshot),
            "task.upserted" => decode(event_name, data).map(TaskStreamItem::Upserted),
            "task.removed" => decode(event_name, data).map(TaskStreamItem::Removed),
            "task.reminder" => decode(event_name, data).map(TaskStreamItem::Reminder),
            _ => return None,
        };
        Some(item)
    }
}
