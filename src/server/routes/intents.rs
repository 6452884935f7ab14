//! `/v1/intents/...`: create, read, follow, resume, resolve.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use axum::{Extension, Json};
use serde_json::{Value, json};
use std::time::Duration;

use crate::domain::{Error, ErrorKind, Event};
use crate::server::AppState;
use crate::server::error::ApiResult;
use crate::server::extract::{AuthenticatedKey, Caller, PathParams, Query, Write, position};
use crate::server::sse;

/// Bounds on `wait_seconds` for the bounded streams.
const DEFAULT_WAIT_SECONDS: u64 = 15;
const MAX_WAIT_SECONDS: u64 = 60;

/// `wait_seconds`: 1 to 60, default 15. Larger values are clamped to 60 so SDK
/// callers passing a long wait keep working; zero or garbage is refused.
pub fn wait_seconds(query: &Query) -> ApiResult<Duration> {
    let seconds = query
        .unsigned("wait_seconds")?
        .unwrap_or(DEFAULT_WAIT_SECONDS);
    if seconds == 0 {
        return Err(
            Error::malformed("query parameter `wait_seconds` must be between 1 and 60").into(),
        );
    }
    Ok(Duration::from_secs(seconds.min(MAX_WAIT_SECONDS)))
}

/// Where a stream resumes: the `Last-Event-ID` header wins over `?since=`.
pub fn resume_position(headers: &HeaderMap, query: &Query) -> ApiResult<Option<u64>> {
    if let Some(value) = headers.get("last-event-id") {
        let text = value.to_str().unwrap_or_default().trim();
        if !text.is_empty() {
            return position("Last-Event-ID", text).map(Some);
        }
    }
    query.unsigned("since")
}

pub async fn create(State(state): State<AppState>, write: Write) -> ApiResult<Json<Value>> {
    let created = state
        .engine
        .create_intent(&write.caller, &write.body, write.claim)
        .await?;
    Ok(Json(created))
}

pub async fn get(
    State(state): State<AppState>,
    Caller(caller): Caller,
    PathParams(intent_id): PathParams<String>,
) -> ApiResult<Json<Value>> {
    let intent = state.engine.intent(&caller, &intent_id).await?;
    Ok(Json(json!({ "ok": true, "intent": intent })))
}

pub async fn events(
    State(state): State<AppState>,
    Caller(caller): Caller,
    PathParams(intent_id): PathParams<String>,
    query: Query,
) -> ApiResult<Json<Value>> {
    let since = query.unsigned("since")?.unwrap_or(0);
    let events = state.engine.events(&caller, &intent_id, since).await?;
    Ok(Json(json!({ "ok": true, "events": events })))
}

pub async fn events_stream(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Extension(key): Extension<AuthenticatedKey>,
    PathParams(intent_id): PathParams<String>,
    headers: HeaderMap,
    query: Query,
) -> ApiResult<Response> {
    let asked = resume_position(&headers, &query)?.unwrap_or(0);
    let wait = wait_seconds(&query)?;
    let (intent, since, events) = state
        .engine
        .intent_events(&caller, &intent_id, asked)
        .await?;
    // An ended intent with nothing left to replay has nothing to wait for.
    let idle = if intent.status.is_terminal() && since >= intent.last_seq {
        Duration::ZERO
    } else {
        wait
    };
    let body = sse::bounded(
        events,
        since,
        idle,
        sse::stop_signal(&state, &key),
        |event: Event| sse::Step {
            frame: sse::frame(Some(event.seq), &event.event_type, &event),
            position: event.seq,
            last: event.is_terminal(),
        },
    );
    Ok(sse::response(body))
}

/// `POST /v1/intents/{id}/resume`, `/resolve` and `/viewed` [ext].
pub async fn act(
    State(state): State<AppState>,
    PathParams((intent_id, action)): PathParams<(String, String)>,
    query: Query,
    write: Write,
) -> ApiResult<Json<Value>> {
    let owner_agent = query.text("owner_agent");
    let Write {
        caller,
        body,
        claim,
        via,
    } = write;
    let engine = &state.engine;
    let response = match action.as_str() {
        "resume" => {
            engine
                .resume(&caller, &intent_id, &body, owner_agent, via, claim)
                .await?
        }
        "resolve" => {
            engine
                .resolve(&caller, &intent_id, &body, owner_agent, claim)
                .await?
        }
        "viewed" => engine.mark_viewed(&caller, &intent_id, via, claim).await?,
        other => {
            return Err(Error::new(
                ErrorKind::NotFound,
                "no_such_endpoint",
                format!("there is no intent action `{other}`; use resume, resolve or viewed"),
            )
            .into());
        }
    };
    Ok(Json(response))
}
