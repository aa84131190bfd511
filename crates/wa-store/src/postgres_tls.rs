//! TLS for PostgreSQL connections with libpq's `sslmode` / `sslrootcert` meaning, over rustls.
//!
//! [`PgConnectConfig::parse`] takes a PostgreSQL URL (`postgres://user:pw@host:5432/db?sslmode=…`)
//! or a keyword string (`host=… sslmode=verify-full sslrootcert=/etc/ca.pem`), removes the TLS
//! keys tokio-postgres does not know, and returns the [`tokio_postgres::Config`] for the rest plus
//! a [`MakeRustlsConnect`] connector configured for the requested mode:
//!
//! | `sslmode`        | encrypted                         | server certificate checked            |
//! |------------------|-----------------------------------|---------------------------------------|
//! | `disable`        | never                             | —                                     |
//! | `prefer` (default) | if the server accepts TLS, else plain | only when `sslrootcert` is given (chain) |
//! | `require`        | always                            | only when `sslrootcert` is given (chain) |
//! | `verify-ca`      | always                            | chain up to a trusted root            |
//! | `verify-full`    | always                            | chain and host name                   |
//!
//! `sslrootcert=<file>` names a PEM bundle of trusted roots; without it the Mozilla roots of
//! `webpki-roots` are trusted. `sslrootcert=system` also means those roots (this build reads no
//! operating-system store) and, as in libpq, requires `sslmode=verify-full` (its default then).
//! With `hostaddr`, the name checked by `verify-full` (and sent as SNI) is `host`'s.
//!
//! Unlike libpq, `prefer` does not retry without TLS when the server accepts TLS but the
//! handshake then fails (say, a server limited to TLS 1.0/1.1, which rustls does not speak):
//! the connection fails with the TLS error; `sslmode=disable` reaches such a server.
//!
//! Not supported: `sslmode=allow`, client certificates (`sslcert`, `sslkey`, `sslpassword`) and
//! revocation lists (`sslcrl`, `sslcrldir`): each is refused with a [`PgConfigError`] rather than
//! ignored. Channel binding is not offered: the TLS stream reports no `tls-server-end-point`
//! data, so SCRAM authenticates without binding (`channel_binding=require` fails to connect;
//! the default `prefer` works).
//!
//! Errors never repeat the connection string: it may hold a password.

use std::fmt;
use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, IpAddr, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};

/// libpq's `sslmode` values this crate implements.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SslMode {
    /// Plain TCP only.
    Disable,
    /// TLS when the server offers it, plain otherwise (libpq's default).
    Prefer,
    /// TLS or no connection; the certificate is checked only against an explicit `sslrootcert`.
    Require,
    /// TLS with the certificate chain verified; the host name is not checked.
    VerifyCa,
    /// TLS with the chain and the host name verified.
    VerifyFull,
}

impl SslMode {
    /// The `sslmode` keyword.
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

impl fmt::Display for SslMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SslMode {
    type Err = PgConfigError;

    fn from_str(s: &str) -> Result<Self, PgConfigError> {
        Ok(match s {
            "disable" => SslMode::Disable,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            "allow" => {
                return Err(PgConfigError::Unsupported {
                    option: "sslmode=allow",
                    reason: "it tries an unencrypted connection first; use sslmode=prefer or sslmode=disable",
                });
            }
            other => return Err(PgConfigError::UnknownSslMode(other.chars().take(40).collect())),
        })
    }
}

/// How the server's certificate is checked once TLS is up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Verification {
    /// Not at all: the connection is encrypted, the server not authenticated.
    None,
    /// The chain must lead to a trusted root; any host name is accepted.
    Chain,
    /// The chain and the host name.
    ChainAndHostName,
}

/// A connection string that cannot be used. Messages never contain the password.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PgConfigError {
    /// The string does not parse (the message names the offending option, not its value).
    #[error("invalid PostgreSQL connection string: {0}")]
    Invalid(String),
    /// `sslmode` has a value libpq does not know.
    #[error("unknown sslmode {0:?}: expected disable, prefer, require, verify-ca or verify-full")]
    UnknownSslMode(String),
    /// A libpq option this implementation refuses rather than silently ignores.
    #[error("{option} is not supported: {reason}")]
    Unsupported {
        /// The option (and value, when the value is the problem).
        option: &'static str,
        /// Why, and what to use instead.
        reason: &'static str,
    },
    /// `sslrootcert=system` with a mode that does not check the host name (libpq refuses it too).
    #[error("sslrootcert=system needs sslmode=verify-full (got sslmode={0})")]
    SystemRootsNeedVerifyFull(SslMode),
    /// The `sslrootcert` file cannot be read.
    #[error("cannot read sslrootcert file {path:?}: {error}")]
    RootCertRead {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        error: io::Error,
    },
    /// The `sslrootcert` file is not a PEM bundle of usable certificates.
    #[error("sslrootcert file {path:?} is not usable: {reason}")]
    RootCertInvalid {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Tls(String),
}

/// Why a TLS handshake with the server failed; tokio-postgres reports it as the source of its
/// TLS error (`tokio_postgres::Error::source()` downcasts to this type).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsConnectError {
    /// `verify-full` needs a DNS name or IP address to check, and `host` is neither.
    #[error("host {0:?} is not a DNS name or IP address, so sslmode=verify-full cannot check it")]
    InvalidHostName(String),
    /// The server's certificate was refused (unknown issuer, wrong name, expired, …).
    #[error("server certificate rejected: {0}")]
    Certificate(CertificateError),
    /// Any other handshake or transport failure.
    #[error("TLS handshake failed: {0}")]
    Handshake(io::Error),
}

/// A parsed connection string: tokio-postgres settings plus the matching TLS connector.
#[derive(Clone, Debug)]
pub struct PgConnectConfig {
    config: tokio_postgres::Config,
    tls: MakeRustlsConnect,
    ssl_mode: SslMode,
}

impl PgConnectConfig {
    /// Parses a URL or keyword connection string (see the module docs for the TLS keys).
    /// Reads the `sslrootcert` file, if any, now: a missing or bad file fails here, not at
    /// connect time.
    pub fn parse(s: &str) -> Result<Self, PgConfigError> {
        let (rest, params) = split_tls_params(s)?;
        let mut config: tokio_postgres::Config = rest.parse().map_err(|e: tokio_postgres::Error| {
            PgConfigError::Invalid(
                error_chain(&e).trim_start_matches("invalid connection string: ").to_owned(),
            )
        })?;
        let roots = match params.sslrootcert.as_deref() {
            None | Some("") => Roots::Default,
            Some("system") => Roots::System,
            Some(path) => Roots::File(PathBuf::from(path)),
        };
        let ssl_mode = match params.sslmode.as_deref() {
            Some(m) => m.parse()?,
            None if roots == Roots::System => SslMode::VerifyFull,
            None => SslMode::Prefer,
        };
        if roots == Roots::System && ssl_mode != SslMode::VerifyFull {
            return Err(PgConfigError::SystemRootsNeedVerifyFull(ssl_mode));
        }
        let verification = match (ssl_mode, &roots) {
            (SslMode::VerifyFull, _) => Verification::ChainAndHostName,
            (SslMode::VerifyCa, _) | (SslMode::Prefer | SslMode::Require, Roots::File(_)) => {
                Verification::Chain
            }
            _ => Verification::None,
        };
        config.ssl_mode(match ssl_mode {
            SslMode::Disable => tokio_postgres::config::SslMode::Disable,
            SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => {
                tokio_postgres::config::SslMode::Require
            }
        });
        let tls = MakeRustlsConnect::new(verification, &roots)?;
        Ok(PgConnectConfig { config, tls, ssl_mode })
    }

    /// The settings for tokio-postgres (TLS keys removed, its `ssl_mode` set to match).
    pub fn config(&self) -> &tokio_postgres::Config {
        &self.config
    }

    /// The connector to pass to `tokio_postgres::Config::connect` or a pool manager.
    pub fn tls(&self) -> MakeRustlsConnect {
        self.tls.clone()
    }

    /// The requested `sslmode` (default [`SslMode::Prefer`]).
    pub fn ssl_mode(&self) -> SslMode {
        self.ssl_mode
    }

    /// How the server certificate will be checked.
    pub fn verification(&self) -> Verification {
        self.tls.verification
    }

    /// Both halves, for APIs that take them separately.
    pub fn into_parts(self) -> (tokio_postgres::Config, MakeRustlsConnect) {
        (self.config, self.tls)
    }

    /// Opens one connection; drive the returned connection future (e.g. `tokio::spawn`).
    pub async fn connect(
        &self,
    ) -> Result<
        (
            tokio_postgres::Client,
            tokio_postgres::Connection<tokio_postgres::Socket, RustlsStream<tokio_postgres::Socket>>,
        ),
        tokio_postgres::Error,
    > {
        self.config.connect(self.tls.clone()).await
    }
}

impl FromStr for PgConnectConfig {
    type Err = PgConfigError;

    fn from_str(s: &str) -> Result<Self, PgConfigError> {
        PgConnectConfig::parse(s)
    }
}

/// A tokio-postgres error with its causes (`error performing TLS handshake: server certificate
/// rejected: …`); tokio-postgres's own `Display` shows only the outermost one.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        let text = cause.to_string();
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        next = cause.source();
    }
    out
}

// ---- connection-string surgery ----------------------------------------------------------------

#[derive(Clone, Debug, PartialEq, Eq)]
enum Roots {
    /// webpki-roots.
    Default,
    /// `sslrootcert=system` (also webpki-roots here).
    System,
    File(PathBuf),
}

#[derive(Debug, Default, PartialEq, Eq)]
struct TlsParams {
    sslmode: Option<String>,
    sslrootcert: Option<String>,
}

impl TlsParams {
    /// Takes `key` if it is ours; `Ok(false)` leaves it for tokio-postgres.
    fn take(&mut self, key: &str, value: String) -> Result<bool, PgConfigError> {
        match key {
            "sslmode" => self.sslmode = Some(value),
            "sslrootcert" => self.sslrootcert = Some(value),
            "sslcert" | "sslkey" | "sslpassword" | "sslcertmode" => {
                return Err(PgConfigError::Unsupported {
                    option: "client certificates (sslcert/sslkey/sslpassword/sslcertmode)",
                    reason: "authenticate with a password instead",
                });
            }
            "sslcrl" | "sslcrldir" => {
                return Err(PgConfigError::Unsupported {
                    option: "certificate revocation lists (sslcrl/sslcrldir)",
                    reason: "remove the option",
                });
            }
            _ => return Ok(false),
        }
        Ok(true)
    }
}

/// Splits our TLS keys off a URL or keyword string; returns the rest for tokio-postgres.
fn split_tls_params(s: &str) -> Result<(String, TlsParams), PgConfigError> {
    let mut params = TlsParams::default();
    for prefix in ["postgres://", "postgresql://"] {
        if let Some(body) = s.strip_prefix(prefix) {
            return Ok((format!("{prefix}{}", split_url_query(body, &mut params)?), params));
        }
    }
    let mut kept = Vec::new();
    for (key, value) in keyword_pairs(s)? {
        if !params.take(key, value.clone())? {
            kept.push(format!("{key}='{}'", value.replace('\\', "\\\\").replace('\'', "\\'")));
        }
    }
    Ok((kept.join(" "), params))
}

/// The URL after its scheme with our keys removed from the query. Like tokio-postgres, the
/// credentials end at the first `@` and the query starts at the first `?` after them; other
/// query segments are kept byte for byte.
fn split_url_query(body: &str, params: &mut TlsParams) -> Result<String, PgConfigError> {
    let creds_end = body.find('@').map_or(0, |i| i + 1);
    let Some(q) = body[creds_end..].find('?').map(|i| i + creds_end) else {
        return Ok(body.to_owned());
    };
    let mut kept: Vec<&str> = Vec::new();
    for segment in body[q + 1..].split('&') {
        let taken = match segment.split_once('=') {
            Some((key, value)) => params.take(&percent_decode(key)?, percent_decode(value)?)?,
            None => false,
        };
        if !taken {
            kept.push(segment);
        }
    }
    let mut out = body[..q].to_owned();
    if !kept.is_empty() {
        out.push('?');
        out.push_str(&kept.join("&"));
    }
    Ok(out)
}

/// `%XX` → byte (anything else is kept, as libpq and tokio-postgres do), then UTF-8.
fn percent_decode(s: &str) -> Result<String, PgConfigError> {
    fn hex(b: u8) -> Option<u8> {
        (b as char).to_digit(16).and_then(|d| u8::try_from(d).ok())
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match (b[i], b.get(i + 1).copied().and_then(hex), b.get(i + 2).copied().and_then(hex)) {
            (b'%', Some(h), Some(l)) => {
                out.push(h << 4 | l);
                i += 3;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out)
        .map_err(|_| PgConfigError::Invalid("a URL parameter is not UTF-8 after percent-decoding".into()))
}

/// `key = value` pairs of a keyword string, with tokio-postgres's (and libpq's) quoting rules:
/// a value is either bare up to whitespace or single-quoted; `\` escapes the next character.
fn keyword_pairs(s: &str) -> Result<Vec<(&str, String)>, PgConfigError> {
    let mut pairs = Vec::new();
    let mut rest = s.trim_start();
    while !rest.is_empty() {
        let key_end = rest.find(|c: char| c.is_whitespace() || c == '=').unwrap_or(rest.len());
        let key = &rest[..key_end];
        rest = rest[key_end..].trim_start();
        let Some(after_eq) = rest.strip_prefix('=') else {
            return Err(PgConfigError::Invalid(format!("expected `=` after `{key}`")));
        };
        rest = after_eq.trim_start();
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let quoted = rest.starts_with('\'');
        if quoted {
            chars.next();
        }
        let mut end = None;
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, escaped)) = chars.next() {
                        value.push(escaped);
                    }
                }
                '\'' if quoted => {
                    end = Some(i + 1);
                    break;
                }
                c if !quoted && c.is_whitespace() => {
                    end = Some(i);
                    break;
                }
                c => value.push(c),
            }
        }
        let end = match end {
            Some(e) => e,
            None if quoted => {
                return Err(PgConfigError::Invalid(format!("unterminated quoted value of `{key}`")));
            }
            None => rest.len(),
        };
        if !quoted && value.is_empty() {
            return Err(PgConfigError::Invalid(format!("missing value of `{key}`")));
        }
        pairs.push((key, value));
        rest = rest[end..].trim_start();
    }
    Ok(pairs)
}

// ---- rustls adapter ---------------------------------------------------------------------------

/// tokio-postgres's `MakeTlsConnect` over rustls (ring provider), set up for one [`Verification`].
#[derive(Clone)]
pub struct MakeRustlsConnect {
    config: Arc<ClientConfig>,
    verification: Verification,
}

impl fmt::Debug for MakeRustlsConnect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MakeRustlsConnect").field("verification", &self.verification).finish_non_exhaustive()
    }
}

impl MakeRustlsConnect {
    fn new(verification: Verification, roots: &Roots) -> Result<Self, PgConfigError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier: Arc<dyn ServerCertVerifier> = match verification {
            Verification::None => Arc::new(EncryptOnly(Arc::clone(&provider))),
            Verification::Chain | Verification::ChainAndHostName => {
                let webpki = WebPkiServerVerifier::builder_with_provider(
                    Arc::new(root_store(roots)?),
                    Arc::clone(&provider),
                )
                .build()
                .map_err(|e| PgConfigError::Tls(e.to_string()))?;
                if verification == Verification::Chain { Arc::new(ChainOnly(webpki)) } else { webpki }
            }
        };
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| PgConfigError::Tls(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        // What libpq sends since PostgreSQL 17 (required there for sslnegotiation=direct).
        config.alpn_protocols = vec![b"postgresql".to_vec()];
        Ok(MakeRustlsConnect { config: Arc::new(config), verification })
    }
}

fn root_store(roots: &Roots) -> Result<RootCertStore, PgConfigError> {
    let path = match roots {
        Roots::Default | Roots::System => {
            return Ok(RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() });
        }
        Roots::File(p) => p,
    };
    let pem =
        std::fs::read(path).map_err(|error| PgConfigError::RootCertRead { path: path.clone(), error })?;
    let invalid = |reason: String| PgConfigError::RootCertInvalid { path: path.clone(), reason };
    let mut store = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| invalid(format!("bad PEM: {e}")))?;
        store.add(cert).map_err(|e| invalid(format!("bad certificate: {e}")))?;
    }
    if store.is_empty() {
        return Err(invalid("no CERTIFICATE block found".into()));
    }
    Ok(store)
}

impl<S> MakeTlsConnect<S> for MakeRustlsConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type TlsConnect = RustlsConnect;
    type Error = TlsConnectError;

    fn make_tls_connect(&mut self, domain: &str) -> Result<RustlsConnect, TlsConnectError> {
        let server_name = match ServerName::try_from(domain.to_owned()) {
            Ok(name) => name,
            Err(_) if self.verification != Verification::ChainAndHostName => {
                // No name is checked; an IP placeholder also keeps SNI off the wire.
                ServerName::IpAddress(IpAddr::from(std::net::IpAddr::from([0u8, 0, 0, 0])))
            }
            Err(_) => return Err(TlsConnectError::InvalidHostName(domain.chars().take(255).collect())),
        };
        Ok(RustlsConnect { config: Arc::clone(&self.config), server_name })
    }
}

/// One pending handshake (made per connection by [`MakeRustlsConnect`]).
pub struct RustlsConnect {
    config: Arc<ClientConfig>,
    server_name: ServerName<'static>,
}

impl<S> TlsConnect<S> for RustlsConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type Error = TlsConnectError;
    type Future = Pin<Box<dyn Future<Output = Result<RustlsStream<S>, TlsConnectError>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        Box::pin(async move {
            tokio_rustls::TlsConnector::from(self.config)
                .connect(self.server_name, stream)
                .await
                .map(|s| RustlsStream(Box::new(s)))
                .map_err(|e| match e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()) {
                    Some(rustls::Error::InvalidCertificate(c)) => TlsConnectError::Certificate(c.clone()),
                    _ => TlsConnectError::Handshake(e),
                })
        })
    }
}

/// A TLS session to the server (no channel binding data: see the module docs).
pub struct RustlsStream<S>(Box<tokio_rustls::client::TlsStream<S>>);

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for RustlsStream<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.get_mut().0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for RustlsStream<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.get_mut().0).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.get_mut().0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> TlsStream for RustlsStream<S> {
    fn channel_binding(&self) -> ChannelBinding {
        ChannelBinding::none()
    }
}

/// `require`/`prefer` without roots: any certificate, but the handshake signatures are still
/// checked (the session key is bound to the certificate the server showed).
#[derive(Debug)]
struct EncryptOnly(Arc<CryptoProvider>);

impl ServerCertVerifier for EncryptOnly {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `verify-ca`: the full WebPKI check, then a name mismatch (the only error left once the chain
/// is valid) is forgiven.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.0.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> PgConnectConfig {
        PgConnectConfig::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn write_ca() -> (tempfile::TempDir, String) {
        // A real (self-signed) certificate so that RootCertStore accepts it.
        let pem = "-----BEGIN CERTIFICATE-----
MIIBmzCCAUGgAwIBAgIUPc2fQEcMjEIZg9WSsLj+5/ULe3MwCgYIKoZIzj0EAwIw
IjEgMB4GA1UEAwwXd2Etc3RvcmUgdW5pdCB0ZXN0IHJvb3QwIBcNMjYxMTIyMDMz
ODMzWhgPMjEyNjEwMjkwMzM4MzNaMCIxIDAeBgNVBAMMF3dhLXN0b3JlIHVuaXQg
dGVzdCByb290MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEP/jD2VNx1irrmPSN
4Yxg1bA2Oa9eYJf7nFrJ0Knkr5V/9rnsdo1SyRjOZNvJbs/2PJ0DqHiScHq5NVSb
DRnUgaNTMFEwHQYDVR0OBBYEFPWvSp6B8ZvHC8HtMc8AXiJSeuePMB8GA1UdIwQY
MBaAFPWvSp6B8ZvHC8HtMc8AXiJSeuePMA8GA1UdEwEB/wQFMAMBAf8wCgYIKoZI
zj0EAwIDSAAwRQIgNMOFH7GpaJWgGJcRugJ0gHt/4MB+9fDR6aSnRvaH2aICIQDf
cG0yqbzk5svvwcl46t4b8AT67aW7SjWQl7R4+zcNtQ==
-----END CERTIFICATE-----
";
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, pem).expect("write");
        let p = path.to_str().expect("utf-8 path").to_owned();
        (dir, p)
    }

    #[test]
    fn default_is_prefer_without_verification_and_keeps_other_options() {
        let c = parse("postgres://bob:s3cret@db.example:6432/app?application_name=x&connect_timeout=5");
        assert_eq!(c.ssl_mode(), SslMode::Prefer);
        assert_eq!(c.verification(), Verification::None);
        assert_eq!(c.config().get_ssl_mode(), tokio_postgres::config::SslMode::Prefer);
        assert_eq!(c.config().get_application_name(), Some("x"));
        assert_eq!(c.config().get_password(), Some(&b"s3cret"[..]));
        assert_eq!(c.config().get_ports(), [6432]);
        assert_eq!(c.config().get_dbname(), Some("app"));
    }

    #[test]
    fn modes_map_to_tokio_postgres_and_to_verification() {
        use tokio_postgres::config::SslMode as Tp;
        for (mode, tp, verification) in [
            ("disable", Tp::Disable, Verification::None),
            ("prefer", Tp::Prefer, Verification::None),
            ("require", Tp::Require, Verification::None),
            ("verify-ca", Tp::Require, Verification::Chain),
            ("verify-full", Tp::Require, Verification::ChainAndHostName),
        ] {
            for s in [format!("postgres://h/db?sslmode={mode}"), format!("host=h dbname=db sslmode={mode}")] {
                let c = parse(&s);
                assert_eq!(c.ssl_mode().as_str(), mode);
                assert_eq!(c.config().get_ssl_mode(), tp, "{s}");
                assert_eq!(c.verification(), verification, "{s}");
            }
        }
    }

    #[test]
    fn a_root_file_makes_require_and_prefer_check_the_chain() {
        let (_dir, ca) = write_ca();
        let c = parse(&format!("postgres://h/db?sslmode=require&sslrootcert={ca}"));
        assert_eq!(c.verification(), Verification::Chain);
        let c = parse(&format!("host=h sslrootcert='{ca}'"));
        assert_eq!((c.ssl_mode(), c.verification()), (SslMode::Prefer, Verification::Chain));
    }

    #[test]
    fn system_roots_default_to_verify_full_and_refuse_weaker_modes() {
        let c = parse("postgres://h/db?sslrootcert=system");
        assert_eq!(c.ssl_mode(), SslMode::VerifyFull);
        let e = PgConnectConfig::parse("postgres://h/db?sslrootcert=system&sslmode=require").unwrap_err();
        assert!(matches!(e, PgConfigError::SystemRootsNeedVerifyFull(SslMode::Require)), "{e}");
    }

    #[test]
    fn url_parameters_are_percent_decoded_and_the_rest_is_kept_verbatim() {
        let (dir, _) = write_ca();
        let spaced = dir.path().join("my ca.pem");
        std::fs::copy(dir.path().join("ca.pem"), &spaced).expect("copy");
        let enc = spaced.to_str().expect("utf-8").replace(' ', "%20");
        let s = format!(
            "postgresql://u:p%40ss@h/db?options=-csearch_path%3Dx&sslrootcert={enc}&sslmode=verify%2Dca"
        );
        let (rest, params) = split_tls_params(&s).expect("split");
        assert_eq!(rest, "postgresql://u:p%40ss@h/db?options=-csearch_path%3Dx");
        assert_eq!(params.sslmode.as_deref(), Some("verify-ca"));
        assert_eq!(params.sslrootcert.as_deref(), spaced.to_str());
        let c = parse(&s);
        assert_eq!(c.config().get_options(), Some("-csearch_path=x"));
        assert_eq!(c.config().get_password(), Some(&b"p@ss"[..]));
        assert_eq!(c.verification(), Verification::Chain);
        // Only TLS keys: the query disappears.
        assert_eq!(split_tls_params("postgres://h/db?sslmode=disable").expect("split").0, "postgres://h/db");
        // A `?` in the password is not the query.
        let (rest, params) = split_tls_params("postgres://u:a?b@h/db?sslmode=require").expect("split");
        assert_eq!((rest.as_str(), params.sslmode.as_deref()), ("postgres://u:a?b@h/db", Some("require")));
    }

    #[test]
    fn keyword_strings_keep_quoting() {
        let (rest, params) =
            split_tls_params(r"host=h password='it\'s \\ x' sslmode = verify-full user=a\ b").expect("split");
        assert_eq!(params.sslmode.as_deref(), Some("verify-full"));
        let c: tokio_postgres::Config = rest.parse().expect("reparse");
        assert_eq!(c.get_password(), Some(&br"it's \ x"[..]));
        assert_eq!(c.get_user(), Some("a b"));
        let e = PgConnectConfig::parse("host=h password='open").unwrap_err();
        assert!(matches!(e, PgConfigError::Invalid(_)), "{e}");
        let e = PgConnectConfig::parse("host").unwrap_err();
        assert!(matches!(e, PgConfigError::Invalid(_)), "{e}");
    }

    #[test]
    fn bad_values_are_typed_errors_without_the_password() {
        type Check = fn(&PgConfigError) -> bool;
        let cases: [(&str, Check); 8] = [
            (
                "postgres://u:s3cret@h/db?sslmode=verify",
                |e| matches!(e, PgConfigError::UnknownSslMode(m) if m == "verify"),
            ),
            ("postgres://u:s3cret@h/db?sslmode=allow", |e| matches!(e, PgConfigError::Unsupported { .. })),
            ("postgres://u:s3cret@h/db?sslcert=/c.pem", |e| matches!(e, PgConfigError::Unsupported { .. })),
            ("host=h password=s3cret sslcrl=/x", |e| matches!(e, PgConfigError::Unsupported { .. })),
            (
                "postgres://u:s3cret@h/db?sslrootcert=/nonexistent/ca.pem&sslmode=verify-full",
                |e| matches!(e, PgConfigError::RootCertRead { error, .. } if error.kind() == io::ErrorKind::NotFound),
            ),
            (
                "postgres://u:s3cret@h:notaport/db",
                |e| matches!(e, PgConfigError::Invalid(m) if m.contains("port")),
            ),
            (
                "postgres://u:s3cret@h/db?bogus=1",
                |e| matches!(e, PgConfigError::Invalid(m) if m.contains("bogus")),
            ),
            ("host=h password=s3cret sslmode=VERIFY-FULL", |e| matches!(e, PgConfigError::UnknownSslMode(_))),
        ];
        for (s, check) in cases {
            let e = PgConnectConfig::parse(s).unwrap_err();
            assert!(check(&e), "{s}: {e:?}");
            assert!(!e.to_string().contains("s3cret"), "{e}");
        }
    }

    #[test]
    fn a_root_file_without_certificates_or_with_garbage_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a pem file\n").expect("write");
        let e = PgConnectConfig::parse(&format!("host=h sslmode=verify-ca sslrootcert={}", empty.display()))
            .unwrap_err();
        assert!(matches!(e, PgConfigError::RootCertInvalid { .. }), "{e}");
        let bad = dir.path().join("bad.pem");
        std::fs::write(&bad, "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
            .expect("write");
        let e = PgConnectConfig::parse(&format!("host=h sslmode=verify-ca sslrootcert={}", bad.display()))
            .unwrap_err();
        assert!(matches!(e, PgConfigError::RootCertInvalid { .. }), "{e}");
    }

    #[test]
    fn verify_full_needs_a_checkable_host_name() {
        let c = parse("postgres://h/db?sslmode=verify-full");
        let mut tls = c.tls();
        let r = MakeTlsConnect::<tokio::net::TcpStream>::make_tls_connect(&mut tls, "not a name");
        assert!(matches!(r, Err(TlsConnectError::InvalidHostName(_))));
        let mut tls = parse("postgres://h/db?sslmode=require").tls();
        assert!(MakeTlsConnect::<tokio::net::TcpStream>::make_tls_connect(&mut tls, "not a name").is_ok());
        let mut tls = c.tls();
        assert!(MakeTlsConnect::<tokio::net::TcpStream>::make_tls_connect(&mut tls, "127.0.0.1").is_ok());
    }
}
