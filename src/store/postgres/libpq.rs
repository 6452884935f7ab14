//! What libpq reads besides the URL, so that a URL and an environment that
//! work with `psql` work here: the `PG*` environment variables, each standing
//! in for a setting the URL leaves out; the TLS files in `~/.postgresql/`; and
//! the password file (`~/.pgpass`), read when neither the URL nor `PGPASSWORD`
//! gives a password.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use tokio_postgres::config::Host;

/// The environment variables read, each with the URL setting it stands in
/// for: libpq's, for every setting signoff knows. Others (`PGSERVICE`,
/// `PGSSLCERTMODE`, `PGSSLNEGOTIATION`, `PGGSSENCMODE`, ...) are not read, nor
/// `PGCONNECT_TIMEOUT`: signoff's `postgres.connect_timeout_seconds` decides.
pub const VARIABLES: [(&str, &str); 18] = [
    ("PGHOST", "host"),
    ("PGHOSTADDR", "hostaddr"),
    ("PGPORT", "port"),
    ("PGDATABASE", "dbname"),
    ("PGUSER", "user"),
    ("PGPASSWORD", "password"),
    ("PGPASSFILE", "passfile"),
    ("PGAPPNAME", "application_name"),
    ("PGOPTIONS", "options"),
    ("PGTARGETSESSIONATTRS", "target_session_attrs"),
    ("PGCHANNELBINDING", "channel_binding"),
    ("PGLOADBALANCEHOSTS", "load_balance_hosts"),
    ("PGSSLMODE", "sslmode"),
    ("PGSSLROOTCERT", "sslrootcert"),
    ("PGSSLCERT", "sslcert"),
    ("PGSSLKEY", "sslkey"),
    ("PGSSLCRL", "sslcrl"),
    ("PGSSLCRLDIR", "sslcrldir"),
];

/// A setting's value and the name it was given by, the URL's (`sslmode`) or
/// the environment's (`PGSSLMODE`), so that a message names what to fix. (No
/// `Debug`: it may hold `PGPASSWORD`.)
pub struct Given {
    pub value: String,
    pub by: &'static str,
}

/// What libpq falls back on where the URL is silent.
pub struct Defaults {
    /// `~`, or `None` when HOME is unset or empty (then nothing is looked for
    /// there, where libpq would ask the user database).
    home: Option<PathBuf>,
    /// The variables of [`VARIABLES`] that are set and not empty (an empty one
    /// is taken as unset, so that `PGSSLMODE=` in a shell clears it).
    variables: BTreeMap<&'static str, String>,
    /// Those set to something that is not UTF-8, which signoff cannot read.
    not_text: Vec<&'static str>,
}

impl Defaults {
    /// This process's: its environment and its user's home directory.
    pub fn of_this_process() -> Defaults {
        let mut defaults = Defaults {
            home: crate::config::home_dir(),
            variables: BTreeMap::new(),
            not_text: Vec::new(),
        };
        for (name, _) in VARIABLES {
            match std::env::var(name) {
                Ok(value) if !value.is_empty() => {
                    defaults.variables.insert(name, value);
                }
                Err(std::env::VarError::NotUnicode(_)) => defaults.not_text.push(name),
                _ => {}
            }
        }
        defaults
    }

    /// Refuses variables that could not be read, rather than go on as if they
    /// were unset (libpq would use them).
    pub fn refuse_unreadable(&self) -> Result<(), String> {
        match self.not_text.as_slice() {
            [] => Ok(()),
            names => Err(format!(
                "{} cannot be read: not UTF-8 (signoff reads libpq's variables as text)",
                names.join(", ")
            )),
        }
    }

    /// Nothing to fall back on: no home directory, no variables.
    #[cfg(test)]
    pub fn none() -> Defaults {
        Defaults {
            home: None,
            variables: BTreeMap::new(),
            not_text: Vec::new(),
        }
    }

    #[cfg(test)]
    pub fn with_home(home: &Path) -> Defaults {
        Defaults {
            home: Some(home.to_path_buf()),
            ..Defaults::none()
        }
    }

    #[cfg(test)]
    pub fn with_variable(mut self, name: &'static str, value: &str) -> Defaults {
        assert!(VARIABLES.iter().any(|(known, _)| *known == name), "{name}");
        self.variables.insert(name, value.to_string());
        self
    }

    /// The environment's value for the URL setting `setting`, if any.
    pub fn variable_for(&self, setting: &str) -> Option<Given> {
        let (name, _) = VARIABLES.iter().find(|(_, known)| *known == setting)?;
        let value = self.variables.get(name)?;
        Some(Given {
            value: value.clone(),
            by: name,
        })
    }

    /// `~/.postgresql/<name>`, if it exists; `setting` is the URL setting it
    /// stands in for, for the message when it cannot even be looked for.
    pub fn find(&self, name: &str, setting: &str) -> Result<Option<PathBuf>, String> {
        let Some(home) = &self.home else {
            return Ok(None);
        };
        let path = home.join(".postgresql").join(name);
        match path.try_exists() {
            Ok(exists) => Ok(exists.then_some(path)),
            // `~/.postgresql` is a file: nothing in it, as libpq sees it.
            Err(err) if err.kind() == std::io::ErrorKind::NotADirectory => Ok(None),
            Err(err) => Err(format!(
                "cannot look for {} (used, as by psql, when the URL names no {setting}): {err}",
                path.display()
            )),
        }
    }

    /// Where `~/.postgresql/<name>` is looked for, for messages.
    pub fn describe(&self, name: &str) -> String {
        self.home.as_ref().map_or_else(
            || format!("~/.postgresql/{name} (not looked for: HOME is not set)"),
            |home| home.join(".postgresql").join(name).display().to_string(),
        )
    }

    /// The password file that gives the password `config` does not have:
    /// named by the URL's `passfile` or `PGPASSFILE`, or else `~/.pgpass`.
    pub fn password_file(
        &self,
        config: &tokio_postgres::Config,
        named: Option<Given>,
    ) -> Option<PathBuf> {
        if has_password(config) {
            return None;
        }
        let default = || self.home.as_ref().map(|home| home.join(".pgpass"));
        match named {
            // An empty `passfile` in the URL still counts as given, as in
            // libpq: `PGPASSFILE` is passed over for the default.
            Some(named) if named.value.is_empty() => default(),
            Some(named) => Some(PathBuf::from(named.value)),
            None => self
                .variable_for("passfile")
                .map(|given| PathBuf::from(given.value))
                .or_else(default),
        }
    }
}

/// Query values are percent-encoded but for the commas that separate the
/// entries of a list (`PGHOSTADDR`, `PGPORT`), which no other setting gives
/// meaning.
const QUERY_VALUE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC.remove(b',');

/// Whether `config` has a password: an empty one, as in `postgres://u:@h`,
/// counts as none, as in libpq.
fn has_password(config: &tokio_postgres::Config) -> bool {
    config
        .get_password()
        .is_some_and(|password| !password.is_empty())
}

/// Where a `postgres://` URL's parts are, found as tokio-postgres finds them:
/// the user part ends at the first `@` after the scheme (so it may hold a raw
/// `?`), the hosts at the next `/` or `?`, and the query starts at the first
/// `?` after the user part.
pub struct UrlLayout {
    /// The user part (`user:password`), without its `@`, if there is one.
    pub user_info: Option<std::ops::Range<usize>>,
    /// The hosts (with their ports), possibly empty.
    pub hosts: std::ops::Range<usize>,
    /// Where the `?` before the query is, if there is a query.
    pub query: Option<usize>,
}

impl UrlLayout {
    /// `None` for text that is not a `postgres://` or `postgresql://` URL.
    pub fn of(url: &str) -> Option<UrlLayout> {
        let after_scheme = ["postgres://", "postgresql://"]
            .iter()
            .find(|scheme| url.starts_with(**scheme))?
            .len();
        let user_info = url[after_scheme..]
            .find('@')
            .map(|at| after_scheme..after_scheme + at);
        let start = user_info.as_ref().map_or(after_scheme, |user| user.end + 1);
        let query = url[start..].find('?').map(|mark| start + mark);
        let end = url[start..]
            .find(['/', '?'])
            .map_or(url.len(), |end| start + end);
        Some(UrlLayout {
            user_info,
            hosts: start..end,
            query,
        })
    }
}

/// The URL and what the environment added to it.
pub struct Filled {
    /// The URL's part before its query, ports perhaps added.
    pub address: String,
    /// Its query's pairs, the environment's added.
    pub pairs: Vec<String>,
    /// The variables that stood in for a setting.
    pub used: Vec<&'static str>,
}

/// The URL, its part before `?` (`address`) and its query `pairs` as
/// (decoded key, pair), parsed by tokio-postgres into `config`, with the
/// environment's values for the settings of [`VARIABLES`] it leaves out (but
/// those `tls` reads itself). A value tokio-postgres would refuse is refused
/// here with the variable's name.
pub fn fill_in_from_environment(
    address: &str,
    pairs: Vec<(String, String)>,
    config: &tokio_postgres::Config,
    defaults: &Defaults,
) -> Result<Filled, String> {
    let hosts = HostList::of(address);
    let mut filled = Filled {
        address: address.to_string(),
        pairs: Vec::new(),
        used: Vec::new(),
    };
    // tokio-postgres gives each host the URL names without a port 5432 and
    // adds a `port` of the query after those, which it then refuses as too many
    // ports; libpq takes the query's ports for them.
    let query_port = hosts
        .as_ref()
        .filter(|hosts| !hosts.names_a_port())
        // The last `port`, as libpq takes the last of a setting given twice.
        .zip(pairs.iter().rev().find(|(key, _)| key == "port"));
    let moved_query_port = query_port.is_some();
    if let Some((hosts, (_, pair))) = query_port {
        let value = pair.split_once('=').map_or("", |(_, value)| value);
        let ports = percent_encoding::percent_decode_str(value).decode_utf8_lossy();
        filled.address = hosts.with_ports(address, "port", &ports)?;
    }
    for (name, setting) in VARIABLES {
        if super::connection_url::READ_HERE.contains(&setting)
            || pairs.iter().any(|(key, _)| key == setting)
        {
            continue;
        }
        let given_by_url = match setting {
            "host" => !config.get_hosts().is_empty(),
            "hostaddr" => !config.get_hostaddrs().is_empty(),
            // tokio-postgres gives a host named without a port 5432, where
            // libpq takes PGPORT for it; but a list of hosts has its ports
            // (5432 where it names none), as in libpq.
            "port" => hosts.as_ref().is_some_and(HostList::names_its_ports),
            "dbname" => config.get_dbname().is_some(),
            // An empty user, as in `postgres://:pw@h`, counts as none.
            "user" => config.get_user().is_some_and(|user| !user.is_empty()),
            "password" => has_password(config),
            _ => false,
        };
        let Some(value) = defaults.variables.get(name).filter(|_| !given_by_url) else {
            continue;
        };
        // A URL's query gives a list of hosts as one `host` pair each.
        let values: Vec<&str> = if setting == "host" {
            value.split(',').collect()
        } else {
            vec![value]
        };
        let setting_pairs: Vec<String> = values
            .iter()
            .map(|value| {
                format!(
                    "{setting}={}",
                    percent_encoding::utf8_percent_encode(value, QUERY_VALUE)
                )
            })
            .collect();
        let query = setting_pairs.join("&");
        if let Err(err) = format!("postgres://localhost/?{query}").parse::<tokio_postgres::Config>()
        {
            // The password's value is never shown.
            let shown = if setting == "password" {
                String::new()
            } else {
                format!(" `{value}`")
            };
            return Err(format!("{name}{shown}: {}", super::with_reasons(&err)));
        }
        match (&hosts, setting) {
            (Some(hosts), "port") => filled.address = hosts.with_ports(address, name, value)?,
            _ => filled.pairs.extend(setting_pairs),
        }
        filled.used.push(name);
    }
    filled.pairs = pairs
        .into_iter()
        .filter(|(key, _)| !(moved_query_port && key == "port"))
        .map(|(_, pair)| pair)
        .chain(filled.pairs)
        .collect();
    Ok(filled)
}

/// The hosts a URL names before its path (`scheme://[user@]host[:port],...`).
struct HostList {
    /// Where they are in the URL.
    span: std::ops::Range<usize>,
    /// Each host, and whether it names a port.
    hosts: Vec<(String, bool)>,
}

impl HostList {
    /// `None` when the URL names no host there.
    fn of(address: &str) -> Option<HostList> {
        let span = UrlLayout::of(address)?.hosts;
        let list = &address[span.clone()];
        if list.is_empty() {
            return None;
        }
        let hosts = list
            .split(',')
            .map(|chunk| {
                // An IPv6 address is bracketed: `[::1]:5432`.
                let port_from = chunk.rfind(']').map_or(0, |bracket| bracket + 1);
                match chunk[port_from..].find(':') {
                    // `h:` names no port, as in libpq.
                    Some(colon) => (
                        chunk[..port_from + colon].to_string(),
                        port_from + colon + 1 < chunk.len(),
                    ),
                    None => (chunk.to_string(), false),
                }
            })
            .collect();
        Some(HostList { span, hosts })
    }

    fn names_a_port(&self) -> bool {
        self.hosts.iter().any(|(_, names_port)| *names_port)
    }

    /// Whether the URL decides its hosts' ports: libpq takes `PGPORT` only
    /// for a URL naming one host and no port (`h` or `h:`).
    fn names_its_ports(&self) -> bool {
        self.hosts.len() > 1 || self.names_a_port()
    }

    /// `address` with `ports` (one for all of its hosts, or one each) after
    /// its hosts; `by` is the setting or variable that gives them, which
    /// tokio-postgres has read as a list of port numbers already (so they are
    /// safe in the URL's text).
    fn with_ports(&self, address: &str, by: &str, ports: &str) -> Result<String, String> {
        let listed: Vec<&str> = ports.split(',').collect();
        if listed.len() != 1 && listed.len() != self.hosts.len() {
            return Err(format!(
                "{by} `{ports}` gives {} ports for the URL's {} host(s): give one port for all \
                 of them, or one each",
                listed.len(),
                self.hosts.len()
            ));
        }
        let hosts: Vec<String> = self
            .hosts
            .iter()
            .enumerate()
            .map(|(index, (host, _))| format!("{host}:{}", listed[index.min(listed.len() - 1)]))
            .collect();
        Ok(format!(
            "{}{}{}",
            &address[..self.span.start],
            hosts.join(","),
            &address[self.span.end..]
        ))
    }
}

/// The password for `config` in the password file at `path`, as libpq finds
/// it: the file's first line matching the host, port, database and user
/// connected to. signoff has one password for all of a URL's hosts, so the
/// file must give them all the same one (or none): a password is never sent to
/// a host it was not written for. Unlike libpq, which ignores it with a
/// warning, a file others may read is an error (for the caller to report if
/// the server asks for a password).
fn password_from_file(config: &tokio_postgres::Config, path: &Path) -> Result<Lookup, String> {
    let Some(text) = read_password_file(path)? else {
        return Ok(Lookup::NoFile);
    };
    // `parse_url` names the user always (the operating system's, when the URL
    // and the environment name none).
    let user = config.get_user().unwrap_or_default();
    let database = config
        .get_dbname()
        .filter(|database| !database.is_empty())
        .unwrap_or(user);
    let mut found: Option<Option<String>> = None;
    for place in hosts_and_ports(config) {
        let password = PasswordFile(&text).password_for(&place, database, user);
        match &found {
            Some(earlier) if *earlier != password => {
                return Err(format!(
                    "the password file {} gives this URL's hosts different passwords (or a \
                     password to only some of them), and signoff sends one to all of its hosts: \
                     give the password in the URL or in PGPASSWORD",
                    path.display()
                ));
            }
            _ => found = Some(password),
        }
    }
    // An empty password on the line is none, as in libpq.
    Ok(
        match found.flatten().filter(|password| !password.is_empty()) {
            Some(password) => Lookup::Found(password),
            None => Lookup::NoLine,
        },
    )
}

/// Where a connection's password came from, to say so when the server asks
/// for one that nothing gave, or refuses one from the password file.
#[derive(Clone)]
pub enum PasswordSource {
    /// The URL or `PGPASSWORD`.
    Given,
    /// This password file.
    File(PathBuf),
    /// None: HOME is not set, so there is no `~/.pgpass` to look in.
    NoHome,
    /// None: there is no password file at this path.
    NoFile(PathBuf),
    /// None: the password file at this path has no line for the connection.
    NoLine(PathBuf),
    /// The password file could not be used, for this reason (reported only if
    /// the server asks for a password: one that trusts the connection never
    /// needs the file).
    Unusable(String),
}

/// Gives `config` the password file's password (at `password_file`, which
/// [`Defaults::password_file`] names only when neither the URL nor
/// `PGPASSWORD` gives one), and says where the connection's password comes from.
pub fn fill_in_password(
    config: &mut tokio_postgres::Config,
    password_file: Option<PathBuf>,
) -> PasswordSource {
    match password_file {
        None if has_password(config) => PasswordSource::Given,
        None => PasswordSource::NoHome,
        Some(path) => match password_from_file(config, &path) {
            Ok(Lookup::Found(password)) => {
                config.password(password);
                PasswordSource::File(path)
            }
            Ok(Lookup::NoFile) => PasswordSource::NoFile(path),
            Ok(Lookup::NoLine) => PasswordSource::NoLine(path),
            Err(reason) => PasswordSource::Unusable(reason),
        },
    }
}

/// What a password file gave.
enum Lookup {
    /// There is no such file.
    NoFile,
    /// The file has no line for the connection.
    NoLine,
    Found(String),
}

/// The password file's text; `None` when there is none. Its kind and mode are
/// checked on the file opened, so a file swapped in after the check is not
/// read.
fn read_password_file(path: &Path) -> Result<Option<String>, String> {
    use std::io::Read;
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let cannot_read =
        |err: std::io::Error| format!("cannot read the password file {}: {err}", path.display());
    // Without blocking, so that a FIFO named as the file is refused below
    // rather than waited on for a writer.
    let opened = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path);
    let mut file = match opened {
        Ok(file) => file,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(cannot_read(err)),
    };
    let metadata = file.metadata().map_err(cannot_read)?;
    if !metadata.is_file() {
        return Err(format!(
            "the password file {} is not a regular file",
            path.display()
        ));
    }
    if metadata.mode() & 0o077 != 0 {
        return Err(format!(
            "the password file {} has group or world access (mode {:o}): give it mode 0600 \
             (libpq ignores it otherwise), or give the password in the URL",
            path.display(),
            metadata.mode() & 0o777
        ));
    }
    let mut text = String::new();
    file.read_to_string(&mut text).map_err(cannot_read)?;
    Ok(Some(text))
}

/// The socket directories libpq may have been built to use by default (Debian
/// and most distributions, and PostgreSQL's own default). libpq's password
/// file names its one default directory `localhost`, and any other by its
/// path; not knowing which libpq a file was written for, signoff lets a line
/// name one of these either way.
const DEFAULT_SOCKET_DIRECTORIES: [&str; 3] = ["/var/run/postgresql", "/run/postgresql", "/tmp"];

/// A host of `config` as a password file's line may name it (a default socket
/// directory has two names), with its port.
struct Place {
    names: Vec<String>,
    port: String,
}

/// Each host of `config` as the password file names it, with its port.
fn hosts_and_ports(config: &tokio_postgres::Config) -> Vec<Place> {
    let ports = config.get_ports();
    let port_of = |index: usize| {
        let port = match ports {
            [] => 5432,
            [one] => *one,
            many => many.get(index).copied().unwrap_or(5432),
        };
        port.to_string()
    };
    let hosts: Vec<Vec<String>> = if config.get_hosts().is_empty() {
        // A `hostaddr` without a host is matched as libpq matches it.
        config
            .get_hostaddrs()
            .iter()
            .map(|address| vec![address.to_string()])
            .collect()
    } else {
        config
            .get_hosts()
            .iter()
            .map(|host| match host {
                Host::Tcp(name) => vec![name.clone()],
                Host::Unix(directory) => {
                    let directory = directory.display().to_string();
                    if DEFAULT_SOCKET_DIRECTORIES.contains(&directory.trim_end_matches('/')) {
                        vec!["localhost".to_string(), directory]
                    } else {
                        vec![directory]
                    }
                }
            })
            .collect()
    };
    hosts
        .into_iter()
        .enumerate()
        .map(|(index, names)| Place {
            names,
            port: port_of(index),
        })
        .collect()
}

/// libpq's password file: lines of `hostname:port:database:username:password`,
/// where a field of `*` matches anything and `\` takes the next character as
/// it is (`\:`, `\\`); `#` starts a comment line.
struct PasswordFile<'a>(&'a str);

impl PasswordFile<'_> {
    /// The password of the first line matching the place, database and user.
    fn password_for(&self, place: &Place, database: &str, user: &str) -> Option<String> {
        self.0
            .lines()
            .map(|line| line.strip_suffix('\r').unwrap_or(line))
            .filter(|line| !line.is_empty() && !line.starts_with('#'))
            .find_map(|line| {
                let fields = split_escaped(line);
                let is = |field: &Field, wanted: &str| field.is_wildcard || field.text == wanted;
                let matches = fields.len() >= 5
                    && place.names.iter().any(|name| is(&fields[0], name))
                    && is(&fields[1], &place.port)
                    && is(&fields[2], database)
                    && is(&fields[3], user);
                matches.then(|| fields[4].text.clone())
            })
    }
}

/// A field of a password file's line.
struct Field {
    /// Unescaped.
    text: String,
    /// A bare `*` (an escaped `\*` is a plain star).
    is_wildcard: bool,
}

/// A line's fields. As libpq reads it, the password ends at the next
/// unescaped `:`.
fn split_escaped(line: &str) -> Vec<Field> {
    let mut fields = Vec::new();
    let mut text = String::new();
    let mut escaped_any = false;
    let mut characters = line.chars();
    loop {
        let next = characters.next();
        match next {
            Some('\\') => {
                text.push(characters.next().unwrap_or('\\'));
                escaped_any = true;
            }
            Some(other) if other != ':' => text.push(other),
            // A colon, or the end of the line.
            _ => {
                let is_wildcard = text == "*" && !escaped_any;
                fields.push(Field {
                    text: std::mem::take(&mut text),
                    is_wildcard,
                });
                escaped_any = false;
                if next.is_none() || fields.len() == 5 {
                    break;
                }
            }
        }
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The password `file` gives `[host, port, database, user]`.
    fn lookup(file: &PasswordFile, [host, port, database, user]: [&str; 4]) -> Option<String> {
        let place = Place {
            names: vec![host.to_string()],
            port: port.to_string(),
        };
        file.password_for(&place, database, user)
    }

    #[test]
    fn the_first_matching_line_gives_the_password() {
        let file = PasswordFile(
            "# comment\n\
             db.internal:5432:signoff:other:not-this\n\
             db.internal:5432:signoff:app:first\r\n\
             *:*:*:app:second\n\
             \n\
             *:*:*:*:fallback\n",
        );
        let wanted = |host: &str, port: &str, database: &str, user: &str| {
            lookup(&file, [host, port, database, user])
        };
        assert_eq!(
            wanted("db.internal", "5432", "signoff", "app").as_deref(),
            Some("first")
        );
        assert_eq!(
            wanted("db.internal", "6432", "signoff", "app").as_deref(),
            Some("second")
        );
        assert_eq!(
            wanted("elsewhere", "5432", "x", "nobody").as_deref(),
            Some("fallback")
        );
        assert_eq!(
            lookup(&PasswordFile("a:1:b:c:d\n"), ["a", "1", "b", "x"]),
            None
        );
        assert_eq!(
            lookup(&PasswordFile("a:1:b\n"), ["a", "1", "b", "c"]),
            None,
            "a line of fewer than five fields matches nothing"
        );
    }

    #[test]
    fn backslashes_escape_colons_and_themselves() {
        let file = PasswordFile(r"host\:with\:colons:5432:d\\b:u:p\:a\\ss:ignored");
        assert_eq!(
            lookup(&file, ["host:with:colons", "5432", r"d\b", "u"]).as_deref(),
            Some(r"p:a\ss"),
            "the password ends at the next unescaped colon"
        );
        assert_eq!(
            lookup(&PasswordFile(r"h:5432:d:u:\*"), ["h", "5432", "d", "u"]).as_deref(),
            Some("*")
        );
        assert_eq!(
            lookup(&PasswordFile(r"\*:5432:d:u:p"), ["h", "5432", "d", "u"]),
            None,
            "an escaped star is a plain star, not a wildcard"
        );
    }

    fn password_file(dir: &Path, text: &str, mode: u32) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join(".pgpass");
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    /// The password a connection to `url` has once the server asks for one:
    /// the URL's, or the password file's.
    fn password_after(url: &str, defaults: &Defaults) -> Result<Option<String>, String> {
        password_with(url, None, defaults)
    }

    fn password_with(
        url: &str,
        named: Option<Given>,
        defaults: &Defaults,
    ) -> Result<Option<String>, String> {
        let mut config: tokio_postgres::Config = url.parse().unwrap();
        let file = defaults.password_file(&config, named);
        match fill_in_password(&mut config, file) {
            PasswordSource::Unusable(reason) => Err(reason),
            _ => Ok(config
                .get_password()
                .map(|given| String::from_utf8(given.to_vec()).unwrap())),
        }
    }

    /// A line each for two hosts, and one for anything else.
    const TWO_HOSTS_AND_ANY: &str =
        "db1:5432:app:signoff:one\ndb2:6000:app:signoff:two\n*:*:*:*:any\n";

    #[test]
    fn the_password_file_fills_in_a_password_the_url_leaves_out() {
        let home = tempfile::tempdir().unwrap();
        password_file(home.path(), TWO_HOSTS_AND_ANY, 0o600);
        let defaults = Defaults::with_home(home.path());
        assert_eq!(
            password_after("postgres://signoff@db1/app", &defaults).unwrap(),
            Some("one".into())
        );
        assert_eq!(
            password_after("postgres://signoff@db2:6000/app", &defaults).unwrap(),
            Some("two".into())
        );
        assert_eq!(
            password_after("postgres://signoff:given@db1/app", &defaults).unwrap(),
            Some("given".into()),
            "the URL's password wins"
        );
        password_file(home.path(), "db1:5432:app:signoff:\n*:*:*:*:any\n", 0o600);
        assert_eq!(
            password_after("postgres://signoff@db1/app", &defaults).unwrap(),
            None,
            "an empty password on the first matching line is none, as in libpq"
        );
        password_file(home.path(), TWO_HOSTS_AND_ANY, 0o600);
        assert_eq!(
            password_after("postgres://signoff@db1/other", &defaults).unwrap(),
            Some("any".into())
        );
        assert_eq!(
            password_after("postgres://signoff@db1:5432,db1:5432/app", &defaults).unwrap(),
            Some("one".into()),
            "hosts that agree share the password"
        );
        let error =
            password_after("postgres://signoff@db1:5432,db2:6000/app", &defaults).unwrap_err();
        assert!(error.contains("different passwords"), "{error}");
        assert_eq!(
            password_after("postgres://signoff@db1/app", &Defaults::none()).unwrap(),
            None,
            "no home, no file"
        );
        let named = home.path().join("elsewhere");
        std::fs::create_dir(&named).unwrap();
        let named = password_file(&named, "*:*:*:*:named\n", 0o600);
        let by_variable =
            Defaults::with_home(home.path()).with_variable("PGPASSFILE", named.to_str().unwrap());
        assert_eq!(
            password_after("postgres://signoff@db1/app", &by_variable).unwrap(),
            Some("named".into()),
            "PGPASSFILE names another file"
        );
        let by_url = Given {
            value: named.display().to_string(),
            by: "passfile",
        };
        assert_eq!(
            password_with("postgres://signoff@db1/app", Some(by_url), &defaults).unwrap(),
            Some("named".into()),
            "so does the URL's passfile"
        );
    }

    #[test]
    fn a_unix_socket_is_named_by_its_path_or_localhost_if_it_is_a_default() {
        let home = tempfile::tempdir().unwrap();
        let defaults = Defaults::with_home(home.path());
        let cases = [
            (
                "localhost:5432:d:u:local\n",
                "/var/run/postgresql",
                Some("local"),
            ),
            (
                "localhost:5432:d:u:local\n",
                "/run/postgresql",
                Some("local"),
            ),
            ("localhost:5432:d:u:local\n", "/tmp", Some("local")),
            ("/tmp:5432:d:u:by-path\n", "/tmp", Some("by-path")),
            ("/srv/pg:5432:d:u:there\n", "/srv/pg", Some("there")),
            ("localhost:5432:d:u:local\n", "/srv/pg", None),
        ];
        for (line, directory, expected) in cases {
            password_file(home.path(), line, 0o600);
            let url = format!(
                "postgres://u@{}/d",
                percent_encoding::utf8_percent_encode(
                    directory,
                    percent_encoding::NON_ALPHANUMERIC
                )
            );
            assert_eq!(
                password_after(&url, &defaults).unwrap().as_deref(),
                expected,
                "{line} for {directory}"
            );
        }
    }

    #[test]
    fn a_variable_that_is_not_text_is_refused_rather_than_taken_as_unset() {
        let defaults = Defaults {
            not_text: vec!["PGHOST", "PGSSLROOTCERT"],
            ..Defaults::none()
        };
        let error = defaults.refuse_unreadable().unwrap_err();
        assert!(
            error.contains("PGHOST, PGSSLROOTCERT cannot be read: not UTF-8"),
            "{error}"
        );
        assert_eq!(Defaults::none().refuse_unreadable(), Ok(()));
    }

    #[test]
    fn a_password_file_others_may_read_is_refused() {
        let home = tempfile::tempdir().unwrap();
        let defaults = Defaults::with_home(home.path());
        for mode in [0o640, 0o604] {
            password_file(home.path(), "*:*:*:*:secret\n", mode);
            let error = password_after("postgres://u@h/d", &defaults).unwrap_err();
            assert!(
                error.contains("has group or world access") && error.contains(".pgpass"),
                "{error}"
            );
            assert!(!error.contains("secret"), "{error}");
        }
        assert_eq!(
            password_after("postgres://u:given@h/d", &defaults).unwrap(),
            Some("given".into()),
            "not even read when the URL gives the password"
        );
        std::fs::remove_file(home.path().join(".pgpass")).unwrap();
        std::fs::create_dir(home.path().join(".pgpass")).unwrap();
        let error = password_after("postgres://u@h/d", &defaults).unwrap_err();
        assert!(error.contains("is not a regular file"), "{error}");
        // A FIFO is refused, not waited on for a writer.
        let fifo = home.path().join("fifo");
        let path = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: `path` is a NUL-terminated string that outlives the call.
        assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o600) }, 0);
        let by_variable = Defaults::none().with_variable("PGPASSFILE", fifo.to_str().unwrap());
        let error = password_after("postgres://u@h/d", &by_variable).unwrap_err();
        assert!(error.contains("is not a regular file"), "{error}");
    }
}
