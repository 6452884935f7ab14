//! `/v1/me/tasks` and its live stream.

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use futures::StreamExt;
use serde_json::{Value, json};

use super::intents::resume_position;
use crate::engine::streams::TaskStreamItem;
use crate::server::AppState;
use crate::server::error::ApiResult;
use crate::server::extract::{Caller, Query};
use crate::server::sse;

pub async fn list(State(state): State<AppState>, Caller(caller): Caller) -> ApiResult<Json<Value>> {
    let tasks = state.engine.my_tasks(&caller).await?;
    Ok(Json(json!({ "ok": true, "tasks": tasks })))
}

/// The SSE frame for one task stream item; `id:` is the cursor to resume from.
pub fn task_frame(item: &TaskStreamItem) -> axum::body::Bytes {
    let cursor = Some(item.cursor());
    match item {
        TaskStreamItem::Snapshot { cursor, tasks } => sse::frame(
            Some(*cursor),
            "tasks.snapshot",
            &json!({ "cursor": cursor, "tasks": tasks }),
        ),
        TaskStreamItem::Upserted { reason, task, .. } => sse::frame(
            cursor,
            "task.upserted",
            &json!({ "cursor": cursor, "reason": reason, "task": task }),
        ),
        TaskStreamItem::Removed {
            intent_id,
            reason,
            status,
            by,
            outcome,
            ..
        } => sse::frame(
            cursor,
            "task.removed",
            &json!({ "cursor": cursor, "intent_id": intent_id, "reason": reason, "status": status, "by": by, "outcome": outcome }),
        ),
        TaskStreamItem::Reminder {
            reminder_no, task, ..
        } => sse::frame(
            cursor,
            "task.reminder",
            &json!({ "cursor": cursor, "intent_id": task.intent_id, "reminder_no": reminder_no, "task": task }),
        ),
    }
}

pub async fn stream(
    State(state): State<AppState>,
    Caller(caller): Caller,
    headers: HeaderMap,
    query: Query,
) -> ApiResult<Response> {
    let resume_from = resume_position(&headers, &query)?;
    let items = state.engine.task_stream(&caller, resume_from).await?;
    let frames = items.map(|item| task_frame(&item));
    Ok(sse::response(sse::long_lived(
        frames,
        state.shutdown.clone(),
    )))
}
