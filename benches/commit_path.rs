//! Pure work every stored event pays for, on both backends and inside the
//! PostgreSQL fleet's chain-head hold: its audit hash, and timestamps written
//! and read as text. Run with `cargo bench --bench commit_path`.

use serde_json::json;
use signoff::domain::audit::{GENESIS, event_hash};
use signoff::domain::{Event, Status, Timestamp, WaitingReason};

fn main() {
    divan::main();
}

/// An event shaped like a decision's: a few nested details.
fn decided() -> Event {
    Event {
        intent_id: "intent-0123456789abcdef".into(),
        seq: 4,
        event_type: "intent.completed".into(),
        status: Status::Completed,
        waiting_reason: Some(WaitingReason::WaitingForHuman),
        actor: "alice@example.com".into(),
        at: Timestamp::parse("2026-12-04T14:00:00.123456Z").unwrap_or(Timestamp::MIN),
        details: json!({
            "decided_by": "alice@example.com",
            "result": {"outcome": "approved", "comment": "looks right", "via": "tui",
                       "data": {"amount": 1200, "currency": "EUR"}},
        }),
    }
}

#[divan::bench]
fn audit_hash(bencher: divan::Bencher) {
    let event = decided();
    bencher.bench(|| event_hash(divan::black_box(GENESIS), 42, divan::black_box(&event)));
}

#[divan::bench]
fn timestamp_to_text(bencher: divan::Bencher) {
    let at = decided().at;
    bencher.bench(|| divan::black_box(at).to_string());
}

#[divan::bench]
fn timestamp_from_text(bencher: divan::Bencher) {
    bencher.bench(|| Timestamp::parse(divan::black_box("2026-12-04T14:00:00.123456Z")));
}
