//! Message builders (reply, reaction, edit, revoke) and account queries (is-on-WhatsApp,
//! profile picture, presence, block list, read receipts). Groups are in [`crate::groups`].

use wa_binary::{Jid, Node};
use wa_proto::message::{ExtendedTextMessage, ProtocolMessage, ReactionMessage, protocol_message};
use wa_proto::{ContextInfo, Message, MessageKey};

use crate::client::Client;
use crate::conn::server_jid;
use crate::error::{Error, Result};
use crate::event::MessageInfo;
use crate::send::SendResult;

/// What [`Client::send_chat_state`] shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChatStateKind {
    /// Typing.
    Typing,
    /// Recording a voice note.
    Recording,
    /// Stopped typing or recording.
    Paused,
}

/// A poll: `name` with `options`, of which a voter picks up to `selectable` (0: any number).
/// `secret` (32 random bytes, kept with the message) is the key votes are encrypted under
/// (Baileys `messages.ts`: `messageContextInfo.messageSecret`; a single-choice poll is a
/// `pollCreationMessageV3`, others a `pollCreationMessage`).
pub fn poll_message(name: &str, options: &[String], selectable: u32, secret: [u8; 32]) -> Message {
    let poll = Box::new(wa_proto::message::PollCreationMessage {
        name: Some(name.to_owned()),
        options: options
            .iter()
            .map(|o| wa_proto::message::poll_creation_message::Option {
                option_name: Some(o.clone()),
                ..Default::default()
            })
            .collect(),
        selectable_options_count: Some(selectable),
        ..Default::default()
    });
    let mut m = Message {
        message_context_info: Some(wa_proto::MessageContextInfo {
            message_secret: Some(secret.to_vec()),
            ..Default::default()
        }),
        ..Default::default()
    };
    if selectable == 1 {
        m.poll_creation_message_v3 = Some(poll);
    } else {
        m.poll_creation_message = Some(poll);
    }
    m
}

fn key_of(info: &MessageInfo) -> MessageKey {
    MessageKey {
        remote_jid: Some(info.chat.to_string()),
        from_me: Some(info.from_me),
        id: Some(info.id.clone()),
        participant: info.is_group.then(|| info.sender.to_non_ad().to_string()),
    }
}

impl Client {
    /// Replies to `quoted` with text.
    pub async fn send_reply(
        &self,
        quoted: &MessageInfo,
        quoted_message: &Message,
        text: &str,
    ) -> Result<SendResult> {
        let ctx = ContextInfo {
            stanza_id: Some(quoted.id.clone()),
            participant: Some(quoted.sender.to_non_ad().to_string()),
            quoted_message: Some(Box::new(quoted_message.clone())),
            ..Default::default()
        };
        let m = Message {
            extended_text_message: Some(Box::new(ExtendedTextMessage {
                text: Some(text.to_owned()),
                context_info: Some(Box::new(ctx)),
                ..Default::default()
            })),
            ..Default::default()
        };
        self.send_message(&quoted.chat, m).await
    }

    /// Reacts to a message with an emoji (empty string removes the reaction).
    pub async fn send_reaction(&self, target: &MessageInfo, emoji: &str) -> Result<SendResult> {
        let m = Message {
            reaction_message: Some(ReactionMessage {
                key: Some(key_of(target)),
                text: Some(emoji.to_owned()),
                sender_timestamp_ms: Some(self.shared.now().saturating_mul(1000)),
                ..Default::default()
            }),
            ..Default::default()
        };
        self.send_message(&target.chat, m).await
    }

    /// Edits a text message we sent.
    pub async fn edit_message(&self, chat: &Jid, id: &str, new_text: &str) -> Result<SendResult> {
        let key = MessageKey {
            remote_jid: Some(chat.to_string()),
            from_me: Some(true),
            id: Some(id.to_owned()),
            participant: None,
        };
        let m = Message {
            protocol_message: Some(Box::new(ProtocolMessage {
                key: Some(key),
                r#type: Some(protocol_message::Type::MessageEdit as i32),
                edited_message: Some(Box::new(Message {
                    conversation: Some(new_text.to_owned()),
                    ..Default::default()
                })),
                timestamp_ms: Some(self.shared.now().saturating_mul(1000)),
                ..Default::default()
            })),
            ..Default::default()
        };
        self.send_message(chat, m).await
    }

    /// Deletes a message we sent, for everyone.
    pub async fn revoke_message(&self, chat: &Jid, id: &str) -> Result<SendResult> {
        let key = MessageKey {
            remote_jid: Some(chat.to_string()),
            from_me: Some(true),
            id: Some(id.to_owned()),
            participant: None,
        };
        let m = Message {
            protocol_message: Some(Box::new(ProtocolMessage {
                key: Some(key),
                r#type: Some(protocol_message::Type::Revoke as i32),
                ..Default::default()
            })),
            ..Default::default()
        };
        self.send_message(chat, m).await
    }

    /// Sends read receipts for messages of one chat (and sender, in groups).
    pub async fn mark_read(&self, chat: &Jid, sender: Option<&Jid>, ids: &[String]) -> Result<()> {
        let Some((first, rest)) = ids.split_first() else { return Ok(()) };
        let mut r = Node::new("receipt")
            .attr("id", first.as_str())
            .attr("to", chat.clone())
            .attr("type", "read")
            .attr("t", self.shared.now());
        if let Some(s) = sender {
            r = r.attr("participant", s.clone());
        }
        if !rest.is_empty() {
            r = r
                .children([Node::new("list")
                    .children(rest.iter().map(|id| Node::new("item").attr("id", id.as_str())))]);
        }
        self.shared.connection()?.send(&r)
    }

    /// Which of these phone numbers have WhatsApp: `(number, JID if registered)`.
    pub async fn is_on_whatsapp(&self, numbers: &[&str]) -> Result<Vec<(String, Option<Jid>)>> {
        let conn = self.shared.connection()?;
        let list = numbers.iter().map(|n| {
            let digits: String = n.chars().filter(char::is_ascii_digit).collect();
            Node::new("user").children([Node::new("contact").text(format!("+{digits}"))])
        });
        let iq =
            Node::new("iq").attr("xmlns", "usync").attr("type", "get").attr("to", server_jid()).children([
                Node::new("usync")
                    .attr("sid", conn.next_id())
                    .attr("mode", "query")
                    .attr("last", "true")
                    .attr("index", "0")
                    .attr("context", "interactive")
                    .children([
                        Node::new("query").children([Node::new("contact")]),
                        Node::new("list").children(list),
                    ]),
            ]);
        let reply = self.shared.iq(iq).await?;
        let users = reply
            .child_path(&["usync", "list"])
            .ok_or_else(|| Error::Malformed("usync reply without list".into()))?;
        let mut out = Vec::new();
        for u in users.children_by_tag("user") {
            let contact = u.child("contact");
            let query = contact
                .and_then(|c| {
                    c.content_str()
                        .map(str::to_owned)
                        .or_else(|| c.content_bytes().map(|b| String::from_utf8_lossy(b).into_owned()))
                })
                .unwrap_or_default();
            let registered = contact.and_then(|c| c.opt_attr_str("type")).as_deref() == Some("in");
            out.push((
                query.trim_start_matches('+').to_owned(),
                if registered { u.attr_jid("jid").ok() } else { None },
            ));
        }
        Ok(out)
    }

    /// The URL of a user's or group's profile picture, if visible.
    pub async fn profile_picture_url(&self, jid: &Jid) -> Result<Option<String>> {
        let iq = Node::new("iq")
            .attr("xmlns", "w:profile:picture")
            .attr("type", "get")
            .attr("to", server_jid())
            .attr("target", jid.to_non_ad())
            .children([Node::new("picture").attr("type", "image").attr("query", "url")]);
        match self.shared.iq(iq).await {
            Ok(r) => Ok(r.child("picture").and_then(|p| p.opt_attr_str("url")).map(|s| s.into_owned())),
            Err(Error::Iq { code: 401 | 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Shows us typing (`composing`), recording a voice note (`composing` with
    /// `recording`), or stopped (`paused`) in `chat` (whatsmeow `presence.go`
    /// `SendChatPresence`: `<chatstate to=…><composing media="audio"/></chatstate>`).
    pub async fn send_chat_state(&self, chat: &Jid, state: ChatStateKind) -> Result<()> {
        let child = match state {
            ChatStateKind::Typing => Node::new("composing"),
            ChatStateKind::Recording => Node::new("composing").attr("media", "audio"),
            ChatStateKind::Paused => Node::new("paused"),
        };
        self.shared.connection()?.send(&Node::new("chatstate").attr("to", chat.to_non_ad()).children([child]))
    }

    /// Asks the server to send us this contact's presence updates.
    pub async fn subscribe_presence(&self, jid: &Jid) -> Result<()> {
        self.shared
            .connection()?
            .send(&Node::new("presence").attr("type", "subscribe").attr("to", jid.to_non_ad()))
    }

    /// Announces us as available (online) or unavailable, with our push name (the one set
    /// with [`crate::ClientBuilder::push_name`], else the account's own when known;
    /// [`Error::NoPushName`] without one). While available, delivery receipts no longer say
    /// `inactive`, and the owner's phone stops showing notifications.
    pub async fn set_available(&self, available: bool) -> Result<()> {
        let conn = self.shared.connection()?;
        self.shared.send_presence_on(&conn, available)
    }

    /// Blocks or unblocks a contact.
    pub async fn set_blocked(&self, jid: &Jid, blocked: bool) -> Result<()> {
        let iq =
            Node::new("iq").attr("xmlns", "blocklist").attr("type", "set").attr("to", server_jid()).children(
                [Node::new("item")
                    .attr("action", if blocked { "block" } else { "unblock" })
                    .attr("jid", jid.to_non_ad())],
            );
        self.shared.iq(iq).await?;
        Ok(())
    }

    /// The block list.
    pub async fn blocklist(&self) -> Result<Vec<Jid>> {
        let iq = Node::new("iq").attr("xmlns", "blocklist").attr("type", "get").attr("to", server_jid());
        let reply = self.shared.iq(iq).await?;
        Ok(reply
            .child("list")
            .map(|l| l.children_by_tag("item").filter_map(|i| i.attr_jid("jid").ok()).collect())
            .unwrap_or_default())
    }
}
