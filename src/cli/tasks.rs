//! `signoff tasks`: a reviewer's tasks from the shell, with the Go CLI's verbs
//! (wire-contract §7): `list`, `get`, `approve`, `reject`, `confirm`,
//! `complete`, `assign`, `submit`.

use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use serde_json::{Map, Value, json};

use super::Cli;
use super::output::{json, paint, table};
use crate::client::Client;
use crate::domain::task::DecisionVerb;
use crate::domain::time::human_duration;
use crate::domain::{HumanTask, Intent, Timestamp};

#[derive(Debug, Subcommand)]
pub enum TasksCommand {
    /// The tasks you may decide now
    List {
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
    /// One task: what it asks, and how to decide it
    Get {
        id: String,
        /// Print JSON (the intent)
        #[arg(long)]
        json: bool,
    },
    /// Say yes: the task's approving outcome (approved, override_approved, confirmed...)
    Approve(DecideArgs),
    /// Say no: the task's rejecting outcome (rejected, denied, declined...)
    Reject(DecideArgs),
    /// Outcome `confirmed`
    Confirm(DecideArgs),
    /// Outcome `completed` (manual actions: add --data evidence=...)
    Complete(DecideArgs),
    /// Outcome `assigned` to someone
    Assign {
        #[command(flatten)]
        decide: DecideArgs,
        /// Who takes it over (same as --data assignee=...)
        #[arg(long, value_name = "IDENTITY")]
        to: Option<String>,
    },
    /// Any outcome the task allows
    Submit {
        #[command(flatten)]
        decide: DecideArgs,
        #[arg(long, value_name = "OUTCOME")]
        outcome: String,
    },
}

#[derive(Debug, Clone, Args)]
pub struct DecideArgs {
    /// The task (intent) id
    pub id: String,
    /// A comment (required by some outcomes: a review's rejection, an override...)
    #[arg(short, long)]
    pub comment: Option<String>,
    /// A form field or datum, repeatable: --data region=eu-west-1
    #[arg(long = "data", value_name = "KEY=VALUE")]
    pub data: Vec<String>,
    /// Data as a JSON object, typed: --data-json '{"replicas": 3}'
    #[arg(long, value_name = "JSON")]
    pub data_json: Option<String>,
    /// Print JSON (the decided intent)
    #[arg(long)]
    pub json: bool,
}

/// The `task_result` a decision sends: outcome and comment, `--data-json` under
/// `data`, and `--data` fields flattened beside them as strings, the way the Go
/// CLI sends them (the server coerces them to the form's types).
pub fn task_result(outcome: &str, args: &DecideArgs) -> Result<Value> {
    let mut result = Map::new();
    result.insert("outcome".into(), json!(outcome));
    if let Some(comment) = &args.comment {
        result.insert("comment".into(), json!(comment));
    }
    if let Some(text) = &args.data_json {
        let data: Value = serde_json::from_str(text)
            .with_context(|| format!("--data-json is not JSON: {text}"))?;
        if !data.is_object() {
            bail!("--data-json must be a JSON object, like '{{\"replicas\": 3}}'");
        }
        result.insert("data".into(), data);
    }
    for pair in &args.data {
        let Some((key, value)) = pair.split_once('=') else {
            bail!("--data `{pair}` is not KEY=VALUE");
        };
        let key = key.trim();
        if key.is_empty() || matches!(key, "outcome" | "comment" | "data") {
            bail!("--data `{pair}`: `{key}` cannot be a data field name");
        }
        result.insert(key.to_string(), json!(value));
    }
    Ok(Value::Object(result))
}

/// The human task of an intent, or a clear error when it has none.
fn human_task(intent: &Intent) -> Result<&HumanTask> {
    intent
        .human_task
        .as_ref()
        .with_context(|| format!("intent {} is not a human task", intent.intent_id))
}

/// A relative time: `in 2h` or `5m ago`.
fn relative(at: Timestamp, now: Timestamp) -> String {
    let seconds = now.seconds_until(&at);
    if seconds >= 0 {
        format!("in {}", human_duration(seconds))
    } else {
        format!("{} ago", human_duration(-seconds))
    }
}

/// How to decide the task, one command per allowed outcome, with what each needs.
pub fn decision_hints(intent_id: &str, task: &HumanTask) -> Vec<String> {
    task.allowed_outcomes
        .iter()
        .map(|outcome| {
            let verb = DecisionVerb::ALL
                .into_iter()
                .find(|verb| task.outcome_for(*verb).ok().as_deref() == Some(outcome.as_str()));
            let mut command = match verb {
                Some(verb) => format!("signoff tasks {} {intent_id}", verb.as_str()),
                None => format!("signoff tasks submit {intent_id} --outcome {outcome}"),
            };
            let needs = task.needs(outcome);
            if needs.comment {
                command.push_str(if task.task_type == crate::domain::TaskType::Override {
                    " -c \"<justification>\""
                } else {
                    " -c \"<comment>\""
                });
            }
            if needs.assignee {
                command.push_str(" --to <reviewer or team:NAME>");
            }
            if needs.evidence {
                command.push_str(" --data evidence=<link or text>");
            }
            if needs.form {
                command.push_str(&form_hint(task));
            }
            command
        })
        .collect()
}

/// ` --data name=<type>` for each form field, required ones first, optional ones
/// in brackets.
fn form_hint(task: &HumanTask) -> String {
    let Some(schema) = &task.form_schema else {
        return String::new();
    };
    let required: Vec<&str> = schema["required"]
        .as_array()
        .map(|names| names.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let mut fields: Vec<(bool, String)> = schema["properties"]
        .as_object()
        .map(|properties| {
            properties
                .iter()
                .map(|(name, property)| {
                    let kind = match property.get("enum").and_then(Value::as_array) {
                        Some(choices) => choices
                            .iter()
                            .map(|choice| {
                                choice.as_str().map_or(choice.to_string(), str::to_string)
                            })
                            .collect::<Vec<_>>()
                            .join("|"),
                        None => property["type"].as_str().unwrap_or("value").to_string(),
                    };
                    let field = format!("--data {name}=<{kind}>");
                    let needed = required.contains(&name.as_str());
                    (needed, if needed { field } else { format!("[{field}]") })
                })
                .collect()
        })
        .unwrap_or_default();
    fields.sort_by_key(|(needed, _)| !needed);
    fields
        .iter()
        .map(|(_, field)| format!(" {field}"))
        .collect()
}

fn print_task(intent: &Intent, now: Timestamp) -> Result<()> {
    let task = human_task(intent)?;
    let bold = |text: &str| paint(text, "1");
    println!("{}", bold(&task.title));
    let mut rows = vec![
        vec!["id".to_string(), intent.intent_id.clone()],
        vec!["type".to_string(), task.task_type.to_string()],
        vec!["status".to_string(), intent.status.as_str().to_string()],
        vec!["agent".to_string(), intent.from_agent.clone()],
        vec!["assignees".to_string(), assignees(&intent.assignees)],
        vec!["created".to_string(), relative(intent.created_at, now)],
    ];
    if let Some(due) = intent.due_at {
        rows.push(vec![
            "due".to_string(),
            format!("{due} ({})", relative(due, now)),
        ]);
    }
    if intent.escalation_stage > 0 || intent.remind_count > 0 {
        rows.push(vec![
            "lifecycle".to_string(),
            format!(
                "escalation stage {}, {} reminders sent",
                intent.escalation_stage, intent.remind_count
            ),
        ]);
    }
    rows.push(vec![
        "outcomes".to_string(),
        task.allowed_outcomes.join(", "),
    ]);
    if let Some(needed) = task.quorum {
        let cast: Vec<String> = intent
            .votes
            .iter()
            .map(|vote| format!("{} {}", vote.voter, vote.outcome))
            .collect();
        let cast = if cast.is_empty() {
            "no votes yet".to_string()
        } else {
            cast.join(", ")
        };
        rows.push(vec![
            "quorum".to_string(),
            format!("{needed} approvals needed; {cast}"),
        ]);
    }
    for row in rows {
        println!("  {:<10} {}", row[0], row[1]);
    }
    if let Some(description) = task.description.as_deref().filter(|d| !d.trim().is_empty()) {
        println!("\n{description}");
    }
    println!("\npayload:\n{}", json(&intent.payload));
    if let Some(result) = &intent.result {
        println!("\nresult:\n{}", json(result));
    } else if !intent.status.is_terminal() {
        println!("\n{}", bold("to decide:"));
        for hint in decision_hints(&intent.intent_id, task) {
            println!("  {hint}");
        }
    }
    Ok(())
}

fn assignees(list: &[String]) -> String {
    if list.is_empty() {
        "admins only".to_string()
    } else {
        list.join(", ")
    }
}

async fn decide(
    client: &Client,
    args: &DecideArgs,
    outcome: impl FnOnce(&HumanTask) -> Result<String>,
) -> Result<ExitCode> {
    let intent = client.intent(&args.id).await?;
    let outcome = outcome(human_task(&intent)?)?;
    let body = json!({ "task_result": task_result(&outcome, args)? });
    let decided = client.resume(&args.id, &body, None, None).await?;
    if args.json {
        println!("{}", json(&decided));
    } else if decided.status.is_terminal() {
        println!(
            "{} {} ({outcome})",
            paint("decided", "32"),
            decided.intent_id
        );
    } else {
        // A vote on a quorum task that has not settled yet.
        println!(
            "{} {} ({outcome}); still waiting for {}",
            paint("voted", "32"),
            decided.intent_id,
            decided.assignees.join(", ")
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn verb(verb: DecisionVerb) -> impl FnOnce(&HumanTask) -> Result<String> {
    move |task| Ok(task.outcome_for(verb)?)
}

pub async fn run(cli: &Cli, command: &TasksCommand) -> Result<ExitCode> {
    let client = cli.client()?;
    let now = Timestamp::from_datetime(time::OffsetDateTime::now_utc());
    match command {
        TasksCommand::List { json: as_json } => {
            let tasks = client.my_tasks().await?;
            if *as_json {
                println!("{}", json(&tasks));
                return Ok(ExitCode::SUCCESS);
            }
            if tasks.is_empty() {
                eprintln!("no tasks are waiting for you");
                return Ok(ExitCode::SUCCESS);
            }
            let rows: Vec<Vec<String>> = tasks
                .iter()
                .map(|task| {
                    vec![
                        task.intent_id.clone(),
                        task.human_task.task_type.to_string(),
                        crate::tui::text::truncate(&task.human_task.title, 48),
                        task.from_agent.clone(),
                        task.due_at
                            .map_or("-".to_string(), |due| relative(due, now)),
                        task.escalation_stage.to_string(),
                        assignees(&task.assignees),
                    ]
                })
                .collect();
            print!(
                "{}",
                table(
                    &["ID", "TYPE", "TITLE", "AGENT", "DUE", "STAGE", "ASSIGNEES"],
                    &rows
                )
            );
        }
        TasksCommand::Get { id, json: as_json } => {
            let intent = client.intent(id).await?;
            if *as_json {
                println!("{}", json(&intent));
            } else {
                print_task(&intent, now)?;
            }
        }
        TasksCommand::Approve(args) => {
            return decide(&client, args, verb(DecisionVerb::Approve)).await;
        }
        TasksCommand::Reject(args) => {
            return decide(&client, args, verb(DecisionVerb::Reject)).await;
        }
        TasksCommand::Confirm(args) => {
            return decide(&client, args, verb(DecisionVerb::Confirm)).await;
        }
        TasksCommand::Complete(args) => {
            return decide(&client, args, verb(DecisionVerb::Complete)).await;
        }
        TasksCommand::Assign { decide: args, to } => {
            let mut args_with_assignee = args.clone();
            if let Some(to) = to {
                args_with_assignee.data.push(format!("assignee={to}"));
            }
            return decide(&client, &args_with_assignee, verb(DecisionVerb::Assign)).await;
        }
        TasksCommand::Submit {
            decide: args,
            outcome,
        } => {
            let outcome = outcome.clone();
            return decide(&client, args, move |_| Ok(outcome)).await;
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(data: &[&str], data_json: Option<&str>) -> DecideArgs {
        DecideArgs {
            id: "i".into(),
            comment: Some("ok".into()),
            data: data.iter().map(|d| d.to_string()).collect(),
            data_json: data_json.map(str::to_string),
            json: false,
        }
    }

    #[test]
    fn data_is_flattened_as_strings_and_json_goes_under_data() {
        let result = task_result(
            "submitted",
            &args(
                &["region=eu-west-1", "note=a=b"],
                Some(r#"{"replicas": 3}"#),
            ),
        )
        .unwrap();
        assert_eq!(
            result,
            json!({"outcome": "submitted", "comment": "ok", "region": "eu-west-1", "note": "a=b", "data": {"replicas": 3}})
        );
    }

    #[test]
    fn bad_data_is_refused_with_the_flag_named() {
        for (data, data_json, expected) in [
            (vec!["region"], None, "not KEY=VALUE"),
            (
                vec!["outcome=approved"],
                None,
                "cannot be a data field name",
            ),
            (vec![], Some("{nope"), "--data-json is not JSON"),
            (vec![], Some("[1]"), "must be a JSON object"),
        ] {
            let error = task_result("x", &args(&data, data_json))
                .unwrap_err()
                .to_string();
            assert!(error.contains(expected), "{error}");
        }
    }

    #[test]
    fn hints_cover_every_outcome_with_what_it_needs() {
        let task = HumanTask::from_request(&json!({
            "title": "Launch", "task_type": "form",
            "form_schema": {"type": "object", "required": ["region"], "properties": {
                "region": {"type": "string", "enum": ["eu", "us"]}, "replicas": {"type": "integer"}}},
        }))
        .unwrap();
        assert_eq!(
            decision_hints("ID", &task),
            [
                "signoff tasks approve ID --data region=<eu|us> [--data replicas=<integer>]",
                "signoff tasks reject ID",
            ]
        );
        let review =
            HumanTask::from_request(&json!({"title": "r", "task_type": "review"})).unwrap();
        assert_eq!(
            decision_hints("ID", &review),
            [
                "signoff tasks approve ID",
                "signoff tasks submit ID --outcome changes_requested -c \"<comment>\"",
                "signoff tasks reject ID -c \"<comment>\"",
            ]
        );
    }
}
