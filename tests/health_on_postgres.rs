//! `/health` as a load balancer sees it, on a real `signoff serve` on
//! PostgreSQL: 200 while the instance can serve, 503 naming the failing check
//! when it cannot hear the fleet's commits (its streams would fall behind) or
//! cannot read the database, and 200 again once it has recovered by itself.
//!
//! The instance runs as a role of its own, so the test can stop it connecting
//! (`ALTER ROLE ... NOLOGIN`) and end its sessions, as a database that goes
//! away for this instance alone would. Needs PostgreSQL
//! (`SIGNOFF_TEST_PG_URL`) and the right to create roles there; says SKIPPED
//! without the variable, or when that server does not let the new role in.
//!
//! Another instance reaches the database through a relay that silences its
//! listening connection without closing it, as a middlebox can (needs the
//! test URL to name a TCP host).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use common::backend::{
    Schema, current_test, postgres_url_or_skip, run_sql_while_dropping, say_skipped,
};
use common::{HealthAnswer, ServeProcess};
use serde_json::Map;
use serde_json::{Value, json};
use signoff::bench::{with_parameter, with_search_path};
use signoff::client::Client;
use signoff::store::postgres::execute_batch;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long an instance may take to notice a change and report it: its
/// listener reconnects within 5 s, and a health check answers within 2 s.
const NOTICE_WITHIN: Duration = Duration::from_secs(30);

/// A login role of the test's own, which owns the schema the instance uses;
/// dropped with it when the test ends.
struct OwnRole {
    base_url: String,
    name: String,
    password: String,
    schema: Option<Schema>,
}

impl OwnRole {
    /// `None` (after saying why) without a test server, or when it will not
    /// let the role in.
    async fn create_or_skip() -> Option<OwnRole> {
        let base_url = postgres_url_or_skip(&current_test())?;
        let name = format!(
            "signoff_health_{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        let schema = Schema::create(&base_url).await;
        let role = OwnRole {
            base_url,
            name,
            // For a server that asks for one; one that trusts the connection
            // ignores it.
            password: uuid::Uuid::new_v4().simple().to_string(),
            schema: Some(schema),
        };
        role.as_admin(&format!(
            "SET password_encryption = 'scram-sha-256';
             CREATE ROLE {name} LOGIN PASSWORD '{password}';
             ALTER SCHEMA {schema} OWNER TO {name}",
            name = role.name,
            password = role.password,
            schema = role.schema_name()
        ))
        .await;
        let url = role.url();
        if let Err(err) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await {
            say_skipped(
                &current_test(),
                &format!("the test PostgreSQL server does not let a new role in: {err}"),
            );
            return None;
        }
        Some(role)
    }

    fn schema_name(&self) -> &str {
        &self
            .schema
            .as_ref()
            .expect("the schema lives as long as the role")
            .name
    }

    /// The URL signoff is given: the test server's, as the role (with its
    /// password), in its schema, without TLS.
    fn url(&self) -> String {
        let mut url = url::Url::parse(&self.base_url).expect("a postgres:// URL");
        url.set_username(&self.name).expect("a URL with a host");
        url.set_password(Some(&self.password))
            .expect("a URL with a host");
        let url = with_parameter(url.as_str(), "sslmode=disable");
        with_search_path(&url, self.schema_name())
    }

    async fn as_admin(&self, sql: &str) {
        execute_batch(&self.base_url, sql)
            .await
            .unwrap_or_else(|err| panic!("{sql}: {err}"));
    }

    /// Lets the role connect again, or not.
    async fn allow_login(&self, allowed: bool) {
        let login = if allowed { "LOGIN" } else { "NOLOGIN" };
        self.as_admin(&format!("ALTER ROLE {} {login}", self.name))
            .await;
    }

    /// Ends the role's sessions whose `application_name` is like `pattern`.
    async fn end_sessions(&self, pattern: &str) {
        self.as_admin(&format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE usename = '{}' AND application_name LIKE '{pattern}'",
            self.name
        ))
        .await;
    }
}

impl Drop for OwnRole {
    fn drop(&mut self) {
        // The schema (and so everything the role owns) goes first.
        drop(self.schema.take());
        run_sql_while_dropping(
            &self.base_url,
            &format!("DROP ROLE IF EXISTS {}", self.name),
        );
    }
}

/// What `/health` says of each check when all pass.
fn all_ok() -> Value {
    json!({
        "database": "ok",
        "writer": "ok",
        "live_feed": "ok",
        "scheduler": "ok",
        "notifier": "ok",
        "shutdown": "ok",
    })
}

#[tokio::test]
async fn health_fails_while_the_instance_cannot_hear_the_fleet_or_read_the_database() {
    let Some(role) = OwnRole::create_or_skip().await else {
        return;
    };
    let home = tempfile::tempdir().unwrap();
    let url = role.url();
    let instance = ServeProcess::started(home.path(), &["--db", &url]).await;
    let HealthAnswer { status, body, .. } = instance.health().await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["checks"], all_ok());
    // A task, and a stream following it on this instance.
    let admin = Client::new(&instance.url, &instance.admin_key()).unwrap();
    let (intent_id, mut stream) = common::followed_task(&admin, "decided unheard").await;

    // The listener's session ends and cannot come back: the instance's streams
    // fall behind, so a load balancer must send its clients elsewhere.
    role.allow_login(false).await;
    role.end_sessions("% listener").await;
    // (The pool keeps the sessions it has, so the database still answers,
    // though a read that needs a new session may fail now and then.)
    let HealthAnswer { status, body, .. } = instance
        .health_until("the listener is gone", NOTICE_WITHIN, |health| {
            let checks = &health.body["checks"];
            health.status == 503 && checks["live_feed"] != "ok" && checks["database"] == "ok"
        })
        .await;
    assert_eq!(body["ok"], false, "{body}");
    assert_eq!(body["storage"], "postgres");
    assert_eq!(
        body["checks"]["database"], "ok",
        "the pool still reads: {body}"
    );
    assert_eq!(body["checks"]["writer"], "ok", "{body}");
    let live_feed = body["checks"]["live_feed"].as_str().unwrap_or_default();
    assert!(live_feed.contains("not listening"), "{body}");
    // The error envelope, as on every failure, without the database's details.
    assert_eq!(body["error"]["code"], "unavailable", "{body}");
    let detail = body["detail"].as_str().unwrap_or_default();
    assert!(detail.starts_with("live_feed: not listening"), "{body}");
    assert!(
        !detail.contains(&role.name),
        "no database details for anyone to read: {body}"
    );
    assert_eq!(status, 503);

    // A decision made meanwhile through this instance (its writer still has
    // its connection) reaches the open stream all the same, late: the feed
    // publishes from the database between its tries to listen again.
    admin
        .decide(&intent_id, "approved", Some("while unheard"), Map::new())
        .await
        .unwrap();
    let decided = common::terminal_event(
        &mut stream,
        NOTICE_WITHIN,
        "the decision, while the instance does not listen",
    )
    .await;
    assert_eq!(decided.intent_id, intent_id);
    let body = instance.health().await.body;
    assert_ne!(
        body["checks"]["live_feed"], "ok",
        "still not listening: {body}"
    );

    // Every other session ends too: now nothing reads the database.
    role.end_sessions("signoff%").await;
    instance
        .health_until("the pool is gone", NOTICE_WITHIN, |health| {
            health.status == 503 && health.body["checks"]["database"] == "cannot read the database"
        })
        .await;
    // The reason is in the log, written before the answer.
    assert!(
        instance
            .log()
            .contains("health check: cannot read the database: "),
        "the reason is not in the log: {}",
        instance.log()
    );

    // The database lets the instance in again: it recovers by itself.
    role.allow_login(true).await;
    let body = instance
        .health_until("recovery", NOTICE_WITHIN, |health| health.status == 200)
        .await
        .body;
    assert_eq!(body["checks"], all_ok());
    assert!(body.get("error").is_none(), "{body}");
    // And it serves: a write goes through its writer, which reconnects.
    let admin = Client::new(&instance.url, &instance.admin_key()).unwrap();
    let created = admin
        .create_intent(
            &common::task_intent(json!({"title": "after recovery"})),
            None,
        )
        .await;
    assert!(created.is_ok(), "a write after recovery: {created:?}");
}

/// A TCP relay to PostgreSQL that can silence the instance's listening
/// connections (told apart by the `application_name` in their start-up
/// message) as a middlebox might: a silenced connection stays open, what
/// either side sends is read and dropped, and nothing is passed on, so TCP
/// keepalives are answered and neither side sees the connection fail.
struct SilencingProxy {
    port: u16,
    silencing: Arc<AtomicBool>,
    listeners_seen: Arc<AtomicUsize>,
}

impl SilencingProxy {
    async fn start(upstream: (String, u16)) -> SilencingProxy {
        let relay = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let proxy = SilencingProxy {
            port: relay.local_addr().unwrap().port(),
            silencing: Arc::new(AtomicBool::new(false)),
            listeners_seen: Arc::new(AtomicUsize::new(0)),
        };
        let (silencing, listeners_seen) = (proxy.silencing.clone(), proxy.listeners_seen.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = relay.accept().await {
                let upstream = upstream.clone();
                let (silencing, listeners_seen) = (silencing.clone(), listeners_seen.clone());
                tokio::spawn(async move {
                    let server = tokio::net::TcpStream::connect(upstream).await.unwrap();
                    let mut startup = vec![0; 1024];
                    let (mut client_reads, client_writes) = client.into_split();
                    let read = client_reads.read(&mut startup).await.unwrap_or(0);
                    startup.truncate(read);
                    let listening = startup
                        .windows(LISTENER_NAME.len())
                        .any(|window| window == LISTENER_NAME);
                    if listening {
                        listeners_seen.fetch_add(1, Ordering::SeqCst);
                    }
                    let silenced = Arc::new(AtomicBool::new(false));
                    let hear = move || {
                        if listening && silencing.load(Ordering::SeqCst) {
                            // Once silenced, for good.
                            silenced.store(true, Ordering::SeqCst);
                        }
                        !silenced.load(Ordering::SeqCst)
                    };
                    let (server_reads, mut server_writes) = server.into_split();
                    if hear() {
                        let _ = server_writes.write_all(&startup).await;
                    }
                    tokio::spawn(pass_on(server_reads, client_writes, hear.clone()));
                    pass_on(client_reads, server_writes, hear).await;
                });
            }
        });
        proxy
    }

    /// Silences the listening connections open now and those opened while
    /// this lasts; `false` lets new ones through again.
    fn silence_listeners(&self, silenced: bool) {
        self.silencing.store(silenced, Ordering::SeqCst);
    }
}

/// How a listening session names itself in its start-up message.
const LISTENER_NAME: &[u8] = b"signoff listener";

/// Copies `from` to `to` while `hear()`, and reads and drops after that.
async fn pass_on(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    hear: impl Fn() -> bool,
) {
    let mut buffer = vec![0; 64 * 1024];
    loop {
        match from.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(read) if hear() => {
                if to.write_all(&buffer[..read]).await.is_err() {
                    return;
                }
            }
            Ok(_) => {}
        }
    }
}

#[tokio::test]
async fn a_listening_connection_a_middlebox_silences_is_found_and_replaced() {
    let Some(base_url) = postgres_url_or_skip(&current_test()) else {
        return;
    };
    let parsed = url::Url::parse(&base_url).expect("a postgres:// URL");
    let port = parsed.port().unwrap_or(5432);
    let host = parsed.host_str().unwrap_or_default();
    if host.is_empty() || host.starts_with(['%', '/', '[']) || parsed.query().is_some() {
        return say_skipped(
            &current_test(),
            "the relay needs a test URL naming an IPv4 host or a name, without parameters",
        );
    }
    let proxy = SilencingProxy::start((host.to_string(), port)).await;
    let schema = Schema::create(&base_url).await;
    let mut url = parsed.clone();
    url.set_host(Some("127.0.0.1")).unwrap();
    url.set_port(Some(proxy.port)).unwrap();
    let url = with_search_path(
        &with_parameter(url.as_str(), "sslmode=disable"),
        &schema.name,
    );
    let home = tempfile::tempdir().unwrap();
    let instance =
        ServeProcess::started(home.path(), &["--db", &url, "--pg-connect-timeout", "2"]).await;
    assert_eq!(instance.health().await.body["checks"], all_ok());
    assert_eq!(proxy.listeners_seen.load(Ordering::SeqCst), 1);
    let admin = Client::new(&instance.url, &instance.admin_key()).unwrap();
    let (intent_id, mut stream) = common::followed_task(&admin, "decided unheard").await;

    // The listening connection goes quiet, and so does every new one: TCP
    // sees nothing wrong, so only asking the connection finds it.
    proxy.silence_listeners(true);
    let HealthAnswer { body, .. } = instance
        .health_until("the listener is silenced", NOTICE_WITHIN, |health| {
            health.status == 503 && health.body["checks"]["live_feed"] != "ok"
        })
        .await;
    assert_eq!(body["checks"]["database"], "ok", "{body}");
    assert!(
        instance
            .log()
            .contains("the PostgreSQL listening connection does not answer (storage error: no answer within 3s)"),
        "{}",
        instance.log()
    );
    // The streams move on from the database meanwhile.
    admin
        .decide(&intent_id, "approved", Some("while silenced"), Map::new())
        .await
        .unwrap();
    let decided =
        common::terminal_event(&mut stream, NOTICE_WITHIN, "the decision, while silenced").await;
    assert_eq!(decided.intent_id, intent_id);
    // New listening connections, which hang at their start-up, give up in
    // time (the connect timeout covers the login, not only the socket).
    assert!(
        instance.log().contains("no answer within 2s"),
        "{}",
        instance.log()
    );

    // New connections get through again: the instance listens on one.
    proxy.silence_listeners(false);
    let HealthAnswer { body, .. } = instance
        .health_until("listening again", NOTICE_WITHIN, |health| {
            health.status == 200
        })
        .await;
    assert_eq!(body["checks"], all_ok());
    assert!(proxy.listeners_seen.load(Ordering::SeqCst) >= 3);
    assert!(
        instance
            .log()
            .contains("listening for other instances' commits again"),
        "{}",
        instance.log()
    );
}
