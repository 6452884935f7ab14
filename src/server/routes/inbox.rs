//! The AXP inbox and approvals endpoints.

use axum::Json;
use axum::extract::{Path, State};
use serde_json::{Value, json};

use crate::domain::{Error, Verdict};
use crate::engine::decisions::Via;
use crate::server::AppState;
use crate::server::error::ApiResult;
use crate::server::extract::{Caller, JsonBody, Query, WriteContext};

const DEFAULT_CHANGES_LIMIT: u64 = 100;

pub async fn list(
    State(state): State<AppState>,
    Caller(caller): Caller,
    query: Query,
) -> ApiResult<Json<Value>> {
    let threads = state
        .engine
        .inbox(&caller, query.text("owner_agent"))
        .await?;
    Ok(Json(json!({ "ok": true, "threads": threads })))
}

pub async fn thread(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(thread_id): Path<String>,
    query: Query,
) -> ApiResult<Json<Value>> {
    let thread = state
        .engine
        .inbox_thread(&caller, query.text("owner_agent"), &thread_id)
        .await?;
    Ok(Json(json!({ "ok": true, "thread": thread })))
}

pub async fn changes(
    State(state): State<AppState>,
    Caller(caller): Caller,
    query: Query,
) -> ApiResult<Json<Value>> {
    let cursor = query.unsigned("cursor")?.unwrap_or(0);
    let limit = query.unsigned("limit")?.unwrap_or(DEFAULT_CHANGES_LIMIT);
    if limit == 0 {
        return Err(Error::malformed("query parameter `limit` must be at least 1").into());
    }
    let page = state
        .engine
        .inbox_changes(&caller, query.text("owner_agent"), cursor, limit as usize)
        .await?;
    let changes: Vec<Value> = page
        .threads
        .iter()
        .map(|thread| json!({ "cursor": thread.cursor, "thread_id": thread.thread_id, "status": thread.status, "thread": thread }))
        .collect();
    Ok(Json(json!({
        "ok": true,
        "changes": changes,
        "next_cursor": page.next_cursor.to_string(),
        "has_more": page.has_more,
    })))
}

pub async fn reply(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(thread_id): Path<String>,
    query: Query,
    context: WriteContext,
    JsonBody(body): JsonBody,
) -> ApiResult<Json<Value>> {
    let message = match body.get("message") {
        Some(Value::String(message)) => message.clone(),
        Some(_) => return Err(Error::invalid_field("message", "must be a string").into()),
        None => return Err(Error::invalid_field("message", "is required").into()),
    };
    let claim = context.claim(&caller, &body);
    let thread = state
        .engine
        .inbox_reply(
            &caller,
            query.text("owner_agent"),
            &thread_id,
            &message,
            claim,
        )
        .await?;
    Ok(Json(json!({ "ok": true, "thread": thread })))
}

pub async fn delegate(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(thread_id): Path<String>,
    query: Query,
    context: WriteContext,
    JsonBody(body): JsonBody,
) -> ApiResult<Json<Value>> {
    let claim = context.claim(&caller, &body);
    let response = state
        .engine
        .inbox_delegate(&caller, query.text("owner_agent"), &thread_id, &body, claim)
        .await?;
    Ok(Json(response))
}

async fn decide(
    state: AppState,
    caller: crate::domain::Principal,
    thread_id: String,
    verdict: Verdict,
    context: WriteContext,
    body: Value,
) -> ApiResult<Json<Value>> {
    let claim = context.claim(&caller, &body);
    let response = state
        .engine
        .inbox_decide(&caller, &thread_id, verdict, &body, Via::Inbox, claim)
        .await?;
    Ok(Json(response))
}

pub async fn approve(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(thread_id): Path<String>,
    context: WriteContext,
    JsonBody(body): JsonBody,
) -> ApiResult<Json<Value>> {
    decide(state, caller, thread_id, Verdict::Approving, context, body).await
}

pub async fn reject(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(thread_id): Path<String>,
    context: WriteContext,
    JsonBody(body): JsonBody,
) -> ApiResult<Json<Value>> {
    decide(state, caller, thread_id, Verdict::Rejecting, context, body).await
}

pub async fn approval_decision(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(intent_id): Path<String>,
    context: WriteContext,
    JsonBody(body): JsonBody,
) -> ApiResult<Json<Value>> {
    let claim = context.claim(&caller, &body);
    Ok(Json(
        state
            .engine
            .approval_decision(&caller, &intent_id, &body, claim)
            .await?,
    ))
}
