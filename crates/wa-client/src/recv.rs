//! Receiving: decrypt, unpad, parse, store durably, then acknowledge and emit; receipts,
//! retry requests, notifications and presence.

use std::sync::Arc;

use prost::Message as _;
use tracing::{debug, info, warn};
use wa_binary::{Jid, Node};
use wa_proto::Message;
use wa_signal::{
    IdentityCheck, MessageKind, PreKeyRecord, PreKeySet, SenderKeyConfig, SenderKeyRecord, SessionConfig,
    SessionRecord, SignalError, SignedPreKeyRecord,
};
use wa_store::{InboundMessage, InboundStore, PreKeyStore, SenderKeyStore, SessionStore, SignedPreKeyStore};

use crate::client::{Shared, lock, signal_address};
use crate::conn::Connection;
use crate::creds::{CredentialsExt, from_store_pair};
use crate::error::{Error, Result};
use crate::event::{
    ChatStateEvent, Event, MessageEvent, MessageInfo, PresenceEvent, ReceiptAck, ReceiptEvent, ReceiptKind,
    UnavailableEvent, UndecryptableEvent,
};

/// Largest number of retry receipts we send for one message.
const MAX_RETRIES: u32 = 5;

/// `<ack>` for a received stanza (class = its tag); `type` is copied except for messages.
pub(crate) fn ack_for(node: &Node, error: Option<u16>) -> Node {
    let mut ack = Node::new("ack")
        .attr("id", node.opt_attr_str("id").unwrap_or_default().as_ref())
        .attr("class", node.tag.as_str());
    if let Some(from) = node.get_attr("from") {
        ack = ack.attr("to", from.clone());
    }
    for key in ["participant", "recipient"] {
        if let Some(v) = node.get_attr(key) {
            ack = ack.attr(key, v.clone());
        }
    }
    if node.tag != "message"
        && let Some(t) = node.get_attr("type")
    {
        ack = ack.attr("type", t.clone());
    }
    ack.opt_attr("error", error)
}

/// Strips v2 padding: the last byte says how many bytes to drop.
pub(crate) fn unpad(b: &[u8]) -> Result<&[u8]> {
    let n = *b.last().ok_or_else(|| Error::Malformed("empty plaintext".into()))? as usize;
    if n == 0 || n > b.len() {
        return Err(Error::Malformed(format!("bad padding length {n} for {} bytes", b.len())));
    }
    Ok(&b[..b.len() - n])
}

fn parse_info(shared: &Shared, node: &Node) -> Result<MessageInfo> {
    let from = node.attr_jid("from")?;
    let id = node.attr_str("id")?.into_owned();
    let is_group = from.is_group() || from.is_broadcast();
    let sender = if is_group { node.attr_jid("participant")? } else { from.clone() };
    let (own, own_lid) = shared.own_ids()?;
    let from_me = sender.user() == own.user() || own_lid.as_ref().is_some_and(|l| l.user() == sender.user());
    let chat = if from_me && !is_group {
        node.attr_jid("recipient").map(|r| r.to_non_ad()).unwrap_or_else(|_| from.to_non_ad())
    } else {
        from.to_non_ad()
    };
    let (sender_pn, sender_lid) = sender_names(node, &sender, is_group);
    let (chat_pn, chat_lid) = if is_group {
        (None, None)
    } else if from_me {
        // Our own copy: the chat is the recipient, its other name is `peer_recipient_*`.
        let alt = if chat.is_lid() { "peer_recipient_pn" } else { "peer_recipient_lid" };
        both_names(&chat, node.attr_jid(alt).ok().map(|j| j.to_non_ad()))
    } else {
        let alt = if sender.is_lid() { sender_pn.as_ref() } else { sender_lid.as_ref() };
        both_names(&chat, alt.map(Jid::to_non_ad))
    };
    Ok(MessageInfo {
        id,
        chat,
        chat_pn,
        chat_lid,
        sender,
        sender_pn,
        sender_lid,
        from_me,
        is_group,
        timestamp: node.opt_attr_str("t").and_then(|t| t.parse().ok()).unwrap_or(0),
        push_name: node.opt_attr_str("notify").map(|s| s.into_owned()),
        offline: node.has_attr("offline"),
    })
}

/// The sender's phone-number and LID JIDs (with its device) from what the stanza says:
/// `sender_pn`/`sender_lid` in 1:1 chats, `participant_pn`/`participant_lid` in groups
/// (whatsmeow message.go `parseMessageSource`). The server gives the other name without a
/// device; it is the sender's device.
pub(crate) fn sender_names(node: &Node, sender: &Jid, is_group: bool) -> (Option<Jid>, Option<Jid>) {
    let alt = |pn_key: &str, lid_key: &str| {
        let key = if sender.is_lid() { pn_key } else { lid_key };
        node.attr_jid(key).ok().and_then(|j| j.to_non_ad().with_device(sender.device()).ok())
    };
    let other =
        if is_group { alt("participant_pn", "participant_lid") } else { alt("sender_pn", "sender_lid") };
    match sender.server() {
        wa_binary::Server::Lid => (other, Some(sender.clone())),
        wa_binary::Server::Pn => (Some(sender.clone()), other),
        _ => (None, None),
    }
}

/// `(pn, lid)` of a user from its JID in one namespace and, maybe, the other.
pub(crate) fn both_names(jid: &Jid, other: Option<Jid>) -> (Option<Jid>, Option<Jid>) {
    match jid.server() {
        wa_binary::Server::Lid => (other.filter(Jid::is_pn), Some(jid.clone())),
        wa_binary::Server::Pn => (Some(jid.clone()), other.filter(Jid::is_lid)),
        _ => (None, None),
    }
}

/// Learns the mappings an info carries and fills in the names it lacks from the store.
pub(crate) async fn complete_names(shared: &Shared, info: &mut MessageInfo) -> Result<()> {
    let sender = info.sender_lid.as_ref().zip(info.sender_pn.as_ref());
    let chat = info.chat_lid.as_ref().zip(info.chat_pn.as_ref());
    let fresh = crate::lid::unknown_jids(shared, sender.into_iter().chain(chat));
    crate::lid::store(shared, fresh).await?;
    fill_names(shared, &mut info.sender_pn, &mut info.sender_lid).await?;
    if !info.is_group {
        fill_names(shared, &mut info.chat_pn, &mut info.chat_lid).await?;
    }
    Ok(())
}

/// Fills the missing one of a `(pn, lid)` pair from the store, keeping the device.
pub(crate) async fn fill_names(shared: &Shared, pn: &mut Option<Jid>, lid: &mut Option<Jid>) -> Result<()> {
    match (pn.as_ref(), lid.as_ref()) {
        (Some(p), None) => {
            if let Some(alt) = crate::lid::alternate(shared, p).await? {
                *lid = Some(alt.with_device(p.device())?);
            }
        }
        (None, Some(l)) => {
            if let Some(alt) = crate::lid::alternate(shared, l).await? {
                *pn = Some(alt.with_device(l.device())?);
            }
        }
        _ => {}
    }
    Ok(())
}

/// Loads the prekeys a PreKeySignalMessage names into an in-memory set.
async fn pre_keys_for(shared: &Shared, bytes: &[u8]) -> Result<PreKeySet> {
    let msg = wa_signal::PreKeySignalMessage::parse(bytes)?;
    let mut set = PreKeySet::default();
    let creds = shared.credentials()?;
    let identity = creds.identity();
    if creds.signed_pre_key.id == msg.signed_pre_key_id {
        set.signed.push(SignedPreKeyRecord::new(
            &identity,
            creds.signed_pre_key.id,
            from_store_pair(&creds.signed_pre_key.key_pair),
        ));
    } else if let Some(spk) = shared.store.get_signed_pre_key(msg.signed_pre_key_id).await? {
        set.signed.push(SignedPreKeyRecord::new(&identity, spk.id, from_store_pair(&spk.key_pair)));
    }
    if let Some(id) = msg.pre_key_id
        && let Some(pk) = shared.store.get_pre_key(id).await?
    {
        set.one_time.push(PreKeyRecord { id: pk.id, key_pair: from_store_pair(&pk.key_pair) });
    }
    Ok(set)
}

enum Outcome {
    Decrypted(Box<Message>),
    Duplicate,
    Failed(String),
}

/// Handles one `<message>`.
pub(crate) async fn handle_message(shared: &Arc<Shared>, conn: &Connection, node: Node) -> Result<()> {
    let mut info = match parse_info(shared, &node) {
        Ok(i) => i,
        Err(e) => {
            warn!(%e, "malformed message stanza");
            conn.send(&ack_for(&node, Some(487)))?;
            return Ok(());
        }
    };
    complete_names(shared, &mut info).await?;
    let encs: Vec<&Node> = node.children_by_tag("enc").collect();
    if encs.is_empty() {
        let Some(unavailable) = node.child("unavailable") else {
            conn.send(&ack_for(&node, Some(488)))?;
            return Ok(());
        };
        // The sender did not encrypt this for us: acknowledge the placeholder and ask our
        // phone for the message (whatsmeow `decryptMessages` → `immediateRequestMessageFromPhone`).
        conn.send(&ack_for(&node, None))?;
        let kind = unavailable.opt_attr_str("type").map(|t| t.into_owned()).filter(|t| !t.is_empty());
        crate::peer::request_from_phone(shared, &info);
        shared.emit(Event::MessageUnavailable(UnavailableEvent { info, kind }));
        return Ok(());
    }
    let guard = shared.signal_lock.lock().await;
    let local = shared.credentials()?.local_identity();
    // One address per contact: the LID's once known (its phone-number state moves there).
    let sender_addr = crate::lid::signal_address_of(shared, &info.sender).await?;
    // Sender keys stored under the phone-number address before the LID was known.
    let old_sender_addr = match &info.sender_pn {
        Some(pn) if signal_address(pn) != sender_addr => Some(signal_address(pn)),
        _ => None,
    };
    let mut tx = shared.store.transaction();
    let mut sender_keys: Vec<(String, SenderKeyRecord)> = Vec::new();
    let mut outcome = Outcome::Duplicate;
    let mut max_count = 0u32;
    for enc in encs {
        max_count = max_count.max(enc.opt_attr_str("count").and_then(|c| c.parse().ok()).unwrap_or(0));
        let Some(bytes) = enc.content_bytes() else { continue };
        let ty = enc.opt_attr_str("type").unwrap_or_default();
        let plaintext = match ty.as_ref() {
            "pkmsg" | "msg" => {
                let kind = if ty == "pkmsg" { MessageKind::PreKey } else { MessageKind::Whisper };
                let record = match shared
                    .store
                    .get_sessions(std::slice::from_ref(&sender_addr))
                    .await?
                    .pop()
                    .flatten()
                {
                    Some(b) => SessionRecord::from_bytes(&b)
                        .map_err(|e| Error::CorruptStore(format!("session {sender_addr}: {e}")))?,
                    None => SessionRecord::new(),
                };
                let pre_keys = if kind == MessageKind::PreKey {
                    pre_keys_for(shared, bytes).await?
                } else {
                    PreKeySet::default()
                };
                let result = shared.with_rng(|r| {
                    record.decrypt(&local, kind, bytes, &pre_keys, &SessionConfig::default(), r)
                });
                match result {
                    Ok((d, next)) => {
                        tx.put_session(&sender_addr, &next.to_bytes());
                        if let Some(id) = d.used_pre_key {
                            tx.consume_pre_key(id);
                        }
                        if let Some(identity) = next.remote_identity() {
                            tx.put_identity(&sender_addr, *identity.as_bytes());
                        }
                        if let IdentityCheck::Changed { .. } = d.identity {
                            shared.emit(Event::IdentityChange {
                                jid: info.sender.to_non_ad(),
                                pn: info.sender_pn.as_ref().map(Jid::to_non_ad),
                                lid: info.sender_lid.as_ref().map(Jid::to_non_ad),
                            });
                        }
                        d.plaintext
                    }
                    Err(SignalError::DuplicateMessage { .. }) => continue,
                    Err(e) => {
                        outcome = Outcome::Failed(e.to_string());
                        break;
                    }
                }
            }
            "skmsg" => {
                let group = info.chat.to_string();
                let record = match sender_keys.iter().find(|(g, _)| *g == group) {
                    Some((_, r)) => r.clone(),
                    None => {
                        match load_sender_key(shared, &group, &sender_addr, old_sender_addr.as_ref(), &mut tx)
                            .await?
                        {
                            Some(b) => SenderKeyRecord::from_bytes(&b)
                                .map_err(|e| Error::CorruptStore(format!("sender key: {e}")))?,
                            None => SenderKeyRecord::new(),
                        }
                    }
                };
                match record.decrypt(bytes, &SenderKeyConfig::default()) {
                    Ok((pt, next)) => {
                        tx.put_sender_key(&group, &sender_addr, &next.to_bytes());
                        sender_keys.retain(|(g, _)| *g != group);
                        sender_keys.push((group, next));
                        pt
                    }
                    Err(SignalError::DuplicateMessage { .. }) => continue,
                    Err(e) => {
                        outcome = Outcome::Failed(e.to_string());
                        break;
                    }
                }
            }
            _ => continue,
        };
        let body = if enc.opt_attr_str("v").as_deref() == Some("3") {
            &plaintext[..]
        } else {
            match unpad(&plaintext) {
                Ok(b) => b,
                Err(e) => {
                    outcome = Outcome::Failed(e.to_string());
                    break;
                }
            }
        };
        let mut msg = match Message::decode(body) {
            Ok(m) => m,
            Err(e) => {
                outcome = Outcome::Failed(format!("protobuf: {e}"));
                break;
            }
        };
        if let Some(skdm) = msg.sender_key_distribution_message.take()
            && let (Some(group), Some(dist)) = (skdm.group_id, skdm.axolotl_sender_key_distribution_message)
        {
            let mut record = match sender_keys.iter().find(|(g, _)| *g == group) {
                Some((_, r)) => r.clone(),
                None => match shared.store.get_sender_key(&group, &sender_addr).await? {
                    Some(b) => SenderKeyRecord::from_bytes(&b).unwrap_or_default(),
                    None => SenderKeyRecord::new(),
                },
            };
            if record.process_distribution_bytes(&dist, &SenderKeyConfig::default()).is_ok() {
                tx.put_sender_key(&group, &sender_addr, &record.to_bytes());
                sender_keys.retain(|(g, _)| *g != group);
                sender_keys.push((group, record));
            }
        }
        if let Some(dsm) = msg.device_sent_message.take()
            && let Some(inner) = dsm.message
        {
            msg = *inner;
        }
        if has_content(&msg) {
            outcome = Outcome::Decrypted(Box::new(msg));
        }
    }

    match outcome {
        Outcome::Failed(error) => {
            // The transaction is dropped: a re-sent copy decrypts against the same state.
            drop(tx);
            drop(guard);
            warn!(id = %info.id, %error, "decryption failed");
            let count = {
                let mut retries = lock(&shared.state.retries);
                let c = retries.entry(info.id.clone()).or_insert(max_count);
                *c += 1;
                *c
            };
            if count <= MAX_RETRIES {
                let receipt = retry_receipt(shared, &node, &info, count).await?;
                conn.send(&receipt)?;
            }
            conn.send(&ack_for(&node, None))?;
            shared.emit(Event::UndecryptableMessage(UndecryptableEvent { info, error }));
            Ok(())
        }
        Outcome::Duplicate => {
            debug!(id = %info.id, "nothing new in the message (a re-delivery)");
            tx.commit().await?;
            drop(guard);
            conn.send(&delivery_receipt(shared, &node, &info))?;
            Ok(())
        }
        Outcome::Decrypted(message) => {
            let stored = to_web_message_info(&info, &message);
            tx.put_inbound(&InboundMessage {
                chat: info.chat.to_string(),
                sender: info.sender.to_string(),
                id: info.id.clone(),
                received_at: shared.now(),
                payload: stored.encode_to_vec(),
            });
            match tx.commit().await {
                Ok(()) => {}
                Err(wa_store::Error::Conflict { .. }) => {
                    // Already stored and not yet handled: a duplicate delivery.
                    debug!(id = %info.id, "already stored");
                    drop(guard);
                    conn.send(&delivery_receipt(shared, &node, &info))?;
                    return Ok(());
                }
                Err(e) => return Err(e.into()),
            }
            drop(guard);
            debug!(id = %info.id, "stored");
            lock(&shared.state.retries).remove(&info.id);
            // Durably stored: hand it to the application before acknowledging, so a lost
            // connection (the receipt cannot go out) delays nothing; the server re-delivers
            // an unacknowledged message and the stored copy makes that a duplicate.
            let receipt = delivery_receipt(shared, &node, &info);
            let (chat, sender, id) = (info.chat.to_string(), info.sender.to_string(), info.id.clone());
            crate::history::on_message(shared, &info, &message);
            crate::peer::on_message(shared, &info, &message);
            crate::appstate::on_message(shared, &info, &message);
            shared.emit(Event::Message(Arc::new(MessageEvent {
                info,
                message: *message,
                unavailable_request_id: None,
            })));
            if !shared.config.confirm_handled {
                shared.store.mark_inbound_handled(&chat, &sender, &id).await?;
            }
            conn.send(&receipt)?;
            Ok(())
        }
    }
}

/// A sender key under the sender's address, or else under the phone-number address it had
/// before its LID was known (then moved to the LID address in `tx`).
async fn load_sender_key(
    shared: &Shared,
    group: &str,
    addr: &wa_store::ProtocolAddress,
    old: Option<&wa_store::ProtocolAddress>,
    tx: &mut wa_store::Transaction,
) -> Result<Option<Vec<u8>>> {
    if let Some(b) = shared.store.get_sender_key(group, addr).await? {
        return Ok(Some(b));
    }
    let Some(old) = old else { return Ok(None) };
    let found = shared.store.get_sender_key(group, old).await?;
    if let Some(b) = &found {
        tx.put_sender_key(group, addr, b);
        tx.delete_sender_key(group, old);
    }
    Ok(found)
}

fn has_content(m: &Message) -> bool {
    let mut probe = m.clone();
    probe.message_context_info = None;
    probe.sender_key_distribution_message = None;
    probe != Message::default()
}

fn to_web_message_info(info: &MessageInfo, message: &Message) -> wa_proto::WebMessageInfo {
    wa_proto::WebMessageInfo {
        key: Some(wa_proto::MessageKey {
            remote_jid: Some(info.chat.to_string()),
            from_me: Some(info.from_me),
            id: Some(info.id.clone()),
            participant: info.is_group.then(|| info.sender.to_string()),
        }),
        message: Some(message.clone()),
        message_timestamp: Some(info.timestamp),
        push_name: info.push_name.clone(),
        ..Default::default()
    }
}

/// Re-emits messages that were stored but not handed to the application before a crash
/// (with `confirm_handled`: not confirmed by it; only on this `Client`'s first login, as
/// later ones would repeat what the application is still processing).
pub(crate) async fn replay_pending(shared: &Shared) -> Result<()> {
    let confirm = shared.config.confirm_handled;
    if confirm && shared.replayed.swap(true, std::sync::atomic::Ordering::AcqRel) {
        return Ok(());
    }
    let pending = shared.store.pending_inbound(1000).await?;
    if !pending.is_empty() {
        info!(count = pending.len(), "replaying stored messages");
    }
    for m in pending {
        let Ok(wmi) = wa_proto::WebMessageInfo::decode(m.payload.as_slice()) else {
            shared.store.mark_inbound_handled(&m.chat, &m.sender, &m.id).await?;
            continue;
        };
        let (Ok(chat), Ok(sender)) = (m.chat.parse::<Jid>(), m.sender.parse::<Jid>()) else { continue };
        let key = wmi.key.unwrap_or_default();
        let (chat_pn, chat_lid) = if chat.is_group() { (None, None) } else { both_names(&chat, None) };
        let mut info = MessageInfo {
            id: m.id.clone(),
            is_group: chat.is_group(),
            chat,
            chat_pn,
            chat_lid,
            sender_pn: sender.is_pn().then(|| sender.clone()),
            sender_lid: sender.is_lid().then(|| sender.clone()),
            sender,
            from_me: key.from_me.unwrap_or(false),
            timestamp: wmi.message_timestamp.unwrap_or(0),
            push_name: wmi.push_name,
            offline: true,
        };
        complete_names(shared, &mut info).await?;
        let message = wmi.message.unwrap_or_default();
        shared.emit(Event::Message(Arc::new(MessageEvent { info, message, unavailable_request_id: None })));
        if !confirm {
            shared.store.mark_inbound_handled(&m.chat, &m.sender, &m.id).await?;
        }
    }
    Ok(())
}

fn delivery_receipt(shared: &Shared, node: &Node, info: &MessageInfo) -> Node {
    let mut r = Node::new("receipt").attr("id", info.id.as_str());
    if let Some(from) = node.get_attr("from") {
        r = r.attr("to", from.clone());
    }
    if let Some(p) = node.get_attr("participant") {
        r = r.attr("participant", p.clone());
    }
    if info.from_me {
        if let Some(rcpt) = node.get_attr("recipient") {
            r = r.attr("recipient", rcpt.clone());
        }
        let t = if node.opt_attr_str("category").as_deref() == Some("peer") { "peer_msg" } else { "sender" };
        r = r.attr("type", t);
    } else if !shared.available.load(std::sync::atomic::Ordering::Acquire) {
        // whatsmeow receipt.go sendMessageReceipt: `inactive` unless we announced available.
        r = r.attr("type", "inactive");
    }
    r
}

async fn retry_receipt(shared: &Shared, node: &Node, info: &MessageInfo, count: u32) -> Result<Node> {
    let creds = shared.credentials()?;
    let mut r = Node::new("receipt").attr("id", info.id.as_str()).attr("type", "retry");
    if let Some(from) = node.get_attr("from") {
        r = r.attr("to", from.clone());
    }
    for k in ["participant", "recipient", "category"] {
        if let Some(v) = node.get_attr(k) {
            r = r.attr(k, v.clone());
        }
    }
    let mut children = vec![
        Node::new("retry")
            .attr("count", count)
            .attr("id", info.id.as_str())
            .attr("t", info.timestamp)
            .attr("v", "1"),
        Node::new("registration").bytes(creds.registration_id.to_be_bytes().to_vec()),
    ];
    if count > 1 {
        let mut keygen =
            || shared.with_rng(|r| crate::creds::to_store_pair(&wa_crypto::KeyPair::generate(r)));
        let key = shared
            .store
            .generate_pre_keys(1, &mut keygen)
            .await?
            .pop()
            .ok_or_else(|| Error::CorruptStore("no prekey generated".into()))?;
        shared.store.mark_pre_keys_uploaded(&[key.id]).await?;
        let spk = &creds.signed_pre_key;
        let mut keys = vec![
            Node::new("type").bytes(vec![5u8]),
            Node::new("identity").bytes(creds.identity_key.public.to_vec()),
            Node::new("key").children([
                Node::new("id").bytes(key.id.to_be_bytes()[1..].to_vec()),
                Node::new("value").bytes(key.key_pair.public.to_vec()),
            ]),
            Node::new("skey").children([
                Node::new("id").bytes(spk.id.to_be_bytes()[1..].to_vec()),
                Node::new("value").bytes(spk.key_pair.public.to_vec()),
                Node::new("signature").bytes(spk.signature.to_vec()),
            ]),
        ];
        if let Some(di) = &creds.signed_device_identity {
            keys.push(Node::new("device-identity").bytes(di.clone()));
        }
        children.push(Node::new("keys").children(keys));
    }
    Ok(r.children(children))
}

/// Handles a `<receipt>`: report it, answer retry requests, and acknowledge it: at once, or
/// with [`crate::ClientBuilder::confirm_handled`] only when the application confirms it
/// ([`crate::Client::ack_receipt`]), so that WhatsApp delivers it again if the application
/// stops before recording it.
pub(crate) async fn handle_receipt(shared: &Arc<Shared>, conn: &Connection, node: Node) -> Result<()> {
    let ty = node.opt_attr_str("type");
    if ty.as_deref() == Some("retry") {
        conn.send(&ack_for(&node, None))?;
        if let Err(e) = crate::send::answer_retry(shared, conn, &node).await {
            warn!(%e, "answering a retry receipt failed");
        }
        return Ok(());
    }
    let (from, first_id) = match (node.attr_jid("from"), node.attr_str("id")) {
        (Ok(from), Ok(id)) => (from, id.into_owned()),
        (Err(e), _) | (_, Err(e)) => {
            // Nothing the application could record: acknowledged so it is not re-delivered.
            warn!(%e, "malformed receipt");
            conn.send(&ack_for(&node, None))?;
            return Ok(());
        }
    };
    if from.is_group() && !node.has_attr("participant") {
        return handle_grouped_receipt(shared, conn, &node, from, ty.as_deref()).await;
    }
    let mut ids = vec![first_id.clone()];
    if let Some(list) = node.child("list") {
        ids.extend(list.children_by_tag("item").filter_map(|i| i.opt_attr_str("id").map(|s| s.into_owned())));
    }
    let is_group = from.is_group();
    let sender = node.attr_jid("participant").unwrap_or_else(|_| from.clone());
    let (mut sender_pn, mut sender_lid) = sender_names(&node, &sender, is_group);
    let chat = if is_group { from } else { node.attr_jid("recipient").unwrap_or(from).to_non_ad() };
    let (mut chat_pn, mut chat_lid) = if is_group {
        (None, None)
    } else if node.has_attr("recipient") {
        let alt = if chat.is_lid() { "peer_recipient_pn" } else { "peer_recipient_lid" };
        both_names(&chat, node.attr_jid(alt).ok().map(|j| j.to_non_ad()))
    } else {
        let alt = if sender.is_lid() { sender_pn.as_ref() } else { sender_lid.as_ref() };
        both_names(&chat, alt.map(Jid::to_non_ad))
    };
    if let (Some(p), Some(l)) = (&sender_pn, &sender_lid) {
        crate::lid::learn_jids(shared, &[(l, p)]).await?;
    }
    fill_names(shared, &mut sender_pn, &mut sender_lid).await?;
    if !is_group {
        fill_names(shared, &mut chat_pn, &mut chat_lid).await?;
    }
    let ack = if shared.config.confirm_handled {
        Some(Box::new(ReceiptAck {
            id: first_id,
            receipt_type: ty.as_deref().map(str::to_owned),
            node: ack_for(&node, None),
            connection: conn.number(),
        }))
    } else {
        conn.send(&ack_for(&node, None))?;
        None
    };
    shared.emit(Event::Receipt(ReceiptEvent {
        chat,
        chat_pn,
        chat_lid,
        sender,
        sender_pn,
        sender_lid,
        ids,
        kind: ReceiptKind::parse(ty.as_deref()),
        timestamp: node.opt_attr_str("t").and_then(|t| t.parse().ok()).unwrap_or(0),
        offline: node.has_attr("offline"),
        ack,
    }));
    Ok(())
}

/// A group receipt without `participant`: `<participants key=<message id>><user jid t/>…`,
/// several members confirming one message at once (whatsmeow `receipt.go`
/// `handleGroupedReceipt`). One [`ReceiptEvent`] per member, in order; the stanza is
/// acknowledged once, so with `confirm_handled` only the last event carries the ack (sent
/// after the application recorded them all). Without `<participants>` it cannot be
/// attributed: refused with 487 as whatsmeow does.
async fn handle_grouped_receipt(
    shared: &Shared,
    conn: &Connection,
    node: &Node,
    group: Jid,
    ty: Option<&str>,
) -> Result<()> {
    let mut users = Vec::new();
    for parts in node.children_by_tag("participants") {
        let Some(key) = parts.opt_attr_str("key").filter(|k| !k.is_empty()) else { continue };
        for u in parts.children_by_tag("user") {
            match u.attr_jid("jid") {
                Ok(jid) => {
                    // The member's other name, when the server gives it (`participant_pn` in a
                    // LID group, `participant_lid` in a phone-number one).
                    let alt =
                        u.attr_jid(if jid.is_lid() { "participant_pn" } else { "participant_lid" }).ok();
                    users.push((key.to_string(), jid, alt, u.opt_attr_str("t").and_then(|t| t.parse().ok())))
                }
                Err(e) => warn!(%e, "grouped receipt: unusable user"),
            }
        }
    }
    if node.child("participants").is_none() {
        warn!(node = %crate::conn::NodeDisplay(node), "group receipt with neither participant nor participants");
        conn.send(&ack_for(node, Some(487)))?;
        return Ok(());
    }
    let stanza_t = node.opt_attr_str("t").and_then(|t| t.parse().ok()).unwrap_or(0);
    let offline = node.has_attr("offline");
    let ack = if shared.config.confirm_handled && !users.is_empty() {
        Some(Box::new(ReceiptAck {
            id: node.opt_attr_str("id").map(|s| s.into_owned()).unwrap_or_default(),
            receipt_type: ty.map(str::to_owned),
            node: ack_for(node, None),
            connection: conn.number(),
        }))
    } else {
        conn.send(&ack_for(node, None))?;
        None
    };
    let last = users.len().saturating_sub(1);
    for (i, (key, sender, alt, t)) in users.into_iter().enumerate() {
        let (mut sender_pn, mut sender_lid) =
            if sender.is_lid() { (alt, Some(sender.clone())) } else { (Some(sender.clone()), alt) };
        fill_names(shared, &mut sender_pn, &mut sender_lid).await?;
        shared.emit(Event::Receipt(ReceiptEvent {
            chat: group.clone(),
            chat_pn: None,
            chat_lid: None,
            sender,
            sender_pn,
            sender_lid,
            ids: vec![key],
            kind: ReceiptKind::parse(ty),
            timestamp: t.unwrap_or(stanza_t),
            offline,
            ack: if i == last { ack.clone() } else { None },
        }));
    }
    Ok(())
}

/// `<presence>` and `<chatstate>`.
pub(crate) fn handle_presence(shared: &Shared, node: &Node) {
    let Ok(from) = node.attr_jid("from") else { return };
    if node.tag == "presence" {
        let available = node.opt_attr_str("type").as_deref() != Some("unavailable");
        let last_seen = node.opt_attr_str("last").and_then(|l| l.parse().ok());
        shared.emit(Event::Presence(PresenceEvent { from, available, last_seen }));
    } else if let Some(state) = node.child_nodes().first() {
        let sender = node.attr_jid("participant").unwrap_or_else(|_| from.clone());
        shared.emit(Event::ChatState(ChatStateEvent {
            chat: from,
            sender,
            composing: state.tag == "composing",
            audio: state.opt_attr_str("media").as_deref() == Some("audio"),
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unpad_checks_length() {
        assert_eq!(unpad(&[1, 2, 3, 2, 2]).unwrap(), &[1, 2, 3]);
        assert!(unpad(&[]).is_err());
        assert!(unpad(&[0]).is_err());
        assert!(unpad(&[1, 9]).is_err());
    }

    #[test]
    fn ack_copies_routing_attrs() {
        let n = Node::new("receipt")
            .attr("id", "X")
            .attr("from", Jid::pn("1").unwrap())
            .attr("type", "read")
            .attr("participant", Jid::pn("2").unwrap());
        let a = ack_for(&n, None);
        assert_eq!(a.attr_str("class").unwrap(), "receipt");
        assert_eq!(a.attr_str("type").unwrap(), "read");
        assert_eq!(a.attr_jid("to").unwrap(), Jid::pn("1").unwrap());
        let m = Node::new("message").attr("id", "Y").attr("from", Jid::pn("1").unwrap()).attr("type", "text");
        assert!(ack_for(&m, Some(491)).get_attr("type").is_none());
    }
}
