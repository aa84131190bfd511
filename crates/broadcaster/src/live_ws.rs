//! `GET /api/v1/events/ws`: live events as JSON text frames over a WebSocket, filtered to the
//! key's tenant and optionally one account. Browsers cannot set headers on a WebSocket, so the
//! key may also come as `?api_key=`.
//!
//! The first frame is `{"event":"ready"}`, sent once the subscription is active (nothing that
//! happens after it is missed). A subscriber that falls too far behind gets
//! `{"event":"lagged","data":{"missed":N}}` and should re-read history. Revoking the key closes
//! the socket (close code 1008, reason `api key revoked`).

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::response::Response;
use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;
use utoipa::IntoParams;

use crate::access::ClientIp;
use crate::auth::{Permission, Principal, authenticate_from, request_key};
use crate::error::{ApiError, ApiQuery};
use crate::state::AppState;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct WsQuery {
    /// Only events of this account.
    pub account_id: Option<String>,
    /// The API key, for clients that cannot set headers.
    pub api_key: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/events/ws", tag = "events", params(WsQuery),
    responses((status = 101, description = "WebSocket of live events (JSON text frames)"),
              (status = 401, body = crate::error::ErrorBody)),
    security(("api_key" = [])))]
pub async fn events_ws(
    State(st): State<AppState>,
    ApiQuery(q): ApiQuery<WsQuery>,
    ws: WsUpgrade,
    KeyFromHeaders(header_key): KeyFromHeaders,
    ClientIp(client): ClientIp,
) -> Result<Response, ApiError> {
    let key = header_key.or(q.api_key).ok_or(ApiError::Unauthorized)?;
    let p = authenticate_from(&st, &key, client).await?;
    p.require(Permission::Read)?;
    if let Some(acc) = &q.account_id {
        crate::accounts::require_in_tenant(&st, p.tenant_id.clone(), acc.clone()).await?;
    }
    let rx = st.live.subscribe();
    let access = st.access.clone();
    Ok(ws.0.on_upgrade(move |socket| stream(socket, rx, p, q.account_id, access)))
}

async fn stream(
    mut socket: WebSocket,
    mut rx: tokio::sync::broadcast::Receiver<crate::live::LiveEvent>,
    p: Principal,
    account: Option<String>,
    access: std::sync::Arc<crate::access::Access>,
) {
    if socket.send(Message::Text(r#"{"event":"ready"}"#.into())).await.is_err() {
        return;
    }
    let revoked = access.revocations.revoked(&p.key_id);
    tokio::pin!(revoked);
    loop {
        tokio::select! {
            () = &mut revoked => {
                // 1008: policy violation (RFC 6455); the key no longer grants this stream.
                let frame = CloseFrame { code: 1008, reason: "api key revoked".into() };
                let _ = socket.send(Message::Close(Some(frame))).await;
                break;
            }
            ev = rx.recv() => {
                let text = match ev {
                    Ok(ev) => {
                        if ev.tenant_id != p.tenant_id
                            || account.as_deref().is_some_and(|a| ev.account_id.as_deref() != Some(a))
                        {
                            continue;
                        }
                        match serde_json::to_string(&ev) {
                            Ok(t) => t,
                            Err(_) => continue,
                        }
                    }
                    Err(RecvError::Lagged(n)) => format!(r#"{{"event":"lagged","data":{{"missed":{n}}}}}"#),
                    Err(RecvError::Closed) => break,
                };
                if socket.send(Message::Text(text.into())).await.is_err() {
                    break;
                }
            }
            msg = socket.recv() => match msg {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break,
                Some(Ok(_)) => {}
            },
        }
    }
}

/// The WebSocket upgrade, with a JSON error when the request is not one.
pub struct WsUpgrade(WebSocketUpgrade);

impl<S: Send + Sync> FromRequestParts<S> for WsUpgrade {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        WebSocketUpgrade::from_request_parts(parts, state)
            .await
            .map(Self)
            .map_err(|e| ApiError::bad("websocket_required", e.to_string()))
    }
}

/// The API key from the headers, if any (not an error when absent).
pub struct KeyFromHeaders(Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for KeyFromHeaders {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(request_key(parts).map(str::to_owned)))
    }
}
