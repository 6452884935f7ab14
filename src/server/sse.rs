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
use std::future::Future;

use super::AppState;
use super::extract::AuthenticatedKey;

/// How often an idle long-lived stream sends a `: ping` comment.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);
const PING: &[u8] = b": ping\n\n";

/// One event frame. Compact JSON never contains a raw newline, so one `data:` line
/// always carries the whole payload. The JSON is written straight into the frame:
/// a 10,000-task snapshot is several megabytes, too much to copy around.
pub fn frame(id: Option<u64>, event: &str, data: &impl Serialize) -> Bytes {
    let mut frame = Vec::with_capacity(256);
    if let Some(id) = id {
        frame.extend_from_slice(format!("id: {id}\n").as_bytes());
    }
    frame.extend_from_slice(b"event: ");
    frame.extend_from_slice(event.as_bytes());
    frame.extend_from_slice(b"\ndata: ");
    if serde_json::to_writer(&mut frame, data).is_err() {
        frame.extend_from_slice(b"null");
    }
    frame.extend_from_slice(b"\n\n");
    Bytes::from(frame)
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
type Stop = Pin<Box<dyn Future<Output = ()> + Send>>;

/// What ends a stream early: server shutdown, or the revocation of the key the
/// stream was opened with.
pub fn stop_signal(
    state: &AppState,
    key: &AuthenticatedKey,
) -> impl Future<Output = ()> + Send + 'static {
    let shutdown = state.shutdown.clone();
    let revoked = state.engine.key_revoked(key.0.clone());
    async move {
        tokio::select! {
            _ = shutdown.cancelled() => {}
            _ = revoked => {}
        }
    }
}

/// A stream that closes after `idle` without an item, right after an item marked
/// `last`, or when `stop` resolves. The first two end with a `stream.timeout`
/// frame carrying the position to resume from.
pub fn bounded<T, F>(
    items: impl Stream<Item = T> + Send + 'static,
    start: u64,
    idle: Duration,
    stop: impl Future<Output = ()> + Send + 'static,
    step: F,
) -> impl Stream<Item = Bytes> + Send + 'static
where
    T: Send + 'static,
    F: Fn(T) -> Step + Send + 'static,
{
    let items: BoxedItems<T> = Box::pin(items);
    let stop: Stop = Box::pin(stop);
    let state = (items, start, false, step, stop);
    futures::stream::unfold(
        state,
        move |(mut items, position, done, step, mut stop)| async move {
            if done {
                return None;
            }
            let next = tokio::select! {
                _ = &mut stop => return None,
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
                    Some((chunk, (items, position, last, step, stop)))
                }
                Ok(None) | Err(_) => {
                    Some((timeout_frame(position), (items, position, true, step, stop)))
                }
            }
        },
    )
}

/// A stream that stays open until the client leaves or `stop` resolves, sending
/// a `: ping` comment whenever it has been quiet for [`KEEP_ALIVE`].
pub fn long_lived(
    frames: impl Stream<Item = Bytes> + Send + 'static,
    stop: impl Future<Output = ()> + Send + 'static,
) -> impl Stream<Item = Bytes> + Send + 'static {
    let frames: BoxedItems<Bytes> = Box::pin(frames);
    let stop: Stop = Box::pin(stop);
    futures::stream::unfold((frames, stop), |(mut frames, mut stop)| async move {
        let next = tokio::select! {
            _ = &mut stop => return None,
            next = tokio::time::timeout(KEEP_ALIVE, frames.next()) => next,
        };
        match next {
            Ok(Some(frame)) => Some((frame, (frames, stop))),
            Ok(None) => None,
            Err(_) => Some((Bytes::from_static(PING), (frames, stop))),
        }
    })
}
