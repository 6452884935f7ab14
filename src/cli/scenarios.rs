//! `signoff scenarios validate|apply FILE`: approval chains and other
//! workflows from a ScenarioBundle file.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Subcommand;

use super::Cli;
use super::ask::{EXIT_APPROVED, EXIT_NOT_APPROVED, exit_code_for};
use super::intents::follow;
use super::output::{json, paint, read_json_file};
use crate::domain::workflow::validation_report;

#[derive(Debug, Subcommand)]
pub enum ScenariosCommand {
    /// Check a bundle without running it: every error with its JSON path (exit 1 if any)
    Validate {
        /// The bundle, a JSON file ("-" reads standard input)
        file: PathBuf,
        /// Print the report as JSON
        #[arg(long)]
        json: bool,
    },
    /// Start a bundle's workflow; with --watch, follow it to the end and exit
    /// 0 if it completed, 1 if a step said no, 2 if it timed out or was canceled
    Apply {
        /// The bundle, a JSON file ("-" reads standard input)
        file: PathBuf,
        /// Follow the scenario's events until it ends
        #[arg(long)]
        watch: bool,
        /// Makes retries safe: the same key starts the scenario only once
        #[arg(long, value_name = "KEY")]
        idempotency_key: Option<String>,
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(cli: &Cli, command: &ScenariosCommand) -> Result<ExitCode> {
    match command {
        ScenariosCommand::Validate {
            file,
            json: as_json,
        } => {
            // Compiled here, exactly as the server compiles it: no server needed.
            let report = validation_report(&read_json_file(file, "the bundle")?);
            let valid = report["valid"] == true;
            if *as_json {
                println!("{}", json(&report));
            } else if valid {
                let steps = report["steps"].as_array().map_or(0, Vec::len);
                println!(
                    "{} {} ({steps} steps)",
                    paint("valid", "32"),
                    file.display()
                );
            } else {
                for error in report["errors"].as_array().into_iter().flatten() {
                    let path = error["path"].as_str().unwrap_or("$");
                    let message = error["message"].as_str().unwrap_or_default();
                    println!("{}: {message}", paint(path, "1"));
                }
            }
            let code = if valid {
                EXIT_APPROVED
            } else {
                EXIT_NOT_APPROVED
            };
            Ok(ExitCode::from(code))
        }
        ScenariosCommand::Apply {
            file,
            watch,
            idempotency_key,
            json: as_json,
        } => {
            let idempotency_key = super::idempotency_key(idempotency_key.as_deref())?;
            let bundle = read_json_file(file, "the bundle")?;
            let client = cli.client()?;
            let applied = client.apply_scenario(&bundle, idempotency_key).await?;
            let intent_id = applied["intent_id"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            if *as_json {
                println!("{}", serde_json::to_string(&applied)?);
            } else {
                println!("{intent_id}");
            }
            if !*watch {
                return Ok(ExitCode::SUCCESS);
            }
            let ended = follow(&client, &intent_id, 0, *as_json).await?;
            Ok(ExitCode::from(exit_code_for(&ended)))
        }
    }
}
