//! The PostgreSQL writer's connection breaks after COMMIT reached the server
//! but before the server's answer came back. The batch may well have been
//! kept, and then its writers must hear that it was: a reviewer told "failed"
//! for a decision that stands would retry and be told the task is already
//! decided. A proxy between `signoff serve` and PostgreSQL produces exactly that
//! break: it passes the COMMIT on, holds back everything the server answers
//! from then on, and closes the connection once the server has confirmed it.
//! Then, as a database restarting would, it refuses new connections for a
//! moment, so the writer has to ask again before it can tell.
//!
//! Needs PostgreSQL (`SIGNOFF_TEST_PG_URL`); says SKIPPED without it.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::ServeProcess;
use common::backend::Schema;
use serde_json::{Map, json};
use signoff::client::{Client, ClientError};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How signoff's writer opens its transactions, which tells its connection
/// from the pool's.
const WRITER_BEGINS: &[u8] = b"BEGIN ISOLATION LEVEL READ COMMITTED\0";
/// `COMMIT` sent as a simple query: type `Q`, length 11, the text and its NUL.
const COMMIT_QUERY: &[u8] = b"Q\0\0\0\x0bCOMMIT\0";
/// The server's confirmation: CommandComplete (`C`, length 11) tagged `COMMIT`.
const COMMIT_DONE: &[u8] = b"C\0\0\0\x0bCOMMIT\0";

/// How long the proxy refuses new connections after a cut.
const REFUSED_FOR: Duration = Duration::from_secs(2);

/// Relays connections to PostgreSQL; when armed, cuts the writer's connection
/// at its next COMMIT as described in the module docs.
struct CuttingProxy {
    port: u16,
    armed: Arc<AtomicBool>,
    cuts: Arc<AtomicUsize>,
}

/// Until when the proxy refuses new connections.
type RefusedUntil = Arc<Mutex<Option<Instant>>>;

impl CuttingProxy {
    async fn start(upstream: String) -> CuttingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("address").port();
        let armed = Arc::new(AtomicBool::new(false));
        let cuts = Arc::new(AtomicUsize::new(0));
        let (relay_armed, relay_cuts) = (armed.clone(), cuts.clone());
        let refused_until = RefusedUntil::default();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let refused = refused_until
                    .lock()
                    .unwrap()
                    .is_some_and(|until| Instant::now() < until);
                if refused {
                    // Closed at once, as by a database that is not up yet.
                    drop(client);
                    continue;
                }
                let server = TcpStream::connect(&upstream)
                    .await
                    .expect("reach PostgreSQL");
                tokio::spawn(relay(
                    client,
                    server,
                    relay_armed.clone(),
                    relay_cuts.clone(),
                    refused_until.clone(),
                ));
            }
        });
        CuttingProxy { port, armed, cuts }
    }
}

/// Looks for a pattern in a byte stream that arrives in pieces, across pieces
/// too, and only in what is new: it keeps less of the past than a whole match.
struct Watch {
    pattern: &'static [u8],
    recent: Vec<u8>,
}

impl Watch {
    fn new(pattern: &'static [u8]) -> Watch {
        Watch {
            pattern,
            recent: Vec::new(),
        }
    }

    /// Whether the pattern ends within `bytes`.
    fn seen_in(&mut self, bytes: &[u8]) -> bool {
        self.recent.extend_from_slice(bytes);
        let seen = self
            .recent
            .windows(self.pattern.len())
            .any(|window| window == self.pattern);
        let keep_from = self.recent.len().saturating_sub(self.pattern.len() - 1);
        self.recent.drain(..keep_from);
        seen
    }
}

/// Copies both ways. The writer's connection, sending COMMIT while the proxy is
/// armed, takes the arming; from then on its server's answers are held back
/// until one confirms the COMMIT, and then both sides are closed and new
/// connections refused for [`REFUSED_FOR`].
async fn relay(
    mut client: TcpStream,
    mut server: TcpStream,
    armed: Arc<AtomicBool>,
    cuts: Arc<AtomicUsize>,
    refused_until: RefusedUntil,
) {
    let (mut from_client, mut to_client) = client.split();
    let (mut from_server, mut to_server) = server.split();
    let cutting = AtomicBool::new(false);
    let upstream = async {
        let mut buffer = vec![0u8; 64 * 1024];
        let (mut begins, mut commits) = (Watch::new(WRITER_BEGINS), Watch::new(COMMIT_QUERY));
        let mut writer = false;
        loop {
            let Some(bytes) = next_bytes(&mut from_client, &mut buffer).await else {
                return;
            };
            writer = begins.seen_in(bytes) || writer;
            // Decided before passing the COMMIT on, so its answer cannot slip by.
            if commits.seen_in(bytes) && writer && armed.swap(false, Ordering::SeqCst) {
                cutting.store(true, Ordering::SeqCst);
            }
            if to_server.write_all(bytes).await.is_err() {
                return;
            }
        }
    };
    let downstream = async {
        let mut buffer = vec![0u8; 64 * 1024];
        let mut confirmed = Watch::new(COMMIT_DONE);
        loop {
            let Some(bytes) = next_bytes(&mut from_server, &mut buffer).await else {
                return;
            };
            if !cutting.load(Ordering::SeqCst) {
                if to_client.write_all(bytes).await.is_err() {
                    return;
                }
                continue;
            }
            if confirmed.seen_in(bytes) {
                *refused_until.lock().unwrap() = Some(Instant::now() + REFUSED_FOR);
                cuts.fetch_add(1, Ordering::SeqCst);
                return;
            }
        }
    };
    // Whichever direction ends first ends the connection: both sockets close.
    tokio::select! {
        _ = upstream => {}
        _ = downstream => {}
    }
}

/// The next bytes `from` sends, or `None` once it closed or failed.
async fn next_bytes<'a>(
    from: &mut (impl AsyncRead + Unpin),
    buffer: &'a mut [u8],
) -> Option<&'a [u8]> {
    match from.read(buffer).await {
        Ok(0) | Err(_) => None,
        Ok(read) => Some(&buffer[..read]),
    }
}

#[tokio::test]
async fn a_decision_kept_by_the_database_is_reported_as_kept() {
    let Some(url) = common::backend::postgres_url_or_skip(
        "commit_answer_lost::a_decision_kept_by_the_database_is_reported_as_kept",
    ) else {
        return;
    };
    let schema = Schema::create(&url).await;
    let config: tokio_postgres::Config = url.parse().expect("a PostgreSQL URL");
    let upstream = match (config.get_hosts().first(), config.get_ports().first()) {
        (Some(tokio_postgres::config::Host::Tcp(host)), port) => {
            format!("{host}:{}", port.copied().unwrap_or(5432))
        }
        _ => {
            common::backend::say_skipped(
                "commit_answer_lost",
                "the proxy needs a TCP address in the URL",
            );
            return;
        }
    };
    let proxy = CuttingProxy::start(upstream).await;
    let mut through_proxy = url::Url::parse(&schema.url()).expect("URL");
    through_proxy.set_host(Some("127.0.0.1")).expect("host");
    through_proxy.set_port(Some(proxy.port)).expect("port");
    // The proxy reads the protocol to find COMMIT, so the connection stays plain.
    through_proxy
        .query_pairs_mut()
        .append_pair("sslmode", "disable");

    let home = tempfile::tempdir().expect("home");
    let (path, db) = (home.path().to_path_buf(), through_proxy.to_string());
    let server = tokio::task::spawn_blocking(move || ServeProcess::start(&path, &["--db", &db]))
        .await
        .expect("signoff serve started");
    let (agent_key, alice_key) = server.deployer_and_alice_keys().await;
    let agent = Client::new(&server.url, &agent_key).expect("client");
    let alice = Client::new(&server.url, &alice_key).expect("client");
    let task = common::task_intent(json!({"title": "Deploy?", "task_type": "approval",
                                          "assignees": ["alice@example.com"]}));
    let create = || agent.create_intent(&task, None);

    let first = create().await.expect("created").intent_id;
    proxy.armed.store(true, Ordering::SeqCst);
    let decided = tokio::time::timeout(
        Duration::from_secs(30),
        alice.decide(&first, "approved", None, Map::new()),
    )
    .await
    .unwrap_or_else(|_| panic!("the decision is answered; log:\n{}", server.log()));
    assert_eq!(
        proxy.cuts.load(Ordering::SeqCst),
        1,
        "the decision's COMMIT was cut off from its answer"
    );
    let decided = decided.unwrap_or_else(|err| {
        panic!(
            "the database kept the decision, so it succeeded: {err}\n{}",
            server.log()
        )
    });
    assert_eq!(decided.status.as_str(), "COMPLETED");
    assert!(server.log().contains("it was kept"), "{}", server.log());
    assert!(
        server
            .log()
            .contains("cannot tell yet whether a commit was kept"),
        "the writer had to ask again: {}",
        server.log()
    );

    // Kept once: the history holds one decision, and a second one is refused.
    let history = agent.events(&first, 0).await.expect("history");
    let completions = history
        .iter()
        .filter(|event| event.event_type == "intent.completed")
        .count();
    assert_eq!(completions, 1, "{history:#?}");
    let again = alice.decide(&first, "rejected", None, Map::new()).await;
    assert!(
        matches!(again, Err(ClientError::Api { status: 409, .. })),
        "a second decision is refused as a conflict: {again:?}"
    );
    // The writer carries on over its new connection.
    let second = create().await.expect("created").intent_id;

    // A batch of inbox replies records no event; its reply at the batch's last
    // position tells that it was kept, so it is not reported failed (and then
    // sent twice by a retry).
    proxy.armed.store(true, Ordering::SeqCst);
    let reply = json!({"message": "on my way, give me ten minutes"});
    let replied = tokio::time::timeout(
        Duration::from_secs(30),
        alice.inbox_action(&second, "reply", &reply, None),
    )
    .await
    .unwrap_or_else(|_| panic!("the reply is answered; log:\n{}", server.log()));
    assert_eq!(
        proxy.cuts.load(Ordering::SeqCst),
        2,
        "the reply's COMMIT was cut off"
    );
    replied.unwrap_or_else(|err| {
        panic!(
            "the database kept the reply, so it succeeded: {err}\n{}",
            server.log()
        )
    });
    let thread = alice.inbox_thread(&second, None).await.expect("thread");
    let thread = serde_json::to_string(&thread).expect("JSON");
    assert_eq!(
        thread.matches("on my way, give me ten minutes").count(),
        1,
        "{thread}"
    );

    let decided = alice.decide(&second, "approved", None, Map::new()).await;
    assert_eq!(decided.expect("decided").status.as_str(), "COMPLETED");
}
