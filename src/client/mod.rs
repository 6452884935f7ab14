//! A typed client for the signoff HTTP API, used by the CLI, the inbox, the
//! benchmarks and the tests.

pub mod sse;
pub mod task_stream;

use std::time::Duration;

use futures::{Stream, StreamExt};
use reqwest::{Method, RequestBuilder};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};

use crate::domain::{Event, Intent, Principal, PrincipalKind, Status, TaskView, Thread, Timestamp};
use sse::{SseFrame, SseParser};
pub use task_stream::TaskStreamMessage;

#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    /// The server answered with an error.
    #[error("{message}")]
    Api {
        status: u16,
        code: String,
        message: String,
        details: Value,
    },
    /// The server could not be reached, or the connection broke.
    #[error("cannot reach the signoff server at {url}: {message}")]
    Unreachable { url: String, message: String },
    /// The server answered with something this client does not understand.
    #[error("unexpected response from the server: {0}")]
    Protocol(String),
}

impl ClientError {
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    pub fn code(&self) -> Option<&str> {
        match self {
            ClientError::Api { code, .. } => Some(code),
            _ => None,
        }
    }

    /// Worth retrying: the connection failed, or the server is shedding load.
    pub fn is_transient(&self) -> bool {
        match self {
            ClientError::Unreachable { .. } => true,
            ClientError::Api { status, .. } => *status == 429 || *status >= 500,
            ClientError::Protocol(_) => false,
        }
    }
}

pub type ClientResult<T> = Result<T, ClientError>;

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Health {
    pub ok: bool,
    pub service: String,
    pub version: String,
    pub storage: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
pub struct CreatedIntent {
    pub intent_id: String,
    pub status: Status,
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Resolved {
    pub intent: Intent,
    pub event: Event,
    pub completion_delivery: Value,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct KeyInfo {
    pub key_id: String,
    pub key_prefix: String,
    pub kind: PrincipalKind,
    pub identity: String,
    pub teams: Vec<String>,
    pub label: Option<String>,
    pub created_at: Timestamp,
    pub revoked_at: Option<Timestamp>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct CreatedKey {
    /// The secret; shown once, never retrievable again.
    pub key: String,
    pub record: KeyInfo,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct InboxChange {
    pub cursor: String,
    pub thread_id: String,
    pub thread: Thread,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct InboxChanges {
    pub changes: Vec<InboxChange>,
    pub next_cursor: String,
    pub has_more: bool,
}

/// One intent as an agent's delivery stream announces it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Delivery {
    pub intent_id: String,
    pub seq: u64,
    pub event_type: String,
    pub status: Status,
    pub at: Timestamp,
}

/// An item of a bounded stream: a payload, or the server closing the stream and
/// saying where to resume.
#[derive(Debug, Clone, PartialEq)]
pub enum Bounded<T> {
    Item(T),
    Timeout { next_seq: u64 },
}

/// Options for [`Client::wait_for`].
#[derive(Debug, Clone, Copy)]
pub struct WaitOptions {
    /// Server-side idle window per connection (1-60 s).
    pub wait_seconds: u64,
    /// Give up after this long; `None` waits forever.
    pub timeout: Option<Duration>,
}

impl Default for WaitOptions {
    fn default() -> Self {
        Self {
            wait_seconds: 15,
            timeout: None,
        }
    }
}

const MAX_BACKOFF: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    key: String,
    via: Option<&'static str>,
}

fn path_segment(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

impl Client {
    /// A client for the server at `base_url` (for example `http://127.0.0.1:7700`).
    pub fn new(base_url: &str, key: &str) -> ClientResult<Client> {
        let parsed = url::Url::parse(base_url.trim())
            .map_err(|err| ClientError::Protocol(format!("`{base_url}` is not a URL: {err}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(ClientError::Protocol(format!(
                "`{base_url}` must be an http:// or https:// URL"
            )));
        }
        install_crypto_provider();
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .tcp_nodelay(true)
            .pool_max_idle_per_host(256)
            .build()
            .map_err(|err| ClientError::Protocol(format!("cannot build an HTTP client: {err}")))?;
        Ok(Client {
            http,
            base: parsed.as_str().trim_end_matches('/').to_string(),
            key: key.trim().to_string(),
            via: None,
        })
    }

    /// Tags decisions made through this client (`via` in the decision record).
    pub fn with_via(mut self, via: &'static str) -> Client {
        self.via = Some(via);
        self
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("x-api-key", &self.key);
        if let Some(via) = self.via {
            request = request.header("x-signoff-via", via);
        }
        request
    }

    fn unreachable(&self, err: impl std::fmt::Display) -> ClientError {
        ClientError::Unreachable {
            url: self.base.clone(),
            message: err.to_string(),
        }
    }

    async fn send_raw(&self, request: RequestBuilder) -> ClientResult<reqwest::Response> {
        let response = request.send().await.map_err(|err| self.unreachable(err))?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        let error = body.get("error").cloned().unwrap_or(Value::Null);
        Err(ClientError::Api {
            status,
            code: error["code"].as_str().unwrap_or("http_error").to_string(),
            message: error["message"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| format!("the server answered HTTP {status}")),
            details: error.get("details").cloned().unwrap_or(Value::Null),
        })
    }

    async fn send<T: DeserializeOwned>(&self, request: RequestBuilder) -> ClientResult<T> {
        let response = self.send_raw(request).await?;
        let body = response
            .bytes()
            .await
            .map_err(|err| self.unreachable(err))?;
        serde_json::from_slice(&body).map_err(|err| ClientError::Protocol(err.to_string()))
    }

    async fn field<T: DeserializeOwned>(
        &self,
        request: RequestBuilder,
        name: &str,
    ) -> ClientResult<T> {
        let mut body: Value = self.send(request).await?;
        let value = body.get_mut(name).map(Value::take).unwrap_or(Value::Null);
        serde_json::from_value(value)
            .map_err(|err| ClientError::Protocol(format!("`{name}`: {err}")))
    }

    fn with_idempotency(request: RequestBuilder, key: Option<&str>) -> RequestBuilder {
        match key {
            Some(key) => request.header("idempotency-key", key),
            None => request,
        }
    }

    fn with_owner(request: RequestBuilder, owner_agent: Option<&str>) -> RequestBuilder {
        match owner_agent {
            Some(owner) => request.query(&[("owner_agent", owner)]),
            None => request,
        }
    }

    pub async fn health(&self) -> ClientResult<Health> {
        self.send(self.http.get(format!("{}/health", self.base)))
            .await
    }

    pub async fn capabilities(&self) -> ClientResult<Value> {
        self.send(self.request(Method::GET, "/v1/capabilities"))
            .await
    }

    /// The principal behind this client's key.
    pub async fn me(&self) -> ClientResult<Principal> {
        self.field(self.request(Method::GET, "/v1/me"), "principal")
            .await
    }

    /// `POST /v1/intents`. `body` is the AXP intent (intent_type, correlation_id, ...).
    pub async fn create_intent(
        &self,
        body: &Value,
        idempotency_key: Option<&str>,
    ) -> ClientResult<CreatedIntent> {
        let request = self.request(Method::POST, "/v1/intents").json(body);
        self.send(Self::with_idempotency(request, idempotency_key))
            .await
    }

    /// `POST /v1/scenarios/apply`: starts a scenario. The answer names the
    /// scenario's own intent (`intent_id`), which ends when its workflow does.
    pub async fn apply_scenario(
        &self,
        bundle: &Value,
        idempotency_key: Option<&str>,
    ) -> ClientResult<Value> {
        let request = self
            .request(Method::POST, "/v1/scenarios/apply")
            .json(bundle);
        self.send(Self::with_idempotency(request, idempotency_key))
            .await
    }

    /// `POST /v1/scenarios/validate`: `{valid, errors: [{path, message}]}`.
    pub async fn validate_scenario(&self, bundle: &Value) -> ClientResult<Value> {
        self.send(
            self.request(Method::POST, "/v1/scenarios/validate")
                .json(bundle),
        )
        .await
    }

    pub async fn intent(&self, intent_id: &str) -> ClientResult<Intent> {
        let path = format!("/v1/intents/{}", path_segment(intent_id));
        self.field(self.request(Method::GET, &path), "intent").await
    }

    pub async fn events(&self, intent_id: &str, since: u64) -> ClientResult<Vec<Event>> {
        let path = format!("/v1/intents/{}/events", path_segment(intent_id));
        let request = self.request(Method::GET, &path).query(&[("since", since)]);
        self.field(request, "events").await
    }

    /// `POST /v1/intents/{id}/resume` with any of its body shapes.
    pub async fn resume(
        &self,
        intent_id: &str,
        body: &Value,
        owner_agent: Option<&str>,
        idempotency_key: Option<&str>,
    ) -> ClientResult<Intent> {
        let path = format!("/v1/intents/{}/resume", path_segment(intent_id));
        let request = Self::with_owner(self.request(Method::POST, &path).json(body), owner_agent);
        self.field(Self::with_idempotency(request, idempotency_key), "intent")
            .await
    }

    /// `POST /v1/intents/{id}/viewed` [ext]: records that this reviewer opened the task.
    pub async fn mark_viewed(&self, intent_id: &str) -> ClientResult<Event> {
        let path = format!("/v1/intents/{}/viewed", path_segment(intent_id));
        self.field(self.request(Method::POST, &path).json(&json!({})), "event")
            .await
    }

    /// A reviewer's decision: `{"task_result": {outcome, comment, data}}`.
    pub async fn decide(
        &self,
        intent_id: &str,
        outcome: &str,
        comment: Option<&str>,
        data: Map<String, Value>,
    ) -> ClientResult<Intent> {
        let body =
            json!({ "task_result": { "outcome": outcome, "comment": comment, "data": data } });
        self.resume(intent_id, &body, None, None).await
    }

    pub async fn resolve(
        &self,
        intent_id: &str,
        body: &Value,
        owner_agent: Option<&str>,
        idempotency_key: Option<&str>,
    ) -> ClientResult<Resolved> {
        let path = format!("/v1/intents/{}/resolve", path_segment(intent_id));
        let request = Self::with_owner(self.request(Method::POST, &path).json(body), owner_agent);
        self.send(Self::with_idempotency(request, idempotency_key))
            .await
    }

    pub async fn my_tasks(&self) -> ClientResult<Vec<TaskView>> {
        self.field(self.request(Method::GET, "/v1/me/tasks"), "tasks")
            .await
    }

    pub async fn inbox(&self, owner_agent: Option<&str>) -> ClientResult<Vec<Thread>> {
        let request = Self::with_owner(self.request(Method::GET, "/v1/inbox"), owner_agent);
        self.field(request, "threads").await
    }

    pub async fn inbox_thread(
        &self,
        thread_id: &str,
        owner_agent: Option<&str>,
    ) -> ClientResult<Thread> {
        let path = format!("/v1/inbox/{}", path_segment(thread_id));
        let request = Self::with_owner(self.request(Method::GET, &path), owner_agent);
        self.field(request, "thread").await
    }

    pub async fn inbox_changes(
        &self,
        owner_agent: Option<&str>,
        cursor: Option<&str>,
        limit: Option<u64>,
    ) -> ClientResult<InboxChanges> {
        let mut request =
            Self::with_owner(self.request(Method::GET, "/v1/inbox/changes"), owner_agent);
        if let Some(cursor) = cursor {
            request = request.query(&[("cursor", cursor)]);
        }
        if let Some(limit) = limit {
            request = request.query(&[("limit", limit)]);
        }
        self.send(request).await
    }

    /// `POST /v1/inbox/{id}/reply|delegate|approve|reject`; returns the response body.
    pub async fn inbox_action(
        &self,
        thread_id: &str,
        action: &str,
        body: &Value,
        owner_agent: Option<&str>,
    ) -> ClientResult<Value> {
        let path = format!(
            "/v1/inbox/{}/{}",
            path_segment(thread_id),
            path_segment(action)
        );
        let request = Self::with_owner(self.request(Method::POST, &path).json(body), owner_agent);
        self.send(request).await
    }

    pub async fn approval_decision(
        &self,
        intent_id: &str,
        decision: &str,
        comment: Option<&str>,
    ) -> ClientResult<Intent> {
        let path = format!("/v1/approvals/{}/decision", path_segment(intent_id));
        let body = json!({ "decision": decision, "comment": comment });
        self.field(self.request(Method::POST, &path).json(&body), "intent")
            .await
    }

    pub async fn create_key(
        &self,
        kind: PrincipalKind,
        identity: &str,
        teams: &[String],
        label: Option<&str>,
    ) -> ClientResult<CreatedKey> {
        let body = json!({ "kind": kind, "identity": identity, "teams": teams, "label": label });
        self.send(self.request(Method::POST, "/v1/keys").json(&body))
            .await
    }

    pub async fn keys(&self) -> ClientResult<Vec<KeyInfo>> {
        self.field(self.request(Method::GET, "/v1/keys"), "keys")
            .await
    }

    pub async fn revoke_key(&self, key_id: &str) -> ClientResult<()> {
        let path = format!("/v1/keys/{}/revoke", path_segment(key_id));
        self.send::<Value>(self.request(Method::POST, &path))
            .await
            .map(|_| ())
    }

    /// Opens an SSE response and yields its frames until the server closes it.
    async fn frames(
        &self,
        request: RequestBuilder,
    ) -> ClientResult<impl Stream<Item = ClientResult<SseFrame>> + use<>> {
        let response = self
            .send_raw(request.header("accept", "text/event-stream"))
            .await?;
        let base = self.base.clone();
        let parser = SseParser::default();
        let bytes = response.bytes_stream();
        Ok(bytes
            .scan(parser, move |parser, chunk| {
                let frames: Vec<ClientResult<SseFrame>> = match chunk {
                    Ok(chunk) => parser.push(&chunk).into_iter().map(Ok).collect(),
                    Err(err) => vec![Err(ClientError::Unreachable {
                        url: base.clone(),
                        message: err.to_string(),
                    })],
                };
                futures::future::ready(Some(futures::stream::iter(frames)))
            })
            .flatten())
    }

    fn bounded_item<T: DeserializeOwned>(frame: SseFrame) -> ClientResult<Bounded<T>> {
        let data: Value = serde_json::from_str(&frame.data)
            .map_err(|err| ClientError::Protocol(format!("bad SSE data: {err}")))?;
        if frame.event == "stream.timeout" {
            return Ok(Bounded::Timeout {
                next_seq: data["next_seq"].as_u64().unwrap_or(0),
            });
        }
        serde_json::from_value(data)
            .map(Bounded::Item)
            .map_err(|err| ClientError::Protocol(format!("bad `{}` event: {err}", frame.event)))
    }

    /// One connection to `GET /v1/intents/{id}/events/stream`: events after
    /// `since`, then a `Timeout` when the server closes it.
    pub async fn intent_stream(
        &self,
        intent_id: &str,
        since: u64,
        wait_seconds: u64,
    ) -> ClientResult<impl Stream<Item = ClientResult<Bounded<Event>>> + use<>> {
        let path = format!("/v1/intents/{}/events/stream", path_segment(intent_id));
        let request = self
            .request(Method::GET, &path)
            .query(&[("since", since), ("wait_seconds", wait_seconds)]);
        Ok(self
            .frames(request)
            .await?
            .map(|frame| frame.and_then(Self::bounded_item::<Event>)))
    }

    /// One connection to `GET /v1/agents/{address}/intents/stream`.
    pub async fn agent_stream(
        &self,
        address: &str,
        since: u64,
        wait_seconds: u64,
        statuses: Option<&str>,
    ) -> ClientResult<impl Stream<Item = ClientResult<Bounded<Delivery>>> + use<>> {
        let path = format!(
            "/v1/agents/{}/intents/stream",
            address.trim_start_matches(crate::domain::principal::AGENT_PREFIX)
        );
        let mut request = self
            .request(Method::GET, &path)
            .query(&[("since", since), ("wait_seconds", wait_seconds)]);
        if let Some(statuses) = statuses {
            request = request.query(&[("status", statuses)]);
        }
        Ok(self
            .frames(request)
            .await?
            .map(|frame| frame.and_then(Self::bounded_item::<Delivery>)))
    }

    /// Every event of an intent after `since`, as it happens, ending with its
    /// terminal event. Reconnects across stream timeouts, dropped connections and
    /// server restarts, resuming after the last event seen, so nothing is missed
    /// or repeated. A non-transient error (or `options.timeout`) ends it.
    pub fn watch(
        &self,
        intent_id: &str,
        since: u64,
        options: WaitOptions,
    ) -> impl Stream<Item = ClientResult<Event>> + Send + use<> {
        let watch = Watch {
            client: self.clone(),
            intent_id: intent_id.to_string(),
            since,
            options,
            deadline: options
                .timeout
                .map(|limit| tokio::time::Instant::now() + limit),
            backoff: INITIAL_BACKOFF,
            connection: None,
            done: false,
        };
        futures::stream::unfold(watch, |mut watch| async move {
            let item = watch.next().await?;
            Some((item, watch))
        })
    }

    /// Blocks until the intent ends and returns its terminal event (see [`Client::watch`]).
    pub async fn wait_for(&self, intent_id: &str, options: WaitOptions) -> ClientResult<Event> {
        let events = self.watch(intent_id, 0, options);
        futures::pin_mut!(events);
        while let Some(event) = events.next().await {
            let event = event?;
            if event.is_terminal() {
                return Ok(event);
            }
        }
        Err(ClientError::Protocol(format!(
            "the events of intent {intent_id} ended without a terminal event"
        )))
    }
}

const INITIAL_BACKOFF: Duration = Duration::from_millis(100);

type EventConnection = futures::stream::BoxStream<'static, ClientResult<Bounded<Event>>>;

/// One connection to an intent's event stream, after `since`.
async fn connect(
    client: &Client,
    intent_id: &str,
    since: u64,
    options: WaitOptions,
) -> ClientResult<EventConnection> {
    let stream = client
        .intent_stream(intent_id, since, options.wait_seconds)
        .await?;
    Ok(stream.boxed())
}

/// The state behind [`Client::watch`].
struct Watch {
    client: Client,
    intent_id: String,
    since: u64,
    options: WaitOptions,
    deadline: Option<tokio::time::Instant>,
    backoff: Duration,
    connection: Option<EventConnection>,
    done: bool,
}

impl Watch {
    async fn next(&mut self) -> Option<ClientResult<Event>> {
        while !self.done {
            if self
                .deadline
                .is_some_and(|deadline| tokio::time::Instant::now() >= deadline)
            {
                return self.fail(ClientError::Protocol(format!(
                    "timed out waiting for intent {}",
                    self.intent_id
                )));
            }
            let connection = match self.connection.as_mut() {
                Some(connection) => connection,
                None => {
                    match connect(&self.client, &self.intent_id, self.since, self.options).await {
                        Ok(connection) => self.connection.insert(connection),
                        Err(err) if err.is_transient() => {
                            self.pause().await;
                            continue;
                        }
                        Err(err) => return self.fail(err),
                    }
                }
            };
            let next = match self.deadline {
                Some(deadline) => {
                    match tokio::time::timeout_at(deadline, connection.next()).await {
                        Ok(next) => next,
                        Err(_) => continue,
                    }
                }
                None => connection.next().await,
            };
            match next {
                Some(Ok(Bounded::Item(event))) => {
                    self.backoff = INITIAL_BACKOFF;
                    if event.seq <= self.since {
                        continue;
                    }
                    self.since = event.seq;
                    self.done = event.is_terminal();
                    return Some(Ok(event));
                }
                // The server's idle window closed the stream: reconnect at once.
                Some(Ok(Bounded::Timeout { .. })) => self.connection = None,
                Some(Err(err)) if !err.is_transient() => return self.fail(err),
                // Dropped, or closed without its timeout frame (the server is
                // shutting down): reconnect after a pause.
                Some(Err(_)) | None => {
                    self.connection = None;
                    self.pause().await;
                }
            }
        }
        None
    }

    async fn pause(&mut self) {
        tokio::time::sleep(self.backoff).await;
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
    }

    fn fail(&mut self, err: ClientError) -> Option<ClientResult<Event>> {
        self.done = true;
        Some(Err(err))
    }
}

/// Both reqwest (aws-lc-rs) and the SSE transport (ring) bring a rustls crypto
/// provider; with two present rustls cannot pick one and HTTPS would panic, so
/// this process picks aws-lc-rs once, before any TLS is used.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}
