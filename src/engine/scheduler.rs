//! The durable scheduler: reminders, escalation and timeouts.
//!
//! Timers are rows in the store, one per kind per intent. The scheduler asks the
//! store for the next due time and sleeps until then (at most a minute, so a clock
//! change is noticed), or until a commit schedules something earlier. Firing runs
//! on the writer: the timer's removal, its effect (events, reassignment, the next
//! timer) and any notifications commit in one transaction, so after a crash each
//! overdue timer fires exactly once, oldest first.

use std::sync::Arc;

use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::decisions::time_out;
use super::notify::{NotifyKind, queue_notifications};
use super::{Engine, EngineSettings};
use crate::domain::event::{ESCALATED, REMINDER};
use crate::domain::lifecycle::SCHEDULER_ACTOR;
use crate::domain::{Result, TimerKind, Timestamp};
use crate::store::{Change, DueTimer, TimerFn};

/// Timers fired per transaction. Large enough for thousands of firings a second,
/// small enough that API writes queued behind a batch wait only milliseconds.
pub const FIRE_BATCH: usize = 500;

/// What firing `timer` does to its intent, inside the transaction that consumes it.
pub fn apply_timer(
    settings: &Arc<EngineSettings>,
    timer: &DueTimer,
    change: &mut Change,
) -> Result<()> {
    match timer.kind {
        TimerKind::Remind => remind(settings, timer, change),
        TimerKind::Escalate => escalate(settings, timer, change),
        TimerKind::Timeout => {
            let Some(timeout) = change.intent.lifecycle.timeout.clone() else {
                return Ok(());
            };
            time_out(change, settings, &timeout.fallback, timer.due_at)
        }
    }
}

/// Sends reminder `remind_count + 1` to the current assignees and schedules the
/// next. However late it fires, it is one reminder, not one per missed interval.
fn remind(settings: &EngineSettings, timer: &DueTimer, change: &mut Change) -> Result<()> {
    if !change.intent.is_waiting_for_human() {
        return Ok(());
    }
    change.intent.remind_count += 1;
    let reminder_no = change.intent.remind_count;
    let to = change.intent.assignees.clone();
    change.record(
        REMINDER,
        SCHEDULER_ACTOR,
        json!({ "reminder_no": reminder_no, "to": to, "due_at": timer.due_at }),
    );
    queue_notifications(
        change,
        &settings.notify,
        &to,
        NotifyKind::Reminder { reminder_no },
    );
    if let Some(next) = change
        .intent
        .lifecycle
        .next_reminder(reminder_no, timer.due_at, change.now)
    {
        change.schedule(next);
    }
    Ok(())
}

/// Moves the task to the next stage of its ladder: the same task, new assignees.
fn escalate(settings: &EngineSettings, timer: &DueTimer, change: &mut Change) -> Result<()> {
    let stage_no = timer.attempt;
    let Some(stage) = change.intent.lifecycle.escalation_stage(stage_no).cloned() else {
        return Ok(());
    };
    if !change.intent.is_waiting_for_human() {
        return Ok(());
    }
    let previous = std::mem::replace(&mut change.intent.assignees, stage.to.clone());
    change.intent.escalation_stage = stage_no;
    change.intent.assigned_at = Some(change.now);
    change.record(
        ESCALATED,
        SCHEDULER_ACTOR,
        json!({
            "escalated_to": stage.to,
            "previous_assignees": previous,
            "stage": stage_no,
            "due_at": timer.due_at,
        }),
    );
    queue_notifications(
        change,
        &settings.notify,
        &stage.to,
        NotifyKind::Escalated { stage: stage_no },
    );
    let started = change.intent.created_at;
    if let Some(next) = change.intent.lifecycle.next_escalation(stage_no, started) {
        change.schedule(next);
    }
    Ok(())
}

impl Engine {
    /// The firing function the store runs for each due timer.
    pub(super) fn timer_fn(settings: Arc<EngineSettings>) -> TimerFn {
        Arc::new(move |timer, change| apply_timer(&settings, timer, change))
    }

    /// Fires every timer due now, up to one batch; returns how many were due.
    pub async fn fire_due_timers(&self) -> Result<usize> {
        self.store
            .fire_due_timers(self.clock.now(), FIRE_BATCH, self.fire_timer.clone())
            .await
    }

    /// When the next timer is due, if any is pending.
    pub async fn next_timer_due(&self) -> Result<Option<Timestamp>> {
        self.store.next_timer_due().await
    }

    /// Runs the scheduler until `shutdown` fires.
    pub async fn run_scheduler(&self, shutdown: CancellationToken) {
        self.hub
            .timers
            .drive(
                "firing timers",
                self.clock.as_ref(),
                &shutdown,
                FIRE_BATCH,
                || self.fire_due_timers(),
                || self.next_timer_due(),
            )
            .await;
    }
}
