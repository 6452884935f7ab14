//! `signoff bench roundtrip`: the approval round-trip benchmark.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};

use super::Cli;
use super::output::{json, table};
use crate::bench::timers::{TimerOptions, TimerReport, run_timers};
use crate::bench::{
    RoundTripOptions, RoundTripReport, Target, is_postgres_url, run_round_trips, start_servers,
};

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Agent creates a task -> reviewer decides over HTTP -> agent's SSE stream sees it
    Roundtrip(RoundTripArgs),
    /// Start-up time and memory of the real inbox (under tmux) with many tasks
    Inbox(InboxArgs),
    /// The durable scheduler: lateness while many timers come due in one minute,
    /// firing throughput, and server memory as waiting tasks grow
    Timers(TimersArgs),
}

#[derive(Debug, Args)]
pub struct TimersArgs {
    /// Tasks waiting with timers far in the future
    #[arg(long, default_value_t = 100_000)]
    pub tasks: usize,
    /// Reminders that come due within the window
    #[arg(long, default_value_t = 10_000)]
    pub due: usize,
    /// The window the reminders come due in, in seconds
    #[arg(long, default_value_t = 60)]
    pub window: u64,
    /// Tasks sharing one deadline, to measure firing throughput
    #[arg(long, default_value_t = 20_000)]
    pub burst: usize,
    /// Runs, each on a fresh server; the summary is the median
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Durability of the spawned server: full (fsync every commit) or normal
    #[arg(long, default_value = "full")]
    pub durability: String,
    /// Print JSON
    #[arg(long)]
    pub json: bool,
}

/// The longest `bench timers --window`: the waiting tasks' own reminders come
/// after an hour, and must not fall into the window being measured.
const MAX_WINDOW_SECONDS: u64 = 1_800;

async fn run_timers_bench(args: &TimersArgs) -> Result<ExitCode> {
    if args.due == 0 || args.burst == 0 || args.runs == 0 || args.window == 0 {
        bail!("--due, --burst, --window and --runs must be at least 1");
    }
    if args.window > MAX_WINDOW_SECONDS {
        bail!(
            "--window {} is too long: at most {MAX_WINDOW_SECONDS} seconds",
            args.window
        );
    }
    crate::store::Durability::parse(&args.durability).map_err(anyhow::Error::msg)?;
    let options = TimerOptions {
        waiting: args.tasks,
        due: args.due,
        window: Duration::from_secs(args.window),
        burst: args.burst,
        durability: args.durability.clone(),
    };
    let binary = std::env::current_exe().context("cannot find the signoff binary")?;
    let mut reports = Vec::new();
    for run in 1..=args.runs {
        let report = run_timers(&binary, &options).await?;
        if !args.json {
            eprintln!(
                "run {run}/{}: lateness p50 {:.1} ms p99 {:.1} ms, {:.0} firings/s, RSS {:?}",
                args.runs,
                report.lateness_p50_ms,
                report.lateness_p99_ms,
                report.firings_per_second,
                report.rss_mib_by_waiting
            );
        }
        reports.push(report);
    }
    let pick =
        |field: fn(&TimerReport) -> f64| median(&mut reports.iter().map(field).collect::<Vec<_>>());
    // The memory series has the same steps in every run; take each step's median.
    let rss: Vec<(usize, f64)> = reports[0]
        .rss_mib_by_waiting
        .iter()
        .enumerate()
        .map(|(step, (tasks, _))| {
            let mut values: Vec<f64> = reports
                .iter()
                .map(|r| r.rss_mib_by_waiting[step].1)
                .collect();
            (*tasks, median(&mut values))
        })
        .collect();
    let (p50, p99, max, rate) = (
        pick(|r| r.lateness_p50_ms),
        pick(|r| r.lateness_p99_ms),
        pick(|r| r.lateness_max_ms),
        pick(|r| r.firings_per_second),
    );
    if args.json {
        println!(
            "{}",
            json(&serde_json::json!({
                "durability": args.durability,
                "runs": reports,
                "median": {
                    "lateness_p50_ms": p50, "lateness_p99_ms": p99, "lateness_max_ms": max,
                    "firings_per_second": rate, "rss_mib_by_waiting": rss,
                },
            }))
        );
    } else {
        println!(
            "scheduler with {} waiting tasks, {} reminders due within {} s, a burst of {} (durability {}, median of {} runs)",
            args.tasks, args.due, args.window, args.burst, args.durability, args.runs
        );
        print!(
            "{}",
            table(
                &["LATENESS P50 MS", "P99 MS", "MAX MS", "FIRINGS/S"],
                &[vec![
                    format!("{p50:.1}"),
                    format!("{p99:.1}"),
                    format!("{max:.1}"),
                    format!("{rate:.0}")
                ]]
            )
        );
        let rss_rows: Vec<Vec<String>> = rss
            .iter()
            .map(|(tasks, mib)| vec![tasks.to_string(), format!("{mib:.1}")])
            .collect();
        print!("{}", table(&["WAITING TASKS", "SERVER RSS MIB"], &rss_rows));
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Args)]
pub struct InboxArgs {
    /// Tasks waiting in the inbox
    #[arg(long, default_value_t = 10_000)]
    pub tasks: usize,
    /// Runs, each on a fresh server; the summary is the median
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Print JSON
    #[arg(long)]
    pub json: bool,
}

async fn run_inbox_bench(args: &InboxArgs) -> Result<ExitCode> {
    if args.tasks == 0 || args.runs == 0 {
        bail!("--tasks and --runs must be at least 1");
    }
    let binary = std::env::current_exe().context("cannot find the signoff binary")?;
    let mut reports = Vec::new();
    for run in 1..=args.runs {
        let report = crate::bench::run_inbox(&binary, args.tasks).await?;
        if !args.json {
            eprintln!(
                "run {run}/{}: first frame with data {:.0} ms, RSS {:.1} MiB",
                args.runs, report.first_frame_with_data_ms, report.rss_mib
            );
        }
        reports.push(report);
    }
    let first_frame = median(
        &mut reports
            .iter()
            .map(|r| r.first_frame_with_data_ms)
            .collect::<Vec<_>>(),
    );
    let rss = median(&mut reports.iter().map(|r| r.rss_mib).collect::<Vec<_>>());
    if args.json {
        println!(
            "{}",
            json(
                &serde_json::json!({ "runs": reports, "median": { "tasks": args.tasks, "first_frame_with_data_ms": first_frame, "rss_mib": rss } })
            )
        );
    } else {
        println!(
            "inbox with {} tasks (median of {} runs)",
            args.tasks, args.runs
        );
        print!(
            "{}",
            table(
                &["FIRST FRAME WITH DATA MS", "RSS MIB"],
                &[vec![format!("{first_frame:.0}"), format!("{rss:.1}")]]
            )
        );
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Args)]
pub struct RoundTripArgs {
    /// Concurrent agents
    #[arg(long, default_value_t = 64)]
    pub agents: usize,
    /// Measured seconds per run
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Unmeasured warm-up seconds per run
    #[arg(long, default_value_t = 2)]
    pub warmup: u64,
    /// Runs, each on a fresh server and database; the summary is the median
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Durability of the spawned server: full (fsync every commit) or normal
    #[arg(long, default_value = "full")]
    pub durability: String,
    /// Tasks left waiting after the load, to measure the server's memory
    #[arg(long, default_value_t = 10_000)]
    pub waiting: usize,
    /// PostgreSQL database for the spawned servers (postgres://...); each run drops
    /// and recreates the schema `signoff_bench` in it [default: a fresh SQLite
    /// database per run]
    #[arg(long, value_name = "URL")]
    pub db: Option<String>,
    /// Servers sharing the --db database; agents create tasks on one and
    /// reviewers decide on the next, so each round trip crosses servers
    #[arg(long, default_value_t = 1)]
    pub instances: usize,
    /// Benchmark an already running server (uses --server/--key, which must be an
    /// admin key) instead of spawning one; memory is then not measured
    #[arg(long, conflicts_with_all = ["db", "instances"])]
    pub existing: bool,
    /// Print JSON
    #[arg(long)]
    pub json: bool,
}

/// Checks `--db` and `--instances` together.
fn check_database(database: Option<&str>, instances: usize) -> Result<()> {
    match database {
        // Only a PostgreSQL schema can be emptied before each run; a SQLite file
        // given here would keep the previous run's data (and admin key).
        Some(url) if !is_postgres_url(url) => bail!(
            "--db takes a postgres:// URL (without --db, each run gets a fresh SQLite database)"
        ),
        None if instances > 1 => bail!(
            "--instances {instances} needs --db postgres://...: several servers can only share a PostgreSQL database"
        ),
        _ => Ok(()),
    }
}

/// The server named by --server, with the admin key from --key or client.toml.
fn existing_target(cli: &Cli) -> Result<Target> {
    let client = cli.client()?;
    let key = cli.key.clone().or_else(|| {
        crate::config::client_config_path()
            .ok()
            .and_then(|path| crate::config::ClientConfig::load(&path).ok().flatten())
            .map(|config| config.key)
    });
    Ok(Target::Existing {
        url: client.base_url().to_string(),
        admin_key: key.context("--existing needs an admin key (--key or client.toml)")?,
    })
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

fn summary_row(label: &str, report: &RoundTripReport) -> Vec<String> {
    let rss = |value: Option<f64>| {
        value
            .map(|mib| format!("{mib:.1}"))
            .unwrap_or_else(|| "-".into())
    };
    vec![
        label.to_string(),
        format!("{:.0}", report.round_trips_per_second),
        format!("{:.2}", report.decide_to_agent_p50_ms),
        format!("{:.2}", report.decide_to_agent_p99_ms),
        format!("{:.2}", report.round_trip_p50_ms),
        report.errors.to_string(),
        rss(report.server_rss_mib_idle_after_load),
        rss(report.server_rss_mib_with_waiting),
    ]
}

pub async fn run(cli: &Cli, command: &BenchCommand) -> Result<ExitCode> {
    let args = match command {
        BenchCommand::Roundtrip(args) => args,
        BenchCommand::Inbox(args) => return run_inbox_bench(args).await,
        BenchCommand::Timers(args) => return run_timers_bench(args).await,
    };
    if args.agents == 0 || args.runs == 0 || args.seconds == 0 || args.instances == 0 {
        bail!("--agents, --runs, --seconds and --instances must be at least 1");
    }
    check_database(args.db.as_deref(), args.instances)?;
    crate::store::Durability::parse(&args.durability).map_err(anyhow::Error::msg)?;
    let options = RoundTripOptions {
        agents: args.agents,
        duration: Duration::from_secs(args.seconds),
        warmup: Duration::from_secs(args.warmup),
        waiting_tasks: args.waiting,
    };
    let binary = std::env::current_exe().context("cannot find the signoff binary")?;
    let mut reports = Vec::new();
    for run in 1..=args.runs {
        // Declared first so that it outlives the servers living in it.
        let home = tempfile::tempdir()?;
        let targets = if args.existing {
            vec![existing_target(cli)?]
        } else {
            start_servers(
                &binary,
                home.path(),
                &args.durability,
                args.db.as_deref(),
                args.instances,
            )
            .await?
            .into_iter()
            .map(Target::Spawned)
            .collect()
        };
        let report = run_round_trips(&targets, &options).await?;
        if !args.json {
            eprintln!(
                "run {run}/{}: {:.0} round trips/s, decide->agent p50 {:.2} ms p99 {:.2} ms",
                args.runs,
                report.round_trips_per_second,
                report.decide_to_agent_p50_ms,
                report.decide_to_agent_p99_ms
            );
        }
        reports.push(report);
    }
    let pick = |field: fn(&RoundTripReport) -> f64| {
        median(&mut reports.iter().map(field).collect::<Vec<_>>())
    };
    let pick_rss = |field: fn(&RoundTripReport) -> Option<f64>| {
        let mut values: Vec<f64> = reports.iter().filter_map(field).collect();
        (!values.is_empty()).then(|| median(&mut values))
    };
    let medians = RoundTripReport {
        agents: args.agents,
        backend: reports[0].backend.clone(),
        instances: reports[0].instances,
        duration_seconds: pick(|r| r.duration_seconds),
        round_trips: pick(|r| r.round_trips as f64) as usize,
        errors: reports.iter().map(|r| r.errors).sum(),
        round_trips_per_second: pick(|r| r.round_trips_per_second),
        decide_to_agent_p50_ms: pick(|r| r.decide_to_agent_p50_ms),
        decide_to_agent_p99_ms: pick(|r| r.decide_to_agent_p99_ms),
        round_trip_p50_ms: pick(|r| r.round_trip_p50_ms),
        waiting_tasks: args.waiting,
        server_rss_mib_idle_after_load: pick_rss(|r| r.server_rss_mib_idle_after_load),
        server_rss_mib_with_waiting: pick_rss(|r| r.server_rss_mib_with_waiting),
    };
    if args.json {
        println!(
            "{}",
            json(
                &serde_json::json!({ "durability": args.durability, "runs": reports, "median": medians })
            )
        );
    } else {
        let mut rows: Vec<Vec<String>> = reports
            .iter()
            .enumerate()
            .map(|(index, report)| summary_row(&format!("run {}", index + 1), report))
            .collect();
        rows.push(summary_row("median", &medians));
        let servers = match medians.instances {
            1 => format!("1 {} server", medians.backend),
            count => format!("{count} {} servers (RSS summed)", medians.backend),
        };
        println!(
            "approval round trip, {} agents, {servers}, durability {}, {} s per run",
            args.agents, args.durability, args.seconds
        );
        print!(
            "{}",
            table(
                &[
                    "",
                    "RT/S",
                    "DECIDE->AGENT P50 MS",
                    "P99 MS",
                    "ROUND TRIP P50 MS",
                    "ERRORS",
                    "RSS MIB",
                    "RSS MIB (WAITING)"
                ],
                &rows
            )
        );
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn several_instances_need_a_postgres_database() {
        let refused = check_database(None, 3).unwrap_err().to_string();
        assert!(refused.contains("--instances 3"), "{refused}");
        assert!(refused.contains("--db postgres://"), "{refused}");
        assert!(check_database(None, 1).is_ok());
        assert!(check_database(Some("postgres://bench@localhost/signoff"), 3).is_ok());
        assert!(check_database(Some("postgresql://localhost/signoff"), 1).is_ok());
    }

    #[test]
    fn the_database_must_be_postgres() {
        for url in ["/tmp/bench.db", "sqlite:///tmp/bench.db"] {
            let refused = check_database(Some(url), 1).unwrap_err().to_string();
            assert!(
                refused.contains("--db takes a postgres:// URL"),
                "{refused}"
            );
        }
    }

    #[test]
    fn existing_servers_take_no_database_or_instances() {
        use clap::Parser;
        for extra in [["--db", "postgres://localhost/x"], ["--instances", "2"]] {
            let parsed = Cli::try_parse_from(
                ["signoff", "bench", "roundtrip", "--existing"]
                    .into_iter()
                    .chain(extra),
            );
            assert!(parsed.is_err(), "{extra:?} was accepted with --existing");
        }
    }
}
