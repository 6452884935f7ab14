//! API integration tests: the real router on 127.0.0.1, a temporary SQLite file,
//! the Rust client for good input and raw HTTP for bad input.
//!
//! Every bad-input check asserts three things: the exact status, the uniform error
//! body (`{"error":{"code","message","details"},"detail":message}`) with a message
//! that names the problem, and that nothing observable changed.

mod common;

use std::collections::{BTreeSet, VecDeque};
use std::pin::Pin;
use std::time::Duration;

use common::{TestServer, task_intent};
use futures::{Stream, StreamExt};
use reqwest::Method;
use reqwest::header::HeaderMap;
use serde_json::{Map, Value, json};
use signoff::client::Client;
use signoff::client::sse::{SseFrame, SseParser};
use signoff::domain::{PrincipalKind, Status};

const ALICE: &str = "alice@example.com";
const BOB: &str = "bob@example.com";
const CAROL: &str = "carol@example.com";
const DEPLOYER: &str = "agent://acme/deployer";
/// The `to_agent` of every intent made with `common::task_intent`.
const WORKER: &str = "agent://acme/worker";
const EIGHT_TASK_TYPES: [&str; 8] = [
    "approval",
    "review",
    "form",
    "override",
    "confirmation",
    "assignment",
    "clarification",
    "manual_action",
];

/// How long one network step may take before a test gives up. Generous, so a slow
/// machine never fails a test; it only bounds how long a hang takes to report.
const STEP: Duration = Duration::from_secs(10);
/// How long a stream must stay silent to count as "nothing more is coming".
const QUIET: Duration = Duration::from_millis(700);

// ---------------------------------------------------------------------------
// Principals
// ---------------------------------------------------------------------------

/// A principal's raw key (for hand-made requests) and a typed client on it.
struct Actor {
    key: String,
    client: Client,
}

async fn actor(server: &TestServer, kind: PrincipalKind, identity: &str, teams: &[&str]) -> Actor {
    let key = server.key(kind, identity, teams).await;
    Actor {
        client: server.client(&key),
        key,
    }
}

async fn agent(server: &TestServer, address: &str) -> Actor {
    actor(server, PrincipalKind::Agent, address, &[]).await
}

async fn reviewer(server: &TestServer, identity: &str, teams: &[&str]) -> Actor {
    actor(server, PrincipalKind::Reviewer, identity, teams).await
}

// ---------------------------------------------------------------------------
// Raw HTTP
// ---------------------------------------------------------------------------

/// A response reduced to what the tests assert on.
struct Reply {
    status: u16,
    headers: HeaderMap,
    body: Value,
}

/// A request with `x-api-key` (when given) and nothing else, so each test controls
/// every other header and the body byte for byte.
fn request(
    server: &TestServer,
    method: Method,
    path: &str,
    key: Option<&str>,
) -> reqwest::RequestBuilder {
    signoff::client::install_crypto_provider();
    let request = reqwest::Client::new().request(method, server.url(path));
    match key {
        Some(key) => request.header("x-api-key", key),
        None => request,
    }
}

/// Sends a request and reads the whole body, as JSON when it is JSON.
async fn send(request: reqwest::RequestBuilder) -> Reply {
    let response = tokio::time::timeout(STEP, request.send())
        .await
        .expect("the server answers in time")
        .expect("the request reaches the server");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let bytes = tokio::time::timeout(STEP, response.bytes())
        .await
        .expect("the body arrives in time")
        .expect("the body can be read");
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    Reply {
        status,
        headers,
        body,
    }
}

async fn raw_get(server: &TestServer, path: &str, key: Option<&str>) -> Reply {
    send(request(server, Method::GET, path, key)).await
}

/// POSTs `body` exactly as given, labelled as JSON, with extra headers.
async fn raw_post_with(
    server: &TestServer,
    path: &str,
    key: Option<&str>,
    body: &str,
    headers: &[(&str, &str)],
) -> Reply {
    let mut request = request(server, Method::POST, path, key)
        .header("content-type", "application/json")
        .body(body.to_string());
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    send(request).await
}

/// POSTs `body` exactly as given, labelled as JSON.
async fn raw_post(server: &TestServer, path: &str, key: Option<&str>, body: &str) -> Reply {
    raw_post_with(server, path, key, body, &[]).await
}

async fn post_json(server: &TestServer, path: &str, key: &str, body: &Value) -> Reply {
    raw_post(server, path, Some(key), &body.to_string()).await
}

/// Asserts a 200 and returns the body.
#[track_caller]
fn ok(reply: Reply) -> Value {
    assert_eq!(reply.status, 200, "expected success, got {}", reply.body);
    reply.body
}

/// Asserts the status and the uniform error shape, that the message mentions every
/// entry of `mentions`, and returns `error.details`.
#[track_caller]
fn assert_error(reply: &Reply, status: u16, code: &str, mentions: &[&str]) -> Value {
    assert_eq!(
        reply.status, status,
        "unexpected status; body: {}",
        reply.body
    );
    let body = reply
        .body
        .as_object()
        .unwrap_or_else(|| panic!("an error body must be a JSON object: {}", reply.body));
    let top: BTreeSet<&str> = body.keys().map(String::as_str).collect();
    assert_eq!(top, BTreeSet::from(["error", "detail"]), "{}", reply.body);
    let error = &reply.body["error"];
    let inner: BTreeSet<&str> = error
        .as_object()
        .map(|fields| fields.keys().map(String::as_str).collect())
        .unwrap_or_default();
    assert_eq!(
        inner,
        BTreeSet::from(["code", "message", "details"]),
        "{}",
        reply.body
    );
    assert_eq!(error["code"], code, "error code; body: {}", reply.body);
    let message = error["message"].as_str().unwrap_or_default();
    assert!(
        !message.is_empty(),
        "error.message is empty: {}",
        reply.body
    );
    assert_eq!(
        reply.body["detail"], message,
        "`detail` repeats error.message"
    );
    assert!(
        error["details"].is_object(),
        "error.details must be an object: {}",
        reply.body
    );
    for word in mentions {
        assert!(
            message.contains(word),
            "message `{message}` should mention `{word}`"
        );
    }
    error["details"].clone()
}

// ---------------------------------------------------------------------------
// Intents and observable state
// ---------------------------------------------------------------------------

/// An approval assigned to alice.
fn alice_approval() -> Value {
    json!({"title": "Deploy api 2.3.0?", "assignees": [ALICE]})
}

/// A form whose schema has every type the Go CLI's string values must be coerced to.
fn rollout_form() -> Value {
    json!({
        "title": "Configure the rollout",
        "assignees": [ALICE],
        "form_schema": {
            "type": "object",
            "required": ["replicas", "region"],
            "properties": {
                "replicas": {"type": "integer", "minimum": 1},
                "ratio": {"type": "number"},
                "canary": {"type": "boolean"},
                "region": {"type": "string", "enum": ["eu", "us"]}
            }
        }
    })
}

/// Agent-to-agent work with no human in the loop.
fn agent_work(to_agent: &str) -> Value {
    json!({
        "intent_type": "intent.build.run.v1",
        "correlation_id": uuid::Uuid::new_v4().to_string(),
        "to_agent": to_agent,
        "payload": {"ref": "main"},
    })
}

/// Creates a human task as `agent` and returns the intent id.
async fn create_task(agent: &Actor, task: Value) -> String {
    create(agent, task_intent(task)).await
}

async fn create(agent: &Actor, body: Value) -> String {
    agent
        .client
        .create_intent(&body, None)
        .await
        .expect("create intent")
        .intent_id
}

fn resume_path(intent_id: &str) -> String {
    format!("/v1/intents/{intent_id}/resume")
}

async fn intent_json(server: &TestServer, intent_id: &str) -> Value {
    let path = format!("/v1/intents/{intent_id}");
    ok(raw_get(server, &path, Some(&server.admin_key)).await)["intent"].clone()
}

async fn events_json(server: &TestServer, intent_id: &str) -> Vec<Value> {
    let path = format!("/v1/intents/{intent_id}/events");
    let body = ok(raw_get(server, &path, Some(&server.admin_key)).await);
    body["events"].as_array().expect("events array").clone()
}

/// Every waiting human task, as the admin sees it.
async fn all_tasks(server: &TestServer) -> Value {
    ok(raw_get(server, "/v1/me/tasks", Some(&server.admin_key)).await)["tasks"].clone()
}

/// Everything an observer can see about an intent (or, without one, the task list),
/// so a refused request can be shown to have changed nothing.
async fn observable(server: &TestServer, intent_id: Option<&str>) -> Value {
    let tasks = all_tasks(server).await;
    match intent_id {
        None => json!({ "tasks": tasks }),
        Some(id) => json!({
            "tasks": tasks,
            "intent": intent_json(server, id).await,
            "events": events_json(server, id).await,
        }),
    }
}

fn event_types(events: &[Value]) -> Vec<&str> {
    events
        .iter()
        .map(|event| event["event_type"].as_str().unwrap_or_default())
        .collect()
}

/// Polls until the intent has `status`; the change under test happens in the background.
async fn wait_for_status(server: &TestServer, intent_id: &str, status: &str) {
    let deadline = tokio::time::Instant::now() + STEP;
    loop {
        let now = intent_json(server, intent_id).await;
        if now["status"] == status {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "intent {intent_id} never became {status}; it is {}",
            now["status"]
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn is_utc_rfc3339(value: &Value) -> bool {
    value.as_str().is_some_and(|text| {
        text.ends_with('Z')
            && time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
                .is_ok()
    })
}

// ---------------------------------------------------------------------------
// Server-sent events
// ---------------------------------------------------------------------------

/// Opens an SSE endpoint and checks that it answered with an event stream.
async fn open_sse(
    server: &TestServer,
    path: &str,
    key: &str,
    last_event_id: Option<&str>,
) -> reqwest::Response {
    let mut request =
        request(server, Method::GET, path, Some(key)).header("accept", "text/event-stream");
    if let Some(id) = last_event_id {
        request = request.header("last-event-id", id);
    }
    let response = tokio::time::timeout(STEP, request.send())
        .await
        .expect("stream headers in time")
        .expect("the stream opens");
    let status = response.status().as_u16();
    if status != 200 {
        let body = response.text().await.unwrap_or_default();
        panic!("GET {path} answered {status}: {body}");
    }
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(
        content_type.starts_with("text/event-stream"),
        "content-type `{content_type}`"
    );
    response
}

/// Compact JSON: valid, with no whitespace outside strings.
fn is_compact_json(text: &str) -> bool {
    let (mut in_string, mut escaped) = (false, false);
    for c in text.chars() {
        if in_string {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
        } else if c == '"' {
            in_string = true;
        } else if c.is_whitespace() {
            return false;
        }
    }
    serde_json::from_str::<Value>(text).is_ok()
}

/// One event frame of a bounded stream.
#[derive(Debug)]
struct Frame {
    id: u64,
    event: String,
    data: Value,
}

/// A bounded stream read to its end: its event frames, then the closing
/// `stream.timeout` frame's `next_seq`.
struct Bounded {
    frames: Vec<Frame>,
    next_seq: u64,
}

impl Bounded {
    fn ids(&self) -> Vec<u64> {
        self.frames.iter().map(|frame| frame.id).collect()
    }
}

/// Checks one frame is exactly `id: N` / `event: TYPE` / `data: {compact json}`.
#[track_caller]
fn event_frame(lines: &[&str]) -> Frame {
    assert_eq!(
        lines.len(),
        3,
        "an event frame is exactly 3 lines: {lines:?}"
    );
    let id = lines[0]
        .strip_prefix("id: ")
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(|| panic!("first line must be `id: N`: {lines:?}"));
    let event = lines[1]
        .strip_prefix("event: ")
        .unwrap_or_else(|| panic!("second line must be `event: TYPE`: {lines:?}"));
    let data = lines[2]
        .strip_prefix("data: ")
        .unwrap_or_else(|| panic!("third line must be `data: JSON`: {lines:?}"));
    assert!(is_compact_json(data), "data must be compact JSON: {data}");
    Frame {
        id,
        event: event.to_string(),
        data: serde_json::from_str(data).expect("data is JSON"),
    }
}

/// Checks the closing frame is exactly `event: stream.timeout` /
/// `data: {"ok":true,"next_seq":N}` and returns N.
#[track_caller]
fn timeout_frame(lines: &[&str]) -> u64 {
    assert_eq!(
        lines.len(),
        2,
        "the closing frame is exactly 2 lines: {lines:?}"
    );
    assert_eq!(lines[0], "event: stream.timeout");
    let data = lines[1]
        .strip_prefix("data: ")
        .unwrap_or_else(|| panic!("second line must be `data: JSON`: {lines:?}"));
    assert!(is_compact_json(data), "data must be compact JSON: {data}");
    let value: Value = serde_json::from_str(data).expect("data is JSON");
    let next_seq = value["next_seq"]
        .as_u64()
        .unwrap_or_else(|| panic!("next_seq must be a number: {data}"));
    assert_eq!(value, json!({"ok": true, "next_seq": next_seq}));
    next_seq
}

/// Reads a bounded stream until the server closes it and checks its framing byte
/// for byte. A stream that does not close within [`STEP`] fails the test.
async fn read_bounded(response: reqwest::Response) -> Bounded {
    let bytes = tokio::time::timeout(STEP, response.bytes())
        .await
        .expect("the server closes the stream")
        .expect("the stream can be read");
    let text = String::from_utf8(bytes.to_vec()).expect("UTF-8 stream");
    let body = text
        .strip_suffix("\n\n")
        .unwrap_or_else(|| panic!("every frame ends with a blank line: {text:?}"));
    let blocks: Vec<Vec<&str>> = body
        .split("\n\n")
        .map(|block| block.split('\n').collect())
        .collect();
    let (last, frames) = blocks.split_last().expect("at least the closing frame");
    Bounded {
        frames: frames.iter().map(|lines| event_frame(lines)).collect(),
        next_seq: timeout_frame(last),
    }
}

type ByteStream = Pin<Box<dyn Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>;

/// Frames of a long-lived stream, as they arrive.
struct SseReader {
    body: ByteStream,
    parser: SseParser,
    ready: VecDeque<SseFrame>,
}

impl SseReader {
    async fn open(server: &TestServer, path: &str, key: &str, last_event_id: Option<&str>) -> Self {
        let response = open_sse(server, path, key, last_event_id).await;
        SseReader {
            body: Box::pin(response.bytes_stream()),
            parser: SseParser::default(),
            ready: VecDeque::new(),
        }
    }

    async fn next(&mut self) -> SseFrame {
        loop {
            if let Some(frame) = self.ready.pop_front() {
                return frame;
            }
            let chunk = tokio::time::timeout(STEP, self.body.next())
                .await
                .expect("a frame arrives in time")
                .expect("the stream stays open")
                .expect("the stream can be read");
            self.ready.extend(self.parser.push(&chunk));
        }
    }

    /// The next `count` frames, however slowly they come, and then every frame
    /// that arrives until the stream has been quiet for [`QUIET`]: a slow
    /// replay is waited for, and anything beyond `count` is still caught.
    async fn expect_then_drain(&mut self, count: usize) -> Vec<SseFrame> {
        let mut frames = Vec::with_capacity(count);
        for _ in 0..count {
            frames.push(self.next().await);
        }
        frames.extend(self.drain().await);
        frames
    }

    /// Every frame that arrives until the stream has been quiet for [`QUIET`].
    async fn drain(&mut self) -> Vec<SseFrame> {
        let mut frames: Vec<SseFrame> = self.ready.drain(..).collect();
        while let Ok(chunk) = tokio::time::timeout(QUIET, self.body.next()).await {
            let chunk = chunk
                .expect("the stream stays open")
                .expect("the stream can be read");
            frames.extend(self.parser.push(&chunk));
        }
        frames
    }
}

/// A task stream frame's data, after checking its `id:` is the cursor it carries.
#[track_caller]
fn task_frame_data(frame: &SseFrame) -> Value {
    let data: Value = serde_json::from_str(&frame.data).expect("task frames carry JSON");
    let cursor = data["cursor"]
        .as_u64()
        .unwrap_or_else(|| panic!("task frames carry a cursor: {}", frame.data));
    assert_eq!(frame.id, Some(cursor.to_string()), "id: is the cursor");
    data
}

/// What a task stream frame is about: (event, cursor, intent id).
fn task_frame_summary(frame: &SseFrame) -> (String, u64, String) {
    let data = task_frame_data(frame);
    let intent_id = data["intent_id"]
        .as_str()
        .or_else(|| data["task"]["intent_id"].as_str())
        .unwrap_or_default()
        .to_string();
    (
        frame.event.clone(),
        data["cursor"].as_u64().unwrap(),
        intent_id,
    )
}

// ===========================================================================
// GET /health, /v1/capabilities, /v1/me
// ===========================================================================

#[tokio::test]
async fn health_answers_without_a_key() {
    let Some(server) = TestServer::start().await else {
        return;
    };
    let body = ok(raw_get(&server, "/health", None).await);
    assert_eq!(body["ok"], true);
    assert_eq!(body["service"], "signoff");
    let backend = if common::backend::on_postgres() {
        "postgres"
    } else {
        "sqlite"
    };
    assert_eq!(body["storage"], backend);
    assert!(body["version"].as_str().is_some_and(|v| !v.is_empty()));
    // Every check is listed, and each passes; on PostgreSQL the instance also
    // listens for the fleet's commits.
    let mut expected = json!({"database": "ok", "writer": "ok", "scheduler": "ok", "notifier": "ok", "shutdown": "ok"});
    if common::backend::on_postgres() {
        expected["live_feed"] = json!("ok");
    }
    assert_eq!(body["checks"], expected);
    assert!(
        body.get("error").is_none(),
        "a healthy answer is no error: {body}"
    );
    let health = server.client("unused").health().await.unwrap();
    assert!(health.ok);

    // Bad input: only GET is served there.
    let post = raw_post(&server, "/health", None, "{}").await;
    assert_error(&post, 405, "method_not_allowed", &["POST", "/health"]);
    server.stop().await;
}

#[tokio::test]
async fn capabilities_need_a_key_and_list_the_task_types() {
    let Some(server) = TestServer::start().await else {
        return;
    };
    let deployer = agent(&server, DEPLOYER).await;
    let capabilities = deployer.client.capabilities().await.unwrap();
    assert_eq!(capabilities["ok"], true);
    assert!(
        capabilities["capabilities"]
            .as_array()
            .is_some_and(|c| !c.is_empty())
    );
    assert!(
        capabilities["supported_intent_types"]
            .as_array()
            .unwrap()
            .contains(&json!("intent.human_task.v1"))
    );
    assert_eq!(capabilities["human_task_types"], json!(EIGHT_TASK_TYPES));

    let anonymous = raw_get(&server, "/v1/capabilities", None).await;
    assert_error(&anonymous, 401, "unauthorized", &["API key"]);
    server.stop().await;
}

#[tokio::test]
async fn me_names_the_principal_behind_each_key() {
    let Some(server) = TestServer::start().await else {
        return;
    };
    let deployer = agent(&server, DEPLOYER).await;
    let carol = reviewer(&server, CAROL, &["Ops"]).await;
    let me = |key: String| {
        let server = &server;
        async move { ok(raw_get(server, "/v1/me", Some(&key)).await)["principal"].clone() }
    };
    assert_eq!(
        me(deployer.key.clone()).await,
        json!({"kind": "agent", "identity": DEPLOYER, "teams": []})
    );
    // Team names are normalised to lowercase.
    assert_eq!(
        me(carol.key.clone()).await,
        json!({"kind": "reviewer", "identity": CAROL, "teams": ["ops"]})
    );
    assert_eq!(me(server.admin_key.clone()).await["kind"], "admin");
    assert_eq!(carol.client.me().await.unwrap().identity, CAROL);

    let wrong = raw_get(&server, "/v1/me", Some("so_not_a_real_key")).await;
    assert_error(&wrong, 401, "unauthorized", &["not valid"]);
    server.stop().await;
}

// ===========================================================================
// Authentication, request ids, unknown routes
// ===========================================================================

#[tokio::test]
async fn x_api_key_and_bearer_both_authenticate() {
    let Some(server) = TestServer::start().await else {
        return;
    };
    let deployer = agent(&server, DEPLOYER).await;
    let with_header = ok(raw_get(&server, "/v1/me", Some(&deployer.key)).await);
    assert_eq!(with_header["principal"]["identity"], DEPLOYER);

    let bearer = request(&server, Method::GET, "/v1/me", None)
        .header("authorization", format!("Bearer {}", deployer.key));
    let with_bearer = ok(send(bearer).await);
    assert_eq!(with_bearer["principal"]["identity"], DEPLOYER);

    // A write with only the bearer works too.
    let create = request(&server, Method::POST, "/v1/intents", None)
        .header("authorization", format!("Bearer {}", deployer.key))
        .json(&task_intent(alice_approval()));
    let created = ok(send(create).await);
    let intent = intent_json(&server, created["intent_id"].as_str().unwrap()).await;
    assert_eq!(intent["from_agent"], DEPLOYER);
    server.stop().await;
}

#[tokio::test]
async fn missing_or_wrong_keys_are_401_and_change_nothing() {
    let Some(server) = TestServer::start().await else {
        return;
    };
    let before = observable(&server, None).await;
    let body = task_intent(alice_approval()).to_string();

    let missing = raw_post(&server, "/v1/intents", None, &body).await;
    assert_error(&missing, 401, "unauthorized", &["API key", "x-api-key"]);

    let wrong = raw_post(&server, "/v1/intents", Some("so_0000"), &body).await;
    assert_error(&wrong, 401, "unauthorized", &["not valid"]);

    let wrong_bearer = request(&server, Method::POST, "/v1/intents", None)
        .header("authorization", "Bearer so_0000")
        .header("content-type", "application/json")
        .body(body.clone());
    assert_error(
        &send(wrong_bearer).await,
        401,
        "unauthorized",
        &["not valid"],
    );

    // Basic auth is not a way to present a key.
    let basic = request(&server, Method::GET, "/v1/me/tasks", None)
        .header("authorization", format!("Basic {}", server.admin_key));
    assert_error(&send(basic).await, 401, "unauthorized", &["API key"]);

    assert_eq!(observable(&server, None).await, before);
    server.stop().await;
}

#[tokio::test]
async fn request_ids_are_echoed_or_generated_and_trace_ids_echoed() {
    let Some(server) = TestServer::start().await else {
        return;
    };
    let header = |reply: &Reply, name: &str| {
        reply
            .headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::to_string)
    };
    let given = send(
        request(&server, Method::GET, "/health", None)
            .header("x-request-id", "req-42")
            .header("x-trace-id", "trace-7"),
    )
    .await;
    assert_eq!(header(&given, "x-request-id").as_deref(), Some("req-42"));
    assert_eq!(header(&given, "x-trace-id").as_deref(), Some("trace-7"));

    // Without one, the server makes a fresh id for every request.
    let first = raw_get(&server, "/health", None).await;
    let second = raw_get(&server, "/health", None).await;
    let (first, second) = (
        header(&first, "x-request-id").expect("generated request id"),
        header(&second, "x-request-id").expect("generated request id"),
    );
    assert!(!first.is_empty());
    assert_ne!(first, second);

    // Errors carry them too, so a failure can be matched to its request.
    let refused = send(
        request(&server, Method::GET, "/v1/me", None)
            .header("x-request-id", "req-43")
            .header("x-trace-id", "trace-8"),
    )
    .await;
    assert_eq!(refused.status, 401);
    assert_eq!(header(&refused, "x-request-id").as_deref(), Some("req-43"));
    assert_eq!(header(&refused, "x-trace-id").as_deref(), Some("trace-8"));
    server.stop().await;
}

#[tokio::test]
async fn unknown_routes_are_a_uniform_404() {
    let Some(server) = TestServer::start().await else {
        return;
    };
    let key = Some(server.admin_key.as_str());
    let nope = raw_get(&server, "/v1/nope", key).await;
    assert_error(&nope, 404, "no_such_endpoint", &["/v1/nope"]);
    let v2 = raw_post(&server, "/v2/intents", key, "{}").await;
    assert_error(&v2, 404, "no_such_endpoint", &["/v2/intents"]);
    // Under /v1/agents only the intents stream exists.
    let agents = raw_get(&server, "/v1/agents/acme/worker", key).await;
    assert_error(&agents, 404, "no_such_endpoint", &["/intents/stream"]);
    // Actions are path segments; an unknown one lists those that exist.
    let intent_action = raw_post(&server, "/v1/intents/any/approve", key, "{}").await;
    assert_error(
        &intent_action,
        404,
        "no_such_endpoint",
        &["`approve`", "resume, resolve or viewed"],
    );
    let inbox_action = raw_post(&server, "/v1/inbox/any/resume", key, "{}").await;
    assert_error(
        &inbox_action,
        404,
        "no_such_endpoint",
        &["`resume`", "reply, delegate, approve or reject"],
    );
    server.stop().await;
}

// ===========================================================================
// POST /v1/intents
// ===========================================================================

#[tokio::test]
async fn a_created_task_waits_for_its_human_with_the_full_wire_shape() {
    let Some(server) = TestServer::start().await else {
        return;
    };
    let deployer = agent(&server, DEPLOYER).await;
    let mut body = task_intent(json!({
        "title": "Deploy api 2.3.0?",
        "description": "**prod**, eu-west",
        "assignees": [ALICE],
    }));
    // Ignored: the sender is whoever holds the key.
    body["from_agent"] = json!("agent://someone/else");
    let created = ok(post_json(&server, "/v1/intents", &deployer.key, &body).await);
    assert_eq!(created["ok"], true);
    assert_eq!(created["status"], "WAITING");
    assert!(is_utc_rfc3339(&created["created_at"]), "{created}");
    let id = created["intent_id"].as_str().unwrap().to_string();

    let intent = ok(raw_get(&server, &format!("/v1/intents/{id}"), Some(&deployer.key)).await);
    assert_eq!(intent["ok"], true);
    let intent = &intent["intent"];
    assert_eq!(intent["intent_id"], id.as_str());
    assert_eq!(intent["intent_type"], "intent.human_task.v1");
    assert_eq!(intent["correlation_id"], body["correlation_id"]);
    assert_eq!(intent["from_agent"], DEPLOYER);
    assert_eq!(intent["to_agent"], WORKER);
    assert_eq!(intent["payload"], body["payload"]);
    assert_eq!(intent["status"], "WAITING");
    assert_eq!(intent["lifecycle_status"], "WAITING");
    assert_eq!(intent["waiting_reason"], "WAITING_FOR_HUMAN");
    assert_eq!(intent["lifecycle_waiting_reason"], "WAITING_FOR_HUMAN");
    assert_eq!(intent["assignees"], json!([ALICE]));
    assert_eq!(intent["remind_count"], 0);
    assert_eq!(intent["escalation_stage"], 0);
    assert!(intent.get("due_at").is_some(), "due_at is always present");
    assert_eq!(intent["created_at"], created["created_at"]);
    assert!(is_utc_rfc3339(&intent["updated_at"]));
    let task = &intent["human_task"];
    assert_eq!(task["title"], "Deploy api 2.3.0?");
    assert_eq!(task["description"], "**prod**, eu-west");
    assert_eq!(task["task_type"], "approval");
    assert_eq!(task["allowed_outcomes"], json!(["approved", "rejected"]));
    assert_eq!(task["required_comment"], false);
    assert!(intent.get("result").is_none_or(Value::is_null));

    // A fresh human task already has its three events, seq 1.. without gaps.
    let events = events_json(&server, &id).await;
    assert_eq!(
        event_types(&events),
        [
            "intent.created",
            "intent.submitted",
            "intent.human_task_assigned"
        ]
    );
    for (index, event) in events.iter().enumerate() {
        assert_eq!(event["seq"], index as u64 + 1);
        assert_eq!(event["intent_id"], id.as_str());
        assert_eq!(event["actor"], DEPLOYER);
        assert!(is_utc_rfc3339(&event["at"]), "{event}");
        assert!(event["details"].is_object());
    }
    assert_eq!(events[0]["status"], "CREATED");
    assert_eq!(events[1]["status"], "SUBMITTED");
    assert_eq!(events[2]["status"], "WAITING");
    assert_eq!(events[2]["waiting_reason"], "WAITING_FOR_HUMAN");
    assert_eq!(
        events[2]["details"]["human_task"]["title"],
        "Deploy api 2.3.0?"
    );
    assert_eq!(events[2]["details"]["assignees"], json!([ALICE]));
    server.stop().await;
}

#[tokio::test]
async fn idempotent_creates_replay_the_first_response() {
    let Some(server) = TestServer::start().await else {
        return;
    };
    let deployer = agent(&server, DEPLOYER).await;
    let other = agent(&server, "agent://acme/other").await;
    let body = task_intent(alice_approval());
    let post = |key: &str, body: String| {
        let (server, key) = (&server, key.to_string());
        async move {
            raw_post_with(
                server,
                "/v1/intents",
                Some(&key),
                &body,
                &[("Idempotency-Key", "deploy-api-2.3.0")],
            )
            .await
        }
    };

    let first = ok(post(&deployer.key, body.to_string()).await);
    let again = ok(post(&deployer.key, body.to_string()).await);
    assert_eq!(again, first, "the original response is replayed");

    // The same body with its keys in another order is the same request.
    let fields = body.as_object().unwrap();
    let reordered = format!(
        "{{{}}}",
        fields
            .iter()
            .rev()
            .map(|(name, value)| format!("{}: {value}", json!(name)))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let reordered = ok(post(&deployer.key, reordered).await);
    assert_eq!(reordered["intent_id"], first["intent_id"]);
    assert_eq!(all_tasks(&server).await.as_array().unwrap().len(), 1);

    // The same key with another body is a conflict, and creates nothing.
    let before = observable(&server, None).await;
    let mut changed = body.clone();
    changed["human_task"]["title"] = json!("Deploy api 2.4.0?");
    let conflict = post(&deployer.key, changed.to_string()).await;
    let details = assert_error(
        &conflict,
        409,
        "idempotency_key_reused",
        &["deploy-api-2.3.0"],
    );
    assert_eq!(details["idempotency_key"], "deploy-api-2.3.0");
    assert_eq!(observable(&server, None).await, before);

    // Another principal's keys are its own.
    let theirs = ok(post(&other.key, body.to_string()).await);
    assert_ne!(theirs["intent_id"], first["intent_id"]);
    assert_eq!(all_tasks(&server).await.as_array().unwrap().len(), 2);
    let theirs = intent_json(&server, theirs["intent_id"].as_str().unwrap()).await;
    assert_eq!(theirs["from_agent"], "agent://acme/other");
    server.stop().await;
}

#[tokio::test]
async fn a_retried_decision_with_the_same_idempotency_key_is_replayed_not_refused() {
    let Some(server) = TestServer::start().await else {
        return;
    };
    let deployer = agent(&server, DEPLOYER).await;
    let alice = reviewer(&server, ALICE, &[]).await;
    let id = create_task(&deployer, alice_approval()).await;
    let decide = |body: Value| {
        let (server, key, path) = (&server, alice.key.clone(), resume_path(&id));
        async move {
            raw_post_with(
                server,
                &path,
                Some(&key),
                &body.to_string(),
                &[("Idempotency-Key", "decision-1")],
            )
            .await
        }
    };
    let approve = json!({"task_result": {"outcome": "approved", "comment": "ship it"}});
    let first = ok(decide(approve.clone()).await);
    assert_eq!(first["intent"]["status"], "COMPLETED");
    let after_first = observable(&server, Some(&id)).await;

    // A network retry gets the same answer instead of "already decided".
    let retry = ok(decide(approve).await);
    assert_eq!(retry, first);
    let reject = json!({"task_result": {"outcome": "rejected"}});
    let conflict = decide(reject).await;
    assert_error(&conflict, 409, "idempotency_key_reused", &["decision-1"]);
    assert_eq!(observable(&server, Some(&id)).await, after_first);
    server.stop().await;
}

#[tokio::test]
async fn an_invalid_idempotency_key_header_is_400_and_creates_nothing() {
    let Some(server) = TestServer::start().await else {
        return;
    };
    let deployer = agent(&server, DEPLOYER).await;
    let before = observable(&server, None).await;
    let body = task_intent(alice_approval()).to_string();
    let too_long = "k".repeat(256);
    // A key sent empty is refused too, not taken for no key.
    for bad in ["has space", too_long.as_str(), "", "   "] {
        let reply = raw_post_with(
            &server,
            "/v1/intents",
            Some(&deployer.key),
            &body,
            &[("Idempotency-Key", bad)],
        )
        .await;
        assert_error(&reply, 400, "malformed_request", &["Idempotency-Key"]);
    }
    // Bytes beyond ASCII, which HTTP allows in a header but a key may not hold.
    let not_ascii = reqwest::header::HeaderValue::from_bytes("clé".as_bytes()).unwrap();
    let reply = send(
        request(&server, Method::POST, "/v1/intents", Some(&deployer.key))
            .header("content-type", "application/json")
            .header("Idempotency-Key", not_ascii)
            .body(body.clone()),
    )
    .await;
    assert_error(&reply, 400, "malformed_request", &["Idempotency-Key"]);
    assert_eq!(observable(&server, None).await, before);
    server.stop().await;
}

/// A server with the deployer and alice, a task for alice (its id), and what
/// can be observed of it before a test sends what must change nothing.
async fn alice_task() -> Option<(TestServer, Actor, Actor, String, Value)> {
    let server = TestServer::start().await?;
    let deployer = agent(&server, DEPLOYER).await;
    let alice = reviewer(&server, ALICE, &[]).await;
    let id = create_task(&deployer, alice_approval()).await;
    let before = observable(&server, Some(&id)).await;
    Some((server, deployer, alice, id, before))
}

#[tokio::test]
async fn unreadable_bodies_are_400_and_change_nothing() {
    let Some((server, deployer, alice, id, before)) = alice_task().await else {
        return;
    };
    for (body, names) in [
        (
            r#"{"intent_type": "intent.human_task.v1","#,
            "not valid JSON",
        ),
        ("{'single': 'quotes'}", "not valid JSON"),
        ("[1, 2, 3]", "JSON object"),
        (r#""approved""#, "JSON object"),
        ("null", "JSON object"),
        ("", "empty"),
        ("  \n ", "empty"),
    ] {
        let paths = [
            ("/v1/intents".to_string(), &deployer.key),
            (resume_path(&id), &alice.key),
            (format!("/v1/intents/{id}/resolve"), &deployer.key),
            (format!("/v1/inbox/{id}/approve"), &alice.key),
        ];
        for (path, key) in paths {
            let reply = raw_post(&server, &path, Some(key), body).await;
            assert_error(&reply, 400, "malformed_request", &[names]);
        }
    }
    assert_eq!(observable(&server, Some(&id)).await, before);
    server.stop().await;
}

/// PostgreSQL stores no NUL character in text, and a write that tried would
/// fail every other write of its batch; so it is refused at the door on both
/// backends, wherever it comes: a body's string or key, the path, the query.
#[tokio::test]
async fn the_nul_character_is_400_wherever_it_comes_and_changes_nothing() {
    let Some((server, deployer, alice, id, before)) = alice_task().await else {
        return;
    };
    let nul = "wait\u{0}here";
    let mut in_a_key = task_intent(alice_approval());
    in_a_key["payload"] = json!({ nul: 1 });
    for (path, key, body, place) in [
        (
            "/v1/intents".to_string(),
            &deployer.key,
            task_intent(json!({"title": nul, "assignees": [ALICE]})),
            "at `/human_task/title`",
        ),
        (
            "/v1/intents".to_string(),
            &deployer.key,
            in_a_key,
            "in the key at `/payload/wait\\u0000here`",
        ),
        (
            resume_path(&id),
            &alice.key,
            json!({"task_result": {"outcome": "approved", "comment": nul}}),
            "at `/task_result/comment`",
        ),
        (
            format!("/v1/inbox/{id}/reply"),
            &alice.key,
            json!({"message": nul}),
            "at `/message`",
        ),
        (
            format!("/v1/intents/{id}/resolve"),
            &deployer.key,
            json!({"status": "CANCELED", "reason": ["fine", nul]}),
            "at `/reason/1`",
        ),
    ] {
        let reply = post_json(&server, &path, key, &body).await;
        assert_error(&reply, 400, "malformed_request", &["NUL", place]);
    }
    let approve = json!({"task_result": {"outcome": "approved"}});
    let reply = post_json(
        &server,
        &resume_path(&format!("{id}%00")),
        &alice.key,
        &approve,
    )
    .await;
    assert_error(&reply, 400, "malformed_request", &["path", "%00"]);
    let reply = raw_get(
        &server,
        &format!("/v1/intents/{id}/events?since=%00"),
        Some(&alice.key),
    )
    .await;
    assert_error(&reply, 400, "malformed_request", &["query", "%00"]);
    assert_eq!(observable(&server, Some(&id)).await, before);

    // And the next decision goes through.
    let reply = post_json(&server, &resume_path(&id), &alice.key, &approve).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    server.stop().await;
}

#[tokio::test]
async fn bodies_over_128_kib_are_413_and_change_nothing() {
    let Some((server, deployer, alice, id, before)) = alice_task().await else {
        return;
    };

    let mut huge = task_intent(alice_approval());
    huge["payload"]["blob"] = json!("x".repeat(130 * 1024));
    let reply = post_json(&server, "/v1/intents", &deployer.key, &huge).await;
    assert_error(&reply, 413, "body_too_large", &["128 KiB"]);

    let huge_decision =
        json!({"task_result": {"outcome": "approved", "comment": "y".repeat(130 * 1024)}});
    let reply = post_json(&server, &resume_path(&id), &alice.key, &huge_decision).await;
    assert_error(&reply, 413, "body_too_large", &["128 KiB"]);
    assert_eq!(observable(&server, Some(&id)).await, before);

    // Just under the limit is fine.
    let mut large = task_intent(alice_approval());
    large["payload"]["blob"] = json!("x".repeat(100 * 1024));
    ok(post_json(&server, "/v1/intents", &deployer.key, &large).await);
    server.stop().await;
}

#[tokio::test]
async fn wrongly_typed_or_invalid_fields_are_422_naming_the_field() {
    let Some(server) = TestServer::start().await else {
        return;
    };
    let deployer = agent(&server, DEPLOYER).await;
    let before = observable(&server, None).await;
    // (top-level field, nested field or "", value, the field the error must name)
    let cases = [
        ("human_task", "title", json!(5), "human_task.title"),
        ("human_task", "title", json!(null), "human_task.title"),
        ("human_task", "title", json!("   "), "human_task.title"),
        (
            "human_task",
            "title",
            json!("t".repeat(256)),
            "human_task.title",
        ),
        (
            "human_task",
            "description",
            json!("d".repeat(2001)),
            "human_task.description",
        ),
        (
            "human_task",
            "allowed_outcomes",
            json!([]),
            "human_task.allowed_outcomes",
        ),
        (
            "human_task",
            "allowed_outcomes",
            json!(["a", "a"]),
            "human_task.allowed_outcomes",
        ),
        ("human_task", "assignees", json!([]), "human_task.assignees"),
        (
            "human_task",
            "assignees",
            json!(["team:"]),
            "human_task.assignees",
        ),
        (
            "human_task",
            "required_comment",
            json!("yes"),
            "human_task.required_comment",
        ),
        (
            "human_task",
            "form_schema",
            json!("object"),
            "human_task.form_schema",
        ),
        (
            "human_task",
            "notify_email",
            json!("not-an-email"),
            "human_task.notify_email",
        ),
        ("human_task", "", json!("Deploy?"), "human_task"),
        ("intent_type", "", json!(7), "intent_type"),
        ("intent_type", "", json!("deploy"), "intent_type"),
        ("correlation_id", "", json!("abc"), "correlation_id"),
        ("correlation_id", "", json!(null), "correlation_id"),
        ("payload", "", json!([1]), "payload"),
        ("to_agent", "", json!("worker"), "to_agent"),
        ("reply_to", "", json!("planner"), "reply_to"),
        ("deadline_at", "", json!("soon"), "deadline_at"),
        (
            "remind_after_seconds",
            "",
            json!(-5),
            "remind_after_seconds",
        ),
    ];
    for (field, nested, value, named) in cases {
        let mut body = task_intent(alice_approval());
        if nested.is_empty() {
            body[field] = value.clone();
        } else {
            body[field][nested] = value.clone();
        }
        let reply = post_json(&server, "/v1/intents", &deployer.key, &body).await;
        let details = assert_error(&reply, 422, "invalid_field", &[named]);
        assert_eq!(details["field"], named, "{field}.{nested} = {value}");
    }

    // An intent nobody would act on.
    let mut nobody = task_intent(alice_approval());
    let fields = nobody.as_object_mut().unwrap();
    fields.remove("human_task");
    fields.remove("to_agent");
    let reply = post_json(&server, "/v1/intents", &deployer.key, &nobody).await;
    assert_error(&reply, 422, "no_recipient", &["to_agent", "human_task"]);

    assert_eq!(observable(&server, None).await, before);
    server.stop().await;
}

#[tokio::test]
async fn an_unknown_task_type_is_422_listing_the_eight() {
    let Some(server) = TestServer::start().await else {
        return;
    };
    let deployer = agent(&server, DEPLOYER).await;
    let before = observable(&server, None).await;
    let body = task_intent(json!({"title": "Vote?", "task_type": "vote", "assignees": [ALICE]}));
    let reply = post_json(&server, "/v1/intents", &deployer.key, &body).await;
    let mut mentions = vec!["vote"];
    mentions.extend(EIGHT_TASK_TYPES);
    let details = assert_error(&reply, 422, "unknown_task_type", &mentions);
    assert_eq!(details["field"], "human_task.task_type");
    assert_eq!(details["allowed"], json!(EIGHT_TASK_TYPES));
    assert_eq!(observable(&server, None).await, before);
    server.stop().await;
}

#[tokio::test]
async fn reviewers_may_not_create_intents() {
    let Some(server) = TestServer::start().await else {
        return;
    };
    let alice = reviewer(&server, ALICE, &[]).await;
    let before = observable(&server, None).await;
    let body = task_intent(alice_approval());
    let reply = post_json(&server, "/v1/intents", &alice.key, &body).await;
    assert_error(&reply, 403, "forbidden", &["reviewers"]);
    assert_eq!(observable(&server, None).await, before);
    server.stop().await;
}

// ===========================================================================
// The eight task types
// ===========================================================================

#[tokio::test]
async fn every_task_type_gets_its_default_outcomes_and_can_be_decided() {
    let Some(server) = TestServer::start().await else {
        return;
    };
    let deployer = agent(&server, DEPLOYER).await;
    let alice = reviewer(&server, ALICE, &[]).await;
    // (type, default outcomes, a decision satisfying the type's rules, `approved` flag)
    let cases = [
        (
            "approval",
            json!(["approved", "rejected"]),
            json!({"outcome": "approved"}),
            true,
        ),
        (
            "review",
            json!(["approved", "changes_requested", "rejected"]),
            json!({"outcome": "changes_requested", "comment": "add tests"}),
            false,
        ),
        (
            "form",
            json!(["submitted", "declined"]),
            json!({"outcome": "submitted", "data": {"note": "eu only"}}),
            true,
        ),
        (
            "override",
            json!(["override_approved", "rejected"]),
            json!({"outcome": "override_approved", "comment": "incident 42"}),
            true,
        ),
        (
            "confirmation",
            json!(["confirmed", "denied"]),
            json!({"outcome": "denied"}),
            false,
        ),
        (
            "assignment",
            json!(["assigned", "declined"]),
            json!({"outcome": "assigned", "data": {"assignee": BOB}}),
            true,
        ),
        (
            "clarification",
            json!(["provided", "declined"]),
            json!({"outcome": "provided", "comment": "the eu region"}),
            true,
        ),
        (
            "manual_action",
            json!(["completed", "failed"]),
            json!({"outcome": "completed", "data": {"evidence": "https://ci/run/1"}}),
            true,
        ),
    ];
    for (task_type, outcomes, decision, approved) in cases {
        let id = create_task(
            &deployer,
            json!({"title": format!("A {task_type} task"), "task_type": task_type, "assignees": [ALICE]}),
        )
        .await;
        let task = &intent_json(&server, &id).await["human_task"];
        assert_eq!(task["task_type"], task_type);
        assert_eq!(task["allowed_outcomes"], outcomes, "{task_type}");
        // Only an override needs a justification by default.
        assert_eq!(
            task["required_comment"],
            task_type == "override",
            "{task_type}"
        );

        let decided = alice
            .client
            .resume(&id, &json!({"task_result": decision}), None, None)
            .await
            .unwrap_or_else(|err| panic!("{task_type}: {err}"));
        assert_eq!(decided.status, Status::Completed, "{task_type}");
        let last = events_json(&server, &id).await.pop().unwrap();
        assert_eq!(last["event_type"], "intent.completed", "{task_type}");
        assert_eq!(
            last["result"]["outcome"], decision["outcome"],
            "{task_type}"
        );
        assert_eq!(last["data"]["approved"], approved, "{task_type}");
    }
    server.stop().await;
}

#[tokio::test]
async fn a_form_schema_without_a_task_type_makes_a_form() {
    let Some(server) = TestServer::start().await else {
        return;
    };
    let deployer = agent(&server, DEPLOYER).await;
    let id = create_task(&deployer, rollout_form()).await;
    let task = &intent_json(&server, &id).await["human_task"];
    assert_eq!(task["task_type"], "form");
    assert_eq!(task["allowed_outcomes"], json!(["submitted", "declined"]));
    assert_eq!(task["form_schema"], rollout_form()["form_schema"]);
    server.stop().await;
}

// ===========================================================================
// GET /v1/intents/{id} and /events
// ===========================================================================

#[tokio::test]
async fn unknown_intent_ids_are_404_everywhere() {
    let Some(server) = TestServer::start().await else {
        return;
    };
    let key = Some(server.admin_key.as_str());
    let missing = "0190f0f0-0000-7000-8000-000000000000";
    for path in [
        format!("/v1/intents/{missing}"),
        format!("/v1/intents/{missing}/events"),
        format!("/v1/intents/{missing}/events/stream?wait_seconds=1"),
    ] {
        let reply = raw_get(&server, &path, key).await;
        assert_error(&reply, 404, "not_found", &[missing]);
    }
    for (path, body) in [
        (
            resume_path(missing),
            json!({"task_result": {"outcome": "approved"}}),
        ),
        (resume_path(missing), json!({"action": "complete"})),
        (resume_path(missing), json!({"approve_current_step": true})),
        (
            format!("/v1/intents/{missing}/resolve"),
            json!({"status": "CANCELED"}),
        ),
        (
            format!("/v1/approvals/{missing}/decision"),
            json!({"decision": "approve"}),
        ),
        (format!("/v1/inbox/{missing}/approve"), json!({})),
    ] {
        let reply = post_json(&server, &path, &server.admin_key, &body).await;
        assert_error(&reply, 404, "not_found", &[missing]);
    }
    let thread = raw_get(&server, &format!("/v1/inbox/{missing}"), key).await;
    assert_error(&thread, 404, "not_found", &[missing]);
    server.stop().await;
}

#[tokio::test]
async fn events_since_is_exclusive() {
    let Some(server) = TestServer::start().await else {
        return;
    };
    let deployer = agent(&server, DEPLOYER).await;
    let alice = reviewer(&server, ALICE, &[]).await;
    let id = create_task(&deployer, alice_approval()).await;
    alice
        .client
        .decide(&id, "approved", None, Map::new())
        .await
        .unwrap();

    let seqs = |since: &str| {
        let (server, key, path) = (
            &server,
            deployer.key.clone(),
            format!("/v1/intents/{id}/events{since}"),
        );
        async move {
            let body = ok(raw_get(server, &path, Some(&key)).await);
            assert_eq!(body["ok"], true);
            body["events"]
                .as_array()
                .unwrap()
                .iter()
                .map(|event| event["seq"].as_u64().unwrap())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(seqs("").await, [1, 2, 3, 4]);
    assert_eq!(seqs("?since=0").await, [1, 2, 3, 4]);
    assert_eq!(seqs("?since=2").await, [3, 4]);
    assert_eq!(seqs("?since=4").await, Vec::<u64>::new());
    assert_eq!(seqs("?since=99").await, Vec::<u64>::new());
    let typed = deployer.client.events(&id, 1).await.unwrap();
    assert_eq!(typed.iter().map(|e| e.seq).collect::<Vec<_>>(), [2, 3, 4]);

    for bad in ["abc", "-1", "1.5"] {
        let path = format!("/v1/intents/{id}/events?since={bad}");
        let reply = raw_get(&server, &path, Some(&deployer.key)).await;
        assert_error(&reply, 400, "malformed_request", &["since", bad]);
    }
    server.stop().await;
}

#[tokio::test]
async fn outsiders_may_not_read_an_intent() {
    let Some(server) = TestServer::start().await else {
        return;
    };
    let deployer = agent(&server, DEPLOYER).await;
    let stranger = agent(&server, "agent://evil/corp").await;
    let bob = reviewer(&server, BOB, &[]).await;
    let id = create_task(&deployer, alice_approval()).await;
    for key in [&stranger.key, &bob.key] {
        for path in [
            format!("/v1/intents/{id}"),
            format!("/v1/intents/{id}/events"),
        ] {
            let reply = raw_get(&server, &path, Some(key)).await;
            assert_error(&reply, 403, "forbidden", &[&id]);
        }
    }
    server.stop().await;
}

// ===========================================================================
// GET /v1/intents/{id}/events/stream
// ===========================================================================

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_stream_replays_history_in_exact_framing_and_closes_after_the_terminal_event() {
    let Some(server) = TestServer::start().await else {
        return;
    };
    let deployer = agent(&server, DEPLOYER).await;
    let alice = reviewer(&server, ALICE, &[]).await;
    let id = create_task(&deployer, alice_approval()).await;
    alice
        .client
        .decide(&id, "approved", Some("ok"), Map::new())
        .await
        .unwrap();
    let events = events_json(&server, &id).await;

    // wait_seconds=60: the stream must close because the intent ended, not because
    // it idled (read_bounded gives up long before 60 s).
    let path = format!("/v1/intents/{id}/events/stream?since=0&wait_seconds=60");
    let stream = read_bounded(open_sse(&server, &path, &deployer.key, None).await).await;
    assert_eq!(stream.ids(), [1, 2, 3, 4]);
    for (frame, event) in stream.frames.iter().zip(&events) {
        assert_eq!(frame.event, event["event_type"].as_str().unwrap());
        assert_eq!(&frame.data, event, "the data line is the event itself");
    }
    assert_eq!(stream.next_seq, 4);

    // Nothing left to replay on an ended intent: it closes at once.
    let path = format!("/v1/intents/{id}/events/stream?since=4&wait_seconds=60");
    let stream = read_bounded(open_sse(&server, &path, &deployer.key, None).await).await;
    assert!(stream.frames.is_empty());
    assert_eq!(stream.next_seq, 4);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_stream_pushes_live_events_and_closes_after_the_terminal_one() {
    let Some(server) = TestServer::start().await else {
        return;
    };
    let deployer = agent(&server, DEPLOYER).await;
    let alice = reviewer(&server, ALICE, &[]).await;
    let id = create_task(&deployer, alice_approval()).await;
    let path = format!("/v1/intents/{id}/events/stream?since=3&wait_seconds=60");
    let response = open_sse(&server, &path, &deployer.key, None).await;
    alice
        .client
        .decide(&id, "rejected", Some("not today"), Map::new())
        .await
        .unwrap();

    let stream = read_bounded(response).await;
    assert_eq!(stream.ids(), [4]);
    let terminal = &stream.frames[0];
    assert_eq!(terminal.event, "intent.completed");
    assert_eq!(terminal.data["result"]["outcome"], "rejected");
    assert_eq!(terminal.data["data"]["approved"], false);
    assert_eq!(stream.next_seq, 4);
    server.stop().await;
}

#[tokio::test]
async fn event_stream_closes_with_a_timeout_frame_after_wait_seconds_idle() {
    let Some(server) = TestServer::start().await else {
        return;
    };
    let deployer = agent(&server, DEPLOYER).await;
    let id = create_task(&deployer, alice_approval()).await;
    let before = observable(&server, Some(&id)).await;

    let path = format!("/v1/intents/{id}/events/stream?since=3&wait_seconds=1");
    let idle = read_bounded(open_sse(&server, &path, &deployer.key, None).await).await;
    assert!(idle.frames.is_empty());
    assert_eq!(idle.next_seq, 3);

    let path = format!("/v1/intents/{id}/events/stream?since=1&wait_seconds=1");
    let replayed = read_bounded(open_sse(&server, &path, &deployer.key, None).await).await;
    assert_eq!(replayed.ids(), [2, 3]);
    assert_eq!(replayed.next_seq, 3);
    // Watching changes nothing.
    assert_eq!(observable(&server, Some(&id)).await, before);
    server.stop().await;
}

#[tokio::test]
async fn last_event_id_acts_as_since_on_the_event_stream() {
    let Some(server) = TestServer::start().await else {
        return;
    };
    let deployer = agent(&server, DEPLOYER).await;
    let id = create_task(&deployer, alice_approval()).await;

    let path = format!("/v1/intents/{id}/events/stream?wait_seconds=1");
    let resumed = read_bounded(open_sse(&server, &path, &deployer.key, Some("2")).await).await;
    assert_eq!(resumed.ids(), [3]);
    assert_eq!(resumed.next_seq, 3);

    // The header wins over ?since= (a reconnecting EventSource keeps its URL).
    let path = format!("/v1/intents/{id}/events/stream?since=0&wait_seconds=1");
    let resumed = read_bounded(open_sse(&server, &path, &deployer.key, Some("2")).await).await;
    assert_eq!(resumed.ids(), [3]);

    let bad = send(
        request(&server, Method::GET, &path, Some(&deployer.key)).header("last-event-id", "three"),
    )
    .await;
    assert_error(&bad, 400, "malformed_request", &["Last-Event-ID", "three"]);
    server.stop().await;
}

#[tokio::test]
async fn event_stream_refuses_bad_parameters_unknown_intents_and_missing_keys() {
    let Some(server) = TestServer::start().await else {
        return;
    };
    let deployer = agent(&server, DEPLOYER).await;
    let id = create_task(&deployer, alice_approval()).await;
    let key = Some(deployer.key.as_str());
    for (query, names) in [
        ("wait_seconds=0", "wait_seconds"),
        ("wait_seconds=soon", "wait_seconds"),
        ("wait_seconds=-1", "wait_seconds"),
        ("since=x", "since"),
    ] {
        let path = format!("/v1/intents/{id}/events/stream?{query}");
        assert_error(
            &raw_get(&server, &path, key).await,
            400,
            "malformed_request",
            &[names],
        );
    }
    let unknown = "/v1/intents/does-not-exist/events/stream?wait_seconds=1";
    assert_error(
        &raw_get(&server, unknown, key).await,
        404,
        "not_found",
        &["does-not-exist"],
    );
    let path = format!("/v1/intents/{id}/events/stream?wait_seconds=1");
    assert_error(
        &raw_get(&server, &path, None).await,
        401,
        "unauthorized",
        &["API key"],
    );
    server.stop().await;
}

// ===========================================================================
// POST /v1/intents/{id}/resume: task_result
// ===========================================================================

#[tokio::test]
async fn form_fields_nested_in_data_are_validated_and_recorded() {
    let Some(server) = TestServer::start().await else {
        return;
    };
    let deployer = agent(&server, DEPLOYER).await;
    let alice = reviewer(&server, ALICE, &[]).await;
    let id = create_task(&deployer, rollout_form()).await;
    let body = json!({"task_result": {
        "outcome": "submitted",
        "comment": "canary first",
        "data": {"replicas": 3, "region": "eu", "canary": true},
    }});
    let reply = ok(post_json(&server, &resume_path(&id), &alice.key, &body).await);
    assert_eq!(reply["ok"], true);
    assert_eq!(reply["applied"], true);
    assert_eq!(reply["intent"]["status"], "COMPLETED");
    assert_eq!(
        reply["intent"]["result"]["data"],
        json!({"replicas": 3, "region": "eu", "canary": true})
    );
    assert_eq!(intent_json(&server, &id).await["status"], "COMPLETED");
    server.stop().await;
}

#[tokio::test]
async fn flattened_string_fields_are_coerced_to_the_schema_types() {
    let Some(server) = TestServer::start().await else {
        return;
    };
    let deployer = agent(&server, DEPLOYER).await;
    let alice = reviewer(&server, ALICE, &[]).await;
    let id = create_task(&deployer, rollout_form()).await;
    // What the Go CLI sends for `--data replicas=3 --data canary=true ...`.
    let body = json!({"task_result": {
        "outcome": "submitted",
        "replicas": "3",
        "ratio": "0.5",
        "canary": "true",
        "region": "eu",
    }});
    let reply = ok(post_json(&server, &resume_path(&id), &alice.key, &body).await);
    let data = &reply["intent"]["result"]["data"];
    assert_eq!(data["replicas"], json!(3), "integer, not \"3\"");
    assert_eq!(data["ratio"], json!(0.5));
    assert_eq!(data["canary"], json!(true));
    assert_eq!(data["region"], json!("eu"), "strings stay strings");
    let last = events_json(&server, &id).await.pop().unwrap();
    assert_eq!(last["data"]["replicas"], json!(3));
    assert_eq!(last["data"]["canary"], json!(true));
    server.stop().await;
}

#[tokio::test]
async fn form_data_failing_the_schema_is_422_listing_every_error() {
    let Some(server) = TestServer::start().await else {
        return;
    };
    let deployer = agent(&server, DEPLOYER).await;
    let alice = reviewer(&server, ALICE, &[]).await;
    let id = create_task(&deployer, rollout_form()).await;
    let before = observable(&server, Some(&id)).await;

    let both_wrong = json!({"task_result": {"outcome": "submitted", "data": {"replicas": "many", "region": "mars"}}});
    let reply = post_json(&server, &resume_path(&id), &alice.key, &both_wrong).await;
    let details = assert_error(&reply, 422, "form_invalid", &["/replicas", "/region"]);
    let paths: Vec<&str> = details["errors"]
        .as_array()
        .expect("details.errors")
        .iter()
        .map(|error| error["path"].as_str().unwrap())
        .collect();
    assert!(
        paths.contains(&"/replicas") && paths.contains(&"/region"),
        "{paths:?}"
    );
    assert!(details["errors"][0]["message"].is_string());

    // Missing required fields, and a coerced value that breaks `minimum`.
    let missing = json!({"task_result": {"outcome": "submitted", "data": {}}});
    let reply = post_json(&server, &resume_path(&id), &alice.key, &missing).await;
    assert_error(&reply, 422, "form_invalid", &["replicas"]);
    let zero = json!({"task_result": {"outcome": "submitted", "replicas": "0", "region": "us"}});
    let reply = post_json(&server, &resume_path(&id), &alice.key, &zero).await;
    assert_error(&reply, 422, "form_invalid", &["/replicas"]);
    assert_eq!(observable(&server, Some(&id)).await, before);

    // Declining a form needs no form data.
    alice
        .client
        .decide(&id, "declined", None, Map::new())
        .await
        .unwrap();
    server.stop().await;
}

#[tokio::test]
async fn an_outcome_the_task_does_not_allow_is_422() {
    let Some(server) = TestServer::start().await else {
        return;
    };
    let deployer = agent(&server, DEPLOYER).await;
    let alice = reviewer(&server, ALICE, &[]).await;
    let id = create_task(&deployer, alice_approval()).await;
    let custom = create_task(
        &deployer,
        json!({"title": "Which plan?", "allowed_outcomes": ["plan_a", "plan_b"], "assignees": [ALICE]}),
    )
    .await;
    let before = (
        observable(&server, Some(&id)).await,
        observable(&server, Some(&custom)).await,
    );

    let reply = post_json(
        &server,
        &resume_path(&id),
        &alice.key,
        &json!({"task_result": {"outcome": "maybe"}}),
    )
    .await;
    let details = assert_error(
        &reply,
        422,
        "outcome_not_allowed",
        &["maybe", "approved", "rejected"],
    );
    assert_eq!(details["allowed_outcomes"], json!(["approved", "rejected"]));
    let reply = post_json(
        &server,
        &resume_path(&custom),
        &alice.key,
        &json!({"task_result": {"outcome": "approved"}}),
    )
    .await;
    assert_error(&reply, 422, "outcome_not_allowed", &["plan_a", "plan_b"]);

    for (task_result, field) in [
        (json!({"outcome": 7}), "task_result.outcome"),
        (json!({"comment": "no outcome"}), "task_result.outcome"),
        (
            json!({"outcome": "approved", "comment": 5}),
            "task_result.comment",
        ),
        (
            json!({"outcome": "approved", "data": [1]}),
            "task_result.data",
        ),
        (json!("approved"), "task_result"),
    ] {
        let body = json!({"task_result": task_result});
        let reply = post_json(&server, &resume_path(&id), &alice.key, &body).await;
        let details = assert_error(&reply, 422, "invalid_field", &[field]);
        assert_eq!(details["field"], field);
    }
    assert_eq!(
        (
            observable(&server, Some(&id)).await,
            observable(&server, Some(&custom)).await
        ),
        before
    );
    // The custom outcome itself is fine.
    alice
        .client
        .decide(&custom, "plan_b", None, Map::new())
        .await
        .unwrap();
    server.stop().await;
}

#[tokio::test]
async fn missing_required_comments_are_422() {
    let Some(server) = TestServer::start().await else {
        return;
    };
    let deployer = agent(&server, DEPLOYER).await;
    let alice = reviewer(&server, ALICE, &[]).await;
    let task = |task_type: &str, extra: Value| {
        let mut spec = json!({"title": "Check", "task_type": task_type, "assignees": [ALICE]});
        spec.as_object_mut()
            .unwrap()
            .extend(extra.as_object().cloned().unwrap_or_default());
        spec
    };
    // (task, outcome, comment sent, words the message must contain)
    let cases = [
        (
            task("review", json!({})),
            "changes_requested",
            None,
            vec!["changes_requested"],
        ),
        (
            task("review", json!({})),
            "rejected",
            Some("   "),
            vec!["rejected"],
        ),
        (
            task("override", json!({})),
            "override_approved",
            None,
            vec!["justification"],
        ),
        (
            task("clarification", json!({})),
            "provided",
            None,
            vec!["provided"],
        ),
        (
            task("approval", json!({"required_comment": true})),
            "approved",
            None,
            vec!["approved"],
        ),
    ];
    for (spec, outcome, comment, mentions) in cases {
        let id = create_task(&deployer, spec).await;
        let before = observable(&server, Some(&id)).await;
        let body = json!({"task_result": {"outcome": outcome, "comment": comment}});
        let reply = post_json(&server, &resume_path(&id), &alice.key, &body).await;
        let details = assert_error(&reply, 422, "comment_required", &mentions);
        assert_eq!(details["field"], "task_result.comment");
        assert_eq!(observable(&server, Some(&id)).await, before, "{outcome}");
        // With a comment the same decision goes through.
        alice
            .client
            .decide(&id, outcome, Some("because"), Map::new())
            .await
            .unwrap_or_else(|err| panic!("{outcome} with a comment: {err}"));
    }
    server.stop().await;
}

#[tokio::test]
async fn manual_actions_need_evidence_when_it_is_required() {
    let Some(server) = TestServer::start().await else {
        return;
    };
    let deployer = agent(&server, DEPLOYER).await;
    let alice = reviewer(&server, ALICE, &[]).await;
    let spec = json!({"title": "Rotate the key", "task_type": "manual_action", "evidence_required": true, "assignees": [ALICE]});
    let id = create_task(&deployer, spec.clone()).await;
    let before = observable(&server, Some(&id)).await;
    for task_result in [
        json!({"outcome": "completed"}),
        json!({"outcome": "completed", "data": {"evidence": ""}}),
        json!({"outcome": "completed", "data": {"evidence": []}}),
    ] {
        let reply = post_json(
            &server,
            &resume_path(&id),
            &alice.key,
            &json!({"task_result": task_result}),
        )
        .await;
        let details = assert_error(&reply, 422, "evidence_required", &["evidence"]);
        assert_eq!(details["field"], "task_result.data.evidence");
    }
    assert_eq!(observable(&server, Some(&id)).await, before);

    let done = json!({"task_result": {"outcome": "completed", "evidence": "https://ci/run/1"}});
    let reply = ok(post_json(&server, &resume_path(&id), &alice.key, &done).await);
    assert_eq!(
        reply["intent"]["result"]["data"]["evidence"],
        "https://ci/run/1"
    );

    // Reporting failure needs no evidence.
    let failed = create_task(&deployer, spec).await;
    alice
        .client
        .decide(&failed, "failed", None, Map::new())
        .await
        .unwrap();
    server.stop().await;
}

#[tokio::test]
async fn assignments_need_a_valid_assignee() {
    let Some(server) = TestServer::start().await else {
        return;
    };
    let deployer = agent(&server, DEPLOYER).await;
    let alice = reviewer(&server, ALICE, &[]).await;
    let id = create_task(
        &deployer,
        json!({"title": "Who owns it?", "task_type": "assignment", "assignees": [ALICE]}),
    )
    .await;
    let before = observable(&server, Some(&id)).await;
    let reply = post_json(
        &server,
        &resume_path(&id),
        &alice.key,
        &json!({"task_result": {"outcome": "assigned"}}),
    )
    .await;
    assert_error(&reply, 422, "assignee_required", &["assignee"]);
    let bad = json!({"task_result": {"outcome": "assigned", "assignee": "has space"}});
    let reply = post_json(&server, &resume_path(&id), &alice.key, &bad).await;
    let details = assert_error(&reply, 422, "invalid_field", &["has space"]);
    assert_eq!(details["field"], "task_result.data.assignee");
    assert_eq!(observable(&server, Some(&id)).await, before);
    server.stop().await;
}

#[tokio::test]
async fn only_current_assignees_and_admins_may_decide() {
    let Some(server) = TestServer::start().await else {
        return;
    };
    let deployer = agent(&server, DEPLOYER).await;
    let bob = reviewer(&server, BOB, &[]).await;
    let carol = reviewer(&server, CAROL, &["ops"]).await;
    let id = create_task(
        &deployer,
        json!({"title": "Deploy?", "assignees": [ALICE, "team:ops"]}),
    )
    .await;
    let before = observable(&server, Some(&id)).await;
    let approve = json!({"task_result": {"outcome": "approved"}});

    let reply = post_json(&server, &resume_path(&id), &bob.key, &approve).await;
    let details = assert_error(&reply, 403, "forbidden", &[BOB, "not an assignee"]);
    assert_eq!(details["assignees"], json!([ALICE, "team:ops"]));
    // The agent that asked cannot answer its own question.
    let reply = post_json(&server, &resume_path(&id), &deployer.key, &approve).await;
    assert_error(&reply, 403, "forbidden", &[DEPLOYER]);
    assert_eq!(observable(&server, Some(&id)).await, before);

    // A team member may.
    let decided = carol
        .client
        .decide(&id, "approved", None, Map::new())
        .await
        .unwrap();
    assert_eq!(decided.result.unwrap()["decided_by"], CAROL);

    // So may an admin.
    let other = create_task(&deployer, alice_approval()).await;
    let decided = server
        .admin_client()
        .decide(&other, "rejected", None, Map::new())
        .await
        .unwrap();
    assert_eq!(decided.result.unwrap()["decided_by"], "admin:local");
    server.stop().await;
}

#[tokio::test]
async fn a_second_decision_is_409_naming_who_decided_and_when() {
    let Some(server) = TestServer::start().await else {
        return;
    };
    let deployer = agent(&server, DEPLOYER).await;
    let alice = reviewer(&server, ALICE, &[]).await;
    let bob = reviewer(&server, BOB, &[]).await;
    let id = create_task(
        &deployer,
        json!({"title": "Deploy?", "assignees": [ALICE, BOB]}),
    )
    .await;
    alice
        .client
        .decide(&id, "approved", Some("go"), Map::new())
        .await
        .unwrap();
    let decided_at = intent_json(&server, &id).await["result"]["decided_at"]
        .as_str()
        .unwrap()
        .to_string();
    let after_first = observable(&server, Some(&id)).await;

    let attempts = [
        (
            resume_path(&id),
            &bob.key,
            json!({"task_result": {"outcome": "rejected"}}),
        ),
        (
            resume_path(&id),
            &alice.key,
            json!({"task_result": {"outcome": "approved"}}),
        ),
        (
            format!("/v1/inbox/{id}/reject"),
            &bob.key,
            json!({"comment": "no"}),
        ),
        (
            format!("/v1/approvals/{id}/decision"),
            &bob.key,
            json!({"decision": "reject"}),
        ),
    ];
    for (path, key, body) in attempts {
        let reply = post_json(&server, &path, key, &body).await;
        let details = assert_error(&reply, 409, "already_decided", &[ALICE, &decided_at]);
        assert_eq!(details["decided_by"], ALICE, "{path}");
        assert_eq!(details["decided_at"], decided_at.as_str(), "{path}");
        assert_eq!(details["outcome"], "approved");
        assert_eq!(details["status"], "COMPLETED");
    }
    // The agent cannot re-resolve it either.
    let reply = post_json(
        &server,
        &format!("/v1/intents/{id}/resolve"),
        &deployer.key,
        &json!({"status": "CANCELED"}),
    )
    .await;
    assert_error(&reply, 409, "already_decided", &[ALICE]);
    assert_eq!(observable(&server, Some(&id)).await, after_first);
    server.stop().await;
}

#[tokio::test]
async fn approve_current_step_on_a_decided_task_is_409_naming_the_decider() {
    let Some(server) = TestServer::start().await else {
        return;
    };
    let deployer = agent(&server, DEPLOYER).await;
    let alice = reviewer(&server, ALICE, &[]).await;
    let bob = reviewer(&server, BOB, &[]).await;
    let id = create_task(
        &deployer,
        json!({"title": "Deploy?", "assignees": [ALICE, BOB]}),
    )
    .await;
    alice
        .client
        .decide(&id, "approved", None, Map::new())
        .await
        .unwrap();
    let after_first = observable(&server, Some(&id)).await;
    // Bob is an assignee, so the only thing wrong is that the task is already decided.
    let body = json!({"approve_current_step": true});
    let reply = post_json(&server, &resume_path(&id), &bob.key, &body).await;
    let details = assert_error(&reply, 409, "already_decided", &[ALICE]);
    assert_eq!(details["decided_by"], ALICE);
    assert_eq!(observable(&server, Some(&id)).await, after_first);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_sees_the_full_decision_record() {
    let Some(server) = TestServer::start().await else {
        return;
    };
    let deployer = agent(&server, DEPLOYER).await;
    let alice = reviewer(&server, ALICE, &[]).await;
    let id = create_task(&deployer, rollout_form()).await;
    let waiter = {
        let (client, id) = (deployer.client.clone(), id.clone());
        tokio::spawn(async move { client.wait_for(&id, Default::default()).await })
    };
    let body = json!({"task_result": {"outcome": "submitted", "comment": "canary first", "data": {"replicas": 2, "region": "us"}}});
    ok(post_json(&server, &resume_path(&id), &alice.key, &body).await);
    let terminal = tokio::time::timeout(STEP, waiter)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(terminal.event_type, "intent.completed");
    assert_eq!(terminal.seq, 4);

    let event = events_json(&server, &id).await.pop().unwrap();
    assert_eq!(event["status"], "COMPLETED");
    assert_eq!(event["actor"], ALICE);
    let result = &event["result"];
    let keys: BTreeSet<&str> = result
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        BTreeSet::from([
            "outcome",
            "comment",
            "data",
            "decided_by",
            "decided_at",
            "via"
        ])
    );
    assert_eq!(result["outcome"], "submitted");
    assert_eq!(result["comment"], "canary first");
    assert_eq!(result["data"], json!({"replicas": 2, "region": "us"}));
    assert_eq!(result["decided_by"], ALICE);
    assert!(is_utc_rfc3339(&result["decided_at"]));
    assert_eq!(result["via"], "api");
    assert_eq!(
        &event["details"]["result"], result,
        "also under details.result"
    );
    assert_eq!(
        event["data"],
        json!({"replicas": 2, "region": "us", "outcome": "submitted", "comment": "canary first", "approved": true})
    );
    // The intent carries the same record.
    assert_eq!(&intent_json(&server, &id).await["result"], result);
    server.stop().await;
}

// ===========================================================================
// POST /v1/intents/{id}/resume: action and approve_current_step
// ===========================================================================

#[tokio::test]
async fn the_addressed_agent_finishes_its_step_with_action_resume() {
    let Some(server) = TestServer::start().await else {
        return;
    };
    let deployer = agent(&server, DEPLOYER).await;
    let worker = agent(&server, WORKER).await;
    let id = create(&deployer, agent_work(WORKER)).await;
    assert_eq!(intent_json(&server, &id).await["status"], "SUBMITTED");
    let path = format!("{}?owner_agent={WORKER}", resume_path(&id));

    let started = ok(post_json(&server, &path, &worker.key, &json!({"action": "start"})).await);
    assert_eq!(started["intent"]["status"], "IN_PROGRESS");
    let done = json!({"action": "complete", "result": {"artifact": "build-7"}});
    let completed = ok(post_json(&server, &path, &worker.key, &done).await);
    assert_eq!(completed["ok"], true);
    assert_eq!(completed["applied"], true);
    assert_eq!(completed["intent"]["status"], "COMPLETED");
    let last = events_json(&server, &id).await.pop().unwrap();
    assert_eq!(last["event_type"], "intent.completed");
    assert_eq!(last["actor"], WORKER);
    assert_eq!(last["result"]["artifact"], "build-7");
    assert_eq!(
        intent_json(&server, &id).await["result"]["decided_by"],
        WORKER
    );

    // Ended is ended.
    let after = observable(&server, Some(&id)).await;
    let again = post_json(&server, &path, &worker.key, &json!({"action": "fail"})).await;
    assert_error(&again, 409, "intent_terminal", &["COMPLETED"]);
    assert_eq!(observable(&server, Some(&id)).await, after);

    // Failing records the error; an admin may act for the addressed agent.
    let failing = create(&deployer, agent_work(WORKER)).await;
    let failed = worker
        .client
        .resume(
            &failing,
            &json!({"action": "fail", "error": "disk full"}),
            Some(WORKER),
            None,
        )
        .await
        .unwrap();
    assert_eq!(failed.status, Status::Failed);
    let last = events_json(&server, &failing).await.pop().unwrap();
    assert_eq!(last["event_type"], "intent.failed");
    assert_eq!(last["details"]["error"], "disk full");
    let by_admin = create(&deployer, agent_work(WORKER)).await;
    let done = server
        .admin_client()
        .resume(
            &by_admin,
            &json!({"action": "complete"}),
            Some(WORKER),
            None,
        )
        .await
        .unwrap();
    assert_eq!(done.result.unwrap()["decided_by"], WORKER);
    server.stop().await;
}

#[tokio::test]
async fn agent_actions_refuse_other_agents_reviewers_and_unknown_actions() {
    let Some(server) = TestServer::start().await else {
        return;
    };
    let deployer = agent(&server, DEPLOYER).await;
    let worker = agent(&server, WORKER).await;
    let other = agent(&server, "agent://acme/other").await;
    let alice = reviewer(&server, ALICE, &[]).await;
    let id = create(&deployer, agent_work(WORKER)).await;
    let task = create_task(&deployer, alice_approval()).await;
    let before = (
        observable(&server, Some(&id)).await,
        observable(&server, Some(&task)).await,
    );
    let complete = json!({"action": "complete"});

    let as_other_owner = format!("{}?owner_agent=agent://acme/other", resume_path(&id));
    let reply = post_json(&server, &as_other_owner, &worker.key, &complete).await;
    assert_error(&reply, 403, "forbidden", &["owner_agent"]);
    let reply = post_json(&server, &as_other_owner, &other.key, &complete).await;
    assert_error(
        &reply,
        403,
        "forbidden",
        &["only the addressed agent", WORKER],
    );
    let reply = post_json(&server, &resume_path(&id), &alice.key, &complete).await;
    assert_error(&reply, 403, "forbidden", &["agent key"]);

    let own = format!("{}?owner_agent={WORKER}", resume_path(&id));
    let reply = post_json(&server, &own, &worker.key, &json!({"action": "explode"})).await;
    assert_error(&reply, 422, "invalid_field", &["explode", "complete"]);
    let reply = post_json(&server, &own, &worker.key, &json!({"action": 5})).await;
    assert_error(&reply, 422, "invalid_field", &["action"]);
    let reply = post_json(&server, &own, &worker.key, &json!({"resume": "please"})).await;
    assert_error(
        &reply,
        422,
        "unknown_resume_shape",
        &["task_result", "action", "approve_current_step"],
    );

    // A human task addressed to the worker waits for its human, not the agent.
    let on_task = format!("{}?owner_agent={WORKER}", resume_path(&task));
    let reply = post_json(&server, &on_task, &worker.key, &complete).await;
    assert_error(&reply, 409, "waiting_for_human", &["task_result"]);
    assert_eq!(
        (
            observable(&server, Some(&id)).await,
            observable(&server, Some(&task)).await
        ),
        before
    );
    server.stop().await;
}

#[tokio::test]
async fn approve_current_step_approves_the_waiting_human_task() {
    let Some(server) = TestServer::start().await else {
        return;
    };
    let deployer = agent(&server, DEPLOYER).await;
    let worker = agent(&server, WORKER).await;
    let alice = reviewer(&server, ALICE, &[]).await;
    let bob = reviewer(&server, BOB, &[]).await;
    let id = create_task(
        &deployer,
        json!({"title": "Review the diff", "task_type": "review", "assignees": [ALICE]}),
    )
    .await;
    let before = observable(&server, Some(&id)).await;

    for (key, body, status, code, mentions) in [
        (
            &alice.key,
            json!({"approve_current_step": false}),
            422,
            "invalid_field",
            vec!["approve_current_step"],
        ),
        (
            &alice.key,
            json!({"approve_current_step": "yes"}),
            422,
            "invalid_field",
            vec!["boolean"],
        ),
        (
            &alice.key,
            json!({"approve_current_step": true, "reason": 5}),
            422,
            "invalid_field",
            vec!["reason"],
        ),
        (
            &alice.key,
            json!({}),
            422,
            "unknown_resume_shape",
            vec!["approve_current_step"],
        ),
        (
            &bob.key,
            json!({"approve_current_step": true}),
            403,
            "forbidden",
            vec![BOB],
        ),
    ] {
        let reply = post_json(&server, &resume_path(&id), key, &body).await;
        assert_error(&reply, status, code, &mentions);
    }
    assert_eq!(observable(&server, Some(&id)).await, before);

    let body = json!({"approve_current_step": true, "reason": "lgtm"});
    let reply = ok(post_json(&server, &resume_path(&id), &alice.key, &body).await);
    assert_eq!(reply["applied"], true);
    let result = &reply["intent"]["result"];
    assert_eq!(reply["intent"]["status"], "COMPLETED");
    assert_eq!(result["outcome"], "approved");
    assert_eq!(result["comment"], "lgtm");
    assert_eq!(result["decided_by"], ALICE);
    assert_eq!(result["via"], "control");

    // Agent work has no human step to approve.
    let work = create(&deployer, agent_work(WORKER)).await;
    let reply = post_json(
        &server,
        &resume_path(&work),
        &worker.key,
        &json!({"approve_current_step": true}),
    )
    .await;
    assert_error(&reply, 409, "not_a_human_task", &["no human task"]);
    server.stop().await;
}

// ===========================================================================
// POST /v1/intents/{id}/resolve
// ===========================================================================

#[tokio::test]
async fn resolve_ends_an_intent_once_in_each_terminal_status() {
    let Some(server) = TestServer::start().await else {
        return;
    };
    let deployer = agent(&server, DEPLOYER).await;
    for (status, event_type, extra) in [
        (
            "COMPLETED",
            "intent.completed",
            json!({"result": {"answer": 42}}),
        ),
        (
            "FAILED",
            "intent.failed",
            json!({"error": {"code": "boom"}}),
        ),
        (
            "CANCELED",
            "intent.canceled",
            json!({"reason": "superseded"}),
        ),
    ] {
        let id = create(&deployer, agent_work(WORKER)).await;
        let mut body = json!({"status": status});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().cloned().unwrap());
        let path = format!("/v1/intents/{id}/resolve");
        let reply = ok(post_json(&server, &path, &deployer.key, &body).await);
        assert_eq!(reply["ok"], true);
        assert_eq!(reply["intent"]["status"], status);
        assert_eq!(reply["event"]["event_type"], event_type);
        assert_eq!(reply["event"]["seq"], 3);
        assert_eq!(reply["completion_delivery"]["status"], "not_requested");
        let events = events_json(&server, &id).await;
        assert_eq!(events.last().unwrap()["event_type"], event_type);
        assert_eq!(
            intent_json(&server, &id).await["result"]["decided_by"],
            DEPLOYER
        );
        if status == "COMPLETED" {
            // Agent work: the event shows the result as sent; who resolved it is
            // in the event's details and the intent's decision record.
            let last = events.last().unwrap();
            assert_eq!(last["result"], json!({"answer": 42}));
            assert_eq!(last["details"]["decided_by"], DEPLOYER);
            assert_eq!(intent_json(&server, &id).await["result"]["via"], "agent");
        }

        let after = observable(&server, Some(&id)).await;
        let again = post_json(
            &server,
            &path,
            &deployer.key,
            &json!({"status": "CANCELED"}),
        )
        .await;
        assert_error(
            &again,
            409,
            "intent_terminal",
            &["already ended", status, DEPLOYER],
        );
        assert_eq!(observable(&server, Some(&id)).await, after);
    }
    server.stop().await;
}

#[tokio::test]
async fn resolve_refuses_bad_statuses_and_outsiders() {
    let Some(server) = TestServer::start().await else {
        return;
    };
    let deployer = agent(&server, DEPLOYER).await;
    let other = agent(&server, "agent://acme/other").await;
    let alice = reviewer(&server, ALICE, &[]).await;
    let id = create(&deployer, agent_work(WORKER)).await;
    let path = format!("/v1/intents/{id}/resolve");
    let before = observable(&server, Some(&id)).await;
    for (body, mention) in [
        (json!({"status": "DONE"}), "DONE"),
        (json!({"status": "TIMED_OUT"}), "TIMED_OUT"),
        (json!({"status": "completed"}), "completed"),
        (json!({}), "status"),
        (json!({"status": 5}), "status"),
        (json!({"status": "COMPLETED", "reason": 5}), "reason"),
    ] {
        let reply = post_json(&server, &path, &deployer.key, &body).await;
        assert_error(&reply, 422, "invalid_field", &[mention]);
    }
    let reply = post_json(&server, &path, &other.key, &json!({"status": "CANCELED"})).await;
    assert_error(&reply, 403, "forbidden", &["only the sender"]);
    let reply = post_json(&server, &path, &alice.key, &json!({"status": "CANCELED"})).await;
    assert_error(&reply, 403, "forbidden", &["reviewer keys"]);
    assert_eq!(observable(&server, Some(&id)).await, before);
    server.stop().await;
}

#[tokio::test]
async fn resolving_with_reply_to_opens_a_completion_thread_in_the_owner_inbox() {
    let Some(server) = TestServer::start().await else {
        return;
    };
    let planner_address = "agent://acme/planner";
    let deployer = agent(&server, DEPLOYER).await;
    let planner = agent(&server, planner_address).await;
    let mut body = agent_work(WORKER);
    body["reply_to"] = json!(planner_address);
    let id = create(&deployer, body).await;
    assert!(
        planner.client.inbox(None).await.unwrap().is_empty(),
        "nothing until it ends"
    );

    let resolved = deployer
        .client
        .resolve(
            &id,
            &json!({"status": "COMPLETED", "result": {"ok": 1}}),
            None,
            None,
        )
        .await
        .unwrap();
    assert_eq!(resolved.completion_delivery["status"], "delivered");
    assert_eq!(resolved.completion_delivery["reply_to"], planner_address);
    assert_eq!(resolved.completion_delivery["thread_id"], id.as_str());

    let inbox = ok(raw_get(&server, "/v1/inbox", Some(&planner.key)).await);
    let threads = inbox["threads"].as_array().unwrap();
    assert_eq!(threads.len(), 1);
    let thread = &threads[0];
    assert_eq!(thread["thread_id"], id.as_str());
    assert_eq!(thread["intent_id"], id.as_str());
    assert_eq!(thread["status"], "done");
    assert_eq!(thread["owner_agent"], planner_address);
    assert_eq!(thread["from_agent"], DEPLOYER);
    assert_eq!(thread["to_agent"], WORKER);
    assert!(is_utc_rfc3339(&thread["created_at"]) && is_utc_rfc3339(&thread["updated_at"]));
    let timeline = thread["timeline"].as_array().unwrap();
    assert!(!timeline.is_empty());
    assert_eq!(timeline.last().unwrap()["event_type"], "intent.completed");

    let one = ok(raw_get(&server, &format!("/v1/inbox/{id}"), Some(&planner.key)).await);
    assert_eq!(&one["thread"], thread);
    // The sender's inbox has no such thread.
    assert!(deployer.client.inbox(None).await.unwrap().is_empty());
    server.stop().await;
}

// ===========================================================================
// GET /v1/me/tasks and its stream
// ===========================================================================

#[tokio::test]
async fn my_tasks_lists_what_the_caller_may_decide() {
    let Some(server) = TestServer::start().await else {
        return;
    };
    let deployer = agent(&server, DEPLOYER).await;
    let alice = reviewer(&server, ALICE, &[]).await;
    let bob = reviewer(&server, BOB, &[]).await;
    let carol = reviewer(&server, CAROL, &["ops"]).await;
    let for_alice = create_task(&deployer, alice_approval()).await;
    let for_ops = create_task(
        &deployer,
        json!({"title": "Restart db?", "assignees": ["team:ops"]}),
    )
    .await;
    let ids = |tasks: &Value| -> Vec<String> {
        tasks["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|task| task["intent_id"].as_str().unwrap().to_string())
            .collect()
    };
    let tasks_of = |key: String| {
        let server = &server;
        async move { ok(raw_get(server, "/v1/me/tasks", Some(&key)).await) }
    };

    let alices = tasks_of(alice.key.clone()).await;
    assert_eq!(alices["ok"], true);
    assert_eq!(ids(&alices), [for_alice.as_str()]);
    let entry = &alices["tasks"][0];
    assert_eq!(entry["status"], "WAITING");
    assert_eq!(entry["intent_type"], "intent.human_task.v1");
    assert_eq!(entry["from_agent"], DEPLOYER);
    assert!(is_utc_rfc3339(&entry["assigned_at"]));
    assert!(entry.get("due_at").is_some());
    assert_eq!(entry["human_task"]["title"], "Deploy api 2.3.0?");
    assert_eq!(entry["reminders_sent"], 0);
    assert_eq!(entry["escalation_stage"], 0);
    assert_eq!(entry["assignees"], json!([ALICE]));

    assert_eq!(ids(&tasks_of(carol.key.clone()).await), [for_ops.as_str()]);
    assert_eq!(
        ids(&tasks_of(server.admin_key.clone()).await),
        [for_alice.clone(), for_ops]
    );
    assert!(ids(&tasks_of(bob.key.clone()).await).is_empty());
    assert!(
        deployer.client.my_tasks().await.unwrap().is_empty(),
        "agents decide nothing"
    );

    // A decided task leaves the list.
    alice
        .client
        .decide(&for_alice, "approved", None, Map::new())
        .await
        .unwrap();
    assert!(alice.client.my_tasks().await.unwrap().is_empty());

    assert_error(
        &raw_get(&server, "/v1/me/tasks", None).await,
        401,
        "unauthorized",
        &["API key"],
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_stream_sends_a_snapshot_then_upserts_and_removals() {
    let Some(server) = TestServer::start().await else {
        return;
    };
    let deployer = agent(&server, DEPLOYER).await;
    let alice = reviewer(&server, ALICE, &[]).await;
    let existing = create_task(&deployer, alice_approval()).await;

    let mut stream = SseReader::open(&server, "/v1/me/tasks/stream", &alice.key, None).await;
    let snapshot = stream.next().await;
    assert_eq!(snapshot.event, "tasks.snapshot");
    let snapshot = task_frame_data(&snapshot);
    assert_eq!(snapshot["tasks"].as_array().unwrap().len(), 1);
    assert_eq!(snapshot["tasks"][0]["intent_id"], existing.as_str());
    let snapshot_cursor = snapshot["cursor"].as_u64().unwrap();

    let fresh = create_task(&deployer, alice_approval()).await;
    // Bob's task must not reach alice's stream.
    create_task(
        &deployer,
        json!({"title": "Not alice's", "assignees": [BOB]}),
    )
    .await;
    alice
        .client
        .decide(&existing, "approved", Some("ok"), Map::new())
        .await
        .unwrap();

    let upserted = stream.next().await;
    assert_eq!(upserted.event, "task.upserted");
    let upserted = task_frame_data(&upserted);
    assert!(upserted["cursor"].as_u64().unwrap() > snapshot_cursor);
    assert_eq!(upserted["reason"], "assigned");
    assert_eq!(upserted["task"]["intent_id"], fresh.as_str());
    assert_eq!(upserted["task"]["status"], "WAITING");

    let removed = stream.next().await;
    assert_eq!(removed.event, "task.removed");
    let removed = task_frame_data(&removed);
    assert!(removed["cursor"].as_u64() > upserted["cursor"].as_u64());
    assert_eq!(removed["intent_id"], existing.as_str());
    assert_eq!(removed["reason"], "decided");
    assert_eq!(removed["status"], "COMPLETED");
    assert_eq!(removed["by"], ALICE);
    assert_eq!(removed["outcome"], "approved");
    let rest = stream.drain().await;
    assert!(rest.is_empty(), "nothing else is for alice: {rest:?}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_task_stream_continues_right_after_its_cursor() {
    let Some(server) = TestServer::start().await else {
        return;
    };
    let deployer = agent(&server, DEPLOYER).await;
    let alice = reviewer(&server, ALICE, &[]).await;

    let mut first = SseReader::open(&server, "/v1/me/tasks/stream", &alice.key, None).await;
    assert_eq!(first.next().await.event, "tasks.snapshot");
    let seen = create_task(&deployer, alice_approval()).await;
    let upserted = first.next().await;
    assert_eq!(task_frame_summary(&upserted).2, seen);
    let cursor = upserted.id.clone().expect("task frames have ids");
    drop(first);

    // While alice is away: a new task arrives and the one she saw is decided.
    let missed = create_task(&deployer, alice_approval()).await;
    alice
        .client
        .decide(&seen, "approved", None, Map::new())
        .await
        .unwrap();

    for (path, last_event_id) in [
        ("/v1/me/tasks/stream".to_string(), Some(cursor.as_str())),
        (format!("/v1/me/tasks/stream?since={cursor}"), None),
    ] {
        let mut resumed = SseReader::open(&server, &path, &alice.key, last_event_id).await;
        let frames = resumed.expect_then_drain(2).await;
        let summary: Vec<(String, String)> = frames
            .iter()
            .map(|frame| {
                let (event, _, intent_id) = task_frame_summary(frame);
                (event, intent_id)
            })
            .collect();
        // No snapshot, nothing from before the cursor, nothing twice.
        assert_eq!(
            summary,
            [
                ("task.upserted".to_string(), missed.clone()),
                ("task.removed".to_string(), seen.clone()),
            ],
            "{path}"
        );
    }

    let bad = send(
        request(
            &server,
            Method::GET,
            "/v1/me/tasks/stream",
            Some(&alice.key),
        )
        .header("last-event-id", "yesterday"),
    )
    .await;
    assert_error(&bad, 400, "malformed_request", &["Last-Event-ID"]);
    assert_error(
        &raw_get(&server, "/v1/me/tasks/stream", None).await,
        401,
        "unauthorized",
        &["API key"],
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_task_stream_sees_exactly_what_a_live_stream_saw() {
    let Some(server) = TestServer::start().await else {
        return;
    };
    let deployer = agent(&server, DEPLOYER).await;
    let alice = reviewer(&server, ALICE, &[]).await;

    let mut live = SseReader::open(&server, "/v1/me/tasks/stream", &alice.key, None).await;
    let snapshot = live.next().await;
    assert_eq!(snapshot.event, "tasks.snapshot");
    let cursor = snapshot.id.clone().expect("the snapshot has an id");

    // Includes a task that comes and goes entirely while a resuming client is away.
    let first = create_task(&deployer, alice_approval()).await;
    let second = create_task(&deployer, alice_approval()).await;
    alice
        .client
        .decide(&first, "approved", None, Map::new())
        .await
        .unwrap();
    let brief = create_task(&deployer, alice_approval()).await;
    alice
        .client
        .decide(&brief, "rejected", None, Map::new())
        .await
        .unwrap();

    let mut live_frames = Vec::new();
    for _ in 0..5 {
        live_frames.push(task_frame_summary(&live.next().await));
    }
    let expected_ids = [&first, &second, &first, &brief, &brief];
    let live_ids: Vec<&str> = live_frames.iter().map(|f| f.2.as_str()).collect();
    assert_eq!(
        live_ids,
        expected_ids.map(String::as_str),
        "{live_frames:?}"
    );

    let mut resumed =
        SseReader::open(&server, "/v1/me/tasks/stream", &alice.key, Some(&cursor)).await;
    let resumed_frames: Vec<_> = resumed
        .expect_then_drain(live_frames.len())
        .await
        .iter()
        .map(task_frame_summary)
        .collect();
    assert_eq!(
        resumed_frames, live_frames,
        "resuming from the snapshot cursor must replay every event the live stream sent"
    );
    server.stop().await;
}

// ===========================================================================
// GET /v1/agents/{address}/intents/stream
// ===========================================================================

#[tokio::test]
async fn agent_stream_delivers_intents_to_a_multi_segment_address_and_marks_them_delivered() {
    let Some(server) = TestServer::start().await else {
        return;
    };
    let builder_address = "agent://acme/ops/builder";
    let deployer = agent(&server, DEPLOYER).await;
    let builder = agent(&server, builder_address).await;
    let other = agent(&server, "agent://acme/other").await;
    let first = create(&deployer, agent_work(builder_address)).await;
    create(&deployer, agent_work("agent://acme/other")).await;
    let second = create(&deployer, agent_work(builder_address)).await;

    let path = "/v1/agents/acme/ops/builder/intents/stream?wait_seconds=1";
    let stream = read_bounded(open_sse(&server, path, &builder.key, None).await).await;
    // seq is the builder's own delivery cursor: 1, 2 despite the other agent's intent.
    assert_eq!(stream.ids(), [1, 2]);
    assert_eq!(stream.next_seq, 2);
    for (frame, id) in stream.frames.iter().zip([&first, &second]) {
        assert_eq!(frame.event, "intent.submitted");
        let keys: BTreeSet<&str> = frame
            .data
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            BTreeSet::from(["intent_id", "seq", "event_type", "status", "at"])
        );
        assert_eq!(frame.data["intent_id"], id.as_str());
        assert_eq!(frame.data["seq"], frame.id);
        assert_eq!(frame.data["event_type"], "intent.submitted");
        assert_eq!(frame.data["status"], "SUBMITTED");
        assert!(is_utc_rfc3339(&frame.data["at"]));
    }

    // Delivery moves the intents on, recorded as the builder's doing.
    for id in [&first, &second] {
        wait_for_status(&server, id, "DELIVERED").await;
        let last = events_json(&server, id).await.pop().unwrap();
        assert_eq!(last["event_type"], "intent.delivered");
        assert_eq!(last["actor"], builder_address);
    }

    // The other agent's cursor is its own too.
    let theirs = read_bounded(
        open_sse(
            &server,
            "/v1/agents/acme/other/intents/stream?wait_seconds=1",
            &other.key,
            None,
        )
        .await,
    )
    .await;
    assert_eq!(theirs.ids(), [1]);

    // Resuming: ?since= and Last-Event-ID both skip what was seen.
    let path = "/v1/agents/acme/ops/builder/intents/stream?since=1&wait_seconds=1";
    let resumed = read_bounded(open_sse(&server, path, &builder.key, None).await).await;
    assert_eq!(resumed.ids(), [2]);
    assert_eq!(resumed.frames[0].data["intent_id"], second.as_str());
    assert_eq!(resumed.frames[0].data["status"], "DELIVERED");
    let path = "/v1/agents/acme/ops/builder/intents/stream?wait_seconds=1";
    let resumed = read_bounded(open_sse(&server, path, &builder.key, Some("2")).await).await;
    assert!(resumed.frames.is_empty());
    assert_eq!(resumed.next_seq, 2);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_stream_pushes_new_intents_live() {
    let Some(server) = TestServer::start().await else {
        return;
    };
    let deployer = agent(&server, DEPLOYER).await;
    let worker = agent(&server, WORKER).await;
    let mut stream = SseReader::open(
        &server,
        "/v1/agents/acme/worker/intents/stream?wait_seconds=30",
        &worker.key,
        None,
    )
    .await;
    let id = create(&deployer, agent_work(WORKER)).await;
    let frame = stream.next().await;
    assert_eq!(frame.event, "intent.submitted");
    assert_eq!(frame.id.as_deref(), Some("1"));
    let data: Value = serde_json::from_str(&frame.data).unwrap();
    assert_eq!(data["intent_id"], id.as_str());
    assert_eq!(data["seq"], 1);
    wait_for_status(&server, &id, "DELIVERED").await;
    server.stop().await;
}

#[tokio::test]
async fn agent_stream_leaves_out_ended_intents_unless_asked() {
    let Some(server) = TestServer::start().await else {
        return;
    };
    let deployer = agent(&server, DEPLOYER).await;
    let worker = agent(&server, WORKER).await;
    let ended = create(&deployer, agent_work(WORKER)).await;
    let open = create(&deployer, agent_work(WORKER)).await;
    deployer
        .client
        .resolve(&ended, &json!({"status": "CANCELED"}), None, None)
        .await
        .unwrap();

    let path = "/v1/agents/acme/worker/intents/stream?status=CANCELED&wait_seconds=1";
    let canceled = read_bounded(open_sse(&server, path, &worker.key, None).await).await;
    assert!(!canceled.frames.is_empty());
    for frame in &canceled.frames {
        assert_eq!(frame.data["intent_id"], ended.as_str());
        assert_eq!(frame.data["status"], "CANCELED");
    }

    let path = "/v1/agents/acme/worker/intents/stream?wait_seconds=1";
    let default = read_bounded(open_sse(&server, path, &worker.key, None).await).await;
    let intents: Vec<&Value> = default
        .frames
        .iter()
        .map(|frame| &frame.data["intent_id"])
        .collect();
    assert_eq!(intents, [&json!(open)], "only the open intent by default");

    let bad = raw_get(
        &server,
        "/v1/agents/acme/worker/intents/stream?status=FINISHED",
        Some(&worker.key),
    )
    .await;
    assert_error(&bad, 400, "malformed_request", &["FINISHED"]);
    server.stop().await;
}

#[tokio::test]
async fn agent_stream_refuses_other_principals_and_bad_parameters() {
    let Some(server) = TestServer::start().await else {
        return;
    };
    let deployer = agent(&server, DEPLOYER).await;
    let worker = agent(&server, WORKER).await;
    let alice = reviewer(&server, ALICE, &[]).await;
    let id = create(&deployer, agent_work(WORKER)).await;
    let path = "/v1/agents/acme/worker/intents/stream?wait_seconds=1";

    for key in [&deployer.key, &alice.key] {
        let reply = raw_get(&server, path, Some(key)).await;
        assert_error(&reply, 403, "forbidden", &[WORKER]);
    }
    assert_error(
        &raw_get(&server, path, None).await,
        401,
        "unauthorized",
        &["API key"],
    );
    for (bad_path, mention) in [
        (
            "/v1/agents/acme/worker/intents/stream?wait_seconds=0",
            "wait_seconds",
        ),
        ("/v1/agents/acme/worker/intents/stream?since=soon", "since"),
        (
            "/v1/agents/acme//worker/intents/stream?wait_seconds=1",
            "agent address",
        ),
        (
            "/v1/agents/acme/bad%20name/intents/stream?wait_seconds=1",
            "agent address",
        ),
    ] {
        let reply = raw_get(&server, bad_path, Some(&worker.key)).await;
        assert_error(&reply, 400, "malformed_request", &[mention]);
    }
    assert_eq!(
        intent_json(&server, &id).await["status"],
        "SUBMITTED",
        "nothing was delivered"
    );

    // An admin may watch, but watching is not delivery.
    let watched = read_bounded(open_sse(&server, path, &server.admin_key, None).await).await;
    assert_eq!(watched.ids(), [1]);
    assert_eq!(intent_json(&server, &id).await["status"], "SUBMITTED");
    server.stop().await;
}

// ===========================================================================
// Inbox
// ===========================================================================

#[tokio::test]
async fn the_inbox_lists_pending_threads_for_their_reviewer() {
    let Some(server) = TestServer::start().await else {
        return;
    };
    let deployer = agent(&server, DEPLOYER).await;
    let alice = reviewer(&server, ALICE, &[]).await;
    let bob = reviewer(&server, BOB, &[]).await;
    let id = create_task(&deployer, alice_approval()).await;

    let inbox = ok(raw_get(&server, "/v1/inbox", Some(&alice.key)).await);
    assert_eq!(inbox["ok"], true);
    let threads = inbox["threads"].as_array().unwrap();
    assert_eq!(threads.len(), 1);
    let thread = &threads[0];
    assert_eq!(thread["thread_id"], id.as_str());
    assert_eq!(thread["intent_id"], id.as_str());
    assert_eq!(thread["status"], "pending");
    assert_eq!(thread["owner_agent"], ALICE);
    assert_eq!(thread["from_agent"], DEPLOYER);
    assert_eq!(thread["to_agent"], WORKER);
    assert!(is_utc_rfc3339(&thread["created_at"]) && is_utc_rfc3339(&thread["updated_at"]));
    let timeline = thread["timeline"].as_array().unwrap();
    assert_eq!(timeline.len(), 3, "one entry per event so far");
    assert_eq!(timeline[0]["event_type"], "intent.created");

    let one = ok(raw_get(&server, &format!("/v1/inbox/{id}"), Some(&alice.key)).await);
    assert_eq!(&one["thread"], thread);
    // An admin may read alice's inbox.
    let as_admin = server.admin_client().inbox(Some(ALICE)).await.unwrap();
    assert_eq!(as_admin.len(), 1);

    // Bob has no such thread and may not read alice's inbox.
    assert!(bob.client.inbox(None).await.unwrap().is_empty());
    let reply = raw_get(&server, &format!("/v1/inbox/{id}"), Some(&bob.key)).await;
    assert_error(&reply, 404, "not_found", &[&id]);
    let reply = raw_get(
        &server,
        &format!("/v1/inbox?owner_agent={ALICE}"),
        Some(&bob.key),
    )
    .await;
    assert_error(&reply, 403, "forbidden", &[ALICE]);
    assert_error(
        &raw_get(&server, "/v1/inbox", None).await,
        401,
        "unauthorized",
        &["API key"],
    );
    server.stop().await;
}

#[tokio::test]
async fn inbox_changes_page_by_cursor_and_limit() {
    let Some(server) = TestServer::start().await else {
        return;
    };
    let deployer = agent(&server, DEPLOYER).await;
    let alice = reviewer(&server, ALICE, &[]).await;
    let first = create_task(&deployer, alice_approval()).await;
    let second = create_task(&deployer, alice_approval()).await;
    let changes = |query: String| {
        let (server, key) = (&server, alice.key.clone());
        async move { ok(raw_get(server, &format!("/v1/inbox/changes{query}"), Some(&key)).await) }
    };
    let ids = |page: &Value| -> Vec<String> {
        page["changes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|change| change["thread_id"].as_str().unwrap().to_string())
            .collect()
    };

    let all = changes(String::new()).await;
    assert_eq!(all["ok"], true);
    assert_eq!(ids(&all), [first.clone(), second.clone()]);
    assert_eq!(all["has_more"], false);
    assert_eq!(all["changes"][1]["thread"]["thread_id"], second.as_str());
    assert_eq!(all["next_cursor"], all["changes"][1]["cursor"]);

    let page1 = changes("?limit=1".into()).await;
    assert_eq!(ids(&page1), [first.as_str()]);
    assert_eq!(page1["has_more"], true);
    let cursor = page1["next_cursor"].as_str().unwrap().to_string();
    let page2 = changes(format!("?cursor={cursor}&limit=1")).await;
    assert_eq!(ids(&page2), [second.as_str()]);
    assert_eq!(page2["has_more"], false);
    let end = page2["next_cursor"].as_str().unwrap().to_string();
    let page3 = changes(format!("?cursor={end}")).await;
    assert!(ids(&page3).is_empty());
    assert_eq!(
        page3["next_cursor"],
        end.as_str(),
        "an empty page keeps the cursor"
    );

    // A reply is a change to its thread.
    alice
        .client
        .inbox_action(&first, "reply", &json!({"message": "on it"}), None)
        .await
        .unwrap();
    let typed = alice
        .client
        .inbox_changes(None, Some(&end), None)
        .await
        .unwrap();
    assert_eq!(
        typed
            .changes
            .iter()
            .map(|c| c.thread_id.clone())
            .collect::<Vec<_>>(),
        [first]
    );

    for (query, mention) in [
        ("?limit=0", "limit"),
        ("?limit=-1", "limit"),
        ("?cursor=abc", "cursor"),
    ] {
        let reply = raw_get(
            &server,
            &format!("/v1/inbox/changes{query}"),
            Some(&alice.key),
        )
        .await;
        assert_error(&reply, 400, "malformed_request", &[mention]);
    }
    server.stop().await;
}

#[tokio::test]
async fn inbox_reply_adds_a_message_to_the_thread() {
    let Some(server) = TestServer::start().await else {
        return;
    };
    let deployer = agent(&server, DEPLOYER).await;
    let alice = reviewer(&server, ALICE, &[]).await;
    let bob = reviewer(&server, BOB, &[]).await;
    let id = create_task(&deployer, alice_approval()).await;
    let path = format!("/v1/inbox/{id}/reply");
    let before = (
        observable(&server, Some(&id)).await,
        alice.client.inbox_thread(&id, None).await.unwrap(),
    );

    for (body, mention) in [
        (json!({}), "message"),
        (json!({"message": 5}), "message"),
        (json!({"message": "   "}), "message"),
        (json!({"message": "m".repeat(4001)}), "message"),
    ] {
        let reply = post_json(&server, &path, &alice.key, &body).await;
        let details = assert_error(&reply, 422, "invalid_field", &[mention]);
        assert_eq!(details["field"], "message");
    }
    let reply = post_json(&server, &path, &bob.key, &json!({"message": "hi"})).await;
    assert_error(&reply, 404, "not_found", &[&id]);
    assert_eq!(
        (
            observable(&server, Some(&id)).await,
            alice.client.inbox_thread(&id, None).await.unwrap()
        ),
        before
    );

    let replied = ok(post_json(
        &server,
        &path,
        &alice.key,
        &json!({"message": "checking the canary"}),
    )
    .await);
    assert_eq!(replied["ok"], true);
    let timeline = replied["thread"]["timeline"].as_array().unwrap();
    let last = timeline.last().unwrap();
    assert_eq!(last["kind"], "message");
    assert_eq!(last["actor"], ALICE);
    assert_eq!(last["message"], "checking the canary");
    // A message is not a decision.
    assert_eq!(intent_json(&server, &id).await["status"], "WAITING");
    server.stop().await;
}

#[tokio::test]
async fn inbox_delegate_hands_a_task_to_another_reviewer() {
    let Some(server) = TestServer::start().await else {
        return;
    };
    let deployer = agent(&server, DEPLOYER).await;
    let alice = reviewer(&server, ALICE, &[]).await;
    let bob = reviewer(&server, BOB, &[]).await;
    let id = create_task(&deployer, alice_approval()).await;
    let path = format!("/v1/inbox/{id}/delegate");
    let before = observable(&server, Some(&id)).await;

    for (body, mention) in [
        (json!({}), "delegate_to"),
        (json!({"delegate_to": 5}), "delegate_to"),
        (json!({"delegate_to": "has space"}), "has space"),
    ] {
        let reply = post_json(&server, &path, &alice.key, &body).await;
        assert_error(&reply, 422, "invalid_field", &[mention]);
    }
    let reply = post_json(&server, &path, &bob.key, &json!({"delegate_to": BOB})).await;
    assert_error(&reply, 403, "forbidden", &["not an assignee"]);
    assert_eq!(observable(&server, Some(&id)).await, before);

    let delegated = ok(post_json(
        &server,
        &path,
        &alice.key,
        &json!({"delegate_to": BOB, "note": "you own payments"}),
    )
    .await);
    assert_eq!(delegated["ok"], true);
    assert_eq!(delegated["thread_id"], id.as_str());
    assert_eq!(delegated["assignees"], json!([BOB]));
    let last = events_json(&server, &id).await.pop().unwrap();
    assert_eq!(last["event_type"], "intent.delegated");
    assert_eq!(last["actor"], ALICE);
    assert!(alice.client.my_tasks().await.unwrap().is_empty());
    assert_eq!(bob.client.my_tasks().await.unwrap()[0].intent_id, id);

    // Alice gave it away; now only bob decides.
    let reply = post_json(
        &server,
        &resume_path(&id),
        &alice.key,
        &json!({"task_result": {"outcome": "approved"}}),
    )
    .await;
    assert_error(&reply, 403, "forbidden", &[ALICE]);
    let decided = bob
        .client
        .decide(&id, "approved", None, Map::new())
        .await
        .unwrap();
    assert_eq!(decided.result.unwrap()["decided_by"], BOB);
    server.stop().await;
}

#[tokio::test]
async fn inbox_approve_and_reject_decide_with_the_task_outcomes() {
    let Some(server) = TestServer::start().await else {
        return;
    };
    let deployer = agent(&server, DEPLOYER).await;
    let alice = reviewer(&server, ALICE, &[]).await;
    let bob = reviewer(&server, BOB, &[]).await;
    let approval = create_task(&deployer, alice_approval()).await;
    let review = create_task(
        &deployer,
        json!({"title": "Review", "task_type": "review", "assignees": [ALICE]}),
    )
    .await;
    let confirmation = create_task(
        &deployer,
        json!({"title": "Confirm", "task_type": "confirmation", "assignees": [ALICE]}),
    )
    .await;
    let action = |id: &str, verb: &str| format!("/v1/inbox/{id}/{verb}");

    let before = observable(&server, Some(&approval)).await;
    let reply = post_json(&server, &action(&approval, "approve"), &bob.key, &json!({})).await;
    assert_error(&reply, 403, "forbidden", &[BOB]);
    for (body, mention) in [
        (json!({"comment": 5}), "comment"),
        (json!({"data": "x"}), "data"),
    ] {
        let reply = post_json(&server, &action(&approval, "approve"), &alice.key, &body).await;
        assert_error(&reply, 422, "invalid_field", &[mention]);
    }
    assert_eq!(observable(&server, Some(&approval)).await, before);

    let approved = ok(post_json(
        &server,
        &action(&approval, "approve"),
        &alice.key,
        &json!({"comment": "ok"}),
    )
    .await);
    assert_eq!(approved["intent"]["result"]["outcome"], "approved");
    assert_eq!(approved["intent"]["result"]["via"], "inbox");
    assert_eq!(approved["intent"]["result"]["comment"], "ok");

    // Rejecting a review means changes_requested, which needs a comment.
    let before = observable(&server, Some(&review)).await;
    let reply = post_json(&server, &action(&review, "reject"), &alice.key, &json!({})).await;
    assert_error(&reply, 422, "comment_required", &["changes_requested"]);
    assert_eq!(observable(&server, Some(&review)).await, before);
    let rejected = ok(post_json(
        &server,
        &action(&review, "reject"),
        &alice.key,
        &json!({"comment": "add tests"}),
    )
    .await);
    assert_eq!(rejected["intent"]["result"]["outcome"], "changes_requested");
    let last = events_json(&server, &review).await.pop().unwrap();
    assert_eq!(last["data"]["approved"], false);

    let denied = ok(post_json(
        &server,
        &action(&confirmation, "reject"),
        &alice.key,
        &json!({}),
    )
    .await);
    assert_eq!(denied["intent"]["result"]["outcome"], "denied");
    server.stop().await;
}

#[tokio::test]
async fn approval_decisions_accept_verdicts_and_explicit_outcomes() {
    let Some(server) = TestServer::start().await else {
        return;
    };
    let deployer = agent(&server, DEPLOYER).await;
    let alice = reviewer(&server, ALICE, &[]).await;
    let bob = reviewer(&server, BOB, &[]).await;
    let approval = create_task(&deployer, alice_approval()).await;
    let review = create_task(
        &deployer,
        json!({"title": "Review", "task_type": "review", "assignees": [ALICE]}),
    )
    .await;
    let path = |id: &str| format!("/v1/approvals/{id}/decision");

    let before = observable(&server, Some(&approval)).await;
    for (body, status, code, mention) in [
        (json!({}), 422, "invalid_field", "decision"),
        (json!({"decision": ""}), 422, "invalid_field", "decision"),
        (json!({"decision": 1}), 422, "invalid_field", "decision"),
        (
            json!({"decision": "maybe"}),
            422,
            "outcome_not_allowed",
            "maybe",
        ),
    ] {
        let reply = post_json(&server, &path(&approval), &alice.key, &body).await;
        assert_error(&reply, status, code, &[mention]);
    }
    let reply = post_json(
        &server,
        &path(&approval),
        &bob.key,
        &json!({"decision": "approve"}),
    )
    .await;
    assert_error(&reply, 403, "forbidden", &[BOB]);
    assert_eq!(observable(&server, Some(&approval)).await, before);

    let approved = alice
        .client
        .approval_decision(&approval, "approve", Some("fine"))
        .await
        .unwrap();
    assert_eq!(approved.status, Status::Completed);
    let result = approved.result.unwrap();
    assert_eq!(result["outcome"], "approved");
    assert_eq!(result["via"], "approvals");

    // Any outcome the task allows may be named directly.
    let body = json!({"decision": "changes_requested", "comment": "split the PR"});
    let decided = ok(post_json(&server, &path(&review), &alice.key, &body).await);
    assert_eq!(decided["intent"]["result"]["outcome"], "changes_requested");
    assert_eq!(decided["intent"]["result"]["comment"], "split the PR");
    server.stop().await;
}

// ===========================================================================
// [ext] /v1/keys
// ===========================================================================

#[tokio::test]
async fn admins_create_list_and_revoke_keys_and_revocation_is_immediate() {
    let Some(server) = TestServer::start().await else {
        return;
    };
    let body = json!({"kind": "reviewer", "identity": "dave@example.com", "teams": ["Ops"], "label": "dave's laptop"});
    let created = ok(post_json(&server, "/v1/keys", &server.admin_key, &body).await);
    assert_eq!(created["ok"], true);
    let secret = created["key"].as_str().unwrap().to_string();
    assert!(secret.starts_with("so_"));
    let record = &created["record"];
    let key_id = record["key_id"].as_str().unwrap().to_string();
    assert!(secret.starts_with(record["key_prefix"].as_str().unwrap()));
    assert_eq!(record["kind"], "reviewer");
    assert_eq!(record["identity"], "dave@example.com");
    assert_eq!(record["teams"], json!(["ops"]));
    assert_eq!(record["label"], "dave's laptop");
    assert!(is_utc_rfc3339(&record["created_at"]));
    assert!(record["revoked_at"].is_null());

    // The new key works at once.
    let me = ok(raw_get(&server, "/v1/me", Some(&secret)).await);
    assert_eq!(me["principal"]["identity"], "dave@example.com");

    // Listing shows the record, never the secret.
    let listed = ok(raw_get(&server, "/v1/keys", Some(&server.admin_key)).await);
    assert!(!listed.to_string().contains(&secret));
    let entry = listed["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["key_id"] == key_id.as_str())
        .cloned();
    assert_eq!(entry.as_ref(), Some(record));

    let revoked = ok(raw_post(
        &server,
        &format!("/v1/keys/{key_id}/revoke"),
        Some(&server.admin_key),
        "",
    )
    .await);
    assert_eq!(
        revoked,
        json!({"ok": true, "key_id": key_id, "revoked": true})
    );
    // Revocation takes effect on the very next request.
    let refused = raw_get(&server, "/v1/me", Some(&secret)).await;
    assert_error(&refused, 401, "unauthorized", &["not valid"]);
    let keys = server.admin_client().keys().await.unwrap();
    assert!(
        keys.iter()
            .find(|k| k.key_id == key_id)
            .unwrap()
            .revoked_at
            .is_some()
    );

    for id in [key_id.as_str(), "key_0000000000000000"] {
        let again = raw_post(
            &server,
            &format!("/v1/keys/{id}/revoke"),
            Some(&server.admin_key),
            "",
        )
        .await;
        assert_error(&again, 404, "not_found", &[id]);
    }
    server.stop().await;
}

#[tokio::test]
async fn only_admins_manage_keys_and_bad_key_requests_are_refused() {
    let Some(server) = TestServer::start().await else {
        return;
    };
    let alice = reviewer(&server, ALICE, &[]).await;
    let deployer = agent(&server, DEPLOYER).await;
    let keys_before = ok(raw_get(&server, "/v1/keys", Some(&server.admin_key)).await);
    let key_id = keys_before["keys"][0]["key_id"]
        .as_str()
        .unwrap()
        .to_string();
    let new_key = json!({"kind": "admin", "identity": "mallory"});

    for key in [&alice.key, &deployer.key] {
        let reply = post_json(&server, "/v1/keys", key, &new_key).await;
        assert_error(&reply, 403, "forbidden", &["admin"]);
        assert_error(
            &raw_get(&server, "/v1/keys", Some(key)).await,
            403,
            "forbidden",
            &["admin"],
        );
        let reply = raw_post(&server, &format!("/v1/keys/{key_id}/revoke"), Some(key), "").await;
        assert_error(&reply, 403, "forbidden", &["admin"]);
    }
    for (body, mention) in [
        (json!({"kind": "robot", "identity": "r2"}), "robot"),
        (
            json!({"kind": "reviewer", "identity": "has space"}),
            "has space",
        ),
        (
            json!({"kind": "agent", "identity": "acme/worker"}),
            "agent address",
        ),
        (json!({"kind": "reviewer"}), "identity"),
        (
            json!({"kind": "reviewer", "identity": "x@y.io", "teams": "ops"}),
            "teams",
        ),
    ] {
        let reply = post_json(&server, "/v1/keys", &server.admin_key, &body).await;
        assert_error(&reply, 422, "invalid_field", &[mention]);
    }
    let reply = raw_post(&server, "/v1/keys", Some(&server.admin_key), "{kind").await;
    assert_error(&reply, 400, "malformed_request", &["JSON"]);

    let keys_after = ok(raw_get(&server, "/v1/keys", Some(&server.admin_key)).await);
    assert_eq!(keys_after, keys_before, "no key was created or revoked");
    // Every principal's key still works.
    ok(raw_get(&server, "/v1/me", Some(&alice.key)).await);
    server.stop().await;
}

// ===========================================================================
// Regressions for problems found in code review
// ===========================================================================

#[tokio::test]
async fn out_of_range_deadlines_are_refused_and_task_lists_keep_working() {
    let Some(server) = TestServer::start().await else {
        return;
    };
    let deployer = agent(&server, DEPLOYER).await;
    create_task(&deployer, alice_approval()).await;
    for deadline in ["0000-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"] {
        let mut body = task_intent(alice_approval());
        body["deadline_at"] = json!(deadline);
        let reply = post_json(&server, "/v1/intents", &deployer.key, &body).await;
        let details = assert_error(
            &reply,
            422,
            "invalid_field",
            &["deadline_at", "0001 to 9999"],
        );
        assert_eq!(details["field"], "deadline_at");
    }
    assert_eq!(all_tasks(&server).await.as_array().unwrap().len(), 1);
    server.stop().await;
}

#[tokio::test]
async fn the_addressed_agent_cannot_end_a_human_task_or_forge_a_decision() {
    let Some(server) = TestServer::start().await else {
        return;
    };
    let deployer = agent(&server, DEPLOYER).await;
    let worker = agent(&server, WORKER).await;
    let mut body = task_intent(alice_approval());
    body["to_agent"] = json!(WORKER);
    let id = create(&deployer, body).await;
    let path = format!("/v1/intents/{id}/resolve");
    let forged = json!({"status": "COMPLETED", "result": {"outcome": "approved", "decided_by": ALICE, "via": "tui"}});
    let before = observable(&server, Some(&id)).await;
    let reply = post_json(&server, &path, &worker.key, &forged).await;
    assert_error(&reply, 403, "forbidden", &["the sender or an admin"]);
    let reply = post_json(
        &server,
        &format!("{path}?owner_agent={ALICE}"),
        &server.admin_key,
        &forged,
    )
    .await;
    assert_error(&reply, 422, "invalid_field", &["owner_agent"]);
    assert_eq!(observable(&server, Some(&id)).await, before);

    // The sender may withdraw its own task, but cannot pass it off as a person's decision.
    let reply = ok(post_json(&server, &path, &deployer.key, &forged).await);
    assert_eq!(reply["event"]["result"]["decided_by"], DEPLOYER);
    assert_eq!(reply["event"]["result"]["via"], "agent");
    assert_eq!(
        intent_json(&server, &id).await["result"]["decided_by"],
        DEPLOYER
    );
    server.stop().await;
}

#[tokio::test]
async fn only_reviewer_keys_belong_to_teams() {
    let Some(server) = TestServer::start().await else {
        return;
    };
    for kind in ["agent", "admin"] {
        let identity = if kind == "agent" {
            "agent://acme/sneaky"
        } else {
            "ops"
        };
        let body = json!({"kind": kind, "identity": identity, "teams": ["oncall"]});
        let reply = post_json(&server, "/v1/keys", &server.admin_key, &body).await;
        let details = assert_error(&reply, 422, "invalid_field", &["teams"]);
        assert_eq!(details["field"], "teams");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_a_key_ends_its_open_streams() {
    let Some(server) = TestServer::start().await else {
        return;
    };
    let admin = server.admin_client();
    let carol = admin
        .create_key(PrincipalKind::Reviewer, CAROL, &[], None)
        .await
        .unwrap();
    let mut stream = SseReader::open(&server, "/v1/me/tasks/stream", &carol.key, None).await;
    assert_eq!(stream.next().await.event, "tasks.snapshot");
    admin.revoke_key(&carol.record.key_id).await.unwrap();
    let ended = tokio::time::timeout(STEP, stream.body.next())
        .await
        .expect("the stream ends promptly");
    assert!(ended.is_none(), "the stream of a revoked key is closed");
    let reply = raw_get(&server, "/v1/me", Some(&carol.key)).await;
    assert_error(&reply, 401, "unauthorized", &["not valid"]);
    server.stop().await;
}

#[tokio::test]
async fn a_retried_delegation_replays_its_first_answer() {
    let Some(server) = TestServer::start().await else {
        return;
    };
    let deployer = agent(&server, DEPLOYER).await;
    let alice = reviewer(&server, ALICE, &[]).await;
    let id = create_task(&deployer, alice_approval()).await;
    let path = format!("/v1/inbox/{id}/delegate");
    let body = json!({"delegate_to": BOB}).to_string();
    let headers = [("idempotency-key", "delegate-once")];
    let first = raw_post_with(&server, &path, Some(&alice.key), &body, &headers).await;
    let retry = raw_post_with(&server, &path, Some(&alice.key), &body, &headers).await;
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(
        retry.status, 200,
        "a retry replays instead of failing: {}",
        retry.body
    );
    assert_eq!(first.body, retry.body);
    let delegations = events_json(&server, &id).await;
    assert_eq!(
        event_types(&delegations)
            .iter()
            .filter(|t| **t == "intent.delegated")
            .count(),
        1
    );
    server.stop().await;
}

#[tokio::test]
async fn positions_beyond_the_database_range_are_refused() {
    let Some(server) = TestServer::start().await else {
        return;
    };
    let deployer = agent(&server, DEPLOYER).await;
    let id = create_task(&deployer, alice_approval()).await;
    let huge = "18446744073709551615";
    let reply = raw_get(
        &server,
        &format!("/v1/intents/{id}/events?since={huge}"),
        Some(&server.admin_key),
    )
    .await;
    assert_error(&reply, 400, "malformed_request", &["since", huge]);
    let response = request(
        &server,
        Method::GET,
        "/v1/me/tasks/stream",
        Some(&server.admin_key),
    )
    .header("last-event-id", "9223372036854775808")
    .send()
    .await
    .unwrap();
    assert_eq!(response.status(), 400);
    server.stop().await;
}

#[tokio::test]
async fn strangers_get_403_before_learning_a_tasks_outcomes() {
    let Some(server) = TestServer::start().await else {
        return;
    };
    let deployer = agent(&server, DEPLOYER).await;
    let bob = reviewer(&server, BOB, &[]).await;
    let id = create_task(
        &deployer,
        json!({"title": "Pick a plan", "allowed_outcomes": ["plan_a", "plan_b"], "assignees": [ALICE]}),
    )
    .await;
    let reply = post_json(
        &server,
        &format!("/v1/inbox/{id}/approve"),
        &bob.key,
        &json!({}),
    )
    .await;
    assert_error(&reply, 403, "forbidden", &["not an assignee"]);
    assert!(!reply.body.to_string().contains("plan_a"), "{}", reply.body);
    server.stop().await;
}

#[tokio::test]
async fn malformed_paths_get_the_uniform_error() {
    let Some(server) = TestServer::start().await else {
        return;
    };
    let reply = raw_get(&server, "/v1/intents/%FF", Some(&server.admin_key)).await;
    assert_error(&reply, 400, "malformed_request", &["UTF-8"]);
    server.stop().await;
}

#[tokio::test]
async fn inbox_changes_report_threads_that_leave() {
    let Some(server) = TestServer::start().await else {
        return;
    };
    let deployer = agent(&server, DEPLOYER).await;
    let alice = reviewer(&server, ALICE, &[]).await;
    let id = create_task(&deployer, alice_approval()).await;
    let first = ok(raw_get(&server, "/v1/inbox/changes", Some(&alice.key)).await);
    assert_eq!(first["changes"][0]["status"], "pending");
    let cursor = first["next_cursor"].as_str().unwrap().to_string();
    server
        .admin_client()
        .decide(&id, "approved", None, Map::new())
        .await
        .unwrap();
    let path = format!("/v1/inbox/changes?cursor={cursor}");
    let later = ok(raw_get(&server, &path, Some(&alice.key)).await);
    let changes = later["changes"].as_array().unwrap();
    assert_eq!(changes.len(), 1, "{later}");
    assert_eq!(changes[0]["thread_id"], id.as_str());
    assert_eq!(changes[0]["status"], "done");
    assert_eq!(changes[0]["thread"]["intent_status"], "COMPLETED");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_resumed_from_beyond_the_newest_position_are_not_silent() {
    let Some(server) = TestServer::start().await else {
        return;
    };
    let deployer = agent(&server, DEPLOYER).await;
    let alice = reviewer(&server, ALICE, &[]).await;
    let id = create_task(&deployer, alice_approval()).await;
    let mut tasks =
        SseReader::open(&server, "/v1/me/tasks/stream", &alice.key, Some("999999")).await;
    assert_eq!(
        tasks.next().await.event,
        "tasks.snapshot",
        "a fresh snapshot, not silence"
    );

    let path = format!("/v1/intents/{id}/events/stream?since=500&wait_seconds=30");
    let response = open_sse(&server, &path, &deployer.key, None).await;
    alice
        .client
        .decide(&id, "approved", None, Map::new())
        .await
        .unwrap();
    let replayed = read_bounded(response).await;
    assert_eq!(replayed.frames.last().unwrap().event, "intent.completed");
    server.stop().await;
}
