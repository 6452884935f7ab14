//! The `signoff` binary: flags, environment, config files and exit codes, against a
//! real `signoff serve` process.

mod common;

use std::process::Output;

use common::{ServeProcess, signoff, xdg_env};
use serde_json::Value;

const EXIT_ERROR: i32 = 3;
const EXIT_USAGE: i32 = 64;

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// `signoff ARGS`, expected to fail with `code`; returns its stderr, which for
/// bad input (not a usage error, which clap explains) is one line.
fn refuses(home: &std::path::Path, args: &[&str], code: i32) -> String {
    let output = signoff(home, args);
    let message = stderr(&output);
    assert_eq!(
        output.status.code(),
        Some(code),
        "{args:?} should fail: {message}"
    );
    if code == EXIT_ERROR {
        assert_eq!(message.lines().count(), 1, "one clear line, got: {message}");
    }
    message
}

/// `signoff serve` with the given arguments, expected to refuse to start.
fn serve_refuses(home: &std::path::Path, args: &[&str]) -> String {
    let mut full = vec!["serve"];
    full.extend_from_slice(args);
    refuses(home, &full, EXIT_ERROR)
}

#[test]
fn serve_rejects_bad_flags_with_one_clear_line() {
    let home = tempfile::tempdir().unwrap();
    let message = serve_refuses(home.path(), &["--listen", "not-an-address"]);
    assert!(
        message.contains("--listen") && message.contains("not-an-address"),
        "{message}"
    );
    let message = serve_refuses(home.path(), &["--durability", "sometimes"]);
    assert!(
        message.contains("durability") && message.contains("full, normal"),
        "{message}"
    );
    let message = serve_refuses(home.path(), &["--db", "mysql://db/x"]);
    assert!(message.contains("--db"), "{message}");
    let message = serve_refuses(
        home.path(),
        &[
            "--db",
            "postgres://signoff:hunter2@127.0.0.1:1/x",
            "--pg-connect-timeout",
            "2",
        ],
    );
    assert!(
        message.contains("cannot connect to PostgreSQL"),
        "{message}"
    );
    assert!(!message.contains("hunter2"), "password shown: {message}");
    let message = serve_refuses(
        home.path(),
        &["--db", "postgres://127.0.0.1:1/x", "--pg-pool-size", "0"],
    );
    assert!(
        message.contains("--pg-pool-size") && message.contains("out of range"),
        "{message}"
    );
    for (url, expected) in [
        (
            "postgres://127.0.0.1:1/x?sslcert=/c.pem",
            "sslcert /c.pem needs sslkey",
        ),
        (
            "postgres://127.0.0.1:1/x?sslmode=require&sslcert=/nonexistent/c.pem&sslkey=/k.pem",
            "cannot read sslcert /nonexistent/c.pem",
        ),
        (
            "postgres://127.0.0.1:1/x?sslmode=require&sslcrl=/r.crl",
            "sslcrl: revocation lists need the server's certificate checked",
        ),
    ] {
        let message = serve_refuses(home.path(), &["--db", url]);
        assert!(message.contains(expected), "{url}: {message}");
    }
    let message = serve_refuses(home.path(), &["--drain=-1"]);
    assert!(
        message.contains("--drain: -1 is out of range: use 0 to 3600"),
        "{message}"
    );
    let message = serve_refuses(home.path(), &["--drain", "3601"]);
    assert!(
        message.contains("--drain: 3601 is out of range"),
        "{message}"
    );
    let output = signoff(home.path(), &["serve", "--drain", "10s"]);
    assert_eq!(output.status.code(), Some(EXIT_USAGE));
    assert!(stderr(&output).contains("--drain"));
    let output = signoff(home.path(), &["serve", "--pg-timer-lease", "soon"]);
    assert_eq!(output.status.code(), Some(EXIT_USAGE));
    assert!(stderr(&output).contains("--pg-timer-lease"));
    let output = signoff(home.path(), &["serve", "--no-such-flag"]);
    assert_eq!(output.status.code(), Some(EXIT_USAGE));
    assert!(stderr(&output).contains("--no-such-flag"));
    // Nothing was created by the refused starts.
    assert!(!home.path().join("config/signoff/client.toml").exists());
}

/// libpq's variables stand in for what the URL leaves out, so a wrong one is
/// named as the variable, and a password from the environment is never shown.
#[test]
fn serve_names_the_pg_variable_whose_value_is_wrong() {
    let home = tempfile::tempdir().unwrap();
    // `serve` logs which variables it used before it connects, by name.
    let log = "libpq's environment stands in for what the database URL leaves out: \
               PGPORT, PGPASSWORD";
    for (variables, expected) in [
        (
            &[("PGSSLMODE", "sometimes")][..],
            "PGSSLMODE `sometimes` is not one of disable",
        ),
        (&[("PGPORT", "fifty")], "PGPORT `fifty`: invalid"),
        (&[("PGSSLCERT", "/c.pem")], "PGSSLCERT /c.pem needs sslkey"),
        (
            &[("PGPASSWORD", "hunter2"), ("PGPORT", "1")],
            "cannot connect to PostgreSQL",
        ),
    ] {
        let output = common::signoff_command(
            home.path(),
            &[
                "serve",
                "--db",
                "postgres://127.0.0.1/x",
                "--pg-connect-timeout",
                "2",
            ],
        )
        .envs(variables.iter().copied())
        .output()
        .expect("run signoff");
        let message = stderr(&output);
        assert_eq!(
            output.status.code(),
            Some(EXIT_ERROR),
            "{variables:?}: {message}"
        );
        assert!(message.contains(expected), "{variables:?}: {message}");
        let errors: Vec<&str> = message.lines().filter(|line| !line.contains(log)).collect();
        assert_eq!(errors.len(), 1, "{variables:?}: {message}");
        assert!(!message.contains("hunter2"), "password shown: {message}");
        if expected == "cannot connect to PostgreSQL" {
            assert!(message.contains(log), "{message}");
        }
    }
}

#[test]
fn serve_rejects_a_pg_connect_timeout_out_of_range() {
    let home = tempfile::tempdir().unwrap();
    let db = ["--db", "postgres://127.0.0.1:1/x"];
    for (value, code, expected) in [
        ("0", EXIT_ERROR, "0 is out of range: use 1 to 3600"),
        ("3601", EXIT_ERROR, "3601 is out of range: use 1 to 3600"),
        ("-5", EXIT_ERROR, "-5 is out of range"),
        ("soon", EXIT_USAGE, "invalid value 'soon'"),
        ("", EXIT_USAGE, "invalid value ''"),
    ] {
        let flag = format!("--pg-connect-timeout={value}");
        let mut args = vec!["serve", &flag];
        args.extend_from_slice(&db);
        let message = refuses(home.path(), &args, code);
        assert!(
            message.contains("--pg-connect-timeout") && message.contains(expected),
            "{value:?}: {message}"
        );
    }
    // Checked even when the database is not PostgreSQL.
    let message = serve_refuses(home.path(), &["--pg-connect-timeout", "0"]);
    assert!(message.contains("--pg-connect-timeout"), "{message}");
    assert!(!home.path().join("config/signoff/client.toml").exists());
}

#[test]
fn demo_refuses_a_db_that_is_not_a_sqlite_file() {
    let home = tempfile::tempdir().unwrap();
    let not_a_directory = home.path().join("file");
    std::fs::write(&not_a_directory, "").unwrap();
    let under_a_file = not_a_directory.join("demo.db");
    let a_directory = home.path().to_str().unwrap();
    for (db, expected) in [
        (
            "postgres://signoff:hunter2@127.0.0.1:1/x",
            "--db takes a SQLite file: the demo does not run on PostgreSQL",
        ),
        (
            "mysql://db/x",
            "neither a file path nor a sqlite:// or postgres:// URL",
        ),
        ("", "--db: is empty"),
        (a_directory, "cannot open database"),
        (under_a_file.to_str().unwrap(), "cannot create"),
    ] {
        // These fail before the demo takes over the terminal, which a test has not.
        let message = refuses(home.path(), &["demo", "--db", db], EXIT_ERROR);
        assert!(message.contains(expected), "{db:?}: {message}");
        assert!(!message.contains("hunter2"), "password shown: {message}");
    }
}

#[test]
fn serve_rejects_bad_config_files() {
    let home = tempfile::tempdir().unwrap();
    let config = home.path().join("signoff.toml");
    let cases = [
        ("[server]\nlistn = \"127.0.0.1:1\"\n", "listn"),
        ("[server]\nlisten = 7700\n", "listen"),
        ("[server]\nlisten = \"nowhere\"\n", "server.listen"),
        ("[server]\ndurability = \"fast\"\n", "server.durability"),
        ("[server]\ndrain_seconds = -3\n", "server.drain_seconds"),
        ("[server]\ndrain_seconds = \"30\"\n", "drain_seconds"),
        ("[server]\ndatabase = \"\"\n", "server.database"),
        (
            "[tasks]\ndefault_assignees = [\"has space\"]\n",
            "tasks.default_assignees",
        ),
        (
            "[tasks]\ndefault_assignees = \"team:ops\"\n",
            "default_assignees",
        ),
        ("[nonsense]\n", "nonsense"),
        ("this is not toml", "signoff.toml"),
    ];
    for (text, named) in cases {
        std::fs::write(&config, text).unwrap();
        let message = serve_refuses(home.path(), &["--config", config.to_str().unwrap()]);
        assert!(message.contains(named), "config {text:?}: {message}");
    }
    let missing = home.path().join("missing.toml");
    let message = serve_refuses(home.path(), &["--config", missing.to_str().unwrap()]);
    assert!(message.contains("missing.toml"), "{message}");
}

#[test]
fn environment_configures_serve_and_flags_win() {
    let home = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(common::binary())
        .args(["serve"])
        .envs(xdg_env(home.path()))
        .env("SIGNOFF_LISTEN", "bad-from-env")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(EXIT_ERROR));
    assert!(stderr(&output).contains("bad-from-env"));

    let output = std::process::Command::new(common::binary())
        .args(["serve", "--durability", "bogus"])
        .envs(xdg_env(home.path()))
        .env("SIGNOFF_DURABILITY", "normal")
        .output()
        .unwrap();
    assert!(
        stderr(&output).contains("bogus"),
        "the flag beats the environment"
    );

    let output = common::signoff_command(home.path(), &["serve"])
        .env("SIGNOFF_DRAIN_SECONDS", "forever")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(EXIT_USAGE));
    assert!(stderr(&output).contains("forever"), "{}", stderr(&output));
}

#[test]
fn first_start_writes_a_private_client_config_and_keys_work() {
    let home = tempfile::tempdir().unwrap();
    let server = ServeProcess::start(home.path(), &["--durability", "normal"]);
    let client_toml = home.path().join("config/signoff/client.toml");
    let text = std::fs::read_to_string(&client_toml).unwrap();
    assert!(text.contains(&server.url), "{text}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&client_toml)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    assert!(
        home.path().join("data/signoff/signoff.db").exists(),
        "default database under XDG_DATA_HOME"
    );

    let created = signoff(
        home.path(),
        &[
            "keys",
            "create",
            "--reviewer",
            "alice@example.com",
            "--team",
            "oncall",
            "--json",
        ],
    );
    assert!(created.status.success(), "{}", stderr(&created));
    let created: Value = serde_json::from_str(&stdout(&created)).unwrap();
    let key = created["key"].as_str().unwrap();
    assert!(key.starts_with("so_") && key.len() >= 32 + 3, "{key}");
    assert_eq!(created["teams"], serde_json::json!(["oncall"]));

    let listed = signoff(home.path(), &["keys", "list", "--json"]);
    let listed: Value = serde_json::from_str(&stdout(&listed)).unwrap();
    assert_eq!(
        listed.as_array().unwrap().len(),
        2,
        "the bootstrap admin and alice"
    );
    assert!(
        !stdout(&signoff(home.path(), &["keys", "list"])).contains(key),
        "secrets are never listed"
    );

    let key_id = created["key_id"].as_str().unwrap();
    let revoked = signoff(home.path(), &["keys", "revoke", key_id]);
    assert!(revoked.status.success(), "{}", stderr(&revoked));
    let again = signoff(home.path(), &["keys", "revoke", key_id]);
    assert_eq!(again.status.code(), Some(EXIT_ERROR));
    assert!(stderr(&again).contains(key_id));

    // A restart does not mint a second admin key.
    drop(server);
    let _server = ServeProcess::start(home.path(), &[]);
    let listed = signoff(home.path(), &["keys", "list", "--json"]);
    let listed: Value = serde_json::from_str(&stdout(&listed)).unwrap();
    let admins = listed
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k["kind"] == "admin")
        .count();
    assert_eq!(admins, 1);
}

#[test]
fn keys_commands_reject_bad_input() {
    let home = tempfile::tempdir().unwrap();
    let output = signoff(home.path(), &["keys", "list"]);
    assert_eq!(output.status.code(), Some(EXIT_ERROR));
    assert!(
        stderr(&output).contains("no server configured"),
        "{}",
        stderr(&output)
    );

    let _server = ServeProcess::start(home.path(), &[]);
    let too_long = "a".repeat(65);
    for (args, expected) in [
        (
            vec!["keys", "create", "--agent", "not-an-address"],
            "agent address",
        ),
        (
            vec!["keys", "create", "--reviewer", "team:ops"],
            "reviewer identity",
        ),
        (
            vec!["keys", "create", "--reviewer", "bob", "--team", "bad team"],
            "teams",
        ),
        (
            vec!["keys", "revoke", "key_doesnotexist"],
            "key_doesnotexist",
        ),
        (
            vec!["keys", "create", "--admin", "has space"],
            "`has space` must be 1-64 characters",
        ),
        (
            vec!["keys", "create", "--admin", ""],
            "`` must be 1-64 characters",
        ),
        (
            vec!["keys", "create", "--admin", too_long.as_str()],
            "must be 1-64 characters",
        ),
        (
            vec!["keys", "create", "--admin", "ops", "--team", "oncall"],
            "only reviewer keys belong to teams",
        ),
    ] {
        let output = signoff(home.path(), &args);
        assert_eq!(output.status.code(), Some(EXIT_ERROR), "{args:?}");
        assert!(
            stderr(&output).contains(expected),
            "{args:?}: {}",
            stderr(&output)
        );
    }
    for args in [
        vec!["keys", "create"],
        vec![
            "keys",
            "create",
            "--agent",
            "agent://a/b",
            "--reviewer",
            "bob",
        ],
        vec!["keys", "revoke"],
        vec!["keys", "frobnicate"],
    ] {
        let output = signoff(home.path(), &args);
        assert_eq!(output.status.code(), Some(EXIT_USAGE), "{args:?}");
    }
    let wrong_key = signoff(home.path(), &["--key", "so_wrong", "keys", "list"]);
    assert_eq!(wrong_key.status.code(), Some(EXIT_ERROR));
    assert!(
        stderr(&wrong_key).contains("not valid"),
        "{}",
        stderr(&wrong_key)
    );
    let bad_url = signoff(home.path(), &["--server", "ftp://x", "keys", "list"]);
    assert_eq!(bad_url.status.code(), Some(EXIT_ERROR));
    assert!(stderr(&bad_url).contains("ftp://x"));
}

#[test]
fn reviewer_keys_cannot_manage_keys() {
    let home = tempfile::tempdir().unwrap();
    let _server = ServeProcess::start(home.path(), &[]);
    let created = signoff(
        home.path(),
        &[
            "keys",
            "create",
            "--reviewer",
            "alice@example.com",
            "--json",
        ],
    );
    let created: Value = serde_json::from_str(&stdout(&created)).unwrap();
    let output = signoff(
        home.path(),
        &["--key", created["key"].as_str().unwrap(), "keys", "list"],
    );
    assert_eq!(output.status.code(), Some(EXIT_ERROR));
    assert!(
        stderr(&output).contains("only admin keys"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn bench_rejects_bad_arguments() {
    let home = tempfile::tempdir().unwrap();
    // Refused before any server is started or any load is sent.
    for (args, expected) in [
        (vec!["roundtrip", "--agents", "0"], "at least 1"),
        (vec!["roundtrip", "--seconds", "0"], "at least 1"),
        (vec!["roundtrip", "--runs", "0"], "at least 1"),
        (vec!["roundtrip", "--durability", "maybe"], "maybe"),
        (
            vec!["inbox", "--tasks", "0"],
            "--tasks and --runs must be at least 1",
        ),
        (
            vec!["inbox", "--runs", "0"],
            "--tasks and --runs must be at least 1",
        ),
        (vec!["timers", "--due", "0"], "must be at least 1"),
        (vec!["timers", "--burst", "0"], "must be at least 1"),
        (vec!["timers", "--window", "0"], "must be at least 1"),
        (vec!["timers", "--runs", "0"], "must be at least 1"),
        (
            vec!["timers", "--window", "1801"],
            "--window 1801 is too long: at most 1800",
        ),
        (
            vec!["timers", "--window", "18446744073709551615"],
            "is too long",
        ),
        (vec!["timers", "--durability", "maybe"], "maybe"),
    ] {
        let mut full = vec!["bench"];
        full.extend_from_slice(&args);
        let message = refuses(home.path(), &full, EXIT_ERROR);
        assert!(message.contains(expected), "{args:?}: {message}");
    }
    // Not numbers, or negative: usage errors naming the flag.
    for (command, flag, value) in [
        ("roundtrip", "--agents", "many"),
        ("roundtrip", "--seconds", "ten"),
        ("roundtrip", "--seconds", "-1"),
        ("roundtrip", "--warmup", "soon"),
        ("roundtrip", "--warmup", "-2"),
        ("roundtrip", "--runs", "1.5"),
        ("roundtrip", "--waiting", "lots"),
        ("inbox", "--tasks", "-10"),
        ("inbox", "--runs", "three"),
        ("timers", "--tasks", "1e5"),
        ("timers", "--due", "-1"),
        ("timers", "--window", "1m"),
        ("timers", "--burst", "all"),
        ("timers", "--runs", ""),
    ] {
        let flag_and_value = format!("{flag}={value}");
        let message = refuses(
            home.path(),
            &["bench", command, &flag_and_value],
            EXIT_USAGE,
        );
        assert!(
            message.contains(&format!("invalid value '{value}' for '{flag}")),
            "{command} {flag_and_value}: {message}"
        );
    }
}

#[test]
fn the_example_config_is_valid() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/assets/config.toml");
    let file = signoff::config::FileConfig::load(std::path::Path::new(example), true).unwrap();
    let overrides = signoff::config::ServerOverrides::default();
    let server = signoff::config::ServerSettings::resolve(&file, &overrides).unwrap();
    assert_eq!(server.default_assignees, ["team:oncall"]);
    let approval = server.sla.for_task(signoff::domain::TaskType::Approval);
    assert_eq!(approval.timeout.unwrap().after_seconds, Some(4 * 3600));
    assert_eq!(
        approval.escalate.unwrap().len(),
        2,
        "stages come from [sla.default]"
    );
    assert_eq!(server.notify.routes.len(), 2);
    assert!(server.notify.smtp.is_some());
    let inbox = signoff::tui::settings::TuiSettings::resolve(&file.tui, false).unwrap();
    assert_eq!(inbox.undo_seconds, 5);
}
