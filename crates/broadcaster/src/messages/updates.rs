//! Reactions, edits and deletions for everyone: actions on a message, incoming or our own, that
//! update the message they target (its reactions, its edit history, its revoked flag) instead of
//! becoming messages of their own, each with its event (`message_reaction`, `message_edited`,
//! `message_revoked`).
//!
//! WhatsApp redelivers after reconnects, so applying the same action twice changes nothing and
//! emits nothing: a sender's reaction that is already there, an edit to the text the message
//! already has, a revoke of a revoked message.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{Edit, Reaction, StoredMessage, load};
use crate::db::{Conn, DbError, DbResult, OptionalExtension, params};
use crate::outbox;

pub use super::actor::{Actor, ME};

/// The `data` of `message_reaction`, `message_edited` and `message_revoked` events.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MessageUpdateEvent {
    /// Our id of the target message; absent when we do not hold it (sent before this server
    /// linked the account, or from another device).
    pub message_id: Option<String>,
    /// WhatsApp's id of the target message.
    pub wa_message_id: String,
    pub chat: String,
    /// Who acted: a JID (phone-number one when known), or `me`.
    pub sender: String,
    pub sender_phone: Option<String>,
    pub push_name: Option<String>,
    /// `message_reaction`: the emoji (empty when the sender removed its reaction).
    pub emoji: Option<String>,
    /// `message_reaction`: the sender took its reaction back.
    pub removed: Option<bool>,
    /// `message_edited`: the new text.
    pub body: Option<String>,
    /// `message_edited`: the text before (when we hold the message).
    pub previous_body: Option<String>,
    /// When (ms since epoch).
    pub at: i64,
    /// The target message after the change, when we hold it.
    pub message: Option<StoredMessage>,
}

/// What an action does to its target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// An emoji; empty removes the sender's reaction.
    React(String),
    /// The new text.
    Edit(String),
    Revoke,
}

impl Action {
    pub fn event_name(&self) -> &'static str {
        match self {
            Action::React(_) => "message_reaction",
            Action::Edit(_) => "message_edited",
            Action::Revoke => "message_revoked",
        }
    }
}

fn encode<T: Serialize>(v: &T) -> DbResult<String> {
    serde_json::to_string(v).map_err(|e| DbError::Encode(e.to_string()))
}

/// The target's id, body, reactions, edits and revoke time.
type TargetRow = (String, Option<String>, Option<String>, Option<String>, Option<i64>);

/// Applies `action` by `actor` to the message `target_wa_id` of the account (only a message of
/// `direction`, when given: an edit or revoke comes from the message's own sender), in one
/// transaction with its outbox event. Returns the event (name, data) for the live bus, or
/// `None` when nothing changed (a repeat).
pub fn apply(
    c: &mut Conn,
    tenant_id: &str,
    account_id: &str,
    target_wa_id: &str,
    direction: Option<&str>,
    actor: &Actor<'_>,
    action: &Action,
) -> DbResult<Option<(&'static str, serde_json::Value)>> {
    let tx = c.transaction()?;
    let row: Option<TargetRow> = tx
        .query_row(
            "SELECT id, body, reactions, edits, revoked_at FROM messages
              WHERE tenant_id = ?1 AND account_id = ?2 AND wa_message_id = ?3
                AND (CAST(?4 AS TEXT) IS NULL OR direction = ?4)
              ORDER BY direction LIMIT 1",
            params![tenant_id, account_id, target_wa_id, direction],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        )
        .optional()?;
    let mut previous_body = None;
    let id = match &row {
        None => None,
        Some((id, body, reactions, edits, revoked_at)) => {
            let changed = match action {
                Action::React(emoji) => {
                    let mut list: Vec<Reaction> = super::json_col(reactions.clone()).unwrap_or_default();
                    let before = list.iter().find(|r| r.sender == actor.sender).map(|r| r.emoji.clone());
                    if before.as_deref().unwrap_or("") == emoji.as_str() {
                        false
                    } else {
                        list.retain(|r| r.sender != actor.sender);
                        if !emoji.is_empty() {
                            list.push(Reaction {
                                sender: actor.sender.to_owned(),
                                emoji: emoji.to_owned(),
                                at: actor.at,
                            });
                        }
                        tx.execute(
                            "UPDATE messages SET reactions = ?2, updated_at = ?3 WHERE id = ?1",
                            params![id, encode(&list)?, actor.at],
                        )?;
                        true
                    }
                }
                Action::Edit(text) => {
                    if body.as_deref() == Some(text.as_str()) {
                        false
                    } else {
                        let mut list: Vec<Edit> = super::json_col(edits.clone()).unwrap_or_default();
                        list.push(Edit { body: body.clone(), at: actor.at });
                        previous_body = body.clone();
                        tx.execute(
                            "UPDATE messages SET body = ?2, edits = ?3, edited_at = ?4, updated_at = ?4 WHERE id = ?1",
                            params![id, text, encode(&list)?, actor.at],
                        )?;
                        true
                    }
                }
                Action::Revoke => {
                    if revoked_at.is_some() {
                        false
                    } else {
                        tx.execute(
                            "UPDATE messages SET revoked_at = ?2, updated_at = ?2 WHERE id = ?1",
                            params![id, actor.at],
                        )?;
                        true
                    }
                }
            };
            if !changed {
                return Ok(None);
            }
            Some(id.clone())
        }
    };
    let message = match &id {
        Some(id) => load(&tx, tenant_id, id)?,
        None => None,
    };
    let (emoji, removed, body) = match action {
        Action::React(e) => (Some(e.clone()), Some(e.is_empty()), None),
        Action::Edit(t) => (None, None, Some(t.clone())),
        Action::Revoke => (None, None, None),
    };
    let event = MessageUpdateEvent {
        message_id: id,
        wa_message_id: target_wa_id.to_owned(),
        chat: actor.chat.to_owned(),
        sender: actor.sender.to_owned(),
        sender_phone: actor.sender_phone.map(str::to_owned),
        push_name: actor.push_name.map(str::to_owned),
        emoji,
        removed,
        body,
        previous_body,
        at: actor.at,
        message,
    };
    let data = serde_json::to_value(&event).map_err(|e| DbError::Encode(e.to_string()))?;
    let name = action.event_name();
    outbox::enqueue(&tx, tenant_id, Some(account_id), name, data.clone(), actor.at)?;
    tx.commit()?;
    Ok(Some((name, data)))
}

/// Records an incoming action (`detail` a reaction, edit or revoke). `None` when `detail` is
/// not an action.
pub fn apply_incoming(
    c: &mut Conn,
    tenant_id: &str,
    account_id: &str,
    m: &super::Incoming<'_>,
) -> DbResult<Option<Option<(&'static str, serde_json::Value)>>> {
    use crate::runtime::MessageDetail;
    let actor = Actor {
        chat: m.chat,
        sender: m.from,
        sender_phone: m.from_phone,
        push_name: m.push_name,
        at: m.timestamp_ms,
    };
    let (target, direction, action) = match m.detail {
        Some(MessageDetail::Reaction { target_id, emoji }) => (target_id, None, Action::React(emoji.clone())),
        // Only the sender edits or deletes a message: one it sent us.
        Some(MessageDetail::Edit { target_id, text }) => {
            (target_id, Some("incoming"), Action::Edit(text.clone().unwrap_or_default()))
        }
        Some(MessageDetail::Revoke { target_id }) => (target_id, Some("incoming"), Action::Revoke),
        // A vote updates its poll's results.
        Some(MessageDetail::PollVote(v)) => {
            use super::polls::VoteOutcome;
            return Ok(Some(match super::polls::record_vote(c, tenant_id, account_id, v, &actor)? {
                VoteOutcome::Recorded(name, data) => Some((name, data)),
                VoteOutcome::Repeat | VoteOutcome::UnknownPoll => None,
                VoteOutcome::Invalid(why) => {
                    tracing::warn!(poll = %v.target_id, %why, "a poll vote was not recorded");
                    None
                }
            }));
        }
        _ => return Ok(None),
    };
    apply(c, tenant_id, account_id, target, direction, &actor, &action).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::Db;

    #[tokio::test]
    async fn actions_update_their_target_once() {
        actions_update_their_target_once_on(Db::open_in_memory().unwrap()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn actions_update_their_target_once_on_postgres() {
        actions_update_their_target_once_on(
            Db::open_postgres(&crate::db::tests::pg_url().await).await.unwrap(),
        )
        .await;
    }

    async fn actions_update_their_target_once_on(db: Db) {
        db.call(|c| {
            c.execute("INSERT INTO tenants (id, name, created_at) VALUES ('t', 't', 0)", params![])?;
            c.execute(
                "INSERT INTO accounts (id, tenant_id, name, state, daily_limit, time_zone, created_at, updated_at)
                 VALUES ('a', 't', 'a', 'active', 10, 'UTC', 0, 0)",
                params![],
            )?;
            c.execute(
                "INSERT INTO messages (id, tenant_id, account_id, direction, chat_jid, wa_message_id, kind, body,
                   status, created_at, updated_at)
                 VALUES ('m', 't', 'a', 'incoming', '1@s.whatsapp.net', 'W', 'text', 'hi', 'received', 0, 0)",
                params![],
            )?;
            let who = Actor { chat: "1@s.whatsapp.net", sender: "1@s.whatsapp.net", sender_phone: None, push_name: None, at: 5 };
            let react = |c: &mut Conn, e: &str, dir: Option<&str>| {
                apply(c, "t", "a", "W", dir, &who, &Action::React(e.into()))
            };
            let (name, data) = react(c, "👍", None)?.expect("a new reaction");
            assert_eq!((name, data["message"]["reactions"][0]["emoji"].as_str()), ("message_reaction", Some("👍")));
            assert!(react(c, "👍", None)?.is_none(), "the same reaction again changes nothing");
            let (_, data) = react(c, "", None)?.expect("removed");
            assert_eq!((data["removed"].as_bool(), data["message"]["reactions"].as_array().map(Vec::len)), (Some(true), Some(0)));
            // An edit keeps the earlier text; the same edit again is a repeat.
            let (_, data) = apply(c, "t", "a", "W", Some("incoming"), &who, &Action::Edit("hello".into()))?.unwrap();
            assert_eq!((data["previous_body"].as_str(), data["message"]["edits"][0]["body"].as_str()), (Some("hi"), Some("hi")));
            assert!(apply(c, "t", "a", "W", Some("incoming"), &who, &Action::Edit("hello".into()))?.is_none());
            // Only the sender's own message: an outgoing one with that id is not an incoming edit's target.
            let (_, data) = apply(c, "t", "a", "W", Some("outgoing"), &who, &Action::Revoke)?.unwrap();
            assert!(data["message_id"].is_null(), "{data}");
            let (_, data) = apply(c, "t", "a", "W", Some("incoming"), &who, &Action::Revoke)?.unwrap();
            assert_eq!(data["message"]["revoked"], true);
            assert!(apply(c, "t", "a", "W", Some("incoming"), &who, &Action::Revoke)?.is_none());
            Ok(())
        })
        .await
        .unwrap();
    }
}
