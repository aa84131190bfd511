//! The WhatsApp Web version a client reports, and fetching the current one.
//!
//! WhatsApp refuses versions a few weeks to about 2.5 months old with `<failure
//! reason="405">` (https://github.com/asternic/wuzapi/pull/368,
//! https://github.com/openclaw/wacli/pull/117, https://github.com/tulir/whatsmeow/issues/1040),
//! so a version built into a binary goes stale. The current one is the `client_revision` in
//! `https://web.whatsapp.com/sw.js`, which Baileys (`fetchLatestWaWebVersion`,
//! `src/Utils/generics.ts`) and whatsapp-rust (`src/version.rs`, wacore `version.rs`
//! `parse_sw_js`) read as `2.3000.<client_revision>`. whatsapp-rust keeps what it fetched for
//! 24 hours, across restarts; [`VersionFetcher`] does the same (in memory, shared by every
//! client holding a clone, and in each device's store).

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tracing::{debug, info};
use wa_store::{AppVersionStore, CachedAppVersion, DeviceStore};

use crate::error::{Error, Result};
use crate::http::TlsConfig;
use crate::proxy::Proxy;

pub use wa_noise::payload::{AppVersionError, DEFAULT_APP_VERSION, format_app_version, parse_app_version};

/// Where WhatsApp Web's service worker, and in it the current version, is served.
pub const SW_JS_URL: &str = "https://web.whatsapp.com/sw.js";
/// How long a fetched version is used before fetching again (whatsapp-rust: 24 h).
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(24 * 3600);
/// Deadline of one fetch.
pub const DEFAULT_FETCH_TIMEOUT: Duration = Duration::from_secs(15);
/// After a failed fetch, connections use the fallback without trying again for this long, so
/// that many accounts connecting without network do not each wait for a timeout.
pub const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(300);
/// Largest `sw.js` read (the real one is a few kilobytes).
const MAX_SW_JS_BYTES: usize = 4 * 1024 * 1024;
/// The headers Baileys and whatsapp-rust send, "to bypass anti-bot detection" (Baileys).
const FETCH_HEADERS: &[(&str, &str)] = &[
    ("sec-fetch-site", "none"),
    (
        "user-agent",
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    ),
];

/// The version in a `sw.js` body: `2.3000.<client_revision>`, from `"client_revision":123` in
/// any of the spellings the file uses (plain, JSON-escaped `\"client_revision\":`, quoted
/// value). `None` when there is none (or it is 0, which no release has).
pub fn parse_sw_js(text: &str) -> Option<[u32; 3]> {
    const KEY: &str = "client_revision";
    let mut rest = text;
    while let Some(i) = rest.find(KEY) {
        rest = &rest[i + KEY.len()..];
        if let Some(n) = revision_after_key(rest) {
            return Some([2, 3000, n]);
        }
    }
    None
}

/// `\"` or `"` closing the key, `:`, optional blanks and an optional quote, then digits.
fn revision_after_key(s: &str) -> Option<u32> {
    let s = s.trim_start_matches(['\\', '"', '\'']).trim_start();
    let s = s.strip_prefix(':')?.trim_start();
    let s = s.trim_start_matches(['\\', '"', '\'']);
    let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    s[..end].parse::<u32>().ok().filter(|&n| n > 0)
}

/// Fetches the current WhatsApp Web version from `sw.js` and caches it. Cheap to clone; clones
/// share the cache, so one fetcher given to many clients fetches once for all of them.
#[derive(Clone)]
pub struct VersionFetcher {
    inner: std::sync::Arc<Inner>,
}

struct Inner {
    url: String,
    timeout: Duration,
    max_age: Duration,
    cache: Mutex<Option<CachedAppVersion>>,
    /// Unix time of the last failed fetch.
    failed_at: Mutex<Option<i64>>,
    /// One fetch at a time: clients connecting together wait for it and share its result.
    fetching: tokio::sync::Mutex<()>,
    fetches: AtomicU64,
}

impl std::fmt::Debug for VersionFetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VersionFetcher")
            .field("url", &self.inner.url)
            .field("cached", &self.cached())
            .finish_non_exhaustive()
    }
}

impl Default for VersionFetcher {
    fn default() -> Self {
        Self::build(SW_JS_URL.to_owned(), DEFAULT_FETCH_TIMEOUT, DEFAULT_MAX_AGE)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl VersionFetcher {
    /// Fetches from WhatsApp's [`SW_JS_URL`].
    pub fn new() -> Self {
        Self::default()
    }

    /// Fetches from another `http://` or `https://` URL serving a `sw.js`-shaped file (a mirror,
    /// or a test server).
    pub fn with_url(url: impl Into<String>) -> Result<Self> {
        let url = url.into();
        crate::http::HttpUrl::parse(&url)
            .map_err(|_| Error::InvalidInput(format!("sw.js URL {url:?}: not an http:// or https:// URL")))?;
        Ok(Self::build(url, DEFAULT_FETCH_TIMEOUT, DEFAULT_MAX_AGE))
    }

    fn build(url: String, timeout: Duration, max_age: Duration) -> Self {
        Self {
            inner: std::sync::Arc::new(Inner {
                url,
                timeout,
                max_age,
                cache: Mutex::new(None),
                failed_at: Mutex::new(None),
                fetching: tokio::sync::Mutex::new(()),
                fetches: AtomicU64::new(0),
            }),
        }
    }

    /// The deadline of one fetch (default [`DEFAULT_FETCH_TIMEOUT`]). Returns a new fetcher with
    /// an empty cache: set it before handing clones to clients.
    pub fn timeout(self, timeout: Duration) -> Self {
        Self::build(self.inner.url.clone(), timeout, self.inner.max_age)
    }

    /// How long a fetched version is used before fetching again (default [`DEFAULT_MAX_AGE`]).
    /// Returns a new fetcher with an empty cache: set it before handing clones to clients.
    pub fn max_age(self, max_age: Duration) -> Self {
        Self::build(self.inner.url.clone(), self.inner.timeout, max_age)
    }

    /// The URL fetched.
    pub fn url(&self) -> &str {
        &self.inner.url
    }

    /// The version fetched (or loaded from a store) most recently, and when it was fetched.
    pub fn cached(&self) -> Option<CachedAppVersion> {
        *lock(&self.inner.cache)
    }

    /// How many fetches were attempted (for metrics and tests).
    pub fn fetch_count(&self) -> u64 {
        self.inner.fetches.load(Ordering::Relaxed)
    }

    fn fresh(&self, v: &CachedAppVersion, now: i64) -> bool {
        let age = now.saturating_sub(v.fetched_at);
        // A fetch time in the future (the clock went back) is not trusted.
        age >= 0 && u64::try_from(age).is_ok_and(|a| a < self.inner.max_age.as_secs())
    }

    fn recently_failed(&self, now: i64) -> bool {
        lock(&self.inner.failed_at).is_some_and(|t| {
            let since = now.saturating_sub(t);
            since >= 0 && u64::try_from(since).is_ok_and(|s| s < RETRY_AFTER_FAILURE.as_secs())
        })
    }

    /// Remembers `v` in memory unless a newer fetch is already there.
    fn remember(&self, v: CachedAppVersion) {
        let mut c = lock(&self.inner.cache);
        if c.is_none_or(|old| old.fetched_at <= v.fetched_at) {
            *c = Some(v);
        }
    }

    /// The version to report now: a fresh one from memory or from `store`, else a new fetch
    /// (saved to both). Errors when the fetch fails (the caller falls back to its built-in
    /// version); a failure is not retried for [`RETRY_AFTER_FAILURE`].
    pub(crate) async fn resolve(&self, store: &DeviceStore, now: i64, net: Net<'_>) -> Result<[u32; 3]> {
        if let Some(v) = self.cached().filter(|v| self.fresh(v, now)) {
            self.save(store, v).await;
            return Ok(v.version);
        }
        if let Some(v) = store.load_app_version().await?.filter(|v| self.fresh(v, now)) {
            debug!(version = ?v.version, "WhatsApp Web version from the store");
            self.remember(v);
            return Ok(v.version);
        }
        let _one = self.inner.fetching.lock().await;
        // Another client may have fetched while this one waited.
        if let Some(v) = self.cached().filter(|v| self.fresh(v, now)) {
            self.save(store, v).await;
            return Ok(v.version);
        }
        if self.recently_failed(now) {
            return Err(Error::VersionFetch(format!(
                "the last fetch from {} failed less than {} s ago",
                self.inner.url,
                RETRY_AFTER_FAILURE.as_secs()
            )));
        }
        let v = self.fetch_now(now, net).await?;
        self.save(store, v).await;
        Ok(v.version)
    }

    /// After the server refused `refused` with 405: a version newer than it, from memory when
    /// another client already fetched one after the refusal, else from a new fetch.
    pub(crate) async fn refresh(
        &self,
        store: &DeviceStore,
        now: i64,
        net: Net<'_>,
        refused: [u32; 3],
    ) -> Result<[u32; 3]> {
        let _one = self.inner.fetching.lock().await;
        let v = match self.cached().filter(|v| v.version > refused && self.fresh(v, now)) {
            Some(v) => v,
            None if self.recently_failed(now) => {
                return Err(Error::VersionFetch(format!(
                    "the last fetch from {} failed less than {} s ago",
                    self.inner.url,
                    RETRY_AFTER_FAILURE.as_secs()
                )));
            }
            None => self.fetch_now(now, net).await?,
        };
        self.save(store, v).await;
        Ok(v.version)
    }

    async fn save(&self, store: &DeviceStore, v: CachedAppVersion) {
        match store.load_app_version().await {
            Ok(Some(old)) if old == v => {}
            _ => {
                // Only a cache: a failed write costs a fetch after a restart, nothing more.
                if let Err(e) = store.save_app_version(&v).await {
                    tracing::warn!(%e, "cannot store the fetched WhatsApp Web version");
                }
            }
        }
    }

    async fn fetch_now(&self, now: i64, net: Net<'_>) -> Result<CachedAppVersion> {
        self.inner.fetches.fetch_add(1, Ordering::Relaxed);
        match self.get(net).await {
            Ok(version) => {
                let v = CachedAppVersion { version, fetched_at: now };
                info!(
                    version = %wa_noise::payload::format_app_version(version),
                    url = %self.inner.url,
                    "fetched the current WhatsApp Web version"
                );
                *lock(&self.inner.failed_at) = None;
                self.remember(v);
                Ok(v)
            }
            Err(e) => {
                *lock(&self.inner.failed_at) = Some(now);
                Err(e)
            }
        }
    }

    async fn get(&self, net: Net<'_>) -> Result<[u32; 3]> {
        let url = &self.inner.url;
        let resp = crate::http::request_for(
            crate::http::Purpose::VersionFetch,
            "GET",
            url,
            None,
            FETCH_HEADERS,
            net.proxy,
            net.tls,
            self.inner.timeout,
            MAX_SW_JS_BYTES,
        )
        .await?;
        if !(200..300).contains(&resp.status) {
            return Err(Error::VersionFetch(format!("GET {url}: HTTP {}", resp.status)));
        }
        let text = String::from_utf8_lossy(&resp.body);
        parse_sw_js(&text)
            .ok_or_else(|| Error::VersionFetch(format!("GET {url}: no client_revision in the response")))
    }
}

/// How a fetch reaches the network: the client's proxy and TLS trust.
#[derive(Clone, Copy)]
pub(crate) struct Net<'a> {
    pub proxy: Option<&'a Proxy>,
    pub tls: Option<&'a TlsConfig>,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn client_revision_is_found_in_every_spelling() {
        // The shape of the real file: JSON inside a JS string, so the quotes are escaped.
        let real = r#"self.__swData=JSON.parse(/*BTDS*/"{\"SiteData\":{\"server_revision\":1026131876,\"client_revision\":1026131876,\"push_phase\":\"C3\"}}");"#;
        assert_eq!(parse_sw_js(real), Some([2, 3000, 1_026_131_876]));
        assert_eq!(parse_sw_js(r#"{"client_revision": 123456}"#), Some([2, 3000, 123_456]));
        assert_eq!(parse_sw_js(r#"var x = {"client_revision": "123456"};"#), Some([2, 3000, 123_456]));
        assert_eq!(parse_sw_js("client_revision:12345;"), Some([2, 3000, 12_345]));
        // A mention without a value, then the real one.
        assert_eq!(parse_sw_js(r#"// client_revision below {"client_revision":7}"#), Some([2, 3000, 7]));
    }

    #[test]
    fn no_revision_is_none() {
        for bad in [
            "",
            "no version info here",
            r#"{"client_revision":}"#,
            r#"{"client_revision":0}"#,
            r#"{"client_revision":"abc"}"#,
            r#"{"client_revision":99999999999}"#,
            "client_revision",
        ] {
            assert_eq!(parse_sw_js(bad), None, "{bad}");
        }
    }

    #[test]
    fn urls_are_checked() {
        assert!(VersionFetcher::with_url("http://127.0.0.1:9/sw.js").is_ok());
        let e = VersionFetcher::with_url("ftp://x/sw.js").unwrap_err();
        assert!(e.to_string().contains("sw.js URL"), "{e}");
        assert_eq!(VersionFetcher::new().url(), SW_JS_URL);
    }

    #[test]
    fn freshness_follows_max_age_and_distrusts_the_future() {
        let f = VersionFetcher::new().max_age(Duration::from_secs(100));
        let v = CachedAppVersion { version: [2, 3000, 1], fetched_at: 1000 };
        assert!(f.fresh(&v, 1000));
        assert!(f.fresh(&v, 1099));
        assert!(!f.fresh(&v, 1100));
        assert!(!f.fresh(&v, 999), "fetched in the future");
    }
}
