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
    /// The operator's allow-list (`--outbound-allow`): address ranges the server may reach
    /// although they are not public (an internal webhook receiver, a private media host).
    pub allow: Vec<IpNet>,
}

/// An address range such as `10.0.0.0/8`, `fd00::/8` or one address (`192.168.1.5`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

/// Why an allow-list entry does not parse.
#[derive(Debug, Clone, thiserror::Error)]
#[error("`{entry}` is not an address range: {why}")]
pub struct IpNetError {
    entry: String,
    why: &'static str,
}

impl std::str::FromStr for IpNet {
    type Err = IpNetError;

    /// `ADDR` or `ADDR/PREFIX`. A range of everything (`/0`) is refused: it would switch the
    /// policy off rather than allow a receiver.
    fn from_str(s: &str) -> Result<Self, IpNetError> {
        let err = |why| IpNetError { entry: s.to_owned(), why };
        let (addr, prefix) = match s.trim().split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s.trim(), None),
        };
        let addr: IpAddr = addr
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .map_err(|_| err("not an IP address"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p.parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(|| err("bad prefix length"))?,
        };
        if prefix == 0 {
            return Err(err("a /0 range would allow every address"));
        }
        // The canonical form of the range's address, so `::ffff:10.0.0.0/104` means 10/8.
        let (addr, prefix) = match (addr, canonical(addr)) {
            (IpAddr::V6(_), IpAddr::V4(v4)) if prefix >= 96 => (IpAddr::V4(v4), prefix - 96),
            _ => (addr, prefix),
        };
        Ok(Self { addr, prefix })
    }
}

impl std::fmt::Display for IpNet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl IpNet {
    /// Whether `ip` (in its canonical form: IPv4 embedded in IPv6 counts as IPv4) is in range.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix)).unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// The address a connection to `ip` really reaches: the IPv4 address embedded in an
/// IPv4-mapped (`::ffff:a.b.c.d`), IPv4-translated (`::ffff:0:a.b.c.d`), IPv4-compatible
/// (`::a.b.c.d`) or NAT64 (`64:ff9b::a.b.c.d`) IPv6 address; else `ip` itself.
pub fn canonical(ip: IpAddr) -> IpAddr {
    let IpAddr::V6(v6) = ip else { return ip };
    let s = v6.segments();
    let o = v6.octets();
    let embedded = Ipv4Addr::new(o[12], o[13], o[14], o[15]);
    let lo = u32::from(embedded);
    let mapped = s[..5] == [0; 5] && s[5] == 0xffff;
    let translated = s[..4] == [0; 4] && s[4] == 0xffff && s[5] == 0;
    // `::` and `::1` are IPv6's own unspecified and loopback addresses, not IPv4 ones.
    let compatible = s[..6] == [0; 6] && lo > 1;
    let nat64 = s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0; 4];
    if mapped || translated || compatible || nat64 { IpAddr::V4(embedded) } else { ip }
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
        if is_public(addr.ip()) || self.allow.iter().any(|net| net.contains(addr.ip())) {
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
                "{what} a loopback, private, link-local or reserved address; only public addresses \
                 (and the operator's --outbound-allow ranges) are allowed"
            )));
        }
        Ok(addrs)
    }
}

/// Whether `ip` is a public unicast address. An IPv4-mapped address (`::ffff:a.b.c.d`, what a
/// dual-stack socket reaches) is judged by its IPv4 address; any other IPv6 address must be
/// global unicast (`2000::/3`) outside the special ranges below, which leaves out the
/// IPv4-compatible, IPv4-translated and NAT64 forms as well.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_public_v4(v4),
            None => {
                let s = v6.segments();
                let global_unicast = (s[0] & 0xe000) == 0x2000; // 2000::/3
                // IETF protocol assignments 2001::/23 (Teredo, ORCHID, benchmarking).
                let ietf = s[0] == 0x2001 && s[1] < 0x0200;
                let documentation = (s[0] == 0x2001 && s[1] == 0x0db8) || (s[0] == 0x3fff && s[1] < 0x1000);
                let six_to_four = s[0] == 0x2002; // embeds IPv4
                global_unicast && !ietf && !documentation && !six_to_four
            }
        },
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
            // Every IPv6 spelling of loopback and of the metadata address.
            "::ffff:0:7f00:1",
            "::ffff:0:127.0.0.1",
            "::7f00:1",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
            "::ffff:100.64.0.1",
            // Outside global unicast, or special inside it.
            "100::1",
            "2001::1",
            "2001:db8::1",
            "2002:7f00:1::1",
            "3fff::1",
            "ff02::1",
        ] {
            assert!(!is_public(a.parse().unwrap()), "{a}");
        }
        // Deprecated embeddings are refused even of a public IPv4 address.
        for a in ["::8.8.8.8", "::ffff:0:8.8.8.8", "64:ff9b::808:808"] {
            assert!(!is_public(a.parse().unwrap()), "{a}");
        }
        for a in ["93.184.216.34", "8.8.8.8", "2606:4700::1111", "::ffff:8.8.8.8", "2a00:1450::1"] {
            assert!(is_public(a.parse().unwrap()), "{a}");
        }
    }

    #[test]
    fn loopback_is_allowed_only_by_the_test_setting() {
        let lo: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        let lo6: SocketAddr = "[::1]:4000".parse().unwrap();
        let private: SocketAddr = "10.0.0.1:4000".parse().unwrap();
        assert!(!TargetPolicy::default().allows(lo));
        let ports = TargetPolicy { test_loopback: TestLoopback::Ports(vec![4000]), allow: vec![] };
        assert!(ports.allows(lo) && ports.allows(lo6));
        assert!(!ports.allows("127.0.0.1:4001".parse().unwrap()));
        let any = TargetPolicy { test_loopback: TestLoopback::AnyPort, allow: vec![] };
        assert!(any.allows("127.0.0.2:1".parse().unwrap()));
        // The test setting never opens private ranges or the metadata address.
        assert!(!any.allows(private) && !any.allows("169.254.169.254:80".parse().unwrap()));
    }

    #[test]
    fn the_operator_allow_list_opens_its_ranges_only() {
        let net = |s: &str| s.parse::<IpNet>().unwrap();
        let p = TargetPolicy {
            test_loopback: TestLoopback::Refused,
            allow: vec![net("10.1.0.0/16"), net("fd00:1::/32"), net("192.168.5.7")],
        };
        let ok = |a: &str| p.allows(SocketAddr::new(a.parse().unwrap(), 443));
        assert!(ok("10.1.2.3") && ok("::ffff:10.1.9.9") && ok("fd00:1::5") && ok("192.168.5.7"));
        assert!(!ok("10.2.0.1") && !ok("fd00:2::5") && !ok("192.168.5.8") && !ok("127.0.0.1"));
        assert!(!ok("169.254.169.254"), "the metadata address stays refused unless listed");
        assert_eq!(net("::ffff:10.0.0.0/104"), net("10.0.0.0/8"));
        for bad in ["0.0.0.0/0", "::/0", "10.0.0.0/33", "example.com", "10.0.0.0/x"] {
            assert!(bad.parse::<IpNet>().is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn names_resolving_to_loopback_are_refused() {
        let p = TargetPolicy::default();
        let t = Duration::from_secs(10);
        assert!(matches!(p.resolve("localhost", 80, t).await, Err(GuardError::Refused(_))));
        for literal in ["[::1]", "[::ffff:127.0.0.1]", "[::127.0.0.1]", "[::ffff:0:7f00:1]"] {
            assert!(matches!(p.resolve(literal, 80, t).await, Err(GuardError::Refused(_))), "{literal}");
        }
        assert!(matches!(p.resolve("169.254.169.254", 80, t).await, Err(GuardError::Refused(_))));
        let ok = p.resolve("93.184.216.34", 443, t).await.unwrap();
        assert_eq!(ok, vec!["93.184.216.34:443".parse::<SocketAddr>().unwrap()]);
    }
}
