//! `signoff audit verify|export`: the tamper-evident event log, read straight
//! from the database file (read-only, safe while the server runs).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand, ValueEnum};
use serde_json::json;

use super::Cli;
use crate::config::DatabaseLocation;
use crate::domain::Timestamp;
use crate::domain::audit::{
    AuditRecord, BrokenLink, GENESIS, VerifiedLog, Verifier, actor_kind, canonical, describe,
};
use crate::domain::time::parse_duration;
use crate::store::audit::{AuditError, AuditFilter, AuditSource};
use crate::store::postgres::audit::PgAuditReader;
use crate::store::sqlite::AuditReader;

/// Exit code when the chain is broken.
pub const EXIT_BROKEN: u8 = 1;

#[derive(Debug, Args)]
pub struct DatabaseArg {
    /// SQLite file (or sqlite:// URL), or a postgres:// URL [default: as for `serve`]
    #[arg(
        long = "db",
        env = "SIGNOFF_DATABASE_URL",
        hide_env_values = true,
        value_name = "PATH|URL"
    )]
    pub database: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check every event's hash link; report the first broken one and exit 1
    Verify {
        #[command(flatten)]
        database: DatabaseArg,
        /// A head hash recorded earlier (from a previous verify); fails if it is no
        /// longer in the log, which catches the newest events being removed
        #[arg(long, value_name = "HASH")]
        expect_head: Option<String>,
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
    /// Write events as JSON lines or CSV, with who acted and what it means
    Export(ExportArgs),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    Jsonl,
    Csv,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    #[command(flatten)]
    pub database: DatabaseArg,
    /// Only this intent's events
    #[arg(long = "intent", value_name = "ID")]
    pub intent_id: Option<String>,
    /// Only events at or after this time: RFC 3339, or a duration back from now (24h, 7d)
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    #[arg(long, value_enum, default_value = "jsonl")]
    pub format: Format,
    /// Write to this file instead of standard output
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

async fn open(cli: &Cli, database: &DatabaseArg) -> Result<AuditSource> {
    let file = cli.file_config()?;
    Ok(
        match DatabaseLocation::resolve(&file, database.database.as_deref())? {
            DatabaseLocation::Sqlite(path) => AuditSource::Sqlite(AuditReader::open(&path)?),
            DatabaseLocation::Postgres(url) => {
                AuditSource::Postgres(PgAuditReader::open(url.secret(), &url.to_string()).await?)
            }
        },
    )
}

/// `--since`: a timestamp, or how far back from now.
fn parse_since(text: &str, now: Timestamp) -> Result<Timestamp> {
    if let Some(seconds) = parse_duration(text) {
        return Ok(now.plus_seconds(-seconds));
    }
    Timestamp::parse(text).map_err(|why| {
        anyhow::anyhow!("--since: {why}; give an RFC 3339 time or a duration such as 24h or 7d")
    })
}

pub async fn run(cli: &Cli, command: &AuditCommand) -> Result<ExitCode> {
    match command {
        AuditCommand::Verify {
            database,
            expect_head,
            json,
        } => run_verify(cli, database, expect_head.as_deref(), *json).await,
        AuditCommand::Export(args) => run_export(cli, args).await,
    }
}

/// Prints the verdict; the chain is intact when `broken` is `None`.
fn report(verified: &VerifiedLog, broken: Option<&BrokenLink>, as_json: bool) {
    let head = verified.head.clone().unwrap_or((0, GENESIS.to_string()));
    match (broken, as_json) {
        (None, true) => println!(
            "{}",
            super::output::json(
                &json!({"ok": true, "events": verified.events, "head": {"cursor": head.0, "hash": head.1}})
            )
        ),
        (None, false) => {
            println!("ok: {} events, every link verified", verified.events);
            println!("head: cursor {}, hash {}", head.0, head.1);
            println!(
                "(keep the head hash elsewhere and pass it to --expect-head later: that also detects removal of the newest events)"
            );
        }
        (Some(broken), true) => println!(
            "{}",
            super::output::json(&json!({
                "ok": false,
                "events_verified": verified.events,
                "broken": {"cursor": broken.cursor, "intent_id": broken.intent_id, "seq": broken.seq, "reason": broken.reason}
            }))
        ),
        (Some(broken), false) if broken.cursor == 0 => {
            eprintln!("audit chain broken: {}", broken.reason)
        }
        (Some(broken), false) => eprintln!(
            "audit chain broken at cursor {} (intent {}, seq {}): {}",
            broken.cursor, broken.intent_id, broken.seq, broken.reason
        ),
    }
}

async fn run_verify(
    cli: &Cli,
    database: &DatabaseArg,
    expect_head: Option<&str>,
    as_json: bool,
) -> Result<ExitCode> {
    let mut reader = open(cli, database).await?;
    let mut verifier = Verifier::default();
    let mut broken = None;
    let mut seen_expected = expect_head.is_none();
    let walked = reader
        .for_each(&AuditFilter::default(), |record| {
            seen_expected |= expect_head == Some(record.hash.as_str());
            verifier.check(&record).map_err(|link| {
                broken = Some(link);
                crate::domain::Error::internal("broken link")
            })
        })
        .await;
    let verified = verifier.finish();
    match walked {
        Err(AuditError::Damaged(link)) => broken = Some(link),
        Err(AuditError::Failed(error)) if broken.is_none() => return Err(error.into()),
        _ => {}
    }
    if broken.is_none() && !seen_expected {
        broken = Some(BrokenLink {
            cursor: 0,
            intent_id: String::new(),
            seq: 0,
            reason: format!(
                "the expected head {} is not in the log: the newest events were removed, or this is another log",
                expect_head.unwrap_or_default()
            ),
        });
    }
    report(&verified, broken.as_ref(), as_json);
    Ok(if broken.is_some() {
        ExitCode::from(EXIT_BROKEN)
    } else {
        ExitCode::SUCCESS
    })
}

const CSV_HEADER: &str =
    "cursor,at,intent_id,seq,event_type,status,actor,actor_kind,summary,details,hash";

/// Quotes a CSV field when it needs it (RFC 4180).
fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

fn export_line(record: &AuditRecord, format: Format) -> String {
    let event = &record.event;
    match format {
        Format::Jsonl => {
            let mut line = canonical(record.cursor, event);
            line["actor_kind"] = json!(actor_kind(&event.actor));
            line["summary"] = json!(describe(event));
            line["hash"] = json!(record.hash);
            line.to_string()
        }
        Format::Csv => [
            record.cursor.to_string(),
            event.at.to_string(),
            event.intent_id.clone(),
            event.seq.to_string(),
            event.event_type.clone(),
            event.status.as_str().to_string(),
            event.actor.clone(),
            actor_kind(&event.actor).to_string(),
            describe(event),
            event.details.to_string(),
            record.hash.clone(),
        ]
        .iter()
        .map(|field| csv_field(field))
        .collect::<Vec<_>>()
        .join(","),
    }
}

async fn run_export(cli: &Cli, args: &ExportArgs) -> Result<ExitCode> {
    let now = Timestamp::from_datetime(time::OffsetDateTime::now_utc());
    let filter = AuditFilter {
        intent_id: args.intent_id.clone(),
        since: args
            .since
            .as_deref()
            .map(|text| parse_since(text, now))
            .transpose()?,
    };
    let mut reader = open(cli, &args.database).await?;
    let mut out: Box<dyn Write> = match &args.output {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path)
                .with_context(|| format!("cannot create {}", path.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    if matches!(args.format, Format::Csv) {
        writeln!(out, "{CSV_HEADER}")?;
    }
    let mut written = 0u64;
    reader
        .for_each(&filter, |record| {
            writeln!(out, "{}", export_line(&record, args.format)).map_err(|err| {
                crate::domain::Error::internal(format!("cannot write the export: {err}"))
            })?;
            written += 1;
            Ok(())
        })
        .await?;
    out.flush().context("cannot write the export")?;
    if written == 0
        && args.since.is_none()
        && let Some(intent_id) = &args.intent_id
    {
        bail!("no events for intent {intent_id} in this database");
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_only_when_needed() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\"\nbye"), "\"say \"\"hi\"\"\nbye\"");
    }

    #[test]
    fn since_takes_a_time_or_a_duration_back_from_now() {
        let now = Timestamp::parse("2026-11-21T12:00:00Z").unwrap();
        assert_eq!(
            parse_since("24h", now).unwrap(),
            Timestamp::parse("2026-11-20T12:00:00Z").unwrap()
        );
        assert_eq!(
            parse_since("2026-11-01T00:00:00+01:00", now).unwrap(),
            Timestamp::parse("2026-10-31T23:00:00Z").unwrap()
        );
        assert!(
            parse_since("yesterday", now)
                .unwrap_err()
                .to_string()
                .contains("--since")
        );
    }
}
