//! Command-line parsing and dispatch. Each subcommand group lives in its own file
//! and talks to the engine (serve) or to a server over HTTP (everything else).

pub mod ask;
pub mod audit;
pub mod bench;
pub mod demo;
pub mod docs;
pub mod inbox;
pub mod intents;
pub mod keys;
pub mod output;
pub mod scenarios;
pub mod serve;
pub mod tasks;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow, bail};
use clap::{Parser, Subcommand};

use crate::client::Client;
use crate::config::{ClientConfig, FileConfig, client_config_path, default_config_path};

/// Exit code for runtime errors (bad input, unreachable server, refused request).
pub const EXIT_ERROR: u8 = 3;
/// Exit code for command-line usage errors (unknown flag, missing argument).
pub const EXIT_USAGE: u8 = 64;

#[derive(Debug, Parser)]
#[command(
    name = "signoff",
    version,
    about = "Durable, asynchronous human approval for AI agents",
    long_about = "signoff keeps agents' requests for human decisions in a database, lets reviewers \
                  decide them, and resumes the agents with the answer.\n\n\
                  `signoff` alone opens the reviewer inbox (starting a local server if none is \
                  running); `signoff demo` shows it all with simulated agents; `signoff serve` runs \
                  the server on its own."
)]
pub struct Cli {
    /// Server config file [default: $XDG_CONFIG_HOME/signoff/config.toml]
    #[arg(long, global = true, env = "SIGNOFF_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,

    /// Server URL for client commands [default: from client.toml]
    #[arg(long, global = true, env = "SIGNOFF_SERVER", value_name = "URL")]
    pub server: Option<String>,

    /// API key for client commands [default: from client.toml]
    #[arg(
        long,
        global = true,
        env = "SIGNOFF_KEY",
        hide_env_values = true,
        value_name = "KEY"
    )]
    pub key: Option<String>,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Open the terminal reviewer inbox (the default when no command is given)
    Inbox,
    /// Run the durable server
    Serve(serve::ServeArgs),
    /// Try everything: a throwaway server, simulated agents, and the inbox
    Demo(demo::DemoArgs),
    /// Ask a person (a human task); with --wait, exit 0 only on their yes
    Ask(Box<ask::AskArgs>),
    /// Any intent: get, events, watch live, cancel
    Intents {
        #[command(subcommand)]
        command: intents::IntentsCommand,
    },
    /// List, inspect and decide your tasks (approve, reject, submit...)
    Tasks {
        #[command(subcommand)]
        command: tasks::TasksCommand,
    },
    /// Approval chains and other workflows: validate or apply a ScenarioBundle
    Scenarios {
        #[command(subcommand)]
        command: scenarios::ScenariosCommand,
    },
    /// Create, list and revoke API keys (admin)
    Keys {
        #[command(subcommand)]
        command: keys::KeysCommand,
    },
    /// Verify or export the tamper-evident audit log (reads the database file)
    Audit {
        #[command(subcommand)]
        command: audit::AuditCommand,
    },
    /// Print a shell completion script: `signoff completions bash > /etc/bash_completion.d/signoff`
    Completions {
        #[arg(value_enum)]
        shell: docs::Shell,
    },
    /// Print the man page (roff), or write one page per command into a directory
    Man {
        /// Write signoff.1, signoff-tasks.1, ... here instead
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
    /// Measure performance against a real server
    Bench {
        #[command(subcommand)]
        command: bench::BenchCommand,
    },
}

impl Command {
    /// Commands whose output is meant for pipes (`| head`, `| jq`): when the
    /// reader goes away they should end quietly, as Unix tools do, rather than
    /// fail on the write. Long-running commands (serve, inbox, demo, bench)
    /// keep Rust's default of ignoring SIGPIPE, so a dropped client socket is an
    /// error to handle, not the end of the server.
    fn prints_for_pipes(&self) -> bool {
        matches!(
            self,
            Command::Tasks { .. }
                | Command::Intents { .. }
                | Command::Scenarios { .. }
                | Command::Ask(_)
                | Command::Keys { .. }
                | Command::Audit { .. }
                | Command::Completions { .. }
                | Command::Man { .. }
        )
    }
}

#[cfg(unix)]
fn restore_default_sigpipe() {
    // SAFETY: setting a signal's disposition to the default is async-signal-safe
    // and happens before any thread of ours writes to a pipe.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

#[cfg(not(unix))]
fn restore_default_sigpipe() {}

impl Cli {
    /// The server config file: `--config` (which must exist) or the XDG default.
    pub fn file_config(&self) -> Result<FileConfig> {
        let (path, must_exist) = match &self.config {
            Some(path) => (path.clone(), true),
            None => (default_config_path()?, false),
        };
        Ok(FileConfig::load(&path, must_exist)?)
    }

    /// The server URL and key to use: flags and environment first, then
    /// `client.toml` as written by `signoff serve`.
    pub fn server_and_key(&self) -> Result<(Option<String>, Option<String>)> {
        let saved = ClientConfig::load(&client_config_path()?)?;
        let server = self
            .server
            .clone()
            .or_else(|| saved.as_ref().map(|config| config.server.clone()));
        let key = self
            .key
            .clone()
            .or_else(|| saved.as_ref().map(|config| config.key.clone()));
        Ok((server, key))
    }

    /// A client for the configured server.
    pub fn client(&self) -> Result<Client> {
        let path = client_config_path()?;
        let (Some(server), Some(key)) = self.server_and_key()? else {
            bail!(
                "no server configured: run `signoff serve` once on this machine (it writes {}), \
                 or pass --server and --key (SIGNOFF_SERVER, SIGNOFF_KEY)",
                path.display()
            );
        };
        Client::new(&server, &key)
            .map(|client| client.with_via("cli"))
            .with_context(|| format!("invalid server URL `{server}`"))
    }
}

/// Checks an `--idempotency-key` before anything is sent, by the server's rule
/// for the `Idempotency-Key` header, so a bad key is named as the flag.
pub fn idempotency_key(key: Option<&str>) -> Result<Option<&str>> {
    if let Some(text) = key {
        crate::domain::request::check_idempotency_key(text)
            .map_err(|refused| anyhow!("--idempotency-key {text:?}: {}", refused.message))?;
    }
    Ok(key)
}

/// Parses the command line and runs it, mapping every failure to one line on
/// stderr and a documented exit code.
pub async fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            let code = if err.use_stderr() { EXIT_USAGE } else { 0 };
            let _ = err.print();
            return ExitCode::from(code);
        }
    };
    if cli.command.as_ref().is_some_and(Command::prints_for_pipes) {
        restore_default_sigpipe();
    }
    let result = match &cli.command {
        None | Some(Command::Inbox) => inbox::run(&cli).await,
        Some(Command::Serve(args)) => serve::run(&cli, args).await,
        Some(Command::Demo(args)) => demo::run(&cli, args).await,
        Some(Command::Keys { command }) => keys::run(&cli, command).await,
        Some(Command::Tasks { command }) => tasks::run(&cli, command).await,
        Some(Command::Intents { command }) => intents::run(&cli, command).await,
        Some(Command::Scenarios { command }) => scenarios::run(&cli, command).await,
        Some(Command::Ask(args)) => ask::run(&cli, args).await,
        Some(Command::Audit { command }) => audit::run(&cli, command).await,
        Some(Command::Completions { shell }) => docs::completions(*shell),
        Some(Command::Man { out }) => docs::man(out.as_ref()),
        Some(Command::Bench { command }) => bench::run(&cli, command).await,
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {}", output::one_line(&err));
            ExitCode::from(EXIT_ERROR)
        }
    }
}
