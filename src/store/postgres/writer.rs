//! The instance's writer: one thread, one connection, one transaction per batch of
//! queued writes (group commit, as on SQLite).
//!
//! A batch locks `chain_head` first, so batches of all instances run one at a
//! time, and under that lock reads what it needs (the intents its writes work
//! on, in queries sent with the lock's, so they run as soon as it is granted).
//! Each write then runs in memory against a draft: a write
//! that fails leaves nothing behind, and the ones after it see what the earlier
//! ones changed. At the end the whole batch is written with a handful of
//! pipelined multi-row statements, the chain head moves, `NOTIFY` tells the other
//! instances, and one commit makes it durable. That is a fixed number of round
//! trips per batch rather than per write.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, BytesMut};
use futures::future::{BoxFuture, maybe_done};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::Statement;
use tokio_postgres::types::{IsNull, ToSql, Type, to_sql_checked};

use super::feed::{Notice, Stash};
use super::{
    Connector, KEEPALIVE_IDLE_SECONDS, KEEPALIVE_INTERVAL_SECONDS, KEEPALIVE_PROBES, connect,
    damaged, decode_all, storage_error,
};
use crate::clock::Clock;
use crate::domain::{Error, Intent, Result, Status, StoredEvent, TimerKind, TimerSpec, Timestamp};
use crate::store::rows::{self, Columns, Damage, INTENT_COLUMNS, TIMER_COLUMNS};
use crate::store::{
    AgentDelivery, Chain, Change, ChangeFn, CommitSink, Committed, DueTimer, Durability,
    IdempotencyClaim, InboxMessage, Notification, OutboxUpdate, Sealed, Target, TimerFn,
    WriteResult, check_follow_up_depth,
};

/// Upper bound on jobs per transaction, so one commit never holds callers for long.
const MAX_BATCH: usize = 512;

/// How long a writer keeps asking whether a batch whose COMMIT went unanswered
/// was kept: long enough for a database that restarts or fails over to take
/// connections again. The instance's other writes wait meanwhile.
const KEPT_ASKED_FOR: Duration = Duration::from_secs(15);

/// What the writers of a batch are told when the database took its COMMIT but
/// neither confirmed it nor could be asked afterwards whether it was kept.
fn outcome_unknown() -> Error {
    Error::internal(format!(
        "the database did not confirm this write and could not be asked within {} s whether it \
         kept it: it may have. Retry it with the same Idempotency-Key, which answers a kept \
         write as it did the first time; without one, a kept decision is refused as already \
         decided and a kept reply is posted twice",
        KEPT_ASKED_FOR.as_secs()
    ))
}

/// A queued write and where its answer goes.
pub enum Job {
    Write {
        target: Target,
        claim: Option<IdempotencyClaim>,
        apply: ChangeFn,
        reply: oneshot::Sender<Result<WriteResult>>,
    },
    /// Timers this instance claimed at `now`, to fire.
    Fire {
        now: Timestamp,
        timers: Vec<DueTimer>,
        fire: TimerFn,
        reply: oneshot::Sender<Result<usize>>,
    },
}

pub struct WriterSetup {
    pub connector: Connector,
    pub durability: Durability,
    pub clock: Arc<dyn Clock>,
    pub sink: Arc<dyn CommitSink>,
    pub stash: Arc<Stash>,
    pub channel: String,
    pub instance: String,
}

pub struct Writer {
    setup: WriterSetup,
    client: tokio_postgres::Client,
    /// Prepared statements of the current connection, by their SQL.
    statements: HashMap<String, Statement>,
    /// The connection broke; open a new one before the next batch.
    reconnect: bool,
}

/// A delivery waiting for its number on the agent's stream.
struct StagedDelivery {
    agent: String,
    intent_id: String,
    event_type: String,
    status: Status,
    at: Timestamp,
    commit_cursor: u64,
    /// Which of the staged commits it belongs to.
    committed: usize,
}

/// Everything a batch (or one write of it, as a draft) will write.
#[derive(Default)]
struct Staged {
    /// Changed intent rows, as they must be stored.
    intents: HashMap<String, Intent>,
    /// The audit hash of each event, in the order of the events in `committed`
    /// (which is where the events themselves are kept, not copied).
    hashes: Vec<String>,
    messages: Vec<InboxMessage>,
    deliveries: Vec<StagedDelivery>,
    /// Intents that ended: their timers and unsent notifications go.
    ended: HashSet<String>,
    /// Timers to replace (`Some`) or delete (`None`, fired).
    timers: HashMap<(String, TimerKind), Option<TimerSpec>>,
    notifications: Vec<(String, Notification, Timestamp)>,
    outbox_updates: Vec<OutboxUpdate>,
    /// Idempotency records: request hash, response and when.
    claims: HashMap<(String, String, String), (String, Value, Timestamp)>,
    committed: Vec<Committed>,
}

impl Staged {
    /// Takes a sealed change in, moving rather than copying what it holds: this
    /// runs while the batch holds the fleet's chain head.
    fn stage(&mut self, mut sealed: Sealed) {
        let index = self.committed.len();
        let intent_id = sealed.intent.intent_id.clone();
        self.hashes.append(&mut sealed.hashes);
        self.messages.append(&mut sealed.messages);
        for pending in std::mem::take(&mut sealed.deliveries) {
            self.deliveries.push(StagedDelivery {
                agent: pending.agent,
                intent_id: intent_id.clone(),
                event_type: pending.event_type,
                status: sealed.intent.status,
                at: sealed.now,
                commit_cursor: sealed.intent.last_cursor,
                committed: index,
            });
        }
        if sealed.ended {
            self.end(&intent_id);
        }
        for timer in &sealed.timers {
            self.timers
                .insert((intent_id.clone(), timer.kind), Some(*timer));
        }
        for notification in std::mem::take(&mut sealed.notifications) {
            self.notifications
                .push((intent_id.clone(), notification, sealed.now));
        }
        self.outbox_updates.append(&mut sealed.outbox_updates);
        let changed = sealed.changed;
        let (committed, intent) = sealed.split(Vec::new());
        if changed {
            self.intents.insert(intent_id, intent);
        }
        self.committed.push(committed);
    }

    fn end(&mut self, intent_id: &str) {
        self.ended.insert(intent_id.to_string());
        self.timers.retain(|(id, _), _| id != intent_id);
        self.notifications.retain(|(id, _, _)| id != intent_id);
    }

    /// Takes in a write that succeeded; returns where its commits are.
    fn absorb(&mut self, draft: Staged) -> Range<usize> {
        let offset = self.committed.len();
        for intent_id in &draft.ended {
            self.end(intent_id);
        }
        self.intents.extend(draft.intents);
        self.hashes.extend(draft.hashes);
        self.messages.extend(draft.messages);
        self.deliveries
            .extend(draft.deliveries.into_iter().map(|delivery| StagedDelivery {
                committed: delivery.committed + offset,
                ..delivery
            }));
        self.timers.extend(draft.timers);
        self.notifications.extend(draft.notifications);
        self.outbox_updates.extend(draft.outbox_updates);
        self.claims.extend(draft.claims);
        self.committed.extend(draft.committed);
        offset..self.committed.len()
    }

    fn intent(&self, intent_id: &str) -> Option<&Intent> {
        self.intents.get(intent_id)
    }
}

/// Which pending row a claimed timer was: a row rescheduled since is another.
#[derive(PartialEq, Eq, Hash)]
struct TimerIdentity(String, TimerKind, String, u32);

impl TimerIdentity {
    fn of(timer: &DueTimer) -> TimerIdentity {
        TimerIdentity(
            timer.intent_id.clone(),
            timer.kind,
            timer.due_at.to_string(),
            timer.attempt,
        )
    }
}

/// One batch in progress.
struct Batch {
    chain: Chain,
    /// The chain's position when the batch began.
    first_cursor: u64,
    staged: Staged,
    /// Intent rows as read from the database in this transaction (`None`: no
    /// such row). A row that cannot be read fails only the writes that load it.
    loaded: HashMap<String, std::result::Result<Option<Intent>, Damage>>,
}

impl Batch {
    /// Keeps the intents read for `wanted`; an id that found no row is new.
    fn remember(&mut self, wanted: Vec<String>, found: &[tokio_postgres::Row]) {
        for intent_id in wanted {
            self.loaded.entry(intent_id).or_insert(Ok(None));
        }
        for row in found {
            let Ok(Some(intent_id)) = row.text(0) else {
                continue;
            };
            let intent = rows::intent(row).map(Some);
            self.loaded.insert(intent_id, intent);
        }
    }
}

/// What a job will be told once the batch's fate is known.
enum Answer {
    Write {
        reply: oneshot::Sender<Result<WriteResult>>,
        result: Result<(Value, Range<usize>)>,
    },
    Fire {
        reply: oneshot::Sender<Result<usize>>,
        result: Result<usize>,
    },
}

type Param<'a> = Box<dyn ToSql + Sync + Send + 'a>;
type Params<'a> = Vec<Param<'a>>;

impl Writer {
    /// Starts the writer on a thread of its own, with its own connection, and
    /// returns once it is connected. Batches hold the fleet-wide chain head from
    /// the moment it is granted until they commit, so the writer must not wait
    /// behind the server's request handling for a core: its own thread is
    /// scheduled by the OS alongside them.
    pub async fn start(
        setup: WriterSetup,
        receiver: mpsc::Receiver<Job>,
    ) -> Result<std::thread::JoinHandle<()>> {
        let (ready, started) = oneshot::channel();
        let thread = std::thread::Builder::new()
            .name("signoff-pg-writer".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(err) => {
                        let _ = ready.send(Err(storage_error(err)));
                        return;
                    }
                };
                runtime.block_on(async move {
                    match open_connection(&setup.connector, setup.durability).await {
                        Ok(client) => {
                            let _ = ready.send(Ok(()));
                            let writer = Writer {
                                setup,
                                client,
                                statements: HashMap::new(),
                                reconnect: false,
                            };
                            writer.run(receiver).await;
                        }
                        Err(error) => {
                            let _ = ready.send(Err(error));
                        }
                    }
                });
            })
            .map_err(|err| storage_error(format!("cannot start the writer thread: {err}")))?;
        started
            .await
            .map_err(|_| storage_error("the writer thread stopped while starting"))??;
        Ok(thread)
    }

    async fn run(mut self, mut receiver: mpsc::Receiver<Job>) {
        while let Some(first) = receiver.recv().await {
            let mut jobs = vec![first];
            take_waiting(&mut receiver, &mut jobs);
            self.run_batch(jobs, &mut receiver).await;
        }
    }

    async fn statement(&mut self, sql: &str) -> Result<Statement> {
        if let Some(statement) = self.statements.get(sql) {
            return Ok(statement.clone());
        }
        let statement = self
            .client
            .prepare(sql)
            .await
            .map_err(|err| self.failed(err))?;
        self.statements.insert(sql.to_string(), statement.clone());
        Ok(statement)
    }

    /// A database error; a closed connection is re-opened before the next batch.
    fn failed(&mut self, err: tokio_postgres::Error) -> Error {
        if self.client.is_closed() {
            self.reconnect = true;
        }
        storage_error(err)
    }

    async fn query(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<tokio_postgres::Row>> {
        let statement = self.statement(sql).await?;
        let result = self.client.query(&statement, params).await;
        result.map_err(|err| self.failed(err))
    }

    async fn ensure_connected(&mut self) -> Result<()> {
        if !self.reconnect && !self.client.is_closed() {
            return Ok(());
        }
        self.client = open_connection(&self.setup.connector, self.setup.durability).await?;
        self.statements.clear();
        self.reconnect = false;
        tracing::info!("the writer reconnected to PostgreSQL");
        Ok(())
    }

    /// Runs `jobs`, and the writes that queued while this instance waited for the
    /// chain head (the other instances' batches), in one transaction: the longer
    /// the wait, the bigger the batch, which is what keeps a fleet's throughput up.
    async fn run_batch(&mut self, mut jobs: Vec<Job>, receiver: &mut mpsc::Receiver<Job>) {
        let began = self.begin(&mut jobs, receiver).await;
        let mut batch = match began {
            Ok(batch) => batch,
            Err(error) => {
                self.rollback().await;
                for job in jobs {
                    refuse(job, &error);
                }
                return;
            }
        };
        let mut answers = Vec::with_capacity(jobs.len());
        for job in jobs {
            answers.push(match job {
                Job::Write {
                    target,
                    claim,
                    apply,
                    reply,
                } => Answer::Write {
                    reply,
                    result: self.write(&mut batch, target, claim, apply).await,
                },
                Job::Fire {
                    now,
                    timers,
                    fire,
                    reply,
                } => Answer::Fire {
                    reply,
                    result: self.fire(&mut batch, now, timers, &fire).await,
                },
            });
        }
        let committed = match self.commit(&mut batch).await {
            Ok(committed) => committed,
            Err(error) => {
                tracing::error!("a write batch failed: {error}");
                self.setup.stash.take(batch.first_cursor);
                self.rollback().await;
                for answer in answers {
                    answer.send(Err(&error), &[]);
                }
                return;
            }
        };
        if batch.chain.next_cursor == batch.first_cursor && !committed.is_empty() {
            // Nothing took a commit position, so no notification will come round:
            // only wake-ups for this instance's workers.
            self.setup.sink.committed(&committed);
        }
        for answer in answers {
            answer.send(Ok(()), &committed);
        }
    }

    async fn rollback(&mut self) {
        if !self.client.is_closed()
            && let Err(err) = self.client.batch_execute("ROLLBACK").await
        {
            tracing::warn!("rollback failed: {err}");
            self.reconnect = true;
        }
    }

    /// Opens the transaction, takes the chain head and reads the intents the
    /// batch's jobs work on. Writes that queue while this instance waits for the
    /// head (other instances' batches hold it) join the batch, and the read of
    /// their intents is sent at once, behind the lock: the database runs it as
    /// soon as the head is granted, with no round trip to this process while
    /// the fleet waits.
    async fn begin(
        &mut self,
        jobs: &mut Vec<Job>,
        receiver: &mut mpsc::Receiver<Job>,
    ) -> Result<Batch> {
        self.ensure_connected().await?;
        let head = self
            .statement("SELECT cursor, hash FROM chain_head WHERE id = 1 FOR UPDATE")
            .await?;
        let intents = self.statement(&LOAD_INTENTS).await?;
        // The pending statements borrow the connection until their results are in.
        let read_all = {
            let client = &self.client;
            let read = |wanted: Vec<String>| {
                let intents = intents.clone();
                let read: BoxFuture<'_, _> = Box::pin(async move {
                    let found = client.query(&intents, &[&wanted]).await;
                    found.map(|found| (wanted, found))
                });
                maybe_done(read)
            };
            // Sent in this order: the reads wait behind the lock, so they see
            // what the previous holder of the chain head committed, whatever the
            // role's default isolation is.
            let mut began = maybe_done(Box::pin(
                client.batch_execute("BEGIN ISOLATION LEVEL READ COMMITTED"),
            ));
            let _ = futures::poll!(&mut began);
            let mut granted = std::pin::pin!(client.query_one(&head, &[]));
            let _ = futures::poll!(&mut granted);
            let mut reads = vec![read(intents_of(jobs))];
            let _ = futures::poll!(&mut reads[0]);
            let head = loop {
                tokio::select! {
                    biased;
                    head = &mut granted => break head,
                    Some(job) = receiver.recv(), if jobs.len() < MAX_BATCH => {
                        let joined = jobs.len();
                        jobs.push(job);
                        take_waiting(receiver, jobs);
                        let mut more = read(intents_of(&jobs[joined..]));
                        let _ = futures::poll!(&mut more);
                        reads.push(more);
                    }
                }
            };
            (&mut began).await;
            futures::future::join_all(reads.iter_mut()).await;
            let began = std::pin::Pin::new(&mut began).take_output();
            let reads: Vec<_> = reads
                .iter_mut()
                .filter_map(|read| std::pin::Pin::new(read).take_output())
                .collect();
            match (began, head) {
                (Some(Err(err)), _) | (_, Err(err)) => Err(err),
                (_, Ok(head)) => reads
                    .into_iter()
                    .collect::<std::result::Result<Vec<_>, _>>()
                    .map(|found_all| (head, found_all)),
            }
        };
        let (head, found_all) = read_all.map_err(|err| self.failed(err))?;
        let cursor = rows::unsigned::<u64>(&head, 0, "cursor").map_err(storage_error)?;
        let hash: Option<String> = head.get(1);
        let chain = Chain::after(cursor, hash);
        let mut batch = Batch {
            first_cursor: chain.next_cursor,
            chain,
            staged: Staged::default(),
            loaded: HashMap::new(),
        };
        for (wanted, found) in found_all {
            batch.remember(wanted, &found);
        }
        Ok(batch)
    }

    /// Reads more intents into the batch, in one query.
    async fn load_into(&mut self, batch: &mut Batch, wanted: Vec<String>) -> Result<()> {
        let found = self.query(&LOAD_INTENTS, &[&wanted]).await?;
        batch.remember(wanted, &found);
        Ok(())
    }

    /// The intent as this batch has it: the draft's, the batch's, or the database's.
    async fn load(
        &mut self,
        batch: &mut Batch,
        draft: &Staged,
        intent_id: &str,
    ) -> Result<Option<Intent>> {
        if held(draft, &batch.staged, &batch.loaded, intent_id).is_none() {
            self.load_into(batch, vec![intent_id.to_string()]).await?;
        }
        match held(draft, &batch.staged, &batch.loaded, intent_id) {
            Some(Ok(intent)) => Ok(intent.cloned()),
            Some(Err(damage)) => Err(damaged(&format!("intent {intent_id}"), damage)),
            None => Ok(None),
        }
    }

    async fn load_target(
        &mut self,
        batch: &mut Batch,
        draft: &Staged,
        target: Target,
    ) -> Result<Intent> {
        match target {
            Target::New(intent) => {
                if self.load(batch, draft, &intent.intent_id).await?.is_some() {
                    return Err(Error::conflict(
                        "intent_exists",
                        format!("intent {} already exists", intent.intent_id),
                    ));
                }
                Ok(*intent)
            }
            Target::Existing(intent_id) => self
                .load(batch, draft, &intent_id)
                .await?
                .ok_or_else(|| Error::not_found("intent", &intent_id)),
        }
    }

    /// Runs one write against a draft; only a write that succeeds joins the batch.
    async fn write(
        &mut self,
        batch: &mut Batch,
        target: Target,
        claim: Option<IdempotencyClaim>,
        apply: ChangeFn,
    ) -> Result<(Value, Range<usize>)> {
        if let Some(claim) = &claim
            && let Some(response) = self.replay(batch, claim).await?
        {
            return Ok((response, 0..0));
        }
        let mark = batch.chain.clone();
        let mut draft = Staged::default();
        match self
            .draft_write(batch, &mut draft, target, claim, apply)
            .await
        {
            Ok(response) => Ok((response, batch.staged.absorb(draft))),
            Err(error) => {
                batch.chain = mark;
                Err(error)
            }
        }
    }

    async fn draft_write(
        &mut self,
        batch: &mut Batch,
        draft: &mut Staged,
        target: Target,
        claim: Option<IdempotencyClaim>,
        apply: ChangeFn,
    ) -> Result<Value> {
        let intent = self.load_target(batch, draft, target).await?;
        let mut change = Change::new(intent, self.setup.clock.now());
        let response = apply(&mut change)?;
        let now = change.now;
        self.persist_all(batch, draft, change).await?;
        if let Some(claim) = claim {
            draft.claims.insert(
                (claim.principal, claim.endpoint, claim.key),
                (claim.request_hash, response.clone(), now),
            );
        }
        Ok(response)
    }

    /// The stored response for an `Idempotency-Key` used before, in this batch or
    /// an earlier one.
    async fn replay(&mut self, batch: &Batch, claim: &IdempotencyClaim) -> Result<Option<Value>> {
        let key = (
            claim.principal.clone(),
            claim.endpoint.clone(),
            claim.key.clone(),
        );
        if let Some((hash, response, _)) = batch.staged.claims.get(&key) {
            return claim.replay(hash, &response.to_string()).map(Some);
        }
        let found = self
            .query(
                "SELECT request_hash, response FROM idempotency_keys
                 WHERE principal = $1 AND endpoint = $2 AND key = $3",
                &[&claim.principal, &claim.endpoint, &claim.key],
            )
            .await?;
        found
            .first()
            .map(|row| claim.replay(row.get(0), row.get(1)))
            .transpose()
    }

    /// Seals a change into the draft and then, depth first and in the order they
    /// were asked for, the changes it asked for on other intents.
    async fn persist_all(
        &mut self,
        batch: &mut Batch,
        draft: &mut Staged,
        change: Change,
    ) -> Result<()> {
        let now = change.now;
        let (sealed, follow_ups) = seal(batch, draft, change);
        draft.stage(sealed);
        let mut pending: Vec<(Target, ChangeFn, usize)> = follow_ups
            .into_iter()
            .rev()
            .map(|(target, apply)| (target, apply, 1))
            .collect();
        while let Some((target, apply, depth)) = pending.pop() {
            check_follow_up_depth(depth)?;
            let intent = self.load_target(batch, draft, target).await?;
            let mut follow_up = Change::new(intent, now);
            apply(&mut follow_up)?;
            let (sealed, more) = seal(batch, draft, follow_up);
            draft.stage(sealed);
            pending.extend(
                more.into_iter()
                    .rev()
                    .map(|(target, apply)| (target, apply, depth + 1)),
            );
        }
        Ok(())
    }

    /// Fires the claimed timers still leased to this instance, earliest first.
    /// Their rows are locked first, so no other instance claims them before this
    /// commit deletes them with their effect: each fires once. A firing that
    /// schedules a timer already due (the next stage of a ladder after downtime)
    /// has it fire here too, in its place in due order, as on SQLite. A timer
    /// that cannot fire is dropped (and logged) rather than coming due forever.
    /// Returns how many timers were due.
    async fn fire(
        &mut self,
        batch: &mut Batch,
        now: Timestamp,
        claimed: Vec<DueTimer>,
        fire: &TimerFn,
    ) -> Result<usize> {
        let intent_ids: Vec<String> = claimed
            .iter()
            .map(|timer| timer.intent_id.clone())
            .collect();
        let instance = self.setup.instance.clone();
        let held = self
            .query(
                &format!(
                    "SELECT {TIMER_COLUMNS} FROM timers WHERE lease_owner = $1 AND intent_id = ANY($2)
                     FOR UPDATE"
                ),
                &[&instance, &intent_ids],
            )
            .await?;
        let held: HashSet<TimerIdentity> = decode_all(&held, rows::due_timer)?
            .iter()
            .map(TimerIdentity::of)
            .collect();
        // (timer, whether it is a claimed row rather than one scheduled here)
        let mut due: Vec<(DueTimer, bool)> =
            claimed.into_iter().map(|timer| (timer, true)).collect();
        let mut count = 0;
        while let Some(next) = due
            .iter()
            .enumerate()
            .min_by(|(_, (a, _)), (_, (b, _))| {
                (a.due_at, &a.intent_id, a.kind.as_str()).cmp(&(
                    b.due_at,
                    &b.intent_id,
                    b.kind.as_str(),
                ))
            })
            .map(|(index, _)| index)
        {
            let (timer, was_claimed) = due.swap_remove(next);
            count += 1;
            let key = (timer.intent_id.clone(), timer.kind);
            let staged = batch.staged.timers.get(&key);
            let current = if was_claimed {
                // Replaced or ended by an earlier write of this batch: nothing to fire.
                held.contains(&TimerIdentity::of(&timer)) && staged.is_none()
            } else {
                matches!(staged, Some(Some(spec)) if spec.due_at == timer.due_at && spec.attempt == timer.attempt)
            };
            if !current || batch.staged.ended.contains(&timer.intent_id) {
                continue;
            }
            let mark = batch.chain.clone();
            let mut draft = Staged::default();
            draft.timers.insert(key.clone(), None);
            match self.fire_one(batch, &mut draft, &timer, fire).await {
                Ok(()) => {
                    due.extend(draft.timers.iter().filter_map(|((intent_id, _), spec)| {
                        let spec = spec.as_ref().filter(|spec| spec.due_at <= now)?;
                        Some((
                            DueTimer {
                                intent_id: intent_id.clone(),
                                kind: spec.kind,
                                due_at: spec.due_at,
                                attempt: spec.attempt,
                            },
                            false,
                        ))
                    }));
                    batch.staged.absorb(draft);
                }
                Err(error) => {
                    batch.chain = mark;
                    tracing::error!(
                        intent_id = %timer.intent_id,
                        kind = timer.kind.as_str(),
                        "a timer could not fire and is dropped: {error}"
                    );
                    batch.staged.timers.insert(key, None);
                }
            }
        }
        Ok(count)
    }

    async fn fire_one(
        &mut self,
        batch: &mut Batch,
        draft: &mut Staged,
        timer: &DueTimer,
        fire: &TimerFn,
    ) -> Result<()> {
        let Some(intent) = self.load(batch, draft, &timer.intent_id).await? else {
            return Ok(());
        };
        if intent.status.is_terminal() {
            return Ok(());
        }
        let mut change = Change::new(intent, self.setup.clock.now());
        fire(timer, &mut change)?;
        self.persist_all(batch, draft, change).await
    }

    /// Numbers the batch's deliveries on their agents' streams; under the chain
    /// head lock nobody else is numbering them.
    async fn number_deliveries(&mut self, batch: &mut Batch) -> Result<Vec<u64>> {
        let agents: Vec<String> = batch
            .staged
            .deliveries
            .iter()
            .map(|delivery| delivery.agent.clone())
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        if agents.is_empty() {
            return Ok(Vec::new());
        }
        let found = self
            .query(
                "SELECT agent, MAX(seq) FROM agent_deliveries WHERE agent = ANY($1) GROUP BY agent",
                &[&agents],
            )
            .await?;
        let mut last: HashMap<String, u64> = decode_all(&found, |row| {
            Ok((rows::text(row, 0, "agent")?, rows::unsigned(row, 1, "seq")?))
        })?
        .into_iter()
        .collect();
        let staged = &mut batch.staged;
        let mut seqs = Vec::with_capacity(staged.deliveries.len());
        for delivery in &staged.deliveries {
            let seq = last.entry(delivery.agent.clone()).or_insert(0);
            *seq += 1;
            seqs.push(*seq);
            staged.committed[delivery.committed]
                .deliveries
                .push(AgentDelivery {
                    agent: delivery.agent.clone(),
                    seq: *seq,
                    intent_id: delivery.intent_id.clone(),
                    event_type: delivery.event_type.clone(),
                    status: delivery.status,
                    at: delivery.at,
                });
        }
        Ok(seqs)
    }

    /// Writes the batch, moves the chain head, notifies the other instances and
    /// commits. The statements are pipelined; none depends on another's result.
    async fn commit(&mut self, batch: &mut Batch) -> Result<Vec<Arc<Committed>>> {
        let seqs = self.number_deliveries(batch).await?;
        let assigned = batch.chain.next_cursor > batch.first_cursor;
        let committed: Vec<Arc<Committed>> = std::mem::take(&mut batch.staged.committed)
            .into_iter()
            .map(Arc::new)
            .collect();
        let mut statements =
            flush_statements(&batch.staged, &committed, &seqs, &self.setup.instance);
        if assigned {
            let last = batch.chain.next_cursor - 1;
            let notice = Notice::of(&self.setup.instance, batch.first_cursor, last, &committed);
            statements.push((
                MOVE_HEAD_AND_NOTIFY,
                vec![
                    Box::new(last as i64),
                    Box::new(batch.chain.last_hash.as_str()),
                    Box::new(self.setup.channel.clone()),
                    Box::new(notice.payload()),
                ],
            ));
        }
        let mut prepared = Vec::with_capacity(statements.len());
        for (sql, params) in statements {
            prepared.push((self.statement(sql).await?, params));
        }
        if assigned {
            // Before the commit, so it is there when the notification comes round.
            self.setup.stash.put(batch.first_cursor, committed.clone());
        }
        let failure = pipeline_and_commit(&self.client, &prepared).await;
        // The parameters borrow from `committed`, which is handed on below.
        drop(prepared);
        if let Some(err) = failure {
            let error = self.failed(err);
            if assigned && self.reconnect {
                match self.kept_after_all(batch).await {
                    Some(true) => {
                        tracing::warn!(
                            "the connection broke before PostgreSQL confirmed a commit; it was kept"
                        );
                        return Ok(committed);
                    }
                    Some(false) => {}
                    None => return Err(outcome_unknown()),
                }
            }
            return Err(error);
        }
        Ok(committed)
    }

    /// Whether a batch whose connection broke after COMMIT was sent was kept
    /// anyway: the server may have committed it and lost only the answer. Its
    /// last event is then stored with the batch's hash (which covers the
    /// event's position and content and everything chained before it), or,
    /// when its last position went to an inbox reply (a batch of replies has
    /// no events), that reply is stored there, word for word and to the
    /// microsecond; telling its writers it failed would be a lie a retry turns
    /// into "already decided", or into the same reply twice.
    /// The answer is usually lost because the database is restarting or failing
    /// over, when it cannot be asked at once, so it is asked again for up to
    /// [`KEPT_ASKED_FOR`]; `None` when it could not tell by then.
    async fn kept_after_all(&mut self, batch: &Batch) -> Option<bool> {
        let last_cursor = batch.chain.next_cursor - 1;
        let (first, last) = (batch.first_cursor as i64, last_cursor as i64);
        let last_reply = batch
            .staged
            .messages
            .iter()
            .find(|message| message.cursor == last_cursor);
        let deadline = tokio::time::Instant::now() + KEPT_ASKED_FOR;
        let mut pause = Duration::from_millis(100);
        loop {
            // Each try ends by the deadline too: connecting alone may take
            // `connect_timeout`.
            let found = tokio::time::timeout_at(deadline, async {
                self.ensure_connected().await?;
                // Waits while the broken session's transaction still holds the
                // head, so what it did is settled before it is looked for.
                self.query("SELECT cursor FROM chain_head WHERE id = 1 FOR SHARE", &[])
                    .await?;
                match last_reply {
                    Some(reply) => {
                        self.query(
                            "SELECT 1 FROM inbox_messages WHERE cursor = $1 AND thread_id = $2
                             AND author = $3 AND message = $4 AND at = $5",
                            &[
                                &last,
                                &reply.thread_id,
                                &reply.author,
                                &reply.message,
                                &TimeText(reply.at),
                            ],
                        )
                        .await
                    }
                    None => {
                        self.query(
                            "SELECT 1 FROM events WHERE cursor BETWEEN $1 AND $2 AND hash = $3",
                            &[&first, &last, &batch.chain.last_hash],
                        )
                        .await
                    }
                }
            })
            .await
            .unwrap_or_else(|_| Err(Error::internal("no answer before the deadline")));
            match found {
                Ok(rows) => return Some(!rows.is_empty()),
                Err(err) if tokio::time::Instant::now() + pause < deadline => {
                    tracing::info!("cannot tell yet whether a commit was kept: {err}");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(2));
                }
                Err(err) => {
                    tracing::warn!("cannot tell whether a commit was kept: {err}");
                    return None;
                }
            }
        }
    }
}

/// The intent as the batch holds it without a query: the draft's version, the
/// batch's, or the row read from the database (`Ok(None)`: no such row).
/// `None` when it has not been read yet.
fn held<'a>(
    draft: &'a Staged,
    staged: &'a Staged,
    loaded: &'a HashMap<String, std::result::Result<Option<Intent>, Damage>>,
    intent_id: &str,
) -> Option<std::result::Result<Option<&'a Intent>, &'a Damage>> {
    match draft.intent(intent_id).or(staged.intent(intent_id)) {
        Some(intent) => Some(Ok(Some(intent))),
        None => loaded
            .get(intent_id)
            .map(|row| row.as_ref().map(Option::as_ref)),
    }
}

/// Seals a change at the batch's place in the chain. The intent it started
/// from is the version the batch holds, looked up rather than kept as a copy:
/// nothing changes it between the load and the seal.
fn seal(batch: &mut Batch, draft: &Staged, change: Change) -> (Sealed, Vec<(Target, ChangeFn)>) {
    let original = held(
        draft,
        &batch.staged,
        &batch.loaded,
        &change.intent.intent_id,
    )
    .and_then(|row| row.ok().flatten());
    change.seal(&mut batch.chain, original)
}

/// Sends the writes and COMMIT in one pipeline; returns the first error.
async fn pipeline_and_commit(
    client: &tokio_postgres::Client,
    prepared: &[(Statement, Params<'_>)],
) -> Option<tokio_postgres::Error> {
    let mut writes: Vec<_> = prepared
        .iter()
        .map(|(statement, params)| {
            futures::future::maybe_done(Box::pin(client.execute_raw(
                statement,
                params.iter().map(|p| p.as_ref() as &(dyn ToSql + Sync)),
            )))
        })
        .collect();
    // Polling each write once sends it, or refuses it here if a parameter
    // cannot be encoded; COMMIT may follow only writes that were all sent.
    for write in &mut writes {
        let _ = futures::poll!(&mut *write);
        if let Some(Err(_)) = std::pin::Pin::new(&mut *write).output_mut() {
            return std::pin::Pin::new(write).take_output()?.err();
        }
    }
    // COMMIT goes in the same pipeline. If a statement before it fails on the
    // server, the server ends the transaction with a rollback instead, so a
    // failure here means nothing was kept.
    let (_, ended) = futures::join!(
        futures::future::join_all(writes.iter_mut()),
        client.batch_execute("COMMIT"),
    );
    writes
        .iter_mut()
        .find_map(|write| std::pin::Pin::new(write).take_output()?.err())
        .or(ended.err())
}

impl Answer {
    /// Tells the job how it went: `outcome` is the batch's fate.
    fn send(self, outcome: std::result::Result<(), &Error>, committed: &[Arc<Committed>]) {
        // A caller that went away (client disconnected) no longer needs the answer.
        match self {
            Answer::Write { reply, result } => {
                let result = match outcome {
                    Err(error) => Err(error.clone()),
                    Ok(()) => result.map(|(response, range)| WriteResult {
                        response,
                        committed: committed[range].to_vec(),
                    }),
                };
                let _ = reply.send(result);
            }
            Answer::Fire { reply, result } => {
                let _ = reply.send(outcome.map_err(Error::clone).and(result));
            }
        }
    }
}

/// The writer's connection. With durability `normal` a PostgreSQL crash may lose
/// the last commits, never corrupt them: the same promise as `normal` on SQLite.
async fn open_connection(
    connector: &Connector,
    durability: Durability,
) -> Result<tokio_postgres::Client> {
    let client = connect(connector).await?;
    // Every instance's writes wait while one holds the chain head; an instance
    // that stops mid-transaction (paused, cut off) must not hold it for long.
    // The idle timeout ends a transaction waiting for its next statement; the
    // server's own keepalives (its default is the system's two hours) end one
    // whose instance vanished while the server was reading a statement, which
    // that timeout does not cover. (Over a Unix socket they do nothing.)
    client
        .batch_execute(&format!(
            "SET idle_in_transaction_session_timeout = '30s';
             SET tcp_keepalives_idle = {KEEPALIVE_IDLE_SECONDS};
             SET tcp_keepalives_interval = {KEEPALIVE_INTERVAL_SECONDS};
             SET tcp_keepalives_count = {KEEPALIVE_PROBES}"
        ))
        .await
        .map_err(storage_error)?;
    if durability == Durability::Normal {
        client
            .batch_execute("SET synchronous_commit = off")
            .await
            .map_err(storage_error)?;
    }
    Ok(client)
}

/// Moves the writes waiting in the queue into `jobs`, up to a batch.
fn take_waiting(receiver: &mut mpsc::Receiver<Job>, jobs: &mut Vec<Job>) {
    while jobs.len() < MAX_BATCH {
        match receiver.try_recv() {
            Ok(job) => jobs.push(job),
            Err(_) => break,
        }
    }
}

/// The intents the jobs work on, to read in one query.
fn intents_of(jobs: &[Job]) -> Vec<String> {
    jobs.iter()
        .flat_map(|job| match job {
            Job::Write {
                target: Target::Existing(intent_id),
                ..
            } => vec![intent_id.clone()],
            // Read too, so that a new intent's id is known to be free without a
            // query of its own.
            Job::Write {
                target: Target::New(intent),
                ..
            } => vec![intent.intent_id.clone()],
            Job::Fire { timers, .. } => {
                timers.iter().map(|timer| timer.intent_id.clone()).collect()
            }
        })
        .collect()
}

/// Answers a job that never ran.
fn refuse(job: Job, error: &Error) {
    match job {
        Job::Write { reply, .. } => {
            let _ = reply.send(Err(error.clone()));
        }
        Job::Fire { reply, .. } => {
            let _ = reply.send(Err(error.clone()));
        }
    }
}

/// One array parameter, from each item. The values usually borrow from the
/// batch: this runs while the batch holds the fleet's chain head, so nothing
/// is copied that the statement's buffer will copy anyway.
fn column<'a, T, U>(items: &[T], value: impl Fn(&T) -> U) -> Param<'a>
where
    Vec<U>: ToSql + Sync + Send + 'a,
{
    Box::new(items.iter().map(value).collect::<Vec<U>>())
}

/// One array parameter of JSON text, from each item.
fn json_column<'a, T, J>(items: &[T], value: impl Fn(&T) -> Option<&'a J>) -> Param<'a>
where
    J: serde::Serialize + std::fmt::Debug + Sync + 'a,
{
    column(items, |item| value(item).map(JsonText))
}

/// A value's compact JSON text as a `text` parameter, serialized straight into
/// the statement's buffer rather than into a string of its own first.
#[derive(Debug)]
struct JsonText<'a, J>(&'a J);

impl<J: serde::Serialize + std::fmt::Debug + Sync> ToSql for JsonText<'_, J> {
    fn to_sql(
        &self,
        _: &Type,
        out: &mut BytesMut,
    ) -> std::result::Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        serde_json::to_writer(out.writer(), self.0)?;
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        <&str as ToSql>::accepts(ty)
    }

    to_sql_checked!();
}

/// A timestamp's canonical text as a `text` parameter, written straight into
/// the statement's buffer.
#[derive(Debug, Clone, Copy)]
struct TimeText(Timestamp);

impl ToSql for TimeText {
    fn to_sql(
        &self,
        _: &Type,
        out: &mut BytesMut,
    ) -> std::result::Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        write!(out, "{}", self.0)?;
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        <&str as ToSql>::accepts(ty)
    }

    to_sql_checked!();
}

/// The intents with the given ids.
static LOAD_INTENTS: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!("SELECT {INTENT_COLUMNS} FROM intents WHERE intent_id = ANY($1)")
});

const INSERT_EVENTS: &str = "INSERT INTO events (cursor, intent_id, seq, event_type, status,
        waiting_reason, actor, at, details, affects_tasks, task, hash)
    SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::bigint[], $4::text[], $5::text[],
        $6::text[], $7::text[], $8::text[], $9::text[], $10::bool[], $11::text[], $12::text[])";

const INSERT_MESSAGES: &str = "INSERT INTO inbox_messages (cursor, thread_id, author, message, at)
    SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[])";

const SAVE_INTENTS: &str = concat!(
    "INSERT INTO intents (intent_id, intent_type, correlation_id,
        from_agent, to_agent, reply_to, payload, status, waiting_reason, created_at, updated_at,
        human_task, assignees, assigned_at, due_at, remind_count, escalation_stage, result,
        lifecycle, last_seq, last_cursor, workflow, step_of, votes)
    SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
        $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::text[],
        $14::text[], $15::text[], $16::bigint[], $17::bigint[], $18::text[], $19::text[],
        $20::bigint[], $21::bigint[], $22::text[], $23::text[], $24::text[]) ",
    rows::intent_upsert_update!()
);

const INSERT_DELIVERIES: &str = "INSERT INTO agent_deliveries (agent, seq, intent_id, event_type,
        at, commit_cursor)
    SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::bigint[])";

/// Moves the chain head past the batch and queues its notification, in one
/// statement: every statement run while the head is held holds up the fleet.
const MOVE_HEAD_AND_NOTIFY: &str = "WITH moved AS (
        UPDATE chain_head SET cursor = $1, hash = $2 WHERE id = 1)
    SELECT pg_notify($3, $4)";

const DELETE_TIMERS_OF: &str = "DELETE FROM timers WHERE intent_id = ANY($1)";

const DELETE_FIRED_TIMERS: &str = "DELETE FROM timers t
    USING UNNEST($1::text[], $2::text[]) AS fired (intent_id, kind)
    WHERE t.intent_id = fired.intent_id AND t.kind = fired.kind";

const UPSERT_TIMERS: &str = "INSERT INTO timers (intent_id, kind, due_at, attempt)
    SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::bigint[])
    ON CONFLICT (intent_id, kind) DO UPDATE SET due_at = excluded.due_at,
        attempt = excluded.attempt, lease_owner = NULL, lease_until = NULL";

const INSERT_OUTBOX: &str = "INSERT INTO outbox (intent_id, channel, recipient, target, message,
        next_attempt_at)
    SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[])";

const DELETE_SENT: &str = "DELETE FROM outbox WHERE outbox_id = ANY($1)";

/// A failed send is rescheduled only by the instance still holding its lease: one
/// whose lease ran out meanwhile must not free a row another instance now sends.
const RETRY_LATER: &str = "UPDATE outbox o SET attempts = o.attempts + 1,
        next_attempt_at = retry.at, lease_until = NULL, lease_owner = NULL
    FROM UNNEST($1::bigint[], $2::text[]) AS retry (outbox_id, at)
    WHERE o.outbox_id = retry.outbox_id AND o.lease_owner = $3";

const DELETE_OUTBOX_OF: &str = "DELETE FROM outbox WHERE intent_id = ANY($1)";

const INSERT_CLAIMS: &str = "INSERT INTO idempotency_keys (principal, endpoint, key, request_hash,
        response, created_at)
    SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[])";

/// The multi-row statements that write everything staged. Their order does not
/// matter: ended intents have no timers or notifications staged, fired and
/// replaced timers are different keys, and where deletions overlap (an ended
/// intent's outbox rows, one of which was also sent) either order leaves none.
fn flush_statements<'a>(
    staged: &'a Staged,
    committed: &'a [Arc<Committed>],
    seqs: &[u64],
    instance: &str,
) -> Vec<(&'static str, Params<'a>)> {
    let mut statements: Vec<(&'static str, Params<'a>)> = Vec::new();
    let events: Vec<(&StoredEvent, &String)> = committed
        .iter()
        .flat_map(|committed| &committed.events)
        .zip(&staged.hashes)
        .collect();
    if !events.is_empty() {
        statements.push((
            INSERT_EVENTS,
            vec![
                column(&events, |(stored, _)| stored.cursor as i64),
                column(&events, |&(stored, _)| stored.event.intent_id.as_str()),
                column(&events, |(stored, _)| stored.event.seq as i64),
                column(&events, |&(stored, _)| stored.event.event_type.as_str()),
                column(&events, |(stored, _)| stored.event.status.as_str()),
                column(&events, |(stored, _)| {
                    stored.event.waiting_reason.map(|reason| reason.as_str())
                }),
                column(&events, |&(stored, _)| stored.event.actor.as_str()),
                column(&events, |(stored, _)| TimeText(stored.event.at)),
                json_column(&events, |&(stored, _)| Some(&stored.event.details)),
                column(&events, |(stored, _)| {
                    stored.event.task_stream_effect().is_some()
                }),
                json_column(&events, |&(stored, _)| stored.task.as_ref()),
                column(&events, |&(_, hash)| hash.as_str()),
            ],
        ));
    }
    // References collected first, so each column's values can borrow for the
    // batch's lifetime rather than only for the closure's call.
    let messages: Vec<&InboxMessage> = staged.messages.iter().collect();
    if !messages.is_empty() {
        statements.push((
            INSERT_MESSAGES,
            vec![
                column(&messages, |message| message.cursor as i64),
                column(&messages, |&message| message.thread_id.as_str()),
                column(&messages, |&message| message.author.as_str()),
                column(&messages, |&message| message.message.as_str()),
                column(&messages, |message| TimeText(message.at)),
            ],
        ));
    }
    let intents: Vec<&Intent> = staged.intents.values().collect();
    if !intents.is_empty() {
        statements.push((SAVE_INTENTS, intent_columns(&intents)));
    }
    let deliveries: Vec<(&StagedDelivery, u64)> =
        staged.deliveries.iter().zip(seqs.iter().copied()).collect();
    if !deliveries.is_empty() {
        statements.push((
            INSERT_DELIVERIES,
            vec![
                column(&deliveries, |&(delivery, _)| delivery.agent.as_str()),
                column(&deliveries, |(_, seq)| *seq as i64),
                column(&deliveries, |&(delivery, _)| delivery.intent_id.as_str()),
                column(&deliveries, |&(delivery, _)| delivery.event_type.as_str()),
                column(&deliveries, |(delivery, _)| TimeText(delivery.at)),
                column(&deliveries, |(delivery, _)| delivery.commit_cursor as i64),
            ],
        ));
    }
    let ended: Vec<&str> = staged.ended.iter().map(String::as_str).collect();
    if !ended.is_empty() {
        statements.push((DELETE_TIMERS_OF, vec![Box::new(ended.clone())]));
        statements.push((DELETE_OUTBOX_OF, vec![Box::new(ended)]));
    }
    let (replaced, fired): (Vec<_>, Vec<_>) =
        staged.timers.iter().partition(|(_, timer)| timer.is_some());
    if !fired.is_empty() {
        statements.push((
            DELETE_FIRED_TIMERS,
            vec![
                column(&fired, |&((intent_id, _), _)| intent_id.as_str()),
                column(&fired, |((_, kind), _)| kind.as_str()),
            ],
        ));
    }
    let replaced: Vec<(&String, &TimerSpec)> = replaced
        .into_iter()
        .filter_map(|((intent_id, _), timer)| timer.as_ref().map(|timer| (intent_id, timer)))
        .collect();
    if !replaced.is_empty() {
        statements.push((
            UPSERT_TIMERS,
            vec![
                column(&replaced, |&(intent_id, _)| intent_id.as_str()),
                column(&replaced, |(_, timer)| timer.kind.as_str()),
                column(&replaced, |(_, timer)| TimeText(timer.due_at)),
                column(&replaced, |(_, timer)| i64::from(timer.attempt)),
            ],
        ));
    }
    let notifications: Vec<&(String, Notification, Timestamp)> =
        staged.notifications.iter().collect();
    if !notifications.is_empty() {
        statements.push((
            INSERT_OUTBOX,
            vec![
                column(&notifications, |&(intent_id, _, _)| intent_id.as_str()),
                column(&notifications, |(_, notification, _)| {
                    notification.channel.as_str()
                }),
                column(&notifications, |&(_, notification, _)| {
                    notification.recipient.as_str()
                }),
                column(&notifications, |&(_, notification, _)| {
                    notification.target.as_str()
                }),
                json_column(&notifications, |&(_, notification, _)| {
                    Some(&notification.message)
                }),
                column(&notifications, |(_, _, at)| TimeText(*at)),
            ],
        ));
    }
    let mut sent: Vec<i64> = Vec::new();
    let mut retries: Vec<(i64, Timestamp)> = Vec::new();
    for update in &staged.outbox_updates {
        match *update {
            OutboxUpdate::Done { outbox_id } => sent.push(outbox_id),
            OutboxUpdate::Retry { outbox_id, at } => retries.push((outbox_id, at)),
        }
    }
    if !sent.is_empty() {
        statements.push((DELETE_SENT, vec![Box::new(sent)]));
    }
    if !retries.is_empty() {
        statements.push((
            RETRY_LATER,
            vec![
                column(&retries, |(outbox_id, _)| *outbox_id),
                column(&retries, |(_, at)| TimeText(*at)),
                Box::new(instance.to_string()),
            ],
        ));
    }
    let claims: Vec<_> = staged.claims.iter().collect();
    if !claims.is_empty() {
        statements.push((
            INSERT_CLAIMS,
            vec![
                column(&claims, |&((principal, _, _), _)| principal.as_str()),
                column(&claims, |&((_, endpoint, _), _)| endpoint.as_str()),
                column(&claims, |&((_, _, key), _)| key.as_str()),
                column(&claims, |&(_, (hash, _, _))| hash.as_str()),
                json_column(&claims, |&(_, (_, response, _))| Some(response)),
                column(&claims, |(_, (_, _, at))| TimeText(*at)),
            ],
        ));
    }
    statements
}

/// The 24 array parameters of [`SAVE_INTENTS`].
fn intent_columns<'a>(intents: &[&'a Intent]) -> Params<'a> {
    vec![
        column(intents, |&intent| intent.intent_id.as_str()),
        column(intents, |&intent| intent.intent_type.as_str()),
        column(intents, |&intent| intent.correlation_id.as_str()),
        column(intents, |&intent| intent.from_agent.as_str()),
        column(intents, |&intent| intent.to_agent.as_deref()),
        column(intents, |&intent| intent.reply_to.as_deref()),
        json_column(intents, |&intent| Some(&intent.payload)),
        column(intents, |intent| intent.status.as_str()),
        column(intents, |intent| {
            intent.waiting_reason.map(|reason| reason.as_str())
        }),
        column(intents, |intent| TimeText(intent.created_at)),
        column(intents, |intent| TimeText(intent.updated_at)),
        json_column(intents, |&intent| intent.human_task.as_ref()),
        json_column(intents, |&intent| Some(&intent.assignees)),
        column(intents, |intent| intent.assigned_at.map(TimeText)),
        column(intents, |intent| intent.due_at.map(TimeText)),
        column(intents, |intent| i64::from(intent.remind_count)),
        column(intents, |intent| i64::from(intent.escalation_stage)),
        json_column(intents, |&intent| intent.result.as_ref()),
        json_column(intents, |&intent| Some(&intent.lifecycle)),
        column(intents, |intent| intent.last_seq as i64),
        column(intents, |intent| intent.last_cursor as i64),
        json_column(intents, |&intent| intent.workflow.as_ref()),
        json_column(intents, |&intent| intent.step_of.as_ref()),
        json_column(intents, |&intent| Some(&intent.votes)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn encoded(param: &(dyn ToSql + Sync), ty: &Type) -> Vec<u8> {
        let mut out = BytesMut::new();
        param.to_sql_checked(ty, &mut out).unwrap();
        out.to_vec()
    }

    /// What is written straight into the buffer must be the very bytes the
    /// strings used to carry: the audit chain hashes them on both backends.
    #[test]
    fn parameters_written_in_place_match_their_text() {
        let details = json!({"b": [1, null], "a": "quote \" and é", "c": {"z": true}});
        assert_eq!(
            encoded(&JsonText(&details), &Type::TEXT),
            serde_json::to_string(&details).unwrap().into_bytes()
        );
        let at = Timestamp::parse("2026-12-04T17:45:01.000123Z").unwrap();
        assert_eq!(
            encoded(&TimeText(at), &Type::TEXT),
            b"2026-12-04T17:45:01.000123Z"
        );
        let column = vec![Some(JsonText(&details)), None];
        let texts = vec![Some(serde_json::to_string(&details).unwrap()), None];
        assert_eq!(
            encoded(&column, &Type::TEXT_ARRAY),
            encoded(&texts, &Type::TEXT_ARRAY)
        );
    }

    #[test]
    fn parameters_written_in_place_refuse_types_that_are_not_text() {
        let mut out = BytesMut::new();
        assert!(
            JsonText(&json!(1))
                .to_sql_checked(&Type::INT8, &mut out)
                .is_err()
        );
        assert!(
            TimeText(Timestamp::from_unix_micros(0))
                .to_sql_checked(&Type::BOOL, &mut out)
                .is_err()
        );
    }
}
