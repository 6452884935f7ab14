//! The embedded SQLite store.
//!
//! All writes go through one writer thread that owns the only write connection. It
//! takes every job waiting in its queue, runs them in one transaction (each inside
//! its own savepoint, so one failing job does not undo the others) and commits once:
//! group commit. With `synchronous=FULL` that is one fsync for the whole batch, which
//! is what lets thousands of decisions per second be durable on a disk that manages a
//! few hundred fsyncs. Reads use a small pool of read-only connections; WAL mode lets
//! them run while the writer commits.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use async_trait::async_trait;
use rusqlite::{Connection, OpenFlags, OptionalExtension, Row, params};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use super::audit::{self, AuditError, AuditFilter, check_schema_version};
use super::rows::{
    self, Columns, Damage, EVENT_COLUMNS, INTENT_COLUMNS, KEY_COLUMNS, OUTBOX_COLUMNS,
    TIMER_COLUMNS,
};
use super::{
    AgentDelivery, Chain, ChangeFn, CommitSink, Committed, DueTimer, Durability, HealthCheck,
    IdempotencyClaim, InboxMessage, KeyRecord, NewKey, Notification, OutboxItem, OutboxUpdate,
    Sealed, Store, Target, TaskSnapshot, TimerFn, WriteResult, WriterQueue, stop_writer,
    submit_to_writer, writer_check,
};
use crate::clock::Clock;
use crate::domain::audit::AuditRecord;
use crate::domain::{Error, Event, Intent, Result, StoredEvent, TimerKind, TimerSpec, Timestamp};

const MIGRATIONS: &[&str] = &[
    include_str!("migrations/sqlite/0001_init.sql"),
    include_str!("migrations/sqlite/0002_workflows.sql"),
];

/// Upper bound on jobs per transaction, so one commit never holds callers for long.
const MAX_BATCH: usize = 512;
/// Writes waiting beyond this are refused with 429 rather than queued without limit.
const QUEUE_CAPACITY: usize = 8192;
/// Read connections kept open between reads.
const IDLE_READERS: usize = 4;

pub struct SqliteStore {
    path: PathBuf,
    jobs: WriterQueue<Box<dyn Job>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    readers: Arc<Mutex<Vec<Connection>>>,
}

fn storage_error(err: impl std::fmt::Display) -> Error {
    Error::internal(format!("storage error: {err}"))
}

fn corrupt(damage: Damage) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, damage.into())
}

fn open_connection(
    path: &Path,
    read_only: bool,
    durability: Durability,
) -> rusqlite::Result<Connection> {
    let flags = if read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
    };
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.set_prepared_statement_cache_capacity(64);
    if !read_only {
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", durability.as_str())?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
    }
    Ok(conn)
}

fn migrate(conn: &mut Connection) -> rusqlite::Result<()> {
    let current: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    let current = usize::try_from(current).unwrap_or(usize::MAX);
    if current > MIGRATIONS.len() {
        return Err(rusqlite::Error::InvalidParameterName(format!(
            "database schema version {current} is newer than this signoff ({}); upgrade signoff",
            MIGRATIONS.len()
        )));
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(current) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (index + 1) as i64)?;
        tx.commit()?;
    }
    Ok(())
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`, applies migrations and
    /// starts the writer thread.
    pub fn open(
        path: &Path,
        durability: Durability,
        clock: Arc<dyn Clock>,
        sink: Arc<dyn CommitSink>,
    ) -> Result<SqliteStore> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|err| {
                Error::internal(format!("cannot create {}: {err}", parent.display()))
            })?;
        }
        let mut conn = open_connection(path, false, durability).map_err(|err| {
            Error::internal(format!("cannot open database {}: {err}", path.display()))
        })?;
        migrate(&mut conn).map_err(|err| {
            Error::internal(format!("cannot migrate database {}: {err}", path.display()))
        })?;
        let chain = chain_head(&conn).map_err(storage_error)?;
        let (sender, receiver) = mpsc::channel(QUEUE_CAPACITY);
        let writer = Writer {
            conn,
            clock,
            sink,
            chain,
        };
        let handle = std::thread::Builder::new()
            .name("signoff-sqlite-writer".into())
            .spawn(move || writer.run(receiver))
            .map_err(|err| Error::internal(format!("cannot start the writer thread: {err}")))?;
        Ok(SqliteStore {
            path: path.to_path_buf(),
            jobs: Mutex::new(Some(sender)),
            writer: Mutex::new(Some(handle)),
            readers: Arc::new(Mutex::new(Vec::new())),
        })
    }

    /// Queues `work` for the writer thread and waits for its committed result.
    async fn submit<T: Outcome>(
        &self,
        work: impl FnOnce(&mut Writer) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let (job, answer) = queued(work);
        submit_to_writer(&self.jobs, job, answer).await
    }

    /// Runs a plain statement on the writer connection.
    async fn maintenance(
        &self,
        run: impl FnOnce(&Connection) -> rusqlite::Result<u64> + Send + 'static,
    ) -> Result<u64> {
        self.submit(move |writer| run(&writer.conn).map_err(storage_error))
            .await
    }

    /// Runs a read that may touch many rows on a pooled connection, off the async
    /// threads.
    async fn read<T, F>(&self, query: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let readers = self.readers.clone();
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || with_reader(&readers, &path, query))
            .await
            .map_err(|err| Error::internal(format!("read task failed: {err}")))?
    }

    /// Runs a small indexed read (one row, or one short page) right here. In WAL
    /// mode a reader never waits for the writer, and such a read takes microseconds:
    /// less than handing it to another thread and back, which is what dominated the
    /// round trip when every read went through `spawn_blocking`.
    fn read_now<T>(&self, query: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T> {
        with_reader(&self.readers, &self.path, query)
    }
}

/// Borrows a read-only connection from the pool (opening one if none is free).
fn with_reader<T>(
    readers: &Mutex<Vec<Connection>>,
    path: &Path,
    query: impl FnOnce(&Connection) -> rusqlite::Result<T>,
) -> Result<T> {
    let pooled = readers.lock().ok().and_then(|mut pool| pool.pop());
    let conn = match pooled {
        Some(conn) => conn,
        None => open_connection(path, true, Durability::Normal).map_err(storage_error)?,
    };
    let result = query(&conn).map_err(storage_error);
    // Keep a few idle connections; a burst of readers should not leave dozens open.
    if let Ok(mut pool) = readers.lock()
        && pool.len() < IDLE_READERS
    {
        pool.push(conn);
    }
    result
}

struct Writer {
    conn: Connection,
    clock: Arc<dyn Clock>,
    sink: Arc<dyn CommitSink>,
    /// The commit order and hash chain; kept in memory because this thread is
    /// the only writer.
    chain: Chain,
}

/// What a job hands back; it reaches the caller only once its transaction's fate
/// is known.
trait Outcome: Send + 'static {
    /// The intent changes it committed, for live delivery.
    fn committed(&self) -> Vec<Arc<Committed>> {
        Vec::new()
    }
}

impl Outcome for u64 {}
impl Outcome for Vec<OutboxItem> {}

impl Outcome for WriteResult {
    fn committed(&self) -> Vec<Arc<Committed>> {
        self.committed.clone()
    }
}

/// How many timers one job found due, and what each firing committed.
#[derive(Default)]
struct Fired {
    due: usize,
    committed: Vec<Arc<Committed>>,
}

impl Outcome for Fired {
    fn committed(&self) -> Vec<Arc<Committed>> {
        self.committed.clone()
    }
}

type Work<T> = Box<dyn FnOnce(&mut Writer) -> Result<T> + Send>;

/// A queued write: work for the writer thread, and where its answer goes.
trait Job: Send {
    /// Runs the work inside the open transaction.
    fn run(self: Box<Self>, writer: &mut Writer) -> Box<dyn Answer>;
    /// Answers without running (the transaction could not start or was lost).
    fn refuse(self: Box<Self>, error: &Error);
}

/// A job's result, held until the transaction commits or fails.
trait Answer: Send {
    fn failed(&self) -> bool;
    fn committed(&self) -> Vec<Arc<Committed>>;
    /// Sends the result, or `failure` when the transaction did not commit.
    fn send(self: Box<Self>, failure: Option<&Error>);
}

struct Queued<T> {
    work: Work<T>,
    reply: oneshot::Sender<Result<T>>,
}

/// A job for `work`, and where its answer will arrive.
fn queued<T: Outcome>(
    work: impl FnOnce(&mut Writer) -> Result<T> + Send + 'static,
) -> (Box<dyn Job>, oneshot::Receiver<Result<T>>) {
    let (reply, answer) = oneshot::channel();
    let job = Box::new(Queued {
        work: Box::new(work),
        reply,
    });
    (job, answer)
}

struct Reply<T> {
    reply: oneshot::Sender<Result<T>>,
    result: Result<T>,
}

impl<T: Outcome> Job for Queued<T> {
    fn run(self: Box<Self>, writer: &mut Writer) -> Box<dyn Answer> {
        let result = (self.work)(writer);
        Box::new(Reply {
            reply: self.reply,
            result,
        })
    }

    fn refuse(self: Box<Self>, error: &Error) {
        let _ = self.reply.send(Err(error.clone()));
    }
}

impl<T: Outcome> Answer for Reply<T> {
    fn failed(&self) -> bool {
        self.result.is_err()
    }

    fn committed(&self) -> Vec<Arc<Committed>> {
        self.result
            .as_ref()
            .map(Outcome::committed)
            .unwrap_or_default()
    }

    fn send(self: Box<Self>, failure: Option<&Error>) {
        let result = match failure {
            Some(error) => Err(error.clone()),
            None => self.result,
        };
        // A caller that went away (client disconnected) no longer needs the answer.
        let _ = self.reply.send(result);
    }
}

impl Writer {
    fn run(mut self, mut receiver: mpsc::Receiver<Box<dyn Job>>) {
        while let Some(first) = receiver.blocking_recv() {
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match receiver.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            self.run_batch(batch);
        }
        if let Err(err) = self.conn.pragma_update(None, "wal_checkpoint", "TRUNCATE") {
            tracing::warn!("final WAL checkpoint failed: {err}");
        }
    }

    fn run_batch(&mut self, batch: Vec<Box<dyn Job>>) {
        if let Err(err) = self.conn.execute_batch("BEGIN IMMEDIATE") {
            let error = storage_error(err);
            for job in batch {
                job.refuse(&error);
            }
            return;
        }
        let mut answers = Vec::with_capacity(batch.len());
        let mut jobs = batch.into_iter();
        for job in jobs.by_ref() {
            let mark = match self.open_savepoint("job") {
                Ok(mark) => mark,
                Err(error) => {
                    job.refuse(&error);
                    continue;
                }
            };
            let answer = job.run(self);
            let failed = answer.failed();
            answers.push(answer);
            if !self.close_savepoint("job", mark, failed) {
                break;
            }
        }
        let outcome = if self.conn.is_autocommit() {
            Err(storage_error(
                "the transaction was rolled back by the database",
            ))
        } else {
            self.conn
                .execute_batch("COMMIT")
                .map_err(|err| storage_error(format!("commit failed: {err}")))
        };
        if let Err(error) = outcome {
            tracing::error!("{error}");
            if !self.conn.is_autocommit() {
                let _ = self.conn.execute_batch("ROLLBACK");
            }
            for answer in answers {
                answer.send(Some(&error));
            }
            for job in jobs {
                job.refuse(&error);
            }
            self.resync();
            return;
        }
        let committed: Vec<Arc<Committed>> = answers
            .iter()
            .flat_map(|answer| answer.committed())
            .collect();
        if !committed.is_empty() {
            self.sink.committed(&committed);
        }
        for answer in answers {
            answer.send(None);
        }
    }

    /// Opens a savepoint and remembers where the commit order and the hash chain
    /// stood, so that one failing job can be undone without the others.
    fn open_savepoint(&mut self, name: &str) -> Result<Chain> {
        self.conn
            .execute_batch(&format!("SAVEPOINT {name}"))
            .map_err(storage_error)?;
        Ok(self.chain.clone())
    }

    /// Releases the savepoint, first rolling it back (with the commit position and
    /// hash chain) when its work `failed`. Returns false when SQLite dropped the
    /// whole transaction itself (disk full, I/O error): nothing of it was kept,
    /// whatever the jobs said.
    fn close_savepoint(&mut self, name: &str, mark: Chain, failed: bool) -> bool {
        // However the job ended, a connection back in autocommit means the
        // transaction is gone; going on would start a new one silently.
        if self.conn.is_autocommit() {
            return false;
        }
        let closing = if failed {
            self.chain = mark;
            format!("ROLLBACK TO {name}; RELEASE {name}")
        } else {
            format!("RELEASE {name}")
        };
        if let Err(err) = self.conn.execute_batch(&closing) {
            tracing::error!("savepoint handling failed: {err}");
        }
        true
    }

    /// After a failed commit the database, not memory, says where the commit order
    /// and the hash chain continue.
    fn resync(&mut self) {
        match chain_head(&self.conn) {
            Ok(chain) => self.chain = chain,
            Err(err) => tracing::error!("cannot re-read the commit position: {err}"),
        }
    }

    fn apply_intent(
        &mut self,
        target: Target,
        claim: Option<IdempotencyClaim>,
        apply: ChangeFn,
    ) -> Result<WriteResult> {
        if let Some(claim) = &claim
            && let Some(response) = replay_idempotent(&self.conn, claim)?
        {
            return Ok(WriteResult {
                response,
                committed: Vec::new(),
            });
        }
        let (intent, original) = self.load_target(target)?;
        let mut change = super::Change::new(intent, self.clock.now());
        let response = apply(&mut change)?;
        let now = change.now;
        let mut committed = Vec::new();
        self.persist_all(change, original.as_ref(), 0, &mut committed)?;
        if let Some(claim) = &claim {
            self.conn
                .prepare_cached(
                    "INSERT INTO idempotency_keys (principal, endpoint, key, request_hash, response, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )
                .and_then(|mut statement| {
                    statement.execute(params![
                        claim.principal,
                        claim.endpoint,
                        claim.key,
                        claim.request_hash,
                        response.to_string(),
                        now.to_string()
                    ])
                })
                .map_err(storage_error)?;
        }
        Ok(WriteResult {
            response,
            committed,
        })
    }

    /// The intent a write works on, and the row as loaded (`None` for a new one).
    fn load_target(&self, target: Target) -> Result<(Intent, Option<Intent>)> {
        match target {
            Target::New(intent) => Ok((*intent, None)),
            Target::Existing(intent_id) => {
                let intent = load_intent(&self.conn, &intent_id)
                    .map_err(storage_error)?
                    .ok_or_else(|| Error::not_found("intent", &intent_id))?;
                Ok((intent.clone(), Some(intent)))
            }
        }
    }

    /// Persists a change and then, in the same transaction, the changes it asked
    /// for on other intents (a workflow step ending advances its workflow, which
    /// starts the next step), depth first, in the order they were asked for.
    fn persist_all(
        &mut self,
        change: super::Change,
        original: Option<&Intent>,
        depth: usize,
        committed: &mut Vec<Arc<Committed>>,
    ) -> Result<()> {
        super::check_follow_up_depth(depth)?;
        let now = change.now;
        let (sealed, follow_ups) = change.seal(&mut self.chain, original);
        committed.push(Arc::new(self.persist(sealed)?));
        for (target, apply) in follow_ups {
            let (intent, original) = self.load_target(target)?;
            let mut follow_up = super::Change::new(intent, now);
            apply(&mut follow_up)?;
            self.persist_all(follow_up, original.as_ref(), depth + 1, committed)?;
        }
        Ok(())
    }

    /// Writes everything a sealed change holds.
    fn persist(&mut self, sealed: Sealed) -> Result<Committed> {
        let conn = &self.conn;
        for (stored, hash) in sealed.events.iter().zip(&sealed.hashes) {
            insert_event(conn, stored, hash).map_err(storage_error)?;
        }
        for message in &sealed.messages {
            insert_message(conn, message).map_err(storage_error)?;
        }
        if sealed.changed {
            save_intent(conn, &sealed.intent).map_err(storage_error)?;
        }
        let now = sealed.now;
        let deliveries = sealed
            .deliveries
            .iter()
            .map(|pending| {
                insert_delivery(
                    conn,
                    &pending.agent,
                    &sealed.intent,
                    &pending.event_type,
                    now,
                )
            })
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(storage_error)?;
        let intent_id = &sealed.intent.intent_id;
        if sealed.ended {
            delete_timers(conn, intent_id).map_err(storage_error)?;
            delete_outbox(conn, intent_id).map_err(storage_error)?;
        }
        for timer in &sealed.timers {
            upsert_timer(conn, intent_id, timer).map_err(storage_error)?;
        }
        for notification in &sealed.notifications {
            insert_outbox(conn, intent_id, notification, now).map_err(storage_error)?;
        }
        for update in &sealed.outbox_updates {
            apply_outbox_update(conn, *update).map_err(storage_error)?;
        }
        Ok(sealed.committed(deliveries))
    }

    /// Fires up to `limit` due timers, each in its own savepoint: the timer's
    /// removal, its effect and its successor commit together, and a timer that
    /// cannot fire is dropped (and logged) rather than coming due forever.
    fn fire_due_timers(&mut self, now: Timestamp, limit: usize, fire: &TimerFn) -> Result<Fired> {
        let mut fired = Fired::default();
        // One at a time, earliest first, so a timer that a firing schedules
        // already overdue (the next stage of a ladder after downtime) fires in
        // its place in due order, not after the ones read before it.
        while fired.due < limit {
            let Some(timer) = next_due_timer(&self.conn, now).map_err(storage_error)? else {
                break;
            };
            fired.due += 1;
            let mark = self.open_savepoint("timer")?;
            let outcome = self.fire_one(&timer, fire);
            if !self.close_savepoint("timer", mark, outcome.is_err()) {
                return Err(storage_error(
                    "the transaction was rolled back by the database",
                ));
            }
            match outcome {
                Ok(committed) => fired.committed.extend(committed),
                Err(error) => {
                    tracing::error!(
                        intent_id = %timer.intent_id,
                        kind = timer.kind.as_str(),
                        "a timer could not fire and is dropped: {error}"
                    );
                    delete_timer(&self.conn, &timer.intent_id, timer.kind)
                        .map_err(storage_error)?;
                }
            }
        }
        Ok(fired)
    }

    /// Fires one timer; returns what it committed (nothing when its intent is
    /// gone or ended).
    fn fire_one(&mut self, timer: &DueTimer, fire: &TimerFn) -> Result<Vec<Arc<Committed>>> {
        delete_timer(&self.conn, &timer.intent_id, timer.kind).map_err(storage_error)?;
        let mut committed = Vec::new();
        let Some(intent) = load_intent(&self.conn, &timer.intent_id).map_err(storage_error)? else {
            return Ok(committed);
        };
        if intent.status.is_terminal() {
            return Ok(committed);
        }
        let original = intent.clone();
        let mut change = super::Change::new(intent, self.clock.now());
        fire(timer, &mut change)?;
        self.persist_all(change, Some(&original), 0, &mut committed)?;
        Ok(committed)
    }
}

/// The newest commit position: events and inbox messages share one sequence.
fn max_cursor(conn: &Connection) -> rusqlite::Result<u64> {
    let cursor: i64 = conn.query_row(
        "SELECT MAX(COALESCE((SELECT MAX(cursor) FROM events), 0),
                    COALESCE((SELECT MAX(cursor) FROM inbox_messages), 0))",
        [],
        |row| row.get(0),
    )?;
    Ok(cursor as u64)
}

fn replay_idempotent(conn: &Connection, claim: &IdempotencyClaim) -> Result<Option<Value>> {
    let stored: Option<(String, String)> = conn
        .prepare_cached(
            "SELECT request_hash, response FROM idempotency_keys
             WHERE principal = ?1 AND endpoint = ?2 AND key = ?3",
        )
        .and_then(|mut statement| {
            statement
                .query_row(params![claim.principal, claim.endpoint, claim.key], |row| {
                    Ok((row.get(0)?, row.get(1)?))
                })
                .optional()
        })
        .map_err(storage_error)?;
    stored
        .map(|(hash, response)| claim.replay(&hash, &response))
        .transpose()
}

fn to_json<T: serde::Serialize>(value: &T) -> rusqlite::Result<String> {
    serde_json::to_string(value)
        .map_err(|err| rusqlite::Error::ToSqlConversionFailure(Box::new(err)))
}

fn optional_json<T: serde::Serialize>(value: &Option<T>) -> rusqlite::Result<Option<String>> {
    value.as_ref().map(to_json).transpose()
}

/// Writes the whole intent row, inserting it the first time.
fn save_intent(conn: &Connection, intent: &Intent) -> rusqlite::Result<()> {
    conn.prepare_cached(concat!(
        "INSERT INTO intents (intent_id, intent_type, correlation_id, from_agent, to_agent, reply_to,
             payload, status, waiting_reason, created_at, updated_at, human_task, assignees,
             assigned_at, due_at, remind_count, escalation_stage, result, lifecycle, last_seq, last_cursor,
             workflow, step_of, votes)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21,
             ?22, ?23, ?24) ",
        rows::intent_upsert_update!()
    ),
    )?
    .execute(params![
        intent.intent_id,
        intent.intent_type,
        intent.correlation_id,
        intent.from_agent,
        intent.to_agent,
        intent.reply_to,
        to_json(&intent.payload)?,
        intent.status.as_str(),
        intent.waiting_reason.map(|r| r.as_str()),
        intent.created_at.to_string(),
        intent.updated_at.to_string(),
        optional_json(&intent.human_task)?,
        to_json(&intent.assignees)?,
        intent.assigned_at.map(|t| t.to_string()),
        intent.due_at.map(|t| t.to_string()),
        intent.remind_count,
        intent.escalation_stage,
        optional_json(&intent.result)?,
        to_json(&intent.lifecycle)?,
        intent.last_seq as i64,
        intent.last_cursor as i64,
        optional_json(&intent.workflow)?,
        optional_json(&intent.step_of)?,
        to_json(&intent.votes)?,
    ])?;
    Ok(())
}

fn insert_event(conn: &Connection, stored: &StoredEvent, hash: &str) -> rusqlite::Result<()> {
    let event = &stored.event;
    conn.prepare_cached(
        "INSERT INTO events (cursor, intent_id, seq, event_type, status, waiting_reason, actor, at,
             details, affects_tasks, task, hash)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
    )?
    .execute(params![
        stored.cursor as i64,
        event.intent_id,
        event.seq as i64,
        event.event_type,
        event.status.as_str(),
        event.waiting_reason.map(|r| r.as_str()),
        event.actor,
        event.at.to_string(),
        to_json(&event.details)?,
        event.task_stream_effect().is_some(),
        optional_json(&stored.task)?,
        hash,
    ])?;
    Ok(())
}

/// Where the commit order and the hash chain continue.
fn chain_head(conn: &Connection) -> rusqlite::Result<Chain> {
    let hash: Option<String> = conn
        .query_row(
            "SELECT hash FROM events ORDER BY cursor DESC LIMIT 1",
            [],
            |row| row.get(0),
        )
        .optional()?;
    Ok(Chain::after(max_cursor(conn)?, hash))
}

fn insert_message(conn: &Connection, message: &InboxMessage) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO inbox_messages (cursor, thread_id, author, message, at)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![
        message.cursor as i64,
        message.thread_id,
        message.author,
        message.message,
        message.at.to_string()
    ])?;
    Ok(())
}

fn upsert_timer(conn: &Connection, intent_id: &str, timer: &TimerSpec) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO timers (intent_id, kind, due_at, attempt) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (intent_id, kind) DO UPDATE SET due_at = excluded.due_at, attempt = excluded.attempt",
    )?
    .execute(params![
        intent_id,
        timer.kind.as_str(),
        timer.due_at.to_string(),
        timer.attempt
    ])?;
    Ok(())
}

fn delete_timer(conn: &Connection, intent_id: &str, kind: TimerKind) -> rusqlite::Result<()> {
    conn.prepare_cached("DELETE FROM timers WHERE intent_id = ?1 AND kind = ?2")?
        .execute(params![intent_id, kind.as_str()])?;
    Ok(())
}

fn delete_outbox(conn: &Connection, intent_id: &str) -> rusqlite::Result<()> {
    conn.prepare_cached("DELETE FROM outbox WHERE intent_id = ?1")?
        .execute([intent_id])?;
    Ok(())
}

fn delete_timers(conn: &Connection, intent_id: &str) -> rusqlite::Result<()> {
    conn.prepare_cached("DELETE FROM timers WHERE intent_id = ?1")?
        .execute([intent_id])?;
    Ok(())
}

/// The earliest timer due at `now`, if any (ties in a fixed order, so firing is
/// repeatable). A row too damaged to read (edited outside signoff) is logged and
/// deleted, so it cannot stall the scheduler.
fn next_due_timer(conn: &Connection, now: Timestamp) -> rusqlite::Result<Option<DueTimer>> {
    loop {
        let found = conn
            .prepare_cached(&format!(
                "SELECT {TIMER_COLUMNS} FROM timers WHERE due_at <= ?1
                 ORDER BY due_at, intent_id, kind LIMIT 1"
            ))?
            .query_row([now.to_string()], |row| {
                let key: (String, String) = (row.get(0)?, row.get(1)?);
                Ok((key, rows::due_timer(row)))
            })
            .optional()?;
        match found {
            None => return Ok(None),
            Some((_, Ok(timer))) => return Ok(Some(timer)),
            Some(((intent_id, kind), Err(err))) => {
                tracing::error!(%intent_id, %kind, "dropping a timer row that cannot be read: {err}");
                conn.prepare_cached("DELETE FROM timers WHERE intent_id = ?1 AND kind = ?2")?
                    .execute(params![intent_id, kind])?;
            }
        }
    }
}

fn insert_outbox(
    conn: &Connection,
    intent_id: &str,
    notification: &Notification,
    now: Timestamp,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO outbox (intent_id, channel, recipient, target, message, next_attempt_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        intent_id,
        notification.channel.as_str(),
        notification.recipient,
        notification.target,
        to_json(&notification.message)?,
        now.to_string()
    ])?;
    Ok(())
}

fn apply_outbox_update(conn: &Connection, update: OutboxUpdate) -> rusqlite::Result<()> {
    match update {
        OutboxUpdate::Done { outbox_id } => {
            conn.prepare_cached("DELETE FROM outbox WHERE outbox_id = ?1")?
                .execute([outbox_id])?;
        }
        OutboxUpdate::Retry { outbox_id, at } => {
            conn.prepare_cached(
                "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ?2, lease_until = NULL
                 WHERE outbox_id = ?1",
            )?
            .execute(params![outbox_id, at.to_string()])?;
        }
    }
    Ok(())
}

/// Leases the outbox rows due at `now` that no other sender holds.
fn claim_outbox(
    conn: &Connection,
    now: Timestamp,
    lease_until: Timestamp,
    limit: usize,
) -> rusqlite::Result<Vec<OutboxItem>> {
    let items = {
        let mut statement = conn.prepare_cached(&format!(
            "SELECT {OUTBOX_COLUMNS} FROM outbox
             WHERE next_attempt_at <= ?1 AND (lease_until IS NULL OR lease_until <= ?1)
             ORDER BY next_attempt_at, outbox_id LIMIT ?2"
        ))?;
        let found = statement.query_map(params![now.to_string(), limit as i64], |row| {
            Ok((row.get::<_, i64>(0)?, rows::outbox_item(row)))
        })?;
        let mut items = Vec::new();
        for row in found {
            match row? {
                (_, Ok(item)) => items.push(item),
                // Edited outside signoff: logged and dropped rather than failing
                // every claim after it.
                (outbox_id, Err(err)) => {
                    tracing::error!(
                        outbox_id,
                        "dropping an outbox row that cannot be read: {err}"
                    );
                    apply_outbox_update(conn, OutboxUpdate::Done { outbox_id })?;
                }
            }
        }
        items
    };
    let mut lease =
        conn.prepare_cached("UPDATE outbox SET lease_until = ?2 WHERE outbox_id = ?1")?;
    for item in &items {
        lease.execute(params![item.outbox_id, lease_until.to_string()])?;
    }
    Ok(items)
}

/// The one timestamp a `SELECT MIN(...)` query returns, if any.
fn earliest(conn: &Connection, sql: &str) -> rusqlite::Result<Option<Timestamp>> {
    let text: Option<String> = conn.prepare_cached(sql)?.query_row([], |row| row.get(0))?;
    text.map(|text| Timestamp::parse(&text).map_err(|err| corrupt(format!("due time: {err}"))))
        .transpose()
}

fn insert_delivery(
    conn: &Connection,
    agent: &str,
    intent: &Intent,
    event_type: &str,
    at: Timestamp,
) -> rusqlite::Result<AgentDelivery> {
    let seq: i64 = conn
        .prepare_cached("SELECT COALESCE(MAX(seq), 0) + 1 FROM agent_deliveries WHERE agent = ?1")?
        .query_row([agent], |row| row.get(0))?;
    conn.prepare_cached(
        "INSERT INTO agent_deliveries (agent, seq, intent_id, event_type, at) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![agent, seq, intent.intent_id, event_type, at.to_string()])?;
    Ok(AgentDelivery {
        agent: agent.to_string(),
        seq: seq as u64,
        intent_id: intent.intent_id.clone(),
        event_type: event_type.to_string(),
        status: intent.status,
        at,
    })
}

impl Columns for Row<'_> {
    fn text(&self, index: usize) -> Result<Option<String>, Damage> {
        self.get(index).map_err(|err| err.to_string())
    }

    fn int(&self, index: usize) -> Result<i64, Damage> {
        self.get(index).map_err(|err| err.to_string())
    }
}

/// Decodes a row with one of the shared decoders in [`rows`]; damage becomes a
/// conversion error naming the column.
fn decoded<'row, T>(
    row: &Row<'row>,
    decode: impl Fn(&Row<'row>) -> Result<T, Damage>,
) -> rusqlite::Result<T> {
    decode(row).map_err(corrupt)
}

fn intent_from_row(row: &Row<'_>) -> rusqlite::Result<Intent> {
    decoded(row, rows::intent)
}

fn load_intent(conn: &Connection, intent_id: &str) -> rusqlite::Result<Option<Intent>> {
    conn.prepare_cached(&format!(
        "SELECT {INTENT_COLUMNS} FROM intents WHERE intent_id = ?1"
    ))?
    .query_row([intent_id], intent_from_row)
    .optional()
}

fn collect<T>(rows: impl Iterator<Item = rusqlite::Result<T>>) -> rusqlite::Result<Vec<T>> {
    rows.collect()
}

/// Reads the event log straight from the database file, read-only, for
/// `signoff audit`. It works while a server is running (WAL readers never block
/// the writer) and never changes the file.
pub struct AuditReader {
    conn: Connection,
}

impl AuditReader {
    pub fn open(path: &Path) -> Result<AuditReader> {
        if !path.exists() {
            return Err(Error::invalid(
                "no_database",
                format!("there is no database at {}", path.display()),
            ));
        }
        let conn = open_connection(path, true, Durability::Normal).map_err(|err| {
            Error::internal(format!("cannot open database {}: {err}", path.display()))
        })?;
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .map_err(storage_error)?;
        check_schema_version(&path.display().to_string(), version, MIGRATIONS.len())?;
        Ok(AuditReader { conn })
    }

    /// Calls `visit` with each matching event in commit order, streaming, so
    /// logs larger than memory can be verified and exported. A row too damaged to
    /// read stops the walk with [`AuditError::Damaged`], naming where.
    pub fn for_each(
        &self,
        filter: &AuditFilter,
        mut visit: impl FnMut(AuditRecord) -> Result<()>,
    ) -> std::result::Result<(), AuditError> {
        let mut statement = self
            .conn
            .prepare(&format!(
                "SELECT {EVENT_COLUMNS}, hash FROM events
                 WHERE (?1 IS NULL OR intent_id = ?1) AND (?2 IS NULL OR at >= ?2)
                 ORDER BY cursor"
            ))
            .map_err(storage_error)?;
        let since = filter.since.map(|at| at.to_string());
        let mut found = statement
            .query(params![filter.intent_id, since])
            .map_err(storage_error)?;
        while let Some(row) = found.next().map_err(storage_error)? {
            visit(audit::record(row)?)?;
        }
        Ok(())
    }
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn probe(&self) -> Result<()> {
        self.read(max_cursor).await.map(drop)
    }

    fn background_checks(&self) -> Vec<HealthCheck> {
        vec![writer_check(&self.jobs)]
    }

    async fn write_intent(
        &self,
        target: Target,
        claim: Option<IdempotencyClaim>,
        apply: ChangeFn,
    ) -> Result<WriteResult> {
        self.submit(move |writer| writer.apply_intent(target, claim, apply))
            .await
    }

    async fn intent(&self, intent_id: &str) -> Result<Option<Intent>> {
        self.read_now(|conn| load_intent(conn, intent_id))
    }

    async fn events(&self, intent_id: &str, since: u64, limit: usize) -> Result<Vec<Event>> {
        self.read_now(|conn| {
            let mut statement = conn.prepare_cached(&format!(
                "SELECT {EVENT_COLUMNS} FROM events WHERE intent_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3"
            ))?;
            let rows = statement.query_map(params![intent_id, since as i64, limit as i64], |row| decoded(row, rows::event))?;
            collect(rows)
        })
    }

    async fn waiting_tasks(&self, holdings: Option<Vec<String>>) -> Result<TaskSnapshot> {
        self.read(move |conn| {
            // One read transaction, so the tasks and the cursor describe the same moment.
            conn.execute_batch("BEGIN")?;
            let result = (|| {
                let tasks = match &holdings {
                    None => {
                        let mut statement = conn.prepare_cached(&format!(
                            "SELECT {INTENT_COLUMNS} FROM intents
                             WHERE status = 'WAITING' AND waiting_reason = 'WAITING_FOR_HUMAN'
                             ORDER BY created_at"
                        ))?;
                        collect(statement.query_map([], intent_from_row)?)?
                    }
                    Some(holdings) => {
                        let lowered: Vec<String> = holdings.iter().map(|h| h.to_lowercase()).collect();
                        let mut statement = conn.prepare_cached(&format!(
                            "SELECT {INTENT_COLUMNS} FROM intents
                             WHERE status = 'WAITING' AND waiting_reason = 'WAITING_FOR_HUMAN'
                               AND EXISTS (SELECT 1 FROM json_each(intents.assignees)
                                           WHERE lower(json_each.value) IN (SELECT value FROM json_each(?1)))
                             ORDER BY created_at"
                        ))?;
                        let wanted = serde_json::to_string(&lowered)
                            .map_err(|err| rusqlite::Error::ToSqlConversionFailure(Box::new(err)))?;
                        collect(statement.query_map([wanted], intent_from_row)?)?
                    }
                };
                Ok(TaskSnapshot {
                    tasks,
                    cursor: max_cursor(conn)?,
                })
            })();
            conn.execute_batch("COMMIT")?;
            result
        })
        .await
    }

    async fn latest_cursor(&self) -> Result<u64> {
        self.read_now(max_cursor)
    }

    async fn task_events_after(&self, after: u64, limit: usize) -> Result<Vec<StoredEvent>> {
        self.read(move |conn| {
            let mut statement = conn.prepare_cached(&format!(
                "SELECT {EVENT_COLUMNS}, task FROM events WHERE affects_tasks = 1 AND cursor > ?1
                 ORDER BY cursor LIMIT ?2"
            ))?;
            collect(
                statement.query_map(params![after as i64, limit as i64], |row| {
                    decoded(row, rows::stored_event)
                })?,
            )
        })
        .await
    }

    async fn agent_deliveries(
        &self,
        agent: &str,
        since: u64,
        limit: usize,
    ) -> Result<Vec<AgentDelivery>> {
        let agent = agent.to_string();
        self.read(move |conn| {
            let mut statement = conn.prepare_cached(
                "SELECT d.agent, d.seq, d.intent_id, d.event_type, i.status, d.at
                 FROM agent_deliveries d JOIN intents i ON i.intent_id = d.intent_id
                 WHERE d.agent = ?1 AND d.seq > ?2 ORDER BY d.seq LIMIT ?3",
            )?;
            let rows = statement.query_map(params![agent, since as i64, limit as i64], |row| {
                Ok(AgentDelivery {
                    agent: row.get(0)?,
                    seq: row.get::<_, i64>(1)? as u64,
                    intent_id: row.get(2)?,
                    event_type: row.get(3)?,
                    status: decoded(row, |row| rows::status(row, 4))?,
                    at: decoded(row, |row| rows::timestamp(row, 5, "at"))?,
                })
            })?;
            collect(rows)
        })
        .await
    }

    async fn ended_intents_replying_to(&self, owner: &str) -> Result<Vec<Intent>> {
        let owner = owner.to_string();
        self.read(move |conn| {
            let mut statement = conn.prepare_cached(&format!(
                "SELECT {INTENT_COLUMNS} FROM intents
                 WHERE reply_to = ?1 AND status IN ('COMPLETED', 'FAILED', 'CANCELED', 'TIMED_OUT')
                 ORDER BY last_cursor"
            ))?;
            collect(statement.query_map([owner], intent_from_row)?)
        })
        .await
    }

    async fn inbox_messages(&self, thread_id: &str) -> Result<Vec<InboxMessage>> {
        let thread_id = thread_id.to_string();
        self.read(move |conn| {
            let mut statement = conn.prepare_cached(
                "SELECT cursor, thread_id, author, message, at FROM inbox_messages
                 WHERE thread_id = ?1 ORDER BY cursor",
            )?;
            let rows = statement.query_map([thread_id], |row| {
                Ok(InboxMessage {
                    cursor: row.get::<_, i64>(0)? as u64,
                    thread_id: row.get(1)?,
                    author: row.get(2)?,
                    message: row.get(3)?,
                    at: decoded(row, |row| rows::timestamp(row, 4, "at"))?,
                })
            })?;
            collect(rows)
        })
        .await
    }

    async fn insert_key(&self, key: NewKey) -> Result<()> {
        self.maintenance(move |conn| {
            let record = &key.record;
            conn.execute(
                "INSERT INTO api_keys (key_id, key_hash, key_prefix, kind, identity, teams, label, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    record.key_id,
                    key.key_hash,
                    record.key_prefix,
                    record.principal.kind.as_str(),
                    record.principal.identity,
                    to_json(&record.principal.teams)?,
                    record.label,
                    record.created_at.to_string()
                ],
            )
            .map(|rows| rows as u64)
        })
        .await
        .map(|_| ())
    }

    async fn key_by_hash(&self, key_hash: &str) -> Result<Option<KeyRecord>> {
        self.read_now(|conn| {
            conn.prepare_cached(&format!(
                "SELECT {KEY_COLUMNS} FROM api_keys WHERE key_hash = ?1"
            ))?
            .query_row([key_hash], |row| decoded(row, rows::key))
            .optional()
        })
    }

    async fn keys(&self) -> Result<Vec<KeyRecord>> {
        self.read(|conn| {
            let mut statement = conn.prepare_cached(&format!(
                "SELECT {KEY_COLUMNS} FROM api_keys ORDER BY created_at, key_id"
            ))?;
            collect(statement.query_map([], |row| decoded(row, rows::key))?)
        })
        .await
    }

    async fn revoke_key(&self, key_id: &str, at: Timestamp) -> Result<bool> {
        let key_id = key_id.to_string();
        self.maintenance(move |conn| {
            conn.execute(
                "UPDATE api_keys SET revoked_at = ?2 WHERE key_id = ?1 AND revoked_at IS NULL",
                params![key_id, at.to_string()],
            )
            .map(|rows| rows as u64)
        })
        .await
        .map(|rows| rows > 0)
    }

    async fn prune_idempotency(&self, before: Timestamp) -> Result<u64> {
        self.maintenance(move |conn| {
            conn.execute(
                "DELETE FROM idempotency_keys WHERE created_at < ?1",
                [before.to_string()],
            )
            .map(|rows| rows as u64)
        })
        .await
    }

    async fn fire_due_timers(&self, now: Timestamp, limit: usize, fire: TimerFn) -> Result<usize> {
        self.submit(move |writer| writer.fire_due_timers(now, limit, &fire))
            .await
            .map(|fired| fired.due)
    }

    async fn next_timer_due(&self) -> Result<Option<Timestamp>> {
        self.read_now(|conn| earliest(conn, "SELECT MIN(due_at) FROM timers"))
    }

    async fn claim_outbox(
        &self,
        now: Timestamp,
        lease_seconds: i64,
        limit: usize,
    ) -> Result<Vec<OutboxItem>> {
        self.submit(move |writer| {
            claim_outbox(&writer.conn, now, now.plus_seconds(lease_seconds), limit)
                .map_err(storage_error)
        })
        .await
    }

    async fn next_outbox_due(&self) -> Result<Option<Timestamp>> {
        self.read_now(|conn| {
            earliest(
                conn,
                "SELECT MIN(MAX(next_attempt_at, COALESCE(lease_until, next_attempt_at))) FROM outbox",
            )
        })
    }

    async fn close(&self) {
        stop_writer(&self.jobs, &self.writer).await;
        if let Ok(mut readers) = self.readers.lock() {
            readers.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SystemClock;
    use crate::domain::Status;
    use crate::domain::event::CREATED;
    use crate::store::Change;

    #[derive(Default)]
    struct CountingSink(Mutex<usize>);

    impl CommitSink for CountingSink {
        fn committed(&self, batch: &[Arc<Committed>]) {
            *self.0.lock().unwrap() += batch.len();
        }
    }

    fn writer(dir: &Path, sink: Arc<CountingSink>) -> Writer {
        let mut conn = open_connection(&dir.join("test.db"), false, Durability::Normal).unwrap();
        migrate(&mut conn).unwrap();
        Writer {
            conn,
            clock: Arc::new(SystemClock),
            sink,
            chain: Chain::after(0, None),
        }
    }

    fn new_intent(id: &str) -> Intent {
        let now = SystemClock.now();
        Intent {
            intent_id: id.into(),
            intent_type: "intent.test.v1".into(),
            correlation_id: "c".into(),
            from_agent: "agent://t/a".into(),
            to_agent: Some("agent://t/b".into()),
            reply_to: None,
            payload: serde_json::json!({}),
            status: Status::Created,
            waiting_reason: None,
            created_at: now,
            updated_at: now,
            human_task: None,
            assignees: vec![],
            assigned_at: None,
            due_at: None,
            remind_count: 0,
            escalation_stage: 0,
            result: None,
            lifecycle: Default::default(),
            workflow: None,
            step_of: None,
            votes: vec![],
            last_seq: 0,
            last_cursor: 0,
        }
    }

    fn create(id: &str) -> (Box<dyn Job>, oneshot::Receiver<Result<WriteResult>>) {
        let apply: ChangeFn = Box::new(|change: &mut Change| {
            change.record(CREATED, "agent://t/a", serde_json::json!({}));
            Ok(Value::Null)
        });
        let target = Target::New(Box::new(new_intent(id)));
        queued(move |writer| writer.apply_intent(target, None, apply))
    }

    fn count(writer: &Writer, table: &str) -> i64 {
        writer
            .conn
            .query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |row| {
                row.get(0)
            })
            .unwrap()
    }

    #[test]
    fn a_transaction_lost_mid_batch_fails_the_batch_and_writing_continues() {
        let dir = tempfile::tempdir().unwrap();
        let sink = Arc::new(CountingSink::default());
        let mut writer = writer(dir.path(), sink.clone());
        let (first, first_answer) = create("i1");
        // What SQLite does on SQLITE_FULL or an I/O error: the transaction is gone.
        let (lost, lost_answer) = queued(|writer| -> Result<u64> {
            writer
                .conn
                .execute_batch("ROLLBACK")
                .map_err(storage_error)?;
            Err(storage_error(rusqlite::Error::InvalidQuery))
        });
        let (third, third_answer) = create("i3");
        writer.run_batch(vec![first, lost, third]);
        for answer in [
            first_answer.blocking_recv().unwrap().map(|_| ()),
            lost_answer.blocking_recv().unwrap().map(|_| ()),
            third_answer.blocking_recv().unwrap().map(|_| ()),
        ] {
            assert!(
                answer.is_err(),
                "nothing of the lost batch may be reported as written"
            );
        }
        assert_eq!(*sink.0.lock().unwrap(), 0, "nothing is published");
        assert_eq!(count(&writer, "intents"), 0);
        assert!(writer.conn.is_autocommit());

        // The next batch writes normally: no cursor collides with a half-kept one.
        let (again, again_answer) = create("i4");
        writer.run_batch(vec![again]);
        assert!(again_answer.blocking_recv().unwrap().is_ok());
        assert_eq!(count(&writer, "intents"), 1);
        assert_eq!(writer.chain.next_cursor, 2);
    }

    #[test]
    fn a_failing_job_does_not_undo_the_others() {
        let dir = tempfile::tempdir().unwrap();
        let sink = Arc::new(CountingSink::default());
        let mut writer = writer(dir.path(), sink.clone());
        let (first, first_answer) = create("i1");
        let (duplicate, duplicate_answer) = create("i1");
        let (third, third_answer) = create("i3");
        writer.run_batch(vec![first, duplicate, third]);
        assert!(first_answer.blocking_recv().unwrap().is_ok());
        assert!(
            duplicate_answer.blocking_recv().unwrap().is_err(),
            "the same id twice"
        );
        assert!(third_answer.blocking_recv().unwrap().is_ok());
        assert_eq!(count(&writer, "intents"), 2);
        assert_eq!(count(&writer, "events"), 2);
        assert_eq!(*sink.0.lock().unwrap(), 2);
        let cursors: Vec<i64> = writer
            .conn
            .prepare("SELECT cursor FROM events ORDER BY cursor")
            .unwrap()
            .query_map([], |row| row.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert_eq!(
            cursors,
            [1, 2],
            "the failed job's cursor is reused: the order stays gap-free"
        );
    }
}
