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
/// writer, timer scheduler or notification sender stopped, on PostgreSQL it
/// does not hear the fleet's commits, or it is draining before it shuts
/// down), so a load balancer sends clients to the other instances, where
/// streams resume by cursor. The body lists every check either way; a failing
/// one also carries the error envelope.
pub async fn health(State(state): State<AppState>) -> Response {
    let mut checks = state.engine.health().await;
    checks.extend(state.worker_checks());
    checks.push(state.shutdown_check());
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use axum::body::to_bytes;
    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::clock::SystemClock;
    use crate::engine::{Engine, EngineSettings};
    use crate::store::Durability;

    /// The server's state on a fresh SQLite file, with a scheduler that has
    /// ended and a notifier that runs.
    fn state_with_a_stopped_scheduler(dir: &std::path::Path) -> AppState {
        let engine = Engine::open_sqlite(
            &dir.join("signoff.db"),
            Durability::Full,
            Arc::new(SystemClock),
            EngineSettings::default(),
        )
        .unwrap();
        let ended = tokio::spawn(async {});
        let running = tokio::spawn(std::future::pending::<()>());
        AppState {
            engine,
            shutdown: CancellationToken::new(),
            draining: CancellationToken::new(),
            workers: [
                ("scheduler", ended.abort_handle()),
                ("notifier", running.abort_handle()),
            ]
            .into(),
        }
    }

    #[tokio::test]
    async fn a_worker_that_ended_before_shutdown_makes_the_instance_unhealthy() {
        let dir = tempfile::tempdir().unwrap();
        let state = state_with_a_stopped_scheduler(dir.path());
        while !state.workers[0].1.is_finished() {
            tokio::task::yield_now().await;
        }
        let response = health(State(state.clone())).await;
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body: Value =
            serde_json::from_slice(&to_bytes(response.into_body(), 1 << 16).await.unwrap())
                .unwrap();
        assert_eq!(body["ok"], false);
        assert_eq!(
            body["checks"],
            json!({
                "database": "ok",
                "writer": "ok",
                "scheduler": "the scheduler has stopped",
                "notifier": "ok",
                "shutdown": "ok",
            })
        );
        assert_eq!(body["error"]["code"], "unavailable");
        assert_eq!(body["detail"], "scheduler: the scheduler has stopped");

        // Once the server shuts down, every worker ends as it should.
        state.shutdown.cancel();
        assert!(
            state
                .worker_checks()
                .iter()
                .all(|check| check.failure.is_none())
        );
        // The shutdown check does not fail because the shutdown token fired,
        // only once the instance drains.
        assert_eq!(state.shutdown_check().failure, None);
        state.draining.cancel();
        assert_eq!(
            state.shutdown_check().failure.as_deref(),
            Some("this instance is shutting down")
        );
        // A closed store's writer takes no more writes.
        state.engine.close().await;
        let writer = state
            .engine
            .health()
            .await
            .into_iter()
            .find(|check| check.name == "writer");
        assert_eq!(
            writer.and_then(|check| check.failure).as_deref(),
            Some("the writer has stopped, so writes fail")
        );
    }
}
