//! Acting on a message through the API: react, edit, delete for everyone, mark read; typing
//! and recording indicators; and the typed contents a send can carry (location, contact card,
//! poll). The service functions check the account and the target, hand the action to the
//! runtime, then record it on the target ([`super::updates`]).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa::ToSchema;

use super::updates::{self, Action, Actor};
use super::{StoredMessage, load, parse_recipient};
use crate::account_state::AccountState;
use crate::auth::{Permission, Principal};
use crate::db::{OptionalExtension, params};
use crate::error::{ApiError, ApiJson};
use crate::runtime::{
    ChatState, ContactCard, Location, MediaKind, MessageTarget, OutgoingContent, Poll, RuntimeError,
};
use crate::state::AppState;

/// Most options in a poll (WhatsApp's own limit).
pub const MAX_POLL_OPTIONS: usize = 12;
/// Longest vCard accepted.
pub const MAX_VCARD_BYTES: usize = 64 * 1024;

fn runtime(st: &AppState) -> Result<std::sync::Arc<dyn crate::runtime::AccountRuntime>, ApiError> {
    st.runtime.clone().ok_or_else(|| ApiError::Unavailable("no WhatsApp runtime is configured".into()))
}

fn runtime_error(e: RuntimeError) -> ApiError {
    match e {
        RuntimeError::NotRunning => ApiError::Conflict {
            code: "account_not_connected",
            message: "the account's session is not running; reconnect it".into(),
        },
        e => ApiError::Unavailable(format!("WhatsApp refused or failed: {e}")),
    }
}

/// 404 for an unknown account, 409 for one that is not active.
pub(crate) async fn require_active(st: &AppState, tenant_id: &str, account_id: &str) -> Result<(), ApiError> {
    let (t, a) = (tenant_id.to_owned(), account_id.to_owned());
    let state = st
        .db
        .call(move |c| {
            c.query_row("SELECT state FROM accounts WHERE tenant_id = ?1 AND id = ?2", params![t, a], |r| {
                r.get::<String>(0)
            })
            .optional()
        })
        .await?
        .ok_or(ApiError::NotFound("account"))?;
    if state != AccountState::Active.as_str() {
        return Err(ApiError::Conflict {
            code: "account_not_active",
            message: format!("account is {state}; connect it first"),
        });
    }
    Ok(())
}

/// A message of the account by our id or WhatsApp's, with what WhatsApp keys it by.
struct Target {
    message: StoredMessage,
    key: MessageTarget,
}

async fn target(
    st: &AppState,
    tenant_id: &str,
    account_id: &str,
    message_id: &str,
) -> Result<Target, ApiError> {
    let (t, a, m) = (tenant_id.to_owned(), account_id.to_owned(), message_id.to_owned());
    let found = st
        .db
        .call(move |c| {
            let id: Option<String> = c
                .query_row(
                    "SELECT id FROM messages WHERE tenant_id = ?1 AND account_id = ?2
                       AND (id = ?3 OR wa_message_id = ?3) LIMIT 1",
                    params![t, a, m],
                    |r| r.get(0),
                )
                .optional()?;
            match id {
                Some(id) => load(c, &t, &id),
                None => Ok(None),
            }
        })
        .await?
        .ok_or(ApiError::NotFound("message"))?;
    let wa_id = found.wa_message_id.clone().ok_or_else(|| ApiError::Conflict {
        code: "message_not_sent",
        message: "the message has no WhatsApp id yet (not sent)".into(),
    })?;
    let from_me = found.direction == "outgoing";
    let key = MessageTarget::new(
        wa_id,
        found.chat.clone(),
        found.chat_lid.clone(),
        from_me,
        if from_me { None } else { found.sender.clone() },
    );
    Ok(Target { message: found, key })
}

/// Sends `action` on the message `message_id` and records it on the message; returns the
/// message after the change.
pub async fn act(
    st: &AppState,
    tenant_id: &str,
    account_id: &str,
    message_id: &str,
    action: Action,
) -> Result<StoredMessage, ApiError> {
    let rt = runtime(st)?;
    let t = target(st, tenant_id, account_id, message_id).await?;
    if t.message.revoked {
        return Err(ApiError::Conflict {
            code: "message_revoked",
            message: "the message was deleted".into(),
        });
    }
    let content = match &action {
        Action::React(emoji) => {
            if emoji.chars().count() > 16 {
                return Err(ApiError::bad("invalid_emoji", "emoji must be one emoji (or empty to remove)"));
            }
            OutgoingContent::Reaction { target: t.key.clone(), emoji: emoji.clone() }
        }
        Action::Edit(_) | Action::Revoke if !t.key.from_me => {
            return Err(ApiError::Conflict {
                code: "not_own_message",
                message: "only messages this account sent can be edited or deleted for everyone".into(),
            });
        }
        Action::Edit(text) => {
            super::check_text(text)?;
            // Text, and the captions of the media kinds that carry one.
            let media = match MediaKind::parse(&t.message.kind) {
                None if t.message.kind == "text" => None,
                Some(k @ (MediaKind::Image | MediaKind::Video | MediaKind::Document)) => Some(k),
                _ => {
                    return Err(ApiError::Conflict {
                        code: "not_editable",
                        message: "only text messages and image, video and document captions can be edited"
                            .into(),
                    });
                }
            };
            OutgoingContent::Edit { target: t.key.clone(), text: text.clone(), media }
        }
        Action::Revoke => OutgoingContent::Revoke { target: t.key.clone() },
    };
    require_active(st, tenant_id, account_id).await?;
    rt.send(tenant_id, account_id, &t.message.chat, content).await.map_err(runtime_error)?;
    let now = st.clock.now_ms();
    let (tn, a, chat, wa_id) =
        (tenant_id.to_owned(), account_id.to_owned(), t.message.chat.clone(), t.key.id.clone());
    let id = t.message.id.clone();
    let (event, msg) = st
        .db
        .call(move |c| {
            let ev = updates::apply(c, &tn, &a, &wa_id, None, &Actor::me(&chat, now), &action)?;
            Ok((ev, load(c, &tn, &id)?))
        })
        .await?;
    st.outbox_notify.notify_one();
    if let Some((name, data)) = event {
        st.live.publish(tenant_id, Some(account_id), name, data, now);
    }
    msg.ok_or(ApiError::NotFound("message"))
}

/// Sends read receipts for received messages (by our ids or WhatsApp's). Messages we sent, or
/// not yet known, are refused.
pub async fn mark_read(
    st: &AppState,
    tenant_id: &str,
    account_id: &str,
    message_ids: &[String],
) -> Result<(), ApiError> {
    let rt = runtime(st)?;
    let mut keys = Vec::with_capacity(message_ids.len());
    for id in message_ids {
        let t = target(st, tenant_id, account_id, id).await?;
        if t.key.from_me {
            return Err(ApiError::Conflict {
                code: "not_received",
                message: format!("`{id}` was sent by this account; only received messages are marked read"),
            });
        }
        keys.push(t.key);
    }
    require_active(st, tenant_id, account_id).await?;
    rt.mark_read(tenant_id, account_id, &keys).await.map_err(runtime_error)
}

/// Shows typing or recording (or stops) in a chat.
pub async fn chat_state(
    st: &AppState,
    tenant_id: &str,
    account_id: &str,
    to: &str,
    state: ChatState,
) -> Result<(), ApiError> {
    let rt = runtime(st)?;
    let r = parse_recipient(to)?;
    require_active(st, tenant_id, account_id).await?;
    rt.send_chat_state(tenant_id, account_id, &r.to, state).await.map_err(runtime_error)
}

// ---------------------------------------------------------------------------------------------
// Typed contents of a send

/// A contact card to send: the vCard itself, or a name and a phone number to make one of.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContactInput {
    /// The name shown on the card (1 to 256 characters).
    pub display_name: String,
    /// A vCard (`BEGIN:VCARD` … `END:VCARD`, at most 64 KiB). Exactly one of `vcard` and `phone`.
    pub vcard: Option<String>,
    /// A phone number (any common format): a vCard 3.0 with its WhatsApp id is made of it.
    pub phone: Option<String>,
}

fn check_len(what: &str, s: &str, max: usize) -> Result<(), ApiError> {
    if s.trim().is_empty() || s.chars().count() > max {
        return Err(ApiError::bad("invalid_body", format!("{what} must be 1 to {max} characters")));
    }
    Ok(())
}

pub fn location(l: Location) -> Result<Location, ApiError> {
    // `contains` is false for NaN; infinities are out of range.
    let in_range = (-90.0..=90.0).contains(&l.latitude) && (-180.0..=180.0).contains(&l.longitude);
    if !in_range {
        return Err(ApiError::bad(
            "invalid_location",
            "latitude must be -90 to 90 and longitude -180 to 180",
        ));
    }
    if let Some(n) = &l.name {
        check_len("location.name", n, 1000)?;
    }
    if let Some(a) = &l.address {
        check_len("location.address", a, 1000)?;
    }
    Ok(l)
}

/// vCard text escaping (RFC 6350 §3.4) for a value.
fn vcard_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace(',', "\\,").replace(';', "\\;").replace('\n', "\\n")
}

pub fn contact(c: ContactInput) -> Result<ContactCard, ApiError> {
    check_len("contact.display_name", &c.display_name, 256)?;
    let vcard = match (c.vcard, c.phone) {
        (Some(v), None) => {
            let t = v.trim();
            if v.len() > MAX_VCARD_BYTES
                || !t.to_ascii_uppercase().starts_with("BEGIN:VCARD")
                || !t.to_ascii_uppercase().ends_with("END:VCARD")
            {
                return Err(ApiError::bad(
                    "invalid_contact",
                    "vcard must be BEGIN:VCARD … END:VCARD, at most 64 KiB",
                ));
            }
            v
        }
        (None, Some(p)) => {
            let e164 = crate::phone::E164::parse(&p)?;
            let d = e164.digits();
            // The `waid` parameter is how WhatsApp's apps link a card's number to the account
            // (whatsmeow and Baileys examples build cards this way).
            format!(
                "BEGIN:VCARD\nVERSION:3.0\nFN:{}\nTEL;type=CELL;type=VOICE;waid={d}:+{d}\nEND:VCARD",
                vcard_escape(&c.display_name)
            )
        }
        _ => {
            return Err(ApiError::bad("invalid_contact", "contact needs exactly one of `vcard` and `phone`"));
        }
    };
    Ok(ContactCard { display_name: c.display_name, vcard })
}

pub fn poll(p: Poll) -> Result<Poll, ApiError> {
    check_len("poll.name", &p.name, 255)?;
    if p.options.len() < 2 || p.options.len() > MAX_POLL_OPTIONS {
        return Err(ApiError::bad("invalid_poll", format!("a poll has 2 to {MAX_POLL_OPTIONS} options")));
    }
    for (i, o) in p.options.iter().enumerate() {
        check_len("each poll option", o, 100)?;
        if p.options[..i].contains(o) {
            return Err(ApiError::bad("invalid_poll", format!("option `{o}` is listed twice")));
        }
    }
    if p.selectable_count as usize > p.options.len() {
        return Err(ApiError::bad(
            "invalid_poll",
            "selectable_count must be 0 (any) to the number of options",
        ));
    }
    Ok(p)
}

// ---------------------------------------------------------------------------------------------
// HTTP

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReactRequest {
    /// One emoji; empty removes this account's reaction.
    pub emoji: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EditRequest {
    /// The new text, or for an image, video or document the new caption.
    pub text: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReadRequest {
    /// Received messages to mark read (our ids or WhatsApp's), 1 to 100; one chat or several.
    pub message_ids: Vec<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChatStateRequest {
    /// The chat: a phone number or a JID.
    pub to: String,
    pub state: ChatState,
}

/// Reacts to a message (sent or received) with an emoji; `message_reaction` follows.
#[utoipa::path(post, path = "/api/v1/accounts/{id}/messages/{message_id}/reaction", tag = "messages",
    params(("id" = String, Path), ("message_id" = String, Path, description = "our id or WhatsApp's")),
    request_body = ReactRequest,
    responses((status = 200, body = StoredMessage), (status = 400, body = crate::error::ErrorBody),
              (status = 404, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody),
              (status = 503, body = crate::error::ErrorBody)),
    security(("api_key" = [])))]
pub async fn react(
    State(st): State<AppState>,
    p: Principal,
    Path((id, message_id)): Path<(String, String)>,
    ApiJson(req): ApiJson<ReactRequest>,
) -> Result<Json<StoredMessage>, ApiError> {
    p.require(Permission::Send)?;
    act(&st, &p.tenant_id, &id, &message_id, Action::React(req.emoji)).await.map(Json)
}

/// Edits a text message this account sent, or the caption of its image, video or document
/// (other kinds: 409 `not_editable`); `message_edited` follows.
#[utoipa::path(patch, path = "/api/v1/accounts/{id}/messages/{message_id}", tag = "messages",
    params(("id" = String, Path), ("message_id" = String, Path, description = "our id or WhatsApp's")),
    request_body = EditRequest,
    responses((status = 200, body = StoredMessage), (status = 400, body = crate::error::ErrorBody),
              (status = 404, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody),
              (status = 503, body = crate::error::ErrorBody)),
    security(("api_key" = [])))]
pub async fn edit(
    State(st): State<AppState>,
    p: Principal,
    Path((id, message_id)): Path<(String, String)>,
    ApiJson(req): ApiJson<EditRequest>,
) -> Result<Json<StoredMessage>, ApiError> {
    p.require(Permission::Send)?;
    act(&st, &p.tenant_id, &id, &message_id, Action::Edit(req.text)).await.map(Json)
}

/// Deletes a message this account sent, for everyone; `message_revoked` follows. The stored
/// message stays, flagged `revoked`.
#[utoipa::path(delete, path = "/api/v1/accounts/{id}/messages/{message_id}", tag = "messages",
    params(("id" = String, Path), ("message_id" = String, Path, description = "our id or WhatsApp's")),
    responses((status = 200, body = StoredMessage), (status = 404, body = crate::error::ErrorBody),
              (status = 409, body = crate::error::ErrorBody), (status = 503, body = crate::error::ErrorBody)),
    security(("api_key" = [])))]
pub async fn revoke(
    State(st): State<AppState>,
    p: Principal,
    Path((id, message_id)): Path<(String, String)>,
) -> Result<Json<StoredMessage>, ApiError> {
    p.require(Permission::Send)?;
    act(&st, &p.tenant_id, &id, &message_id, Action::Revoke).await.map(Json)
}

/// Sends read receipts (blue ticks) for received messages.
#[utoipa::path(post, path = "/api/v1/accounts/{id}/messages/read", tag = "messages",
    params(("id" = String, Path)), request_body = ReadRequest,
    responses((status = 204, description = "receipts sent"), (status = 400, body = crate::error::ErrorBody),
              (status = 404, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody),
              (status = 503, body = crate::error::ErrorBody)),
    security(("api_key" = [])))]
pub async fn read(
    State(st): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<ReadRequest>,
) -> Result<StatusCode, ApiError> {
    p.require(Permission::Send)?;
    if req.message_ids.is_empty() || req.message_ids.len() > 100 {
        return Err(ApiError::bad("invalid_body", "message_ids must list 1 to 100 messages"));
    }
    mark_read(&st, &p.tenant_id, &id, &req.message_ids).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Shows this account typing or recording a voice note in a chat, or stops it (`paused`).
#[utoipa::path(post, path = "/api/v1/accounts/{id}/chat-state", tag = "messages",
    params(("id" = String, Path)), request_body = ChatStateRequest,
    responses((status = 204, description = "sent"), (status = 400, body = crate::error::ErrorBody),
              (status = 404, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody),
              (status = 503, body = crate::error::ErrorBody)),
    security(("api_key" = [])))]
pub async fn set_chat_state(
    State(st): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<ChatStateRequest>,
) -> Result<StatusCode, ApiError> {
    p.require(Permission::Send)?;
    chat_state(&st, &p.tenant_id, &id, &req.to, req.state).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_contents_are_checked() {
        let ok = Location { latitude: 52.52, longitude: 13.405, name: Some("Berlin".into()), address: None };
        assert!(location(ok.clone()).is_ok());
        assert!(location(Location { latitude: 91.0, ..ok.clone() }).is_err());
        assert!(location(Location { longitude: f64::NAN, ..ok }).is_err());
        let c = contact(ContactInput {
            display_name: "Ann; B".into(),
            vcard: None,
            phone: Some("+1 555 000 1234".into()),
        })
        .unwrap();
        assert!(c.vcard.contains("FN:Ann\\; B\n"), "{}", c.vcard);
        assert!(c.vcard.contains("waid=15550001234:+15550001234"), "{}", c.vcard);
        assert!(
            contact(ContactInput { display_name: "A".into(), vcard: Some("hello".into()), phone: None })
                .is_err()
        );
        assert!(contact(ContactInput { display_name: "A".into(), vcard: None, phone: None }).is_err());
        let p = |opts: &[&str], n| Poll {
            name: "Q?".into(),
            options: opts.iter().map(|s| s.to_string()).collect(),
            selectable_count: n,
        };
        assert!(poll(p(&["a", "b"], 1)).is_ok());
        assert!(poll(p(&["a"], 1)).is_err());
        assert!(poll(p(&["a", "a"], 1)).is_err());
        assert!(poll(p(&["a", "b"], 3)).is_err());
    }
}
