//! TLS to PostgreSQL, with libpq's meanings of `sslmode` and `sslrootcert`, so
//! a URL that works with `psql` works here:
//!
//! | `sslmode` | encrypted | server certificate checked |
//! |---|---|---|
//! | `disable` | no | – |
//! | `prefer` (the default) | if the server offers TLS | no; against the roots when there are any, as libpq does |
//! | `require` | yes | no; against the roots when there are any, as libpq does |
//! | `verify-ca` | yes | chain to a root in `sslrootcert` |
//! | `verify-full` | yes | chain, and the host name (or IP) in the URL |
//!
//! `sslrootcert` is a PEM file of root certificates, or `system` for the
//! operating system's store, which makes `verify-full` the default mode and the
//! only one allowed. `sslcert` and `sslkey` are the PEM files of a
//! client certificate (with its chain) and its private key, for servers that
//! authenticate clients by certificate. `sslcrl` (a PEM file) and `sslcrldir`
//! (a directory prepared by `openssl rehash`) hold revocation lists, checked
//! whenever the server's certificate is checked against a file of roots.
//! Files the URL does not name are looked for where libpq looks, in
//! `~/.postgresql/` (`root.crt`, `root.crl`, `postgresql.crt`,
//! `postgresql.key`). tokio-postgres itself knows only
//! `disable`, `prefer` and `require`, so the two `verify-` modes and the file
//! settings are taken out of the URL ([`super::connection_url`]), checked here
//! ([`Named`]) and the TLS is set up with rustls.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ClientConfig, WebPkiServerVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{
    CertificateDer, CertificateRevocationListDer, PrivateKeyDer, ServerName, UnixTime,
};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres::config::SslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

use super::libpq::{Defaults, Given};

/// The values of `sslmode` signoff accepts.
const MODES: [&str; 5] = ["disable", "prefer", "require", "verify-ca", "verify-full"];

/// How a connection's server is checked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Verify {
    /// Encrypted, but anyone may answer: libpq's `prefer` and `require`.
    #[default]
    Nothing,
    /// The certificate chains to a trusted root; any name.
    Chain,
    /// The chain, and the name the URL connects to.
    ChainAndName,
}

/// Where trusted roots come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Roots {
    File(PathBuf),
    System,
}

/// Where revocation lists come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revocations {
    /// `sslcrl` (or `~/.postgresql/root.crl`): a PEM file of lists.
    File(PathBuf),
    /// `sslcrldir`: the files in it named as `openssl rehash` names lists.
    Dir(PathBuf),
}

impl Revocations {
    /// Where the lists are, for messages.
    pub fn describe(&self) -> String {
        match self {
            Revocations::File(path) => path.display().to_string(),
            Revocations::Dir(path) => format!("the directory {}", path.display()),
        }
    }
}

/// Whether a connection failed because the server's certificate was revoked,
/// or its revocation status could not be told from the lists (none from its
/// issuer, or an expired one).
pub fn failed_on_revocation(err: &tokio_postgres::Error) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(reason) = cause {
        // tokio-postgres-rustls hands rustls's error on inside an I/O error,
        // whose `source` skips it.
        let inside_io = reason
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
            .map(|inner| inner as &(dyn std::error::Error + 'static));
        let on_revocation = [Some(reason), inside_io]
            .into_iter()
            .flatten()
            .any(|error| {
                matches!(
                    error.downcast_ref::<rustls::Error>(),
                    Some(rustls::Error::InvalidCertificate(
                        CertificateError::Revoked
                            | CertificateError::UnknownRevocationStatus
                            | CertificateError::ExpiredRevocationList
                            | CertificateError::ExpiredRevocationListContext { .. }
                    ))
                )
            });
        if on_revocation {
            return true;
        }
        cause = reason.source();
    }
    false
}

/// The certificate this client shows the server, and its private key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientIdentity {
    pub certificate: PathBuf,
    pub key: PathBuf,
}

/// The TLS half of a connection URL.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsSettings {
    pub verify: Verify,
    pub roots: Option<Roots>,
    /// Checked with the chain; empty when the chain is not checked.
    pub revocations: Vec<Revocations>,
    pub identity: Option<ClientIdentity>,
}

/// The TLS settings a URL names (or the environment names for it), before
/// they are checked against one another and libpq's default files are looked
/// for.
pub struct Named {
    pub mode: Option<Given>,
    pub root_cert: Option<Given>,
    pub client_cert: Option<Given>,
    pub client_key: Option<Given>,
    pub crl_file: Option<Given>,
    pub crl_dir: Option<Given>,
}

impl Named {
    /// What tokio-postgres is told of the mode. Refuses a mode libpq does not
    /// know, and makes `verify-full` the mode of `sslrootcert=system`.
    pub fn ssl_mode(&mut self) -> Result<SslMode, String> {
        if let Some(other) = self
            .mode
            .as_ref()
            .filter(|mode| !MODES.contains(&mode.value.as_str()))
        {
            return Err(format!(
                "{} `{}` is not one of {}",
                other.by,
                other.value,
                MODES.join(", ")
            ));
        }
        // libpq's rule: anyone can get a publicly trusted certificate for a
        // name of their own, so the system's roots are worth nothing without
        // the name check.
        if let Some(system) = self
            .root_cert
            .as_ref()
            .filter(|root| root.value == "system")
        {
            match &self.mode {
                None => {
                    self.mode = Some(Given {
                        value: "verify-full".into(),
                        by: system.by,
                    });
                }
                Some(mode) if mode.value == "verify-full" => {}
                Some(weaker) => {
                    return Err(format!(
                        "{} {} may not be used with {}=system: use verify-full (as libpq \
                         requires), or name a file of roots",
                        weaker.by, weaker.value, system.by
                    ));
                }
            }
        }
        Ok(match self.mode_value() {
            None | Some("prefer") => SslMode::Prefer,
            Some("disable") => SslMode::Disable,
            _ => SslMode::Require,
        })
    }

    fn mode_value(&self) -> Option<&str> {
        self.mode.as_ref().map(|mode| mode.value.as_str())
    }

    /// The checks and files of a connection that uses TLS. The mode is
    /// settled first as [`Named::ssl_mode`] settles it (said twice, it
    /// changes nothing), so `sslrootcert=system` always checks the name.
    pub fn settings(mut self, defaults: &Defaults) -> Result<TlsSettings, String> {
        self.ssl_mode()?;
        let roots = match &self.root_cert {
            None => defaults.find("root.crt", "sslrootcert")?.map(Roots::File),
            Some(empty) if empty.value.is_empty() => {
                return Err(format!(
                    "{} is empty: give a PEM file or `system`, or leave it out to use {}",
                    empty.by,
                    defaults.describe("root.crt")
                ));
            }
            Some(system) if system.value == "system" => Some(Roots::System),
            Some(path) => Some(Roots::File(PathBuf::from(&path.value))),
        };
        // libpq checks the chain whenever it has roots ("if a root CA file
        // exists, the behavior of sslmode=require will be the same as that of
        // verify-ca"; `prefer` likewise, when the server offers TLS).
        let verify = match self.mode_value() {
            Some("verify-full") => Verify::ChainAndName,
            Some("verify-ca") => Verify::Chain,
            _ if roots.is_some() => Verify::Chain,
            _ => Verify::Nothing,
        };
        if let Some(mode) = self
            .mode
            .as_ref()
            .filter(|_| verify != Verify::Nothing && roots.is_none())
        {
            // `system` is refused for any mode but verify-full.
            let or_system = if mode.value == "verify-full" {
                ", or `system`"
            } else {
                ""
            };
            return Err(format!(
                "{} {} needs sslrootcert: a PEM file of the roots to trust{or_system} \
                 (or the file {}, as for psql)",
                mode.by,
                mode.value,
                defaults.describe("root.crt")
            ));
        }
        let revocations = revocation_lists(
            self.crl_file,
            self.crl_dir,
            verify,
            roots.as_ref(),
            defaults,
        )?;
        let identity = client_identity(self.client_cert, self.client_key, defaults)?;
        Ok(TlsSettings {
            verify,
            roots,
            revocations,
            identity,
        })
    }
}

/// `sslcrl` and `sslcrldir`, or, when the URL names neither, libpq's default
/// `~/.postgresql/root.crl` if it exists. As in libpq, lists are used only when
/// the chain is checked against a file of roots (with the system's roots they
/// would have to cover every public CA). libpq ignores named lists otherwise,
/// which would leave a revoked server trusted while the URL says otherwise, so
/// they are refused here; so is a list that cannot be read, where libpq goes on
/// without it.
fn revocation_lists(
    named_file: Option<Given>,
    named_dir: Option<Given>,
    verify: Verify,
    roots: Option<&Roots>,
    defaults: &Defaults,
) -> Result<Vec<Revocations>, String> {
    if let Some(empty) = [&named_file, &named_dir]
        .into_iter()
        .flatten()
        .find(|named| named.value.is_empty())
    {
        return Err(format!(
            "{} is empty: name a PEM file of revocation lists (sslcrl) or a directory of them \
             (sslcrldir), or leave both out to use {} when it exists",
            empty.by,
            defaults.describe("root.crl")
        ));
    }
    let names: Vec<&str> = [&named_file, &named_dir]
        .into_iter()
        .flatten()
        .map(|named| named.by)
        .collect();
    let names = names.join(" and ");
    let named: Vec<Revocations> = named_file
        .map(|file| Revocations::File(file.value.into()))
        .into_iter()
        .chain(named_dir.map(|dir| Revocations::Dir(dir.value.into())))
        .collect();
    let against_a_file = verify != Verify::Nothing && matches!(roots, Some(Roots::File(_)));
    match (named.is_empty(), against_a_file, roots) {
        (true, true, _) => Ok(defaults
            .find("root.crl", "sslcrl")?
            .map(Revocations::File)
            .into_iter()
            .collect()),
        (true, false, _) => Ok(Vec::new()),
        (false, true, _) => Ok(named),
        (false, false, Some(Roots::System)) => Err(format!(
            "{names}: revocation lists cannot be used with sslrootcert=system: every public CA of \
             the chain would need its list (libpq ignores them there); name a file of roots \
             instead"
        )),
        (false, false, _) => Err(format!(
            "{names}: revocation lists need the server's certificate checked, against the roots \
             in sslrootcert (or in {}); without them nothing would be revoked",
            defaults.describe("root.crt")
        )),
    }
}

/// `sslcert` and `sslkey` come together. As libpq does, a certificate the URL
/// does not name is `~/.postgresql/postgresql.crt` when that exists, and a key
/// it does not name `~/.postgresql/postgresql.key`; with no certificate at all
/// none is shown. Unlike libpq, a key named without any certificate is refused
/// rather than ignored, as it is surely a mistake.
fn client_identity(
    named_certificate: Option<Given>,
    named_key: Option<Given>,
    defaults: &Defaults,
) -> Result<Option<ClientIdentity>, String> {
    let (certificate_file, key_file) = ("postgresql.crt", "postgresql.key");
    for (named, default) in [
        (&named_certificate, certificate_file),
        (&named_key, key_file),
    ] {
        if let Some(empty) = named.as_ref().filter(|named| named.value.is_empty()) {
            return Err(format!(
                "{} is empty: name a file, or leave it out to use {} when it exists",
                empty.by,
                defaults.describe(default)
            ));
        }
    }
    let certificate_named_by = named_certificate.as_ref().map(|named| named.by);
    let key_named_by = named_key.as_ref().map(|named| named.by);
    let certificate = match named_certificate {
        Some(named) => Some(PathBuf::from(named.value)),
        None => defaults.find(certificate_file, "sslcert")?,
    };
    // libpq looks for its default key only to go with a certificate.
    let key = match (&certificate, named_key) {
        (_, Some(named)) => Some(PathBuf::from(named.value)),
        (Some(_), None) => defaults.find(key_file, "sslkey")?,
        (None, None) => None,
    };
    match (certificate, key) {
        (None, None) => Ok(None),
        (Some(certificate), Some(key)) => Ok(Some(ClientIdentity { certificate, key })),
        (Some(certificate), None) => match certificate_named_by {
            Some(by) => Err(format!(
                "{by} {} needs sslkey: the PEM file of its private key (none is named, and there \
                 is no {})",
                certificate.display(),
                defaults.describe(key_file)
            )),
            None => Err(format!(
                "found {}, which is shown to the server as psql would since the URL names no \
                 sslcert, but not its key {}: put the key there, name sslcert and sslkey in the \
                 URL, or move the certificate away",
                certificate.display(),
                defaults.describe(key_file)
            )),
        },
        (None, Some(_)) => Err(format!(
            "{} needs sslcert: the PEM file of its certificate (none is named, and there is no {})",
            key_named_by.unwrap_or("sslkey"),
            defaults.describe(certificate_file)
        )),
    }
}

impl TlsSettings {
    /// The connector every connection of the store uses. Reads the roots, so a
    /// missing or unreadable file is reported when the store opens.
    pub fn connector(&self) -> Result<MakeRustlsConnect, String> {
        Ok(MakeRustlsConnect::new(self.client_config()?))
    }

    fn client_config(&self) -> Result<ClientConfig, String> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|err| format!("cannot set up TLS: {err}"))?;
        let builder = builder
            .dangerous()
            .with_custom_certificate_verifier(self.verifier(provider)?);
        let mut config = match &self.identity {
            None => builder.with_no_client_auth(),
            Some(identity) => {
                let (chain, key) = identity.read()?;
                builder.with_client_auth_cert(chain, key).map_err(|err| {
                    format!(
                        "cannot use sslcert {} with sslkey {}: {err}",
                        identity.certificate.display(),
                        identity.key.display()
                    )
                })?
            }
        };
        // A resumed session skips the certificate check, so a server revoked
        // since the last full handshake would be let in; libpq never resumes.
        config.resumption = rustls::client::Resumption::disabled();
        Ok(config)
    }

    /// How the server's certificate is checked. Reads the roots and the
    /// revocation lists, so that a file that cannot be used is reported when
    /// the store opens.
    fn verifier(&self, provider: Arc<CryptoProvider>) -> Result<Arc<Checks>, String> {
        let chain = match self
            .roots
            .as_ref()
            .filter(|_| self.verify != Verify::Nothing)
        {
            None => Chain::Unchecked,
            Some(roots) => {
                let files = ChainFiles {
                    roots: roots.clone(),
                    revocations: self.revocations.clone(),
                };
                let built = files.read(&provider)?;
                // Lists are renewed on disk before they expire; as libpq does,
                // they are read again for every connection, so a long-running
                // server picks up the new list instead of refusing the
                // database once the old one has passed its next update.
                if self.revocations.is_empty() {
                    Chain::Fixed(built)
                } else {
                    Chain::ReadEachTime(files)
                }
            }
        };
        Ok(Arc::new(Checks {
            chain,
            names: self.verify == Verify::ChainAndName,
            provider,
        }))
    }
}

/// What the chain is checked against.
#[derive(Debug)]
struct ChainFiles {
    roots: Roots,
    revocations: Vec<Revocations>,
}

impl ChainFiles {
    /// Reads the files with blocking calls, on the thread opening the
    /// connection: a few kilobytes, once per connection, which live long.
    fn read(&self, provider: &Arc<CryptoProvider>) -> Result<Arc<WebPkiServerVerifier>, String> {
        let builder = WebPkiServerVerifier::builder_with_provider(
            Arc::new(root_store(&self.roots)?),
            provider.clone(),
        );
        let builder = if self.revocations.is_empty() {
            builder
        } else {
            // As strict as libpq (OpenSSL's CRL_CHECK_ALL): every certificate
            // of the chain needs a current list from its issuer, so a missing
            // or expired list fails the handshake.
            builder
                .with_crls(read_revocation_lists(&self.revocations)?)
                .enforce_revocation_expiration()
        };
        // Parses the lists' revoked entries, which the parse in
        // `refuse_lists_rustls_reads_otherwise` did not look at, so a damaged
        // entry is reported here.
        builder
            .build()
            .map_err(|err| format!("cannot use the roots or the revocation lists: {err}"))
    }
}

/// Every revocation list in `sources`. A file must hold at least one. A
/// directory is read as OpenSSL reads one prepared by `openssl rehash`: only
/// the files named `<hash>.r<n>` (which are links to the lists, beside them),
/// and it must hold one.
fn read_revocation_lists(
    sources: &[Revocations],
) -> Result<Vec<CertificateRevocationListDer<'static>>, String> {
    let mut lists = Vec::new();
    for source in sources {
        let before = lists.len();
        match source {
            Revocations::File(path) => lists.extend(read_revocation_file(path)?),
            Revocations::Dir(dir) => {
                let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
                    .and_then(|entries| entries.map(|entry| Ok(entry?.path())).collect())
                    .map_err(|err: std::io::Error| {
                        format!("cannot read sslcrldir {}: {err}", dir.display())
                    })?;
                files.retain(|file| is_rehash_name(file) && file.is_file());
                files.sort();
                for file in files {
                    lists.extend(read_revocation_file(&file)?);
                }
            }
        }
        if lists.len() == before {
            return Err(match source {
                Revocations::File(path) => format!(
                    "{} holds no revocation list (PEM, `BEGIN X509 CRL`; `openssl crl -inform \
                     DER` converts one)",
                    path.display()
                ),
                Revocations::Dir(dir) => format!(
                    "sslcrldir {} holds no revocation list under the names `openssl rehash` \
                     gives them (<hash>.r0, ...): run `openssl rehash {}`",
                    dir.display(),
                    dir.display()
                ),
            });
        }
    }
    refuse_lists_rustls_reads_otherwise(&lists)?;
    Ok(lists.into_iter().map(|(list, _)| list).collect())
}

/// Whether a file is named as `openssl rehash` names revocation lists: eight
/// lower-case hex digits of the issuer's hash, `.r` and a number. (OpenSSL
/// opens only its issuers' hashes, from `.r0` up to the first gap; all such
/// files are read here, which finds the same lists in a directory rehash made.)
fn is_rehash_name(file: &Path) -> bool {
    let name = file
        .file_name()
        .and_then(|name| name.to_str())
        .unwrap_or("");
    name.split_once(".r").is_some_and(|(hash, number)| {
        hash.len() == 8
            && hash
                .bytes()
                .all(|byte| matches!(byte, b'0'..=b'9' | b'a'..=b'f'))
            && !number.is_empty()
            && number.bytes().all(|byte| byte.is_ascii_digit())
    })
}

/// The lists in one PEM file, each with the file it came from.
fn read_revocation_file(
    path: &Path,
) -> Result<Vec<(CertificateRevocationListDer<'static>, PathBuf)>, String> {
    CertificateRevocationListDer::pem_file_iter(path)
        .and_then(|lists| lists.map(|list| Ok((list?, path.to_path_buf()))).collect())
        .map_err(|err: rustls::pki_types::pem::Error| {
            format!(
                "cannot read revocation lists from {}: {err}",
                path.display()
            )
        })
}

/// Lists rustls would use differently from OpenSSL are refused. rustls checks
/// a certificate against the first list from its issuer, where OpenSSL takes
/// the newest, so two lists of one issuer would let the order decide. And a
/// list for one distribution point of an issuer (a partitioned list) is taken
/// by webpki as covering every certificate that names none, where OpenSSL
/// rightly finds it does not cover them; with one, a server revoked in another
/// part would be trusted.
fn refuse_lists_rustls_reads_otherwise(
    lists: &[(CertificateRevocationListDer<'static>, PathBuf)],
) -> Result<(), String> {
    let mut first_of = std::collections::HashMap::new();
    for (list, path) in lists {
        let parsed: webpki::CertRevocationList = webpki::BorrowedCertRevocationList::from_der(list)
            .map_err(|err| {
                format!(
                    "cannot use the revocation list in {}: {err}",
                    path.display()
                )
            })?
            .into();
        // webpki refuses the other kinds of scoped list (for user or CA
        // certificates only) as it parses them, so this one names a point.
        if parsed.issuing_distribution_point().is_some() {
            return Err(format!(
                "{} holds a revocation list for one distribution point of its issuer (a \
                 partitioned list), which is not supported: give the issuer's complete list",
                path.display()
            ));
        }
        if let Some(first) = first_of.insert(parsed.issuer().to_vec(), path) {
            return Err(format!(
                "{} and {} hold revocation lists from the same issuer (maybe the same file \
                 twice): keep only its newest list",
                first.display(),
                path.display()
            ));
        }
    }
    Ok(())
}

impl ClientIdentity {
    /// The certificate chain (the client's own first) and the private key.
    fn read(&self) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), String> {
        let chain = read_certificates(&self.certificate, "sslcert")?;
        refuse_shared_key(&self.key)?;
        let key = PrivateKeyDer::from_pem_file(&self.key).map_err(|err| {
            format!(
                "cannot read a private key from sslkey {}: {err}",
                self.key.display()
            )
        })?;
        Ok((chain, key))
    }
}

/// libpq's rule for the private key's file: only its owner may read it (0600 or
/// less), except that a file root owns may be read by its group too (0640 or
/// less), as when a secret is mounted into a container for a group. Whoever
/// else owns a file that strict and can still read it is this user.
fn refuse_shared_key(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    let metadata = std::fs::metadata(path)
        .map_err(|err| format!("cannot read sslkey {}: {err}", path.display()))?;
    if !metadata.is_file() {
        return Err(format!("sslkey {} is not a file", path.display()));
    }
    let mode = metadata.mode();
    let others_may = if metadata.uid() == 0 { 0o037 } else { 0o077 };
    if mode & others_may != 0 {
        return Err(format!(
            "sslkey {} can be read by others (mode {:o}): give it mode 0600, or 0640 if root owns it",
            path.display(),
            mode & 0o777
        ));
    }
    Ok(())
}

/// Every certificate in a PEM file; an error names the setting and the file.
fn read_certificates(path: &Path, setting: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certificates = CertificateDer::pem_file_iter(path)
        .and_then(|certificates| certificates.collect::<Result<Vec<_>, _>>())
        .map_err(|err| format!("cannot read {setting} {}: {err}", path.display()))?;
    if certificates.is_empty() {
        return Err(format!("{setting} {} holds no certificate", path.display()));
    }
    Ok(certificates)
}

fn root_store(roots: &Roots) -> Result<RootCertStore, String> {
    let mut store = RootCertStore::empty();
    let certificates: Vec<CertificateDer<'static>> = match roots {
        Roots::System => {
            let found = rustls_native_certs::load_native_certs();
            if found.certs.is_empty() {
                return Err(format!(
                    "sslrootcert=system, but no root certificates were found on this system ({:?})",
                    found.errors
                ));
            }
            found.certs
        }
        Roots::File(path) => read_certificates(path, "sslrootcert")?,
    };
    let (added, _ignored) = store.add_parsable_certificates(certificates);
    if added == 0 {
        return Err(match roots {
            Roots::File(path) => format!("sslrootcert {} holds no certificate", path.display()),
            Roots::System => "sslrootcert=system: no usable root certificate".to_string(),
        });
    }
    Ok(store)
}

/// The server's certificate checks. With a chain check the certificate must
/// chain to a trusted root and not be revoked, and with `names` also name the
/// host connected to (`verify-full`; `verify-ca` accepts any name). Without
/// one anything is accepted (`prefer`, `require` without roots): the
/// connection is encrypted against eavesdroppers, not against someone posing
/// as the server. Either way the handshake's signatures are checked, against
/// the certificate given.
#[derive(Debug)]
struct Checks {
    chain: Chain,
    names: bool,
    provider: Arc<CryptoProvider>,
}

#[derive(Debug)]
enum Chain {
    Unchecked,
    Fixed(Arc<WebPkiServerVerifier>),
    /// Built from the files at every handshake.
    ReadEachTime(ChainFiles),
}

impl ServerCertVerifier for Checks {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let chain = match &self.chain {
            Chain::Unchecked => return Ok(ServerCertVerified::assertion()),
            Chain::Fixed(chain) => chain.clone(),
            Chain::ReadEachTime(files) => {
                files.read(&self.provider).map_err(rustls::Error::General)?
            }
        };
        // webpki checks the chain and the revocation lists before the name.
        match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if !self.names => Ok(ServerCertVerified::assertion()),
            verified => verified,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::store::postgres::connection_url::tests::{parse, parse_with, settings};

    #[test]
    fn sslmode_means_what_it_means_to_libpq() {
        let (config, tls) = parse("postgres://u@h/d").unwrap();
        assert_eq!(config.get_ssl_mode(), SslMode::Prefer);
        assert_eq!(tls.verify, Verify::Nothing);
        let (config, _) = parse("postgres://u@h/d?sslmode=disable").unwrap();
        assert_eq!(config.get_ssl_mode(), SslMode::Disable);
        let (config, tls) = parse("postgres://u@h/d?sslmode=require").unwrap();
        assert_eq!(
            (config.get_ssl_mode(), tls.verify),
            (SslMode::Require, Verify::Nothing)
        );
        let (config, tls) =
            parse("postgres://u@h/d?sslmode=verify-full&sslrootcert=%2Fca+1.pem&dbname=x").unwrap();
        assert_eq!(
            (config.get_ssl_mode(), tls.verify),
            (SslMode::Require, Verify::ChainAndName)
        );
        assert_eq!(tls.roots, Some(Roots::File("/ca+1.pem".into())));
        assert_eq!(config.get_dbname(), Some("x"), "the other pairs are kept");
        for url in [
            "postgres://h/d?sslrootcert=system&sslmode=verify-full",
            "postgres://h/d?sslrootcert=system",
        ] {
            let (config, tls) = parse(url).unwrap();
            assert_eq!(config.get_ssl_mode(), SslMode::Require, "{url}");
            assert_eq!(
                tls,
                TlsSettings {
                    verify: Verify::ChainAndName,
                    roots: Some(Roots::System),
                    ..TlsSettings::default()
                },
                "the system's roots check the name, by default: {url}"
            );
        }
        assert_eq!(
            settings("postgres://h/d?sslmode=require&sslrootcert=/ca.pem").verify,
            Verify::Chain,
            "require with a root file checks the chain, as in libpq"
        );
        let (config, tls) = parse("postgres://h/d?sslrootcert=/ca.pem").unwrap();
        assert_eq!(
            (config.get_ssl_mode(), tls.verify),
            (SslMode::Prefer, Verify::Chain),
            "so does prefer, when the server offers TLS"
        );
    }

    #[test]
    fn wrong_tls_settings_are_refused_with_the_reason() {
        for (url, expected) in [
            ("postgres://h/d?sslmode=sometimes", "not one of disable"),
            (
                "postgres://h/d?sslmode=verify-full",
                "needs sslrootcert: a PEM file of the roots to trust, or `system`",
            ),
            (
                "postgres://h/d?sslrootcert=system&sslmode=sometimes",
                "sslmode `sometimes` is not one of",
            ),
            (
                "postgres://h/d?sslmode=verify-ca",
                "needs sslrootcert: a PEM file of the roots to trust (or",
            ),
            (
                "postgres://h/d?sslmode=verify-ca&sslrootcert=",
                "sslrootcert is empty",
            ),
            (
                "postgres://h/d?sslmode=require&sslcert=/c.pem",
                "sslcert /c.pem needs sslkey",
            ),
            ("postgres://h/d?sslkey=/c.key", "sslkey needs sslcert"),
            ("postgres://h/d?sslcert=&sslkey=/c.key", "sslcert is empty"),
            ("postgres://h/d?sslcert=/c.pem&sslkey=", "sslkey is empty"),
            (
                "postgres://h/d?sslmode=verify-ca&sslrootcert=system",
                "sslmode verify-ca may not be used with sslrootcert=system",
            ),
            (
                "postgres://h/d?sslrootcert=system&sslmode=prefer",
                "use verify-full",
            ),
            (
                "postgres://h/d?sslcert=/c.pem&sslkey=/c.key&sslpassword=x",
                "encrypted private keys are not supported",
            ),
        ] {
            let err = parse(url).unwrap_err();
            assert!(err.contains(expected), "{url}: {err}");
        }
    }

    #[test]
    fn a_client_certificate_and_its_key_are_read_from_the_url() {
        let (_, tls) =
            parse("postgres://h/d?sslmode=require&sslcert=%2Fa+b.pem&sslkey=/k.pem").unwrap();
        assert_eq!(
            tls.identity,
            Some(ClientIdentity {
                certificate: "/a+b.pem".into(),
                key: "/k.pem".into(),
            })
        );
        assert_eq!(settings("postgres://h/d").identity, None);
        assert_eq!(
            settings("postgres://h/d?sslmode=disable&sslcert=/missing.pem").identity,
            None,
            "without TLS the files are ignored, as by libpq"
        );
    }

    /// A `~/.postgresql/` holding empty files of these names (the parse only
    /// looks whether they are there).
    /// (The home directory, so that it lives as long as the test, and
    /// `~/.postgresql/` in it.)
    fn libpq_dir_with(names: &[&str]) -> ((tempfile::TempDir, PathBuf), Defaults) {
        let home = tempfile::tempdir().unwrap();
        let dir = home.path().join(".postgresql");
        std::fs::create_dir(&dir).unwrap();
        for name in names {
            std::fs::write(dir.join(name), "").unwrap();
        }
        let defaults = Defaults::with_home(home.path());
        ((home, dir), defaults)
    }

    #[test]
    fn roots_in_the_home_directory_are_trusted_as_by_libpq() {
        let ((_home, dir), defaults) = libpq_dir_with(&["root.crt"]);
        let root = Roots::File(dir.join("root.crt"));
        let with_home = |url: &str| parse_with(url, &defaults).unwrap().1;
        for url in ["postgres://h/d", "postgres://h/d?sslmode=require"] {
            let tls = with_home(url);
            assert_eq!(
                (tls.verify, tls.roots),
                (Verify::Chain, Some(root.clone())),
                "{url}"
            );
        }
        assert_eq!(
            with_home("postgres://h/d?sslmode=verify-full").roots,
            Some(root),
            "the verify modes need no sslrootcert then"
        );
        assert_eq!(
            with_home("postgres://h/d?sslmode=verify-full&sslrootcert=system").roots,
            Some(Roots::System),
            "a named sslrootcert wins"
        );
        for url in [
            "postgres://h/d?sslmode=disable",
            "postgres://u@%2Frun%2Fpg/d?sslmode=require",
        ] {
            assert_eq!(with_home(url), TlsSettings::default(), "no TLS: {url}");
        }
        // Here `~/.postgresql` is a file, so it holds nothing.
        let not_a_directory = Defaults::with_home(&dir.join("root.crt"));
        assert_eq!(
            parse_with("postgres://h/d", &not_a_directory).unwrap().1,
            TlsSettings::default()
        );
        let (_empty, nothing_there) = libpq_dir_with(&[]);
        let error = parse_with("postgres://h/d?sslmode=verify-ca", &nothing_there).unwrap_err();
        assert!(
            error.contains("needs sslrootcert") && error.contains("root.crt, as for psql"),
            "{error}"
        );
    }

    #[test]
    fn a_client_certificate_in_the_home_directory_is_shown_as_by_libpq() {
        let ((_home, dir), defaults) = libpq_dir_with(&["postgresql.crt", "postgresql.key"]);
        let identity = |url: &str| parse_with(url, &defaults).unwrap().1.identity;
        let (certificate, key) = (dir.join("postgresql.crt"), dir.join("postgresql.key"));
        assert_eq!(
            identity("postgres://h/d"),
            Some(ClientIdentity {
                certificate: certificate.clone(),
                key: key.clone()
            })
        );
        assert_eq!(
            identity("postgres://h/d?sslcert=/c.pem"),
            Some(ClientIdentity {
                certificate: "/c.pem".into(),
                key: key.clone()
            }),
            "a named certificate goes with the default key"
        );
        assert_eq!(
            identity("postgres://h/d?sslkey=/k.pem"),
            Some(ClientIdentity {
                certificate,
                key: "/k.pem".into()
            }),
            "a named key goes with the default certificate"
        );
        assert_eq!(identity("postgres://h/d?sslmode=disable"), None);

        let (_dir, key_only) = libpq_dir_with(&["postgresql.key"]);
        assert_eq!(
            parse_with("postgres://h/d", &key_only).unwrap().1.identity,
            None,
            "a key without a certificate is no identity, as in libpq"
        );
        let error = parse_with("postgres://h/d?sslkey=/k.pem", &key_only).unwrap_err();
        assert!(error.contains("sslkey needs sslcert"), "{error}");
        let ((_home, dir), certificate_only) = libpq_dir_with(&["postgresql.crt"]);
        let error = parse_with("postgres://h/d", &certificate_only).unwrap_err();
        let expected = format!(
            "found {}, which is shown to the server as psql would since the URL names no \
             sslcert, but not its key {}",
            dir.join("postgresql.crt").display(),
            dir.join("postgresql.key").display()
        );
        assert!(error.contains(&expected), "{error}");
        for url in [
            "postgres://h/d?sslmode=disable",
            "postgres://u@%2Frun%2Fpg/d",
        ] {
            let (_, tls) = parse_with(url, &certificate_only).unwrap();
            assert_eq!(
                tls.identity, None,
                "without TLS the files are not used: {url}"
            );
        }
    }

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/pg-client-tls")
            .join(name)
    }

    /// A file in `dir` holding `contents`, with the given mode.
    fn file_with_mode(dir: &Path, name: &str, contents: &[u8], mode: u32) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join(format!("{mode:o}-{name}"));
        std::fs::write(&path, contents).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    /// A copy of a fixture key with the given mode (git keeps no modes).
    fn key_copy(dir: &Path, name: &str, mode: u32) -> PathBuf {
        file_with_mode(dir, name, &std::fs::read(fixture(name)).unwrap(), mode)
    }

    fn with_identity(certificate: PathBuf, key: PathBuf) -> TlsSettings {
        TlsSettings {
            identity: Some(ClientIdentity { certificate, key }),
            ..TlsSettings::default()
        }
    }

    #[test]
    fn wrong_client_certificates_and_keys_are_reported_when_the_connector_is_built() {
        let dir = tempfile::tempdir().unwrap();
        let key = key_copy(dir.path(), "client.key", 0o600);
        for encoding in [key.clone(), key_copy(dir.path(), "client-sec1.key", 0o600)] {
            let settings = with_identity(fixture("client.crt"), encoding.clone());
            assert!(settings.connector().is_ok(), "{}", encoding.display());
        }
        let not_pem = file_with_mode(dir.path(), "not.pem", b"not a certificate\n", 0o600);
        let missing = dir.path().join("missing.pem");
        let other_key = key_copy(dir.path(), "stranger.key", 0o600);
        let shared_key = key_copy(dir.path(), "client.key", 0o644);
        for (certificate, key, expected) in [
            (missing.clone(), key.clone(), "cannot read sslcert"),
            (not_pem.clone(), key.clone(), "holds no certificate"),
            (fixture("client.crt"), missing, "cannot read sslkey"),
            (
                fixture("client.crt"),
                not_pem,
                "cannot read a private key from sslkey",
            ),
            (fixture("client.crt"), other_key, "cannot use sslcert"),
            (
                fixture("client.crt"),
                dir.path().to_path_buf(),
                "is not a file",
            ),
            (
                fixture("client.crt"),
                shared_key,
                "can be read by others (mode 644)",
            ),
        ] {
            let err = with_identity(certificate.clone(), key.clone())
                .connector()
                .err()
                .unwrap();
            assert!(
                err.contains(expected),
                "{} with {}: {err}",
                certificate.display(),
                key.display()
            );
        }
    }

    #[test]
    fn unreadable_or_empty_roots_are_reported_when_the_connector_is_built() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        for (path, expected) in [(missing, "cannot read sslrootcert"), (empty, "holds no")] {
            let tls = TlsSettings {
                verify: Verify::ChainAndName,
                roots: Some(Roots::File(path.clone())),
                ..TlsSettings::default()
            };
            let err = tls.connector().err().unwrap();
            assert!(err.contains(expected), "{}: {err}", path.display());
        }
        assert!(TlsSettings::default().connector().is_ok());
    }

    #[test]
    fn revocation_lists_go_with_the_checked_chain_as_in_libpq() {
        let lists = |url: &str| settings(url).revocations;
        let checked = "postgres://h/d?sslmode=verify-ca&sslrootcert=/ca.pem";
        assert_eq!(
            lists(&format!("{checked}&sslcrl=%2Fr+1.crl")),
            [Revocations::File("/r+1.crl".into())]
        );
        assert_eq!(
            lists(&format!("{checked}&sslcrldir=/crls&sslcrl=/r.crl")),
            [
                Revocations::File("/r.crl".into()),
                Revocations::Dir("/crls".into())
            ],
            "both, as OpenSSL loads both"
        );
        assert_eq!(lists(checked), [], "none named and no ~/.postgresql");

        let ((_home, dir), defaults) = libpq_dir_with(&["root.crt", "root.crl"]);
        let with_home = |url: &str| parse_with(url, &defaults).unwrap().1.revocations;
        let default_list = Revocations::File(dir.join("root.crl"));
        for url in ["postgres://h/d", "postgres://h/d?sslmode=verify-full"] {
            assert_eq!(with_home(url), std::slice::from_ref(&default_list), "{url}");
        }
        assert_eq!(
            with_home("postgres://h/d?sslcrldir=/crls"),
            [Revocations::Dir("/crls".into())],
            "a named list or directory replaces the default"
        );
        for url in [
            "postgres://h/d?sslmode=disable&sslcrl=/r.crl",
            "postgres://u@%2Frun%2Fpg/d?sslcrl=",
        ] {
            assert_eq!(with_home(url), [], "no TLS: {url}");
        }
        assert_eq!(
            with_home("postgres://h/d?sslrootcert=system"),
            [],
            "with the system's roots, as in libpq"
        );
        let (_dir, lists_only) = libpq_dir_with(&["root.crl"]);
        assert_eq!(
            parse_with("postgres://h/d?sslmode=require", &lists_only)
                .unwrap()
                .1,
            TlsSettings::default(),
            "the default list is passed over when nothing is checked, as in libpq"
        );

        for (url, expected) in [
            (
                "postgres://h/d?sslmode=require&sslcrl=/r.crl".to_string(),
                "sslcrl: revocation lists need the server's certificate checked",
            ),
            (
                "postgres://h/d?sslcrldir=/crls&sslcrl=/r.crl".to_string(),
                "sslcrl and sslcrldir: revocation lists need the server's certificate checked",
            ),
            (
                "postgres://h/d?sslrootcert=system&sslcrl=/r.crl".to_string(),
                "cannot be used with sslrootcert=system",
            ),
            (format!("{checked}&sslcrl="), "sslcrl is empty"),
            (format!("{checked}&sslcrldir="), "sslcrldir is empty"),
        ] {
            let error = parse(&url).unwrap_err();
            assert!(error.contains(expected), "{url}: {error}");
        }
    }

    fn crl_fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/pg-crl")
            .join(name)
    }

    fn crl_file(name: &str) -> Revocations {
        Revocations::File(crl_fixture(name))
    }

    /// Settings checking against the fixture CA, with these lists.
    fn against_the_fixture_ca(verify: Verify, lists: &[Revocations]) -> TlsSettings {
        TlsSettings {
            verify,
            roots: Some(Roots::File(crl_fixture("ca.crt"))),
            revocations: lists.to_vec(),
            identity: None,
        }
    }

    /// What the handshake of a connection to `host` makes of a fixture
    /// certificate (`server.crt`, for `localhost` and signed by the fixture CA,
    /// or `leaf.crt`, signed by its intermediate).
    fn handshake(verifier: &Checks, certificate: &str, host: &str) -> Result<(), String> {
        let read = |name: &str| CertificateDer::from_pem_file(crl_fixture(name)).unwrap();
        let intermediates = match certificate {
            "leaf.crt" => vec![read("intermediate.crt")],
            _ => Vec::new(),
        };
        let name = ServerName::try_from(host.to_string()).unwrap();
        verifier
            .verify_server_cert(
                &read(certificate),
                &intermediates,
                &name,
                &[],
                // A fixed time in the fixtures' hundred years, so a clock
                // behind the moment they were made does not matter.
                UnixTime::since_unix_epoch(std::time::Duration::from_secs(1_893_456_000)),
            )
            .map(|_| ())
            .map_err(|err| err.to_string())
    }

    fn verifier_of(tls: &TlsSettings) -> Result<Arc<Checks>, String> {
        tls.verifier(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
    }

    fn check(
        certificate: &str,
        verify: Verify,
        host: &str,
        lists: &[Revocations],
    ) -> Result<(), String> {
        let verifier = verifier_of(&against_the_fixture_ca(verify, lists))?;
        handshake(&verifier, certificate, host)
    }

    fn check_server(lists: &[Revocations]) -> Result<(), String> {
        check("server.crt", Verify::ChainAndName, "localhost", lists)
    }

    #[test]
    fn a_revoked_server_certificate_is_refused_and_a_listed_issuer_is_required() {
        // verify-full, and verify-ca (or a checked require) connecting by
        // another name: the name is not checked there, the revocation is.
        for (verify, host) in [
            (Verify::ChainAndName, "localhost"),
            (Verify::Chain, "db.internal"),
        ] {
            let check = |lists: &[Revocations]| check("server.crt", verify, host, lists);
            assert_eq!(check(&[]), Ok(()), "{verify:?}");
            assert_eq!(check(&[crl_file("empty.crl")]), Ok(()), "{verify:?}");
            assert_eq!(
                check(&[crl_file("stranger.crl"), crl_file("empty.crl")]),
                Ok(()),
                "{verify:?}: the issuer's list is among them"
            );
            for (lists, expected) in [
                (vec![crl_file("revoked.crl")], "Revoked"),
                (vec![crl_file("stranger.crl")], "UnknownRevocationStatus"),
                (
                    vec![crl_file("expired.crl")],
                    "certificate revocation list expired",
                ),
            ] {
                let error = check(&lists).unwrap_err();
                assert!(error.contains(expected), "{verify:?} {lists:?}: {error}");
            }
        }
    }

    #[test]
    fn every_certificate_of_the_chain_is_checked() {
        let leaf =
            |lists: &[Revocations]| check("leaf.crt", Verify::ChainAndName, "localhost", lists);
        assert_eq!(leaf(&[]), Ok(()), "the chain itself is good");
        assert_eq!(
            leaf(&[crl_file("empty.crl"), crl_file("intermediate-empty.crl")]),
            Ok(())
        );
        for (lists, expected) in [
            (
                vec![crl_file("intermediate-empty.crl")],
                "UnknownRevocationStatus",
            ),
            (vec![crl_file("empty.crl")], "UnknownRevocationStatus"),
            (
                vec![
                    crl_file("revoked-intermediate.crl"),
                    crl_file("intermediate-empty.crl"),
                ],
                "Revoked",
            ),
            (
                vec![
                    crl_file("empty.crl"),
                    crl_file("intermediate-revokes-leaf.crl"),
                ],
                "Revoked",
            ),
        ] {
            let error = leaf(&lists).unwrap_err();
            assert!(error.contains(expected), "{lists:?}: {error}");
        }
    }

    #[test]
    fn lists_rustls_would_read_otherwise_than_openssl_are_refused() {
        for lists in [
            [crl_file("empty.crl"), crl_file("revoked.crl")],
            [crl_file("empty.crl"), crl_file("empty.crl")],
        ] {
            let error = check_server(&lists).unwrap_err();
            assert!(
                error.contains("hold revocation lists from the same issuer"),
                "{lists:?}: {error}"
            );
        }
        // A list for one distribution point of the issuer, which webpki would
        // take as covering the server's certificate, which names none.
        for lists in [
            vec![crl_file("part1.crl")],
            vec![crl_file("part1.crl"), crl_file("part2.crl")],
        ] {
            let error = check_server(&lists).unwrap_err();
            assert!(
                error.contains("part1.crl holds a revocation list for one distribution point"),
                "{lists:?}: {error}"
            );
        }
        // Limited to user certificates: webpki does not read such lists.
        let error = check_server(&[crl_file("users.crl")]).unwrap_err();
        assert!(
            error.contains("users.crl: UnsupportedCrlIssuingDistributionPoint"),
            "{error}"
        );
    }

    #[test]
    fn a_directory_of_revocation_lists_is_read_as_openssl_rehash_leaves_it() {
        let dir = tempfile::tempdir().unwrap();
        let check = || check_server(&[Revocations::Dir(dir.path().to_path_buf())]);
        // The lists under their own names, which OpenSSL does not read.
        for name in ["stranger.crl", "empty.crl", "revoked.crl"] {
            std::fs::copy(crl_fixture(name), dir.path().join(name)).unwrap();
        }
        std::fs::create_dir(dir.path().join("0a1b2c3d.r9")).unwrap();
        let error = check().unwrap_err();
        assert!(
            error.contains("holds no revocation list under the names `openssl rehash`"),
            "{error}"
        );
        // What `openssl rehash` adds: links named by the issuer's hash.
        let link = |list: &str, name: &str| {
            std::os::unix::fs::symlink(list, dir.path().join(name)).unwrap();
        };
        link("stranger.crl", "5e1f2a3b.r0");
        link("empty.crl", "0a1b2c3d.r0");
        assert_eq!(check(), Ok(()));
        link("revoked.crl", "0a1b2c3d.r1");
        let error = check().unwrap_err();
        assert!(
            error.contains("0a1b2c3d.r0 and") && error.contains("0a1b2c3d.r1 hold"),
            "{error}"
        );
        std::fs::remove_file(dir.path().join("0a1b2c3d.r0")).unwrap();
        let error = check().unwrap_err();
        assert!(error.contains("Revoked"), "{error}");
        let error = check_server(&[Revocations::Dir(dir.path().join("missing"))]).unwrap_err();
        assert!(error.contains("cannot read sslcrldir"), "{error}");
    }

    #[test]
    fn revocation_lists_renewed_on_disk_are_used_by_the_next_handshake() {
        let dir = tempfile::tempdir().unwrap();
        let list = dir.path().join("root.crl");
        std::fs::copy(crl_fixture("empty.crl"), &list).unwrap();
        let tls = against_the_fixture_ca(Verify::ChainAndName, &[Revocations::File(list.clone())]);
        let verifier = verifier_of(&tls).unwrap();
        let handshake = || handshake(&verifier, "server.crt", "localhost");
        assert_eq!(handshake(), Ok(()));
        std::fs::copy(crl_fixture("revoked.crl"), &list).unwrap();
        let error = handshake().unwrap_err();
        assert!(error.contains("Revoked"), "{error}");
        std::fs::remove_file(&list).unwrap();
        let error = handshake().unwrap_err();
        assert!(
            error.contains("cannot read revocation lists from"),
            "{error}"
        );
    }

    #[test]
    fn sessions_are_not_resumed_past_the_certificate_check() {
        let tls = against_the_fixture_ca(Verify::ChainAndName, &[crl_file("empty.crl")]);
        let config = tls.client_config().unwrap();
        assert!(
            format!("{:?}", config.resumption).contains("NoClientSessionStorage"),
            "{:?}",
            config.resumption
        );
    }

    #[test]
    fn unreadable_or_empty_revocation_lists_are_reported_when_the_connector_is_built() {
        let dir = tempfile::tempdir().unwrap();
        let not_pem = dir.path().join("list.der");
        std::fs::write(&not_pem, [0x30, 0x82, 0x01, 0x00]).unwrap();
        let missing = dir.path().join("missing.crl");
        let broken = dir.path().join("broken.crl");
        std::fs::write(
            &broken,
            "-----BEGIN X509 CRL-----\nMAMCAQA=\n-----END X509 CRL-----\n",
        )
        .unwrap();
        for (path, expected) in [
            (missing, "cannot read revocation lists from"),
            (broken, "cannot use the revocation list in"),
            (not_pem, "holds no revocation list (PEM"),
        ] {
            let tls = against_the_fixture_ca(Verify::Chain, &[Revocations::File(path.clone())]);
            let error = tls.connector().err().unwrap();
            assert!(error.contains(expected), "{}: {error}", path.display());
        }
    }
}
