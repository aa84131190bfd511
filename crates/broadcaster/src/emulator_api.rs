//! `/api/v1/emulator/…`: with `--emulator`, endpoints that play the simulated phones' part, so
//! the whole product can be tried offline: the account's phone scans the QR (or types the
//! pairing code) the API shows, and contact phones send, read and list messages. Without
//! `--emulator` every path here answers 404.

use std::sync::Arc;

use crate::db::{OptionalExtension, params};
use axum::Json;
use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use wa_emulator::EmulatorHandle;

use crate::auth::{Permission, Principal};
use crate::error::{ApiError, ApiJson};
use crate::state::AppState;

fn emulator(st: &AppState) -> Result<Arc<EmulatorHandle>, ApiError> {
    st.emulator.clone().ok_or(ApiError::NotFound("route"))
}

fn control(e: wa_emulator::ControlError) -> ApiError {
    ApiError::bad("emulator_refused", e.to_string())
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LinkRequest {
    /// The phone that links (default: the account's phone number). Created in the emulator if new.
    pub phone: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct LinkResult {
    /// E.164 of the phone that linked the account.
    pub phone: String,
}

/// Reads the account's current QR or pairing code and the phone that should link it.
async fn link_target(
    st: &AppState,
    p: &Principal,
    id: &str,
    req: Option<LinkRequest>,
    want_code: bool,
) -> Result<(String, String), ApiError> {
    let (tenant, id) = (p.tenant_id.clone(), id.to_owned());
    let row = st
        .db
        .call(move |c| {
            c.query_row(
                "SELECT phone, name, qr_code, pairing_code FROM accounts WHERE tenant_id = ?1 AND id = ?2",
                params![tenant, id],
                |r| {
                    Ok((
                        r.get::<Option<String>>(0)?,
                        r.get::<String>(1)?,
                        r.get::<Option<String>>(2)?,
                        r.get::<Option<String>>(3)?,
                    ))
                },
            )
            .optional()
        })
        .await?
        .ok_or(ApiError::NotFound("account"))?;
    let (phone, name, qr, code) = row;
    let phone = match req.and_then(|r| r.phone) {
        Some(ph) => crate::accounts::parse_phone(&ph)?.to_string(),
        None => phone.ok_or_else(|| {
            ApiError::bad("phone_required", "the account has no phone number; pass `phone` in the body")
        })?,
    };
    let secret = if want_code { code } else { qr }.ok_or_else(|| ApiError::Conflict {
        code: "nothing_to_link",
        message: format!(
            "the account shows no {} now; connect it first",
            if want_code { "pairing code" } else { "QR code" }
        ),
    })?;
    let emu = emulator(st)?;
    let digits = phone.trim_start_matches('+').to_owned();
    if emu.phone(&digits).is_err() {
        emu.create_account(&digits, &name).map_err(control)?;
    }
    Ok((digits, secret))
}

#[utoipa::path(post, path = "/api/v1/emulator/accounts/{id}/scan", tag = "emulator", params(("id" = String, Path)),
    request_body = Option<LinkRequest>,
    responses((status = 200, body = LinkResult), (status = 404, body = crate::error::ErrorBody),
              (status = 409, body = crate::error::ErrorBody)),
    security(("api_key" = [])))]
/// The simulated phone scans the account's current QR code.
pub async fn scan(
    State(st): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
    body: Option<ApiJson<LinkRequest>>,
) -> Result<Json<LinkResult>, ApiError> {
    p.require(Permission::Connect)?;
    emulator(&st)?;
    let (digits, qr) = link_target(&st, &p, &id, body.map(|b| b.0), false).await?;
    emulator(&st)?.phone(&digits).map_err(control)?.scan(&qr).map_err(control)?;
    Ok(Json(LinkResult { phone: format!("+{digits}") }))
}

#[utoipa::path(post, path = "/api/v1/emulator/accounts/{id}/enter-code", tag = "emulator",
    params(("id" = String, Path)), request_body = Option<LinkRequest>,
    responses((status = 200, body = LinkResult), (status = 404, body = crate::error::ErrorBody),
              (status = 409, body = crate::error::ErrorBody)),
    security(("api_key" = [])))]
/// The simulated phone types the account's current pairing code.
pub async fn enter_code(
    State(st): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
    body: Option<ApiJson<LinkRequest>>,
) -> Result<Json<LinkResult>, ApiError> {
    p.require(Permission::Connect)?;
    emulator(&st)?;
    let (digits, code) = link_target(&st, &p, &id, body.map(|b| b.0), true).await?;
    emulator(&st)?.phone(&digits).map_err(control)?.enter_code(&code).map_err(control)?;
    Ok(Json(LinkResult { phone: format!("+{digits}") }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePhone {
    pub phone: String,
    pub push_name: Option<String>,
}

#[utoipa::path(post, path = "/api/v1/emulator/phones", tag = "emulator", request_body = CreatePhone,
    responses((status = 201, body = LinkResult), (status = 400, body = crate::error::ErrorBody)),
    security(("api_key" = [])))]
/// Creates a simulated WhatsApp user (a contact to message).
pub async fn create_phone(
    State(st): State<AppState>,
    p: Principal,
    ApiJson(req): ApiJson<CreatePhone>,
) -> Result<(axum::http::StatusCode, Json<LinkResult>), ApiError> {
    p.require(Permission::Manage)?;
    let emu = emulator(&st)?;
    let e = crate::accounts::parse_phone(&req.phone)?;
    emu.create_account(e.digits(), req.push_name.as_deref().unwrap_or("Contact")).map_err(control)?;
    Ok((axum::http::StatusCode::CREATED, Json(LinkResult { phone: e.to_string() })))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PhoneSend {
    /// Phone number or JID.
    pub to: String,
    pub text: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PhoneSent {
    pub wa_message_id: String,
}

#[utoipa::path(post, path = "/api/v1/emulator/phones/{phone}/send", tag = "emulator",
    params(("phone" = String, Path)), request_body = PhoneSend,
    responses((status = 200, body = PhoneSent), (status = 400, body = crate::error::ErrorBody)),
    security(("api_key" = [])))]
/// A simulated phone sends a text.
pub async fn phone_send(
    State(st): State<AppState>,
    p: Principal,
    Path(phone): Path<String>,
    ApiJson(req): ApiJson<PhoneSend>,
) -> Result<Json<PhoneSent>, ApiError> {
    p.require(Permission::Manage)?;
    let emu = emulator(&st)?;
    let from = crate::accounts::parse_phone(&phone)?;
    let to = crate::messages::parse_recipient(&req.to)?;
    let jid: wa_client::Jid =
        to.chat.parse().map_err(|e| ApiError::bad("invalid_recipient", format!("{e}")))?;
    let id = emu.phone(from.digits()).map_err(control)?.send_text(&jid, &req.text).map_err(control)?;
    Ok(Json(PhoneSent { wa_message_id: id }))
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PhoneMessage {
    pub wa_message_id: String,
    pub chat: String,
    pub sender: String,
    pub kind: String,
    pub text: Option<String>,
    pub error: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/emulator/phones/{phone}/inbox", tag = "emulator",
    params(("phone" = String, Path)),
    responses((status = 200, body = Vec<PhoneMessage>), (status = 400, body = crate::error::ErrorBody)),
    security(("api_key" = [])))]
/// What a simulated phone has received.
pub async fn phone_inbox(
    State(st): State<AppState>,
    p: Principal,
    Path(phone): Path<String>,
) -> Result<Json<Vec<PhoneMessage>>, ApiError> {
    p.require(Permission::Manage)?;
    let emu = emulator(&st)?;
    let from = crate::accounts::parse_phone(&phone)?;
    let inbox = emu.phone(from.digits()).map_err(control)?.inbox();
    Ok(Json(
        inbox
            .into_iter()
            .map(|m| PhoneMessage {
                wa_message_id: m.id,
                chat: m.chat,
                sender: m.sender,
                kind: m.kind,
                text: m.text,
                error: m.error,
            })
            .collect(),
    ))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PhoneRead {
    pub wa_message_ids: Vec<String>,
}

#[utoipa::path(post, path = "/api/v1/emulator/phones/{phone}/read", tag = "emulator",
    params(("phone" = String, Path)), request_body = PhoneRead,
    responses((status = 204), (status = 400, body = crate::error::ErrorBody)),
    security(("api_key" = [])))]
/// A simulated phone reads messages (sends read receipts).
pub async fn phone_read(
    State(st): State<AppState>,
    p: Principal,
    Path(phone): Path<String>,
    ApiJson(req): ApiJson<PhoneRead>,
) -> Result<axum::http::StatusCode, ApiError> {
    p.require(Permission::Manage)?;
    let emu = emulator(&st)?;
    let from = crate::accounts::parse_phone(&phone)?;
    emu.phone(from.digits()).map_err(control)?.mark_read(&req.wa_message_ids).map_err(control)?;
    Ok(axum::http::StatusCode::NO_CONTENT)
}
