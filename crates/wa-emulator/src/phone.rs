//! The simulated primary phone of an account: a real Signal participant (wa-signal) that
//! signs ADV identities for companions, sends and decrypts 1:1 and group messages, and
//! records receipts.

use std::collections::{HashMap, HashSet};

use prost::Message as _;
use rand_core::{CryptoRng, Rng};
use wa_binary::{Jid, Node, Server};
use wa_crypto::PublicKey;
use wa_signal::{
    LocalIdentity, MessageKind, PreKeyBundle, PreKeyRecord, PreKeySet, SenderKeyConfig, SenderKeyRecord,
    SessionConfig, SessionRecord, SignedPreKeyRecord,
};

use crate::world::{
    AccountId, ControlError, DeviceAddr, DeviceKeys, SignedPreKeyPub, World, WorldEvent, attr, content_bytes,
};

/// A message a phone received and decrypted.
#[derive(Debug, Clone, serde::Serialize)]
pub struct InboxMessage {
    /// Message id.
    pub id: String,
    /// The chat: the sender's user JID, or the group JID.
    pub chat: String,
    /// The sending device's JID.
    pub sender: String,
    /// The receiving device: 0 the phone, [`crate::HOSTED_DEVICE_ID`] the account's hosted
    /// (Cloud API) device.
    pub device: u16,
    /// Text (conversation, extended text, or a media caption).
    pub text: Option<String>,
    /// `text`, `image`, `reaction`, ... .
    pub kind: String,
    /// Server timestamp.
    pub t: u64,
    /// The decoded `Message` protobuf, serialized.
    #[serde(skip)]
    pub message: Vec<u8>,
    /// Set when decryption failed (the error text).
    pub error: Option<String>,
}

/// A receipt a phone received for a message it sent.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct PhoneReceipt {
    /// Message id.
    pub id: String,
    /// Who sent the receipt.
    pub from: String,
    /// Receipt type (`delivery` when the stanza has none).
    pub kind: String,
}

/// The phone's Signal state.
#[derive(Debug)]
pub struct Phone {
    pub(crate) identity: LocalIdentity,
    pub(crate) pre_keys: PreKeySet,
    pub(crate) sessions: HashMap<DeviceAddr, SessionRecord>,
    pub(crate) sender_keys: HashMap<(String, DeviceAddr), SenderKeyRecord>,
    pub(crate) own_sender_keys: HashMap<String, SenderKeyRecord>,
    pub(crate) skdm_sent: HashMap<String, HashSet<DeviceAddr>>,
    /// Messages received, oldest first.
    pub inbox: Vec<InboxMessage>,
    /// Receipts received, oldest first.
    pub receipts: Vec<PhoneReceipt>,
}

/// One-time prekeys a phone generates by default.
pub(crate) const PHONE_PRE_KEYS: u32 = 200;

impl Phone {
    pub(crate) fn generate<R: CryptoRng + ?Sized>(rng: &mut R, pre_keys: u32) -> Self {
        let identity = LocalIdentity::generate(rng);
        let signed = SignedPreKeyRecord::generate(&identity.key_pair, 1, rng);
        let one_time = PreKeyRecord::generate_batch(1, pre_keys, rng);
        Self {
            identity,
            pre_keys: PreKeySet { signed: vec![signed], one_time },
            sessions: HashMap::new(),
            sender_keys: HashMap::new(),
            own_sender_keys: HashMap::new(),
            skdm_sent: HashMap::new(),
            inbox: Vec::new(),
            receipts: Vec::new(),
        }
    }

    /// The account's identity key (also the ADV account signature key).
    pub fn identity_public(&self) -> PublicKey {
        self.identity.public_key()
    }

    pub(crate) fn agree(&self, their: &PublicKey) -> Option<[u8; 32]> {
        self.identity.key_pair.private.agree(their).ok()
    }

    pub(crate) fn sign(&self, msg: &[u8]) -> [u8; 64] {
        self.identity.key_pair.private.sign(msg)
    }

    pub(crate) fn published_keys(&self) -> DeviceKeys {
        let s = &self.pre_keys.signed[0];
        DeviceKeys {
            identity: self.identity.public_key(),
            registration_id: self.identity.registration_id,
            signed_pre_key: SignedPreKeyPub { id: s.id, public: s.key_pair.public, signature: s.signature },
            pre_keys: self.pre_keys.one_time.iter().map(|k| (k.id, k.key_pair.public)).collect(),
        }
    }
}

/// Pads as Baileys does: 1..=16 bytes, each equal to the count.
pub(crate) fn pad<R: Rng + ?Sized>(mut plain: Vec<u8>, rng: &mut R) -> Vec<u8> {
    let n = (rng.next_u32() & 0x0F) as u8 + 1;
    plain.extend(std::iter::repeat_n(n, usize::from(n)));
    plain
}

fn unpad(plain: &[u8]) -> Option<&[u8]> {
    let n = usize::from(*plain.last()?);
    if n == 0 || n > plain.len() {
        return None;
    }
    Some(&plain[..plain.len() - n])
}

fn describe(m: &wa_proto::Message) -> (String, Option<String>) {
    if let Some(t) = &m.conversation {
        return ("text".into(), Some(t.clone()));
    }
    if let Some(e) = &m.extended_text_message {
        return ("text".into(), e.text.clone());
    }
    if let Some(i) = &m.image_message {
        return ("image".into(), i.caption.clone());
    }
    if let Some(v) = &m.video_message {
        return ("video".into(), v.caption.clone());
    }
    if let Some(d) = &m.document_message {
        return ("document".into(), d.caption.clone().or_else(|| d.file_name.clone()));
    }
    if m.audio_message.is_some() {
        return ("audio".into(), None);
    }
    if m.sticker_message.is_some() {
        return ("sticker".into(), None);
    }
    if let Some(l) = &m.location_message {
        return ("location".into(), l.name.clone());
    }
    if let Some(c) = &m.contact_message {
        return ("contact".into(), c.display_name.clone());
    }
    if let Some(r) = &m.reaction_message {
        return ("reaction".into(), r.text.clone());
    }
    if m.protocol_message.is_some() {
        return ("protocol".into(), None);
    }
    if m.sender_key_distribution_message.is_some() {
        return ("skdm".into(), None);
    }
    ("other".into(), None)
}

impl World {
    /// Signal bundle of a device, consuming one of its one-time prekeys.
    pub(crate) fn pop_bundle(&mut self, addr: DeviceAddr) -> Option<PreKeyBundle> {
        let d = self.accounts.get_mut(addr.account)?.devices.get_mut(&addr.device)?;
        let pre_key = d.keys.pre_keys.pop_first();
        let k = &d.keys;
        Some(PreKeyBundle {
            registration_id: k.registration_id,
            identity_key: k.identity,
            signed_pre_key_id: k.signed_pre_key.id,
            signed_pre_key: k.signed_pre_key.public,
            signed_pre_key_signature: k.signed_pre_key.signature,
            pre_key,
        })
    }

    /// Encrypts `plain` (already padded) from `account`'s phone to `to`, starting a session
    /// from the device's bundle if there is none.
    pub(crate) fn phone_encrypt(
        &mut self,
        account: AccountId,
        to: DeviceAddr,
        plain: &[u8],
    ) -> Result<Node, ControlError> {
        let has =
            self.accounts[account].phone.sessions.get(&to).is_some_and(SessionRecord::has_current_session);
        if !has {
            let bundle =
                self.pop_bundle(to).ok_or_else(|| ControlError::Signal(format!("no bundle for {to:?}")))?;
            let World { accounts, rng, .. } = self;
            let phone = &mut accounts[account].phone;
            let record = phone.sessions.entry(to).or_default();
            record
                .initiate(&phone.identity, &bundle, &SessionConfig::default(), rng)
                .map_err(|e| ControlError::Signal(e.to_string()))?;
        }
        let phone = &mut self.accounts[account].phone;
        let record =
            phone.sessions.get_mut(&to).ok_or_else(|| ControlError::Signal("session vanished".into()))?;
        let ct = record.encrypt(&phone.identity, plain).map_err(|e| ControlError::Signal(e.to_string()))?;
        Ok(Node::new("enc").attr("v", "2").attr("type", ct.enc_type()).bytes(ct.into_bytes()))
    }

    pub(crate) fn new_message_id(&mut self) -> String {
        format!("3EB0{}", self.random_hex(9))
    }

    /// The devices a send from `account` to a user must reach: the recipient's devices, and
    /// the sender's own companions (which get a DSM copy).
    fn user_targets(&self, account: AccountId, recipient: AccountId) -> Vec<DeviceAddr> {
        let mut out: Vec<DeviceAddr> = self.accounts[recipient]
            .devices
            .values()
            .filter(|d| d.id == 0 || d.signed_identity.is_some())
            .map(|d| DeviceAddr { account: recipient, device: d.id })
            .collect();
        if recipient != account {
            out.extend(
                self.accounts[account]
                    .devices
                    .values()
                    .filter(|d| d.id != 0 && d.signed_identity.is_some())
                    .map(|d| DeviceAddr { account, device: d.id }),
            );
        }
        out
    }

    /// Sends `message` from `account`'s phone to a user or group JID; returns the message id.
    pub fn phone_send(
        &mut self,
        account: AccountId,
        to: &Jid,
        message: &wa_proto::Message,
    ) -> Result<String, ControlError> {
        let id = self.new_message_id();
        let me = DeviceAddr { account, device: 0 };
        let ty = if message.image_message.is_some() {
            "media"
        } else if message.reaction_message.is_some() {
            "reaction"
        } else {
            "text"
        };
        let mediatype = message.image_message.is_some().then_some("image");
        let mut participants = Vec::new();
        let mut stanza = Node::new("message").attr("to", to.clone()).attr("id", id.as_str()).attr("type", ty);
        if to.is_group() {
            let group = self
                .groups
                .get(to.user())
                .cloned()
                .ok_or_else(|| ControlError::UnknownGroup(to.to_string()))?;
            let group_jid = to.to_string();
            let targets: Vec<DeviceAddr> = group
                .participants
                .keys()
                .flat_map(|&a| {
                    self.accounts[a]
                        .devices
                        .values()
                        .filter(|d| d.id == 0 || d.signed_identity.is_some())
                        .map(move |d| DeviceAddr { account: a, device: d.id })
                })
                .filter(|d| *d != me)
                .collect();
            let skdm = {
                let World { accounts, rng, .. } = self;
                let phone = &mut accounts[account].phone;
                let rec = phone.own_sender_keys.entry(group_jid.clone()).or_default();
                if rec.is_empty() {
                    rec.generate_own_state(&SenderKeyConfig::default(), rng);
                }
                rec.distribution_message().map_err(|e| ControlError::Signal(e.to_string()))?.to_bytes()
            };
            let carrier = wa_proto::Message {
                sender_key_distribution_message: Some(wa_proto::message::SenderKeyDistributionMessage {
                    group_id: Some(group_jid.clone()),
                    axolotl_sender_key_distribution_message: Some(skdm),
                }),
                ..Default::default()
            };
            for t in targets {
                let sent =
                    self.accounts[account].phone.skdm_sent.get(&group_jid).is_some_and(|s| s.contains(&t));
                if sent {
                    continue;
                }
                let plain = pad(carrier.encode_to_vec(), &mut self.rng);
                let enc = self.phone_encrypt(account, t, &plain)?;
                let jid = self.device_jid(t, group.addressing());
                participants.push(Node::new("to").attr("jid", jid).children([enc]));
                self.accounts[account].phone.skdm_sent.entry(group_jid.clone()).or_default().insert(t);
            }
            let plain = pad(message.encode_to_vec(), &mut self.rng);
            let rec = self.accounts[account]
                .phone
                .own_sender_keys
                .get_mut(&group_jid)
                .ok_or_else(|| ControlError::Signal("no sender key".into()))?;
            let sk = rec.encrypt(&plain).map_err(|e| ControlError::Signal(e.to_string()))?;
            let mut enc = Node::new("enc").attr("v", "2").attr("type", "skmsg");
            if let Some(m) = mediatype {
                enc = enc.attr("mediatype", m);
            }
            stanza = stanza
                .attr("addressing_mode", group.addressing_mode())
                .children([Node::new("participants").children(participants), enc.bytes(sk)]);
        } else {
            let recipient = self.account_of(to).ok_or_else(|| ControlError::BadJid(to.to_string()))?;
            // The phone names the contact in its account's namespace whatever JID it was
            // given (a migrated phone writes every 1:1 chat by LID); the server delivers each
            // copy in the recipient's view (see `addressing`).
            let server = self.chat_server(account);
            let to = &self.user_jid(recipient, server);
            stanza.set_attr("to", to.clone());
            let dsm = wa_proto::Message {
                device_sent_message: Some(Box::new(wa_proto::message::DeviceSentMessage {
                    destination_jid: Some(to.to_non_ad().to_string()),
                    message: Some(Box::new(message.clone())),
                    phash: None,
                })),
                ..Default::default()
            };
            for t in self.user_targets(account, recipient) {
                if t == me {
                    continue;
                }
                let body = if t.account == account { dsm.encode_to_vec() } else { message.encode_to_vec() };
                let plain = pad(body, &mut self.rng);
                let mut enc = self.phone_encrypt(account, t, &plain)?;
                if let Some(m) = mediatype {
                    enc.set_attr("mediatype", m);
                }
                let jid = self.device_jid(t, server);
                participants.push(Node::new("to").attr("jid", jid).children([enc]));
            }
            stanza = stanza.children([Node::new("participants").children(participants)]);
            self.route_message(me, to, &stanza);
            return Ok(id);
        }
        self.route_message(me, to, &stanza);
        Ok(id)
    }

    /// A stanza reached `account`'s phone.
    /// A stanza for a simulated device of `at.account`: its phone, or its hosted device.
    pub(crate) fn phone_receive(&mut self, at: DeviceAddr, node: Node) {
        let account = at.account;
        match node.tag.as_str() {
            "message" => self.phone_receive_message(at, &node),
            "receipt" => {
                let kind = {
                    let t = attr(&node, "type");
                    if t.is_empty() { "delivery".to_owned() } else { t }
                };
                let from = attr(&node, "participant");
                let from = if from.is_empty() { attr(&node, "from") } else { from };
                let id = attr(&node, "id");
                let pn = self.accounts[account].pn.clone();
                self.accounts[account].phone.receipts.push(PhoneReceipt {
                    id: id.clone(),
                    from,
                    kind: kind.clone(),
                });
                self.emit(WorldEvent::PhoneReceipt { pn, id, kind });
            }
            _ => {}
        }
    }

    fn phone_receive_message(&mut self, at: DeviceAddr, node: &Node) {
        let account = at.account;
        let from = node.attr_jid("from").ok();
        let participant = node.attr_jid("participant").ok();
        let Some(sender_jid) = participant.clone().or_else(|| from.clone()) else { return };
        let Some(sender) = self.device_of(&sender_jid) else { return };
        let group = from.as_ref().filter(|f| f.is_group()).map(|g| g.to_string());
        let mut result: Option<wa_proto::Message> = None;
        let mut error = None;
        for enc in node.children_by_tag("enc") {
            let Some(bytes) = content_bytes(enc) else { continue };
            let ty = attr(enc, "type");
            let plain = match ty.as_str() {
                "pkmsg" | "msg" => {
                    let kind = if ty == "pkmsg" { MessageKind::PreKey } else { MessageKind::Whisper };
                    let decrypted = {
                        let World { accounts, rng, .. } = self;
                        let phone = accounts[account].endpoint(at.device);
                        let record = phone.sessions.get(&sender).cloned().unwrap_or_default();
                        record.decrypt(
                            &phone.identity,
                            kind,
                            bytes,
                            &phone.pre_keys,
                            &SessionConfig::default(),
                            rng,
                        )
                    };
                    match decrypted {
                        Ok((dec, next)) => {
                            // A new session from a companion is accepted only with a valid ADV
                            // identity (see `phone_identity`).
                            let adv = if kind == MessageKind::PreKey && sender.device != 0 {
                                let device_identity = node.child("device-identity").and_then(content_bytes);
                                match next.remote_identity() {
                                    Some(key) => self.verify_device_identity(sender, device_identity, &key),
                                    None => {
                                        Err(crate::phone_identity::AdvRefusal::Malformed("no identity key"))
                                    }
                                }
                                .map_err(|e| format!("device-identity: {e}"))
                            } else {
                                Ok(())
                            };
                            adv.map(|()| {
                                let phone = self.accounts[account].endpoint_mut(at.device);
                                phone.sessions.insert(sender, next);
                                if let Some(used) = dec.used_pre_key {
                                    phone.pre_keys.remove_one_time(used);
                                }
                                dec.plaintext
                            })
                        }
                        Err(e) => Err(e.to_string()),
                    }
                }
                "skmsg" => {
                    let key = (group.clone().unwrap_or_default(), sender);
                    let phone = self.accounts[account].endpoint_mut(at.device);
                    match phone.sender_keys.get_mut(&key) {
                        Some(rec) => rec
                            .decrypt_in_place(bytes, &SenderKeyConfig::default())
                            .map_err(|e| e.to_string()),
                        None => Err("no sender key for this group sender".to_owned()),
                    }
                }
                other => Err(format!("unknown enc type {other:?}")),
            };
            let plain = match plain {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(error = %e, "phone could not decrypt");
                    error = Some(e);
                    continue;
                }
            };
            let Some(msg) = unpad(&plain).and_then(|p| wa_proto::Message::decode(p).ok()) else {
                error = Some("bad padding or protobuf".into());
                continue;
            };
            let msg = match msg.device_sent_message {
                Some(dsm) => dsm.message.map(|m| *m).unwrap_or_default(),
                None => msg,
            };
            if let Some(skdm) = &msg.sender_key_distribution_message
                && let (Some(gid), Some(raw)) =
                    (&skdm.group_id, &skdm.axolotl_sender_key_distribution_message)
            {
                let phone = self.accounts[account].endpoint_mut(at.device);
                let rec = phone.sender_keys.entry((gid.clone(), sender)).or_default();
                if let Err(e) = rec.process_distribution_bytes(raw, &SenderKeyConfig::default()) {
                    tracing::warn!(error = %e, "phone got a bad SKDM");
                }
            }
            match &mut result {
                Some(r) => r.merge(msg.encode_to_vec().as_slice()).unwrap_or(()),
                None => result = Some(msg),
            }
        }
        let id = attr(node, "id");
        // A phone files a 1:1 chat under the contact's number, however the DM was addressed.
        let chat = match &group {
            Some(g) => g.clone(),
            None => self.user_jid(sender.account, Server::Pn).to_string(),
        };
        let (kind, text) = result.as_ref().map(describe).unwrap_or(("undecryptable".into(), None));
        let peer_request = result.as_ref().and_then(crate::resend::peer_request_of);
        let key_request: Option<Vec<Vec<u8>>> = result
            .as_ref()
            .and_then(|m| m.protocol_message.as_ref())
            .and_then(|p| p.app_state_sync_key_request.as_ref())
            .map(|r| r.key_ids.iter().filter_map(|k| k.key_id.clone()).collect());
        // The inbox is a log of every message that arrived, repeats under the same id included
        // (a real phone shows one copy per message key; tests count distinct ids for that).
        if kind == "skdm" && error.is_none() {
            // A pure key distribution (no content): nothing for the user to see.
        } else {
            let t = node.attr_u64("t").unwrap_or(0);
            self.accounts[account].phone.inbox.push(InboxMessage {
                id: id.clone(),
                chat: chat.clone(),
                sender: sender_jid.to_string(),
                device: at.device,
                text,
                kind,
                t,
                message: result.map(|m| m.encode_to_vec()).unwrap_or_default(),
                error: error.clone(),
            });
            let pn = self.accounts[account].pn.clone();
            self.emit(WorldEvent::PhoneReceived { pn, id: id.clone() });
        }
        if error.is_none() {
            let mut receipt = Node::new("receipt").attr("id", id.as_str());
            if let Some(g) = &from
                && g.is_group()
            {
                receipt = receipt.attr("to", g.clone());
            } else {
                receipt = receipt.attr("to", sender_jid.to_non_ad());
            }
            if sender.account == account {
                // A copy of our own account's message: a `sender` receipt naming the chat
                // (whatsmeow receipt.go `sendMessageReceipt`, `buildBaseReceipt`).
                receipt = receipt.attr("type", "sender");
                if let Some(r) = node.get_attr("recipient") {
                    receipt = receipt.attr("recipient", r.clone());
                }
            }
            self.route_receipt(at, &receipt);
        }
        if let Some(request) = peer_request.filter(|_| at.device == 0) {
            self.phone_answer_peer_request(account, sender, &id, &request);
        }
        if let Some(ids) =
            key_request.filter(|_| at.device == 0 && sender.account == account && sender.device != 0)
        {
            self.phone_answer_key_request(account, sender.device, &ids);
        }
    }

    /// Sends a read receipt from `account`'s phone for messages it received.
    pub fn phone_mark_read(&mut self, account: AccountId, ids: &[String]) -> Result<(), ControlError> {
        self.phone_send_receipt(account, ids, "read")
    }

    /// Sends a `played` receipt (voice notes, videos) from `account`'s phone.
    pub fn phone_mark_played(&mut self, account: AccountId, ids: &[String]) -> Result<(), ControlError> {
        self.phone_send_receipt(account, ids, "played")
    }

    pub(crate) fn inbox_message(&self, account: AccountId, id: &str) -> Result<InboxMessage, ControlError> {
        self.accounts[account]
            .phone
            .inbox
            .iter()
            .rev()
            .find(|m| m.id == id)
            .cloned()
            .ok_or_else(|| ControlError::UnknownMessage(id.to_owned()))
    }

    fn phone_send_receipt(
        &mut self,
        account: AccountId,
        ids: &[String],
        ty: &str,
    ) -> Result<(), ControlError> {
        for id in ids {
            let m = self.inbox_message(account, id)?;
            let to: Jid = m.chat.parse().map_err(|_| ControlError::BadJid(m.chat.clone()))?;
            let mut receipt =
                Node::new("receipt").attr("id", id.as_str()).attr("type", ty).attr("to", to.clone());
            if to.is_group() {
                receipt = receipt.attr("participant", m.sender.as_str());
            }
            self.route_receipt(DeviceAddr { account, device: 0 }, &receipt);
        }
        Ok(())
    }

    /// `account`'s phone reacts with `emoji` (empty: removes its reaction) to the message `id`
    /// in `chat`, which it received or sent. Returns the reaction's message id.
    pub fn phone_react(
        &mut self,
        account: AccountId,
        chat: &Jid,
        id: &str,
        emoji: &str,
    ) -> Result<String, ControlError> {
        let from_me = self.sent_by.get(id).map(|d| d.account == account);
        let (from_me, participant) = match from_me {
            Some(true) => (true, None),
            _ => {
                let m = self.inbox_message(account, id)?;
                let sender: Jid = m.sender.parse().map_err(|_| ControlError::BadJid(m.sender.clone()))?;
                (false, chat.is_group().then(|| sender.to_non_ad().to_string()))
            }
        };
        let now_ms = self.now().saturating_mul(1000);
        // The key names the chat as the phone writes it (by LID on a migrated account).
        let remote = match self.account_of(chat).filter(|_| !chat.is_group()) {
            Some(c) => self.user_jid(c, self.chat_server(account)),
            None => chat.to_non_ad(),
        };
        let message = wa_proto::Message {
            reaction_message: Some(wa_proto::message::ReactionMessage {
                key: Some(wa_proto::MessageKey {
                    remote_jid: Some(remote.to_string()),
                    from_me: Some(from_me),
                    id: Some(id.to_owned()),
                    participant,
                }),
                text: Some(emoji.to_owned()),
                grouping_key: None,
                sender_timestamp_ms: Some(i64::try_from(now_ms).unwrap_or(i64::MAX)),
            }),
            ..Default::default()
        };
        self.phone_send(account, chat, &message)
    }

    /// `account`'s phone asks the sender of message `id` to send it again, as a phone does
    /// when it cannot decrypt: it drops its session with the sending device and sends a
    /// `retry` receipt carrying its registration id and a fresh key bundle (identity,
    /// one-time prekey, signed prekey), from which the sender starts a new session.
    pub fn phone_request_retry(&mut self, account: AccountId, id: &str) -> Result<(), ControlError> {
        let m = self.inbox_message(account, id)?;
        let sender_jid: Jid = m.sender.parse().map_err(|_| ControlError::BadJid(m.sender.clone()))?;
        let sender = self.device_of(&sender_jid).ok_or_else(|| ControlError::BadJid(m.sender.clone()))?;
        let me = DeviceAddr { account, device: 0 };
        let bundle = self
            .pop_bundle(me)
            .ok_or_else(|| ControlError::Signal("the phone has no published keys".into()))?;
        self.accounts[account].phone.sessions.remove(&sender);
        let mut keys = vec![
            Node::new("type").bytes(vec![5]),
            Node::new("identity").bytes(bundle.identity_key.as_bytes().to_vec()),
        ];
        if let Some((pid, pkey)) = bundle.pre_key {
            keys.push(Node::new("key").children([
                Node::new("id").bytes(crate::world::be_bytes(pid, 3)),
                Node::new("value").bytes(pkey.as_bytes().to_vec()),
            ]));
        }
        keys.push(Node::new("skey").children([
            Node::new("id").bytes(crate::world::be_bytes(bundle.signed_pre_key_id, 3)),
            Node::new("value").bytes(bundle.signed_pre_key.as_bytes().to_vec()),
            Node::new("signature").bytes(bundle.signed_pre_key_signature.to_vec()),
        ]));
        let now = self.now();
        let chat: Jid = m.chat.parse().map_err(|_| ControlError::BadJid(m.chat.clone()))?;
        let mut receipt = Node::new("receipt").attr("id", id).attr("type", "retry");
        receipt = if chat.is_group() {
            receipt.attr("to", chat).attr("participant", sender_jid)
        } else {
            receipt.attr("to", sender_jid)
        };
        let receipt = receipt.children([
            Node::new("retry").attr("count", "1").attr("id", id).attr("t", now).attr("v", "1"),
            Node::new("registration").bytes(crate::world::be_bytes(bundle.registration_id, 4)),
            Node::new("keys").children(keys),
        ]);
        self.route_receipt(me, &receipt);
        Ok(())
    }
}

impl Phone {
    /// WhatsApp reinstalled on this phone: a new identity, registration id and prekeys, no
    /// sessions or sender keys. The inbox and receipts stay (they are the emulator's log).
    pub(crate) fn reinstall<R: CryptoRng + ?Sized>(&mut self, rng: &mut R, pre_keys: u32) {
        let fresh = Self::generate(rng, pre_keys);
        let inbox = std::mem::take(&mut self.inbox);
        let receipts = std::mem::take(&mut self.receipts);
        *self = Self { inbox, receipts, ..fresh };
    }

    /// Forgets the sessions and sender keys of every device of `account` (its identity changed).
    pub(crate) fn forget_account(&mut self, account: AccountId) {
        self.sessions.retain(|d, _| d.account != account);
        self.sender_keys.retain(|(_, d), _| d.account != account);
    }

    /// Drops our sender key for a group (membership changed: the next send distributes a new one).
    pub(crate) fn forget_group(&mut self, group_jid: &str) {
        self.own_sender_keys.remove(group_jid);
        self.skdm_sent.remove(group_jid);
    }
}

#[cfg(test)]
mod tests {
    use super::describe;

    #[test]
    fn media_carrying_a_key_distribution_is_still_media() {
        // The first group message from a sender carries its sender key alongside the content;
        // the phone must file it by content, not as a bare key distribution.
        let m = wa_proto::Message {
            sender_key_distribution_message: Some(Default::default()),
            video_message: Some(Box::new(wa_proto::message::VideoMessage {
                caption: Some("clip".into()),
                ..Default::default()
            })),
            ..Default::default()
        };
        assert_eq!(describe(&m), ("video".into(), Some("clip".into())));
        let bare = wa_proto::Message {
            sender_key_distribution_message: Some(Default::default()),
            ..Default::default()
        };
        assert_eq!(describe(&bare).0, "skdm");
        let doc = wa_proto::Message {
            document_message: Some(Box::new(wa_proto::message::DocumentMessage {
                file_name: Some("a.pdf".into()),
                ..Default::default()
            })),
            ..Default::default()
        };
        assert_eq!(describe(&doc), ("document".into(), Some("a.pdf".into())));
    }
}
