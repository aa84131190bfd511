//! HTTP CONNECT proxies: the chat WebSocket and media transfers are tunnelled through
//! `CONNECT host:port`, so TLS stays end to end between us and WhatsApp.

use base64::Engine as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::error::{Error, Result};
use crate::http::split_host_port;

/// The longest proxy response head we read before giving up.
const MAX_HEAD: usize = 8 * 1024;

/// An HTTP proxy that supports `CONNECT` (`http://[user:password@]host:port`).
#[derive(Clone, PartialEq, Eq)]
pub struct Proxy {
    host: String,
    port: u16,
    /// `Basic …` credentials, when the URL has them.
    authorization: Option<String>,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the credentials.
        f.debug_struct("Proxy")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("authenticated", &self.authorization.is_some())
            .finish()
    }
}

impl Proxy {
    /// Parses `http://[user:password@]host[:port]` (port 8080 when absent).
    pub fn parse(url: &str) -> Result<Self> {
        let bad = |why: &str| Error::InvalidInput(format!("proxy url: {why}"));
        let rest =
            url.strip_prefix("http://").ok_or_else(|| bad("only http:// (CONNECT) proxies are supported"))?;
        let rest = rest.trim_end_matches('/');
        if rest.contains('/') {
            return Err(bad("a proxy url has no path"));
        }
        let (userinfo, authority) = match rest.rsplit_once('@') {
            Some((u, a)) => (Some(u), a),
            None => (None, rest),
        };
        let (host, port) = split_host_port(authority, 8080).ok_or_else(|| bad("bad host or port"))?;
        let authorization = userinfo
            .map(|u| format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(u.as_bytes())));
        Ok(Self { host, port, authorization })
    }

    /// The proxy's `host:port`.
    pub fn address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// Opens a TCP connection to the proxy and asks it to tunnel to `host:port`.
    pub(crate) async fn tunnel(&self, host: &str, port: u16) -> Result<TcpStream> {
        let refused = |why: String| Error::Proxy(format!("{}: {why}", self.address()));
        let mut tcp = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| refused(format!("connect: {e}")))?;
        let target = if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") };
        let mut head = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
        if let Some(a) = &self.authorization {
            head.push_str("Proxy-Authorization: ");
            head.push_str(a);
            head.push_str("\r\n");
        }
        head.push_str("\r\n");
        tcp.write_all(head.as_bytes()).await.map_err(|e| refused(format!("write: {e}")))?;

        // Read the response head one byte at a time: whatever follows it belongs to the
        // tunnelled protocol and must stay in the socket.
        let mut resp = Vec::with_capacity(128);
        while !resp.ends_with(b"\r\n\r\n") {
            if resp.len() >= MAX_HEAD {
                return Err(refused("response head too long".into()));
            }
            let b = tcp.read_u8().await.map_err(|e| refused(format!("reading the CONNECT reply: {e}")))?;
            resp.push(b);
        }
        let status_line = resp.split(|&b| b == b'\r').next().unwrap_or_default();
        let status_line = String::from_utf8_lossy(status_line);
        let mut parts = status_line.split_whitespace();
        let version = parts.next().unwrap_or_default();
        let code = parts.next().and_then(|c| c.parse::<u16>().ok());
        if !version.starts_with("HTTP/1.") {
            return Err(refused(format!("not an HTTP reply: {status_line:?}")));
        }
        match code {
            Some(200..=299) => Ok(tcp),
            _ => Err(refused(format!("CONNECT {target} refused: {status_line}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parses_proxy_urls() {
        let p = Proxy::parse("http://user:pw@proxy.local:3128").unwrap();
        assert_eq!(p.address(), "proxy.local:3128");
        assert_eq!(p.authorization.as_deref(), Some("Basic dXNlcjpwdw=="));
        assert!(!format!("{p:?}").contains("dXNlcjpwdw"));
        assert_eq!(Proxy::parse("http://10.0.0.1/").unwrap().address(), "10.0.0.1:8080");
        for bad in ["socks5://h:1", "http://", "http://h:x", "http://h:1/path", "proxy:1"] {
            assert!(Proxy::parse(bad).is_err(), "{bad}");
        }
    }
}
