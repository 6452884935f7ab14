//! The AXP inbox and approvals endpoints.

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use crate::domain::{Error, ErrorKind, Verdict};
use crate::engine::decisions::Via;
use crate::server::AppState;
use crate::server::error::ApiResult;
use crate::server::extract::{Caller, PathParams, Query, Write};

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
    PathParams(thread_id): PathParams<String>,
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
        .changes
        .iter()
        .map(|(cursor, thread)| {
            json!({ "cursor": cursor.to_string(), "thread_id": thread.thread_id, "status": thread.status, "thread": thread })
        })
        .collect();
    Ok(Json(json!({
        "ok": true,
        "changes": changes,
        "next_cursor": page.next_cursor.to_string(),
        "has_more": page.has_more,
    })))
}

/// `POST /v1/inbox/{thread_id}/reply|delegate|approve|reject`.
pub async fn act(
    State(state): State<AppState>,
    PathParams((thread_id, action)): PathParams<(String, String)>,
    query: Query,
    write: Write,
) -> ApiResult<Json<Value>> {
    let owner = query.text("owner_agent");
    let Write {
        caller,
        body,
        claim,
        ..
    } = write;
    let engine = &state.engine;
    let response = match action.as_str() {
        "reply" => {
            let message = match body.get("message") {
                Some(Value::String(message)) => message.clone(),
                Some(_) => return Err(Error::invalid_field("message", "must be a string").into()),
                None => return Err(Error::invalid_field("message", "is required").into()),
            };
            engine
                .inbox_reply(&caller, owner, &thread_id, &message, claim)
                .await?;
            let thread = engine.inbox_thread(&caller, owner, &thread_id).await?;
            json!({ "ok": true, "thread": thread })
        }
        "delegate" => {
            engine
                .inbox_delegate(&caller, &thread_id, &body, claim)
                .await?
        }
        "approve" | "reject" => {
            let verdict = if action == "approve" {
                Verdict::Approving
            } else {
                Verdict::Rejecting
            };
            engine
                .inbox_decide(&caller, &thread_id, verdict, &body, Via::Inbox, claim)
                .await?
        }
        other => {
            return Err(Error::new(
                ErrorKind::NotFound,
                "no_such_endpoint",
                format!(
                    "there is no inbox action `{other}`; use reply, delegate, approve or reject"
                ),
            )
            .into());
        }
    };
    Ok(Json(response))
}

pub async fn approval_decision(
    State(state): State<AppState>,
    PathParams(intent_id): PathParams<String>,
    write: Write,
) -> ApiResult<Json<Value>> {
    let decided = state
        .engine
        .approval_decision(&write.caller, &intent_id, &write.body, write.claim)
        .await?;
    Ok(Json(decided))
}
