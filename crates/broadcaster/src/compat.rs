//! The seed's `/api/v1/whatsapp/…` routes (seeds/000), served as aliases of the native API with
//! the shapes shown there (camelCase, `accountId`, `qrCode` as a PNG data URL), so existing
//! front-ends keep working. Each handler delegates to the native one: same auth, limits, records.

use crate::db::{OptionalExtension, params};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::account_state::AccountState;
use crate::accounts::{self, Account, CreateAccount};
use crate::auth::{Permission, Principal};
use crate::error::{ApiError, ApiJson};
use crate::runtime::OutgoingContent;
use crate::state::AppState;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct StartSession {
    pub phone_number: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionView {
    pub account_id: String,
    pub phone_number: Option<String>,
    /// `waiting_for_scan`, `connected`, `connecting`, `reconnecting`, `disconnected`, `logged_out`, `error`.
    pub status: String,
    pub push_name: Option<String>,
    pub last_connected_at: Option<i64>,
    pub created_at: i64,
    /// PNG data URL of the QR to scan, while waiting for a scan.
    pub qr_code: Option<String>,
}

fn status_of(s: AccountState) -> &'static str {
    match s {
        AccountState::QrReady | AccountState::PairingCodeReady => "waiting_for_scan",
        AccountState::Active => "connected",
        AccountState::Connecting => "connecting",
        AccountState::Reconnecting => "reconnecting",
        AccountState::Inactive | AccountState::Disconnected => "disconnected",
        AccountState::LoggedOut => "logged_out",
        AccountState::Error => "error",
    }
}

fn view(a: Account, qr_code: Option<String>) -> SessionView {
    SessionView {
        account_id: a.id,
        phone_number: a.phone,
        status: status_of(a.state).to_owned(),
        push_name: a.push_name,
        last_connected_at: a.last_connected_at,
        created_at: a.created_at,
        qr_code,
    }
}

#[utoipa::path(post, path = "/api/v1/whatsapp/start-session", tag = "seed-compat", request_body = StartSession,
    responses((status = 200, body = SessionView), (status = 400, body = crate::error::ErrorBody),
              (status = 409, body = crate::error::ErrorBody), (status = 503, body = crate::error::ErrorBody)),
    security(("api_key" = [])))]
/// Creates (or reuses) the account for `phoneNumber` and starts linking it; answers with the QR.
pub async fn start_session(
    State(st): State<AppState>,
    p: Principal,
    ApiJson(req): ApiJson<StartSession>,
) -> Result<Json<SessionView>, ApiError> {
    p.require(Permission::Connect)?;
    let phone = accounts::parse_phone(&req.phone_number)?.to_string();
    let (tenant, ph) = (p.tenant_id.clone(), phone.clone());
    let existing: Option<String> = st
        .db
        .call(move |c| {
            c.query_row(
                "SELECT id FROM accounts WHERE tenant_id = ?1 AND phone = ?2",
                params![tenant, ph],
                |r| r.get(0),
            )
            .optional()
        })
        .await?;
    let id = match existing {
        Some(id) => id,
        None => {
            let create = CreateAccount {
                name: phone.clone(),
                phone: Some(phone),
                daily_limit: None,
                new_contact_limit: None,
                time_zone: None,
                push_name_override: None,
                proxy: None,
            };
            let (_, Json(a)) = accounts::create(State(st.clone()), p.clone(), ApiJson(create)).await?;
            a.id
        }
    };
    let Json(acc) = accounts::get(State(st.clone()), p.clone(), Path(id.clone())).await?;
    if acc.state == AccountState::Active {
        return Ok(Json(view(acc, None)));
    }
    let (_, Json(r)) = accounts::connect(State(st), p, Path(id), None).await?;
    let qr = r.link.and_then(|l| l.qr_png);
    Ok(Json(view(r.account, qr)))
}

#[utoipa::path(get, path = "/api/v1/whatsapp/sessions", tag = "seed-compat",
    responses((status = 200, body = Vec<SessionView>)), security(("api_key" = [])))]
pub async fn sessions(State(st): State<AppState>, p: Principal) -> Result<Json<Vec<SessionView>>, ApiError> {
    let Json(all) =
        accounts::list(State(st), p, crate::error::ApiQuery(accounts::ListQuery { state: None })).await?;
    Ok(Json(all.into_iter().map(|a| view(a, None)).collect()))
}

#[utoipa::path(get, path = "/api/v1/whatsapp/sessions/{account_id}", tag = "seed-compat",
    params(("account_id" = String, Path)),
    responses((status = 200, body = SessionView), (status = 404, body = crate::error::ErrorBody)),
    security(("api_key" = [])))]
pub async fn session(
    State(st): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
) -> Result<Json<SessionView>, ApiError> {
    let Json(a) = accounts::get(State(st), p, Path(id)).await?;
    Ok(Json(view(a, None)))
}

#[utoipa::path(get, path = "/api/v1/whatsapp/sessions/{account_id}/qr", tag = "seed-compat",
    params(("account_id" = String, Path)),
    responses((status = 200, body = SessionView), (status = 404, body = crate::error::ErrorBody),
              (status = 409, body = crate::error::ErrorBody)),
    security(("api_key" = [])))]
/// The current QR; for an account that is not linking, starts a new link (re-auth).
pub async fn session_qr(
    State(st): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
) -> Result<Json<SessionView>, ApiError> {
    let Json(a) = accounts::get(State(st.clone()), p.clone(), Path(id.clone())).await?;
    match a.state {
        AccountState::QrReady | AccountState::PairingCodeReady => {
            let Json(link) = accounts::qr(State(st), p, Path(id)).await?;
            Ok(Json(view(a, link.qr_png)))
        }
        AccountState::Active | AccountState::Connecting | AccountState::Reconnecting => {
            Ok(Json(view(a, None)))
        }
        _ => {
            let (_, Json(r)) = accounts::connect(State(st), p, Path(id), None).await?;
            let qr = r.link.and_then(|l| l.qr_png);
            Ok(Json(view(r.account, qr)))
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SeedSend {
    pub account_id: String,
    pub phone_number: String,
    pub message: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SeedSent {
    pub success: bool,
    /// Our message id (track it with `GET /api/v1/accounts/{id}/messages/{message_id}`).
    pub message_id: String,
    pub wa_message_id: Option<String>,
    pub status: String,
}

#[utoipa::path(post, path = "/api/v1/whatsapp/send-message", tag = "seed-compat", request_body = SeedSend,
    responses((status = 200, body = SeedSent), (status = 400, body = crate::error::ErrorBody),
              (status = 404, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody),
              (status = 429, body = crate::error::ErrorBody)),
    security(("api_key" = [])))]
pub async fn send_message(
    State(st): State<AppState>,
    p: Principal,
    ApiJson(req): ApiJson<SeedSend>,
) -> Result<Json<SeedSent>, ApiError> {
    p.require(Permission::Send)?;
    crate::messages::parse_recipient(&req.phone_number)?;
    let content = OutgoingContent::Text { body: req.message, quoted_id: None };
    let m =
        crate::messages::send_message(&st, &p.tenant_id, &req.account_id, &req.phone_number, content).await?;
    Ok(Json(SeedSent { success: true, message_id: m.id, wa_message_id: m.wa_message_id, status: m.status }))
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SeedOk {
    pub success: bool,
}

#[utoipa::path(delete, path = "/api/v1/whatsapp/sessions/{account_id}", tag = "seed-compat",
    params(("account_id" = String, Path)),
    responses((status = 200, body = SeedOk), (status = 404, body = crate::error::ErrorBody)),
    security(("api_key" = [])))]
/// Disconnects the account and clears its WhatsApp session (logs the device out).
pub async fn delete_session(
    State(st): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<SeedOk>), ApiError> {
    let Json(a) = accounts::get(State(st.clone()), p.clone(), Path(id.clone())).await?;
    if a.state != AccountState::LoggedOut && a.state != AccountState::Inactive {
        let _logged_out = accounts::logout(State(st), p, Path(id)).await?;
    }
    Ok((StatusCode::OK, Json(SeedOk { success: true })))
}
