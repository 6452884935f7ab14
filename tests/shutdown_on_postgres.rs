//! A stop that cannot finish: a real `signoff serve` on PostgreSQL whose
//! writer waits for the fleet's chain head, which the test holds, so a write
//! stays open while the instance stops. It gives up after 10 s, or at once on
//! another signal, and exits with code 3; the write never half happens.
//! Needs PostgreSQL (`SIGNOFF_TEST_PG_URL`); says SKIPPED without it.

mod common;

use std::time::Duration;

use common::ServeProcess;
use common::audit_support::eventually;
use common::backend::{Schema, current_test, postgres_url_or_skip};
use serde_json::json;
use signoff::client::Client;

/// How long the instance may take to exit: its stop gives up after 10 s.
const EXITS_WITHIN: Duration = Duration::from_secs(60);

/// A session of the test's own that holds the chain head, as a writer of
/// another instance would while it commits: every write waits behind it.
struct HeldChainHead {
    url: String,
    client: tokio_postgres::Client,
}

impl HeldChainHead {
    async fn take(url: &str) -> HeldChainHead {
        let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .expect("connect to the test schema");
        tokio::spawn(connection);
        client
            .batch_execute("BEGIN; SELECT cursor FROM chain_head WHERE id = 1 FOR UPDATE")
            .await
            .expect("lock the chain head");
        HeldChainHead {
            url: url.to_string(),
            client,
        }
    }

    /// Waits until some session waits for the chain head.
    async fn until_a_write_waits(&self) {
        let holder: i32 = self
            .client
            .query_one("SELECT pg_backend_pid()", &[])
            .await
            .unwrap()
            .get(0);
        // Asked from another session: this one is inside a transaction, whose
        // view of pg_stat_activity stays as it first looked.
        let (asking, connection) = tokio_postgres::connect(&self.url, tokio_postgres::NoTls)
            .await
            .expect("connect");
        tokio::spawn(connection);
        let sql = format!(
            "SELECT count(*) FROM pg_stat_activity WHERE {holder} = ANY(pg_blocking_pids(pid))"
        );
        eventually(
            "a write waiting for the chain head",
            EXITS_WITHIN,
            async || {
                let waiting: i64 = asking.query_one(&sql, &[]).await.unwrap().get(0);
                if waiting > 0 {
                    Ok(())
                } else {
                    Err("no session waits".to_string())
                }
            },
        )
        .await;
    }
}

/// An instance stopping while a write of its waits behind the chain head,
/// which the test holds.
struct Stopping {
    instance: ServeProcess,
    /// Whether the write was reported done.
    writing: tokio::task::JoinHandle<bool>,
    held: HeldChainHead,
    schema: Schema,
    _home: tempfile::TempDir,
}

impl Stopping {
    /// Starts an instance on a schema of its own, holds the chain head, sends
    /// a write that waits behind it and then SIGTERM, and returns once the
    /// instance has begun to stop; `None` without PostgreSQL.
    async fn begin() -> Option<Stopping> {
        let base_url = postgres_url_or_skip(&current_test())?;
        let schema = Schema::create(&base_url).await;
        let home = tempfile::tempdir().unwrap();
        let url = schema.url();
        let instance = ServeProcess::started(home.path(), &["--db", &url]).await;
        let held = HeldChainHead::take(&schema.url()).await;
        let admin = Client::new(&instance.url, &instance.admin_key()).unwrap();
        let writing = tokio::spawn(async move {
            admin
                .create_intent(&common::task_intent(json!({"title": "cut off"})), None)
                .await
                .is_ok()
        });
        held.until_a_write_waits().await;
        instance.send_signal("TERM");
        instance.logged("shutting down", EXITS_WITHIN).await;
        Some(Stopping {
            instance,
            writing,
            held,
            schema,
            _home: home,
        })
    }
}

#[tokio::test]
async fn a_stop_held_up_by_an_open_write_exits_at_once_on_another_signal() {
    let Some(stopping) = Stopping::begin().await else {
        return;
    };
    let signalled = std::time::Instant::now();
    stopping.instance.send_signal("TERM");
    let (status, log) = stopping.instance.exit(EXITS_WITHIN).await;
    assert_eq!(status.code(), Some(3), "{log}");
    assert!(
        signalled.elapsed() < Duration::from_secs(10),
        "it waited for the stop's limit instead: {log}"
    );
    assert!(
        log.contains("another signal: exiting without waiting for open requests or queued writes"),
        "{log}"
    );
    assert!(
        !stopping.writing.await.unwrap(),
        "the cut-off write is not reported as done"
    );
    nothing_half_written(stopping.held, &stopping.schema).await;
}

#[tokio::test]
async fn a_stop_held_up_by_an_open_write_gives_up_after_ten_seconds() {
    let Some(stopping) = Stopping::begin().await else {
        return;
    };
    let (status, log) = stopping.instance.exit(EXITS_WITHIN).await;
    assert_eq!(status.code(), Some(3), "{log}");
    assert!(
        log.contains("open requests or queued writes did not finish within 10s; exiting"),
        "{log}"
    );
    assert!(!stopping.writing.await.unwrap());
    nothing_half_written(stopping.held, &stopping.schema).await;
}

/// Once the chain head is free again, the schema holds no trace of the
/// cut-off write, and its audit chain verifies.
async fn nothing_half_written(held: HeldChainHead, schema: &Schema) {
    held.client.batch_execute("ROLLBACK").await.unwrap();
    let intents: i64 = held
        .client
        .query_one("SELECT count(*) FROM intents", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(intents, 0, "the cut-off write left an intent");
    let home = tempfile::tempdir().unwrap();
    let verified = common::signoff(home.path(), &["audit", "verify", "--db", &schema.url()]);
    assert!(
        verified.status.success(),
        "{}",
        String::from_utf8_lossy(&verified.stderr)
    );
}
