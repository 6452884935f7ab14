//! `signoff demo`: the whole product in one command, on a throwaway database.
//! Simulated agents ask for every kind of decision; within the first two minutes
//! the inbox shows a reminder, an escalation and a timeout happening live, and an
//! agent applies a two-step approval chain (manager, then finance) as a scenario.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Result, bail};
use clap::Args;

use super::Cli;
use super::inbox::no_color;
use super::serve::init_file_logging;
use crate::config::DatabaseLocation;
use crate::demo::Demo;
use crate::tui::settings::TuiSettings;

/// Shown after the options: what to watch for.
const WHAT_HAPPENS: &str = "\
What to watch for in the first two minutes (durations are compressed):
  0s-   agents ask you for decisions of all eight task types, a few seconds apart
  ~30s  agent://demo/procurement applies an approval chain: step 1 (manager) comes to
        you; approve it and step 2 (finance) goes to team:oncall; the agent reports
        how each step went when the chain ends
  ~45s  a reminder for the payments-api deployment, if you have not decided it
  ~50s  the analytics-prod budget, unanswered by bob@example.com, escalates to you
  ~95s  left undecided, that budget times out and the system rejects it (fallback)

Each agent reports on the activity line when its decision reaches it.";

#[derive(Debug, Args)]
#[command(after_help = WHAT_HAPPENS)]
pub struct DemoArgs {
    /// Keep the demo's data in this SQLite file [default: a temporary file, deleted on exit]
    #[arg(long = "db", value_name = "PATH")]
    pub database: Option<String>,
}

/// The SQLite file `--db` names, as `serve --db` reads it (a path, `sqlite://PATH`
/// or `sqlite:PATH`). Anything else is refused before a file is created: a URL
/// would otherwise become a relative path such as `postgres:/host/db`.
fn database_file(flag: &str) -> Result<PathBuf> {
    match DatabaseLocation::parse("--db", flag)? {
        DatabaseLocation::Sqlite(path) => Ok(path),
        DatabaseLocation::Postgres(url) => {
            bail!("--db takes a SQLite file: the demo does not run on PostgreSQL ({url})")
        }
    }
}

pub async fn run(cli: &Cli, args: &DemoArgs) -> Result<ExitCode> {
    let database = args.database.as_deref().map(database_file).transpose()?;
    init_file_logging()?;
    let settings = TuiSettings::resolve(&cli.file_config()?.tui, no_color())?;
    let scratch = tempfile::tempdir()?;
    let database = database.unwrap_or_else(|| scratch.path().join("demo.db"));
    let (notices, incoming) = tokio::sync::mpsc::unbounded_channel();
    let demo = Demo::start(&database, notices).await?;
    let result = crate::tui::app::run(demo.reviewer.clone(), settings, Some(incoming)).await;
    demo.stop().await?;
    result?;
    Ok(ExitCode::SUCCESS)
}
