//! The official Python SDK (`pip install axme==0.2.*`, unmodified) against a real
//! `signoff serve` child process. Each test starts its own server, creates keys
//! with the `signoff keys create` CLI as an operator would, and runs one script
//! from tests/compat; the script asserts the behaviour and exits non-zero if the
//! SDK and the server disagree.

mod common;

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{ServeProcess, compat_dir, sdk_python, signoff};
use serde_json::Value;

const AGENT: &str = "agent://acme/deployer";
/// Multi-segment on purpose: `listen` puts it in the URL path unescaped.
const WORKER: &str = "agent://acme/build/worker";
const REVIEWER: &str = "alice@example.com";
/// A safety net against a hung script; each script has tighter timeouts of its own.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(240);

/// `signoff keys create ... --json`, returning the secret.
fn cli_key(home: &Path, who: &[&str]) -> String {
    let mut args = vec!["keys", "create"];
    args.extend_from_slice(who);
    args.push("--json");
    let output = signoff(home, &args);
    assert!(
        output.status.success(),
        "signoff {args:?} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let created: Value =
        serde_json::from_slice(&output.stdout).expect("keys create --json prints JSON");
    created["key"]
        .as_str()
        .expect("the JSON has the key")
        .to_string()
}

/// Reads a child's pipe to the end on its own thread, so a chatty script never
/// blocks on a full pipe while we wait for it.
fn drain(pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = String::new();
        let mut pipe = pipe;
        let _ = pipe.read_to_string(&mut text);
        text
    })
}

/// Runs `tests/compat/<script>` with the SDK's Python against a fresh server,
/// with an agent, a worker agent and a reviewer key in its environment, and
/// fails the test (showing the script's output and the server log) unless the
/// script exits 0.
fn run_compat_script(script: &str) {
    let python = sdk_python();
    let home = tempfile::tempdir().expect("temp dir");
    let server = ServeProcess::start(home.path(), &[]);
    let environment = [
        ("SIGNOFF_URL", server.url.clone()),
        ("AGENT_ADDRESS", AGENT.to_string()),
        ("AGENT_KEY", cli_key(home.path(), &["--agent", AGENT])),
        ("WORKER_ADDRESS", WORKER.to_string()),
        ("WORKER_KEY", cli_key(home.path(), &["--agent", WORKER])),
        ("REVIEWER_ID", REVIEWER.to_string()),
        (
            "REVIEWER_KEY",
            cli_key(home.path(), &["--reviewer", REVIEWER, "--team", "oncall"]),
        ),
    ];

    let mut child = Command::new(&python)
        .arg(compat_dir().join(script))
        .current_dir(compat_dir())
        .envs(environment)
        .env("PYTHONUNBUFFERED", "1")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the SDK's python");
    let stdout = drain(child.stdout.take().expect("stdout"));
    let stderr = drain(child.stderr.take().expect("stderr"));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the script") {
            break Some(status);
        }
        if started.elapsed() > SCRIPT_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let (stdout, stderr) = (
        stdout.join().unwrap_or_default(),
        stderr.join().unwrap_or_default(),
    );
    match status {
        Some(status) if status.success() => println!("{script}:\n{stdout}"),
        _ => panic!(
            "{script} failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}\n--- server log\n{}",
            status.map_or_else(
                || format!("killed after {SCRIPT_TIMEOUT:?}"),
                |status| status.to_string()
            ),
            server.log()
        ),
    }
}

#[test]
fn send_intent_then_wait_for_returns_a_decision_made_by_another_process() {
    run_compat_script("send_and_wait.py");
}

#[test]
fn observe_yields_every_lifecycle_event_in_seq_order() {
    run_compat_script("observe.py");
}

#[test]
fn a_worker_listens_and_resumes_and_the_sender_sees_its_result() {
    run_compat_script("listen_resume.py");
}

#[test]
fn create_intent_with_an_idempotency_key_is_safe_to_retry() {
    run_compat_script("idempotent_create.py");
}

#[test]
fn every_task_type_is_decided_with_its_rules_over_http() {
    run_compat_script("all_task_types.py");
}

#[test]
fn the_documented_approval_pattern_reads_approvals_and_rejections() {
    run_compat_script("approval_pattern.py");
}

#[test]
fn an_approval_chain_runs_through_the_sdks_scenario_calls() {
    run_compat_script("scenario_chain.py");
}

#[test]
fn every_timeout_fallback_reaches_a_waiting_sdk_agent_as_a_system_decision() {
    run_compat_script("timeout_fallbacks.py");
}
