//! Outbound TLS for the connection sources (`https://` Voip24h and SPRecord
//! servers): which certificate authorities a source trusts.
//!
//! A source trusts the public web roots, plus every certificate in its
//! `tls.ca_file` when one is set — for an on-premises recorder or a vendor
//! server behind a private CA. Every transport speaks TLS through rustls; the
//! public roots are the webpki ones (Mozilla's), the same on every host.
//!
//! Guarantees: a `ca_file` that cannot be read or holds no certificate is a
//! config error naming the file (`callrelay check` reports it), never a silent
//! fall-back to the public roots; the file is read again when a source starts,
//! and a reload restarts a source whose file's contents changed (same path
//! or not), so a replaced CA bundle takes effect on `systemctl reload`.
//!
//! A server certificate refused at the handshake (an unknown issuer, an
//! expired certificate, a name it does not hold) is said with what to change
//! ([`refused_certificate`]), rustls's own reason kept after it, a name list
//! cut to its first few names; the sources and `callrelay tail` say it alike
//! ([`failure_said`]), and any other failure's text, rustls's reason in it,
//! cut to [`REASON_CHARS`] characters.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde::Deserialize;
use toml::Spanned;

use crate::config::Validator;

/// A source's `tls` table.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSettings {
    /// PEM file of extra CA certificates to trust, on top of the public roots.
    pub ca_file: Option<Spanned<PathBuf>>,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read the CA file {path:?}: {reason}")]
    Read { path: PathBuf, reason: ReadError },
    #[error("the CA file {0:?} holds no PEM certificate")]
    Empty(PathBuf),
    #[error("the CA file {path:?}: certificate {index} is not usable: {reason}")]
    BadCertificate {
        path: PathBuf,
        index: usize,
        reason: String,
    },
    #[error("TLS setup: {0}")]
    Setup(String),
    /// Its read on the blocking pool did not finish (its task panicked, or
    /// the runtime is stopping); the panic is logged on its own.
    #[error("reading the CA file failed unexpectedly (a panic, logged, or the relay stopping)")]
    ReadUnfinished,
}

/// Why a CA file (or a file whose digest is taken) could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("not a regular file")]
    NotAFile,
    #[error("larger than {MAX_CA_FILE} bytes")]
    TooLarge,
    /// A PEM section that cannot be read.
    #[error("{0}")]
    Pem(rustls::pki_types::pem::Error),
}

impl TlsSettings {
    /// Checks that `ca_file`, when set, is a readable PEM file with at least
    /// one certificate, and that `url` is one TLS is used for.
    pub fn validate(&self, v: &mut Validator, url: &Spanned<String>) {
        let Some(ca_file) = &self.ca_file else {
            return;
        };
        // The scheme as the sources read it: parsed (`HTTPS://` is https).
        let https = url::Url::parse(url.get_ref()).is_ok_and(|u| u.scheme() == "https");
        if !https {
            let message = format!(
                "`tls.ca_file` is set but `url` = {} does not use https://",
                crate::config::shown_url(&v.shown(url))
            );
            v.error(ca_file.span(), message);
        }
        if let Err(e) = TrustRoots::load(self) {
            v.error(ca_file.span(), e.to_string());
        }
    }
}

/// The certificates a source trusts beyond the public roots, ready to build
/// a client for either TLS library.
#[derive(Clone, Debug, Default)]
pub struct TrustRoots {
    extra: Vec<CertificateDer<'static>>,
}

/// Why a certificate of the operator's CA file cannot be a root, in the
/// file's terms: rustls says any such refusal as "invalid peer certificate"
/// with its variant's name (`BadEncoding`), which is neither a peer's nor
/// words an operator can act on.
fn unusable_reason(error: &rustls::Error) -> String {
    match error {
        rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding) => {
            "not a valid X.509 certificate (its DER encoding does not parse as one: a block cut short or pasted wrong)".to_string()
        }
        // One that parses and is refused (a signature algorithm that differs
        // inside and outside the signed part, an extension given twice):
        // webpki's own error names it (`SignatureAlgorithmMismatch`), where
        // rustls's Display of `Other` gives its Debug.
        rustls::Error::InvalidCertificate(rustls::CertificateError::Other(refused)) => {
            format!("refused as a root: {refused}")
        }
        rustls::Error::InvalidCertificate(refused) => format!("refused as a root: {refused}"),
        other => crate::logging::cut_to(&other.to_string(), REASON_CHARS),
    }
}

impl TrustRoots {
    /// Reads `settings.ca_file` (no file: the public roots only).
    pub fn load(settings: &TlsSettings) -> Result<TrustRoots, TlsError> {
        match &settings.ca_file {
            Some(path) => TrustRoots::from_file(path.get_ref()),
            None => Ok(TrustRoots::default()),
        }
    }

    /// [`TrustRoots::load`] on the blocking pool: a source reads its
    /// `ca_file` at its start and again at each failed attempt, and a file
    /// on a cold, slow disk (an NFS mount) held a runtime worker, and the
    /// webhook answers and WebSocket pings on it, while it was read.
    pub async fn load_off_the_workers(settings: &TlsSettings) -> Result<TrustRoots, TlsError> {
        let settings = settings.clone();
        tokio::task::spawn_blocking(move || TrustRoots::load(&settings))
            .await
            .unwrap_or(Err(TlsError::ReadUnfinished))
    }

    /// The public roots plus every certificate in the PEM file at `path`.
    pub fn from_file(path: &Path) -> Result<TrustRoots, TlsError> {
        let read_error = |reason: ReadError| TlsError::Read {
            path: path.to_owned(),
            reason,
        };
        let pem = read_bounded(path).map_err(read_error)?;
        let mut extra = Vec::new();
        for (index, cert) in CertificateDer::pem_slice_iter(&pem).enumerate() {
            let cert = cert.map_err(|e| read_error(ReadError::Pem(e)))?;
            // rustls parses the certificate again when a client is built;
            // checking here turns a bad one into a config error instead.
            let usable = rustls::RootCertStore::empty()
                .add(cert.clone())
                .map_err(|e| unusable_reason(&e));
            if let Err(reason) = usable {
                return Err(TlsError::BadCertificate {
                    path: path.to_owned(),
                    index: index + 1,
                    reason,
                });
            }
            extra.push(cert);
        }
        if extra.is_empty() {
            return Err(TlsError::Empty(path.to_owned()));
        }
        Ok(TrustRoots { extra })
    }

    /// A rustls client config: the webpki roots plus the extra certificates.
    pub fn rustls(&self) -> Result<rustls::ClientConfig, TlsError> {
        let mut roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        for cert in &self.extra {
            roots
                .add(cert.clone())
                .map_err(|e| TlsError::Setup(e.to_string()))?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Setup(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(config)
    }
}

/// Largest CA file read: a full public bundle is about 250 KB.
const MAX_CA_FILE: u64 = 4 << 20;

/// SHA-256 of a certificate or key file's contents as they are now (read
/// with the same bounds as a CA file); `None` when it cannot be read. What a
/// reload compares to tell a file replaced in place.
pub(crate) fn file_digest(path: &Path) -> Option<[u8; 32]> {
    use sha2::Digest;
    let contents = read_bounded(path).ok()?;
    Some(sha2::Sha256::digest(&contents).into())
}

/// Upper bound on the files [`location_digest`] reads from one directory
/// (`/etc/ssl/certs` holds a few hundred).
const MAX_DIR_ENTRIES: usize = 10_000;

/// SHA-256 of what a librdkafka `*.location` names now: a file's contents,
/// or for a directory (OpenSSL's hashed CA directory, which `ssl.ca.location`
/// accepts) every regular file's name and contents in name order; `None`
/// when it cannot be read. A reload compares it to tell a file replaced, added
/// or removed in place.
pub(crate) fn location_digest(path: &Path) -> Option<[u8; 32]> {
    use sha2::Digest;
    if !std::fs::metadata(path).ok()?.is_dir() {
        return file_digest(path);
    }
    let mut names: Vec<_> = std::fs::read_dir(path)
        .ok()?
        .filter_map(|entry| entry.ok().map(|e| e.file_name()))
        .take(MAX_DIR_ENTRIES)
        .collect();
    names.sort();
    let mut hasher = sha2::Sha256::new();
    for name in names {
        // Subdirectories and unreadable entries count by name only.
        let contents = file_digest(&path.join(&name)).unwrap_or([0; 32]);
        hasher.update(name.as_encoded_bytes());
        hasher.update([0]);
        hasher.update(contents);
    }
    Some(hasher.finalize().into())
}

/// Reads a regular file of at most [`MAX_CA_FILE`] bytes: a path to a
/// device or a fifo is refused rather than read forever, and a fifo is
/// not waited on in `open` either ([`crate::regular_file::open`]: the
/// reload's digest of the Kafka CA files, on the blocking pool, would wait
/// on it).
fn read_bounded(path: &Path) -> Result<Vec<u8>, ReadError> {
    use std::io::Read;
    let Some(file) = crate::regular_file::open(path)? else {
        return Err(ReadError::NotAFile);
    };
    let mut pem = Vec::new();
    file.take(MAX_CA_FILE + 1).read_to_end(&mut pem)?;
    if pem.len() as u64 > MAX_CA_FILE {
        return Err(ReadError::TooLarge);
    }
    Ok(pem)
}

/// Whether `error` or one of its causes is a refused TLS handshake (an
/// untrusted certificate, a protocol alert).
pub fn is_tls_failure(error: &(dyn std::error::Error + 'static)) -> bool {
    rustls_error(error).is_some()
}

/// rustls's own error in `error`'s chain: the transports wrap it in an
/// `io::Error` whose `source()` skips it, so each link of the chain is
/// looked inside too.
fn rustls_error<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    if let Some(rustls) = error.downcast_ref::<rustls::Error>() {
        return Some(rustls);
    }
    // hyper-rustls wraps tokio-rustls' `io::Error` in another one.
    let inside_io = error
        .downcast_ref::<std::io::Error>()
        .and_then(|io| io.get_ref())
        .and_then(|inner| rustls_error(inner));
    inside_io.or_else(|| error.source().and_then(rustls_error))
}

/// Whose settings a refused certificate's advice names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Settings {
    /// A source's `tls.ca_file` and `url`.
    Source,
    /// `callrelay tail`'s `--ca-file` and `--url`.
    Tail,
}

impl Settings {
    fn who(self) -> &'static str {
        match self {
            Settings::Source => "the relay",
            Settings::Tail => "`callrelay tail`",
        }
    }

    fn ca_file(self) -> &'static str {
        match self {
            Settings::Source => "`tls.ca_file`",
            Settings::Tail => "--ca-file",
        }
    }

    fn url(self) -> &'static str {
        match self {
            Settings::Source => "`url`",
            Settings::Tail => "--url",
        }
    }
}

/// How the connection reached the server whose certificate was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    Direct,
    /// A `CONNECT` tunnel through the proxy `[proxy]` or the environment
    /// (`HTTPS_PROXY`, `ALL_PROXY`) chose: a proxy that inspects TLS
    /// answers with a certificate of its own CA.
    Proxy,
}

impl Route {
    /// The route of a source whose config resolved `proxy` for its `url`.
    pub fn of(proxy: Option<&crate::sources::proxy::ProxyRoute>) -> Route {
        match proxy {
            Some(_) => Route::Proxy,
            None => Route::Direct,
        }
    }
}

/// How many of a refused certificate's names its reason repeats, each cut
/// to [`EXCERPT_CHARS`](crate::logging::EXCERPT_CHARS): rustls says every
/// subjectAltName, and the certificate's owner chooses how many and how
/// long (a line past journald's 48K is split into pieces that are not JSON).
const NAMES_SAID: usize = 3;

/// The server's certificate refused at the handshake, in words that say
/// what to change, with rustls's own reason after them (`invalid peer
/// certificate: UnknownIssuer`: what on-call engineers search for; a
/// certificate's names cut to the first [`NAMES_SAID`]);
/// `ca_file` is the file trusted on top of the public roots, if any (a path,
/// no secret). `None` when `error` holds no refused certificate, or one
/// these words do not cover (a revoked one, a CA used as a server's): the
/// caller says it as before.
fn refused_certificate(
    error: &(dyn std::error::Error + 'static),
    settings: Settings,
    ca_file: Option<&Path>,
    route: Route,
) -> Option<String> {
    use rustls::CertificateError as Refused;
    let rustls = rustls_error(error)?;
    let rustls::Error::InvalidCertificate(refused) = rustls else {
        return None;
    };
    let (who, ca, url) = (settings.who(), settings.ca_file(), settings.url());
    // Through a CONNECT tunnel TLS is end to end, unless the proxy inspects
    // it: then the certificate is one the proxy made, signed by its own CA,
    // and the server is not at fault.
    let inspecting = match route {
        Route::Proxy => "; or, through the proxy, a TLS-inspecting proxy's CA signed it",
        Route::Direct => "",
    };
    // An intermediate certificate the server leaves out is an unknown issuer
    // too; the CA that signed the server's certificate is then that
    // intermediate, and trusting it works as well.
    let advice = match refused {
        Refused::UnknownIssuer => match ca_file {
            None => format!(
                "the server's certificate is not signed by a CA {who} trusts (the public roots; \
                 or the server leaves out its intermediate certificate{inspecting}): \
                 set {ca} to a PEM file of the CA that signed it"
            ),
            // The file adds to the public roots, never replaces them.
            Some(path) => format!(
                "the server's certificate is not signed by the CA in {ca} {path:?} nor by a public root \
                 (or the server leaves out its intermediate certificate{inspecting}): \
                 put the CA that signed it in that file"
            ),
        },
        // rustls says every signature webpki refuses as `BadSignature`: a
        // certificate's, checked with the key of a trusted CA or of an
        // intermediate the server sends that holds its issuer's name, and
        // the server's own over the handshake, checked with its
        // certificate's key. Only a file of the operator's can hold a
        // trusted CA made again under the same name with a new key.
        Refused::BadSignature => {
            let server = "the server sends a wrong intermediate certificate (the right name, \
                          another key) or signs with a key that does not match its certificate";
            let prefix = "a signature in the server's certificate chain or TLS handshake does not verify";
            match ca_file {
                None => format!("{prefix}: {server}: fix its chain or key on the server"),
                Some(path) => format!(
                    "{prefix}: either a CA in {ca} {path:?} has the issuer's name but another key \
                     (made again with a new key? put the CA that signed it in that file), \
                     or {server} (fix its chain or key on the server)"
                ),
            }
        }
        // rustls 0.23 says a real expiry with its dates (`ExpiredContext`);
        // the bare `Expired` comes only from webpki's `InvalidCertValidity`,
        // a certificate whose start is after its end, which no clock makes
        // valid (review of 520a5a6).
        Refused::Expired => "a certificate in the server's chain has its dates reversed \
                             (not valid before a date later than its end): \
                             reissue it on the server (its own or an intermediate it sends)"
            .to_owned(),
        // webpki checks the dates of every certificate on the path, not the
        // server's own only (a trusted root's are not checked).
        Refused::ExpiredContext { .. } => {
            "a certificate in the server's chain has expired (or this host's clock is ahead): \
             renew it on the server (its own or an intermediate it sends), \
             or set this host's clock right"
                .to_owned()
        }
        Refused::NotValidYet | Refused::NotValidYetContext { .. } => {
            "a certificate in the server's chain is not valid yet (or this host's clock is behind): \
             set this host's clock right (NTP), or have the server use it only from its start date"
                .to_owned()
        }
        Refused::NotValidForName | Refused::NotValidForNameContext { .. } => format!(
            "the host in {url} does not match the names in the server's certificate: \
             put a name the certificate holds in {url}, or have the certificate issued for this one"
        ),
        _ => return None,
    };
    Some(format!("{advice} ({})", rustls_reason(rustls)))
}

/// rustls's own text for `rustls`, but with a certificate's names bounded
/// ([`NAMES_SAID`]) and any other text cut to [`REASON_CHARS`]: the sources
/// log it and `/status` and `callrelay tail` show it.
fn rustls_reason(rustls: &rustls::Error) -> String {
    use rustls::CertificateError as Refused;
    match rustls {
        rustls::Error::InvalidCertificate(Refused::NotValidForNameContext {
            expected,
            presented,
        }) if !presented.is_empty() => {
            let names = crate::logging::first_then_more(
                presented.iter().map(|name| crate::logging::excerpt(name)),
                NAMES_SAID,
            );
            format!(
                "invalid peer certificate: certificate not valid for name {:?}; \
                 certificate is only valid for {names}",
                expected.to_str()
            )
        }
        other => crate::logging::cut_to(&other.to_string(), REASON_CHARS),
    }
}

/// The most characters of rustls's reason, or of a failed connection's
/// text, that [`failure_said`] repeats: far more than rustls's fixed
/// reasons take, far less than journald's 48K line.
pub const REASON_CHARS: usize = 512;

/// A connection that could not be opened, said for a log line, `/status`
/// `last_error` and `callrelay tail`'s stderr: [`refused_certificate`]'s
/// words when they cover `error`, else `said` (the caller's own text of
/// `error`) cut to [`REASON_CHARS`]. rustls says what a refused certificate
/// holds uncut (each extended key usage's every number, a signature
/// algorithm's bytes), and webpki checks those before it looks for an
/// issuer: any server, trusted or not, can make the text hundreds of KB.
pub fn failure_said(
    error: &(dyn std::error::Error + 'static),
    settings: Settings,
    ca_file: Option<&Path>,
    route: Route,
    said: impl FnOnce() -> String,
) -> String {
    refused_certificate(error, settings, ca_file, route)
        .unwrap_or_else(|| crate::logging::cut_to(&said(), REASON_CHARS))
}

/// [`failure_said`] in a source's terms: its `tls.ca_file`, its `url`, and
/// whether its `proxy` route carried the connection.
pub fn failure_said_by_source(
    error: &(dyn std::error::Error + 'static),
    settings: &TlsSettings,
    proxy: Option<&crate::sources::proxy::ProxyRoute>,
    said: impl FnOnce() -> String,
) -> String {
    let ca_file = settings
        .ca_file
        .as_ref()
        .map(|path| path.get_ref().as_path());
    failure_said(error, Settings::Source, ca_file, Route::of(proxy), said)
}

/// A handshake refused for an unknown issuer, as the transports report it.
#[cfg(test)]
pub(crate) fn unknown_issuer_refused() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
    )
}

/// A handshake refused for a certificate whose extended key usages lack
/// serverAuth, as tokio-rustls reports it: rustls says each usage's every
/// number, and webpki checks them before it looks for an issuer, so any
/// server can send one (2,000 usages here: ~61,000 characters).
#[cfg(test)]
pub(crate) fn long_purpose_refused() -> std::io::Error {
    use rustls::ExtendedKeyPurpose;
    let usage = |n: usize| ExtendedKeyPurpose::Other(vec![1, 3, 6, 1, 4, 1, 99_999, n]);
    std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        rustls::Error::InvalidCertificate(rustls::CertificateError::InvalidPurposeContext {
            required: ExtendedKeyPurpose::ServerAuth,
            presented: (0..2_000).map(usage).collect(),
        }),
    )
}

/// What a caller says of [`long_purpose_refused`]: rustls's reason starts
/// it, recognisable, and is cut, saying how much is left out.
#[cfg(test)]
pub(crate) fn assert_long_reason_cut(said: &str) {
    assert!(
        said.chars().count() < 1_000,
        "{} chars",
        said.chars().count()
    );
    assert!(
        said.contains(
            "invalid peer certificate: certificate does not allow extended key usage \
             for server authentication, allows 1, 3, 6, 1, 4, 1, 99999, 0, "
        ),
        "{said}"
    );
    assert!(said.ends_with(" more characters)"), "{said}");
}

/// What a source says of [`unknown_issuer_refused`], `proxied` through a
/// proxy route and `direct` without one: each source's test checks that its
/// own wiring passes its route on.
#[cfg(test)]
pub(crate) fn assert_said_for_proxy_route(proxied: &str, direct: &str) {
    assert!(
        proxied.contains("a TLS-inspecting proxy's CA signed it")
            && proxied.contains("(invalid peer certificate: UnknownIssuer)"),
        "{proxied}"
    );
    assert!(
        direct.contains("not signed by a CA the relay trusts") && !direct.contains("proxy"),
        "{direct}"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(path: &Path) -> TlsSettings {
        TlsSettings {
            ca_file: Some(crate::config::unspanned(path.to_owned())),
        }
    }

    fn ca_pem() -> String {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.self_signed(&key).unwrap().pem()
    }

    fn load_config(url: &str, tls: &str) -> Result<crate::config::Config, String> {
        let text = format!("[[sprecord]]\naccount = \"office\"\nurl = \"{url}\"\n{tls}\n");
        crate::config::Config::from_text("relay.toml", &text, &|_| None).map_err(|e| e.to_string())
    }

    #[test]
    fn a_refused_handshake_is_found_inside_wrapped_io_errors() {
        use std::io::{Error, ErrorKind};
        let rustls = || rustls::Error::General("bad certificate".into());
        let tokio_rustls = Error::new(ErrorKind::InvalidData, rustls());
        assert!(is_tls_failure(&tokio_rustls));
        let hyper_rustls = Error::other(tokio_rustls);
        assert!(is_tls_failure(&hyper_rustls));
        assert!(!is_tls_failure(&Error::new(
            ErrorKind::ConnectionRefused,
            "refused"
        )));
    }

    /// `refused` as the transports hand it over: rustls's error in
    /// tokio-rustls' `io::Error`, in hyper-rustls' own.
    fn refused_at_the_handshake(refused: rustls::CertificateError) -> std::io::Error {
        let tokio_rustls = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(refused),
        );
        std::io::Error::other(tokio_rustls)
    }

    fn said(
        refused: rustls::CertificateError,
        settings: Settings,
        ca_file: Option<&Path>,
    ) -> String {
        refused_certificate(
            &refused_at_the_handshake(refused),
            settings,
            ca_file,
            Route::Direct,
        )
        .expect("a refused certificate is worded")
    }

    #[test]
    fn an_unknown_issuer_says_which_ca_file_to_set_or_fill() {
        use rustls::CertificateError::UnknownIssuer;
        let none = said(UnknownIssuer, Settings::Source, None);
        assert_eq!(
            none,
            "the server's certificate is not signed by a CA the relay trusts (the public roots; \
             or the server leaves out its intermediate certificate): set `tls.ca_file` to a PEM \
             file of the CA that signed it (invalid peer certificate: UnknownIssuer)"
        );
        let path = Path::new("/etc/callrelay/office-ca.pem");
        let one = said(UnknownIssuer, Settings::Source, Some(path));
        assert!(
            one.starts_with(
                "the server's certificate is not signed by the CA in `tls.ca_file` \
                 \"/etc/callrelay/office-ca.pem\" nor by a public root"
            ) && one.contains("put the CA that signed it in that file"),
            "{one}"
        );
        assert!(
            one.ends_with("(invalid peer certificate: UnknownIssuer)"),
            "{one}"
        );
        // `tail` names its own flag, and itself.
        let tail = said(UnknownIssuer, Settings::Tail, None);
        assert!(
            tail.contains("a CA `callrelay tail` trusts") && tail.contains("set --ca-file to"),
            "{tail}"
        );
        assert!(!tail.contains("tls.ca_file"), "{tail}");
    }

    #[test]
    fn an_unknown_issuer_through_a_proxy_may_be_a_tls_inspecting_one() {
        use rustls::CertificateError::UnknownIssuer;
        let proxied = |ca_file| {
            refused_certificate(
                &refused_at_the_handshake(UnknownIssuer),
                Settings::Source,
                ca_file,
                Route::Proxy,
            )
            .expect("a refused certificate is worded")
        };
        let none = proxied(None);
        assert!(
            none.contains("or, through the proxy, a TLS-inspecting proxy's CA signed it")
                && none.contains("set `tls.ca_file` to a PEM file of the CA that signed it")
                && none.ends_with("(invalid peer certificate: UnknownIssuer)"),
            "{none}"
        );
        let one = proxied(Some(Path::new("/etc/callrelay/office-ca.pem")));
        assert!(
            one.contains("\"/etc/callrelay/office-ca.pem\" nor by a public root")
                && one.contains("a TLS-inspecting proxy's CA signed it"),
            "{one}"
        );
        // Reached directly, no proxy is blamed.
        let direct = said(UnknownIssuer, Settings::Source, None);
        assert!(!direct.contains("proxy"), "{direct}");
    }

    #[test]
    fn a_signature_that_does_not_verify_names_every_cause() {
        use rustls::CertificateError::BadSignature;
        // rustls says every signature webpki refuses as `BadSignature`: a
        // trusted CA's, an intermediate's the server sends, and the
        // server's own in the handshake.
        let path = Path::new("/etc/callrelay/office-ca.pem");
        let one = said(BadSignature, Settings::Source, Some(path));
        assert!(
            one.starts_with(
                "a signature in the server's certificate chain or TLS handshake does not verify: \
                 either a CA in `tls.ca_file` \"/etc/callrelay/office-ca.pem\" has the issuer's \
                 name but another key"
            ) && one.contains("put the CA that signed it in that file")
                && one.contains("wrong intermediate certificate")
                && one.contains("a key that does not match its certificate"),
            "{one}"
        );
        assert!(
            one.ends_with("(invalid peer certificate: BadSignature)"),
            "{one}"
        );
        // No file: the public roots are not blamed, nor a file to set.
        for settings in [Settings::Source, Settings::Tail] {
            let none = said(BadSignature, settings, None);
            assert!(
                none.starts_with(
                    "a signature in the server's certificate chain or TLS handshake does not verify"
                ) && none.contains("wrong intermediate certificate")
                    && none.contains("a key that does not match its certificate")
                    && none.contains("fix its chain or key on the server"),
                "{none}"
            );
            assert!(
                !none.contains("public root")
                    && !none.contains("ca_file")
                    && !none.contains("ca-file"),
                "{none}"
            );
        }
    }

    #[test]
    fn a_certificate_out_of_its_dates_points_at_the_chain_or_the_clock() {
        use rustls::CertificateError;
        use rustls::pki_types::UnixTime;
        let at = |secs| UnixTime::since_unix_epoch(std::time::Duration::from_secs(secs));
        // webpki checks the dates of every certificate on the path, the
        // intermediates the server sends too, so "the server's" would be
        // wrong for an expired intermediate.
        let expired = CertificateError::ExpiredContext {
            time: at(2_000),
            not_after: at(1_000),
        };
        let text = said(expired, Settings::Source, None);
        assert!(
            text.starts_with(
                "a certificate in the server's chain has expired (or this host's clock is ahead)"
            ) && text.contains("renew it on the server (its own or an intermediate it sends)"),
            "{text}"
        );
        // rustls's reason whole, its dates too.
        assert!(
            text.ends_with(
                "(invalid peer certificate: certificate expired: verification time 2000 (UNIX), \
                 but certificate is not valid after 1000 (1000 seconds ago))"
            ),
            "{text}"
        );
        let text = said(CertificateError::Expired, Settings::Tail, None);
        assert!(
            text.starts_with("a certificate in the server's chain has its dates reversed")
                && !text.contains("clock")
                && text.ends_with("(invalid peer certificate: Expired)"),
            "{text}"
        );

        let early = CertificateError::NotValidYetContext {
            time: at(1_000),
            not_before: at(1_600),
        };
        let text = said(early, Settings::Source, None);
        assert!(
            text.starts_with(
                "a certificate in the server's chain is not valid yet (or this host's clock is behind)"
            ) && text.contains("certificate not valid yet: verification time 1000 (UNIX)"),
            "{text}"
        );
        let text = said(CertificateError::NotValidYet, Settings::Source, None);
        assert!(
            text.ends_with("(invalid peer certificate: NotValidYet)"),
            "{text}"
        );
    }

    #[test]
    fn a_certificate_for_other_names_points_at_the_url() {
        use rustls::CertificateError;
        let other_names = CertificateError::NotValidForNameContext {
            expected: rustls::pki_types::ServerName::try_from("rec.local")
                .unwrap()
                .to_owned(),
            presented: vec!["DnsName(\"recorder.example\")".to_owned()],
        };
        let text = said(other_names, Settings::Source, None);
        assert!(
            text.starts_with(
                "the host in `url` does not match the names in the server's certificate"
            ) && text.contains("put a name the certificate holds in `url`"),
            "{text}"
        );
        assert!(
            text.contains(
                "certificate not valid for name \"rec.local\"; certificate is only valid for"
            ),
            "{text}"
        );
        let text = said(CertificateError::NotValidForName, Settings::Tail, None);
        assert!(
            text.starts_with("the host in --url does not match")
                && text.ends_with("(invalid peer certificate: NotValidForName)"),
            "{text}"
        );
    }

    #[test]
    fn a_certificate_with_many_long_names_says_a_few_of_them_cut() {
        use rustls::CertificateError;
        // webpki lists every subjectAltName, uncut: a certificate chaining to
        // a trusted root can hold ~64 KiB of them.
        let name = |i: usize| format!("DnsName(\"{}{i:04}.example\")", "n".repeat(200));
        let many = CertificateError::NotValidForNameContext {
            expected: rustls::pki_types::ServerName::try_from("rec.local")
                .unwrap()
                .to_owned(),
            presented: (0..300).map(name).collect(),
        };
        let text = said(many, Settings::Source, None);
        assert!(text.chars().count() < 1_000, "{} chars", text.len());
        assert!(
            text.contains(
                "(invalid peer certificate: certificate not valid for name \"rec.local\"; \
                 certificate is only valid for "
            ),
            "{text}"
        );
        let first = crate::logging::excerpt(&name(0));
        assert!(text.contains(&format!("valid for {first}, ")), "{text}");
        assert!(!text.contains(&name(0)), "{text}");
        assert!(
            text.ends_with(&format!(" and {} more)", 300 - NAMES_SAID)),
            "{text}"
        );
    }

    /// Said whole before: ~61,000 characters per line and per `/status`.
    #[test]
    fn a_long_reason_the_words_do_not_cover_is_cut() {
        // As hyper-rustls hands it over, and as tokio-rustls does.
        let wrapped = std::io::Error::other(long_purpose_refused());
        for refused in [&wrapped, &long_purpose_refused()] {
            let said = failure_said(refused, Settings::Source, None, Route::Direct, || {
                crate::logging::with_causes(refused)
            });
            assert_long_reason_cut(&said);
        }
    }

    #[test]
    fn what_the_words_do_not_cover_is_left_to_the_caller() {
        let revoked = refused_at_the_handshake(rustls::CertificateError::Revoked);
        assert_eq!(
            refused_certificate(&revoked, Settings::Source, None, Route::Direct),
            None
        );
        let alert = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::AlertReceived(rustls::AlertDescription::HandshakeFailure),
        );
        assert!(is_tls_failure(&alert));
        assert_eq!(
            refused_certificate(&alert, Settings::Source, None, Route::Direct),
            None
        );
        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert_eq!(
            refused_certificate(&refused, Settings::Source, None, Route::Direct),
            None
        );
    }

    #[test]
    fn the_digest_follows_the_file_contents() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        assert_eq!(file_digest(&path), None, "no file yet");
        std::fs::write(&path, "one").unwrap();
        let one = file_digest(&path);
        assert!(one.is_some());
        assert_eq!(file_digest(&path), one, "same contents, same digest");
        std::fs::write(&path, "two").unwrap();
        assert_ne!(file_digest(&path), one);
    }

    #[test]
    fn the_config_checks_the_ca_file_and_the_scheme() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, ca_pem()).unwrap();
        let tls = format!("tls = {{ ca_file = {:?} }}", path.display().to_string());
        assert!(load_config("https://rec.local", &tls).is_ok());
        assert!(load_config("https://rec.local", "").is_ok());

        let err = load_config("http://rec.local", &tls).unwrap_err();
        assert!(
            err.contains("relay.toml:4:") && err.contains("https://"),
            "{err}"
        );
        // The scheme as the sources read it, in any case.
        assert!(load_config("HTTPS://rec.local", &tls).is_ok());
        // A URL written in the file is shown without its credentials.
        let err = load_config("http://user:hunter2@rec.local/?token=abc", &tls).unwrap_err();
        assert!(err.contains("\"http://…@rec.local/?…\""), "{err}");
        assert!(!err.contains("hunter2") && !err.contains("abc"), "{err}");

        let err = load_config(
            "https://rec.local",
            "tls = { ca_file = \"/no/such/ca.pem\" }",
        )
        .unwrap_err();
        assert!(
            err.contains("relay.toml:4:") && err.contains("/no/such/ca.pem"),
            "{err}"
        );

        let err = load_config("https://rec.local", "tls = { ca = \"x\" }").unwrap_err();
        assert!(err.contains("ca"), "{err}");
    }

    #[test]
    fn no_ca_file_trusts_the_public_roots_only() {
        let roots = TrustRoots::load(&TlsSettings::default()).unwrap();
        assert!(roots.extra.is_empty());
        assert!(roots.rustls().is_ok());
    }

    #[test]
    fn every_certificate_in_the_file_is_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, format!("{}\n{}", ca_pem(), ca_pem())).unwrap();
        let roots = TrustRoots::load(&settings(&path)).unwrap();
        assert_eq!(roots.extra.len(), 2);
        assert!(roots.rustls().is_ok());
    }

    #[test]
    fn a_missing_empty_or_broken_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let err = TrustRoots::load(&settings(&missing)).unwrap_err();
        assert!(matches!(err, TlsError::Read { .. }), "{err}");
        assert!(err.to_string().contains("missing.pem"), "{err}");
        let err = TrustRoots::load(&settings(Path::new("/dev/zero"))).unwrap_err();
        assert!(err.to_string().contains("not a regular file"), "{err}");

        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let err = TrustRoots::load(&settings(&empty)).unwrap_err();
        assert!(matches!(err, TlsError::Empty(_)), "{err}");

        let broken = dir.path().join("broken.pem");
        std::fs::write(
            &broken,
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let err = TrustRoots::load(&settings(&broken)).unwrap_err();
        assert!(
            matches!(err, TlsError::BadCertificate { index: 1, .. }),
            "{err}"
        );
        // The operator's own file, not a peer's certificate, and no
        // rustls variant name.
        let said = err.to_string();
        assert!(said.contains("not a valid X.509 certificate"), "{said}");
        assert!(!said.contains("peer"), "{said}");
        assert!(!said.contains("BadEncoding"), "{said}");
    }

    #[test]
    fn a_ca_file_may_be_exactly_the_bound_not_a_byte_more() {
        let dir = tempfile::tempdir().unwrap();
        let at_bound = dir.path().join("at.pem");
        std::fs::write(&at_bound, vec![b'\n'; MAX_CA_FILE as usize]).unwrap();
        let read = read_bounded(&at_bound).unwrap();
        assert_eq!(read.len() as u64, MAX_CA_FILE, "read whole, not cut short");
        let over = dir.path().join("over.pem");
        std::fs::write(&over, vec![b'\n'; MAX_CA_FILE as usize + 1]).unwrap();
        let err = read_bounded(&over).unwrap_err().to_string();
        assert_eq!(err, format!("larger than {MAX_CA_FILE} bytes"));
    }
}
