//! Why a connection ended, and what to do about it: reconnect at once, back off, stop, or
//! purge the credentials. Pure functions of the server's stanza and the recent history.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use wa_binary::Node;

/// Why the connection ended.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DisconnectReason {
    /// `<stream:error code="515">`: restart required (always after pairing).
    RestartRequired,
    /// `<conflict type="replaced">`: another connection of this device took over (440).
    Replaced,
    /// The device was unlinked or the account logged out (401 / 403 / 406 / 516, device_removed).
    LoggedOut {
        /// The server's code.
        code: u16,
    },
    /// Temporarily banned (`<failure reason="402">`).
    TemporarilyBanned {
        /// Ban code, if given.
        code: Option<u16>,
        /// Seconds until it expires, if given.
        expire: Option<u64>,
    },
    /// The server refused this client's WhatsApp Web version as outdated (`<failure
    /// reason="405">`). With [`crate::ClientBuilder::fetch_version`] the client first fetches
    /// the current version and reconnects once; this ends the lifecycle when that is refused
    /// too, or the fetch failed or is off.
    ClientOutdated {
        /// The version the server refused (`None` only from [`DisconnectReason::from_failure`]
        /// alone, which does not know it).
        version: Option<[u32; 3]>,
    },
    /// A server-side error worth retrying (500, 503, 429, …).
    ServerError {
        /// The code.
        code: u16,
    },
    /// The server refused the login for a reason retrying will not fix.
    Refused {
        /// The code.
        code: u16,
    },
    /// No pong in time, the socket closed, or the network failed.
    ConnectionLost {
        /// Details.
        detail: String,
    },
    /// The QR refs ran out without a scan.
    QrTimeout,
    /// Reconnected too often in a short time; stopped to avoid a loop.
    ReconnectLoop,
    /// [`crate::Client::disconnect`] or [`crate::Client::logout`] was called.
    Requested,
}

/// What the lifecycle does after a disconnect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Connect again without waiting.
    ReconnectNow,
    /// Connect again after an exponential, jittered delay.
    Backoff,
    /// Back off for longer (rate limiting).
    LongBackoff,
    /// Stop; keep the credentials.
    Stop,
    /// Stop and delete the credentials.
    Purge,
}

impl DisconnectReason {
    /// The policy for this reason.
    pub fn action(&self) -> Action {
        match self {
            Self::RestartRequired => Action::ReconnectNow,
            Self::Replaced
            | Self::ClientOutdated { .. }
            | Self::Refused { .. }
            | Self::TemporarilyBanned { .. } => Action::Stop,
            Self::QrTimeout | Self::ReconnectLoop | Self::Requested => Action::Stop,
            Self::LoggedOut { .. } => Action::Purge,
            Self::ServerError { code: 429 } => Action::LongBackoff,
            Self::ServerError { .. } | Self::ConnectionLost { .. } => Action::Backoff,
        }
    }

    /// Classifies a `<stream:error>` node.
    pub fn from_stream_error(node: &Node) -> Self {
        let code = node.opt_attr_str("code").and_then(|c| c.parse::<u16>().ok());
        if let Some(conflict) = node.child("conflict") {
            return match conflict.opt_attr_str("type").as_deref() {
                Some("device_removed") => Self::LoggedOut { code: code.unwrap_or(401) },
                _ => Self::Replaced,
            };
        }
        match code {
            Some(515) => Self::RestartRequired,
            Some(401 | 516) => Self::LoggedOut { code: code.unwrap_or(401) },
            Some(409) => Self::Replaced,
            Some(c) => Self::ServerError { code: c },
            None => Self::ServerError { code: 500 },
        }
    }

    /// Classifies a `<failure reason=…>` node (sent instead of `<success>`).
    pub fn from_failure(node: &Node) -> Self {
        let reason = node.opt_attr_str("reason").and_then(|c| c.parse::<u16>().ok()).unwrap_or(0);
        match reason {
            401 | 403 | 406 => Self::LoggedOut { code: reason },
            402 => Self::TemporarilyBanned {
                code: node.opt_attr_str("code").and_then(|c| c.parse().ok()),
                expire: node.opt_attr_str("expire").and_then(|c| c.parse().ok()),
            },
            405 => Self::ClientOutdated { version: None },
            500 | 503 | 429 => Self::ServerError { code: reason },
            other => Self::Refused { code: other },
        }
    }

    /// A numeric code in Baileys' `DisconnectReason` numbering, for logs and APIs.
    pub fn code(&self) -> u16 {
        match self {
            Self::RestartRequired => 515,
            Self::Replaced => 440,
            Self::LoggedOut { .. } => 401,
            Self::TemporarilyBanned { .. } => 402,
            Self::ClientOutdated { .. } => 405,
            Self::ServerError { code } | Self::Refused { code } => *code,
            Self::ConnectionLost { .. } => 408,
            Self::QrTimeout => 408,
            Self::ReconnectLoop => 429,
            Self::Requested => 428,
        }
    }
}

impl DisconnectReason {
    /// A stable snake_case name of the variant (`client_outdated`, `logged_out`, …) for APIs
    /// and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::RestartRequired => "restart_required",
            Self::Replaced => "replaced",
            Self::LoggedOut { .. } => "logged_out",
            Self::TemporarilyBanned { .. } => "temporarily_banned",
            Self::ClientOutdated { .. } => "client_outdated",
            Self::ServerError { .. } => "server_error",
            Self::Refused { .. } => "refused",
            Self::ConnectionLost { .. } => "connection_lost",
            Self::QrTimeout => "qr_timeout",
            Self::ReconnectLoop => "reconnect_loop",
            Self::Requested => "requested",
        }
    }
}

/// Plain words for people (logs, dashboards), not a debug dump.
impl std::fmt::Display for DisconnectReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::RestartRequired => f.write_str("WhatsApp asked the client to reconnect"),
            Self::Replaced => f.write_str("another connection of this linked device took over"),
            Self::LoggedOut { code } => {
                write!(f, "the device was unlinked or the account logged out (code {code})")
            }
            Self::TemporarilyBanned { expire, .. } => match expire {
                Some(s) => write!(f, "the account is temporarily banned for {s} more seconds"),
                None => f.write_str("the account is temporarily banned"),
            },
            Self::ClientOutdated { version: Some(v) } => write!(
                f,
                "WhatsApp refused WhatsApp Web version {} as outdated",
                wa_noise::payload::format_app_version(*v)
            ),
            Self::ClientOutdated { version: None } => {
                f.write_str("WhatsApp refused this client's WhatsApp Web version as outdated")
            }
            Self::ServerError { code } => write!(f, "WhatsApp server error {code}"),
            Self::Refused { code } => write!(f, "WhatsApp refused the connection (code {code})"),
            Self::ConnectionLost { detail } => write!(f, "connection lost: {detail}"),
            Self::QrTimeout => f.write_str("the QR code was not scanned in time"),
            Self::ReconnectLoop => f.write_str("stopped after reconnecting too often in a short time"),
            Self::Requested => f.write_str("disconnect requested"),
        }
    }
}

/// Exponential backoff with full jitter: attempt n waits a uniform time in
/// `[base·2^n / 2, base·2^n]`, capped.
#[derive(Clone, Debug)]
pub struct Backoff {
    /// First delay.
    pub base: Duration,
    /// Largest delay.
    pub max: Duration,
    attempt: u32,
}

impl Backoff {
    /// A backoff starting at `base`, capped at `max`.
    pub fn new(base: Duration, max: Duration) -> Self {
        Self { base, max, attempt: 0 }
    }

    /// The next delay; `unit` is a uniform random number in [0, 1).
    pub fn next_delay(&mut self, unit: f64, long: bool) -> Duration {
        let factor = 2u32.saturating_pow(self.attempt.min(20));
        self.attempt = self.attempt.saturating_add(1);
        let mut ceiling = self.base.saturating_mul(factor).min(self.max);
        if long {
            ceiling = ceiling.saturating_mul(4).min(self.max.saturating_mul(4));
        }
        let unit = unit.clamp(0.0, 1.0);
        ceiling.mul_f64(0.5 + unit / 2.0)
    }

    /// Forget the failures (after a successful login).
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// Failed attempts since the last reset.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }
}

/// Detects reconnect loops: more than `limit` connection attempts within `window`.
#[derive(Clone, Debug)]
pub struct LoopDetector {
    window: Duration,
    limit: usize,
    attempts: VecDeque<Instant>,
}

impl LoopDetector {
    /// A detector allowing `limit` attempts per `window`.
    pub fn new(limit: usize, window: Duration) -> Self {
        Self { window, limit, attempts: VecDeque::new() }
    }

    /// Records an attempt at `now`; true when it makes a loop.
    pub fn record(&mut self, now: Instant) -> bool {
        while self.attempts.front().is_some_and(|t| now.duration_since(*t) > self.window) {
            self.attempts.pop_front();
        }
        self.attempts.push_back(now);
        self.attempts.len() > self.limit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_errors_map_to_policy() {
        let e = |n: Node| DisconnectReason::from_stream_error(&n);
        assert_eq!(e(Node::new("stream:error").attr("code", "515")).action(), Action::ReconnectNow);
        let replaced = Node::new("stream:error").children([Node::new("conflict").attr("type", "replaced")]);
        assert_eq!(e(replaced), DisconnectReason::Replaced);
        assert_eq!(DisconnectReason::Replaced.code(), 440);
        let removed = Node::new("stream:error")
            .attr("code", "401")
            .children([Node::new("conflict").attr("type", "device_removed")]);
        assert_eq!(e(removed).action(), Action::Purge);
        assert_eq!(e(Node::new("stream:error").attr("code", "503")).action(), Action::Backoff);
        assert_eq!(e(Node::new("stream:error").attr("code", "429")).action(), Action::LongBackoff);
    }

    #[test]
    fn failures_map_to_policy() {
        let f = |r: &str| DisconnectReason::from_failure(&Node::new("failure").attr("reason", r));
        assert_eq!(f("401").action(), Action::Purge);
        assert_eq!(f("403").action(), Action::Purge);
        assert_eq!(f("405"), DisconnectReason::ClientOutdated { version: None });
        assert_eq!(f("405").kind(), "client_outdated");
        assert_eq!(f("503").action(), Action::Backoff);
        assert_eq!(f("402").action(), Action::Stop);
    }

    #[test]
    fn reasons_read_as_plain_words() {
        let outdated = DisconnectReason::ClientOutdated { version: Some([2, 3000, 1_045_649_367]) };
        assert_eq!(
            outdated.to_string(),
            "WhatsApp refused WhatsApp Web version 2.3000.1045649367 as outdated"
        );
        assert_eq!(outdated.code(), 405);
        assert_eq!(outdated.action(), Action::Stop);
        for r in [
            DisconnectReason::RestartRequired,
            DisconnectReason::Replaced,
            DisconnectReason::LoggedOut { code: 401 },
            DisconnectReason::TemporarilyBanned { code: Some(101), expire: Some(60) },
            DisconnectReason::ServerError { code: 503 },
            DisconnectReason::Refused { code: 409 },
            DisconnectReason::ConnectionLost { detail: "reset".into() },
            DisconnectReason::QrTimeout,
            DisconnectReason::ReconnectLoop,
            DisconnectReason::Requested,
        ] {
            let text = r.to_string();
            assert!(!text.contains('{') && !text.contains("::"), "{text}");
            assert!(!r.kind().is_empty());
        }
    }

    #[test]
    fn backoff_grows_with_jitter_and_caps() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
        let d0 = b.next_delay(0.0, false);
        assert_eq!(d0, Duration::from_millis(500));
        let d1 = b.next_delay(0.999, false);
        assert!(d1 > Duration::from_millis(1900) && d1 <= Duration::from_secs(2));
        for _ in 0..30 {
            assert!(b.next_delay(1.0, false) <= Duration::from_secs(30));
        }
        b.reset();
        assert_eq!(b.next_delay(1.0, false), Duration::from_secs(1));
    }

    #[test]
    fn loop_detector_trips_and_recovers() {
        let mut d = LoopDetector::new(3, Duration::from_secs(10));
        let t = Instant::now();
        assert!(!d.record(t));
        assert!(!d.record(t + Duration::from_secs(1)));
        assert!(!d.record(t + Duration::from_secs(2)));
        assert!(d.record(t + Duration::from_secs(3)));
        assert!(!d.record(t + Duration::from_secs(30)));
    }
}
