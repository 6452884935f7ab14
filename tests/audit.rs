//! The tamper-evident audit log, end to end. A real `signoff serve` records a
//! realistic history; `signoff audit verify` must accept it untouched and name the
//! first broken link after each change an attacker with write access to the
//! database file could make; `signoff audit export` must answer an auditor's
//! questions (who was asked, who saw it, who decided what, when, with what input,
//! and what the system did on its own) as JSON lines and as CSV.

mod common;

use std::path::Path;
use std::time::Duration;

use common::audit_support::{
    Deployment, EXIT_BROKEN, EXIT_OK, EXIT_USAGE, create_task, eventually, now,
};
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::{Map, Value, json};
use signoff::domain::audit::{AuditRecord, GENESIS, event_hash};
use signoff::domain::{PrincipalKind, Timestamp};
use signoff::store::audit::AuditFilter;
use signoff::store::sqlite::AuditReader;
use time::format_description::well_known::Rfc3339;

const AGENT: &str = "agent://acme/deployer";
const ALICE: &str = "alice@example.com";
const BOB: &str = "bob@example.com";
const CAROL: &str = "carol@example.com";
/// The reviewer's input, with a comma, quotes and a line break: it must come
/// through JSON and CSV quoting unchanged.
const COMMENT: &str = "Ship it, but \"carefully\":\nafter the 17:00 freeze";
/// Bounds the wait for timers due within 3 s; only a hang ever reaches it.
const PATIENCE: Duration = Duration::from_secs(30);
const CSV_HEADER: [&str; 11] = [
    "cursor",
    "at",
    "intent_id",
    "seq",
    "event_type",
    "status",
    "actor",
    "actor_kind",
    "summary",
    "details",
    "hash",
];

// ---------------------------------------------------------------------------
// A recorded history
// ---------------------------------------------------------------------------

/// A deployment whose log holds two histories: a task a person viewed and then
/// decided, and a task nobody answered (reminded, escalated, then timed out).
struct RecordedLog {
    deployment: Deployment,
    decided: String,
    timed_out: String,
    /// The decision was made between these instants, by the test's clock.
    decided_within: (Timestamp, Timestamp),
}

async fn record_log() -> RecordedLog {
    let deployment = Deployment::start().await;
    let agent = deployment.client(PrincipalKind::Agent, AGENT).await;
    let alice = deployment.client(PrincipalKind::Reviewer, ALICE).await;

    let decided = create_task(
        &agent,
        json!({"title": "Deploy api 2.3.0", "assignees": [ALICE]}),
        None,
    )
    .await
    .intent_id;
    alice
        .mark_viewed(&decided)
        .await
        .expect("alice opens the task");
    let before = now();
    alice
        .decide(&decided, "approved", Some(COMMENT), Map::new())
        .await
        .expect("alice decides");
    let after = now();

    let timed_out = create_task(
        &agent,
        json!({"title": "Rotate the TLS keys", "assignees": [BOB]}),
        Some(json!({
            "remind": {"after_seconds": 1, "max": 1},
            "escalate": [{"after_seconds": 2, "to": CAROL}],
            "timeout": {"after_seconds": 3, "fallback": {"outcome": "rejected"}},
        })),
    )
    .await
    .intent_id;
    eventually("the unanswered task to time out", PATIENCE, async || {
        let intent = agent
            .intent(&timed_out)
            .await
            .map_err(|err| err.to_string())?;
        if intent.status.is_terminal() {
            Ok(())
        } else {
            Err(format!("status {:?}", intent.status))
        }
    })
    .await;

    RecordedLog {
        deployment,
        decided,
        timed_out,
        decided_within: (before, after),
    }
}

/// A recorded log with the server stopped, checked intact before the test tampers with it.
async fn stopped_intact_log() -> RecordedLog {
    let mut log = record_log().await;
    log.deployment.stop();
    verify_ok(&log.deployment, &[]);
    log
}

// ---------------------------------------------------------------------------
// The stored rows, as an attacker with the database file sees them
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
struct StoredRow {
    // SQLite integers are signed.
    cursor: i64,
    intent_id: String,
    seq: i64,
    hash: String,
}

const ROW_COLUMNS: &str = "cursor, intent_id, seq, hash";

fn stored_row(row: &rusqlite::Row) -> rusqlite::Result<StoredRow> {
    Ok(StoredRow {
        cursor: row.get(0)?,
        intent_id: row.get(1)?,
        seq: row.get(2)?,
        hash: row.get(3)?,
    })
}

fn stored_rows(conn: &Connection) -> Vec<StoredRow> {
    let mut statement = conn
        .prepare(&format!("SELECT {ROW_COLUMNS} FROM events ORDER BY cursor"))
        .expect("prepare");
    statement
        .query_map([], stored_row)
        .and_then(Iterator::collect)
        .expect("read the events")
}

/// The single event of `event_type` in the intent's history.
fn row_of(conn: &Connection, intent_id: &str, event_type: &str) -> StoredRow {
    conn.query_row(
        &format!("SELECT {ROW_COLUMNS} FROM events WHERE intent_id = ?1 AND event_type = ?2"),
        params![intent_id, event_type],
        stored_row,
    )
    .unwrap_or_else(|err| panic!("one {event_type} event for {intent_id}: {err}"))
}

/// The event that follows `cursor` in commit order.
fn row_after(conn: &Connection, cursor: i64) -> StoredRow {
    conn.query_row(
        &format!("SELECT {ROW_COLUMNS} FROM events WHERE cursor > ?1 ORDER BY cursor LIMIT 1"),
        [cursor],
        stored_row,
    )
    .optional()
    .expect("read the events")
    .unwrap_or_else(|| panic!("an event after cursor {cursor}"))
}

fn newest_row(conn: &Connection) -> StoredRow {
    stored_rows(conn).pop().expect("the log is not empty")
}

fn count_events(conn: &Connection, condition: &str, values: impl rusqlite::Params) -> usize {
    conn.query_row(
        &format!("SELECT COUNT(*) FROM events WHERE {condition}"),
        values,
        |row| row.get::<_, i64>(0),
    )
    .expect("count events") as usize
}

fn execute(conn: &Connection, sql: &str, values: impl rusqlite::Params) {
    let changed = conn.execute(sql, values).expect(sql);
    assert_eq!(changed, 1, "exactly one row changed by {sql}");
}

// ---------------------------------------------------------------------------
// `signoff audit verify`
// ---------------------------------------------------------------------------

/// What a successful `verify` reported.
#[derive(Debug, PartialEq)]
struct Verified {
    events: usize,
    head_cursor: i64,
    head_hash: String,
}

/// Runs `verify` in text and in JSON mode, expects success from both, and
/// checks that they agree.
fn verify_ok(deployment: &Deployment, extra_args: &[&str]) -> Verified {
    let text_args = [&["verify"], extra_args].concat();
    let text = deployment.audit(&text_args);
    text.expect_code(EXIT_OK);
    let mut lines = text.stdout.lines();
    let events = lines
        .next()
        .and_then(|line| line.strip_prefix("ok: "))
        .and_then(|line| line.strip_suffix(" events, every link verified"))
        .and_then(|count| count.parse().ok())
        .unwrap_or_else(|| panic!("`ok: N events, every link verified`:\n{}", text.stdout));
    let (head_cursor, head_hash) = lines
        .next()
        .and_then(|line| line.strip_prefix("head: cursor "))
        .and_then(|line| line.split_once(", hash "))
        .and_then(|(cursor, hash)| Some((cursor.parse().ok()?, hash.to_string())))
        .unwrap_or_else(|| panic!("`head: cursor C, hash H`:\n{}", text.stdout));
    let verified = Verified {
        events,
        head_cursor,
        head_hash,
    };

    let json_args = [&["verify", "--json"], extra_args].concat();
    let report = deployment.audit(&json_args).expect_code(EXIT_OK).json();
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(
        Verified {
            events: report["events"].as_u64().expect("events") as usize,
            head_cursor: report["head"]["cursor"].as_i64().expect("head cursor"),
            head_hash: report["head"]["hash"]
                .as_str()
                .expect("head hash")
                .to_string(),
        },
        verified,
        "text and JSON verdicts agree"
    );
    verified
}

/// Expects `verify` to fail at `row` in text and JSON mode; returns the reason it gave.
fn assert_broken_at(deployment: &Deployment, row: &StoredRow) -> String {
    let text = deployment.audit(&["verify"]);
    text.expect_code(EXIT_BROKEN);
    let expected = format!(
        "audit chain broken at cursor {} (intent {}, seq {}): ",
        row.cursor, row.intent_id, row.seq
    );
    let message = text.stderr.trim_end();
    assert!(
        message.starts_with(&expected) && message.lines().count() == 1,
        "expected one line starting `{expected}`, got:\n{message}"
    );
    assert!(
        !text.stdout.contains("ok:"),
        "a broken log is never reported ok:\n{}",
        text.stdout
    );

    let report = deployment
        .audit(&["verify", "--json"])
        .expect_code(EXIT_BROKEN)
        .json();
    assert_eq!(report["ok"], false, "{report}");
    let broken = &report["broken"];
    assert_eq!(
        (&broken["cursor"], &broken["intent_id"], &broken["seq"]),
        (&json!(row.cursor), &json!(row.intent_id), &json!(row.seq)),
        "{report}"
    );
    let reason = broken["reason"].as_str().unwrap_or_default().to_string();
    assert!(!reason.is_empty(), "the reason is given: {report}");
    assert!(
        message.ends_with(&reason),
        "text and JSON give the same reason"
    );
    reason
}

#[tokio::test(flavor = "multi_thread")]
async fn an_untampered_log_verifies_while_the_server_runs_and_after_it_stops() {
    let mut log = record_log().await;
    let conn = log.deployment.read_database();
    let newest = newest_row(&conn);
    let expected = Verified {
        events: count_events(&conn, "TRUE", []),
        head_cursor: newest.cursor,
        head_hash: newest.hash,
    };
    drop(conn);

    assert_eq!(
        verify_ok(&log.deployment, &[]),
        expected,
        "verified while the server runs"
    );
    assert_eq!(expected.head_hash.len(), 64, "a SHA-256 in hex");
    assert_ne!(expected.head_hash, GENESIS);

    log.deployment.stop();
    assert_eq!(
        verify_ok(&log.deployment, &[]),
        expected,
        "verified after a clean stop"
    );
    // The head recorded earlier is still there, so --expect-head accepts it.
    verify_ok(&log.deployment, &["--expect-head", &expected.head_hash]);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_edited_decision_is_named_by_its_cursor() {
    let log = stopped_intact_log().await;
    let conn = log.deployment.database();
    let decision = row_of(&conn, &log.decided, "intent.completed");
    // Rewrite history: alice "rejected" rather than approved.
    execute(
        &conn,
        "UPDATE events SET details = replace(details, '\"approved\"', '\"rejected\"')
         WHERE cursor = ?1 AND details LIKE '%\"approved\"%'",
        [decision.cursor],
    );
    assert_broken_at(&log.deployment, &decision);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deleted_event_breaks_the_chain_at_the_next_one() {
    let log = stopped_intact_log().await;
    let conn = log.deployment.database();
    // Hide that alice saw the task before deciding it.
    let viewed = row_of(&conn, &log.decided, "intent.viewed");
    let next = row_after(&conn, viewed.cursor);
    execute(
        &conn,
        "DELETE FROM events WHERE cursor = ?1",
        [viewed.cursor],
    );
    assert_broken_at(&log.deployment, &next);
}

#[tokio::test(flavor = "multi_thread")]
async fn swapped_events_break_the_chain_at_the_earlier_position() {
    let log = stopped_intact_log().await;
    let conn = log.deployment.database();
    // Make it look as if alice only looked at the task after deciding it.
    let viewed = row_of(&conn, &log.decided, "intent.viewed");
    let decision = row_of(&conn, &log.decided, "intent.completed");
    // `cursor` is the primary key, so the swap goes through a free value.
    const PARKED: i64 = -1;
    execute(
        &conn,
        "UPDATE events SET cursor = ?1 WHERE cursor = ?2",
        params![PARKED, viewed.cursor],
    );
    execute(
        &conn,
        "UPDATE events SET cursor = ?1 WHERE cursor = ?2",
        params![viewed.cursor, decision.cursor],
    );
    execute(
        &conn,
        "UPDATE events SET cursor = ?1 WHERE cursor = ?2",
        params![decision.cursor, PARKED],
    );
    let decision_moved_up = StoredRow {
        cursor: viewed.cursor,
        ..decision
    };
    assert_broken_at(&log.deployment, &decision_moved_up);
}

#[tokio::test(flavor = "multi_thread")]
async fn removing_the_newest_event_is_caught_by_the_expected_head() {
    let log = stopped_intact_log().await;
    let before = verify_ok(&log.deployment, &[]);
    let conn = log.deployment.database();
    let newest = newest_row(&conn);
    assert_eq!(newest.cursor, before.head_cursor);
    execute(
        &conn,
        "DELETE FROM events WHERE cursor = ?1",
        [newest.cursor],
    );

    // The chain alone cannot tell: what is left is a valid, shorter log.
    let after = verify_ok(&log.deployment, &[]);
    assert_eq!(after.events, before.events - 1);
    assert_eq!(after.head_cursor, newest_row(&conn).cursor);
    // A head that is still in the log passes...
    verify_ok(&log.deployment, &["--expect-head", &after.head_hash]);

    // ...but the head recorded before the removal is gone.
    let text = log
        .deployment
        .audit(&["verify", "--expect-head", &before.head_hash]);
    text.expect_code(EXIT_BROKEN);
    assert!(
        text.stderr.trim_end().lines().count() == 1 && text.stderr.contains(&before.head_hash),
        "one line naming the missing head:\n{}",
        text.stderr
    );
    let report = log
        .deployment
        .audit(&["verify", "--json", "--expect-head", &before.head_hash])
        .expect_code(EXIT_BROKEN)
        .json();
    assert_eq!(report["ok"], false, "{report}");
    assert!(
        report["broken"]["reason"]
            .as_str()
            .is_some_and(|reason| reason.contains(&before.head_hash)),
        "{report}"
    );
}

fn read_column(conn: &Connection, column: &str, cursor: i64) -> String {
    conn.query_row(
        &format!("SELECT {column} FROM events WHERE cursor = ?1"),
        [cursor],
        |row| row.get(0),
    )
    .unwrap_or_else(|err| panic!("{column} at cursor {cursor}: {err}"))
}

fn write_column(conn: &Connection, column: &str, cursor: i64, value: &str) {
    execute(
        conn,
        &format!("UPDATE events SET {column} = ?1 WHERE cursor = ?2"),
        params![value, cursor],
    );
}

/// An edit that leaves a row unreadable is still tampering: `verify` must name
/// the row as a broken link (exit 1), not fail as if the database were broken (exit 3).
#[tokio::test(flavor = "multi_thread")]
async fn a_row_damaged_beyond_reading_is_a_broken_link_at_its_cursor() {
    let log = stopped_intact_log().await;
    let conn = log.deployment.database();
    let decision = row_of(&conn, &log.decided, "intent.completed");
    // Each damage on its own, undone before the next: JSON edited by hand, a
    // status no signoff writes, a time that is not a time.
    let damages = [
        ("details", r#"{"outcome": rejected}"#),
        ("status", "APPROVED"),
        ("at", "yesterday"),
    ];
    for (column, damage) in damages {
        let original = read_column(&conn, column, decision.cursor);
        write_column(&conn, column, decision.cursor, damage);
        let run = log.deployment.audit(&["verify"]);
        assert_eq!(
            run.code,
            Some(EXIT_BROKEN),
            "with {column} = {damage:?} at cursor {}, `audit verify` must report \
             `audit chain broken at cursor {} ...` and exit 1; it exited {:?} with: {}",
            decision.cursor,
            decision.cursor,
            run.code,
            run.stderr.trim_end()
        );
        assert_broken_at(&log.deployment, &decision);
        write_column(&conn, column, decision.cursor, &original);
        verify_ok(&log.deployment, &[]);
    }
}

/// Every stored event, read the way `verify` reads them.
fn audit_records(db: &Path) -> Vec<AuditRecord> {
    let mut records = Vec::new();
    AuditReader::open(db)
        .expect("open the log")
        .for_each(&AuditFilter::default(), |record| {
            records.push(record);
            Ok(())
        })
        .expect("read the log");
    records
}

#[tokio::test(flavor = "multi_thread")]
async fn a_removal_hidden_by_rehashing_the_chain_is_caught_by_the_seq_gap() {
    let log = stopped_intact_log().await;
    let conn = log.deployment.database();
    let viewed = row_of(&conn, &log.decided, "intent.viewed");
    let decision = row_of(&conn, &log.decided, "intent.completed");
    assert_eq!(
        decision.seq,
        viewed.seq + 1,
        "the decision follows the view"
    );
    execute(
        &conn,
        "DELETE FROM events WHERE cursor = ?1",
        [viewed.cursor],
    );
    // A careful attacker recomputes every hash, so each link holds again.
    let mut previous = GENESIS.to_string();
    for record in audit_records(&log.deployment.db) {
        let hash = event_hash(&previous, record.cursor, &record.event);
        execute(
            &conn,
            "UPDATE events SET hash = ?1 WHERE cursor = ?2",
            params![hash, i64::try_from(record.cursor).expect("cursor fits")],
        );
        previous = hash;
    }

    let reason = assert_broken_at(&log.deployment, &decision);
    let gap = format!("seq {} to seq {}", viewed.seq - 1, decision.seq);
    assert!(
        reason.contains(&gap),
        "the reason names the gap ({gap}), not a hash: {reason}"
    );
}

// ---------------------------------------------------------------------------
// `signoff audit export`
// ---------------------------------------------------------------------------

/// `signoff audit export <args>` in JSON lines, one object per event.
fn export_jsonl(deployment: &Deployment, args: &[&str]) -> Vec<Value> {
    let run = deployment.audit(&[&["export"], args].concat());
    run.expect_code(EXIT_OK);
    run.stdout
        .lines()
        .map(|line| {
            serde_json::from_str(line).unwrap_or_else(|err| panic!("not JSON ({err}): {line}"))
        })
        .collect()
}

/// The single exported event of `event_type` in the intent's history.
fn exported<'a>(events: &'a [Value], intent_id: &str, event_type: &str) -> &'a Value {
    let matching: Vec<&Value> = events
        .iter()
        .filter(|event| event["intent_id"] == intent_id && event["event_type"] == event_type)
        .collect();
    assert_eq!(
        matching.len(),
        1,
        "one {event_type} for {intent_id} in {events:#?}"
    );
    matching[0]
}

fn timestamp(value: &Value) -> Timestamp {
    Timestamp::parse(value.as_str().expect("a timestamp string")).expect("RFC 3339")
}

fn summary(event: &Value) -> &str {
    event["summary"].as_str().expect("summary")
}

#[tokio::test(flavor = "multi_thread")]
async fn the_export_says_who_was_asked_who_viewed_who_decided_when_and_with_what_input() {
    let log = record_log().await;
    // Exported while the server runs: the export only reads.
    let events = export_jsonl(&log.deployment, &[]);
    let stored = stored_rows(&log.deployment.read_database());
    let exported_rows: Vec<(i64, String)> = events
        .iter()
        .map(|event| {
            (
                event["cursor"].as_i64().expect("cursor"),
                event["hash"].as_str().expect("hash").to_string(),
            )
        })
        .collect();
    let stored_rows: Vec<(i64, String)> = stored
        .into_iter()
        .map(|row| (row.cursor, row.hash))
        .collect();
    assert_eq!(
        exported_rows, stored_rows,
        "every stored event, in commit order, with its chain hash"
    );

    // The agent asked for a decision, and alice was asked.
    let created = exported(&events, &log.decided, "intent.created");
    assert_eq!(
        (&created["actor"], &created["actor_kind"]),
        (&json!(AGENT), &json!("agent"))
    );
    let asked = exported(&events, &log.decided, "intent.human_task_assigned");
    assert_eq!(summary(asked), format!("asked {ALICE}"));

    // Alice opened it before she decided.
    let viewed = exported(&events, &log.decided, "intent.viewed");
    assert_eq!(
        (&viewed["actor"], &viewed["actor_kind"]),
        (&json!(ALICE), &json!("person"))
    );
    assert_eq!(summary(viewed), format!("viewed by {ALICE}"));

    // Who decided what, when and with what input.
    let decision = exported(&events, &log.decided, "intent.completed");
    assert!(viewed["cursor"].as_u64() < decision["cursor"].as_u64());
    assert_eq!(
        (
            &decision["actor"],
            &decision["actor_kind"],
            &decision["status"]
        ),
        (&json!(ALICE), &json!("person"), &json!("COMPLETED"))
    );
    assert_eq!(
        summary(decision),
        format!("completed: {ALICE} decided approved via api")
    );
    assert_eq!(decision["details"]["result"]["outcome"], "approved");
    assert_eq!(decision["details"]["result"]["comment"], COMMENT);
    assert_eq!(decision["details"]["decided_by"], ALICE);
    let (before, after) = log.decided_within;
    let decided_at = timestamp(&decision["at"]);
    assert!(
        before <= decided_at && decided_at <= after,
        "decided at {decided_at}, between {before} and {after}"
    );

    // The unanswered task: asked bob, reminded him, escalated to carol, timed out.
    let asked = exported(&events, &log.timed_out, "intent.human_task_assigned");
    assert_eq!(summary(asked), format!("asked {BOB}"));
    let reminder = exported(&events, &log.timed_out, "intent.reminder");
    assert_eq!(summary(reminder), format!("reminder 1 to {BOB}"));
    let escalated = exported(&events, &log.timed_out, "intent.escalated");
    assert_eq!(
        summary(escalated),
        format!("escalated (stage 1) from {BOB} to {CAROL}")
    );
    let ending = exported(&events, &log.timed_out, "intent.completed");
    assert_eq!(
        (&ending["actor"], &ending["actor_kind"]),
        (&json!("system:timeout"), &json!("system")),
        "a timeout is the system's decision: {ending}"
    );
    assert_eq!(ending["details"]["decided_by"], "system:timeout");
    assert_eq!(ending["details"]["result"]["outcome"], "rejected");
    let said = summary(ending);
    assert!(
        said.contains("by the system (system:timeout)") && said.contains("no person decided"),
        "{said}"
    );
    // Nobody acted on the unanswered task, so no person appears in its history.
    for event in events
        .iter()
        .filter(|event| event["intent_id"] == log.timed_out)
    {
        assert_ne!(event["actor_kind"], "person", "{event}");
    }
    for event in &events {
        let actor = event["actor"].as_str().expect("actor");
        if actor.starts_with("system:") {
            assert_eq!(event["actor_kind"], "system", "{event}");
        }
    }
}

/// Parses RFC 4180 CSV strictly: a quote may only open a field, and a closed
/// quoted field must end at a comma or a line break.
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut records = Vec::new();
    let mut record = Vec::new();
    let mut field = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if field.is_empty() => loop {
                match chars.next() {
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    Some('"') => {
                        assert!(
                            matches!(chars.peek(), None | Some(',' | '\n' | '\r')),
                            "text after a closing quote in field {field:?}"
                        );
                        break;
                    }
                    Some(other) => field.push(other),
                    None => panic!("unterminated quoted field {field:?}"),
                }
            },
            '"' => panic!("a bare quote inside the unquoted field {field:?}"),
            ',' => record.push(std::mem::take(&mut field)),
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' => {
                record.push(std::mem::take(&mut field));
                records.push(std::mem::take(&mut record));
            }
            other => field.push(other),
        }
    }
    if !field.is_empty() || !record.is_empty() {
        record.push(field);
        records.push(record);
    }
    records
}

/// A JSON lines field as the CSV export writes it.
fn as_csv_text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_csv_export_parses_back_to_the_same_events() {
    let log = record_log().await;
    let csv_path = log.deployment.home.path().join("audit.csv");
    let csv_arg = csv_path.to_str().expect("UTF-8 temp path");
    let run = log
        .deployment
        .audit(&["export", "--format", "csv", "-o", csv_arg]);
    run.expect_code(EXIT_OK);
    assert!(run.stdout.is_empty(), "-o writes to the file only");
    let text = std::fs::read_to_string(&csv_path).expect("the CSV file");
    let jsonl = export_jsonl(&log.deployment, &[]);

    let records = parse_csv(&text);
    let (header, rows) = records.split_first().expect("a header");
    assert_eq!(header, &CSV_HEADER, "the header");
    assert_eq!(rows.len(), jsonl.len(), "one row per event");
    // The comment's quotes are escaped once by JSON, then doubled by CSV.
    assert!(
        text.contains(r#"\""carefully\"""#),
        "quotes inside a field are doubled:\n{text}"
    );
    for (row, event) in rows.iter().zip(&jsonl) {
        assert_eq!(row.len(), CSV_HEADER.len(), "{row:?}");
        for (column, value) in CSV_HEADER.iter().zip(row) {
            if *column == "details" {
                let details: Value = serde_json::from_str(value).expect("details is JSON");
                assert_eq!(details, event["details"], "details of {event}");
            } else {
                assert_eq!(value, &as_csv_text(&event[*column]), "{column} of {event}");
            }
        }
    }
    let decision = rows
        .iter()
        .find(|row| row[2] == log.decided && row[4] == "intent.completed")
        .expect("the decision row");
    let details: Value = serde_json::from_str(&decision[9]).expect("details is JSON");
    assert_eq!(
        details["result"]["comment"], COMMENT,
        "quotes and line break survive"
    );
}

/// `time` in another offset than UTC, so `--since` must compare instants, not text.
fn in_central_european_summer_time(at: Timestamp) -> String {
    at.datetime()
        .to_offset(time::macros::offset!(+2))
        .format(&Rfc3339)
        .expect("format")
}

fn intent_ids(events: &[Value]) -> Vec<&str> {
    events
        .iter()
        .map(|event| event["intent_id"].as_str().expect("intent_id"))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_export_filters_by_intent_and_by_time() {
    let log = record_log().await;
    let conn = log.deployment.read_database();
    let all = export_jsonl(&log.deployment, &[]);

    let decided_only = export_jsonl(&log.deployment, &["--intent", &log.decided]);
    assert!(!decided_only.is_empty());
    assert!(
        intent_ids(&decided_only)
            .iter()
            .all(|id| *id == log.decided)
    );
    assert_eq!(
        decided_only.len(),
        count_events(&conn, "intent_id = ?1", [&log.decided])
    );

    // From the decision on: the decision and everything after it, nothing before.
    let decision = exported(&all, &log.decided, "intent.completed");
    let decided_at = timestamp(&decision["at"]);
    let since = in_central_european_summer_time(decided_at);
    let recent = export_jsonl(&log.deployment, &["--since", &since]);
    assert!(
        recent
            .iter()
            .all(|event| timestamp(&event["at"]) >= decided_at),
        "nothing before {since}"
    );
    assert_eq!(
        recent.len(),
        count_events(&conn, "at >= ?1", [decided_at.to_string()])
    );
    assert!(recent.contains(decision), "the decision itself is included");
    assert!(recent.len() < all.len(), "older events were left out");

    let combined = export_jsonl(
        &log.deployment,
        &["--intent", &log.decided, "--since", &since],
    );
    assert_eq!(combined, vec![decision.clone()], "both filters apply");

    assert_eq!(
        export_jsonl(&log.deployment, &["--since", "24h"]),
        all,
        "a duration counts back from now"
    );
    let future = in_central_european_summer_time(now().plus_seconds(3600));
    assert!(export_jsonl(&log.deployment, &["--since", &future]).is_empty());
    // With --since, an intent with nothing recent is not an error.
    assert!(
        export_jsonl(
            &log.deployment,
            &["--intent", &log.decided, "--since", &future]
        )
        .is_empty()
    );
}

/// A duration reaching back past the first representable time means "since the
/// beginning": the whole log, never a silently empty export.
#[tokio::test(flavor = "multi_thread")]
async fn a_since_older_than_the_calendar_is_not_a_silently_empty_export() {
    let deployment = Deployment::start().await;
    let agent = deployment.client(PrincipalKind::Agent, AGENT).await;
    create_task(
        &agent,
        json!({"title": "Deploy api 2.3.0", "assignees": [ALICE]}),
        None,
    )
    .await;
    let all = export_jsonl(&deployment, &[]);
    assert!(!all.is_empty());
    // About 11,000 years: before the year 1, the earliest time signoff stores.
    let run = deployment.audit(&["export", "--since", "4000000d"]);
    assert_eq!(run.code, Some(EXIT_OK), "{}", run.stderr);
    assert_eq!(
        run.stdout.lines().count(),
        all.len(),
        "a --since before the earliest storable time means everything, not `since now`"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_audit_inputs_get_clear_errors_and_the_right_exit_codes() {
    let deployment = Deployment::start().await;
    // A fresh log: nothing to verify, and that is fine.
    let empty = verify_ok(&deployment, &[]);
    assert_eq!(
        (empty.events, empty.head_cursor, empty.head_hash.as_str()),
        (0, 0, GENESIS)
    );

    let run = deployment.audit(&["export", "--format", "xml"]);
    run.expect_code(EXIT_USAGE);
    assert!(run.stderr.contains("xml"), "{}", run.stderr);
    let run = deployment.audit(&["verify", "--no-such-flag"]);
    run.expect_code(EXIT_USAGE);
    assert!(run.stderr.contains("--no-such-flag"), "{}", run.stderr);

    let message = deployment
        .audit(&["export", "--since", "yesterday"])
        .expect_one_line_error()
        .to_string();
    assert!(
        message.contains("--since") && message.contains("yesterday"),
        "{message}"
    );

    let message = deployment
        .audit(&["export", "--intent", "no-such-intent"])
        .expect_one_line_error()
        .to_string();
    assert!(message.contains("no-such-intent"), "{message}");

    let nowhere = deployment.home.path().join("no/such/dir/audit.csv");
    let message = deployment
        .audit(&["export", "-o", nowhere.to_str().expect("UTF-8")])
        .expect_one_line_error()
        .to_string();
    assert!(message.contains("audit.csv"), "{message}");

    let missing = deployment.home.path().join("missing.db");
    let missing_arg = missing.to_str().expect("UTF-8 temp path");
    for command in [&["audit", "verify"][..], &["audit", "export"][..]] {
        let run = deployment.run_cli(&[command, &["--db", missing_arg]].concat());
        let message = run.expect_one_line_error();
        assert!(
            message.contains(&format!("there is no database at {missing_arg}")),
            "{message}"
        );
    }
    assert!(!missing.exists(), "reading never creates a database");
}
