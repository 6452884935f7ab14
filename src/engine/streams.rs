//! Live streams. Each one subscribes to the hub *before* reading the database, then
//! replays from the database and follows the hub, dropping anything at or below the
//! last position it has handed out. Whatever commits while a stream starts up is
//! therefore seen exactly once: either in the replay or live, never in neither.
//! A subscriber that falls behind the hub re-reads from the database.

use std::collections::VecDeque;
use std::sync::Arc;

use futures::Stream;
use serde_json::Value;
use tokio::sync::broadcast::error::RecvError;

use super::hub::Subscription;
use super::{Engine, PAGE, holdings_of};
use crate::domain::{
    Error, Event, Intent, Principal, Result, Status, StoredEvent, TaskReminder, TaskRemoval,
    TaskSnapshot, TaskStreamItem, TaskUpsert, TaskView,
};
use crate::store::{AgentDelivery, Committed};

/// What an event means for one reviewer, given the intent as of that event.
pub fn task_items_for(reviewer: &Principal, stored: &StoredEvent) -> Vec<TaskStreamItem> {
    let event = &stored.event;
    let Some(effect) = event.task_stream_effect() else {
        return vec![];
    };
    let holds = |entries: &[String]| entries.iter().any(|entry| reviewer.holds_assignee(entry));
    let sees = |entries: &[String]| reviewer.is_admin() || holds(entries);
    let removed = || {
        TaskStreamItem::Removed(TaskRemoval {
            cursor: stored.cursor,
            intent_id: event.intent_id.clone(),
            reason: effect.reason.to_string(),
            status: event.status,
            by: event
                .details
                .get("decided_by")
                .and_then(Value::as_str)
                .unwrap_or(&event.actor)
                .to_string(),
            outcome: event
                .details
                .pointer("/result/outcome")
                .and_then(Value::as_str)
                .map(str::to_string),
        })
    };
    if event.is_terminal() {
        return if sees(&effect.remove_for) {
            vec![removed()]
        } else {
            vec![]
        };
    }
    // Reassigned away from this reviewer; admins keep seeing every task.
    if !reviewer.is_admin() && holds(&effect.remove_for) && !holds(&effect.upsert_for) {
        return vec![removed()];
    }
    let Some(task) = stored.task.clone() else {
        return vec![];
    };
    let mut items = Vec::new();
    if sees(&effect.upsert_for) {
        items.push(TaskStreamItem::Upserted(TaskUpsert {
            cursor: stored.cursor,
            reason: effect.reason.to_string(),
            task: task.clone(),
        }));
    }
    if holds(&effect.remind) {
        items.push(TaskStreamItem::Reminder(TaskReminder {
            cursor: stored.cursor,
            intent_id: task.intent_id.clone(),
            reminder_no: event
                .details
                .get("reminder_no")
                .and_then(Value::as_u64)
                .unwrap_or(0),
            task,
        }));
    }
    items
}

struct IntentStream {
    engine: Engine,
    intent_id: String,
    last_seq: u64,
    buffer: VecDeque<Event>,
    subscription: Subscription<Arc<Committed>>,
    reload: bool,
}

/// One message of a task stream, and whether a client may resume right after it.
/// One event can produce several items (an upsert and a reminder); only the last
/// one is a resume point, so resuming never skips the rest of an event.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskFrame {
    pub item: TaskStreamItem,
    pub resume_point: bool,
}

fn frames_for(reviewer: &Principal, stored: &StoredEvent) -> Vec<TaskFrame> {
    let items = task_items_for(reviewer, stored);
    let last = items.len().saturating_sub(1);
    items
        .into_iter()
        .enumerate()
        .map(|(index, item)| TaskFrame {
            item,
            resume_point: index == last,
        })
        .collect()
}

struct TaskStream {
    engine: Engine,
    reviewer: Principal,
    last_cursor: u64,
    buffer: VecDeque<TaskFrame>,
    receiver: tokio::sync::broadcast::Receiver<Arc<Committed>>,
    reload: bool,
}

struct AgentStream {
    engine: Engine,
    agent: String,
    marks_delivered: bool,
    statuses: Option<Vec<Status>>,
    last_seq: u64,
    buffer: VecDeque<AgentDelivery>,
    subscription: Subscription<AgentDelivery>,
    reload: bool,
}

fn log_and_end<T>(what: &str, err: &Error) -> Option<T> {
    tracing::warn!("{what} stream ended: {err}");
    None
}

impl Engine {
    /// Every event of an intent after `since`: first those already stored, then
    /// live ones. Also returns the intent as it was when the stream started, and
    /// the position the stream really starts from: a `since` beyond the newest
    /// event (a client from before a database restore) is clamped, so the client
    /// still hears what happens next instead of waiting forever.
    pub async fn intent_events(
        &self,
        reader: &Principal,
        intent_id: &str,
        since: u64,
    ) -> Result<(Intent, u64, impl Stream<Item = Event> + Send + 'static)> {
        let intent = self.intent(reader, intent_id).await?;
        let since = since.min(intent.last_seq);
        let state = IntentStream {
            engine: self.clone(),
            intent_id: intent_id.to_string(),
            last_seq: since,
            buffer: VecDeque::new(),
            subscription: self.hub.subscribe_intent(intent_id),
            reload: true,
        };
        let events = futures::stream::unfold(state, |mut state| async move {
            loop {
                if let Some(event) = state.buffer.pop_front() {
                    if event.seq <= state.last_seq {
                        continue;
                    }
                    state.last_seq = event.seq;
                    return Some((event, state));
                }
                if state.reload {
                    match state
                        .engine
                        .store
                        .events(&state.intent_id, state.last_seq, PAGE)
                        .await
                    {
                        Ok(page) => {
                            state.reload = page.len() == PAGE;
                            state.buffer.extend(page);
                            continue;
                        }
                        Err(err) => return log_and_end("intent event", &err),
                    }
                }
                match state.subscription.receiver.recv().await {
                    Ok(committed) => state
                        .buffer
                        .extend(committed.events.iter().map(|stored| stored.event.clone())),
                    Err(RecvError::Lagged(_)) => state.reload = true,
                    Err(RecvError::Closed) => return None,
                }
            }
        });
        Ok((intent, since, events))
    }

    /// A reviewer's live task list: a snapshot (or, when resuming, everything after
    /// `resume_from`), then every change as it commits. A resume point beyond the
    /// newest commit (a client from before a database restore) gets a fresh
    /// snapshot instead of silence.
    pub async fn task_stream(
        &self,
        reviewer: &Principal,
        resume_from: Option<u64>,
    ) -> Result<impl Stream<Item = TaskFrame> + Send + 'static> {
        let receiver = self.hub.subscribe_tasks();
        let mut buffer = VecDeque::new();
        let resume_from = match resume_from {
            Some(cursor) if cursor <= self.store.latest_cursor().await? => Some(cursor),
            _ => None,
        };
        let last_cursor = match resume_from {
            Some(cursor) => cursor,
            None => {
                let snapshot = self.store.waiting_tasks(holdings_of(reviewer)).await?;
                let tasks = snapshot.tasks.iter().filter_map(TaskView::of).collect();
                buffer.push_back(TaskFrame {
                    item: TaskStreamItem::Snapshot(TaskSnapshot {
                        cursor: snapshot.cursor,
                        tasks,
                    }),
                    resume_point: true,
                });
                snapshot.cursor
            }
        };
        let state = TaskStream {
            engine: self.clone(),
            reviewer: reviewer.clone(),
            last_cursor,
            buffer,
            receiver,
            reload: resume_from.is_some(),
        };
        Ok(futures::stream::unfold(state, |mut state| async move {
            loop {
                if let Some(item) = state.buffer.pop_front() {
                    return Some((item, state));
                }
                if state.reload {
                    if let Err(err) = state.replay_page().await {
                        return log_and_end("task", &err);
                    }
                    continue;
                }
                match state.receiver.recv().await {
                    Ok(committed) => {
                        for stored in &committed.events {
                            if stored.cursor <= state.last_cursor {
                                continue;
                            }
                            state.last_cursor = stored.cursor;
                            state.buffer.extend(frames_for(&state.reviewer, stored));
                        }
                    }
                    Err(RecvError::Lagged(_)) => state.reload = true,
                    Err(RecvError::Closed) => return None,
                }
            }
        }))
    }

    /// Intents addressed to `agent` after delivery cursor `since`. Without a status
    /// filter, ended intents are left out.
    pub async fn agent_stream(
        &self,
        caller: &Principal,
        agent: &str,
        since: u64,
        statuses: Option<Vec<Status>>,
    ) -> Result<impl Stream<Item = AgentDelivery> + Send + 'static> {
        if !caller.is_admin() && caller.identity != agent {
            return Err(Error::forbidden(format!(
                "{} may not listen on {agent}'s stream",
                caller.identity
            )));
        }
        let state = AgentStream {
            engine: self.clone(),
            agent: agent.to_string(),
            marks_delivered: caller.identity == agent,
            statuses,
            last_seq: since,
            buffer: VecDeque::new(),
            subscription: self.hub.subscribe_agent(agent),
            reload: true,
        };
        Ok(futures::stream::unfold(state, |mut state| async move {
            loop {
                if let Some(delivery) = state.buffer.pop_front() {
                    if delivery.seq <= state.last_seq {
                        continue;
                    }
                    state.last_seq = delivery.seq;
                    let wanted = match &state.statuses {
                        Some(statuses) => statuses.contains(&delivery.status),
                        None => !delivery.status.is_terminal(),
                    };
                    if !wanted {
                        continue;
                    }
                    if state.marks_delivered && delivery.status == Status::Submitted {
                        let engine = state.engine.clone();
                        let (agent, intent_id) = (state.agent.clone(), delivery.intent_id.clone());
                        tokio::spawn(async move {
                            if let Err(err) = engine.mark_delivered(&agent, &intent_id).await {
                                tracing::warn!("could not mark {intent_id} delivered: {err}");
                            }
                        });
                    }
                    return Some((delivery, state));
                }
                if state.reload {
                    match state
                        .engine
                        .store
                        .agent_deliveries(&state.agent, state.last_seq, PAGE)
                        .await
                    {
                        Ok(page) => {
                            state.reload = page.len() == PAGE;
                            state.buffer.extend(page);
                            continue;
                        }
                        Err(err) => return log_and_end("agent", &err),
                    }
                }
                match state.subscription.receiver.recv().await {
                    Ok(delivery) => state.buffer.push_back(delivery),
                    Err(RecvError::Lagged(_)) => state.reload = true,
                    Err(RecvError::Closed) => return None,
                }
            }
        }))
    }
}

impl TaskStream {
    /// Reads one page of task events after the last cursor from the database.
    async fn replay_page(&mut self) -> Result<()> {
        let page = self
            .engine
            .store
            .task_events_after(self.last_cursor, PAGE)
            .await?;
        self.reload = page.len() == PAGE;
        for stored in page {
            self.last_cursor = stored.cursor;
            self.buffer.extend(frames_for(&self.reviewer, &stored));
        }
        Ok(())
    }
}
