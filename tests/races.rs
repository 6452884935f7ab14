//! Concurrent decisions on the same intent: whatever the interleaving, exactly one
//! wins, the loser gets a 409 naming the winner, and the history holds exactly one
//! terminal event. Each race is repeated many times on a multi-threaded runtime
//! against the real router and SQLite store.

mod common;

use std::future::Future;
use std::sync::Arc;

use common::{TestServer, task_intent};
use serde_json::{Map, Value, json};
use signoff::client::{Client, ClientError, ClientResult};
use signoff::domain::{Intent, Status};
use tokio::sync::Barrier;

const ROUNDS: usize = 100;
const ALICE: &str = "alice@example.com";
const BOB: &str = "bob@example.com";
const SENDER: &str = "agent://acme/deployer";

/// One side of a race: who it acts as, and the outcome (or end status) it tries to record.
struct Contender {
    identity: &'static str,
    outcome: &'static str,
}

/// How a race ended, once checked to have exactly one winner.
struct Verdict<'a> {
    winner: &'a Contender,
    winning_intent: Intent,
    loser_error: ClientError,
}

/// Waits until every contender is ready, then runs this one's attempt.
async fn after_barrier<F: Future>(barrier: Arc<Barrier>, attempt: F) -> F::Output {
    barrier.wait().await;
    attempt.await
}

/// Starts both attempts on separate tasks, released together by a barrier so
/// they really hit the server at the same time, and returns both results.
async fn run_race<A, B>(first: A, second: B) -> (ClientResult<Intent>, ClientResult<Intent>)
where
    A: Future<Output = ClientResult<Intent>> + Send + 'static,
    B: Future<Output = ClientResult<Intent>> + Send + 'static,
{
    let barrier = Arc::new(Barrier::new(2));
    let first = tokio::spawn(after_barrier(barrier.clone(), first));
    let second = tokio::spawn(after_barrier(barrier, second));
    (
        first.await.expect("first contender"),
        second.await.expect("second contender"),
    )
}

/// Exactly one contender succeeded; returns which, with the loser's error.
fn single_winner<'a>(
    round: usize,
    contenders: [&'a Contender; 2],
    results: (ClientResult<Intent>, ClientResult<Intent>),
) -> Verdict<'a> {
    match results {
        (Ok(winning_intent), Err(loser_error)) => Verdict {
            winner: contenders[0],
            winning_intent,
            loser_error,
        },
        (Err(loser_error), Ok(winning_intent)) => Verdict {
            winner: contenders[1],
            winning_intent,
            loser_error,
        },
        (Ok(_), Ok(_)) => panic!(
            "round {round}: both {} and {} won",
            contenders[0].identity, contenders[1].identity
        ),
        (Err(first), Err(second)) => panic!("round {round}: nobody won: {first:?} / {second:?}"),
    }
}

/// The checks every race ends with, whoever won.
async fn assert_one_decision(
    round: usize,
    observer: &Client,
    intent_id: &str,
    verdict: &Verdict<'_>,
) {
    let winner = verdict.winner;
    let record = verdict
        .winning_intent
        .result
        .clone()
        .expect("a terminal intent carries its decision record");
    assert_eq!(
        record["decided_by"], winner.identity,
        "round {round}: the winner's record"
    );

    // The loser is told who decided, and when: the record it lost to.
    match &verdict.loser_error {
        ClientError::Api {
            status, details, ..
        } => {
            assert_eq!(
                *status, 409,
                "round {round}: the loser gets 409, got {details}"
            );
            assert_eq!(
                details["decided_by"], winner.identity,
                "round {round}: 409 names the winner"
            );
            assert!(
                details["decided_at"].is_string(),
                "round {round}: 409 says when: {details}"
            );
            assert_eq!(
                details["decided_at"], record["decided_at"],
                "round {round}: 409 carries the winning time"
            );
        }
        other => panic!("round {round}: the loser got {other:?} instead of a 409"),
    }

    let stored = observer.intent(intent_id).await.expect("intent");
    assert_eq!(
        stored.result.as_ref(),
        Some(&record),
        "round {round}: the stored record is the winner's"
    );
    let events = observer.events(intent_id, 0).await.expect("events");
    let terminal: Vec<_> = events.iter().filter(|event| event.is_terminal()).collect();
    assert_eq!(
        terminal.len(),
        1,
        "round {round}: exactly one terminal event: {events:#?}"
    );
    assert_eq!(
        terminal[0].actor, winner.identity,
        "round {round}: the terminal event is the winner's"
    );
    assert_eq!(
        terminal[0].status, verdict.winning_intent.status,
        "round {round}: the terminal event matches the winning response"
    );
}

/// A human task both reviewers may decide, already waiting.
async fn waiting_task(sender: &Client, round: usize) -> String {
    let body = task_intent(json!({
        "title": format!("Race {round}"),
        "assignees": [ALICE, BOB],
    }));
    let created = sender.create_intent(&body, None).await.expect("create");
    assert_eq!(
        created.status,
        Status::Waiting,
        "the task waits for a human from the start"
    );
    created.intent_id
}

fn decision(
    reviewer: &Client,
    intent_id: &str,
    contender: &Contender,
) -> impl Future<Output = ClientResult<Intent>> + Send + 'static {
    let reviewer = reviewer.clone();
    let intent_id = intent_id.to_string();
    let outcome = contender.outcome;
    async move {
        reviewer
            .decide(&intent_id, outcome, Some("racing"), Map::new())
            .await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_reviewers_deciding_at_once_yield_exactly_one_decision() {
    let Some(server) = TestServer::start().await else {
        return;
    };
    let sender = server.agent(SENDER).await;
    let alice = server.reviewer(ALICE, &[]).await;
    let bob = server.reviewer(BOB, &[]).await;
    let alice_side = Contender {
        identity: ALICE,
        outcome: "approved",
    };
    let bob_side = Contender {
        identity: BOB,
        outcome: "rejected",
    };

    let mut wins = [0usize; 2];
    for round in 0..ROUNDS {
        let intent_id = waiting_task(&sender, round).await;
        let results = run_race(
            decision(&alice, &intent_id, &alice_side),
            decision(&bob, &intent_id, &bob_side),
        )
        .await;
        let verdict = single_winner(round, [&alice_side, &bob_side], results);
        assert_one_decision(round, &sender, &intent_id, &verdict).await;

        // The record and the agent's view agree on the winner's outcome, never a mix.
        let record = verdict.winning_intent.result.clone().unwrap_or(Value::Null);
        assert_eq!(
            record["outcome"], verdict.winner.outcome,
            "round {round}: the winner's outcome"
        );
        let completed = sender.events(&intent_id, 0).await.expect("events");
        let last = completed.last().expect("events");
        assert_eq!(last.event_type, "intent.completed");
        assert_eq!(last.details["result"]["outcome"], verdict.winner.outcome);
        assert_eq!(
            last.details["data"]["approved"],
            verdict.winner.outcome == "approved"
        );
        wins[usize::from(verdict.winner.identity == BOB)] += 1;
    }
    println!("alice won {} races, bob won {}", wins[0], wins[1]);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decision_racing_the_senders_cancel_yields_exactly_one_end() {
    let Some(server) = TestServer::start().await else {
        return;
    };
    let sender = server.agent(SENDER).await;
    let alice = server.reviewer(ALICE, &[]).await;
    let reviewer_side = Contender {
        identity: ALICE,
        outcome: "approved",
    };
    let sender_side = Contender {
        identity: SENDER,
        outcome: "CANCELED",
    };

    for round in 0..ROUNDS {
        let intent_id = waiting_task(&sender, round).await;
        let cancel = {
            let sender = sender.clone();
            let intent_id = intent_id.clone();
            async move {
                let body = json!({"status": "CANCELED", "reason": "no longer needed"});
                sender
                    .resolve(&intent_id, &body, None, None)
                    .await
                    .map(|resolved| resolved.intent)
            }
        };
        let results = run_race(decision(&alice, &intent_id, &reviewer_side), cancel).await;
        let verdict = single_winner(round, [&reviewer_side, &sender_side], results);
        assert_one_decision(round, &sender, &intent_id, &verdict).await;

        let expected = if verdict.winner.identity == ALICE {
            Status::Completed
        } else {
            Status::Canceled
        };
        assert_eq!(
            verdict.winning_intent.status, expected,
            "round {round}: the winner's end"
        );
    }
    server.stop().await;
}
