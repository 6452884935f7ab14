//! Server-sent events, framed exactly as the wire contract says:
//! `id: N\nevent: NAME\ndata: {compact json}\n\n`, one `data:` line per event.

use std::convert::Infallible;
use std::pin::Pin;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use bytes::BytesMut;
use futures::{Stream, StreamExt};
use serde::Serialize;
use serde_json::json;
use tokio_util::sync::CancellationToken;

/// How often an idle long-lived stream sends a `: ping` comment.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);
const PING: &[u8] = b": ping\n\n";

/// One event frame. Compact JSON never contains a raw newline, so one `data:` line
/// always carries the whole payload.
pub fn frame(id: Option<u64>, event: &str, data: &impl Serialize) -> Bytes {
    let json = serde_json::to_string(data).unwrap_or_else(|_| "null".to_string());
    let mut text = String::with_capacity(json.len() + event.len() + 32);
    if let Some(id) = id {
        text.push_str(&format!("id: {id}\n"));
    }
    text.push_str(&format!("event: {event}\ndata: {json}\n\n"));
    Bytes::from(text)
}

/// The frame that ends a bounded stream and tells the client where to resume.
pub fn timeout_frame(next_seq: u64) -> Bytes {
    frame(
        None,
        "stream.timeout",
        &json!({ "ok": true, "next_seq": next_seq }),
    )
}

pub fn response(body: impl Stream<Item = Bytes> + Send + 'static) -> Response {
    let mut response = Body::from_stream(body.map(Ok::<_, Infallible>)).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // Tells nginx-style proxies not to buffer the stream.
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

/// What a bounded stream does with one item: the frame to send, the position to
/// resume after it, and whether it ends the stream.
pub struct Step {
    pub frame: Bytes,
    pub position: u64,
    pub last: bool,
}

type BoxedItems<T> = Pin<Box<dyn Stream<Item = T> + Send>>;

/// A stream that closes after `idle` without an item, right after an item marked
/// `last`, or at shutdown. The first two end with a `stream.timeout` frame carrying
/// the position to resume from.
pub fn bounded<T, F>(
    items: impl Stream<Item = T> + Send + 'static,
    start: u64,
    idle: Duration,
    shutdown: CancellationToken,
    step: F,
) -> impl Stream<Item = Bytes> + Send + 'static
where
    T: Send + 'static,
    F: Fn(T) -> Step + Send + 'static,
{
    let items: BoxedItems<T> = Box::pin(items);
    let state = (items, start, false, step, shutdown);
    futures::stream::unfold(
        state,
        move |(mut items, position, done, step, shutdown)| async move {
            if done {
                return None;
            }
            let next = tokio::select! {
                _ = shutdown.cancelled() => return None,
                next = tokio::time::timeout(idle, items.next()) => next,
            };
            match next {
                Ok(Some(item)) => {
                    let Step {
                        frame,
                        position,
                        last,
                    } = step(item);
                    let chunk = if last {
                        let mut both = BytesMut::from(&frame[..]);
                        both.extend_from_slice(&timeout_frame(position));
                        both.freeze()
                    } else {
                        frame
                    };
                    Some((chunk, (items, position, last, step, shutdown)))
                }
                Ok(None) | Err(_) => Some((
                    timeout_frame(position),
                    (items, position, true, step, shutdown),
                )),
            }
        },
    )
}

/// A stream that stays open until the client leaves or the server shuts down,
/// sending a `: ping` comment whenever it has been quiet for [`KEEP_ALIVE`].
pub fn long_lived(
    frames: impl Stream<Item = Bytes> + Send + 'static,
    shutdown: CancellationToken,
) -> impl Stream<Item = Bytes> + Send + 'static {
    let frames: BoxedItems<Bytes> = Box::pin(frames);
    futures::stream::unfold((frames, shutdown), |(mut frames, shutdown)| async move {
        let next = tokio::select! {
            _ = shutdown.cancelled() => return None,
            next = tokio::time::timeout(KEEP_ALIVE, frames.next()) => next,
        };
        match next {
            Ok(Some(frame)) => Some((frame, (frames, shutdown))),
            Ok(None) => None,
            Err(_) => Some((Bytes::from_static(PING), (frames, shutdown))),
        }
    })
}
