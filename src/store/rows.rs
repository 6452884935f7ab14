//! Reading rows back into domain values, once for both backends. Each backend
//! exposes its row type as [`Columns`]; the decoding (which column holds what,
//! how text becomes timestamps, statuses and JSON) lives here, so SQLite and
//! PostgreSQL cannot drift apart.
//!
//! A value that does not decode means the row was changed outside signoff. It is
//! reported, naming the column, rather than trusted.

use crate::domain::{
    Event, Intent, Principal, PrincipalKind, Status, StoredEvent, TimerKind, Timestamp,
    WaitingReason,
};

use super::{Channel, DueTimer, KeyRecord, Notification, OutboxItem};

/// Why a row could not be read: the column, and what is wrong with it.
pub type Damage = String;

/// A database row, as the decoders below need it.
pub trait Columns {
    /// A nullable text column.
    fn text(&self, index: usize) -> Result<Option<String>, Damage>;
    /// A non-null integer column.
    fn int(&self, index: usize) -> Result<i64, Damage>;
}

fn damage(name: &str, why: impl std::fmt::Display) -> Damage {
    format!("column {name}: {why}")
}

fn required<T>(value: Option<T>, name: &str) -> Result<T, Damage> {
    value.ok_or_else(|| damage(name, "unexpected NULL"))
}

fn optional_parsed<T, E: std::fmt::Display>(
    row: &impl Columns,
    index: usize,
    name: &str,
    parse: impl Fn(&str) -> Result<T, E>,
) -> Result<Option<T>, Damage> {
    row.text(index)?
        .map(|text| parse(&text).map_err(|err| damage(name, err)))
        .transpose()
}

pub fn text(row: &impl Columns, index: usize, name: &str) -> Result<String, Damage> {
    required(row.text(index)?, name)
}

pub fn unsigned<T: TryFrom<i64>>(
    row: &impl Columns,
    index: usize,
    name: &str,
) -> Result<T, Damage> {
    let value = row.int(index)?;
    T::try_from(value).map_err(|_| damage(name, format!("{value} is out of range")))
}

pub fn optional_timestamp(
    row: &impl Columns,
    index: usize,
    name: &str,
) -> Result<Option<Timestamp>, Damage> {
    optional_parsed(row, index, name, Timestamp::parse)
}

pub fn timestamp(row: &impl Columns, index: usize, name: &str) -> Result<Timestamp, Damage> {
    required(optional_timestamp(row, index, name)?, name)
}

pub fn optional_json<T: serde::de::DeserializeOwned>(
    row: &impl Columns,
    index: usize,
    name: &str,
) -> Result<Option<T>, Damage> {
    optional_parsed(row, index, name, |text| serde_json::from_str::<T>(text))
}

pub fn json<T: serde::de::DeserializeOwned>(
    row: &impl Columns,
    index: usize,
    name: &str,
) -> Result<T, Damage> {
    required(optional_json(row, index, name)?, name)
}

pub fn status(row: &impl Columns, index: usize) -> Result<Status, Damage> {
    let text = text(row, index, "status")?;
    Status::parse(&text).ok_or_else(|| damage("status", format!("unknown status {text}")))
}

fn waiting_reason(row: &impl Columns, index: usize) -> Result<Option<WaitingReason>, Damage> {
    optional_parsed(row, index, "waiting_reason", |text| {
        WaitingReason::parse(text).ok_or_else(|| format!("unknown reason {text}"))
    })
}

/// What saving an intent that already exists changes: everything that may
/// change after it was created. Both backends' upserts end with this.
macro_rules! intent_upsert_update {
    () => {
        "ON CONFLICT (intent_id) DO UPDATE SET
            status = excluded.status, waiting_reason = excluded.waiting_reason,
            updated_at = excluded.updated_at, assignees = excluded.assignees,
            assigned_at = excluded.assigned_at, due_at = excluded.due_at,
            remind_count = excluded.remind_count, escalation_stage = excluded.escalation_stage,
            result = excluded.result, last_seq = excluded.last_seq, last_cursor = excluded.last_cursor,
            workflow = excluded.workflow, votes = excluded.votes"
    };
}
pub(crate) use intent_upsert_update;

pub const INTENT_COLUMNS: &str =
    "intent_id, intent_type, correlation_id, from_agent, to_agent, reply_to,
    payload, status, waiting_reason, created_at, updated_at, human_task, assignees, assigned_at,
    due_at, remind_count, escalation_stage, result, lifecycle, last_seq, last_cursor,
    workflow, step_of, votes";

/// Reads [`INTENT_COLUMNS`].
pub fn intent(row: &impl Columns) -> Result<Intent, Damage> {
    Ok(Intent {
        intent_id: text(row, 0, "intent_id")?,
        intent_type: text(row, 1, "intent_type")?,
        correlation_id: text(row, 2, "correlation_id")?,
        from_agent: text(row, 3, "from_agent")?,
        to_agent: row.text(4)?,
        reply_to: row.text(5)?,
        payload: json(row, 6, "payload")?,
        status: status(row, 7)?,
        waiting_reason: waiting_reason(row, 8)?,
        created_at: timestamp(row, 9, "created_at")?,
        updated_at: timestamp(row, 10, "updated_at")?,
        human_task: optional_json(row, 11, "human_task")?,
        assignees: json(row, 12, "assignees")?,
        assigned_at: optional_timestamp(row, 13, "assigned_at")?,
        due_at: optional_timestamp(row, 14, "due_at")?,
        remind_count: unsigned(row, 15, "remind_count")?,
        escalation_stage: unsigned(row, 16, "escalation_stage")?,
        result: optional_json(row, 17, "result")?,
        lifecycle: json(row, 18, "lifecycle")?,
        last_seq: unsigned(row, 19, "last_seq")?,
        last_cursor: unsigned(row, 20, "last_cursor")?,
        workflow: optional_json(row, 21, "workflow")?,
        step_of: optional_json(row, 22, "step_of")?,
        votes: json(row, 23, "votes")?,
    })
}

pub const EVENT_COLUMNS: &str =
    "cursor, intent_id, seq, event_type, status, waiting_reason, actor, at, details";

/// Reads [`EVENT_COLUMNS`].
pub fn event(row: &impl Columns) -> Result<Event, Damage> {
    Ok(Event {
        intent_id: text(row, 1, "intent_id")?,
        seq: unsigned(row, 2, "seq")?,
        event_type: text(row, 3, "event_type")?,
        status: status(row, 4)?,
        waiting_reason: waiting_reason(row, 5)?,
        actor: text(row, 6, "actor")?,
        at: timestamp(row, 7, "at")?,
        details: json(row, 8, "details")?,
    })
}

/// Reads [`EVENT_COLUMNS`] followed by `task`.
pub fn stored_event(row: &impl Columns) -> Result<StoredEvent, Damage> {
    Ok(StoredEvent {
        cursor: unsigned(row, 0, "cursor")?,
        event: event(row)?,
        task: optional_json(row, 9, "task")?,
    })
}

pub const KEY_COLUMNS: &str =
    "key_id, key_prefix, kind, identity, teams, label, created_at, revoked_at";

/// Reads [`KEY_COLUMNS`].
pub fn key(row: &impl Columns) -> Result<KeyRecord, Damage> {
    let kind = text(row, 2, "kind")?;
    Ok(KeyRecord {
        key_id: text(row, 0, "key_id")?,
        key_prefix: text(row, 1, "key_prefix")?,
        principal: Principal {
            kind: PrincipalKind::parse(&kind).map_err(|err| damage("kind", err))?,
            identity: text(row, 3, "identity")?,
            teams: json(row, 4, "teams")?,
        },
        label: row.text(5)?,
        created_at: timestamp(row, 6, "created_at")?,
        revoked_at: optional_timestamp(row, 7, "revoked_at")?,
    })
}

pub const TIMER_COLUMNS: &str = "intent_id, kind, due_at, attempt";

/// Reads [`TIMER_COLUMNS`].
pub fn due_timer(row: &impl Columns) -> Result<DueTimer, Damage> {
    let kind = text(row, 1, "kind")?;
    Ok(DueTimer {
        intent_id: text(row, 0, "intent_id")?,
        kind: TimerKind::parse(&kind)
            .ok_or_else(|| damage("kind", format!("unknown timer kind {kind}")))?,
        due_at: timestamp(row, 2, "due_at")?,
        attempt: unsigned(row, 3, "attempt")?,
    })
}

pub const OUTBOX_COLUMNS: &str =
    "outbox_id, intent_id, channel, recipient, target, message, attempts";

/// Reads [`OUTBOX_COLUMNS`].
pub fn outbox_item(row: &impl Columns) -> Result<OutboxItem, Damage> {
    let channel = text(row, 2, "channel")?;
    Ok(OutboxItem {
        outbox_id: row.int(0)?,
        intent_id: text(row, 1, "intent_id")?,
        notification: Notification {
            channel: Channel::parse(&channel)
                .ok_or_else(|| damage("channel", format!("unknown channel {channel}")))?,
            recipient: text(row, 3, "recipient")?,
            target: text(row, 4, "target")?,
            message: json(row, 5, "message")?,
        },
        attempts: unsigned(row, 6, "attempts")?,
    })
}
