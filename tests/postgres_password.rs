//! Passwords for PostgreSQL from where libpq finds them, when signoff's URL
//! holds none: `PGPASSWORD`, else the password file named by the URL's
//! `passfile`, else by `PGPASSFILE`, else `~/.pgpass`, whose first line for the
//! host, port, database and user gives it. A password file others may read, or
//! one that is not a regular file, is not used, and the error says why when the
//! server asks for a password. The real binary runs as a role
//! the test server asks a password of, with none of this process's `PG*`
//! variables. Skipped without `SIGNOFF_TEST_PG_URL`, or when that server lets the
//! role in without a password (`.ci/run` sets up its `pg_hba.conf` to ask).

mod common;

use std::ffi::OsStr;
use std::path::Path;
use std::process::Output;

use common::backend::{Schema, current_test, open_engine_at, postgres_url_or_skip, say_skipped};
use signoff::bench::{with_parameter, with_search_path};
use signoff::store::postgres::execute_batch;

/// The role the test server asks a password of: `.ci/run`'s `pg_hba.conf`
/// lines name it.
const ROLE: &str = "signoff_password_test";
/// The role's password: the same in every run, so that test processes running
/// at once agree on it.
const PASSWORD: &str = "signoff-password-test-secret";
const WRONG_PASSWORD: &str = "not-the-password";

/// Makes the role exist and log in with [`PASSWORD`], stored as SCRAM (which the
/// `scram-sha-256` lines need). Test processes running at once take turns on a
/// lock: two `CREATE ROLE`s at once collide on the catalog's unique index, and
/// two `ALTER ROLE`s at once can fail with "tuple concurrently updated".
async fn ensure_role(base: &str) {
    let sql = format!(
        "SET password_encryption = 'scram-sha-256';
         DO $$
         BEGIN
             PERFORM pg_advisory_xact_lock(hashtext('{ROLE}'));
             BEGIN
                 CREATE ROLE {ROLE} LOGIN PASSWORD '{PASSWORD}';
             EXCEPTION WHEN duplicate_object THEN
                 ALTER ROLE {ROLE} LOGIN PASSWORD '{PASSWORD}';
             END;
         END
         $$"
    );
    execute_batch(base, &sql)
        .await
        .unwrap_or_else(|err| panic!("creating the role {ROLE}: {err}"));
}

/// The role, a schema it owns with signoff's tables in it, and the URL signoff
/// is given: the test server's, as the role, without a password, with TLS off
/// (so that the password alone decides) and the schema's search_path.
struct PasswordRole {
    url: String,
    /// The same schema as the test server's own user, whom it trusts.
    trusted_url: String,
    /// The host and database the URL names, as a password file's lines name them.
    host: String,
    database: String,
    // Dropped, with the role's tables, when the test ends.
    _schema: Schema,
}

impl PasswordRole {
    /// `None` (after saying why) without a test server, or when it lets the
    /// role in without a password.
    async fn set_up_or_skip() -> Option<PasswordRole> {
        let base = postgres_url_or_skip(&current_test())?;
        ensure_role(&base).await;
        let mut as_role = url::Url::parse(&base).expect("a postgres:// URL");
        as_role.set_username(ROLE).expect("a URL with a host");
        as_role.set_password(None).expect("a URL with a host");
        let without_password = with_parameter(as_role.as_str(), "sslmode=disable");
        // tokio-postgres itself, which looks for no password anywhere else.
        let trusted = tokio_postgres::connect(&without_password, tokio_postgres::NoTls)
            .await
            .is_ok();
        if trusted {
            say_skipped(
                &current_test(),
                &format!(
                    "the test PostgreSQL server lets {ROLE} in without a password \
                     (.ci/run sets up its pg_hba.conf to ask for one)"
                ),
            );
            return None;
        }
        let schema = Schema::create(&base).await;
        let alter = format!("ALTER SCHEMA {} OWNER TO {ROLE}", schema.name);
        execute_batch(&base, &alter)
            .await
            .unwrap_or_else(|err| panic!("{alter}: {err}"));
        let role = PasswordRole {
            url: with_search_path(&without_password, &schema.name),
            trusted_url: with_search_path(&base, &schema.name),
            // As libpq names them: an IPv6 address without its brackets, and the
            // user's name for the database when the URL names none.
            host: as_role
                .host_str()
                .expect("a URL with a host")
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string(),
            database: Some(as_role.path().trim_start_matches('/'))
                .filter(|name| !name.is_empty())
                .unwrap_or(ROLE)
                .to_string(),
            _schema: schema,
        };
        role.migrate().await;
        Some(role)
    }

    /// Creates signoff's tables as the role, as its first `signoff serve` would
    /// (`audit verify` reads only a migrated store), so that the role owns them.
    async fn migrate(&self) {
        drop(
            open_engine_at(&self.url_with_password())
                .await
                .unwrap_or_else(|err| {
                    panic!("migrating as {ROLE}, the password in the URL: {err}")
                }),
        );
    }

    /// The URL signoff is given, with the role's password in it.
    fn url_with_password(&self) -> String {
        let mut url = url::Url::parse(&self.url).expect("a postgres:// URL");
        url.set_password(Some(PASSWORD)).expect("a URL with a host");
        url.to_string()
    }

    /// A password file's line for this host (any port) and `database`, as
    /// `user` with `password`.
    fn line(&self, database: &str, user: &str, password: &str) -> String {
        [self.host.as_str(), "*", database, user, password]
            .map(escaped)
            .join(":")
    }

    /// A password file that gives the role its password, on the line that
    /// matches first: another user's line before it and a wrong password after
    /// it must not count.
    fn right_password_file(&self) -> Vec<String> {
        vec![
            "# signoff's password tests".to_string(),
            self.line(&self.database, "someone_else", WRONG_PASSWORD),
            self.line(&self.database, ROLE, PASSWORD),
            self.line("*", ROLE, WRONG_PASSWORD),
        ]
    }
}

/// A password file's field, with `\` and `:` escaped as libpq reads them.
fn escaped(field: &str) -> String {
    field.replace('\\', "\\\\").replace(':', "\\:")
}

/// Writes `lines` to a password file at `path`, with permission bits `mode`.
fn write_password_file(path: &Path, lines: &[String], mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// `signoff audit verify` on `url` (it connects, so the password decides), with
/// `home` as HOME and, of the variables libpq reads, only `variables` set.
fn audit_verify(home: &Path, url: &str, variables: &[(&str, &OsStr)]) -> Output {
    common::signoff_command(home, &["audit", "verify", "--db", url])
        .envs(variables.iter().copied())
        .output()
        .expect("run signoff")
}

/// As [`audit_verify`], which must succeed; `how` names the case.
fn assert_audit_verify_succeeds(home: &Path, url: &str, variables: &[(&str, &OsStr)], how: &str) {
    let output = audit_verify(home, url, variables);
    assert!(
        output.status.success(),
        "{how}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// As [`audit_verify`], which must fail saying `reason`; `how` names the case.
fn assert_audit_verify_refused(
    home: &Path,
    url: &str,
    variables: &[(&str, &OsStr)],
    reason: &str,
    how: &str,
) {
    let output = audit_verify(home, url, variables);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success() && stderr.contains(reason),
        "{how}: expected a failure saying `{reason}`: {stderr}"
    );
}

#[tokio::test]
async fn a_password_file_is_found_through_passfile_pgpassfile_and_the_home_directory() {
    let Some(role) = PasswordRole::set_up_or_skip().await else {
        return;
    };
    let home = tempfile::tempdir().unwrap();
    let right = home.path().join("right-passwords");
    write_password_file(&right, &role.right_password_file(), 0o600);
    assert_audit_verify_succeeds(
        home.path(),
        &role.url,
        &[("PGPASSFILE", right.as_os_str())],
        "PGPASSFILE",
    );

    // The URL's file comes first: PGPASSFILE's, with a wrong password, is not read.
    let wrong = home.path().join("wrong-passwords");
    write_password_file(
        &wrong,
        &[role.line(&role.database, ROLE, WRONG_PASSWORD)],
        0o600,
    );
    let naming_the_file = with_parameter(&role.url, &format!("passfile={}", right.display()));
    assert_audit_verify_succeeds(
        home.path(),
        &naming_the_file,
        &[("PGPASSFILE", wrong.as_os_str())],
        "passfile in the URL",
    );

    std::fs::rename(&right, home.path().join(".pgpass")).unwrap();
    assert_audit_verify_succeeds(home.path(), &role.url, &[], "~/.pgpass");
}

/// A line for another database does not match, though it holds the right
/// password: signoff has none to give when the server asks for one, and says
/// where it looked. A wrong password from the file is reported with the file.
#[tokio::test]
async fn a_password_file_without_a_matching_line_gives_no_password() {
    let Some(role) = PasswordRole::set_up_or_skip().await else {
        return;
    };
    let home = tempfile::tempdir().unwrap();
    let file = home.path().join("passwords");
    // signoff with a password file of this one line fails saying `reason`.
    let refused_with_line = |line: String, reason: String, how: &str| {
        write_password_file(&file, &[line], 0o600);
        assert_audit_verify_refused(
            home.path(),
            &role.url,
            &[("PGPASSFILE", file.as_os_str())],
            &reason,
            how,
        );
    };
    refused_with_line(
        role.line(&format!("not_{}", role.database), ROLE, PASSWORD),
        format!(
            "the server asks for a password, and none is given: not in the URL, nor in \
             PGPASSWORD, nor in the password file {}",
            file.display()
        ),
        "a line for another database only",
    );
    refused_with_line(
        role.line(&role.database, ROLE, WRONG_PASSWORD),
        format!(
            "password authentication failed for user \"{ROLE}\" (the password from the \
             password file {})",
            file.display()
        ),
        "a wrong password in the file",
    );
}

/// As libpq, signoff does not use a password file others may read, or one
/// that is not a regular file; where libpq only warns, signoff's error says
/// why when the server asks for a password. A server that trusts the
/// connection never needs the file, so the same file does not stop that.
#[tokio::test]
async fn a_password_file_others_may_read_or_not_a_regular_file_is_not_used() {
    let Some(role) = PasswordRole::set_up_or_skip().await else {
        return;
    };
    let home = tempfile::tempdir().unwrap();
    write_password_file(
        &home.path().join(".pgpass"),
        &role.right_password_file(),
        0o644,
    );
    assert_audit_verify_refused(
        home.path(),
        &role.url,
        &[],
        &format!(
            "the server asks for a password, and none is given; and the password file {} has \
             group or world access (mode 644)",
            home.path().join(".pgpass").display()
        ),
        "~/.pgpass with mode 0644",
    );
    assert_audit_verify_succeeds(
        home.path(),
        &role.trusted_url,
        &[],
        "a trusted connection, ~/.pgpass with mode 0644",
    );

    let home = tempfile::tempdir().unwrap();
    let directory = home.path().join("passwords");
    std::fs::create_dir(&directory).unwrap();
    assert_audit_verify_refused(
        home.path(),
        &role.url,
        &[("PGPASSFILE", directory.as_os_str())],
        "not a regular file",
        "PGPASSFILE naming a directory",
    );
}

#[tokio::test]
async fn pgpassword_gives_the_password_before_any_password_file() {
    let Some(role) = PasswordRole::set_up_or_skip().await else {
        return;
    };
    let home = tempfile::tempdir().unwrap();
    assert_audit_verify_succeeds(
        home.path(),
        &role.url,
        &[("PGPASSWORD", OsStr::new(PASSWORD))],
        "the right PGPASSWORD",
    );

    // A right ~/.pgpass does not rescue a wrong PGPASSWORD: it is never read.
    write_password_file(
        &home.path().join(".pgpass"),
        &role.right_password_file(),
        0o600,
    );
    assert_audit_verify_refused(
        home.path(),
        &role.url,
        &[("PGPASSWORD", OsStr::new(WRONG_PASSWORD))],
        "password authentication failed",
        "a wrong PGPASSWORD",
    );
}

#[tokio::test]
async fn a_password_in_the_url_wins_over_pgpassword() {
    let Some(role) = PasswordRole::set_up_or_skip().await else {
        return;
    };
    let home = tempfile::tempdir().unwrap();
    assert_audit_verify_succeeds(
        home.path(),
        &role.url_with_password(),
        &[("PGPASSWORD", OsStr::new(WRONG_PASSWORD))],
        "the URL's password and a wrong PGPASSWORD",
    );
}
