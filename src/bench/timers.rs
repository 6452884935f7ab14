//! `signoff bench timers`: the durable scheduler under load.
//!
//! On a fresh `signoff serve`, it fills the database with tasks whose timers lie
//! far in the future (measuring the server's memory as they grow), then:
//!
//! 1. **lateness**: `due` reminders come due spread over one minute; each firing
//!    is recorded with its `due_at`, and the event's `at` is when it fired, so
//!    lateness = at - due_at, read back from the database afterwards;
//! 2. **throughput**: `burst` tasks share one absolute deadline; they all come
//!    due at the same instant and the scheduler fires them as fast as it can:
//!    firings per second = burst / (last firing - deadline).

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rusqlite::{Connection, OpenFlags};
use serde::Serialize;
use serde_json::{Value, json};

use super::{SpawnedServer, Target, bench_actors, create_many, task_body};
use crate::clock::{Clock, SystemClock};
use crate::domain::Timestamp;

#[derive(Debug, Clone)]
pub struct TimerOptions {
    /// Tasks waiting with timers far in the future.
    pub waiting: usize,
    /// Reminders that come due within `window`.
    pub due: usize,
    pub window: Duration,
    /// Tasks sharing one deadline.
    pub burst: usize,
    pub durability: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct TimerReport {
    pub waiting_tasks: usize,
    pub due_in_window: usize,
    pub window_seconds: u64,
    pub lateness_p50_ms: f64,
    pub lateness_p99_ms: f64,
    pub lateness_max_ms: f64,
    pub burst: usize,
    pub firings_per_second: f64,
    /// Server memory as the number of waiting tasks grew: (tasks, MiB).
    pub rss_mib_by_waiting: Vec<(usize, f64)>,
}

/// An approval with the given lifecycle.
fn timed_task(sequence: usize, lifecycle: Value) -> Value {
    let mut body = task_body(sequence);
    body["lifecycle"] = lifecycle;
    body
}

/// Reads the benchmark server's database, read-only.
fn open_database(home: &Path) -> anyhow::Result<Connection> {
    let path = home.join("data/signoff/signoff.db");
    Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .with_context(|| format!("cannot read {}", path.display()))
}

fn count_events(conn: &Connection, event_type: &str) -> anyhow::Result<usize> {
    let count: i64 = conn.query_row(
        "SELECT COUNT(*) FROM events WHERE event_type = ?1",
        [event_type],
        |row| row.get(0),
    )?;
    Ok(count as usize)
}

/// Waits until `expected` events of `event_type` exist, or `limit` passes.
async fn wait_for_events(
    home: &Path,
    event_type: &str,
    expected: usize,
    limit: Duration,
) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        let seen = count_events(&open_database(home)?, event_type)?;
        if seen >= expected {
            return Ok(());
        }
        if started.elapsed() > limit {
            bail!("only {seen} of {expected} {event_type} events after {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn parse_time(text: &str) -> rusqlite::Result<Timestamp> {
    Timestamp::parse(text).map_err(|err| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, err.into())
    })
}

/// Every reminder's lateness (fired minus due), sorted.
fn reminder_lateness(conn: &Connection) -> anyhow::Result<Vec<Duration>> {
    let mut statement = conn.prepare(
        "SELECT at, json_extract(details, '$.due_at') FROM events WHERE event_type = 'intent.reminder'",
    )?;
    let rows = statement.query_map([], |row| {
        let fired = parse_time(&row.get::<_, String>(0)?)?;
        let due = parse_time(&row.get::<_, String>(1)?)?;
        Ok(fired.unix_micros() - due.unix_micros())
    })?;
    let mut lateness = Vec::new();
    for micros in rows {
        lateness.push(Duration::from_micros(micros?.max(0) as u64));
    }
    lateness.sort();
    Ok(lateness)
}

fn last_timeout(conn: &Connection) -> anyhow::Result<Timestamp> {
    let text: String = conn.query_row(
        "SELECT MAX(at) FROM events WHERE event_type = 'intent.timed_out'",
        [],
        |row| row.get(0),
    )?;
    Ok(parse_time(&text)?)
}

/// Seconds from now until `at`, rounded up: a relative duration that lands on
/// or just after `at`.
fn seconds_until(at: Timestamp) -> u64 {
    let micros = at.unix_micros() - SystemClock.now().unix_micros();
    (micros.max(1_000_000) as u64).div_ceil(1_000_000)
}

/// A generous guess of how long creating `count` tasks takes, to schedule what
/// they trigger after they all exist.
fn creation_allowance(count: usize) -> i64 {
    5 + (count / 1000) as i64
}

pub async fn run_timers(binary: &Path, options: &TimerOptions) -> anyhow::Result<TimerReport> {
    let home = tempfile::tempdir()?;
    let server = SpawnedServer::start(binary, home.path(), &options.durability)?;
    let target = Target::Spawned(server);
    let actors = bench_actors(&target).await?;

    // Waiting tasks: a reminder in an hour, the default 8 h timeout.
    let far = json!({"remind": {"after_seconds": 3600}});
    let mut rss = Vec::new();
    let mut filled = 0;
    for step in [0, options.waiting / 4, options.waiting / 2, options.waiting] {
        create_many(&actors.agent, filled..step, |sequence| {
            timed_task(sequence, far.clone())
        })
        .await?;
        filled = step;
        tokio::time::sleep(Duration::from_millis(300)).await;
        rss.push((
            step,
            target.rss_kib().map_or(0.0, |kib| kib as f64 / 1024.0),
        ));
    }

    // 1. Reminders spread over one minute.
    let window_start = SystemClock
        .now()
        .plus_seconds(creation_allowance(options.due));
    let window_micros = options.window.as_micros() as i128;
    let due_count = options.due.max(1) as i128;
    create_many(&actors.agent, 0..options.due, |sequence| {
        // Within the window, so it fits an i64 once divided.
        let offset = (window_micros * sequence as i128 / due_count) as i64;
        let due = Timestamp::from_unix_micros(window_start.unix_micros() + offset);
        timed_task(
            sequence,
            json!({"remind": {"after_seconds": seconds_until(due), "max": 1}}),
        )
    })
    .await?;
    let limit = options.window + Duration::from_secs(120 + creation_allowance(options.due) as u64);
    wait_for_events(home.path(), "intent.reminder", options.due, limit).await?;
    let lateness = reminder_lateness(&open_database(home.path())?)?;

    // 2. One deadline shared by the whole burst.
    let deadline = SystemClock
        .now()
        .plus_seconds(creation_allowance(options.burst));
    create_many(&actors.agent, 0..options.burst, |sequence| {
        let mut body = task_body(sequence);
        body["deadline_at"] = json!(deadline);
        body
    })
    .await?;
    let limit = Duration::from_secs(300 + creation_allowance(options.burst) as u64);
    wait_for_events(home.path(), "intent.timed_out", options.burst, limit).await?;
    let spent = last_timeout(&open_database(home.path())?)?.unix_micros() - deadline.unix_micros();
    let firings_per_second = options.burst as f64 / (spent.max(1) as f64 / 1e6);

    let ms = |sorted: &[Duration], fraction| super::percentile_ms(sorted, fraction);
    Ok(TimerReport {
        waiting_tasks: options.waiting,
        due_in_window: options.due,
        window_seconds: options.window.as_secs(),
        lateness_p50_ms: ms(&lateness, 0.50),
        lateness_p99_ms: ms(&lateness, 0.99),
        lateness_max_ms: ms(&lateness, 1.0),
        burst: options.burst,
        firings_per_second,
        rss_mib_by_waiting: rss,
    })
}
