//! Stopping a real `signoff serve`: with a drain (`--drain`, or
//! `server.drain_seconds`), a stop signal first makes `/health` fail while the
//! instance goes on serving, so a load balancer sends new clients elsewhere
//! before the port closes; another signal ends the drain at once.

mod common;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use common::{HealthAnswer, ServeProcess};
use serde_json::{Map, json};
use signoff::client::Client;

/// Long enough that nothing in the first test can outlast it: that test ends
/// the drain with a second signal, and must see the process exit well before.
const LONG_DRAIN: &str = "600";

/// How long a stopping instance may take to exit: its shutdown gives open
/// requests 10 s.
const EXITS_WITHIN: Duration = Duration::from_secs(60);

/// Sends one HTTP/1.1 request (which keeps its connection open unless told
/// otherwise) and reads until the instance closes the connection; fails if
/// it keeps it open.
fn one_request_on_a_kept_alive_connection(port: u16, key: &str) -> String {
    let mut connection = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    connection
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    write!(
        connection,
        "GET /v1/capabilities HTTP/1.1\r\nHost: signoff\r\nAuthorization: Bearer {key}\r\n\r\n"
    )
    .unwrap();
    let mut reply = Vec::new();
    connection
        .read_to_end(&mut reply)
        .expect("the instance closes the connection after its answer");
    String::from_utf8_lossy(&reply).to_lowercase()
}

#[tokio::test]
async fn a_draining_instance_fails_health_but_serves_until_another_signal() {
    let home = tempfile::tempdir().unwrap();
    let instance = ServeProcess::started(home.path(), &["--drain", LONG_DRAIN]).await;
    let HealthAnswer {
        status,
        connection,
        body,
    } = instance.health().await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["checks"]["shutdown"], "ok", "{body}");
    assert_ne!(connection.as_deref(), Some("close"));

    // A task, and a stream following it, opened before the signal.
    let admin = Client::new(&instance.url, &instance.admin_key()).unwrap();
    let (intent_id, mut stream) = common::followed_task(&admin, "drained").await;

    instance.send_signal("TERM");
    let HealthAnswer {
        connection, body, ..
    } = instance
        .health_until("draining", EXITS_WITHIN, |health| {
            health.body["checks"]["shutdown"] != "ok"
        })
        .await;
    assert_eq!(body["ok"], false, "{body}");
    assert_eq!(
        body["checks"]["shutdown"], "this instance is shutting down",
        "{body}"
    );
    assert_eq!(
        body["checks"]["database"], "ok",
        "only shutdown fails: {body}"
    );
    assert_eq!(body["error"]["code"], "unavailable", "{body}");
    assert_eq!(
        body["detail"], "shutdown: this instance is shutting down",
        "{body}"
    );
    assert_eq!(
        connection.as_deref(),
        Some("close"),
        "clients holding a connection open must come back through the load balancer"
    );

    // Still serving: a decision, a new task, and the open stream hears the
    // decision.
    admin
        .decide(&intent_id, "approved", Some("while draining"), Map::new())
        .await
        .expect("a draining instance still takes decisions");
    let decided =
        common::terminal_event(&mut stream, EXITS_WITHIN, "the decision, while draining").await;
    assert_eq!(decided.intent_id, intent_id);
    let created = admin
        .create_intent(&common::task_intent(json!({"title": "late"})), None)
        .await;
    assert!(
        created.is_ok(),
        "a draining instance takes writes: {created:?}"
    );

    // Every response closes its connection, so a client holding one open
    // comes back through the load balancer.
    let (port, key) = (instance.port, instance.admin_key());
    let reply =
        tokio::task::spawn_blocking(move || one_request_on_a_kept_alive_connection(port, &key))
            .await
            .unwrap();
    assert!(reply.starts_with("http/1.1 200"), "{reply}");
    assert!(reply.contains("connection: close\r\n"), "{reply}");
    assert!(
        reply.contains("\"capabilities\""),
        "the whole answer: {reply}"
    );

    // Another signal (Ctrl-C this time) ends the drain at once, cleanly, long
    // before its end.
    instance.send_signal("INT");
    let (status, log) = instance.exit(EXITS_WITHIN).await;
    assert!(status.success(), "{status:?}; log:\n{log}");
    for line in [
        "draining for 600s",
        "another signal: the drain ends now",
        "stopped",
    ] {
        assert!(log.contains(line), "no {line:?} in the log:\n{log}");
    }
    // The decision was kept: a new instance on the same database shows it.
    let instance = ServeProcess::started(home.path(), &[]).await;
    let admin = Client::new(&instance.url, &instance.admin_key()).unwrap();
    let events = admin.events(&intent_id, 0).await.unwrap();
    assert!(
        events.last().is_some_and(|event| event.is_terminal()),
        "{events:?}"
    );
}

#[tokio::test]
async fn a_drain_from_the_config_file_ends_by_itself() {
    let home = tempfile::tempdir().unwrap();
    let config = home.path().join("signoff.toml");
    std::fs::write(&config, "[server]\ndrain_seconds = 6\n").unwrap();
    let config = config.to_str().unwrap().to_string();
    let instance = ServeProcess::started(home.path(), &["--config", &config]).await;
    let signalled = Instant::now();
    instance.send_signal("TERM");
    instance
        .health_until("draining", EXITS_WITHIN, |health| {
            health.body["checks"]["shutdown"] != "ok"
        })
        .await;
    let (status, log) = instance.exit(EXITS_WITHIN).await;
    assert!(status.success(), "{status:?}; log:\n{log}");
    assert!(
        signalled.elapsed() >= Duration::from_secs(6),
        "it stopped before its drain ended"
    );
    assert!(log.contains("draining for 6s"), "{log}");
    assert!(!log.contains("another signal:"), "{log}");
    assert!(log.contains("stopped"), "{log}");
}

#[tokio::test]
async fn without_a_drain_a_signal_stops_at_once() {
    let home = tempfile::tempdir().unwrap();
    let instance = ServeProcess::started(home.path(), &[]).await;
    let HealthAnswer { status, body, .. } = instance.health().await;
    assert_eq!((status, &body["checks"]["shutdown"]), (200, &json!("ok")));
    let signalled = Instant::now();
    instance.send_signal("TERM");
    let (status, log) = instance.exit(EXITS_WITHIN).await;
    // An idle instance without a drain stops in milliseconds; this bound only
    // tells "at once" from a drain that crept in without its log line.
    assert!(
        signalled.elapsed() < Duration::from_secs(5),
        "it took {:?}",
        signalled.elapsed()
    );
    assert!(status.success(), "{status:?}; log:\n{log}");
    assert!(!log.contains("draining"), "{log}");
    assert!(log.contains("stopped"), "{log}");
}

#[tokio::test]
async fn a_signal_while_the_database_is_still_being_reached_gives_up_starting() {
    let home = tempfile::tempdir().unwrap();
    // A "database" that takes the connection and never says a word.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "postgres://signoff@127.0.0.1:{}/x?sslmode=disable",
        silent.local_addr().unwrap().port()
    );
    let instance =
        ServeProcess::start_unready(home.path(), &["--db", &url, "--pg-connect-timeout", "600"]);
    // Once it has connected, it listens for signals.
    silent.set_nonblocking(true).unwrap();
    let started = Instant::now();
    let _connection = loop {
        match silent.accept() {
            Ok((connection, _)) => break connection,
            Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {
                assert!(
                    started.elapsed() < EXITS_WITHIN,
                    "it never connected; log:\n{}",
                    instance.log()
                );
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(err) => panic!("accept: {err}"),
        }
    };
    instance.send_signal("TERM");
    let (status, log) = instance.exit(EXITS_WITHIN).await;
    assert!(status.success(), "{status:?}: {log}");
    assert!(log.contains("stopped before the server started"), "{log}");
}
