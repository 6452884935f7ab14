//! `/v1/me/tasks` and its live stream.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use axum::{Extension, Json};
use futures::StreamExt;
use serde_json::{Value, json};

use super::intents::resume_position;
use crate::server::AppState;
use crate::server::error::ApiResult;
use crate::server::extract::{AuthenticatedKey, Caller, Query};
use crate::server::sse;

pub async fn list(State(state): State<AppState>, Caller(caller): Caller) -> ApiResult<Json<Value>> {
    let tasks = state.engine.my_tasks(&caller).await?;
    Ok(Json(json!({ "ok": true, "tasks": tasks })))
}

pub async fn stream(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Extension(key): Extension<AuthenticatedKey>,
    headers: HeaderMap,
    query: Query,
) -> ApiResult<Response> {
    let resume_from = resume_position(&headers, &query)?;
    let frames = state
        .engine
        .task_stream(&caller, resume_from)
        .await?
        .map(|frame| {
            // Only the last item of an event carries its id, so a client resuming
            // from an id has received everything that event produced.
            let id = frame.resume_point.then(|| frame.item.cursor());
            sse::frame(id, frame.item.event_name(), &frame.item)
        });
    Ok(sse::response(sse::long_lived(
        frames,
        sse::stop_signal(&state, &key),
    )))
}
