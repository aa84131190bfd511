//! `GET /api/v1/accounts/{id}/chats`.

use axum::Json;
use axum::extract::{Path, State};
use serde::Deserialize;
use utoipa::IntoParams;

use super::{ChatCursor, ChatPage};
use crate::auth::{Permission, Principal};
use crate::db::params;
use crate::error::{ApiError, ApiQuery};
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
