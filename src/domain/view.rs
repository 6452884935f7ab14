//! Read-only projections served to reviewers and inbox clients.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::intent::{Intent, Status};
use super::task::HumanTask;
use super::time::Timestamp;

/// One entry of `GET /v1/me/tasks` and of the task stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskView {
    pub intent_id: String,
    pub intent_type: String,
    pub status: Status,
    pub from_agent: String,
    #[serde(default)]
    pub to_agent: Option<String>,
    #[serde(default)]
    pub correlation_id: String,
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
    #[serde(default)]
    pub payload: Value,
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
            correlation_id: intent.correlation_id.clone(),
            created_at: intent.created_at,
            assigned_at: intent.assigned_at,
            due_at: intent.due_at,
            human_task: intent.human_task.clone()?,
            reminders_sent: intent.remind_count,
            escalation_stage: intent.escalation_stage,
            assignees: intent.assignees.clone(),
            payload: intent.payload.clone(),
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ThreadStatus {
    /// A task waiting for this owner's decision.
    Pending,
    Active,
    /// A completed intent reported back to its `reply_to` owner.
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
