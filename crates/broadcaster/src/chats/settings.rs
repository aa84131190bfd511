//! A chat's settings as the account's app state has them: archived, pinned, muted until,
//! marked read or unread by a device. The phone's changes arrive as session events and ours
//! go through the runtime first (an app-state patch the phone applies), then are recorded here
//! the same way; each change that alters the row is one `chat_update` event.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::db::{Conn, DbResult, OptionalExtension, params};
use crate::error::ApiError;
use crate::runtime::ChatChange;
use crate::state::AppState;

/// The `chat_update` event's name (webhooks and live).
pub const EVENT: &str = "chat_update";

/// A chat's settings (`chat_update` event data).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ChatSettings {
    pub account_id: String,
    /// The chat JID, as history names it.
    pub chat: String,
    pub archived: bool,
    pub pinned: bool,
    /// Muted until (ms since the epoch; `-1`: always); absent when not muted.
    pub muted_until: Option<i64>,
    /// Marked read (`true`) or unread (`false`) on one of the account's devices; absent when
    /// never marked.
    pub marked_read: Option<bool>,
    /// When the last change was made (ms), as the device that made it said.
    pub updated_at: i64,
}

impl ChatSettings {
    /// A chat nobody changed.
    pub fn untouched(account_id: &str, chat: &str) -> Self {
        ChatSettings {
            account_id: account_id.to_owned(),
            chat: chat.to_owned(),
            archived: false,
            pinned: false,
            muted_until: None,
            marked_read: None,
            updated_at: 0,
        }
    }

    fn with(mut self, change: ChatChange) -> Self {
        match change {
            ChatChange::Archived(on) => self.archived = on,
            ChatChange::Pinned(on) => self.pinned = on,
            ChatChange::Muted(until) => self.muted_until = until,
            ChatChange::Read(read) => self.marked_read = Some(read),
        }
        self
    }

    fn same_marks(&self, other: &Self) -> bool {
        (self.archived, self.pinned, self.muted_until, self.marked_read)
            == (other.archived, other.pinned, other.muted_until, other.marked_read)
    }
}

/// The chat's settings and the name app state gives it, if anything was ever recorded.
pub fn load(
    c: &Conn,
    tenant_id: &str,
    account_id: &str,
    chat: &str,
) -> DbResult<Option<(ChatSettings, String)>> {
    c.query_row(
        "SELECT archived, pinned, muted_until, marked_read, updated_at, wa_chat FROM chat_settings
          WHERE tenant_id = ?1 AND account_id = ?2 AND chat_jid = ?3",
        params![tenant_id, account_id, chat],
        |r| {
            Ok((
                ChatSettings {
                    account_id: account_id.to_owned(),
                    chat: chat.to_owned(),
                    archived: r.get(0)?,
                    pinned: r.get(1)?,
                    muted_until: r.get(2)?,
                    marked_read: r.get(3)?,
                    updated_at: r.get(4)?,
                },
                r.get(5)?,
            ))
        },
    )
    .optional()
}

/// Records one change; `Some` (and a `chat_update` event in the outbox, in the same
/// transaction) when it changed the chat's settings, `None` for a repeat.
#[allow(clippy::too_many_arguments)]
pub fn apply(
    c: &Conn,
    tenant_id: &str,
    account_id: &str,
    chat: &str,
    wa_chat: &str,
    change: ChatChange,
    at_ms: i64,
    now: i64,
) -> DbResult<Option<ChatSettings>> {
    let tx = c.transaction()?;
    let before = load(&tx, tenant_id, account_id, chat)?.map(|(s, _)| s);
    let base = before.clone().unwrap_or_else(|| ChatSettings::untouched(account_id, chat));
    let after = ChatSettings { updated_at: at_ms.max(base.updated_at), ..base.with(change) };
    if before.as_ref().is_some_and(|b| b.same_marks(&after)) {
        return Ok(None);
    }
    tx.execute(
        "INSERT INTO chat_settings
           (tenant_id, account_id, chat_jid, wa_chat, archived, pinned, muted_until, marked_read, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
         ON CONFLICT (account_id, chat_jid) DO UPDATE SET wa_chat = ?4, archived = ?5, pinned = ?6,
           muted_until = ?7, marked_read = ?8, updated_at = ?9",
        params![
            tenant_id,
            account_id,
            chat,
            wa_chat,
            after.archived,
            after.pinned,
            after.muted_until,
            after.marked_read,
            after.updated_at
        ],
    )?;
    let data = serde_json::to_value(&after).unwrap_or_default();
    crate::outbox::enqueue(&tx, tenant_id, Some(account_id), EVENT, data, now)?;
    tx.commit()?;
    Ok(Some(after))
}

/// The changes one request asks for, in the order they are made.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes(pub Vec<ChatChange>);

/// The chat's settings (untouched ones when nothing was recorded); `None` for an account not
/// in the tenant.
pub async fn get(
    st: &AppState,
    tenant_id: &str,
    account_id: &str,
    chat: &str,
) -> Result<Option<ChatSettings>, ApiError> {
    let (t, a, chat) = (tenant_id.to_owned(), account_id.to_owned(), chat.to_owned());
    let found = st
        .db
        .call(move |c| {
            let exists: bool = c.query_row(
                "SELECT EXISTS (SELECT 1 FROM accounts WHERE tenant_id = ?1 AND id = ?2)",
                params![t, a],
                |r| r.get(0),
            )?;
            if !exists {
                return Ok(None);
            }
            let chat = super::resolve(c, &t, &a, &chat)?;
            let s = load(c, &t, &a, &chat)?.map(|(s, _)| s);
            Ok(Some(s.unwrap_or_else(|| ChatSettings::untouched(&a, &chat))))
        })
        .await?;
    Ok(found)
}

/// Makes each change on every device of the account (through the runtime: an app-state patch
/// the phone applies), recording each once WhatsApp took it; returns the chat's settings.
pub async fn change(
    st: &AppState,
    tenant_id: &str,
    account_id: &str,
    chat: &str,
    changes: &Changes,
) -> Result<ChatSettings, ApiError> {
    let rt = st
        .runtime
        .clone()
        .ok_or_else(|| ApiError::Unavailable("no WhatsApp runtime is configured".into()))?;
    crate::messages::actions::require_active(st, tenant_id, account_id).await?;
    let (t, a, asked) = (tenant_id.to_owned(), account_id.to_owned(), chat.to_owned());
    let (chat, wa_chat) = st
        .db
        .call(move |c| {
            let chat = super::resolve(c, &t, &a, &asked)?;
            // The phone's own name for the chat when it ever changed it, else the caller's.
            let wa_chat = load(c, &t, &a, &chat)?.map_or(asked, |(_, w)| w);
            Ok((chat, wa_chat))
        })
        .await?;
    for &change in &changes.0 {
        rt.change_chat(tenant_id, account_id, &wa_chat, change).await.map_err(|e| match e {
            crate::runtime::RuntimeError::NotRunning => ApiError::Conflict {
                code: "account_not_connected",
                message: "the account's session is not running; reconnect it".into(),
            },
            e => ApiError::Unavailable(format!("WhatsApp refused or failed: {e}")),
        })?;
        let now = st.clock.now_ms();
        let (t, a, c2, w) = (tenant_id.to_owned(), account_id.to_owned(), chat.clone(), wa_chat.clone());
        let applied = st.db.call(move |c| apply(c, &t, &a, &c2, &w, change, now, now)).await?;
        if let Some(s) = applied {
            let data = serde_json::to_value(&s).unwrap_or_default();
            st.live.publish(tenant_id, Some(account_id), EVENT, data, now);
            st.outbox_notify.notify_one();
        }
    }
    get(st, tenant_id, account_id, &chat).await?.ok_or(ApiError::NotFound("account"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_sets_only_its_own_mark() {
        let s = ChatSettings::untouched("acc", "1@s.whatsapp.net");
        let s = s.with(ChatChange::Archived(true)).with(ChatChange::Muted(Some(-1)));
        assert!(s.archived && !s.pinned && s.muted_until == Some(-1) && s.marked_read.is_none());
        let s = s.with(ChatChange::Read(false)).with(ChatChange::Archived(false));
        assert!(!s.archived && s.marked_read == Some(false) && s.muted_until == Some(-1));
        assert!(s.same_marks(&ChatSettings { updated_at: 99, ..s.clone() }));
    }
}
