//! Crash safety of the durable scheduler. `kill -9` lands while 50 tasks' timers
//! are pending (some reminders already sent, most not), the server stays down
//! until every one of them is overdue, and then it restarts. Each timer must fire
//! exactly once, the overdue ones in the order they were due; a repeating reminder
//! whose downtime spanned several intervals is sent once on restart, not once per
//! missed interval; and the audit hash chain survives the crash.

mod common;

use std::collections::{BTreeSet, HashSet};
use std::time::Duration;

use common::audit_support::{Deployment, EXIT_OK, create_task, eventually, now};
use futures::future::join_all;
use rusqlite::Connection;
use serde_json::json;
use signoff::client::Client;
use signoff::domain::{Event, PrincipalKind, Status, Timestamp};

const AGENT: &str = "agent://acme/deployer";
const REVIEWER: &str = "alice@example.com";
const TASKS: usize = 50;
/// First reminders are due this many seconds after creation, spread over 1..=8.
const REMIND_SPREAD: u64 = 8;
/// The crash comes once every reminder due this early has gone out; the rest
/// (due 4..=8 s after creation) are still pending.
const FIRED_BEFORE_CRASH: u64 = 3;
/// Every fifth task also times out and fails, this long after its reminder.
const TIMEOUT_EVERY: usize = 5;
const TIMEOUT_AFTER_REMINDER: u64 = 2;
/// The repeating reminder: one every 2 s, at most 5.
const REPEAT_EVERY: u64 = 2;
const REPEAT_MAX: u64 = 5;
/// Bounds every wait; a working scheduler never comes near it.
const PATIENCE: Duration = Duration::from_secs(60);

const REMINDER: &str = "intent.reminder";
const TIMED_OUT: &str = "intent.timed_out";

/// One of the 50 tasks and the timers it was given.
struct PlannedTask {
    intent_id: String,
    /// Seconds from creation to its reminder.
    remind_after: u64,
    /// When its single reminder is due.
    remind_at: Timestamp,
    /// When it times out, for every fifth task.
    timeout_at: Option<Timestamp>,
}

impl PlannedTask {
    fn latest_due(&self) -> Timestamp {
        self.timeout_at.unwrap_or(self.remind_at)
    }
}

/// Task `index`: one reminder 1..=8 s after creation (a repeat an hour later is
/// never reached), and for every fifth task a failing timeout after that.
async fn create_planned_task(agent: &Client, index: usize) -> PlannedTask {
    let remind_after = 1 + index as u64 % REMIND_SPREAD;
    let times_out = index.is_multiple_of(TIMEOUT_EVERY);
    let mut lifecycle = json!({
        "remind": {"after_seconds": remind_after, "every_seconds": 3600, "max": 1},
    });
    let timeout_after = remind_after + TIMEOUT_AFTER_REMINDER;
    if times_out {
        lifecycle["timeout"] = json!({"after_seconds": timeout_after, "fallback": "fail"});
    }
    let task = json!({"title": format!("task {index}"), "assignees": [REVIEWER]});
    let created = create_task(agent, task, Some(lifecycle)).await;
    let created_at = created.created_at;
    PlannedTask {
        intent_id: created.intent_id,
        remind_after,
        remind_at: created_at.plus_seconds(remind_after as i64),
        timeout_at: times_out.then(|| created_at.plus_seconds(timeout_after as i64)),
    }
}

// ---------------------------------------------------------------------------
// Reading the database (read-only; safe while the server runs)
// ---------------------------------------------------------------------------

fn count(conn: &Connection, sql: &str, values: impl rusqlite::Params) -> u64 {
    conn.query_row(sql, values, |row| row.get::<_, i64>(0))
        .unwrap_or_else(|err| panic!("{sql}: {err}")) as u64
}

/// A timer as it waits in the `timers` table, or as its event says it was due.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Due {
    at: Timestamp,
    intent_id: String,
    /// `remind` or `timeout`, as the timers table names them.
    kind: String,
}

fn parse_timestamp(text: &str) -> Timestamp {
    Timestamp::parse(text).unwrap_or_else(|err| panic!("a stored timestamp: {err}"))
}

/// The timers still pending (read while the server is down).
fn pending_timers(conn: &Connection) -> Vec<Due> {
    let mut statement = conn
        .prepare("SELECT due_at, intent_id, kind FROM timers ORDER BY due_at")
        .expect("prepare");
    statement
        .query_map([], due_from_row)
        .and_then(Iterator::collect)
        .expect("read the timers")
}

/// A row of (due time, intent id, timer kind).
fn due_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Due> {
    Ok(Due {
        at: parse_timestamp(&row.get::<_, String>(0)?),
        intent_id: row.get(1)?,
        kind: row.get(2)?,
    })
}

/// Reminders and timeouts committed after `cursor`, in commit order, each with
/// the time its timer was due (`due_at` for reminders, `deadline` for timeouts).
fn timers_fired_after(conn: &Connection, cursor: u64) -> Vec<Due> {
    let mut statement = conn
        .prepare(
            "SELECT COALESCE(json_extract(details, '$.due_at'), json_extract(details, '$.deadline')),
                    intent_id,
                    CASE event_type WHEN ?2 THEN 'remind' ELSE 'timeout' END
             FROM events
             WHERE cursor > ?1 AND event_type IN (?2, ?3)
             ORDER BY cursor",
        )
        .expect("prepare");
    statement
        .query_map(
            rusqlite::params![cursor as i64, REMINDER, TIMED_OUT],
            due_from_row,
        )
        .and_then(Iterator::collect)
        .expect("read the fired timers")
}

/// The intents that have had a reminder so far.
fn reminded_intents(conn: &Connection) -> HashSet<String> {
    let mut statement = conn
        .prepare("SELECT DISTINCT intent_id FROM events WHERE event_type = ?1")
        .expect("prepare");
    statement
        .query_map([REMINDER], |row| row.get(0))
        .and_then(Iterator::collect)
        .expect("read the reminders")
}

/// Waits until each of `tasks` has had its reminder.
async fn wait_for_reminders(deployment: &Deployment, tasks: &[&PlannedTask]) {
    eventually("the earliest reminders", PATIENCE, async || {
        let reminded = reminded_intents(&deployment.read_database());
        let waiting = tasks
            .iter()
            .filter(|task| !reminded.contains(&task.intent_id))
            .count();
        match waiting {
            0 => Ok(()),
            _ => Err(format!("{waiting} of {} not reminded yet", tasks.len())),
        }
    })
    .await;
}

/// Waits until the scheduler has caught up: no timer is overdue and no reminder
/// is left to send (so none can come twice later). It does not wait for any
/// particular outcome, so a skipped or doubled timer is reported by the
/// assertions afterwards, not as a timeout.
async fn wait_until_caught_up(deployment: &Deployment) {
    eventually("the scheduler to catch up", PATIENCE, async || {
        let conn = deployment.read_database();
        let overdue = count(
            &conn,
            "SELECT COUNT(*) FROM timers WHERE due_at <= ?1",
            [now().to_string()],
        );
        let reminders = count(
            &conn,
            "SELECT COUNT(*) FROM timers WHERE kind = 'remind'",
            [],
        );
        match (overdue, reminders) {
            (0, 0) => Ok(()),
            _ => Err(format!(
                "{overdue} timers overdue, {reminders} reminders still to send"
            )),
        }
    })
    .await;
}

// ---------------------------------------------------------------------------
// Per-intent histories, through the API
// ---------------------------------------------------------------------------

fn of_type<'a>(events: &'a [Event], event_type: &str) -> Vec<&'a Event> {
    events
        .iter()
        .filter(|event| event.event_type == event_type)
        .collect()
}

fn reminder_numbers(events: &[Event]) -> Vec<u64> {
    of_type(events, REMINDER)
        .iter()
        .map(|event| event.details["reminder_no"].as_u64().expect("reminder_no"))
        .collect()
}

fn due_at(event: &Event) -> Timestamp {
    parse_timestamp(event.details["due_at"].as_str().expect("due_at"))
}

async fn history(client: &Client, intent_id: &str) -> Vec<Event> {
    let events = client.events(intent_id, 0).await.expect("events");
    let seqs: Vec<u64> = events.iter().map(|event| event.seq).collect();
    assert_eq!(
        seqs,
        (1..=events.len() as u64).collect::<Vec<_>>(),
        "{intent_id}: gap-free seq"
    );
    events
}

/// Exactly one reminder (number 1), and for a timing-out task exactly one timeout.
async fn assert_each_timer_fired_once(client: &Client, task: &PlannedTask) {
    let id = &task.intent_id;
    let intent = client.intent(id).await.expect("intent");
    let events = history(client, id).await;
    assert_eq!(
        reminder_numbers(&events),
        vec![1],
        "{id}: one reminder: {events:#?}"
    );
    assert_eq!(intent.remind_count, 1, "{id}: remind_count");
    let timeouts = of_type(&events, TIMED_OUT).len();
    if task.timeout_at.is_some() {
        assert_eq!(timeouts, 1, "{id}: one timeout: {events:#?}");
        assert_eq!(intent.status, Status::TimedOut, "{id}");
    } else {
        assert_eq!(timeouts, 0, "{id}: no timeout: {events:#?}");
        assert_eq!(intent.status, Status::Waiting, "{id}");
    }
}

/// The timers overdue at restart: each fired once after it, and oldest first.
fn assert_overdue_fired_once_in_due_order(
    conn: &Connection,
    last_cursor_before_restart: u64,
    overdue: &[Due],
    restarted_at: Timestamp,
) {
    let fired_overdue: Vec<Due> = timers_fired_after(conn, last_cursor_before_restart)
        .into_iter()
        .filter(|timer| timer.at < restarted_at)
        .collect();
    let fired_set: BTreeSet<&Due> = fired_overdue.iter().collect();
    assert_eq!(
        fired_set.len(),
        fired_overdue.len(),
        "no overdue timer fired twice: {fired_overdue:#?}"
    );
    let expected: BTreeSet<&Due> = overdue.iter().collect();
    let unexpected: Vec<&&Due> = fired_set.difference(&expected).collect();
    let skipped: Vec<&&Due> = expected.difference(&fired_set).collect();
    assert!(
        unexpected.is_empty() && skipped.is_empty(),
        "exactly the timers overdue at restart fired; also fired: {unexpected:#?}; skipped: {skipped:#?}"
    );
    let mut in_due_order = fired_overdue.clone();
    in_due_order.sort_by_key(|timer| timer.at);
    assert_eq!(
        fired_overdue, in_due_order,
        "overdue timers fire in due order"
    );
}

/// The repeating reminder: one catch-up for all the missed intervals, the next
/// a full interval after it went out, and no more than its maximum.
async fn assert_caught_up_once(client: &Client, intent_id: &str, restarted_at: Timestamp) {
    let events = history(client, intent_id).await;
    assert_eq!(
        reminder_numbers(&events),
        (1..=REPEAT_MAX).collect::<Vec<_>>(),
        "reminders numbered once each: {events:#?}"
    );
    assert_eq!(
        client.intent(intent_id).await.expect("intent").remind_count as u64,
        REPEAT_MAX
    );
    let after_restart: Vec<&Event> = of_type(&events, REMINDER)
        .into_iter()
        .filter(|event| event.at >= restarted_at)
        .collect();
    let caught_up = after_restart
        .iter()
        .filter(|event| due_at(event) < restarted_at)
        .count();
    assert_eq!(
        caught_up, 1,
        "one reminder for the whole downtime, not one per missed interval: {events:#?}"
    );
    // The schedule restarts from the catch-up, so the next one is not overdue either.
    let [catch_up, next, ..] = after_restart[..] else {
        panic!("a catch-up and at least one more reminder after the restart: {events:#?}");
    };
    assert!(
        due_at(next) >= catch_up.at.plus_seconds(REPEAT_EVERY as i64),
        "the reminder after the catch-up is due a full interval after it went out: {events:#?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn pending_timers_fire_exactly_once_in_due_order_after_kill_9() {
    let mut deployment = Deployment::start().await;
    let agent = deployment.client(PrincipalKind::Agent, AGENT).await;

    let tasks: Vec<PlannedTask> =
        join_all((0..TASKS).map(|index| create_planned_task(&agent, index))).await;
    let repeating = create_task(
        &agent,
        json!({"title": "repeating", "assignees": [REVIEWER]}),
        Some(json!({
            "remind": {"after_seconds": 1, "every_seconds": REPEAT_EVERY, "max": REPEAT_MAX},
        })),
    )
    .await
    .intent_id;

    // Crash once the earliest reminders have gone out; the later ones are pending.
    let early: Vec<&PlannedTask> = tasks
        .iter()
        .filter(|task| task.remind_after <= FIRED_BEFORE_CRASH)
        .collect();
    wait_for_reminders(&deployment, &early).await;
    deployment.crash();

    let conn = deployment.read_database();
    let last_cursor_before_restart = count(&conn, "SELECT MAX(cursor) FROM events", []);
    let pending = pending_timers(&conn);
    drop(conn);
    let pending_reminders = pending
        .iter()
        .filter(|timer| timer.kind == "remind" && timer.intent_id != repeating)
        .count();
    assert!(
        pending_reminders > 0,
        "the crash came while some tasks' reminders were still pending"
    );

    // Stay down until every planned timer is overdue.
    let all_overdue = tasks
        .iter()
        .map(PlannedTask::latest_due)
        .max()
        .expect("tasks")
        .plus_seconds(1);
    // `seconds_until` truncates, hence the extra second.
    let wait = now().seconds_until(&all_overdue).max(0) as u64 + 1;
    tokio::time::sleep(Duration::from_secs(wait)).await;
    let restarted_at = now();
    let overdue: Vec<Due> = pending
        .into_iter()
        .filter(|timer| timer.at < restarted_at)
        .collect();
    let repeating_was_due = overdue
        .iter()
        .find(|timer| timer.intent_id == repeating)
        .expect("the repeating reminder was pending across the crash")
        .at;
    assert!(
        repeating_was_due.plus_seconds(2 * REPEAT_EVERY as i64) < restarted_at,
        "the downtime spans several of the repeating reminder's intervals"
    );
    assert!(
        overdue.len() > TASKS / 2,
        "most timers were overdue at restart ({})",
        overdue.len()
    );
    deployment.start_again();

    wait_until_caught_up(&deployment).await;

    // Every task: its reminder and its timeout exactly once.
    for task in &tasks {
        assert_each_timer_fired_once(&agent, task).await;
    }
    assert_overdue_fired_once_in_due_order(
        &deployment.read_database(),
        last_cursor_before_restart,
        &overdue,
        restarted_at,
    );

    assert_caught_up_once(&agent, &repeating, restarted_at).await;

    // The hash chain survived kill -9.
    deployment.audit(&["verify"]).expect_code(EXIT_OK);
}
