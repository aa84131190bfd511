//! Webhooks: registration API, delivery log and replay, and the outbox delivery worker.
//!
//! Each delivery is a `POST` of the event envelope (JSON, whose `id` is the idempotency key) with
//! `X-Broadcaster-Timestamp` (Unix seconds) and `X-Broadcaster-Signature: v1=<hex>` where the
//! hex is HMAC-SHA256 with the webhook's secret over `timestamp + "." + body`. A non-2xx answer
//! or a transport error schedules a retry with exponential backoff and jitter; after
//! `max_attempts` the delivery is dead-lettered until replayed through the API.

use std::sync::Arc;
use std::time::Duration;

use crate::db::{OptionalExtension, params};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{StatusCode, Uri};
use futures::StreamExt;
use hmac::{Hmac, KeyInit, Mac};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use tokio::sync::Notify;
use utoipa::{IntoParams, ToSchema};

use crate::auth::{Permission, Principal};
use crate::clock::{SharedClock, new_id};
use crate::db::{Db, DbError};
use crate::error::{ApiError, ApiJson, ApiQuery};
use crate::state::AppState;

/// Event types a webhook may subscribe to (`*` for all).
pub const EVENT_TYPES: &[&str] = &[
    "connection_update",
    "qr_code",
    "pairing_code",
    "incoming_message",
    "message_status_update",
    "account_health",
    "message_sent",
    "campaign_status",
    "campaign_progress",
];

pub const SIGNATURE_HEADER: &str = "x-broadcaster-signature";
pub const TIMESTAMP_HEADER: &str = "x-broadcaster-timestamp";
pub const EVENT_ID_HEADER: &str = "x-broadcaster-event-id";

/// `v1=<hex HMAC-SHA256(secret, timestamp "." body)>`.
pub fn sign(secret: &str, timestamp_s: i64, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
    mac.update(timestamp_s.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// Verifies a signature in constant time (for receivers and tests).
pub fn verify(secret: &str, timestamp_s: i64, body: &[u8], signature: &str) -> bool {
    let Some(hex_sig) = signature.strip_prefix("v1=") else { return false };
    let Ok(sig) = hex::decode(hex_sig) else { return false };
    let Ok(mut mac) = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes()) else { return false };
    mac.update(timestamp_s.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.verify_slice(&sig).is_ok()
}

// ---------------------------------------------------------------- API

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWebhook {
    /// `http://` URL receiving POSTs.
    pub url: String,
    /// Event types to deliver; `["*"]` for all.
    pub events: Vec<String>,
    /// Only events of this account (default: every account of the tenant).
    pub account_id: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Webhook {
    pub id: String,
    pub url: String,
    pub events: Vec<String>,
    pub account_id: Option<String>,
    pub enabled: bool,
    pub created_at: i64,
    /// The signing secret; returned only when the webhook is created.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

fn validate_url(url: &str) -> Result<(), ApiError> {
    let uri: Uri = url.parse().map_err(|_| ApiError::bad("invalid_url", "url is not a valid URL"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => {
            return Err(ApiError::bad(
                "unsupported_url",
                "https webhook URLs are not supported by this build yet",
            ));
        }
        _ => return Err(ApiError::bad("invalid_url", "url must start with http://")),
    }
    if uri.host().is_none_or(str::is_empty) || url.len() > 2048 {
        return Err(ApiError::bad("invalid_url", "url must have a host and be at most 2048 characters"));
    }
    Ok(())
}

fn validate_events(events: &[String]) -> Result<String, ApiError> {
    if events.is_empty() {
        return Err(ApiError::bad("invalid_events", "events must list at least one event type (or \"*\")"));
    }
    for e in events {
        if e != "*" && !EVENT_TYPES.contains(&e.as_str()) {
            return Err(ApiError::bad(
                "invalid_events",
                format!("unknown event type `{e}`; known: {}", EVENT_TYPES.join(", ")),
            ));
        }
    }
    Ok(events.join(","))
}

/// Registers a webhook. Deliveries are signed (HMAC-SHA256 over timestamp + body), retried with
/// backoff and dead-lettered after the last attempt.
///
/// Auto-reply: a receiver may answer an `incoming_message` delivery (any 2xx status) with a JSON
/// body `{"reply": {"text": "...", "quote": false}}` (schema `AutoReplyBody`); the text is then
/// sent back on the same chat through the normal send path (daily limit, history, status events).
#[utoipa::path(post, path = "/api/v1/webhooks", tag = "webhooks", request_body = CreateWebhook,
    responses((status = 201, body = Webhook), (status = 400, body = crate::error::ErrorBody)),
    security(("api_key" = [])))]
pub async fn create(
    State(st): State<AppState>,
    p: Principal,
    ApiJson(req): ApiJson<CreateWebhook>,
) -> Result<(StatusCode, Json<Webhook>), ApiError> {
    p.require(Permission::Manage)?;
    validate_url(&req.url)?;
    let events = validate_events(&req.events)?;
    let secret = format!("whsec_{}", hex::encode(rand::random::<[u8; 32]>()));
    let now = st.clock.now_ms();
    let tenant = p.tenant_id.clone();
    let id = new_id("whk");
    let hook = Webhook {
        id: id.clone(),
        url: req.url.clone(),
        events: req.events.clone(),
        account_id: req.account_id.clone(),
        enabled: true,
        created_at: now,
        secret: Some(secret.clone()),
    };
    let ok = st
        .db
        .call(move |c| {
            if let Some(acc) = &req.account_id {
                let exists: bool = c.query_row(
                    "SELECT EXISTS(SELECT 1 FROM accounts WHERE tenant_id = ?1 AND id = ?2)",
                    params![tenant, acc],
                    |r| r.get(0),
                )?;
                if !exists {
                    return Ok(false);
                }
            }
            c.execute(
                "INSERT INTO webhooks (id, tenant_id, account_id, url, secret, events, enabled, created_at)
                 VALUES (?1,?2,?3,?4,?5,?6,1,?7)",
                params![id, tenant, req.account_id, req.url, secret, events, now],
            )?;
            Ok(true)
        })
        .await?;
    if !ok {
        return Err(ApiError::NotFound("account"));
    }
    Ok((StatusCode::CREATED, Json(hook)))
}

#[utoipa::path(get, path = "/api/v1/webhooks", tag = "webhooks",
    responses((status = 200, body = Vec<Webhook>)), security(("api_key" = [])))]
pub async fn list(State(st): State<AppState>, p: Principal) -> Result<Json<Vec<Webhook>>, ApiError> {
    p.require(Permission::Manage)?;
    let tenant = p.tenant_id.clone();
    let rows = st
        .db
        .call(move |c| {
            let mut stmt = c.prepare(
                "SELECT id, url, events, account_id, enabled, created_at FROM webhooks WHERE tenant_id = ?1
                 ORDER BY created_at, id",
            )?;
            let rows = stmt
                .query_map(params![tenant], |r| {
                    Ok(Webhook {
                        id: r.get(0)?,
                        url: r.get(1)?,
                        events: r.get::<String>(2)?.split(',').map(str::to_owned).collect(),
                        account_id: r.get(3)?,
                        enabled: r.get(4)?,
                        created_at: r.get(5)?,
                        secret: None,
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await?;
    Ok(Json(rows))
}

#[utoipa::path(delete, path = "/api/v1/webhooks/{id}", tag = "webhooks", params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = crate::error::ErrorBody)), security(("api_key" = [])))]
pub async fn delete(
    State(st): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    p.require(Permission::Manage)?;
    let tenant = p.tenant_id.clone();
    let n = st
        .db
        .call(move |c| {
            c.execute("DELETE FROM webhooks WHERE tenant_id = ?1 AND id = ?2", params![tenant, id])
        })
        .await?;
    if n == 0 { Err(ApiError::NotFound("webhook")) } else { Ok(StatusCode::NO_CONTENT) }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Delivery {
    pub id: String,
    pub webhook_id: String,
    pub event_type: String,
    /// `pending`, `delivered` or `dead`.
    pub status: String,
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub last_error: Option<String>,
    pub last_status: Option<i64>,
    pub created_at: i64,
    pub delivered_at: Option<i64>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DeliveryQuery {
    /// `pending`, `delivered` or `dead`.
    pub status: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/webhooks/{id}/deliveries", tag = "webhooks",
    params(("id" = String, Path), DeliveryQuery),
    responses((status = 200, body = Vec<Delivery>), (status = 404, body = crate::error::ErrorBody)),
    security(("api_key" = [])))]
pub async fn deliveries(
    State(st): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<DeliveryQuery>,
) -> Result<Json<Vec<Delivery>>, ApiError> {
    p.require(Permission::Manage)?;
    if let Some(s) = &q.status
        && !["pending", "delivered", "dead"].contains(&s.as_str())
    {
        return Err(ApiError::bad("invalid_status", "status must be pending, delivered or dead"));
    }
    let tenant = p.tenant_id.clone();
    st.db
        .call(move |c| {
            let exists: bool = c.query_row(
                "SELECT EXISTS(SELECT 1 FROM webhooks WHERE tenant_id = ?1 AND id = ?2)",
                params![tenant, id],
                |r| r.get(0),
            )?;
            if !exists {
                return Ok(None);
            }
            let mut stmt = c.prepare(
                "SELECT id, webhook_id, event_type, status, attempts, next_attempt_at, last_error, last_status,
                        created_at, delivered_at
                 FROM webhook_outbox WHERE tenant_id = ?1 AND webhook_id = ?2 AND (CAST(?3 AS TEXT) IS NULL OR status = ?3)
                 ORDER BY created_at, id LIMIT 1000",
            )?;
            let rows = stmt
                .query_map(params![tenant, id, q.status], |r| {
                    Ok(Delivery {
                        id: r.get(0)?,
                        webhook_id: r.get(1)?,
                        event_type: r.get(2)?,
                        status: r.get(3)?,
                        attempts: r.get(4)?,
                        next_attempt_at: r.get(5)?,
                        last_error: r.get(6)?,
                        last_status: r.get(7)?,
                        created_at: r.get(8)?,
                        delivered_at: r.get(9)?,
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Some(rows))
        })
        .await?
        .map(Json)
        .ok_or(ApiError::NotFound("webhook"))
}

#[utoipa::path(post, path = "/api/v1/webhooks/deliveries/{id}/replay", tag = "webhooks",
    params(("id" = String, Path)),
    responses((status = 202), (status = 404, body = crate::error::ErrorBody)), security(("api_key" = [])))]
pub async fn replay(
    State(st): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    p.require(Permission::Manage)?;
    let tenant = p.tenant_id.clone();
    let now = st.clock.now_ms();
    // Replaying keeps the event id, so receivers deduplicate a replay of something they got.
    let n = st
        .db
        .call(move |c| {
            c.execute(
                "UPDATE webhook_outbox SET status = 'pending', attempts = 0, next_attempt_at = ?3
                 WHERE tenant_id = ?1 AND id = ?2",
                params![tenant, id, now],
            )
        })
        .await?;
    if n == 0 {
        return Err(ApiError::NotFound("delivery"));
    }
    st.outbox_notify.notify_one();
    Ok(StatusCode::ACCEPTED)
}

// ---------------------------------------------------------------- worker

/// Retry schedule.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub base_delay_ms: i64,
    pub max_delay_ms: i64,
    pub request_timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 8,
            base_delay_ms: 5_000,
            max_delay_ms: 3_600_000,
            request_timeout: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    /// Delay before attempt `attempts + 1`, after `attempts` failures: exponential, capped, with
    /// "equal jitter" (half fixed, half random) so retries of many deliveries spread out.
    pub fn delay_after(&self, attempts: u32, random: u64) -> i64 {
        let exp = self.base_delay_ms.saturating_mul(1i64 << attempts.saturating_sub(1).min(30));
        let d = exp.min(self.max_delay_ms).max(1);
        let half = d / 2;
        half + (random % (d - half + 1) as u64) as i64
    }
}

struct Due {
    id: String,
    tenant_id: String,
    event_type: String,
    url: String,
    secret: String,
    payload: String,
    attempts: u32,
}

/// The body a receiver may answer an `incoming_message` delivery with (any 2xx status) to reply
/// on the same chat through the normal send path (daily limit, history, status events). Any
/// other body (or none) sends nothing.
///
/// Example: `{"reply": {"text": "Thanks, we'll be in touch", "quote": true}}`
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize, ToSchema)]
pub struct AutoReplyBody {
    pub reply: AutoReply,
}

#[derive(Debug, Clone, serde::Deserialize, serde::Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AutoReply {
    /// The text to send back (1 to 65536 characters).
    pub text: String,
    /// Quote the incoming message (default false).
    #[serde(default)]
    pub quote: bool,
}

/// An auto-reply to send: a receiver answered `incoming_message` with an [`AutoReplyBody`].
#[derive(Debug, Clone)]
pub struct AutoReplyJob {
    pub tenant_id: String,
    pub account_id: String,
    /// The chat the incoming message came on.
    pub chat: String,
    /// WhatsApp's id of the incoming message (quoted when asked).
    pub wa_message_id: Option<String>,
    pub reply: AutoReply,
}

/// Sends an auto-reply through the normal send path; failures (account gone, limit reached,
/// session down) are logged, not retried: the webhook delivery itself succeeded.
pub async fn send_auto_reply(st: &AppState, job: AutoReplyJob) {
    let quoted_id = if job.reply.quote { job.wa_message_id } else { None };
    let content = crate::runtime::OutgoingContent::Text { body: job.reply.text, quoted_id };
    match crate::messages::send_message(st, &job.tenant_id, &job.account_id, &job.chat, content).await {
        Ok(m) => tracing::info!(account_id = %job.account_id, message_id = %m.id, "auto-reply sent"),
        Err(e) => tracing::warn!(account_id = %job.account_id, error = %e, "auto-reply not sent"),
    }
}

/// Largest receiver answer read for an auto-reply.
const MAX_REPLY_BODY: usize = 64 * 1024;

/// The auto-reply a receiver's answer asks for, if any.
fn auto_reply(d: &Due, body: &[u8]) -> Option<AutoReplyJob> {
    if d.event_type != "incoming_message" || body.is_empty() {
        return None;
    }
    let answer: AutoReplyBody = serde_json::from_slice(body).ok()?;
    let event: crate::outbox::EventEnvelope = serde_json::from_str(&d.payload).ok()?;
    let chat = event.data.get("chat")?.as_str()?.to_owned();
    Some(AutoReplyJob {
        tenant_id: d.tenant_id.clone(),
        account_id: event.account_id?,
        chat,
        wa_message_id: event.data.get("wa_message_id").and_then(|v| v.as_str()).map(str::to_owned),
        reply: answer.reply,
    })
}

/// Delivers outbox rows. [`WebhookWorker::run_once`] is deterministic given the clock, which is
/// how tests drive retries without sleeping.
pub struct WebhookWorker {
    db: Db,
    clock: SharedClock,
    policy: RetryPolicy,
    client: Client<HttpConnector, Full<bytes::Bytes>>,
    notify: Arc<Notify>,
    replies: Option<tokio::sync::mpsc::UnboundedSender<AutoReplyJob>>,
}

impl WebhookWorker {
    pub fn new(db: Db, clock: SharedClock, policy: RetryPolicy, notify: Arc<Notify>) -> Self {
        let client = Client::builder(TokioExecutor::new()).build_http();
        Self { db, clock, policy, client, notify, replies: None }
    }

    /// Hands auto-replies (see [`AutoReplyBody`]) to `tx`; without it answers are ignored.
    pub fn with_auto_replies(mut self, tx: tokio::sync::mpsc::UnboundedSender<AutoReplyJob>) -> Self {
        self.replies = Some(tx);
        self
    }

    /// Attempts every delivery due now; returns how many were attempted.
    pub async fn run_once(&self) -> Result<usize, DbError> {
        let now = self.clock.now_ms();
        let due = self
            .db
            .call(move |c| {
                let mut stmt = c.prepare_cached(
                    "SELECT o.id, w.url, w.secret, o.payload, o.attempts, o.tenant_id, o.event_type
                     FROM webhook_outbox o
                     JOIN webhooks w ON w.id = o.webhook_id AND w.tenant_id = o.tenant_id
                     WHERE o.status = 'pending' AND o.next_attempt_at <= ?1 AND w.enabled = 1
                     ORDER BY o.next_attempt_at, o.id LIMIT 256",
                )?;
                let rows = stmt
                    .query_map(params![now], |r| {
                        Ok(Due {
                            id: r.get(0)?,
                            url: r.get(1)?,
                            secret: r.get(2)?,
                            payload: r.get(3)?,
                            attempts: r.get(4)?,
                            tenant_id: r.get(5)?,
                            event_type: r.get(6)?,
                        })
                    })?
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(rows)
            })
            .await?;
        let n = due.len();
        let results: Vec<(Due, Result<u16, String>)> = futures::stream::iter(due)
            .map(|d| async move {
                let r = self.post(&d, now).await;
                let r = match r {
                    Ok((status, body)) => {
                        if (200..300).contains(&status)
                            && let Some(tx) = &self.replies
                            && let Some(job) = auto_reply(&d, &body)
                        {
                            let _ = tx.send(job);
                        }
                        Ok(status)
                    }
                    Err(e) => Err(e),
                };
                (d, r)
            })
            .buffer_unordered(8)
            .collect()
            .await;
        let policy = self.policy.clone();
        self.db
            .call(move |c| {
                let tx = c.transaction()?;
                for (d, r) in results {
                    let attempts = d.attempts + 1;
                    match r {
                        Ok(status) if (200..300).contains(&status) => {
                            tx.execute(
                                "UPDATE webhook_outbox SET status = 'delivered', attempts = ?2, last_status = ?3,
                                   last_error = NULL, delivered_at = ?4 WHERE id = ?1",
                                params![d.id, attempts, status, now],
                            )?;
                        }
                        other => {
                            let (status, err) = match other {
                                Ok(s) => (Some(s), format!("receiver answered HTTP {s}")),
                                Err(e) => (None, e),
                            };
                            let dead = attempts >= policy.max_attempts;
                            let next = now + policy.delay_after(attempts, rand::random());
                            tx.execute(
                                "UPDATE webhook_outbox SET status = ?2, attempts = ?3, last_status = ?4,
                                   last_error = ?5, next_attempt_at = ?6 WHERE id = ?1",
                                params![d.id, if dead { "dead" } else { "pending" }, attempts, status, err, next],
                            )?;
                            if dead {
                                tracing::warn!(delivery = %d.id, attempts, "webhook delivery dead-lettered");
                            }
                        }
                    }
                }
                tx.commit()?;
                Ok(())
            })
            .await?;
        Ok(n)
    }

    /// Posts one delivery; the status and (for `incoming_message`, bounded) the answer's body.
    async fn post(&self, d: &Due, now_ms: i64) -> Result<(u16, bytes::Bytes), String> {
        let ts = now_ms.div_euclid(1000);
        let sig = sign(&d.secret, ts, d.payload.as_bytes());
        let event_id = serde_json::from_str::<serde_json::Value>(&d.payload)
            .ok()
            .and_then(|v| v.get("id").and_then(|i| i.as_str()).map(str::to_owned))
            .unwrap_or_default();
        let req = hyper::Request::post(&d.url)
            .header("content-type", "application/json")
            .header("user-agent", "broadcaster-webhooks/1")
            .header(TIMESTAMP_HEADER, ts.to_string())
            .header(SIGNATURE_HEADER, sig)
            .header(EVENT_ID_HEADER, event_id)
            .body(Full::new(bytes::Bytes::from(d.payload.clone())))
            .map_err(|e| format!("bad request: {e}"))?;
        let fut = async {
            let resp = self.client.request(req).await.map_err(|e| format!("transport: {e}"))?;
            let status = resp.status().as_u16();
            // Drain (bounded by the timeout) so the connection can be reused; keep the body of
            // an `incoming_message` answer (it may carry an auto-reply), up to a limit.
            let body = http_body_util::Limited::new(resp.into_body(), MAX_REPLY_BODY).collect().await;
            let body = match body {
                Ok(b) if d.event_type == "incoming_message" => b.to_bytes(),
                _ => bytes::Bytes::new(),
            };
            Ok((status, body))
        };
        tokio::time::timeout(self.policy.request_timeout, fut).await.map_err(|_| "timed out".to_owned())?
    }

    /// Earliest `next_attempt_at` among pending deliveries.
    pub async fn next_due(&self) -> Result<Option<i64>, DbError> {
        self.db
            .call(|c| {
                Ok(c.query_row(
                    "SELECT MIN(next_attempt_at) FROM webhook_outbox WHERE status = 'pending'",
                    [],
                    |r| r.get::<Option<i64>>(0),
                )
                .optional()?
                .flatten())
            })
            .await
    }

    /// Runs until `shutdown` resolves, waking when work is due or new events are notified.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            if let Err(e) = self.run_once().await {
                tracing::error!(error = %e, "webhook worker pass failed");
            }
            let wait_ms = match self.next_due().await {
                Ok(Some(t)) => (t - self.clock.now_ms()).clamp(0, 60_000),
                Ok(None) => 60_000,
                Err(_) => 5_000,
            };
            tokio::select! {
                _ = &mut shutdown => break,
                _ = self.notify.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(wait_ms as u64)) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn due(event_type: &str) -> Due {
        let payload = serde_json::json!({
            "id": "evt_1", "type": event_type, "tenant_id": "t", "account_id": "acc_1", "created_at": 1,
            "data": { "chat": "15550001111@s.whatsapp.net", "wa_message_id": "WA1" }
        });
        Due {
            id: "o".into(),
            tenant_id: "t".into(),
            event_type: event_type.into(),
            url: "http://x".into(),
            secret: "s".into(),
            payload: payload.to_string(),
            attempts: 0,
        }
    }

    #[test]
    fn auto_replies_only_for_incoming_messages_with_a_reply_body() {
        let job = auto_reply(&due("incoming_message"), br#"{"reply":{"text":"hi","quote":true}}"#).unwrap();
        assert_eq!((job.account_id.as_str(), job.chat.as_str()), ("acc_1", "15550001111@s.whatsapp.net"));
        assert_eq!(job.wa_message_id.as_deref(), Some("WA1"));
        assert!(job.reply.quote);
        assert!(!auto_reply(&due("incoming_message"), br#"{"reply":{"text":"hi"}}"#).unwrap().reply.quote);
        for body in [&b""[..], b"ok", b"{}", br#"{"reply":"hi"}"#, br#"{"reply":{"text":"hi","x":1}}"#] {
            assert!(
                auto_reply(&due("incoming_message"), body).is_none(),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        assert!(auto_reply(&due("message_sent"), br#"{"reply":{"text":"hi"}}"#).is_none());
    }

    #[test]
    fn signature_round_trips_and_binds_timestamp() {
        let s = sign("sec", 1700000000, b"{}");
        assert!(verify("sec", 1700000000, b"{}", &s));
        assert!(!verify("sec", 1700000001, b"{}", &s));
        assert!(!verify("other", 1700000000, b"{}", &s));
        assert!(!verify("sec", 1700000000, b"{ }", &s));
    }

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        let p =
            RetryPolicy { max_attempts: 5, base_delay_ms: 1000, max_delay_ms: 10_000, ..Default::default() };
        assert!((500..=1000).contains(&p.delay_after(1, 0)));
        assert_eq!(p.delay_after(1, 0), 500);
        assert_eq!(p.delay_after(1, 500), 1000);
        assert_eq!(p.delay_after(3, 0), 2000);
        assert!(p.delay_after(20, u64::MAX - 1) <= 10_000);
        assert_eq!(p.delay_after(64, 0), 5000);
    }
}
