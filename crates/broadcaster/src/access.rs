//! Who may reach what beyond a key's role: keys revoked while their live streams are open,
//! failed-authentication throttling per client address, and access to `/metrics`.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use tokio::sync::watch;

use crate::error::ApiError;

/// Everything here, shared by the handlers (one field of [`AppState`]).
#[derive(Debug)]
pub struct Access {
    pub revocations: KeyRevocations,
    /// Failed authentications (unknown or revoked keys) per client address.
    pub auth_failures: AddressBuckets,
    /// New Socket.IO sessions per client address (each costs memory before it authenticates).
    pub socketio_sessions: AddressBuckets,
    pub metrics: MetricsAccess,
}

impl Default for Access {
    fn default() -> Self {
        Self {
            revocations: KeyRevocations::default(),
            auth_failures: AddressBuckets::new(DEFAULT_AUTH_FAILURES_PER_MINUTE),
            socketio_sessions: AddressBuckets::new(DEFAULT_SOCKETIO_SESSIONS_PER_MINUTE),
            metrics: MetricsAccess::default(),
        }
    }
}

/// The ids of keys revoked since this process started. Live streams (WebSocket, Socket.IO) opened
/// with a key watch this and close when it is revoked; keys revoked earlier cannot have a stream
/// here, as every stream authenticates against the database when it opens.
#[derive(Debug)]
pub struct KeyRevocations(watch::Sender<Arc<HashSet<String>>>);

impl Default for KeyRevocations {
    fn default() -> Self {
        Self(watch::channel(Arc::default()).0)
    }
}

impl KeyRevocations {
    pub fn revoke(&self, key_id: &str) {
        self.0.send_modify(|set| {
            Arc::make_mut(set).insert(key_id.to_owned());
        });
    }

    /// The set of revoked ids, to re-check whenever it changes.
    pub fn watch(&self) -> watch::Receiver<Arc<HashSet<String>>> {
        self.0.subscribe()
    }

    /// Resolves once `key_id` is revoked (never, if it is not).
    pub async fn revoked(&self, key_id: &str) {
        let mut rx = self.watch();
        if rx.wait_for(|set| set.contains(key_id)).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// Failed authentications allowed per client address and minute before it gets 429.
pub const DEFAULT_AUTH_FAILURES_PER_MINUTE: u32 = 30;
/// New Socket.IO sessions per client address and minute.
pub const DEFAULT_SOCKETIO_SESSIONS_PER_MINUTE: u32 = 120;
/// Addresses tracked at most; beyond it the ones whose allowance is whole again are forgotten
/// (and, failing that, all of them: an attacker with that many addresses is not slowed by us).
const MAX_TRACKED_CLIENTS: usize = 16_384;

/// A budget per client address (an IPv6 client by its /64, which one host usually holds whole):
/// a bucket of `per_minute` tokens refilled evenly over a minute. For failed authentications only
/// failures take from it, so a client with a valid key is never slowed by it.
#[derive(Debug)]
pub struct AddressBuckets {
    per_minute: u32,
    buckets: Mutex<HashMap<IpAddr, (f64, i64)>>,
}

impl AddressBuckets {
    /// `per_minute` 0 disables it.
    pub fn new(per_minute: u32) -> Self {
        Self { per_minute, buckets: Mutex::default() }
    }

    fn client(ip: IpAddr) -> IpAddr {
        match crate::outbound::guard::canonical(ip) {
            IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into()),
            v4 => v4,
        }
    }

    fn refilled(&self, (tokens, at): (f64, i64), now_ms: i64) -> f64 {
        let cap = f64::from(self.per_minute);
        (tokens + (now_ms - at).max(0) as f64 * cap / 60_000.0).min(cap)
    }

    /// `Err(seconds)` when `ip` has no token left (for failed authentications: refuse before
    /// looking at the key).
    pub fn check(&self, ip: IpAddr, now_ms: i64) -> Result<(), u64> {
        if self.per_minute == 0 {
            return Ok(());
        }
        let buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        match buckets.get(&Self::client(ip)) {
            Some(b) if self.refilled(*b, now_ms) < 1.0 => {
                let missing = 1.0 - self.refilled(*b, now_ms);
                Err(((missing * 60.0 / f64::from(self.per_minute)).ceil() as u64).max(1))
            }
            _ => Ok(()),
        }
    }

    /// Takes a token for `ip` (a failed authentication, a new session).
    pub fn take(&self, ip: IpAddr, now_ms: i64) {
        if self.per_minute == 0 {
            return;
        }
        let cap = f64::from(self.per_minute);
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        if buckets.len() >= MAX_TRACKED_CLIENTS {
            buckets.retain(|_, b| self.refilled(*b, now_ms) < cap);
            if buckets.len() >= MAX_TRACKED_CLIENTS {
                buckets.clear();
            }
        }
        let b = buckets.entry(Self::client(ip)).or_insert((cap, now_ms));
        *b = ((self.refilled(*b, now_ms) - 1.0).max(0.0), now_ms.max(b.1));
    }

    /// Tokens per minute.
    pub fn per_minute(&self) -> u32 {
        self.per_minute
    }

    /// The 429 for a client with too many failed authentications.
    pub fn auth_error(&self, retry_after_secs: u64) -> ApiError {
        ApiError::RateLimited {
            code: "auth_throttled",
            message: format!(
                "too many failed authentications from this address (at most {} a minute); retry in {retry_after_secs} s",
                self.per_minute
            ),
            retry_after_secs,
            reset_at: None,
        }
    }
}

/// The client's address, when the server was started with it (requests built in tests have
/// none, and are not throttled).
pub fn client_ip(parts: &Parts) -> Option<IpAddr> {
    parts.extensions.get::<ConnectInfo<std::net::SocketAddr>>().map(|c| c.0.ip())
}

/// The client's address as an extractor (`None` without one, see [`client_ip`]).
pub struct ClientIp(pub Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(client_ip(parts)))
    }
}

/// Who may read `/metrics` (its counts span every tenant). `Debug` hides the token.
#[derive(Clone, Default, PartialEq, Eq)]
pub enum MetricsAccess {
    /// An admin key (the default).
    #[default]
    AdminKey,
    /// An admin key or this token (`BROADCASTER_METRICS_TOKEN`: a Prometheus scraper then holds
    /// no API key).
    AdminKeyOrToken(String),
    /// Anyone who can reach the listen address (`--metrics-public`).
    Public,
}

impl std::fmt::Debug for MetricsAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::AdminKey => "AdminKey",
            Self::AdminKeyOrToken(_) => "AdminKeyOrToken(<redacted>)",
            Self::Public => "Public",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_run_out_per_address_and_come_back() {
        let t = AddressBuckets::new(3);
        let (a, b): (IpAddr, IpAddr) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        for _ in 0..3 {
            assert!(t.check(a, 0).is_ok());
            t.take(a, 0);
        }
        assert_eq!(t.check(a, 0), Err(20));
        assert!(t.check(b, 0).is_ok(), "another address is not affected");
        assert!(t.check(a, 20_000).is_ok(), "one failure back after a third of a minute");
        // An IPv6 host is one client across its /64, and a mapped IPv4 address is that address.
        let t = AddressBuckets::new(1);
        t.take("2001:db8:1:2::1".parse().unwrap(), 0);
        assert!(t.check("2001:db8:1:2::ffff".parse().unwrap(), 0).is_err());
        assert!(t.check("2001:db8:1:3::1".parse().unwrap(), 0).is_ok());
        t.take("::ffff:192.0.2.9".parse().unwrap(), 0);
        assert!(t.check("192.0.2.9".parse().unwrap(), 0).is_err());
        assert!(AddressBuckets::new(0).check(a, 0).is_ok());
    }

    #[test]
    fn the_tracked_addresses_are_bounded() {
        let t = AddressBuckets::new(2);
        for i in 0..(MAX_TRACKED_CLIENTS as u32 + 10) {
            t.take(IpAddr::V4(i.into()), 0);
        }
        assert!(t.buckets.lock().unwrap().len() <= MAX_TRACKED_CLIENTS);
    }

    #[tokio::test]
    async fn a_revocation_wakes_the_streams_of_that_key_only() {
        let r = KeyRevocations::default();
        let mut other = std::pin::pin!(r.revoked("key_b"));
        let mut mine = std::pin::pin!(r.revoked("key_a"));
        assert!(futures::poll!(&mut mine).is_pending());
        r.revoke("key_a");
        tokio::time::timeout(std::time::Duration::from_secs(5), mine).await.unwrap();
        assert!(futures::poll!(&mut other).is_pending());
    }
}
