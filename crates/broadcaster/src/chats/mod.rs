//! Chats of an account: every chat it has messages in, newest activity first, with the last
//! message and how many incoming messages came since the account last wrote there; and every
//! chat the account's phone marked (archived, pinned, muted, marked read or unread) without
//! messages recorded here, placed by when it was marked.
//!
//! A chat is what history calls one (`chat` of a stored message: a group, or a contact's
//! phone-number JID, else its LID). `unread_count` counts incoming messages newer than the
//! account's last outgoing message in the chat: replying is what reads a chat here.
//!
//! Beside that, each chat carries what the account's app state says of it ([`settings`]:
//! archived, pinned, muted, marked read or unread on a device) and the name the phone shows
//! for it ([`crate::contacts::names`]).

pub mod http;
pub mod settings;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::db::{Conn, DbResult, OptionalExtension, params};
use crate::messages::StoredMessage;

/// One chat with its latest message.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ChatSummary {
    /// The chat JID (as `chat` in history: pass it as `?chat=` to list its messages).
    pub chat: String,
    /// The 1:1 chat's LID, when known.
    pub chat_lid: Option<String>,
    /// `group` (`…@g.us`) or `direct`.
    pub kind: String,
    /// When the last message was recorded (ms); for a chat without messages, when the phone
    /// last marked it (what orders the list).
    pub last_message_at: i64,
    /// Incoming messages since the account's last outgoing message in this chat.
    pub unread_count: i64,
    /// All messages recorded in the chat.
    pub message_count: i64,
    /// Absent for a chat the phone marked that has no messages here.
    pub last_message: Option<StoredMessage>,
    /// The name the account's phone shows for a direct chat: saved in its address book, else
    /// the contact's push name.
    pub name: Option<String>,
    /// Archived on the account's devices.
    pub archived: bool,
    /// Pinned on the account's devices.
    pub pinned: bool,
    /// Muted until (ms since the epoch; `-1`: always); absent when not muted.
    pub muted_until: Option<i64>,
    /// Marked read (`true`) or unread (`false`) on one of the account's devices; absent when
    /// never marked.
    pub marked_read: Option<bool>,
}

/// A page of chats, newest activity first.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ChatPage {
    pub chats: Vec<ChatSummary>,
    /// Pass as `cursor` for the next (older) page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// Where a page starts: after the chat with this last activity and JID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatCursor {
    pub last_at: i64,
    pub chat: String,
}

impl ChatCursor {
    pub fn encode(&self) -> String {
        hex::encode(format!("{}|{}", self.last_at, self.chat))
    }

    /// `None` for a cursor this server did not issue.
    pub fn decode(s: &str) -> Option<Self> {
        let raw = String::from_utf8(hex::decode(s).ok()?).ok()?;
        let (t, chat) = raw.split_once('|')?;
        Some(Self { last_at: t.parse().ok()?, chat: chat.to_owned() })
    }
}

/// Up to `limit` chats of the account (which the caller checked exists in the tenant).
pub fn list(
    c: &Conn,
    tenant_id: &str,
    account_id: &str,
    limit: u32,
    cursor: Option<&ChatCursor>,
) -> DbResult<ChatPage> {
    let (ct, cc) = match cursor {
        Some(k) => (Some(k.last_at), Some(k.chat.clone())),
        None => (None, None),
    };
    let mut stmt = c.prepare(
        "SELECT g.chat_jid, g.last_at, g.n,
           (SELECT COUNT(*) FROM messages u WHERE u.tenant_id = ?1 AND u.account_id = ?2
              AND u.chat_jid = g.chat_jid AND u.direction = 'incoming'
              AND u.created_at > COALESCE((SELECT MAX(o.created_at) FROM messages o
                   WHERE o.tenant_id = ?1 AND o.account_id = ?2 AND o.chat_jid = g.chat_jid
                     AND o.direction = 'outgoing'), -1)),
           (SELECT l.id FROM messages l WHERE l.tenant_id = ?1 AND l.account_id = ?2 AND l.chat_jid = g.chat_jid
              ORDER BY l.created_at DESC, l.id DESC LIMIT 1),
           COALESCE(s.archived, 0), COALESCE(s.pinned, 0), s.muted_until, s.marked_read, s.wa_chat
         FROM (SELECT chat_jid, MAX(created_at) AS last_at, COUNT(*) AS n FROM messages
                WHERE tenant_id = ?1 AND account_id = ?2 GROUP BY chat_jid
               UNION ALL
               SELECT m.chat_jid, m.updated_at, 0 FROM chat_settings m
                WHERE m.tenant_id = ?1 AND m.account_id = ?2
                  AND (m.archived <> 0 OR m.pinned <> 0 OR m.muted_until IS NOT NULL OR m.marked_read IS NOT NULL)
                  AND NOT EXISTS (SELECT 1 FROM messages x WHERE x.tenant_id = ?1 AND x.account_id = ?2
                                   AND x.chat_jid = m.chat_jid)) g
         LEFT JOIN chat_settings s ON s.account_id = ?2 AND s.chat_jid = g.chat_jid
         WHERE CAST(?3 AS BIGINT) IS NULL OR g.last_at < ?3 OR (g.last_at = ?3 AND g.chat_jid < ?4)
         ORDER BY g.last_at DESC, g.chat_jid DESC LIMIT ?5",
    )?;
    type Marks = (bool, bool, Option<i64>, Option<bool>, Option<String>);
    let rows: Vec<(String, i64, i64, i64, Option<String>, Marks)> = stmt
        .query_map(params![tenant_id, account_id, ct, cc, i64::from(limit) + 1], |r| {
            let marks = (r.get(5)?, r.get(6)?, r.get(7)?, r.get(8)?, r.get(9)?);
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, marks))
        })?
        .collect::<Result<_, _>>()?;
    let more = rows.len() > limit as usize;
    let mut chats = Vec::with_capacity(rows.len().min(limit as usize));
    for (chat, last_at, n, unread, last_id, marks) in rows.into_iter().take(limit as usize) {
        // A chat with messages whose last one vanished meanwhile is left out, as before; a
        // marked chat without messages has none to load.
        let mut last = match &last_id {
            Some(id) => match crate::messages::load(c, tenant_id, id)? {
                Some(m) => Some(m),
                None => continue,
            },
            None => None,
        };
        let name = if chat.ends_with("@g.us") {
            None
        } else {
            chat_name(c, tenant_id, account_id, &chat, last.as_ref())?
        };
        if let Some(last) = last.as_mut() {
            crate::messages::fill_sender_names(c, tenant_id, account_id, std::slice::from_mut(last))?;
        }
        let (archived, pinned, muted_until, marked_read, wa_chat) = marks;
        let chat_lid = match &last {
            Some(m) => m.chat_lid.clone(),
            None => wa_chat.filter(|w| w.ends_with("@lid") && *w != chat),
        };
        chats.push(ChatSummary {
            name,
            archived,
            pinned,
            muted_until,
            marked_read,
            kind: if chat.ends_with("@g.us") { "group" } else { "direct" }.to_owned(),
            chat_lid,
            chat,
            last_message_at: last_at,
            unread_count: unread,
            message_count: n,
            last_message: last,
        });
    }
    let next_cursor = if more {
        chats.last().map(|c| ChatCursor { last_at: c.last_message_at, chat: c.chat.clone() }.encode())
    } else {
        None
    };
    Ok(ChatPage { chats, next_cursor })
}

/// The name the phone shows for a direct chat (by its JID, else its LID), else the push name
/// its last incoming message carried.
fn chat_name(
    c: &Conn,
    tenant_id: &str,
    account_id: &str,
    chat: &str,
    last: Option<&StoredMessage>,
) -> DbResult<Option<String>> {
    use crate::contacts::names::display_name;
    if let Some(n) = display_name(c, tenant_id, account_id, chat)? {
        return Ok(Some(n));
    }
    let Some(last) = last else { return Ok(None) };
    if let Some(lid) = &last.chat_lid
        && let Some(n) = display_name(c, tenant_id, account_id, lid)?
    {
        return Ok(Some(n));
    }
    Ok(last.push_name.clone().filter(|_| last.direction == "incoming"))
}

/// The chat as history keys it for `chat` as an API caller named it (a LID the account's
/// history or app state knows under a phone-number JID becomes that JID).
pub fn resolve(c: &Conn, tenant_id: &str, account_id: &str, chat: &str) -> DbResult<String> {
    if !chat.ends_with("@lid") {
        return Ok(chat.to_owned());
    }
    let known: Option<String> = c
        .query_row(
            "SELECT chat_jid FROM messages WHERE tenant_id = ?1 AND account_id = ?2 AND chat_lid = ?3
             UNION SELECT chat_jid FROM chat_settings WHERE tenant_id = ?1 AND account_id = ?2 AND wa_chat = ?3
             LIMIT 1",
            params![tenant_id, account_id, chat],
            |r| r.get(0),
        )
        .optional()?;
    Ok(known.unwrap_or_else(|| chat.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let k = ChatCursor { last_at: 1700, chat: "15550001111@s.whatsapp.net".into() };
        assert_eq!(ChatCursor::decode(&k.encode()), Some(k));
        assert_eq!(ChatCursor::decode("zz"), None);
        assert_eq!(ChatCursor::decode(&hex::encode("x|y")), None);
    }
}
