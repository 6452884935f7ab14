//! `signoff demo`: the whole product in one command, on a throwaway database.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;

use super::Cli;
use super::inbox::no_color;
use super::serve::init_file_logging;
use crate::demo::Demo;
use crate::tui::settings::TuiSettings;

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Keep the demo's data in this SQLite file [default: a temporary file, deleted on exit]
    #[arg(long = "db", value_name = "PATH")]
    pub database: Option<PathBuf>,
}

pub async fn run(cli: &Cli, args: &DemoArgs) -> Result<ExitCode> {
    init_file_logging()?;
    let settings = TuiSettings::resolve(&cli.file_config()?.tui, no_color())?;
    let scratch = tempfile::tempdir()?;
    let database = args
        .database
        .clone()
        .unwrap_or_else(|| scratch.path().join("demo.db"));
    let (notices, incoming) = tokio::sync::mpsc::unbounded_channel();
    let demo = Demo::start(&database, notices).await?;
    let result = crate::tui::app::run(demo.reviewer.clone(), settings, Some(incoming)).await;
    demo.stop().await?;
    result?;
    Ok(ExitCode::SUCCESS)
}
