//! History sync: after pairing, the phone sends its new companion the account's past
//! conversations as peer protocol messages carrying a `HistorySyncNotification`, and waits for
//! each to be acknowledged with a `hist_sync` receipt.
//!
//! - **What is sent** (the receiving side: whatsmeow `message.go` `handleHistorySyncNotification`
//!   and `storeHistoricalPNLIDMappings`, Baileys `Utils/history.ts` `processHistoryMessage`,
//!   whatsapp-rust `src/history_sync.rs`): first an `INITIAL_BOOTSTRAP` chunk with each chat
//!   and its latest message, the phone-number ↔ LID pairs of the people in them and the
//!   account's NCT salt (`nctSalt`, stored from any chunk by whatsmeow `message.go`
//!   `storeNCTSalt`), inline (`initialHistBootstrapInlinePayload`, which whatsmeow and
//!   Baileys read before downloading anything); then a `PUSH_NAME` chunk with those people's
//!   push names (whatsmeow reads `pushnames` only from a chunk of that type,
//!   `handleHistoricalPushNames`; Baileys `processHistoryMessage` likewise, `case
//!   PUSH_NAME`); then a `RECENT` chunk with every message the phone holds. The last two are
//!   encrypted media files ("WhatsApp History Keys", `md-msg-hist`) the notification points
//!   to. All are zlib-compressed `HistorySync` protobufs. Each conversation with someone who
//!   gave the account their privacy token carries it (`tcToken`, `tcTokenTimestamp`, and
//!   `tcTokenSenderTimestamp` when the account gave its own; Baileys `WAProto.proto`
//!   `Conversation`, stored by whatsmeow and wa-client under the contact's LID); someone who
//!   gave a token but has no messages gets a conversation of its own. Where the salt goes
//!   (bootstrap) and the chunks' order are our modelling choice: the clients accept any.
//! - **The receipt**: a companion answers each notification with `<receipt type="hist_sync"
//!   id to=own user>` at once (whatsmeow `message.go` `handleProtocolMessage` →
//!   `SendProtocolMessageReceipt(…, ReceiptTypeHistorySync)`, "acknowledgement for protocol
//!   message"; Baileys `Socket/messages-recv.ts` sends `hist_sync` for a
//!   `historySyncNotification`). A notification not acknowledged within
//!   [`HIST_SYNC_RESEND_SECS`] is sent again, at most [`MAX_HISTORY_SENDS`] times in all.
//!   The clients' code names the receipt as what the phone waits for; the phone's exact wait
//!   is not public, so the bound here is a modelling choice. The check runs whenever the
//!   companion sends anything (clients ping every ~20 s), so no timer is needed.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use prost::Message as _;
use rand_core::Rng;
use wa_binary::Jid;
use wa_proto::history_sync::HistorySyncType;
use wa_proto::message::HistorySyncNotification;
use wa_proto::message::protocol_message::Type as ProtocolType;
use wa_proto::{
    Conversation, HistorySync, HistorySyncMsg, MessageKey, PhoneNumberToLidMapping, Pushname, WebMessageInfo,
};

use crate::world::{AccountId, ControlError, DeviceAddr, World, WorldEvent};

/// How long the phone waits for a `hist_sync` receipt before sending a chunk again (s).
pub const HIST_SYNC_RESEND_SECS: u64 = 30;
/// How many times a chunk is sent at most (the first send included).
pub const MAX_HISTORY_SENDS: u32 = 3;

/// A chunk sent to a companion and not acknowledged yet.
#[derive(Debug, Clone)]
pub(crate) struct PendingHistory {
    /// The id of the peer message that carried it last.
    pub message_id: String,
    /// When it was last sent (unix seconds).
    pub sent_at: u64,
    /// How many times it was sent.
    pub sends: u32,
    /// The notification, sent again as is.
    pub notification: HistorySyncNotification,
}

impl World {
    /// The phone sends a companion that just paired the account's history: a bootstrap chunk
    /// inline, then the push names and the recent messages as media files. Returns the three
    /// message ids.
    pub(crate) fn phone_send_history(
        &mut self,
        account: AccountId,
        device: u16,
    ) -> Result<Vec<String>, ControlError> {
        let [bootstrap, push_names, recent] = self.history_of(account);
        let first = HistorySyncNotification {
            sync_type: bootstrap.sync_type,
            chunk_order: bootstrap.chunk_order,
            progress: bootstrap.progress,
            initial_hist_bootstrap_inline_payload: Some(wa_appstate::history::deflate(
                &bootstrap.encode_to_vec(),
            )),
            ..Default::default()
        };
        let mut notifications = vec![first];
        for h in [push_names, recent] {
            let mut n = self.store_history_blob(&h.encode_to_vec());
            n.sync_type = h.sync_type;
            n.chunk_order = h.chunk_order;
            n.progress = h.progress;
            notifications.push(n);
        }
        let mut ids = Vec::with_capacity(notifications.len());
        for n in notifications {
            ids.push(self.send_history_chunk(account, device, n, 0)?);
        }
        Ok(ids)
    }

    /// Sends one notification and remembers it until its receipt comes.
    fn send_history_chunk(
        &mut self,
        account: AccountId,
        device: u16,
        notification: HistorySyncNotification,
        sent_before: u32,
    ) -> Result<String, ControlError> {
        let message = wa_proto::Message {
            protocol_message: Some(Box::new(wa_proto::message::ProtocolMessage {
                r#type: Some(ProtocolType::HistorySyncNotification as i32),
                history_sync_notification: Some(notification.clone()),
                ..Default::default()
            })),
            ..Default::default()
        };
        let id = self.phone_send_peer(account, device, &message)?;
        let sends = sent_before + 1;
        let pending = PendingHistory { message_id: id.clone(), sent_at: self.now(), sends, notification };
        self.traffic.history.entry(DeviceAddr { account, device }).or_default().push(pending);
        let pn = self.accounts[account].pn.clone();
        self.emit(WorldEvent::HistorySyncSent { pn, device, id: id.clone(), sends });
        Ok(id)
    }

    /// A `hist_sync` receipt reached the phone from one of its companions: the chunk it names
    /// is delivered.
    pub(crate) fn phone_history_acknowledged(&mut self, from: DeviceAddr, id: &str) {
        if let Some(pending) = self.traffic.history.get_mut(&from) {
            pending.retain(|p| p.message_id != id);
            if pending.is_empty() {
                self.traffic.history.remove(&from);
            }
        }
    }

    /// Sends again, to a companion that just sent something, each chunk it has not
    /// acknowledged within [`HIST_SYNC_RESEND_SECS`] (until [`MAX_HISTORY_SENDS`]).
    pub(crate) fn resend_due_history(&mut self, addr: DeviceAddr) {
        let now = self.now();
        let Some(pending) = self.traffic.history.get_mut(&addr) else { return };
        let due: Vec<PendingHistory> = pending
            .iter()
            .filter(|p| now.saturating_sub(p.sent_at) >= HIST_SYNC_RESEND_SECS)
            .cloned()
            .collect();
        if due.is_empty() {
            return;
        }
        pending.retain(|p| now.saturating_sub(p.sent_at) < HIST_SYNC_RESEND_SECS);
        if pending.is_empty() {
            self.traffic.history.remove(&addr);
        }
        for p in due {
            if p.sends >= MAX_HISTORY_SENDS {
                tracing::info!(?addr, id = %p.message_id, "history chunk never acknowledged; the phone gives up");
                continue;
            }
            if let Err(e) = self.send_history_chunk(addr.account, addr.device, p.notification, p.sends) {
                tracing::warn!(error = %e, "phone could not resend a history chunk");
            }
        }
    }

    /// History chunks a companion has not acknowledged yet (their message ids).
    pub fn unacknowledged_history(&self, account: AccountId, device: u16) -> Vec<String> {
        self.traffic
            .history
            .get(&DeviceAddr { account, device })
            .map(|p| p.iter().map(|p| p.message_id.clone()).collect())
            .unwrap_or_default()
    }

    /// The account's history as its phone holds it: the bootstrap chunk (each chat with its
    /// latest message, PN ↔ LID pairs, the NCT salt), the push-name chunk and the recent one
    /// (every message); conversations carry the privacy tokens their contacts gave.
    fn history_of(&self, account: AccountId) -> [HistorySync; 3] {
        let me = &self.accounts[account];
        let mut chats: BTreeMap<String, Vec<WebMessageInfo>> = BTreeMap::new();
        // People in the history: their push names and PN ↔ LID pairs are sent.
        let mut people: BTreeMap<AccountId, ()> = BTreeMap::new();
        for m in me.phone.inbox.iter().filter(|m| m.device == 0 && m.error.is_none()) {
            let Ok(message) = wa_proto::Message::decode(m.message.as_slice()) else { continue };
            let sender: Option<Jid> = m.sender.parse().ok();
            let chat: Option<Jid> = m.chat.parse().ok();
            let group = chat.as_ref().is_some_and(Jid::is_group);
            let author = sender.as_ref().and_then(|s| self.account_of(&s.to_non_ad()));
            if let Some(a) = author {
                people.insert(a, ());
            }
            let info = WebMessageInfo {
                key: Some(MessageKey {
                    remote_jid: Some(m.chat.clone()),
                    from_me: Some(false),
                    id: Some(m.id.clone()),
                    participant: group.then(|| sender.as_ref().map(|s| s.to_non_ad().to_string())).flatten(),
                }),
                message: Some(message),
                message_timestamp: Some(m.t),
                push_name: author.map(|a| self.accounts[a].push_name.clone()),
                ..Default::default()
            };
            chats.entry(m.chat.clone()).or_default().push(info);
        }
        // Tokens others gave this account, by giver: the token, when, and when this account
        // last gave its own to them.
        let mut tokens: BTreeMap<AccountId, (Vec<u8>, u64, Option<u64>)> = BTreeMap::new();
        for ((issuer, holder), (bytes, t)) in &self.reachout.tokens {
            if *holder == account {
                let ours = self.reachout.tokens.get(&(account, *issuer)).map(|(_, t)| *t);
                tokens.insert(*issuer, (bytes.clone(), *t, ours));
                people.insert(*issuer, ());
            }
        }
        // The chat a token belongs to: the 1:1 chat with its giver, by number or LID; one of
        // its own (by number) when there are no messages.
        let mut token_of_chat: BTreeMap<String, AccountId> = BTreeMap::new();
        for &giver in tokens.keys() {
            let p = &self.accounts[giver];
            let (pn, lid) = (format!("{}@s.whatsapp.net", p.pn), format!("{}@lid", p.lid));
            let chat = if chats.contains_key(&lid) { lid } else { pn };
            chats.entry(chat.clone()).or_default();
            token_of_chat.insert(chat, giver);
        }
        let conversation = |id: &str, messages: &[WebMessageInfo]| {
            let token = token_of_chat.get(id).and_then(|g| tokens.get(g));
            Conversation {
                id: Some(id.to_owned()),
                last_msg_timestamp: messages.iter().filter_map(|m| m.message_timestamp).max(),
                messages: messages
                    .iter()
                    .rev()
                    .enumerate()
                    .map(|(i, m)| HistorySyncMsg {
                        message: Some(m.clone()),
                        msg_order_id: Some(i as u64 + 1),
                    })
                    .collect(),
                tc_token: token.map(|t| t.0.clone()),
                tc_token_timestamp: token.map(|t| t.1),
                tc_token_sender_timestamp: token.and_then(|t| t.2),
                ..Default::default()
            }
        };
        let chunk = |sync_type: HistorySyncType, order: u32, progress: u32| HistorySync {
            sync_type: Some(sync_type as i32),
            chunk_order: Some(order),
            progress: Some(progress),
            ..Default::default()
        };
        let mut bootstrap = chunk(HistorySyncType::InitialBootstrap, 1, 33);
        bootstrap.nct_salt = Some(self.nct_salt(account).to_vec());
        let mut push_names = chunk(HistorySyncType::PushName, 2, 66);
        let mut recent = chunk(HistorySyncType::Recent, 3, 100);
        for (id, messages) in &chats {
            bootstrap.conversations.push(conversation(id, &messages[messages.len().saturating_sub(1)..]));
            recent.conversations.push(conversation(id, messages));
        }
        for &a in people.keys() {
            let p = &self.accounts[a];
            let pn = format!("{}@s.whatsapp.net", p.pn);
            push_names.pushnames.push(Pushname { id: Some(pn.clone()), pushname: Some(p.push_name.clone()) });
            bootstrap
                .phone_number_to_lid_mappings
                .push(PhoneNumberToLidMapping { pn_jid: Some(pn), lid_jid: Some(format!("{}@lid", p.lid)) });
        }
        [bootstrap, push_names, recent]
    }

    /// Encrypts a history blob (zlib stream of a `HistorySync`) and puts it on the media host
    /// under `md-msg-hist`; returns a notification pointing to it.
    fn store_history_blob(&mut self, plain: &[u8]) -> HistorySyncNotification {
        let compressed = wa_appstate::history::deflate(plain);
        let mut media_key = [0u8; 32];
        self.rng.fill_bytes(&mut media_key);
        let enc = wa_crypto::media::encrypt(&media_key, wa_crypto::media::HISTORY_INFO, &compressed);
        let token = URL_SAFE_NO_PAD.encode(enc.file_enc_sha256);
        let (direct_path, _url) = self.store_media("md-msg-hist", &token, enc.blob);
        HistorySyncNotification {
            file_sha256: Some(enc.file_sha256.to_vec()),
            file_length: Some(enc.file_length),
            media_key: Some(media_key.to_vec()),
            file_enc_sha256: Some(enc.file_enc_sha256.to_vec()),
            direct_path: Some(direct_path),
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use wa_binary::Node;

    use super::*;
    use crate::testutil::{add_companion, login, of, sent, world};
    use crate::world::attr;

    fn hist_sync_receipt(w: &World, id: &str, account: AccountId) -> Node {
        Node::new("receipt")
            .attr("id", id)
            .attr("type", "hist_sync")
            .attr("to", format!("{}@s.whatsapp.net", w.accounts[account].pn))
    }

    #[test]
    fn a_chunk_not_acknowledged_in_time_is_sent_again_a_bounded_number_of_times() {
        let (mut w, clock) = world(1);
        let addr = add_companion(&mut w, 0, 1);
        let (conn, mut rx) = login(&mut w, addr);
        sent(&mut rx);
        let ids = w.phone_send_history(0, 1).unwrap();
        assert_eq!(ids.len(), 3);
        let got = sent(&mut rx);
        assert_eq!(of(&got, "message", Some("protocol")).len(), 3, "{got:?}");
        assert_eq!(w.unacknowledged_history(0, 1), ids);

        // The bootstrap and push names are acknowledged; the recent chunk is not.
        w.on_node(conn, hist_sync_receipt(&w, &ids[0], 0));
        w.on_node(conn, hist_sync_receipt(&w, &ids[1], 0));
        assert_eq!(w.unacknowledged_history(0, 1), [ids[2].clone()]);

        // Before the bound nothing is sent again, whatever the companion sends.
        clock.advance(HIST_SYNC_RESEND_SECS - 1);
        w.on_node(conn, Node::new("presence").attr("type", "available"));
        assert!(of(&sent(&mut rx), "message", None).is_empty());

        // At the bound the recent chunk goes again under a new id, the bootstrap does not.
        clock.advance(1);
        w.on_node(conn, Node::new("presence").attr("type", "available"));
        let again = sent(&mut rx);
        let again = of(&again, "message", Some("protocol"));
        assert_eq!(again.len(), 1);
        let second = attr(again[0], "id");
        assert_ne!(second, ids[2]);
        assert_eq!(w.unacknowledged_history(0, 1), std::slice::from_ref(&second));

        // Unanswered, it is sent MAX_HISTORY_SENDS times in all, then the phone gives up.
        clock.advance(HIST_SYNC_RESEND_SECS);
        w.on_node(conn, Node::new("presence").attr("type", "available"));
        assert_eq!(of(&sent(&mut rx), "message", Some("protocol")).len(), 1);
        clock.advance(HIST_SYNC_RESEND_SECS);
        w.on_node(conn, Node::new("presence").attr("type", "available"));
        assert!(of(&sent(&mut rx), "message", Some("protocol")).is_empty());
        assert!(w.unacknowledged_history(0, 1).is_empty());
    }

    #[test]
    fn an_acknowledged_chunk_is_never_sent_again() {
        let (mut w, clock) = world(1);
        let addr = add_companion(&mut w, 0, 1);
        let (conn, mut rx) = login(&mut w, addr);
        let ids = w.phone_send_history(0, 1).unwrap();
        for id in &ids {
            w.on_node(conn, hist_sync_receipt(&w, id, 0));
        }
        sent(&mut rx);
        assert!(w.unacknowledged_history(0, 1).is_empty());
        clock.advance(10 * HIST_SYNC_RESEND_SECS);
        w.on_node(conn, Node::new("presence").attr("type", "available"));
        assert!(of(&sent(&mut rx), "message", None).is_empty());
    }
}
