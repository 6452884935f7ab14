//! The tamper-evident event log. Every event stores
//! `sha256(previous event's hash, "\n", this event as canonical JSON)`, in the
//! global commit order. Editing, removing or reordering any stored event breaks
//! the chain from that point on, and `verify` names the first place it breaks.

use std::collections::HashMap;

use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::event::Event;
use super::intent::{Status, WaitingReason};
use super::time::Timestamp;

/// The hash before the first event.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The event at `cursor` as the chain hashes it: compact JSON with sorted keys,
/// so it does not depend on how the event is stored. The fields are declared in
/// key order, so writing this struct gives the same bytes as the sorted JSON
/// value, without building that value (and copying the details) first.
#[derive(Serialize)]
struct CanonicalEvent<'a> {
    actor: &'a str,
    at: Timestamp,
    cursor: u64,
    details: &'a Value,
    event_type: &'a str,
    intent_id: &'a str,
    seq: u64,
    status: Status,
    waiting_reason: Option<WaitingReason>,
}

impl<'a> CanonicalEvent<'a> {
    fn of(cursor: u64, event: &'a Event) -> Self {
        CanonicalEvent {
            actor: &event.actor,
            at: event.at,
            cursor,
            details: &event.details,
            event_type: &event.event_type,
            intent_id: &event.intent_id,
            seq: event.seq,
            status: event.status,
            waiting_reason: event.waiting_reason,
        }
    }
}

/// The canonical form as a JSON value, for exports that add fields to it.
pub fn canonical(cursor: u64, event: &Event) -> Value {
    // Strings, numbers and a JSON value always convert; `Null` is unreachable.
    serde_json::to_value(CanonicalEvent::of(cursor, event)).unwrap_or(Value::Null)
}

/// Feeds what is written straight into the hash.
struct HashWriter(Sha256);

impl std::io::Write for HashWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.update(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The hash of the event at `cursor`, following `previous`.
pub fn event_hash(previous: &str, cursor: u64, event: &Event) -> String {
    let mut hasher = HashWriter(Sha256::new());
    hasher.0.update(previous.as_bytes());
    hasher.0.update(b"\n");
    // Serializing borrowed strings, numbers and a JSON value into a writer that
    // cannot fail cannot fail either.
    let _ = serde_json::to_writer(&mut hasher, &CanonicalEvent::of(cursor, event));
    hex::encode(hasher.0.finalize())
}

/// One stored event, as the audit reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditRecord {
    pub cursor: u64,
    pub event: Event,
    pub hash: String,
}

/// Where and why the log stops being trustworthy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokenLink {
    pub cursor: u64,
    pub intent_id: String,
    pub seq: u64,
    pub reason: String,
}

/// What a successful verification covered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedLog {
    pub events: u64,
    /// The newest event's cursor and hash. Keeping a copy elsewhere also detects
    /// the one change the chain alone cannot: removing the newest events.
    pub head: Option<(u64, String)>,
}

/// Checks the log one event at a time, in cursor order, so a log larger than
/// memory can be verified: every hash link, and that each intent's events are
/// numbered 1, 2, 3... without gaps.
#[derive(Debug, Clone)]
pub struct Verifier {
    previous: String,
    last_seq: HashMap<String, u64>,
    verified: VerifiedLog,
}

impl Default for Verifier {
    fn default() -> Self {
        Self {
            previous: GENESIS.to_string(),
            last_seq: HashMap::new(),
            verified: VerifiedLog {
                events: 0,
                head: None,
            },
        }
    }
}

impl Verifier {
    pub fn check(&mut self, record: &AuditRecord) -> Result<(), BrokenLink> {
        let broken = |reason: String| BrokenLink {
            cursor: record.cursor,
            intent_id: record.event.intent_id.clone(),
            seq: record.event.seq,
            reason,
        };
        let expected = event_hash(&self.previous, record.cursor, &record.event);
        if expected != record.hash {
            return Err(broken(
                "its hash does not follow from the previous event: this event, or one before it, was edited, removed or reordered"
                    .to_string(),
            ));
        }
        let seen = self
            .last_seq
            .entry(record.event.intent_id.clone())
            .or_insert(0);
        if record.event.seq != *seen + 1 {
            return Err(broken(format!(
                "the intent's events jump from seq {} to seq {}: events were removed or reordered",
                seen, record.event.seq
            )));
        }
        *seen = record.event.seq;
        self.previous = record.hash.clone();
        self.verified.events += 1;
        self.verified.head = Some((record.cursor, record.hash.clone()));
        Ok(())
    }

    pub fn finish(self) -> VerifiedLog {
        self.verified
    }
}

/// Who acted, as far as the audit is concerned. A timeout's decision is the
/// system's, never a person's, whatever outcome it records.
pub fn actor_kind(actor: &str) -> &'static str {
    if super::lifecycle::is_system_actor(actor) {
        "system"
    } else if actor.starts_with("agent://") {
        "agent"
    } else {
        "person"
    }
}

fn list(details: &serde_json::Value, key: &str) -> String {
    match details.get(key) {
        Some(serde_json::Value::Array(items)) if items.is_empty() => "admins only".to_string(),
        Some(serde_json::Value::Array(items)) => items
            .iter()
            .map(|item| item.as_str().unwrap_or("?"))
            .collect::<Vec<_>>()
            .join(", "),
        _ => "?".to_string(),
    }
}

fn text<'a>(details: &'a serde_json::Value, pointer: &str) -> &'a str {
    details
        .pointer(pointer)
        .and_then(|v| v.as_str())
        .unwrap_or("?")
}

/// One line saying what an event means for the audit: who was asked, notified,
/// who viewed, who decided what and how.
pub fn describe(event: &Event) -> String {
    use super::event::*;
    let details = &event.details;
    match event.event_type.as_str() {
        CREATED => format!("created by {}", event.actor),
        SUBMITTED => format!("submitted by {}", event.actor),
        HUMAN_TASK_ASSIGNED => format!("asked {}", list(details, "assignees")),
        REMINDER => format!(
            "reminder {} to {}",
            details
                .get("reminder_no")
                .and_then(|v| v.as_u64())
                .unwrap_or(0),
            list(details, "to")
        ),
        ESCALATED => format!(
            "escalated (stage {}) from {} to {}",
            details.get("stage").and_then(|v| v.as_u64()).unwrap_or(0),
            list(details, "previous_assignees"),
            list(details, "escalated_to")
        ),
        DELEGATED => format!(
            "delegated by {} to {}",
            event.actor,
            list(details, "delegated_to")
        ),
        NOTIFIED => {
            let outcome = if details.get("ok").and_then(|v| v.as_bool()) == Some(true) {
                "sent".to_string()
            } else {
                format!("failed: {}", text(details, "/error"))
            };
            format!(
                "notified {} by {} (attempt {}, {outcome})",
                text(details, "/to"),
                text(details, "/channel"),
                details.get("attempt").and_then(|v| v.as_u64()).unwrap_or(1),
            )
        }
        VIEWED => format!("viewed by {}", event.actor),
        VOTED => format!(
            "{} voted {} ({} of {} approvals needed)",
            event.actor,
            text(details, "/outcome"),
            details
                .get("approvals")
                .and_then(|v| v.as_u64())
                .unwrap_or(0),
            details.get("needed").and_then(|v| v.as_u64()).unwrap_or(0),
        ),
        STEP_STARTED => format!(
            "step {} started as {}",
            text(details, "/step_id"),
            text(details, "/step_intent_id")
        ),
        STEP_ENDED => {
            let next = match details.get("next") {
                Some(serde_json::Value::String(word)) => word.clone(),
                Some(next) => format!("step {}", text(next, "/step")),
                None => "?".to_string(),
            };
            let how = match details.get("outcome").and_then(|v| v.as_str()) {
                Some(outcome) => format!("{outcome} by {}", text(details, "/decided_by")),
                None => text(details, "/status").to_lowercase(),
            };
            format!(
                "step {} ended: {how}; next: {next}",
                text(details, "/step_id")
            )
        }
        _ if event.is_terminal() && event.actor == super::workflow::WORKFLOW_ACTOR => {
            let status = event.status.as_str().to_lowercase();
            match details
                .pointer("/result/last_step")
                .and_then(|v| v.as_str())
            {
                Some(step) => format!(
                    "{status}: the workflow ended after step {step} ({})",
                    text(details, "/result/last_step_status").to_lowercase()
                ),
                None => format!("{status} by the workflow: {}", text(details, "/reason")),
            }
        }
        _ if event.is_terminal() => {
            let decided_by = details
                .get("decided_by")
                .and_then(|v| v.as_str())
                .unwrap_or(&event.actor);
            let outcome = details.pointer("/result/outcome").and_then(|v| v.as_str());
            let status = event.status.as_str().to_lowercase();
            match (actor_kind(decided_by), outcome) {
                ("system", Some(outcome)) => {
                    format!(
                        "{status} by the system ({decided_by}) with fallback outcome {outcome}: no person decided"
                    )
                }
                ("system", None) => {
                    format!("{status} by the system ({decided_by}): no person decided")
                }
                (_, Some(outcome)) => format!(
                    "{status}: {decided_by} decided {outcome} via {}",
                    text(details, "/result/via")
                ),
                (_, None) => format!("{status} by {decided_by}"),
            }
        }
        other => format!("{other} by {}", event.actor),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// Verifies a whole log held in memory.
    fn verify(records: Vec<AuditRecord>) -> Result<VerifiedLog, BrokenLink> {
        let mut verifier = Verifier::default();
        for record in records {
            verifier.check(&record)?;
        }
        Ok(verifier.finish())
    }
    use crate::domain::{Status, Timestamp};

    fn event(intent: &str, seq: u64, event_type: &str) -> Event {
        Event {
            intent_id: intent.into(),
            seq,
            event_type: event_type.into(),
            status: Status::Submitted,
            waiting_reason: None,
            actor: "agent://a/b".into(),
            at: Timestamp::parse("2026-11-21T12:00:00Z").unwrap(),
            details: json!({"n": seq}),
        }
    }

    #[test]
    fn the_streamed_form_is_the_sorted_json() {
        let mut waiting = event("a", 2, "intent.waiting");
        waiting.waiting_reason = Some(WaitingReason::WaitingForHuman);
        waiting.details = json!({"zeta": [1, {"b": null, "a": "x\"y"}], "alpha": {"k": 1.5}});
        for event in [waiting, event("b", 1, "intent.created")] {
            let streamed = serde_json::to_string(&CanonicalEvent::of(7, &event)).unwrap();
            assert_eq!(streamed, canonical(7, &event).to_string());
        }
    }

    #[test]
    fn a_known_event_hashes_as_stored_logs_expect() {
        // sha256 of GENESIS, "\n" and this event's canonical JSON at cursor 1,
        // worked out outside Rust: a change to the canonical form would break
        // the verification of every log already stored.
        assert_eq!(
            canonical(1, &event("a", 1, "intent.created")).to_string(),
            r#"{"actor":"agent://a/b","at":"2026-11-21T12:00:00.000000Z","cursor":1,"details":{"n":1},"event_type":"intent.created","intent_id":"a","seq":1,"status":"SUBMITTED","waiting_reason":null}"#
        );
        assert_eq!(
            event_hash(GENESIS, 1, &event("a", 1, "intent.created")),
            "3dcd72feb373607508346283d9f10c549bb33394400d4b5d51241ffb652b7b9c"
        );
    }

    #[test]
    fn votes_and_workflow_steps_read_as_what_happened() {
        let mut voted = event("a", 1, "intent.voted");
        voted.actor = "ann@example.com".into();
        voted.details = json!({"outcome": "approved", "approvals": 1, "needed": 2});
        assert_eq!(
            describe(&voted),
            "ann@example.com voted approved (1 of 2 approvals needed)"
        );
        let mut ended = event("w", 5, "intent.step_ended");
        ended.details = json!({"step_id": "manager", "outcome": "approved", "decided_by": "mia@x.io", "next": {"step": "finance"}});
        assert_eq!(
            describe(&ended),
            "step manager ended: approved by mia@x.io; next: step finance"
        );
        ended.details = json!({"step_id": "finance", "status": "TIMED_OUT", "next": "fail"});
        assert_eq!(
            describe(&ended),
            "step finance ended: timed_out; next: fail"
        );
        let mut finished = event("w", 6, "intent.failed");
        finished.status = Status::Failed;
        finished.actor = "system:workflow".into();
        finished.details =
            json!({"result": {"last_step": "finance", "last_step_status": "TIMED_OUT"}});
        assert_eq!(
            describe(&finished),
            "failed: the workflow ended after step finance (timed_out)"
        );
    }

    fn chain(events: Vec<(u64, Event)>) -> Vec<AuditRecord> {
        let mut previous = GENESIS.to_string();
        events
            .into_iter()
            .map(|(cursor, event)| {
                let hash = event_hash(&previous, cursor, &event);
                previous = hash.clone();
                AuditRecord {
                    cursor,
                    event,
                    hash,
                }
            })
            .collect()
    }

    fn log() -> Vec<AuditRecord> {
        chain(vec![
            (1, event("a", 1, "intent.created")),
            (2, event("a", 2, "intent.submitted")),
            (3, event("b", 1, "intent.created")),
            (5, event("a", 3, "intent.completed")),
        ])
    }

    #[test]
    fn timeouts_read_as_system_decisions_and_people_as_people() {
        let mut timed_out = event("a", 4, "intent.completed");
        timed_out.status = Status::Completed;
        timed_out.actor = "system:timeout".into();
        timed_out.details = json!({"decided_by": "system:timeout", "result": {"outcome": "rejected", "via": "timeout"}});
        let line = describe(&timed_out);
        assert!(
            line.contains("by the system") && line.contains("no person decided"),
            "{line}"
        );
        let mut decided = timed_out.clone();
        decided.actor = "alice@example.com".into();
        decided.details = json!({"decided_by": "alice@example.com", "result": {"outcome": "approved", "via": "tui"}});
        assert_eq!(
            describe(&decided),
            "completed: alice@example.com decided approved via tui"
        );
        assert_eq!(actor_kind("system:timeout"), "system");
        assert_eq!(actor_kind("agent://a/b"), "agent");
        assert_eq!(actor_kind("alice@example.com"), "person");
    }

    #[test]
    fn notifications_and_views_say_who_and_how() {
        let mut notified = event("a", 3, "intent.notified");
        notified.details = json!({"channel": "email", "to": "bob@example.com", "ok": false, "error": "HTTP 500", "attempt": 2});
        assert_eq!(
            describe(&notified),
            "notified bob@example.com by email (attempt 2, failed: HTTP 500)"
        );
        let mut viewed = event("a", 4, "intent.viewed");
        viewed.actor = "bob@example.com".into();
        assert_eq!(describe(&viewed), "viewed by bob@example.com");
    }

    #[test]
    fn an_untouched_log_verifies_and_reports_its_head() {
        let records = log();
        let head = (5, records[3].hash.clone());
        assert_eq!(
            verify(records).unwrap(),
            VerifiedLog {
                events: 4,
                head: Some(head)
            }
        );
    }

    #[test]
    fn an_edited_event_breaks_the_chain_there() {
        let mut records = log();
        records[1].event.actor = "someone else".into();
        let broken = verify(records).unwrap_err();
        assert_eq!(
            (broken.cursor, broken.intent_id.as_str(), broken.seq),
            (2, "a", 2)
        );
    }

    #[test]
    fn a_removed_event_breaks_the_chain_after_it() {
        let mut records = log();
        records.remove(1);
        assert_eq!(verify(records).unwrap_err().cursor, 3);
    }

    #[test]
    fn reordered_events_break_the_chain() {
        let mut records = log();
        let (first, second) = (records[0].cursor, records[1].cursor);
        records[0].cursor = second;
        records[1].cursor = first;
        records.swap(0, 1);
        assert_eq!(verify(records).unwrap_err().cursor, 1);
    }

    #[test]
    fn a_gap_in_an_intents_numbering_is_named_even_with_consistent_hashes() {
        let records = chain(vec![
            (1, event("a", 1, "intent.created")),
            (2, event("a", 3, "intent.completed")),
        ]);
        let broken = verify(records).unwrap_err();
        assert!(
            broken.reason.contains("seq 1 to seq 3"),
            "{}",
            broken.reason
        );
    }
}
