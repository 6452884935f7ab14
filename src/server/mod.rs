//! The HTTP server: an axum router over the engine. Handlers are thin; the rules
//! live in `engine` and `domain`.

pub mod error;
pub mod extract;
pub mod routes;
pub mod sse;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::header::CONNECTION;
use axum::http::{HeaderValue, Method};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use tokio::net::TcpListener;
use tokio::task::{AbortHandle, JoinHandle};
use tokio_util::sync::CancellationToken;
use tower_http::trace::TraceLayer;

use crate::domain::{Error, ErrorKind};
use crate::engine::Engine;
use crate::store::HealthCheck;
use error::ApiError;
use routes::{agents, inbox, intents, keys, meta, scenarios, tasks};

#[derive(Clone)]
pub struct AppState {
    pub engine: Engine,
    /// Cancelled on shutdown; every open stream ends when it fires.
    pub shutdown: CancellationToken,
    /// Cancelled when the instance starts draining before it shuts down: it
    /// still serves, but `/health` fails so load balancers send new clients
    /// elsewhere, and every response closes its connection so that clients
    /// holding one open come back through the load balancer.
    pub draining: CancellationToken,
    /// The server's background workers, by the name `/health` gives them.
    pub workers: Arc<[(&'static str, AbortHandle)]>,
}

impl AppState {
    /// A worker ends only at shutdown, so one that has ended before it failed
    /// (a bug): this instance no longer does that work.
    pub fn worker_checks(&self) -> Vec<HealthCheck> {
        self.workers
            .iter()
            .map(|(name, worker)| HealthCheck {
                name,
                failure: (worker.is_finished() && !self.shutdown.is_cancelled())
                    .then(|| format!("the {name} has stopped")),
            })
            .collect()
    }

    /// Fails from the moment the instance starts draining.
    pub fn shutdown_check(&self) -> HealthCheck {
        HealthCheck {
            name: "shutdown",
            failure: self
                .draining
                .is_cancelled()
                .then(|| "this instance is shutting down".to_string()),
        }
    }
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/health", get(meta::health))
        .route("/v1/capabilities", get(meta::capabilities))
        .route("/v1/me", get(meta::me))
        .route("/v1/intents", post(intents::create))
        .route("/v1/intents/{intent_id}", get(intents::get))
        .route("/v1/intents/{intent_id}/events", get(intents::events))
        .route(
            "/v1/intents/{intent_id}/events/stream",
            get(intents::events_stream),
        )
        .route("/v1/intents/{intent_id}/{action}", post(intents::act))
        .route("/v1/me/tasks", get(tasks::list))
        .route("/v1/me/tasks/stream", get(tasks::stream))
        .route("/v1/agents/{*address_and_path}", get(agents::stream))
        .route("/v1/inbox", get(inbox::list))
        .route("/v1/inbox/changes", get(inbox::changes))
        .route("/v1/inbox/{thread_id}", get(inbox::thread))
        .route("/v1/inbox/{thread_id}/{action}", post(inbox::act))
        .route(
            "/v1/approvals/{intent_id}/decision",
            post(inbox::approval_decision),
        )
        .route("/v1/scenarios/apply", post(scenarios::apply))
        .route("/v1/scenarios/validate", post(scenarios::validate))
        .route("/v1/keys", get(keys::list).post(keys::create))
        .route("/v1/keys/{key_id}/revoke", post(keys::revoke))
        .fallback(no_such_endpoint)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(extract::BODY_LIMIT_BYTES))
        .layer(middleware::from_fn(request_ids))
        .layer(middleware::from_fn_with_state(
            state.draining.clone(),
            close_connections_while_draining,
        ))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// While the instance drains, every response asks the client to close its
/// connection: a client (or a proxy) that keeps connections open would
/// otherwise go on sending its requests here after the load balancer has
/// stopped sending new clients.
async fn close_connections_while_draining(
    State(draining): State<CancellationToken>,
    request: Request,
    next: Next,
) -> Response {
    let mut response = next.run(request).await;
    if draining.is_cancelled() {
        response
            .headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

async fn no_such_endpoint(method: Method, uri: axum::http::Uri) -> ApiError {
    Error::new(
        ErrorKind::NotFound,
        "no_such_endpoint",
        format!("there is no endpoint {method} {}", uri.path()),
    )
    .into()
}

async fn method_not_allowed(method: Method, uri: axum::http::Uri) -> Response {
    let error = Error::new(
        ErrorKind::Malformed,
        "method_not_allowed",
        format!("{method} is not allowed on {}", uri.path()),
    );
    let mut response = ApiError(error).into_response();
    *response.status_mut() = axum::http::StatusCode::METHOD_NOT_ALLOWED;
    response
}

/// Echoes `x-request-id` (generating one when absent) and `x-trace-id`, so a
/// client can match any response, including errors, to its request.
async fn request_ids(request: Request, next: Next) -> Response {
    let request_id = request
        .headers()
        .get("x-request-id")
        .filter(|value| !value.is_empty() && value.len() <= 200)
        .cloned()
        .unwrap_or_else(|| {
            HeaderValue::from_str(&uuid::Uuid::new_v4().to_string())
                .unwrap_or_else(|_| HeaderValue::from_static("unknown"))
        });
    let trace_id = request.headers().get("x-trace-id").cloned();
    let mut response = next.run(request).await;
    response.headers_mut().insert("x-request-id", request_id);
    if let Some(trace_id) = trace_id {
        response.headers_mut().insert("x-trace-id", trace_id);
    }
    response
}

/// A running server. Dropping it does not stop it; call [`RunningServer::stop`].
pub struct RunningServer {
    pub address: SocketAddr,
    pub engine: Engine,
    shutdown: CancellationToken,
    draining: CancellationToken,
    task: JoinHandle<std::io::Result<()>>,
    /// The scheduler and the notification sender; they stop with the server.
    workers: Vec<JoinHandle<()>>,
}

impl RunningServer {
    /// Starts serving on `listener` in the background.
    pub fn spawn(listener: TcpListener, engine: Engine) -> std::io::Result<RunningServer> {
        let address = listener.local_addr()?;
        let shutdown = CancellationToken::new();
        let draining = CancellationToken::new();
        let named = [
            (
                "scheduler",
                tokio::spawn({
                    let (engine, shutdown) = (engine.clone(), shutdown.clone());
                    async move { engine.run_scheduler(shutdown).await }
                }),
            ),
            (
                "notifier",
                tokio::spawn({
                    let (engine, shutdown) = (engine.clone(), shutdown.clone());
                    async move { engine.run_notifier(shutdown).await }
                }),
            ),
        ];
        let state = AppState {
            engine: engine.clone(),
            shutdown: shutdown.clone(),
            draining: draining.clone(),
            workers: named
                .iter()
                .map(|(name, worker)| (*name, worker.abort_handle()))
                .collect(),
        };
        let workers = named.into_iter().map(|(_, worker)| worker).collect();
        let app = router(state);
        let listener = listener.tap_io(|stream| {
            // Small SSE frames and JSON replies must not wait for Nagle's algorithm.
            let _ = stream.set_nodelay(true);
        });
        let signal = shutdown.clone();
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move { signal.cancelled().await })
                .await
        });
        Ok(RunningServer {
            address,
            engine,
            shutdown,
            draining,
            task,
            workers,
        })
    }

    /// Starts draining: requests are still served, timers still fire and
    /// notifications still go out, but `/health` fails and every response
    /// closes its connection, until [`RunningServer::stop`].
    pub fn begin_draining(&self) {
        self.draining.cancel();
    }

    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Waits until the server stops (after the shutdown token fires), then closes
    /// the store so every queued write is committed.
    pub async fn wait(self) -> std::io::Result<()> {
        let result = match self.task.await {
            Ok(result) => result,
            Err(err) => Err(std::io::Error::other(err)),
        };
        self.shutdown.cancel();
        // The workers see the same shutdown token; a firing or a send in progress
        // finishes (or its lease runs out) before the store closes.
        for worker in self.workers {
            let _ = worker.await;
        }
        self.engine.close().await;
        result
    }

    /// Ends open streams, finishes in-flight requests, and closes the store.
    pub async fn stop(self) -> std::io::Result<()> {
        self.shutdown.cancel();
        self.wait().await
    }
}
