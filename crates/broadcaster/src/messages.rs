//! Messages: sending (the one path used by the REST API and the campaign engine), history with
//! delivery status, incoming messages, receipts, media download and the is-on-WhatsApp check.
//!
//! Status moves `pending → sent → delivered → read → played` (never backwards) or to `failed`.
//! Receipts can beat the send call's own bookkeeping (a fast recipient acknowledges before we
//! stored the WhatsApp id): such receipts wait in `early_receipts` and are applied on record.

use crate::db::{OptionalExtension, Row, params};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::account_state::AccountState;
use crate::accounts::new_contacts::{self, FirstContact};
use crate::auth::{Permission, Principal};
use crate::clock::new_id;
use crate::error::{ApiError, ApiJson, ApiQuery};
use crate::outbox;
use crate::runtime::{
    ContactCard, DeliveryStatus, Location, MediaKind, MessageDetail, OutgoingContent, Poll, RuntimeError,
};

pub mod actions;
pub mod actor;
pub mod polls;
pub mod updates;
pub mod usage;
use crate::state::AppState;

/// How long the request that wrote a single send owns its row before the bulk sender's `tick`
/// may send it again (the request was dropped without recording an outcome). Longer than any
/// send takes.
pub const SINGLE_SEND_LEASE_MS: i64 = 600_000;
/// How soon a send whose outcome is unknown ([`RuntimeError::Unconfirmed`]) goes out again
/// under its WhatsApp id, unless a receipt settles it first.
pub const UNCONFIRMED_RETRY_MS: i64 = 5_000;

/// Longest text body accepted.
pub const MAX_TEXT_CHARS: usize = 65_536;
/// Most numbers in one is-on-WhatsApp request.
pub const MAX_CHECK_NUMBERS: usize = 50;
const DAY_MS: i64 = 86_400_000;

/// A recorded message, either direction.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StoredMessage {
    /// Our id (`msg_…`).
    pub id: String,
    pub account_id: String,
    /// `outgoing` or `incoming`.
    pub direction: String,
    /// The chat JID: a group, or for a 1:1 chat the contact's phone-number JID when known (one
    /// chat per contact whether WhatsApp addressed it by number or by LID), else its LID.
    pub chat: String,
    /// The 1:1 chat's phone-number JID, when known.
    pub chat_pn: Option<String>,
    /// The 1:1 chat's LID (`…@lid`), when known.
    pub chat_lid: Option<String>,
    /// Sender JID (incoming): its phone-number JID when known, else its LID.
    pub sender: Option<String>,
    /// The sender's phone-number JID (incoming, when known).
    pub sender_pn: Option<String>,
    /// The sender's LID (incoming, when known).
    pub sender_lid: Option<String>,
    /// Sender phone in E.164 (incoming, when known).
    pub sender_phone: Option<String>,
    pub push_name: Option<String>,
    /// The name the account's phone shows for the sender (incoming): saved in its address
    /// book, else its push name as history sync carried it. Filled in history and chat
    /// listings.
    #[serde(default)]
    pub sender_name: Option<String>,
    /// WhatsApp's message id once sent or received.
    pub wa_message_id: Option<String>,
    /// `text` or a media kind.
    pub kind: String,
    /// Text, or the media caption.
    pub body: Option<String>,
    pub media: Option<MediaMeta>,
    /// Our id of the message this one replies to (when we hold it).
    pub quoted_id: Option<String>,
    /// WhatsApp's id of the message this one replies to, also when we do not hold it.
    pub quoted_wa_message_id: Option<String>,
    /// Kind `location`: the place.
    pub location: Option<Location>,
    /// Kind `contact`: the card.
    pub contact: Option<ContactCard>,
    /// Kind `poll`: the question and options.
    pub poll: Option<Poll>,
    /// Kind `poll`: the votes so far, counted per option, and each voter's current vote.
    pub poll_results: Option<polls::PollResults>,
    /// Reactions, one per sender (the latest; a removed one is gone).
    pub reactions: Vec<Reaction>,
    /// Earlier texts, oldest first, when the sender edited it (`body` is the current one).
    pub edits: Vec<Edit>,
    pub edited_at: Option<i64>,
    /// Deleted for everyone by its sender (`body` and media are kept here).
    pub revoked: bool,
    pub revoked_at: Option<i64>,
    /// `pending`, `sent`, `delivered`, `read`, `played`, `failed` (outgoing) or `received`.
    pub status: String,
    pub attempts: i64,
    pub error: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub sent_at: Option<i64>,
    pub delivered_at: Option<i64>,
    pub read_at: Option<i64>,
    pub played_at: Option<i64>,
    pub failed_at: Option<i64>,
}

/// A reaction to a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Reaction {
    /// Who reacted: a JID (phone-number one when known), or `me` for this account.
    pub sender: String,
    pub emoji: String,
    /// When (ms since epoch).
    pub at: i64,
}

/// An earlier text of an edited message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Edit {
    /// The text before this edit.
    pub body: Option<String>,
    /// When it was replaced (ms since epoch).
    pub at: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MediaMeta {
    pub mimetype: Option<String>,
    pub file_name: Option<String>,
    pub size: Option<i64>,
    /// Whether `GET …/media` can serve the bytes.
    pub downloadable: bool,
}

/// The columns [`from_row`] reads, over `messages m`. The quoted message is looked up by
/// account, direction and WhatsApp id so that it uses `messages_wa_id` (both directions named:
/// an unconstrained middle column would make it a scan of the account's messages).
macro_rules! columns {
    () => {
        "m.id, m.account_id, m.direction, m.chat_jid, m.sender_jid, m.sender_phone, m.push_name,
    m.wa_message_id, m.kind, m.body, m.media_mimetype, m.media_file_name, m.media_size,
    (SELECT q.id FROM messages q WHERE q.account_id = m.account_id AND q.direction IN ('outgoing', 'incoming')
       AND q.wa_message_id = m.quoted_id LIMIT 1),
    m.status, m.attempts, m.error, m.created_at, m.updated_at, m.sent_at, m.delivered_at, m.read_at,
    m.played_at, m.failed_at,
    (m.media_handle IS NOT NULL OR EXISTS (SELECT 1 FROM message_media d WHERE d.message_id = m.id)
     OR EXISTS (SELECT 1 FROM bulk_sends b WHERE b.id = m.bulk_id AND b.media_data IS NOT NULL)
     OR m.template_media_id IS NOT NULL),
    m.chat_lid, m.sender_lid, m.quoted_id, m.payload, m.reactions, m.edits, m.edited_at, m.revoked_at"
    };
}

/// One stored message by id ([`load`]).
pub(crate) const LOAD_SQL: &str =
    concat!("SELECT ", columns!(), " FROM messages m WHERE m.tenant_id = ?1 AND m.id = ?2");

/// A JID when it is a phone-number one.
fn pn_jid(jid: Option<&str>) -> Option<String> {
    jid.filter(|j| j.ends_with("@s.whatsapp.net")).map(str::to_owned)
}

/// A JSON column's value; a value this server did not write reads as absent (never fails a
/// history page).
fn json_col<T: serde::de::DeserializeOwned>(v: Option<String>) -> Option<T> {
    v.and_then(|s| serde_json::from_str(&s).ok())
}

fn from_row(r: &Row) -> crate::db::DbResult<StoredMessage> {
    let kind: String = r.get(8)?;
    let payload: Option<String> = r.get(28)?;
    let (location, contact, poll) = match kind.as_str() {
        "location" => (json_col(payload), None, None),
        "contact" => (None, json_col(payload), None),
        "poll" => (None, None, json_col::<polls::PollRecord>(payload)),
        _ => (None, None, None),
    };
    let poll_results = poll.as_ref().map(polls::PollRecord::results);
    let poll = poll.map(|p| p.poll);
    let revoked_at: Option<i64> = r.get(32)?;
    let media = MediaKind::parse(&kind).map(|_| -> crate::db::DbResult<MediaMeta> {
        Ok(MediaMeta {
            mimetype: r.get(10)?,
            file_name: r.get(11)?,
            size: r.get(12)?,
            downloadable: r.get(24)?,
        })
    });
    let chat: String = r.get(3)?;
    let sender: Option<String> = r.get(4)?;
    Ok(StoredMessage {
        id: r.get(0)?,
        account_id: r.get(1)?,
        direction: r.get(2)?,
        chat_pn: pn_jid(Some(&chat)),
        chat_lid: r.get(25)?,
        chat,
        sender_pn: pn_jid(sender.as_deref()),
        sender_lid: r.get(26)?,
        sender,
        sender_phone: r.get(5)?,
        push_name: r.get(6)?,
        sender_name: None,
        wa_message_id: r.get(7)?,
        kind,
        body: r.get(9)?,
        media: media.transpose()?,
        quoted_id: r.get(13)?,
        quoted_wa_message_id: r.get(27)?,
        location,
        contact,
        poll,
        poll_results,
        reactions: json_col(r.get(29)?).unwrap_or_default(),
        edits: json_col(r.get(30)?).unwrap_or_default(),
        edited_at: r.get(31)?,
        revoked: revoked_at.is_some(),
        revoked_at,
        status: r.get(14)?,
        attempts: r.get(15)?,
        error: r.get(16)?,
        created_at: r.get(17)?,
        updated_at: r.get(18)?,
        sent_at: r.get(19)?,
        delivered_at: r.get(20)?,
        read_at: r.get(21)?,
        played_at: r.get(22)?,
        failed_at: r.get(23)?,
    })
}

pub(crate) fn load(
    c: &crate::db::Conn,
    tenant_id: &str,
    id: &str,
) -> crate::db::DbResult<Option<StoredMessage>> {
    c.query_row(LOAD_SQL, params![tenant_id, id], from_row).optional()
}

/// A recipient as the runtime wants it (`to`) and as history records it (`chat`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient {
    pub to: String,
    pub chat: String,
}

/// Sets [`StoredMessage::sender_name`] on incoming messages whose sender the account's phone
/// names (by JID, else by LID); one look-up per sender.
pub fn fill_sender_names(
    c: &crate::db::Conn,
    tenant_id: &str,
    account_id: &str,
    messages: &mut [StoredMessage],
) -> crate::db::DbResult<()> {
    use crate::contacts::names::display_name;
    let mut known: std::collections::HashMap<String, Option<String>> = std::collections::HashMap::new();
    for m in messages.iter_mut().filter(|m| m.direction == "incoming") {
        let Some(sender) = m.sender.clone() else { continue };
        let name = match known.get(&sender) {
            Some(n) => n.clone(),
            None => {
                let mut n = display_name(c, tenant_id, account_id, &sender)?;
                if n.is_none()
                    && let Some(lid) = &m.sender_lid
                {
                    n = display_name(c, tenant_id, account_id, lid)?;
                }
                known.insert(sender, n.clone());
                n
            }
        };
        m.sender_name = name;
    }
    Ok(())
}

/// Parses a phone number (any common format, normalised to E.164) or a user/group JID.
pub fn parse_recipient(input: &str) -> Result<Recipient, ApiError> {
    let input = input.trim();
    if let Some((user, server)) = input.split_once('@') {
        let user_ok = !user.is_empty()
            && user.len() <= 64
            && user.chars().all(|c| c.is_ascii_digit() || c == '-')
            && !user.starts_with('-');
        let server_ok = matches!(server, "s.whatsapp.net" | "g.us" | "lid");
        if !user_ok || !server_ok {
            return Err(ApiError::bad(
                "invalid_recipient",
                format!("`{input}` is not a user JID (digits@s.whatsapp.net), LID or group JID (…@g.us)"),
            ));
        }
        return Ok(Recipient { to: input.to_owned(), chat: input.to_owned() });
    }
    let e164 = crate::phone::E164::parse(input)?;
    Ok(Recipient { to: e164.digits().to_owned(), chat: format!("{}@s.whatsapp.net", e164.digits()) })
}

/// Start of the current day in the IANA time zone `tz` and the start of the next (the next
/// local midnight, which DST can make 23 or 25 hours away), in ms. An unknown zone (not
/// possible for stored accounts: names are checked on input) counts in UTC.
pub(crate) fn day_window(now: i64, tz: &str) -> (i64, i64) {
    let utc = || {
        let start = now.div_euclid(DAY_MS) * DAY_MS;
        (start, start + DAY_MS)
    };
    let (Ok(zone), Ok(ts)) = (jiff::tz::TimeZone::get(tz), jiff::Timestamp::from_millisecond(now)) else {
        return utc();
    };
    let local = ts.to_zoned(zone);
    match (local.start_of_day(), local.tomorrow().and_then(|t| t.start_of_day())) {
        (Ok(start), Ok(next)) => (start.timestamp().as_millisecond(), next.timestamp().as_millisecond()),
        _ => utc(),
    }
}

pub use usage::{received_since, sent_since};

/// Daily usage of an account: (sent today, received today, when the counters reset).
pub fn usage_today(
    c: &crate::db::Conn,
    account_id: &str,
    time_zone: &str,
    now: i64,
) -> crate::db::DbResult<(i64, i64, i64)> {
    let (start, reset) = day_window(now, time_zone);
    let (sent, received) = usage::counted_since(c, account_id, start)?;
    Ok((sent, received, reset))
}

/// A reply's target named by our id: its WhatsApp id (by primary key).
pub(crate) const REPLY_TARGET_BY_ID_SQL: &str = "SELECT wa_message_id FROM messages
     WHERE id = ?3 AND tenant_id = ?1 AND account_id = ?2 AND wa_message_id IS NOT NULL";

/// A reply's target named by its WhatsApp id (by `messages_wa_id`, either direction).
pub(crate) const REPLY_TARGET_BY_WA_ID_SQL: &str = "SELECT wa_message_id FROM messages
     WHERE account_id = ?2 AND direction IN ('outgoing', 'incoming') AND wa_message_id = ?3 AND tenant_id = ?1
     LIMIT 1";

/// The stored kind, body and typed payload (JSON) of a message to send; `None` for actions on
/// another message (reactions, edits, revokes), which are not messages of their own.
fn kind_and_body(content: &OutgoingContent) -> Option<(&'static str, Option<String>, Option<String>)> {
    fn json<T: Serialize>(v: &T) -> Option<String> {
        serde_json::to_string(v).ok()
    }
    Some(match content {
        OutgoingContent::Text { body, .. } => ("text", Some(body.clone()), None),
        OutgoingContent::Media { kind, caption, .. } => (kind.as_str(), caption.clone(), None),
        OutgoingContent::Location { location, .. } => ("location", location.name.clone(), json(location)),
        OutgoingContent::Contact { card, .. } => ("contact", Some(card.display_name.clone()), json(card)),
        OutgoingContent::Poll { poll, secret } => (
            "poll",
            Some(poll.name.clone()),
            json(&polls::PollRecord::new(poll.clone(), Some(secret.as_slice()))),
        ),
        _ => return None,
    })
}

enum Admission {
    Admitted,
    NotFound,
    NotActive(AccountState),
    LimitReached { limit: i64, reset_at: i64 },
    NewContactLimitReached { limit: i64, reset_at: i64 },
    UnknownReplyTarget,
}

/// The 429 code of a first contact over the account's new-contact limit
/// ([`crate::accounts::new_contacts`]).
pub const NEW_CONTACT_LIMIT_REACHED: &str = "new_contact_limit_reached";

/// Sends `content` to `to` from the account: checks that the account is active and under its daily
/// limit, records a `pending` row, hands the message to the runtime, then records `sent` (with
/// WhatsApp's id) or `failed`, with a `message_sent` / `message_status_update` event. This is the
/// one send path: the REST API and the campaign engine both call it.
///
/// `OutgoingContent::Text::quoted_id` may be our message id or a WhatsApp id; it is resolved to
/// the WhatsApp id before the runtime sees it.
pub async fn send_message(
    st: &AppState,
    tenant_id: &str,
    account_id: &str,
    to: &str,
    content: OutgoingContent,
) -> Result<StoredMessage, ApiError> {
    send_message_as(st, tenant_id, account_id, to, content, None, None).await
}

/// [`send_message`] under a caller-chosen WhatsApp message id (campaigns: the same id on every
/// attempt for a recipient, so a repeat is one message to WhatsApp and the phone).
pub async fn send_message_as(
    st: &AppState,
    tenant_id: &str,
    account_id: &str,
    to: &str,
    content: OutgoingContent,
    wa_message_id: Option<&str>,
    stored_media_id: Option<&str>,
) -> Result<StoredMessage, ApiError> {
    let runtime = st.runtime.clone().ok_or_else(|| {
        ApiError::Unavailable("no WhatsApp runtime is configured; sending is not available".into())
    })?;
    let recipient = parse_recipient(to)?;
    let mut content = content;
    if let OutgoingContent::Text { body, .. } = &content {
        check_text(body)?;
    }
    let now = st.clock.now_ms();
    let id = new_id("msg");
    // The WhatsApp id is reserved with the row, so a resend after a crash is the same message.
    let wa_id = wa_message_id.map_or_else(crate::runtime::new_wa_message_id, str::to_owned);
    let (kind, body, payload) = kind_and_body(&content).ok_or_else(|| {
        ApiError::bad(
            "invalid_body",
            "reactions, edits and deletions act on a message; they are not sent as one",
        )
    })?;
    let (mimetype, file_name, size, data) = match &content {
        OutgoingContent::Media { mimetype, file_name, data, .. } => {
            (Some(mimetype.clone()), file_name.clone(), Some(data.len() as i64), Some(data.clone()))
        }
        _ => (None, None, None, None),
    };
    // A file already stored once (a campaign's template media) is referenced, not copied per
    // recipient: 5,000 recipients of a 1 MB image would otherwise write 5 GB.
    let stored_media_id = stored_media_id.filter(|_| data.is_some()).map(str::to_owned);
    let data = if stored_media_id.is_some() { None } else { data };
    let quoted_in = content.quoted_id_mut().and_then(|q| q.clone());
    // A send under the server's own id is leased to this request and resumed by the queue
    // runner if the request never records an outcome (crash); a caller with its own id (the
    // campaign engine) resumes its sends itself.
    let lease = wa_message_id.is_none().then_some(now + SINGLE_SEND_LEASE_MS);
    let (t, a, i, chat, w) =
        (tenant_id.to_owned(), account_id.to_owned(), id.clone(), recipient.chat.clone(), wa_id.clone());
    let (admission, quoted_wa) = st
        .db
        .call(move |c| {
            let tx = c.transaction()?;
            let acc: Option<(String, i64, String)> = tx
                .query_row(
                    "SELECT state, daily_limit, time_zone FROM accounts WHERE tenant_id = ?1 AND id = ?2",
                    params![t, a],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .optional()?;
            let Some((state, limit, tz)) = acc else { return Ok((Admission::NotFound, None)) };
            let state = AccountState::parse(&state).unwrap_or(AccountState::Error);
            if state != AccountState::Active {
                return Ok((Admission::NotActive(state), None));
            }
            let (start, reset_at) = day_window(now, &tz);
            if sent_since(&tx, &a, start)? >= limit {
                return Ok((Admission::LimitReached { limit, reset_at }, None));
            }
            match new_contacts::admit(&tx, &a, &chat, &i, (start, reset_at), now)? {
                FirstContact::Known | FirstContact::Counted => {}
                FirstContact::LimitReached { limit, reset_at } => {
                    return Ok((Admission::NewContactLimitReached { limit, reset_at }, None));
                }
            }
            // Ok(None): not a reply; Err(()): the reply target is unknown.
            let quoted_wa: Result<Option<String>, ()> = match &quoted_in {
                None => Ok(None),
                Some(q) => {
                    let by_id = tx.query_opt(REPLY_TARGET_BY_ID_SQL, params![t, a, q], |r| r.get::<String>(0))?;
                    match by_id {
                        Some(w) => Some(w),
                        None => tx.query_opt(REPLY_TARGET_BY_WA_ID_SQL, params![t, a, q], |r| r.get::<String>(0))?,
                    }
                    .map(Some)
                    .ok_or(())
                }
            };
            let Ok(quoted_wa) = quoted_wa else { return Ok((Admission::UnknownReplyTarget, None)) };
            tx.execute(
                "INSERT INTO messages (id, tenant_id, account_id, direction, chat_jid, kind, body, media_mimetype,
                   media_file_name, media_size, quoted_id, status, attempts, created_at, updated_at,
                   reserved_wa_id, due_at, template_media_id, payload)
                 VALUES (?1,?2,?3,'outgoing',?4,?5,?6,?7,?8,?9,?10,'pending',1,?11,?11,?12,?13,?14,?15)",
                params![
                    i,
                    t,
                    a,
                    chat,
                    kind,
                    body,
                    mimetype,
                    file_name,
                    size,
                    quoted_wa,
                    now,
                    w,
                    lease,
                    stored_media_id,
                    payload
                ],
            )?;
            if let Some(d) = &data {
                tx.execute(
                    "INSERT INTO message_media (message_id, data) VALUES (?1, ?2)",
                    params![i, d.as_ref()],
                )?;
            }
            tx.commit()?;
            Ok((Admission::Admitted, quoted_wa))
        })
        .await?;
    match admission {
        Admission::Admitted => {}
        Admission::NotFound => return Err(ApiError::NotFound("account")),
        Admission::NotActive(s) => {
            return Err(ApiError::Conflict {
                code: "account_not_active",
                message: format!("account is {}; connect it before sending", s.as_str()),
            });
        }
        Admission::UnknownReplyTarget => {
            return Err(ApiError::bad(
                "unknown_reply_target",
                "reply_to names no sent or received message of this account",
            ));
        }
        Admission::NewContactLimitReached { limit, reset_at } => {
            return Err(ApiError::RateLimited {
                code: NEW_CONTACT_LIMIT_REACHED,
                message: format!(
                    "this would be a first contact and the account's limit of {limit} new contacts a day is reached; \
                     resets at {reset_at} (ms since epoch); messages to people it already chatted with still go"
                ),
                retry_after_secs: ((reset_at - now) / 1000).max(1) as u64,
                reset_at: Some(reset_at),
            });
        }
        Admission::LimitReached { limit, reset_at } => {
            return Err(ApiError::RateLimited {
                code: "daily_limit_reached",
                message: format!(
                    "daily limit of {limit} messages reached; resets at {reset_at} (ms since epoch)"
                ),
                retry_after_secs: ((reset_at - now) / 1000).max(1) as u64,
                reset_at: Some(reset_at),
            });
        }
    }
    if let (Some(w), Some(quoted_id)) = (quoted_wa, content.quoted_id_mut()) {
        *quoted_id = Some(w);
    }
    let result = runtime.send_with_id(tenant_id, account_id, &recipient.to, &wa_id, content).await;
    if lease.is_some() && matches!(result, Err(RuntimeError::NotRunning)) && st.is_stopping() {
        // The server is stopping and closed the session under this send: it may have reached
        // WhatsApp. The row stays leased; the next start sends it again under the same id.
        return Err(ApiError::Unavailable(
            "the server is stopping; the message is sent again when it starts".into(),
        ));
    }
    if let Err(RuntimeError::Unconfirmed(why)) = &result {
        // It may have reached WhatsApp: neither `failed` (a client would send it again under
        // a new id) nor `sent`. The row stays `pending` under its reserved id and falls due
        // shortly; the queue runner sends it again under that id unless a receipt naming it
        // settles the row first (`apply_status_tx`).
        tracing::info!(message_id = %id, reason = %why, "send unconfirmed; it stays pending and is retried");
        return requeue_unconfirmed(st, tenant_id, &id).await;
    }
    if let Err(RuntimeError::NotRunning) = &result {
        // No session to send on: nothing went out (a send cut off after it left is
        // `Unconfirmed`). No row is kept, so a client repeating the request once the account
        // is back does not pile up failed rows.
        discard_unsent(st, tenant_id, account_id, &id).await?;
        return Err(ApiError::Conflict {
            code: "account_not_connected",
            message:
                "the account's session is not running; nothing was sent or stored; repeat once it is active"
                    .into(),
        });
    }
    if let Err(RuntimeError::NotOnWhatsApp(who)) = &result {
        // Refused before anything went out: no row is kept (a client repeating the request
        // must not pile up failed rows), like any other refused request.
        discard_unsent(st, tenant_id, account_id, &id).await?;
        return Err(not_on_whatsapp(who));
    }
    let (result, stored) = record_outcome(st, tenant_id, account_id, &id, result).await?;
    match result {
        Ok(_) => stored.ok_or(ApiError::NotFound("message")),
        // The attempt reached WhatsApp and counts as a reach-out, so its failed row stays;
        // 422 (not 503) tells clients that repeating it cannot help.
        Err(e @ RuntimeError::ReachoutRestricted(_)) => Err(ApiError::unprocessable(
            "reachout_restricted",
            format!("{e}; the message is stored as failed; do not repeat it"),
        )),
        Err(e) => Err(ApiError::Unavailable(format!("send failed: {e}"))),
    }
}

/// Makes the admitted `pending` row `id`, whose send went out unconfirmed, due again in
/// [`UNCONFIRMED_RETRY_MS`] (for the queue runner) and returns it.
async fn requeue_unconfirmed(st: &AppState, tenant_id: &str, id: &str) -> Result<StoredMessage, ApiError> {
    let (t, i, due) = (tenant_id.to_owned(), id.to_owned(), st.clock.now_ms() + UNCONFIRMED_RETRY_MS);
    st.db
        .call(move |c| {
            c.execute(
                "UPDATE messages SET due_at = ?3 WHERE tenant_id = ?1 AND id = ?2 AND status = 'pending'",
                params![t, i, due],
            )?;
            load(c, &t, &i)
        })
        .await?
        .ok_or(ApiError::NotFound("message"))
}

/// 422 `not_on_whatsapp` for the recipient `who` (a JID, number or LID).
pub(crate) fn not_on_whatsapp(who: &str) -> ApiError {
    let who = who.split('@').next().unwrap_or(who);
    ApiError::unprocessable(
        "not_on_whatsapp",
        format!("{who} is not on WhatsApp; nothing was sent or stored"),
    )
}

/// Deletes the admitted `pending` row `id` of a send that never reached WhatsApp.
async fn discard_unsent(st: &AppState, tenant_id: &str, account_id: &str, id: &str) -> Result<(), ApiError> {
    let (t, a, i) = (tenant_id.to_owned(), account_id.to_owned(), id.to_owned());
    st.db
        .call(move |c| {
            let tx = c.transaction()?;
            new_contacts::undo_unsent_first(&tx, &a, &i)?;
            tx.execute("DELETE FROM message_media WHERE message_id = ?1", params![i])?;
            tx.execute(
                "DELETE FROM messages WHERE tenant_id = ?1 AND id = ?2 AND status = 'pending'",
                params![t, i],
            )?;
            tx.commit()
        })
        .await?;
    Ok(())
}

/// Records what the runtime answered for the admitted `pending` row `id` (sent under the
/// WhatsApp id reserved with the row): `sent` (with WhatsApp's id, applying receipts that
/// arrived early) or `failed`, with the `message_sent` / `message_status_update` events. Shared
/// by single sends and the queue runner ([`crate::bulk`]).
pub(crate) async fn record_outcome(
    st: &AppState,
    tenant_id: &str,
    account_id: &str,
    id: &str,
    result: Result<crate::runtime::SentMessage, RuntimeError>,
) -> Result<(Result<crate::runtime::SentMessage, RuntimeError>, Option<StoredMessage>), ApiError> {
    let id = id.to_owned();
    let now = st.clock.now_ms();
    let (t, a, i) = (tenant_id.to_owned(), account_id.to_owned(), id.clone());
    let outcome = match &result {
        Ok(sent) => Ok((sent.message_id.clone(), sent.chat_lid.clone())),
        Err(e) => Err(e.to_string()),
    };
    let (stored, events) = st
        .db
        .call(move |c| {
            let tx = c.transaction()?;
            let mut events = Vec::new();
            match &outcome {
                Ok((wa_id, chat_lid)) => {
                    // A receipt may have settled the row first (`apply_status_tx`): it already
                    // announced `message_sent`.
                    let settled: bool = tx
                        .query_row(
                            "SELECT sent_at IS NOT NULL FROM messages WHERE tenant_id = ?1 AND id = ?2",
                            params![t, i],
                            |r| r.get(0),
                        )
                        .optional()?
                        .unwrap_or(false);
                    // A receipt can be recorded before this (it matches the row by the WhatsApp id
                    // stored before sending): `sent` never replaces a later status.
                    tx.execute(
                        "UPDATE messages SET wa_message_id = ?3, sent_at = COALESCE(sent_at, ?4), updated_at = ?4,
                           status = CASE WHEN status IN ('delivered','read','played') THEN status ELSE 'sent' END,
                           due_at = NULL, chat_lid = COALESCE(CAST(?5 AS TEXT), chat_lid)
                         WHERE tenant_id = ?1 AND id = ?2",
                        params![t, i, wa_id, now, chat_lid],
                    )?;
                    if !settled {
                        let msg = load(&tx, &t, &i)?;
                        let data = serde_json::to_value(&msg).unwrap_or_default();
                        outbox::enqueue(&tx, &t, Some(&a), "message_sent", data.clone(), now)?;
                        events.push(("message_sent", data));
                    }
                    let early: Vec<(String, i64)> = tx
                        .prepare("SELECT status, at FROM early_receipts WHERE account_id = ?1 AND wa_message_id = ?2")?
                        .query_map(params![a, wa_id], |r| Ok((r.get(0)?, r.get(1)?)))?
                        .collect::<Result<_, _>>()?;
                    tx.execute(
                        "DELETE FROM early_receipts WHERE account_id = ?1 AND wa_message_id = ?2",
                        params![a, wa_id],
                    )?;
                    for (s, at) in early {
                        if let Some(s) = DeliveryStatus::parse(&s)
                            && let Some(ev) = apply_status_tx(&tx, &t, &a, wa_id, s, at)?
                        {
                            events.push(("message_status_update", ev));
                        }
                    }
                }
                Err(err) => {
                    // Only a row still `pending`: a receipt may have proved it reached WhatsApp
                    // meanwhile (see `apply_status_tx`), and that is never undone.
                    let n = tx.execute(
                        "UPDATE messages SET status = 'failed', error = ?3, failed_at = ?4, updated_at = ?4,
                           due_at = NULL
                         WHERE tenant_id = ?1 AND id = ?2 AND status = 'pending'",
                        params![t, i, err, now],
                    )?;
                    if n == 1 {
                        new_contacts::forget_failed_first(&tx, &a, &i)?;
                        let data =
                            serde_json::json!({ "message_id": i, "status": "failed", "error": err, "at": now });
                        outbox::enqueue(&tx, &t, Some(&a), "message_status_update", data.clone(), now)?;
                        events.push(("message_status_update", data));
                    }
                }
            }
            tx.commit()?;
            Ok((load(c, &t, &i)?, events))
        })
        .await?;
    st.outbox_notify.notify_one();
    for (name, data) in events {
        st.live.publish(tenant_id, Some(account_id), name, data, now);
    }
    Ok((result, stored))
}

pub(crate) fn check_text(body: &str) -> Result<(), ApiError> {
    if body.trim().is_empty() {
        return Err(ApiError::bad("invalid_text", "text must not be empty"));
    }
    if body.chars().count() > MAX_TEXT_CHARS {
        return Err(ApiError::bad(
            "invalid_text",
            format!("text is longer than {MAX_TEXT_CHARS} characters"),
        ));
    }
    Ok(())
}

/// Applies a receipt inside `tx`; returns the event payload when the status advanced, `None`
/// when it did not (older status, or no such message: then it waits in `early_receipts`).
fn apply_status_tx(
    tx: &crate::db::Conn,
    tenant_id: &str,
    account_id: &str,
    wa_id: &str,
    status: DeliveryStatus,
    at: i64,
) -> crate::db::DbResult<Option<serde_json::Value>> {
    let row: Option<(String, String)> = tx
        .query_row(
            "SELECT id, status FROM messages WHERE tenant_id = ?1 AND account_id = ?2 AND direction = 'outgoing'
               AND wa_message_id = ?3",
            params![tenant_id, account_id, wa_id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let row = match row {
        Some(r) => Some(r),
        None => settle_by_receipt(tx, tenant_id, account_id, wa_id, at)?,
    };
    let Some((id, current)) = row else {
        tx.execute(
            "INSERT INTO early_receipts (account_id, wa_message_id, status, at) VALUES (?1,?2,?3,?4)
             ON CONFLICT DO NOTHING",
            params![account_id, wa_id, status.as_str(), at],
        )?;
        return Ok(None);
    };
    let current = DeliveryStatus::parse(&current).unwrap_or(DeliveryStatus::Failed);
    let advances = match (current, status) {
        (DeliveryStatus::Failed, _) | (_, DeliveryStatus::Failed) | (_, DeliveryStatus::Pending) => false,
        (c, s) => s > c,
    };
    if !advances {
        return Ok(None);
    }
    // Each status implies the earlier ones: fill timestamps a skipped receipt left empty. A
    // receipt's time (the phone's clock) is never before the step it follows: timestamps stay
    // in order sent <= delivered <= read <= played.
    tx.execute(
        "UPDATE messages SET status = ?3, updated_at = ?4,
           sent_at = COALESCE(sent_at, ?4),
           delivered_at = CASE WHEN ?3 IN ('delivered','read','played') THEN COALESCE(delivered_at,
                            CASE WHEN sent_at > ?4 THEN sent_at ELSE ?4 END) ELSE delivered_at END,
           read_at = CASE WHEN ?3 IN ('read','played') THEN COALESCE(read_at,
                       CASE WHEN COALESCE(delivered_at, sent_at) > ?4 THEN COALESCE(delivered_at, sent_at)
                       ELSE ?4 END) ELSE read_at END,
           played_at = CASE WHEN ?3 = 'played' THEN COALESCE(played_at,
                         CASE WHEN COALESCE(read_at, delivered_at, sent_at) > ?4
                         THEN COALESCE(read_at, delivered_at, sent_at) ELSE ?4 END) ELSE played_at END
         WHERE tenant_id = ?1 AND id = ?2",
        params![tenant_id, id, status.as_str(), at],
    )?;
    let data =
        serde_json::json!({ "message_id": id, "wa_message_id": wa_id, "status": status.as_str(), "at": at });
    outbox::enqueue(tx, tenant_id, Some(account_id), "message_status_update", data.clone(), at)?;
    Ok(Some(data))
}

/// A receipt naming `wa_id` for a row reserved under it but not recorded as sent (its send is
/// unconfirmed, still waiting for the server's ack, or was failed as `expired` after an
/// interrupted attempt): the message reached WhatsApp, so the row is settled as `sent` under
/// that id, off the queue (nothing resends it), with its `message_sent` event; a `failed` mark
/// is undone, as a receipt proves delivery. Returns the row as [`apply_status_tx`] looks it up,
/// or `None` when no such row exists.
fn settle_by_receipt(
    tx: &crate::db::Conn,
    tenant_id: &str,
    account_id: &str,
    wa_id: &str,
    at: i64,
) -> crate::db::DbResult<Option<(String, String)>> {
    let id: Option<String> = tx
        .query_row(
            "SELECT id FROM messages WHERE account_id = ?1 AND reserved_wa_id = ?2
               AND wa_message_id IS NULL AND reserved_wa_id IS NOT NULL AND tenant_id = ?3
               AND direction = 'outgoing' AND status IN ('pending', 'failed')",
            params![account_id, wa_id, tenant_id],
            |r| r.get(0),
        )
        .optional()?;
    let Some(id) = id else { return Ok(None) };
    tx.execute(
        "UPDATE messages SET status = 'sent', wa_message_id = ?3, sent_at = COALESCE(sent_at, ?4),
           updated_at = ?4, due_at = NULL, error = NULL, failed_at = NULL
         WHERE tenant_id = ?1 AND id = ?2",
        params![tenant_id, id, wa_id, at],
    )?;
    if let Some(msg) = load(tx, tenant_id, &id)? {
        let data = serde_json::to_value(&msg).unwrap_or_default();
        outbox::enqueue(tx, tenant_id, Some(account_id), "message_sent", data, at)?;
    }
    Ok(Some((id, DeliveryStatus::Sent.as_str().to_owned())))
}

/// Records a receipt (from [`crate::runtime::SessionEvent::MessageStatus`]).
pub fn apply_status(
    c: &mut crate::db::Conn,
    tenant_id: &str,
    account_id: &str,
    wa_id: &str,
    status: DeliveryStatus,
    at: i64,
) -> crate::db::DbResult<Option<serde_json::Value>> {
    let tx = c.transaction()?;
    let r = apply_status_tx(&tx, tenant_id, account_id, wa_id, status, at)?;
    tx.commit()?;
    Ok(r)
}

/// An incoming message as a runtime reports it.
#[derive(Debug, Clone)]
pub struct Incoming<'a> {
    pub wa_id: &'a str,
    pub chat: &'a str,
    pub chat_lid: Option<&'a str>,
    pub from: &'a str,
    pub from_lid: Option<&'a str>,
    pub from_phone: Option<&'a str>,
    pub push_name: Option<&'a str>,
    pub text: Option<&'a str>,
    pub media: Option<MediaKind>,
    pub timestamp_ms: i64,
    pub media_info: Option<&'a crate::runtime::IncomingMedia>,
    /// WhatsApp's id of the quoted message (a reply).
    pub quoted_id: Option<&'a str>,
    pub detail: Option<&'a MessageDetail>,
}

/// Records an incoming message with its `incoming_message` event; `None` for a duplicate
/// (WhatsApp redelivers after reconnects).
pub fn record_incoming(
    c: &mut crate::db::Conn,
    tenant_id: &str,
    account_id: &str,
    m: &Incoming<'_>,
    now: i64,
) -> crate::db::DbResult<Option<StoredMessage>> {
    let tx = c.transaction()?;
    let id = new_id("msg");
    fn json<T: Serialize>(v: &T) -> Option<String> {
        serde_json::to_string(v).ok()
    }
    let (kind, payload, text) = match m.detail {
        Some(MessageDetail::Location(l)) => ("location", json(l), m.text.or(l.name.as_deref())),
        Some(MessageDetail::Contact(c)) => ("contact", json(c), Some(c.display_name.as_str())),
        Some(MessageDetail::Poll { poll, secret }) => {
            ("poll", json(&polls::PollRecord::new(poll.clone(), secret.as_deref())), Some(poll.name.as_str()))
        }
        _ => (m.media.map_or("text", MediaKind::as_str), None, m.text),
    };
    let info = m.media_info.filter(|_| m.media.is_some());
    let n = tx.execute(
        "INSERT INTO messages (id, tenant_id, account_id, direction, chat_jid, sender_jid, sender_phone,
           push_name, wa_message_id, kind, body, status, attempts, created_at, updated_at, media_mimetype,
           media_file_name, media_size, media_handle, chat_lid, sender_lid, quoted_id, payload)
         VALUES (?1,?2,?3,'incoming',?4,?5,?6,?7,?8,?9,?10,'received',0,?11,?11,?12,?13,?14,?15,?16,?17,?18,?19)
         ON CONFLICT DO NOTHING",
        params![
            id,
            tenant_id,
            account_id,
            m.chat,
            m.from,
            m.from_phone,
            m.push_name,
            m.wa_id,
            kind,
            text,
            now,
            info.and_then(|i| i.mimetype.as_deref()),
            info.and_then(|i| i.file_name.as_deref()),
            info.and_then(|i| i.size).and_then(|s| i64::try_from(s).ok()),
            info.map(|i| i.handle.as_slice()),
            m.chat_lid,
            m.from_lid,
            m.quoted_id,
            payload,
        ],
    )?;
    if n == 0 {
        return Ok(None);
    }
    new_contacts::note_incoming(&tx, account_id, m.chat, now)?;
    let msg = load(&tx, tenant_id, &id)?;
    if let Some(msg) = &msg {
        let mut data = serde_json::to_value(msg).unwrap_or_default();
        if let Some(o) = data.as_object_mut() {
            o.insert("timestamp_ms".into(), m.timestamp_ms.into());
        }
        outbox::enqueue(&tx, tenant_id, Some(account_id), "incoming_message", data, now)?;
    }
    tx.commit()?;
    Ok(msg)
}

// ---------------------------------------------------------------------------------------------
// REST

/// Media to send: by URL (fetched by the server; private addresses refused) or inline base64.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MediaInput {
    pub kind: MediaKind,
    /// `http://` URL to fetch (loopback, private and link-local hosts are refused).
    pub url: Option<String>,
    /// The file itself, base64 (standard alphabet).
    pub data_base64: Option<String>,
    /// MIME type (default: from the fetch response or sniffed from the bytes).
    pub mimetype: Option<String>,
    pub file_name: Option<String>,
    pub caption: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SendRequest {
    /// Phone number (any common format; normalised to E.164) or a user/group JID.
    pub to: String,
    /// Text to send (exactly one of `text` and `media`).
    pub text: Option<String>,
    pub media: Option<MediaInput>,
    /// A location to share (instead of `text` or `media`).
    pub location: Option<Location>,
    /// A contact card to share (instead of `text` or `media`).
    pub contact: Option<actions::ContactInput>,
    /// A poll (instead of `text` or `media`); replies are not supported for polls.
    pub poll: Option<Poll>,
    /// Our id (or WhatsApp's id) of a message to reply to (text, media, location, contact).
    pub reply_to: Option<String>,
}

/// The content of a [`SendRequest`]: exactly one of text, media, location, contact and poll.
pub async fn content_of_send(st: &AppState, req: SendRequest) -> Result<OutgoingContent, ApiError> {
    let typed = usize::from(req.location.is_some())
        + usize::from(req.contact.is_some())
        + usize::from(req.poll.is_some());
    if typed == 0 {
        return content_from_request(st, req.text, req.media, req.reply_to).await;
    }
    if typed > 1 || req.text.is_some() || req.media.is_some() {
        return Err(ApiError::bad(
            "invalid_body",
            "exactly one of `text`, `media`, `location`, `contact` and `poll` is required",
        ));
    }
    let quoted_id = req.reply_to;
    if let Some(l) = req.location {
        return Ok(OutgoingContent::Location { location: actions::location(l)?, quoted_id });
    }
    if let Some(c) = req.contact {
        return Ok(OutgoingContent::Contact { card: actions::contact(c)?, quoted_id });
    }
    let poll = actions::poll(req.poll.ok_or_else(|| ApiError::bad("invalid_body", "nothing to send"))?)?;
    if quoted_id.is_some() {
        return Err(ApiError::bad("invalid_body", "reply_to is not supported for polls"));
    }
    // The secret its votes are sealed under: kept with the message to open them.
    Ok(OutgoingContent::Poll { poll, secret: rand::random() })
}

/// Turns a request body into runtime content (fetching media by URL when needed).
pub async fn content_from_request(
    st: &AppState,
    text: Option<String>,
    media: Option<MediaInput>,
    reply_to: Option<String>,
) -> Result<OutgoingContent, ApiError> {
    match (text, media) {
        (Some(body), None) => {
            check_text(&body)?;
            Ok(OutgoingContent::Text { body, quoted_id: reply_to })
        }
        (None, Some(m)) => {
            let (data, fetched_type) = match (m.url, m.data_base64) {
                (Some(url), None) => {
                    let f = crate::outbound::fetch::fetch(&st.outbound, &st.limits.fetch, &url).await?;
                    (f.data, f.content_type)
                }
                (None, Some(b64)) => {
                    let data = base64::engine::general_purpose::STANDARD.decode(b64.trim()).map_err(|e| {
                        ApiError::bad("invalid_media", format!("data_base64 is not base64: {e}"))
                    })?;
                    (bytes::Bytes::from(data), None)
                }
                _ => {
                    return Err(ApiError::bad(
                        "invalid_media",
                        "media needs exactly one of `url` and `data_base64`",
                    ));
                }
            };
            let mut content =
                media_content(st, m.kind, data, m.mimetype.or(fetched_type), m.caption, m.file_name)?;
            if let Some(q) = content.quoted_id_mut() {
                *q = reply_to;
            }
            Ok(content)
        }
        _ => Err(ApiError::bad("invalid_body", "exactly one of `text` and `media` is required")),
    }
}

/// Validates media bytes and their metadata into runtime content.
fn media_content(
    st: &AppState,
    kind: MediaKind,
    data: bytes::Bytes,
    mimetype: Option<String>,
    caption: Option<String>,
    file_name: Option<String>,
) -> Result<OutgoingContent, ApiError> {
    if let Some(c) = &caption {
        check_text(c)?;
    }
    if data.len() > st.limits.fetch.max_bytes {
        return Err(ApiError::TooLarge {
            code: "media_too_large",
            message: format!("media is larger than {} bytes", st.limits.fetch.max_bytes),
        });
    }
    if data.is_empty() {
        return Err(ApiError::bad("invalid_media", "media is empty"));
    }
    let mimetype = match mimetype {
        Some(t) => check_mimetype(&t)?,
        None => crate::outbound::fetch::sniff_mimetype(&data)
            .map(str::to_owned)
            .ok_or_else(|| ApiError::bad("invalid_media", "cannot tell the media type; set `mimetype`"))?,
    };
    if let Some(f) = &file_name
        && (f.is_empty() || f.len() > 255 || f.chars().any(|c| c.is_control() || c == '/' || c == '\\'))
    {
        return Err(ApiError::bad("invalid_media", "file_name must be 1 to 255 characters without slashes"));
    }
    Ok(OutgoingContent::Media { kind, data, mimetype, caption, file_name, quoted_id: None })
}

/// The multipart/form-data form of a media send (the OpenAPI schema of that body).
#[derive(Debug, ToSchema)]
#[allow(dead_code)] // only describes the form; `read_upload` parses it field by field
pub struct MultipartSend {
    /// Phone number or JID.
    to: String,
    /// `image`, `video`, `audio`, `voice`, `document` or `sticker`.
    kind: MediaKind,
    /// The file (at most the server's media size limit).
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
    /// Default: the file part's Content-Type, else sniffed from the bytes.
    mimetype: Option<String>,
    caption: Option<String>,
    /// Default for documents: the file part's file name.
    file_name: Option<String>,
}

/// Longest text field accepted in a multipart form.
const MAX_FORM_TEXT: usize = 4 * MAX_TEXT_CHARS;

/// Reads a multipart media upload: returns the recipient and the content.
async fn read_upload(
    st: &AppState,
    mut form: axum::extract::Multipart,
) -> Result<(String, OutgoingContent), ApiError> {
    let (mut to, mut kind, mut mimetype, mut caption, mut file_name) = (None, None, None, None, None);
    let mut file: Option<(bytes::Bytes, Option<String>, Option<String>)> = None;
    let max = st.limits.fetch.max_bytes;
    while let Some(mut field) = form.next_field().await? {
        let name = field.name().unwrap_or("").to_owned();
        if name == "file" {
            if file.is_some() {
                return Err(ApiError::bad("invalid_multipart", "more than one `file` part"));
            }
            let part_type = field.content_type().map(str::to_owned);
            let part_name = field.file_name().map(str::to_owned);
            let mut buf = bytes::BytesMut::new();
            while let Some(chunk) = field.chunk().await? {
                if buf.len() + chunk.len() > max {
                    return Err(ApiError::TooLarge {
                        code: "media_too_large",
                        message: format!("media is larger than {max} bytes"),
                    });
                }
                buf.extend_from_slice(&chunk);
            }
            file = Some((buf.freeze(), part_type, part_name));
            continue;
        }
        let slot = match name.as_str() {
            "to" => &mut to,
            "kind" => &mut kind,
            "mimetype" => &mut mimetype,
            "caption" => &mut caption,
            "file_name" => &mut file_name,
            other => {
                return Err(ApiError::bad("invalid_multipart", format!("unknown form field `{other}`")));
            }
        };
        let mut buf = Vec::new();
        while let Some(chunk) = field.chunk().await? {
            if buf.len() + chunk.len() > MAX_FORM_TEXT {
                return Err(ApiError::bad("invalid_multipart", format!("form field `{name}` is too long")));
            }
            buf.extend_from_slice(&chunk);
        }
        let text = String::from_utf8(buf)
            .map_err(|_| ApiError::bad("invalid_multipart", format!("form field `{name}` is not UTF-8")))?;
        if slot.replace(text).is_some() {
            return Err(ApiError::bad("invalid_multipart", format!("form field `{name}` given twice")));
        }
    }
    let to = to.ok_or_else(|| ApiError::bad("invalid_multipart", "form field `to` is required"))?;
    parse_recipient(&to)?;
    let kind = kind.ok_or_else(|| ApiError::bad("invalid_multipart", "form field `kind` is required"))?;
    let kind = MediaKind::parse(kind.trim()).ok_or_else(|| {
        ApiError::bad(
            "invalid_multipart",
            format!("`{kind}` is not a media kind (image, video, audio, voice, document, sticker)"),
        )
    })?;
    let (data, part_type, part_name) =
        file.ok_or_else(|| ApiError::bad("invalid_multipart", "a `file` part is required"))?;
    let part_type = part_type.filter(|t| !t.is_empty() && t != "application/octet-stream");
    let file_name = file_name.or(if kind == MediaKind::Document { part_name } else { None });
    Ok((to, media_content(st, kind, data, mimetype.or(part_type), caption, file_name)?))
}

pub(crate) fn check_mimetype(t: &str) -> Result<String, ApiError> {
    let t = t.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    let ok = t.len() <= 100
        && t.split_once('/').is_some_and(|(a, b)| {
            !a.is_empty()
                && !b.is_empty()
                && (a.to_owned() + b).chars().all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
        });
    if ok { Ok(t) } else { Err(ApiError::bad("invalid_media", format!("`{t}` is not a MIME type"))) }
}

/// Sends a text or media message. Media comes by URL or base64 in a JSON body, or as a
/// `multipart/form-data` upload (see `MultipartSend`).
#[utoipa::path(post, path = "/api/v1/accounts/{id}/messages", tag = "messages", params(("id" = String, Path)),
    request_body(content(
        (SendRequest = "application/json"),
        (MultipartSend = "multipart/form-data"),
    )),
    responses((status = 201, description = "Sent: WhatsApp acknowledged the message", body = StoredMessage),
              (status = 202, description = "Outcome unknown: the message went out but WhatsApp's acknowledgement did not come (the connection dropped). It stays `pending`, is never reported `failed`, and is sent again under the same WhatsApp id (recipients keep one copy) unless a receipt settles it first; follow its status instead of repeating the request", body = StoredMessage),
              (status = 400, body = crate::error::ErrorBody),
              (status = 404, body = crate::error::ErrorBody), (status = 409, description = "`account_not_connected`: nothing went out (safe to repeat); `account_not_active`", body = crate::error::ErrorBody),
              (status = 413, body = crate::error::ErrorBody),
              (status = 422, description = "`not_on_whatsapp`: the recipient has no WhatsApp account; nothing was sent and no message is stored (do not repeat). `reachout_restricted`: WhatsApp refused a first contact (463); the message is stored as failed and must not be repeated. `url_refused`: the media URL is refused by the outbound policy", body = crate::error::ErrorBody),
              (status = 429, body = crate::error::ErrorBody), (status = 503, body = crate::error::ErrorBody)),
    security(("api_key" = [])))]
pub async fn send(
    State(st): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
    req: axum::extract::Request,
) -> Result<(StatusCode, Json<StoredMessage>), ApiError> {
    use axum::extract::FromRequest as _;
    p.require(Permission::Send)?;
    let multipart = crate::error::is_multipart(&req);
    let (to, content) = if multipart {
        let form = crate::error::multipart(req, &st).await?;
        read_upload(&st, form).await?
    } else {
        let ApiJson(req) = ApiJson::<SendRequest>::from_request(req, &st).await?;
        // Validate the cheap things before fetching anything.
        parse_recipient(&req.to)?;
        (req.to.clone(), content_of_send(&st, req).await?)
    };
    let m = send_message(&st, &p.tenant_id, &id, &to, content).await?;
    // Still `pending` after the attempt: its outcome is unknown and the queue owns it now.
    let code =
        if m.status == DeliveryStatus::Pending.as_str() { StatusCode::ACCEPTED } else { StatusCode::CREATED };
    Ok((code, Json(m)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct HistoryQuery {
    /// Only this chat: a phone number, a JID, or a contact's LID (`…@lid`; the same chat as its
    /// number).
    pub chat: Option<String>,
    /// `incoming` or `outgoing`.
    pub direction: Option<String>,
    /// Page size, 1 to 200 (default 50).
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MessagePage {
    /// Newest first.
    pub messages: Vec<StoredMessage>,
    /// Pass as `cursor` for the next (older) page; absent on the last page.
    pub next_cursor: Option<String>,
}

fn parse_cursor(c: &str) -> Result<(i64, String), ApiError> {
    let bad = || ApiError::bad("invalid_cursor", "cursor is not one this server issued");
    let raw = hex::decode(c).map_err(|_| bad())?;
    let raw = String::from_utf8(raw).map_err(|_| bad())?;
    let (t, id) = raw.split_once('|').ok_or_else(bad)?;
    Ok((t.parse().map_err(|_| bad())?, id.to_owned()))
}

fn make_cursor(m: &StoredMessage) -> String {
    hex::encode(format!("{}|{}", m.created_at, m.id))
}

/// A history page of an account, newest first, from before the cursor key
/// `(created_at, id) < (?4, ?5)`; `?3` an optional direction. Walks `messages_account` in
/// order from the cursor: the work is the page, not the account's history.
pub(crate) const HISTORY_SQL: &str = concat!(
    "SELECT ",
    columns!(),
    " FROM messages m WHERE m.tenant_id = ?1 AND m.account_id = ?2
       AND (CAST(?3 AS TEXT) IS NULL OR m.direction = ?3) AND (m.created_at, m.id) < (?4, ?5)
     ORDER BY m.created_at DESC, m.id DESC LIMIT ?6"
);

/// [`HISTORY_SQL`] for one chat `?7` (on `messages_chat`).
pub(crate) const HISTORY_CHAT_SQL: &str = concat!(
    "SELECT ",
    columns!(),
    " FROM messages m WHERE m.tenant_id = ?1 AND m.account_id = ?2 AND m.chat_jid = ?7
       AND (CAST(?3 AS TEXT) IS NULL OR m.direction = ?3) AND (m.created_at, m.id) < (?4, ?5)
     ORDER BY m.created_at DESC, m.id DESC LIMIT ?6"
);

/// The chats (by number) whose messages carry the LID `?3` (on `messages_chat_lid`; the work
/// is that chat's messages, not the account's).
pub(crate) const CHATS_OF_LID_SQL: &str = "SELECT DISTINCT chat_jid FROM messages
     WHERE tenant_id = ?1 AND account_id = ?2 AND chat_lid = ?3 AND chat_jid != ?3";

#[utoipa::path(get, path = "/api/v1/accounts/{id}/messages", tag = "messages",
    params(("id" = String, Path), HistoryQuery),
    responses((status = 200, body = MessagePage), (status = 400, body = crate::error::ErrorBody),
              (status = 404, body = crate::error::ErrorBody)),
    security(("api_key" = [])))]
pub async fn history(
    State(st): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<HistoryQuery>,
) -> Result<Json<MessagePage>, ApiError> {
    p.require(Permission::Read)?;
    let chat = q.chat.as_deref().map(parse_recipient).transpose()?.map(|r| r.chat);
    if let Some(d) = &q.direction
        && d != "incoming"
        && d != "outgoing"
    {
        return Err(ApiError::bad("invalid_query", "direction must be `incoming` or `outgoing`"));
    }
    let limit = q.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(ApiError::bad("invalid_query", "limit must be between 1 and 200"));
    }
    let cursor = q.cursor.as_deref().map(parse_cursor).transpose()?;
    let tenant = p.tenant_id.clone();
    let direction = q.direction;
    let page = st
        .db
        .call(move |c| {
            let exists: bool = c.query_row(
                "SELECT EXISTS (SELECT 1 FROM accounts WHERE tenant_id = ?1 AND id = ?2)",
                params![tenant, id],
                |r| r.get(0),
            )?;
            if !exists {
                return Ok(None);
            }
            // No cursor: from the newest (a key after every stored one).
            let (ct, cid) = cursor.unwrap_or((i64::MAX, String::new()));
            let page = i64::from(limit) + 1;
            let mut rows = match &chat {
                None => c.query_all(HISTORY_SQL, params![tenant, id, direction, ct, cid, page], from_row)?,
                Some(chat) => {
                    // A contact's LID names the same chat as its number: each chat stored
                    // under it is paged on its own index range, and the pages merged.
                    let mut chats = vec![chat.clone()];
                    if chat.ends_with("@lid") {
                        chats.extend(c.query_all(CHATS_OF_LID_SQL, params![tenant, id, chat], |r| r.get(0))?);
                    }
                    let mut rows = Vec::new();
                    for chat in &chats {
                        rows.extend(c.query_all(
                            HISTORY_CHAT_SQL,
                            params![tenant, id, direction, ct, cid, page, chat],
                            from_row,
                        )?);
                    }
                    if chats.len() > 1 {
                        rows.sort_by(|x, y| (y.created_at, &y.id).cmp(&(x.created_at, &x.id)));
                    }
                    rows
                }
            };
            let more = rows.len() > limit as usize;
            rows.truncate(limit as usize);
            fill_sender_names(c, &tenant, &id, &mut rows)?;
            let next_cursor = if more { rows.last().map(make_cursor) } else { None };
            Ok(Some(MessagePage { messages: rows, next_cursor }))
        })
        .await?;
    page.map(Json).ok_or(ApiError::NotFound("account"))
}

#[utoipa::path(get, path = "/api/v1/accounts/{id}/messages/{message_id}", tag = "messages",
    params(("id" = String, Path), ("message_id" = String, Path)),
    responses((status = 200, body = StoredMessage), (status = 404, body = crate::error::ErrorBody)),
    security(("api_key" = [])))]
pub async fn get_message(
    State(st): State<AppState>,
    p: Principal,
    Path((id, message_id)): Path<(String, String)>,
) -> Result<Json<StoredMessage>, ApiError> {
    p.require(Permission::Read)?;
    let tenant = p.tenant_id.clone();
    let m = st.db.call(move |c| load(c, &tenant, &message_id)).await?;
    m.filter(|m| m.account_id == id).map(Json).ok_or(ApiError::NotFound("message"))
}

#[utoipa::path(get, path = "/api/v1/accounts/{id}/messages/{message_id}/media", tag = "messages",
    params(("id" = String, Path), ("message_id" = String, Path)),
    responses((status = 200, description = "the media bytes (outgoing: as sent; incoming: downloaded from WhatsApp and decrypted)",
               content_type = "application/octet-stream"),
              (status = 404, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody),
              (status = 503, body = crate::error::ErrorBody)),
    security(("api_key" = [])))]
pub async fn download_media(
    State(st): State<AppState>,
    p: Principal,
    Path((id, message_id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    p.require(Permission::Read)?;
    let tenant = p.tenant_id.clone();
    let acc = id.clone();
    let found = st
        .db
        .call(move |c| {
            c.query_row(
                "SELECT m.media_mimetype, m.media_file_name, COALESCE(d.data, b.media_data, tm.data), m.media_handle
                 FROM messages m LEFT JOIN message_media d ON d.message_id = m.id
                 LEFT JOIN bulk_sends b ON b.id = m.bulk_id
                 LEFT JOIN template_media tm ON tm.id = m.template_media_id
                 WHERE m.tenant_id = ?1 AND m.account_id = ?2 AND m.id = ?3",
                params![tenant, acc, message_id],
                |r| {
                    Ok((
                        r.get::<Option<String>>(0)?,
                        r.get::<Option<String>>(1)?,
                        r.get::<Option<Vec<u8>>>(2)?,
                        r.get::<Option<Vec<u8>>>(3)?,
                    ))
                },
            )
            .optional()
        })
        .await?;
    let (mimetype, file_name, data, handle) = found.ok_or(ApiError::NotFound("message"))?;
    let data = match (data, handle) {
        (Some(d), _) => d,
        (None, Some(handle)) => {
            // Received media: fetched from WhatsApp's media hosts and decrypted on demand.
            let runtime = st.runtime.clone().ok_or_else(|| {
                ApiError::Unavailable(
                    "no WhatsApp runtime is configured; media download is not available".into(),
                )
            })?;
            runtime.download_media(&p.tenant_id, &id, &handle).await.map_err(|e| match e {
                RuntimeError::NotRunning => ApiError::Conflict {
                    code: "account_not_connected",
                    message: "downloading received media needs the account's session; reconnect it".into(),
                },
                e => ApiError::Unavailable(format!("media download failed: {e}")),
            })?
        }
        (None, None) => return Err(ApiError::NotFound("media")),
    };
    Ok((media_headers(mimetype.as_deref(), file_name.as_deref()), data).into_response())
}

/// Media types a browser may show inline on our origin: images, video and audio it renders
/// itself, none able to run script (SVG can, so it is not here).
const INLINE_MEDIA_TYPES: &[&str] = &[
    "image/jpeg",
    "image/png",
    "image/gif",
    "image/webp",
    "video/mp4",
    "video/3gpp",
    "video/webm",
    "video/quicktime",
    "audio/ogg",
    "audio/mpeg",
    "audio/mp4",
    "audio/aac",
    "audio/amr",
    "audio/webm",
    "audio/wav",
];

/// The headers of a media download. The type is the sender's, so anything but a safe image,
/// video or audio type is an attachment (an HTML file must not render on the dashboard's
/// origin), and `nosniff` stops the browser from guessing a different type from the bytes.
pub fn media_headers(mimetype: Option<&str>, file_name: Option<&str>) -> header::HeaderMap {
    let mut h = header::HeaderMap::new();
    let content_type = mimetype
        .and_then(|m| header::HeaderValue::from_str(m).ok())
        .unwrap_or(header::HeaderValue::from_static("application/octet-stream"));
    let essence = content_type
        .to_str()
        .unwrap_or_default()
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let inline = INLINE_MEDIA_TYPES.contains(&essence.as_str());
    h.insert(header::CONTENT_TYPE, content_type);
    h.insert(header::X_CONTENT_TYPE_OPTIONS, header::HeaderValue::from_static("nosniff"));
    let name: Option<String> = file_name.map(|f| {
        f.chars().filter(|c| (c.is_ascii_graphic() && !matches!(c, '"' | '\\')) || *c == ' ').collect()
    });
    // A named file (a document) downloads under its name, whatever its type.
    let disposition = match (inline, name.filter(|n| !n.trim().is_empty())) {
        (true, None) => None,
        (false, None) => Some("attachment".to_owned()),
        (_, Some(n)) => Some(format!("attachment; filename=\"{n}\"")),
    };
    if let Some(v) = disposition.and_then(|d| header::HeaderValue::from_str(&d).ok()) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    h
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckNumbersRequest {
    /// 1 to 50 phone numbers in any common format.
    pub phones: Vec<String>,
}

/// The answer for one entry of `phones`, in request order. An entry that is not a phone number
/// gets `error` and does not fail the others.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct NumberStatus {
    /// The entry as given.
    pub input: String,
    /// E.164; absent when the entry is not a phone number.
    pub phone: Option<String>,
    pub on_whatsapp: bool,
    pub jid: Option<String>,
    /// Why this entry was not checked (`invalid_phone`); absent when it was.
    pub error: Option<crate::error::ErrorDetail>,
}

#[utoipa::path(post, path = "/api/v1/accounts/{id}/check-numbers", tag = "messages", params(("id" = String, Path)),
    request_body = CheckNumbersRequest,
    responses((status = 200, description = "one result per entry, in request order; an entry that is not a phone number carries `error` and the others are still checked",
               body = Vec<NumberStatus>),
              (status = 400, description = "`phones` is empty or longer than 50", body = crate::error::ErrorBody),
              (status = 404, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody),
              (status = 413, description = "body over the size limit", body = crate::error::ErrorBody),
              (status = 415, description = "not `Content-Type: application/json`", body = crate::error::ErrorBody),
              (status = 503, body = crate::error::ErrorBody)),
    security(("api_key" = [])))]
pub async fn check_numbers(
    State(st): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<CheckNumbersRequest>,
) -> Result<Json<Vec<NumberStatus>>, ApiError> {
    p.require(Permission::Read)?;
    if req.phones.is_empty() || req.phones.len() > MAX_CHECK_NUMBERS {
        return Err(ApiError::bad(
            "invalid_phones",
            format!("phones must list 1 to {MAX_CHECK_NUMBERS} numbers"),
        ));
    }
    let parsed: Vec<Result<String, ApiError>> =
        req.phones.iter().map(|p| Ok(crate::phone::E164::parse(p)?.digits().to_owned())).collect();
    let mut digits: Vec<String> = parsed.iter().filter_map(|r| r.as_ref().ok().cloned()).collect();
    digits.sort_unstable();
    digits.dedup();
    let runtime = st.runtime.clone().ok_or_else(|| {
        ApiError::Unavailable("no WhatsApp runtime is configured; checking numbers is not available".into())
    })?;
    let (tenant, acc) = (p.tenant_id.clone(), id.clone());
    let state = st
        .db
        .call(move |c| {
            c.query_row(
                "SELECT state FROM accounts WHERE tenant_id = ?1 AND id = ?2",
                params![tenant, acc],
                |r| r.get::<String>(0),
            )
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
    let checks = if digits.is_empty() {
        Vec::new()
    } else {
        runtime.check_numbers(&p.tenant_id, &id, &digits).await.map_err(|e| match e {
            RuntimeError::NotRunning => ApiError::Conflict {
                code: "account_not_connected",
                message: "the account's session is not running; reconnect it".into(),
            },
            e => ApiError::Unavailable(format!("check failed: {e}")),
        })?
    };
    Ok(Json(req.phones.into_iter().zip(parsed).map(|(input, r)| number_status(input, r, &checks)).collect()))
}

fn number_status(
    input: String,
    parsed: Result<String, ApiError>,
    checks: &[crate::runtime::NumberCheck],
) -> NumberStatus {
    match parsed {
        Ok(d) => {
            let hit = checks.iter().find(|c| c.phone == d);
            NumberStatus {
                input,
                phone: Some(format!("+{d}")),
                on_whatsapp: hit.is_some_and(|c| c.on_whatsapp),
                jid: hit.and_then(|c| c.jid.clone()),
                error: None,
            }
        }
        Err(e) => NumberStatus {
            input,
            phone: None,
            on_whatsapp: false,
            jid: None,
            error: Some(crate::error::ErrorDetail { code: e.code().to_owned(), message: e.to_string() }),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_downloads_render_inline_only_for_safe_types() {
        let h = |m: Option<&str>, f: Option<&str>| {
            let h = media_headers(m, f);
            assert_eq!(h[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
            (
                h[header::CONTENT_TYPE].to_str().unwrap().to_owned(),
                h.get(header::CONTENT_DISPOSITION).map(|v| v.to_str().unwrap().to_owned()),
            )
        };
        assert_eq!(h(Some("image/jpeg"), None), ("image/jpeg".into(), None));
        assert_eq!(h(Some("audio/ogg; codecs=opus"), None).1, None);
        assert_eq!(h(Some("VIDEO/MP4"), None).1, None);
        for unsafe_type in
            ["text/html", "image/svg+xml", "application/xhtml+xml", "application/pdf", "text/javascript"]
        {
            assert_eq!(h(Some(unsafe_type), None), (unsafe_type.into(), Some("attachment".into())));
        }
        assert_eq!(h(None, None), ("application/octet-stream".into(), Some("attachment".into())));
        assert_eq!(h(Some("bad\nvalue"), None).0, "application/octet-stream");
        assert_eq!(
            h(Some("text/html"), Some("a\"b\\c.html")).1.as_deref(),
            Some("attachment; filename=\"abc.html\"")
        );
        assert_eq!(h(Some("image/png"), Some("x.png")).1.as_deref(), Some("attachment; filename=\"x.png\""));
    }

    #[test]
    fn recipients_are_normalised_or_refused() {
        assert_eq!(
            parse_recipient("+1 (415) 555-0123").unwrap(),
            Recipient { to: "14155550123".into(), chat: "14155550123@s.whatsapp.net".into() }
        );
        assert_eq!(parse_recipient("123-456@g.us").unwrap().chat, "123-456@g.us");
        for bad in ["4155550123", "abc@s.whatsapp.net", "1@evil.com", "@g.us", "+1 415 CALL NOW"] {
            assert!(parse_recipient(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let c = hex::encode("1700|msg_ab");
        assert_eq!(parse_cursor(&c).unwrap(), (1700, "msg_ab".into()));
        assert!(parse_cursor("zz").is_err());
        assert!(parse_cursor(&hex::encode("nope")).is_err());
    }

    #[test]
    fn day_window_is_local_midnight() {
        let (s, e) = day_window(1_700_000_000_000, "UTC");
        assert_eq!(s % DAY_MS, 0);
        assert_eq!(e - s, DAY_MS);
        assert!(s <= 1_700_000_000_000 && 1_700_000_000_000 < e);
        // 2026-11-21 10:00 UTC is 05:00 in New York (UTC-5): the day began at 05:00 UTC.
        let t = 1_795_255_200_000;
        assert_eq!(day_window(t, "America/New_York"), (t - 5 * 3_600_000, t + 19 * 3_600_000));
        // Kolkata is UTC+5:30: 15:30 local, the day began at 18:30 UTC the day before.
        assert_eq!(day_window(t, "Asia/Kolkata").0, t - 15 * 3_600_000 - 1_800_000);
        // DST: the day the clocks go back in New York (2026-11-01) has 25 hours.
        let nov1 = 1_793_505_600_000; // 2026-11-01 00:00 EDT = 04:00 UTC
        assert_eq!(day_window(nov1 + 3_600_000, "America/New_York"), (nov1, nov1 + 25 * 3_600_000));
        assert_eq!(day_window(t, "Not/AZone"), day_window(t, "UTC"));
    }
}
