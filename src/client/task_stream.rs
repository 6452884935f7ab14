//! The reviewer task stream (`GET /v1/me/tasks/stream`) as a never-ending async
//! stream. eventsource-client reconnects with exponential backoff and sends the
//! last event id it saw, so the server resumes exactly after it: no task is lost or
//! repeated across a disconnect.

use std::time::Duration;

use eventsource_client::{Client as _, ClientBuilder, ReconnectOptions, SSE};
use futures::{Stream, StreamExt};
use launchdarkly_sdk_transport::HyperTransport;
use serde::Deserialize;

use super::{Client, ClientError, ClientResult, install_crypto_provider};
use crate::domain::{Status, TaskView};

/// Longest wait between reconnection attempts.
const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(30);
/// The server pings every 15 s; three missed pings means the connection is dead.
const READ_TIMEOUT: Duration = Duration::from_secs(45);

#[derive(Debug, Clone, PartialEq)]
pub enum TaskStreamMessage {
    /// A connection (or reconnection) was established.
    Connected,
    /// The full list of waiting tasks; sent on a fresh connection.
    Snapshot { cursor: u64, tasks: Vec<TaskView> },
    /// A task appeared, was reassigned to this reviewer, reminded or escalated.
    Upserted {
        cursor: u64,
        reason: String,
        task: TaskView,
    },
    /// A task left this reviewer's list: decided, timed out, canceled, reassigned.
    Removed {
        cursor: u64,
        intent_id: String,
        reason: String,
        status: Status,
        by: String,
        outcome: Option<String>,
    },
    /// A reminder is due for this reviewer.
    Reminder {
        cursor: u64,
        reminder_no: u64,
        task: TaskView,
    },
    /// The connection failed or dropped; the stream keeps reconnecting.
    Disconnected { error: String },
}

#[derive(Deserialize)]
struct SnapshotData {
    cursor: u64,
    tasks: Vec<TaskView>,
}

#[derive(Deserialize)]
struct UpsertData {
    cursor: u64,
    reason: String,
    task: TaskView,
}

#[derive(Deserialize)]
struct RemovedData {
    cursor: u64,
    intent_id: String,
    reason: String,
    status: Status,
    by: String,
    outcome: Option<String>,
}

#[derive(Deserialize)]
struct ReminderData {
    cursor: u64,
    reminder_no: u64,
    task: TaskView,
}

fn decode<T: serde::de::DeserializeOwned>(event: &str, data: &str) -> Result<T, String> {
    serde_json::from_str(data).map_err(|err| format!("bad `{event}` event from the server: {err}"))
}

/// Turns one SSE event into a message; unknown event types are skipped so newer
/// servers can add events without breaking older clients.
pub fn parse_task_event(event: &str, data: &str) -> Option<Result<TaskStreamMessage, String>> {
    let message = match event {
        "tasks.snapshot" => {
            decode::<SnapshotData>(event, data).map(|d| TaskStreamMessage::Snapshot {
                cursor: d.cursor,
                tasks: d.tasks,
            })
        }
        "task.upserted" => decode::<UpsertData>(event, data).map(|d| TaskStreamMessage::Upserted {
            cursor: d.cursor,
            reason: d.reason,
            task: d.task,
        }),
        "task.removed" => decode::<RemovedData>(event, data).map(|d| TaskStreamMessage::Removed {
            cursor: d.cursor,
            intent_id: d.intent_id,
            reason: d.reason,
            status: d.status,
            by: d.by,
            outcome: d.outcome,
        }),
        "task.reminder" => {
            decode::<ReminderData>(event, data).map(|d| TaskStreamMessage::Reminder {
                cursor: d.cursor,
                reminder_no: d.reminder_no,
                task: d.task,
            })
        }
        _ => return None,
    };
    Some(message)
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
                Ok(SSE::Event(event)) => match parse_task_event(&event.event_type, &event.data) {
                    Some(Ok(message)) => Some(message),
                    Some(Err(error)) => Some(TaskStreamMessage::Disconnected { error }),
                    None => None,
                },
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
