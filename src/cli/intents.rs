//! `signoff intents get|events|watch|cancel`: any intent, from the shell.

use std::process::ExitCode;

use anyhow::{Result, bail};
use clap::Subcommand;
use futures::StreamExt;
use serde_json::json;

use super::Cli;
use super::ask::exit_code_for;
use super::output::{json, paint, table};
use crate::client::{Client, WaitOptions};
use crate::domain::audit::describe;
use crate::domain::{Event, Intent};

#[derive(Debug, Subcommand)]
pub enum IntentsCommand {
    /// One intent: its status, task, lifecycle and result
    Get {
        id: String,
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
    /// Its history, one event per line
    Events {
        id: String,
        /// Only events after this seq
        #[arg(long, default_value_t = 0)]
        since: u64,
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
    /// Follow it live: print each event as it happens, and exit when it ends
    /// (reconnects across server restarts), with the exit code of `ask --wait`
    Watch {
        id: String,
        /// Start after this seq (0: replay everything first)
        #[arg(long, default_value_t = 0)]
        since: u64,
        /// Print one JSON object per line
        #[arg(long)]
        json: bool,
    },
    /// Cancel it (its sender or an admin)
    Cancel {
        id: String,
        /// Why, recorded in the audit
        #[arg(long)]
        reason: Option<String>,
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
}

/// One event as a line: seq, time, type, actor, and what it means.
fn event_line(event: &Event) -> Vec<String> {
    vec![
        event.seq.to_string(),
        event.at.to_string(),
        event.event_type.clone(),
        event.actor.clone(),
        describe(event),
    ]
}

const EVENT_HEADER: [&str; 5] = ["SEQ", "AT", "EVENT", "ACTOR", "WHAT"];

fn print_intent(intent: &Intent) {
    let mut rows = vec![
        ("id", intent.intent_id.clone()),
        ("type", intent.intent_type.clone()),
        ("status", intent.status.as_str().to_string()),
        ("from", intent.from_agent.clone()),
    ];
    if let Some(to) = &intent.to_agent {
        rows.push(("to", to.clone()));
    }
    rows.push(("created", intent.created_at.to_string()));
    rows.push(("updated", intent.updated_at.to_string()));
    if let Some(due) = intent.due_at {
        rows.push(("due", due.to_string()));
    }
    if let Some(task) = &intent.human_task {
        rows.push(("task", format!("{} ({})", task.title, task.task_type)));
        rows.push(("assignees", intent.assignees.join(", ")));
        rows.push((
            "lifecycle",
            format!(
                "escalation stage {}, {} reminders sent",
                intent.escalation_stage, intent.remind_count
            ),
        ));
    }
    for (label, value) in rows {
        println!("  {label:<10} {value}");
    }
    if let Some(result) = &intent.result {
        println!("\nresult:\n{}", json(result));
    }
}

/// Prints each event of the intent after `since` as it happens, across
/// reconnects and server restarts; returns the terminal event.
pub async fn follow(client: &Client, id: &str, since: u64, as_json: bool) -> Result<Event> {
    let events = client.watch(id, since, WaitOptions::default());
    futures::pin_mut!(events);
    while let Some(event) = events.next().await {
        let event = event?;
        if as_json {
            println!("{}", serde_json::to_string(&event)?);
        } else {
            let line = event_line(&event).join("  ");
            println!(
                "{}",
                if event.is_terminal() {
                    paint(&line, "1")
                } else {
                    line
                }
            );
        }
        if event.is_terminal() {
            return Ok(event);
        }
    }
    bail!("the event stream of {id} ended before the intent did")
}

pub async fn run(cli: &Cli, command: &IntentsCommand) -> Result<ExitCode> {
    let client = cli.client()?;
    match command {
        IntentsCommand::Get { id, json: as_json } => {
            let intent = client.intent(id).await?;
            if *as_json {
                println!("{}", json(&intent));
            } else {
                print_intent(&intent);
            }
        }
        IntentsCommand::Events {
            id,
            since,
            json: as_json,
        } => {
            let events = client.events(id, *since).await?;
            if *as_json {
                println!("{}", json(&events));
            } else {
                let rows: Vec<Vec<String>> = events.iter().map(event_line).collect();
                print!("{}", table(&EVENT_HEADER, &rows));
            }
        }
        IntentsCommand::Watch {
            id,
            since,
            json: as_json,
        } => {
            // Fails fast on an unknown id or a missing permission, before following,
            // and on a --since past the last event, which would wait forever. The
            // events from the one at --since on are all it needs to tell.
            let from_since = client.events(id, since.saturating_sub(1)).await?;
            let last = from_since.last();
            if *since > 0 && last.is_none_or(|event| event.seq < *since) {
                bail!("--since {since} is past the last event of {id}");
            }
            let ended = match last {
                // It ended with nothing after --since: no stream would send anything.
                Some(event) if event.is_terminal() && event.seq == *since => event.clone(),
                _ => follow(&client, id, *since, *as_json).await?,
            };
            return Ok(ExitCode::from(exit_code_for(&ended)));
        }
        IntentsCommand::Cancel {
            id,
            reason,
            json: as_json,
        } => {
            let body = json!({ "status": "CANCELED", "reason": reason });
            let resolved = client.resolve(id, &body, None, None).await?;
            if *as_json {
                println!("{}", json(&resolved.intent));
            } else {
                println!("{} {}", paint("canceled", "33"), resolved.intent.intent_id);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
