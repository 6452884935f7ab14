//! TLS to PostgreSQL, against the test server's own certificate: `sslmode`
//! decides whether connections are encrypted, and the `verify-` modes refuse a
//! server whose certificate does not chain to `sslrootcert` or does not name
//! the host connected to. Skipped without `SIGNOFF_TEST_PG_URL`, or when that
//! server does not offer TLS.

mod common;

use std::path::{Path, PathBuf};

use common::ServeProcess;
use common::backend::{Schema, current_test, open_engine_at, postgres_url_or_skip, say_skipped};
use signoff::bench::with_parameter;
use signoff::engine::Engine;

/// A plain connection for looking at the server's state.
async fn inspector(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(connection);
    client
}

/// The test server's URL, and its certificate file when this machine can read
/// it; `None` (after saying why) when the server has TLS off.
async fn tls_server_or_skip() -> Option<(String, Option<PathBuf>)> {
    let url = postgres_url_or_skip(&current_test())?;
    let client = inspector(&url).await;
    let ssl: String = client
        .query_one("SHOW ssl", &[])
        .await
        .expect("SHOW ssl")
        .get(0);
    if ssl != "on" {
        say_skipped(&current_test(), "the test PostgreSQL server has ssl = off");
        return None;
    }
    let certificate = client
        .query_one("SHOW ssl_cert_file", &[])
        .await
        .ok()
        .map(|row| PathBuf::from(row.get::<_, String>(0)))
        .filter(|path| std::fs::read(path).is_ok());
    Some((url, certificate))
}

/// The test server's URL and its certificate file; `None` (after saying why)
/// when the server has TLS off or its certificate cannot be read here.
async fn server_certificate_or_skip() -> Option<(String, PathBuf)> {
    let (url, certificate) = tls_server_or_skip().await?;
    if certificate.is_none() {
        say_skipped(
            &current_test(),
            "the server's certificate file is not readable here",
        );
    }
    Some((url, certificate?))
}

/// An engine in `schema`, on a URL with `pairs` added.
async fn open_in(schema: &Schema, pairs: &str) -> Result<Engine, String> {
    open_engine_at(&with_parameter(&schema.url(), pairs)).await
}

#[tokio::test]
async fn sslmode_require_encrypts_every_connection_and_disable_none() {
    let Some((base, _)) = tls_server_or_skip().await else {
        return;
    };
    let client = inspector(&base).await;
    for (mode, encrypted) in [("require", true), ("prefer", true), ("disable", false)] {
        let schema = Schema::create(&base).await;
        // Its own application name: the other test here opens connections too.
        let name = format!("signoff-tls-{}", uuid::Uuid::new_v4().simple());
        let engine = open_in(&schema, &format!("sslmode={mode}&application_name={name}"))
            .await
            .unwrap_or_else(|err| panic!("{mode}: {err}"));
        // A write and a read: the writer's, the listener's and a pooled connection.
        engine.bootstrap_admin_key().await.unwrap();
        assert!(engine.bootstrap_admin_key().await.unwrap().is_none());
        let counts = client
            .query_one(
                "SELECT count(*) FILTER (WHERE s.ssl), count(*) FILTER (WHERE NOT s.ssl)
                 FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid)
                 WHERE a.application_name IN ($1, $1 || ' writer', $1 || ' listener')",
                &[&name],
            )
            .await
            .unwrap();
        let (tls, plain): (i64, i64) = (counts.get(0), counts.get(1));
        if encrypted {
            assert!(
                tls >= 2 && plain == 0,
                "{mode}: {tls} over TLS, {plain} plain"
            );
        } else {
            assert!(
                plain >= 2 && tls == 0,
                "{mode}: {tls} over TLS, {plain} plain"
            );
        }
    }
}

#[tokio::test]
async fn the_verify_modes_check_the_chain_and_the_name() {
    let Some((base, certificate)) = server_certificate_or_skip().await else {
        return;
    };
    let schema = Schema::create(&base).await;
    let root = format!("sslrootcert={}", certificate.display());
    // The certificate's own name, read from it, so the test fits any server.
    let pem = std::fs::read_to_string(&certificate).unwrap();
    let names_localhost = x509_names_localhost(&pem);

    open_in(&schema, &format!("sslmode=verify-ca&{root}"))
        .await
        .expect("the server's certificate is its own root");

    // Debian's bundle of public roots (not the system store, whose directory
    // also holds the snakeoil certificate itself).
    let public_roots = "/etc/ssl/certs/ca-certificates.crt";
    if std::fs::metadata(public_roots).is_ok() {
        // Given roots, prefer and require check the chain too, as libpq does.
        for mode in ["verify-ca", "require", "prefer"] {
            let err = open_in(
                &schema,
                &format!("sslmode={mode}&sslrootcert={public_roots}"),
            )
            .await
            .err()
            .expect("a self-signed certificate does not chain to the public roots");
            assert!(err.contains("UnknownIssuer"), "{mode}: {err}");
        }
    } else {
        say_skipped(
            "the unknown-issuer half",
            &format!("no {public_roots} here"),
        );
    }

    let numeric = url::Url::parse(&schema.url()).unwrap();
    if numeric.host_str() == Some("127.0.0.1") && names_localhost {
        let err = open_in(&schema, &format!("sslmode=verify-full&{root}"))
            .await
            .err()
            .expect("the certificate names localhost, not 127.0.0.1");
        assert!(err.contains("not valid for name"), "{err}");
        let mut by_name = numeric.clone();
        by_name.set_host(Some("localhost")).unwrap();
        open_engine_at(&with_parameter(
            by_name.as_str(),
            &format!("sslmode=verify-full&{root}"),
        ))
        .await
        .expect("the certificate names localhost");
    } else {
        say_skipped(
            "the verify-full half",
            "it needs the server at 127.0.0.1 with a certificate for localhost",
        );
    }

    let err = open_in(
        &schema,
        "sslmode=verify-full&sslrootcert=/nonexistent/root.pem",
    )
    .await
    .err()
    .unwrap();
    assert!(
        err.contains("cannot read sslrootcert /nonexistent/root.pem"),
        "{err}"
    );
}

/// Whether a PEM certificate is for `localhost` (Debian's snakeoil is): its DER
/// holds the name as an ASN.1 string.
fn x509_names_localhost(pem: &str) -> bool {
    use base64::Engine as _;
    let body: String = pem
        .lines()
        .filter(|line| !line.starts_with("-----"))
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .is_ok_and(|der| der.windows(9).any(|window| window == b"localhost"))
}

/// The client-certificate fixtures (see their `make.sh`).
fn client_fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/pg-client-tls")
        .join(name)
}

/// A home directory holding an empty `.postgresql/`, and that directory.
fn home_with_libpq_dir() -> (tempfile::TempDir, PathBuf) {
    let home = tempfile::tempdir().unwrap();
    let libpq_files = home.path().join(".postgresql");
    std::fs::create_dir(&libpq_files).unwrap();
    (home, libpq_files)
}

/// `signoff audit verify` on `url`, with `home` as HOME: it opens the store,
/// so the TLS handshake decides.
fn audit_verify(home: &Path, url: &str) -> std::process::Output {
    common::signoff(home, &["audit", "verify", "--db", url])
}

fn assert_audit_verify_succeeds(home: &Path, url: &str) {
    let output = audit_verify(home, url);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// `audit verify` fails the handshake, for `reason` (a rustls error's name);
/// `how` says which case, for the message.
fn assert_audit_verify_refused(home: &Path, url: &str, reason: &str, how: &str) {
    let output = audit_verify(home, url);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{how}: {stderr}");
    assert!(
        stderr.contains("invalid peer certificate") && stderr.contains(reason),
        "{how}: {stderr}"
    );
}

/// Copies a fixture's private key to `to`, readable by this user only, as
/// signoff (like libpq) requires (git keeps no modes).
fn copy_private_key(fixture: &str, to: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::copy(client_fixture(fixture), to).unwrap();
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// Every session of the instance named `name` (its pool's, writer's and
/// listener's) shows the fixtures' client certificate; there are at least `least`.
async fn assert_every_session_shows_the_client_certificate(base: &str, name: &str, least: usize) {
    let shown: Vec<Option<String>> = inspector(base)
        .await
        .query(
            "SELECT s.client_dn FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid)
             WHERE a.application_name IN ($1, $1 || ' writer', $1 || ' listener')",
            &[&name],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert!(shown.len() >= least, "at least {least} sessions: {shown:?}");
    assert!(
        shown
            .iter()
            .all(|dn| dn.as_deref() == Some("/CN=signoff-test-client")),
        "every connection shows the certificate: {shown:?}"
    );
}

/// Whether the test server trusts the fixtures' CA for client certificates
/// (`.ci/run` sets its `ssl_ca_file`); says why not, when not.
async fn trusts_the_fixture_ca(url: &str) -> bool {
    let ca_file: String = inspector(url)
        .await
        .query_one("SHOW ssl_ca_file", &[])
        .await
        .expect("SHOW ssl_ca_file")
        .get(0);
    let fixture = std::fs::read(client_fixture("ca.crt")).unwrap();
    let trusted = std::fs::read(&ca_file).is_ok_and(|trusted| trusted == fixture);
    if !trusted {
        say_skipped(
            &current_test(),
            "the test PostgreSQL server's ssl_ca_file is not tests/fixtures/pg-client-tls/ca.crt \
             (.ci/run sets it)",
        );
    }
    trusted
}

/// As [`tls_server_or_skip`], when the server also trusts the fixtures' client
/// certificates; `None` (after saying why) otherwise.
async fn client_certificate_server_or_skip() -> Option<(String, Option<PathBuf>)> {
    let (base, certificate) = tls_server_or_skip().await?;
    trusts_the_fixture_ca(&base)
        .await
        .then_some((base, certificate))
}

#[tokio::test]
async fn a_named_client_certificate_is_shown_on_every_connection_and_a_stranger_is_refused() {
    let Some((base, _)) = client_certificate_server_or_skip().await else {
        return;
    };
    let keys = tempfile::tempdir().unwrap();
    let identity = |name: &str| {
        let key = keys.path().join(format!("{name}.key"));
        copy_private_key(&format!("{name}.key"), &key);
        format!(
            "sslmode=require&sslcert={}&sslkey={}",
            client_fixture(&format!("{name}.crt")).display(),
            key.display()
        )
    };
    let schema = Schema::create(&base).await;
    let name = format!("signoff-tls-{}", uuid::Uuid::new_v4().simple());
    let engine = open_in(
        &schema,
        &format!("{}&application_name={name}", identity("client"),),
    )
    .await
    .expect("the server trusts the client certificate");
    // A write and a read: the writer's, the listener's and a pooled connection.
    engine.bootstrap_admin_key().await.unwrap();
    assert!(engine.bootstrap_admin_key().await.unwrap().is_none());
    assert_every_session_shows_the_client_certificate(&base, &name, 3).await;

    let err = open_in(&schema, &identity("stranger"))
        .await
        .err()
        .expect("the server does not trust the stranger's CA");
    assert!(err.contains("UnknownCA"), "{err}");
}

/// As with psql, a URL that names no TLS files uses those in `~/.postgresql/`:
/// the client certificate `postgresql.crt` with its key `postgresql.key`, and
/// the roots in `root.crt`: the server's own certificate is trusted there, and
/// with the fixtures' CA instead, which did not sign it, even `sslmode=require`
/// refuses the server.
#[tokio::test]
async fn the_tls_files_in_the_home_directory_are_used_when_the_url_names_none() {
    let Some((base, server_certificate)) = client_certificate_server_or_skip().await else {
        return;
    };
    let (home, libpq_files) = home_with_libpq_dir();
    std::fs::copy(
        client_fixture("client.crt"),
        libpq_files.join("postgresql.crt"),
    )
    .unwrap();
    copy_private_key("client.key", &libpq_files.join("postgresql.key"));
    let schema = Schema::create(&base).await;
    let name = format!("signoff-tls-{}", uuid::Uuid::new_v4().simple());
    let url = with_parameter(
        &schema.url(),
        &format!("sslmode=require&application_name={name}"),
    );
    let server = tokio::task::spawn_blocking({
        let (home, url) = (home.path().to_path_buf(), url.clone());
        move || ServeProcess::start(&home, &["--db", &url, "--durability", "normal"])
    })
    .await
    .unwrap();
    // The writer's and the listener's sessions are open once it answers.
    assert_every_session_shows_the_client_certificate(&base, &name, 2).await;
    drop(server);

    let root = libpq_files.join("root.crt");
    match server_certificate {
        Some(server_certificate) => {
            std::fs::copy(server_certificate, &root).unwrap();
            let verify_ca = with_parameter(&schema.url(), "sslmode=verify-ca");
            assert_audit_verify_succeeds(home.path(), &verify_ca);
        }
        None => say_skipped(
            &format!("{} (trusting the server through root.crt)", current_test()),
            "the server's certificate file is not readable here",
        ),
    }
    std::fs::copy(client_fixture("ca.crt"), &root).unwrap();
    assert_audit_verify_refused(home.path(), &url, "UnknownIssuer", "root.crt of another CA");
}

#[tokio::test]
async fn revocation_lists_are_checked_in_the_handshake() {
    let Some((base, certificate)) = server_certificate_or_skip().await else {
        return;
    };
    let schema = Schema::create(&base).await;
    // Migrated, so that `audit verify` below gets as far as reading.
    drop(open_in(&schema, "sslmode=disable").await.unwrap());
    let (home, libpq_files) = home_with_libpq_dir();
    std::fs::copy(&certificate, libpq_files.join("root.crt")).unwrap();
    // A list from a CA that did not sign the server's certificate: as with
    // libpq, the certificate's own issuer must have a list among them.
    let stranger = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pg-crl/stranger.crl");
    let verify_ca = with_parameter(&schema.url(), "sslmode=verify-ca");
    // The error names the lists it was checked against.
    let refused = |url: &str, list: &Path, how: &str| {
        let reason = format!(
            "UnknownRevocationStatus (revocation lists: {})",
            list.display()
        );
        assert_audit_verify_refused(home.path(), url, &reason, how);
    };
    assert_audit_verify_succeeds(home.path(), &verify_ca);
    std::fs::copy(&stranger, libpq_files.join("root.crl")).unwrap();
    refused(
        &verify_ca,
        &libpq_files.join("root.crl"),
        "~/.postgresql/root.crl",
    );
    std::fs::remove_file(libpq_files.join("root.crl")).unwrap();
    refused(
        &with_parameter(&verify_ca, &format!("sslcrl={}", stranger.display())),
        &stranger,
        "sslcrl",
    );
}
