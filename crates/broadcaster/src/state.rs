//! Shared application state handed to every handler.

use std::sync::Arc;

use tokio::sync::Notify;

use crate::clock::SharedClock;
use crate::db::Db;
use crate::live::LiveBus;
use crate::metrics::Metrics;
use crate::outbound::OutboundClient;
use crate::outbound::fetch::FetchPolicy;
use crate::runtime::AccountRuntime;

/// Server-wide limits handlers enforce.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Media fetched by URL or uploaded inline.
    pub fetch: FetchPolicy,
    /// Requests per minute per API key (0: unlimited).
    pub requests_per_minute: u32,
    /// An interrupted single send older than this (since its request) fails `expired` instead
    /// of being sent again (see [`crate::bulk`]).
    pub pending_send_max_age_ms: i64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            fetch: FetchPolicy::default(),
            requests_per_minute: 0,
            pending_send_max_age_ms: crate::config::DEFAULT_PENDING_SEND_MAX_AGE_SECS as i64 * 1000,
        }
    }
}

#[derive(Clone)]
pub struct AppState {
    pub db: Db,
    pub clock: SharedClock,
    /// `None` when no WhatsApp runtime is wired in; connect then answers 503.
    pub runtime: Option<Arc<dyn AccountRuntime>>,
    /// Wakes the webhook worker when new outbox rows may be due.
    pub outbox_notify: Arc<Notify>,
    /// Live events for WebSocket clients and in-process consumers (the campaign engine).
    pub live: LiveBus,
    pub metrics: Arc<Metrics>,
    pub limits: Arc<Limits>,
    /// The outbound HTTP client (webhooks, media URLs) with the SSRF policy.
    pub outbound: OutboundClient,
    pub rate: Arc<crate::ratelimit::RateLimiter>,
    /// The in-process emulator of `--emulator` (enables the `/api/v1/emulator` endpoints).
    pub emulator: Option<Arc<wa_emulator::EmulatorHandle>>,
    /// Wakes the bulk-send runner when new bulk messages were queued (or the clock was moved).
    pub bulk_wake: Arc<Notify>,
    /// Wakes the campaign engine (its own waker: API changes and reach-out time-locks).
    pub campaign_wake: Arc<Notify>,
    /// Set when the server stops: a send the closing sessions cut short stays queued for the
    /// next start instead of being recorded as failed.
    pub stopping: Arc<std::sync::atomic::AtomicBool>,
    /// Which WhatsApp Web version the sessions report (`None` without a WhatsApp runtime).
    pub wa_version: Option<Arc<crate::wa_runtime::WaVersion>>,
    /// Key revocations for open streams, failed-auth throttling, `/metrics` access.
    pub access: Arc<crate::access::Access>,
    /// Seals secret columns (webhook secrets) with the master key; [`AppState::new`] puts an
    /// ephemeral key here, the server the master key's box ([`crate::secrets::unlock`]).
    pub secrets: Arc<crate::secrets::SecretBox>,
}

impl AppState {
    /// True once the server has begun to stop (see [`AppState::stopping`]).
    pub fn is_stopping(&self) -> bool {
        self.stopping.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// State with default limits, a fresh live bus and metrics, no emulator.
    pub fn new(
        db: Db,
        clock: SharedClock,
        runtime: Option<Arc<dyn AccountRuntime>>,
        outbox_notify: Arc<Notify>,
    ) -> Self {
        Self {
            db,
            clock,
            runtime,
            outbox_notify,
            live: LiveBus::new(),
            metrics: Arc::new(Metrics::default()),
            limits: Arc::new(Limits::default()),
            outbound: OutboundClient::default(),
            rate: Arc::new(crate::ratelimit::RateLimiter::default()),
            emulator: None,
            bulk_wake: Arc::new(Notify::new()),
            campaign_wake: Arc::new(Notify::new()),
            stopping: Arc::new(std::sync::atomic::AtomicBool::new(false)),
            wa_version: None,
            access: Arc::default(),
            secrets: Arc::new(crate::secrets::SecretBox::ephemeral()),
        }
    }
}
