//! Shared harness for the integration tests: a real server on 127.0.0.1 with a
//! temporary SQLite file (or, in the `*_on_postgres` crates, a PostgreSQL schema
//! of its own), either in-process or as a `signoff serve` child process.
#![allow(dead_code)]

pub mod audit_support;
pub mod backend;
pub mod fixtures;
pub mod receivers;
pub mod tmux;

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use backend::TestDatabase;
use futures::{Stream, StreamExt};
use serde_json::{Value, json};
use signoff::client::{Bounded, Client, ClientResult, TaskStreamMessage};
use signoff::clock::SystemClock;
use signoff::domain::{Event, TaskStreamItem};
use signoff::domain::{Principal, PrincipalKind};
use signoff::engine::{Engine, EngineSettings};
use signoff::server::RunningServer;

/// A server running inside the test process.
pub struct TestServer {
    pub database: TestDatabase,
    pub url: String,
    pub admin_key: String,
    pub engine: Engine,
    server: Option<RunningServer>,
}

impl TestServer {
    /// A server on a fresh database; `None` when this crate runs on PostgreSQL
    /// and none is configured (the test then says it was skipped).
    pub async fn start() -> Option<TestServer> {
        Self::start_with(EngineSettings::default()).await
    }

    pub async fn start_with(settings: EngineSettings) -> Option<TestServer> {
        let database = TestDatabase::create().await?;
        let engine = database.engine(Arc::new(SystemClock), settings).await;
        let admin_key = engine
            .bootstrap_admin_key()
            .await
            .expect("bootstrap")
            .expect("fresh database has no admin");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let server = RunningServer::spawn(listener, engine.clone()).expect("spawn");
        let url = format!("http://{}", server.address);
        Some(TestServer {
            database,
            url,
            admin_key,
            engine,
            server: Some(server),
        })
    }

    fn admin(&self) -> Principal {
        Principal::new(PrincipalKind::Admin, "test", vec![]).unwrap()
    }

    /// Creates a key for a principal and returns the secret.
    pub async fn key(&self, kind: PrincipalKind, identity: &str, teams: &[&str]) -> String {
        let principal = Principal::new(
            kind,
            identity,
            teams.iter().map(|t| t.to_string()).collect(),
        )
        .expect("valid principal");
        self.engine
            .create_key(&self.admin(), principal, None)
            .await
            .expect("create key")
            .1
    }

    pub async fn agent(&self, address: &str) -> Client {
        self.client(&self.key(PrincipalKind::Agent, address, &[]).await)
    }

    pub async fn reviewer(&self, identity: &str, teams: &[&str]) -> Client {
        self.client(&self.key(PrincipalKind::Reviewer, identity, teams).await)
    }

    pub fn admin_client(&self) -> Client {
        self.client(&self.admin_key)
    }

    pub fn client(&self, key: &str) -> Client {
        Client::new(&self.url, key).expect("client")
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    pub async fn stop(mut self) {
        if let Some(server) = self.server.take() {
            server.stop().await.expect("clean stop");
        }
    }
}

/// A human task intent body as an agent would send it.
pub fn task_intent(task: Value) -> Value {
    json!({
        "intent_type": "intent.human_task.v1",
        "correlation_id": uuid::Uuid::new_v4().to_string(),
        "to_agent": "agent://acme/worker",
        "payload": {"service": "api", "version": "2.3.0"},
        "human_task": task,
    })
}

/// The path to the `signoff` binary built for these tests.
pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_signoff")
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("free port")
}

/// Runs the `signoff` CLI with its XDG directories inside `home`.
pub fn signoff(home: &Path, args: &[&str]) -> Output {
    signoff_command(home, args).output().expect("run signoff")
}

/// The `signoff` CLI as [`signoff`] runs it, for a caller that changes more of
/// its environment first.
pub fn signoff_command(home: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(binary());
    command.args(args).envs(xdg_env(home));
    for variable in inherited_variables_to_drop() {
        command.env_remove(variable);
    }
    command
}

/// The variables of the test runner's environment that would change what a
/// `signoff` it starts does: the client's server and key, and the `PG*`
/// variables signoff reads as libpq does.
pub fn inherited_variables_to_drop() -> impl Iterator<Item = &'static str> {
    ["SIGNOFF_SERVER", "SIGNOFF_KEY"].into_iter().chain(
        signoff::store::postgres::libpq::VARIABLES
            .iter()
            .map(|(variable, _)| *variable),
    )
}

pub fn xdg_env(home: &Path) -> Vec<(String, PathBuf)> {
    vec![
        ("HOME".into(), home.to_path_buf()),
        ("XDG_CONFIG_HOME".into(), home.join("config")),
        ("XDG_DATA_HOME".into(), home.join("data")),
        ("XDG_STATE_HOME".into(), home.join("state")),
    ]
}

/// `signoff serve` as a child process, so tests can `kill -9` and restart it.
pub struct ServeProcess {
    pub home: PathBuf,
    pub port: u16,
    pub url: String,
    child: Option<Child>,
    extra_args: Vec<String>,
}

impl ServeProcess {
    pub fn start(home: &Path, extra_args: &[&str]) -> ServeProcess {
        let process = Self::start_unready(home, extra_args);
        process.wait_healthy();
        process
    }

    /// [`ServeProcess::start`] from async code: the wait for it to serve
    /// runs off the runtime's threads.
    pub async fn started(home: &Path, extra_args: &[&str]) -> ServeProcess {
        let home = home.to_path_buf();
        let extra_args: Vec<String> = extra_args.iter().map(|a| a.to_string()).collect();
        tokio::task::spawn_blocking(move || {
            let extra_args: Vec<&str> = extra_args.iter().map(String::as_str).collect();
            ServeProcess::start(&home, &extra_args)
        })
        .await
        .expect("signoff serve started")
    }

    /// Starts the process without waiting for it to serve.
    pub fn start_unready(home: &Path, extra_args: &[&str]) -> ServeProcess {
        let port = free_port();
        let mut process = ServeProcess {
            home: home.to_path_buf(),
            port,
            url: format!("http://127.0.0.1:{port}"),
            child: None,
            extra_args: extra_args.iter().map(|a| a.to_string()).collect(),
        };
        process.spawn();
        process
    }

    fn launch(&mut self) {
        self.spawn();
        self.wait_healthy();
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.home.join("serve.log"))
            .expect("log file");
        let mut command = Command::new(binary());
        for variable in inherited_variables_to_drop() {
            command.env_remove(variable);
        }
        let child = command
            .arg("serve")
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", self.port))
            .args(&self.extra_args)
            .envs(xdg_env(&self.home))
            .env("SIGNOFF_LOG", "signoff=info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn signoff serve");
        self.child = Some(child);
    }

    fn wait_healthy(&self) {
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(20) {
            if let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", self.port)) {
                use std::io::{Read, Write};
                let _ = stream.write_all(b"GET /health HTTP/1.0\r\n\r\n");
                let mut reply = String::new();
                let _ = stream.read_to_string(&mut reply);
                if reply.contains("\"ok\":true") {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("signoff serve did not become healthy; log:\n{}", self.log());
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.home.join("serve.log")).unwrap_or_default()
    }

    /// The admin key the server wrote on first start.
    pub fn admin_key(&self) -> String {
        let text = std::fs::read_to_string(self.home.join("config/signoff/client.toml"))
            .expect("client.toml written on first start");
        let parsed: toml::Value = toml::from_str(&text).expect("client.toml parses");
        parsed["key"].as_str().expect("key").to_string()
    }

    /// Keys for the usual pair: agent://acme/deployer and reviewer
    /// alice@example.com of team oncall, as (agent key, reviewer key).
    pub async fn deployer_and_alice_keys(&self) -> (String, String) {
        let admin = Client::new(&self.url, &self.admin_key()).unwrap();
        let agent = admin
            .create_key(PrincipalKind::Agent, "agent://acme/deployer", &[], None)
            .await
            .unwrap();
        let reviewer = admin
            .create_key(
                PrincipalKind::Reviewer,
                "alice@example.com",
                &["oncall".to_string()],
                None,
            )
            .await
            .unwrap();
        (agent.key, reviewer.key)
    }

    /// `GET /health`, as a load balancer reads it.
    pub async fn health(&self) -> HealthAnswer {
        let reply = reqwest::get(format!("{}/health", self.url))
            .await
            .expect("the instance answers");
        let status = reply.status().as_u16();
        let connection = reply
            .headers()
            .get("connection")
            .and_then(|value| value.to_str().ok())
            .map(str::to_string);
        let body = reply.json().await.expect("a JSON body");
        HealthAnswer {
            status,
            connection,
            body,
        }
    }

    /// Asks `/health` until `wanted` holds of its answer, which it returns;
    /// fails with the last answer and the log after `within`.
    pub async fn health_until(
        &self,
        what: &str,
        within: Duration,
        wanted: impl Fn(&HealthAnswer) -> bool,
    ) -> HealthAnswer {
        audit_support::eventually(what, within, async || {
            let health = self.health().await;
            if wanted(&health) {
                return Ok(health);
            }
            Err(format!(
                "{} {}; log:\n{}",
                health.status,
                health.body,
                self.log()
            ))
        })
        .await
    }

    /// Waits until the process has logged `line`; fails with the log after
    /// `within`.
    pub async fn logged(&self, line: &str, within: Duration) {
        let what = format!("the instance to log {line:?}");
        audit_support::eventually(&what, within, async || {
            let log = self.log();
            if log.contains(line) { Ok(()) } else { Err(log) }
        })
        .await
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).expect("running")
    }

    /// SIGKILL: no shutdown code runs.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then wait for a graceful exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        self.send_signal("TERM");
        let mut child = self.child.take().expect("running");
        child.wait().expect("wait for exit")
    }

    /// Sends the signal `name` (`TERM`, `INT`), without waiting for anything.
    pub fn send_signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} {} failed", self.pid());
    }

    /// Waits for the process to exit by itself; fails with its log if it is
    /// still running after `limit`.
    pub fn exits_within(&mut self, limit: Duration) -> std::process::ExitStatus {
        let started = Instant::now();
        loop {
            let child = self.child.as_mut().expect("running");
            if let Some(status) = child.try_wait().expect("wait for exit") {
                self.child = None;
                return status;
            }
            assert!(
                started.elapsed() < limit,
                "still running after {limit:?}; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits, off the async threads, for the process to exit by itself
    /// within `limit`; returns how it exited and its log.
    pub async fn exit(mut self, limit: Duration) -> (std::process::ExitStatus, String) {
        tokio::task::spawn_blocking(move || {
            let status = self.exits_within(limit);
            (status, self.log())
        })
        .await
        .expect("waiting for the exit")
    }

    pub fn restart(&mut self) {
        self.kill9();
        self.launch();
    }
}

/// What `GET /health` answered.
#[derive(Debug)]
pub struct HealthAnswer {
    pub status: u16,
    /// The `Connection` header, which says `close` while the instance drains.
    pub connection: Option<String>,
    pub body: Value,
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A Python venv with the official SDK (`pip install axme==0.2.*`), created once
/// per target directory and shared by every test that needs it.
pub fn sdk_python() -> PathBuf {
    static VENV: OnceLock<Mutex<Option<PathBuf>>> = OnceLock::new();
    let lock = VENV.get_or_init(|| Mutex::new(None));
    let mut guard = lock.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(python) = guard.as_ref() {
        return python.clone();
    }
    let venv = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("axme-sdk-venv");
    let python = venv.join("bin/python");
    let ready = venv.join(".installed-axme-0.2");
    if !ready.exists() {
        let status = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .expect("python3 -m venv");
        assert!(status.success(), "creating the venv failed");
        let output = Command::new(&python)
            .args(["-m", "pip", "install", "--quiet", "axme==0.2.*"])
            .output()
            .expect("pip install");
        assert!(
            output.status.success(),
            "pip install axme==0.2.* failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        std::fs::write(&ready, "ok").expect("marker");
    }
    *guard = Some(python.clone());
    python
}

/// The directory holding the Python compatibility scripts.
pub fn compat_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/compat")
}

/// An intent's event stream, as the client reads it.
pub type EventStream = Pin<Box<dyn Stream<Item = ClientResult<Bounded<Event>>>>>;

/// Creates a task through `client` and follows its intent's stream from just
/// after its creation: (intent id, stream).
pub async fn followed_task(client: &Client, title: &str) -> (String, EventStream) {
    let intent_id = client
        .create_intent(&task_intent(json!({ "title": title })), None)
        .await
        .expect("create a task")
        .intent_id;
    let seen = client
        .events(&intent_id, 0)
        .await
        .expect("its events")
        .len() as u64;
    let stream = client
        .intent_stream(&intent_id, seen, 60)
        .await
        .expect("follow it");
    (intent_id, Box::pin(stream))
}

/// Reads `stream` up to its intent's terminal event, which it returns; fails
/// if the stream ends first, or after `within`, saying `what` was awaited.
pub async fn terminal_event(stream: &mut EventStream, within: Duration, what: &str) -> Event {
    tokio::time::timeout(within, async {
        loop {
            match stream.next().await {
                Some(Ok(Bounded::Item(event))) if event.is_terminal() => return event,
                Some(Ok(_)) => {}
                other => panic!("the stream ended before {what}: {other:?}"),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {what} on the stream within {within:?}"))
}

/// Reads items off a task stream until one matches, or fails after `seconds`.
pub async fn next_matching(
    stream: &mut (impl Stream<Item = TaskStreamMessage> + Unpin),
    seconds: u64,
    what: &str,
    matches: impl Fn(&TaskStreamItem) -> bool,
) -> TaskStreamItem {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(seconds);
    loop {
        let message = tokio::time::timeout_at(deadline, stream.next())
            .await
            .unwrap_or_else(|_| panic!("no {what} within {seconds} s"))
            .expect("the stream does not end");
        if let TaskStreamMessage::Item(item) = message
            && matches(&item)
        {
            return item;
        }
    }
}
