//! `GET /api/v1/accounts/{id}/chats`, and one chat's settings: `GET` and `PATCH
//! /api/v1/accounts/{id}/chats/{chat}`.

use axum::Json;
use axum::extract::{Path, State};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use super::settings::{self, Changes, ChatSettings};
use super::{ChatCursor, ChatPage};
use crate::auth::{Permission, Principal};
use crate::db::params;
use crate::error::ApiJson;
use crate::error::{ApiError, ApiQuery};
use crate::runtime::ChatChange;
use crate::state::AppState;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ChatsQuery {
    /// Page size, 1 to 200 (default 50).
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// The account's chats, newest activity first, each with its last message and unread count
/// (incoming messages since the account last wrote in the chat).
#[utoipa::path(get, path = "/api/v1/accounts/{id}/chats", tag = "chats",
    params(("id" = String, Path), ChatsQuery),
    responses((status = 200, body = ChatPage), (status = 400, body = crate::error::ErrorBody),
              (status = 404, body = crate::error::ErrorBody)),
    security(("api_key" = [])))]
pub async fn list(
    State(st): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<ChatsQuery>,
) -> Result<Json<ChatPage>, ApiError> {
    p.require(Permission::Read)?;
    let limit = q.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(ApiError::bad("invalid_query", "limit must be between 1 and 200"));
    }
    let cursor = q
        .cursor
        .as_deref()
        .map(|c| {
            ChatCursor::decode(c)
                .ok_or_else(|| ApiError::bad("invalid_cursor", "cursor is not one this server issued"))
        })
        .transpose()?;
    let tenant = p.tenant_id.clone();
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
            super::list(c, &tenant, &id, limit, cursor.as_ref()).map(Some)
        })
        .await?;
    page.map(Json).ok_or(ApiError::NotFound("account"))
}

/// What to change about a chat; at least one field. Made in the order listed.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChatUpdate {
    /// Mark the chat read (`true`) or unread (`false`) on every device of the account.
    pub read: Option<bool>,
    /// Archive or unarchive it.
    pub archived: Option<bool>,
    /// Pin or unpin it.
    pub pinned: Option<bool>,
    /// Mute (`true`, until `muted_until` or for ever) or unmute it.
    pub muted: Option<bool>,
    /// With `muted: true`: until when (ms since the epoch, in the future).
    pub muted_until: Option<i64>,
}

impl ChatUpdate {
    fn changes(&self, now: i64) -> Result<Changes, ApiError> {
        let mut out = Vec::new();
        if let Some(r) = self.read {
            out.push(ChatChange::Read(r));
        }
        if let Some(a) = self.archived {
            out.push(ChatChange::Archived(a));
        }
        if let Some(p) = self.pinned {
            out.push(ChatChange::Pinned(p));
        }
        match (self.muted, self.muted_until) {
            (Some(true), None) => out.push(ChatChange::Muted(Some(-1))),
            (Some(true), Some(until)) if until > now => out.push(ChatChange::Muted(Some(until))),
            (Some(true), Some(_)) => {
                return Err(ApiError::bad("invalid_body", "muted_until must be in the future"));
            }
            (Some(false), None) => out.push(ChatChange::Muted(None)),
            (_, Some(_)) => return Err(ApiError::bad("invalid_body", "muted_until goes with muted: true")),
            (None, None) => {}
        }
        if out.is_empty() {
            return Err(ApiError::bad(
                "invalid_body",
                "nothing to change: give read, archived, pinned or muted",
            ));
        }
        Ok(Changes(out))
    }
}

/// A chat's settings as the account's devices share them (archived, pinned, muted, marked read);
/// untouched ones for a chat nothing was ever recorded of.
#[utoipa::path(get, path = "/api/v1/accounts/{id}/chats/{chat}", tag = "chats",
    params(("id" = String, Path), ("chat" = String, Path, description = "the chat JID or an E.164 number")),
    responses((status = 200, body = ChatSettings), (status = 400, body = crate::error::ErrorBody),
              (status = 404, body = crate::error::ErrorBody)),
    security(("api_key" = [])))]
pub async fn get(
    State(st): State<AppState>,
    p: Principal,
    Path((id, chat)): Path<(String, String)>,
) -> Result<Json<ChatSettings>, ApiError> {
    p.require(Permission::Read)?;
    let chat = crate::messages::parse_recipient(&chat)?.chat;
    settings::get(&st, &p.tenant_id, &id, &chat).await?.map(Json).ok_or(ApiError::NotFound("account"))
}

/// Marks a chat read or unread, archives, pins or mutes it on every device of the account: the
/// phone sees the change (an app-state patch), and a `chat_update` event follows.
#[utoipa::path(patch, path = "/api/v1/accounts/{id}/chats/{chat}", tag = "chats",
    params(("id" = String, Path), ("chat" = String, Path, description = "the chat JID or an E.164 number")),
    request_body = ChatUpdate,
    responses((status = 200, body = ChatSettings), (status = 400, body = crate::error::ErrorBody),
              (status = 404, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody),
              (status = 503, body = crate::error::ErrorBody)),
    security(("api_key" = [])))]
pub async fn update(
    State(st): State<AppState>,
    p: Principal,
    Path((id, chat)): Path<(String, String)>,
    ApiJson(req): ApiJson<ChatUpdate>,
) -> Result<Json<ChatSettings>, ApiError> {
    p.require(Permission::Send)?;
    let chat = crate::messages::parse_recipient(&chat)?.chat;
    let changes = req.changes(st.clock.now_ms())?;
    settings::change(&st, &p.tenant_id, &id, &chat, &changes).await.map(Json)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(v: serde_json::Value) -> ChatUpdate {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn updates_become_changes_in_order_and_bad_ones_are_refused() {
        let u = update(serde_json::json!({ "muted": true, "read": true, "archived": false }));
        assert_eq!(
            u.changes(10).unwrap().0,
            [ChatChange::Read(true), ChatChange::Archived(false), ChatChange::Muted(Some(-1))]
        );
        let u = update(serde_json::json!({ "muted": true, "muted_until": 11 }));
        assert_eq!(u.changes(10).unwrap().0, [ChatChange::Muted(Some(11))]);
        assert!(update(serde_json::json!({ "muted": true, "muted_until": 10 })).changes(10).is_err());
        assert!(update(serde_json::json!({ "muted_until": 11 })).changes(10).is_err());
        assert!(update(serde_json::json!({ "muted": false, "muted_until": 11 })).changes(10).is_err());
        assert!(update(serde_json::json!({})).changes(10).is_err());
    }
}
