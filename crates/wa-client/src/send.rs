//! Sending: device lists (usync, cached with expiry), prekey bundles, pairwise and group
//! encryption, own-device copies, durable sent-message store, server acks and retries.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use prost::Message as _;
use tokio::sync::oneshot;
use tracing::{debug, info};
use wa_binary::{Jid, Node, Server};
use wa_crypto::PublicKey;
use wa_proto::Message;
use wa_proto::message::{DeviceSentMessage, SenderKeyDistributionMessage as SkdmProto};
use wa_signal::{
    CiphertextMessage, PreKeyBundle, SenderKeyConfig, SenderKeyRecord, SessionConfig, SessionRecord,
};
use wa_store::{DeviceListStore, ProtocolAddress, SenderKeyStore, SentMessageStore, SessionStore};

use crate::client::{Client, Shared, lock, signal_address};
use crate::conn::{Connection, server_jid};
use crate::creds::CredentialsExt;
use crate::error::{AckLoss, Error, Result};

/// How long device lists stay cached.
pub(crate) const DEVICE_LIST_TTL: i64 = 3600;
/// How long sent messages are kept to answer retries.
const SENT_MESSAGE_TTL: i64 = 7 * 24 * 3600;
/// How long to wait for the server's ack of a sent message.
const SERVER_ACK_TIMEOUT: Duration = Duration::from_secs(30);

/// Bookkeeping shared by the sending and receiving paths.
#[derive(Default)]
pub(crate) struct SendState {
    pub(crate) acks: Mutex<HashMap<String, oneshot::Sender<Node>>>,
    /// Retry receipts we sent, per message id.
    pub retries: Mutex<HashMap<String, u32>>,
    /// Retry receipts we answered, per (device, message id).
    answered: Mutex<HashMap<(String, String), u32>>,
}

/// What the server said about a sent message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SendResult {
    /// The message id.
    pub id: String,
    /// The server's timestamp (unix seconds).
    pub timestamp: u64,
    /// The 1:1 chat's phone-number JID, when known (`None` for groups).
    pub chat_pn: Option<Jid>,
    /// The 1:1 chat's LID, when known (`None` for groups).
    pub chat_lid: Option<Jid>,
}

pub(crate) fn handle_server_ack(shared: &Shared, node: &Node) {
    if node.opt_attr_str("class").as_deref() != Some("message") {
        return;
    }
    if let Some(id) = node.opt_attr_str("id")
        && let Some(tx) = lock(&shared.state.acks).remove(id.as_ref())
    {
        let _ = tx.send(node.clone());
    }
}

/// A new message id in the current format: `3EB0` + 18 hex digits.
pub(crate) fn new_message_id(shared: &Shared, own_user: &str) -> String {
    let rnd: [u8; 16] = shared.random_bytes();
    let t = u64::try_from(shared.now()).unwrap_or(0).to_be_bytes();
    let h = wa_crypto::sha256(&[&t, own_user.as_bytes(), b"@c.us", &rnd]);
    format!("3EB0{}", hex::encode_upper(&h[..9]))
}

/// Pads a serialized message (v2): 1..=15 bytes each holding the pad length.
pub(crate) fn pad(shared: &Shared, mut plain: Vec<u8>) -> Vec<u8> {
    let [b]: [u8; 1] = shared.random_bytes();
    let n = match b & 0x0F {
        0 => 15,
        n => n,
    };
    plain.extend(std::iter::repeat_n(n, n as usize));
    plain
}

pub(crate) fn media_type(m: &Message) -> Option<&'static str> {
    if m.image_message.is_some() {
        Some("image")
    } else if let Some(v) = &m.video_message {
        Some(if v.gif_playback == Some(true) { "gif" } else { "video" })
    } else if let Some(a) = &m.audio_message {
        Some(if a.ptt == Some(true) { "ptt" } else { "audio" })
    } else if m.document_message.is_some() {
        Some("document")
    } else if m.sticker_message.is_some() {
        Some("sticker")
    } else if m.contact_message.is_some() {
        Some("vcard")
    } else {
        None
    }
}

fn stanza_type(m: &Message) -> &'static str {
    if m.reaction_message.is_some() {
        "reaction"
    } else if media_type(m).is_some() {
        "media"
    } else {
        "text"
    }
}

/// Devices of `users` (non-AD JIDs), from the cache or a usync query.
pub(crate) async fn get_devices(shared: &Shared, users: &[Jid]) -> Result<Vec<Jid>> {
    let now = shared.now();
    let mut out = Vec::new();
    let mut missing = Vec::new();
    for u in users {
        match shared.store.get_device_list(&u.to_string()).await? {
            Some(list) if list.expires_at > now => {
                for d in list.devices {
                    out.push(crate::device_list::device_jid(u, d)?);
                }
            }
            _ => missing.push(u.clone()),
        }
    }
    if missing.is_empty() {
        return Ok(out);
    }
    let conn = shared.connection()?;
    let sid = conn.next_id();
    let iq = Node::new("iq").attr("xmlns", "usync").attr("type", "get").attr("to", server_jid()).children([
        Node::new("usync")
            .attr("sid", sid)
            .attr("mode", "query")
            .attr("last", "true")
            .attr("index", "0")
            .attr("context", "message")
            .children([
                Node::new("query").children([Node::new("devices").attr("version", "2")]),
                Node::new("list").children(missing.iter().map(|u| Node::new("user").attr("jid", u.clone()))),
            ]),
    ]);
    let reply = shared.iq(iq).await?;
    let list = reply
        .child_path(&["usync", "list"])
        .ok_or_else(|| Error::Malformed("usync reply without list".into()))?;
    for user in list.children_by_tag("user") {
        let jid = user.attr_jid("jid")?.to_non_ad();
        let ids = match user.child_path(&["devices", "device-list"]) {
            Some(dl) => crate::device_list::parse_device_list(dl)?,
            None => Vec::new(),
        };
        let jids =
            ids.iter().map(|d| crate::device_list::device_jid(&jid, *d)).collect::<Result<Vec<_>>>()?;
        let hash = crate::device_list::participant_hash(&jids);
        shared.store.put_device_list(&jid.to_string(), &ids, Some(&hash), DEVICE_LIST_TTL).await?;
        out.extend(jids);
    }
    Ok(out)
}

pub(crate) async fn invalidate_devices(shared: &Shared, user: &Jid) -> Result<()> {
    shared.store.invalidate_device_list(&user.to_non_ad().to_string()).await?;
    Ok(())
}

/// After membership changes: forget who holds our sender key; on removals also rotate it.
pub(crate) async fn reset_group_sender_key(shared: &Shared, group: &Jid, added_only: bool) -> Result<()> {
    let g = group.to_string();
    if !added_only && let Ok((own, own_lid)) = shared.own_ids() {
        let _guard = shared.signal_lock.lock().await;
        shared.store.delete_sender_key(&g, &signal_address(&own)).await?;
        if let Some(l) = own_lid {
            shared.store.delete_sender_key(&g, &signal_address(&l)).await?;
        }
        shared.store.clear_sender_key_holders(&g).await?;
    }
    // New members lack the key: they are absent from the holder set already.
    Ok(())
}

fn bytes_child<'a>(n: &'a Node, tag: &str) -> Option<&'a [u8]> {
    n.child(tag).and_then(|c| c.content_bytes())
}

fn id24(b: Option<&[u8]>) -> Option<u32> {
    let b = b?;
    if b.is_empty() || b.len() > 4 {
        return None;
    }
    Some(b.iter().fold(0u32, |a, x| (a << 8) | u32::from(*x)))
}

/// Parses a key bundle (`<user>` of an encrypt reply or `<keys>` of a retry receipt).
pub(crate) fn parse_bundle(n: &Node, registration: Option<&[u8]>) -> Result<PreKeyBundle> {
    let bad = |w: &str| Error::Malformed(format!("key bundle: {w}"));
    let reg = registration.or_else(|| bytes_child(n, "registration")).ok_or_else(|| bad("registration"))?;
    let registration_id = id24(Some(reg)).ok_or_else(|| bad("registration id"))?;
    let identity_key = PublicKey::from_bytes(bytes_child(n, "identity").ok_or_else(|| bad("identity"))?)
        .map_err(|_| bad("identity key"))?;
    let skey = n.child("skey").ok_or_else(|| bad("skey"))?;
    let signed_pre_key_id = id24(bytes_child(skey, "id")).ok_or_else(|| bad("skey id"))?;
    let signed_pre_key = PublicKey::from_bytes(bytes_child(skey, "value").ok_or_else(|| bad("skey value"))?)
        .map_err(|_| bad("skey key"))?;
    let signed_pre_key_signature: [u8; 64] = bytes_child(skey, "signature")
        .and_then(|s| s.try_into().ok())
        .ok_or_else(|| bad("skey signature"))?;
    let pre_key = match n.child("key") {
        Some(k) => Some((
            id24(bytes_child(k, "id")).ok_or_else(|| bad("key id"))?,
            PublicKey::from_bytes(bytes_child(k, "value").ok_or_else(|| bad("key value"))?)
                .map_err(|_| bad("key"))?,
        )),
        None => None,
    };
    Ok(PreKeyBundle {
        registration_id,
        identity_key,
        signed_pre_key_id,
        signed_pre_key,
        signed_pre_key_signature,
        pre_key,
    })
}

async fn fetch_bundles(shared: &Shared, devices: &[Jid]) -> Result<HashMap<String, PreKeyBundle>> {
    let iq =
        Node::new("iq").attr("xmlns", "encrypt").attr("type", "get").attr("to", server_jid()).children([
            Node::new("key").children(
                devices.iter().map(|d| Node::new("user").attr("jid", d.clone()).attr("reason", "identity")),
            ),
        ]);
    let reply = shared.iq(iq).await?;
    let mut out = HashMap::new();
    if let Some(list) = reply.child("list") {
        for user in list.children_by_tag("user") {
            let jid = user.attr_jid("jid")?;
            if user.child("error").is_some() {
                continue;
            }
            let inner = user.child("keys").unwrap_or(user);
            let reg = bytes_child(user, "registration");
            match parse_bundle(inner, reg) {
                Ok(b) => {
                    out.insert(jid.to_string(), b);
                }
                Err(e) => debug!(%jid, %e, "unusable key bundle"),
            }
        }
    }
    Ok(out)
}

/// Loads sessions for `devices`, creating missing ones from fetched bundles. Devices whose
/// session cannot be created are dropped. Sessions are kept under each contact's one address
/// (its LID's once known); hold the Signal lock.
pub(crate) async fn sessions_for(
    shared: &Shared,
    devices: &[Jid],
) -> Result<Vec<(Jid, ProtocolAddress, SessionRecord)>> {
    let addrs = crate::lid::signal_addresses_of(shared, devices).await?;
    let stored = shared.store.get_sessions(&addrs).await?;
    let mut out = Vec::new();
    let mut missing = Vec::new();
    for ((jid, addr), rec) in devices.iter().zip(addrs).zip(stored) {
        match rec.map(|b| SessionRecord::from_bytes(&b)) {
            Some(Ok(r)) if r.has_current_session() => out.push((jid.clone(), addr, r)),
            _ => missing.push((jid.clone(), addr)),
        }
    }
    if !missing.is_empty() {
        let jids: Vec<Jid> = missing.iter().map(|(j, _)| j.clone()).collect();
        let bundles = fetch_bundles(shared, &jids).await?;
        let local = shared.credentials()?.local_identity();
        for (jid, addr) in missing {
            let Some(bundle) = bundles.get(&jid.to_string()) else { continue };
            let mut rec = SessionRecord::new();
            let r = shared.with_rng(|r| rec.initiate(&local, bundle, &SessionConfig::default(), r));
            match r {
                Ok(_) => out.push((jid, addr, rec)),
                Err(e) => debug!(%jid, %e, "cannot start a session"),
            }
        }
    }
    Ok(out)
}

pub(crate) fn dsm(to: &Jid, m: &Message) -> Message {
    Message {
        device_sent_message: Some(Box::new(DeviceSentMessage {
            destination_jid: Some(to.to_string()),
            message: Some(Box::new(m.clone())),
            phash: None,
        })),
        message_context_info: m.message_context_info.clone(),
        ..Default::default()
    }
}

pub(crate) fn enc_node(ct: &CiphertextMessage, mediatype: Option<&str>, count: Option<u32>) -> Node {
    Node::new("enc")
        .attr("v", "2")
        .attr("type", ct.enc_type())
        .opt_attr("mediatype", mediatype)
        .opt_attr("count", count)
        .bytes(ct.bytes().to_vec())
}

impl Client {
    /// Sends a text message.
    pub async fn send_text(&self, to: &Jid, text: &str) -> Result<SendResult> {
        self.send_message(to, Message { conversation: Some(text.to_owned()), ..Default::default() }).await
    }

    /// Sends any message to a user or group; returns once the server acknowledged it.
    pub async fn send_message(&self, to: &Jid, message: Message) -> Result<SendResult> {
        let shared = &self.shared;
        let (own, _) = shared.own_ids()?;
        let id = new_message_id(shared, own.user());
        self.send_message_with_id(to, id, message).await
    }

    /// [`Client::send_message`] with a caller-chosen id (for idempotent re-sends).
    pub async fn send_message_with_id(&self, to: &Jid, id: String, message: Message) -> Result<SendResult> {
        let conn = self.shared.connection()?;
        self.send_with_id_on(conn, to, id, message).await
    }

    /// [`Client::send_message_with_id`] only on the connection numbered `connection` (see
    /// [`Client::connection_number`]): when another connection, or none, is live, nothing goes
    /// out and the answer is [`Error::NotConnected`]. For a re-send that must not leave before
    /// the caller has read what the server queued on that connection (a receipt there may show
    /// the first attempt arrived): the stanza goes out on that connection or not at all.
    pub async fn send_message_with_id_on(
        &self,
        connection: u64,
        to: &Jid,
        id: String,
        message: Message,
    ) -> Result<SendResult> {
        let conn = self.shared.connection()?;
        if conn.number() != connection {
            return Err(Error::NotConnected);
        }
        self.send_with_id_on(conn, to, id, message).await
    }

    async fn send_with_id_on(
        &self,
        conn: Connection,
        to: &Jid,
        id: String,
        message: Message,
    ) -> Result<SendResult> {
        let shared = &self.shared;
        let to = to.to_non_ad();
        let (stanza, chat_pn, chat_lid, dm) = if to.is_group() {
            (group_stanza(shared, &to, &id, &message).await?, None, None, None)
        } else {
            let (mut stanza, addr) = direct_stanza(shared, &to, &id, &message).await?;
            // The contact's token, else a cs-token (see `privacy_token`).
            let (token, held) = crate::privacy_token::token_for(shared, &addr.to, addr.lid.as_ref()).await?;
            if let Some(t) = token {
                stanza.push_child(t);
            }
            (stanza, addr.pn, addr.lid, Some((addr.to, held)))
        };
        let ack = send_for_ack(shared, &conn, &id, &stanza).await?;
        // Accepted: the contact gets our token once per bucket (not for protocol messages:
        // WA Web's TcTokenChatAction skips them, Baileys messages-send.ts).
        if let Some((wire_to, held)) = &dm
            && message.protocol_message.is_none()
        {
            crate::privacy_token::issue_after_send(shared, wire_to, held.as_ref());
        }
        // A stale device list shows as the server's phash (see `fanout`).
        if let Some(phash) = ack.opt_attr_str("phash") {
            if to.is_group() {
                crate::fanout::honour_group_phash(shared, &conn, &stanza, &message, &phash).await;
            } else {
                crate::fanout::honour_phash(shared, &conn, &stanza, &message, &phash).await;
            }
        }
        Ok(SendResult {
            id,
            timestamp: ack.opt_attr_str("t").and_then(|t| t.parse().ok()).unwrap_or(0),
            chat_pn,
            chat_lid,
        })
    }
}

/// Sends a message stanza and waits for the server's `<ack class="message">`.
pub(crate) async fn send_and_await_ack(
    shared: &Shared,
    conn: &Connection,
    id: String,
    stanza: &Node,
) -> Result<SendResult> {
    let ack = send_for_ack(shared, conn, &id, stanza).await?;
    Ok(SendResult {
        id,
        timestamp: ack.opt_attr_str("t").and_then(|t| t.parse().ok()).unwrap_or(0),
        chat_pn: None,
        chat_lid: None,
    })
}

/// Sends a message stanza and returns the server's ack, or the error it carries.
async fn send_for_ack(shared: &Shared, conn: &Connection, id: &str, stanza: &Node) -> Result<Node> {
    let id = id.to_owned();
    let (tx, rx) = oneshot::channel();
    lock(&shared.state.acks).insert(id.clone(), tx);
    if let Err(e) = conn.send(stanza) {
        lock(&shared.state.acks).remove(&id);
        return Err(e);
    }
    let ack = match tokio::time::timeout(SERVER_ACK_TIMEOUT, rx).await {
        Ok(Ok(ack)) => ack,
        // Queued for the socket, so it may have gone out: not a `NotConnected`.
        Ok(Err(_)) => return Err(Error::Unacknowledged { id, cause: AckLoss::ConnectionEnded }),
        Err(_) => {
            lock(&shared.state.acks).remove(&id);
            return Err(Error::Unacknowledged { id, cause: AckLoss::TimedOut(SERVER_ACK_TIMEOUT) });
        }
    };
    if let Some(code) = ack.opt_attr_str("error") {
        // 463: a reach-out the account may not make now (Baileys messages-recv.ts
        // `MessageAccountRestriction`; whatsmeow #1197). Typed, so that nobody retries it.
        if code == "463" {
            let text = ack.opt_attr_str("text").map(|t| t.into_owned()).unwrap_or_else(|| {
                "the account is restricted from messaging this recipient (no privacy token from them)".into()
            });
            return Err(Error::ReachoutRestricted { text });
        }
        return Err(Error::Iq {
            what: format!("message {id}"),
            code: code.parse().unwrap_or(0),
            text: "server refused message".into(),
        });
    }
    Ok(ack)
}

impl Client {
    /// Gets ready to send to many users soon, as WhatsApp clients do before a broadcast: the
    /// device lists of `users` (and our own) in one usync query, then prekey bundles for every
    /// device without a Signal session in one `encrypt` query; the new sessions are stored, so
    /// the sends that follow need no round trip but their own. Users without WhatsApp (no
    /// devices) are skipped.
    pub async fn prepare_recipients(&self, users: &[Jid]) -> Result<()> {
        let shared = &self.shared;
        let me = own_dm_identity(shared)?;
        let users: Vec<Jid> = users.iter().map(Jid::to_non_ad).filter(|u| !u.is_group()).collect();
        // A LID-migrated account sends to LIDs: one usync for the numbers not mapped yet.
        let users = if me.is_lid() {
            let pns: Vec<Jid> = users.iter().filter(|u| u.is_pn()).cloned().collect();
            let mut lids = crate::lid::resolve_lids(shared, &pns).await?.into_iter();
            let mut out = Vec::with_capacity(users.len());
            for u in users {
                if u.is_pn() {
                    if let Some(l) = lids.next().flatten() {
                        out.push(Jid::lid(&l)?);
                    }
                } else {
                    out.push(u);
                }
            }
            out
        } else {
            users
        };
        let mut seen = HashSet::new();
        let list: Vec<Jid> = users
            .into_iter()
            .chain(std::iter::once(me.to_non_ad()))
            .filter(|u| seen.insert(u.to_string()))
            .collect();
        let devices: Vec<Jid> = get_devices(shared, &list).await?.into_iter().filter(|d| *d != me).collect();
        let _guard = shared.signal_lock.lock().await;
        let addrs = crate::lid::signal_addresses_of(shared, &devices).await?;
        let stored = shared.store.get_sessions(&addrs).await?;
        let missing: Vec<Jid> = devices
            .iter()
            .zip(stored)
            .filter(|(_, rec)| {
                !matches!(rec.as_deref().map(SessionRecord::from_bytes), Some(Ok(r)) if r.has_current_session())
            })
            .map(|(j, _)| j.clone())
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let bundles = fetch_bundles(shared, &missing).await?;
        let local = shared.credentials()?.local_identity();
        let missing_addrs = crate::lid::signal_addresses_of(shared, &missing).await?;
        let mut tx = shared.store.transaction();
        for (jid, addr) in missing.iter().zip(&missing_addrs) {
            let Some(bundle) = bundles.get(&jid.to_string()) else { continue };
            let mut rec = SessionRecord::new();
            match shared.with_rng(|r| rec.initiate(&local, bundle, &SessionConfig::default(), r)) {
                Ok(_) => {
                    tx.put_session(addr, &rec.to_bytes());
                }
                Err(e) => debug!(%jid, %e, "cannot start a session"),
            }
        }
        tx.commit().await?;
        Ok(())
    }
}

/// Our own device as this account addresses 1:1 chats: by our LID on a LID-migrated account
/// (whatsmeow send.go `SendMessage` switches `ownID` to the LID), by our number otherwise.
fn own_dm_identity(shared: &Shared) -> Result<Jid> {
    let (own, own_lid) = shared.own_ids()?;
    if shared.credentials()?.lid_migrated == Some(true) {
        own_lid.ok_or_else(|| Error::CorruptStore("a LID-migrated account without its own LID".into()))
    } else {
        Ok(own)
    }
}

/// Where a 1:1 message goes: the recipient as the account must address it, and both its names.
#[derive(Debug)]
pub(crate) struct DmAddress {
    /// The stanza's `to`.
    pub to: Jid,
    /// The recipient's phone-number JID, when known.
    pub pn: Option<Jid>,
    /// The recipient's LID, when known.
    pub lid: Option<Jid>,
    /// Our own device, in the same namespace as `to`.
    pub me: Jid,
}

/// Addresses a 1:1 chat the way the account must: a LID-migrated account (pair-success
/// `client-props` `isChatDbLidMigrated`) sends to the contact's LID, resolved through the store
/// or a usync `<lid/>` query, with `peer_recipient_pn` beside it (whatsmeow send.go
/// `SendMessage` since 4f8f64e0 and `prepareMessageNode`); the service refuses its
/// phone-number DMs with 463. Any other account keeps phone numbers, and its LID-addressed DMs
/// are refused with 400 (whatsapp-rust PR #943, `resolve_dm_wire_jid`).
pub(crate) async fn dm_address(shared: &Shared, to: &Jid) -> Result<DmAddress> {
    let me = own_dm_identity(shared)?;
    let to = to.to_non_ad();
    let (pn, lid) = match to.server() {
        Server::Pn if me.is_lid() => {
            let lid = crate::lid::resolve_lids(shared, std::slice::from_ref(&to)).await?.pop().flatten();
            (Some(to.clone()), lid.map(|l| Jid::lid(&l)).transpose()?)
        }
        Server::Pn | Server::Lid => {
            let other = crate::lid::alternate(shared, &to).await?;
            if to.is_pn() { (Some(to.clone()), other) } else { (other, Some(to.clone())) }
        }
        // Bots and other servers are addressed as given.
        _ => return Ok(DmAddress { to, pn: None, lid: None, me }),
    };
    let wire = if me.is_lid() {
        lid.clone().ok_or_else(|| Error::NotOnWhatsApp(to.to_string()))?
    } else {
        pn.clone().ok_or_else(|| {
            Error::InvalidInput(format!(
                "{to} is a LID whose phone number is unknown, and this account addresses chats by phone number"
            ))
        })?
    };
    Ok(DmAddress { to: wire, pn, lid, me })
}

/// A peer message (`category="peer"`) to our own phone: `<message to=<own user> type="text"
/// category="peer"><meta appdata="default"/><enc/>[<device-identity/>]</message>`, encrypted
/// for device 0 only (whatsmeow `send.go` `preparePeerMessageNode`). Not stored for retries
/// (whatsmeow: "peer message retries aren't implemented").
pub(crate) async fn peer_stanza(shared: &Shared, id: &str, message: &Message) -> Result<Node> {
    let (own, _) = shared.own_ids()?;
    let phone = own.to_non_ad();
    let plain = pad(shared, message.encode_to_vec());
    let _guard = shared.signal_lock.lock().await;
    let (jid, addr, mut rec) = sessions_for(shared, std::slice::from_ref(&phone))
        .await?
        .pop()
        .ok_or_else(|| Error::InvalidInput(format!("no session with our phone {jid}", jid = phone)))?;
    let local = shared.credentials()?.local_identity();
    let ct = rec.encrypt(&local, &plain)?;
    let mut tx = shared.store.transaction();
    tx.put_session(&addr, &rec.to_bytes());
    tx.commit().await?;
    let mut children = vec![Node::new("meta").attr("appdata", "default"), enc_node(&ct, None, None)];
    if matches!(ct, CiphertextMessage::PreKey(_))
        && let Some(di) = shared.credentials()?.signed_device_identity
    {
        children.push(Node::new("device-identity").bytes(di));
    }
    debug!(%jid, %id, "peer message");
    Ok(Node::new("message")
        .attr("to", phone)
        .attr("id", id)
        .attr("type", "text")
        .attr("category", "peer")
        .children(children))
}

/// Builds and durably records a 1:1 message stanza.
async fn direct_stanza(shared: &Shared, to: &Jid, id: &str, message: &Message) -> Result<(Node, DmAddress)> {
    let addr = dm_address(shared, to).await?;
    let to = &addr.to;
    let own_user = addr.me.to_non_ad();
    let users = if own_user == *to { vec![to.clone()] } else { vec![to.clone(), own_user.clone()] };
    let devices: Vec<Jid> =
        get_devices(shared, &users).await?.into_iter().filter(|d| *d != addr.me).collect();
    let plain = pad(shared, message.encode_to_vec());
    let dsm_plain = pad(shared, dsm(to, message).encode_to_vec());
    let mediatype = media_type(message);
    let _guard = shared.signal_lock.lock().await;
    if !devices.iter().any(|d| d.user() == to.user()) {
        // usync lists no device for the user: no WhatsApp account behind the number.
        return Err(Error::NotOnWhatsApp(to.to_string()));
    }
    let sessions = sessions_for(shared, &devices).await?;
    if !sessions.iter().any(|(j, _, _)| j.user() == to.user()) {
        return Err(Error::InvalidInput(format!("{to} has no reachable device")));
    }
    let local = shared.credentials()?.local_identity();
    let mut tx = shared.store.transaction();
    let mut participants = Vec::new();
    let mut any_prekey = false;
    for (jid, session_addr, mut rec) in sessions {
        let body = if jid.user() == own_user.user() && own_user != *to { &dsm_plain } else { &plain };
        let ct = rec.encrypt(&local, body)?;
        any_prekey |= matches!(ct, CiphertextMessage::PreKey(_));
        tx.put_session(&session_addr, &rec.to_bytes());
        participants.push(Node::new("to").attr("jid", jid).children([enc_node(&ct, mediatype, None)]));
    }
    tx.put_sent_message(&to.to_string(), id, &message.encode_to_vec(), SENT_MESSAGE_TTL);
    tx.commit().await?;
    let mut children = vec![Node::new("participants").children(participants)];
    if any_prekey && let Some(di) = shared.credentials()?.signed_device_identity {
        children.push(Node::new("device-identity").bytes(di));
    }
    let peer_pn = addr.pn.clone().filter(|_| to.is_lid());
    let stanza = Node::new("message")
        .attr("to", to.clone())
        .attr("id", id)
        .attr("type", stanza_type(message))
        .opt_attr("peer_recipient_pn", peer_pn)
        .children(children);
    Ok((stanza, addr))
}

/// Group metadata: participants and addressing mode.
pub(crate) async fn group_participants(shared: &Shared, group: &Jid) -> Result<(Vec<Jid>, bool)> {
    let iq = Node::new("iq")
        .attr("xmlns", "w:g2")
        .attr("type", "get")
        .attr("to", group.clone())
        .children([Node::new("query").attr("request", "interactive")]);
    let reply = shared.iq(iq).await?;
    let g = reply.child("group").ok_or_else(|| Error::Malformed("group reply without <group>".into()))?;
    let lid = g.opt_attr_str("addressing_mode").as_deref() == Some("lid");
    let parts: Vec<Jid> = g
        .children_by_tag("participant")
        .filter_map(|p| p.attr_jid("jid").ok())
        .map(|j| j.to_non_ad())
        .collect();
    let pairs = crate::notification::participant_pairs(g);
    let fresh = crate::lid::unknown_jids(shared, pairs.iter().map(|(a, b)| (a, b)));
    crate::lid::store(shared, fresh).await?;
    Ok((parts, lid))
}

async fn group_stanza(shared: &Shared, group: &Jid, id: &str, message: &Message) -> Result<Node> {
    let (own, own_lid) = shared.own_ids()?;
    let (mut members, lid_mode) = group_participants(shared, group).await?;
    let me = if lid_mode { own_lid.clone().unwrap_or_else(|| own.clone()) } else { own.clone() };
    if !members.iter().any(|m| m.user() == me.user()) {
        members.push(me.to_non_ad());
    }
    // Hosted (Cloud API) devices only take part in 1:1 chats.
    let all_devices: Vec<Jid> = get_devices(shared, &members)
        .await?
        .into_iter()
        .filter(|d| !crate::device_list::is_hosted(d))
        .collect();
    // What we believe the group's devices are, for the server to check (see `fanout`).
    let phash = crate::fanout::group_phash(&all_devices, &me);
    let devices: Vec<Jid> = all_devices.into_iter().filter(|d| *d != own && *d != me).collect();
    let g = group.to_string();
    let own_addr = signal_address(&me);
    let _guard = shared.signal_lock.lock().await;
    let mut record = match shared.store.get_sender_key(&g, &own_addr).await? {
        Some(b) => SenderKeyRecord::from_bytes(&b)
            .map_err(|e| Error::CorruptStore(format!("own sender key: {e}")))?,
        None => SenderKeyRecord::new(),
    };
    if record.is_empty() {
        shared.with_rng(|r| record.generate_own_state(&SenderKeyConfig::default(), r));
        shared.store.clear_sender_key_holders(&g).await?;
    }
    let skdm = record.distribution_message()?.to_bytes();
    let holders: HashSet<String> = shared.store.sender_key_holders(&g).await?.into_iter().collect();
    let lacking: Vec<Jid> = devices.iter().filter(|d| !holders.contains(&d.to_string())).cloned().collect();
    let mediatype = media_type(message);
    let skmsg = record.encrypt(&pad(shared, message.encode_to_vec()))?;
    let mut tx = shared.store.transaction();
    let mut participants = Vec::new();
    let mut any_prekey = false;
    let mut reached = Vec::new();
    if !lacking.is_empty() {
        let skdm_msg = Message {
            sender_key_distribution_message: Some(SkdmProto {
                group_id: Some(g.clone()),
                axolotl_sender_key_distribution_message: Some(skdm),
            }),
            ..Default::default()
        };
        let plain = pad(shared, skdm_msg.encode_to_vec());
        let local = shared.credentials()?.local_identity();
        for (jid, addr, mut rec) in sessions_for(shared, &lacking).await? {
            let ct = rec.encrypt(&local, &plain)?;
            any_prekey |= matches!(ct, CiphertextMessage::PreKey(_));
            tx.put_session(&addr, &rec.to_bytes());
            reached.push(jid.to_string());
            participants.push(Node::new("to").attr("jid", jid).children([enc_node(&ct, None, None)]));
        }
    }
    tx.put_sender_key(&g, &own_addr, &record.to_bytes());
    tx.add_sender_key_holders(&g, &reached);
    tx.put_sent_message(&g, id, &message.encode_to_vec(), SENT_MESSAGE_TTL);
    tx.commit().await?;
    let mut children = Vec::new();
    if !participants.is_empty() {
        children.push(Node::new("participants").children(participants));
    }
    children.push(
        Node::new("enc").attr("v", "2").attr("type", "skmsg").opt_attr("mediatype", mediatype).bytes(skmsg),
    );
    if any_prekey && let Some(di) = shared.credentials()?.signed_device_identity {
        children.push(Node::new("device-identity").bytes(di));
    }
    Ok(Node::new("message")
        .attr("to", group.clone())
        .attr("id", id)
        .attr("type", stanza_type(message))
        .opt_attr("addressing_mode", lid_mode.then_some("lid"))
        .attr("phash", phash)
        .children(children))
}

/// Answers a peer's retry receipt by re-encrypting the original from the sent-message store.
pub(crate) async fn answer_retry(shared: &Shared, conn: &Connection, node: &Node) -> Result<()> {
    let from = node.attr_jid("from")?;
    let id = node.attr_str("id")?.into_owned();
    let retry =
        node.child("retry").ok_or_else(|| Error::Malformed("retry receipt without <retry>".into()))?;
    let count: u32 = retry.opt_attr_str("count").and_then(|c| c.parse().ok()).unwrap_or(1);
    let device = if from.is_group() { node.attr_jid("participant")? } else { from.clone() };
    {
        let mut answered = lock(&shared.state.answered);
        let n = answered.entry((device.to_string(), id.clone())).or_insert(0);
        *n += 1;
        if *n > 10 {
            return Ok(());
        }
    }
    let (own, own_lid) = shared.own_ids()?;
    let from_own = device.user() == own.user() || own_lid.as_ref().is_some_and(|l| device.user() == l.user());
    let chat = if from.is_group() {
        from.clone()
    } else if from_own {
        node.attr_jid("recipient").map(|r| r.to_non_ad()).unwrap_or_else(|_| from.to_non_ad())
    } else {
        from.to_non_ad()
    };
    // Kept under the chat as it was addressed, which may be the other name of this one.
    let mut sent = shared.store.get_sent_message(&chat.to_string(), &id).await?;
    if sent.is_none()
        && let Some(alt) = crate::lid::alternate(shared, &chat).await?
    {
        sent = shared.store.get_sent_message(&alt.to_string(), &id).await?;
    }
    let Some(sent) = sent else {
        info!(%id, %chat, "retry for a message we no longer have");
        return Ok(());
    };
    let mut message =
        Message::decode(sent.payload.as_slice()).map_err(crate::error::protobuf("stored sent message"))?;
    let _guard = shared.signal_lock.lock().await;
    let addr = crate::lid::signal_address_of(shared, &device).await?;
    let local = shared.credentials()?.local_identity();
    let mut rec = match node.child("keys") {
        Some(keys) => {
            let bundle = parse_bundle(keys, bytes_child(node, "registration"))?;
            let mut rec = SessionRecord::new();
            shared.with_rng(|r| rec.initiate(&local, &bundle, &SessionConfig::default(), r))?;
            rec
        }
        None => {
            let existing = shared.store.get_sessions(std::slice::from_ref(&addr)).await?.pop().flatten();
            match existing.map(|b| SessionRecord::from_bytes(&b)) {
                Some(Ok(r)) if r.has_current_session() && count < 2 => r,
                _ => {
                    let bundles = fetch_bundles(shared, std::slice::from_ref(&device)).await?;
                    let bundle = bundles
                        .get(&device.to_string())
                        .ok_or_else(|| Error::Malformed("no bundle for retry".into()))?;
                    let mut rec = SessionRecord::new();
                    shared.with_rng(|r| rec.initiate(&local, bundle, &SessionConfig::default(), r))?;
                    rec
                }
            }
        }
    };
    if chat.is_group() {
        // Our sender key is kept under the identity we send to the group with.
        let mut own_key = shared.store.get_sender_key(&chat.to_string(), &signal_address(&own)).await?;
        if own_key.is_none()
            && let Some(l) = &own_lid
        {
            own_key = shared.store.get_sender_key(&chat.to_string(), &signal_address(l)).await?;
        }
        if let Some(b) = own_key
            && let Ok(sk) = SenderKeyRecord::from_bytes(&b)
            && let Ok(dist) = sk.distribution_message()
        {
            message.sender_key_distribution_message = Some(SkdmProto {
                group_id: Some(chat.to_string()),
                axolotl_sender_key_distribution_message: Some(dist.to_bytes()),
            });
        }
    } else if from_own {
        message = dsm(&chat, &message);
    }
    let ct = rec.encrypt(&local, &pad(shared, message.encode_to_vec()))?;
    shared.store.put_sessions(&[(addr, rec.to_bytes())]).await?;
    let mut children = vec![enc_node(&ct, media_type(&message), Some(count))];
    if matches!(ct, CiphertextMessage::PreKey(_))
        && let Some(di) = shared.credentials()?.signed_device_identity
    {
        children.push(Node::new("device-identity").bytes(di));
    }
    let mut stanza = Node::new("message")
        .attr("to", if chat.is_group() { chat.clone() } else { device.clone() })
        .attr("id", id.as_str())
        .attr("type", stanza_type(&message));
    if chat.is_group() {
        stanza = stanza.attr("participant", device.clone());
    } else {
        stanza = stanza.attr("device_fanout", "false");
    }
    if let Some(t) = retry.opt_attr_str("t") {
        stanza = stanza.attr("t", t.as_ref());
    }
    conn.send(&stanza.children(children))?;
    info!(%id, %device, count, "answered retry receipt");
    Ok(())
}
