//! Health, capabilities and identity.

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use crate::server::AppState;
use crate::server::extract::Caller;

pub async fn health(State(state): State<AppState>) -> Json<Value> {
    Json(json!({
        "ok": true,
        "service": "signoff",
        "version": env!("CARGO_PKG_VERSION"),
        "storage": state.engine.storage_backend(),
    }))
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
