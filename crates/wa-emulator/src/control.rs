//! The JSON control API under `/control`: accounts, phones, groups and fault injection, for
//! tests in other languages and for the dashboard's demo mode.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use serde::Deserialize;
use serde_json::json;
use wa_binary::{Jid, Node};

use crate::server::Shared;
use crate::world::{ControlError, DeviceAddr, Fault, World};

/// The `<stream:error>` for a fault code: 440 is a `<conflict type="replaced"/>`, 401 a
/// `<conflict type="device_removed"/>` with code 401, others carry only `code`.
pub(crate) fn stream_error(code: u16) -> Node {
    match code {
        440 => Node::new("stream:error").children([Node::new("conflict").attr("type", "replaced")]),
        401 => Node::new("stream:error")
            .attr("code", "401")
            .children([Node::new("conflict").attr("type", "device_removed")]),
        c => Node::new("stream:error").attr("code", c),
    }
}

pub(crate) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/control/info", get(info))
        .route("/control/accounts", post(create_account))
        .route("/control/phones/{pn}/scan", post(scan))
        .route("/control/phones/{pn}/code", post(enter_code))
        .route("/control/phones/{pn}/send", post(send))
        .route("/control/phones/{pn}/inbox", get(inbox))
        .route("/control/phones/{pn}/read", post(mark_read))
        .route("/control/phones/{pn}/played", post(mark_played))
        .route("/control/phones/{pn}/react", post(react))
        .route("/control/phones/{pn}/retry", post(request_retry))
        .route("/control/phones/{pn}/remove-device", post(remove_device))
        .route("/control/phones/{pn}/lid-migration", post(lid_migration))
        .route("/control/phones/{pn}/reinstall", post(reinstall))
        .route("/control/phones/{pn}/devices/{device}/acked", get(device_acked))
        .route("/control/phones/{pn}/devices/{device}/in-flight", get(device_in_flight))
        .route("/control/phones/{pn}/picture", post(picture))
        .route("/control/phones/{pn}/about", post(about))
        .route("/control/phones/{pn}/app-state", post(app_state))
        .route("/control/phones/{pn}/app-state/action", post(app_state_action))
        .route("/control/phones/{pn}/call", post(call))
        .route("/control/phones/{pn}/end-call", post(end_call))
        .route("/control/phones/{pn}/send-phone-only", post(send_phone_only))
        .route("/control/phones/{pn}/appdata", post(appdata))
        .route("/control/phones/{pn}/dirty", post(dirty))
        .route("/control/phones/{pn}/reachout", get(reachout_state).post(set_reachout))
        .route("/control/groups/{gid}/receipts", post(group_receipts))
        .route("/control/groups", post(create_group))
        .route("/control/groups/{gid}/add", post(add_to_group))
        .route("/control/faults", post(fault))
        .route("/control/events", get(events))
}

struct ApiError(StatusCode, String);

impl From<ControlError> for ApiError {
    fn from(e: ControlError) -> Self {
        let status = match e {
            ControlError::UnknownAccount(_)
            | ControlError::UnknownRef(_)
            | ControlError::UnknownCode(_)
            | ControlError::UnknownConn(_)
            | ControlError::UnknownGroup(_)
            | ControlError::UnknownMedia(_)
            | ControlError::UnknownMessage(_)
            | ControlError::UnknownDevice(_)
            | ControlError::UnknownCall(_)
            | ControlError::DeviceOffline(_) => StatusCode::NOT_FOUND,
            ControlError::AccountExists(_) => StatusCode::CONFLICT,
            _ => StatusCode::BAD_REQUEST,
        };
        ApiError(status, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

type ApiResult = Result<Json<serde_json::Value>, ApiError>;

fn parse_jid(s: &str) -> Result<Jid, ApiError> {
    let s =
        if s.contains('@') { s.to_owned() } else { format!("{}@s.whatsapp.net", s.trim_start_matches('+')) };
    s.parse().map_err(|_| ApiError(StatusCode::BAD_REQUEST, format!("bad jid {s:?}")))
}

async fn info(State(s): State<Arc<Shared>>) -> ApiResult {
    let w = s.world();
    Ok(Json(json!({
        "root_public_key": hex::encode(w.keys.root_public_key().as_bytes()),
        "server_static_key": hex::encode(w.keys.static_public_key().as_bytes()),
        "accounts": w.accounts.iter().map(|a| json!({
            "pn": a.pn, "lid": a.lid, "push_name": a.push_name, "lid_migrated": a.lid_migrated,
            "devices": a.devices.values().map(|d| json!({"id": d.id, "online": d.conn.is_some(), "platform": d.platform})).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "connections": w.conns.len(),
    })))
}

#[derive(Deserialize)]
struct NewAccount {
    pn: String,
    #[serde(default)]
    name: Option<String>,
    /// `false`: a legacy account whose 1:1 chats stay on phone numbers (default `true`).
    #[serde(default)]
    lid_migrated: Option<bool>,
}

async fn create_account(State(s): State<Arc<Shared>>, Json(b): Json<NewAccount>) -> ApiResult {
    let mut w = s.world();
    let name = b.name.unwrap_or_else(|| format!("Phone {}", b.pn));
    let mut options = crate::world::AccountOptions::default();
    if let Some(m) = b.lid_migrated {
        options.lid_migrated = m;
    }
    let a = w.create_account_with(&b.pn, &name, options)?;
    let acct = &w.accounts[a];
    Ok(Json(json!({ "pn": acct.pn, "lid": acct.lid, "lid_migrated": acct.lid_migrated })))
}

#[derive(Deserialize)]
struct LidMigration {
    migrated: bool,
}

/// Moves an account's 1:1 chats to LIDs (or back), as the service migrates accounts.
async fn lid_migration(
    State(s): State<Arc<Shared>>,
    Path(pn): Path<String>,
    Json(b): Json<LidMigration>,
) -> ApiResult {
    let mut w = s.world();
    let a = w.account_by_pn(&pn)?;
    w.set_lid_migrated(a, b.migrated);
    Ok(Json(json!({ "pn": w.accounts[a].pn, "lid_migrated": b.migrated })))
}

/// `POST /control/phones/{pn}/reachout`: any of `limits` (`{new_contacts, window_secs}`),
/// `restricted`, `timelock` (`{until, enforcement_type}`, announced at once) or
/// `lift_timelock`; answers the resulting state like the `GET`.
#[derive(Deserialize)]
struct ReachoutChange {
    #[serde(default)]
    limits: Option<crate::reachout::ReachoutLimits>,
    #[serde(default)]
    restricted: Option<bool>,
    #[serde(default)]
    timelock: Option<TimelockChange>,
    #[serde(default)]
    lift_timelock: bool,
}

#[derive(Deserialize)]
struct TimelockChange {
    until: u64,
    #[serde(default)]
    enforcement_type: Option<String>,
}

fn reachout_json(w: &mut World, a: crate::world::AccountId) -> serde_json::Value {
    json!({
        "pn": w.accounts[a].pn,
        "limits": w.reachout_limits(a),
        "restricted": w.reachout_restricted(a),
        "timelock": w.reachout_timelock(a),
        "new_contacts_in_window": w.reachouts_in_window(a),
        "nct_salt": hex::encode(w.nct_salt(a)),
    })
}

async fn reachout_state(State(s): State<Arc<Shared>>, Path(pn): Path<String>) -> ApiResult {
    let mut w = s.world();
    let a = w.account_by_pn(&pn)?;
    Ok(Json(reachout_json(&mut w, a)))
}

async fn set_reachout(
    State(s): State<Arc<Shared>>,
    Path(pn): Path<String>,
    Json(b): Json<ReachoutChange>,
) -> ApiResult {
    let mut w = s.world();
    let a = w.account_by_pn(&pn)?;
    if let Some(l) = b.limits {
        w.set_reachout_limits(a, l);
    }
    if let Some(r) = b.restricted {
        w.set_reachout_restricted(a, r);
    }
    if b.lift_timelock {
        w.lift_reachout_timelock(a);
    }
    if let Some(t) = b.timelock {
        w.set_reachout_timelock(a, t.until, t.enforcement_type.as_deref().unwrap_or("DEFAULT"));
    }
    Ok(Json(reachout_json(&mut w, a)))
}

#[derive(Deserialize)]
struct Scan {
    qr: String,
}

async fn scan(State(s): State<Arc<Shared>>, Path(pn): Path<String>, Json(b): Json<Scan>) -> ApiResult {
    let mut w = s.world();
    let a = w.account_by_pn(&pn)?;
    let addr = w.scan_qr(a, &b.qr)?;
    Ok(Json(json!({ "device": addr.device })))
}

#[derive(Deserialize)]
struct Code {
    code: String,
}

async fn enter_code(State(s): State<Arc<Shared>>, Path(pn): Path<String>, Json(b): Json<Code>) -> ApiResult {
    let mut w = s.world();
    let a = w.account_by_pn(&pn)?;
    w.enter_link_code(a, &b.code)?;
    Ok(Json(json!({ "ok": true })))
}

#[derive(Deserialize)]
struct Send {
    to: String,
    #[serde(default)]
    text: Option<String>,
    /// Base64 image bytes.
    #[serde(default)]
    image_b64: Option<String>,
    #[serde(default)]
    mimetype: Option<String>,
    #[serde(default)]
    caption: Option<String>,
    /// With `text`: a reply quoting this message, sent as a phone sends one (an
    /// `extendedTextMessage` whose `contextInfo` names the quoted message's id, its sender and
    /// its content), per whatsmeow `proto/waE2E` `ContextInfo` (`stanzaID`, `participant`,
    /// `quotedMessage`) and Baileys `Utils/messages.ts` `generateWAMessageFromContent` (`quoted`).
    #[serde(default)]
    reply_to: Option<Quote>,
}

#[derive(Deserialize)]
struct Quote {
    /// WhatsApp id of the quoted message.
    id: String,
    /// Who sent it (default: `to`, the other side of a 1:1 chat).
    #[serde(default)]
    participant: Option<String>,
    /// Its text, carried as the quoted content.
    #[serde(default)]
    text: Option<String>,
}

async fn send(State(s): State<Arc<Shared>>, Path(pn): Path<String>, Json(b): Json<Send>) -> ApiResult {
    let to = parse_jid(&b.to)?;
    let mut w = s.world();
    let a = w.account_by_pn(&pn)?;
    let id = if let Some(img) = b.image_b64 {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(img)
            .map_err(|e| ApiError(StatusCode::BAD_REQUEST, format!("image_b64: {e}")))?;
        let mime = b.mimetype.unwrap_or_else(|| "image/png".into());
        w.phone_send_image(a, &to, &bytes, &mime, b.caption.as_deref())?
    } else {
        let text = b
            .text
            .ok_or_else(|| ApiError(StatusCode::BAD_REQUEST, "text or image_b64 is required".into()))?;
        let m = match b.reply_to {
            None => wa_proto::Message { conversation: Some(text), ..Default::default() },
            Some(q) => {
                let participant = match q.participant {
                    Some(p) => parse_jid(&p)?,
                    None => to.clone(),
                };
                let context = wa_proto::ContextInfo {
                    stanza_id: Some(q.id),
                    participant: Some(participant.to_string()),
                    quoted_message: Some(Box::new(wa_proto::Message {
                        conversation: q.text,
                        ..Default::default()
                    })),
                    ..Default::default()
                };
                wa_proto::Message {
                    extended_text_message: Some(Box::new(wa_proto::message::ExtendedTextMessage {
                        text: Some(text),
                        context_info: Some(Box::new(context)),
                        ..Default::default()
                    })),
                    ..Default::default()
                }
            }
        };
        w.phone_send(a, &to, &m)?
    };
    Ok(Json(json!({ "id": id })))
}

async fn inbox(State(s): State<Arc<Shared>>, Path(pn): Path<String>) -> ApiResult {
    let w = s.world();
    let a = w.account_by_pn(&pn)?;
    let p = &w.accounts[a].phone;
    Ok(Json(json!({ "messages": p.inbox, "receipts": p.receipts })))
}

#[derive(Deserialize)]
struct Read {
    ids: Vec<String>,
}

async fn mark_read(State(s): State<Arc<Shared>>, Path(pn): Path<String>, Json(b): Json<Read>) -> ApiResult {
    let mut w = s.world();
    let a = w.account_by_pn(&pn)?;
    w.phone_mark_read(a, &b.ids)?;
    Ok(Json(json!({ "ok": true })))
}

async fn mark_played(State(s): State<Arc<Shared>>, Path(pn): Path<String>, Json(b): Json<Read>) -> ApiResult {
    let mut w = s.world();
    let a = w.account_by_pn(&pn)?;
    w.phone_mark_played(a, &b.ids)?;
    Ok(Json(json!({ "ok": true })))
}

#[derive(Deserialize)]
struct React {
    chat: String,
    id: String,
    /// The emoji; empty removes the phone's reaction.
    emoji: String,
}

async fn react(State(s): State<Arc<Shared>>, Path(pn): Path<String>, Json(b): Json<React>) -> ApiResult {
    let chat = parse_jid(&b.chat)?;
    let mut w = s.world();
    let a = w.account_by_pn(&pn)?;
    let id = w.phone_react(a, &chat, &b.id, &b.emoji)?;
    Ok(Json(json!({ "id": id })))
}

#[derive(Deserialize)]
struct Retry {
    id: String,
}

async fn request_retry(
    State(s): State<Arc<Shared>>,
    Path(pn): Path<String>,
    Json(b): Json<Retry>,
) -> ApiResult {
    let mut w = s.world();
    let a = w.account_by_pn(&pn)?;
    w.phone_request_retry(a, &b.id)?;
    Ok(Json(json!({ "ok": true })))
}

/// Ids of the messages a device of the account acknowledged, oldest first.
async fn device_acked(State(s): State<Arc<Shared>>, Path((pn, device)): Path<(String, u16)>) -> ApiResult {
    let w = s.world();
    let a = w.account_by_pn(&pn)?;
    let ids = w.device_acked(a, device)?;
    Ok(Json(json!({ "ids": ids })))
}

/// Stanzas delivered to a device and not yet acknowledged.
async fn device_in_flight(
    State(s): State<Arc<Shared>>,
    Path((pn, device)): Path<(String, u16)>,
) -> ApiResult {
    let w = s.world();
    let account = w.account_by_pn(&pn)?;
    let items = w.in_flight_of(DeviceAddr { account, device });
    let items: Vec<_> =
        items.into_iter().map(|(tag, id, ty)| json!({"tag": tag, "id": id, "type": ty})).collect();
    Ok(Json(json!({ "in_flight": items })))
}

#[derive(Deserialize)]
struct Picture {
    #[serde(default)]
    remove: bool,
}

async fn picture(State(s): State<Arc<Shared>>, Path(pn): Path<String>, Json(b): Json<Picture>) -> ApiResult {
    let mut w = s.world();
    let a = w.account_by_pn(&pn)?;
    let id = w.phone_set_picture(a, b.remove);
    Ok(Json(json!({ "id": id })))
}

#[derive(Deserialize)]
struct About {
    text: String,
}

async fn about(State(s): State<Arc<Shared>>, Path(pn): Path<String>, Json(b): Json<About>) -> ApiResult {
    let mut w = s.world();
    let a = w.account_by_pn(&pn)?;
    w.phone_set_about(a, &b.text);
    Ok(Json(json!({ "ok": true })))
}

#[derive(Deserialize)]
struct AppState {
    collections: Vec<String>,
}

async fn app_state(
    State(s): State<Arc<Shared>>,
    Path(pn): Path<String>,
    Json(b): Json<AppState>,
) -> ApiResult {
    let mut w = s.world();
    let a = w.account_by_pn(&pn)?;
    let names: Vec<&str> = b.collections.iter().map(String::as_str).collect();
    let versions = w.phone_change_app_state(a, &names)?;
    let versions: Vec<_> = versions.into_iter().map(|(n, v)| json!({"name": n, "version": v})).collect();
    Ok(Json(json!({ "collections": versions })))
}

/// One change the phone makes to its app state (see `appstate`).
#[derive(Deserialize)]
struct AppStateAction {
    /// `archive`, `pin`, `mute`, `mark_read` or `contact`.
    action: String,
    /// The chat (or, for `contact`, the contact's JID).
    chat: String,
    /// On or off (archived, pinned, muted, read); ignored by `contact`.
    #[serde(default)]
    value: bool,
    /// `mute`: until when (ms since the epoch; absent: always).
    until_ms: Option<i64>,
    /// `contact`: the full name.
    name: Option<String>,
}

async fn app_state_action(
    State(s): State<Arc<Shared>>,
    Path(pn): Path<String>,
    Json(b): Json<AppStateAction>,
) -> ApiResult {
    use wa_appstate::action as build;
    let mut w = s.world();
    let a = w.account_by_pn(&pn)?;
    let now_ms = i64::try_from(w.now()).unwrap_or(i64::MAX).saturating_mul(1000);
    let chat = b.chat.as_str();
    let m = match b.action.as_str() {
        "archive" => build::archive(chat, b.value, &[], now_ms),
        "pin" => build::pin(chat, b.value, now_ms),
        "mute" => build::mute(chat, b.value.then_some(b.until_ms.unwrap_or(-1)), now_ms),
        "mark_read" => build::mark_read(chat, b.value, &[], now_ms),
        "contact" => build::contact(chat, b.name.as_deref().unwrap_or_default(), None, now_ms),
        other => return Err(ControlError::BadAppState(format!("unknown action {other:?}")).into()),
    };
    let collection = m.collection.as_str();
    let version = w.phone_app_state_mutation(a, &[m])?;
    Ok(Json(json!({ "collection": collection, "version": version })))
}

#[derive(Deserialize)]
struct CallReq {
    to: String,
    #[serde(default)]
    video: bool,
}

async fn call(State(s): State<Arc<Shared>>, Path(pn): Path<String>, Json(b): Json<CallReq>) -> ApiResult {
    let to = parse_jid(&b.to)?;
    let mut w = s.world();
    let a = w.account_by_pn(&pn)?;
    let call_id = w.phone_call(a, &to, b.video)?;
    Ok(Json(json!({ "call_id": call_id })))
}

#[derive(Deserialize)]
struct EndCall {
    call_id: String,
    #[serde(default)]
    reason: Option<String>,
}

async fn end_call(State(s): State<Arc<Shared>>, Path(pn): Path<String>, Json(b): Json<EndCall>) -> ApiResult {
    let mut w = s.world();
    let a = w.account_by_pn(&pn)?;
    w.phone_end_call(a, &b.call_id, b.reason.as_deref())?;
    Ok(Json(json!({ "ok": true })))
}

#[derive(Deserialize)]
struct TextTo {
    to: String,
    text: String,
}

async fn send_phone_only(
    State(s): State<Arc<Shared>>,
    Path(pn): Path<String>,
    Json(b): Json<TextTo>,
) -> ApiResult {
    let to = parse_jid(&b.to)?;
    let mut w = s.world();
    let a = w.account_by_pn(&pn)?;
    let id = w.phone_send_to_phone_only(a, &to, &b.text)?;
    Ok(Json(json!({ "id": id })))
}

async fn appdata(State(s): State<Arc<Shared>>, Path(pn): Path<String>, Json(b): Json<TextTo>) -> ApiResult {
    let to = parse_jid(&b.to)?;
    let mut w = s.world();
    let a = w.account_by_pn(&pn)?;
    let m = wa_proto::Message { conversation: Some(b.text), ..Default::default() };
    let id = w.phone_send_appdata(a, &to, &m)?;
    Ok(Json(json!({ "id": id })))
}

#[derive(Deserialize)]
struct Dirty {
    r#type: String,
}

async fn dirty(State(s): State<Arc<Shared>>, Path(pn): Path<String>, Json(b): Json<Dirty>) -> ApiResult {
    let mut w = s.world();
    let a = w.account_by_pn(&pn)?;
    w.mark_dirty(a, &b.r#type);
    Ok(Json(json!({ "ok": true })))
}

#[derive(Deserialize)]
struct GroupReceipts {
    id: String,
    #[serde(default)]
    r#type: Option<String>,
    readers: Vec<String>,
}

async fn group_receipts(
    State(s): State<Arc<Shared>>,
    Path(gid): Path<String>,
    Json(b): Json<GroupReceipts>,
) -> ApiResult {
    let mut w = s.world();
    let r = b.readers.iter().map(|p| w.account_by_pn(p)).collect::<Result<Vec<_>, _>>()?;
    w.group_receipts(gid.trim_end_matches("@g.us"), &b.id, b.r#type.as_deref(), &r)?;
    Ok(Json(json!({ "ok": true })))
}

#[derive(Deserialize)]
struct RemoveDevice {
    device: u16,
}

async fn remove_device(
    State(s): State<Arc<Shared>>,
    Path(pn): Path<String>,
    Json(b): Json<RemoveDevice>,
) -> ApiResult {
    let mut w = s.world();
    let a = w.account_by_pn(&pn)?;
    w.remove_device(DeviceAddr { account: a, device: b.device }, "primary_removed");
    Ok(Json(json!({ "ok": true })))
}

async fn reinstall(State(s): State<Arc<Shared>>, Path(pn): Path<String>) -> ApiResult {
    let mut w = s.world();
    let a = w.account_by_pn(&pn)?;
    w.phone_reinstall(a)?;
    Ok(Json(json!({ "ok": true })))
}

#[derive(Deserialize)]
struct NewGroup {
    creator: String,
    subject: String,
    members: Vec<String>,
    /// `"lid"` for a LID-addressed group; phone-number addressing otherwise.
    #[serde(default)]
    addressing: Option<String>,
}

async fn create_group(State(s): State<Arc<Shared>>, Json(b): Json<NewGroup>) -> ApiResult {
    let mut w = s.world();
    let c = w.account_by_pn(&b.creator)?;
    let m = b.members.iter().map(|p| w.account_by_pn(p)).collect::<Result<Vec<_>, _>>()?;
    let lid = match b.addressing.as_deref() {
        None | Some("pn") => false,
        Some("lid") => true,
        Some(other) => {
            return Err(ApiError(
                StatusCode::BAD_REQUEST,
                format!("addressing {other:?}: \"pn\" or \"lid\""),
            ));
        }
    };
    let jid = w.create_group_with(c, &b.subject, &m, lid);
    Ok(Json(json!({ "jid": jid.to_string() })))
}

#[derive(Deserialize)]
struct AddToGroup {
    actor: String,
    members: Vec<String>,
}

async fn add_to_group(
    State(s): State<Arc<Shared>>,
    Path(gid): Path<String>,
    Json(b): Json<AddToGroup>,
) -> ApiResult {
    let mut w = s.world();
    let a = w.account_by_pn(&b.actor)?;
    let m = b.members.iter().map(|p| w.account_by_pn(p)).collect::<Result<Vec<_>, _>>()?;
    let gid = gid.trim_end_matches("@g.us");
    w.group_participants(a, gid, "add", &m)?;
    Ok(Json(json!({ "ok": true })))
}

/// A fault request: which connection (by id, or by account + device), and what to do.
#[derive(Deserialize)]
struct FaultReq {
    #[serde(default)]
    conn: Option<u64>,
    #[serde(default)]
    pn: Option<String>,
    #[serde(default)]
    device: Option<u16>,
    /// close | stream_error | delay | drop | corrupt | refuse_logins
    kind: String,
    #[serde(default)]
    code: Option<u16>,
    #[serde(default)]
    ms: Option<u64>,
    #[serde(default)]
    count: Option<u32>,
    #[serde(default)]
    seconds: Option<u64>,
    /// For drop/corrupt: only stanzas with this tag.
    #[serde(default)]
    tag: Option<String>,
}

fn target_conn(w: &World, f: &FaultReq) -> Result<u64, ApiError> {
    if let Some(c) = f.conn {
        return Ok(c);
    }
    let pn =
        f.pn.as_deref().ok_or_else(|| ApiError(StatusCode::BAD_REQUEST, "conn or pn is required".into()))?;
    let account = w.account_by_pn(pn)?;
    let device = match f.device {
        Some(d) => d,
        None => w.accounts[account]
            .devices
            .values()
            .find(|d| d.conn.is_some())
            .map(|d| d.id)
            .ok_or_else(|| ControlError::DeviceOffline(pn.to_owned()))?,
    };
    Ok(w.conn_of(DeviceAddr { account, device })
        .ok_or_else(|| ControlError::DeviceOffline(format!("{pn}:{device}")))?)
}

async fn fault(State(s): State<Arc<Shared>>, Json(f): Json<FaultReq>) -> ApiResult {
    let mut w = s.world();
    if f.kind == "refuse_logins" {
        let secs = f.seconds.unwrap_or(60);
        w.policy.refuse_logins_until = w.now() + secs;
        return Ok(Json(json!({ "ok": true, "until": w.policy.refuse_logins_until })));
    }
    let conn = target_conn(&w, &f)?;
    if !w.conns.contains_key(&conn) {
        return Err(ControlError::UnknownConn(conn).into());
    }
    match f.kind.as_str() {
        "close" => w.close(conn),
        "stream_error" => w.send_and_close(conn, stream_error(f.code.unwrap_or(515))),
        "delay" => w.fault(conn, Fault::DelayFrames(Duration::from_millis(f.ms.unwrap_or(1000))))?,
        "drop" => {
            w.fault(conn, Fault::DropStanzas { count: f.count.unwrap_or(1), only_tag: f.tag.clone() })?
        }
        "corrupt" => {
            w.fault(conn, Fault::CorruptFrames { count: f.count.unwrap_or(1), only_tag: f.tag.clone() })?
        }
        other => return Err(ApiError(StatusCode::BAD_REQUEST, format!("unknown fault kind {other:?}"))),
    }
    Ok(Json(json!({ "ok": true, "conn": conn })))
}

async fn events(State(s): State<Arc<Shared>>) -> ApiResult {
    let w = s.world();
    Ok(Json(json!({ "events": w.events })))
}
