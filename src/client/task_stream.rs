//! The reviewer task stream (`GET /v1/me/tasks/stream`) as a never-ending async
//! stream over eventsource-client. Each connection resumes from the last event id
//! seen, so the server continues exactly after it: no task is lost or repeated
//! across a disconnect. Reconnection (exponential backoff) is driven here rather
//! than inside eventsource-client so that every drop is reported together with
//! when the next attempt happens, which the inbox shows as a countdown.

use std::time::Duration;

use eventsource_client::{BoxStream, Client as _, ClientBuilder, ReconnectOptions, SSE};
use futures::{Stream, StreamExt};
use launchdarkly_sdk_transport::{HttpTransport, HyperTransport};

use super::{Client, ClientError, ClientResult, install_crypto_provider};
use crate::domain::TaskStreamItem;

/// First wait before reconnecting; it doubles after each failure.
const FIRST_RECONNECT_DELAY: Duration = Duration::from_millis(500);
/// Longest wait between reconnection attempts.
const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(30);
/// The server pings every 15 s; three missed pings means the connection is dead.
const READ_TIMEOUT: Duration = Duration::from_secs(45);

#[derive(Debug, Clone, PartialEq)]
#[expect(
    clippy::large_enum_variant,
    reason = "each message is moved once from the stream to its consumer, never stored in bulk"
)]
pub enum TaskStreamMessage {
    /// A connection (or reconnection) was established.
    Connected,
    /// A snapshot (fresh connections only), upsert, removal or reminder.
    Item(TaskStreamItem),
    /// The connection failed or dropped; the next attempt is in `retry_in`.
    Disconnected { error: String, retry_in: Duration },
}

type Events = BoxStream<Result<SSE, eventsource_client::Error>>;

/// The reconnect loop's state: each connection is a fresh eventsource-client
/// stream that resumes from the last event id seen.
struct Reconnecting<T: HttpTransport> {
    url: String,
    key: String,
    transport: T,
    cursor: Option<String>,
    delay: Duration,
    wait: Option<Duration>,
    events: Option<Events>,
}

impl<T: HttpTransport> Reconnecting<T> {
    fn connect(&self) -> Result<Events, String> {
        let mut builder = ClientBuilder::for_url(&self.url)
            .and_then(|builder| builder.header("x-api-key", &self.key))
            .map_err(|err| format!("cannot set up the task stream: {err}"))?
            .reconnect(
                ReconnectOptions::reconnect(false)
                    .retry_initial(false)
                    .build(),
            );
        if let Some(cursor) = &self.cursor {
            builder = builder.last_event_id(cursor.clone());
        }
        Ok(builder
            .build_with_transport(self.transport.clone())
            .stream())
    }

    fn disconnected(&mut self, error: String) -> TaskStreamMessage {
        self.events = None;
        let retry_in = self.delay;
        self.wait = Some(retry_in);
        self.delay = (self.delay * 2).min(MAX_RECONNECT_DELAY);
        TaskStreamMessage::Disconnected { error, retry_in }
    }

    async fn next(&mut self) -> TaskStreamMessage {
        loop {
            if self.events.is_none() {
                if let Some(wait) = self.wait.take() {
                    tokio::time::sleep(wait).await;
                }
                match self.connect() {
                    Ok(events) => self.events = Some(events),
                    Err(error) => return self.disconnected(error),
                }
            }
            let Some(events) = self.events.as_mut() else {
                continue;
            };
            match events.next().await {
                Some(Ok(SSE::Connected(_))) => {
                    self.delay = FIRST_RECONNECT_DELAY;
                    return TaskStreamMessage::Connected;
                }
                Some(Ok(SSE::Comment(_))) => {}
                Some(Ok(SSE::Event(event))) => {
                    if let Some(id) = event.id.filter(|id| !id.is_empty()) {
                        self.cursor = Some(id);
                    }
                    match TaskStreamItem::parse(&event.event_type, &event.data) {
                        Some(Ok(item)) => return TaskStreamMessage::Item(item),
                        Some(Err(error)) => tracing::warn!("skipping a task stream event: {error}"),
                        None => {}
                    }
                }
                Some(Err(err)) => return self.disconnected(describe_stream_error(&err)),
                None => return self.disconnected("the server closed the stream".to_string()),
            }
        }
    }
}

impl Client {
    /// Follows the caller's task list forever, reconnecting with exponential
    /// backoff. With `resume_from`, the first connection resumes after that
    /// cursor instead of starting with a snapshot.
    pub fn task_stream(
        &self,
        resume_from: Option<u64>,
    ) -> ClientResult<impl Stream<Item = TaskStreamMessage> + Send + use<>> {
        install_crypto_provider();
        let transport = HyperTransport::builder()
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(READ_TIMEOUT)
            .build_https()
            .map_err(|err| {
                ClientError::Protocol(format!("cannot set up the task stream: {err}"))
            })?;
        let state = Reconnecting {
            url: format!("{}/v1/me/tasks/stream", self.base),
            key: self.key.clone(),
            transport,
            cursor: resume_from.map(|cursor| cursor.to_string()),
            delay: FIRST_RECONNECT_DELAY,
            wait: None,
            events: None,
        };
        Ok(futures::stream::unfold(state, |mut state| async move {
            let message = state.next().await;
            Some((message, state))
        }))
    }
}

fn describe_stream_error(err: &eventsource_client::Error) -> String {
    match err {
        eventsource_client::Error::UnexpectedResponse(response, _) => {
            format!("the server answered HTTP {}", response.status())
        }
        eventsource_client::Error::Eof => "the server closed the stream".to_string(),
        other => {
            // Transport errors nest the same words several levels deep; the
            // innermost cause ("Connection refused") is the one worth showing.
            let mut cause: &dyn std::error::Error = other;
            while let Some(inner) = cause.source() {
                cause = inner;
            }
            format!("cannot reach the server: {cause}")
        }
    }
}
