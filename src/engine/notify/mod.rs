//! Notification channels: email over SMTP, Slack incoming webhooks and signed
//! generic webhooks.
//!
//! Deciding who to notify happens inside the write that caused it (an assignment,
//! a reminder, an escalation): the notifications are rows of a durable outbox,
//! committed with the event. Sending happens afterwards, outside any transaction,
//! from a worker that leases due rows, so a slow or failing channel never holds up
//! the lifecycle. Every attempt is recorded on the intent as `intent.notified`;
//! failures are retried with exponential backoff until `max_attempts`.

pub mod slack;
pub mod smtp;
pub mod webhook;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::Engine;
use crate::domain::event::NOTIFIED;
use crate::domain::lifecycle::NOTIFIER_ACTOR;
use crate::domain::{Intent, Result, Timestamp};
use crate::store::{Change, Channel, Notification, OutboxItem, OutboxUpdate, Target};

/// Outbox rows one sender takes at a time; they are sent concurrently.
pub const CLAIM_BATCH: usize = 32;
/// How long a claimed row stays with its sender: longer than any send may take
/// (HTTP and SMTP time out after [`SEND_TIMEOUT`]), so a row is only taken again
/// when its sender died.
const LEASE_SECONDS: i64 = 120;
/// The longest one send may take.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest wait between retries.
const MAX_BACKOFF_SECONDS: u64 = 3600;

/// `[notify]` in the server config.
#[derive(Debug, Clone, PartialEq)]
pub struct NotifySettings {
    pub smtp: Option<SmtpSettings>,
    pub routes: Vec<NotifyRoute>,
    /// The wait before the first retry; it doubles with each further attempt.
    pub retry_initial_seconds: u64,
    /// Attempts per notification, the first included, before giving up.
    pub max_attempts: u32,
}

impl Default for NotifySettings {
    fn default() -> Self {
        Self {
            smtp: None,
            routes: Vec::new(),
            retry_initial_seconds: 30,
            max_attempts: 8,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpSecurity {
    /// Plain text: only for a relay on the same machine or network.
    None,
    /// Connect in plain text, then upgrade with STARTTLS (required).
    StartTls,
    /// TLS from the first byte (SMTPS, usually port 465).
    Tls,
}

impl SmtpSecurity {
    pub fn parse(text: &str) -> Option<SmtpSecurity> {
        match text.to_ascii_lowercase().as_str() {
            "none" => Some(SmtpSecurity::None),
            "starttls" => Some(SmtpSecurity::StartTls),
            "tls" => Some(SmtpSecurity::Tls),
            _ => None,
        }
    }
}

/// `[notify.smtp]`.
#[derive(Debug, Clone, PartialEq)]
pub struct SmtpSettings {
    pub host: String,
    pub port: u16,
    pub security: SmtpSecurity,
    pub username: Option<String>,
    pub password: Option<String>,
    pub from: String,
}

/// `[[notify.routes]]`: where notifications for one reviewer or team go.
#[derive(Debug, Clone, PartialEq)]
pub struct NotifyRoute {
    /// A reviewer identity, `team:NAME`, or `*` for every assignee.
    pub recipient: String,
    pub email: Option<String>,
    pub slack_webhook: Option<String>,
    pub webhook: Option<String>,
    pub webhook_secret: Option<String>,
}

impl NotifyRoute {
    fn matches(&self, assignee: &str) -> bool {
        self.recipient == "*" || self.recipient.eq_ignore_ascii_case(assignee)
    }

    fn channels(&self) -> impl Iterator<Item = (Channel, &String)> {
        [
            (Channel::Email, self.email.as_ref()),
            (Channel::Slack, self.slack_webhook.as_ref()),
            (Channel::Webhook, self.webhook.as_ref()),
        ]
        .into_iter()
        .filter_map(|(channel, target)| target.map(|target| (channel, target)))
    }
}

/// Why a notification is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotifyKind {
    Assigned,
    Reminder { reminder_no: u32 },
    Escalated { stage: u32 },
}

impl NotifyKind {
    pub fn event(&self) -> &'static str {
        match self {
            NotifyKind::Assigned => "task.assigned",
            NotifyKind::Reminder { .. } => "task.reminder",
            NotifyKind::Escalated { .. } => "task.escalated",
        }
    }

    /// A short human phrase, for subjects and headers.
    pub fn headline(message: &Value) -> String {
        let title = text_field(message, "title");
        match message.get("event").and_then(Value::as_str) {
            Some("task.reminder") => format!(
                "Reminder {}: {title}",
                message
                    .get("reminder_no")
                    .and_then(Value::as_u64)
                    .unwrap_or(0)
            ),
            Some("task.escalated") => format!(
                "Escalated (stage {}): {title}",
                message.get("stage").and_then(Value::as_u64).unwrap_or(0)
            ),
            _ => format!("New task: {title}"),
        }
    }
}

/// A string field of a notification message, or an empty string.
pub fn text_field<'a>(message: &'a Value, key: &str) -> &'a str {
    message.get(key).and_then(Value::as_str).unwrap_or("")
}

/// What every channel is told: the task's essentials, never its payload.
fn message(intent: &Intent, kind: NotifyKind, recipient: &str) -> Value {
    let task = intent.human_task.as_ref();
    let mut message = json!({
        "event": kind.event(),
        "intent_id": intent.intent_id,
        "title": task.map(|t| t.title.as_str()).unwrap_or(&intent.intent_type),
        "task_type": task.map(|t| t.task_type.as_str()),
        "agent": intent.from_agent,
        "assignees": intent.assignees,
        "due_at": intent.due_at,
        "recipient": recipient,
    });
    match kind {
        NotifyKind::Assigned => {}
        NotifyKind::Reminder { reminder_no } => message["reminder_no"] = json!(reminder_no),
        NotifyKind::Escalated { stage } => message["stage"] = json!(stage),
    }
    message
}

/// Queues, in `change`, a notification on every channel routed to one of
/// `recipients`, and to the task's `notify_email`. A channel and target reached
/// through several routes is notified once.
pub fn queue_notifications(
    change: &mut Change,
    settings: &NotifySettings,
    recipients: &[String],
    kind: NotifyKind,
) {
    let mut seen: HashSet<(Channel, String)> = HashSet::new();
    let mut queued = Vec::new();
    for recipient in recipients {
        for route in settings
            .routes
            .iter()
            .filter(|route| route.matches(recipient))
        {
            for (channel, target) in route.channels() {
                if seen.insert((channel, target.clone())) {
                    queued.push((channel, recipient.clone(), target.clone()));
                }
            }
        }
    }
    let notify_email = change
        .intent
        .human_task
        .as_ref()
        .map(|task| task.notify_email.clone())
        .unwrap_or_default();
    if settings.smtp.is_some() {
        for address in notify_email {
            if seen.insert((Channel::Email, address.clone())) {
                queued.push((Channel::Email, address.clone(), address));
            }
        }
    }
    for (channel, recipient, target) in queued {
        let message = message(&change.intent, kind, &recipient);
        change.notify(Notification {
            channel,
            recipient,
            target,
            message,
        });
    }
}

/// Shortens `text` to `limit` characters, marking the cut.
pub fn clip(text: &str, limit: usize) -> String {
    if text.chars().count() <= limit {
        return text.to_string();
    }
    let mut clipped: String = text.chars().take(limit - 1).collect();
    clipped.push('…');
    clipped
}

/// An HTTP failure in a few words, for the audit. The URL is left out: for a
/// Slack webhook its path is the credential, and the audit is widely readable.
pub fn describe_http_error(err: reqwest::Error) -> String {
    if err.is_timeout() {
        return "timed out".to_string();
    }
    let connect = err.is_connect();
    let err = err.without_url();
    let mut text = err.to_string();
    let mut source = std::error::Error::source(&err);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    if connect {
        format!("cannot connect: {text}")
    } else {
        text
    }
}

/// Any 2xx is delivered; anything else is an error naming the status and the
/// start of the body (Slack explains its refusals there).
pub async fn check_status(response: reqwest::Response) -> std::result::Result<(), String> {
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let body = response.text().await.unwrap_or_default();
    let body = clip(body.trim(), 200);
    Err(if body.is_empty() {
        format!("HTTP {status}")
    } else {
        format!("HTTP {status}: {body}")
    })
}

/// How a target appears in the audit: an email address as it is, a webhook URL
/// without its path, which for Slack is the secret.
pub fn redacted_target(channel: Channel, target: &str) -> String {
    if channel == Channel::Email {
        return target.to_string();
    }
    match url::Url::parse(target) {
        Ok(url) => format!("{}://{}/…", url.scheme(), url.host_str().unwrap_or("?")),
        Err(_) => "(invalid URL)".to_string(),
    }
}

/// The wait before attempt `attempt + 1`, after `attempt` failed.
pub fn backoff_seconds(settings: &NotifySettings, attempt: u32) -> u64 {
    let doublings = attempt.saturating_sub(1).min(20);
    settings
        .retry_initial_seconds
        .saturating_mul(1 << doublings)
        .min(MAX_BACKOFF_SECONDS)
}

/// What one send attempt did to its outbox row, and the event that records it.
fn attempt_record(
    settings: &NotifySettings,
    item: &OutboxItem,
    result: &std::result::Result<(), String>,
    now: Timestamp,
) -> (OutboxUpdate, Value) {
    let notification = &item.notification;
    let attempt = item.attempts + 1;
    let mut details = json!({
        "channel": notification.channel.as_str(),
        "to": notification.recipient,
        "target": redacted_target(notification.channel, &notification.target),
        "event": notification.message.get("event"),
        "attempt": attempt,
        "ok": result.is_ok(),
    });
    let update = match result {
        Ok(()) => OutboxUpdate::Done {
            outbox_id: item.outbox_id,
        },
        Err(error) => {
            details["error"] = json!(error);
            if attempt >= settings.max_attempts {
                details["gave_up"] = json!(true);
                OutboxUpdate::Done {
                    outbox_id: item.outbox_id,
                }
            } else {
                let at = now.plus_seconds(backoff_seconds(settings, attempt) as i64);
                details["retry_at"] = json!(at);
                OutboxUpdate::Retry {
                    outbox_id: item.outbox_id,
                    at,
                }
            }
        }
    };
    (update, details)
}

/// The channels, ready to send.
pub struct Senders {
    http: reqwest::Client,
    mailer: Option<std::result::Result<smtp::Mailer, String>>,
    settings: NotifySettings,
}

impl Senders {
    pub fn new(settings: &NotifySettings) -> Senders {
        // TLS for https webhooks and SMTP needs the process-wide crypto provider.
        crate::client::install_crypto_provider();
        let http = reqwest::Client::builder()
            .timeout(SEND_TIMEOUT)
            .user_agent(concat!("signoff/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        Senders {
            http,
            mailer: settings.smtp.as_ref().map(smtp::Mailer::new),
            settings: settings.clone(),
        }
    }

    /// Sends one outbox row; the error says what went wrong, for the audit.
    pub async fn send(&self, item: &OutboxItem, now: Timestamp) -> std::result::Result<(), String> {
        let notification = &item.notification;
        let message = &notification.message;
        match notification.channel {
            Channel::Email => match &self.mailer {
                Some(Ok(mailer)) => mailer.send(&notification.target, message).await,
                Some(Err(error)) => Err(error.clone()),
                None => {
                    Err("email is not configured: add [notify.smtp] to the server config".into())
                }
            },
            Channel::Slack => slack::send(&self.http, &notification.target, message).await,
            Channel::Webhook => {
                let secret = self
                    .settings
                    .routes
                    .iter()
                    .find(|route| route.webhook.as_deref() == Some(notification.target.as_str()))
                    .and_then(|route| route.webhook_secret.as_deref())
                    .ok_or("no webhook_secret is configured for this webhook any more")?;
                let delivery = webhook::Delivery {
                    id: item.outbox_id,
                    attempt: item.attempts + 1,
                    sent_at: now,
                };
                webhook::send(&self.http, &notification.target, secret, message, &delivery).await
            }
        }
    }
}

/// How many sends may be in flight at once. Each runs on its own, so one slow
/// channel (a blackholed SMTP host) holds up only its own notifications.
const MAX_IN_FLIGHT: usize = 64;

/// The sender's running state: the channels and the sends in flight.
pub struct Notifier {
    senders: Arc<Senders>,
    in_flight: Arc<Semaphore>,
    tracker: TaskTracker,
}

impl Notifier {
    pub fn new(settings: &NotifySettings) -> Notifier {
        Notifier {
            senders: Arc::new(Senders::new(settings)),
            in_flight: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
            tracker: TaskTracker::new(),
        }
    }

    /// Waits for the sends in flight (each bounded by [`SEND_TIMEOUT`]).
    pub async fn finish(&self) {
        self.tracker.close();
        self.tracker.wait().await;
    }
}

impl Engine {
    /// Claims what is due in the outbox and starts sending it, as many as may be
    /// in flight. Returns [`CLAIM_BATCH`] when more may be waiting.
    pub async fn send_due_notifications(&self, notifier: &Notifier) -> Result<usize> {
        let free = notifier.in_flight.available_permits().min(CLAIM_BATCH);
        if free == 0 {
            // Everything is in flight: wait until a send finishes, then look again.
            drop(notifier.in_flight.acquire().await);
            return Ok(CLAIM_BATCH);
        }
        let items = self
            .store
            .claim_outbox(self.clock.now(), LEASE_SECONDS, free)
            .await?;
        let claimed = items.len();
        for item in items {
            let Ok(permit) = notifier.in_flight.clone().acquire_owned().await else {
                break;
            };
            let (engine, senders) = (self.clone(), notifier.senders.clone());
            notifier.tracker.spawn(async move {
                engine.deliver(&senders, item).await;
                drop(permit);
            });
        }
        Ok(if claimed == free {
            CLAIM_BATCH
        } else {
            claimed
        })
    }

    async fn deliver(&self, senders: &Senders, item: OutboxItem) {
        let intent_id = item.intent_id.clone();
        let intent = match self.store.intent(&intent_id).await {
            Ok(intent) => intent,
            Err(err) => {
                // Left leased: it is tried again when the lease runs out.
                tracing::warn!(%intent_id, "cannot look at the task before notifying: {err}");
                return;
            }
        };
        // Nothing is sent about a task that has ended since it was queued.
        let result = match intent {
            Some(intent) if !intent.status.is_terminal() => {
                Some(senders.send(&item, self.clock.now()).await)
            }
            _ => None,
        };
        let settings = self.settings.clone();
        let written = self
            .store
            .write_intent(
                Target::Existing(intent_id.clone()),
                None,
                Box::new(move |change| {
                    let done = OutboxUpdate::Done {
                        outbox_id: item.outbox_id,
                    };
                    match result {
                        None => change.update_outbox(done),
                        // An ended intent never changes again, so a send that raced
                        // the end is only logged.
                        Some(result) if change.intent.status.is_terminal() => {
                            tracing::info!(
                                intent_id = %change.intent.intent_id,
                                ok = result.is_ok(),
                                "a notification went out as its task ended; not recorded on the ended intent"
                            );
                            change.update_outbox(done);
                        }
                        Some(result) => {
                            let (update, details) =
                                attempt_record(&settings.notify, &item, &result, change.now);
                            change.update_outbox(update);
                            change.record(NOTIFIED, NOTIFIER_ACTOR, details);
                        }
                    }
                    Ok(Value::Null)
                }),
            )
            .await;
        if let Err(err) = written {
            // The lease runs out and the row is sent again: delivery is at least
            // once, and receivers can tell repeats by X-Signoff-Delivery.
            tracing::error!(%intent_id, "cannot record a notification attempt: {err}");
        }
    }

    /// Runs the outbox sender until `shutdown` fires, then lets the sends in
    /// flight finish.
    pub async fn run_notifier(&self, shutdown: CancellationToken) {
        let notifier = Notifier::new(&self.settings.notify);
        self.hub
            .outbox
            .drive(
                "sending notifications",
                self.clock.as_ref(),
                &shutdown,
                CLAIM_BATCH,
                || self.send_due_notifications(&notifier),
                || self.store.next_outbox_due(),
            )
            .await;
        notifier.finish().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(recipient: &str) -> NotifyRoute {
        NotifyRoute {
            recipient: recipient.into(),
            email: None,
            slack_webhook: Some("https://hooks.slack.com/services/T0/B0/secret".into()),
            webhook: None,
            webhook_secret: None,
        }
    }

    #[test]
    fn routes_match_identities_case_insensitively_and_star_matches_all() {
        assert!(route("Alice@Example.com").matches("alice@example.com"));
        assert!(route("team:oncall").matches("team:oncall"));
        assert!(!route("team:oncall").matches("alice@example.com"));
        assert!(route("*").matches("anyone@example.com"));
    }

    #[test]
    fn webhook_urls_lose_their_secret_path_in_the_audit() {
        assert_eq!(
            redacted_target(
                Channel::Slack,
                "https://hooks.slack.com/services/T0/B0/secret"
            ),
            "https://hooks.slack.com/…"
        );
        assert_eq!(
            redacted_target(Channel::Email, "a@example.com"),
            "a@example.com"
        );
    }

    #[test]
    fn backoff_doubles_from_the_initial_wait_and_is_capped() {
        let settings = NotifySettings {
            retry_initial_seconds: 5,
            ..NotifySettings::default()
        };
        let waits: Vec<u64> = (1..=5)
            .map(|attempt| backoff_seconds(&settings, attempt))
            .collect();
        assert_eq!(waits, [5, 10, 20, 40, 80]);
        assert_eq!(backoff_seconds(&settings, 40), MAX_BACKOFF_SECONDS);
    }

    #[test]
    fn the_last_failed_attempt_gives_up_and_earlier_ones_retry() {
        let settings = NotifySettings {
            retry_initial_seconds: 2,
            max_attempts: 3,
            ..NotifySettings::default()
        };
        let now = Timestamp::parse("2026-11-21T12:00:00Z").unwrap();
        let item = |attempts| OutboxItem {
            outbox_id: 7,
            intent_id: "i".into(),
            notification: Notification {
                channel: Channel::Webhook,
                recipient: "alice@example.com".into(),
                target: "http://127.0.0.1:1/hook".into(),
                message: json!({"event": "task.reminder"}),
            },
            attempts,
        };
        let failed = Err("HTTP 500".to_string());
        let (update, details) = attempt_record(&settings, &item(1), &failed, now);
        assert_eq!(
            update,
            OutboxUpdate::Retry {
                outbox_id: 7,
                at: now.plus_seconds(4)
            }
        );
        assert_eq!(details["attempt"], 2);
        assert_eq!(details["ok"], false);
        let (update, details) = attempt_record(&settings, &item(2), &failed, now);
        assert_eq!(update, OutboxUpdate::Done { outbox_id: 7 });
        assert_eq!(details["gave_up"], true);
        let (update, details) = attempt_record(&settings, &item(0), &Ok(()), now);
        assert_eq!(update, OutboxUpdate::Done { outbox_id: 7 });
        assert_eq!(
            (details["ok"].clone(), details["to"].clone()),
            (json!(true), json!("alice@example.com"))
        );
    }
}
