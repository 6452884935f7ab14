//! Settings, resolved in this order (later wins):
//! built-in defaults <- `config.toml` (XDG) <- environment (`SIGNOFF_*`) <- flags.
//! Flags and environment are merged by clap; this module supplies the file and the
//! defaults, and validates every value with a message that names it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub mod policy;

use crate::domain::SlaDefaults;
use crate::domain::task::validate_assignee_list;
use crate::engine::notify::NotifySettings;
use crate::store::Durability;
use crate::store::postgres::PostgresOptions;
use policy::{NotifySection, SlaSection};

pub const DEFAULT_LISTEN: &str = "127.0.0.1:7700";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{key}: {message}")]
    Invalid { key: String, message: String },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "no home directory: set HOME or XDG_{kind}_HOME so signoff knows where to keep its files"
    )]
    NoHome { kind: &'static str },
}

pub(crate) fn invalid(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_string(),
        message: message.into(),
    }
}

/// `$HOME`, unless it is unset or empty (an empty one would mean the current
/// directory).
pub fn home_dir() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|home| !home.is_empty())
        .map(PathBuf::from)
}

/// `$XDG_<KIND>_HOME/signoff`, falling back to the XDG default under `$HOME`.
fn xdg_dir(kind: &'static str, fallback: &str) -> Result<PathBuf, ConfigError> {
    let from_env = std::env::var_os(format!("XDG_{kind}_HOME"))
        .map(PathBuf::from)
        .filter(|path| path.is_absolute());
    let base = match from_env {
        Some(base) => base,
        None => home_dir()
            .map(|home| home.join(fallback))
            .ok_or(ConfigError::NoHome { kind })?,
    };
    Ok(base.join("signoff"))
}

pub fn config_dir() -> Result<PathBuf, ConfigError> {
    xdg_dir("CONFIG", ".config")
}

pub fn data_dir() -> Result<PathBuf, ConfigError> {
    xdg_dir("DATA", ".local/share")
}

pub fn state_dir() -> Result<PathBuf, ConfigError> {
    xdg_dir("STATE", ".local/state")
}

pub fn default_config_path() -> Result<PathBuf, ConfigError> {
    Ok(config_dir()?.join("config.toml"))
}

pub fn client_config_path() -> Result<PathBuf, ConfigError> {
    Ok(config_dir()?.join("client.toml"))
}

/// `config.toml`. Unknown keys are errors, so a typo never silently does nothing.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    #[serde(default)]
    pub server: ServerSection,
    #[serde(default)]
    pub tasks: TasksSection,
    #[serde(default)]
    pub tui: TuiSection,
    /// `[sla.default]` and `[sla.<task_type>]`.
    #[serde(default)]
    pub sla: std::collections::BTreeMap<String, SlaSection>,
    #[serde(default)]
    pub notify: NotifySection,
    #[serde(default)]
    pub postgres: PostgresSection,
}

/// `[postgres]`: how an instance uses a PostgreSQL database.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresSection {
    pub pool_size: Option<i64>,
    pub connect_timeout_seconds: Option<i64>,
    pub timer_lease_seconds: Option<i64>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    pub listen: Option<String>,
    pub database: Option<String>,
    pub durability: Option<String>,
    pub drain_seconds: Option<i64>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TasksSection {
    pub default_assignees: Option<Vec<String>>,
}

/// `[tui]`: the reviewer inbox. Validated by `tui::settings`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TuiSection {
    pub theme: Option<String>,
    pub undo_seconds: Option<u64>,
    pub mouse: Option<bool>,
    pub notifications: Option<String>,
    pub notify_on: Option<Vec<String>>,
    pub reviewers: Option<Vec<String>>,
    #[serde(default)]
    pub keys: std::collections::BTreeMap<String, Vec<String>>,
}

impl FileConfig {
    /// Reads `path`; a missing file at the default location means "all defaults".
    pub fn load(path: &Path, must_exist: bool) -> Result<FileConfig, ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound && !must_exist => {
                return Ok(FileConfig::default());
            }
            Err(source) => {
                return Err(ConfigError::Read {
                    path: path.to_path_buf(),
                    source,
                });
            }
        };
        toml::from_str(&text).map_err(|err| ConfigError::Parse {
            path: path.to_path_buf(),
            message: err.to_string(),
        })
    }
}

/// Where the data lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseLocation {
    Sqlite(PathBuf),
    Postgres(PostgresUrl),
}

/// A `postgres://` URL. It may carry a password, so `Debug` and `Display` show it
/// with the password replaced by `***`; only [`PostgresUrl::secret`] gives it whole.
#[derive(Clone, PartialEq, Eq)]
pub struct PostgresUrl(String);

impl PostgresUrl {
    pub fn parse(key: &str, text: &str) -> Result<PostgresUrl, ConfigError> {
        let url = PostgresUrl(text.to_string());
        crate::store::postgres::connection_url::parse_url(text)
            .map_err(|err| invalid(key, format!("cannot use the PostgreSQL URL `{url}`: {err}")))?;
        Ok(url)
    }

    /// The URL as given, password included: only for connecting.
    pub fn secret(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for PostgresUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&redacted_url(&self.0))
    }
}

/// `text` with any password (in the user part or a `password=` query pair)
/// replaced by `***`; text without a `scheme://` is not shown at all.
///
/// This works on the text rather than through a URL parser, because readers
/// disagree on URLs that hold unencoded delimiters: `url::Url` ends the user
/// part at the last `@` and starts a fragment at `#`, while tokio-postgres (like
/// libpq) takes credentials up to the first `@` and knows no fragments. So a
/// URL is shown in parts only when every reader splits it the same way: one
/// `@` at most, with no `/`, `?`, `#`, `&` or `=` before it. Anything else shows
/// the scheme alone.
fn redacted_url(text: &str) -> String {
    const UNREADABLE: &str = "(a URL that cannot be parsed)";
    let Some((scheme, rest)) = text.split_once("://") else {
        return UNREADABLE.to_string();
    };
    let plain_scheme = !scheme.is_empty()
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+.-".contains(c));
    if !plain_scheme {
        return UNREADABLE.to_string();
    }
    let (user, location) = match rest.split_once('@') {
        None => (String::new(), rest),
        Some((credentials, location))
            if !location.contains('@') && !credentials.contains(['/', '?', '#', '&', '=']) =>
        {
            (shown_credentials(credentials), location)
        }
        Some(_) => return format!("{scheme}://***"),
    };
    let (address, query) = match location.split_once('?') {
        Some((address, query)) => (address, Some(query)),
        None => (location, None),
    };
    let mut shown = format!("{scheme}://{user}{address}");
    if let Some(query) = query {
        shown.push('?');
        shown.push_str(&redacted_query(query));
    }
    shown
}

/// The user part of a URL as shown: the user name, and `***` for a password.
fn shown_credentials(credentials: &str) -> String {
    match credentials.split_once(':') {
        Some((user, _)) => format!("{user}:***@"),
        None => format!("{credentials}@"),
    }
}

/// The connection parameters tokio-postgres knows, but for the password (with
/// those signoff reads itself, `connection_url::READ_HERE`, whose values are paths and
/// modes, not secrets): the only query pairs shown whole.
const SHOWN_PARAMETERS: &[&str] = &[
    "user",
    "dbname",
    "options",
    "application_name",
    "sslnegotiation",
    "host",
    "hostaddr",
    "port",
    "connect_timeout",
    "tcp_user_timeout",
    "keepalives",
    "keepalives_idle",
    "keepalives_interval",
    "keepalives_retries",
    "target_session_attrs",
    "channel_binding",
    "load_balance_hosts",
];

/// A connection URL's query with the password's value hidden, and any piece
/// that is not a known parameter hidden whole: a password holding an
/// unencoded `&` splits into such pieces. Keys are compared percent-decoded,
/// as tokio-postgres decodes them.
fn redacted_query(query: &str) -> String {
    let shown: Vec<String> = query
        .split('&')
        .map(|pair| {
            let key = pair.split_once('=').map_or(pair, |(key, _)| key);
            let decoded: String = url::form_urlencoded::parse(key.as_bytes())
                .map(|(name, _)| name.into_owned())
                .collect();
            if decoded.eq_ignore_ascii_case("password") {
                format!("{key}=***")
            } else if SHOWN_PARAMETERS.contains(&decoded.as_str())
                || crate::store::postgres::connection_url::READ_HERE.contains(&decoded.as_str())
            {
                pair.to_string()
            } else {
                "***".to_string()
            }
        })
        .collect();
    shown.join("&")
}

impl std::fmt::Debug for PostgresUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PostgresUrl({self})")
    }
}

impl std::fmt::Display for DatabaseLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DatabaseLocation::Sqlite(path) => write!(f, "{} (sqlite)", path.display()),
            DatabaseLocation::Postgres(url) => write!(f, "{url} (postgres)"),
        }
    }
}

impl DatabaseLocation {
    /// Accepts a path, `sqlite://PATH`, `sqlite:PATH` or a `postgres://` URL.
    pub fn parse(key: &str, text: &str) -> Result<DatabaseLocation, ConfigError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(invalid(key, "is empty"));
        }
        if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            return PostgresUrl::parse(key, text).map(DatabaseLocation::Postgres);
        }
        let path = text
            .strip_prefix("sqlite://")
            .or_else(|| text.strip_prefix("sqlite:"))
            .unwrap_or(text);
        if path.is_empty() || path.contains("://") {
            return Err(invalid(
                key,
                format!(
                    "`{}` is neither a file path nor a sqlite:// or postgres:// URL",
                    redacted_url(text)
                ),
            ));
        }
        Ok(DatabaseLocation::Sqlite(PathBuf::from(path)))
    }
}

impl DatabaseLocation {
    /// `--db` / `SIGNOFF_DATABASE_URL`, else `server.database`, else the XDG default.
    pub fn resolve(file: &FileConfig, flag: Option<&str>) -> Result<DatabaseLocation, ConfigError> {
        match (flag, &file.server.database) {
            (Some(value), _) => DatabaseLocation::parse("--db / SIGNOFF_DATABASE_URL", value),
            (None, Some(value)) => DatabaseLocation::parse("server.database", value),
            (None, None) => Ok(DatabaseLocation::Sqlite(data_dir()?.join("signoff.db"))),
        }
    }
}

/// Everything `signoff serve` needs, fully validated.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub listen: SocketAddr,
    pub database: DatabaseLocation,
    pub durability: Durability,
    /// How long the server goes on serving after a stop signal, with `/health`
    /// failing, before it stops taking connections; zero is no drain.
    pub drain: std::time::Duration,
    pub postgres: PostgresOptions,
    pub default_assignees: Vec<String>,
    pub sla: SlaDefaults,
    pub notify: NotifySettings,
}

/// Values given on the command line or in the environment (`None` when absent).
#[derive(Debug, Default, Clone)]
pub struct ServerOverrides {
    pub listen: Option<String>,
    pub database: Option<String>,
    pub durability: Option<String>,
    pub drain_seconds: Option<i64>,
    pub pg_pool_size: Option<i64>,
    pub pg_connect_timeout_seconds: Option<i64>,
    pub pg_timer_lease_seconds: Option<i64>,
}

/// A whole number in `range`, from the flag (or environment) when given, else the
/// file, else `default`; an error names whichever was wrong.
fn bounded(
    flag: (&str, Option<i64>),
    file: (&str, Option<i64>),
    default: i64,
    range: std::ops::RangeInclusive<i64>,
) -> Result<i64, ConfigError> {
    let (key, value) = match (flag, file) {
        ((key, Some(value)), _) | (_, (key, Some(value))) => (key, value),
        _ => return Ok(default),
    };
    if range.contains(&value) {
        Ok(value)
    } else {
        Err(invalid(
            key,
            format!(
                "{value} is out of range: use {} to {}",
                range.start(),
                range.end()
            ),
        ))
    }
}

fn postgres_options(
    file: &PostgresSection,
    overrides: &ServerOverrides,
) -> Result<PostgresOptions, ConfigError> {
    let defaults = PostgresOptions::default();
    let pool_size = bounded(
        ("--pg-pool-size", overrides.pg_pool_size),
        ("postgres.pool_size", file.pool_size),
        defaults.pool_size as i64,
        1..=1000,
    )?;
    let connect_timeout = bounded(
        ("--pg-connect-timeout", overrides.pg_connect_timeout_seconds),
        (
            "postgres.connect_timeout_seconds",
            file.connect_timeout_seconds,
        ),
        defaults.connect_timeout.as_secs() as i64,
        1..=3600,
    )?;
    let timer_lease_seconds = bounded(
        ("--pg-timer-lease", overrides.pg_timer_lease_seconds),
        ("postgres.timer_lease_seconds", file.timer_lease_seconds),
        defaults.timer_lease_seconds,
        1..=3600,
    )?;
    Ok(PostgresOptions {
        pool_size: pool_size as usize,
        connect_timeout: std::time::Duration::from_secs(connect_timeout as u64),
        timer_lease_seconds,
    })
}

impl ServerSettings {
    pub fn resolve(
        file: &FileConfig,
        overrides: &ServerOverrides,
    ) -> Result<ServerSettings, ConfigError> {
        let (listen_key, listen) = match (&overrides.listen, &file.server.listen) {
            (Some(value), _) => ("--listen", value.clone()),
            (None, Some(value)) => ("server.listen", value.clone()),
            (None, None) => ("--listen", DEFAULT_LISTEN.to_string()),
        };
        let listen: SocketAddr = listen.parse().map_err(|_| {
            invalid(
                listen_key,
                format!("`{listen}` is not an address like 127.0.0.1:7700"),
            )
        })?;

        let database = DatabaseLocation::resolve(file, overrides.database.as_deref())?;

        let durability = match (&overrides.durability, &file.server.durability) {
            (Some(value), _) => {
                Durability::parse(value).map_err(|why| invalid("--durability", why))?
            }
            (None, Some(value)) => {
                Durability::parse(value).map_err(|why| invalid("server.durability", why))?
            }
            (None, None) => Durability::Full,
        };

        let default_assignees = match &file.tasks.default_assignees {
            None => vec![],
            Some(list) if list.is_empty() => vec![],
            Some(list) => validate_assignee_list("tasks.default_assignees", list.clone())
                .map_err(|err| invalid("tasks.default_assignees", err.message))?,
        };

        let drain_seconds = bounded(
            ("--drain", overrides.drain_seconds),
            ("server.drain_seconds", file.server.drain_seconds),
            0,
            0..=3600,
        )?;

        Ok(ServerSettings {
            listen,
            database,
            durability,
            drain: std::time::Duration::from_secs(drain_seconds as u64),
            postgres: postgres_options(&file.postgres, overrides)?,
            default_assignees,
            sla: policy::sla_defaults(&file.sla)?,
            notify: file.notify.settings()?,
        })
    }
}

/// `client.toml`: how the CLI and the inbox reach a server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    pub server: String,
    pub key: String,
}

impl ClientConfig {
    pub fn load(path: &Path) -> Result<Option<ClientConfig>, ConfigError> {
        match std::fs::read_to_string(path) {
            Ok(text) => toml::from_str(&text)
                .map(Some)
                .map_err(|err| ConfigError::Parse {
                    path: path.to_path_buf(),
                    message: err.to_string(),
                }),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(ConfigError::Read {
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    /// Writes the file readable by its owner only (it holds a key), replacing any
    /// previous one atomically and keeping it as `client.toml.bak`.
    pub fn save(&self, path: &Path) -> Result<(), ConfigError> {
        let write_error = |source| ConfigError::Write {
            path: path.to_path_buf(),
            source,
        };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(write_error)?;
        }
        let text = toml::to_string(self).map_err(|err| invalid("client.toml", err.to_string()))?;
        let temporary = path.with_extension("toml.tmp");
        {
            use std::io::Write;
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create(true).truncate(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                options.mode(0o600);
            }
            let mut file = options.open(&temporary).map_err(write_error)?;
            file.write_all(text.as_bytes()).map_err(write_error)?;
            file.sync_all().map_err(write_error)?;
        }
        if path.exists() {
            std::fs::copy(path, path.with_extension("toml.bak")).map_err(write_error)?;
        }
        std::fs::rename(&temporary, path).map_err(write_error)
    }
}

/// The URL a local client should use to reach a server listening on `listen`.
pub fn local_url(listen: SocketAddr) -> String {
    let host = match listen.ip() {
        ip if ip.is_unspecified() && listen.is_ipv6() => "[::1]".to_string(),
        ip if ip.is_unspecified() => "127.0.0.1".to_string(),
        std::net::IpAddr::V6(ip) => format!("[{ip}]"),
        std::net::IpAddr::V4(ip) => ip.to_string(),
    };
    format!("http://{host}:{}", listen.port())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn file(text: &str) -> Result<FileConfig, String> {
        toml::from_str(text).map_err(|err: toml::de::Error| err.to_string())
    }

    #[test]
    fn unknown_keys_and_wrong_types_are_refused() {
        assert!(file("[server]\nlisten = \"127.0.0.1:1\"\n").is_ok());
        for (text, expected) in [
            ("[server]\nlistn = \"x\"\n", "listn"),
            ("[nonsense]\n", "nonsense"),
            ("[tui]\nmouse = \"yes\"\n", "expected a boolean"),
            ("[tui]\nundo_seconds = -1\n", "undo_seconds"),
            ("[postgres]\npool_size = \"many\"\n", "pool_size"),
        ] {
            let err = file(text).unwrap_err();
            assert!(err.contains(expected), "{text}: {err}");
        }
    }

    #[test]
    fn flags_beat_the_file_and_bad_values_are_named() {
        let config = file("[server]\nlisten = \"127.0.0.1:9000\"\ndurability = \"normal\"\ndatabase = \"/tmp/x.db\"\n").unwrap();
        let settings = ServerSettings::resolve(&config, &ServerOverrides::default()).unwrap();
        assert_eq!(settings.listen.port(), 9000);
        assert_eq!(settings.durability, Durability::Normal);
        let overrides = ServerOverrides {
            listen: Some("127.0.0.1:9001".into()),
            ..Default::default()
        };
        assert_eq!(
            ServerSettings::resolve(&config, &overrides)
                .unwrap()
                .listen
                .port(),
            9001
        );

        let bad_listen = ServerOverrides {
            listen: Some("nowhere".into()),
            ..Default::default()
        };
        let err = ServerSettings::resolve(&config, &bad_listen)
            .unwrap_err()
            .to_string();
        assert!(err.contains("--listen") && err.contains("nowhere"), "{err}");

        let bad_durability =
            file("[server]\ndurability = \"sometimes\"\ndatabase = \"/tmp/x.db\"\n").unwrap();
        let err = ServerSettings::resolve(&bad_durability, &ServerOverrides::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("server.durability"), "{err}");

        let bad_assignees = file("[server]\ndatabase = \"/tmp/x.db\"\n[tasks]\ndefault_assignees = [\"no spaces allowed\"]\n").unwrap();
        let err = ServerSettings::resolve(&bad_assignees, &ServerOverrides::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("tasks.default_assignees"), "{err}");
    }

    #[test]
    fn the_drain_defaults_to_zero_and_refuses_bad_values() {
        let resolve = |text: &str, flag: Option<i64>| {
            let overrides = ServerOverrides {
                drain_seconds: flag,
                ..Default::default()
            };
            ServerSettings::resolve(&file(text)?, &overrides).map_err(|err| err.to_string())
        };
        let database = "[server]\ndatabase = \"/tmp/x.db\"\n";
        assert_eq!(resolve(database, None).unwrap().drain, Duration::ZERO);
        let configured = format!("{database}drain_seconds = 15\n");
        assert_eq!(
            resolve(&configured, None).unwrap().drain,
            Duration::from_secs(15)
        );
        assert_eq!(
            resolve(&configured, Some(2)).unwrap().drain,
            Duration::from_secs(2),
            "the flag wins"
        );
        for (text, flag, expected) in [
            (
                format!("{database}drain_seconds = -1\n"),
                None,
                "server.drain_seconds: -1 is out of range: use 0 to 3600",
            ),
            (
                format!("{database}drain_seconds = 3601\n"),
                None,
                "server.drain_seconds: 3601 is out of range",
            ),
            (
                database.to_string(),
                Some(-5),
                "--drain: -5 is out of range",
            ),
            (
                format!("{database}drain_seconds = \"10s\"\n"),
                None,
                "drain_seconds",
            ),
        ] {
            let err = resolve(&text, flag).unwrap_err();
            assert!(err.contains(expected), "{text} {flag:?}: {err}");
        }
    }

    #[test]
    fn database_locations() {
        assert_eq!(
            DatabaseLocation::parse("k", "sqlite:///var/x.db").unwrap(),
            DatabaseLocation::Sqlite(PathBuf::from("/var/x.db"))
        );
        assert_eq!(
            DatabaseLocation::parse("k", "data/x.db").unwrap(),
            DatabaseLocation::Sqlite(PathBuf::from("data/x.db"))
        );
        assert!(DatabaseLocation::parse("k", "").is_err());
        assert!(DatabaseLocation::parse("k", "mysql://x").is_err());
        let url = "postgres://signoff:hunter2@db.internal:5432/signoff?application_name=x";
        let DatabaseLocation::Postgres(parsed) = DatabaseLocation::parse("k", url).unwrap() else {
            panic!("a postgres URL is PostgreSQL");
        };
        assert_eq!(parsed.secret(), url);
        for shown in [
            parsed.to_string(),
            format!("{parsed:?}"),
            DatabaseLocation::Postgres(parsed.clone()).to_string(),
            format!("{:?}", DatabaseLocation::Postgres(parsed.clone())),
        ] {
            assert!(!shown.contains("hunter2"), "password shown: {shown}");
            assert!(shown.contains("signoff:***@db.internal"), "{shown}");
        }
        let in_query = "postgres://db.internal/signoff?user=u&password=hunter2";
        let DatabaseLocation::Postgres(parsed) = DatabaseLocation::parse("k", in_query).unwrap()
        else {
            panic!("a postgres URL is PostgreSQL");
        };
        assert!(!parsed.to_string().contains("hunter2"), "{parsed}");
        assert!(parsed.to_string().contains("password=***"), "{parsed}");
        let typo = DatabaseLocation::parse("--db", "Postgres://u:hunter2@h/d")
            .unwrap_err()
            .to_string();
        assert!(!typo.contains("hunter2"), "password shown: {typo}");
        let err = DatabaseLocation::parse("--db", "postgres://u:pw@h/d?sslmode=sometimes")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("--db: "), "{err}");
        assert!(err.contains("cannot use the PostgreSQL URL"), "{err}");
        assert!(!err.contains("pw@"), "password shown: {err}");
    }

    /// tokio-postgres and `url::Url` split a URL differently; whatever a
    /// password holds, none of it may be shown.
    #[test]
    fn passwords_with_url_delimiters_are_never_shown() {
        for (url, expected) in [
            (
                "postgres://u:#hunter2@h/d?sslmode=disable",
                "postgres://***",
            ),
            ("postgres://u:hun/ter?2@h:5432/d", "postgres://***"),
            ("postgres://u:hun@ter2@h/d", "postgres://***"),
            ("postgres://app@db/prod?password=p@ssw0rd", "postgres://***"),
            ("postgres://h/d?password=hun@ter2", "postgres://***"),
            (
                "postgres://h/d?user=u#&password=hunter2",
                "postgres://h/d?user=u#&password=***",
            ),
            (
                "postgresql://h/d?pass%77ord=hunter2&application_name=a",
                "postgresql://h/d?pass%77ord=***&application_name=a",
            ),
            (
                "postgres://h/d?password=hun&ter&2=x&sslmode=disable",
                "postgres://h/d?password=***&***&***&sslmode=disable",
            ),
            ("postgres://u@h/d", "postgres://u@h/d"),
            (
                "postgres://h/d?sslcrl=/r.crl&sslcrldir=/crls&sslkey=/k&passfile=/pw&password=pw",
                "postgres://h/d?sslcrl=/r.crl&sslcrldir=/crls&sslkey=/k&passfile=/pw&password=***",
            ),
            ("postgres://u%20x:pw@h/d", "postgres://u%20x:***@h/d"),
            ("password=x host=a://b", "(a URL that cannot be parsed)"),
        ] {
            assert_eq!(redacted_url(url), expected, "for {url}");
        }
        let err = DatabaseLocation::parse("--db", "postgres://u:#hunter2@h/d?sslmode=sometimes")
            .unwrap_err()
            .to_string();
        assert!(err.contains("cannot use the PostgreSQL URL"), "{err}");
        assert!(!err.contains("hunter2"), "password shown: {err}");
        assert_eq!(
            redacted_url("no scheme at all"),
            "(a URL that cannot be parsed)"
        );
    }

    proptest::proptest! {
        /// Whatever delimiters a password holds unencoded, and wherever the URL
        /// carries it, neither end of it is ever shown (its ends are distinctive,
        /// so any piece shown would carry one of them). Only a password holding
        /// `&` and a parameter's name (`&user=`) unencoded could show a piece:
        /// every reader takes that for the parameter.
        #[test]
        fn no_piece_of_a_password_is_shown(
            middle in "[0-9@/?#&=:%]{0,8}",
            shape in 0usize..4,
        ) {
            let password = format!("S3cr{middle}Xy9");
            let url = match shape {
                0 => format!("postgres://signoff:{password}@db:5432/app?sslmode=disable"),
                1 => format!("postgres://signoff@db/app?password={password}&sslmode=disable"),
                2 => format!("postgresql://db/app?application_name=x&password={password}"),
                _ => format!("postgres://:{password}@db/app"),
            };
            let shown = redacted_url(&url);
            proptest::prop_assert!(
                !shown.contains("S3cr") && !shown.contains("Xy9"),
                "{url} is shown as {shown}"
            );
        }
    }

    #[test]
    fn postgres_options_resolve_and_refuse_bad_values() {
        let configured = file("[postgres]\npool_size = 4\ntimer_lease_seconds = 5\n").unwrap();
        let options = postgres_options(&configured.postgres, &ServerOverrides::default()).unwrap();
        assert_eq!(options.pool_size, 4);
        assert_eq!(options.timer_lease_seconds, 5);
        assert_eq!(
            options.connect_timeout,
            PostgresOptions::default().connect_timeout
        );
        let flagged = ServerOverrides {
            pg_pool_size: Some(2),
            ..Default::default()
        };
        assert_eq!(
            postgres_options(&configured.postgres, &flagged)
                .unwrap()
                .pool_size,
            2
        );
        for (text, key) in [
            ("[postgres]\npool_size = 0\n", "postgres.pool_size"),
            (
                "[postgres]\ntimer_lease_seconds = -1\n",
                "postgres.timer_lease_seconds",
            ),
            (
                "[postgres]\nconnect_timeout_seconds = 99999\n",
                "postgres.connect_timeout_seconds",
            ),
        ] {
            let err = postgres_options(&file(text).unwrap().postgres, &ServerOverrides::default())
                .unwrap_err()
                .to_string();
            assert!(err.starts_with(key), "{err}");
            assert!(err.contains("out of range"), "{err}");
        }
        let bad_flag = ServerOverrides {
            pg_timer_lease_seconds: Some(0),
            ..Default::default()
        };
        let err = postgres_options(&PostgresSection::default(), &bad_flag)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("--pg-timer-lease"), "{err}");
        assert!(
            file("[postgres]\npool = 3\n").is_err(),
            "unknown keys are refused"
        );
    }

    #[test]
    fn local_urls_never_point_at_unspecified_addresses() {
        assert_eq!(
            local_url("0.0.0.0:7700".parse().unwrap()),
            "http://127.0.0.1:7700"
        );
        assert_eq!(
            local_url("127.0.0.1:1".parse().unwrap()),
            "http://127.0.0.1:1"
        );
        assert_eq!(local_url("[::]:5".parse().unwrap()), "http://[::1]:5");
    }

    #[test]
    fn client_config_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/client.toml");
        let config = ClientConfig {
            server: "http://127.0.0.1:1".into(),
            key: "so_x".into(),
        };
        config.save(&path).unwrap();
        assert_eq!(ClientConfig::load(&path).unwrap(), Some(config.clone()));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        config.save(&path).unwrap();
        assert!(path.with_extension("toml.bak").exists());
        let server = "server = \"http://127.0.0.1:1\"";
        for (text, expected) in [
            ("server = 1".to_string(), "server"),
            (format!("{server}\nkey = 5"), "key"),
            (server.to_string(), "missing field `key`"),
            (
                format!("{server}\nkey = \"so_x\"\ncolour = true"),
                "unknown field `colour`",
            ),
        ] {
            std::fs::write(&path, &text).unwrap();
            let error = ClientConfig::load(&path).unwrap_err().to_string();
            assert!(
                error.contains("client.toml") && error.contains(expected),
                "{text}: {error}"
            );
        }
    }
}
