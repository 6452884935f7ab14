//! `signoff keys create|list|revoke`: admin key management over the API.

use std::process::ExitCode;

use anyhow::Result;
use clap::{Args, Subcommand};

use super::Cli;
use super::output::{json, table};
use crate::domain::PrincipalKind;

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a key for an agent, a reviewer or an admin; prints the key once
    Create(CreateArgs),
    /// List keys (never the secrets)
    List {
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key by its id; it stops working at once
    Revoke {
        /// The key id shown by `keys list` (key_...)
        key_id: String,
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
}

/// Exactly one kind of principal per key.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct Who {
    /// An agent address, e.g. agent://acme/deployer
    #[arg(long, value_name = "ADDRESS")]
    pub agent: Option<String>,
    /// A reviewer identity, e.g. alice@example.com
    #[arg(long, value_name = "IDENTITY")]
    pub reviewer: Option<String>,
    /// An admin (optionally named)
    #[arg(long, value_name = "NAME", num_args = 0..=1, default_missing_value = "admin")]
    pub admin: Option<String>,
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    #[command(flatten)]
    pub who: Who,
    /// A team the principal belongs to (repeatable), e.g. --team oncall
    #[arg(long = "team", value_name = "TEAM")]
    pub teams: Vec<String>,
    /// A note to recognise the key by
    #[arg(long)]
    pub label: Option<String>,
    /// Print JSON
    #[arg(long)]
    pub json: bool,
}

pub async fn run(cli: &Cli, command: &KeysCommand) -> Result<ExitCode> {
    let client = cli.client()?;
    match command {
        KeysCommand::Create(args) => {
            let (kind, identity) = match (&args.who.agent, &args.who.reviewer, &args.who.admin) {
                (Some(agent), _, _) => (PrincipalKind::Agent, agent.clone()),
                (_, Some(reviewer), _) => (PrincipalKind::Reviewer, reviewer.clone()),
                (_, _, Some(admin)) => (PrincipalKind::Admin, admin.clone()),
                _ => unreachable!("clap requires exactly one of --agent, --reviewer, --admin"),
            };
            let created = client
                .create_key(kind, &identity, &args.teams, args.label.as_deref())
                .await?;
            if args.json {
                println!(
                    "{}",
                    json(&serde_json::json!({
                        "key": created.key,
                        "key_id": created.record.key_id,
                        "kind": created.record.kind,
                        "identity": created.record.identity,
                        "teams": created.record.teams,
                    }))
                );
            } else {
                println!("{}", created.key);
                eprintln!(
                    "created {} key {} for {}; the key above is shown only once",
                    created.record.kind.as_str(),
                    created.record.key_id,
                    created.record.identity
                );
            }
        }
        KeysCommand::List { json: as_json } => {
            let keys = client.keys().await?;
            if *as_json {
                let rows: Vec<serde_json::Value> = keys
                    .iter()
                    .map(|key| {
                        serde_json::json!({
                            "key_id": key.key_id, "key_prefix": key.key_prefix, "kind": key.kind,
                            "identity": key.identity, "teams": key.teams, "label": key.label,
                            "created_at": key.created_at, "revoked_at": key.revoked_at,
                        })
                    })
                    .collect();
                println!("{}", json(&rows));
            } else {
                let rows: Vec<Vec<String>> = keys
                    .iter()
                    .map(|key| {
                        vec![
                            key.key_id.clone(),
                            format!("{}…", key.key_prefix),
                            key.kind.as_str().to_string(),
                            key.identity.clone(),
                            key.teams.join(","),
                            match key.revoked_at {
                                Some(at) => format!("revoked {at}"),
                                None => "active".to_string(),
                            },
                            key.label.clone().unwrap_or_default(),
                        ]
                    })
                    .collect();
                print!(
                    "{}",
                    table(
                        &[
                            "KEY ID", "PREFIX", "KIND", "IDENTITY", "TEAMS", "STATE", "LABEL"
                        ],
                        &rows
                    )
                );
            }
        }
        KeysCommand::Revoke {
            key_id,
            json: as_json,
        } => {
            client.revoke_key(key_id).await?;
            if *as_json {
                println!(
                    "{}",
                    json(&serde_json::json!({ "key_id": key_id, "revoked": true }))
                );
            } else {
                println!("revoked {key_id}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
