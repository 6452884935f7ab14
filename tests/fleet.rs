//! A fleet of `signoff serve` processes sharing one PostgreSQL schema.
//!
//! The PostgreSQL backend promises that several stateless instances behave like
//! one server: every write of every instance takes the one `chain_head` row
//! lock, so decisions are exactly-once and commit positions are gap-free
//! fleet-wide; `LISTEN/NOTIFY` carries each commit to every instance's streams in
//! commit order; lifecycle timers are claimed with a lease, so a timer fires once
//! even when the instance that claimed it dies. These tests hold the fleet to
//! that promise from the outside, over HTTP, with real processes:
//!
//! - `a_thousand_tasks_across_three_instances`: agents wait on one instance while
//!   reviewers decide on another; no stream loses or repeats anything, and every
//!   history is gap-free.
//! - `timers_fire_exactly_once_even_when_an_instance_is_killed`: an instance is
//!   `kill -9`ed while it holds the leases of 300 due timers and is about to fire
//!   them; the survivors fire each exactly once when the leases run out.
//! - `a_claimer_held_up_past_its_lease_does_not_fire_again`: the case a kill
//!   cannot produce: the claimer lives on, its lease runs out, another instance
//!   fires the timers, and only then does the first one get to its firing.
//! - `a_hundred_cross_instance_races_have_one_winner_each`: two reviewers decide
//!   the same task at the same moment through different instances.
//! - `a_stream_resumes_on_another_instance_without_a_gap`: task, intent and agent
//!   streams resumed on another instance continue exactly where they left off.
//! - `live_updates_go_on_past_a_damaged_row_and_a_rewound_database`: an instance
//!   skips a commit it cannot read and notices a database restored from a backup.
//! - `a_fleet_reaches_its_database_over_the_unix_socket`: a fleet on the
//!   database's machine runs over its Unix socket.
//! - `the_writer_and_the_listener_are_named_in_pg_stat_activity`: an operator
//!   can find an instance's writer and listener by name.
//! - `reads_one_after_another_keep_to_the_connection_used_last`: a light load
//!   reuses one warm pooled connection rather than cycling through the pool.
//!
//! Where they can, the tests judge streams against the database itself (read
//! directly from the test's schema: event cursors, agent deliveries, timer
//! leases) rather than against what the test meant to happen, so an item the
//! fleet made up fails a test as surely as one it lost. The timer tests also use
//! the database as a lever: holding the chain-head lock holds every writer of
//! the fleet, and together with SIGSTOP/SIGCONT that puts a claim, a kill and a
//! lease expiry in a chosen order instead of leaving them to chance.
//!
//! Every test needs PostgreSQL (`SIGNOFF_TEST_PG_URL`, see
//! tests/common/backend.rs) and says SKIPPED without it; each gets a schema of its
//! own. The tests of this file take turns ([`one_fleet_at_a_time`]): each starts
//! three servers, and on a small machine two fleets at once would turn the
//! timing-sensitive steps into a test of the CPU.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::ServeProcess;
use common::backend::Schema;
use futures::StreamExt;
use futures::stream::BoxStream;
use serde_json::{Map, Value, json};
use signoff::client::{Bounded, Client, ClientError, ClientResult, Delivery, TaskStreamMessage};
use signoff::domain::{Event, Intent, PrincipalKind, TaskStreamItem, Timestamp};
use tempfile::TempDir;
use tokio::sync::{MutexGuard, oneshot};

/// Flags every instance gets. `normal` durability (no synchronous commit) keeps
/// the suite fast and has no bearing on what is tested.
const SERVE_FLAGS: &[&str] = &["--durability", "normal"];
/// Bounds every wait for something the fleet should do promptly.
const PATIENCE: Duration = Duration::from_secs(30);
/// After the last expected stream item, how long to go on listening for an
/// item that should not come (a repeat) before judging a stream.
const GRACE: Duration = Duration::from_millis(500);
/// The idle window asked for on bounded streams (the most the server allows).
/// The tests never idle that long, and it is longer than [`PATIENCE`], so an
/// event that misses its live delivery fails the wait for it instead of being
/// found by the follower's resume after the idle window.
const WAIT_SECONDS: u64 = 60;

const AGENT: &str = "agent://fleet/sender";
const ALICE: &str = "alice@example.com";
const BOB: &str = "bob@example.com";
const REMINDER: &str = "intent.reminder";
const COMPLETED: &str = "intent.completed";
/// What a human task's history holds once a reviewer decided it, and nothing
/// else happened to it: created, submitted, assigned (now waiting for a human),
/// decided.
const DECIDED_TASK_HISTORY: &[&str] = &[
    "intent.created",
    "intent.submitted",
    "intent.human_task_assigned",
    COMPLETED,
];

// ---------------------------------------------------------------------------
// The fleet
// ---------------------------------------------------------------------------

/// The tests of this file take turns; see the module docs.
async fn one_fleet_at_a_time() -> MutexGuard<'static, ()> {
    static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    TURN.lock().await
}

/// This test's turn and a fleet of `size` instances started with
/// `extra_flags`, or `None` (after saying the test was skipped) without
/// PostgreSQL.
async fn fleet_or_skip(
    test: &str,
    size: usize,
    extra_flags: &[&str],
) -> Option<(MutexGuard<'static, ()>, Fleet)> {
    let url = common::backend::postgres_url_or_skip(&format!("fleet::{test}"))?;
    let turn = one_fleet_at_a_time().await;
    Some((turn, Fleet::start(&url, size, extra_flags).await))
}

/// `signoff serve` processes on one fresh schema, each with a home of its own.
/// Fields drop in order: the processes die before their homes are removed and
/// before the schema is dropped, which would otherwise wait on their locks.
struct Fleet {
    instances: Vec<ServeProcess>,
    _homes: Vec<TempDir>,
    /// The admin key instance 0 created and wrote to its home's client.toml.
    admin_key: String,
    schema: Schema,
}

impl Fleet {
    /// Starts `size` instances, one after the other: the first migrates the
    /// schema and creates the admin key, the others find both there.
    async fn start(base_url: &str, size: usize, extra_flags: &[&str]) -> Fleet {
        let schema = Schema::create(base_url).await;
        let mut flags = vec!["--db".to_string(), schema.url()];
        flags.extend(SERVE_FLAGS.iter().chain(extra_flags).map(|f| f.to_string()));
        let mut homes = Vec::new();
        let mut instances = Vec::new();
        for _ in 0..size {
            let home = tempfile::tempdir().expect("a home for the instance");
            let (path, flags) = (home.path().to_path_buf(), flags.clone());
            // Starting waits (blocking) until the instance answers /health.
            let instance = tokio::task::spawn_blocking(move || {
                let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
                ServeProcess::start(&path, &flags)
            })
            .await
            .expect("signoff serve started");
            homes.push(home);
            instances.push(instance);
        }
        let admin_key = instances[0].admin_key();
        Fleet {
            instances,
            _homes: homes,
            admin_key,
            schema,
        }
    }

    fn client(&self, instance: usize, key: &str) -> Client {
        Client::new(&self.instances[instance].url, key).expect("client")
    }

    /// The same key on every instance, indexed by instance.
    fn clients(&self, key: &str) -> Vec<Client> {
        (0..self.instances.len())
            .map(|instance| self.client(instance, key))
            .collect()
    }

    /// A new key for `identity`, as a client on every instance. It is made
    /// through instance 0 with its admin key; keys live in the shared database,
    /// so it works on every instance.
    async fn member(&self, kind: PrincipalKind, identity: &str) -> Vec<Client> {
        let created = self
            .client(0, &self.admin_key)
            .create_key(kind, identity, &[], None)
            .await
            .unwrap_or_else(|err| panic!("creating a key for {identity}: {err}"));
        self.clients(&created.key)
    }

    async fn database(&self) -> Database {
        Database::connect(&self.schema.url()).await
    }

    /// Sends `signal` (`STOP`, `CONT`) to one instance, by its process id.
    fn signal(&self, instance: usize, signal: &str) {
        let status = std::process::Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.instances[instance].pid().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} instance {instance}");
    }
}

/// A direct connection to the fleet's schema: the truth streams are compared
/// with, and the lever that holds every writer of the fleet still.
struct Database {
    client: tokio_postgres::Client,
}

/// An event as the `events` table has it: (cursor, intent, event type).
type CommittedEvent = (u64, String, String);

impl Database {
    async fn connect(url: &str) -> Database {
        let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .expect("connect to the test schema");
        tokio::spawn(connection);
        Database { client }
    }

    async fn count(&self, sql: &str) -> i64 {
        self.client
            .query_one(sql, &[])
            .await
            .unwrap_or_else(|err| panic!("{sql}: {err}"))
            .get(0)
    }

    /// Events that changed task lists, with cursor in `after+1..=until`, in
    /// commit order.
    async fn task_events(&self, after: u64, until: u64) -> Vec<CommittedEvent> {
        let rows = self
            .client
            .query(
                "SELECT cursor, intent_id, event_type FROM events
                 WHERE affects_tasks AND cursor > $1 AND cursor <= $2 ORDER BY cursor",
                &[&(after as i64), &(until as i64)],
            )
            .await
            .expect("read task events");
        rows.iter()
            .map(|row| (row.get::<_, i64>(0) as u64, row.get(1), row.get(2)))
            .collect()
    }

    /// The cursor of the newest event that changed task lists.
    async fn last_task_event(&self) -> u64 {
        self.count("SELECT COALESCE(MAX(cursor), 0) FROM events WHERE affects_tasks")
            .await as u64
    }

    /// An agent's deliveries as (seq, intent, event type), in seq order.
    async fn deliveries(&self, agent: &str) -> Vec<(u64, String, String)> {
        let rows = self
            .client
            .query(
                "SELECT seq, intent_id, event_type FROM agent_deliveries
                 WHERE agent = $1 ORDER BY seq",
                &[&agent],
            )
            .await
            .expect("read deliveries");
        rows.iter()
            .map(|row| (row.get::<_, i64>(0) as u64, row.get(1), row.get(2)))
            .collect()
    }

    /// Takes the chain-head row lock that every write of every instance takes
    /// first, and keeps it until [`Database::release_writes`]: the whole fleet's
    /// writes queue up behind it.
    async fn hold_writes(&self) {
        self.client
            .batch_execute("BEGIN; SELECT cursor FROM chain_head WHERE id = 1 FOR UPDATE")
            .await
            .expect("lock the chain head");
    }

    async fn release_writes(&self) {
        self.client
            .batch_execute("ROLLBACK")
            .await
            .expect("release the chain head");
    }
}

/// `url` with an `application_name` of its own, and that name: sessions of the
/// fleets before may not have closed yet, and must not be counted.
fn with_own_name(url: &str, prefix: &str) -> (String, String) {
    let name = format!("{prefix}-{}", uuid::Uuid::new_v4().simple());
    let url = signoff::bench::with_parameter(url, &format!("application_name={name}"));
    (name, url)
}

/// A query counting the sessions whose `application_name` is `LIKE pattern`,
/// but for the asking one (the test's own bears the name of the URL it used).
fn sessions_named(pattern: &str) -> String {
    format!(
        "SELECT count(*) FROM pg_stat_activity
         WHERE application_name LIKE '{pattern}' AND pid <> pg_backend_pid()"
    )
}

// ---------------------------------------------------------------------------
// Following streams
// ---------------------------------------------------------------------------

/// Polls `probe` until it returns something, or fails after `patience`.
async fn eventually<T>(
    what: &str,
    patience: Duration,
    mut probe: impl AsyncFnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + patience;
    loop {
        if let Some(found) = probe().await {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {patience:?} waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

type EventConnection = BoxStream<'static, ClientResult<Bounded<Event>>>;

/// An intent's event stream on one instance, followed the way the SDK's
/// `wait_for` follows it: after the server's idle timeout it reconnects and
/// resumes after the last event received. Unlike the client's `watch`, it keeps
/// every event exactly as the server sent it (`watch` drops repeats, which
/// would hide a server sending one twice).
struct IntentFollower {
    client: Client,
    intent_id: String,
    since: u64,
    received: Vec<Event>,
    connection: EventConnection,
}

impl IntentFollower {
    /// Connects, resuming after `since`. It returns once the server has
    /// answered, which it does only after subscribing the stream to the
    /// intent's live events: whatever commits from now on must reach it.
    async fn open(client: &Client, intent_id: &str, since: u64) -> IntentFollower {
        IntentFollower {
            connection: Self::connect(client, intent_id, since).await,
            client: client.clone(),
            intent_id: intent_id.to_string(),
            since,
            received: Vec::new(),
        }
    }

    async fn connect(client: &Client, intent_id: &str, since: u64) -> EventConnection {
        client
            .intent_stream(intent_id, since, WAIT_SECONDS)
            .await
            .unwrap_or_else(|err| panic!("opening the stream of {intent_id}: {err}"))
            .boxed()
    }

    /// The seq of the last event received.
    fn position(&self) -> u64 {
        self.received.last().map_or(self.since, |event| event.seq)
    }

    /// The next event; `None` once the stream is over: the server closes it with
    /// a `stream.timeout` frame right after the terminal event.
    async fn next(&mut self) -> Option<Event> {
        loop {
            match self.connection.next().await? {
                Ok(Bounded::Item(event)) => {
                    self.received.push(event.clone());
                    return Some(event);
                }
                Ok(Bounded::Timeout { .. })
                    if self.received.last().is_some_and(Event::is_terminal) =>
                {
                    return None;
                }
                // The idle window closed it: resume after the last event, as wait_for does.
                Ok(Bounded::Timeout { .. }) => {
                    self.connection =
                        Self::connect(&self.client, &self.intent_id, self.position()).await;
                }
                Err(err) => panic!("the stream of {} broke: {err}", self.intent_id),
            }
        }
    }

    /// Reads `count` more events.
    async fn read(&mut self, count: usize) {
        let wanted = self.received.len() + count;
        tokio::time::timeout(PATIENCE, async {
            while self.received.len() < wanted {
                self.next().await.expect("the stream stays open");
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{count} events of {} did not arrive", self.intent_id));
    }

    /// Reads up to the terminal event, then on until the server closes the
    /// stream (which it does right after a terminal event), so that anything
    /// sent after the terminal event is caught too. Returns every event
    /// received, in order of arrival.
    async fn until_closed(mut self) -> Vec<Event> {
        let id = self.intent_id.clone();
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            match tokio::time::timeout_at(deadline, self.next()).await {
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(_) => panic!(
                    "the stream of {id} did not end within {PATIENCE:?}; it sent {:#?}",
                    self.received
                ),
            }
        }
        assert!(
            self.received.last().is_some_and(Event::is_terminal),
            "the stream of {id} ended without its terminal event: {:#?}",
            self.received
        );
        self.received
    }
}

/// A reviewer's task stream, read on a task of its own from the moment it
/// connected until it is dropped.
struct TaskWatcher {
    label: String,
    messages: Arc<Mutex<Vec<TaskStreamMessage>>>,
    reader: tokio::task::JoinHandle<()>,
}

impl TaskWatcher {
    /// Opens the stream (resuming after `resume_from`, if given) and returns once
    /// it is connected, and so subscribed to everything that commits next.
    async fn open(label: impl Into<String>, client: &Client, resume_from: Option<u64>) -> Self {
        let label = label.into();
        let stream = client.task_stream(resume_from).expect("task stream");
        let messages = Arc::new(Mutex::new(Vec::new()));
        let (connected, on_connect) = oneshot::channel();
        let reader = {
            let messages = messages.clone();
            tokio::spawn(async move {
                futures::pin_mut!(stream);
                let mut connected = Some(connected);
                while let Some(message) = stream.next().await {
                    if message == TaskStreamMessage::Connected
                        && let Some(connected) = connected.take()
                    {
                        let _ = connected.send(());
                    }
                    messages.lock().unwrap().push(message);
                }
            })
        };
        tokio::time::timeout(PATIENCE, on_connect)
            .await
            .unwrap_or_else(|_| panic!("{label}: the task stream did not connect"))
            .expect("the reader runs");
        TaskWatcher {
            label,
            messages,
            reader,
        }
    }

    fn items(&self) -> Vec<TaskStreamItem> {
        self.messages
            .lock()
            .unwrap()
            .iter()
            .filter_map(|message| match message {
                TaskStreamMessage::Item(item) => Some(item.clone()),
                _ => None,
            })
            .collect()
    }

    /// Waits until the items so far satisfy `done`, listens a little longer for
    /// anything that should not come, and returns every item. Fails if the
    /// stream ever dropped: these tests never end a connection on purpose.
    async fn items_once(
        &self,
        what: &str,
        done: impl Fn(&[TaskStreamItem]) -> bool,
    ) -> Vec<TaskStreamItem> {
        let what = format!("{}: {what}", self.label);
        eventually(&what, PATIENCE, async || done(&self.items()).then_some(())).await;
        tokio::time::sleep(GRACE).await;
        let messages = self.messages.lock().unwrap().clone();
        let drops: Vec<_> = messages
            .iter()
            .filter(|message| matches!(message, TaskStreamMessage::Disconnected { .. }))
            .collect();
        assert!(drops.is_empty(), "{what}: the stream dropped: {drops:?}");
        self.items()
    }
}

impl Drop for TaskWatcher {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// The intent an item is about (a snapshot is about none).
fn intent_of(item: &TaskStreamItem) -> Option<&str> {
    match item {
        TaskStreamItem::Snapshot(_) => None,
        TaskStreamItem::Upserted(upsert) => Some(&upsert.task.intent_id),
        TaskStreamItem::Removed(removal) => Some(&removal.intent_id),
        TaskStreamItem::Reminder(reminder) => Some(&reminder.intent_id),
    }
}

/// How many items of one kind (`task.upserted`...) each intent got.
fn tally(items: &[TaskStreamItem], kind: &str) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for item in items.iter().filter(|item| item.event_name() == kind) {
        if let Some(intent_id) = intent_of(item) {
            *counts.entry(intent_id.to_string()).or_insert(0) += 1;
        }
    }
    counts
}

/// Every item comes after the one before it in commit order: cursors strictly
/// increase (each event here gives a reviewer at most one item), so none
/// repeats and none arrives out of order.
fn assert_cursors_increase(label: &str, items: &[TaskStreamItem]) {
    for pair in items.windows(2) {
        assert!(
            pair[0].cursor() < pair[1].cursor(),
            "{label}: cursor {} came after {}: {:?} then {:?}",
            pair[1].cursor(),
            pair[0].cursor(),
            pair[0],
            pair[1]
        );
    }
}

/// The task-list items a reviewer who holds every one of these tasks must get
/// for them: an upsert for each event but the terminal one, a removal for that.
fn expected_items(events: &[CommittedEvent]) -> Vec<(u64, String, &'static str)> {
    events
        .iter()
        .map(|(cursor, intent_id, event_type)| {
            let kind = if event_type == COMPLETED {
                "task.removed"
            } else {
                "task.upserted"
            };
            (*cursor, intent_id.clone(), kind)
        })
        .collect()
}

/// Items as (cursor, intent, kind), to compare with [`expected_items`].
fn item_keys(items: &[TaskStreamItem]) -> Vec<(u64, String, &'static str)> {
    items
        .iter()
        .filter_map(|item| {
            let intent_id = intent_of(item)?;
            Some((item.cursor(), intent_id.to_string(), item.event_name()))
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------

/// A human task for `assignees`, with extra top-level fields (a lifecycle).
fn task_body(title: &str, assignees: &[&str], extra: Value) -> Value {
    let mut body = common::task_intent(json!({"title": title, "assignees": assignees}));
    if let (Some(body), Value::Object(extra)) = (body.as_object_mut(), extra) {
        body.extend(extra);
    }
    body
}

async fn create_task(agent: &Client, title: &str, assignees: &[&str], extra: Value) -> String {
    agent
        .create_intent(&task_body(title, assignees, extra), None)
        .await
        .unwrap_or_else(|err| panic!("creating {title}: {err}"))
        .intent_id
}

async fn approve(reviewer: &Client, intent_id: &str) -> Intent {
    reviewer
        .decide(intent_id, "approved", Some("fleet"), Map::new())
        .await
        .unwrap_or_else(|err| panic!("approving {intent_id}: {err}"))
}

/// The history of an intent, checked to be numbered 1, 2, ... n without a gap
/// or a repeat.
async fn gap_free_history(reader: &Client, intent_id: &str) -> Vec<Event> {
    let events = reader.events(intent_id, 0).await.expect("events");
    let seqs: Vec<u64> = events.iter().map(|event| event.seq).collect();
    let expected: Vec<u64> = (1..=events.len() as u64).collect();
    assert_eq!(seqs, expected, "the history of {intent_id} is gap-free");
    events
}

fn types(events: &[Event]) -> Vec<&str> {
    events
        .iter()
        .map(|event| event.event_type.as_str())
        .collect()
}

fn now() -> Timestamp {
    let micros = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_micros();
    Timestamp::from_unix_micros(micros as i64)
}

/// Runs `count` jobs, `in_flight` at a time, and returns their results in order.
async fn bounded<T, F: Future<Output = T>>(
    count: usize,
    in_flight: usize,
    job: impl FnMut(usize) -> F,
) -> Vec<T> {
    futures::stream::iter(0..count)
        .map(job)
        .buffered(in_flight)
        .collect()
        .await
}

// ---------------------------------------------------------------------------
// 1. A thousand round trips across three instances
// ---------------------------------------------------------------------------

const TASKS: usize = 1000;
const AGENTS: usize = 10;
const REVIEWERS: usize = 4;
const IN_FLIGHT: usize = 32;

fn reviewer_identity(reviewer: usize) -> String {
    format!("reviewer-{reviewer}@example.com")
}

/// One task's round trip: who did what where, and what its waiter saw.
struct RoundTrip {
    intent_id: String,
    created_on: usize,
    decided_on: usize,
    reviewer: usize,
    seen: Vec<Event>,
}

/// Task `n`: created on instance `n % 3` by one of the agents, which follows
/// its events there; decided by its reviewer through one of the two other
/// instances once the agent's stream is live, so the decision reaches the
/// agent only through the other instance's commit notification.
async fn round_trip(n: usize, agents: &[Vec<Client>], reviewers: &[Vec<Client>]) -> RoundTrip {
    let created_on = n % 3;
    let decided_on = (created_on + 1 + (n / 3) % 2) % 3;
    let reviewer = n % REVIEWERS;
    let agent = &agents[n % AGENTS][created_on];
    let assignee = reviewer_identity(reviewer);
    let intent_id = create_task(agent, &format!("task {n}"), &[&assignee], json!({})).await;
    let waiter = IntentFollower::open(agent, &intent_id, 0).await;
    approve(&reviewers[reviewer][decided_on], &intent_id).await;
    let seen = waiter.until_closed().await;
    RoundTrip {
        intent_id,
        created_on,
        decided_on,
        reviewer,
        seen,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_tasks_across_three_instances() {
    let Some((_turn, fleet)) =
        fleet_or_skip("a_thousand_tasks_across_three_instances", 3, &[]).await
    else {
        return;
    };
    let mut agents = Vec::new();
    for agent in 0..AGENTS {
        let address = format!("agent://fleet/agent-{agent}");
        agents.push(fleet.member(PrincipalKind::Agent, &address).await);
    }
    let mut reviewers = Vec::new();
    for reviewer in 0..REVIEWERS {
        let identity = reviewer_identity(reviewer);
        reviewers.push(fleet.member(PrincipalKind::Reviewer, &identity).await);
    }
    // Every reviewer watches its list on every instance, from before the first
    // task: for each task, one of the three is on neither the instance that
    // created it nor the one that decided it.
    let mut watchers = Vec::new();
    for (reviewer, clients) in reviewers.iter().enumerate() {
        for (instance, client) in clients.iter().enumerate() {
            let label = format!("{} on instance {instance}", reviewer_identity(reviewer));
            watchers.push((reviewer, TaskWatcher::open(label, client, None).await));
        }
    }

    let started = Instant::now();
    let trips = bounded(TASKS, IN_FLIGHT, |n| round_trip(n, &agents, &reviewers)).await;
    println!(
        "{TASKS} round trips, {IN_FLIGHT} in flight, in {:?}",
        started.elapsed()
    );

    // Each history is gap-free and complete, and its waiter saw exactly that:
    // every event once, in order, nothing after the end.
    for (n, trip) in trips.iter().enumerate() {
        let third = 3 - trip.created_on - trip.decided_on;
        let history = gap_free_history(&agents[n % AGENTS][third], &trip.intent_id).await;
        assert_eq!(
            types(&history),
            DECIDED_TASK_HISTORY,
            "task {n}: {history:#?}"
        );
        let decided = history.last().expect("a history");
        assert_eq!(
            decided.details["result"]["decided_by"],
            reviewer_identity(trip.reviewer)
        );
        assert_eq!(
            trip.seen, history,
            "task {n}: the waiter on instance {} saw every event once, in order (decided on {})",
            trip.created_on, trip.decided_on
        );
    }

    // Every task list, on every instance, got exactly one upsert and one
    // removal for each of its reviewer's tasks, in commit order.
    for (reviewer, watcher) in &watchers {
        let mine: BTreeSet<&str> = trips
            .iter()
            .filter(|trip| trip.reviewer == *reviewer)
            .map(|trip| trip.intent_id.as_str())
            .collect();
        let items = watcher
            .items_once("a removal for every task", |items| {
                tally(items, "task.removed").len() >= mine.len()
            })
            .await;
        let label = &watcher.label;
        match items.first() {
            Some(TaskStreamItem::Snapshot(snapshot)) => {
                assert!(snapshot.tasks.is_empty(), "{label}: {snapshot:?}")
            }
            other => panic!("{label}: a fresh stream starts with a snapshot, not {other:?}"),
        }
        let changes = &items[1..];
        assert_cursors_increase(label, changes);
        for kind in ["task.upserted", "task.removed"] {
            let counts = tally(changes, kind);
            let got: BTreeSet<&str> = counts.keys().map(String::as_str).collect();
            assert_eq!(got, mine, "{label}: a {kind} for each task, for no other");
            let repeated: Vec<_> = counts.iter().filter(|(_, n)| **n != 1).collect();
            assert!(
                repeated.is_empty(),
                "{label}: {kind} repeated: {repeated:?}"
            );
        }
        assert_eq!(changes.len(), 2 * mine.len(), "{label}: nothing else");
    }
}

// ---------------------------------------------------------------------------
// 2. Timers fire exactly once when the instance holding them dies
// ---------------------------------------------------------------------------

const TIMED_TASKS: usize = 300;
/// Long enough to create every task before the first reminder is due.
const REMIND_AFTER_SECONDS: i64 = 4;
const TIMER_LEASE_SECONDS: i64 = 2;
/// The instance that claims the due reminders, and one that watches.
const CLAIMER: usize = 0;
const WATCHED: usize = 2;
const SURVIVORS: [usize; 2] = [1, 2];

/// [`fleet_or_skip`] for three instances that lease claimed timers for
/// [`TIMER_LEASE_SECONDS`].
async fn timer_fleet_or_skip(test: &str) -> Option<(MutexGuard<'static, ()>, Fleet)> {
    let lease = TIMER_LEASE_SECONDS.to_string();
    fleet_or_skip(test, 3, &["--pg-timer-lease", &lease]).await
}

/// `count` tasks for alice over the three instances, each with one reminder due
/// [`REMIND_AFTER_SECONDS`] after it was created; returns their ids.
async fn tasks_with_one_reminder(agent: &[Client], count: usize) -> Vec<String> {
    let lifecycle =
        json!({"lifecycle": {"remind": {"after_seconds": REMIND_AFTER_SECONDS, "max": 1}}});
    bounded(count, IN_FLIGHT, |n| {
        let (agent, lifecycle) = (&agent[n % 3], lifecycle.clone());
        async move { create_task(agent, &format!("timed {n}"), &[ALICE], lifecycle).await }
    })
    .await
}

/// Holds every write of the fleet (the chain-head lock) and stops every
/// instance, so nothing fires or claims until told to.
async fn freeze(fleet: &Fleet, database: &Database) {
    database.hold_writes().await;
    for instance in 0..fleet.instances.len() {
        fleet.signal(instance, "STOP");
    }
}

impl Database {
    /// Reminder timers still pending, and how many of those are leased.
    async fn reminder_timers(&self) -> (i64, i64) {
        let row = self
            .client
            .query_one(
                "SELECT count(*), count(lease_owner) FROM timers WHERE kind = 'remind'",
                &[],
            )
            .await
            .expect("count reminder timers");
        (row.get(0), row.get(1))
    }

    /// The text of one value (a time, a lease owner) a query returns, if any.
    async fn text(&self, sql: &str) -> Option<String> {
        self.client
            .query_one(sql, &[])
            .await
            .unwrap_or_else(|err| panic!("{sql}: {err}"))
            .get(0)
    }

    /// From now on, every event of `intent_id` is stored with a status no
    /// signoff writes: a row "changed outside signoff" as it commits.
    async fn damage_events_of(&self, intent_id: &str) {
        let intent_id = intent_id.replace('\'', "''");
        self.client
            .batch_execute(&format!(
                "CREATE FUNCTION damage_event() RETURNS trigger LANGUAGE plpgsql
                 AS $$ BEGIN NEW.status := 'BOGUS'; RETURN NEW; END $$;
                 CREATE TRIGGER damage_event BEFORE INSERT ON events FOR EACH ROW
                 WHEN (NEW.intent_id = '{intent_id}') EXECUTE FUNCTION damage_event()"
            ))
            .await
            .expect("install the damaging trigger");
    }

    /// The chain head: the newest commit position and its hash.
    async fn chain_head(&self) -> (i64, Option<String>) {
        let row = self
            .client
            .query_one("SELECT cursor, hash FROM chain_head WHERE id = 1", &[])
            .await
            .expect("read the chain head");
        (row.get(0), row.get(1))
    }

    /// Puts the database back to `head` as if restored from a backup taken
    /// then: the `intents` created since lose every row that names them.
    async fn rewind(&self, head: &(i64, Option<String>), intents: &[String]) {
        let tables: Vec<String> = self
            .client
            .query(
                "SELECT table_name::text FROM information_schema.columns
                 WHERE table_schema = current_schema() AND column_name = 'intent_id'",
                &[],
            )
            .await
            .expect("list the tables")
            .iter()
            .map(|row| row.get(0))
            .collect();
        for table in tables {
            self.client
                .execute(
                    &format!("DELETE FROM {table} WHERE intent_id = ANY($1)"),
                    &[&intents],
                )
                .await
                .unwrap_or_else(|err| panic!("forget in {table}: {err}"));
        }
        self.client
            .execute(
                "UPDATE chain_head SET cursor = $1, hash = $2 WHERE id = 1",
                &[&head.0, &head.1],
            )
            .await
            .expect("put the chain head back");
    }

    /// PostgreSQL sessions of signoff waiting for a lock: writers queued
    /// behind the chain head.
    async fn writers_waiting(&self) -> i64 {
        self.count(
            "SELECT count(*) FROM pg_stat_activity
             WHERE application_name = 'signoff writer' AND wait_event_type = 'Lock'",
        )
        .await
    }
}

/// Once every pending reminder is due, lets `claimer` run (the rest of the
/// fleet stays frozen) until it has claimed them all: it then holds their
/// leases, and their firing waits behind the held chain head. Returns how many
/// it claimed.
async fn let_one_instance_claim_the_reminders(
    fleet: &Fleet,
    database: &Database,
    claimer: usize,
) -> i64 {
    let last_due = database
        .text("SELECT max(due_at) FROM timers WHERE kind = 'remind'")
        .await
        .expect("pending reminders");
    let last_due = Timestamp::parse(&last_due).expect("a due time");
    let until_due = (last_due.unix_micros() - now().unix_micros()).max(0) as u64;
    tokio::time::sleep(Duration::from_micros(until_due) + Duration::from_millis(200)).await;
    fleet.signal(claimer, "CONT");
    eventually(
        &format!("instance {claimer} has claimed every due reminder"),
        PATIENCE,
        async || {
            let (pending, leased) = database.reminder_timers().await;
            (pending > 0 && leased == pending).then_some(pending)
        },
    )
    .await
}

/// Waits until every task's history (read through `readers`, instances that
/// are up) holds its reminder, failing at once if any holds two. Returns when
/// each fired.
async fn reminders_fired_once(readers: &[&Client], tasks: &[String]) -> Vec<Timestamp> {
    let each_fired_once = async || {
        let mut fired = Vec::new();
        for (n, intent_id) in tasks.iter().enumerate() {
            let history = gap_free_history(readers[n % readers.len()], intent_id).await;
            let reminders: Vec<&Event> = history
                .iter()
                .filter(|event| event.event_type == REMINDER)
                .collect();
            match reminders.as_slice() {
                [] => return None,
                [reminder] => {
                    assert_eq!(reminder.details["reminder_no"], 1, "task {n}");
                    fired.push(reminder.at);
                }
                _ => panic!("task {n} got {} reminders: {history:#?}", reminders.len()),
            }
        }
        Some(fired)
    };
    eventually("every reminder has fired", PATIENCE, each_fired_once).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timers_fire_exactly_once_even_when_an_instance_is_killed() {
    let Some((_turn, mut fleet)) =
        timer_fleet_or_skip("timers_fire_exactly_once_even_when_an_instance_is_killed").await
    else {
        return;
    };
    let database = fleet.database().await;
    let agent = fleet.member(PrincipalKind::Agent, AGENT).await;
    let alice = fleet.member(PrincipalKind::Reviewer, ALICE).await;
    let watcher = TaskWatcher::open("alice on a survivor", &alice[WATCHED], None).await;
    let tasks = tasks_with_one_reminder(&agent, TIMED_TASKS).await;

    // The claimer takes every due reminder with a lease and starts firing them
    // (its write waits behind the held lock)...
    freeze(&fleet, &database).await;
    let claimed = let_one_instance_claim_the_reminders(&fleet, &database, CLAIMER).await;
    let fired_before = TIMED_TASKS as i64 - claimed;
    // ... and dies mid-firing. The others wake, and writes go through again.
    fleet.instances[CLAIMER].kill9();
    let killed_at = now();
    for survivor in SURVIVORS {
        fleet.signal(survivor, "CONT");
    }
    database.release_writes().await;
    println!("{claimed} reminders were leased to the instance killed at {killed_at}");

    // The survivors fire what it held once the leases run out: each reminder
    // once, the orphaned ones after the kill.
    let readers: Vec<&Client> = SURVIVORS.iter().map(|&i| &agent[i]).collect();
    let fired = reminders_fired_once(&readers, &tasks).await;
    let after_kill = fired.iter().filter(|at| **at > killed_at).count();
    assert_eq!(
        (fired_before + after_kill as i64, after_kill as i64),
        (TIMED_TASKS as i64, claimed),
        "exactly the reminders the killed instance held fired after it died"
    );

    // A reviewer watching a surviving instance heard each reminder once.
    let items = watcher
        .items_once("a reminder for every task", |items| {
            tally(items, "task.reminder").len() >= TIMED_TASKS
        })
        .await;
    let reminders = tally(&items, "task.reminder");
    let expected: BTreeSet<&str> = tasks.iter().map(String::as_str).collect();
    let got: BTreeSet<&str> = reminders.keys().map(String::as_str).collect();
    assert_eq!(got, expected, "a task.reminder for every task");
    let repeated: Vec<_> = reminders.iter().filter(|(_, n)| **n != 1).collect();
    assert!(repeated.is_empty(), "reminders repeated: {repeated:?}");
}

/// The case a kill cannot produce: the claimer lives, but its firing is held up
/// past the lease, another instance claims the timers and fires them, and only
/// then does the first one get to its firing. It must see that the timers are
/// no longer its own and leave them alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claimer_held_up_past_its_lease_does_not_fire_again() {
    let Some((_turn, fleet)) =
        timer_fleet_or_skip("a_claimer_held_up_past_its_lease_does_not_fire_again").await
    else {
        return;
    };
    let database = fleet.database().await;
    let agent = fleet.member(PrincipalKind::Agent, AGENT).await;
    let alice = fleet.member(PrincipalKind::Reviewer, ALICE).await;
    let tasks = tasks_with_one_reminder(&agent, 100).await;

    // The claimer's writer is first made busy with an unrelated write that waits
    // behind the held lock, so the firing it queues after its claim waits in
    // the claimer itself, not yet at the database.
    freeze(&fleet, &database).await;
    fleet.signal(CLAIMER, "CONT");
    let busy = tokio::spawn({
        let (alice, intent_id) = (alice[CLAIMER].clone(), tasks[0].clone());
        async move { alice.mark_viewed(&intent_id).await }
    });
    eventually("the claimer's writer waits", PATIENCE, async || {
        (database.writers_waiting().await >= 1).then_some(())
    })
    .await;
    // Stopped again, so that it wakes only when every reminder is due and
    // claims them all at once (its scheduler waits for each firing it queues).
    fleet.signal(CLAIMER, "STOP");
    let claimed = let_one_instance_claim_the_reminders(&fleet, &database, CLAIMER).await;
    assert_eq!(claimed, tasks.len() as i64, "nothing fired yet");
    let stale_owner = database
        .text("SELECT max(lease_owner) FROM timers WHERE kind = 'remind'")
        .await
        .expect("a lease owner");

    // The leases run out; the survivors claim the reminders and their firing
    // queues at the database, ahead of the claimer's.
    tokio::time::sleep(Duration::from_secs(TIMER_LEASE_SECONDS as u64)).await;
    for survivor in SURVIVORS {
        fleet.signal(survivor, "CONT");
    }
    // Both survivors may claim (SKIP LOCKED can split the rows between them);
    // what matters is that none is left with the held-up claimer.
    let reclaimed = format!(
        "SELECT count(*) FROM timers
         WHERE kind = 'remind' AND lease_owner IS NOT NULL AND lease_owner <> '{stale_owner}'"
    );
    eventually("the survivors have claimed them", PATIENCE, async || {
        (database.count(&reclaimed).await == claimed).then_some(())
    })
    .await;
    eventually("their firing waits at the database", PATIENCE, async || {
        (database.writers_waiting().await >= 2).then_some(())
    })
    .await;

    // Writes go through: the unrelated write, the new owners' firing, and last
    // the held-up claimer's, which must find nothing left that is its own.
    database.release_writes().await;
    busy.await
        .expect("the busy write ran")
        .expect("the busy write succeeded");
    let readers: Vec<&Client> = agent.iter().collect();
    reminders_fired_once(&readers, &tasks).await;
    // Give the held-up firing time to commit whatever it would, then look again.
    tokio::time::sleep(GRACE).await;
    reminders_fired_once(&readers, &tasks).await;
}

// ---------------------------------------------------------------------------
// 3. Races across instances
// ---------------------------------------------------------------------------

const RACES: usize = 100;

/// One side of a race: who decides, with which outcome.
struct Contender {
    identity: &'static str,
    outcome: &'static str,
}

const ALICE_APPROVES: Contender = Contender {
    identity: ALICE,
    outcome: "approved",
};
const BOB_REJECTS: Contender = Contender {
    identity: BOB,
    outcome: "rejected",
};

/// Exactly one side won; returns the winner, its answer and the loser's error.
fn one_winner(
    round: usize,
    results: [(&Contender, ClientResult<Intent>); 2],
) -> (&Contender, Intent, ClientError) {
    let [(first, first_result), (second, second_result)] = results;
    match (first_result, second_result) {
        (Ok(intent), Err(error)) => (first, intent, error),
        (Err(error), Ok(intent)) => (second, intent, error),
        (Ok(_), Ok(_)) => panic!("round {round}: both decisions were accepted"),
        (Err(a), Err(b)) => panic!("round {round}: both decisions failed: {a:?} / {b:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_cross_instance_races_have_one_winner_each() {
    let Some((_turn, fleet)) = fleet_or_skip(
        "a_hundred_cross_instance_races_have_one_winner_each",
        3,
        &[],
    )
    .await
    else {
        return;
    };
    let agent = fleet.member(PrincipalKind::Agent, AGENT).await;
    let alice = fleet.member(PrincipalKind::Reviewer, ALICE).await;
    let bob = fleet.member(PrincipalKind::Reviewer, BOB).await;

    let mut wins = HashMap::new();
    for round in 0..RACES {
        // Created on the third instance; the two reviewers swap instances each round.
        let intent_id = create_task(
            &agent[2],
            &format!("race {round}"),
            &[ALICE, BOB],
            json!({}),
        )
        .await;
        let (alice_on, bob_on) = (round % 2, 1 - round % 2);
        let (alice_result, bob_result) = tokio::join!(
            alice[alice_on].decide(&intent_id, ALICE_APPROVES.outcome, None, Map::new()),
            bob[bob_on].decide(&intent_id, BOB_REJECTS.outcome, None, Map::new()),
        );
        let (winner, won, lost) = one_winner(
            round,
            [(&ALICE_APPROVES, alice_result), (&BOB_REJECTS, bob_result)],
        );
        *wins.entry(winner.identity).or_insert(0) += 1;
        let record = won.result.clone().expect("the winner's decision record");
        assert_eq!(record["decided_by"], winner.identity, "round {round}");
        assert_eq!(record["outcome"], winner.outcome, "round {round}");
        match &lost {
            ClientError::Api {
                status,
                code,
                details,
                ..
            } => {
                assert_eq!(
                    (*status, code.as_str()),
                    (409, "already_decided"),
                    "round {round}"
                );
                assert_eq!(
                    details["decided_by"], winner.identity,
                    "round {round}: the 409 names the winner"
                );
            }
            other => panic!("round {round}: the loser got {other:?} instead of a 409"),
        }
        // Every instance reads the same single ending.
        for (instance, reader) in agent.iter().enumerate() {
            let stored = reader.intent(&intent_id).await.expect("intent");
            assert_eq!(
                stored.result.as_ref(),
                Some(&record),
                "round {round}: instance {instance} has the winner's record"
            );
        }
        let history = gap_free_history(&agent[round % 3], &intent_id).await;
        let endings: Vec<&Event> = history.iter().filter(|e| e.is_terminal()).collect();
        assert_eq!(
            endings.len(),
            1,
            "round {round}: one terminal event: {history:#?}"
        );
        assert_eq!(endings[0].actor, winner.identity, "round {round}");
        assert_eq!(
            endings[0].details["result"]["outcome"], winner.outcome,
            "round {round}"
        );
    }
    println!("wins: {wins:?}");
}

// ---------------------------------------------------------------------------
// 4. Streams resume on another instance
// ---------------------------------------------------------------------------

/// The three roles of test 4's instances: a stream starts on A, resumes on B,
/// and the changes it must deliver are made through C.
const A: usize = 0;
const B: usize = 1;
const C: usize = 2;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_resumes_on_another_instance_without_a_gap() {
    let Some((_turn, fleet)) =
        fleet_or_skip("a_stream_resumes_on_another_instance_without_a_gap", 3, &[]).await
    else {
        return;
    };
    let database = fleet.database().await;
    task_stream_resumes_elsewhere(&fleet, &database).await;
    intent_stream_resumes_elsewhere(&fleet).await;
    one_commit_reaches_the_followers_of_each_intent(&fleet, &database).await;
    agent_stream_crosses_instances(&fleet, &database).await;
}

/// Creates tasks for alice through `agent` and decides some of them, one change
/// at a time (so the order of commits is the order of the calls).
async fn change_tasks(
    agent: &Client,
    alice: &Client,
    open: &mut Vec<String>,
    create: usize,
    decide: usize,
) {
    for _ in 0..create {
        let title = format!("task {}", open.len());
        open.push(create_task(agent, &title, &[ALICE], json!({})).await);
    }
    for intent_id in open.drain(..decide) {
        approve(alice, &intent_id).await;
    }
}

/// Alice's task stream runs on A, then resumes (Last-Event-ID) on B while tasks
/// are created and decided through C before and after the reconnection. Each
/// connection must deliver exactly the task events the database committed in its
/// range: A up to the remembered cursor, B everything after it.
async fn task_stream_resumes_elsewhere(fleet: &Fleet, database: &Database) {
    let agent = fleet.member(PrincipalKind::Agent, AGENT).await;
    let alice = fleet.member(PrincipalKind::Reviewer, ALICE).await;
    let mut open = Vec::new();

    let on_a = TaskWatcher::open("alice's task stream on A", &alice[A], None).await;
    change_tasks(&agent[C], &alice[C], &mut open, 4, 2).await;
    let newest = database.last_task_event().await;
    let seen_on_a = on_a
        .items_once("every change so far", |items| {
            items.last().is_some_and(|item| item.cursor() >= newest)
        })
        .await;
    drop(on_a);
    let cursor = seen_on_a.last().expect("items").cursor();
    assert!(
        matches!(&seen_on_a[0], TaskStreamItem::Snapshot(s) if s.tasks.is_empty() && s.cursor < cursor),
        "a fresh stream starts with an empty snapshot: {:?}",
        seen_on_a[0]
    );
    assert_cursors_increase("A", &seen_on_a[1..]);
    assert_eq!(
        item_keys(&seen_on_a),
        expected_items(&database.task_events(0, cursor).await),
        "A delivered exactly the task events up to its last cursor"
    );

    // While nobody listens...
    change_tasks(&agent[C], &alice[C], &mut open, 2, 1).await;
    // ... and after the stream resumed on B.
    let on_b = TaskWatcher::open("alice's task stream on B", &alice[B], Some(cursor)).await;
    change_tasks(&agent[C], &alice[C], &mut open, 1, 4).await;
    let newest = database.last_task_event().await;
    let seen_on_b = on_b
        .items_once("every change after the cursor", |items| {
            items.last().is_some_and(|item| item.cursor() >= newest)
        })
        .await;
    assert!(
        !seen_on_b
            .iter()
            .any(|item| matches!(item, TaskStreamItem::Snapshot(_))),
        "a resumed stream does not start over"
    );
    assert_cursors_increase("B", &seen_on_b);
    let expected = expected_items(&database.task_events(cursor, newest).await);
    assert_eq!(
        expected.len(),
        2 + 1 + 1 + 4,
        "the changes after the cursor, as committed"
    );
    assert_eq!(
        item_keys(&seen_on_b),
        expected,
        "B delivered exactly the task events after the cursor from A"
    );
}

/// An agent follows a task's events on A, remembers the last seq and drops the
/// stream; the task is viewed and decided through C, before and after the agent
/// resumes (`since`) on B. B must deliver exactly the history after that seq.
async fn intent_stream_resumes_elsewhere(fleet: &Fleet) {
    let agent = fleet
        .member(PrincipalKind::Agent, "agent://fleet/watcher")
        .await;
    let alice = fleet.member(PrincipalKind::Reviewer, ALICE).await;
    let intent_id = create_task(&agent[C], "resumed", &[ALICE], json!({})).await;
    let replay = gap_free_history(&agent[C], &intent_id).await.len();

    let mut on_a = IntentFollower::open(&agent[A], &intent_id, 0).await;
    on_a.read(replay).await;
    alice[C].mark_viewed(&intent_id).await.expect("viewed");
    on_a.read(1).await;
    let remembered = on_a.position();
    let seen_on_a = on_a.received.clone();
    drop(on_a);

    alice[C]
        .mark_viewed(&intent_id)
        .await
        .expect("viewed again");
    let on_b = IntentFollower::open(&agent[B], &intent_id, remembered).await;
    approve(&alice[C], &intent_id).await;
    let seen_on_b = on_b.until_closed().await;

    let history = gap_free_history(&agent[C], &intent_id).await;
    let (before, after) = history.split_at(remembered as usize);
    assert_eq!(
        seen_on_a, before,
        "A delivered the history up to its position"
    );
    assert_eq!(
        seen_on_b, after,
        "B delivered exactly the rest: {history:#?}"
    );
    assert_eq!(
        types(after),
        ["intent.viewed", COMPLETED],
        "the second view and the decision came after the resume point"
    );
}

/// One commit of B decides two tasks: one followed on A, the other on C, and no
/// task stream is open anywhere, so each instance reads back only the events of
/// the intent it follows. Each follower still gets its intent's whole history,
/// each event once.
async fn one_commit_reaches_the_followers_of_each_intent(fleet: &Fleet, database: &Database) {
    let agent = fleet
        .member(PrincipalKind::Agent, "agent://fleet/split")
        .await;
    let alice = fleet.member(PrincipalKind::Reviewer, ALICE).await;
    let on_a_id = create_task(&agent[B], "followed on A", &[ALICE], json!({})).await;
    let on_c_id = create_task(&agent[B], "followed on C", &[ALICE], json!({})).await;
    let on_a = IntentFollower::open(&agent[A], &on_a_id, 0).await;
    let on_c = IntentFollower::open(&agent[C], &on_c_id, 0).await;

    database.hold_writes().await;
    let decisions = tokio::spawn({
        let (alice, on_a_id, on_c_id) = (alice[B].clone(), on_a_id.clone(), on_c_id.clone());
        async move { futures::join!(approve(&alice, &on_a_id), approve(&alice, &on_c_id)) }
    });
    eventually(
        "B's writer waits for the chain head",
        PATIENCE,
        async || (database.writers_waiting().await > 0).then_some(()),
    )
    .await;
    // Both decisions queue behind the held head meanwhile, so B commits them
    // together (one batch of its writer).
    tokio::time::sleep(GRACE).await;
    database.release_writes().await;
    decisions.await.expect("both decided");

    for (follower, intent_id) in [(on_a, &on_a_id), (on_c, &on_c_id)] {
        let seen = follower.until_closed().await;
        let history = gap_free_history(&agent[B], intent_id).await;
        assert_eq!(
            types(&history).last(),
            Some(&COMPLETED),
            "{intent_id}: {history:#?}"
        );
        assert_eq!(seen, history, "{intent_id}: every event once, in order");
    }
}

/// An agent's delivery stream: intents addressed to it (no human task) are
/// created through B while it listens on A; it then resumes (`since`) on C while
/// more are created through B. Together the two connections deliver exactly the
/// database's deliveries, each once, in order.
async fn agent_stream_crosses_instances(fleet: &Fleet, database: &Database) {
    const RECEIVER: &str = "agent://fleet/receiver";
    let sender = fleet.member(PrincipalKind::Agent, AGENT).await;
    let receiver = fleet.member(PrincipalKind::Agent, RECEIVER).await;
    let send = |n: usize| {
        let sender = sender[B].clone();
        async move {
            let body = json!({
                "intent_type": "intent.fleet.work.v1",
                "correlation_id": uuid::Uuid::new_v4().to_string(),
                "to_agent": RECEIVER,
                "payload": {"n": n},
            });
            sender
                .create_intent(&body, None)
                .await
                .expect("send work")
                .intent_id
        }
    };
    let listen = |instance: usize, since: u64| {
        let receiver = receiver[instance].clone();
        async move {
            receiver
                .agent_stream(RECEIVER, since, WAIT_SECONDS, None)
                .await
                .expect("agent stream")
                .boxed()
        }
    };

    let mut sent = Vec::new();
    let mut on_a = listen(A, 0).await;
    for n in 0..3 {
        sent.push(send(n).await);
    }
    let mut received = read_deliveries(&mut on_a, 3).await;
    drop(on_a);
    let position = received.last().expect("deliveries").seq;

    sent.push(send(3).await);
    let mut on_c = listen(C, position).await;
    for n in 4..6 {
        sent.push(send(n).await);
    }
    received.extend(read_deliveries(&mut on_c, 3).await);
    let extra = tokio::time::timeout(GRACE, on_c.next()).await;
    assert!(extra.is_err(), "nothing more on C: {extra:?}");

    let delivered: Vec<(u64, String, String)> = received
        .iter()
        .map(|d| (d.seq, d.intent_id.clone(), d.event_type.clone()))
        .collect();
    assert_eq!(
        delivered,
        database.deliveries(RECEIVER).await,
        "A then C delivered exactly the database's deliveries"
    );
    let intents: Vec<&String> = received.iter().map(|d| &d.intent_id).collect();
    assert_eq!(intents, sent.iter().collect::<Vec<_>>(), "in sending order");
    assert!(
        received.iter().all(|d| d.event_type == "intent.submitted"),
        "{received:#?}"
    );
}

/// Reads `count` deliveries off an agent stream.
async fn read_deliveries(
    stream: &mut BoxStream<'static, ClientResult<Bounded<Delivery>>>,
    count: usize,
) -> Vec<Delivery> {
    let mut received = Vec::new();
    tokio::time::timeout(PATIENCE, async {
        while received.len() < count {
            match stream.next().await {
                Some(Ok(Bounded::Item(delivery))) => received.push(delivery),
                other => panic!("the agent stream gave {other:?} after {received:?}"),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{count} deliveries did not arrive"));
    received
}

/// What an instance reads back of other instances' commits may be damaged (a
/// row changed outside signoff), and the database may go back in time (restored
/// from a backup while the fleet runs, or its last commits lost to a crash under
/// `--durability normal`). Neither may stop an instance publishing what commits
/// after: B must skip the row it cannot read, and notice that the commit
/// positions it already published are being handed out again.
#[tokio::test]
async fn live_updates_go_on_past_a_damaged_row_and_a_rewound_database() {
    let Some((_turn, fleet)) = fleet_or_skip(
        "live_updates_go_on_past_a_damaged_row_and_a_rewound_database",
        2,
        &[],
    )
    .await
    else {
        return;
    };
    let database = fleet.database().await;
    let agent = fleet.member(PrincipalKind::Agent, AGENT).await;
    let alice = fleet.member(PrincipalKind::Reviewer, ALICE).await;
    // An open task stream makes B read every commit of A back.
    let on_b = TaskWatcher::open("alice's task stream on B", &alice[B], None).await;

    let damaged = create_task(&agent[A], "damaged", &[ALICE], json!({})).await;
    database.damage_events_of(&damaged).await;
    approve(&alice[A], &damaged).await;
    decided_task_reaches(&agent, &alice, "after the damaged row").await;
    fleet.instances[B]
        .logged("not publishing an event that cannot be read", PATIENCE)
        .await;

    let head = database.chain_head().await;
    let mut forgotten = Vec::new();
    for title in ["forgotten 1", "forgotten 2", "forgotten 3"] {
        forgotten.push(create_task(&agent[A], title, &[ALICE], json!({})).await);
    }
    let newest = database.last_task_event().await;
    on_b.items_once("the forgotten tasks", |items| {
        items.last().is_some_and(|item| item.cursor() >= newest)
    })
    .await;
    database.rewind(&head, &forgotten).await;
    // B notices the database went back.
    fleet.instances[B]
        .logged(
            "the database holds fewer commits than were published",
            PATIENCE,
        )
        .await;
    // Its commits take the positions the forgotten tasks had.
    decided_task_reaches(&agent, &alice, "after the rewind").await;

    // Anyone who may LISTEN may NOTIFY: a notification naming positions far
    // beyond the database's is ignored, not followed through empty pages, and
    // one naming positions no cursor can have is not even read.
    let (latest, _) = database.chain_head().await;
    let channel = signoff::store::postgres::channel_for(&fleet.schema.name);
    let beyond = (latest + 1).to_string();
    let far_beyond = (latest + 1_000_000).to_string();
    let no_cursor = u64::MAX.to_string();
    for (first, last) in [(&beyond, &far_beyond), (&no_cursor, &no_cursor)] {
        database
            .client
            .execute(
                "SELECT pg_notify($1, $2)",
                &[&channel, &format!("forged {first} {last} - - 1 *")],
            )
            .await
            .expect("notify");
    }
    decided_task_reaches(&agent, &alice, "after forged notifications").await;
    fleet.instances[B]
        .logged(
            "ignoring a notification of commits the database does not hold",
            PATIENCE,
        )
        .await;
    fleet.instances[B]
        .logged(
            "ignoring a malformed commit notification: forged 18446744073709551615",
            PATIENCE,
        )
        .await;
}

/// A task created and decided through A, followed on B from its creation: B
/// must deliver its whole history live.
async fn decided_task_reaches(agent: &[Client], alice: &[Client], title: &str) {
    let intent_id = create_task(&agent[A], title, &[ALICE], json!({})).await;
    let follower = IntentFollower::open(&agent[B], &intent_id, 0).await;
    approve(&alice[A], &intent_id).await;
    assert_eq!(
        follower.until_closed().await,
        gap_free_history(&agent[A], &intent_id).await,
        "{title}: B delivered the task's whole history live"
    );
}

// ---------------------------------------------------------------------------
// 5. Over the database's Unix socket
// ---------------------------------------------------------------------------

/// With PostgreSQL on the instances' own machine, a URL can name the server's
/// Unix socket instead of a TCP address (it costs less, see the README): every
/// session of an instance (the pool's, the writer and the listener) then goes
/// that way, and commits still reach the other instances.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_reaches_its_database_over_the_unix_socket() {
    let test = "fleet::a_fleet_reaches_its_database_over_the_unix_socket";
    let Some(base_url) = common::backend::postgres_url_or_skip(test) else {
        return;
    };
    let socket_url = match common::backend::unix_socket_url(&base_url).await {
        Ok(url) => url,
        Err(why) => return common::backend::say_skipped(test, &why),
    };
    assert!(socket_url.contains("@%2F"), "{socket_url}");
    let (name, socket_url) = with_own_name(&socket_url, "socket");
    let _turn = one_fleet_at_a_time().await;
    let fleet = Fleet::start(&socket_url, 2, &[]).await;
    let agent = fleet.member(PrincipalKind::Agent, AGENT).await;
    let alice = fleet.member(PrincipalKind::Reviewer, ALICE).await;
    decided_task_reaches(&agent, &alice, "over the socket").await;
    // As with libpq, sslmode=require does not stop a URL naming a socket from
    // working: TLS is not asked for there. (Starting waits for /health.)
    let home = tempfile::tempdir().expect("a home for the instance");
    let require = signoff::bench::with_parameter(&fleet.schema.url(), "sslmode=require");
    let _third = tokio::task::spawn_blocking(move || {
        let instance = ServeProcess::start(home.path(), &["--db", &require]);
        (instance, home)
    })
    .await
    .expect("an instance with sslmode=require starts");
    // A Unix-socket session has no client address; the port reads -1.
    let database = fleet.database().await;
    let sessions = sessions_named(&format!("{name}%"));
    let over_tcp = database
        .count(&format!("{sessions} AND client_port <> -1"))
        .await;
    let over_the_socket = database
        .count(&format!("{sessions} AND client_port = -1"))
        .await;
    assert_eq!(over_tcp, 0, "sessions over TCP");
    assert!(
        over_the_socket >= 8,
        "each instance's writer, listener and pool, over the socket: {over_the_socket}"
    );
}

// ---------------------------------------------------------------------------
// 6. Sessions an operator can tell apart
// ---------------------------------------------------------------------------

/// In `pg_stat_activity` an instance's writer and listener say what they are,
/// so an operator can find the writer waiting for the chain head or the
/// listener of an instance; an `application_name` the URL gives takes the
/// place of `signoff` in their names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_writer_and_the_listener_are_named_in_pg_stat_activity() {
    let test = "fleet::the_writer_and_the_listener_are_named_in_pg_stat_activity";
    let Some(base_url) = common::backend::postgres_url_or_skip(test) else {
        return;
    };
    let _turn = one_fleet_at_a_time().await;
    let named_url = signoff::bench::with_parameter(&base_url, "application_name=fleet-east");
    for (url, writer, listener) in [
        (&base_url, "signoff writer", "signoff listener"),
        (&named_url, "fleet-east writer", "fleet-east listener"),
    ] {
        let fleet = Fleet::start(url, 1, &[]).await;
        assert_eq!(
            session_names(&fleet).await,
            (writer.to_string(), listener.to_string()),
            "the writer's and the listener's application_name"
        );
    }
}

/// The `application_name` of the fleet's one instance's writer (the session
/// that waits for the chain head while the test holds it) and of its listener
/// (the session that listens on the schema's channel).
async fn session_names(fleet: &Fleet) -> (String, String) {
    let agent = fleet
        .member(PrincipalKind::Agent, "agent://acme/deployer")
        .await;
    let (holder, database) = (fleet.database().await, fleet.database().await);
    holder.hold_writes().await;
    let holder_pid = holder.count("SELECT pg_backend_pid()::bigint").await;
    let held_up = agent[0].clone();
    let creating =
        tokio::spawn(async move { create_task(&held_up, "Named", &[ALICE], json!({})).await });
    // Looked for from another session: one in a transaction (the holder's) sees
    // pg_stat_activity as it was at the transaction's first look.
    let blocked = format!(
        "SELECT string_agg(application_name, ',') FROM pg_stat_activity
         WHERE {holder_pid} = ANY(pg_blocking_pids(pid))"
    );
    let writer = eventually(
        "a session waits for the held chain head",
        PATIENCE,
        async || database.text(&blocked).await,
    )
    .await;
    holder.release_writes().await;
    creating.await.expect("the held-up task is created");
    let channel = signoff::store::postgres::channel_for(&fleet.schema.name);
    let listener = database
        .text(&format!(
            "SELECT string_agg(application_name, ',') FROM pg_stat_activity
             WHERE query = 'LISTEN {channel}'"
        ))
        .await
        .expect("a session listens on the schema's channel");
    (writer, listener)
}

// ---------------------------------------------------------------------------
// 7. A pool that keeps to its warm connections
// ---------------------------------------------------------------------------

/// The pool hands out the connection returned last: once a burst has opened
/// several connections, reads one after another keep to one backend instead of
/// taking every pooled connection in turn (which, with a fleet's many backends
/// on a small machine, costs the CPU's caches; see the README's benchmarks).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_one_after_another_keep_to_the_connection_used_last() {
    let test = "fleet::reads_one_after_another_keep_to_the_connection_used_last";
    let Some(base_url) = common::backend::postgres_url_or_skip(test) else {
        return;
    };
    let _turn = one_fleet_at_a_time().await;
    let (name, url) = with_own_name(&base_url, "pool");
    let fleet = Fleet::start(&url, 1, &[]).await;
    let agent = fleet
        .member(PrincipalKind::Agent, "agent://acme/deployer")
        .await;
    let intent_id = create_task(&agent[0], "Pooled", &[ALICE], json!({})).await;
    let database = fleet.database().await;
    // The pool's sessions bear the bare name; the writer's and the listener's
    // add their role.
    let pooled = sessions_named(&name);
    let opened = eventually(
        "a burst of reads opens several pooled connections",
        PATIENCE,
        async || {
            let burst = (0..32).map(|_| agent[0].intent(&intent_id));
            futures::future::join_all(burst).await;
            let opened = database.count(&pooled).await;
            (opened >= 4).then_some(opened)
        },
    )
    .await;
    let since = database
        .text("SELECT clock_timestamp()::text")
        .await
        .expect("the database's time");
    for _ in 0..30 {
        agent[0]
            .intent(&intent_id)
            .await
            .expect("read the task's intent");
    }
    let used = database
        .count(&format!("{pooled} AND state_change > '{since}'"))
        .await;
    // One of the instance's own background reads (its catch-up every few
    // seconds, its scheduler) may overlap a request and take a second one.
    assert!(
        (1..=2).contains(&used),
        "{used} of the {opened} pooled connections served 30 reads made one after another"
    );
}
