//! A small HTTP/1.1 client for media transfer and the `sw.js` version fetch: one request per
//! connection (WhatsApp's media hosts are many and requests are large and rare), plain TCP for
//! `http://` (the emulator, tests), rustls for `https://` (WhatsApp), optionally tunnelled
//! through an HTTP CONNECT proxy.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::error::{Error, Result};
use crate::proxy::Proxy;

/// A parsed `http://` or `https://` URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct HttpUrl {
    pub tls: bool,
    pub host: String,
    pub port: u16,
    /// Path and query, starting with `/`.
    pub path: String,
}

impl HttpUrl {
    pub(crate) fn parse(url: &str) -> Result<Self> {
        let bad = |why: &str| Error::InvalidInput(format!("url {url:?}: {why}"));
        let (tls, rest) = if let Some(r) = url.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = url.strip_prefix("http://") {
            (false, r)
        } else {
            return Err(bad("not http:// or https://"));
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let (host, port) =
            split_host_port(authority, if tls { 443 } else { 80 }).ok_or_else(|| bad("bad host"))?;
        Ok(Self { tls, host, port, path: path.to_owned() })
    }

    fn host_header(&self) -> String {
        if self.port == if self.tls { 443 } else { 80 } {
            self.host.clone()
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// Splits `host[:port]` (IPv6 literals in brackets).
pub(crate) fn split_host_port(authority: &str, default_port: u16) -> Option<(String, u16)> {
    if authority.is_empty() || authority.contains('@') {
        return None;
    }
    if let Some(rest) = authority.strip_prefix('[') {
        let end = rest.find(']')?;
        let host = &rest[..end];
        let port = match &rest[end + 1..] {
            "" => default_port,
            p => p.strip_prefix(':')?.parse().ok()?,
        };
        return Some((host.to_owned(), port));
    }
    match authority.rsplit_once(':') {
        Some((h, p)) if !h.is_empty() => Some((h.to_owned(), p.parse().ok()?)),
        Some(_) => None,
        None => Some((authority.to_owned(), default_port)),
    }
}

/// What a request is for: its failures are reported as that kind of error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Purpose {
    /// Media upload or download ([`Error::Media`]).
    Media,
    /// The current WhatsApp Web version ([`Error::VersionFetch`]).
    VersionFetch,
}

impl Purpose {
    fn error(self, message: String) -> Error {
        match self {
            Self::Media => Error::Media(message),
            Self::VersionFetch => Error::VersionFetch(message),
        }
    }
}

/// A response: status and body.
#[derive(Debug)]
pub(crate) struct Response {
    pub status: u16,
    pub body: Bytes,
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Trust for `https://` media: the webpki roots plus any roots the application added
/// (e.g. the emulator's test CA).
#[derive(Clone)]
pub(crate) struct TlsConfig {
    #[cfg(feature = "tls")]
    config: std::sync::Arc<rustls::ClientConfig>,
}

impl std::fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConfig").finish_non_exhaustive()
    }
}

impl TlsConfig {
    /// The webpki roots plus the certificates in `extra_pems`.
    #[cfg(feature = "tls")]
    pub(crate) fn new(extra_pems: &[String]) -> Result<Self> {
        // Without extra roots every client shares one configuration (the root store alone is
        // about 150 trust anchors).
        static DEFAULT: std::sync::OnceLock<std::sync::Arc<rustls::ClientConfig>> =
            std::sync::OnceLock::new();
        if extra_pems.is_empty()
            && let Some(config) = DEFAULT.get()
        {
            return Ok(Self { config: config.clone() });
        }
        let made = Self::build(extra_pems)?;
        if extra_pems.is_empty() {
            return Ok(Self { config: DEFAULT.get_or_init(|| made.config).clone() });
        }
        Ok(made)
    }

    #[cfg(feature = "tls")]
    fn build(extra_pems: &[String]) -> Result<Self> {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject as _;
        let mut roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
        for pem in extra_pems {
            let mut added = 0;
            for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
                let cert =
                    cert.map_err(|e| Error::InvalidInput(format!("media root certificate PEM: {e}")))?;
                roots.add(cert).map_err(|e| Error::InvalidInput(format!("media root certificate: {e}")))?;
                added += 1;
            }
            if added == 0 {
                return Err(Error::InvalidInput("media root certificate PEM holds no certificate".into()));
            }
        }
        let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::InvalidInput(format!("TLS configuration: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
        Ok(Self { config: std::sync::Arc::new(config) })
    }

    /// Without the `tls` feature only `http://` works; extra roots are refused.
    #[cfg(not(feature = "tls"))]
    pub(crate) fn new(extra_pems: &[String]) -> Result<Self> {
        if !extra_pems.is_empty() {
            return Err(Error::InvalidInput("media root certificates need the `tls` feature".into()));
        }
        Ok(Self {})
    }
}

async fn open(
    purpose: Purpose,
    url: &HttpUrl,
    proxy: Option<&Proxy>,
    tls_config: Option<&TlsConfig>,
) -> Result<Box<dyn Io>> {
    let tcp: TcpStream = match proxy {
        Some(p) => p.tunnel(&url.host, url.port).await?,
        None => TcpStream::connect((url.host.as_str(), url.port))
            .await
            .map_err(|e| purpose.error(format!("connect to {}:{}: {e}", url.host, url.port)))?,
    };
    let _ = tcp.set_nodelay(true);
    if !url.tls {
        return Ok(Box::new(tcp));
    }
    let tls_config = tls_config
        .ok_or_else(|| Error::InvalidInput(format!("https://{}: no TLS configuration", url.host)))?;
    tls(purpose, tcp, &url.host, tls_config).await
}

#[cfg(feature = "tls")]
async fn tls(purpose: Purpose, tcp: TcpStream, host: &str, tls_config: &TlsConfig) -> Result<Box<dyn Io>> {
    let name = rustls::pki_types::ServerName::try_from(host.to_owned())
        .map_err(|e| Error::InvalidInput(format!("TLS server name {host:?}: {e}")))?;
    let stream = tokio_rustls::TlsConnector::from(tls_config.config.clone())
        .connect(name, tcp)
        .await
        .map_err(|e| purpose.error(format!("TLS to {host}: {e}")))?;
    Ok(Box::new(stream))
}

#[cfg(not(feature = "tls"))]
async fn tls(_purpose: Purpose, _tcp: TcpStream, host: &str, _tls_config: &TlsConfig) -> Result<Box<dyn Io>> {
    Err(Error::InvalidInput(format!("https://{host}: wa-client was built without the `tls` feature")))
}

/// Sends one media request and reads the whole response (at most `max_body` bytes).
pub(crate) async fn request(
    method: &str,
    url: &str,
    body: Option<Bytes>,
    proxy: Option<&Proxy>,
    tls_config: Option<&TlsConfig>,
    timeout: Duration,
    max_body: usize,
) -> Result<Response> {
    request_for(Purpose::Media, method, url, body, &[], proxy, tls_config, timeout, max_body).await
}

/// Sends one request with extra `headers` and reads the whole response (at most `max_body`
/// bytes); failures are errors of `purpose`.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn request_for(
    purpose: Purpose,
    method: &str,
    url: &str,
    body: Option<Bytes>,
    headers: &[(&str, &str)],
    proxy: Option<&Proxy>,
    tls_config: Option<&TlsConfig>,
    timeout: Duration,
    max_body: usize,
) -> Result<Response> {
    let parsed = HttpUrl::parse(url)?;
    let req = request_inner(purpose, method, &parsed, body, headers, proxy, tls_config, max_body);
    tokio::time::timeout(timeout, req).await.map_err(|_| Error::Timeout {
        what: format!("{method} {}{}", parsed.host, parsed.path),
        after: timeout,
    })?
}

#[allow(clippy::too_many_arguments)]
async fn request_inner(
    purpose: Purpose,
    method: &str,
    url: &HttpUrl,
    body: Option<Bytes>,
    headers: &[(&str, &str)],
    proxy: Option<&Proxy>,
    tls_config: Option<&TlsConfig>,
    max_body: usize,
) -> Result<Response> {
    let io = open(purpose, url, proxy, tls_config).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| purpose.error(format!("HTTP handshake with {}: {e}", url.host)))?;
    let driver = tokio::spawn(async move {
        let _ = conn.await;
    });
    let has_body = body.is_some();
    let mut req = Request::builder()
        .method(method)
        .uri(url.path.as_str())
        .header("Host", url.host_header())
        .header("Origin", "https://web.whatsapp.com")
        .header("Connection", "close");
    if has_body {
        req = req.header("Content-Type", "application/octet-stream");
    }
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let req = req
        .body(Full::new(body.unwrap_or_default()))
        .map_err(|e| Error::InvalidInput(format!("HTTP request to {}: {e}", url.host)))?;
    let result = async {
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| purpose.error(format!("{method} {}{}: {e}", url.host, url.path)))?;
        let status = resp.status().as_u16();
        let body = Limited::new(resp.into_body(), max_body)
            .collect()
            .await
            .map_err(|e| purpose.error(format!("reading response from {}: {e}", url.host)))?
            .to_bytes();
        Ok(Response { status, body })
    }
    .await;
    driver.abort();
    result
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parses_urls() {
        let u = HttpUrl::parse("https://mmg.whatsapp.net/mms/image/abc?auth=x").unwrap();
        assert_eq!(
            u,
            HttpUrl {
                tls: true,
                host: "mmg.whatsapp.net".into(),
                port: 443,
                path: "/mms/image/abc?auth=x".into()
            }
        );
        let u = HttpUrl::parse("http://127.0.0.1:8080").unwrap();
        assert_eq!(
            (u.tls, u.port, u.path.as_str(), u.host_header()),
            (false, 8080, "/", "127.0.0.1:8080".into())
        );
        let u = HttpUrl::parse("http://[::1]:9/m").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 9));
        for bad in ["ftp://x", "http://", "http://:80/", "http://a:b/", "http://u@h/"] {
            assert!(HttpUrl::parse(bad).is_err(), "{bad}");
        }
    }
}
