//! `/v1/me/tasks` and its live stream.

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use futures::StreamExt;
use serde_json::{Value, json};

use super::intents::resume_position;
use crate::server::AppState;
use crate::server::error::ApiResult;
use crate::server::extract::{Caller, Query};
use crate::server::sse;

pub async fn list(State(state): State<AppState>, Caller(caller): Caller) -> ApiResult<Json<Value>> {
    let tasks = state.engine.my_tasks(&caller).await?;
    Ok(Json(json!({ "ok": true, "tasks": tasks })))
}

pub async fn stream(
    State(state): State<AppState>,
    Caller(caller): Caller,
    headers: HeaderMap,
    query: Query,
) -> ApiResult<Response> {
    let resume_from = resume_position(&headers, &query)?;
    let items = state.engine.task_stream(&caller, resume_from).await?;
    let frames = items.map(|item| sse::frame(Some(item.cursor()), item.event_name(), &item));
    Ok(sse::response(sse::long_lived(
        frames,
        state.shutdown.clone(),
    )))
}
