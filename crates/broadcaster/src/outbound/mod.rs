//! The one outbound HTTP client: webhook deliveries and media fetched by URL.
//!
//! HTTP/1.1 over hyper-util's pooled client, `https://` through rustls (ring) trusting the
//! Mozilla roots (webpki-roots) plus an optional extra CA (`--outbound-ca-file`). Every
//! connection is made by [`guard::GuardedConnector`], which enforces the SSRF policy on every
//! resolved address. Redirects are followed here, at most [`MAX_REDIRECTS`] times, each target
//! checked again (scheme, no downgrade from `https` to `http`, and the connector's address
//! check); every request has an overall timeout and a cap on the body it reads.

pub mod fetch;
pub mod guard;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{HeaderMap, HeaderName, HeaderValue, LOCATION};
use hyper::{Method, StatusCode};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

pub use guard::{GuardError, IpNet, TargetPolicy, TestLoopback, is_public};

/// Redirects followed per request.
pub const MAX_REDIRECTS: usize = 5;
/// Longest URL accepted (webhooks, media, redirect targets).
pub const MAX_URL_LEN: usize = 2048;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How the client is built (from [`crate::config::Config::outbound`]).
#[derive(Debug, Clone, Default)]
pub struct OutboundConfig {
    /// Extra trusted root certificates (PEM), besides the Mozilla roots.
    pub extra_ca_pem: Option<String>,
    /// TEST ONLY (see [`TestLoopback`]).
    pub test_loopback: TestLoopback,
    /// The operator's allow-list of non-public ranges (see [`TargetPolicy::allow`]).
    pub allow: Vec<IpNet>,
}

/// What went wrong with an outbound request.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum OutboundError {
    /// Not a usable `http(s)://` URL.
    #[error("{0}")]
    InvalidUrl(String),
    /// The SSRF policy refused the target (or a redirect's target).
    #[error("{0}")]
    Refused(String),
    /// The host does not resolve.
    #[error("{0}")]
    Unresolvable(String),
    /// The response body is larger than allowed.
    #[error("the response is larger than {0} bytes")]
    TooLarge(usize),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// Connection, TLS or protocol failure.
    #[error("{0}")]
    Transport(String),
    /// The client could not be built (a bad extra CA).
    #[error("{0}")]
    Config(String),
}

/// A response: final status, headers and the (capped) body.
#[derive(Debug)]
pub struct Response {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// The URL that answered (after redirects).
    pub url: url::Url,
}

/// Per-request limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub timeout: Duration,
    pub max_body: usize,
    /// Return a body larger than `max_body` as [`OutboundError::TooLarge`] (media) or cut it
    /// (webhook answers: only their start matters).
    pub truncate: bool,
}

/// The shared outbound client (cheap to clone).
#[derive(Clone)]
pub struct OutboundClient {
    client: Client<HttpsConnector<guard::GuardedConnector>, Full<Bytes>>,
    policy: Arc<TargetPolicy>,
}

impl std::fmt::Debug for OutboundClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboundClient").field("policy", &self.policy).finish_non_exhaustive()
    }
}

impl Default for OutboundClient {
    /// The production policy and the Mozilla roots alone.
    fn default() -> Self {
        // Only an extra CA can fail to build.
        Self::new(&OutboundConfig::default()).unwrap_or_else(|_| unreachable!("no extra CA"))
    }
}

/// The rustls configuration: webpki roots plus the certificates in `extra_pem`.
fn tls_config(extra_pem: Option<&str>) -> Result<rustls::ClientConfig, OutboundError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject as _;
    let mut roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    if let Some(pem) = extra_pem {
        let mut added = 0;
        for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
            let cert = cert.map_err(|e| OutboundError::Config(format!("extra CA file: {e}")))?;
            roots.add(cert).map_err(|e| OutboundError::Config(format!("extra CA certificate: {e}")))?;
            added += 1;
        }
        if added == 0 {
            return Err(OutboundError::Config("the extra CA file holds no PEM certificate".into()));
        }
    }
    Ok(rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| OutboundError::Config(format!("TLS configuration: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// Parses and checks the shape of an outbound URL (no network).
pub fn parse_url(raw: &str) -> Result<url::Url, OutboundError> {
    let raw = raw.trim();
    if raw.len() > MAX_URL_LEN {
        return Err(OutboundError::InvalidUrl(format!("the URL is longer than {MAX_URL_LEN} characters")));
    }
    let url = url::Url::parse(raw)
        .map_err(|e| OutboundError::InvalidUrl(format!("`{raw}` is not a valid URL: {e}")))?;
    check_shape(&url)?;
    Ok(url)
}

fn check_shape(url: &url::Url) -> Result<(), OutboundError> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err(OutboundError::InvalidUrl(format!(
            "`{}` URLs are not supported; use https:// (or http://)",
            url.scheme()
        )));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(OutboundError::InvalidUrl("the URL has no host".into()));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(OutboundError::InvalidUrl(
            "credentials in the URL are not supported; put a token in the path or query instead".into(),
        ));
    }
    Ok(())
}

fn guard_error(e: GuardError) -> OutboundError {
    match e {
        GuardError::Refused(m) => OutboundError::Refused(m),
        GuardError::Unresolvable(m) => OutboundError::Unresolvable(m),
    }
}

/// The policy refusal or resolution failure in `e`'s source chain, else a transport error with
/// the chain's messages.
fn transport_error(e: &(dyn std::error::Error + 'static)) -> OutboundError {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    let mut parts: Vec<String> = Vec::new();
    while let Some(err) = cur {
        if let Some(g) = err.downcast_ref::<GuardError>() {
            return guard_error(g.clone());
        }
        let s = err.to_string();
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
        cur = err.source();
    }
    OutboundError::Transport(parts.join(": "))
}

impl OutboundClient {
    pub fn new(config: &OutboundConfig) -> Result<Self, OutboundError> {
        let policy = Arc::new(TargetPolicy {
            test_loopback: config.test_loopback.clone(),
            allow: config.allow.clone(),
        });
        let tcp = guard::GuardedConnector { policy: policy.clone(), connect_timeout: CONNECT_TIMEOUT };
        let https = HttpsConnector::from((tcp, tls_config(config.extra_ca_pem.as_deref())?));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(8)
            .build(https);
        Ok(Self { client, policy })
    }

    /// The SSRF policy in force.
    pub fn policy(&self) -> &TargetPolicy {
        &self.policy
    }

    /// Checks a URL as a request would use it: its shape, and that its host resolves to allowed
    /// addresses only (for registration; deliveries are checked again at connect time).
    pub async fn check_url(&self, raw: &str) -> Result<url::Url, OutboundError> {
        let url = parse_url(raw)?;
        let host = url.host_str().unwrap_or_default();
        let port = url.port_or_known_default().unwrap_or(80);
        self.policy.resolve(host, port, CONNECT_TIMEOUT).await.map_err(guard_error)?;
        Ok(url)
    }

    /// `GET url`, following redirects.
    pub async fn get(
        &self,
        url: &str,
        headers: &[(HeaderName, HeaderValue)],
        limits: Limits,
    ) -> Result<Response, OutboundError> {
        self.request(Method::GET, url, headers, Bytes::new(), limits).await
    }

    /// `POST url` with `body`. Only 307 and 308 redirects are followed (they keep the method and
    /// body); 301, 302 and 303 would turn the POST into a GET, so they are returned as is.
    pub async fn post(
        &self,
        url: &str,
        headers: &[(HeaderName, HeaderValue)],
        body: Bytes,
        limits: Limits,
    ) -> Result<Response, OutboundError> {
        self.request(Method::POST, url, headers, body, limits).await
    }

    async fn request(
        &self,
        method: Method,
        url: &str,
        headers: &[(HeaderName, HeaderValue)],
        body: Bytes,
        limits: Limits,
    ) -> Result<Response, OutboundError> {
        let url = parse_url(url)?;
        tokio::time::timeout(limits.timeout, self.follow(method, url, headers, body, limits))
            .await
            .map_err(|_| OutboundError::Timeout(limits.timeout))?
    }

    async fn follow(
        &self,
        method: Method,
        mut url: url::Url,
        headers: &[(HeaderName, HeaderValue)],
        body: Bytes,
        limits: Limits,
    ) -> Result<Response, OutboundError> {
        let mut redirects = 0;
        loop {
            let mut req = hyper::Request::builder().method(method.clone()).uri(url.as_str());
            for (k, v) in headers {
                req = req.header(k, v);
            }
            let req = req
                .body(Full::new(body.clone()))
                .map_err(|e| OutboundError::InvalidUrl(format!("cannot request `{url}`: {e}")))?;
            let resp = self.client.request(req).await.map_err(|e| transport_error(&e))?;
            let status = resp.status();
            let follows = match status.as_u16() {
                307 | 308 => true,
                301..=303 => method == Method::GET,
                _ => false,
            };
            if follows && let Some(location) = resp.headers().get(LOCATION) {
                if redirects == MAX_REDIRECTS {
                    return Err(OutboundError::Refused(format!(
                        "`{url}` redirected more than {MAX_REDIRECTS} times"
                    )));
                }
                redirects += 1;
                let location = location.to_str().map_err(|_| {
                    OutboundError::Refused(format!("`{url}` redirected to a Location that is not text"))
                })?;
                let next = url.join(location).map_err(|e| {
                    OutboundError::Refused(format!(
                        "`{url}` redirected to `{location}`, not a valid URL: {e}"
                    ))
                })?;
                check_shape(&next)
                    .map_err(|e| OutboundError::Refused(format!("redirect to `{next}` refused: {e}")))?;
                if next.as_str().len() > MAX_URL_LEN {
                    return Err(OutboundError::Refused("a redirect target is too long".into()));
                }
                if url.scheme() == "https" && next.scheme() == "http" {
                    return Err(OutboundError::Refused(format!(
                        "redirect from `{url}` to `{next}` refused: it would drop TLS"
                    )));
                }
                // The connector checks the new target's addresses when it connects; say which
                // redirect it was when it refuses.
                url = next;
                continue;
            }
            let (parts, body) = resp.into_parts();
            if !limits.truncate
                && let Some(len) = parts.headers.get(hyper::header::CONTENT_LENGTH)
                && let Some(len) = len.to_str().ok().and_then(|l| l.parse::<u64>().ok())
                && len > limits.max_body as u64
            {
                return Err(OutboundError::TooLarge(limits.max_body));
            }
            let body = read_body(body, limits).await?;
            return Ok(Response { status: parts.status, headers: parts.headers, body, url });
        }
    }
}

async fn read_body(mut body: hyper::body::Incoming, limits: Limits) -> Result<Bytes, OutboundError> {
    if !limits.truncate {
        return Limited::new(body, limits.max_body).collect().await.map(|c| c.to_bytes()).map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                OutboundError::TooLarge(limits.max_body)
            } else {
                OutboundError::Transport(format!("reading the response failed: {e}"))
            }
        });
    }
    let mut out = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame =
            frame.map_err(|e| OutboundError::Transport(format!("reading the response failed: {e}")))?;
        if let Ok(data) = frame.into_data() {
            let room = limits.max_body.saturating_sub(out.len());
            out.extend_from_slice(&data[..data.len().min(room)]);
            if out.len() >= limits.max_body {
                break;
            }
        }
    }
    Ok(out.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_for_shape() {
        for (bad, why) in [
            ("ftp://example.com/a", "not supported"),
            ("file:///etc/passwd", "not supported"),
            ("not a url", "not a valid URL"),
            ("https://user:pw@example.com/", "credentials"),
        ] {
            let e = parse_url(bad).unwrap_err().to_string();
            assert!(e.contains(why), "{bad}: {e}");
        }
        assert!(parse_url(&format!("https://example.com/{}", "a".repeat(MAX_URL_LEN))).is_err());
        assert_eq!(parse_url(" https://example.com/hook ").unwrap().as_str(), "https://example.com/hook");
    }

    #[test]
    fn a_bad_extra_ca_is_a_typed_error() {
        let cfg = OutboundConfig { extra_ca_pem: Some("not a pem".into()), ..Default::default() };
        assert!(matches!(OutboundClient::new(&cfg), Err(OutboundError::Config(_))));
    }

    /// A loopback server that answers every connection with `response` (or nothing), and a
    /// client allowed to reach its port.
    async fn raw_server(response: Option<&'static [u8]>) -> (OutboundClient, String) {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let _ = s.read(&mut buf).await;
                    match response {
                        Some(r) => {
                            let _ = s.write_all(r).await;
                        }
                        // Hold the connection open without answering.
                        None => std::future::pending::<()>().await,
                    }
                });
            }
        });
        let cfg = OutboundConfig { test_loopback: TestLoopback::Ports(vec![port]), ..Default::default() };
        (OutboundClient::new(&cfg).unwrap(), format!("http://127.0.0.1:{port}/x"))
    }

    #[tokio::test]
    async fn a_silent_server_times_out() {
        let (c, url) = raw_server(None).await;
        let limits = Limits { timeout: Duration::from_millis(200), max_body: 1024, truncate: false };
        assert!(matches!(c.get(&url, &[], limits).await, Err(OutboundError::Timeout(_))));
    }

    #[tokio::test]
    async fn bodies_are_capped_declared_or_not() {
        let limits = |truncate| Limits { timeout: Duration::from_secs(20), max_body: 10, truncate };
        // Declared too large: refused before reading.
        let (c, url) = raw_server(Some(b"HTTP/1.1 200 OK\r\ncontent-length: 11\r\n\r\nhello world")).await;
        assert!(matches!(c.get(&url, &[], limits(false)).await, Err(OutboundError::TooLarge(10))));
        // Chunked, no length: cut off while reading.
        let chunked: &[u8] =
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n6\r\nhello \r\n5\r\nworld\r\n0\r\n\r\n";
        let (c, url) = raw_server(Some(chunked)).await;
        assert!(matches!(c.get(&url, &[], limits(false)).await, Err(OutboundError::TooLarge(10))));
        // Webhook answers are read up to the cap, the rest ignored.
        let r = c.get(&url, &[], limits(true)).await.unwrap();
        assert_eq!(&r.body[..], b"hello worl");
        let (c, url) = raw_server(Some(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello")).await;
        assert_eq!(&c.get(&url, &[], limits(false)).await.unwrap().body[..], b"hello");
    }

    #[tokio::test]
    async fn refused_targets_never_connect() {
        let c = OutboundClient::default();
        let limits = Limits { timeout: Duration::from_secs(20), max_body: 1024, truncate: false };
        for url in [
            "http://127.0.0.1:1/x.png",
            "http://localhost/x.png",
            "https://localhost/x.png",
            "http://169.254.169.254/latest/meta-data",
            "http://[::1]/x",
            "https://10.0.0.5/a",
            "http://[::ffff:192.168.0.1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://[::127.0.0.1]/",
            "http://[::ffff:0:7f00:1]/",
            "http://[64:ff9b::a9fe:a9fe]/latest/meta-data",
        ] {
            match c.get(url, &[], limits).await {
                Err(OutboundError::Refused(_)) => {}
                other => panic!("{url}: {other:?}"),
            }
            assert!(matches!(c.check_url(url).await, Err(OutboundError::Refused(_))), "{url}");
        }
    }
}
