//! Bulk send: one text or media message to many recipients, paced at a number of messages per
//! minute. The request records one `pending` message per recipient at once (each with its
//! `due_at`) and answers with their ids; [`run`] sends each when it falls due through the same
//! path as a single send ([`crate::messages::record_outcome`]), so statuses, receipts and events are
//! tracked the same way. Pending rows live in the database: a restart resumes them.
//!
//! Time comes only from the server's [`crate::clock::Clock`]; [`tick`] does the work that is due
//! now, so tests drive pacing by moving a manual clock.
//!
//! Crashes: a row is claimed (its `due_at` cleared) before it is handed to the runtime, and the
//! WhatsApp id it goes out under is stored in the same statement. A row still claimed and
//! `pending` when the server starts was interrupted (by a crash, or by a send that outlived
//! the shutdown timeout): [`recover_interrupted`] queues it again and it is resent under the
//! same WhatsApp id, so the recipient's devices keep one copy even if the first attempt had
//! reached WhatsApp. A row whose session is not running (reconnecting after a restart) waits
//! [`NOT_RUNNING_RETRY_MS`] and is tried again, up to [`MAX_ATTEMPTS`] claims. So does a row
//! whose attempt went out unconfirmed (the connection dropped before WhatsApp's ack): it may
//! have arrived, so it is neither `failed` nor `sent`; a receipt naming its id settles it
//! (`messages::apply_status_tx`), else it goes again under the same id.
//!
//! Single sends (`POST …/messages`, the compatibility API, webhook auto-replies) share this
//! resume path. Their row is written `pending` with its reserved WhatsApp id and a *lease*: a
//! `due_at` [`SINGLE_SEND_LEASE_MS`] ahead, during which the request that wrote it sends it.
//! The request records the outcome and clears `due_at`. If it never does (the server stopped
//! or crashed, or the request was dropped), the row falls due: [`recover_interrupted`] makes
//! every leased row due at once when the server starts, and [`tick`] sends it under the same
//! WhatsApp id, counting the attempt; when the recipient's devices already got the first
//! attempt they keep one copy (WhatsApp clients keep one message per id). A single send older
//! than the configured age ([`crate::state::Limits::pending_send_max_age_ms`], default one
//! hour) fails with the reason [`EXPIRED`] instead of going out late, and a queued send (single
//! or bulk) of an account that is logged out fails with [`ACCOUNT_LOGGED_OUT`]. Campaign sends
//! choose their own WhatsApp id and are resumed by the campaign engine, not here (no lease).

use std::collections::HashSet;
use std::time::Duration;

use crate::db::{OptionalExtension, params};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::account_state::AccountState;
use crate::accounts::new_contacts::{self, FirstContact};
use crate::auth::{Permission, Principal};
use crate::clock::new_id;
use crate::db::DbError;
use crate::error::{ApiError, ApiJson};
use crate::messages::{
    MediaInput, content_from_request, day_window, parse_recipient, record_outcome, sent_since,
};
use crate::runtime::{MediaKind, OutgoingContent, RuntimeError, new_wa_message_id};
use crate::state::AppState;

/// Most recipients in one bulk request.
pub const MAX_RECIPIENTS: usize = 1000;
/// Default pace.
pub const DEFAULT_PER_MINUTE: u32 = 20;
/// Fastest pace accepted.
pub const MAX_PER_MINUTE: u32 = 600;
/// Longest the runner sleeps before looking again (it is also woken by new bulk sends).
const MAX_IDLE: Duration = Duration::from_secs(5);
/// Rows sent per tick at most (the rest on the next).
const TICK_BATCH: usize = 100;
/// How long a message waits when its account's session is not running (e.g. still reconnecting
/// after a restart) before it is tried again.
pub const NOT_RUNNING_RETRY_MS: i64 = 5_000;
/// How often the runner looks again while a due message waits for its session to read
/// WhatsApp's offline queue ([`crate::runtime::AccountRuntime::caught_up`]).
const CATCH_UP_POLL_MS: i64 = 250;
/// Queued sends due at `?1`, oldest first: `messages_due_queue` (rows with a `due_at` only)
/// walked in order, no sort.
pub(crate) const DUE_SQL: &str =
    "SELECT m.id, m.tenant_id, m.account_id, m.chat_jid, m.kind, m.body, m.media_mimetype,
       m.media_file_name, COALESCE(b.media_data, mm.data, tm.data), m.attempts, m.bulk_id IS NULL,
       m.created_at, m.quoted_id, a.state, m.payload
     FROM messages m LEFT JOIN bulk_sends b ON b.id = m.bulk_id
       LEFT JOIN message_media mm ON mm.message_id = m.id
       LEFT JOIN template_media tm ON tm.id = m.template_media_id
       LEFT JOIN accounts a ON a.id = m.account_id
     WHERE m.due_at IS NOT NULL AND m.due_at <= ?1 AND m.status = 'pending'
       AND m.direction = 'outgoing'
     ORDER BY m.due_at, m.id LIMIT ?2";
/// Claims of one message at most; then it fails (its account never came back).
pub const MAX_ATTEMPTS: i64 = 120;
pub use crate::messages::SINGLE_SEND_LEASE_MS;
/// The failure reason of a single send that was not sent within the configured age.
pub const EXPIRED: &str = "expired";
/// The failure reason of a queued send whose account is logged out.
pub const ACCOUNT_LOGGED_OUT: &str = "account_logged_out";

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkRequest {
    /// 1 to 1000 phone numbers (any common format) or JIDs, no duplicates.
    pub recipients: Vec<String>,
    /// Text to send (exactly one of `text` and `media`).
    pub text: Option<String>,
    pub media: Option<MediaInput>,
    /// Messages per minute, 1 to 600 (default 20). The first goes at once.
    pub per_minute: Option<u32>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BulkItem {
    /// The recipient's chat JID.
    pub chat: String,
    /// Our message id; track it like any sent message (`GET …/messages/{id}`, events).
    pub message_id: String,
    /// When it is due to be sent (ms since epoch).
    pub scheduled_at: i64,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BulkAccepted {
    pub bulk_id: String,
    pub per_minute: u32,
    /// In the order of `recipients`.
    pub messages: Vec<BulkItem>,
}

enum Admission {
    /// Queued, each message `delay` ms after the pace asked (a reach-out time-lock in force).
    Admitted {
        delay: i64,
    },
    NotFound,
    NotActive(AccountState),
    LimitReached {
        limit: i64,
        remaining: i64,
        reset_at: i64,
    },
    /// The batch's first contacts do not fit in today's new-contact limit.
    NewContactLimitReached {
        limit: i64,
        reset_at: i64,
    },
}

#[utoipa::path(post, path = "/api/v1/accounts/{id}/messages/bulk", tag = "messages", params(("id" = String, Path)),
    request_body = BulkRequest,
    responses((status = 202, body = BulkAccepted, description = "accepted; messages are sent at the given pace"),
              (status = 400, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody),
              (status = 409, body = crate::error::ErrorBody),
              (status = 429, body = crate::error::ErrorBody, description = "the batch does not fit in today's limit"),
              (status = 503, body = crate::error::ErrorBody)),
    security(("api_key" = [])))]
pub async fn bulk_send(
    State(st): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<BulkRequest>,
) -> Result<(StatusCode, Json<BulkAccepted>), ApiError> {
    p.require(Permission::Send)?;
    if st.runtime.is_none() {
        return Err(ApiError::Unavailable(
            "no WhatsApp runtime is configured; sending is not available".into(),
        ));
    }
    if req.recipients.is_empty() || req.recipients.len() > MAX_RECIPIENTS {
        return Err(ApiError::bad(
            "invalid_recipients",
            format!("recipients must list 1 to {MAX_RECIPIENTS} numbers or JIDs"),
        ));
    }
    let per_minute = req.per_minute.unwrap_or(DEFAULT_PER_MINUTE);
    if !(1..=MAX_PER_MINUTE).contains(&per_minute) {
        return Err(ApiError::bad(
            "invalid_pace",
            format!("per_minute must be between 1 and {MAX_PER_MINUTE}"),
        ));
    }
    let mut seen = HashSet::new();
    let mut chats = Vec::with_capacity(req.recipients.len());
    for r in &req.recipients {
        let chat = parse_recipient(r)?.chat;
        if !seen.insert(chat.clone()) {
            return Err(ApiError::bad("duplicate_recipient", format!("`{r}` is listed more than once")));
        }
        chats.push(chat);
    }
    let content = content_from_request(&st, req.text, req.media, None).await?;
    let (kind, body, mimetype, file_name, media) = match content {
        OutgoingContent::Text { body, .. } => ("text", Some(body), None, None, None),
        OutgoingContent::Media { kind, data, mimetype, caption, file_name, .. } => {
            (kind.as_str(), caption, Some(mimetype), file_name, Some(data))
        }
        _ => return Err(ApiError::bad("invalid_body", "bulk sends carry text or media")),
    };
    let size = media.as_ref().map(|d| d.len() as i64);
    let now = st.clock.now_ms();
    let interval = 60_000 / i64::from(per_minute);
    let bulk_id = new_id("bulk");
    let items: Vec<BulkItem> = chats
        .into_iter()
        .enumerate()
        .map(|(i, chat)| BulkItem {
            chat,
            message_id: new_id("msg"),
            scheduled_at: now + interval * i as i64,
        })
        .collect();
    let (tenant, acc, b) = (p.tenant_id.clone(), id.clone(), bulk_id.clone());
    let rows: Vec<(String, String, i64)> =
        items.iter().map(|i| (i.message_id.clone(), i.chat.clone(), i.scheduled_at)).collect();
    let admission = st
        .db
        .call(move |c| {
            let tx = c.transaction()?;
            let acc_row: Option<(String, i64, String)> = tx
                .query_row(
                    "SELECT state, daily_limit, time_zone FROM accounts WHERE tenant_id = ?1 AND id = ?2",
                    params![tenant, acc],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .optional()?;
            let Some((state, limit, tz)) = acc_row else { return Ok(Admission::NotFound) };
            let state = AccountState::parse(&state).unwrap_or(AccountState::Error);
            if state != AccountState::Active {
                return Ok(Admission::NotActive(state));
            }
            let (start, reset_at) = day_window(now, &tz);
            let used = sent_since(&tx, &acc, start)?;
            if used + rows.len() as i64 > limit {
                return Ok(Admission::LimitReached { limit, remaining: (limit - used).max(0), reset_at });
            }
            // Under a reach-out time-lock the batch starts when it ends, at its pace.
            let delay = crate::accounts::timelock::bulk_start(&tx, &acc, now)? - now;
            tx.execute(
                "INSERT INTO bulk_sends (id, tenant_id, account_id, per_minute, media_data, created_at)
                 VALUES (?1,?2,?3,?4,?5,?6)",
                params![b, tenant, acc, per_minute, media.as_deref(), now],
            )?;
            let mut ins = tx.prepare(
                "INSERT INTO messages (id, tenant_id, account_id, direction, chat_jid, kind, body, media_mimetype,
                   media_file_name, media_size, status, attempts, created_at, updated_at, bulk_id, due_at)
                 VALUES (?1,?2,?3,'outgoing',?4,?5,?6,?7,?8,?9,'pending',0,?10,?10,?11,?12)",
            )?;
            for (mid, chat, due) in &rows {
                // Whole batches only, as for the daily limit: a batch that does not fit is
                // refused and the transaction (with what it counted) rolled back.
                if let FirstContact::LimitReached { limit, reset_at } =
                    new_contacts::admit(&tx, &acc, chat, mid, (start, reset_at), now)?
                {
                    return Ok(Admission::NewContactLimitReached { limit, reset_at });
                }
                ins.execute(params![mid, tenant, acc, chat, kind, body, mimetype, file_name, size, now, b, due + delay])?;
            }
            drop(ins);
            tx.commit()?;
            Ok(Admission::Admitted { delay })
        })
        .await?;
    let mut items = items;
    match admission {
        Admission::Admitted { delay } => {
            for i in &mut items {
                i.scheduled_at += delay;
            }
        }
        Admission::NotFound => return Err(ApiError::NotFound("account")),
        Admission::NotActive(s) => {
            return Err(ApiError::Conflict {
                code: "account_not_active",
                message: format!("account is {}; connect it before sending", s.as_str()),
            });
        }
        Admission::NewContactLimitReached { limit, reset_at } => {
            return Err(ApiError::RateLimited {
                code: crate::messages::NEW_CONTACT_LIMIT_REACHED,
                message: format!(
                    "the batch's first contacts do not fit in the account's limit of {limit} new contacts a day; \
                     resets at {reset_at} (ms since epoch)"
                ),
                retry_after_secs: ((reset_at - now) / 1000).max(1) as u64,
                reset_at: Some(reset_at),
            });
        }
        Admission::LimitReached { limit, remaining, reset_at } => {
            return Err(ApiError::RateLimited {
                code: "daily_limit_reached",
                message: format!(
                    "{} messages do not fit in the daily limit of {limit} ({remaining} left today); \
                     resets at {reset_at} (ms since epoch)",
                    items.len()
                ),
                retry_after_secs: ((reset_at - now) / 1000).max(1) as u64,
                reset_at: Some(reset_at),
            });
        }
    }
    st.bulk_wake.notify_one();
    Ok((StatusCode::ACCEPTED, Json(BulkAccepted { bulk_id, per_minute, messages: items })))
}

struct Due {
    id: String,
    attempts: i64,
    tenant_id: String,
    account_id: String,
    chat: String,
    kind: String,
    body: Option<String>,
    mimetype: Option<String>,
    file_name: Option<String>,
    media: Option<Vec<u8>>,
    /// A single send (not part of a bulk send).
    single: bool,
    created_at: i64,
    /// The WhatsApp id of the quoted message (single sends that reply).
    quoted_wa_id: Option<String>,
    /// The account's state (`None`: the account is gone).
    account_state: Option<String>,
    /// The typed payload (JSON) of a location, contact card or poll.
    payload: Option<String>,
}

impl Due {
    /// What to send again; `None` when a typed row's payload does not read back.
    fn content(&mut self) -> Option<OutgoingContent> {
        fn read<T: serde::de::DeserializeOwned>(p: &Option<String>) -> Option<T> {
            p.as_deref().and_then(|p| serde_json::from_str(p).ok())
        }
        let quoted_id = self.quoted_wa_id.take();
        Some(match (self.kind.as_str(), MediaKind::parse(&self.kind), self.media.take()) {
            ("location", ..) => OutgoingContent::Location { location: read(&self.payload)?, quoted_id },
            ("contact", ..) => OutgoingContent::Contact { card: read(&self.payload)?, quoted_id },
            ("poll", ..) => {
                let record: crate::messages::polls::PollRecord = read(&self.payload)?;
                // A resend keeps the stored secret: votes on either copy open with it.
                let secret = record.secret().unwrap_or_else(rand::random);
                OutgoingContent::Poll { poll: record.poll, secret }
            }
            (_, Some(kind), Some(data)) => OutgoingContent::Media {
                kind,
                data: data.into(),
                mimetype: self.mimetype.take().unwrap_or_else(|| "application/octet-stream".into()),
                caption: self.body.take(),
                file_name: self.file_name.take(),
                quoted_id,
            },
            _ => OutgoingContent::Text { body: self.body.take().unwrap_or_default(), quoted_id },
        })
    }
}

/// Sends every queued message that is due now (bulk messages at their pace, single sends whose
/// request was interrupted), up to a batch; returns when the next one falls due, if any remain.
pub async fn tick(st: &AppState) -> Result<Option<i64>, DbError> {
    let Some(runtime) = st.runtime.clone() else { return Ok(None) };
    let now = st.clock.now_ms();
    let due: Vec<Due> = st
        .db
        .call(move |c| {
            let mut stmt = c.prepare(DUE_SQL)?;
            let rows = stmt
                .query_map(params![now, TICK_BATCH as i64], |r| {
                    Ok(Due {
                        id: r.get(0)?,
                        tenant_id: r.get(1)?,
                        account_id: r.get(2)?,
                        chat: r.get(3)?,
                        kind: r.get(4)?,
                        body: r.get(5)?,
                        mimetype: r.get(6)?,
                        file_name: r.get(7)?,
                        media: r.get(8)?,
                        attempts: r.get(9)?,
                        single: r.get(10)?,
                        created_at: r.get(11)?,
                        quoted_wa_id: r.get(12)?,
                        account_state: r.get(13)?,
                        payload: r.get(14)?,
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await?;
    let max_age = st.limits.pending_send_max_age_ms;
    let mut awaiting_catch_up = false;
    for mut d in due {
        if let Some(reason) = unsendable_reason(&d, now, max_age) {
            if let Err(e) = fail_queued(st, &d.tenant_id, &d.account_id, &d.id, reason).await {
                tracing::warn!(message_id = %d.id, error = %e, "queued message not failed");
            }
            continue;
        }
        if !runtime.caught_up(&d.tenant_id, &d.account_id) {
            // Logged in again, but WhatsApp's offline queue is not read yet: a receipt in it
            // may settle this row (an unconfirmed or interrupted attempt). Left as it is, so
            // the phone does not get a second copy; looked at again shortly.
            awaiting_catch_up = true;
            continue;
        }
        // Claim the row so a concurrent tick cannot send it twice, and fix the WhatsApp id it
        // goes out under (kept from an interrupted earlier attempt). A single send keeps a lease
        // while it is in hand, so that a crash now leaves it to the next start again.
        let (id, fresh) = (d.id.clone(), new_wa_message_id());
        let lease = if d.single { Some(now + SINGLE_SEND_LEASE_MS) } else { None };
        let claimed: Option<String> = st
            .db
            .call(move |c| {
                let tx = c.transaction()?;
                let n = tx.execute(
                    "UPDATE messages SET due_at = ?3, attempts = attempts + 1,
                       reserved_wa_id = COALESCE(reserved_wa_id, ?2)
                     WHERE id = ?1 AND due_at IS NOT NULL AND due_at <= ?4 AND status = 'pending'",
                    params![id, fresh, lease, now],
                )?;
                let wa_id = if n == 1 {
                    tx.query_row("SELECT reserved_wa_id FROM messages WHERE id = ?1", params![id], |r| {
                        r.get(0)
                    })
                    .optional()?
                    .flatten()
                } else {
                    None
                };
                tx.commit()?;
                Ok(wa_id)
            })
            .await?;
        let Some(wa_id) = claimed else { continue };
        let result = match d.content() {
            Some(content) => {
                runtime.send_with_id_caught_up(&d.tenant_id, &d.account_id, &d.chat, &wa_id, content).await
            }
            None => Err(RuntimeError::Failed("the stored message does not read back".into())),
        };
        if matches!(result, Err(RuntimeError::AwaitingCatchUp)) {
            // A connection came up since the look above and has not read WhatsApp's offline
            // queue yet: nothing went out. The claim is given back (not an attempt).
            let (id, at) = (d.id.clone(), st.clock.now_ms() + CATCH_UP_POLL_MS);
            st.db
                .call(move |c| {
                    c.execute(
                        "UPDATE messages SET due_at = ?2, attempts = attempts - 1 WHERE id = ?1 AND status = 'pending'",
                        params![id, at],
                    )
                })
                .await?;
            awaiting_catch_up = true;
            continue;
        }
        if matches!(result, Err(RuntimeError::NotRunning | RuntimeError::Unconfirmed(_)))
            && d.attempts + 1 < MAX_ATTEMPTS
        {
            // Not sent: the session is down for now (reconnecting). Or unconfirmed: it went out
            // but no ack came, so it may have arrived; it goes again under the same id unless a
            // receipt settles the row first. Either way, queue it again.
            let (id, at) = (d.id.clone(), st.clock.now_ms() + NOT_RUNNING_RETRY_MS);
            st.db
                .call(move |c| {
                    c.execute(
                        "UPDATE messages SET due_at = ?2 WHERE id = ?1 AND status = 'pending'",
                        params![id, at],
                    )
                })
                .await?;
            continue;
        }
        if let Err(e) = record_outcome(st, &d.tenant_id, &d.account_id, &d.id, result).await {
            tracing::warn!(message_id = %d.id, error = %e, "queued message not recorded");
        }
    }
    if awaiting_catch_up {
        return Ok(Some(st.clock.now_ms() + CATCH_UP_POLL_MS));
    }
    st.db
        .call(|c| {
            c.query_row(
                "SELECT MIN(due_at) FROM messages WHERE due_at IS NOT NULL AND status = 'pending'",
                [],
                |r| r.get::<Option<i64>>(0),
            )
        })
        .await
}

/// Queues again, due now, every message that was in hand but never recorded as sent or failed
/// (the server stopped in between): bulk messages claimed by the runner, single sends still
/// leased to their request or to the runner. Each keeps its WhatsApp id. Call when the server
/// starts, before it serves requests and before the first [`tick`]. Returns how many.
pub async fn recover_interrupted(st: &AppState) -> Result<usize, DbError> {
    let now = st.clock.now_ms();
    let bulk = st
        .db
        .call(move |c| {
            c.execute(
                "UPDATE messages SET due_at = ?1
                 WHERE bulk_id IS NOT NULL AND status = 'pending' AND due_at IS NULL",
                params![now],
            )
        })
        .await?;
    Ok(bulk + recover_interrupted_single_sends(st, now).await?)
}

/// The single-send part of [`recover_interrupted`]: leased rows become due at `now`.
async fn recover_interrupted_single_sends(st: &AppState, now: i64) -> Result<usize, DbError> {
    st.db
        .call(move |c| {
            c.execute(
                "UPDATE messages SET due_at = ?1
                 WHERE bulk_id IS NULL AND direction = 'outgoing' AND status = 'pending' AND due_at > ?1",
                params![now],
            )
        })
        .await
}

/// When `account_id` became active: its single sends waiting out a not-running retry
/// ([`NOT_RUNNING_RETRY_MS`]) are due now. Leases of sends in hand (much longer) are untouched.
pub async fn account_active(db: &crate::db::Db, account_id: &str, now: i64) -> Result<usize, DbError> {
    let a = account_id.to_owned();
    db.call(move |c| {
        c.execute(
            "UPDATE messages SET due_at = ?2
             WHERE account_id = ?1 AND bulk_id IS NULL AND direction = 'outgoing' AND status = 'pending'
               AND due_at > ?2 AND due_at <= ?3",
            params![a, now, now + NOT_RUNNING_RETRY_MS],
        )
    })
    .await
}

/// Why a due message must fail instead of going out, if it must.
fn unsendable_reason(d: &Due, now: i64, max_age_ms: i64) -> Option<&'static str> {
    if d.account_state.as_deref() == Some(AccountState::LoggedOut.as_str()) {
        return Some(ACCOUNT_LOGGED_OUT);
    }
    (d.single && now.saturating_sub(d.created_at) > max_age_ms).then_some(EXPIRED)
}

/// Records a queued message that will not be sent as `failed` with `reason` (unless something
/// else settled it meanwhile), with the usual `message_status_update` event.
async fn fail_queued(
    st: &AppState,
    tenant_id: &str,
    account_id: &str,
    id: &str,
    reason: &'static str,
) -> Result<(), ApiError> {
    let (i, now) = (id.to_owned(), st.clock.now_ms());
    // Take the row out of the queue first, so only one caller records its failure.
    let taken = st
        .db
        .call(move |c| {
            Ok(c.execute(
                "UPDATE messages SET due_at = CASE WHEN bulk_id IS NULL THEN CAST(?3 AS BIGINT) END
                 WHERE id = ?1 AND status = 'pending' AND due_at IS NOT NULL AND due_at <= ?2",
                params![i, now, now + SINGLE_SEND_LEASE_MS],
            )? == 1)
        })
        .await?;
    if taken {
        tracing::info!(message_id = %id, reason, "queued message failed without being sent");
        let _recorded =
            record_outcome(st, tenant_id, account_id, id, Err(RuntimeError::Failed(reason.to_owned())))
                .await?;
    }
    Ok(())
}

/// Sends queued messages as they fall due until `shutdown` resolves. The server queues again
/// what an earlier run left interrupted ([`recover_interrupted`]) before it starts this.
pub async fn run(st: AppState, shutdown: impl std::future::Future<Output = ()>) {
    tokio::pin!(shutdown);
    loop {
        let wait = match tick(&st).await {
            Ok(Some(next)) => Duration::from_millis((next - st.clock.now_ms()).clamp(0, 60_000) as u64),
            Ok(None) => MAX_IDLE,
            Err(e) => {
                tracing::error!(error = %e, "bulk send tick failed");
                MAX_IDLE
            }
        };
        let wait = wait.min(MAX_IDLE);
        tokio::select! {
            _ = &mut shutdown => return,
            _ = st.bulk_wake.notified() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn due(single: bool, created_at: i64, state: Option<&str>) -> Due {
        Due {
            id: "m".into(),
            attempts: 1,
            tenant_id: "t".into(),
            account_id: "a".into(),
            chat: "1@s.whatsapp.net".into(),
            kind: "text".into(),
            body: Some("hi".into()),
            mimetype: None,
            file_name: None,
            media: None,
            single,
            created_at,
            quoted_wa_id: None,
            account_state: state.map(str::to_owned),
            payload: None,
        }
    }

    #[test]
    fn logged_out_accounts_and_old_single_sends_fail_instead_of_going_out() {
        let hour = 3_600_000;
        let now = 10 * hour;
        let active = Some("active");
        assert_eq!(unsendable_reason(&due(true, now - hour / 2, active), now, hour), None);
        assert_eq!(unsendable_reason(&due(true, now - 2 * hour, active), now, hour), Some(EXPIRED));
        // Bulk messages are paced over hours: the age limit is for single sends only.
        assert_eq!(unsendable_reason(&due(false, now - 5 * hour, active), now, hour), None);
        for single in [true, false] {
            let d = due(single, now, Some("logged_out"));
            assert_eq!(unsendable_reason(&d, now, hour), Some(ACCOUNT_LOGGED_OUT));
        }
        // A session that is only reconnecting is retried, not failed.
        assert_eq!(unsendable_reason(&due(true, now, Some("reconnecting")), now, hour), None);
    }
}
