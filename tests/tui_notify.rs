//! Desktop notifications, for real: a private D-Bus session bus (`dbus-daemon
//! --session`, what `dbus-run-session` starts), a small fake
//! `org.freedesktop.Notifications` service on it, and the real inbox in tmux
//! with that bus in its environment.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::ServeProcess;
use common::tmux::Tmux;
use serde_json::json;
use signoff::client::Client;
use signoff::domain::PrincipalKind;

/// What the fake service was asked to show: (summary, body).
type Received = Arc<Mutex<Vec<(String, String)>>>;

struct FakeNotifications {
    received: Received,
}

#[zbus::interface(name = "org.freedesktop.Notifications")]
impl FakeNotifications {
    #[allow(clippy::too_many_arguments)]
    fn notify(
        &self,
        _app_name: &str,
        _replaces_id: u32,
        _app_icon: &str,
        summary: &str,
        body: &str,
        _actions: Vec<&str>,
        _hints: HashMap<&str, zbus::OwnedVariant>,
        _expire_timeout: i32,
    ) -> u32 {
        let mut received = self.received.lock().unwrap();
        received.push((summary.to_string(), body.to_string()));
        received.len() as u32
    }

    fn get_capabilities(&self) -> Vec<String> {
        vec!["body".to_string()]
    }

    fn get_server_information(&self) -> (String, String, String, String) {
        (
            "fake".into(),
            "signoff tests".into(),
            "1".into(),
            "1.2".into(),
        )
    }

    fn close_notification(&self, _id: u32) {}
}

/// A session bus of our own, stopped when dropped.
struct SessionBus {
    daemon: Child,
    address: String,
}

impl SessionBus {
    fn start() -> SessionBus {
        let mut daemon = Command::new("dbus-daemon")
            .args(["--session", "--nofork", "--print-address"])
            .stderr(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("dbus-daemon is needed for this test (apt-get install dbus-daemon)");
        let mut address = String::new();
        BufReader::new(daemon.stdout.take().unwrap())
            .read_line(&mut address)
            .unwrap();
        SessionBus {
            daemon,
            address: address.trim().to_string(),
        }
    }
}

impl Drop for SessionBus {
    fn drop(&mut self) {
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
    }
}

async fn wait_for_notification(received: &Received, needle: &str) -> (String, String) {
    let started = Instant::now();
    loop {
        if let Some(found) = received
            .lock()
            .unwrap()
            .iter()
            .find(|(summary, _)| summary.contains(needle))
        {
            return found.clone();
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no notification mentioning `{needle}`; got {:?}",
            received.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_tasks_reminders_and_escalations_raise_desktop_notifications() {
    let bus = SessionBus::start();
    let received = Received::default();
    let _service = zbus::connection::Builder::address(bus.address.as_str())
        .name("org.freedesktop.Notifications")
        .serve_at(
            "/org/freedesktop/Notifications",
            FakeNotifications {
                received: received.clone(),
            },
        )
        .build()
        .await
        .expect("the fake notification service is on the bus");

    let home = tempfile::tempdir().unwrap();
    let server = ServeProcess::start(home.path(), &[]);
    let admin = Client::new(&server.url, &server.admin_key()).unwrap();
    let agent = admin
        .create_key(PrincipalKind::Agent, "agent://acme/deployer", &[], None)
        .await
        .unwrap();
    let reviewer = admin
        .create_key(PrincipalKind::Reviewer, "alice@example.com", &[], None)
        .await
        .unwrap();
    let config = home.path().join("inbox.toml");
    std::fs::write(&config, "[tui]\nnotifications = \"auto\"\n").unwrap();
    let config = config.display().to_string();
    let url = server.url.clone();
    let tmux = tokio::task::spawn_blocking(move || {
        let tmux = Tmux::start(
            home.path(),
            &[
                "--server",
                &url,
                "--key",
                &reviewer.key,
                "--config",
                &config,
            ],
            &[
                ("DBUS_SESSION_BUS_ADDRESS", &bus.address),
                ("SSH_CONNECTION", ""),
                ("SSH_TTY", ""),
            ],
            100,
            30,
        );
        tmux.wait_for_text("● online");
        (tmux, home, bus)
    })
    .await
    .unwrap();

    let agent = Client::new(&server.url, &agent.key).unwrap();
    let task = |title: &str, assignee: &str, lifecycle: serde_json::Value| {
        json!({
            "intent_type": "intent.human_task.v1",
            "correlation_id": uuid::Uuid::new_v4().to_string(),
            "human_task": {"title": title, "assignees": [assignee]},
            "lifecycle": lifecycle,
        })
    };
    let reminded = task(
        "Rotate the TLS certificates",
        "alice@example.com",
        json!({"remind": {"after_seconds": 2, "max": 1}}),
    );
    agent.create_intent(&reminded, None).await.unwrap();
    let (summary, body) = wait_for_notification(&received, "New task: Rotate").await;
    assert_eq!(summary, "New task: Rotate the TLS certificates");
    assert_eq!(body, "from agent://acme/deployer");

    let (summary, body) = wait_for_notification(&received, "Reminder: Rotate").await;
    assert_eq!(summary, "Reminder: Rotate the TLS certificates");
    assert!(body.contains("reminder 1"), "{body}");

    // Someone else's task climbs its ladder to alice.
    let escalated = task(
        "Approve the DNS change",
        "bob@example.com",
        json!({"remind": {"max": 0}, "escalate": [{"after_seconds": 1, "to": "alice@example.com"}]}),
    );
    agent.create_intent(&escalated, None).await.unwrap();
    let (summary, _) = wait_for_notification(&received, "Escalated to you").await;
    assert_eq!(summary, "Escalated to you: Approve the DNS change");
    drop(tmux);
}
