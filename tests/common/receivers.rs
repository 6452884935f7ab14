//! Local stand-ins for the places notifications go: an HTTP receiver for Slack and
//! generic webhooks, and an SMTP sink (Python `aiosmtpd`). Both record what they
//! were sent so a test can assert on it, and both stop when dropped.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::Value;
use tempfile::TempDir;

/// How long a receiver may take to come up before the test gives up on it.
const START_DEADLINE: Duration = Duration::from_secs(20);
/// Bodies larger than this are not notifications; refuse rather than buffer them.
const BODY_LIMIT: usize = 1 << 20;

/// One HTTP request as the receiver saw it.
#[derive(Debug, Clone)]
pub struct ReceivedRequest {
    pub method: String,
    pub path: String,
    /// Lower-case names; a repeated header keeps its last value.
    pub headers: HashMap<String, String>,
    /// The raw bytes, exactly as signed by the sender.
    pub body: Vec<u8>,
    pub arrived: Instant,
}

impl ReceivedRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|err| {
            panic!(
                "the body of {} {} is not JSON ({err}): {}",
                self.method,
                self.path,
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

struct ReceiverState {
    requests: Mutex<Vec<ReceivedRequest>>,
    /// How many requests, counted from the first, are answered with `failure`.
    failing_requests: usize,
    failure: (StatusCode, String),
}

/// An HTTP server on 127.0.0.1 that records every request, answering the first
/// `failing_requests` with an error and the rest with `200 ok`.
pub struct HttpReceiver {
    pub address: SocketAddr,
    state: Arc<ReceiverState>,
    server: tokio::task::JoinHandle<()>,
}

impl HttpReceiver {
    /// A receiver that accepts everything.
    pub async fn start() -> HttpReceiver {
        Self::failing_first(0, StatusCode::OK, "").await
    }

    /// A receiver that answers the first `count` requests with `status` and
    /// `body`; `usize::MAX` makes it fail for good.
    pub async fn failing_first(count: usize, status: StatusCode, body: &str) -> HttpReceiver {
        let state = Arc::new(ReceiverState {
            requests: Mutex::new(Vec::new()),
            failing_requests: count,
            failure: (status, body.to_string()),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the HTTP receiver");
        let address = listener.local_addr().expect("receiver address");
        let router = Router::new().fallback(record).with_state(state.clone());
        let server = tokio::spawn(async move {
            axum::serve(listener, router)
                .await
                .expect("the HTTP receiver runs");
        });
        HttpReceiver {
            address,
            state,
            server,
        }
    }

    /// The URL of `path` on this receiver.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    /// Everything received so far, oldest first.
    pub fn requests(&self) -> Vec<ReceivedRequest> {
        lock(&self.state.requests).clone()
    }
}

impl Drop for HttpReceiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn record(State(state): State<Arc<ReceiverState>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = match axum::body::to_bytes(body, BODY_LIMIT).await {
        Ok(bytes) => bytes.to_vec(),
        Err(err) => return (StatusCode::BAD_REQUEST, err.to_string()).into_response(),
    };
    let headers = parts
        .headers
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_string(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect();
    let position = {
        let mut requests = lock(&state.requests);
        requests.push(ReceivedRequest {
            method: parts.method.to_string(),
            path: parts.uri.path().to_string(),
            headers,
            body,
            arrived: Instant::now(),
        });
        requests.len()
    };
    if position <= state.failing_requests {
        let (status, body) = state.failure.clone();
        return (status, Body::from(body)).into_response();
    }
    (StatusCode::OK, "ok").into_response()
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A test that panicked while holding the lock must not hide what was recorded.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A URL on 127.0.0.1 where nothing listens, so connecting is refused.
pub fn refusing_url(path: &str) -> String {
    format!("http://127.0.0.1:{}{path}", super::free_port())
}

/// One message as the SMTP sink decoded it (see tests/compat/smtp_sink.py).
#[derive(Debug, Clone, Deserialize)]
pub struct ReceivedEmail {
    /// The envelope: `MAIL FROM` and `RCPT TO`.
    pub mail_from: String,
    pub rcpt_tos: Vec<String>,
    /// The headers, with encoded words decoded.
    pub from: String,
    pub to: String,
    pub subject: String,
    pub content_type: String,
    /// The text/plain body, transfer encoding undone, `\n` line ends.
    pub body: String,
}

/// `tests/compat/smtp_sink.py` on a port of its choosing.
pub struct SmtpSink {
    pub port: u16,
    child: Child,
    output: PathBuf,
    dir: TempDir,
}

impl SmtpSink {
    /// Starts the sink and waits until it accepts connections. Blocking: it may
    /// first install `aiosmtpd`.
    pub fn start() -> SmtpSink {
        let python = smtp_python();
        let dir = tempfile::tempdir().expect("temp dir for the SMTP sink");
        let output = dir.path().join("messages.jsonl");
        let stderr = std::fs::File::create(dir.path().join("stderr.log")).expect("sink log");
        let mut child = Command::new(&python)
            .arg(super::compat_dir().join("smtp_sink.py"))
            .arg(&output)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("spawn the SMTP sink");
        let stdout = child.stdout.take().expect("piped stdout");
        // The first line is the port; read it on a thread so a sink that never
        // prints fails the test after a deadline instead of hanging it.
        let (port_sender, port_receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = port_sender.send(line);
        });
        let mut sink = SmtpSink {
            port: 0,
            child,
            output,
            dir,
        };
        let line = port_receiver
            .recv_timeout(START_DEADLINE)
            .unwrap_or_default();
        sink.port = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("the SMTP sink printed no port: {line:?}\n{}", sink.log()));
        sink.wait_accepting();
        sink
    }

    fn wait_accepting(&self) {
        let started = Instant::now();
        while started.elapsed() < START_DEADLINE {
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "the SMTP sink does not accept connections on {}\n{}",
            self.port,
            self.log()
        );
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default()
    }

    /// Every message received so far, oldest first.
    pub fn messages(&self) -> Vec<ReceivedEmail> {
        let text = std::fs::read_to_string(&self.output).unwrap_or_default();
        // A record still being written has no newline yet; leave it for next time.
        let complete = &text[..text.rfind('\n').map_or(0, |end| end + 1)];
        complete
            .lines()
            .map(|line| {
                serde_json::from_str(line)
                    .unwrap_or_else(|err| panic!("bad sink record ({err}): {line}"))
            })
            .collect()
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The SDK venv (see `sdk_python`) with `aiosmtpd` added, installed once per
/// target directory.
fn smtp_python() -> PathBuf {
    static INSTALL: OnceLock<Mutex<()>> = OnceLock::new();
    let _installing = lock(INSTALL.get_or_init(|| Mutex::new(())));
    let python = super::sdk_python();
    let venv = python
        .parent()
        .and_then(|bin| bin.parent())
        .expect("the venv python lives in VENV/bin");
    let ready = venv.join(".installed-aiosmtpd");
    if !ready.exists() {
        let output = Command::new(&python)
            .args(["-m", "pip", "install", "--quiet", "aiosmtpd"])
            .output()
            .expect("pip install");
        assert!(
            output.status.success(),
            "pip install aiosmtpd failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        std::fs::write(&ready, "ok").expect("marker");
    }
    python
}
