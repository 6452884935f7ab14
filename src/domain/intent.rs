//! The intent: one request from an agent, its status machine and its wire form.

use std::fmt;

use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;

use super::error::{Error, Result};
use super::lifecycle::{LifecyclePolicy, TIMEOUT_ACTOR};
use super::task::{HumanTask, Vote};
use super::time::Timestamp;
use super::workflow::{StepLink, Workflow};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Status {
    Created,
    Submitted,
    Delivered,
    Acknowledged,
    InProgress,
    Waiting,
    Completed,
    Failed,
    Canceled,
    TimedOut,
}

impl Status {
    pub const ALL: [Status; 10] = [
        Status::Created,
        Status::Submitted,
        Status::Delivered,
        Status::Acknowledged,
        Status::InProgress,
        Status::Waiting,
        Status::Completed,
        Status::Failed,
        Status::Canceled,
        Status::TimedOut,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            Status::Created => "CREATED",
            Status::Submitted => "SUBMITTED",
            Status::Delivered => "DELIVERED",
            Status::Acknowledged => "ACKNOWLEDGED",
            Status::InProgress => "IN_PROGRESS",
            Status::Waiting => "WAITING",
            Status::Completed => "COMPLETED",
            Status::Failed => "FAILED",
            Status::Canceled => "CANCELED",
            Status::TimedOut => "TIMED_OUT",
        }
    }

    pub fn parse(text: &str) -> Option<Status> {
        Status::ALL
            .into_iter()
            .find(|status| status.as_str() == text)
    }

    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            Status::Completed | Status::Failed | Status::Canceled | Status::TimedOut
        )
    }

    /// The event type that records arriving in this status.
    pub fn event_type(&self) -> &'static str {
        match self {
            Status::Created => "intent.created",
            Status::Submitted => "intent.submitted",
            Status::Delivered => "intent.delivered",
            Status::Acknowledged => "intent.acknowledged",
            Status::InProgress => "intent.in_progress",
            Status::Waiting => "intent.waiting",
            Status::Completed => "intent.completed",
            Status::Failed => "intent.failed",
            Status::Canceled => "intent.canceled",
            Status::TimedOut => "intent.timed_out",
        }
    }

    /// Position along the delivery path; work only moves forward along it, and any
    /// live status may jump to WAITING, back to IN_PROGRESS from WAITING, or end.
    fn progress_rank(&self) -> u8 {
        match self {
            Status::Created => 0,
            Status::Submitted => 1,
            Status::Delivered => 2,
            Status::Acknowledged => 3,
            Status::InProgress => 4,
            Status::Waiting => 5,
            _ => 6,
        }
    }

    /// The whole status machine. Anything it does not allow is a conflict.
    pub fn may_become(&self, next: Status) -> bool {
        if self.is_terminal() {
            return false;
        }
        match (self, next) {
            (Status::Created, Status::Submitted) => true,
            (Status::Created, _) => false,
            (_, Status::Created) => false,
            (_, next) if next.is_terminal() => true,
            (Status::Waiting, Status::InProgress) => true,
            (current, next) => next.progress_rank() > current.progress_rank(),
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum WaitingReason {
    WaitingForHuman,
    WaitingForTool,
    WaitingForAgent,
    WaitingForTime,
}

impl WaitingReason {
    pub fn as_str(&self) -> &'static str {
        match self {
            WaitingReason::WaitingForHuman => "WAITING_FOR_HUMAN",
            WaitingReason::WaitingForTool => "WAITING_FOR_TOOL",
            WaitingReason::WaitingForAgent => "WAITING_FOR_AGENT",
            WaitingReason::WaitingForTime => "WAITING_FOR_TIME",
        }
    }

    pub fn parse(text: &str) -> Option<WaitingReason> {
        [
            WaitingReason::WaitingForHuman,
            WaitingReason::WaitingForTool,
            WaitingReason::WaitingForAgent,
            WaitingReason::WaitingForTime,
        ]
        .into_iter()
        .find(|reason| reason.as_str() == text)
    }
}

/// An intent as stored and as served. Serialises to the wire form of
/// `GET /v1/intents/{id}` (see `IntentWire`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Intent {
    pub intent_id: String,
    pub intent_type: String,
    pub correlation_id: String,
    pub from_agent: String,
    #[serde(default)]
    pub to_agent: Option<String>,
    #[serde(default)]
    pub reply_to: Option<String>,
    #[serde(default)]
    pub payload: Value,
    pub status: Status,
    #[serde(default)]
    pub waiting_reason: Option<WaitingReason>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    #[serde(default)]
    pub human_task: Option<HumanTask>,
    /// The reviewers (or `team:NAME`) who may decide right now.
    #[serde(default)]
    pub assignees: Vec<String>,
    #[serde(default)]
    pub assigned_at: Option<Timestamp>,
    #[serde(default)]
    pub due_at: Option<Timestamp>,
    #[serde(default)]
    pub remind_count: u32,
    #[serde(default)]
    pub escalation_stage: u32,
    #[serde(default)]
    pub result: Option<Value>,
    /// Reminders, escalation and timeout, resolved when the intent was created.
    #[serde(default)]
    pub lifecycle: LifecyclePolicy,
    /// On a scenario's own intent: its steps, and how each went so far.
    #[serde(default)]
    pub workflow: Option<Workflow>,
    /// On the intent of one step of a scenario: the workflow it belongs to.
    #[serde(default)]
    pub step_of: Option<StepLink>,
    /// The votes cast so far on a quorum task, in order.
    #[serde(default)]
    pub votes: Vec<Vote>,
    /// Highest event seq so far; the next event gets `last_seq + 1`.
    #[serde(default, skip)]
    pub last_seq: u64,
    /// Global commit position of the latest event or inbox message about this intent.
    #[serde(default, skip)]
    pub last_cursor: u64,
}

impl Intent {
    pub fn is_waiting_for_human(&self) -> bool {
        self.status == Status::Waiting
            && self.waiting_reason == Some(WaitingReason::WaitingForHuman)
            && self.human_task.is_some()
    }

    /// Moves to `next`, or explains why the status machine forbids it.
    pub fn transition(
        &mut self,
        next: Status,
        waiting_reason: Option<WaitingReason>,
    ) -> Result<()> {
        if !self.status.may_become(next) {
            return Err(Error::conflict(
                "illegal_transition",
                format!(
                    "intent {} is {} and cannot become {next}",
                    self.intent_id, self.status
                ),
            )
            .with_details(serde_json::json!({
                "from": self.status.as_str(),
                "to": next.as_str(),
            })));
        }
        self.status = next;
        self.waiting_reason = if next == Status::Waiting {
            waiting_reason
        } else {
            None
        };
        Ok(())
    }

    /// The error for any change attempted after the intent ended; it names who or what
    /// ended it and when, so a losing reviewer learns who won.
    pub fn already_ended(&self) -> Error {
        let decided_by = self
            .result
            .as_ref()
            .and_then(|result| result.get("decided_by"))
            .cloned()
            .unwrap_or(Value::Null);
        let decided_at = self
            .result
            .as_ref()
            .and_then(|result| result.get("decided_at"))
            .cloned()
            .unwrap_or_else(|| Value::String(self.updated_at.to_string()));
        let outcome = self
            .result
            .as_ref()
            .and_then(|result| result.get("outcome"))
            .cloned()
            .unwrap_or(Value::Null);
        let who = decided_by.as_str().unwrap_or("the system");
        let when = decided_at.as_str().unwrap_or_default();
        let timed_out = who == TIMEOUT_ACTOR;
        let message = if timed_out {
            let fallback = match outcome.as_str() {
                Some(outcome) => format!("the fallback outcome {outcome}"),
                None => format!("status {}", self.status),
            };
            format!(
                "intent {} timed out at {when}: nobody decided in time, and the system applied {fallback}",
                self.intent_id
            )
        } else if self.status == Status::Completed && self.human_task.is_some() {
            format!(
                "intent {} was already decided by {who} at {when}",
                self.intent_id
            )
        } else {
            format!(
                "intent {} already ended as {} (by {who} at {when})",
                self.intent_id, self.status
            )
        };
        let code = if timed_out {
            "timed_out"
        } else if self.human_task.is_some() {
            "already_decided"
        } else {
            "intent_terminal"
        };
        Error::conflict(code, message).with_details(serde_json::json!({
            "status": self.status.as_str(),
            "decided_by": decided_by,
            "decided_at": decided_at,
            "outcome": outcome,
        }))
    }
}

/// The wire shape: every field plus the `lifecycle_*` aliases clients may read instead.
#[derive(Serialize)]
struct IntentWire<'a> {
    intent_id: &'a str,
    intent_type: &'a str,
    correlation_id: &'a str,
    from_agent: &'a str,
    to_agent: &'a Option<String>,
    reply_to: &'a Option<String>,
    payload: &'a Value,
    status: Status,
    lifecycle_status: Status,
    waiting_reason: Option<WaitingReason>,
    lifecycle_waiting_reason: Option<WaitingReason>,
    created_at: Timestamp,
    updated_at: Timestamp,
    human_task: &'a Option<HumanTask>,
    assignees: &'a [String],
    assigned_at: Option<Timestamp>,
    due_at: Option<Timestamp>,
    remind_count: u32,
    escalation_stage: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    result: &'a Option<Value>,
    lifecycle: &'a LifecyclePolicy,
    #[serde(skip_serializing_if = "Option::is_none")]
    workflow: &'a Option<Workflow>,
    #[serde(skip_serializing_if = "Option::is_none")]
    step_of: &'a Option<StepLink>,
    #[serde(skip_serializing_if = "<[Vote]>::is_empty")]
    votes: &'a [Vote],
}

impl Serialize for Intent {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        IntentWire {
            intent_id: &self.intent_id,
            intent_type: &self.intent_type,
            correlation_id: &self.correlation_id,
            from_agent: &self.from_agent,
            to_agent: &self.to_agent,
            reply_to: &self.reply_to,
            payload: &self.payload,
            status: self.status,
            lifecycle_status: self.status,
            waiting_reason: self.waiting_reason,
            lifecycle_waiting_reason: self.waiting_reason,
            created_at: self.created_at,
            updated_at: self.updated_at,
            human_task: &self.human_task,
            assignees: &self.assignees,
            assigned_at: self.assigned_at,
            due_at: self.due_at,
            remind_count: self.remind_count,
            escalation_stage: self.escalation_stage,
            result: &self.result,
            lifecycle: &self.lifecycle,
            workflow: &self.workflow,
            step_of: &self.step_of,
            votes: &self.votes,
        }
        .serialize(serializer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn terminal_statuses_never_change() {
        for terminal in Status::ALL.into_iter().filter(Status::is_terminal) {
            for next in Status::ALL {
                assert!(!terminal.may_become(next), "{terminal} -> {next}");
            }
        }
    }

    #[test]
    fn the_happy_paths_are_allowed() {
        use Status::*;
        for (from, to) in [
            (Created, Submitted),
            (Submitted, Waiting),
            (Submitted, Delivered),
            (Delivered, Acknowledged),
            (Acknowledged, InProgress),
            (InProgress, Waiting),
            (Waiting, InProgress),
            (Waiting, Completed),
            (Submitted, Canceled),
            (Waiting, TimedOut),
        ] {
            assert!(from.may_become(to), "{from} -> {to}");
        }
        for (from, to) in [
            (Created, Waiting),
            (Submitted, Created),
            (InProgress, Delivered),
            (Delivered, Submitted),
            (Waiting, Waiting),
        ] {
            assert!(!from.may_become(to), "{from} -> {to}");
        }
    }

    fn any_status() -> impl Strategy<Value = Status> {
        (0..Status::ALL.len()).prop_map(|index| Status::ALL[index])
    }

    proptest! {
        /// Whatever sequence of transitions is attempted, an intent never leaves a
        /// terminal status and never returns to CREATED.
        #[test]
        fn walks_respect_the_machine(steps in proptest::collection::vec(any_status(), 1..30)) {
            let mut current = Status::Created;
            let mut ended = false;
            for next in steps {
                if current.may_become(next) {
                    prop_assert!(!ended);
                    prop_assert_ne!(next, Status::Created);
                    current = next;
                    ended = current.is_terminal();
                }
            }
        }

        #[test]
        fn status_text_round_trips(status in any_status()) {
            prop_assert_eq!(Status::parse(status.as_str()), Some(status));
            let json = serde_json::to_string(&status).unwrap();
            prop_assert_eq!(json, format!("\"{}\"", status.as_str()));
        }
    }
}
