//! The SSRF policy: which addresses the server may connect to on a user's behalf (webhook
//! receivers, media URLs), enforced where connections are made.
//!
//! Every connection goes through [`GuardedConnector`]: it resolves the host itself, refuses the
//! whole name when any resolved address is not public (loopback, private, link-local, CGNAT,
//! multicast, documentation, reserved, the cloud metadata address, IPv4-mapped and NAT64 forms
//! of those), and connects to the checked addresses only. So a redirect, a DNS answer that
//! changes between registration and delivery (rebinding) or a name that resolves to `127.0.0.1`
//! cannot reach inside.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::Uri;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// TEST ONLY: loopback targets the policy lets through. The default refuses loopback like any
/// other non-public address; nothing in the HTTP API can change it. In-process tests set it in
/// [`crate::config::Config::outbound`]; a test that runs the binary sets the environment
/// variable [`crate::config::TEST_LOOPBACK_TARGETS_VAR`] (documented as test-only).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum TestLoopback {
    /// Loopback is refused (production).
    #[default]
    Refused,
    /// `127.0.0.0/8` and `::1` on these ports only (a test's own receivers).
    Ports(Vec<u16>),
    /// Any loopback port.
    AnyPort,
}

/// Which connection targets are allowed.
#[derive(Debug, Clone, Default)]
pub struct TargetPolicy {
    pub test_loopback: TestLoopback,
}

/// Why a target was refused or could not be resolved. Found again in the connection error's
/// source chain, so callers can tell a policy refusal from a network failure.
#[derive(Debug, Clone, thiserror::Error)]
pub enum GuardError {
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Unresolvable(String),
}

impl TargetPolicy {
    /// Whether the server may connect to `addr`.
    pub fn allows(&self, addr: SocketAddr) -> bool {
        if is_public(addr.ip()) {
            return true;
        }
        addr.ip().is_loopback()
            && match &self.test_loopback {
                TestLoopback::Refused => false,
                TestLoopback::Ports(ports) => ports.contains(&addr.port()),
                TestLoopback::AnyPort => true,
            }
    }

    /// Resolves `host` (a name or an IP literal, IPv6 with or without brackets) and checks every
    /// address. A name with any refused address is refused whole: an attacker controlling the
    /// DNS answer must not get to pick.
    pub async fn resolve(
        &self,
        host: &str,
        port: u16,
        timeout: Duration,
    ) -> Result<Vec<SocketAddr>, GuardError> {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let addrs: Vec<SocketAddr> = match bare.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) => {
                if bare.is_empty() {
                    return Err(GuardError::Refused("the URL has no host".into()));
                }
                tokio::time::timeout(timeout, tokio::net::lookup_host((bare, port)))
                    .await
                    .map_err(|_| GuardError::Unresolvable(format!("resolving `{bare}` timed out")))?
                    .map_err(|_| GuardError::Unresolvable(format!("cannot resolve `{bare}`")))?
                    .collect()
            }
        };
        if addrs.is_empty() {
            return Err(GuardError::Unresolvable(format!("`{bare}` has no addresses")));
        }
        if let Some(bad) = addrs.iter().find(|a| !self.allows(**a)) {
            let what = if bare.parse::<IpAddr>().is_ok() {
                format!("`{bare}` is")
            } else {
                format!("`{bare}` resolves to {}, which is", bad.ip())
            };
            return Err(GuardError::Refused(format!(
                "{what} a loopback, private, link-local or reserved address; only public addresses are allowed"
            )));
        }
        Ok(addrs)
    }
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
                || (s[0] == 0x2002) // 6to4 (embeds IPv4)
                || (s[0] == 0 && s[1] == 0 && s[2] == 0 && s[3] == 0 && s[4] == 0 && s[5] == 0)) // IPv4-compatible
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

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The TCP connector under the HTTP client (and under TLS for `https://`): every connection,
/// first request or redirect, resolves and checks its host here.
#[derive(Clone)]
pub(crate) struct GuardedConnector {
    pub policy: Arc<TargetPolicy>,
    pub connect_timeout: Duration,
}

impl tower::Service<Uri> for GuardedConnector {
    type Response = TokioIo<TcpStream>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let policy = self.policy.clone();
        let timeout = self.connect_timeout;
        Box::pin(async move {
            let host = uri.host().ok_or_else(|| GuardError::Refused("the URL has no host".into()))?;
            let port = uri.port_u16().unwrap_or(if uri.scheme_str() == Some("https") { 443 } else { 80 });
            let addrs = policy.resolve(host, port, timeout).await?;
            let mut last = None;
            // The addresses are all checked; try them in order (IPv4 and IPv6 alike).
            for addr in addrs {
                match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
                    Ok(Ok(tcp)) => {
                        let _ = tcp.set_nodelay(true);
                        return Ok(TokioIo::new(tcp));
                    }
                    Ok(Err(e)) => last = Some(format!("cannot connect to {addr}: {e}")),
                    Err(_) => last = Some(format!("connecting to {addr} timed out")),
                }
            }
            Err(std::io::Error::other(last.unwrap_or_else(|| "no address to connect to".into())).into())
        })
    }
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
            "::127.0.0.1",
            "64:ff9b::7f00:1",
            "fd00:ec2::254",
        ] {
            assert!(!is_public(a.parse().unwrap()), "{a}");
        }
        for a in ["93.184.216.34", "8.8.8.8", "2606:4700::1111"] {
            assert!(is_public(a.parse().unwrap()), "{a}");
        }
    }

    #[test]
    fn loopback_is_allowed_only_by_the_test_setting() {
        let lo: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        let lo6: SocketAddr = "[::1]:4000".parse().unwrap();
        let private: SocketAddr = "10.0.0.1:4000".parse().unwrap();
        assert!(!TargetPolicy::default().allows(lo));
        let ports = TargetPolicy { test_loopback: TestLoopback::Ports(vec![4000]) };
        assert!(ports.allows(lo) && ports.allows(lo6));
        assert!(!ports.allows("127.0.0.1:4001".parse().unwrap()));
        let any = TargetPolicy { test_loopback: TestLoopback::AnyPort };
        assert!(any.allows("127.0.0.2:1".parse().unwrap()));
        // The test setting never opens private ranges or the metadata address.
        assert!(!any.allows(private) && !any.allows("169.254.169.254:80".parse().unwrap()));
    }

    #[tokio::test]
    async fn names_resolving_to_loopback_are_refused() {
        let p = TargetPolicy::default();
        let t = Duration::from_secs(10);
        assert!(matches!(p.resolve("localhost", 80, t).await, Err(GuardError::Refused(_))));
        assert!(matches!(p.resolve("[::1]", 80, t).await, Err(GuardError::Refused(_))));
        assert!(matches!(p.resolve("169.254.169.254", 80, t).await, Err(GuardError::Refused(_))));
        let ok = p.resolve("93.184.216.34", 443, t).await.unwrap();
        assert_eq!(ok, vec!["93.184.216.34:443".parse::<SocketAddr>().unwrap()]);
    }
}
