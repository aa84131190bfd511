//! A per-account proxy URL: what wa-client can tunnel through (HTTP CONNECT,
//! `http://[user[:password]@]host[:port]`), validated once when it is set. Its password is a
//! secret: the API shows, and `Debug` prints, only [`ProxyUrl::redacted`]; the URL itself goes
//! to the database (its own column, `accounts.proxy_url`) and to wa-client, nowhere else.

/// Why a proxy URL is refused. The messages never repeat the URL (it may hold a password).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProxyError {
    /// A scheme wa-client cannot tunnel through (SOCKS, HTTPS to the proxy, …).
    #[error(
        "proxy scheme `{0}` is not supported: use an HTTP CONNECT proxy, http://[user:password@]host:port"
    )]
    UnsupportedScheme(String),
    /// Not a proxy URL.
    #[error("proxy must be an URL like http://user:password@host:port ({0})")]
    Malformed(&'static str),
}

/// A validated proxy URL (see the module docs).
#[derive(Clone, PartialEq, Eq)]
pub struct ProxyUrl {
    url: String,
    redacted: String,
}

impl std::fmt::Debug for ProxyUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("ProxyUrl").field(&self.redacted).finish()
    }
}

/// Longest proxy URL taken (a URL, not a document).
const MAX_LEN: usize = 2048;

impl ProxyUrl {
    /// Validates `url` as wa-client will use it.
    pub fn parse(url: &str) -> Result<Self, ProxyError> {
        let url = url.trim();
        if url.len() > MAX_LEN {
            return Err(ProxyError::Malformed("too long"));
        }
        if url.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(ProxyError::Malformed("spaces or control characters"));
        }
        let Some((scheme, rest)) = url.split_once("://") else {
            return Err(ProxyError::Malformed("no scheme"));
        };
        if !scheme.eq_ignore_ascii_case("http") {
            let known = scheme.len() <= 10 && scheme.chars().all(|c| c.is_ascii_alphanumeric() || c == '+');
            return Err(if known {
                ProxyError::UnsupportedScheme(scheme.to_ascii_lowercase())
            } else {
                ProxyError::Malformed("bad scheme")
            });
        }
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains(['/', '?', '#']) {
            return Err(ProxyError::Malformed("a proxy URL has no path, query or fragment"));
        }
        let (userinfo, authority) = match rest.rsplit_once('@') {
            Some((u, a)) => (Some(u), a),
            None => (None, rest),
        };
        if authority.is_empty() {
            return Err(ProxyError::Malformed("no host"));
        }
        let url = format!("http://{rest}");
        // wa-client's own parser decides the rest (host and port syntax).
        wa_client::Proxy::parse(&url).map_err(|_| ProxyError::Malformed("bad host or port"))?;
        let redacted = match userinfo {
            Some(u) => match u.split_once(':') {
                Some((user, _)) => format!("http://{user}:***@{authority}"),
                None => format!("http://{u}@{authority}"),
            },
            None => format!("http://{authority}"),
        };
        Ok(Self { url, redacted })
    }

    /// The URL, with its credentials: for wa-client and the database only.
    pub fn expose(&self) -> &str {
        &self.url
    }

    /// The URL with its password replaced by `***` (what the API shows).
    pub fn redacted(&self) -> &str {
        &self.redacted
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_password_is_kept_for_the_client_and_hidden_everywhere_else() {
        let p = ProxyUrl::parse(" http://ann:pa:ss@proxy.local:3128/ ").unwrap();
        assert_eq!(p.expose(), "http://ann:pa:ss@proxy.local:3128");
        assert_eq!(p.redacted(), "http://ann:***@proxy.local:3128");
        assert!(!format!("{p:?}").contains("pa:ss"), "{p:?}");
        assert_eq!(ProxyUrl::parse("HTTP://10.0.0.1:8080").unwrap().redacted(), "http://10.0.0.1:8080");
        assert_eq!(ProxyUrl::parse("http://ann@h:1").unwrap().redacted(), "http://ann@h:1");
    }

    #[test]
    fn what_wa_client_cannot_use_is_refused_without_repeating_the_url() {
        for scheme in ["socks5", "socks5h", "socks4", "https"] {
            let e = ProxyUrl::parse(&format!("{scheme}://u:secret@h:1080")).unwrap_err();
            assert_eq!(e, ProxyError::UnsupportedScheme(scheme.into()));
            assert!(!e.to_string().contains("secret"));
        }
        for bad in [
            "",
            "proxy:3128",
            "http://",
            "http://u:secret@",
            "http://u:secret@h:port",
            "http://u:secret@h:1/path",
            "http://u:secret@h:1?q",
            "http://u:se cret@h:1",
            "ftp-ish+x.y://u:secret@h:1",
        ] {
            let e = ProxyUrl::parse(bad).unwrap_err();
            assert!(matches!(e, ProxyError::Malformed(_)), "{bad}: {e:?}");
            assert!(!e.to_string().contains("secret"), "{e}");
        }
    }
}
