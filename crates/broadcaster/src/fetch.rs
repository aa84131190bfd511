//! Fetching media by URL without becoming an SSRF proxy.
//!
//! The host is resolved once, every resolved address must be public (no loopback, private,
//! link-local, CGNAT, multicast, documentation or unspecified ranges, IPv4-mapped included), and
//! the connection goes to the checked address, so a DNS answer cannot change between check and
//! use. Redirects are not followed; size and time are capped.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};

use crate::error::ApiError;

/// Limits for [`fetch`].
#[derive(Debug, Clone)]
pub struct FetchPolicy {
    pub max_bytes: usize,
    pub timeout: Duration,
    /// Allow loopback/private targets (local testing only; never in production).
    pub allow_private: bool,
}

impl Default for FetchPolicy {
    fn default() -> Self {
        Self { max_bytes: 16 * 1024 * 1024, timeout: Duration::from_secs(20), allow_private: false }
    }
}

#[derive(Debug)]
pub struct Fetched {
    pub data: Bytes,
    pub content_type: Option<String>,
}

fn refused(msg: impl Into<String>) -> ApiError {
    ApiError::bad("url_refused", msg)
}

/// Whether `ip` is a public unicast address.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public_v4(v4);
            }
            let s = v6.segments();
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00 // unique local
                || (s[0] & 0xffc0) == 0xfe80 // link-local
                || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
                || (s[0] == 0x0064 && s[1] == 0xff9b) // NAT64 (embeds IPv4)
                || (s[0] == 0x2002)) // 6to4 (embeds IPv4)
        }
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let o = ip.octets();
    !(ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || o[0] == 0
        || (o[0] == 100 && (o[1] & 0xc0) == 64) // CGNAT 100.64/10
        || (o[0] == 192 && o[1] == 0 && o[2] == 0) // IETF protocol assignments
        || (o[0] == 198 && (o[1] & 0xfe) == 18) // benchmarking 198.18/15
        || o[0] >= 240) // reserved
}

/// Fetches `url` (http only) under `policy`.
pub async fn fetch(policy: &FetchPolicy, url: &str) -> Result<Fetched, ApiError> {
    let uri: hyper::Uri = url.parse().map_err(|_| refused(format!("`{url}` is not a valid URL")))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => {
            return Err(refused(
                "https media URLs are not supported by this server yet; upload the file as data_base64",
            ));
        }
        _ => return Err(refused("media URLs must use http://")),
    }
    let host = uri.host().ok_or_else(|| refused("URL has no host"))?.to_owned();
    let port = uri.port_u16().unwrap_or(80);
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let addrs: Vec<SocketAddr> = match bare.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => tokio::time::timeout(policy.timeout, tokio::net::lookup_host((bare, port)))
            .await
            .map_err(|_| refused(format!("resolving `{host}` timed out")))?
            .map_err(|_| refused(format!("cannot resolve `{host}`")))?
            .collect(),
    };
    if addrs.is_empty() {
        return Err(refused(format!("`{host}` has no addresses")));
    }
    if !policy.allow_private && addrs.iter().any(|a| !is_public(a.ip())) {
        return Err(refused(format!("`{host}` resolves to a loopback, private or reserved address")));
    }
    let target = addrs[0];
    let work = async {
        let stream = tokio::net::TcpStream::connect(target)
            .await
            .map_err(|e| refused(format!("cannot connect to `{host}`: {e}")))?;
        let io = hyper_util::rt::TokioIo::new(stream);
        let (mut sender, conn) = hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(io)
            .await
            .map_err(|e| refused(format!("HTTP handshake with `{host}` failed: {e}")))?;
        let conn_task = tokio::spawn(conn);
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        let authority = uri.authority().map_or(host.clone(), |a| a.to_string());
        let req = hyper::Request::get(path)
            .header(hyper::header::HOST, authority)
            .header(hyper::header::USER_AGENT, "broadcaster-media-fetch")
            .body(Empty::new())
            .map_err(|e| refused(format!("bad request: {e}")))?;
        let resp = sender.send_request(req).await.map_err(|e| refused(format!("fetch failed: {e}")))?;
        let status = resp.status();
        if !status.is_success() {
            conn_task.abort();
            return Err(refused(format!(
                "`{url}` answered HTTP {} (redirects are not followed)",
                status.as_u16()
            )));
        }
        if let Some(len) = resp.headers().get(hyper::header::CONTENT_LENGTH)
            && let Some(len) = len.to_str().ok().and_then(|l| l.parse::<u64>().ok())
            && len > policy.max_bytes as u64
        {
            conn_task.abort();
            return Err(ApiError::bad(
                "media_too_large",
                format!("media is larger than {} bytes", policy.max_bytes),
            ));
        }
        let content_type = resp
            .headers()
            .get(hyper::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.split(';').next().unwrap_or("").trim().to_owned())
            .filter(|s| !s.is_empty() && s != "application/octet-stream");
        let body = Limited::new(resp.into_body(), policy.max_bytes).collect().await.map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                ApiError::bad("media_too_large", format!("media is larger than {} bytes", policy.max_bytes))
            } else {
                refused(format!("reading `{url}` failed: {e}"))
            }
        })?;
        conn_task.abort();
        Ok(Fetched { data: body.to_bytes(), content_type })
    };
    tokio::time::timeout(policy.timeout, work)
        .await
        .map_err(|_| refused(format!("fetching `{url}` took longer than {:?}", policy.timeout)))?
}

/// The MIME type of common media files, from their first bytes.
pub fn sniff_mimetype(data: &[u8]) -> Option<&'static str> {
    Some(match data {
        [0x89, b'P', b'N', b'G', ..] => "image/png",
        [0xff, 0xd8, 0xff, ..] => "image/jpeg",
        [b'G', b'I', b'F', b'8', ..] => "image/gif",
        [b'R', b'I', b'F', b'F', _, _, _, _, b'W', b'E', b'B', b'P', ..] => "image/webp",
        [b'%', b'P', b'D', b'F', ..] => "application/pdf",
        [b'O', b'g', b'g', b'S', ..] => "audio/ogg",
        [b'I', b'D', b'3', ..] => "audio/mpeg",
        [_, _, _, _, b'f', b't', b'y', b'p', ..] => "video/mp4",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_and_reserved_addresses_are_not_public() {
        for a in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::7f00:1",
        ] {
            assert!(!is_public(a.parse().unwrap()), "{a}");
        }
        for a in ["93.184.216.34", "8.8.8.8", "2606:4700::1111"] {
            assert!(is_public(a.parse().unwrap()), "{a}");
        }
    }

    #[tokio::test]
    async fn ssrf_urls_are_refused_before_connecting() {
        let p = FetchPolicy::default();
        for url in [
            "http://127.0.0.1:1/x.png",
            "http://localhost/x.png",
            "http://169.254.169.254/latest/meta-data",
            "http://[::1]/x",
            "http://10.0.0.5/a",
            "ftp://example.com/a",
            "file:///etc/passwd",
            "not a url",
        ] {
            match fetch(&p, url).await {
                Err(ApiError::BadRequest { code, .. }) => assert_eq!(code, "url_refused", "{url}"),
                other => panic!("{url}: {other:?}"),
            }
        }
    }

    #[test]
    fn sniffs_common_types() {
        assert_eq!(sniff_mimetype(b"\x89PNG\r\n\x1a\n...."), Some("image/png"));
        assert_eq!(sniff_mimetype(b"\xff\xd8\xff\xe0"), Some("image/jpeg"));
        assert_eq!(sniff_mimetype(b"hello"), None);
    }
}
