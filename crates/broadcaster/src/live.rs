//! The in-process live event bus: every state change, QR, incoming message and status update is
//! published here (after it is durably recorded) for WebSocket clients and in-process consumers
//! such as the campaign engine. Slow subscribers lag and lose events rather than slowing the
//! server; the outbox, not this bus, is the durable path.

use serde::Serialize;
use tokio::sync::broadcast;

/// How many events a subscriber may fall behind before it starts losing the oldest.
pub const LIVE_CAPACITY: usize = 4096;

/// One live event.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct LiveEvent {
    /// `qr_code`, `pairing_code`, `connection_update`, `incoming_message`, `message_sent`,
    /// `message_status_update`, `message_reaction`, `message_edited`, `message_revoked` (`data`:
    /// `MessageUpdateEvent`), `poll_vote` (`data`: `PollVoteEvent`), `campaign_status` (`data`:
    /// `CampaignStatusData`), `campaign_progress` (`data`: `CampaignProgressData`),
    /// `reachout_timelock` (`data`: `Timelock`: WhatsApp set or lifted the account's reach-out
    /// time-lock; its campaigns pause or resume).
    pub event: String,
    #[serde(skip)]
    pub tenant_id: String,
    pub account_id: Option<String>,
    pub at_ms: i64,
    pub data: serde_json::Value,
}

/// Sender side of the bus; cheap to clone.
#[derive(Clone, Debug)]
pub struct LiveBus {
    tx: broadcast::Sender<LiveEvent>,
}

impl Default for LiveBus {
    fn default() -> Self {
        Self::new()
    }
}

impl LiveBus {
    pub fn new() -> Self {
        Self { tx: broadcast::channel(LIVE_CAPACITY).0 }
    }

    /// Publishes an event; no subscriber is not an error.
    pub fn publish(
        &self,
        tenant_id: &str,
        account_id: Option<&str>,
        event: &str,
        data: serde_json::Value,
        at_ms: i64,
    ) {
        let _ = self.tx.send(LiveEvent {
            event: event.to_owned(),
            tenant_id: tenant_id.to_owned(),
            account_id: account_id.map(str::to_owned),
            at_ms,
            data,
        });
    }

    pub fn subscribe(&self) -> broadcast::Receiver<LiveEvent> {
        self.tx.subscribe()
    }

    pub fn sender(&self) -> &broadcast::Sender<LiveEvent> {
        &self.tx
    }
}
