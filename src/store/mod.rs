//! Persistence. The engine is the only caller; nothing else writes to the database.
//!
//! Every change to an intent is expressed as a [`ChangeFn`]: a synchronous function
//! that receives the current intent (loaded inside the write transaction), mutates it
//! and records events. The store runs it, persists the outcome atomically, commits,
//! and only then hands the committed result to the [`CommitSink`] for live delivery.

pub mod audit;
pub mod postgres;
pub mod rows;
pub mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;

use crate::domain::audit::{GENESIS, event_hash};
use crate::domain::{
    Event, Intent, Principal, Result, Status, StoredEvent, TimerKind, TimerSpec, Timestamp,
};

/// `Idempotency-Key` bookkeeping for one write: the same principal, endpoint and key
/// with the same request body replays the stored response; another body is a conflict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyClaim {
    pub principal: String,
    pub endpoint: String,
    pub key: String,
    pub request_hash: String,
}

impl IdempotencyClaim {
    /// The response to replay, given what an earlier write with the same key
    /// stored; a different request under the same key is a conflict.
    pub fn replay(&self, stored_hash: &str, stored_response: &str) -> Result<Value> {
        if stored_hash != self.request_hash {
            return Err(crate::domain::Error::conflict(
                "idempotency_key_reused",
                format!(
                    "Idempotency-Key `{}` was already used for a different request to {}",
                    self.key, self.endpoint
                ),
            )
            .with_details(serde_json::json!({ "idempotency_key": self.key })));
        }
        serde_json::from_str(stored_response).map_err(|err| {
            crate::domain::Error::internal(format!("storage error: stored response: {err}"))
        })
    }
}

/// How deeply changes may ask for further changes in one write (a step ending,
/// its workflow advancing, the next step starting, a cancel cascading...).
const MAX_FOLLOW_UP_DEPTH: usize = 8;

pub(crate) fn check_follow_up_depth(depth: usize) -> Result<()> {
    if depth > MAX_FOLLOW_UP_DEPTH {
        return Err(crate::domain::Error::internal(
            "a change asked for changes nested too deeply; refusing to go on",
        ));
    }
    Ok(())
}

/// A writer's job queue; `None` once the store is closed.
pub(crate) type WriterQueue<J> = std::sync::Mutex<Option<tokio::sync::mpsc::Sender<J>>>;

/// Hands `job` to a writer's queue and waits for its answer on `answer`. A full
/// queue refuses the write with `429 overloaded` rather than queueing without
/// limit.
pub(crate) async fn submit_to_writer<J, T>(
    queue: &WriterQueue<J>,
    job: J,
    answer: tokio::sync::oneshot::Receiver<Result<T>>,
) -> Result<T> {
    use crate::domain::{Error, ErrorKind};
    use tokio::sync::mpsc::error::TrySendError;
    let sender = queue
        .lock()
        .map_err(|_| Error::internal("writer queue lock poisoned"))?
        .clone()
        .ok_or_else(|| Error::internal("the store is closed"))?;
    match sender.try_send(job) {
        Ok(()) => {}
        Err(TrySendError::Full(_)) => {
            return Err(Error::new(
                ErrorKind::Overloaded,
                "overloaded",
                "too many writes are queued; retry shortly",
            ));
        }
        Err(TrySendError::Closed(_)) => return Err(Error::internal("the store is closed")),
    }
    answer
        .await
        .map_err(|_| Error::internal("the writer stopped before answering"))?
}

/// One of the things `/health` checks, and why it fails when it does. Anyone
/// may ask (`/health` needs no key), so the reason names no host, file or
/// setting; the details go to the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    pub name: &'static str,
    pub failure: Option<String>,
}

/// Whether a writer's thread still takes jobs: once it has ended (it failed,
/// or the store was closed), every write fails.
pub(crate) fn writer_check<J>(queue: &WriterQueue<J>) -> HealthCheck {
    let running = queue
        .lock()
        .is_ok_and(|jobs| jobs.as_ref().is_some_and(|sender| !sender.is_closed()));
    HealthCheck {
        name: "writer",
        failure: (!running).then(|| "the writer has stopped, so writes fail".to_string()),
    }
}

/// Closes a writer's queue and waits for its thread to finish what was queued.
pub(crate) async fn stop_writer<J>(
    queue: &WriterQueue<J>,
    thread: &std::sync::Mutex<Option<std::thread::JoinHandle<()>>>,
) {
    // Dropping the only sender ends the writer loop once the queue is drained.
    if let Ok(mut jobs) = queue.lock() {
        jobs.take();
    }
    let handle = thread.lock().ok().and_then(|mut thread| thread.take());
    if let Some(handle) = handle {
        let _ = tokio::task::spawn_blocking(move || handle.join()).await;
    }
}

/// Which intent a write works on.
pub enum Target {
    New(Box<Intent>),
    Existing(String),
}

/// The unit of change a [`ChangeFn`] works on. It is plain memory: nothing reaches
/// the database unless the function returns `Ok`.
pub struct Change {
    pub intent: Intent,
    pub now: Timestamp,
    events: Vec<Event>,
    deliveries: Vec<PendingDelivery>,
    messages: Vec<PendingMessage>,
    timers: Vec<TimerSpec>,
    notifications: Vec<Notification>,
    outbox_updates: Vec<OutboxUpdate>,
    follow_ups: Vec<(Target, ChangeFn)>,
}

/// How a notification travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Channel {
    Email,
    Slack,
    Webhook,
}

impl Channel {
    pub fn as_str(&self) -> &'static str {
        match self {
            Channel::Email => "email",
            Channel::Slack => "slack",
            Channel::Webhook => "webhook",
        }
    }

    pub fn parse(text: &str) -> Option<Channel> {
        [Channel::Email, Channel::Slack, Channel::Webhook]
            .into_iter()
            .find(|channel| channel.as_str() == text)
    }
}

/// A notification to send after the commit, through the outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    pub channel: Channel,
    /// Who it is for: the reviewer or team it notifies, or a `notify_email` address.
    pub recipient: String,
    /// Where it goes: an email address or a webhook URL.
    pub target: String,
    /// What happened, as JSON; each channel renders it its own way.
    pub message: Value,
}

/// What became of one outbox row after a send attempt.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum OutboxUpdate {
    /// Sent, or given up: the row goes.
    Done { outbox_id: i64 },
    /// Failed: try again at `at`.
    Retry { outbox_id: i64, at: Timestamp },
}

/// A row of the outbox, leased to one sender.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxItem {
    pub outbox_id: i64,
    pub intent_id: String,
    pub notification: Notification,
    /// Attempts made before this one.
    pub attempts: u32,
}

/// A timer that is due, as the scheduler hands it to the firing function.
#[derive(Debug, Clone, PartialEq)]
pub struct DueTimer {
    pub intent_id: String,
    pub kind: TimerKind,
    pub due_at: Timestamp,
    pub attempt: u32,
}

/// What firing a due timer does to its intent. It runs inside the transaction that
/// consumes the timer, so the effect and the timer's removal commit together.
pub type TimerFn = Arc<dyn Fn(&DueTimer, &mut Change) -> Result<()> + Send + Sync>;

/// An agent delivery a change asked for; the backend numbers it on the agent's stream.
pub(crate) struct PendingDelivery {
    pub agent: String,
    pub event_type: String,
}

struct PendingMessage {
    author: String,
    message: String,
}

/// Where the global commit order and the audit hash chain stand: the next cursor
/// to hand out and the newest event's hash, which the next event chains from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Chain {
    pub next_cursor: u64,
    pub last_hash: String,
}

impl Chain {
    /// The chain of a database whose newest commit position is `cursor` and whose
    /// newest event hash is `hash` (`None` for no events yet).
    pub fn after(cursor: u64, hash: Option<String>) -> Chain {
        Chain {
            next_cursor: cursor + 1,
            last_hash: hash.unwrap_or_else(|| GENESIS.to_string()),
        }
    }

    fn take_cursor(&mut self) -> u64 {
        let cursor = self.next_cursor;
        self.next_cursor += 1;
        cursor
    }
}

/// A change with its commit positions and hashes assigned: everything a backend
/// must write for it, decided the same way whichever database stores it.
pub(crate) struct Sealed {
    /// The intent as it must be stored, `last_cursor` included.
    pub intent: Intent,
    /// Whether the intent differs from the row as loaded (new ones always do).
    pub changed: bool,
    /// When the change was made.
    pub now: Timestamp,
    pub events: Vec<StoredEvent>,
    /// Each event's audit hash, in the order of `events`.
    pub hashes: Vec<String>,
    pub messages: Vec<InboxMessage>,
    pub deliveries: Vec<PendingDelivery>,
    /// The intent ended: its timers and unsent notifications go with it, in the
    /// same transaction, so nothing fires or is sent about it afterwards.
    pub ended: bool,
    /// Timers to insert or replace (none when the intent ended).
    pub timers: Vec<TimerSpec>,
    /// Notifications to queue in the outbox (none when the intent ended).
    pub notifications: Vec<Notification>,
    pub outbox_updates: Vec<OutboxUpdate>,
    pub earliest_timer: Option<Timestamp>,
    pub outbox_due: Option<Timestamp>,
}

impl Sealed {
    /// What was committed, once the backend has numbered the deliveries.
    pub fn committed(self, deliveries: Vec<AgentDelivery>) -> Committed {
        self.split(deliveries).0
    }

    /// What was committed and the intent as it must be stored, each moved out.
    pub fn split(self, deliveries: Vec<AgentDelivery>) -> (Committed, Intent) {
        let committed = Committed {
            intent_id: self.intent.intent_id.clone(),
            events: self.events,
            deliveries,
            earliest_timer: self.earliest_timer,
            outbox_due: self.outbox_due,
        };
        (committed, self.intent)
    }
}

impl Change {
    pub fn new(intent: Intent, now: Timestamp) -> Self {
        Self {
            intent,
            now,
            events: Vec::new(),
            deliveries: Vec::new(),
            messages: Vec::new(),
            timers: Vec::new(),
            notifications: Vec::new(),
            outbox_updates: Vec::new(),
            follow_ups: Vec::new(),
        }
    }

    /// Asks for a change to another intent (or a new one) in the same
    /// transaction, applied after this one; its response is not kept.
    pub fn also(&mut self, target: Target, apply: ChangeFn) {
        self.follow_ups.push((target, apply));
    }

    /// Schedules a timer, replacing any pending timer of the same kind. Timers of an
    /// intent that ends in this change are dropped with it.
    pub fn schedule(&mut self, timer: TimerSpec) {
        self.timers.push(timer);
    }

    /// Queues a notification, sent after the commit.
    pub fn notify(&mut self, notification: Notification) {
        self.notifications.push(notification);
    }

    /// Records what became of an outbox row.
    pub fn update_outbox(&mut self, update: OutboxUpdate) {
        self.outbox_updates.push(update);
    }

    /// Appends an event carrying the intent's current status (so transition
    /// first) and returns it. Most callers only record, so it is lent, not copied.
    pub fn record(&mut self, event_type: &str, actor: &str, details: Value) -> &Event {
        self.intent.last_seq += 1;
        self.intent.updated_at = self.now;
        let event = Event {
            intent_id: self.intent.intent_id.clone(),
            seq: self.intent.last_seq,
            event_type: event_type.to_string(),
            status: self.intent.status,
            waiting_reason: self.intent.waiting_reason,
            actor: actor.to_string(),
            at: self.now,
            details,
        };
        self.events.push_mut(event)
    }

    /// Queues this intent on an agent's delivery stream.
    pub fn deliver_to_agent(&mut self, agent: &str, event_type: &str) {
        self.deliveries.push(PendingDelivery {
            agent: agent.to_string(),
            event_type: event_type.to_string(),
        });
    }

    /// Assigns commit positions and audit hashes from `chain` to what the change
    /// recorded. `original` is the intent as loaded (`None` for a new one). Returns
    /// the sealed change and the follow-up changes it asked for.
    pub(crate) fn seal(
        self,
        chain: &mut Chain,
        original: Option<&Intent>,
    ) -> (Sealed, Vec<(Target, ChangeFn)>) {
        let Change {
            mut intent,
            now,
            events,
            deliveries,
            messages,
            timers,
            notifications,
            outbox_updates,
            follow_ups,
        } = self;
        let mut stored_events = Vec::with_capacity(events.len());
        let mut hashes = Vec::with_capacity(events.len());
        for event in events {
            let stored = StoredEvent::new(chain.take_cursor(), event, &intent);
            let hash = event_hash(&chain.last_hash, stored.cursor, &stored.event);
            chain.last_hash.clone_from(&hash);
            hashes.push(hash);
            stored_events.push(stored);
        }
        let messages: Vec<InboxMessage> = messages
            .into_iter()
            .map(|pending| InboxMessage {
                cursor: chain.take_cursor(),
                thread_id: intent.intent_id.clone(),
                author: pending.author,
                message: pending.message,
                at: now,
            })
            .collect();
        if !stored_events.is_empty() || !messages.is_empty() {
            intent.last_cursor = chain.next_cursor - 1;
        }
        let ended = intent.status.is_terminal();
        let (timers, notifications) = if ended {
            (Vec::new(), Vec::new())
        } else {
            (timers, notifications)
        };
        let earliest_timer = timers.iter().map(|timer| timer.due_at).min();
        let retries = outbox_updates.iter().filter_map(|update| match update {
            OutboxUpdate::Retry { at, .. } => Some(*at),
            OutboxUpdate::Done { .. } => None,
        });
        let outbox_due = (!notifications.is_empty())
            .then_some(now)
            .into_iter()
            .chain(retries)
            .min();
        let sealed = Sealed {
            changed: original != Some(&intent),
            now,
            intent,
            events: stored_events,
            hashes,
            messages,
            deliveries,
            ended,
            timers,
            notifications,
            outbox_updates,
            earliest_timer,
            outbox_due,
        };
        (sealed, follow_ups)
    }

    /// Adds a message to the intent's inbox thread.
    pub fn add_message(&mut self, author: &str, message: &str) {
        self.messages.push(PendingMessage {
            author: author.to_string(),
            message: message.to_string(),
        });
    }
}

pub type ChangeFn = Box<dyn FnOnce(&mut Change) -> Result<Value> + Send>;

/// One intent's entry on an agent's delivery stream.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentDelivery {
    pub agent: String,
    pub seq: u64,
    pub intent_id: String,
    pub event_type: String,
    /// The intent's status now (for live pushes: right after the commit).
    pub status: Status,
    pub at: Timestamp,
}

#[derive(Debug, Clone, PartialEq)]
pub struct InboxMessage {
    pub cursor: u64,
    pub thread_id: String,
    pub author: String,
    pub message: String,
    pub at: Timestamp,
}

/// What one write committed to one intent, as live subscribers need it.
#[derive(Debug, Clone)]
pub struct Committed {
    pub intent_id: String,
    pub events: Vec<StoredEvent>,
    pub deliveries: Vec<AgentDelivery>,
    /// The earliest timer this write scheduled, to wake the scheduler early.
    pub earliest_timer: Option<Timestamp>,
    /// The earliest outbox send it queued or rescheduled, to wake the sender.
    pub outbox_due: Option<Timestamp>,
}

/// What a write returns: the response to give the caller, and what was committed,
/// the target intent first, then any follow-ups (empty when an idempotency
/// record replayed an earlier response).
#[derive(Debug, Clone)]
pub struct WriteResult {
    pub response: Value,
    pub committed: Vec<Arc<Committed>>,
}

/// Receives each committed batch, in commit order: on SQLite before callers hear
/// back; on PostgreSQL when the commit's notification comes round (just after),
/// together with other instances' commits.
pub trait CommitSink: Send + Sync {
    fn committed(&self, batch: &[Arc<Committed>]);

    /// A key was revoked by another instance sharing the database.
    fn keys_revoked(&self) {}

    /// What this instance needs to read back of a commit (of another instance)
    /// that changed `intent_ids`, and queued agent deliveries if `deliveries`.
    fn interest(&self, _intent_ids: &[String], _deliveries: bool) -> Interest {
        Interest::Everything
    }
}

/// How much of another instance's commit must be read back from the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Interest {
    /// Nothing: nobody here follows what it changed.
    Nothing,
    /// The events of these intents, which intent streams here follow; nobody
    /// here needs the tasks they carry or the commit's agent deliveries.
    Intents(Vec<String>),
    /// All of it: a task stream is open, or an agent here may be owed a delivery.
    Everything,
}

/// The reviewer tasks waiting right now, and the commit position they reflect.
#[derive(Debug, Clone)]
pub struct TaskSnapshot {
    pub tasks: Vec<Intent>,
    pub cursor: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct KeyRecord {
    pub key_id: String,
    pub key_prefix: String,
    pub principal: Principal,
    pub label: Option<String>,
    pub created_at: Timestamp,
    pub revoked_at: Option<Timestamp>,
}

#[derive(Debug, Clone)]
pub struct NewKey {
    pub record: KeyRecord,
    pub key_hash: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// fsync on every commit: a decision survives power loss once acknowledged.
    Full,
    /// fsync at checkpoints only: survives a process crash, may lose the last
    /// commits on power loss.
    Normal,
}

impl Durability {
    pub fn parse(text: &str) -> std::result::Result<Self, String> {
        match text.to_ascii_lowercase().as_str() {
            "full" => Ok(Durability::Full),
            "normal" => Ok(Durability::Normal),
            other => Err(format!("durability `{other}` is not one of: full, normal")),
        }
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            Durability::Full => "full",
            Durability::Normal => "normal",
        }
    }
}

#[async_trait]
pub trait Store: Send + Sync {
    /// `sqlite` or `postgres`, as reported by `/health`.
    fn backend(&self) -> &'static str;

    /// One cheap read that reaches the database, for `/health`; off the async
    /// threads where a read could block them, so that a stalled database
    /// cannot stall the check's time limit too.
    async fn probe(&self) -> Result<()>;

    /// The store's parts that run on their own (its writer, and on PostgreSQL
    /// the listener for other instances' commits), checked for `/health`
    /// without touching the database.
    fn background_checks(&self) -> Vec<HealthCheck>;

    /// Runs `apply` against the target intent inside a transaction and commits it.
    async fn write_intent(
        &self,
        target: Target,
        claim: Option<IdempotencyClaim>,
        apply: ChangeFn,
    ) -> Result<WriteResult>;

    async fn intent(&self, intent_id: &str) -> Result<Option<Intent>>;

    /// Events with `seq > since`, ascending.
    async fn events(&self, intent_id: &str, since: u64, limit: usize) -> Result<Vec<Event>>;

    /// Tasks waiting for a human. With `holdings`, only those assigned to one of the
    /// given identities or `team:NAME` entries (compared case-insensitively).
    async fn waiting_tasks(&self, holdings: Option<Vec<String>>) -> Result<TaskSnapshot>;

    /// The newest commit position (0 for an empty database).
    async fn latest_cursor(&self) -> Result<u64>;

    /// Events that change reviewers' task lists, with `cursor > after`, ascending.
    async fn task_events_after(&self, after: u64, limit: usize) -> Result<Vec<StoredEvent>>;

    /// The agent's deliveries with `seq > since`, ascending, with current statuses.
    async fn agent_deliveries(
        &self,
        agent: &str,
        since: u64,
        limit: usize,
    ) -> Result<Vec<AgentDelivery>>;

    /// Ended intents whose completion goes to `owner`'s inbox.
    async fn ended_intents_replying_to(&self, owner: &str) -> Result<Vec<Intent>>;

    async fn inbox_messages(&self, thread_id: &str) -> Result<Vec<InboxMessage>>;

    async fn insert_key(&self, key: NewKey) -> Result<()>;
    async fn key_by_hash(&self, key_hash: &str) -> Result<Option<KeyRecord>>;
    async fn keys(&self) -> Result<Vec<KeyRecord>>;
    /// Returns false when no active key has that id.
    async fn revoke_key(&self, key_id: &str, at: Timestamp) -> Result<bool>;

    /// Forgets idempotency records created before `before`; returns how many.
    async fn prune_idempotency(&self, before: Timestamp) -> Result<u64>;

    /// Fires up to `limit` timers due at `now`, each with `fire`, in due order;
    /// returns how many were due (including any whose intent had already ended).
    async fn fire_due_timers(&self, now: Timestamp, limit: usize, fire: TimerFn) -> Result<usize>;

    /// When the next timer is due, if any is pending.
    async fn next_timer_due(&self) -> Result<Option<Timestamp>>;

    /// Leases up to `limit` outbox rows whose next attempt is due at `now`, for
    /// `lease_seconds`, so no other sender takes them meanwhile.
    async fn claim_outbox(
        &self,
        now: Timestamp,
        lease_seconds: i64,
        limit: usize,
    ) -> Result<Vec<OutboxItem>>;

    /// When the next outbox row is due, if any is waiting.
    async fn next_outbox_due(&self) -> Result<Option<Timestamp>>;

    /// Finishes queued writes and releases the database.
    async fn close(&self);
}
