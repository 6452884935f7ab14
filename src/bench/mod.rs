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

/// How long a spawned server may take to become ready.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);

/// The schema a PostgreSQL benchmark recreates before each run, so that every run
/// starts on an empty database without touching anything else in it.
const POSTGRES_SCHEMA: &str = "signoff_bench";

/// Whether `url` names a PostgreSQL database, in either scheme libpq accepts.
pub fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// `url` with the server-side `search_path` set to `schema`, through the
/// connection's `options` parameter: the servers then create and use their tables
/// in `schema` without knowing about it.
pub fn with_search_path(url: &str, schema: &str) -> String {
    with_parameter(url, &format!("options=-csearch_path%3D{schema}"))
}

/// `url` with one more `key=value` in its query.
pub fn with_parameter(url: &str, parameter: &str) -> String {
    let separator = match url.find('?') {
        None => "?",
        Some(_) if url.ends_with(['?', '&']) => "",
        Some(_) => "&",
    };
    format!("{url}{separator}{parameter}")
}

/// Drops `schema` with everything in it and creates it again, empty.
async fn recreate_postgres_schema(url: &str, schema: &str) -> anyhow::Result<()> {
    crate::store::postgres::execute_batch(
        url,
        &format!("DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}"),
    )
    .await
    .map_err(|err| {
        anyhow::anyhow!("cannot recreate the schema {schema} in the --db database: {err}")
    })
}

/// A `signoff serve` child process with its XDG directories in a temporary
/// directory (and there, unless given a database, a fresh SQLite database).
pub struct SpawnedServer {
    child: Child,
    home: PathBuf,
    url: String,
    admin_key: String,
}

impl SpawnedServer {
    /// Starts a server on a fresh SQLite database in `home`.
    pub fn start(binary: &Path, home: &Path, durability: &str) -> anyhow::Result<SpawnedServer> {
        let mut server = SpawnedServer::launch(binary, home, durability, None)?;
        server.wait_for_admin_key()?;
        // client.toml is written just before the server begins to serve.
        std::thread::sleep(Duration::from_millis(100));
        Ok(server)
    }

    /// Spawns `signoff serve` without waiting for it; the admin key is unknown yet.
    fn launch(
        binary: &Path,
        home: &Path,
        durability: &str,
        database: Option<&str>,
    ) -> anyhow::Result<SpawnedServer> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let mut command = Command::new(binary);
        command.args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--durability",
            durability,
        ]);
        if let Some(database) = database {
            command.args(["--db", database]);
        }
        let child = command
            .env("XDG_CONFIG_HOME", home.join("config"))
            .env("XDG_DATA_HOME", home.join("data"))
            .env("SIGNOFF_LOG", "signoff=warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()?;
        // From here on, Drop stops the child if it never becomes ready.
        Ok(SpawnedServer {
            child,
            home: home.to_path_buf(),
            url: format!("http://127.0.0.1:{port}"),
            admin_key: String::new(),
        })
    }

    /// Fails if the server has exited: waiting longer would only hide its error.
    fn ensure_running(&mut self) -> anyhow::Result<()> {
        match self.child.try_wait()? {
            Some(status) => anyhow::bail!(
                "the benchmark server exited ({status}) before it was ready; its error is above"
            ),
            None => Ok(()),
        }
    }

    /// Reads the admin key from client.toml in the server's home: a server starting
    /// on a database without an admin key creates one and writes it only there.
    fn wait_for_admin_key(&mut self) -> anyhow::Result<()> {
        let client_toml = self.home.join("config/signoff/client.toml");
        let started = Instant::now();
        while !client_toml.exists() {
            self.ensure_running()?;
            if started.elapsed() > STARTUP_TIMEOUT {
                anyhow::bail!(
                    "the benchmark server wrote no admin key within {} s",
                    STARTUP_TIMEOUT.as_secs()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let config: crate::config::ClientConfig =
            toml::from_str(&std::fs::read_to_string(&client_toml)?)?;
        self.admin_key = config.key;
        Ok(())
    }

    /// Waits until the server answers `/health`.
    async fn wait_healthy(&mut self) -> anyhow::Result<()> {
        let client = Client::new(&self.url, &self.admin_key)?;
        let started = Instant::now();
        while client.health().await.is_err() {
            self.ensure_running()?;
            if started.elapsed() > STARTUP_TIMEOUT {
                anyhow::bail!(
                    "the benchmark server at {} was not healthy within {} s",
                    self.url,
                    STARTUP_TIMEOUT.as_secs()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    /// Resident memory of the server process, from /proc (Linux only).
    pub fn rss_kib(&self) -> Option<u64> {
        rss_kib_of(self.child.id())
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

/// Starts the servers for one run, their homes under `home`. Without `postgres`
/// (a PostgreSQL URL) there is one, on a fresh SQLite database. With it, the
/// benchmark schema is recreated first, so the run starts empty, and all
/// `instances` share that schema.
pub async fn start_servers(
    binary: &Path,
    home: &Path,
    durability: &str,
    postgres: Option<&str>,
    instances: usize,
) -> anyhow::Result<Vec<SpawnedServer>> {
    anyhow::ensure!(
        instances == 1 || postgres.is_some(),
        "several instances can only share a PostgreSQL database"
    );
    let database = match postgres {
        Some(url) => {
            recreate_postgres_schema(url, POSTGRES_SCHEMA).await?;
            Some(with_search_path(url, POSTGRES_SCHEMA))
        }
        None => None,
    };
    // Each instance has its own home: the first, finding no admin key, creates one
    // and writes it to its client.toml; a later one finding a client.toml whose key
    // works would rewrite it with its own URL.
    let instance_home = |number: usize| home.join(format!("instance-{number}"));
    // The first instance runs the migrations and creates the admin key alone, so
    // the others never race it to do either.
    let mut first =
        SpawnedServer::launch(binary, &instance_home(1), durability, database.as_deref())?;
    first.wait_for_admin_key()?;
    first.wait_healthy().await?;
    let mut servers = vec![first];
    for number in 2..=instances {
        let mut server = SpawnedServer::launch(
            binary,
            &instance_home(number),
            durability,
            database.as_deref(),
        )?;
        // The database already holds the first instance's admin key, and every
        // instance authenticates against the database.
        server.admin_key = servers[0].admin_key.clone();
        server.wait_healthy().await?;
        servers.push(server);
    }
    Ok(servers)
}

#[derive(Debug, Clone, Serialize)]
pub struct RoundTripReport {
    pub agents: usize,
    /// The storage backend, as the first server reports it on `/health`.
    pub backend: String,
    /// Servers sharing the database; each round trip crosses two of them when
    /// there are several.
    pub instances: usize,
    pub duration_seconds: f64,
    pub round_trips: usize,
    pub errors: usize,
    pub round_trips_per_second: f64,
    pub decide_to_agent_p50_ms: f64,
    pub decide_to_agent_p99_ms: f64,
    pub round_trip_p50_ms: f64,
    pub waiting_tasks: usize,
    /// Server memory, summed over the instances.
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

/// The benchmark's agent and reviewer keys. They are stored in the database, so
/// they work on every server sharing it.
struct BenchKeys {
    agent: String,
    reviewer: String,
}

impl BenchKeys {
    async fn create(target: &Target) -> anyhow::Result<BenchKeys> {
        let admin = Client::new(target.url(), target.admin_key())?;
        let suffix = uuid::Uuid::new_v4().simple().to_string();
        let agent = admin
            .create_key(
                PrincipalKind::Agent,
                &format!("agent://bench/agent-{}", &suffix[..8]),
                &[],
                Some("bench"),
            )
            .await?;
        let reviewer = admin
            .create_key(
                PrincipalKind::Reviewer,
                "bench-reviewer@example.com",
                &[],
                Some("bench"),
            )
            .await?;
        Ok(BenchKeys {
            agent: agent.key,
            reviewer: reviewer.key,
        })
    }

    fn actors(&self, url: &str) -> anyhow::Result<BenchActors> {
        Ok(BenchActors {
            agent: Client::new(url, &self.agent)?,
            reviewer: Client::new(url, &self.reviewer)?,
            reviewer_key: self.reviewer.clone(),
        })
    }
}

async fn bench_actors(target: &Target) -> anyhow::Result<BenchActors> {
    BenchKeys::create(target).await?.actors(target.url())
}

/// Runs the round trips against `targets`, servers sharing one database (usually
/// one). The first is used for setup. With several, agent `i` creates its tasks
/// on server `i % n` and its reviewer decides through server `(i + 1) % n`, so the
/// decision reaches the agent's stream only through the database.
pub async fn run_round_trips(
    targets: &[Target],
    options: &RoundTripOptions,
) -> anyhow::Result<RoundTripReport> {
    let first = targets
        .first()
        .ok_or_else(|| anyhow::anyhow!("no server to benchmark"))?;
    let backend = Client::new(first.url(), first.admin_key())?
        .health()
        .await?
        .storage;
    let keys = BenchKeys::create(first).await?;
    let actors = targets
        .iter()
        .map(|target| keys.actors(target.url()))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for worker in 0..options.agents {
        let agent = actors[worker % actors.len()].agent.clone();
        let reviewer = actors[(worker + 1) % actors.len()].reviewer.clone();
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
    // Unknown as soon as one server's memory is.
    let total_rss_kib = || targets.iter().map(Target::rss_kib).sum::<Option<u64>>();
    let idle_rss = total_rss_kib();

    let mut waiting_rss = None;
    if options.waiting_tasks > 0 {
        let agents: Vec<Client> = actors.into_iter().map(|actors| actors.agent).collect();
        fill_waiting(&agents, options.waiting_tasks).await?;
        tokio::time::sleep(Duration::from_millis(500)).await;
        waiting_rss = total_rss_kib();
    }
    let mib = |kib: u64| kib as f64 / 1024.0;
    Ok(RoundTripReport {
        agents: options.agents,
        backend,
        instances: targets.len(),
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

/// Leaves `count` tasks waiting for a human, created through `agents` (one per
/// server) in equal shares, so that each server holds its part.
async fn fill_waiting(agents: &[Client], count: usize) -> anyhow::Result<()> {
    let share = |index: usize| count * index / agents.len();
    futures::future::try_join_all(
        agents
            .iter()
            .enumerate()
            .map(|(index, agent)| create_many(agent, share(index)..share(index + 1), task_body)),
    )
    .await?;
    Ok(())
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

/// The name Linux gives a process started from `binary` (`/proc/<pid>/comm`):
/// the file name, cut to 15 bytes.
fn process_name(binary: &Path) -> String {
    let name = binary
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    String::from_utf8_lossy(&name.as_bytes()[..name.len().min(15)]).into_owned()
}

/// The process `binary` runs as in a tmux pane: the pane's own process, or its
/// child when tmux started it through a shell.
fn pane_process(socket: &Path, session: &str, binary: &Path) -> anyhow::Result<u32> {
    let output = Command::new("tmux")
        .arg("-S")
        .arg(socket)
        .args(["display-message", "-p", "-t", session, "#{pane_pid}"])
        .output()?;
    let pane: u32 = String::from_utf8_lossy(&output.stdout).trim().parse()?;
    let name = std::fs::read_to_string(format!("/proc/{pane}/comm")).unwrap_or_default();
    if name.trim() == process_name(binary) {
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

/// Resident memory of a process, from /proc (Linux only).
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
    fill_waiting(std::slice::from_ref(&actors.agent), tasks).await?;
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
    let rss_kib = pane_process(&socket, session, binary).and_then(|pid| {
        rss_kib_of(pid).ok_or_else(|| anyhow::anyhow!("cannot read the memory of process {pid}"))
    });
    stop();
    Ok(InboxReport {
        tasks,
        first_frame_with_data_ms: first_frame.as_secs_f64() * 1000.0,
        rss_mib: rss_kib? as f64 / 1024.0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_is_named_after_its_binary_cut_to_fifteen_bytes() {
        assert_eq!(process_name(Path::new("target/release/signoff")), "signoff");
        assert_eq!(
            process_name(Path::new("/tmp/signoff-before-the-change")),
            "signoff-before-"
        );
        assert_eq!(process_name(Path::new("/")), "");
    }

    #[test]
    fn the_search_path_starts_or_extends_the_query() {
        assert_eq!(
            with_search_path("postgres://bench@localhost/signoff", "signoff_bench"),
            "postgres://bench@localhost/signoff?options=-csearch_path%3Dsignoff_bench"
        );
        assert_eq!(
            with_search_path("postgres://localhost/signoff?sslmode=disable", "s"),
            "postgres://localhost/signoff?sslmode=disable&options=-csearch_path%3Ds"
        );
        assert_eq!(
            with_search_path("postgres://localhost/signoff?", "s"),
            "postgres://localhost/signoff?options=-csearch_path%3Ds"
        );
    }

    #[test]
    fn the_search_path_option_parses_as_a_postgres_setting() {
        let config: tokio_postgres::Config =
            with_search_path("postgres://bench@localhost/signoff?connect_timeout=5", "s")
                .parse()
                .unwrap();
        assert_eq!(config.get_options(), Some("-csearch_path=s"));
        assert_eq!(config.get_dbname(), Some("signoff"));
    }
}
