//! The tamper-evident event log. Every event stores
//! `sha256(previous event's hash, "\n", this event as canonical JSON)`, in the
//! global commit order. Editing, removing or reordering any stored event breaks
//! the chain from that point on, and `verify` names the first place it breaks.

use std::collections::HashMap;

use serde_json::json;
use sha2::{Digest, Sha256};

use super::event::Event;

/// The hash before the first event.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The hash of the event at `cursor`, following `previous`. The canonical form is
/// compact JSON with sorted keys, so it does not depend on how the event is stored.
pub fn event_hash(previous: &str, cursor: u64, event: &Event) -> String {
    let canonical = json!({
        "cursor": cursor,
        "intent_id": event.intent_id,
        "seq": event.seq,
        "event_type": event.event_type,
        "status": event.status,
        "waiting_reason": event.waiting_reason,
        "actor": event.actor,
        "at": event.at,
        "details": event.details,
    });
    let mut hasher = Sha256::new();
    hasher.update(previous.as_bytes());
    hasher.update(b"\n");
    hasher.update(canonical.to_string().as_bytes());
    hex::encode(hasher.finalize())
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

/// Walks the log in cursor order and checks every link, and that each intent's
/// events are numbered 1, 2, 3... without gaps.
pub fn verify(records: impl IntoIterator<Item = AuditRecord>) -> Result<VerifiedLog, BrokenLink> {
    let mut previous = GENESIS.to_string();
    let mut last_seq: HashMap<String, u64> = HashMap::new();
    let mut verified = VerifiedLog {
        events: 0,
        head: None,
    };
    for record in records {
        let broken = |reason: String| BrokenLink {
            cursor: record.cursor,
            intent_id: record.event.intent_id.clone(),
            seq: record.event.seq,
            reason,
        };
        let expected = event_hash(&previous, record.cursor, &record.event);
        if expected != record.hash {
            return Err(broken(
                "its hash does not follow from the previous event: this event, or one before it, was edited, removed or reordered"
                    .to_string(),
            ));
        }
        let seen = last_seq.entry(record.event.intent_id.clone()).or_insert(0);
        if record.event.seq != *seen + 1 {
            return Err(broken(format!(
                "the intent's events jump from seq {} to seq {}: events were removed or reordered",
                seen, record.event.seq
            )));
        }
        *seen = record.event.seq;
        previous = record.hash.clone();
        verified.events += 1;
        verified.head = Some((record.cursor, record.hash));
    }
    Ok(verified)
}

#[cfg(test)]
mod tests {
    use super::*;
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
