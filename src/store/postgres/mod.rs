//! The PostgreSQL store: several stateless signoff instances on one database.
//!
//! Writes go through one writer thread per instance ([`writer`]), which batches
//! queued writes into one transaction, like the SQLite writer. Each transaction
//! first locks the one `chain_head` row, so across the fleet commit positions are
//! handed out gap-free, commit in that order, and the audit hash chain stays one
//! chain. An intent is only ever changed under that lock, which is what makes a
//! decision exactly-once however many instances receive one.
//!
//! Live updates cross instances through `LISTEN/NOTIFY` ([`feed`]): every commit
//! notifies its cursor range, and each instance publishes ranges to its streams
//! strictly in commit order, reading other instances' commits back from the
//! database, which stays the source of truth.
//!
//! Reads, key management and the timer and outbox claims use a connection pool.

pub mod audit;
pub mod connection_url;
mod feed;
pub mod libpq;
pub mod tls;
mod writer;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Pool, QueueMode, RecyclingMethod, Runtime};
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::Row;
use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres::types::ToSql;
use tokio_postgres_rustls::MakeRustlsConnect;

use super::rows::{
    self, Columns, Damage, EVENT_COLUMNS, INTENT_COLUMNS, KEY_COLUMNS, OUTBOX_COLUMNS,
    TIMER_COLUMNS,
};
use super::{
    AgentDelivery, ChangeFn, CommitSink, DueTimer, Durability, HealthCheck, IdempotencyClaim,
    InboxMessage, KeyRecord, NewKey, OutboxItem, Store, Target, TaskSnapshot, TimerFn, WriteResult,
    WriterQueue, stop_writer, submit_to_writer, writer_check,
};
use crate::clock::Clock;
use crate::domain::{Error, Event, Intent, Result, StoredEvent, Timestamp};
use libpq::PasswordSource;
use writer::{Job, Writer};

const MIGRATIONS: &[&str] = &[include_str!("../migrations/postgres/0001_init.sql")];

/// Writes waiting beyond this are refused with 429 rather than queued without limit.
const QUEUE_CAPACITY: usize = 8192;

/// Settings for every connection signoff opens; see [`PgStore::open`].
const SESSION_OPTIONS: &str =
    "-c plan_cache_mode=force_generic_plan -c enable_seqscan=off -c jit=off";

/// The `application_name` of an instance's pooled sessions (requests, timers,
/// reads) when the URL gives none; its writer's and its listener's add their role.
const DEFAULT_SESSION_NAME: &str = "signoff";
const WRITER_ROLE: &str = "writer";
const LISTENER_ROLE: &str = "listener";

/// Serializes schema migrations when several instances start at once.
const MIGRATION_LOCK: i64 = 0x5167_6e6f_6666;

/// How an instance uses its PostgreSQL database (`[postgres]` in the config).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostgresOptions {
    /// Pooled connections for reads and claims; the writer and the listener each
    /// hold one more.
    pub pool_size: usize,
    /// How long to wait for a connection, new or from the pool.
    pub connect_timeout: Duration,
    /// How long a claimed timer stays with the instance that claimed it. If that
    /// instance dies before firing it, another fires it once the lease is over.
    pub timer_lease_seconds: i64,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        Self {
            pool_size: 16,
            connect_timeout: Duration::from_secs(10),
            timer_lease_seconds: 30,
        }
    }
}

pub struct PgStore {
    pool: Pool,
    jobs: WriterQueue<Job>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    feed: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Whether the feed listens for commits now.
    listening: Arc<AtomicBool>,
    /// This instance's name in timer leases and notifications.
    instance: String,
    /// Where commits and revocations are announced to the other instances.
    channel: String,
    timer_lease_seconds: i64,
}

pub(crate) fn storage_error(err: impl std::fmt::Display) -> Error {
    Error::internal(format!("storage error: {err}"))
}

/// A row that does not decode: `what` names it when known.
pub(crate) fn damaged(what: &str, damage: &str) -> Error {
    storage_error(format!(
        "{what} cannot be read ({damage}): it was changed outside signoff"
    ))
}

impl Columns for Row {
    fn text(&self, index: usize) -> std::result::Result<Option<String>, Damage> {
        self.try_get(index).map_err(|err| err.to_string())
    }

    fn int(&self, index: usize) -> std::result::Result<i64, Damage> {
        self.try_get(index).map_err(|err| err.to_string())
    }
}

/// Decodes every row with `decode`.
pub(crate) fn decode_all<T>(
    found: &[Row],
    decode: impl Fn(&Row) -> std::result::Result<T, Damage>,
) -> Result<Vec<T>> {
    found
        .iter()
        .map(|row| decode(row).map_err(|damage| damaged("a row", &damage)))
        .collect()
}

/// How every connection of the store is opened: the URL's settings, and TLS
/// as its `sslmode` asks.
#[derive(Clone)]
pub(crate) struct Connector {
    pub config: tokio_postgres::Config,
    pub tls: MakeRustlsConnect,
    password: PasswordSource,
    /// The revocation lists the server's certificate is checked against, to
    /// name them when a handshake fails on one.
    revocation_lists: Vec<tls::Revocations>,
}

/// The reason tokio-postgres gives when the server asks for a password and
/// the connection has none (`connect_raw.rs`).
const PASSWORD_MISSING: &str = "password missing";

/// A connection's driver, which must be polled for the connection to work.
pub(crate) type Connection = tokio_postgres::Connection<
    tokio_postgres::Socket,
    <MakeRustlsConnect as MakeTlsConnect<tokio_postgres::Socket>>::Stream,
>;

impl Connector {
    /// Reads a `postgres://` URL (with what libpq would take from the
    /// environment), the TLS roots it names and, when neither the URL nor
    /// `PGPASSWORD` gives a password, the password file, as libpq reads it
    /// before connecting. Its password is then sent to whichever of the URL's
    /// hosts asks for one.
    pub(crate) fn from_url(url: &str) -> Result<Connector> {
        let settings = connection_url::parse_url(url).map_err(|err| {
            Error::invalid(
                "database_url",
                format!("cannot use the PostgreSQL URL: {err}"),
            )
        })?;
        let tls = settings
            .tls
            .connector()
            .map_err(|err| Error::invalid("database_url", err))?;
        let revocation_lists = settings.tls.revocations;
        if !settings.from_environment.is_empty() {
            tracing::info!(
                "libpq's environment stands in for what the database URL leaves out: {}",
                settings.from_environment.join(", ")
            );
        }
        let mut config = settings.config;
        let password = libpq::fill_in_password(&mut config, settings.password_file);
        Ok(Connector {
            config,
            tls,
            password,
            revocation_lists,
        })
    }

    /// Opens a connection; its driver is the caller's to run. All of it (the
    /// socket, TLS and the login) must be done within [`Connector::connect_limit`]:
    /// tokio-postgres bounds only the socket's connect, so a server, or a
    /// middlebox before it, that takes the connection and then says nothing
    /// would hold the caller (the listener or the writer, reconnecting) for ever.
    pub(crate) async fn open(&self) -> Result<(tokio_postgres::Client, Connection)> {
        let connecting = self.config.connect(self.tls.clone());
        let connected = match self.connect_limit() {
            None => connecting.await,
            Some(limit) => match tokio::time::timeout(limit, connecting).await {
                Ok(connected) => connected,
                Err(_) => {
                    return Err(storage_error(format!(
                        "cannot connect to PostgreSQL: no answer within {limit:?}"
                    )));
                }
            },
        };
        connected.map_err(|err| storage_error(self.cannot_connect(&err)))
    }

    /// How long opening a connection may take: the connect timeout once for
    /// each host the URL names, in all. tokio-postgres tries the hosts (and
    /// each address a name resolves to) in turn within one call, so unlike
    /// libpq, whose limit is each address's own, one that takes the connection
    /// and then says nothing uses up the time of those after it. Bounding each
    /// attempt alone would mean making the sockets here and handing them to
    /// `connect_raw`, host by host, address by address.
    pub(crate) fn connect_limit(&self) -> Option<Duration> {
        let per_host = self.config.get_connect_timeout()?;
        let hosts = self
            .config
            .get_hosts()
            .len()
            .max(self.config.get_hostaddrs().len())
            .clamp(1, u32::MAX as usize) as u32;
        Some(per_host.saturating_mul(hosts))
    }

    /// Why a connection failed, with where its password came from when that
    /// is the reason. (With several hosts, tokio-postgres reports the last
    /// one's failure, so a password asked for by an earlier one may go unsaid.)
    fn cannot_connect(&self, err: &tokio_postgres::Error) -> String {
        let reasons = with_reasons(err);
        let refused = err.code() == Some(&tokio_postgres::error::SqlState::INVALID_PASSWORD);
        let about_the_password = if reasons.ends_with(PASSWORD_MISSING) {
            let where_from = match &self.password {
                PasswordSource::Unusable(reason) => format!("; and {reason}"),
                PasswordSource::NoFile(path) => format!(
                    ": not in the URL, nor in PGPASSWORD, and there is no password file {}",
                    path.display()
                ),
                PasswordSource::NoLine(path) => format!(
                    ": not in the URL, nor in PGPASSWORD, nor in the password file {}",
                    path.display()
                ),
                PasswordSource::NoHome => ": not in the URL, nor in PGPASSWORD (and HOME is \
                                            not set, so there is no ~/.pgpass)"
                    .to_string(),
                PasswordSource::Given | PasswordSource::File(_) => String::new(),
            };
            format!(" (the server asks for a password, and none is given{where_from})")
        } else if let (true, PasswordSource::File(path)) = (refused, &self.password) {
            format!(" (the password from the password file {})", path.display())
        } else if tls::failed_on_revocation(err) && !self.revocation_lists.is_empty() {
            let lists: Vec<String> = self
                .revocation_lists
                .iter()
                .map(tls::Revocations::describe)
                .collect();
            format!(" (revocation lists: {})", lists.join(", "))
        } else {
            String::new()
        };
        format!("cannot connect to PostgreSQL: {reasons}{about_the_password}")
    }
}

/// An error and the reasons it carries. tokio-postgres keeps the reason (a
/// refused certificate, a wrong password, an unknown URL parameter) in the
/// error's source, which `Display` leaves out.
pub(crate) fn with_reasons(err: &dyn std::error::Error) -> String {
    let mut message = err.to_string();
    let mut cause = err.source();
    while let Some(reason) = cause {
        // Some errors (deadpool's) print their source in their own message
        // and give it as their source too: said once is enough.
        let reason_text = reason.to_string();
        if !message.ends_with(&reason_text) {
            message.push_str(&format!(": {reason_text}"));
        }
        cause = reason.source();
    }
    message
}

/// TCP keepalives, the same on signoff's side of each connection and on the
/// server's side of the writer's: idle this long before the first probe, then
/// a probe this often, and the connection is given up after this many
/// unanswered (about half a minute in all).
pub(crate) const KEEPALIVE_IDLE_SECONDS: u64 = 15;
pub(crate) const KEEPALIVE_INTERVAL_SECONDS: u64 = 5;
pub(crate) const KEEPALIVE_PROBES: u32 = 3;

/// A pooled connection, or why none can be had, with its reasons.
pub(crate) async fn pooled(pool: &Pool) -> Result<deadpool_postgres::Object> {
    pool.get().await.map_err(|err| {
        storage_error(format!(
            "no PostgreSQL connection available: {}",
            with_reasons(&err)
        ))
    })
}

/// Connects as `url` says (TLS included) and runs `sql`, for tools that prepare
/// a database: the benchmark's and the tests' schemas.
pub async fn execute_batch(url: &str, sql: &str) -> Result<()> {
    let (client, connection) = Connector::from_url(url)?.open().await?;
    let driver = tokio::spawn(connection);
    let done = client.batch_execute(sql).await.map_err(storage_error);
    // Dropping the client ends the session; waiting for the driver lets it
    // say goodbye to the server rather than vanish with the caller's runtime.
    drop(client);
    let _ = driver.await;
    done
}

/// Opens a connection whose driver runs on its own task.
pub(crate) async fn connect(connector: &Connector) -> Result<tokio_postgres::Client> {
    let (client, connection) = connector.open().await?;
    tokio::spawn(async move {
        if let Err(err) = connection.await {
            tracing::warn!("PostgreSQL connection closed: {err}");
        }
    });
    Ok(client)
}

async fn migrate(client: &mut tokio_postgres::Client) -> Result<()> {
    let tx = client.transaction().await.map_err(storage_error)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(storage_error)?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS signoff_schema (version BIGINT NOT NULL)")
        .await
        .map_err(storage_error)?;
    let current = match tx
        .query_opt("SELECT version FROM signoff_schema", &[])
        .await
        .map_err(storage_error)?
    {
        Some(row) => row.get::<_, i64>(0),
        None => {
            tx.execute("INSERT INTO signoff_schema (version) VALUES (0)", &[])
                .await
                .map_err(storage_error)?;
            0
        }
    };
    let current = usize::try_from(current).unwrap_or(usize::MAX);
    if current > MIGRATIONS.len() {
        return Err(Error::internal(format!(
            "database schema version {current} is newer than this signoff ({}); upgrade signoff",
            MIGRATIONS.len()
        )));
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(current) {
        tx.batch_execute(sql)
            .await
            .map_err(|err| storage_error(format!("migration {} failed: {err}", index + 1)))?;
        tx.execute(
            "UPDATE signoff_schema SET version = $1",
            &[&((index + 1) as i64)],
        )
        .await
        .map_err(storage_error)?;
    }
    tx.commit().await.map_err(storage_error)
}

/// The notification channel for the schema signoff lives in, so deployments in
/// different schemas of one database never hear each other.
#[doc(hidden)]
pub fn channel_for(schema: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(schema.as_bytes());
    format!("signoff_{}", &hex::encode(digest)[..16])
}

impl PgStore {
    /// Connects to the database at `url`, applies migrations, starts listening for
    /// other instances' commits and starts the writer.
    pub async fn open(
        url: &str,
        options: &PostgresOptions,
        durability: Durability,
        clock: Arc<dyn Clock>,
        sink: Arc<dyn CommitSink>,
    ) -> Result<PgStore> {
        let mut connector = Connector::from_url(url)?;
        let config = &mut connector.config;
        // Every statement is planned once per connection and the plan cached:
        // planning each execution for its parameters cost a third of the
        // round-trip benchmark's throughput. A cached plan must not be one chosen
        // while the tables were still small (a new deployment), which scans
        // them whole once they have grown; every query signoff sends has an
        // index to follow, so sequential scans are ruled out where an index can
        // serve. Ruling them out inflates the estimate of a query no index serves
        // (it still scans), which would have PostgreSQL JIT-compile it at every
        // execution (100 ms each here), so JIT is off: no query here gains by it.
        let session_options = match config.get_options() {
            Some(given) => format!("{given} {SESSION_OPTIONS}"),
            None => SESSION_OPTIONS.to_string(),
        };
        // An `application_name` in the URL names the instance's sessions, so an
        // operator can tell the fleet's instances apart in `pg_stat_activity`.
        let session_name = config
            .get_application_name()
            .filter(|name| !name.is_empty())
            .unwrap_or(DEFAULT_SESSION_NAME)
            .to_string();
        config.application_name(&session_name);
        // Keepalives notice a connection whose peer vanished (a partition, a
        // paused machine) in about half a minute rather than the system's two hours.
        config
            .connect_timeout(options.connect_timeout)
            .options(&session_options)
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(KEEPALIVE_IDLE_SECONDS))
            .keepalives_interval(Duration::from_secs(KEEPALIVE_INTERVAL_SECONDS))
            .keepalives_retries(KEEPALIVE_PROBES);
        let mut client = connect(&connector).await?;
        migrate(&mut client).await?;
        let schema: Option<String> = client
            .query_one("SELECT current_schema()", &[])
            .await
            .map_err(storage_error)?
            .get(0);
        let schema = schema.ok_or_else(|| {
            Error::invalid(
                "database_url",
                "the connection's search_path names no schema that exists",
            )
        })?;
        let pool = Pool::builder(Manager::from_config(
            connector.config.clone(),
            connector.tls.clone(),
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        ))
        .max_size(options.pool_size)
        // The connection returned last is handed out next, so a load that needs
        // few connections keeps reusing the same few backends, whose memory is
        // still in the CPU's caches, instead of cycling through all of them.
        .queue_mode(QueueMode::Lifo)
        .wait_timeout(Some(options.connect_timeout))
        .create_timeout(connector.connect_limit())
        .runtime(Runtime::Tokio1)
        .build()
        .map_err(|err| storage_error(format!("cannot build the connection pool: {err}")))?;
        let instance = uuid::Uuid::new_v4().simple().to_string();
        let channel = channel_for(&schema);
        let stash = Arc::new(feed::Stash::default());
        let listening = Arc::new(AtomicBool::new(false));
        // The writer's and the listener's sessions also say what they are: they
        // are the ones an operator looks for (a writer waiting for the chain
        // head, a listener that fell behind).
        let for_role = |role: &str| {
            let mut named = connector.clone();
            named
                .config
                .application_name(format!("{session_name} {role}"));
            named
        };
        let feed = feed::start(feed::FeedSetup {
            connector: for_role(LISTENER_ROLE),
            pool: pool.clone(),
            channel: channel.clone(),
            instance: instance.clone(),
            sink: sink.clone(),
            stash: stash.clone(),
            clock: clock.clone(),
            listening: listening.clone(),
        })
        .await?;
        let (sender, receiver) = mpsc::channel(QUEUE_CAPACITY);
        let channel_name = channel.clone();
        drop(client);
        let writer = Writer::start(
            writer::WriterSetup {
                connector: for_role(WRITER_ROLE),
                durability,
                clock,
                sink,
                stash,
                channel,
                instance: instance.clone(),
            },
            receiver,
        )
        .await
        .inspect_err(|_| feed.abort())?;
        Ok(PgStore {
            pool,
            jobs: Mutex::new(Some(sender)),
            writer: Mutex::new(Some(writer)),
            feed: Mutex::new(Some(feed)),
            listening,
            instance,
            channel: channel_name,
            timer_lease_seconds: options.timer_lease_seconds,
        })
    }

    /// Queues a job for the writer and waits for its committed result.
    async fn submit<T>(&self, job: impl FnOnce(oneshot::Sender<Result<T>>) -> Job) -> Result<T> {
        let (reply, answer) = oneshot::channel();
        submit_to_writer(&self.jobs, job(reply), answer).await
    }

    async fn client(&self) -> Result<deadpool_postgres::Object> {
        pooled(&self.pool).await
    }

    async fn query(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>> {
        let client = self.client().await?;
        let statement = client.prepare_cached(sql).await.map_err(storage_error)?;
        client
            .query(&statement, params)
            .await
            .map_err(storage_error)
    }

    async fn execute(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64> {
        let client = self.client().await?;
        let statement = client.prepare_cached(sql).await.map_err(storage_error)?;
        client
            .execute(&statement, params)
            .await
            .map_err(storage_error)
    }

    /// The one timestamp a `SELECT MIN(...)` query returns, if any.
    async fn earliest(&self, sql: &str) -> Result<Option<Timestamp>> {
        let found = self.query(sql, &[]).await?;
        decode_all(&found, |row| rows::optional_timestamp(row, 0, "due time"))
            .map(|mut times| times.pop().flatten())
    }
}

/// Intent rows waiting for a human, oldest first; `$1`, when given, is the list of
/// lower-cased assignee entries the caller holds.
const WAITING_TASKS: &str = "WHERE status = 'WAITING' AND waiting_reason = 'WAITING_FOR_HUMAN'
       AND ($1::text[] IS NULL OR EXISTS (
           SELECT 1 FROM jsonb_array_elements_text(assignees::jsonb) AS entry
           WHERE lower(entry) = ANY($1)))
     ORDER BY created_at";

#[async_trait]
impl Store for PgStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    async fn probe(&self) -> Result<()> {
        self.latest_cursor().await.map(drop)
    }

    fn background_checks(&self) -> Vec<HealthCheck> {
        let following = self
            .feed
            .lock()
            .is_ok_and(|feed| feed.as_ref().is_some_and(|task| !task.is_finished()));
        let listening = following && self.listening.load(Ordering::Relaxed);
        vec![
            writer_check(&self.jobs),
            HealthCheck {
                name: "live_feed",
                failure: (!listening).then(|| {
                    "not listening for the fleet's commits, so this instance's streams fall \
                     behind until it listens again"
                        .to_string()
                }),
            },
        ]
    }

    async fn write_intent(
        &self,
        target: Target,
        claim: Option<IdempotencyClaim>,
        apply: ChangeFn,
    ) -> Result<WriteResult> {
        self.submit(|reply| Job::Write {
            target,
            claim,
            apply,
            reply,
        })
        .await
    }

    async fn intent(&self, intent_id: &str) -> Result<Option<Intent>> {
        let found = self
            .query(
                &format!("SELECT {INTENT_COLUMNS} FROM intents WHERE intent_id = $1"),
                &[&intent_id],
            )
            .await?;
        decode_all(&found, rows::intent).map(|mut intents| intents.pop())
    }

    async fn events(&self, intent_id: &str, since: u64, limit: usize) -> Result<Vec<Event>> {
        let found = self
            .query(
                &format!(
                    "SELECT {EVENT_COLUMNS} FROM events WHERE intent_id = $1 AND seq > $2
                     ORDER BY seq LIMIT $3"
                ),
                &[&intent_id, &(since as i64), &(limit as i64)],
            )
            .await?;
        decode_all(&found, rows::event)
    }

    async fn waiting_tasks(&self, holdings: Option<Vec<String>>) -> Result<TaskSnapshot> {
        let holdings: Option<Vec<String>> =
            holdings.map(|held| held.iter().map(|entry| entry.to_lowercase()).collect());
        let mut client = self.client().await?;
        // One snapshot, so the tasks and the cursor describe the same moment.
        let tx = client
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await
            .map_err(storage_error)?;
        let statement = tx
            .prepare_cached(&format!(
                "SELECT {INTENT_COLUMNS} FROM intents {WAITING_TASKS}"
            ))
            .await
            .map_err(storage_error)?;
        let found = tx
            .query(&statement, &[&holdings])
            .await
            .map_err(storage_error)?;
        let head = tx
            .query_one("SELECT cursor FROM chain_head WHERE id = 1", &[])
            .await
            .map_err(storage_error)?;
        tx.commit().await.map_err(storage_error)?;
        Ok(TaskSnapshot {
            tasks: decode_all(&found, rows::intent)?,
            cursor: rows::unsigned(&head, 0, "cursor")
                .map_err(|damage| damaged("a row", &damage))?,
        })
    }

    async fn latest_cursor(&self) -> Result<u64> {
        let found = self
            .query("SELECT cursor FROM chain_head WHERE id = 1", &[])
            .await?;
        decode_all(&found, |row| rows::unsigned(row, 0, "cursor"))
            .map(|cursors| cursors.first().copied().unwrap_or(0))
    }

    async fn task_events_after(&self, after: u64, limit: usize) -> Result<Vec<StoredEvent>> {
        let found = self
            .query(
                &format!(
                    "SELECT {EVENT_COLUMNS}, task FROM events WHERE affects_tasks AND cursor > $1
                     ORDER BY cursor LIMIT $2"
                ),
                &[&(after as i64), &(limit as i64)],
            )
            .await?;
        decode_all(&found, rows::stored_event)
    }

    async fn agent_deliveries(
        &self,
        agent: &str,
        since: u64,
        limit: usize,
    ) -> Result<Vec<AgentDelivery>> {
        let found = self
            .query(
                "SELECT d.agent, d.seq, d.intent_id, d.event_type, i.status, d.at
                 FROM agent_deliveries d JOIN intents i ON i.intent_id = d.intent_id
                 WHERE d.agent = $1 AND d.seq > $2 ORDER BY d.seq LIMIT $3",
                &[&agent, &(since as i64), &(limit as i64)],
            )
            .await?;
        decode_all(&found, feed::delivery)
    }

    async fn ended_intents_replying_to(&self, owner: &str) -> Result<Vec<Intent>> {
        let found = self
            .query(
                &format!(
                    "SELECT {INTENT_COLUMNS} FROM intents
                     WHERE reply_to = $1 AND status IN ('COMPLETED', 'FAILED', 'CANCELED', 'TIMED_OUT')
                     ORDER BY last_cursor"
                ),
                &[&owner],
            )
            .await?;
        decode_all(&found, rows::intent)
    }

    async fn inbox_messages(&self, thread_id: &str) -> Result<Vec<InboxMessage>> {
        let found = self
            .query(
                "SELECT cursor, thread_id, author, message, at FROM inbox_messages
                 WHERE thread_id = $1 ORDER BY cursor",
                &[&thread_id],
            )
            .await?;
        decode_all(&found, |row| {
            Ok(InboxMessage {
                cursor: rows::unsigned(row, 0, "cursor")?,
                thread_id: rows::text(row, 1, "thread_id")?,
                author: rows::text(row, 2, "author")?,
                message: rows::text(row, 3, "message")?,
                at: rows::timestamp(row, 4, "at")?,
            })
        })
    }

    async fn insert_key(&self, key: NewKey) -> Result<()> {
        let record = &key.record;
        let teams = serde_json::to_string(&record.principal.teams).map_err(storage_error)?;
        self.execute(
            "INSERT INTO api_keys (key_id, key_hash, key_prefix, kind, identity, teams, label, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            &[
                &record.key_id,
                &key.key_hash,
                &record.key_prefix,
                &record.principal.kind.as_str(),
                &record.principal.identity,
                &teams,
                &record.label,
                &record.created_at.to_string(),
            ],
        )
        .await
        .map(|_| ())
    }

    async fn key_by_hash(&self, key_hash: &str) -> Result<Option<KeyRecord>> {
        let found = self
            .query(
                &format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE key_hash = $1"),
                &[&key_hash],
            )
            .await?;
        decode_all(&found, rows::key).map(|mut keys| keys.pop())
    }

    async fn keys(&self) -> Result<Vec<KeyRecord>> {
        let found = self
            .query(
                &format!("SELECT {KEY_COLUMNS} FROM api_keys ORDER BY created_at, key_id"),
                &[],
            )
            .await?;
        decode_all(&found, rows::key)
    }

    /// Revokes the key and tells the other instances, so their cached lookups
    /// and open streams drop it at once.
    async fn revoke_key(&self, key_id: &str, at: Timestamp) -> Result<bool> {
        let revoked = self
            .query(
                "WITH revoked AS (
                     UPDATE api_keys SET revoked_at = $2 WHERE key_id = $1 AND revoked_at IS NULL
                     RETURNING key_id)
                 SELECT pg_notify($3, $4) FROM revoked",
                &[&key_id, &at.to_string(), &self.channel, &feed::KEYS_REVOKED],
            )
            .await?;
        Ok(!revoked.is_empty())
    }

    async fn prune_idempotency(&self, before: Timestamp) -> Result<u64> {
        self.execute(
            "DELETE FROM idempotency_keys WHERE created_at < $1",
            &[&before.to_string()],
        )
        .await
    }

    /// Claims up to `limit` due timers for this instance with a lease (rows other
    /// instances hold are skipped, not waited for), then fires them on the writer.
    async fn fire_due_timers(&self, now: Timestamp, limit: usize, fire: TimerFn) -> Result<usize> {
        let lease_until = now.plus_seconds(self.timer_lease_seconds);
        let claimed = self
            .query(
                &format!(
                    "UPDATE timers SET lease_owner = $2, lease_until = $3
                     WHERE (intent_id, kind) IN (
                         SELECT intent_id, kind FROM timers
                         WHERE due_at <= $1 AND (lease_until IS NULL OR lease_until <= $1)
                         ORDER BY due_at, intent_id, kind LIMIT $4
                         FOR UPDATE SKIP LOCKED)
                     RETURNING {TIMER_COLUMNS}"
                ),
                &[
                    &now.to_string(),
                    &self.instance,
                    &lease_until.to_string(),
                    &(limit as i64),
                ],
            )
            .await?;
        let mut timers: Vec<DueTimer> = Vec::with_capacity(claimed.len());
        for row in &claimed {
            match rows::due_timer(row) {
                Ok(timer) => timers.push(timer),
                Err(damage) => {
                    let (intent_id, kind): (String, String) = (row.get(0), row.get(1));
                    tracing::error!(%intent_id, %kind, "dropping a timer row that cannot be read: {damage}");
                    // Failing to drop it must not hold back the good timers
                    // claimed with it; its lease runs out and it is tried again.
                    if let Err(err) = self
                        .execute(
                            "DELETE FROM timers WHERE intent_id = $1 AND kind = $2",
                            &[&intent_id, &kind],
                        )
                        .await
                    {
                        tracing::warn!(%intent_id, %kind, "could not drop the unreadable timer: {err}");
                    }
                }
            }
        }
        let unreadable = claimed.len() - timers.len();
        if timers.is_empty() {
            return Ok(unreadable);
        }
        // The claimed timers, and any already-due ones their firing scheduled.
        let fired = self
            .submit(|reply| Job::Fire {
                now,
                timers,
                fire,
                reply,
            })
            .await?;
        Ok(unreadable + fired)
    }

    /// When the next timer is due, or when a lease on one runs out (so a timer
    /// claimed by an instance that died is fired by another).
    async fn next_timer_due(&self) -> Result<Option<Timestamp>> {
        self.earliest("SELECT MIN(GREATEST(due_at, COALESCE(lease_until, due_at))) FROM timers")
            .await
    }

    async fn claim_outbox(
        &self,
        now: Timestamp,
        lease_seconds: i64,
        limit: usize,
    ) -> Result<Vec<OutboxItem>> {
        let claimed = self
            .query(
                &format!(
                    "UPDATE outbox SET lease_until = $2, lease_owner = $4
                     WHERE outbox_id IN (
                         SELECT outbox_id FROM outbox
                         WHERE next_attempt_at <= $1 AND (lease_until IS NULL OR lease_until <= $1)
                         ORDER BY next_attempt_at, outbox_id LIMIT $3
                         FOR UPDATE SKIP LOCKED)
                     RETURNING {OUTBOX_COLUMNS}"
                ),
                &[
                    &now.to_string(),
                    &now.plus_seconds(lease_seconds).to_string(),
                    &(limit as i64),
                    &self.instance,
                ],
            )
            .await?;
        let mut items = Vec::with_capacity(claimed.len());
        for row in &claimed {
            match rows::outbox_item(row) {
                Ok(item) => items.push(item),
                // Edited outside signoff: logged and dropped rather than failing
                // every claim after it.
                Err(damage) => {
                    let outbox_id: i64 = row.get(0);
                    tracing::error!(
                        outbox_id,
                        "dropping an outbox row that cannot be read: {damage}"
                    );
                    // As for timers: failing to drop it must not hold back the
                    // good rows claimed with it (their leases would have to run out).
                    if let Err(err) = self
                        .execute("DELETE FROM outbox WHERE outbox_id = $1", &[&outbox_id])
                        .await
                    {
                        tracing::warn!(
                            outbox_id,
                            "could not drop the unreadable outbox row: {err}"
                        );
                    }
                }
            }
        }
        items.sort_by_key(|item| item.outbox_id);
        Ok(items)
    }

    async fn next_outbox_due(&self) -> Result<Option<Timestamp>> {
        self.earliest(
            "SELECT MIN(GREATEST(next_attempt_at, COALESCE(lease_until, next_attempt_at))) FROM outbox",
        )
        .await
    }

    async fn close(&self) {
        stop_writer(&self.jobs, &self.writer).await;
        let feed = self.feed.lock().ok().and_then(|mut feed| feed.take());
        if let Some(feed) = feed {
            feed.abort();
        }
        self.pool.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opening_a_connection_may_take_the_connect_timeout_once_for_each_host() {
        let limit = |url: &str| Connector::from_url(url).unwrap().connect_limit();
        assert_eq!(
            limit("postgres://db.internal/x?connect_timeout=2"),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            limit("postgres://a,b,c/x?connect_timeout=2"),
            Some(Duration::from_secs(6))
        );
        assert_eq!(
            limit("postgres:///x?hostaddr=10.0.0.1,10.0.0.2&connect_timeout=5"),
            Some(Duration::from_secs(10)),
            "addresses without names count too"
        );
        assert_eq!(
            limit("postgres://db.internal/x"),
            None,
            "as libpq: no limit"
        );
    }

    #[test]
    fn each_schema_has_its_own_channel() {
        let public = channel_for("public");
        assert_ne!(public, channel_for("tenant_b"));
        assert_eq!(public, channel_for("public"), "stable across instances");
        assert!(public.len() < 63, "fits a PostgreSQL identifier");
        assert!(
            public
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
        );
    }
}
