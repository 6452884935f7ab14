//! Every subcommand of the shell interface (`tasks`, `intents`, `ask`,
//! `scenarios`, `completions`, `man`) run as the real binary against a real
//! `signoff serve`: good input, bad input (unknown ids, bad flags, invalid JSON,
//! outcomes the task does not allow) and the exit codes scripts gate on.

mod common;

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use assert_cmd::cargo::CommandCargoExt;
use common::{ServeProcess, xdg_env};
use serde_json::{Value, json};

const EXIT_APPROVED: i32 = 0;
const EXIT_NOT_APPROVED: i32 = 1;
const EXIT_NO_DECISION: i32 = 2;
const EXIT_ERROR: i32 = 3;
const EXIT_USAGE: i32 = 64;

const ALICE: &str = "alice@example.com";
/// What a refused `--idempotency-key` is told.
const BAD_KEY: &str = "must be 1-255 visible ASCII characters";
const BOB: &str = "bob@example.com";

/// A server with the CLI configured for it (admin by default, as after
/// `signoff serve` on this machine) and reviewer keys for alice and bob.
struct Setup {
    server: ServeProcess,
    _home: tempfile::TempDir,
    alice: String,
    bob: String,
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The `signoff` command with this home's XDG directories.
fn command(home: &Path) -> Command {
    let mut command = Command::cargo_bin("signoff").expect("signoff binary");
    command.envs(xdg_env(home)).env("NO_COLOR", "1");
    for variable in common::inherited_variables_to_drop() {
        command.env_remove(variable);
    }
    command
}

impl Setup {
    fn start() -> Setup {
        let home = tempfile::tempdir().unwrap();
        let server = ServeProcess::start(home.path(), &["--durability", "normal"]);
        let mut setup = Setup {
            server,
            _home: home,
            alice: String::new(),
            bob: String::new(),
        };
        setup.alice = setup.reviewer_key(ALICE);
        setup.bob = setup.reviewer_key(BOB);
        setup
    }

    fn home(&self) -> &Path {
        &self.server.home
    }

    fn reviewer_key(&self, identity: &str) -> String {
        let created = self.ok(None, &["keys", "create", "--reviewer", identity, "--json"]);
        let created: Value = serde_json::from_str(&created).unwrap();
        created["key"].as_str().unwrap().to_string()
    }

    /// Runs `signoff ARGS` as the holder of `key` (the admin when `None`). A
    /// command that hangs is killed after a minute, failing the test.
    fn run(&self, key: Option<&str>, args: &[&str]) -> Output {
        let mut command = command(self.home());
        if let Some(key) = key {
            command.env("SIGNOFF_KEY", key);
        }
        command.args(args);
        assert_cmd::Command::from_std(command)
            .timeout(Duration::from_secs(60))
            .output()
            .expect("run signoff")
    }

    /// Runs a command that must succeed; returns its standard output.
    fn ok(&self, key: Option<&str>, args: &[&str]) -> String {
        let output = self.run(key, args);
        assert_eq!(
            output.status.code(),
            Some(0),
            "{args:?}: {}",
            text(&output.stderr)
        );
        let stdout = text(&output.stdout);
        assert!(
            !stdout.contains('\x1b'),
            "no colour when not on a TTY: {stdout:?}"
        );
        stdout
    }

    /// Runs a command that must fail with `code` and one line on stderr; returns it.
    fn fails(&self, key: Option<&str>, args: &[&str], code: i32) -> String {
        let output = self.run(key, args);
        let stderr = text(&output.stderr);
        assert_eq!(
            output.status.code(),
            Some(code),
            "{args:?}: stdout {} stderr {stderr}",
            text(&output.stdout)
        );
        if code != EXIT_USAGE {
            assert_eq!(
                stderr.trim_end().lines().count(),
                1,
                "one clear line: {stderr}"
            );
            assert!(stderr.starts_with("error: "), "{stderr}");
        }
        stderr
    }

    /// `signoff ask` without --wait: the new task's id.
    fn ask(&self, flags: &[&str]) -> String {
        let mut args = vec!["ask"];
        args.extend_from_slice(flags);
        self.ok(None, &args).trim().to_string()
    }

    /// `signoff ask ... --wait` in the background, as a script would run it.
    fn ask_waiting(&self, flags: &[&str]) -> Child {
        let mut args = vec!["ask", "--wait"];
        args.extend_from_slice(flags);
        command(self.home())
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ask --wait")
    }

    /// The id of alice's first waiting task, once there is one.
    fn first_task_of(&self, key: &str) -> String {
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(20) {
            let listed: Value =
                serde_json::from_str(&self.ok(Some(key), &["tasks", "list", "--json"])).unwrap();
            if let Some(id) = listed[0]["intent_id"].as_str() {
                return id.to_string();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("no task arrived");
    }
}

/// Waits for a background command; returns (exit code, stdout, stderr).
fn finished(child: Child) -> (i32, String, String) {
    let output = child.wait_with_output().expect("wait");
    (
        output.status.code().unwrap_or(-1),
        text(&output.stdout),
        text(&output.stderr),
    )
}

#[test]
fn tasks_list_get_and_decide_with_every_verb() {
    let setup = Setup::start();
    let alice = Some(setup.alice.as_str());
    assert!(
        setup.ok(alice, &["tasks", "list"]).is_empty(),
        "nothing waits yet"
    );

    let approval = setup.ask(&["--title", "Deploy api 2.3.0?", "--assignee", ALICE]);
    let listed = setup.ok(alice, &["tasks", "list"]);
    assert!(
        listed.contains("Deploy api 2.3.0?") && listed.contains(&approval),
        "{listed}"
    );
    let header = listed.lines().next().unwrap();
    assert!(
        header.starts_with("ID") && header.contains("TITLE"),
        "aligned table: {listed}"
    );
    let as_json: Value =
        serde_json::from_str(&setup.ok(alice, &["tasks", "list", "--json"])).unwrap();
    assert_eq!(as_json[0]["intent_id"], approval.as_str());

    let shown = setup.ok(alice, &["tasks", "get", &approval]);
    assert!(
        shown.contains(&format!("signoff tasks approve {approval}")),
        "{shown}"
    );
    assert!(
        shown.contains(&format!("signoff tasks reject {approval}")),
        "{shown}"
    );
    let got: Value =
        serde_json::from_str(&setup.ok(alice, &["tasks", "get", &approval, "--json"])).unwrap();
    assert_eq!(got["status"], "WAITING");

    // An outcome the task does not allow, and a comment-less rejection that needs one.
    let refused = setup.fails(
        alice,
        &["tasks", "submit", &approval, "--outcome", "maybe"],
        EXIT_ERROR,
    );
    assert!(
        refused.contains("maybe") && refused.contains("approved"),
        "{refused}"
    );
    assert!(
        setup
            .fails(alice, &["tasks", "confirm", &approval], EXIT_ERROR)
            .contains("confirm")
    );

    let decided = setup.ok(alice, &["tasks", "approve", &approval, "-c", "ship it"]);
    assert!(
        decided.contains("decided") && decided.contains("approved"),
        "{decided}"
    );
    let again = setup.fails(alice, &["tasks", "approve", &approval], EXIT_ERROR);
    assert!(
        again.contains("already decided by alice@example.com"),
        "{again}"
    );

    let review = setup.ask(&[
        "--type",
        "review",
        "--title",
        "Review the migration",
        "--assignee",
        ALICE,
    ]);
    let needs_comment = setup.fails(alice, &["tasks", "reject", &review], EXIT_ERROR);
    assert!(needs_comment.contains("comment"), "{needs_comment}");
    let rejected: Value = serde_json::from_str(&setup.ok(
        alice,
        &[
            "tasks",
            "reject",
            &review,
            "-c",
            "drops a column in use",
            "--json",
        ],
    ))
    .unwrap();
    assert_eq!(rejected["result"]["comment"], "drops a column in use");

    let confirmation = setup.ask(&[
        "--type",
        "confirmation",
        "--title",
        "Rotate keys?",
        "--assignee",
        ALICE,
    ]);
    setup.ok(alice, &["tasks", "confirm", &confirmation]);
    let manual = setup.ask(&[
        "--type",
        "manual_action",
        "--title",
        "Swap the disk",
        "--assignee",
        ALICE,
        "--evidence-required",
    ]);
    let no_evidence = setup.fails(alice, &["tasks", "complete", &manual], EXIT_ERROR);
    assert!(no_evidence.contains("evidence"), "{no_evidence}");
    setup.ok(
        alice,
        &[
            "tasks",
            "complete",
            &manual,
            "--data",
            "evidence=https://tickets/42",
        ],
    );
    let assignment = setup.ask(&[
        "--type",
        "assignment",
        "--title",
        "Who takes the incident?",
        "--assignee",
        ALICE,
    ]);
    for (to, says) in [
        (
            "not a reviewer",
            "`not a reviewer` is not a reviewer identity",
        ),
        ("agent://acme/deployer", "is not a reviewer identity"),
        ("team:", "must be 1-64 characters"),
        ("", "outcome `assigned` needs data.assignee"),
    ] {
        let refused = setup.fails(
            alice,
            &["tasks", "assign", &assignment, "--to", to],
            EXIT_ERROR,
        );
        assert!(refused.contains(says), "--to {to:?}: {refused}");
    }
    let assigned: Value = serde_json::from_str(&setup.ok(
        alice,
        &["tasks", "assign", &assignment, "--to", BOB, "--json"],
    ))
    .unwrap();
    assert_eq!(assigned["result"]["data"]["assignee"], BOB);
    assert!(
        setup.ok(alice, &["tasks", "list"]).is_empty(),
        "every task decided"
    );
}

#[test]
fn form_tasks_take_typed_data_and_bad_data_is_refused() {
    let setup = Setup::start();
    let alice = Some(setup.alice.as_str());
    let schema = setup.home().join("schema.json");
    std::fs::write(
        &schema,
        json!({
            "type": "object",
            "required": ["replicas"],
            "properties": {"replicas": {"type": "integer", "minimum": 1}, "region": {"enum": ["eu", "us"]}},
        })
        .to_string(),
    )
    .unwrap();
    let form = setup.ask(&[
        "--type",
        "form",
        "--title",
        "Scale the api",
        "--assignee",
        ALICE,
        "--form-schema",
        schema.to_str().unwrap(),
    ]);
    let shown = setup.ok(alice, &["tasks", "get", &form]);
    assert!(
        shown.contains("--data replicas=<integer>") && shown.contains("[--data region=<eu|us>]"),
        "{shown}"
    );

    for (data, says) in [
        (["--data-json", "{replicas"], "--data-json is not JSON"),
        (["--data-json", "[3]"], "must be a JSON object"),
        (["--data", "replicas"], "not KEY=VALUE"),
        (["--data-json", r#"{"replicas": 0}"#], "replicas"),
    ] {
        let mut args = vec!["tasks", "submit", &form, "--outcome", "submitted"];
        args.extend_from_slice(&data);
        let refused = setup.fails(alice, &args, EXIT_ERROR);
        assert!(refused.contains(says), "{data:?}: {refused}");
    }

    let decided: Value = serde_json::from_str(&setup.ok(
        alice,
        &[
            "tasks",
            "submit",
            &form,
            "--outcome",
            "submitted",
            "--data-json",
            r#"{"replicas": 3}"#,
            "--data",
            "region=eu",
            "--json",
        ],
    ))
    .unwrap();
    assert_eq!(decided["result"]["data"]["replicas"], 3);
    assert_eq!(decided["result"]["data"]["region"], "eu");
}

#[test]
fn unknown_ids_bad_flags_and_missing_servers_fail_clearly() {
    let setup = Setup::start();
    let alice = Some(setup.alice.as_str());
    let missing = "0190f0f0-0000-7000-8000-000000000000";
    for args in [
        vec!["tasks", "get", missing],
        vec!["tasks", "approve", missing],
        vec!["intents", "get", missing],
        vec!["intents", "events", missing],
        vec!["intents", "watch", missing],
        vec!["intents", "cancel", missing],
    ] {
        let stderr = setup.fails(None, &args, EXIT_ERROR);
        assert!(
            stderr.contains(missing) || stderr.contains("not found"),
            "{args:?}: {stderr}"
        );
    }
    for args in [
        vec!["tasks", "list", "--frobnicate"],
        vec!["tasks", "submit", missing],
        vec!["tasks", "teleport", missing],
        vec!["intents", "events", missing, "--since", "minus-one"],
        vec!["intents", "watch", missing, "--since", "minus-one"],
        vec!["intents", "watch", missing, "--since=-1"],
        vec!["ask"],
        vec!["ask", "--title", "x", "--quorum", "two"],
        vec!["scenarios", "apply"],
        vec!["completions", "powershell"],
    ] {
        let output = setup.run(alice, &args);
        assert_eq!(
            output.status.code(),
            Some(EXIT_USAGE),
            "{args:?}: {}",
            text(&output.stderr)
        );
    }
    // A task someone else holds: alice may not read bob's task.
    let bobs = setup.ask(&["--title", "For bob", "--assignee", BOB]);
    let forbidden = setup.fails(alice, &["tasks", "get", &bobs], EXIT_ERROR);
    assert!(forbidden.contains("may not read"), "{forbidden}");
    // A reviewer key cannot ask.
    let reviewer_asks = setup.fails(alice, &["ask", "--title", "x"], EXIT_ERROR);
    assert!(
        reviewer_asks.contains("reviewers decide"),
        "{reviewer_asks}"
    );
    // No server configured at all.
    let nowhere = tempfile::tempdir().unwrap();
    let output = command(nowhere.path())
        .args(["tasks", "list"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(EXIT_ERROR));
    assert!(
        text(&output.stderr).contains("no server configured"),
        "{}",
        text(&output.stderr)
    );
    // A server that is down.
    let output = command(nowhere.path())
        .args([
            "tasks",
            "list",
            "--server",
            "http://127.0.0.1:9",
            "--key",
            "so_nothing",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(EXIT_ERROR));
}

#[test]
fn intents_get_events_watch_and_cancel() {
    let setup = Setup::start();
    let alice = Some(setup.alice.as_str());
    let id = setup.ask(&["--title", "Deploy?", "--assignee", ALICE]);
    let shown = setup.ok(None, &["intents", "get", &id]);
    assert!(
        shown.contains("WAITING") && shown.contains("alice@example.com"),
        "{shown}"
    );
    let intent: Value =
        serde_json::from_str(&setup.ok(None, &["intents", "get", &id, "--json"])).unwrap();
    assert_eq!(intent["intent_id"], id.as_str());

    setup.ok(alice, &["tasks", "approve", &id]);
    let events = setup.ok(None, &["intents", "events", &id]);
    let lines: Vec<&str> = events.lines().collect();
    assert!(lines[0].starts_with("SEQ"), "{events}");
    assert!(
        events.contains("intent.completed")
            && events.contains("alice@example.com decided approved"),
        "{events}"
    );
    let after: Value = serde_json::from_str(
        &setup.ok(None, &["intents", "events", &id, "--since", "3", "--json"]),
    )
    .unwrap();
    assert!(
        after
            .as_array()
            .unwrap()
            .iter()
            .all(|event| event["seq"].as_u64().unwrap() > 3)
    );

    // watch replays and exits with the decision's code.
    let output = setup.run(None, &["intents", "watch", &id, "--json"]);
    assert_eq!(output.status.code(), Some(EXIT_APPROVED));
    let watched: Vec<Value> = text(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(watched.last().unwrap()["event_type"], "intent.completed");
    // From its last event, an ended intent has nothing more to show: watch
    // exits at once with the decision's code instead of waiting.
    let last_seq = watched.last().unwrap()["seq"].as_u64().unwrap().to_string();
    let output = setup.run(None, &["intents", "watch", &id, "--since", &last_seq]);
    assert_eq!(output.status.code(), Some(EXIT_APPROVED));
    assert_eq!(text(&output.stdout), "");
    // A --since past the last event would wait for ever: refused.
    let past = setup.fails(
        None,
        &["intents", "watch", &id, "--since", "99"],
        EXIT_ERROR,
    );
    assert!(past.contains("--since 99 is past the last event"), "{past}");

    // watch follows live, from the last event of an intent still waiting too,
    // and a cancel ends it with code 2.
    let pending = setup.ask(&["--title", "Rollback?", "--assignee", ALICE]);
    let so_far: Value =
        serde_json::from_str(&setup.ok(None, &["intents", "events", &pending, "--json"])).unwrap();
    let last_seq = so_far.as_array().unwrap().last().unwrap()["seq"].to_string();
    let watcher = command(setup.home())
        .args(["intents", "watch", &pending, "--since", &last_seq])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let canceled = setup.ok(
        None,
        &["intents", "cancel", &pending, "--reason", "not needed"],
    );
    assert!(canceled.contains("canceled"), "{canceled}");
    let (code, stdout, _) = finished(watcher);
    assert_eq!(code, EXIT_NO_DECISION);
    assert!(
        stdout.contains("intent.canceled") && !stdout.contains("intent.created"),
        "only what came after --since: {stdout}"
    );
    let again = setup.fails(None, &["intents", "cancel", &pending], EXIT_ERROR);
    assert!(again.contains("already ended"), "{again}");
    let by_reviewer = setup.fails(alice, &["intents", "cancel", &id], EXIT_ERROR);
    assert!(by_reviewer.contains("reviewer keys"), "{by_reviewer}");
}

#[test]
fn ask_wait_exits_by_how_the_task_ended() {
    let setup = Setup::start();
    let alice = Some(setup.alice.as_str());

    let approving = setup.ask_waiting(&["--title", "Approve?", "--assignee", ALICE]);
    let id = setup.first_task_of(&setup.alice);
    setup.ok(alice, &["tasks", "approve", &id, "-c", "yes"]);
    let (code, stdout, _) = finished(approving);
    assert_eq!(code, EXIT_APPROVED);
    let decision: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(decision["outcome"], "approved");
    assert_eq!(decision["decided_by"], ALICE);
    assert_eq!(decision["comment"], "yes");
    assert_eq!(decision["timed_out"], false);

    let rejecting = setup.ask_waiting(&["--title", "Approve?", "--assignee", ALICE]);
    let id = setup.first_task_of(&setup.alice);
    setup.ok(alice, &["tasks", "reject", &id, "-c", "no"]);
    let (code, stdout, _) = finished(rejecting);
    assert_eq!(code, EXIT_NOT_APPROVED, "{stdout}");

    // A fallback outcome that approves is still not a person's yes.
    let timing_out = setup.ask_waiting(&[
        "--title",
        "Approve?",
        "--assignee",
        ALICE,
        "--timeout",
        "1s:approved",
    ]);
    let (code, stdout, _) = finished(timing_out);
    assert_eq!(code, EXIT_NO_DECISION, "{stdout}");
    let decision: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(decision["timed_out"], true);
    assert_eq!(decision["decided_by"], "system:timeout");

    let canceled = setup.ask_waiting(&["--title", "Approve?", "--assignee", ALICE]);
    let id = setup.first_task_of(&setup.alice);
    setup.ok(None, &["intents", "cancel", &id]);
    assert_eq!(finished(canceled).0, EXIT_NO_DECISION);

    // Without --wait: the id, or the created intent as JSON.
    let created: Value =
        serde_json::from_str(&setup.ok(None, &["ask", "--title", "t", "--json"])).unwrap();
    assert!(created["intent_id"].is_string());
}

#[test]
fn ask_refuses_bad_flags_before_or_at_the_server() {
    let setup = Setup::start();
    let too_long = "d".repeat(2001);
    let long_key = "k".repeat(256);
    for (flags, says) in [
        (vec!["--remind", "5x"], "--remind `5x` is not a duration"),
        (vec!["--timeout=-3m"], "is not a duration"),
        (vec!["--timeout", "1h:"], "fallback after `:` is empty"),
        (vec!["--escalate", "30m"], "is not AFTER:WHO"),
        (vec!["--escalate", "30m:"], "names nobody"),
        (vec!["--payload", "{oops"], "--payload is not JSON"),
        (
            vec!["--form-schema", "/nonexistent/schema.json"],
            "cannot read /nonexistent/schema.json",
        ),
        (vec!["--type", "poll"], "poll"),
        (vec!["--assignee", "not a reviewer"], "not a reviewer"),
        (
            vec!["--quorum", "2", "--assignee", ALICE],
            "between 1 and the number of assignees (1)",
        ),
        (vec!["--timeout", "1h:maybe"], "maybe"),
        (
            vec!["--description", &too_long],
            "human_task.description: must be at most 2000 characters",
        ),
        (
            vec!["--outcome", ""],
            "human_task.allowed_outcomes: `` must be 1-64 printable characters",
        ),
        (
            vec!["--outcome", "go", "--outcome", "go"],
            "`go` is listed twice",
        ),
        (
            vec!["--notify-email", "not-an-email"],
            "human_task.notify_email: `not-an-email` is not an email address",
        ),
        (
            vec!["--intent-type", "deploy"],
            "intent_type: `deploy` must look like `intent.human_task.v1`",
        ),
        (
            vec!["--from", "worker"],
            "from_agent: `worker` is not an agent address",
        ),
        (
            vec!["--remind-every", "soon"],
            "--remind-every `soon` is not a duration",
        ),
        (
            vec!["--remind-every=-5m"],
            "--remind-every `-5m` is not a duration",
        ),
        (
            vec!["--remind-every", "0s"],
            "at least 1 second between reminders",
        ),
        (vec!["--idempotency-key", "has space"], BAD_KEY),
        (vec!["--idempotency-key", ""], BAD_KEY),
        (vec!["--idempotency-key", "clé"], BAD_KEY),
        (vec!["--idempotency-key", "two\nlines"], BAD_KEY),
        (vec!["--idempotency-key", &long_key], BAD_KEY),
    ] {
        let mut args = vec!["ask", "--title", "Deploy?"];
        args.extend_from_slice(&flags);
        let stderr = setup.fails(None, &args, EXIT_ERROR);
        assert!(stderr.contains(says), "{flags:?}: {stderr}");
    }
    for (flag, value) in [
        ("--max-reminders", "many"),
        ("--max-reminders", "-1"),
        ("--max-reminders", "4294967296"),
    ] {
        let flag_and_value = format!("{flag}={value}");
        let stderr = setup.fails(None, &["ask", "--title", "x", &flag_and_value], EXIT_USAGE);
        assert!(
            stderr.contains(&format!("invalid value '{value}' for '{flag}")),
            "{stderr}"
        );
    }
    // An agent key asks as itself: --from naming another agent is refused,
    // not ignored.
    let agent = setup.ok(
        None,
        &[
            "keys",
            "create",
            "--agent",
            "agent://acme/deployer",
            "--json",
        ],
    );
    let agent: Value = serde_json::from_str(&agent).unwrap();
    let stderr = setup.fails(
        agent["key"].as_str(),
        &["ask", "--title", "x", "--from", "agent://acme/other"],
        EXIT_ERROR,
    );
    assert!(
        stderr.contains("--from agent://acme/other needs an admin key"),
        "{stderr}"
    );
    assert!(
        setup.ok(None, &["tasks", "list"]).is_empty(),
        "no refused ask created a task"
    );
    // The edges of what is allowed: an agent naming itself, a key of 255
    // visible characters.
    let edge_key = "~!".repeat(127) + "k";
    let asked = setup.ok(
        agent["key"].as_str(),
        &[
            "ask",
            "--title",
            "x",
            "--assignee",
            ALICE,
            "--from",
            "agent://acme/deployer",
            "--idempotency-key",
            &edge_key,
            "--json",
        ],
    );
    let asked: Value = serde_json::from_str(&asked).unwrap();
    let intent: Value = serde_json::from_str(&setup.ok(
        None,
        &[
            "intents",
            "get",
            asked["intent_id"].as_str().unwrap(),
            "--json",
        ],
    ))
    .unwrap();
    assert_eq!(intent["from_agent"], "agent://acme/deployer");
}

#[test]
fn ask_with_a_quorum_reports_votes() {
    let setup = Setup::start();
    let id = setup.ask(&[
        "--title",
        "Merge?",
        "--assignee",
        ALICE,
        "--assignee",
        BOB,
        "--quorum",
        "2",
    ]);
    let voted = setup.ok(Some(&setup.alice), &["tasks", "approve", &id]);
    assert!(
        voted.contains("voted") && voted.contains("still waiting for bob@example.com"),
        "{voted}"
    );
    let shown = setup.ok(Some(&setup.bob), &["tasks", "get", &id]);
    assert!(
        shown.contains("2 approvals needed; alice@example.com approved"),
        "{shown}"
    );
    let again = setup.fails(Some(&setup.alice), &["tasks", "approve", &id], EXIT_ERROR);
    assert!(again.contains("already voted"), "{again}");
    assert!(
        setup
            .ok(Some(&setup.bob), &["tasks", "approve", &id])
            .contains("decided")
    );
}

fn chain_bundle() -> Value {
    json!({
        "scenario_id": "deploy-chain",
        "humans": [{"role": "lead", "assignees": [ALICE]}, {"role": "sre", "assignees": [BOB]}],
        "workflow": {"steps": [
            {"step_id": "lead", "assigned_to": "lead", "human_task": {"title": "Lead: deploy?", "task_type": "approval"}},
            {"step_id": "sre", "assigned_to": "sre", "human_task": {"title": "SRE: deploy?", "task_type": "approval"}},
        ]},
        "intent": {"type": "intent.deploy.approval.v1", "payload": {"version": "2.3.0"}},
    })
}

#[test]
fn scenarios_validate_and_apply_with_watch() {
    let setup = Setup::start();
    let dir = setup.home().to_path_buf();
    let good = dir.join("chain.json");
    std::fs::write(&good, chain_bundle().to_string()).unwrap();
    let checked = setup.ok(None, &["scenarios", "validate", good.to_str().unwrap()]);
    assert!(
        checked.contains("valid") && checked.contains("2 steps"),
        "{checked}"
    );

    let mut broken = chain_bundle();
    broken["workflow"]["steps"][1]["assigned_to"] = json!("cfo");
    broken["workflow"]["steps"][0]["on_failure"] = json!("lead");
    broken["intent"]["type"] = json!("Deploy");
    let bad = dir.join("broken.json");
    std::fs::write(&bad, broken.to_string()).unwrap();
    let output = setup.run(None, &["scenarios", "validate", bad.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    let listed = text(&output.stdout);
    for path in [
        "$.workflow.steps[0].on_failure: ",
        "$.workflow.steps[1].assigned_to: ",
        "$.intent.type: ",
    ] {
        assert!(listed.contains(path), "{path} in {listed}");
    }
    let report: Value = serde_json::from_str(&text(
        &setup
            .run(
                None,
                &["scenarios", "validate", bad.to_str().unwrap(), "--json"],
            )
            .stdout,
    ))
    .unwrap();
    assert_eq!(report["errors"].as_array().unwrap().len(), 3, "{report}");
    let refused = setup.fails(
        None,
        &["scenarios", "apply", bad.to_str().unwrap()],
        EXIT_ERROR,
    );
    assert!(refused.contains("the scenario is not valid"), "{refused}");
    let not_json = dir.join("not.json");
    std::fs::write(&not_json, "steps: [lead, sre]").unwrap();
    assert!(
        setup
            .fails(
                None,
                &["scenarios", "validate", not_json.to_str().unwrap()],
                EXIT_ERROR
            )
            .contains("is not JSON")
    );
    assert!(
        setup
            .fails(
                None,
                &["scenarios", "apply", "/nonexistent.json"],
                EXIT_ERROR
            )
            .contains("cannot read")
    );

    for key in ["has space", "", "clé", "two\nlines"] {
        let refused = setup.fails(
            None,
            &[
                "scenarios",
                "apply",
                good.to_str().unwrap(),
                "--idempotency-key",
                key,
            ],
            EXIT_ERROR,
        );
        assert!(
            refused.contains("--idempotency-key") && refused.contains("visible ASCII"),
            "{key:?}: {refused}"
        );
    }
    assert!(
        setup.ok(None, &["tasks", "list"]).is_empty(),
        "no refused apply started the scenario"
    );

    // Approved by both steps: exit 0.
    let watching = command(setup.home())
        .args(["scenarios", "apply", good.to_str().unwrap(), "--watch"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lead_task = setup.first_task_of(&setup.alice);
    setup.ok(Some(&setup.alice), &["tasks", "approve", &lead_task]);
    let sre_task = setup.first_task_of(&setup.bob);
    setup.ok(Some(&setup.bob), &["tasks", "approve", &sre_task]);
    let (code, stdout, stderr) = finished(watching);
    assert_eq!(code, EXIT_APPROVED, "{stdout}{stderr}");
    assert!(
        stdout.contains("step lead ended: approved by alice@example.com; next: step sre"),
        "{stdout}"
    );
    assert!(stdout.contains("intent.completed"), "{stdout}");

    // Rejected at the first step: exit 1, and the second step never asks bob.
    let watching = command(setup.home())
        .args([
            "scenarios",
            "apply",
            good.to_str().unwrap(),
            "--watch",
            "--json",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lead_task = setup.first_task_of(&setup.alice);
    setup.ok(
        Some(&setup.alice),
        &["tasks", "reject", &lead_task, "-c", "freeze week"],
    );
    let (code, stdout, _) = finished(watching);
    assert_eq!(code, EXIT_NOT_APPROVED, "{stdout}");
    assert!(setup.ok(Some(&setup.bob), &["tasks", "list"]).is_empty());
}

#[test]
fn completions_and_man_pages_cover_every_command() {
    let setup = Setup::start();
    for shell in ["bash", "zsh", "fish"] {
        let script = setup.ok(None, &["completions", shell]);
        for word in ["scenarios", "tasks", "approve", "--wait"] {
            assert!(script.contains(word), "{shell} completion lacks {word}");
        }
    }
    let page = setup.ok(None, &["man"]);
    assert!(
        page.starts_with(".ie") || page.contains(".TH signoff"),
        "{}",
        &page[..200.min(page.len())]
    );
    let out = tempfile::tempdir().unwrap();
    setup.ok(None, &["man", "--out", out.path().to_str().unwrap()]);
    for page in [
        "signoff.1",
        "signoff-tasks.1",
        "signoff-tasks-approve.1",
        "signoff-scenarios-apply.1",
        "signoff-ask.1",
    ] {
        assert!(out.path().join(page).exists(), "{page} written");
    }
    let unwritable = setup.fails(None, &["man", "--out", "/proc/signoff-man"], EXIT_ERROR);
    assert!(unwritable.contains("/proc/signoff-man"), "{unwritable}");
}

/// The README's pattern: a script gates a deploy on a person's yes with one
/// line, and keeps waiting through a server crash and restart.
const GATE_SCRIPT: &str = r#"#!/usr/bin/env bash
set -euo pipefail
if signoff ask --title "Deploy v2.3 to prod?" --assignee alice@example.com --wait > "$OUT/decision.json"; then
  echo "deploying"
else
  code=$?
  echo "not deploying (exit $code)"
  exit "$code"
fi
"#;

fn gate(setup: &Setup, out: &Path) -> Child {
    let script = out.join("gate.sh");
    std::fs::write(&script, GATE_SCRIPT).unwrap();
    let binary_dir = Path::new(env!("CARGO_BIN_EXE_signoff")).parent().unwrap();
    let path = format!(
        "{}:{}",
        binary_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    Command::new("bash")
        .arg(&script)
        .envs(xdg_env(setup.home()))
        .env_remove("SIGNOFF_SERVER")
        .env_remove("SIGNOFF_KEY")
        .env("PATH", path)
        .env("OUT", out)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the gate script")
}

#[test]
fn a_shell_script_gates_on_a_decision_made_elsewhere_across_a_server_restart() {
    let mut setup = Setup::start();
    let out = tempfile::tempdir().unwrap();

    let script = gate(&setup, out.path());
    let id = setup.first_task_of(&setup.alice);
    // The server dies with the script waiting; the decision is made by another
    // process right after the restart, before the waiter has reconnected.
    setup.server.restart();
    setup.ok(Some(&setup.alice), &["tasks", "approve", &id, "-c", "go"]);
    let (code, stdout, stderr) = finished(script);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert_eq!(stdout.trim(), "deploying");
    let decision: Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("decision.json")).unwrap())
            .unwrap();
    assert_eq!(decision["intent_id"], id.as_str());
    assert_eq!(decision["outcome"], "approved");
    assert_eq!(decision["comment"], "go");

    let script = gate(&setup, out.path());
    let id = setup.first_task_of(&setup.alice);
    setup.server.restart();
    // This time the waiter reconnects first, then alice says no.
    std::thread::sleep(Duration::from_secs(3));
    setup.ok(
        Some(&setup.alice),
        &["tasks", "reject", &id, "-c", "freeze"],
    );
    let (code, stdout, _) = finished(script);
    assert_eq!(code, EXIT_NOT_APPROVED);
    assert_eq!(stdout.trim(), "not deploying (exit 1)");
}

#[test]
fn the_readme_scenario_example_is_valid() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let section = &readme[readme.find("## Scenarios").expect("a Scenarios section")..];
    let start = section.find("```json\n").expect("a JSON example") + "```json\n".len();
    let example = &section[start..start + section[start..].find("```").unwrap()];
    let home = tempfile::tempdir().unwrap();
    let file = home.path().join("example.json");
    std::fs::write(&file, example).unwrap();
    let output = command(home.path())
        .args(["scenarios", "validate", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}{}",
        text(&output.stdout),
        text(&output.stderr)
    );
    assert!(text(&output.stdout).contains("3 steps"));
}

#[test]
fn a_chain_survives_kill_9_between_its_steps() {
    let mut setup = Setup::start();
    let bundle = setup.home().join("chain.json");
    std::fs::write(&bundle, chain_bundle().to_string()).unwrap();
    let applied: Value = serde_json::from_str(&setup.ok(
        None,
        &["scenarios", "apply", bundle.to_str().unwrap(), "--json"],
    ))
    .unwrap();
    let scenario = applied["intent_id"].as_str().unwrap().to_string();
    let lead_task = setup.first_task_of(&setup.alice);
    setup.ok(Some(&setup.alice), &["tasks", "approve", &lead_task]);
    // kill -9 and start again. The approval was acknowledged, so the next step
    // already exists: there is no moment between steps to lose.
    setup.server.restart();
    let sre_task = setup.first_task_of(&setup.bob);
    setup.ok(Some(&setup.bob), &["tasks", "approve", &sre_task]);
    let output = setup.run(None, &["intents", "watch", &scenario, "--json"]);
    assert_eq!(
        output.status.code(),
        Some(EXIT_APPROVED),
        "{}",
        text(&output.stderr)
    );
    let events: Vec<Value> = text(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let kinds: Vec<&str> = events
        .iter()
        .map(|event| event["event_type"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds
            .iter()
            .filter(|kind| **kind == "intent.step_started")
            .count(),
        2,
        "{kinds:?}"
    );
    assert_eq!(
        kinds
            .iter()
            .filter(|kind| **kind == "intent.step_ended")
            .count(),
        2,
        "{kinds:?}"
    );
    let verified = setup.run(
        None,
        &[
            "audit",
            "verify",
            "--db",
            setup
                .home()
                .join("data/signoff/signoff.db")
                .to_str()
                .unwrap(),
        ],
    );
    assert_eq!(
        verified.status.code(),
        Some(0),
        "{}",
        text(&verified.stderr)
    );
}
