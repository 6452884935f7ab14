//! The reviewer task stream (`GET /v1/me/tasks/stream`) as a never-ending async
//! stream. eventsource-client reconnects with exponential backoff and sends the
//! last event id it saw, so the server resumes exactly after it: no task is lost or
//! repeated across a disconnect.

use std::time::Duration;

use eventsource_client::{Client as _, ClientBuilder, ReconnectOptions, SSE};
use futures::{Stream, StreamExt};
use launchdarkly_sdk_transport::HyperTransport;

use super::{Client, ClientError, ClientResult, install_crypto_provider};
use crate::domain::TaskStreamItem;

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
    /// The connection failed or dropped; the stream keeps reconnecting.
    Disconnected { error: String },
}

impl Client {
    /// Follows the caller's task list forever. With `resume_from`, the first
    /// connection resumes after that cursor instead of starting with a snapshot.
    pub fn task_stream(
        &self,
        resume_from: Option<u64>,
    ) -> ClientResult<impl Stream<Item = TaskStreamMessage> + Send + use<>> {
        install_crypto_provider();
        let url = format!("{}/v1/me/tasks/stream", self.base);
        let setup = |err: eventsource_client::Error| {
            ClientError::Protocol(format!("cannot set up the task stream: {err}"))
        };
        let mut builder = ClientBuilder::for_url(&url)
            .map_err(setup)?
            .header("x-api-key", &self.key)
            .map_err(setup)?
            .reconnect(
                ReconnectOptions::reconnect(true)
                    .retry_initial(true)
                    .delay(Duration::from_millis(500))
                    .backoff_factor(2)
                    .delay_max(MAX_RECONNECT_DELAY)
                    .build(),
            );
        if let Some(cursor) = resume_from {
            builder = builder.last_event_id(cursor.to_string());
        }
        let transport = HyperTransport::builder()
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(READ_TIMEOUT)
            .build_https()
            .map_err(|err| {
                ClientError::Protocol(format!("cannot set up the task stream: {err}"))
            })?;
        let client = builder.build_with_transport(transport);
        Ok(client.stream().filter_map(|item| {
            let message = match item {
                Ok(SSE::Connected(_)) => Some(TaskStreamMessage::Connected),
                Ok(SSE::Comment(_)) => None,
                Ok(SSE::Event(event)) => {
                    match TaskStreamItem::parse(&event.event_type, &event.data) {
                        Some(Ok(item)) => Some(TaskStreamMessage::Item(item)),
                        Some(Err(error)) => Some(TaskStreamMessage::Disconnected { error }),
                        None => None,
                    }
                }
                Err(err) => Some(TaskStreamMessage::Disconnected {
                    error: describe_stream_error(&err),
                }),
            };
            futures::future::ready(message)
        }))
    }
}

fn describe_stream_error(err: &eventsource_client::Error) -> String {
    match err {
        eventsource_client::Error::UnexpectedResponse(response, _) => {
            format!("the server answered HTTP {}", response.status())
        }
        eventsource_client::Error::Eof => "the server closed the stream".to_string(),
        other => other.to_string(),
    }
}
