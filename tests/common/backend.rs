//! Which database a test runs on.
//!
//! Every suite runs on SQLite. The test crates named `*_on_postgres` include a
//! suite's file again (`#[path = "api.rs"] mod suite;`), and everything the
//! suite starts through this module then runs on PostgreSQL instead: the crate's
//! name is the switch, so the suite's code is shared, not copied. Each test gets
//! a schema of its own in the database `SIGNOFF_TEST_PG_URL` names, dropped when
//! the test ends. Without that variable, PostgreSQL tests say they were skipped.

use std::sync::Arc;

use signoff::clock::Clock;
use signoff::config::DatabaseLocation;
use signoff::engine::{Engine, EngineSettings};
use signoff::store::Durability;
use signoff::store::postgres::PostgresOptions;
use tempfile::TempDir;

pub const PG_URL_VARIABLE: &str = "SIGNOFF_TEST_PG_URL";

/// Whether this test crate runs its suite on PostgreSQL.
pub fn on_postgres() -> bool {
    module_path!()
        .split("::")
        .next()
        .is_some_and(|krate| krate.ends_with("_on_postgres"))
}

/// The PostgreSQL server for tests, or `None` (after saying that `test` is
/// skipped) when `SIGNOFF_TEST_PG_URL` is not set.
pub fn postgres_url_or_skip(test: &str) -> Option<String> {
    match std::env::var(PG_URL_VARIABLE) {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ => {
            say_skipped(
                test,
                &format!(
                    "it needs PostgreSQL; set {PG_URL_VARIABLE}=postgres://user@host:port/db to run it"
                ),
            );
            None
        }
    }
}

/// `base_url` with its host replaced by the directory of the server's Unix
/// socket, as the server itself reports it; or why there is none this machine
/// can reach (a server elsewhere).
pub async fn unix_socket_url(base_url: &str) -> Result<String, String> {
    let asked = async {
        let (client, connection) = tokio_postgres::connect(base_url, tokio_postgres::NoTls).await?;
        tokio::spawn(connection);
        let directories: String = client
            .query_one("SHOW unix_socket_directories", &[])
            .await?
            .get(0);
        let port: String = client.query_one("SHOW port", &[]).await?.get(0);
        Ok::<_, tokio_postgres::Error>((directories, port))
    };
    let (directories, port) = asked
        .await
        .map_err(|err| format!("cannot ask the server for its socket: {err}"))?;
    let directory = directories
        .split(',')
        .map(str::trim)
        .find(|dir| {
            std::path::Path::new(dir)
                .join(format!(".s.PGSQL.{port}"))
                .exists()
        })
        .ok_or("the server has no Unix socket on this machine")?;
    let mut url = url::Url::parse(base_url).expect("a postgres:// URL");
    let host = percent_encoding::utf8_percent_encode(directory, percent_encoding::NON_ALPHANUMERIC);
    url.set_host(Some(&host.to_string()))
        .expect("a socket directory as the host");
    url.set_port(port.parse().ok()).expect("the server's port");
    Ok(url.to_string())
}

/// Says that `test` was skipped and why.
pub fn say_skipped(test: &str, why: &str) {
    // Straight to stderr: the test harness hides what passing tests print.
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {why}");
}

/// The name of the test running on this thread, for skip messages.
pub fn current_test() -> String {
    std::thread::current()
        .name()
        .unwrap_or("this test")
        .to_string()
}

/// A schema of its own in the test database, dropped (with everything in it)
/// when this is dropped.
pub struct Schema {
    base_url: String,
    pub name: String,
}

impl Schema {
    pub async fn create(base_url: &str) -> Schema {
        let name = format!("t_{}", uuid::Uuid::new_v4().simple());
        run_sql(base_url, &format!("CREATE SCHEMA {name}")).await;
        Schema {
            base_url: base_url.to_string(),
            name,
        }
    }

    /// The URL that puts a connection in this schema.
    pub fn url(&self) -> String {
        signoff::bench::with_search_path(&self.base_url, &self.name)
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        run_sql_while_dropping(
            &self.base_url,
            &format!(
                "SET lock_timeout = '10s'; DROP SCHEMA IF EXISTS {} CASCADE",
                self.name
            ),
        );
    }
}

/// Runs `sql` from a `Drop`, which may run inside the test's runtime and so
/// cannot block on it: on a runtime of its own, on a thread of its own. A
/// failure is only said, as a panic while dropping would abort the tests.
pub fn run_sql_while_dropping(url: &str, sql: &str) {
    let (url, sql) = (url.to_string(), sql.to_string());
    let ran = std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(signoff::store::postgres::execute_batch(&url, &sql))
            .map_err(|err| format!("{sql}: {err}"))
    })
    .join();
    match ran {
        Ok(Ok(())) => {}
        Ok(Err(err)) => eprintln!("cleaning up: {err}"),
        Err(_) => eprintln!("cleaning up: the thread running the SQL panicked"),
    }
}

async fn run_sql(url: &str, sql: &str) {
    signoff::store::postgres::execute_batch(url, sql)
        .await
        .unwrap_or_else(|err| panic!("{PG_URL_VARIABLE}: {sql}: {err}"));
}

/// Where a test's engine keeps its data; dropping it removes the data.
pub enum TestDatabase {
    Sqlite(TempDir),
    Postgres(Schema),
}

impl TestDatabase {
    /// A fresh, empty database on this crate's backend, or `None` when it is
    /// PostgreSQL and none is configured (the test is then skipped).
    pub async fn create() -> Option<TestDatabase> {
        if !on_postgres() {
            return Some(TestDatabase::Sqlite(tempfile::tempdir().expect("temp dir")));
        }
        let url = postgres_url_or_skip(&current_test())?;
        Some(TestDatabase::Postgres(Schema::create(&url).await))
    }

    pub fn location(&self) -> DatabaseLocation {
        match self {
            TestDatabase::Sqlite(dir) => DatabaseLocation::Sqlite(dir.path().join("signoff.db")),
            TestDatabase::Postgres(schema) => {
                DatabaseLocation::parse("test database", &schema.url()).expect("valid URL")
            }
        }
    }

    /// How `--db` names this database.
    pub fn arg(&self) -> String {
        match self {
            TestDatabase::Sqlite(dir) => dir.path().join("signoff.db").display().to_string(),
            TestDatabase::Postgres(schema) => schema.url(),
        }
    }

    /// An engine on this database.
    pub async fn engine(&self, clock: Arc<dyn Clock>, settings: EngineSettings) -> Engine {
        let options = PostgresOptions {
            pool_size: 4,
            ..PostgresOptions::default()
        };
        Engine::open(
            &self.location(),
            Durability::Normal,
            &options,
            clock,
            settings,
        )
        .await
        .expect("open store")
    }
}

/// An engine on the PostgreSQL database at `url`, with default settings, or
/// why it cannot be opened.
pub async fn open_engine_at(url: &str) -> Result<Engine, String> {
    let location = DatabaseLocation::parse("test", url).map_err(|err| err.to_string())?;
    Engine::open(
        &location,
        Durability::Normal,
        &PostgresOptions::default(),
        Arc::new(signoff::clock::SystemClock),
        EngineSettings::default(),
    )
    .await
    .map_err(|err| err.to_string())
}
