//! Shared by the audit and restart tests: a `signoff serve` child on a database
//! file the test knows, keys for its principals, the `signoff audit` CLI, and
//! direct SQLite access to read (or tamper with) the stored event log.

use std::path::PathBuf;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};
use serde_json::Value;
use signoff::client::{Client, CreatedIntent};
use signoff::clock::{Clock, SystemClock};
use signoff::domain::{PrincipalKind, Timestamp};
use tempfile::TempDir;

use super::{ServeProcess, signoff, task_intent};

/// `signoff audit verify` when every link holds.
pub const EXIT_OK: i32 = 0;
/// `signoff audit verify` when the chain is broken.
pub const EXIT_BROKEN: i32 = 1;
/// Runtime errors: bad input, a missing database.
pub const EXIT_ERROR: i32 = 3;
/// Command-line usage errors reported by clap.
pub const EXIT_USAGE: i32 = 64;

/// A `signoff serve` child process with its own home and database file.
pub struct Deployment {
    pub server: ServeProcess,
    pub db: PathBuf,
    pub admin: Client,
    // Dropped last: the server's home and database live here.
    pub home: TempDir,
}

impl Deployment {
    pub async fn start() -> Deployment {
        let home = tempfile::tempdir().expect("temp dir");
        let db = home.path().join("signoff.db");
        let db_arg = db.to_str().expect("UTF-8 temp path").to_string();
        let server = tokio::task::block_in_place(|| {
            ServeProcess::start(home.path(), &["--db", db_arg.as_str()])
        });
        let admin = Client::new(&server.url, &server.admin_key()).expect("admin client");
        Deployment {
            server,
            db,
            admin,
            home,
        }
    }

    /// A client holding a fresh key for `identity`.
    pub async fn client(&self, kind: PrincipalKind, identity: &str) -> Client {
        let key = self
            .admin
            .create_key(kind, identity, &[], None)
            .await
            .unwrap_or_else(|err| panic!("creating a key for {identity}: {err}"))
            .key;
        Client::new(&self.server.url, &key).expect("client")
    }

    /// `kill -9`: no shutdown code runs.
    pub fn crash(&mut self) {
        tokio::task::block_in_place(|| self.server.kill9());
    }

    /// The same binary again on the same port and database (after `crash`).
    pub fn start_again(&mut self) {
        tokio::task::block_in_place(|| self.server.restart());
    }

    /// A graceful stop (SIGTERM), so nothing writes to the database any more.
    pub fn stop(&mut self) {
        let status = tokio::task::block_in_place(|| self.server.terminate());
        assert!(
            status.success(),
            "signoff serve exited with {status}; log:\n{}",
            self.server.log()
        );
    }

    /// `signoff audit <args> --db <this database>`.
    pub fn audit(&self, args: &[&str]) -> CliRun {
        let db = self.db.to_str().expect("UTF-8 temp path");
        let mut full = vec!["audit"];
        full.extend_from_slice(args);
        full.extend_from_slice(&["--db", db]);
        self.run_cli(&full)
    }

    /// Any `signoff` command, with this deployment's home as its XDG directories.
    pub fn run_cli(&self, args: &[&str]) -> CliRun {
        let output = tokio::task::block_in_place(|| signoff(self.home.path(), args));
        CliRun {
            args: args.iter().map(|arg| arg.to_string()).collect(),
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// A read-write connection: the tests play an attacker with file access.
    pub fn database(&self) -> Connection {
        let conn = Connection::open(&self.db).expect("open the database");
        conn.busy_timeout(Duration::from_secs(10))
            .expect("busy timeout");
        conn
    }

    /// A read-only connection, safe next to a running server (WAL readers never block it).
    pub fn read_database(&self) -> Connection {
        let conn = Connection::open_with_flags(&self.db, OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("open the database read-only");
        conn.busy_timeout(Duration::from_secs(10))
            .expect("busy timeout");
        conn
    }
}

/// What one `signoff` invocation did.
#[derive(Debug)]
pub struct CliRun {
    pub args: Vec<String>,
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl CliRun {
    /// Asserts the exit code, showing everything the command said if it differs.
    pub fn expect_code(&self, code: i32) -> &CliRun {
        assert_eq!(
            self.code,
            Some(code),
            "signoff {:?}\nstdout:\n{}\nstderr:\n{}",
            self.args,
            self.stdout,
            self.stderr
        );
        self
    }

    /// Asserts a runtime error: exit 3 and exactly one line on stderr, which is returned.
    pub fn expect_one_line_error(&self) -> &str {
        self.expect_code(EXIT_ERROR);
        assert_eq!(
            self.stderr.lines().count(),
            1,
            "signoff {:?}: one line on stderr, got:\n{}",
            self.args,
            self.stderr
        );
        self.stderr.trim_end()
    }

    /// Standard output parsed as one JSON document.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|err| {
            panic!(
                "signoff {:?} printed no JSON ({err}):\n{}",
                self.args, self.stdout
            )
        })
    }
}

/// Creates a human task intent as `agent`, with an optional `lifecycle` policy.
pub async fn create_task(agent: &Client, task: Value, lifecycle: Option<Value>) -> CreatedIntent {
    let mut body = task_intent(task);
    if let Some(lifecycle) = lifecycle {
        body["lifecycle"] = lifecycle;
    }
    agent
        .create_intent(&body, None)
        .await
        .unwrap_or_else(|err| panic!("creating {body}: {err}"))
}

pub fn now() -> Timestamp {
    SystemClock.now()
}

/// How often the pollers below look again.
const POLL_EVERY: Duration = Duration::from_millis(100);

/// Polls `probe` until it yields a value; panics after `patience`, naming `what`
/// and the last thing `probe` saw. Deadlines only bound a hang: a healthy run
/// never gets near them, so no test depends on how fast the machine is.
pub async fn eventually<T>(
    what: &str,
    patience: Duration,
    mut probe: impl AsyncFnMut() -> Result<T, String>,
) -> T {
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        match probe().await {
            Ok(value) => return value,
            Err(last) if tokio::time::Instant::now() >= deadline => {
                panic!("gave up after {patience:?} waiting for {what}; last seen: {last}")
            }
            Err(_) => tokio::time::sleep(POLL_EVERY).await,
        }
    }
}
