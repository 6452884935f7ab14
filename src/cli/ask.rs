//! `signoff ask`: a shell script or CI job asks a human and, with `--wait`,
//! gates on the answer through the exit code.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Args;
use serde_json::{Map, Value, json};

use super::Cli;
use super::output::{json, read_json_file};
use crate::client::WaitOptions;
use crate::domain::lifecycle::is_system_actor;
use crate::domain::time::parse_duration;
use crate::domain::workflow::WORKFLOW_ACTOR;
use crate::domain::{Event, Status, Verdict, verdict_of};

/// Exit codes of `ask --wait`: a script can gate on a person's yes.
pub const EXIT_APPROVED: u8 = 0;
pub const EXIT_NOT_APPROVED: u8 = 1;
pub const EXIT_NO_DECISION: u8 = 2;

#[derive(Debug, Args)]
pub struct AskArgs {
    /// approval, review, form, override, confirmation, assignment, clarification, manual_action
    #[arg(long = "type", default_value = "approval", value_name = "TASK_TYPE")]
    pub task_type: String,
    /// What the person is asked
    #[arg(long)]
    pub title: String,
    /// More detail, in markdown
    #[arg(long)]
    pub description: Option<String>,
    /// Who decides (repeatable): a reviewer identity or team:NAME
    #[arg(long = "assignee", value_name = "IDENTITY")]
    pub assignees: Vec<String>,
    /// An allowed outcome (repeatable), replacing the type's defaults
    #[arg(long = "outcome", value_name = "OUTCOME")]
    pub outcomes: Vec<String>,
    /// Every outcome needs a comment
    #[arg(long)]
    pub required_comment: bool,
    /// Complete once this many assignees approve (n-of-m; assignees must be named reviewers)
    #[arg(long, value_name = "N")]
    pub quorum: Option<u32>,
    /// Completing needs data.evidence
    #[arg(long)]
    pub evidence_required: bool,
    /// A JSON Schema file for a form task ("-" reads standard input)
    #[arg(long, value_name = "FILE")]
    pub form_schema: Option<PathBuf>,
    /// Also email this address (repeatable; needs [notify.smtp] on the server)
    #[arg(long = "notify-email", value_name = "ADDRESS")]
    pub notify_email: Vec<String>,
    /// The payload the reviewer sees, a JSON object
    #[arg(long, value_name = "JSON")]
    pub payload: Option<String>,
    /// The intent type
    #[arg(long, default_value = "intent.human_task.v1")]
    pub intent_type: String,
    /// With an admin key: the agent asking [default: agent://signoff/cli]
    #[arg(long = "from", value_name = "AGENT")]
    pub from_agent: Option<String>,
    /// First reminder after this long (e.g. 5m)
    #[arg(long, value_name = "DURATION")]
    pub remind: Option<String>,
    /// Then remind every
    #[arg(long, value_name = "DURATION")]
    pub remind_every: Option<String>,
    /// At most this many reminders (0: none)
    #[arg(long, value_name = "N")]
    pub max_reminders: Option<u32>,
    /// An escalation stage, repeatable for a ladder: AFTER:WHO[,WHO...], e.g. 30m:backup@example.com
    #[arg(long = "escalate", value_name = "AFTER:WHO")]
    pub escalate: Vec<String>,
    /// Time out after this long, with a fallback: 8h (fails), 8h:cancel, 8h:rejected (that outcome)
    #[arg(long, value_name = "DURATION[:FALLBACK]")]
    pub timeout: Option<String>,
    /// Makes retries safe: the same key creates the task only once
    #[arg(long, value_name = "KEY")]
    pub idempotency_key: Option<String>,
    /// Block until decided; print the decision as JSON; exit 0 approved, 1 not
    /// approved, 2 timed out or canceled
    #[arg(long)]
    pub wait: bool,
    /// Print JSON (without --wait: the created intent)
    #[arg(long)]
    pub json: bool,
}

fn seconds(flag: &str, text: &str) -> Result<u64> {
    parse_duration(text)
        .filter(|seconds| *seconds >= 0)
        .map(|seconds| seconds as u64)
        .with_context(|| {
            format!("{flag} `{text}` is not a duration; write e.g. 90s, 30m, 1h30m, 2d")
        })
}

/// `AFTER:WHO[,WHO...]`.
fn stage(text: &str) -> Result<Value> {
    let Some((after, who)) = text.split_once(':') else {
        bail!("--escalate `{text}` is not AFTER:WHO, e.g. 30m:backup@example.com");
    };
    let to: Vec<&str> = who
        .split(',')
        .map(str::trim)
        .filter(|w| !w.is_empty())
        .collect();
    if to.is_empty() {
        bail!("--escalate `{text}` names nobody to escalate to");
    }
    Ok(json!({ "after_seconds": seconds("--escalate", after)?, "to": to }))
}

/// `DURATION[:FALLBACK]`, the fallback being fail, cancel or an outcome.
fn timeout(text: &str) -> Result<Value> {
    let (after, fallback) = match text.split_once(':') {
        Some((after, fallback)) => (after, Some(fallback.trim())),
        None => (text, None),
    };
    let fallback = match fallback {
        None | Some("fail") => json!("fail"),
        Some("cancel") => json!("cancel"),
        Some("") => bail!("--timeout `{text}`: the fallback after `:` is empty"),
        Some(outcome) => json!({ "outcome": outcome }),
    };
    Ok(json!({ "after_seconds": seconds("--timeout", after)?, "fallback": fallback }))
}

/// The intent body `ask` sends. The server checks every rule; this only turns
/// flags into the AXP shape.
pub fn ask_body(args: &AskArgs, sender_is_admin: bool) -> Result<Value> {
    let mut task = Map::new();
    task.insert("title".into(), json!(args.title));
    task.insert("task_type".into(), json!(args.task_type));
    if let Some(description) = &args.description {
        task.insert("description".into(), json!(description));
    }
    if !args.assignees.is_empty() {
        task.insert("assignees".into(), json!(args.assignees));
    }
    if !args.outcomes.is_empty() {
        task.insert("allowed_outcomes".into(), json!(args.outcomes));
    }
    if args.required_comment {
        task.insert("required_comment".into(), json!(true));
    }
    if let Some(quorum) = args.quorum {
        task.insert("quorum".into(), json!(quorum));
    }
    if args.evidence_required {
        task.insert("evidence_required".into(), json!(true));
    }
    if let Some(path) = &args.form_schema {
        task.insert(
            "form_schema".into(),
            read_json_file(path, "the form schema")?,
        );
    }
    if !args.notify_email.is_empty() {
        task.insert("notify_email".into(), json!(args.notify_email));
    }
    let payload = match &args.payload {
        None => json!({}),
        Some(text) => {
            serde_json::from_str(text).with_context(|| format!("--payload is not JSON: {text}"))?
        }
    };
    let mut body = json!({
        "intent_type": args.intent_type,
        "correlation_id": uuid::Uuid::new_v4().to_string(),
        "payload": payload,
        "human_task": task,
    });
    if sender_is_admin || args.from_agent.is_some() {
        body["from_agent"] = json!(args.from_agent.as_deref().unwrap_or("agent://signoff/cli"));
    }
    let mut lifecycle = Map::new();
    let mut remind = Map::new();
    if let Some(first) = &args.remind {
        remind.insert("after_seconds".into(), json!(seconds("--remind", first)?));
    }
    if let Some(every) = &args.remind_every {
        remind.insert(
            "every_seconds".into(),
            json!(seconds("--remind-every", every)?),
        );
    }
    if let Some(max) = args.max_reminders {
        remind.insert("max".into(), json!(max));
    }
    if !remind.is_empty() {
        lifecycle.insert("remind".into(), Value::Object(remind));
    }
    if !args.escalate.is_empty() {
        let stages = args
            .escalate
            .iter()
            .map(|text| stage(text))
            .collect::<Result<Vec<_>>>()?;
        lifecycle.insert("escalate".into(), json!(stages));
    }
    if let Some(text) = &args.timeout {
        lifecycle.insert("timeout".into(), timeout(text)?);
    }
    if !lifecycle.is_empty() {
        body["lifecycle"] = Value::Object(lifecycle);
    }
    Ok(body)
}

/// The exit code for how an intent ended: 0 for a person's yes (or completed
/// agent work, or a completed scenario), 1 for any other decision, 2 when
/// nobody decided: a timeout (whatever its fallback), a cancel, or a task its
/// sender resolved instead of a person.
pub fn exit_code_for(event: &Event) -> u8 {
    let result = event.details.get("result").unwrap_or(&Value::Null);
    let result_text = |key: &str| result.get(key).and_then(Value::as_str);
    if event.actor == WORKFLOW_ACTOR {
        // A scenario: it completed, a step's decider said no, or it ended
        // without a decision (a step timed out, was withdrawn, could not start).
        let said_no = result
            .get("steps")
            .and_then(Value::as_array)
            .and_then(|runs| runs.last())
            .is_some_and(|run| {
                let by_someone = run["decided_by"]
                    .as_str()
                    .is_some_and(|by| !is_system_actor(by));
                by_someone && (run["outcome"].is_string() || run["status"] == "FAILED")
            });
        return match event.status {
            _ if result_text("error").is_some() => EXIT_NO_DECISION,
            Status::Completed => EXIT_APPROVED,
            Status::Failed if said_no => EXIT_NOT_APPROVED,
            _ => EXIT_NO_DECISION,
        };
    }
    let decided_by = event
        .details
        .get("decided_by")
        .and_then(Value::as_str)
        .unwrap_or(&event.actor);
    if is_system_actor(decided_by) {
        return EXIT_NO_DECISION;
    }
    // The terminal event of a human task lists the assignees who lose it.
    let human_task = event.details.get("assignees").is_some();
    if !human_task {
        return match event.status {
            Status::Completed => EXIT_APPROVED,
            Status::Failed => EXIT_NOT_APPROVED,
            _ => EXIT_NO_DECISION,
        };
    }
    match (event.status, result_text("outcome")) {
        // Resolved by its sender or an admin: whatever it says, no person decided.
        _ if result_text("via") == Some("agent") => EXIT_NO_DECISION,
        (Status::Completed, Some(outcome)) if verdict_of(outcome) == Verdict::Approving => {
            EXIT_APPROVED
        }
        (Status::Completed, _) => EXIT_NOT_APPROVED,
        _ => EXIT_NO_DECISION,
    }
}

/// The decision as `--wait` prints it.
pub fn decision_json(intent_id: &str, event: &Event) -> Value {
    let record = event.details.get("result").cloned().unwrap_or(Value::Null);
    json!({
        "intent_id": intent_id,
        "status": event.status,
        "outcome": record.get("outcome"),
        "comment": record.get("comment"),
        "data": event.details.get("data"),
        "decided_by": event.details.get("decided_by").unwrap_or(&json!(event.actor)),
        "decided_at": record.get("decided_at").unwrap_or(&json!(event.at)),
        "via": record.get("via"),
        "timed_out": is_system_actor(event.details.get("decided_by").and_then(Value::as_str).unwrap_or(&event.actor)),
    })
}

pub async fn run(cli: &Cli, args: &AskArgs) -> Result<ExitCode> {
    let idempotency_key = super::idempotency_key(args.idempotency_key.as_deref())?;
    let client = cli.client()?;
    let me = client.me().await?;
    if let Some(from) = &args.from_agent
        && !me.is_admin()
        && *from != me.identity
    {
        // The server would ignore it and ask as the key's own agent.
        bail!(
            "--from {from} needs an admin key: this key asks as {}",
            me.identity
        );
    }
    let body = ask_body(args, me.is_admin())?;
    let created = client.create_intent(&body, idempotency_key).await?;
    if !args.wait {
        if args.json {
            println!("{}", json(&created));
        } else {
            println!("{}", created.intent_id);
        }
        return Ok(ExitCode::SUCCESS);
    }
    if std::io::stderr().is_terminal() {
        eprintln!("waiting for a decision on {} …", created.intent_id);
    }
    let ended = client
        .wait_for(&created.intent_id, WaitOptions::default())
        .await?;
    println!("{}", json(&decision_json(&created.intent_id, &ended)));
    Ok(ExitCode::from(exit_code_for(&ended)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Wrapper {
        #[command(flatten)]
        ask: AskArgs,
    }

    fn args(flags: &[&str]) -> AskArgs {
        let mut argv = vec!["ask", "--title", "Deploy?"];
        argv.extend_from_slice(flags);
        Wrapper::parse_from(argv).ask
    }

    #[test]
    fn lifecycle_flags_become_the_lifecycle_object() {
        let body = ask_body(
            &args(&[
                "--remind",
                "5m",
                "--remind-every",
                "1h",
                "--max-reminders",
                "2",
                "--escalate",
                "30m:backup@example.com",
                "--escalate",
                "2h:team:oncall,carol@example.com",
                "--timeout",
                "8h:rejected",
            ]),
            false,
        )
        .unwrap();
        assert_eq!(
            body["lifecycle"],
            json!({
                "remind": {"after_seconds": 300, "every_seconds": 3600, "max": 2},
                "escalate": [
                    {"after_seconds": 1800, "to": ["backup@example.com"]},
                    {"after_seconds": 7200, "to": ["team:oncall", "carol@example.com"]},
                ],
                "timeout": {"after_seconds": 28800, "fallback": {"outcome": "rejected"}},
            })
        );
        assert!(
            body.get("from_agent").is_none(),
            "an agent key speaks for itself"
        );
        assert_eq!(
            ask_body(&args(&[]), true).unwrap()["from_agent"],
            "agent://signoff/cli"
        );
    }

    #[test]
    fn bad_flags_are_explained() {
        for (flags, expected) in [
            (
                vec!["--remind", "soon"],
                "--remind `soon` is not a duration",
            ),
            (vec!["--escalate", "30m"], "not AFTER:WHO"),
            (vec!["--escalate", "30m:"], "names nobody"),
            (vec!["--timeout", "8h:"], "fallback after `:` is empty"),
            (vec!["--timeout=-1h"], "not a duration"),
            (vec!["--payload", "{oops"], "--payload is not JSON"),
            (
                vec!["--form-schema", "/no/such/schema.json"],
                "cannot read /no/such/schema.json",
            ),
        ] {
            let error = ask_body(&args(&flags), false).unwrap_err().to_string();
            assert!(error.contains(expected), "{flags:?}: {error}");
        }
    }

    #[test]
    fn only_a_persons_yes_exits_zero() {
        let ended = |status: Status, actor: &str, outcome: Option<&str>| Event {
            intent_id: "i".into(),
            seq: 4,
            event_type: status.event_type().into(),
            status,
            waiting_reason: None,
            actor: actor.into(),
            at: crate::domain::Timestamp::parse("2026-11-21T12:00:00Z").unwrap(),
            details: json!({"decided_by": actor, "result": {"outcome": outcome}, "assignees": []}),
        };
        assert_eq!(
            exit_code_for(&ended(
                Status::Completed,
                "alice@example.com",
                Some("approved")
            )),
            0
        );
        assert_eq!(
            exit_code_for(&ended(
                Status::Completed,
                "alice@example.com",
                Some("override_approved")
            )),
            0
        );
        assert_eq!(
            exit_code_for(&ended(
                Status::Completed,
                "alice@example.com",
                Some("rejected")
            )),
            1
        );
        assert_eq!(
            exit_code_for(&ended(
                Status::Completed,
                "alice@example.com",
                Some("deferred")
            )),
            1
        );
        assert_eq!(
            exit_code_for(&ended(
                Status::Completed,
                "system:timeout",
                Some("approved")
            )),
            2
        );
        assert_eq!(
            exit_code_for(&ended(Status::TimedOut, "system:timeout", None)),
            2
        );
        assert_eq!(
            exit_code_for(&ended(Status::Canceled, "agent://a/b", None)),
            2
        );
        let mut withdrawn = ended(Status::Completed, "agent://a/b", Some("approved"));
        withdrawn.details["result"]["via"] = json!("agent");
        assert_eq!(
            exit_code_for(&withdrawn),
            2,
            "the sender's say-so is not a decision"
        );
        let mut agent_work = ended(Status::Completed, "agent://a/worker", None);
        agent_work
            .details
            .as_object_mut()
            .unwrap()
            .remove("assignees");
        assert_eq!(exit_code_for(&agent_work), 0);
        agent_work.status = Status::Failed;
        assert_eq!(exit_code_for(&agent_work), 1);
    }

    #[test]
    fn a_scenario_exits_by_its_last_step() {
        let ended = |status: Status, last_run: Value| Event {
            intent_id: "w".into(),
            seq: 9,
            event_type: status.event_type().into(),
            status,
            waiting_reason: None,
            actor: WORKFLOW_ACTOR.into(),
            at: crate::domain::Timestamp::parse("2026-11-21T12:00:00Z").unwrap(),
            details: json!({"decided_by": WORKFLOW_ACTOR, "result": {"steps": [last_run]}}),
        };
        let approved =
            json!({"status": "COMPLETED", "outcome": "approved", "decided_by": "fred@x.io"});
        let rejected =
            json!({"status": "COMPLETED", "outcome": "rejected", "decided_by": "fred@x.io"});
        let timed_out =
            json!({"status": "COMPLETED", "outcome": "rejected", "decided_by": "system:timeout"});
        let withdrawn = json!({"status": "COMPLETED", "decided_by": "agent://a/b"});
        let agent_failed = json!({"status": "FAILED", "decided_by": "agent://a/worker"});
        assert_eq!(exit_code_for(&ended(Status::Completed, approved)), 0);
        assert_eq!(exit_code_for(&ended(Status::Failed, rejected)), 1);
        assert_eq!(exit_code_for(&ended(Status::Failed, agent_failed)), 1);
        assert_eq!(exit_code_for(&ended(Status::Failed, timed_out)), 2);
        assert_eq!(exit_code_for(&ended(Status::Failed, withdrawn)), 2);
    }
}
