//! Socket.IO compatibility (`/socket.io/`, namespace `/`): the live events of [`crate::live`]
//! under the event names and payload shapes existing front-ends use (seed 001), so a page written
//! against a Baileys + Socket.IO server keeps working against Broadcaster.
//!
//! Authentication, either way the seed's clients do it:
//! - in the handshake: `io(url, { auth: { apiKey } })`, `?api_key=` in the query, or the
//!   `Authorization: Bearer` / `X-API-Key` headers. A key that is presented but invalid refuses
//!   the connection (`connect_error`);
//! - after connecting: `socket.emit('authenticate', { apiKey })`, answered with `authenticated`
//!   (or `unauthorized`).
//!
//! Nothing is delivered before authentication, and an unauthenticated session is cheap and
//! short-lived: new sessions are limited per client address (429 past
//! [`crate::access::DEFAULT_SOCKETIO_SESSIONS_PER_MINUTE`] a minute), a session must join the
//! namespace within [`NAMESPACE_CONNECT_TIMEOUT`] and authenticate within
//! [`AUTHENTICATE_TIMEOUT`] or it is closed. Revoking the key closes its sockets.
//! An authenticated socket receives every event of its
//! key's tenant; after `subscribe_channel` `{ channelId }` (an account id of that tenant) only the
//! events of the subscribed channels (`unsubscribe_channel` undoes it). Events published after the
//! `authenticated` / `subscribed` answer are never missed; a socket that falls too far behind gets
//! `lagged` `{ missed }` and should re-read history.
//!
//! Events (seed 001 shapes; `timestamp` is RFC 3339 UTC):
//! - `qr_code` `{ channelId, qrCode: "data:image/png;base64,…", qr, expiresAt, timestamp }`
//! - `pairing_code` `{ channelId, code, expiresAt, timestamp }`
//! - `connection_update` `{ channelId, status, previousStatus, timestamp, lastDisconnect? }`
//! - `incoming_message` `{ channelId, messageId, waMessageId, from, fromPhone, pushName, chat,
//!   timestamp, message, mediaType?, type: "incoming" }`
//! - `message_status_update` `{ channelId, messageId, waMessageId, status, timestamp, error? }`
//! - any other bus event under its own name as `{ channelId, timestamp, data }`, e.g.
//!   `campaign_status` and `campaign_progress` (`data`: `CampaignStatusData` /
//!   `CampaignProgressData` in `/openapi.json`; tenant-wide, so `channelId` is null and sockets
//!   subscribed to channels do not get them).

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse as _, Response};

use serde::Deserialize;
use serde_json::{Value, json};
use socketioxide::SocketIo;
use socketioxide::extract::{AckSender, SocketRef, TryData};
use socketioxide::handler::ConnectHandler as _;
use tokio::sync::broadcast::error::RecvError;

use crate::access::client_ip;
use crate::auth::{Permission, Principal, authenticate_from, request_key};
use crate::error::ApiError;
use crate::live::LiveEvent;
use crate::state::AppState;

/// Why a handshake was refused (sent to the client as `connect_error` with this message).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SocketAuthError {
    #[error("unauthorized: {0}")]
    Refused(String),
}

/// The key a client may send as handshake `auth` or with the `authenticate` event.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct KeyPayload {
    api_key: Option<String>,
    #[serde(rename = "api_key")]
    api_key_snake: Option<String>,
    token: Option<String>,
}

impl KeyPayload {
    fn into_key(self) -> Option<String> {
        self.api_key.or(self.api_key_snake).or(self.token).filter(|k| !k.is_empty())
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ChannelPayload {
    channel_id: String,
}

/// What one socket may see: its principal once authenticated and the channels it subscribed to
/// (empty: the whole tenant).
#[derive(Debug, Default)]
struct Filter {
    principal: Option<Principal>,
    channels: BTreeSet<String>,
}

impl Filter {
    fn admits(&self, ev: &LiveEvent) -> bool {
        let Some(p) = &self.principal else { return false };
        ev.tenant_id == p.tenant_id
            && (self.channels.is_empty()
                || ev.account_id.as_deref().is_some_and(|a| self.channels.contains(a)))
    }
}

type SharedFilter = Arc<Mutex<Filter>>;

fn lock(f: &SharedFilter) -> std::sync::MutexGuard<'_, Filter> {
    f.lock().unwrap_or_else(PoisonError::into_inner)
}

/// How long a new engine.io session may take to join the namespace (a client does it at once).
pub const NAMESPACE_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a socket may stay connected without a valid key.
pub const AUTHENTICATE_TIMEOUT: Duration = Duration::from_secs(10);

/// Builds the Socket.IO layer (serves `/socket.io/`, passes every other request through).
pub fn layer(state: AppState) -> socketioxide::layer::SocketIoLayer {
    let (layer, io) = SocketIo::builder().connect_timeout(NAMESPACE_CONNECT_TIMEOUT).build_layer();
    let on_connect = {
        let st = state.clone();
        move |s: SocketRef| connected(s, st.clone())
    };
    let check_handshake = move |s: SocketRef, TryData(auth): TryData<KeyPayload>| {
        let st = state.clone();
        async move { handshake(s, st, auth.ok()).await }
    };
    io.ns("/", on_connect.with(check_handshake));
    layer
}

/// Connect middleware: a key presented in the handshake must be valid (it is then remembered as
/// the socket's principal); no key at all is fine (the `authenticate` event may follow).
async fn handshake(s: SocketRef, st: AppState, auth: Option<KeyPayload>) -> Result<(), SocketAuthError> {
    let parts = s.req_parts();
    let key = auth
        .and_then(KeyPayload::into_key)
        .or_else(|| request_key(parts).map(str::to_owned))
        .or_else(|| query_key(parts.uri.query()));
    let Some(key) = key else { return Ok(()) };
    let client = client_ip(parts);
    let p = principal(&st, &key, client).await.map_err(|e| SocketAuthError::Refused(e.to_string()))?;
    s.extensions.insert(p);
    Ok(())
}

fn query_key(query: Option<&str>) -> Option<String> {
    query?.split('&').find_map(|kv| kv.strip_prefix("api_key=")).filter(|k| !k.is_empty()).map(str::to_owned)
}

/// Middleware before the Socket.IO layer: a request that opens a new engine.io session (no
/// `sid`) takes one of its client address's session tokens, or is answered 429.
pub async fn limit_new_sessions(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let new_session = req.uri().path().starts_with("/socket.io")
        && !req.uri().query().unwrap_or_default().split('&').any(|kv| kv.starts_with("sid="));
    if new_session
        && let Some(ip) =
            req.extensions().get::<axum::extract::ConnectInfo<std::net::SocketAddr>>().map(|c| c.0.ip())
    {
        let (buckets, now) = (&st.access.socketio_sessions, st.clock.now_ms());
        if let Err(retry_after_secs) = buckets.check(ip, now) {
            return ApiError::RateLimited {
                code: "too_many_sessions",
                message: format!(
                    "too many new Socket.IO sessions from this address (at most {} a minute); retry in {retry_after_secs} s",
                    buckets.per_minute()
                ),
                retry_after_secs,
                reset_at: None,
            }
            .into_response();
        }
        buckets.take(ip, now);
    }
    next.run(req).await
}

async fn principal(
    st: &AppState,
    key: &str,
    client: Option<std::net::IpAddr>,
) -> Result<Principal, ApiError> {
    let p = authenticate_from(st, key, client).await?;
    p.require(Permission::Read)?;
    Ok(p)
}

async fn connected(s: SocketRef, st: AppState) {
    let filter: SharedFilter = Arc::default();
    // Subscribe before anything is answered, so nothing published after an answer is missed.
    let rx = st.live.subscribe();
    let forwarder = tokio::spawn(forward(s.clone(), rx, filter.clone(), st.access.clone()));
    let abort = forwarder.abort_handle();
    s.on_disconnect(move || {
        abort.abort();
        std::future::ready(())
    });
    if let Some(p) = s.extensions.get::<Principal>() {
        let tenant = p.tenant_id.clone();
        lock(&filter).principal = Some(p);
        let _ = s.emit("authenticated", &json!({ "tenantId": tenant }));
    }
    s.on("authenticate", {
        let (st, filter) = (st.clone(), filter.clone());
        move |s: SocketRef, TryData(d): TryData<KeyPayload>, ack: AckSender| {
            let (st, filter) = (st.clone(), filter.clone());
            async move {
                let answer = match d.ok().and_then(KeyPayload::into_key) {
                    None => Err(ApiError::Unauthorized),
                    Some(key) => principal(&st, &key, client_ip(s.req_parts())).await,
                };
                let (event, body) = match answer {
                    Ok(p) => {
                        let body = json!({ "tenantId": p.tenant_id });
                        let mut f = lock(&filter);
                        if f.principal.as_ref().is_some_and(|old| old.tenant_id != p.tenant_id) {
                            f.channels.clear();
                        }
                        f.principal = Some(p);
                        ("authenticated", body)
                    }
                    Err(e) => ("unauthorized", error_body(&e)),
                };
                let _ = s.emit(event, &body);
                let _ = ack.send(&json!({ "event": event, "data": body }));
            }
        }
    });
    s.on("subscribe_channel", {
        let (st, filter) = (st.clone(), filter.clone());
        move |s: SocketRef, TryData(d): TryData<ChannelPayload>, ack: AckSender| {
            let (st, filter) = (st.clone(), filter.clone());
            async move {
                let (event, body) = match subscribe(&st, &filter, d.ok()).await {
                    Ok(channel) => ("subscribed", json!({ "channelId": channel })),
                    Err(e) => ("error", error_body(&e)),
                };
                let _ = s.emit(event, &body);
                let _ = ack.send(&json!({ "event": event, "data": body }));
            }
        }
    });
    s.on("unsubscribe_channel", {
        let filter = filter.clone();
        move |s: SocketRef, TryData(d): TryData<ChannelPayload>, ack: AckSender| {
            let filter = filter.clone();
            async move {
                let (event, body) = match d {
                    Ok(d) => {
                        lock(&filter).channels.remove(&d.channel_id);
                        ("unsubscribed", json!({ "channelId": d.channel_id }))
                    }
                    Err(e) => ("error", error_body(&ApiError::bad("invalid_body", e.to_string()))),
                };
                let _ = s.emit(event, &body);
                let _ = ack.send(&json!({ "event": event, "data": body }));
            }
        }
    });
}

/// Adds a channel (an account of the socket's tenant) to the socket's filter.
async fn subscribe(
    st: &AppState,
    filter: &SharedFilter,
    d: Option<ChannelPayload>,
) -> Result<String, ApiError> {
    let d = d.ok_or_else(|| ApiError::bad("invalid_body", "expected { channelId }"))?;
    let tenant =
        lock(filter).principal.as_ref().map(|p| p.tenant_id.clone()).ok_or(ApiError::Unauthorized)?;
    crate::accounts::require_in_tenant(st, tenant.clone(), d.channel_id.clone()).await?;
    let mut f = lock(filter);
    // The key may have been swapped for another tenant's while the lookup ran.
    if f.principal.as_ref().is_none_or(|p| p.tenant_id != tenant) {
        return Err(ApiError::NotFound("account"));
    }
    f.channels.insert(d.channel_id.clone());
    Ok(d.channel_id)
}

fn error_body(e: &ApiError) -> Value {
    if let ApiError::Internal(detail) = e {
        tracing::error!(%detail, "socket.io: internal error");
    }
    json!({ "code": e.code(), "message": e.to_string() })
}

/// Forwards the bus to the socket; disconnects it when its key is revoked, or when it has not
/// authenticated within [`AUTHENTICATE_TIMEOUT`].
async fn forward(
    s: SocketRef,
    mut rx: tokio::sync::broadcast::Receiver<LiveEvent>,
    filter: SharedFilter,
    access: Arc<crate::access::Access>,
) {
    let mut revoked = access.revocations.watch();
    let deadline = tokio::time::sleep(AUTHENTICATE_TIMEOUT);
    tokio::pin!(deadline);
    let (mut authenticated_once, mut watching) = (false, true);
    loop {
        let ev = tokio::select! {
            ev = rx.recv() => ev,
            changed = revoked.changed(), if watching => {
                // The sender lives as long as the server's state; stop watching if it is gone.
                watching = changed.is_ok();
                let key = lock(&filter).principal.as_ref().map(|p| p.key_id.clone());
                if key.is_some_and(|k| revoked.borrow_and_update().contains(&k)) {
                    let _ = s.emit("unauthorized", &json!({ "code": "key_revoked", "message": "api key revoked" }));
                    let _ = s.clone().disconnect();
                    return;
                }
                continue;
            }
            () = &mut deadline, if !authenticated_once => {
                if lock(&filter).principal.is_none() {
                    let _ = s.emit("unauthorized", &json!({
                        "code": "authentication_timeout",
                        "message": "no valid API key within the time allowed",
                    }));
                    let _ = s.clone().disconnect();
                    return;
                }
                authenticated_once = true;
                continue;
            }
        };
        let sent = match ev {
            Ok(ev) => {
                if !lock(&filter).admits(&ev) {
                    continue;
                }
                let (name, payload) = seed_event(&ev);
                s.emit(name, &payload)
            }
            Err(RecvError::Lagged(n)) => s.emit("lagged", &json!({ "missed": n })),
            Err(RecvError::Closed) => return,
        };
        if sent.is_err() && !s.connected() {
            return;
        }
    }
}

/// Maps a bus event to the seed's event name and payload.
pub fn seed_event(ev: &LiveEvent) -> (&str, Value) {
    let d = &ev.data;
    let channel = ev.account_id.as_deref();
    let timestamp = rfc3339(ev.at_ms);
    let payload = match ev.event.as_str() {
        "qr_code" => {
            let qr = d["qr"].as_str().unwrap_or_default();
            json!({
                "channelId": channel, "qrCode": qr_png(qr), "qr": qr,
                "expiresAt": d["expires_at"], "timestamp": timestamp,
            })
        }
        "pairing_code" => json!({
            "channelId": channel, "code": d["pairing_code"], "expiresAt": d["expires_at"],
            "timestamp": timestamp,
        }),
        "connection_update" => {
            let mut p = json!({
                "channelId": channel, "status": d["state"], "previousStatus": d["from"],
                "timestamp": timestamp,
            });
            let down =
                matches!(d["state"].as_str(), Some("disconnected" | "reconnecting" | "logged_out" | "error"));
            if down {
                p["lastDisconnect"] = json!({ "reason": d["reason"], "date": timestamp });
            }
            p
        }
        "incoming_message" => {
            let mut p = json!({
                "channelId": channel, "messageId": d["id"], "waMessageId": d["wa_message_id"],
                "from": d["sender"], "fromPhone": d["sender_phone"], "pushName": d["push_name"],
                "chat": d["chat"], "timestamp": timestamp, "message": d["body"], "type": "incoming",
            });
            if d["kind"].as_str().is_some_and(|k| k != "text") {
                p["mediaType"] = d["kind"].clone();
            }
            p
        }
        "message_status_update" => {
            let at = d["at"].as_i64().map_or(timestamp, rfc3339);
            let mut p = json!({
                "channelId": channel, "messageId": d["message_id"], "waMessageId": d["wa_message_id"],
                "status": d["status"], "timestamp": at,
            });
            if !d["error"].is_null() {
                p["error"] = d["error"].clone();
            }
            p
        }
        _ => json!({ "channelId": channel, "timestamp": timestamp, "data": d }),
    };
    (ev.event.as_str(), payload)
}

fn qr_png(text: &str) -> Option<String> {
    if text.is_empty() {
        return None;
    }
    let q = wa_client::QrCode {
        text: text.to_owned(),
        valid_for: std::time::Duration::ZERO,
        expires_at: std::time::Instant::now(),
    };
    q.to_png_data_url(4).ok()
}

/// `2024-01-15T10:30:00.123Z` for milliseconds since the Unix epoch (proleptic Gregorian, UTC).
pub fn rfc3339(ms: i64) -> String {
    let (secs, milli) = (ms.div_euclid(1000), ms.rem_euclid(1000));
    let (days, sod) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{milli:03}Z",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(event: &str, account: Option<&str>, data: Value) -> LiveEvent {
        LiveEvent {
            event: event.into(),
            tenant_id: "ten_a".into(),
            account_id: account.map(str::to_owned),
            at_ms: 1_705_314_600_000,
            data,
        }
    }

    #[test]
    fn rfc3339_formats_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_705_314_600_000), "2024-01-15T10:30:00.000Z");
        assert_eq!(rfc3339(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59.999Z");
        assert_eq!(rfc3339(4_102_444_799_000), "2099-12-31T23:59:59.000Z");
    }

    #[test]
    fn seed_shapes() {
        let qr = ev(
            "qr_code",
            Some("acc_1"),
            json!({ "account_id": "acc_1", "qr": "2@abc,def", "expires_at": 5 }),
        );
        let (n, p) = seed_event(&qr);
        assert_eq!(n, "qr_code");
        assert_eq!(p["channelId"], "acc_1");
        assert!(p["qrCode"].as_str().is_some_and(|q| q.starts_with("data:image/png;base64,")), "{p}");
        assert_eq!(p["timestamp"], "2024-01-15T10:30:00.000Z");

        let (_, p) = seed_event(&ev(
            "connection_update",
            Some("acc_1"),
            json!({ "state": "logged_out", "from": "active", "reason": "unlinked" }),
        ));
        assert_eq!(p["status"], "logged_out");
        assert_eq!(p["lastDisconnect"]["reason"], "unlinked");
        let (_, p) = seed_event(&ev("connection_update", Some("acc_1"), json!({ "state": "active" })));
        assert!(p.get("lastDisconnect").is_none(), "{p}");

        let (_, p) = seed_event(&ev(
            "incoming_message",
            Some("acc_1"),
            json!({ "id": "msg_1", "sender": "1555@s.whatsapp.net", "body": "hi", "kind": "text" }),
        ));
        assert_eq!(
            (p["messageId"].as_str(), p["from"].as_str(), p["message"].as_str(), p["type"].as_str()),
            (Some("msg_1"), Some("1555@s.whatsapp.net"), Some("hi"), Some("incoming"))
        );
        assert!(p.get("mediaType").is_none());

        let (_, p) = seed_event(&ev(
            "message_status_update",
            Some("acc_1"),
            json!({ "message_id": "msg_2", "status": "read", "at": 0 }),
        ));
        assert_eq!((p["messageId"].as_str(), p["status"].as_str()), (Some("msg_2"), Some("read")));
        assert_eq!(p["timestamp"], "1970-01-01T00:00:00.000Z");

        let sent = ev("message_sent", Some("acc_1"), json!({ "id": "msg_3" }));
        let (n, p) = seed_event(&sent);
        assert_eq!((n, p["data"]["id"].as_str()), ("message_sent", Some("msg_3")));
    }

    #[test]
    fn filter_needs_auth_and_keeps_to_tenant_and_channels() {
        let mut f = Filter::default();
        let e = ev("qr_code", Some("acc_1"), json!({}));
        assert!(!f.admits(&e), "unauthenticated socket got an event");
        f.principal = Some(Principal {
            tenant_id: "ten_a".into(),
            key_id: "key_1".into(),
            role: crate::auth::Role::Admin,
        });
        assert!(f.admits(&e));
        let mut other = e.clone();
        other.tenant_id = "ten_b".into();
        assert!(!f.admits(&other), "another tenant's event admitted");
        f.channels.insert("acc_2".into());
        assert!(!f.admits(&e));
        assert!(f.admits(&ev("qr_code", Some("acc_2"), json!({}))));
    }

    #[test]
    fn key_sources() {
        assert_eq!(query_key(Some("EIO=4&transport=polling&api_key=bk_1")).as_deref(), Some("bk_1"));
        assert_eq!(query_key(Some("EIO=4&api_key=")), None);
        assert_eq!(query_key(None), None);
        let k: KeyPayload = serde_json::from_value(json!({ "apiKey": "bk_2" })).unwrap();
        assert_eq!(k.into_key().as_deref(), Some("bk_2"));
        let k: KeyPayload = serde_json::from_value(json!({ "token": "bk_3" })).unwrap();
        assert_eq!(k.into_key().as_deref(), Some("bk_3"));
    }
}
