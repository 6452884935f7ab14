//! The benchmarks behind `signoff bench`. This file holds the approval
//! round trip (`bench roundtrip`) and the inbox start-up (`bench inbox`);
//! `timers` holds the scheduler benchmark (`bench timers`).
//!
//! Each simulated agent loops: create a human task, follow its event stream (as the
//! SDK's `wait_for` does), and as soon as the stream is live a reviewer decides over
//! HTTP; the round trip ends when the agent's stream delivers the terminal event.
//! The decide→agent latency is measured from just before the reviewer's request is
//! sent to the moment the agent reads `intent.completed`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde::Serialize;
use serde_json::{Map, json};

pub mod timers;

use crate::client::{Bounded, Client, ClientError};
use crate::domain::PrincipalKind;

#[derive(Debug, Clone)]
pub struct RoundTripOptions {
    pub agents: usize,
    pub duration: Duration,
    pub warmup: Duration,
    /// Tasks left waiting at the end, to measure the server's memory under load.
    pub waiting_tasks: usize,
}

/// Where the load goes: a server this benchmark starts (and can measure), or an
/// existing one.
pub enum Target {
    Spawned(SpawnedServer),
    Existing { url: String, admin_key: String },
}

impl Target {
    fn url(&self) -> &str {
        match self {
            Target::Spawned(server) => &server.url,
            Target::Existing { url, .. } => url,
        }
    }

    fn admin_key(&self) -> &str {
        match self {
            Target::Spawned(server) => &server.admin_key,
            Target::Existing { admin_key, .. } => admin_key,
        }
    }

    fn rss_kib(&self) -> Option<u64> {
        match self {
            Target::Spawned(server) => server.rss_kib(),
            Target::Existing { .. } => None,
        }
    }
}

/// A `signoff serve` child process on a fresh database in a temporary directory.
pub struct SpawnedServer {
    child: Child,
    home: PathBuf,
    url: String,
    admin_key: String,
}

impl SpawnedServer {
    pub fn start(binary: &Path, home: &Path, durability: &str) -> anyhow::Result<SpawnedServer> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let child = Command::new(binary)
            .args([
                "serve",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--durability",
                durability,
            ])
            .env("XDG_CONFIG_HOME", home.join("config"))
            .env("XDG_DATA_HOME", home.join("data"))
            .env("SIGNOFF_LOG", "signoff=warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()?;
        let client_toml = home.join("config/signoff/client.toml");
        let started = Instant::now();
        while !client_toml.exists() {
            if started.elapsed() > Duration::from_secs(20) {
                anyhow::bail!("the benchmark server did not start within 20 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(100));
        let config: crate::config::ClientConfig =
            toml::from_str(&std::fs::read_to_string(&client_toml)?)?;
        Ok(SpawnedServer {
            child,
            home: home.to_path_buf(),
            url: config.server,
            admin_key: config.key,
        })
    }

    /// Resident memory of the server process, from /proc (Linux only).
    pub fn rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
    }

    pub fn home(&self) -> &Path {
        &self.home
    }
}

impl Drop for SpawnedServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct RoundTripReport {
    pub agents: usize,
    pub duration_seconds: f64,
    pub round_trips: usize,
    pub errors: usize,
    pub round_trips_per_second: f64,
    pub decide_to_agent_p50_ms: f64,
    pub decide_to_agent_p99_ms: f64,
    pub round_trip_p50_ms: f64,
    pub waiting_tasks: usize,
    pub server_rss_mib_idle_after_load: Option<f64>,
    pub server_rss_mib_with_waiting: Option<f64>,
}

fn task_body(sequence: usize) -> serde_json::Value {
    json!({
        "intent_type": "intent.human_task.v1",
        "correlation_id": uuid::Uuid::new_v4().to_string(),
        "to_agent": "agent://bench/worker",
        "payload": {"sequence": sequence, "change": "deploy api 2.3.0 to production"},
        "human_task": {
            "title": format!("Approve deployment #{sequence}"),
            "task_type": "approval",
            "assignees": ["bench-reviewer@example.com"],
        },
    })
}

struct Sample {
    decide_to_agent: Duration,
    round_trip: Duration,
}

/// One full round trip; returns its timings.
async fn round_trip(
    agent: &Client,
    reviewer: &Client,
    sequence: usize,
) -> Result<Sample, ClientError> {
    let started = Instant::now();
    let created = agent.create_intent(&task_body(sequence), None).await?;
    let stream = agent.intent_stream(&created.intent_id, 0, 30).await?;
    futures::pin_mut!(stream);
    // Read until the task is assigned: from then on the stream is live, so the
    // decision below is delivered over it rather than found by a later replay.
    loop {
        match stream.next().await {
            Some(Ok(Bounded::Item(event)))
                if event.event_type == crate::domain::event::HUMAN_TASK_ASSIGNED =>
            {
                break;
            }
            Some(Ok(Bounded::Item(_))) => continue,
            Some(Ok(Bounded::Timeout { .. })) | None => {
                return Err(ClientError::Protocol(
                    "stream ended before the task was assigned".into(),
                ));
            }
            Some(Err(err)) => return Err(err),
        }
    }
    let decided_at = Instant::now();
    let decide = reviewer.decide(
        &created.intent_id,
        "approved",
        Some("benchmark"),
        Map::new(),
    );
    let watch = async {
        while let Some(item) = stream.next().await {
            if let Bounded::Item(event) = item?
                && event.is_terminal()
            {
                return Ok(Instant::now());
            }
        }
        Err(ClientError::Protocol(
            "stream ended before the decision arrived".into(),
        ))
    };
    let (decision, seen) = tokio::join!(decide, watch);
    decision?;
    let seen = seen?;
    Ok(Sample {
        decide_to_agent: seen - decided_at,
        round_trip: seen - started,
    })
}

fn percentile_ms(sorted: &[Duration], fraction: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let index = ((sorted.len() as f64 - 1.0) * fraction).round() as usize;
    sorted[index.min(sorted.len() - 1)].as_secs_f64() * 1000.0
}

/// An agent and a reviewer for the benchmark, and the reviewer's key.
struct BenchActors {
    agent: Client,
    reviewer: Client,
    reviewer_key: String,
}

async fn bench_actors(target: &Target) -> anyhow::Result<BenchActors> {
    let admin = Client::new(target.url(), target.admin_key())?;
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    let agent_key = admin
        .create_key(
            PrincipalKind::Agent,
            &format!("agent://bench/agent-{}", &suffix[..8]),
            &[],
            Some("bench"),
        )
        .await?;
    let reviewer_key = admin
        .create_key(
            PrincipalKind::Reviewer,
            "bench-reviewer@example.com",
            &[],
            Some("bench"),
        )
        .await?;
    Ok(BenchActors {
        agent: Client::new(target.url(), &agent_key.key)?,
        reviewer: Client::new(target.url(), &reviewer_key.key)?,
        reviewer_key: reviewer_key.key,
    })
}

pub async fn run_round_trips(
    target: &Target,
    options: &RoundTripOptions,
) -> anyhow::Result<RoundTripReport> {
    let BenchActors {
        agent, reviewer, ..
    } = bench_actors(target).await?;
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for worker in 0..options.agents {
        let (agent, reviewer) = (agent.clone(), reviewer.clone());
        let (measuring, stop) = (measuring.clone(), stop.clone());
        workers.push(tokio::spawn(async move {
            let mut samples = Vec::new();
            let mut errors = 0usize;
            let mut sequence = worker * 1_000_000;
            while !stop.load(Ordering::Relaxed) {
                sequence += 1;
                let result = round_trip(&agent, &reviewer, sequence).await;
                if !measuring.load(Ordering::Relaxed) || stop.load(Ordering::Relaxed) {
                    continue;
                }
                match result {
                    Ok(sample) => samples.push(sample),
                    Err(err) => {
                        errors += 1;
                        if errors <= 3 {
                            eprintln!("round trip failed: {err}");
                        }
                    }
                }
            }
            (samples, errors)
        }));
    }
    tokio::time::sleep(options.warmup).await;
    measuring.store(true, Ordering::Relaxed);
    let started = Instant::now();
    tokio::time::sleep(options.duration).await;
    stop.store(true, Ordering::Relaxed);
    let elapsed = started.elapsed();
    let mut samples = Vec::new();
    let mut errors = 0;
    for worker in workers {
        let (worker_samples, worker_errors) = worker.await?;
        samples.extend(worker_samples);
        errors += worker_errors;
    }
    let mut decide_to_agent: Vec<Duration> = samples.iter().map(|s| s.decide_to_agent).collect();
    let mut round_trips: Vec<Duration> = samples.iter().map(|s| s.round_trip).collect();
    decide_to_agent.sort();
    round_trips.sort();
    let idle_rss = target.rss_kib();

    let mut waiting_rss = None;
    if options.waiting_tasks > 0 {
        fill_waiting(&agent, options.waiting_tasks).await?;
        tokio::time::sleep(Duration::from_millis(500)).await;
        waiting_rss = target.rss_kib();
    }
    let mib = |kib: u64| kib as f64 / 1024.0;
    Ok(RoundTripReport {
        agents: options.agents,
        duration_seconds: elapsed.as_secs_f64(),
        round_trips: samples.len(),
        errors,
        round_trips_per_second: samples.len() as f64 / elapsed.as_secs_f64(),
        decide_to_agent_p50_ms: percentile_ms(&decide_to_agent, 0.50),
        decide_to_agent_p99_ms: percentile_ms(&decide_to_agent, 0.99),
        round_trip_p50_ms: percentile_ms(&round_trips, 0.50),
        waiting_tasks: options.waiting_tasks,
        server_rss_mib_idle_after_load: idle_rss.map(mib),
        server_rss_mib_with_waiting: waiting_rss.map(mib),
    })
}

/// Leaves `count` tasks waiting for a human.
async fn fill_waiting(agent: &Client, count: usize) -> anyhow::Result<()> {
    create_many(agent, 0..count, task_body).await
}

/// Creates one intent per number in `sequences`, 64 at a time, with the body
/// `body` makes for it.
async fn create_many(
    agent: &Client,
    sequences: std::ops::Range<usize>,
    body: impl Fn(usize) -> serde_json::Value,
) -> anyhow::Result<()> {
    const CONCURRENCY: usize = 64;
    let count = sequences.len();
    let results: Vec<Result<(), ClientError>> = futures::stream::iter(sequences)
        .map(|sequence| {
            let agent = agent.clone();
            let body = body(sequence);
            async move { agent.create_intent(&body, None).await.map(|_| ()) }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    let failed = results.iter().filter(|result| result.is_err()).count();
    if failed > 0 {
        anyhow::bail!("{failed} of {count} tasks could not be created");
    }
    Ok(())
}

/// Start-up time and memory of the real inbox with many tasks.
#[derive(Debug, Clone, Serialize)]
pub struct InboxReport {
    pub tasks: usize,
    /// From launching `signoff` to the first frame showing every task.
    pub first_frame_with_data_ms: f64,
    pub rss_mib: f64,
}

/// The process running in a tmux pane: the pane's own process, or its child when
/// tmux started it through a shell.
fn pane_process(socket: &Path, session: &str) -> anyhow::Result<u32> {
    let output = Command::new("tmux")
        .arg("-S")
        .arg(socket)
        .args(["display-message", "-p", "-t", session, "#{pane_pid}"])
        .output()?;
    let pane: u32 = String::from_utf8_lossy(&output.stdout).trim().parse()?;
    let name = std::fs::read_to_string(format!("/proc/{pane}/comm")).unwrap_or_default();
    if name.trim() == "signoff" {
        return Ok(pane);
    }
    let children =
        std::fs::read_to_string(format!("/proc/{pane}/task/{pane}/children")).unwrap_or_default();
    children
        .split_whitespace()
        .next()
        .and_then(|child| child.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("cannot find the inbox process under tmux"))
}

fn rss_kib_of(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Fills a fresh server with `tasks` waiting tasks, then starts the real inbox in
/// a tmux pane and times it to the first frame that shows them all.
pub async fn run_inbox(binary: &Path, tasks: usize) -> anyhow::Result<InboxReport> {
    let home = tempfile::tempdir()?;
    let server = SpawnedServer::start(binary, home.path(), "normal")?;
    let target = Target::Spawned(server);
    let actors = bench_actors(&target).await?;
    fill_waiting(&actors.agent, tasks).await?;
    let socket = home.path().join("tmux.sock");
    let session = "bench";
    let command = format!(
        "env HOME={home} XDG_CONFIG_HOME={home}/config XDG_STATE_HOME={home}/state TERM=xterm-256color {binary} --server {url} --key {key}",
        home = home.path().display(),
        binary = binary.display(),
        url = target.url(),
        key = actors.reviewer_key,
    );
    let ready = format!("{tasks} waiting");
    let started = Instant::now();
    let status = Command::new("tmux")
        .arg("-S")
        .arg(&socket)
        .args([
            "new-session",
            "-d",
            "-s",
            session,
            "-x",
            "120",
            "-y",
            "40",
            &command,
        ])
        .status()
        .map_err(|err| {
            anyhow::anyhow!(
                "`signoff bench inbox` runs the inbox under tmux, which could not start: {err}"
            )
        })?;
    anyhow::ensure!(status.success(), "tmux could not start the inbox");
    let stop = || {
        let _ = Command::new("tmux")
            .arg("-S")
            .arg(&socket)
            .arg("kill-server")
            .status();
    };
    let first_frame = loop {
        let screen = Command::new("tmux")
            .arg("-S")
            .arg(&socket)
            .args(["capture-pane", "-p", "-t", session])
            .output()?;
        if String::from_utf8_lossy(&screen.stdout).contains(&ready) {
            break started.elapsed();
        }
        if started.elapsed() > Duration::from_secs(60) {
            stop();
            anyhow::bail!("the inbox did not show {tasks} tasks within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    // Let the first history load and notifications settle before measuring memory.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss = pane_process(&socket, session).ok().and_then(rss_kib_of);
    stop();
    Ok(InboxReport {
        tasks,
        first_frame_with_data_ms: first_frame.as_secs_f64() * 1000.0,
        rss_mib: rss.map_or(0.0, |kib| kib as f64 / 1024.0),
    })
}
