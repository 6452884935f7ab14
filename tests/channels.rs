//! Notification channels against real local receivers: an SMTP sink (Python
//! `aiosmtpd`), HTTP receivers standing in for Slack and generic webhooks, and
//! receivers that fail or refuse connections.
//!
//! Each test asserts two sides: what the receiver got (and, for webhooks, that the
//! HMAC signature verifies over the raw body), and what the audit says
//! (`intent.notified` events by `system:notify`, one per attempt).

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use common::receivers::{HttpReceiver, ReceivedRequest, SmtpSink, refusing_url};
use common::{TestServer, task_intent};
use hmac::{Hmac, Mac};
use serde_json::{Map, Value, json};
use sha2::Sha256;
use signoff::client::Client;
use signoff::domain::event::NOTIFIED;
use signoff::domain::{Event, Status, Timestamp};
use signoff::engine::EngineSettings;
use signoff::engine::notify::{NotifyRoute, NotifySettings, SmtpSecurity, SmtpSettings};

const ALICE: &str = "alice@example.com";
const BOB: &str = "bob@example.com";
const CAROL: &str = "carol@example.com";
const ONCALL: &str = "team:oncall";
const AGENT: &str = "agent://acme/deployer";
/// Not plain ASCII, so email has to encode the subject and body and every channel
/// has to carry UTF-8 intact.
const TITLE: &str = "Ship the release — production";
const WEBHOOK_SECRET: &str = "whsec-0123456789abcdef";
const SENDER: &str = "Signoff <signoff@example.com>";
const SENDER_ADDRESS: &str = "signoff@example.com";

/// How long any wait for a notification may take. Generous: it only bounds how
/// long a hang takes to report, it never measures speed.
const DEADLINE: Duration = Duration::from_secs(20);
/// Between polls.
const POLL: Duration = Duration::from_millis(100);

// ---------------------------------------------------------------------------
// Setup
// ---------------------------------------------------------------------------

/// A route for `recipient` with no channel yet; tests fill in the one they test.
fn route(recipient: &str) -> NotifyRoute {
    NotifyRoute {
        recipient: recipient.to_string(),
        email: None,
        slack_webhook: None,
        webhook: None,
        webhook_secret: None,
    }
}

fn webhook_route(recipient: &str, url: String) -> NotifyRoute {
    NotifyRoute {
        webhook: Some(url),
        webhook_secret: Some(WEBHOOK_SECRET.to_string()),
        ..route(recipient)
    }
}

fn slack_route(recipient: &str, url: String) -> NotifyRoute {
    NotifyRoute {
        slack_webhook: Some(url),
        ..route(recipient)
    }
}

/// Notification settings with a one-second first retry, so backoff shows in
/// seconds rather than the production default's minutes.
fn notify_settings(routes: Vec<NotifyRoute>) -> NotifySettings {
    NotifySettings {
        smtp: None,
        routes,
        retry_initial_seconds: 1,
        max_attempts: 5,
    }
}

/// A server with these notification settings, and the agent that creates tasks.
/// `None` when the test is skipped (PostgreSQL without a database to use).
async fn start(notify: NotifySettings) -> Option<(TestServer, Client)> {
    let server = TestServer::start_with(EngineSettings {
        notify,
        ..Default::default()
    })
    .await?;
    let agent = server.agent(AGENT).await;
    Some((server, agent))
}

/// Creates an approval task titled [`TITLE`]; `task_extra` adds to its
/// `human_task` and `extra` to the intent body (e.g. `lifecycle`).
async fn create_task(
    agent: &Client,
    assignees: &[&str],
    task_extra: Value,
    extra: Value,
) -> String {
    let mut task = json!({"title": TITLE, "task_type": "approval", "assignees": assignees});
    merge(&mut task, task_extra);
    let mut body = task_intent(task);
    merge(&mut body, extra);
    agent
        .create_intent(&body, None)
        .await
        .expect("create the task")
        .intent_id
}

fn merge(target: &mut Value, extra: Value) {
    if let (Some(target), Value::Object(extra)) = (target.as_object_mut(), extra) {
        target.extend(extra);
    }
}

/// The task's due time as every channel is expected to print it.
async fn due_at(agent: &Client, intent_id: &str) -> String {
    agent
        .intent(intent_id)
        .await
        .expect("read the task")
        .due_at
        .expect("every human task has a due time (the default timeout)")
        .to_string()
}

// ---------------------------------------------------------------------------
// Waiting and reading the audit
// ---------------------------------------------------------------------------

/// Polls `probe` until it returns `Ok`; on the deadline, fails with `what` and the
/// last `Err`, which describes what was seen instead.
async fn wait_until<T>(what: &str, mut probe: impl AsyncFnMut() -> Result<T, String>) -> T {
    let started = Instant::now();
    loop {
        match probe().await {
            Ok(value) => return value,
            Err(seen) if started.elapsed() > DEADLINE => {
                panic!("timed out after {DEADLINE:?} waiting until {what}; last seen: {seen}")
            }
            Err(_) => tokio::time::sleep(POLL).await,
        }
    }
}

/// The `intent.notified` events of an intent, each checked to be the notifier's.
async fn notification_attempts(client: &Client, intent_id: &str) -> Vec<Event> {
    let attempts: Vec<Event> = client
        .events(intent_id, 0)
        .await
        .expect("read events")
        .into_iter()
        .filter(|event| event.event_type == NOTIFIED)
        .collect();
    for attempt in &attempts {
        assert_eq!(
            attempt.actor, "system:notify",
            "notification attempts are recorded by the notifier: {attempt:?}"
        );
    }
    attempts
}

/// Waits until the intent has at least `count` notification attempts.
async fn wait_for_attempts(client: &Client, intent_id: &str, count: usize) -> Vec<Event> {
    wait_until(&format!("{count} intent.notified events"), async || {
        let attempts = notification_attempts(client, intent_id).await;
        if attempts.len() >= count {
            Ok(attempts)
        } else {
            Err(details_of(&attempts))
        }
    })
    .await
}

async fn wait_for_requests(receiver: &HttpReceiver, count: usize) -> Vec<ReceivedRequest> {
    wait_until(&format!("{count} HTTP requests arrive"), async || {
        let requests = receiver.requests();
        if requests.len() >= count {
            Ok(requests)
        } else {
            Err(format!("{} requests", requests.len()))
        }
    })
    .await
}

fn details_of(events: &[Event]) -> String {
    let details: Vec<&Value> = events.iter().map(|event| &event.details).collect();
    serde_json::to_string_pretty(&details).unwrap_or_default()
}

/// Asserts a delivered first attempt on `channel` to `recipient` about `event`.
fn assert_delivered(attempt: &Event, channel: &str, recipient: &str, target: &str, event: &str) {
    let details = &attempt.details;
    assert_eq!(
        (
            &details["channel"],
            &details["to"],
            &details["target"],
            &details["event"],
            &details["attempt"],
            &details["ok"],
        ),
        (
            &json!(channel),
            &json!(recipient),
            &json!(target),
            &json!(event),
            &json!(1),
            &json!(true),
        ),
        "audit of the {channel} notification to {recipient}: {details}"
    );
    assert!(
        details.get("error").is_none() && details.get("retry_at").is_none(),
        "a delivered notification has no error and no retry: {details}"
    );
}

/// How a webhook or Slack URL on a local receiver appears in the audit.
const REDACTED_LOCAL_URL: &str = "http://127.0.0.1/…";

/// Slack webhook URLs carry their credential in the path, so no part of the audit
/// (targets, errors) may repeat it.
async fn assert_audit_omits(client: &Client, intent_id: &str, secret: &str) {
    let leaks: Vec<Event> = client
        .events(intent_id, 0)
        .await
        .expect("events")
        .into_iter()
        .filter(|event| event.details.to_string().contains(secret))
        .collect();
    assert!(
        leaks.is_empty(),
        "the webhook URL's secret path `{secret}` leaked into the audit: {}",
        details_of(&leaks)
    );
}

/// Asserts a failed attempt at a URL where nothing listens, to be retried.
fn assert_refused(attempt: &Event) {
    let details = &attempt.details;
    assert_eq!(
        (&details["ok"], &details["target"]),
        (&json!(false), &json!(REDACTED_LOCAL_URL)),
        "{details}"
    );
    assert!(
        details["error"]
            .as_str()
            .is_some_and(|error| error.starts_with("cannot connect")),
        "a refused connection is named as such: {details}"
    );
    assert!(
        details.get("retry_at").is_some(),
        "a refused connection is retried: {details}"
    );
}

// ---------------------------------------------------------------------------
// Webhook signatures
// ---------------------------------------------------------------------------

/// Checks `x-signoff-signature` against an HMAC-SHA256 of the raw body, the way a
/// receiver is told to, and returns the body as JSON.
fn verified_webhook_body(request: &ReceivedRequest) -> Value {
    let signature = request
        .header("x-signoff-signature")
        .unwrap_or_else(|| panic!("no signature header: {:?}", request.headers));
    let hex_digest = signature
        .strip_prefix("sha256=")
        .unwrap_or_else(|| panic!("signature `{signature}` does not start with sha256="));
    let digest = hex::decode(hex_digest)
        .unwrap_or_else(|err| panic!("signature `{signature}` is not hex: {err}"));
    let mut mac = Hmac::<Sha256>::new_from_slice(WEBHOOK_SECRET.as_bytes()).expect("any key");
    mac.update(&request.body);
    assert!(
        mac.verify_slice(&digest).is_ok(),
        "the signature `{signature}` does not verify with the route secret over the body {}",
        String::from_utf8_lossy(&request.body)
    );
    assert_eq!(request.method, "POST");
    assert_eq!(request.header("content-type"), Some("application/json"));
    let body = request.json();
    assert_eq!(
        request.header("x-signoff-event"),
        body["event"].as_str(),
        "the event header names the body's event"
    );
    body
}

// ---------------------------------------------------------------------------
// Email
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_assigned_task_is_emailed_with_its_title_agent_due_time_and_id() {
    let sink = tokio::task::spawn_blocking(SmtpSink::start)
        .await
        .expect("start the SMTP sink");
    let Some((_server, agent)) = start(NotifySettings {
        smtp: Some(SmtpSettings {
            host: "127.0.0.1".into(),
            port: sink.port,
            security: SmtpSecurity::None,
            username: None,
            password: None,
            from: SENDER.into(),
        }),
        ..notify_settings(vec![NotifyRoute {
            email: Some(ALICE.into()),
            ..route(ALICE)
        }])
    })
    .await
    else {
        return;
    };
    let ops = "ops@example.com";
    let intent_id = create_task(&agent, &[ALICE], json!({"notify_email": ops}), json!({})).await;
    let due = due_at(&agent, &intent_id).await;

    let messages = wait_until("two emails arrive", async || {
        let messages = sink.messages();
        if messages.len() >= 2 {
            Ok(messages)
        } else {
            Err(format!("{messages:#?}"))
        }
    })
    .await;
    assert_eq!(messages.len(), 2, "one email per address: {messages:#?}");
    for address in [ALICE, ops] {
        let email = messages
            .iter()
            .find(|email| email.rcpt_tos == [address])
            .unwrap_or_else(|| panic!("no email to {address}: {messages:#?}"));
        assert_eq!(email.mail_from, SENDER_ADDRESS, "envelope sender");
        assert!(email.from.contains(SENDER_ADDRESS), "From: {}", email.from);
        assert!(email.to.contains(address), "To: {}", email.to);
        assert_eq!(email.subject, format!("[signoff] New task: {TITLE}"));
        assert_eq!(email.content_type, "text/plain");
        for (what, expected) in [
            ("title", TITLE),
            ("agent", AGENT),
            ("due time", due.as_str()),
            ("intent id", intent_id.as_str()),
        ] {
            assert!(
                email.body.contains(expected),
                "the email to {address} names the {what} `{expected}`:\n{}",
                email.body
            );
        }
    }

    let attempts = wait_for_attempts(&agent, &intent_id, 2).await;
    for address in [ALICE, ops] {
        let attempt = attempts
            .iter()
            .find(|attempt| attempt.details["target"] == address)
            .unwrap_or_else(|| panic!("no audit of the email to {address}"));
        // The route's email goes "to" the reviewer; notify_email to the address.
        assert_delivered(attempt, "email", address, address, "task.assigned");
    }
}

// ---------------------------------------------------------------------------
// Slack and webhooks
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_gets_a_block_kit_message_and_the_audit_hides_the_webhook_path() {
    let slack = HttpReceiver::start().await;
    // In a real Slack webhook URL the path is the credential.
    let secret_path = "/services/T0000/B0000/xoxSecretPath42";
    let Some((_server, agent)) = start(notify_settings(vec![slack_route(
        ALICE,
        slack.url(secret_path),
    )]))
    .await
    else {
        return;
    };
    let intent_id = create_task(&agent, &[ALICE], json!({}), json!({})).await;
    let due = due_at(&agent, &intent_id).await;

    let requests = wait_for_requests(&slack, 1).await;
    let request = &requests[0];
    assert_eq!(
        (request.method.as_str(), request.path.as_str()),
        ("POST", secret_path)
    );
    assert!(
        request
            .header("content-type")
            .is_some_and(|value| value.starts_with("application/json")),
        "content-type: {:?}",
        request.header("content-type")
    );
    let message = request.json();
    let headline = format!("New task: {TITLE}");
    assert_eq!(message["text"], headline, "fallback text: {message}");
    let blocks = &message["blocks"];
    assert_eq!(blocks[0]["type"], "header", "{message}");
    assert_eq!(blocks[0]["text"]["text"], headline, "{message}");
    let fields: Vec<&str> = blocks[1]["fields"]
        .as_array()
        .unwrap_or_else(|| panic!("a section with fields: {message}"))
        .iter()
        .filter_map(|field| field["text"].as_str())
        .collect();
    for (label, value) in [
        ("Agent", AGENT.to_string()),
        ("Due", due.clone()),
        ("Type", "approval".to_string()),
        ("Task", format!("`{intent_id}`")),
    ] {
        let expected = format!("*{label}*\n{value}");
        assert!(
            fields.contains(&expected.as_str()),
            "a field `{expected}` in {fields:?}"
        );
    }

    let attempts = wait_for_attempts(&agent, &intent_id, 1).await;
    assert_delivered(
        &attempts[0],
        "slack",
        ALICE,
        REDACTED_LOCAL_URL,
        "task.assigned",
    );
    assert_audit_omits(&agent, &intent_id, "xoxSecretPath42").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_carry_the_task_essentials_signed_with_the_route_secret() {
    let hook = HttpReceiver::start().await;
    let Some((_server, agent)) = start(notify_settings(vec![webhook_route(
        ALICE,
        hook.url("/hooks/signoff"),
    )]))
    .await
    else {
        return;
    };
    let intent_id = create_task(&agent, &[ALICE], json!({}), json!({})).await;
    let due = due_at(&agent, &intent_id).await;

    let requests = wait_for_requests(&hook, 1).await;
    assert_eq!(requests[0].path, "/hooks/signoff");
    let mut body = verified_webhook_body(&requests[0]);
    let delivery = body
        .as_object_mut()
        .and_then(|fields| fields.remove("delivery"))
        .expect("a signed delivery object");
    assert_eq!(
        requests[0]
            .headers
            .get("x-signoff-delivery")
            .map(String::as_str),
        Some(delivery["id"].to_string().as_str()),
        "the delivery id is in the header too, for dropping repeats"
    );
    assert_eq!(delivery["attempt"], 1);
    assert!(delivery["sent_at"].is_string());
    assert_eq!(
        body,
        json!({
            "event": "task.assigned",
            "intent_id": intent_id,
            "title": TITLE,
            "task_type": "approval",
            "agent": AGENT,
            "assignees": [ALICE],
            "due_at": due,
            "recipient": ALICE,
        }),
        "the webhook body is the task's essentials and never its payload"
    );

    let attempts = wait_for_attempts(&agent, &intent_id, 1).await;
    assert_delivered(
        &attempts[0],
        "webhook",
        ALICE,
        REDACTED_LOCAL_URL,
        "task.assigned",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reminders_and_escalations_notify_with_their_number_and_stage() {
    let slack = HttpReceiver::start().await;
    let hook = HttpReceiver::start().await;
    let everyone = NotifyRoute {
        slack_webhook: Some(slack.url("/services/everyone")),
        ..webhook_route("*", hook.url("/hooks/everyone"))
    };
    let Some((_server, agent)) = start(notify_settings(vec![everyone])).await else {
        return;
    };
    let lifecycle = json!({"lifecycle": {
        "remind": {"after_seconds": 1, "every_seconds": 1, "max": 1},
        "escalate": [{"after_seconds": 2, "to": [BOB]}],
    }});
    let intent_id = create_task(&agent, &[ALICE], json!({}), lifecycle).await;

    let bodies: Vec<Value> = wait_for_requests(&hook, 3)
        .await
        .iter()
        .map(verified_webhook_body)
        .collect();
    // Only what differs between the three; the full body is checked elsewhere.
    let mut summaries: Vec<Value> = bodies
        .iter()
        .map(|body| {
            json!({
                "event": body["event"],
                "recipient": body["recipient"],
                "assignees": body["assignees"],
                "reminder_no": body.get("reminder_no"),
                "stage": body.get("stage"),
            })
        })
        .collect();
    summaries.sort_by_key(|summary| summary["event"].to_string());
    assert_eq!(
        summaries,
        [
            json!({"event": "task.assigned", "recipient": ALICE, "assignees": [ALICE],
                   "reminder_no": null, "stage": null}),
            json!({"event": "task.escalated", "recipient": BOB, "assignees": [BOB],
                   "reminder_no": null, "stage": 1}),
            json!({"event": "task.reminder", "recipient": ALICE, "assignees": [ALICE],
                   "reminder_no": 1, "stage": null}),
        ],
        "webhook bodies: {bodies:#?}"
    );

    let headlines: BTreeSet<String> = wait_for_requests(&slack, 3)
        .await
        .iter()
        .map(|request| request.json()["text"].as_str().unwrap_or("").to_string())
        .collect();
    let expected: BTreeSet<String> = [
        format!("New task: {TITLE}"),
        format!("Reminder 1: {TITLE}"),
        format!("Escalated (stage 1): {TITLE}"),
    ]
    .into();
    assert_eq!(headlines, expected, "Slack headlines");

    let attempts = wait_for_attempts(&agent, &intent_id, 6).await;
    let audited: BTreeSet<(String, String, String, bool)> = attempts
        .iter()
        .map(|attempt| {
            let details = &attempt.details;
            (
                details["channel"].as_str().unwrap_or("").to_string(),
                details["event"].as_str().unwrap_or("").to_string(),
                details["to"].as_str().unwrap_or("").to_string(),
                details["ok"] == true,
            )
        })
        .collect();
    let expected: BTreeSet<(String, String, String, bool)> = ["slack", "webhook"]
        .into_iter()
        .flat_map(|channel| {
            [
                ("task.assigned", ALICE),
                ("task.reminder", ALICE),
                ("task.escalated", BOB),
            ]
            .map(|(event, to)| (channel.to_string(), event.to_string(), to.to_string(), true))
        })
        .collect();
    assert_eq!(audited, expected, "audit: {}", details_of(&attempts));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_reach_only_assigned_reviewers_and_teams_and_each_target_once() {
    let alice_hook = HttpReceiver::start().await;
    let oncall_hook = HttpReceiver::start().await;
    let carol_hook = HttpReceiver::start().await;
    let shared_slack = HttpReceiver::start().await;
    let shared_slack_url = shared_slack.url("/services/shared");
    let Some((_server, agent)) = start(notify_settings(vec![
        webhook_route(ALICE, alice_hook.url("/alice")),
        webhook_route(ONCALL, oncall_hook.url("/oncall")),
        webhook_route(CAROL, carol_hook.url("/carol")),
        // Two routes to one Slack channel: it must hear about the task once.
        slack_route("*", shared_slack_url.clone()),
        slack_route(ALICE, shared_slack_url),
    ]))
    .await
    else {
        return;
    };
    let intent_id = create_task(&agent, &[ALICE, ONCALL], json!({}), json!({})).await;

    let attempts = wait_for_attempts(&agent, &intent_id, 3).await;
    // Everything was queued in one transaction and is sent in one batch; a moment
    // more lets any notification that should not exist show up.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let attempts_after = notification_attempts(&agent, &intent_id).await;
    assert_eq!(
        attempts_after.len(),
        3,
        "one attempt each for alice's and oncall's webhooks and the shared Slack: {}",
        details_of(&attempts_after)
    );
    let recipients = |receiver: &HttpReceiver| -> Vec<Value> {
        receiver
            .requests()
            .iter()
            .map(|request| request.json()["recipient"].clone())
            .collect()
    };
    assert_eq!(recipients(&alice_hook), [json!(ALICE)]);
    assert_eq!(recipients(&oncall_hook), [json!(ONCALL)]);
    assert_eq!(
        recipients(&carol_hook),
        Vec::<Value>::new(),
        "carol is not assigned"
    );
    assert_eq!(
        shared_slack.requests().len(),
        1,
        "one Slack message however many routes lead there"
    );
    assert!(
        attempts.iter().all(|attempt| attempt.details["ok"] == true),
        "{}",
        details_of(&attempts)
    );
}

// ---------------------------------------------------------------------------
// Failures, retries and giving up
// ---------------------------------------------------------------------------

/// The seconds between an attempt and the retry it scheduled, as audited.
fn audited_backoff_seconds(attempt: &Event) -> i64 {
    let retry_at = attempt.details["retry_at"]
        .as_str()
        .unwrap_or_else(|| panic!("a failed attempt says when it is retried: {attempt:?}"));
    let retry_at = Timestamp::parse(retry_at).expect("retry_at is a timestamp");
    attempt.at.seconds_until(&retry_at)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_receiver_is_retried_with_doubling_backoff_and_every_attempt_is_audited() {
    let hook =
        HttpReceiver::failing_first(2, StatusCode::INTERNAL_SERVER_ERROR, "upstream down").await;
    let Some((_server, agent)) = start(notify_settings(vec![webhook_route(
        ALICE,
        hook.url("/flaky"),
    )]))
    .await
    else {
        return;
    };
    let intent_id = create_task(&agent, &[ALICE], json!({}), json!({})).await;

    let attempts = wait_until("the third attempt is delivered", async || {
        let attempts = notification_attempts(&agent, &intent_id).await;
        if attempts.iter().any(|attempt| attempt.details["ok"] == true) {
            Ok(attempts)
        } else {
            Err(details_of(&attempts))
        }
    })
    .await;
    let outcomes: Vec<(Value, Value, Value)> = attempts
        .iter()
        .map(|attempt| {
            let details = &attempt.details;
            (
                details["attempt"].clone(),
                details["ok"].clone(),
                details.get("error").cloned().unwrap_or(Value::Null),
            )
        })
        .collect();
    let failed = json!("HTTP 500 Internal Server Error: upstream down");
    assert_eq!(
        outcomes,
        [
            (json!(1), json!(false), failed.clone()),
            (json!(2), json!(false), failed),
            (json!(3), json!(true), Value::Null),
        ],
        "every attempt is audited: {}",
        details_of(&attempts)
    );
    assert_eq!(
        [
            audited_backoff_seconds(&attempts[0]),
            audited_backoff_seconds(&attempts[1])
        ],
        [1, 2],
        "the wait doubles from retry_initial_seconds"
    );
    assert!(
        attempts
            .iter()
            .all(|attempt| attempt.details.get("gave_up").is_none()),
        "nothing gave up: {}",
        details_of(&attempts)
    );

    let requests = hook.requests();
    assert_eq!(requests.len(), 3, "two failures and one success");
    let mut bodies: Vec<Value> = requests.iter().map(verified_webhook_body).collect();
    let deliveries: Vec<Value> = bodies
        .iter_mut()
        .filter_map(|body| body.as_object_mut()?.remove("delivery"))
        .collect();
    assert!(
        bodies.iter().all(|body| body == &bodies[0]),
        "each retry sends the same notification: {bodies:#?}"
    );
    let ids: Vec<&Value> = deliveries.iter().map(|d| &d["id"]).collect();
    let numbers: Vec<&Value> = deliveries.iter().map(|d| &d["attempt"]).collect();
    assert!(
        ids.iter().all(|id| *id == ids[0]),
        "one delivery id across retries: {deliveries:?}"
    );
    assert_eq!(numbers, [&json!(1), &json!(2), &json!(3)]);
    // Lower bounds only: the retries must not come sooner than the backoff says.
    // A little slack for the sender's clock and this process's differing.
    let tolerance = Duration::from_millis(100);
    let gaps: Vec<Duration> = requests
        .windows(2)
        .map(|pair| pair[1].arrived.duration_since(pair[0].arrived))
        .collect();
    assert!(
        gaps[0] + tolerance >= Duration::from_secs(1)
            && gaps[1] + tolerance >= Duration::from_secs(2),
        "retries came sooner than the backoff of 1 s then 2 s: {gaps:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_max_attempts_the_notifier_gives_up_and_says_so() {
    let hook =
        HttpReceiver::failing_first(usize::MAX, StatusCode::SERVICE_UNAVAILABLE, "maintenance")
            .await;
    let Some((_server, agent)) = start(NotifySettings {
        max_attempts: 2,
        ..notify_settings(vec![webhook_route(ALICE, hook.url("/down"))])
    })
    .await
    else {
        return;
    };
    let intent_id = create_task(&agent, &[ALICE], json!({}), json!({})).await;

    let attempts = wait_until("the notifier gives up", async || {
        let attempts = notification_attempts(&agent, &intent_id).await;
        if attempts
            .iter()
            .any(|attempt| attempt.details["gave_up"] == true)
        {
            Ok(attempts)
        } else {
            Err(details_of(&attempts))
        }
    })
    .await;
    assert_eq!(attempts.len(), 2, "{}", details_of(&attempts));
    let (first, last) = (&attempts[0].details, &attempts[1].details);
    assert_eq!(
        (&first["attempt"], &first["ok"], &first["error"]),
        (
            &json!(1),
            &json!(false),
            &json!("HTTP 503 Service Unavailable: maintenance")
        ),
        "{first}"
    );
    assert!(first.get("retry_at").is_some() && first.get("gave_up").is_none());
    assert_eq!(
        (&last["attempt"], &last["ok"], &last["gave_up"]),
        (&json!(2), &json!(false), &json!(true)),
        "{last}"
    );
    assert!(
        last.get("retry_at").is_none(),
        "a notification given up is not retried: {last}"
    );

    // A third attempt would be due 2 s after the second; wait past that.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(hook.requests().len(), 2, "no request after giving up");
    assert_eq!(notification_attempts(&agent, &intent_id).await.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_webhook_is_audited_as_failing_and_does_not_block_the_decision() {
    let Some((server, agent)) = start(NotifySettings {
        max_attempts: 10,
        ..notify_settings(vec![webhook_route(ALICE, refusing_url("/nobody-home"))])
    })
    .await
    else {
        return;
    };
    let intent_id = create_task(&agent, &[ALICE], json!({}), json!({})).await;

    let failures = wait_for_attempts(&agent, &intent_id, 2).await;
    failures.iter().for_each(assert_refused);

    let reviewer = server.reviewer(ALICE, &[]).await;
    let decided = reviewer
        .decide(&intent_id, "approved", None, Map::new())
        .await
        .expect("the decision goes through while notifications fail");
    assert_eq!(decided.status, Status::Completed);
    let events = agent.events(&intent_id, 0).await.expect("events");
    let completed_seq = events
        .iter()
        .find(|event| event.status == Status::Completed)
        .map(|event| event.seq)
        .expect("a completion event");

    // The third attempt would be due 2 s after the second; wait past that. The
    // task has ended, so the attempt must be dropped rather than sent or audited.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let after_end: Vec<Event> = notification_attempts(&agent, &intent_id)
        .await
        .into_iter()
        .filter(|attempt| attempt.seq > completed_seq)
        .collect();
    assert!(
        after_end.is_empty(),
        "nothing is sent about a task that has ended: {}",
        details_of(&after_end)
    );
    assert_eq!(
        agent.intent(&intent_id).await.expect("intent").status,
        Status::Completed
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_slack_webhook_keeps_its_secret_path_out_of_the_error() {
    let secret_path = "/services/T0000/B0000/xoxUnreachableSecret";
    let Some((_server, agent)) = start(notify_settings(vec![slack_route(
        ALICE,
        refusing_url(secret_path),
    )]))
    .await
    else {
        return;
    };
    let intent_id = create_task(&agent, &[ALICE], json!({}), json!({})).await;

    let attempts = wait_for_attempts(&agent, &intent_id, 1).await;
    assert_eq!(attempts[0].details["channel"], "slack");
    assert_refused(&attempts[0]);
    assert_audit_omits(&agent, &intent_id, "xoxUnreachableSecret").await;
}
