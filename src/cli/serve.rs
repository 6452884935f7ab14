//! `signoff serve`: the durable server.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use tokio::net::TcpListener;

use super::{Cli, EXIT_ERROR};
use crate::clock::SystemClock;
use crate::config::{ClientConfig, ServerOverrides, ServerSettings, client_config_path, local_url};
use crate::engine::{Engine, EngineSettings};
use crate::server::RunningServer;

/// Idempotency records are kept this long (the contract asks for at least 24 h).
const IDEMPOTENCY_RETENTION_SECONDS: i64 = 48 * 3600;
/// How long shutdown waits for open requests before giving up on them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on [default: 127.0.0.1:7700]
    #[arg(long, env = "SIGNOFF_LISTEN", value_name = "ADDR")]
    pub listen: Option<String>,

    /// SQLite file (or sqlite:// URL), or a postgres:// URL shared by several
    /// instances [default: $XDG_DATA_HOME/signoff/signoff.db]
    #[arg(
        long = "db",
        env = "SIGNOFF_DATABASE_URL",
        hide_env_values = true,
        value_name = "PATH|URL"
    )]
    pub database: Option<String>,

    /// full: fsync every commit (survives power loss); normal: survives a process crash
    #[arg(long, env = "SIGNOFF_DURABILITY", value_name = "full|normal")]
    pub durability: Option<String>,

    /// Seconds to go on serving after SIGTERM or Ctrl-C, with /health failing so
    /// load balancers send new clients elsewhere; another signal ends the drain
    /// [default: 0]
    #[arg(long, env = "SIGNOFF_DRAIN_SECONDS", value_name = "SECONDS")]
    pub drain: Option<i64>,

    /// PostgreSQL: pooled connections for reads and claims [default: 16]
    #[arg(long, env = "SIGNOFF_PG_POOL_SIZE", value_name = "N")]
    pub pg_pool_size: Option<i64>,

    /// PostgreSQL: seconds to wait for a connection, TLS and login included
    /// (times the number of hosts) [default: 10]
    #[arg(long, env = "SIGNOFF_PG_CONNECT_TIMEOUT", value_name = "SECONDS")]
    pub pg_connect_timeout: Option<i64>,

    /// PostgreSQL: seconds a claimed timer stays with this instance before another
    /// may fire it [default: 30]
    #[arg(long, env = "SIGNOFF_PG_TIMER_LEASE", value_name = "SECONDS")]
    pub pg_timer_lease: Option<i64>,
}

fn log_filter() -> tracing_subscriber::EnvFilter {
    tracing_subscriber::EnvFilter::try_from_env("SIGNOFF_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("signoff=info,tower_http=warn"))
}

/// Logs to stderr: for the server and the other commands that do not own the screen.
pub fn init_logging() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(log_filter())
        .with_writer(std::io::stderr)
        .try_init();
}

/// Logs to `$XDG_STATE_HOME/signoff/signoff.log`: while the inbox owns the
/// terminal nothing may be printed to it. Returns the log's path.
pub fn init_file_logging() -> Result<std::path::PathBuf> {
    let directory = crate::config::state_dir()?;
    std::fs::create_dir_all(&directory)
        .with_context(|| format!("cannot create {}", directory.display()))?;
    let path = directory.join("signoff.log");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .with_context(|| format!("cannot open the log file {}", path.display()))?;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(log_filter())
        .with_ansi(false)
        .with_writer(std::sync::Mutex::new(file))
        .try_init();
    Ok(path)
}

/// SIGTERM and Ctrl-C (SIGINT), each of which asks the server to stop. On
/// Unix both are listened for from before the server starts until the process
/// ends, so none is missed between one wait and the next (elsewhere only
/// Ctrl-C is, and anew for each wait).
struct StopSignals {
    #[cfg(unix)]
    listeners: Vec<tokio::signal::unix::Signal>,
}

impl StopSignals {
    fn listen() -> StopSignals {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let listeners = [
                ("SIGINT", SignalKind::interrupt()),
                ("SIGTERM", SignalKind::terminate()),
            ]
            .into_iter()
            .filter_map(|(name, kind)| match signal(kind) {
                Ok(listening) => Some(listening),
                Err(err) => {
                    tracing::warn!("cannot listen for {name}: {err}");
                    None
                }
            })
            .collect();
            StopSignals { listeners }
        }
        #[cfg(not(unix))]
        StopSignals {}
    }

    /// Waits for the next signal.
    async fn next(&mut self) {
        #[cfg(unix)]
        {
            let arrivals = self
                .listeners
                .iter_mut()
                .map(|listener| Box::pin(listener.recv()))
                .collect::<Vec<_>>();
            if arrivals.is_empty() {
                return std::future::pending().await;
            }
            futures::future::select_all(arrivals).await;
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Ends the process now, with [`EXIT_ERROR`]. Returning instead would wait
/// for the runtime's blocking threads, one of which may be waiting for the
/// writer to finish its queue: the very thing given up on. Nothing a client
/// was told is done can be lost, since a write is answered only once it is
/// committed; a request cut off here may or may not have been.
fn exit_now(why: &str) -> ! {
    tracing::warn!("{why}");
    std::process::exit(EXIT_ERROR.into())
}

/// Keeps this machine's `client.toml` pointing at this server: on first start it
/// receives a new admin key; later, if its key belongs to this database, only the
/// URL is refreshed (the port may have changed). A key for another database is
/// left alone.
pub async fn update_client_config(engine: &Engine, url: &str) -> Result<()> {
    let path = client_config_path()?;
    if let Some(secret) = engine.bootstrap_admin_key().await? {
        ClientConfig {
            server: url.to_string(),
            key: secret,
        }
        .save(&path)?;
        tracing::info!(
            "created the first admin key and wrote it to {} (mode 0600)",
            path.display()
        );
        return Ok(());
    }
    let Ok(Some(mut saved)) = ClientConfig::load(&path) else {
        return Ok(());
    };
    if saved.server != url && engine.authenticate(&saved.key).await.is_ok() {
        saved.server = url.to_string();
        saved.save(&path)?;
        tracing::info!("updated the server URL in {}", path.display());
    }
    Ok(())
}

/// Opens the configured database and serves it on `listener`, keeping this
/// machine's client.toml pointing at it. Used by `serve`, by the inbox when it
/// embeds a server, and by the demo.
pub async fn start_server(
    settings: &ServerSettings,
    listener: TcpListener,
) -> Result<(RunningServer, String)> {
    let engine = Engine::open(
        &settings.database,
        settings.durability,
        &settings.postgres,
        Arc::new(SystemClock),
        EngineSettings {
            default_assignees: settings.default_assignees.clone(),
            sla: settings.sla.clone(),
            notify: settings.notify.clone(),
        },
    )
    .await?;
    let url = local_url(listener.local_addr()?);
    update_client_config(&engine, &url).await?;
    let server = RunningServer::spawn(listener, engine)?;
    Ok((server, url))
}

pub async fn run(cli: &Cli, args: &ServeArgs) -> Result<ExitCode> {
    init_logging();
    let file = cli.file_config()?;
    let overrides = ServerOverrides {
        listen: args.listen.clone(),
        database: args.database.clone(),
        durability: args.durability.clone(),
        drain_seconds: args.drain,
        pg_pool_size: args.pg_pool_size,
        pg_connect_timeout_seconds: args.pg_connect_timeout,
        pg_timer_lease_seconds: args.pg_timer_lease,
    };
    let settings = ServerSettings::resolve(&file, &overrides)?;
    let listener = TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("cannot listen on {}", settings.listen))?;
    // Listening from before the server can answer, so that a signal sent as
    // soon as it is up is never the kind that kills the process outright; a
    // signal while the database is still being reached gives up starting.
    let mut stop_signals = StopSignals::listen();
    let (server, url) = tokio::select! {
        started = start_server(&settings, listener) => started?,
        _ = stop_signals.next() => {
            tracing::info!("stopped before the server started");
            return Ok(ExitCode::SUCCESS);
        }
    };
    tracing::info!(
        "signoff {} listening on {url}; database {}, durability {}",
        env!("CARGO_PKG_VERSION"),
        settings.database,
        settings.durability.as_str()
    );
    let engine = server.engine.clone();
    let pruning = tokio::spawn(async move {
        let mut hourly = tokio::time::interval(Duration::from_secs(3600));
        loop {
            hourly.tick().await;
            match engine
                .prune_idempotency(IDEMPOTENCY_RETENTION_SECONDS)
                .await
            {
                Ok(0) => {}
                Ok(pruned) => tracing::info!("forgot {pruned} expired idempotency keys"),
                Err(err) => tracing::warn!("could not prune idempotency keys: {err}"),
            }
        }
    });

    stop_signals.next().await;
    pruning.abort();
    stop(server, settings.drain, &mut stop_signals).await?;
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}

/// Stops `server` after the first stop signal: drains for `drain` (or until
/// another signal), then stops it, giving open requests and queued writes
/// [`SHUTDOWN_GRACE`]; another signal meanwhile, or that time gone, exits at
/// once.
async fn stop(
    server: RunningServer,
    drain: Duration,
    stop_signals: &mut StopSignals,
) -> Result<()> {
    // From the signal on, /health fails and responses close their connections,
    // during the stop itself too, with or without a drain.
    server.begin_draining();
    if !drain.is_zero() {
        tracing::info!(
            "draining for {drain:?}: still serving, /health answers 503; another signal ends the drain"
        );
        tokio::select! {
            _ = tokio::time::sleep(drain) => {}
            _ = stop_signals.next() => tracing::info!("another signal: the drain ends now"),
        }
    }
    tracing::info!("shutting down: closing streams and finishing queued writes");
    tokio::select! {
        stopped = tokio::time::timeout(SHUTDOWN_GRACE, server.stop()) => match stopped {
            Ok(result) => result.context("server error"),
            Err(_) => exit_now(&format!(
                "open requests or queued writes did not finish within {SHUTDOWN_GRACE:?}; exiting"
            )),
        },
        _ = stop_signals.next() => {
            exit_now("another signal: exiting without waiting for open requests or queued writes")
        }
    }
}
