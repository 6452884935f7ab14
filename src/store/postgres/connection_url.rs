//! Reading a `postgres://` URL as libpq reads it, so that a URL that works with
//! `psql` works here: tokio-postgres reads most of it, while the TLS settings
//! ([`tls`]) and the password file's name are taken out of it here, and what it
//! leaves out is taken from libpq's environment ([`libpq`]).

use std::collections::BTreeMap;
use std::path::PathBuf;

use tokio_postgres::config::{Host, SslMode};

use super::libpq::{self, Defaults, Given};
use super::tls::{self, TlsSettings};

/// Splits a `postgres://` URL into what tokio-postgres reads and the TLS
/// settings; the error says what is wrong, without repeating the URL (which may
/// hold a password). Settings the URL leaves out are taken where libpq takes
/// them: the `PG*` environment variables, the TLS files in `~/.postgresql/` and
/// the password file.
pub fn parse_url(url: &str) -> Result<ConnectionSettings, String> {
    parse_url_with(url, &Defaults::of_this_process())
}

/// A `postgres://` URL, read.
pub struct ConnectionSettings {
    /// What tokio-postgres connects with.
    pub config: tokio_postgres::Config,
    pub tls: TlsSettings,
    /// Where to look for a password the URL does not give (nor `PGPASSWORD`):
    /// libpq's password file.
    pub password_file: Option<PathBuf>,
    /// The `PG*` variables that stood in for settings the URL leaves out.
    pub from_environment: Vec<&'static str>,
}

/// The URL settings read here rather than by tokio-postgres.
pub const READ_HERE: [&str; 7] = [
    "sslmode",
    "sslrootcert",
    "sslcert",
    "sslkey",
    "sslcrl",
    "sslcrldir",
    "passfile",
];

/// [`parse_url`], with `defaults` standing for this process's environment and
/// home directory (which the tests choose).
pub(super) fn parse_url_with(url: &str, defaults: &Defaults) -> Result<ConnectionSettings, String> {
    defaults.refuse_unreadable()?;
    let layout = libpq::UrlLayout::of(url).ok_or("not a postgres:// (or postgresql://) URL")?;
    let (address, query) = match layout.query {
        Some(mark) => (&url[..mark], &url[mark + 1..]),
        None => (url, ""),
    };
    // An empty password (`postgres://u:@h`) counts as none, as in libpq, so
    // that `PGPASSWORD` or the password file may give one.
    // (Only a colon that ends the user part and is its first: `u:pw:` has the
    // password `pw:`.)
    let address = match layout.user_info {
        Some(user) if !user.is_empty() && url[user.clone()].find(':') == Some(user.len() - 1) => {
            format!("{}{}", &url[..user.end - 1], &address[user.end..])
        }
        _ => address.to_string(),
    };
    let address = address.as_str();
    let mut read_here = BTreeMap::new();
    // The other pairs, each with its decoded key, for tokio-postgres.
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        // Percent-decoded as tokio-postgres decodes the rest (`+` stays `+`).
        let decoded = |text: &str| {
            percent_encoding::percent_decode_str(text)
                .decode_utf8_lossy()
                .into_owned()
        };
        let key = decoded(key);
        if key == "sslpassword" {
            return Err(
                "sslpassword: encrypted private keys are not supported; give sslkey a \
                 decrypted key (readable by signoff only)"
                    .into(),
            );
        }
        match READ_HERE.iter().find(|setting| **setting == key) {
            Some(setting) => {
                let given = Given {
                    value: decoded(value),
                    by: setting,
                };
                read_here.insert(*setting, given);
            }
            None => kept.push((key, pair.to_string())),
        }
    }
    let mut from_environment = Vec::new();
    // The URL's own setting, or else the environment's.
    let mut given = |setting: &str| {
        read_here.remove(setting).or_else(|| {
            let given = defaults.variable_for(setting)?;
            from_environment.push(given.by);
            Some(given)
        })
    };
    let mut tls = tls::Named {
        mode: given("sslmode"),
        root_cert: given("sslrootcert"),
        client_cert: given("sslcert"),
        client_key: given("sslkey"),
        crl_file: given("sslcrl"),
        crl_dir: given("sslcrldir"),
    };
    // Not through `given`: `PGPASSFILE` counts as used only if the file is.
    let named_password_file = read_here.remove("passfile");
    let ssl_mode = tls.ssl_mode()?;
    let pairs: Vec<String> = kept.iter().map(|(_, pair)| pair.clone()).collect();
    let as_given = with_query(address, &pairs)?;
    let filled = libpq::fill_in_from_environment(address, kept, &as_given, defaults)?;
    from_environment.extend(filled.used);
    let mut config = with_query(&filled.address, &filled.pairs)?;
    // No user, or an empty one (`postgres://:pw@h`, `?user=`), is the
    // operating system's, as in libpq (tokio-postgres would send an empty one).
    // Named here once, for the password file's lookup as for connecting.
    if config.get_user().is_none_or(str::is_empty) {
        config.user(whoami::username().map_err(|err| {
            format!("the URL names no user, and the operating system's is unknown: {err}")
        })?);
    }
    refuse_mismatched_lists(&config, &from_environment)?;
    let named_no_file = named_password_file.is_none();
    let password_file = defaults.password_file(&config, named_password_file);
    if named_no_file && password_file.is_some() && defaults.variable_for("passfile").is_some() {
        from_environment.push("PGPASSFILE");
    }
    let hosts = config.get_hosts();
    // A `hostaddr` is reached over TCP whatever the host says.
    let sockets_only = !hosts.is_empty()
        && hosts.iter().all(|host| matches!(host, Host::Unix(_)))
        && config.get_hostaddrs().is_empty();
    // libpq never asks for TLS over a Unix socket, whatever sslmode says
    // (PostgreSQL does not offer it there), and so ignores the TLS files;
    // without TLS at all there is no handshake to use them in, and a URL
    // switched to `disable` keeps working.
    if sockets_only || ssl_mode == SslMode::Disable {
        config.ssl_mode(SslMode::Disable);
        // Of the TLS variables, only `PGSSLMODE` mattered, and over sockets
        // not even that.
        from_environment
            .retain(|name| !name.starts_with("PGSSL") || (*name == "PGSSLMODE" && !sockets_only));
        return Ok(ConnectionSettings {
            config,
            tls: TlsSettings::default(),
            password_file,
            from_environment,
        });
    }
    let tls = tls.settings(defaults)?;
    config.ssl_mode(ssl_mode);
    Ok(ConnectionSettings {
        config,
        tls,
        password_file,
        from_environment,
    })
}

/// Refuses lists of hosts, addresses and ports that do not go together, which
/// tokio-postgres would refuse only when connecting; a list from the
/// environment is named as its variable.
fn refuse_mismatched_lists(
    config: &tokio_postgres::Config,
    from_environment: &[&str],
) -> Result<(), String> {
    let named = |setting: &'static str, variable: &'static str| {
        if from_environment.contains(&variable) {
            variable
        } else {
            setting
        }
    };
    let hosts = config.get_hosts().len();
    let addresses = config.get_hostaddrs().len();
    let ports = config.get_ports().len();
    if hosts > 0 && addresses > 0 && hosts != addresses {
        return Err(format!(
            "{hosts} host(s) ({}) and {addresses} address(es) ({}): give one address for each \
             host",
            named("host", "PGHOST"),
            named("hostaddr", "PGHOSTADDR")
        ));
    }
    let places = hosts.max(addresses);
    if ports > 1 && ports != places {
        return Err(format!(
            "{ports} port(s) ({}) for {places} host(s): give one port for all of them, or one \
             each",
            named("port", "PGPORT")
        ));
    }
    Ok(())
}

/// tokio-postgres's reading of the URL's `address` with the query `pairs`.
fn with_query(address: &str, pairs: &[String]) -> Result<tokio_postgres::Config, String> {
    let url = if pairs.is_empty() {
        address.to_string()
    } else {
        format!("{address}?{}", pairs.join("&"))
    };
    url.parse().map_err(|err| super::with_reasons(&err))
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::store::postgres::tls::{ClientIdentity, Revocations, Roots, Verify};

    /// Parses as if this user had no `~/.postgresql/` and no `PG*` variables.
    pub fn parse(url: &str) -> Result<(tokio_postgres::Config, TlsSettings), String> {
        parse_with(url, &Defaults::none())
    }

    pub fn parse_with(
        url: &str,
        defaults: &Defaults,
    ) -> Result<(tokio_postgres::Config, TlsSettings), String> {
        parse_url_with(url, defaults).map(|settings| (settings.config, settings.tls))
    }

    pub fn settings(url: &str) -> TlsSettings {
        parse(url).unwrap().1
    }

    #[test]
    fn no_tls_over_a_unix_socket_as_in_libpq() {
        for url in [
            "postgres://u@%2Fvar%2Frun%2Fpostgresql/d?sslmode=require",
            "postgres://u@%2Frun%2Fpg/d?sslmode=verify-full",
            "postgres://u@%2Frun%2Fpg/d?sslmode=verify-ca&sslrootcert=/ca.pem&sslcert=/c.pem&sslkey=/c.key",
        ] {
            let (config, tls) = parse(url).unwrap();
            assert_eq!(config.get_ssl_mode(), SslMode::Disable, "{url}");
            assert_eq!(tls, TlsSettings::default(), "{url}");
        }
        // A socket beside a TCP host, or a TCP address given as hostaddr, keeps
        // the URL's TLS settings (tokio-postgres has one sslmode for all hosts).
        for url in [
            "postgres://u@%2Frun%2Fpg,db.internal/d?sslmode=require",
            "postgres://u@%2Frun%2Fpg/d?hostaddr=10.0.0.5&sslmode=require",
        ] {
            let (config, _) = parse(url).unwrap();
            assert_eq!(config.get_ssl_mode(), SslMode::Require, "{url}");
        }
        // Still checked: a value libpq would refuse.
        assert_eq!(
            settings("postgres://u@%2Frun%2Fpg/d?sslrootcert="),
            TlsSettings::default(),
            "the TLS files are not even looked at"
        );
        let error = parse("postgres://u@%2Frun%2Fpg/d?sslmode=sometimes").unwrap_err();
        assert!(error.contains("not one of disable"), "{error}");
    }

    /// Parses with these `PG*` variables set (and no home directory).
    fn parse_in(
        variables: &[(&'static str, &str)],
        url: &str,
    ) -> Result<ConnectionSettings, String> {
        let defaults = variables
            .iter()
            .fold(Defaults::none(), |defaults, (name, value)| {
                defaults.with_variable(name, value)
            });
        parse_url_with(url, &defaults)
    }

    #[test]
    fn the_environment_stands_in_for_settings_the_url_leaves_out() {
        let tls_variables = [
            ("PGSSLMODE", "verify-full"),
            ("PGSSLROOTCERT", "/ca.pem"),
            ("PGSSLCERT", "/c.pem"),
            ("PGSSLKEY", "/c.key"),
            ("PGSSLCRL", "/r.crl"),
            ("PGSSLCRLDIR", "/crls"),
        ];
        let settings = parse_in(&tls_variables, "postgres://u@h/d").unwrap();
        assert_eq!(settings.config.get_ssl_mode(), SslMode::Require);
        assert_eq!(
            settings.from_environment,
            tls_variables.map(|(name, _)| name),
            "the variables used are told"
        );
        assert_eq!(
            settings.tls,
            TlsSettings {
                verify: Verify::ChainAndName,
                roots: Some(Roots::File("/ca.pem".into())),
                revocations: vec![
                    Revocations::File("/r.crl".into()),
                    Revocations::Dir("/crls".into())
                ],
                identity: Some(ClientIdentity {
                    certificate: "/c.pem".into(),
                    key: "/c.key".into(),
                }),
            }
        );
        let url_wins = parse_in(
            &tls_variables,
            "postgres://u@h/d?sslmode=require&sslrootcert=/mine.pem",
        )
        .unwrap()
        .tls;
        assert_eq!(
            (url_wins.verify, url_wins.roots),
            (Verify::Chain, Some(Roots::File("/mine.pem".into()))),
            "the URL's settings win"
        );
        assert_eq!(
            parse_in(&tls_variables, "postgres://u@h/d?sslmode=disable")
                .unwrap()
                .tls,
            TlsSettings::default()
        );
        let over_a_socket =
            parse_in(&[("PGHOST", "/run/pg")], "postgres:///d?sslmode=require").unwrap();
        assert_eq!(
            over_a_socket.config.get_hosts(),
            [Host::Unix("/run/pg".into())]
        );
        assert_eq!(over_a_socket.config.get_ssl_mode(), SslMode::Disable);

        let connection_variables = [
            ("PGHOST", "db1,db2"),
            ("PGHOSTADDR", "10.0.0.5,10.0.0.6"),
            ("PGPORT", "6000"),
            ("PGUSER", "app user"),
            ("PGDATABASE", "signoff&co"),
            ("PGPASSWORD", "p@ss=word&"),
            ("PGAPPNAME", "signoff east"),
            ("PGOPTIONS", "-c statement_timeout=5s"),
            ("PGTARGETSESSIONATTRS", "read-write"),
            ("PGCHANNELBINDING", "require"),
            ("PGLOADBALANCEHOSTS", "random"),
        ];
        let config = parse_in(&connection_variables, "postgres://")
            .unwrap()
            .config;
        assert_eq!(
            config.get_hosts(),
            [Host::Tcp("db1".into()), Host::Tcp("db2".into())]
        );
        assert_eq!(config.get_hostaddrs().len(), 2);
        assert_eq!(config.get_ports(), [6000]);
        assert_eq!(config.get_user(), Some("app user"));
        assert_eq!(config.get_dbname(), Some("signoff&co"));
        assert_eq!(config.get_password(), Some(&b"p@ss=word&"[..]));
        assert_eq!(config.get_application_name(), Some("signoff east"));
        assert_eq!(config.get_options(), Some("-c statement_timeout=5s"));
        assert_eq!(
            config.get_target_session_attrs(),
            tokio_postgres::config::TargetSessionAttrs::ReadWrite
        );
        assert_eq!(
            config.get_channel_binding(),
            tokio_postgres::config::ChannelBinding::Require
        );
        assert_eq!(
            config.get_load_balance_hosts(),
            tokio_postgres::config::LoadBalanceHosts::Random
        );
        let config = parse_in(
            &connection_variables,
            "postgres://me:mine@here:7000/mydb?hostaddr=10.1.1.1&application_name=a&options=-cx%3Dy\
             &target_session_attrs=any&channel_binding=disable&load_balance_hosts=disable",
        )
        .unwrap()
        .config;
        assert_eq!(
            (
                config.get_hosts(),
                config.get_hostaddrs().len(),
                config.get_ports(),
                config.get_user(),
                config.get_dbname(),
                config.get_password(),
                config.get_application_name(),
                config.get_options(),
            ),
            (
                &[Host::Tcp("here".into())][..],
                1,
                &[7000][..],
                Some("me"),
                Some("mydb"),
                Some(&b"mine"[..]),
                Some("a"),
                Some("-cx=y"),
            ),
            "every setting the URL gives wins"
        );
        assert_eq!(
            (
                config.get_target_session_attrs(),
                config.get_channel_binding(),
                config.get_load_balance_hosts()
            ),
            (
                tokio_postgres::config::TargetSessionAttrs::Any,
                tokio_postgres::config::ChannelBinding::Disable,
                tokio_postgres::config::LoadBalanceHosts::Disable
            )
        );
    }

    #[test]
    fn pgport_stands_in_for_the_ports_the_url_leaves_out() {
        let ports = |port: &str, url: &str| {
            parse_in(&[("PGPORT", port)], url).map(|settings| settings.config.get_ports().to_vec())
        };
        assert_eq!(ports("6000", "postgres://u@h/d"), Ok(vec![6000]));
        assert_eq!(ports("6000", "postgres://u@h:/d"), Ok(vec![6000]));
        assert_eq!(ports("6000", "postgres:///d"), Ok(vec![6000]));
        assert_eq!(ports("6000", "postgres://u@h:5433/d"), Ok(vec![5433]));
        assert_eq!(
            ports("6000", "postgres://u:pw@h1,h2/d"),
            Ok(vec![5432, 5432]),
            "a list of hosts has its ports, as in libpq"
        );
        let settings = parse_in(&[("PGPORT", "6000")], "postgres://u@[::1]/d").unwrap();
        assert_eq!(
            (settings.config.get_hosts(), settings.config.get_ports()),
            (&[Host::Tcp("::1".into())][..], &[6000][..])
        );
        // The user part ends at the first `@`, as tokio-postgres reads it, so a
        // raw `?` in the password is not the query's start.
        let settings = parse_in(&[("PGPORT", "6432")], "postgres://app:ab?cd@db/app").unwrap();
        assert_eq!(
            (
                settings.config.get_hosts(),
                settings.config.get_ports(),
                settings.config.get_password()
            ),
            (
                &[Host::Tcp("db".into())][..],
                &[6432][..],
                Some(&b"ab?cd"[..])
            )
        );
        let error = ports("1,2", "postgres://h/d").unwrap_err();
        assert!(
            error.contains("PGPORT `1,2` gives 2 ports for the URL's 1 host(s)"),
            "{error}"
        );
        // The query's ports, as libpq takes them, where tokio-postgres would
        // add them to its 5432s; PGPORT does not count then.
        assert_eq!(ports("6000", "postgres://u@h/d?port=7000"), Ok(vec![7000]));
        assert_eq!(
            ports("6000", "postgres://h1,h2/d?port=7000,7001"),
            Ok(vec![7000, 7001])
        );
        assert_eq!(
            ports("6000", "postgres://h1,h2/d?port=7000"),
            Ok(vec![7000, 7000])
        );
        let error = parse("postgres://h/d?port=1%2Fx").err().unwrap();
        assert!(error.contains("invalid value for option `port`"), "{error}");
        let error = parse("postgres://h:5433/d?port=7000").err().unwrap();
        assert!(error.contains("2 port(s) (port) for 1 host(s)"), "{error}");
        let error = parse_in(&[("PGHOST", "a,b"), ("PGPORT", "1,2,3")], "postgres://")
            .err()
            .unwrap();
        assert!(
            error.contains("3 port(s) (PGPORT) for 2 host(s)"),
            "{error}"
        );
        let error = parse_in(&[("PGHOSTADDR", "10.0.0.1")], "postgres://a,b/d")
            .err()
            .unwrap();
        assert!(
            error.contains("2 host(s) (host) and 1 address(es) (PGHOSTADDR)"),
            "{error}"
        );
    }

    #[test]
    fn the_password_file_is_named_as_libpq_names_it() {
        let home = tempfile::tempdir().unwrap();
        let file =
            |url: &str, defaults: &Defaults| parse_url_with(url, defaults).unwrap().password_file;
        let in_home = Defaults::with_home(home.path());
        assert_eq!(
            file("postgres://u@h/d", &in_home),
            Some(home.path().join(".pgpass"))
        );
        let by_variable = Defaults::with_home(home.path()).with_variable("PGPASSFILE", "/etc/pw");
        assert_eq!(
            file("postgres://u@h/d", &by_variable),
            Some("/etc/pw".into())
        );
        assert_eq!(
            file("postgres://u@h/d?passfile=%2Fsrv%2Fpw", &by_variable),
            Some("/srv/pw".into()),
            "the URL's passfile wins"
        );
        assert_eq!(file("postgres://u:pw@h/d", &by_variable), None);
        assert_eq!(
            file(
                "postgres://u@h/d",
                &Defaults::with_home(home.path()).with_variable("PGPASSWORD", "pw")
            ),
            None,
            "PGPASSWORD comes before the file"
        );
        assert_eq!(file("postgres://u@h/d", &Defaults::none()), None);
    }

    #[test]
    fn an_empty_password_or_passfile_in_the_url_counts_as_none_as_in_libpq() {
        let password = |url: &str| {
            parse_in(&[("PGPASSWORD", "from-env")], url)
                .unwrap()
                .config
                .get_password()
                .map(<[u8]>::to_vec)
        };
        assert_eq!(password("postgres://u:@h/d"), Some(b"from-env".to_vec()));
        assert_eq!(password("postgres://u:given@h/d"), Some(b"given".to_vec()));
        let home = tempfile::tempdir().unwrap();
        assert_eq!(
            parse_url_with(
                "postgres://u@h/d?passfile=",
                &Defaults::with_home(home.path())
            )
            .unwrap()
            .password_file,
            Some(home.path().join(".pgpass"))
        );
    }

    #[test]
    fn an_empty_user_counts_as_none_and_only_postgres_urls_are_read() {
        let config = parse_in(&[("PGUSER", "app")], "postgres://:pw@h/d")
            .unwrap()
            .config;
        assert_eq!(config.get_user(), Some("app"));
        let operating_system_user = whoami::username().unwrap();
        for url in [
            "postgres://:pw@h/d",
            "postgres://@h/d",
            "postgres://h/d?user=",
            "postgres://h/d",
        ] {
            assert_eq!(
                parse(url).unwrap().0.get_user(),
                Some(operating_system_user.as_str()),
                "{url}"
            );
        }
        assert_eq!(
            parse("postgres://u:@h/d").unwrap().0.get_password(),
            None,
            "an empty password is not sent"
        );
        assert_eq!(
            parse("postgres://u:pw:@h/d").unwrap().0.get_password(),
            Some(&b"pw:"[..]),
            "a password ending in a colon keeps it"
        );
        assert_eq!(
            parse("postgres://u::@h/d").unwrap().0.get_password(),
            Some(&b":"[..])
        );
        for text in ["host=h dbname=d", "mysql://h/d", "h/d"] {
            let error = parse(text).err().unwrap();
            assert!(
                error.contains("not a postgres:// (or postgresql://) URL"),
                "{error}"
            );
        }
        assert!(parse("postgresql://u@h/d").is_ok());
    }

    #[test]
    fn only_the_variables_that_count_are_told() {
        let home = tempfile::tempdir().unwrap();
        let defaults = Defaults::with_home(home.path())
            .with_variable("PGPASSFILE", "/etc/pw")
            .with_variable("PGSSLROOTCERT", "/ca.pem")
            .with_variable("PGSSLMODE", "disable");
        let told = |url: &str| parse_url_with(url, &defaults).unwrap().from_environment;
        assert_eq!(told("postgres://u@h/d"), ["PGSSLMODE", "PGPASSFILE"]);
        assert_eq!(
            told("postgres://u:pw@h/d"),
            ["PGSSLMODE"],
            "no file is read when the URL gives the password"
        );
        assert_eq!(
            told("postgres://u@h/d?sslmode=require"),
            ["PGSSLROOTCERT", "PGPASSFILE"]
        );
        assert_eq!(
            told("postgres://u@%2Frun%2Fpg/d"),
            ["PGPASSFILE"],
            "no TLS over a socket, whatever PGSSLMODE says"
        );
    }

    #[test]
    fn wrong_values_in_the_environment_are_refused_with_the_variable_name() {
        for (variable, value, url, expected) in [
            (
                "PGSSLMODE",
                "sometimes",
                "postgres://h/d",
                "PGSSLMODE `sometimes` is not one of",
            ),
            (
                "PGSSLMODE",
                "verify-ca",
                "postgres://h/d",
                "PGSSLMODE verify-ca needs sslrootcert",
            ),
            (
                "PGSSLROOTCERT",
                "system",
                "postgres://h/d?sslmode=require",
                "sslmode require may not be used with PGSSLROOTCERT=system",
            ),
            (
                "PGSSLCERT",
                "/c.pem",
                "postgres://h/d",
                "PGSSLCERT /c.pem needs sslkey",
            ),
            (
                "PGSSLKEY",
                "/c.key",
                "postgres://h/d",
                "PGSSLKEY needs sslcert",
            ),
            (
                "PGSSLCRL",
                "/r.crl",
                "postgres://h/d?sslmode=require",
                "PGSSLCRL: revocation lists need the server's certificate checked",
            ),
            (
                "PGPORT",
                "fifty",
                "postgres://h/d",
                "PGPORT `fifty`: invalid connection string: invalid value for option `port`",
            ),
            (
                "PGTARGETSESSIONATTRS",
                "primary-ish",
                "postgres://h/d",
                "PGTARGETSESSIONATTRS `primary-ish`: invalid connection string",
            ),
            (
                "PGCHANNELBINDING",
                "always",
                "postgres://h/d",
                "PGCHANNELBINDING `always`: invalid connection string",
            ),
        ] {
            let error = parse_in(&[(variable, value)], url)
                .err()
                .unwrap_or_else(|| panic!("{variable}={value} with {url} was taken"));
            assert!(error.contains(expected), "{variable}={value}: {error}");
        }
    }
}
