//! The emulated WhatsApp service: accounts, devices, connections, and what the server does
//! with every node a client sends. Pure state driven by [`World::on_handshake`] and
//! [`World::on_node`]; nodes for clients go out through each connection's mailbox (a channel
//! the tokio shell drains), so tests can run it without sockets.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use prost::Message as _;
use rand::rngs::StdRng;
use rand_core::Rng;
use tokio::sync::mpsc::UnboundedSender;
use wa_binary::{Jid, Node, Server};
use wa_crypto::PublicKey;
use wa_noise::ClientFinished;

use crate::clock::Clock;
use crate::keys::ServerKeys;
use crate::phone::Phone;

/// Identifies a connection for the emulator's lifetime.
pub type ConnId = u64;
/// Index of an account.
pub type AccountId = usize;

/// One device of one account (device 0 is the account's phone).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeviceAddr {
    /// The account.
    pub account: AccountId,
    /// The device id (0 = primary phone).
    pub device: u16,
}

/// A fault injected into one connection's outgoing stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Hold every outgoing frame this long before writing it.
    DelayFrames(Duration),
    /// Drop the next `count` outgoing stanzas (of tag `only_tag`, if set) before they are
    /// encrypted: the client never sees them, and later frames still decrypt.
    DropStanzas {
        /// How many.
        count: u32,
        /// Only stanzas with this tag (e.g. `message`); `None` for any.
        only_tag: Option<String>,
    },
    /// Flip bits in the ciphertext of the next `count` outgoing frames (of tag `only_tag`,
    /// if set): the client's AES-GCM check fails on them.
    CorruptFrames {
        /// How many.
        count: u32,
        /// Only stanzas with this tag; `None` for any.
        only_tag: Option<String>,
    },
}

/// What the shell of a connection is told to do.
#[derive(Debug)]
pub enum ConnCommand {
    /// Encrypt and send a node.
    Node(Box<Node>),
    /// Close the WebSocket.
    Close,
    /// Apply a fault to the outgoing stream.
    Fault(Fault),
}

/// The sending side of a connection's command channel.
pub type Mailbox = UnboundedSender<ConnCommand>;

/// A signed prekey as published by a device.
#[derive(Clone, Debug)]
pub struct SignedPreKeyPub {
    /// 24-bit id.
    pub id: u32,
    /// The public key.
    pub public: PublicKey,
    /// Identity signature over `05 ‖ public`.
    pub signature: [u8; 64],
}

/// What a device publishes for others to start Signal sessions.
#[derive(Clone, Debug)]
pub struct DeviceKeys {
    /// Identity key.
    pub identity: PublicKey,
    /// Registration id.
    pub registration_id: u32,
    /// Signed prekey.
    pub signed_pre_key: SignedPreKeyPub,
    /// Unused one-time prekeys.
    pub pre_keys: BTreeMap<u32, PublicKey>,
}

/// A companion or phone device registered on an account.
#[derive(Debug)]
pub struct Device {
    /// Device id.
    pub id: u16,
    /// The Noise static key the device must log in with (none for the phone).
    pub noise_key: Option<PublicKey>,
    /// Published Signal keys.
    pub keys: DeviceKeys,
    /// ADV key index.
    pub key_index: u32,
    /// The connection it is logged in on.
    pub conn: Option<ConnId>,
    /// Stanzas waiting for the device to come online.
    pub offline: VecDeque<Node>,
    /// Messages and receipts sent on the device's connection and not yet acknowledged (a
    /// message by a receipt or an `<ack class="message">`, a receipt by its `<ack
    /// class="receipt">`); they go back to the front of `offline` when the connection ends,
    /// as WhatsApp re-delivers what a device did not acknowledge.
    pub in_flight: VecDeque<Node>,
    /// Ids of the messages the device acknowledged, oldest first (the latest
    /// [`MAX_ACKED_IDS`]).
    pub acked: VecDeque<String>,
    /// Platform name it registered with.
    pub platform: String,
    /// The companion's signed device identity (from pair-device-sign).
    pub signed_identity: Option<Vec<u8>>,
}

/// How many acknowledged message ids a device remembers (for tests and the control API).
pub const MAX_ACKED_IDS: usize = 100_000;

/// Most events [`World`] keeps for [`crate::EmulatorHandle::events`] and `wait_for`; older ones
/// are dropped first, so a long-running emulator (the offline demo) does not grow without bound.
/// Live subscribers see every event regardless.
pub const MAX_EVENT_LOG: usize = 100_000;

/// Whether a stanza delivered to a companion waits in flight for the device's acknowledgement
/// (and is delivered again if the connection ends first): messages and receipts. Other
/// stanzas (notifications, presence) are fire-and-forget here.
fn awaits_ack(node: &Node) -> bool {
    matches!(node.tag.as_str(), "message" | "receipt")
}

impl Device {
    /// Puts the unacknowledged stanzas back at the front of the offline queue, in order.
    fn requeue_in_flight(&mut self) {
        while let Some(n) = self.in_flight.pop_back() {
            self.offline.push_front(n);
        }
    }
}

/// An account: a phone number, its LID, its phone and its linked devices.
#[derive(Debug)]
pub struct Account {
    /// Phone number (digits).
    pub pn: String,
    /// LID user part.
    pub lid: String,
    /// Push name.
    pub push_name: String,
    /// The simulated primary phone.
    pub phone: Phone,
    /// Devices by id, including the phone as device 0.
    pub devices: BTreeMap<u16, Device>,
    /// Next companion device id.
    pub next_device_id: u16,
    /// Raw id used in ADV identities.
    pub raw_id: u32,
}

/// A group chat.
#[derive(Debug, Clone)]
pub struct Group {
    /// Group id (user part of `id@g.us`).
    pub id: String,
    /// Subject.
    pub subject: String,
    /// Creator.
    pub creator: AccountId,
    /// Creation time.
    pub creation: u64,
    /// Participants and whether they are admins.
    pub participants: BTreeMap<AccountId, bool>,
    /// `addressing_mode="lid"`: members are named by LID (with `phone_number` beside it)
    /// in metadata, notifications, messages and receipts.
    pub lid_addressed: bool,
}

impl Group {
    /// The server members are addressed on.
    pub fn addressing(&self) -> Server {
        if self.lid_addressed { Server::Lid } else { Server::Pn }
    }

    /// The `addressing_mode` attribute value.
    pub fn addressing_mode(&self) -> &'static str {
        if self.lid_addressed { "lid" } else { "pn" }
    }
}

/// A companion registering (before the phone scans or enters a code).
#[derive(Debug, Clone)]
pub(crate) struct Registration {
    pub noise_key: PublicKey,
    pub keys: DeviceKeys,
    pub platform: String,
    pub refs: Vec<String>,
    pub link_code: Option<crate::linkcode::CompanionCode>,
}

/// A pairing waiting for the companion's pair-device-sign.
#[derive(Debug, Clone)]
pub(crate) struct PendingPair {
    pub iq_id: String,
    pub addr: DeviceAddr,
    pub details: Vec<u8>,
    pub account_key: PublicKey,
}

#[derive(Debug)]
pub(crate) struct Conn {
    pub mailbox: Mailbox,
    pub device: Option<DeviceAddr>,
    pub registration: Option<Registration>,
    pub pending_pair: Option<PendingPair>,
    pub active: bool,
    pub closed: bool,
}

/// Something observable that happened (for tests and the control API).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum WorldEvent {
    /// A companion asked to register and got refs.
    Registering { conn: ConnId, refs: Vec<String> },
    /// A registering companion asked to pair by phone-number code (`companion_hello`); the
    /// phone can enter the code from now on.
    PairingCodeRequested { pn: String, conn: ConnId },
    /// A companion finished pairing.
    Paired { pn: String, device: u16, device_signature_valid: bool },
    /// A device logged in.
    LoggedIn { pn: String, device: u16, conn: ConnId },
    /// A login was refused.
    LoginRefused { username: u64, device: u32, reason: u16 },
    /// A phone received and decrypted a message.
    PhoneReceived { pn: String, id: String },
    /// A receipt reached a phone.
    PhoneReceipt { pn: String, id: String, kind: String },
    /// A device acknowledged a message delivered to it (receipt or `<ack class="message">`).
    DeviceAcked { pn: String, device: u16, id: String },
    /// A companion acknowledged a receipt delivered to it (`<ack class="receipt">`); `kind` is
    /// the receipt's type (empty for a delivery receipt).
    ReceiptAcked { pn: String, device: u16, id: String, kind: String },
    /// A node the server does not support was answered with an error.
    Unsupported { conn: ConnId, tag: String, xmlns: String },
}

/// Emulator-wide behaviour switches and counters.
#[derive(Debug, Default)]
pub(crate) struct Policy {
    pub refuse_logins_until: u64,
}

/// The whole emulated service.
#[derive(Debug)]
pub struct World {
    pub(crate) rng: StdRng,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) keys: ServerKeys,
    pub(crate) accounts: Vec<Account>,
    pub(crate) by_pn: HashMap<String, AccountId>,
    pub(crate) by_lid: HashMap<String, AccountId>,
    pub(crate) conns: HashMap<ConnId, Conn>,
    pub(crate) refs: HashMap<String, ConnId>,
    pub(crate) link_refs: HashMap<String, ConnId>,
    pub(crate) groups: BTreeMap<String, Group>,
    pub(crate) media: HashMap<String, Vec<u8>>,
    pub(crate) media_auth: String,
    pub(crate) media_base: String,
    pub(crate) sent_by: HashMap<String, DeviceAddr>,
    pub(crate) policy: Policy,
    /// The most recent [`MAX_EVENT_LOG`] events, oldest first.
    pub(crate) events: VecDeque<WorldEvent>,
    pub(crate) event_tx: Option<tokio::sync::broadcast::Sender<WorldEvent>>,
    next_conn: ConnId,
    next_iq: u64,
    pub(crate) refs_per_pairing: usize,
    pub(crate) lid_in_usync: bool,
    /// One-time prekeys a new phone generates.
    pub(crate) phone_pre_keys: u32,
}

/// Errors of control operations (bad arguments, unknown names).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ControlError {
    /// No account with this phone number.
    #[error("no account with phone number {0}")]
    UnknownAccount(String),
    /// The phone number is taken.
    #[error("an account with phone number {0} already exists")]
    AccountExists(String),
    /// The phone number is not digits.
    #[error("invalid phone number {0:?}: digits only, 7 to 15 of them")]
    BadPhoneNumber(String),
    /// The QR text is malformed.
    #[error("malformed QR text: {0}")]
    BadQr(String),
    /// The QR names a ref nobody is waiting on.
    #[error("no companion is waiting on ref {0:?}")]
    UnknownRef(String),
    /// The QR keys do not match the registering connection.
    #[error("the QR keys do not match the companion that received ref {0:?}")]
    QrMismatch(String),
    /// No companion is waiting on this pairing code.
    #[error("no companion is waiting for a pairing code for {0}")]
    UnknownCode(String),
    /// The code is wrong.
    #[error("pairing code does not match: {0}")]
    BadCode(String),
    /// No such connection.
    #[error("no open connection {0}")]
    UnknownConn(ConnId),
    /// No such device on the account.
    #[error("no device {0}")]
    UnknownDevice(String),
    /// No such device or it is offline.
    #[error("{0} has no such device or it is not connected")]
    DeviceOffline(String),
    /// The JID is not one this operation accepts.
    #[error("bad jid {0:?}")]
    BadJid(String),
    /// No such group.
    #[error("no group {0}")]
    UnknownGroup(String),
    /// Signal encryption or decryption failed.
    #[error("signal: {0}")]
    Signal(String),
    /// Media not found.
    #[error("no media at {0}")]
    UnknownMedia(String),
    /// The phone has no message with this id.
    #[error("the phone has no message with id {0:?}")]
    UnknownMessage(String),
}

pub(crate) fn be_bytes(n: u32, len: usize) -> Vec<u8> {
    n.to_be_bytes()[4 - len..].to_vec()
}

pub(crate) fn be_int(b: &[u8]) -> Option<u32> {
    if b.is_empty() || b.len() > 4 {
        return None;
    }
    Some(b.iter().fold(0u32, |n, &x| (n << 8) | u32::from(x)))
}

/// The bytes of a node's content (text content counts as its UTF-8 bytes).
pub(crate) fn content_bytes(node: &Node) -> Option<&[u8]> {
    match &node.content {
        wa_binary::Content::Bytes(b) => Some(b),
        wa_binary::Content::Str(s) => Some(s.as_bytes()),
        _ => None,
    }
}

pub(crate) fn child_bytes<'a>(node: &'a Node, tag: &str) -> Option<&'a [u8]> {
    node.child(tag).and_then(content_bytes)
}

pub(crate) fn attr(node: &Node, key: &str) -> String {
    node.opt_attr_str(key).map(|s| s.into_owned()).unwrap_or_default()
}

pub(crate) fn server_jid() -> Jid {
    Jid::server_jid(Server::Pn)
}

impl World {
    pub(crate) fn new(rng: StdRng, clock: Arc<dyn Clock>, keys: ServerKeys, refs_per_pairing: usize) -> Self {
        Self {
            rng,
            clock,
            keys,
            accounts: Vec::new(),
            by_pn: HashMap::new(),
            by_lid: HashMap::new(),
            conns: HashMap::new(),
            refs: HashMap::new(),
            link_refs: HashMap::new(),
            groups: BTreeMap::new(),
            media: HashMap::new(),
            media_auth: String::new(),
            media_base: String::new(),
            sent_by: HashMap::new(),
            policy: Policy::default(),
            events: VecDeque::new(),
            event_tx: None,
            next_conn: 1,
            next_iq: 1,
            refs_per_pairing,
            lid_in_usync: false,
            phone_pre_keys: crate::phone::PHONE_PRE_KEYS,
        }
    }

    pub(crate) fn now(&self) -> u64 {
        self.clock.now_unix()
    }

    pub(crate) fn emit(&mut self, event: WorldEvent) {
        tracing::debug!(?event, "emulator event");
        if let Some(tx) = &self.event_tx {
            let _ = tx.send(event.clone());
        }
        if self.events.len() >= MAX_EVENT_LOG {
            self.events.pop_front();
        }
        self.events.push_back(event);
    }

    pub(crate) fn next_iq_id(&mut self) -> String {
        let id = self.next_iq;
        self.next_iq += 1;
        format!("emu-{id}")
    }

    pub(crate) fn random_hex(&mut self, bytes: usize) -> String {
        let mut b = vec![0u8; bytes];
        self.rng.fill_bytes(&mut b);
        hex::encode_upper(b)
    }

    // ------------------------------------------------------------------ accounts

    /// Creates an account with a simulated phone.
    pub fn create_account(&mut self, pn: &str, push_name: &str) -> Result<AccountId, ControlError> {
        if pn.len() < 7 || pn.len() > 15 || !pn.bytes().all(|b| b.is_ascii_digit()) || pn.starts_with('0') {
            return Err(ControlError::BadPhoneNumber(pn.to_owned()));
        }
        if self.by_pn.contains_key(pn) {
            return Err(ControlError::AccountExists(pn.to_owned()));
        }
        let id = self.accounts.len();
        // LIDs are opaque 15-digit numbers; derive one that cannot collide with another account's.
        let lid = format!("{}{:03}", 100_000_000_000u64 + (self.rng.next_u64() % 800_000_000_000), id % 1000);
        let phone = Phone::generate(&mut self.rng, self.phone_pre_keys);
        let device0 = Device {
            id: 0,
            noise_key: None,
            keys: phone.published_keys(),
            key_index: 0,
            conn: None,
            offline: VecDeque::new(),
            in_flight: VecDeque::new(),
            acked: VecDeque::new(),
            platform: "android".into(),
            signed_identity: None,
        };
        let raw_id = self.rng.next_u32() & 0x7FFF_FFFF;
        self.accounts.push(Account {
            pn: pn.to_owned(),
            lid: lid.clone(),
            push_name: push_name.to_owned(),
            phone,
            devices: BTreeMap::from([(0, device0)]),
            next_device_id: 1,
            raw_id,
        });
        self.by_pn.insert(pn.to_owned(), id);
        self.by_lid.insert(lid, id);
        Ok(id)
    }

    pub(crate) fn account_by_pn(&self, pn: &str) -> Result<AccountId, ControlError> {
        let digits = pn.trim_start_matches('+');
        let digits = digits.split('@').next().unwrap_or(digits);
        self.by_pn.get(digits).copied().ok_or_else(|| ControlError::UnknownAccount(pn.to_owned()))
    }

    /// The account a user JID (PN or LID) names.
    pub(crate) fn account_of(&self, jid: &Jid) -> Option<AccountId> {
        match jid.server() {
            Server::Pn => self.by_pn.get(jid.user()).copied(),
            Server::Lid => self.by_lid.get(jid.user()).copied(),
            _ => None,
        }
    }

    /// The device a device JID names (device 0 when absent).
    pub(crate) fn device_of(&self, jid: &Jid) -> Option<DeviceAddr> {
        let account = self.account_of(jid)?;
        let device = jid.device();
        self.accounts[account].devices.contains_key(&device).then_some(DeviceAddr { account, device })
    }

    /// The JID of a device on the PN or LID server.
    pub(crate) fn device_jid(&self, addr: DeviceAddr, server: Server) -> Jid {
        let a = &self.accounts[addr.account];
        let user = if server == Server::Lid { &a.lid } else { &a.pn };
        let base = Jid::new(user, server).unwrap_or_else(|_| server_jid());
        if addr.device == 0 { base } else { base.clone().with_device(addr.device).unwrap_or(base) }
    }

    pub(crate) fn user_jid(&self, account: AccountId, server: Server) -> Jid {
        self.device_jid(DeviceAddr { account, device: 0 }, server)
    }

    // ------------------------------------------------------------------ connections

    /// Registers a new connection whose commands go to `mailbox`.
    pub fn connect(&mut self, mailbox: Mailbox) -> ConnId {
        let id = self.next_conn;
        self.next_conn += 1;
        self.conns.insert(
            id,
            Conn {
                mailbox,
                device: None,
                registration: None,
                pending_pair: None,
                active: false,
                closed: false,
            },
        );
        id
    }

    /// Forgets a connection (its socket closed).
    pub fn disconnect(&mut self, conn: ConnId) {
        if let Some(c) = self.conns.remove(&conn) {
            if let Some(reg) = c.registration {
                for r in reg.refs {
                    self.refs.remove(&r);
                }
            }
            self.link_refs.retain(|_, c| *c != conn);
            if let Some(addr) = c.device
                && let Some(d) = self.accounts[addr.account].devices.get_mut(&addr.device)
                && d.conn == Some(conn)
            {
                d.conn = None;
                d.requeue_in_flight();
            }
        }
    }

    /// Sends a node to a connection.
    pub(crate) fn send(&mut self, conn: ConnId, node: Node) {
        if let Some(c) = self.conns.get(&conn)
            && !c.closed
        {
            tracing::trace!(conn, node = %NodeDisplay(&node), "send");
            let _ = c.mailbox.send(ConnCommand::Node(Box::new(node)));
        }
    }

    /// Sends a node and then closes the connection.
    pub(crate) fn send_and_close(&mut self, conn: ConnId, node: Node) {
        self.send(conn, node);
        self.close(conn);
    }

    pub(crate) fn close(&mut self, conn: ConnId) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.closed = true;
            let _ = c.mailbox.send(ConnCommand::Close);
        }
    }

    pub(crate) fn fault(&mut self, conn: ConnId, fault: Fault) -> Result<(), ControlError> {
        let c = self.conns.get(&conn).ok_or(ControlError::UnknownConn(conn))?;
        let _ = c.mailbox.send(ConnCommand::Fault(fault));
        Ok(())
    }

    /// Ids of the messages a device acknowledged (receipt or `<ack class="message">`), oldest
    /// first; each id once per acknowledged delivery.
    pub fn device_acked(&self, account: AccountId, device: u16) -> Result<Vec<String>, ControlError> {
        let acct =
            self.accounts.get(account).ok_or_else(|| ControlError::UnknownAccount(account.to_string()))?;
        acct.devices
            .get(&device)
            .map(|d| d.acked.iter().cloned().collect())
            .ok_or_else(|| ControlError::UnknownDevice(format!("{}:{device}", acct.pn)))
    }

    /// The connection a device is logged in on.
    pub(crate) fn conn_of(&self, addr: DeviceAddr) -> Option<ConnId> {
        self.accounts.get(addr.account)?.devices.get(&addr.device)?.conn
    }

    // ------------------------------------------------------------------ handshake

    /// The client finished the Noise handshake: register it or log it in.
    pub fn on_handshake(&mut self, conn: ConnId, finished: &ClientFinished) {
        let payload = match finished.client_payload() {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(conn, error = %e, "undecodable ClientPayload");
                self.send_and_close(conn, Node::new("failure").attr("reason", "400"));
                return;
            }
        };
        if let Some(reg) = payload.device_pairing_data.as_ref() {
            self.start_registration(conn, finished.client_static, reg, &payload);
        } else {
            self.login(conn, finished.client_static, &payload);
        }
    }

    fn login(&mut self, conn: ConnId, noise_key: PublicKey, payload: &wa_proto::ClientPayload) {
        let username = payload.username.unwrap_or(0);
        let device = payload.device.unwrap_or(0);
        let refuse = |w: &mut World, reason: u16| {
            w.emit(WorldEvent::LoginRefused { username, device, reason });
            w.send_and_close(conn, Node::new("failure").attr("reason", reason).attr("location", "emu"));
        };
        if self.policy.refuse_logins_until > self.now() {
            return refuse(self, 503);
        }
        let Some(&account) = self.by_pn.get(&username.to_string()) else {
            return refuse(self, 401);
        };
        let Ok(device_id) = u16::try_from(device) else {
            return refuse(self, 401);
        };
        let addr = DeviceAddr { account, device: device_id };
        let Some(d) = self.accounts[account].devices.get(&device_id) else {
            return refuse(self, 401);
        };
        if device_id == 0 || d.noise_key != Some(noise_key) || d.signed_identity.is_none() {
            return refuse(self, 401);
        }
        // A second login of the same device replaces the first.
        if let Some(old) = d.conn
            && old != conn
        {
            let replaced =
                Node::new("stream:error").children([Node::new("conflict").attr("type", "replaced")]);
            self.send_and_close(old, replaced);
            if let Some(c) = self.conns.get_mut(&old) {
                c.device = None;
            }
        }
        if let Some(d) = self.accounts[account].devices.get_mut(&device_id) {
            d.conn = Some(conn);
            // What an earlier connection left unacknowledged is delivered again on activation.
            d.requeue_in_flight();
        }
        if let Some(c) = self.conns.get_mut(&conn) {
            c.device = Some(addr);
            c.active = false;
        }
        let lid = self.user_jid(account, Server::Lid);
        let now = self.now();
        self.send(
            conn,
            Node::new("success")
                .attr("t", now)
                .attr("props", "1")
                .attr("abprops", "1")
                .attr("location", "emu")
                .attr("creation", now)
                .attr("lid", lid),
        );
        let pn = self.accounts[account].pn.clone();
        self.emit(WorldEvent::LoggedIn { pn, device: device_id, conn });
    }

    /// Makes a logged-in connection active: flushes its offline queue, then `<ib><offline/>`.
    pub(crate) fn activate(&mut self, conn: ConnId) {
        let Some(c) = self.conns.get_mut(&conn) else { return };
        if c.active {
            return;
        }
        c.active = true;
        let Some(addr) = c.device else { return };
        let Some(d) = self.accounts[addr.account].devices.get_mut(&addr.device) else { return };
        let mut queued: Vec<Node> = d.offline.drain(..).collect();
        for node in &mut queued {
            node.set_attr("offline", "1");
            if awaits_ack(node) {
                d.in_flight.push_back(node.clone());
            }
        }
        let count = queued.len();
        for node in queued {
            self.send(conn, node);
        }
        self.send(
            conn,
            Node::new("ib").attr("from", server_jid()).children([Node::new("offline").attr("count", count)]),
        );
    }

    /// Delivers a stanza to a device: the phone handles it at once; a companion gets it on
    /// its connection when active, otherwise it waits in the offline queue.
    pub(crate) fn deliver(&mut self, to: DeviceAddr, node: Node) {
        if to.device == 0 {
            self.phone_receive(to.account, node);
            return;
        }
        let Some(d) = self.accounts.get_mut(to.account).and_then(|a| a.devices.get_mut(&to.device)) else {
            return;
        };
        match d.conn {
            Some(conn) if self.conns.get(&conn).is_some_and(|c| c.active && !c.closed) => {
                if awaits_ack(&node) {
                    d.in_flight.push_back(node.clone());
                }
                self.send(conn, node)
            }
            _ => d.offline.push_back(node),
        }
    }

    // ------------------------------------------------------------------ nodes

    /// Handles one node a client sent.
    pub fn on_node(&mut self, conn: ConnId, node: Node) {
        tracing::trace!(conn, node = %NodeDisplay(&node), "recv");
        match node.tag.as_str() {
            "iq" => self.on_iq(conn, node),
            "message" => self.on_message(conn, node),
            "receipt" => self.on_receipt(conn, node),
            "ack" => match attr(&node, "class").as_str() {
                "message" => {
                    let id = attr(&node, "id");
                    self.on_device_ack(conn, std::slice::from_ref(&id));
                }
                "receipt" => self.on_receipt_ack(conn, &node),
                _ => {}
            },
            "ib" | "presence" | "chatstate" => {}
            "notification" | "call" => {
                let ack = Node::new("ack")
                    .attr("id", attr(&node, "id"))
                    .attr("class", node.tag.as_str())
                    .attr("from", server_jid());
                self.send(conn, ack);
            }
            other => {
                tracing::warn!(conn, tag = other, "unsupported stanza");
                self.emit(WorldEvent::Unsupported { conn, tag: other.to_owned(), xmlns: String::new() });
            }
        }
    }

    pub(crate) fn iq_result(&self, req: &Node) -> Node {
        Node::new("iq").attr("from", server_jid()).attr("type", "result").attr("id", attr(req, "id"))
    }

    pub(crate) fn iq_error(&self, req: &Node, code: u16, text: &str) -> Node {
        Node::new("iq")
            .attr("from", server_jid())
            .attr("type", "error")
            .attr("id", attr(req, "id"))
            .children([Node::new("error").attr("code", code).attr("text", text)])
    }

    fn on_iq(&mut self, conn: ConnId, iq: Node) {
        let ty = attr(&iq, "type");
        if ty == "result" || ty == "error" {
            if iq.child("pair-device-sign").is_some() || ty == "error" {
                self.on_pair_reply(conn, &iq);
            }
            return;
        }
        let xmlns = attr(&iq, "xmlns");
        let first = iq.child_nodes().first().map(|c| c.tag.to_string()).unwrap_or_default();
        let logged_in = self.conns.get(&conn).and_then(|c| c.device);
        let reply = match (xmlns.as_str(), first.as_str()) {
            ("md", "link_code_companion_reg") => self.on_link_code(conn, &iq),
            ("w:p", _) | ("urn:xmpp:ping", _) => Some(self.iq_result(&iq)),
            (_, _) if logged_in.is_none() => Some(self.iq_error(&iq, 401, "not-authorized")),
            ("encrypt", _) => self.on_encrypt(conn, &iq),
            ("passive", "active") => {
                let r = self.iq_result(&iq);
                self.send(conn, r);
                self.activate(conn);
                None
            }
            ("passive", "passive") => {
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.active = false;
                }
                Some(self.iq_result(&iq))
            }
            ("usync", "usync") => Some(self.on_usync(&iq)),
            ("w:m", "media_conn") => Some(self.media_conn(&iq)),
            ("abt", "props") | ("w", "props") => Some(
                self.iq_result(&iq).children([Node::new("props")
                    .attr("protocol", "1")
                    .attr("hash", "emu")
                    .children([Node::new("prop").attr("config_code", "1").attr("config_value", "1")])]),
            ),
            ("blocklist", _) => Some(self.iq_result(&iq).children([Node::new("list")])),
            ("privacy", "privacy") => Some(
                self.iq_result(&iq).children([Node::new("privacy").children(
                    ["last", "online", "profile", "status", "readreceipts", "groupadd"]
                        .into_iter()
                        .map(|n| Node::new("category").attr("name", n).attr("value", "all")),
                )]),
            ),
            ("privacy", "tokens") => Some(self.iq_result(&iq)),
            ("urn:xmpp:whatsapp:dirty", "clean") => Some(self.iq_result(&iq)),
            ("w:g2", _) => Some(self.on_group_iq(conn, &iq)),
            ("md", "remove-companion-device") => self.on_remove_companion(conn, &iq),
            ("w:stats", _) | ("w:sync:app:state", _) | ("status", _) | ("w:profile:picture", _) => {
                Some(self.iq_result(&iq))
            }
            _ => {
                tracing::warn!(conn, xmlns, child = first, "unsupported iq answered with 501");
                self.emit(WorldEvent::Unsupported { conn, tag: first.clone(), xmlns: xmlns.clone() });
                Some(self.iq_error(&iq, 501, "feature-not-implemented"))
            }
        };
        if let Some(r) = reply {
            self.send(conn, r);
        }
    }

    fn on_encrypt(&mut self, conn: ConnId, iq: &Node) -> Option<Node> {
        let addr = self.conns.get(&conn)?.device?;
        let ty = attr(iq, "type");
        if iq.child("count").is_some() {
            let n =
                self.accounts[addr.account].devices.get(&addr.device).map_or(0, |d| d.keys.pre_keys.len());
            return Some(self.iq_result(iq).children([Node::new("count").attr("value", n)]));
        }
        if iq.child("digest").is_some() {
            let d = self.accounts[addr.account].devices.get(&addr.device)?;
            let reg = be_bytes(d.keys.registration_id, 4);
            let ids: Vec<Node> =
                d.keys.pre_keys.keys().map(|id| Node::new("id").bytes(be_bytes(*id, 3))).collect();
            let skey = &d.keys.signed_pre_key;
            let digest = Node::new("digest").children([
                Node::new("type").bytes(vec![5u8]),
                Node::new("registration").bytes(reg),
                Node::new("identity").bytes(d.keys.identity.as_bytes().to_vec()),
                Node::new("skey").children([Node::new("id").bytes(be_bytes(skey.id, 3))]),
                Node::new("list").children(ids),
            ]);
            return Some(self.iq_result(iq).children([digest]));
        }
        if let Some(key) = iq.child("key") {
            let mut users = Vec::new();
            for u in key.children_by_tag("user") {
                let Ok(jid) = u.attr_jid("jid") else { continue };
                users.push(match self.device_of(&jid) {
                    Some(addr) => self.take_bundle(addr, jid),
                    None => Node::new("user")
                        .attr("jid", jid)
                        .children([Node::new("error").attr("code", "404").attr("text", "item-not-found")]),
                });
            }
            return Some(self.iq_result(iq).children([Node::new("list").children(users)]));
        }
        if ty == "set" {
            let d = self.accounts[addr.account].devices.get_mut(&addr.device)?;
            if let Some(list) = iq.child("list") {
                for k in list.children_by_tag("key") {
                    let (Some(id), Some(v)) =
                        (child_bytes(k, "id").and_then(be_int), child_bytes(k, "value"))
                    else {
                        continue;
                    };
                    if let Ok(pk) = PublicKey::from_bytes(v) {
                        d.keys.pre_keys.insert(id, pk);
                    }
                }
            }
            let skey = iq.child("skey").or_else(|| iq.child("rotate").and_then(|r| r.child("skey")));
            if let Some(s) = skey
                && let Some(spk) = parse_skey(s)
            {
                d.keys.signed_pre_key = spk;
            }
            return Some(self.iq_result(iq));
        }
        Some(self.iq_error(iq, 400, "bad-request"))
    }

    /// The bundle of `addr` as a `<user>` node, consuming one one-time prekey.
    pub(crate) fn take_bundle(&mut self, addr: DeviceAddr, jid: Jid) -> Node {
        let Some(d) = self.accounts[addr.account].devices.get_mut(&addr.device) else {
            return Node::new("user").attr("jid", jid);
        };
        let pre_key = d.keys.pre_keys.pop_first();
        let k = &d.keys;
        let mut children = vec![
            Node::new("registration").bytes(be_bytes(k.registration_id, 4)),
            Node::new("type").bytes(vec![5u8]),
            Node::new("identity").bytes(k.identity.as_bytes().to_vec()),
            Node::new("skey").children([
                Node::new("id").bytes(be_bytes(k.signed_pre_key.id, 3)),
                Node::new("value").bytes(k.signed_pre_key.public.as_bytes().to_vec()),
                Node::new("signature").bytes(k.signed_pre_key.signature.to_vec()),
            ]),
        ];
        if let Some((id, key)) = pre_key {
            children.push(Node::new("key").children([
                Node::new("id").bytes(be_bytes(id, 3)),
                Node::new("value").bytes(key.as_bytes().to_vec()),
            ]));
        }
        let low = d.keys.pre_keys.len() < 5 && addr.device != 0;
        let conn = d.conn;
        if low && let Some(c) = conn {
            let n = d.keys.pre_keys.len();
            let id = self.next_iq_id();
            self.send(
                c,
                Node::new("notification")
                    .attr("from", server_jid())
                    .attr("type", "encrypt")
                    .attr("id", id)
                    .attr("t", self.now())
                    .children([Node::new("count").attr("value", n)]),
            );
        }
        Node::new("user").attr("jid", jid).children(children)
    }

    fn on_usync(&mut self, iq: &Node) -> Node {
        let Some(usync) = iq.child("usync") else {
            return self.iq_error(iq, 400, "bad-request");
        };
        let wants: HashSet<String> = usync
            .child("query")
            .map(|q| q.child_nodes().iter().map(|c| c.tag.to_string()).collect())
            .unwrap_or_default();
        let mut users = Vec::new();
        for u in usync.child("list").map(|l| l.child_nodes()).unwrap_or_default() {
            let (jid_text, account) = if let Some(contact) = u.child("contact").and_then(content_bytes) {
                let digits: String =
                    String::from_utf8_lossy(contact).chars().filter(|c| c.is_ascii_digit()).collect();
                (format!("{digits}@s.whatsapp.net"), self.by_pn.get(&digits).copied())
            } else {
                let jid = u.attr_jid("jid").ok();
                (attr(u, "jid"), jid.as_ref().and_then(|j| self.account_of(j)))
            };
            let mut children = Vec::new();
            for w in &wants {
                match w.as_str() {
                    "devices" => {
                        let list: Vec<Node> = account
                            .map(|a| {
                                self.accounts[a]
                                    .devices
                                    .values()
                                    .filter(|d| d.id == 0 || d.signed_identity.is_some())
                                    .map(|d| {
                                        let n = Node::new("device").attr("id", d.id);
                                        if d.id == 0 { n } else { n.attr("key-index", d.key_index) }
                                    })
                                    .collect()
                            })
                            .unwrap_or_default();
                        children
                            .push(Node::new("devices").children([Node::new("device-list").children(list)]));
                    }
                    "contact" => {
                        let ty = if account.is_some() { "in" } else { "out" };
                        let mut c = Node::new("contact").attr("type", ty);
                        if let Some(q) = u.child("contact").and_then(content_bytes) {
                            c = c.text(String::from_utf8_lossy(q).into_owned());
                        }
                        children.push(c);
                    }
                    "lid" => {
                        let n = Node::new("lid");
                        children.push(match account {
                            Some(a) if self.lid_in_usync => n.attr("val", self.user_jid(a, Server::Lid)),
                            _ => n,
                        });
                    }
                    "status" => children.push(Node::new("status").attr("t", "0")),
                    "disappearing_mode" => {
                        children.push(Node::new("disappearing_mode").attr("duration", "0"))
                    }
                    _ => {}
                }
            }
            let mut user = Node::new("user").attr("jid", jid_text.as_str()).children(children);
            if jid_text.is_empty() {
                user = Node::new("user").children(user.child_nodes().to_vec());
            }
            users.push(user);
        }
        let mut out = Node::new("usync");
        out.attrs = usync.attrs.clone();
        self.iq_result(iq).children([out.children([Node::new("result"), Node::new("list").children(users)])])
    }

    fn media_conn(&mut self, iq: &Node) -> Node {
        let host = self.media_base.trim_start_matches("http://").trim_start_matches("https://").to_owned();
        self.iq_result(iq).children([Node::new("media_conn")
            .attr("auth", self.media_auth.as_str())
            .attr("ttl", "3600")
            .attr("auth_ttl", "21600")
            .attr("max_buckets", "12")
            .children([Node::new("host").attr("hostname", host)])])
    }

    fn on_remove_companion(&mut self, conn: ConnId, iq: &Node) -> Option<Node> {
        let addr = self.conns.get(&conn)?.device?;
        let r = self.iq_result(iq);
        self.send(conn, r);
        self.remove_device(addr, "user_initiated");
        None
    }

    /// Unlinks a companion: its connection gets `<stream:error code="401"><conflict type="device_removed"/>`.
    pub(crate) fn remove_device(&mut self, addr: DeviceAddr, _reason: &str) {
        if addr.device == 0 {
            return;
        }
        let Some(d) = self.accounts[addr.account].devices.remove(&addr.device) else { return };
        if let Some(conn) = d.conn {
            let err = Node::new("stream:error")
                .attr("code", "401")
                .children([Node::new("conflict").attr("type", "device_removed")]);
            self.send_and_close(conn, err);
            if let Some(c) = self.conns.get_mut(&conn) {
                c.device = None;
            }
        }
    }

    // ------------------------------------------------------------------ routing

    fn on_message(&mut self, conn: ConnId, msg: Node) {
        let Some(sender) = self.conns.get(&conn).and_then(|c| c.device) else {
            self.send(
                conn,
                Node::new("ack").attr("class", "message").attr("id", attr(&msg, "id")).attr("error", "401"),
            );
            return;
        };
        let id = attr(&msg, "id");
        let Ok(to) = msg.attr_jid("to") else {
            self.send(conn, Node::new("ack").attr("class", "message").attr("id", id).attr("error", "400"));
            return;
        };
        let now = self.now();
        let ack = Node::new("ack")
            .attr("class", "message")
            .attr("id", id.as_str())
            .attr("from", to.clone())
            .attr("t", now);
        self.send(conn, ack);
        self.route_message(sender, &to, &msg);
    }

    /// Fans a client's (or phone's) `<message>` out to every addressed device.
    pub(crate) fn route_message(&mut self, sender: DeviceAddr, to: &Jid, msg: &Node) {
        let id = attr(msg, "id");
        self.sent_by.insert(id.clone(), sender);
        let now = self.now();
        let ty = {
            let t = attr(msg, "type");
            if t.is_empty() { "text".to_owned() } else { t }
        };
        let server = if to.server() == Server::Lid { Server::Lid } else { Server::Pn };
        let sender_jid = self.device_jid(sender, server);
        let notify = self.accounts[sender.account].push_name.clone();
        let device_identity = msg.child("device-identity").cloned();
        let mut skmsg = msg.children_by_tag("enc").next().cloned();
        let mut addressed: BTreeMap<DeviceAddr, Node> = BTreeMap::new();
        if let Some(parts) = msg.child("participants") {
            for to_node in parts.children_by_tag("to") {
                let Ok(dj) = to_node.attr_jid("jid") else { continue };
                let Some(addr) = self.device_of(&dj) else { continue };
                if let Some(enc) = to_node.child("enc") {
                    addressed.insert(addr, enc.clone());
                }
            }
        }
        // A copy for one device only (a retry answer): the `<enc>` sits directly under the
        // message, addressed by `to` (a device JID) or, in a group, by `participant`.
        let directed = if msg.child("participants").is_some() {
            None
        } else if to.is_group() {
            msg.attr_jid("participant").ok().and_then(|p| self.device_of(&p))
        } else {
            self.device_of(to)
        };
        if let Some(t) = directed
            && let Some(enc) = skmsg.take()
        {
            addressed.insert(t, enc);
        }
        let base = |from: Jid| {
            Node::new("message")
                .attr("from", from)
                .attr("id", id.as_str())
                .attr("t", now)
                .attr("type", ty.as_str())
        };
        if to.is_group() {
            let Some(group) = self.groups.get(to.user()).cloned() else { return };
            let sender_jid = self.device_jid(sender, group.addressing());
            let sender_pn = self.device_jid(sender, Server::Pn);
            let targets: Vec<DeviceAddr> = group
                .participants
                .keys()
                .flat_map(|&a| {
                    self.accounts[a].devices.keys().map(move |&d| DeviceAddr { account: a, device: d })
                })
                .filter(|a| *a != sender && directed.is_none_or(|d| d == *a))
                .collect();
            for t in targets {
                let mut children = Vec::new();
                if let Some(enc) = addressed.get(&t) {
                    children.push(enc.clone());
                }
                if let Some(sk) = &skmsg {
                    children.push(sk.clone());
                }
                if children.is_empty() {
                    continue;
                }
                if let Some(di) = &device_identity {
                    children.push(di.clone());
                }
                let mut node = base(to.clone()).attr("participant", sender_jid.clone());
                if group.lid_addressed {
                    node = node.attr("participant_pn", sender_pn.clone());
                }
                let node = node
                    .attr("notify", notify.as_str())
                    .attr("addressing_mode", group.addressing_mode())
                    .children(children);
                self.deliver(t, node);
            }
            return;
        }
        for (t, enc) in addressed {
            if t == sender {
                continue;
            }
            let mut node = base(sender_jid.clone()).attr("notify", notify.as_str());
            if t.account == sender.account {
                // A copy for the sender's own other device: the chat is the recipient.
                node = node.attr("recipient", to.clone());
            }
            let mut children = vec![enc];
            if let Some(di) = &device_identity {
                children.push(di.clone());
            }
            self.deliver(t, node.children(children));
        }
    }

    fn on_receipt(&mut self, conn: ConnId, r: Node) {
        let Some(sender) = self.conns.get(&conn).and_then(|c| c.device) else { return };
        let id = attr(&r, "id");
        let mut ack =
            Node::new("ack").attr("class", "receipt").attr("id", id.as_str()).attr("from", server_jid());
        let ty = attr(&r, "type");
        if !ty.is_empty() {
            ack = ack.attr("type", ty.as_str());
        }
        self.send(conn, ack);
        let mut ids = vec![id];
        if let Some(list) = r.child("list") {
            ids.extend(list.children_by_tag("item").map(|i| attr(i, "id")));
        }
        self.on_device_ack(conn, &ids);
        self.route_receipt(sender, &r);
    }

    /// A device acknowledged messages: they leave its in-flight list and count as acked.
    /// Only messages: a receipt in flight to the device may carry the same id (a receipt's id
    /// is the id of the message it is about) and waits for its own `<ack class="receipt">`.
    fn on_device_ack(&mut self, conn: ConnId, ids: &[String]) {
        let Some(addr) = self.conns.get(&conn).and_then(|c| c.device) else { return };
        let Some(acct) = self.accounts.get_mut(addr.account) else { return };
        let pn = acct.pn.clone();
        let Some(d) = acct.devices.get_mut(&addr.device) else { return };
        let mut acked = Vec::new();
        for id in ids {
            let before = d.in_flight.len();
            d.in_flight.retain(|n| n.tag != "message" || attr(n, "id") != *id);
            if d.in_flight.len() < before {
                if d.acked.len() >= MAX_ACKED_IDS {
                    d.acked.pop_front();
                }
                d.acked.push_back(id.clone());
                acked.push(id.clone());
            }
        }
        for id in acked {
            self.emit(WorldEvent::DeviceAcked { pn: pn.clone(), device: addr.device, id });
        }
    }

    /// A device acknowledged a receipt delivered to it: `<ack class="receipt" id to
    /// [participant] [type]>` names the receipt by its id, its sender (`to` is the receipt's
    /// `from`, plus the group `participant`) and its type; ids alone would be ambiguous (the
    /// delivery and the read receipt of one message share its id). The first matching receipt
    /// in flight is done; an ack matching nothing is ignored.
    fn on_receipt_ack(&mut self, conn: ConnId, ack: &Node) {
        let Some(addr) = self.conns.get(&conn).and_then(|c| c.device) else { return };
        let Some(acct) = self.accounts.get_mut(addr.account) else { return };
        let pn = acct.pn.clone();
        let Some(d) = acct.devices.get_mut(&addr.device) else { return };
        let (id, from, participant, kind) =
            (attr(ack, "id"), attr(ack, "to"), attr(ack, "participant"), attr(ack, "type"));
        let pos = d.in_flight.iter().position(|n| {
            n.tag == "receipt"
                && attr(n, "id") == id
                && attr(n, "from") == from
                && attr(n, "participant") == participant
                && attr(n, "type") == kind
        });
        if let Some(pos) = pos {
            d.in_flight.remove(pos);
            self.emit(WorldEvent::ReceiptAcked { pn, device: addr.device, id, kind });
        }
    }

    /// Forwards a receipt to the device that sent the message (and the sender's phone).
    pub(crate) fn route_receipt(&mut self, from: DeviceAddr, r: &Node) {
        let mut ids = vec![attr(r, "id")];
        if let Some(list) = r.child("list") {
            ids.extend(list.children_by_tag("item").map(|i| attr(i, "id")));
        }
        let ty = attr(r, "type");
        let to_attr = r.attr_jid("to").ok();
        let server = match to_attr.as_ref() {
            Some(j) if j.is_group() => self.groups.get(j.user()).map_or(Server::Pn, Group::addressing),
            Some(j) if j.server() == Server::Lid => Server::Lid,
            _ => Server::Pn,
        };
        let from_jid = self.device_jid(from, server);
        let now = self.now();
        for id in ids {
            let Some(&orig) = self.sent_by.get(&id) else { continue };
            if orig == from {
                continue;
            }
            let mut node = Node::new("receipt").attr("id", id.as_str()).attr("t", now);
            match &to_attr {
                Some(g) if g.is_group() => {
                    node = node.attr("from", g.clone()).attr("participant", from_jid.clone());
                }
                _ => node = node.attr("from", from_jid.clone()),
            }
            if !ty.is_empty() {
                node = node.attr("type", ty.as_str());
            }
            // What the receipt carries besides the id list (a retry's <retry>, <registration>
            // and <keys>) travels to the sender unchanged.
            let extra: Vec<Node> = r.child_nodes().iter().filter(|c| c.tag != "list").cloned().collect();
            if !extra.is_empty() {
                node = node.children(extra);
            }
            self.deliver(orig, node);
        }
    }

    // ------------------------------------------------------------------ registration

    fn start_registration(
        &mut self,
        conn: ConnId,
        noise_key: PublicKey,
        reg: &wa_proto::client_payload::DevicePairingRegistrationData,
        payload: &wa_proto::ClientPayload,
    ) {
        let parsed = (|| {
            let identity = PublicKey::from_bytes(reg.e_ident.as_deref()?).ok()?;
            let registration_id = be_int(reg.e_regid.as_deref()?)?;
            let id = be_int(reg.e_skey_id.as_deref()?)?;
            let public = PublicKey::from_bytes(reg.e_skey_val.as_deref()?).ok()?;
            let signature: [u8; 64] = reg.e_skey_sig.as_deref()?.try_into().ok()?;
            Some(DeviceKeys {
                identity,
                registration_id,
                signed_pre_key: SignedPreKeyPub { id, public, signature },
                pre_keys: BTreeMap::new(),
            })
        })();
        let Some(keys) = parsed else {
            tracing::warn!(conn, "malformed devicePairingData");
            self.send_and_close(conn, Node::new("failure").attr("reason", "400").attr("location", "emu"));
            return;
        };
        let platform = reg
            .device_props
            .as_deref()
            .and_then(|b| wa_proto::DeviceProps::decode(b).ok())
            .and_then(|p| p.os)
            .unwrap_or_else(|| "unknown".into());
        let _ = payload;
        let refs: Vec<String> = (0..self.refs_per_pairing.max(1))
            .map(|i| {
                let r = self.random_hex(12);
                format!("2@{}{i}", B64.encode(r.as_bytes()).trim_end_matches('='))
            })
            .collect();
        for r in &refs {
            self.refs.insert(r.clone(), conn);
        }
        if let Some(c) = self.conns.get_mut(&conn) {
            c.registration =
                Some(Registration { noise_key, keys, platform, refs: refs.clone(), link_code: None });
        }
        let id = self.next_iq_id();
        let node = Node::new("iq")
            .attr("from", server_jid())
            .attr("type", "set")
            .attr("id", id)
            .attr("xmlns", "md")
            .children([Node::new("pair-device")
                .children(refs.iter().map(|r| Node::new("ref").bytes(r.as_bytes().to_vec())))]);
        self.send(conn, node);
        self.emit(WorldEvent::Registering { conn, refs });
    }

    /// The phone of `account` scanned a QR code.
    pub fn scan_qr(&mut self, account: AccountId, qr: &str) -> Result<DeviceAddr, ControlError> {
        let body = qr.strip_prefix("https://wa.me/settings/linked_devices#").unwrap_or(qr);
        let parts: Vec<&str> = body.split(',').collect();
        if parts.len() < 4 {
            return Err(ControlError::BadQr(format!("{} fields, expected 4 or 5", parts.len())));
        }
        let decode =
            |s: &str, what: &str| B64.decode(s).map_err(|e| ControlError::BadQr(format!("{what}: {e}")));
        let noise = decode(parts[1], "noise key")?;
        let identity = decode(parts[2], "identity key")?;
        let adv_secret = decode(parts[3], "adv secret")?;
        let r = parts[0].to_owned();
        let conn = *self.refs.get(&r).ok_or_else(|| ControlError::UnknownRef(r.clone()))?;
        let reg = self
            .conns
            .get(&conn)
            .and_then(|c| c.registration.clone())
            .ok_or_else(|| ControlError::UnknownRef(r.clone()))?;
        if reg.noise_key.as_bytes()[..] != noise[..] || reg.keys.identity.as_bytes()[..] != identity[..] {
            return Err(ControlError::QrMismatch(r));
        }
        Ok(self.pair(account, conn, &adv_secret))
    }

    /// Creates the device and sends `pair-success` (ADV identity signed by the phone).
    pub(crate) fn pair(&mut self, account: AccountId, conn: ConnId, adv_secret: &[u8]) -> DeviceAddr {
        let Some(reg) = self.conns.get(&conn).and_then(|c| c.registration.clone()) else {
            return DeviceAddr { account, device: 0 };
        };
        let now = self.now();
        let acct = &mut self.accounts[account];
        let device = acct.next_device_id;
        acct.next_device_id += 1;
        let key_index = u32::from(device);
        let details = wa_proto::AdvDeviceIdentity {
            raw_id: Some(acct.raw_id),
            timestamp: Some(now),
            key_index: Some(key_index),
            account_type: None,
            device_type: None,
        }
        .encode_to_vec();
        let account_key = acct.phone.identity_public();
        let mut msg = vec![6u8, 0];
        msg.extend_from_slice(&details);
        msg.extend_from_slice(reg.keys.identity.as_bytes());
        let account_signature = acct.phone.sign(&msg);
        let signed = wa_proto::AdvSignedDeviceIdentity {
            details: Some(details.clone()),
            account_signature_key: Some(account_key.as_bytes().to_vec()),
            account_signature: Some(account_signature.to_vec()),
            device_signature: None,
        }
        .encode_to_vec();
        let hmac = wa_crypto::hmac_sha256(adv_secret, &[&signed]);
        let container = wa_proto::AdvSignedDeviceIdentityHmac {
            details: Some(signed),
            hmac: Some(hmac.to_vec()),
            account_type: None,
        }
        .encode_to_vec();
        acct.devices.insert(
            device,
            Device {
                id: device,
                noise_key: Some(reg.noise_key),
                keys: reg.keys.clone(),
                key_index,
                conn: None,
                offline: VecDeque::new(),
                in_flight: VecDeque::new(),
                acked: VecDeque::new(),
                platform: reg.platform.clone(),
                signed_identity: None,
            },
        );
        let addr = DeviceAddr { account, device };
        let jid = self.device_jid(addr, Server::Pn);
        let lid = self.device_jid(addr, Server::Lid);
        let iq_id = self.next_iq_id();
        if let Some(c) = self.conns.get_mut(&conn) {
            c.pending_pair = Some(PendingPair { iq_id: iq_id.clone(), addr, details, account_key });
        }
        let node = Node::new("iq")
            .attr("from", server_jid())
            .attr("type", "set")
            .attr("id", iq_id)
            .attr("t", now)
            .children([Node::new("pair-success").children([
                Node::new("device-identity").bytes(container),
                Node::new("platform").attr("name", "android"),
                Node::new("device").attr("jid", jid).attr("lid", lid),
            ])]);
        self.send(conn, node);
        addr
    }

    fn on_pair_reply(&mut self, conn: ConnId, iq: &Node) {
        let Some(pending) = self.conns.get_mut(&conn).and_then(|c| c.pending_pair.take()) else { return };
        if attr(iq, "id") != pending.iq_id {
            if let Some(c) = self.conns.get_mut(&conn) {
                c.pending_pair = Some(pending);
            }
            return;
        }
        let addr = pending.addr;
        let signed = iq.child_path(&["pair-device-sign", "device-identity"]).and_then(content_bytes);
        let Some(signed) = signed.filter(|_| attr(iq, "type") == "result") else {
            tracing::warn!(conn, "companion rejected pair-success");
            self.accounts[addr.account].devices.remove(&addr.device);
            self.close(conn);
            return;
        };
        let identity = self.accounts[addr.account].devices.get(&addr.device).map(|d| d.keys.identity);
        let valid = (|| {
            let parsed = wa_proto::AdvSignedDeviceIdentity::decode(signed).ok()?;
            let sig: [u8; 64] = parsed.device_signature.as_deref()?.try_into().ok()?;
            let identity = identity?;
            if parsed.details.as_deref()? != pending.details.as_slice() {
                return Some(false);
            }
            let mut msg = vec![6u8, 1];
            msg.extend_from_slice(&pending.details);
            msg.extend_from_slice(identity.as_bytes());
            msg.extend_from_slice(pending.account_key.as_bytes());
            Some(identity.verify(&msg, &sig))
        })()
        .unwrap_or(false);
        let pn = self.accounts[addr.account].pn.clone();
        self.emit(WorldEvent::Paired { pn, device: addr.device, device_signature_valid: valid });
        if !valid {
            tracing::warn!(conn, "device signature in pair-device-sign does not verify");
            self.accounts[addr.account].devices.remove(&addr.device);
            self.send_and_close(conn, Node::new("stream:error").attr("code", "401"));
            return;
        }
        if let Some(d) = self.accounts[addr.account].devices.get_mut(&addr.device) {
            d.signed_identity = Some(signed.to_vec());
        }
        if let Some(reg) = self.conns.get_mut(&conn).and_then(|c| c.registration.take()) {
            for r in reg.refs {
                self.refs.remove(&r);
            }
        }
        self.send_and_close(conn, Node::new("stream:error").attr("code", "515"));
    }
}

fn parse_skey(s: &Node) -> Option<SignedPreKeyPub> {
    Some(SignedPreKeyPub {
        id: be_int(child_bytes(s, "id")?)?,
        public: PublicKey::from_bytes(child_bytes(s, "value")?).ok()?,
        signature: child_bytes(s, "signature")?.try_into().ok()?,
    })
}

/// Displays a node compactly for logs.
pub(crate) struct NodeDisplay<'a>(pub &'a Node);

impl std::fmt::Display for NodeDisplay<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.0;
        write!(f, "<{}", n.tag)?;
        for a in &n.attrs {
            write!(f, " {}=\"{}\"", a.key, a.value)?;
        }
        match &n.content {
            wa_binary::Content::None => write!(f, "/>"),
            wa_binary::Content::Children(c) => {
                write!(f, ">")?;
                for ch in c {
                    write!(f, "{}", NodeDisplay(ch))?;
                }
                write!(f, "</{}>", n.tag)
            }
            wa_binary::Content::Bytes(b) => write!(f, ">[{} bytes]</{}>", b.len(), n.tag),
            wa_binary::Content::Str(s) => write!(f, ">{s}</{}>", n.tag),
            wa_binary::Content::Jid(j) => write!(f, ">{j}</{}>", n.tag),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use rand::SeedableRng;

    /// A world with two accounts; account 0 has a companion (device 5) logged in and active on
    /// the returned connection, whose mailbox is the receiver.
    fn world_with_companion() -> (World, DeviceAddr, ConnId, tokio::sync::mpsc::UnboundedReceiver<ConnCommand>)
    {
        let mut rng = StdRng::seed_from_u64(7);
        let keys = ServerKeys::generate(&mut rng, 1_700_000_000);
        let mut w = World::new(rng, Arc::new(crate::clock::ManualClock::new(1_700_000_000)), keys, 6);
        let me = w.create_account("15550001000", "Me").unwrap();
        w.create_account("15550001001", "Bob").unwrap();
        let companion = {
            let phone = &w.accounts[me].devices[&0];
            Device {
                id: 5,
                noise_key: None,
                keys: phone.keys.clone(),
                key_index: 1,
                conn: None,
                offline: VecDeque::new(),
                in_flight: VecDeque::new(),
                acked: VecDeque::new(),
                platform: "Chrome".into(),
                signed_identity: Some(vec![1]),
            }
        };
        w.accounts[me].devices.insert(5, companion);
        let addr = DeviceAddr { account: me, device: 5 };
        let (conn, rx) = login(&mut w, addr);
        (w, addr, conn, rx)
    }

    fn login(w: &mut World, addr: DeviceAddr) -> (ConnId, tokio::sync::mpsc::UnboundedReceiver<ConnCommand>) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let conn = w.connect(tx);
        w.conns.get_mut(&conn).unwrap().device = Some(addr);
        w.accounts[addr.account].devices.get_mut(&addr.device).unwrap().conn = Some(conn);
        w.activate(conn);
        (conn, rx)
    }

    fn sent(rx: &mut tokio::sync::mpsc::UnboundedReceiver<ConnCommand>) -> Vec<Node> {
        let mut out = Vec::new();
        while let Ok(c) = rx.try_recv() {
            if let ConnCommand::Node(n) = c {
                out.push(*n);
            }
        }
        out
    }

    fn receipt(id: &str, from: &str, ty: Option<&str>) -> Node {
        let mut n =
            Node::new("receipt").attr("id", id).attr("from", from.parse::<Jid>().unwrap()).attr("t", 1);
        if let Some(t) = ty {
            n = n.attr("type", t);
        }
        n
    }

    fn ack(id: &str, to: &str, ty: Option<&str>) -> Node {
        let mut n =
            Node::new("ack").attr("class", "receipt").attr("id", id).attr("to", to.parse::<Jid>().unwrap());
        if let Some(t) = ty {
            n = n.attr("type", t);
        }
        n
    }

    fn in_flight(w: &World, addr: DeviceAddr) -> usize {
        w.accounts[addr.account].devices[&addr.device].in_flight.len()
    }

    #[test]
    fn the_event_log_keeps_the_most_recent_events_only() {
        let (mut w, _, _, _) = world_with_companion();
        let before = w.events.len();
        let ev = |i: usize| WorldEvent::PhoneReceived { pn: "15550001001".into(), id: format!("E{i}") };
        for i in 0..MAX_EVENT_LOG + 10 {
            w.emit(ev(i));
        }
        assert_eq!(w.events.len(), MAX_EVENT_LOG);
        // The oldest went first: the pairing-time events, then the first ten of ours.
        assert!(before < MAX_EVENT_LOG);
        assert!(matches!(w.events.front(), Some(WorldEvent::PhoneReceived { id, .. }) if id == "E10"));
        assert!(
            matches!(w.events.back(), Some(WorldEvent::PhoneReceived { id, .. }) if *id == format!("E{}", MAX_EVENT_LOG + 9))
        );
    }

    #[test]
    fn a_receipt_stays_in_flight_until_its_own_ack_and_is_redelivered_offline_after_a_close() {
        let (mut w, me, conn, mut rx) = world_with_companion();
        let bob = "15550001001@s.whatsapp.net";
        // A delivery and a read receipt for one message (same id), and a message with that id.
        w.deliver(me, receipt("M1", bob, None));
        w.deliver(me, receipt("M1", bob, Some("read")));
        w.deliver(me, Node::new("message").attr("id", "M1").attr("from", bob.parse::<Jid>().unwrap()));
        assert_eq!(sent(&mut rx).len(), 4, "offline marker, two receipts and the message");
        assert_eq!(in_flight(&w, me), 3);

        // The message's acknowledgement (a receipt from the device, same id) leaves the
        // receipts in flight; acks naming the wrong type or sender match nothing.
        w.on_node(conn, Node::new("ack").attr("class", "message").attr("id", "M1"));
        assert_eq!(in_flight(&w, me), 2);
        w.on_node(conn, ack("M1", bob, Some("played")));
        w.on_node(conn, ack("M1", "15550009999@s.whatsapp.net", Some("read")));
        assert_eq!(in_flight(&w, me), 2);
        w.on_node(conn, ack("M1", bob, Some("read")));
        assert_eq!(in_flight(&w, me), 1);
        assert!(w.events.iter().any(|e| matches!(e,
            WorldEvent::ReceiptAcked { id, kind, device: 5, .. } if id == "M1" && kind == "read")));
        assert_eq!(w.device_acked(me.account, 5).unwrap(), vec!["M1".to_owned()], "the message's ack");

        // The connection ends with the delivery receipt unacknowledged: the next login gets
        // it again from the offline queue, and it is done once acknowledged there.
        w.disconnect(conn);
        let (conn2, mut rx2) = login(&mut w, me);
        let again = sent(&mut rx2);
        let r = again.iter().find(|n| n.tag == "receipt").expect("re-delivered");
        assert_eq!(
            (attr(r, "id").as_str(), attr(r, "type").as_str(), attr(r, "offline").as_str()),
            ("M1", "", "1")
        );
        let ib = again.last().unwrap();
        assert_eq!(ib.child("offline").map(|o| attr(o, "count")), Some("1".to_owned()));
        w.on_node(conn2, ack("M1", bob, None));
        assert_eq!(in_flight(&w, me), 0);
        w.disconnect(conn2);
        let (_, mut rx3) = login(&mut w, me);
        let third = sent(&mut rx3);
        assert_eq!(third.len(), 1, "only the offline marker: {third:?}");
        assert_eq!(third[0].child("offline").map(|o| attr(o, "count")), Some("0".to_owned()));
    }

    #[test]
    fn the_acked_list_is_bounded() {
        let (mut w, me, conn, _rx) = world_with_companion();
        let bob: Jid = "15550001001@s.whatsapp.net".parse().unwrap();
        for i in 0..MAX_ACKED_IDS + 3 {
            let id = format!("M{i}");
            w.deliver(me, Node::new("message").attr("id", id.as_str()).attr("from", bob.clone()));
            w.on_node(conn, Node::new("ack").attr("class", "message").attr("id", id.as_str()));
        }
        let acked = w.device_acked(me.account, 5).unwrap();
        assert_eq!(acked.len(), MAX_ACKED_IDS);
        assert_eq!(acked.first().map(String::as_str), Some("M3"));
        assert_eq!(in_flight(&w, me), 0);
    }
}
