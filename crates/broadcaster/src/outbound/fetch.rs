//! Media fetched by URL (`http://` or `https://`) through the [`OutboundClient`]: the SSRF policy
//! applies to every address and redirect; size and time are capped.

use std::time::Duration;

use bytes::Bytes;
use hyper::header::{HeaderName, HeaderValue, USER_AGENT};

use super::{Limits, OutboundClient, OutboundError};

/// Limits for [`fetch`].
#[derive(Debug, Clone)]
pub struct FetchPolicy {
    pub max_bytes: usize,
    pub timeout: Duration,
}

impl Default for FetchPolicy {
    fn default() -> Self {
        Self { max_bytes: 16 * 1024 * 1024, timeout: Duration::from_secs(20) }
    }
}

#[derive(Debug)]
pub struct Fetched {
    pub data: Bytes,
    pub content_type: Option<String>,
}

/// Why a media URL gave no file. The API answers 422 `url_refused` for [`Self::Refused`], 413
/// `media_too_large` for [`Self::TooLarge`] and 422 `media_fetch_failed` otherwise.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum MediaFetchError {
    /// A malformed URL, or one the SSRF policy refuses (before or after a redirect).
    #[error("media URL refused: {0}")]
    Refused(String),
    /// The file is over the limit.
    #[error("media is larger than {max_bytes} bytes")]
    TooLarge { max_bytes: usize },
    /// The server could not be reached or did not send the file.
    #[error("{0}")]
    Failed(String),
}

impl MediaFetchError {
    fn from_outbound(url: &str, e: OutboundError, max_bytes: usize) -> Self {
        match e {
            OutboundError::InvalidUrl(m) | OutboundError::Refused(m) => Self::Refused(m),
            OutboundError::TooLarge(_) => Self::TooLarge { max_bytes },
            other => Self::Failed(format!("fetching `{url}` failed: {other}")),
        }
    }
}

/// Fetches `url` under `policy`.
pub async fn fetch(
    client: &OutboundClient,
    policy: &FetchPolicy,
    url: &str,
) -> Result<Fetched, MediaFetchError> {
    let limits = Limits { timeout: policy.timeout, max_body: policy.max_bytes, truncate: false };
    let headers = [(USER_AGENT, HeaderValue::from_static("broadcaster-media-fetch/1"))];
    let resp = client
        .get(url, &headers as &[(HeaderName, HeaderValue)], limits)
        .await
        .map_err(|e| MediaFetchError::from_outbound(url, e, policy.max_bytes))?;
    if !resp.status.is_success() {
        return Err(MediaFetchError::Failed(format!(
            "`{}` answered HTTP {}",
            resp.url,
            resp.status.as_u16()
        )));
    }
    let content_type = resp
        .headers
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.split(';').next().unwrap_or("").trim().to_owned())
        .filter(|s| !s.is_empty() && s != "application/octet-stream");
    Ok(Fetched { data: resp.body, content_type })
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

    #[tokio::test]
    async fn ssrf_urls_are_refused_before_connecting() {
        let (c, p) = (OutboundClient::default(), FetchPolicy::default());
        for url in [
            "http://127.0.0.1:1/x.png",
            "http://localhost/x.png",
            "http://169.254.169.254/latest/meta-data",
            "http://[::1]/x",
            "http://10.0.0.5/a",
            "https://127.0.0.1/x.png",
            "ftp://example.com/a",
            "file:///etc/passwd",
            "not a url",
        ] {
            match fetch(&c, &p, url).await {
                Err(MediaFetchError::Refused(_)) => {}
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
