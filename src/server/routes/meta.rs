//! Health, capabilities and identity.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use crate::server::AppState;
use crate::server::error::envelope;
use crate::server::extract::Caller;

/// `GET /health`, for load balancers and monitors: 200 when this instance can
/// serve, 503 when one of its checks fails (the database does not answer, its
/// writer stopped, or on PostgreSQL it does not hear the fleet's commits), so a
/// load balancer sends clients to the other instances, where streams resume by
/// cursor. The body lists every check either way; a failing one also carries
/// the error envelope.
pub async fn health(State(state): State<AppState>) -> Response {
    let checks = state.engine.health().await;
    let failures: Vec<String> = checks
        .iter()
        .filter_map(|check| {
            let failure = check.failure.as_ref()?;
            Some(format!("{}: {failure}", check.name))
        })
        .collect();
    let named: Map<String, Value> = checks
        .iter()
        .map(|check| {
            let outcome = check.failure.as_deref().unwrap_or("ok");
            (check.name.to_string(), Value::from(outcome))
        })
        .collect();
    let mut body = json!({
        "ok": failures.is_empty(),
        "service": "signoff",
        "version": env!("CARGO_PKG_VERSION"),
        "storage": state.engine.storage_backend(),
        "checks": named,
    });
    if failures.is_empty() {
        return Json(body).into_response();
    }
    if let (Some(body), Value::Object(error)) = (
        body.as_object_mut(),
        envelope("unavailable", &failures.join("; "), json!({})),
    ) {
        body.extend(error);
    }
    (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
}

pub async fn capabilities(Caller(_): Caller) -> Json<Value> {
    Json(json!({
        "ok": true,
        "capabilities": [
            "intents",
            "intent_events",
            "intent_events_stream",
            "human_tasks",
            "human_task_types",
            "idempotency",
            "resume",
            "resolve",
            "inbox",
            "approvals",
            "agent_intents_stream",
            "me_tasks",
            "me_tasks_stream",
            "scenarios",
            "quorum"
        ],
        "human_task_types": crate::domain::TaskType::ALL.iter().map(|t| t.as_str()).collect::<Vec<_>>(),
        "supported_intent_types": ["intent.human_task.v1", "intent.*.v*"],
    }))
}

/// [ext] Who the presented key belongs to.
pub async fn me(Caller(caller): Caller) -> Json<Value> {
    Json(json!({ "ok": true, "principal": caller }))
}
