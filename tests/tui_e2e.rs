//! The real inbox, end to end: a real `signoff serve`, the real `signoff` binary
//! in a tmux pane driven with real keys, and agents waiting with the Rust client.

mod common;

use std::time::Duration;

use common::ServeProcess;
use common::tmux::Tmux;
use serde_json::{Value, json};
use signoff::client::{Client, WaitOptions};
use signoff::domain::Event;

struct Setup {
    server: ServeProcess,
    agent: Client,
    reviewer_key: String,
    config: String,
}

async fn setup(home: &std::path::Path) -> Setup {
    let server = ServeProcess::start(home, &[]);
    let (agent_key, reviewer_key) = server.deployer_and_alice_keys().await;
    // A short undo window keeps the test quick; the bell stays off.
    let config = home.join("inbox.toml");
    std::fs::write(
        &config,
        "[tui]\nundo_seconds = 1\nnotifications = \"off\"\n",
    )
    .unwrap();
    Setup {
        agent: Client::new(&server.url, &agent_key).unwrap(),
        server,
        reviewer_key,
        config: config.display().to_string(),
    }
}

fn inbox(home: &std::path::Path, setup: &Setup) -> Tmux {
    Tmux::start(
        home,
        &[
            "--server",
            &setup.server.url,
            "--key",
            &setup.reviewer_key,
            "--config",
            &setup.config,
        ],
        &[("NO_COLOR", "1")],
        120,
        36,
    )
}

/// Creates a task and returns its id and a handle on the agent waiting for it.
async fn ask(agent: &Client, task: Value) -> (String, tokio::task::JoinHandle<Event>) {
    let body = json!({
        "intent_type": "intent.human_task.v1",
        "correlation_id": uuid::Uuid::new_v4().to_string(),
        "payload": {"service": "api"},
        "human_task": task,
    });
    let id = agent.create_intent(&body, None).await.unwrap().intent_id;
    let waiter = {
        let (agent, id) = (agent.clone(), id.clone());
        tokio::spawn(async move {
            let options = WaitOptions {
                timeout: Some(Duration::from_secs(60)),
                ..WaitOptions::default()
            };
            agent
                .wait_for(&id, options)
                .await
                .expect("the agent resumes")
        })
    };
    (id, waiter)
}

/// Runs blocking tmux interaction off the async threads.
async fn drive<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(work).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reviewer_decides_three_task_types_with_real_keys() {
    let home = tempfile::tempdir().unwrap();
    let setup = setup(home.path()).await;
    let (_, approval) = ask(&setup.agent, json!({"title": "Deploy api 2.3.0", "task_type": "approval", "assignees": ["alice@example.com"]})).await;
    let (_, form) = ask(
        &setup.agent,
        json!({
            "title": "Launch parameters", "task_type": "form", "assignees": ["team:oncall"],
            "form_schema": {"type": "object", "required": ["replicas", "region"], "properties": {
                "replicas": {"type": "integer", "minimum": 1},
                "region": {"type": "string", "enum": ["eu-west", "us-east"]}
            }}
        }),
    )
    .await;
    let (_, review) = ask(&setup.agent, json!({"title": "Review the migration", "task_type": "review", "assignees": ["alice@example.com"]})).await;

    let tmux = inbox(home.path(), &setup);
    let tmux = drive(move || {
        tmux.wait_until("all three tasks", Duration::from_secs(20), |screen| {
            [
                "Deploy api 2.3.0",
                "Launch parameters",
                "Review the migration",
            ]
            .iter()
            .all(|t| screen.contains(t))
        });
        // The oldest task is selected: approve it with one key.
        tmux.keys(&["a"]);
        tmux.wait_for_text("Sent: approved");

        // The form: filter to it, open it, fill replicas, pick the second region, submit.
        tmux.keys(&["/"]);
        tmux.type_text("type:form");
        tmux.keys(&["Enter", "Enter", "j", "i"]);
        tmux.type_text("3");
        tmux.keys(&["Escape", "j", "l"]);
        tmux.wait_for_text("us-east");
        tmux.keys(&["Enter"]);
        tmux.wait_for_text("Sent: submitted");

        // The review: `r` asks for changes, which needs a comment, typed in insert mode.
        tmux.keys(&["Escape", "/"]);
        tmux.type_text("type:review");
        tmux.keys(&["Enter", "r"]);
        tmux.wait_for_text("needs a comment");
        tmux.keys(&["i"]);
        tmux.type_text("Please add a rollback step");
        tmux.wait_for_text("-- INSERT --");
        tmux.keys(&["Escape", "k", "Enter"]);
        tmux.wait_for_text("Sent: changes_requested");
        tmux
    })
    .await;

    let approval = approval.await.unwrap();
    assert_eq!(approval.details["result"]["outcome"], "approved");
    assert_eq!(
        approval.details["result"]["decided_by"],
        "alice@example.com"
    );
    assert_eq!(approval.details["result"]["via"], "tui");
    let form = form.await.unwrap();
    assert_eq!(form.details["result"]["outcome"], "submitted");
    assert_eq!(form.details["data"]["replicas"], 3);
    assert_eq!(form.details["data"]["region"], "us-east");
    let review = review.await.unwrap();
    assert_eq!(review.details["result"]["outcome"], "changes_requested");
    assert_eq!(
        review.details["result"]["comment"],
        "Please add a rollback step"
    );
    drop(tmux);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_inbox_survives_the_server_going_away() {
    let home = tempfile::tempdir().unwrap();
    let mut setup = setup(home.path()).await;
    ask(
        &setup.agent,
        json!({"title": "Before the outage", "assignees": ["alice@example.com"]}),
    )
    .await;
    let tmux = inbox(home.path(), &setup);
    let tmux = drive(move || {
        tmux.wait_for_text("Before the outage");
        tmux.wait_for_text("● online");
        tmux
    })
    .await;

    setup.server.kill9();
    let tmux = drive(move || {
        let screen = tmux.wait_for_text("OFFLINE");
        assert!(screen.contains("reconnecting in"), "{screen}");
        assert!(
            screen.contains("Before the outage"),
            "the cached list stays readable:\n{screen}"
        );
        // Deciding while offline is refused, and says so.
        tmux.keys(&["Enter", "Enter"]);
        tmux.wait_for_text("Offline: decisions are disabled");
        tmux.keys(&["Escape"]);
        tmux
    })
    .await;

    setup.server.restart();
    ask(
        &setup.agent,
        json!({"title": "After the outage", "assignees": ["alice@example.com"]}),
    )
    .await;
    let tmux = drive(move || {
        let screen = tmux.wait_until(
            "the new task after reconnecting",
            Duration::from_secs(40),
            |screen| screen.contains("After the outage") && screen.contains("● online"),
        );
        assert!(!screen.contains("OFFLINE"), "{screen}");
        let rows = screen
            .lines()
            .filter(|line| line.contains("approve") && line.contains("Before the outage"));
        assert_eq!(
            rows.count(),
            1,
            "no duplicate row after resuming:\n{screen}"
        );
        assert!(
            !screen.contains("EXITED"),
            "the inbox never exits on its own:\n{screen}"
        );
        tmux
    })
    .await;
    drop(tmux);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_e_writes_the_comment_in_the_editor() {
    let home = tempfile::tempdir().unwrap();
    let setup = setup(home.path()).await;
    let (_, review) = ask(&setup.agent, json!({"title": "Review the runbook", "task_type": "review", "assignees": ["alice@example.com"]})).await;
    // A stand-in for $EDITOR: replaces the file with a comment, as a person would.
    let editor = home.path().join("editor.sh");
    std::fs::write(
        &editor,
        "#!/bin/sh\nprintf 'Step 4 needs a rollback.\\nOtherwise fine.\\n' > \"$1\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&editor, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let editor = editor.display().to_string();
    let tmux = Tmux::start(
        home.path(),
        &[
            "--server",
            &setup.server.url,
            "--key",
            &setup.reviewer_key,
            "--config",
            &setup.config,
        ],
        &[("NO_COLOR", "1"), ("EDITOR", &editor), ("VISUAL", "")],
        120,
        36,
    );
    let tmux = drive(move || {
        tmux.wait_for_text("Review the runbook");
        tmux.keys(&["r"]);
        tmux.wait_for_text("needs a comment");
        tmux.keys(&["C-e"]);
        tmux.wait_for_text("Step 4 needs a rollback.");
        tmux.keys(&["k", "Enter"]);
        tmux.wait_for_text("Sent: changes_requested");
        tmux
    })
    .await;
    let review = review.await.unwrap();
    assert_eq!(
        review.details["result"]["comment"],
        "Step 4 needs a rollback.\nOtherwise fine."
    );
    drop(tmux);
}

/// `signoff bench inbox` finds the inbox it started under tmux by its process
/// name, which is the binary's own name: a renamed copy (as when comparing two
/// builds) must report its real memory, not nothing.
#[test]
fn bench_inbox_measures_a_renamed_binary() {
    // A hard link, not a copy: a copy is a file open for writing, and a child
    // that another test thread forks at that moment inherits it until its own
    // exec, so running the copy can fail with "Text file busy" (ETXTBSY).
    // The link must live on the binary's file system, hence the target's tmp.
    let home = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let renamed = home.path().join("signoff-under-test");
    std::fs::hard_link(env!("CARGO_BIN_EXE_signoff"), &renamed).unwrap();
    let output = std::process::Command::new(&renamed)
        .args(["bench", "inbox", "--tasks", "20", "--runs", "1", "--json"])
        .env("HOME", home.path())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    let median = &report["median"];
    assert_eq!(median["tasks"], 20);
    let rss = median["rss_mib"].as_f64().unwrap();
    assert!(rss > 1.0, "the inbox's resident memory: {rss} MiB");
    assert!(median["first_frame_with_data_ms"].as_f64().unwrap() > 0.0);
}
