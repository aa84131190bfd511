//! Bulk send: one text or media message to many recipients, paced at a number of messages per
//! minute. The request records one `pending` message per recipient at once (each with its
//! `due_at`) and answers with their ids; [`run`] sends each when it falls due through the same
//! path as a single send ([`crate::messages::dispatch`]), so statuses, receipts and events are
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
//! [`NOT_RUNNING_RETRY_MS`] and is tried again, up to [`MAX_ATTEMPTS`] claims.

use std::collections::HashSet;
use std::time::Duration;

use crate::db::{OptionalExtension, params};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::account_state::AccountState;
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
/// Claims of one message at most; then it fails (its account never came back).
pub const MAX_ATTEMPTS: i64 = 120;

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
    Admitted,
    NotFound,
    NotActive(AccountState),
    LimitReached { limit: i64, remaining: i64, reset_at: i64 },
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
        OutgoingContent::Media { kind, data, mimetype, caption, file_name } => {
            (kind.as_str(), caption, Some(mimetype), file_name, Some(data))
        }
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
                ins.execute(params![mid, tenant, acc, chat, kind, body, mimetype, file_name, size, now, b, due])?;
            }
            drop(ins);
            tx.commit()?;
            Ok(Admission::Admitted)
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
}

/// Sends every bulk message that is due now (up to a batch); returns when the next one falls
/// due, if any remain.
pub async fn tick(st: &AppState) -> Result<Option<i64>, DbError> {
    let Some(runtime) = st.runtime.clone() else { return Ok(None) };
    let now = st.clock.now_ms();
    let due: Vec<Due> = st
        .db
        .call(move |c| {
            let mut stmt = c.prepare(
                "SELECT m.id, m.tenant_id, m.account_id, m.chat_jid, m.kind, m.body, m.media_mimetype,
                   m.media_file_name, b.media_data, m.attempts
                 FROM messages m JOIN bulk_sends b ON b.id = m.bulk_id
                 WHERE m.due_at IS NOT NULL AND m.due_at <= ?1 AND m.status = 'pending'
                 ORDER BY m.due_at, m.id LIMIT ?2",
            )?;
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
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await?;
    for d in due {
        // Claim the row so a concurrent tick cannot send it twice, and fix the WhatsApp id it
        // goes out under (kept from an interrupted earlier attempt).
        let (id, fresh) = (d.id.clone(), new_wa_message_id());
        let claimed: Option<String> = st
            .db
            .call(move |c| {
                let tx = c.transaction()?;
                let n = tx.execute(
                    "UPDATE messages SET due_at = NULL, attempts = attempts + 1,
                       reserved_wa_id = COALESCE(reserved_wa_id, ?2)
                     WHERE id = ?1 AND due_at IS NOT NULL AND status = 'pending'",
                    params![id, fresh],
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
        let content = match (MediaKind::parse(&d.kind), d.media) {
            (Some(kind), Some(data)) => OutgoingContent::Media {
                kind,
                data: data.into(),
                mimetype: d.mimetype.unwrap_or_else(|| "application/octet-stream".into()),
                caption: d.body,
                file_name: d.file_name,
            },
            _ => OutgoingContent::Text { body: d.body.unwrap_or_default(), quoted_id: None },
        };
        let result = runtime.send_with_id(&d.tenant_id, &d.account_id, &d.chat, &wa_id, content).await;
        if matches!(result, Err(RuntimeError::NotRunning)) && d.attempts + 1 < MAX_ATTEMPTS {
            // Not sent: the session is down for now (reconnecting). Queue it again.
            let (id, at) = (d.id.clone(), st.clock.now_ms() + NOT_RUNNING_RETRY_MS);
            st.db
                .call(move |c| {
                    c.execute(
                        "UPDATE messages SET due_at = ?2 WHERE id = ?1 AND due_at IS NULL AND status = 'pending'",
                        params![id, at],
                    )
                })
                .await?;
            continue;
        }
        if let Err(e) = record_outcome(st, &d.tenant_id, &d.account_id, &d.id, result).await {
            tracing::warn!(message_id = %d.id, error = %e, "bulk message not recorded");
        }
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

/// Queues again every bulk message that was claimed but never recorded as sent or failed (the
/// server stopped in between); it keeps its WhatsApp id. Call before the first [`tick`] of a
/// server's life, never while one runs. Returns how many were queued.
pub async fn recover_interrupted(st: &AppState) -> Result<usize, DbError> {
    let now = st.clock.now_ms();
    st.db
        .call(move |c| {
            c.execute(
                "UPDATE messages SET due_at = ?1
                 WHERE bulk_id IS NOT NULL AND status = 'pending' AND due_at IS NULL",
                params![now],
            )
        })
        .await
}

/// Sends bulk messages as they fall due until `shutdown` resolves. Starts by queueing again
/// what an earlier run left interrupted ([`recover_interrupted`]).
pub async fn run(st: AppState, shutdown: impl std::future::Future<Output = ()>) {
    tokio::pin!(shutdown);
    match recover_interrupted(&st).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(count = n, "bulk messages interrupted by the last stop are sent again"),
        Err(e) => tracing::error!(error = %e, "cannot queue interrupted bulk messages again"),
    }
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
