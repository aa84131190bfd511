//! Webhooks: registration API, delivery log and replay ([`delivery`]: the outbox delivery
//! worker; [`signature`]: how deliveries are signed).
//!
//! Each delivery is a `POST` of the event envelope (JSON, whose `id` is the idempotency key),
//! signed as [`signature`] describes. A non-2xx answer or a transport error schedules a retry
//! with exponential backoff and jitter; after `max_attempts` the delivery is dead-lettered until
//! replayed through the API. URLs must be `https://` (or `http://`) on public addresses: the SSRF
//! policy of [`crate::outbound`] is checked at registration and again at every connection.

pub mod delivery;
pub mod retry;
pub mod signature;

use crate::db::params;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::{Permission, Principal};
use crate::clock::new_id;
use crate::error::{ApiError, ApiJson, ApiQuery};
use crate::outbound::OutboundError;
use crate::state::AppState;

pub use delivery::{AutoReply, AutoReplyBody, AutoReplyJob, RetryPolicy, WebhookWorker, send_auto_reply};
pub use signature::{EVENT_ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, sign, verify};

pub const EVENT_TYPES: &[&str] = &[
    "connection_update",
    "qr_code",
    "pairing_code",
    "incoming_message",
    "message_status_update",
    "message_reaction",
    "message_edited",
    "message_revoked",
    "poll_vote",
    "account_health",
    "message_sent",
    "campaign_status",
    "campaign_progress",
    "reachout_timelock",
    "chat_update",
];

// ---------------------------------------------------------------- API

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWebhook {
    /// `https://` (or `http://`) URL receiving POSTs, at most 2048 characters, on a public
    /// address: loopback, private, link-local and reserved addresses (and names resolving to
    /// them) are refused with 422 `url_refused`.
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

/// Checks a webhook URL: its shape (400 `invalid_url`), then the SSRF policy on every address
/// its host resolves to (422 `url_refused`, or 422 `url_unresolvable` when it does not resolve).
async fn validate_url(st: &AppState, url: &str) -> Result<(), ApiError> {
    st.outbound.check_url(url).await.map(|_| ()).map_err(|e| match e {
        OutboundError::InvalidUrl(m) => ApiError::bad("invalid_url", m),
        OutboundError::Unresolvable(m) => {
            ApiError::unprocessable("url_unresolvable", format!("webhook URL refused: {m}"))
        }
        other => ApiError::unprocessable("url_refused", format!("webhook URL refused: {other}")),
    })
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
    let events = validate_events(&req.events)?;
    validate_url(&st, &req.url).await?;
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
    // Stored sealed with the master key; the clear secret is answered once, here.
    let sealed = st.secrets.seal(crate::secrets::SecretColumn::WebhookSecret, &id, &secret);
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
                params![id, tenant, req.account_id, req.url, sealed, events, now],
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
            let rows = stmt.query_map(params![tenant], webhook_from_row)?.collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await?;
    Ok(Json(rows))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateWebhook {
    /// A new URL, checked as at registration.
    pub url: Option<String>,
    /// New event types (`["*"]` for all).
    pub events: Option<Vec<String>>,
    /// `false`: no new event is queued for it, and queued deliveries wait, until set back to `true`.
    pub enabled: Option<bool>,
}

/// Changes a webhook's URL, events or whether it is enabled; the signing secret stays.
#[utoipa::path(patch, path = "/api/v1/webhooks/{id}", tag = "webhooks", params(("id" = String, Path)),
    request_body = UpdateWebhook,
    responses((status = 200, body = Webhook), (status = 400, body = crate::error::ErrorBody),
              (status = 404, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody)),
    security(("api_key" = [])))]
pub async fn update(
    State(st): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<UpdateWebhook>,
) -> Result<Json<Webhook>, ApiError> {
    p.require(Permission::Manage)?;
    let events = req.events.as_deref().map(validate_events).transpose()?;
    if let Some(url) = &req.url {
        validate_url(&st, url).await?;
    }
    let tenant = p.tenant_id.clone();
    st.db
        .call(move |c| {
            c.execute(
                "UPDATE webhooks SET url = COALESCE(?3, url), events = COALESCE(?4, events),
                        enabled = COALESCE(?5, enabled)
                 WHERE tenant_id = ?1 AND id = ?2",
                params![tenant, id, req.url, events, req.enabled],
            )?;
            load(c, &tenant, &id)
        })
        .await?
        .map(Json)
        .ok_or(ApiError::NotFound("webhook"))
}

fn webhook_from_row(r: &crate::db::Row) -> crate::db::DbResult<Webhook> {
    Ok(Webhook {
        id: r.get(0)?,
        url: r.get(1)?,
        events: r.get::<String>(2)?.split(',').map(str::to_owned).collect(),
        account_id: r.get(3)?,
        enabled: r.get(4)?,
        created_at: r.get(5)?,
        secret: None,
    })
}

fn load(c: &crate::db::Conn, tenant: &str, id: &str) -> crate::db::DbResult<Option<Webhook>> {
    use crate::db::OptionalExtension as _;
    c.query_row(
        "SELECT id, url, events, account_id, enabled, created_at FROM webhooks WHERE tenant_id = ?1 AND id = ?2",
        params![tenant, id],
        webhook_from_row,
    )
    .optional()
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
