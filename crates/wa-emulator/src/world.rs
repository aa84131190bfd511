//! The emulated WhatsApp service: accounts, devices, connections, and what the server does
//! with every node a client sends. Pure state driven by [`World::on_handshake`] and
//! [`World::on_node`]; nodes for clients go out through each connection's mailbox (a channel
//! the tokio shell drains), so tests can run it without sockets.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand_core::Rng;
use tokio::sync::mpsc::UnboundedSender;
use wa_binary::{Jid, Node, Server};
use wa_crypto::PublicKey;

use crate::clock::Clock;
use crate::keys::ServerKeys;
use crate::phone::Phone;

/// Identifies a connection for the emulator's lifetime.
pub type ConnId = u64;
/// Index of an account.
pub type AccountId = usize;

/// One device of one account (device 0 is the account's phone).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
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
    /// Stanzas sent on the device's connection and not yet acknowledged (see [`awaits_ack`]: a
    /// message by a receipt or an `<ack class="message">`, a receipt by its `<ack
    /// class="receipt">`, a notification, call or appdata by its `<ack class=…>`); they go
    /// back to the front of `offline` when the connection ends, as WhatsApp re-delivers what
    /// a device did not acknowledge.
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
/// (and is delivered again if the connection ends first): every class the clients acknowledge
/// (whatsmeow `client.go` node handlers with `receipt.go` `sendAck`/`maybeDeferredAck`,
/// `notification.go`, `call.go`; Baileys `messages-recv.ts` `sendMessageAck`). `<ib>`,
/// presence and chat states are never acknowledged, so they are fire-and-forget.
pub(crate) fn awaits_ack(node: &Node) -> bool {
    matches!(node.tag.as_str(), "message" | "receipt" | "notification" | "call" | "appdata")
}

impl Device {
    /// Puts the unacknowledged stanzas back at the front of the offline queue, in order.
    pub(crate) fn requeue_in_flight(&mut self) {
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
    /// Whether the account's 1:1 chats are LID-addressed (see [`AccountOptions`]).
    pub lid_migrated: bool,
    /// The Signal state of the account's hosted (Cloud API) device
    /// ([`crate::HOSTED_DEVICE_ID`]), when it has one (see `hosted`).
    pub hosted: Option<Phone>,
    /// The phone-signed list of valid companion key indexes, once a companion is linked.
    pub key_index_list: Option<crate::keyindex::KeyIndexList>,
    /// The account's devices' own `<presence>` stanzas, oldest first (the latest
    /// [`MAX_PRESENCE_LOG`]).
    pub presences: VecDeque<PresenceRecord>,
}

/// How an account is created.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AccountOptions {
    /// LID-migrated (the default, as the service has moved 1:1 chats to LIDs): companions
    /// learn it from pair-success `<client-props>` and must address DMs by LID. `false` is a
    /// legacy account whose DMs stay on phone numbers.
    pub lid_migrated: bool,
}

impl Default for AccountOptions {
    fn default() -> Self {
        Self { lid_migrated: true }
    }
}

/// Most `<presence>` stanzas remembered per account.
pub const MAX_PRESENCE_LOG: usize = 1000;

/// A `<presence>` a device of the account sent about itself.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PresenceRecord {
    /// The sending device.
    pub device: u16,
    /// `available` or `unavailable`.
    pub kind: String,
    /// The `name` attribute (the push name the device announced), if any.
    pub name: Option<String>,
    /// Server time (unix seconds).
    pub at: u64,
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
    /// The description (topic), when one is set.
    pub description: Option<GroupDescription>,
    /// The current invite code (`https://chat.whatsapp.com/<code>`).
    pub invite_code: String,
    /// Codes an admin revoked: joining with one is `410 gone`.
    pub revoked_invite_codes: Vec<String>,
}

/// A group's description: its text, its id (the next change names it as `prev`), who set it
/// and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription {
    pub id: String,
    pub body: String,
    pub set_by: AccountId,
    pub set_at: u64,
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
    /// A registration or login `ClientPayload` was refused before any account lookup (an
    /// outdated version or a shape no reference client sends); `rule` names the rule in the
    /// README's rule table.
    PayloadRefused { conn: ConnId, registration: bool, username: Option<u64>, reason: u16, rule: String },
    /// A logged-in device sent `<presence type=kind [name]>` about itself; a `name` became the
    /// account's push name.
    PresenceSent { pn: String, device: u16, kind: String, name: Option<String> },
    /// A phone received and decrypted a message.
    PhoneReceived { pn: String, id: String },
    /// A receipt reached a phone.
    PhoneReceipt { pn: String, id: String, kind: String },
    /// A device acknowledged a message (or appdata) delivered to it (receipt or `<ack>`).
    DeviceAcked { pn: String, device: u16, id: String },
    /// A companion acknowledged a receipt delivered to it (`<ack class="receipt">`); `kind` is
    /// the receipt's type (empty for a delivery receipt).
    ReceiptAcked { pn: String, device: u16, id: String, kind: String },
    /// A companion's `<message>` was refused with `<ack error=code>` (see `addressing`).
    MessageRefused { pn: String, device: u16, id: String, code: u16 },
    /// A companion's 1:1 message was judged against the reach-out rules (see `reachout`):
    /// the token it carried, whether it started a new contact (counted against the limit),
    /// and whether it was refused with 463.
    ReachOut {
        pn: String,
        device: u16,
        id: String,
        to: String,
        token: crate::reachout::TokenSeen,
        new_contact: bool,
        refused: bool,
    },
    /// `issuer`'s account gave its trusted-contact token to `holder` (its phone after a
    /// message, or a companion's `<iq xmlns="privacy"><tokens>`).
    TokenGiven { issuer: String, holder: String },
    /// A companion's 1:1 message left out devices it had to reach (acked with `phash`).
    FanOutIncomplete { pn: String, device: u16, id: String, missing: Vec<String> },
    /// A companion's group message carried a `phash` other than the hash of the group
    /// members' devices (its device lists were stale; acked with the server's `phash`).
    GroupDeviceListStale { pn: String, device: u16, id: String, group: String },
    /// WhatsApp was reinstalled on an account's phone (new identity key).
    PhoneReinstalled { pn: String },
    /// A node the server does not support was answered with an error.
    Unsupported { conn: ConnId, tag: String, xmlns: String },
    /// A companion acknowledged a notification or call delivered to it (`<ack class=…>`);
    /// `kind` is a notification's `type`, or a call's child tag (`offer`, `terminate`, …).
    /// (Appdata is acknowledged like a message: [`WorldEvent::DeviceAcked`].)
    StanzaAcked { pn: String, device: u16, class: String, id: String, kind: String },
    /// A companion cleaned a dirty bit (`<iq xmlns="urn:xmpp:whatsapp:dirty"><clean type>`).
    DirtyCleaned { pn: String, device: u16, kind: String },
    /// A connection's intro carried edge routing info (`ED 00 01 len routing`).
    RoutingInfoPresented { conn: ConnId, routing_info: Vec<u8> },
    /// A phone answered a media retry request (`result` as in `MediaRetryNotification`:
    /// `success`, `not_found`, `decryption_error`); `direct_path` is the new upload's.
    MediaRetryAnswered { pn: String, id: String, result: String, direct_path: Option<String> },
    /// A phone answered a placeholder resend request for message `id` from its companion
    /// `device` (`found`: it had the message).
    PlaceholderResent { pn: String, device: u16, id: String, found: bool },
    /// A phone shared `keys` app-state sync keys with its companion `device`.
    AppStateKeysShared { pn: String, device: u16, keys: usize },
    /// The phone sent a companion a history-sync chunk (`sends`: how many times so far).
    HistorySyncSent { pn: String, device: u16, id: String, sends: u32 },
    /// The server stored a companion's app-state patch at `version`.
    AppStatePatchAccepted { pn: String, device: u16, collection: String, version: u64 },
    /// The server refused a companion's app-state patch (`code` 409: built on a stale version).
    AppStatePatchRefused { pn: String, device: u16, collection: String, code: u16 },
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
    pub(crate) next_iq: u64,
    pub(crate) refs_per_pairing: usize,
    pub(crate) lid_in_usync: bool,
    /// Registration and login payloads reporting an older WA Web version get 405.
    pub(crate) min_client_version: [u32; 3],
    /// One-time prekeys a new phone generates.
    pub(crate) phone_pre_keys: u32,
    /// State of the server-initiated traffic (dirty bits, media ages, tokens, calls, …).
    pub(crate) traffic: crate::traffic::Traffic,
    /// Reach-out limits, tokens and time-locks (see `reachout`).
    pub(crate) reachout: crate::reachout::Reachout,
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
    /// Not an app-state collection name.
    #[error("no app-state collection {0:?}")]
    UnknownCollection(String),
    /// An app-state change could not be encoded.
    #[error("app-state change refused: {0}")]
    BadAppState(String),
    /// No call with this id is ringing.
    #[error("no call {0:?} is ringing")]
    UnknownCall(String),
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
            min_client_version: wa_noise::payload::DEFAULT_APP_VERSION,
            phone_pre_keys: crate::phone::PHONE_PRE_KEYS,
            traffic: crate::traffic::Traffic::default(),
            reachout: crate::reachout::Reachout::default(),
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

    /// Creates a LID-migrated account with a simulated phone.
    pub fn create_account(&mut self, pn: &str, push_name: &str) -> Result<AccountId, ControlError> {
        self.create_account_with(pn, push_name, AccountOptions::default())
    }

    /// Creates an account with a simulated phone.
    pub fn create_account_with(
        &mut self,
        pn: &str,
        push_name: &str,
        options: AccountOptions,
    ) -> Result<AccountId, ControlError> {
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
            lid_migrated: options.lid_migrated,
            key_index_list: None,
            presences: VecDeque::new(),
            hosted: None,
        });
        self.by_pn.insert(pn.to_owned(), id);
        self.by_lid.insert(lid, id);
        Ok(id)
    }

    /// The account with phone number `pn` (digits, `+digits` or a PN JID).
    pub fn account_by_pn(&self, pn: &str) -> Result<AccountId, ControlError> {
        let digits = pn.trim_start_matches('+');
        let digits = digits.split('@').next().unwrap_or(digits);
        self.by_pn.get(digits).copied().ok_or_else(|| ControlError::UnknownAccount(pn.to_owned()))
    }

    /// The account a user JID (PN or LID) names.
    pub(crate) fn account_of(&self, jid: &Jid) -> Option<AccountId> {
        match jid.server() {
            Server::Pn | Server::Hosted => self.by_pn.get(jid.user()).copied(),
            Server::Lid | Server::HostedLid => self.by_lid.get(jid.user()).copied(),
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
        // A hosted device lives on the hosted server of the namespace (see `hosted`).
        let server = match server {
            Server::Pn if self.is_hosted_device(addr) => Server::Hosted,
            Server::Lid if self.is_hosted_device(addr) => Server::HostedLid,
            s => s,
        };
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
        self.bulletins_before_offline(conn, &queued);
        for node in queued {
            self.send(conn, node);
        }
        self.send(
            conn,
            Node::new("ib").attr("from", server_jid()).children([Node::new("offline").attr("count", count)]),
        );
        self.bulletins_after_offline(conn, addr);
    }

    /// Delivers a stanza to a device: the phone handles it at once; a companion gets it on
    /// its connection when active, otherwise it waits in the offline queue.
    pub(crate) fn deliver(&mut self, to: DeviceAddr, node: Node) {
        if to.device == 0 || self.is_hosted_device(to) {
            self.phone_receive(to, node);
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
        // The server closed this connection (a stream error, a replaced login, a fault): what
        // the client wrote after that is read only to finish the close (`server`'s drain, which
        // exists so the close is not lost to a TCP reset), never acted on. A server that closes
        // its socket reads nothing more from it; no public source says more about WhatsApp's
        // (a modelling choice, README "Rules"). Before this, which of a late frame and the close
        // won depended on task scheduling, and a `<message>` written just before a 515 could be
        // delivered after the device had logged in again and read its offline queue.
        if self.conns.get(&conn).is_some_and(|c| c.closed) {
            tracing::debug!(conn, tag = %node.tag, "stanza on a closed connection not acted on");
            return;
        }
        match node.tag.as_str() {
            "iq" => self.on_iq(conn, node),
            "message" => self.on_message(conn, node),
            "receipt" => self.on_receipt(conn, node),
            "ack" => match attr(&node, "class").as_str() {
                "message" | "appdata" => {
                    let id = attr(&node, "id");
                    self.on_device_ack(conn, std::slice::from_ref(&id));
                }
                "receipt" => self.on_receipt_ack(conn, &node),
                _ => self.on_stanza_ack(conn, &node),
            },
            "presence" => self.on_presence(conn, &node),
            "chatstate" => self.on_chatstate(conn, &node),
            "ib" => {}
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
        // A companion that speaks is online: history chunks it left unacknowledged too long go
        // again (see `history`).
        if !self.traffic.history.is_empty()
            && let Some(addr) = self.conns.get(&conn).and_then(|c| c.device)
        {
            self.resend_due_history(addr);
        }
    }

    /// `<presence type="available|unavailable" name=…>` from a logged-in device about itself:
    /// recorded, and its `name` becomes the account's push name, the `notify` other users see
    /// on the account's later messages. That is why the references send the push name with
    /// it: whatsmeow `presence.go` `SendPresence` ("so that the server has your pushname.
    /// Otherwise, other users will see \"-\" as the name"), Baileys `Socket/chats.ts`
    /// `sendPresenceUpdate` (`name: me.name`). Other types (`subscribe` to a contact) are not
    /// about the sender and change nothing.
    fn on_presence(&mut self, conn: ConnId, node: &Node) {
        let Some(addr) = self.conns.get(&conn).and_then(|c| c.device) else { return };
        // A missing type means available (whatsmeow `handlePresence` reads only "unavailable").
        let kind = node.opt_attr_str("type").map(|t| t.into_owned()).unwrap_or_else(|| "available".into());
        if !matches!(kind.as_str(), "available" | "unavailable") {
            return;
        }
        let name = node.opt_attr_str("name").map(|n| n.into_owned()).filter(|n| !n.trim().is_empty());
        let at = self.now();
        let Some(account) = self.accounts.get_mut(addr.account) else { return };
        if let Some(n) = &name {
            account.push_name.clone_from(n);
        }
        if account.presences.len() >= MAX_PRESENCE_LOG {
            account.presences.pop_front();
        }
        account.presences.push_back(PresenceRecord {
            device: addr.device,
            kind: kind.clone(),
            name: name.clone(),
            at,
        });
        let pn = account.pn.clone();
        self.emit(WorldEvent::PresenceSent { pn, device: addr.device, kind, name });
    }

    /// A 1:1 chat state (`<chatstate to=…><composing [media="audio"]/>|<paused/></chatstate>`,
    /// whatsmeow `presence.go` `SendChatPresence`) goes to the recipient's connected companions
    /// as `<chatstate from=<the sender as the recipient addresses it>>` with the same child
    /// (whatsmeow `presence.go` `handleChatState` and Baileys `Socket/chats.ts`
    /// `handlePresenceUpdate` read `from` and the child). Ephemeral: never queued for a device
    /// that is offline, never acknowledged.
    ///
    /// A chat state to a group the sender is in goes to every other member's connected
    /// companions as `<chatstate from=<group> participant=<sender>>`, the sender named as the
    /// group addresses members (whatsmeow `presence.go` `handleChatState` parses it with
    /// `parseMessageSource(node, true)`: group `from`, sender in `participant`; Baileys
    /// `Socket/chats.ts` `handlePresenceUpdate` takes `participant` over `from`). A state to a
    /// group the sender is not in is dropped.
    fn on_chatstate(&mut self, conn: ConnId, node: &Node) {
        let Some(from) = self.conns.get(&conn).and_then(|c| c.device) else { return };
        let Ok(to) = node.attr_jid("to") else { return };
        let Some(state) =
            node.child_nodes().first().filter(|c| matches!(c.tag.as_str(), "composing" | "paused"))
        else {
            return;
        };
        let (relayed, audience) = if to.is_group() {
            let Some(g) = self.groups.get(to.user()) else { return };
            if !g.participants.contains_key(&from.account) {
                return;
            }
            let participant = self.user_jid(from.account, g.addressing());
            let audience: Vec<AccountId> =
                g.participants.keys().copied().filter(|a| *a != from.account).collect();
            let relayed = Node::new("chatstate")
                .attr("from", to.to_non_ad())
                .attr("participant", participant)
                .children([state.clone()]);
            (relayed, audience)
        } else {
            let Some(account) = self.account_of(&to) else { return };
            if account == from.account {
                return;
            }
            let server = self.delivery_server(from.account, account);
            let sender = self.device_jid(DeviceAddr { account: from.account, device: 0 }, server);
            (Node::new("chatstate").attr("from", sender).children([state.clone()]), vec![account])
        };
        let conns: Vec<ConnId> = audience
            .iter()
            .flat_map(|&a| self.accounts[a].devices.values().filter_map(|d| d.conn))
            .filter(|c| self.conns.get(c).is_some_and(|c| c.active && !c.closed))
            .collect();
        for c in conns {
            self.send(c, relayed.clone());
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
pub(crate) mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn stanzas_on_a_connection_the_server_closed_are_not_acted_on() {
        use crate::testutil::{add_companion, login, world};
        let (mut w, _) = world(1);
        let addr = add_companion(&mut w, 0, 3);
        let (conn, _rx) = login(&mut w, addr);
        let presence = |name: &str| Node::new("presence").attr("type", "available").attr("name", name);
        w.on_node(conn, presence("Open"));
        assert_eq!(w.accounts[0].push_name, "Open", "acted on while open");
        w.close(conn);
        w.on_node(conn, presence("Late"));
        assert_eq!(w.accounts[0].push_name, "Open", "a closed connection's stanza changes nothing");
    }

    /// A world without accounts on a manual clock.
    pub(crate) fn bare_world() -> World {
        let mut rng = StdRng::seed_from_u64(7);
        let keys = ServerKeys::generate(&mut rng, 1_700_000_000);
        let mut w = World::new(rng, Arc::new(crate::clock::ManualClock::new(1_700_000_000)), keys, 6);
        w.phone_pre_keys = 20;
        w
    }

    /// A companion device of `account` (not linked yet: no signed identity) publishing the
    /// phone's keys.
    pub(crate) fn companion(w: &World, account: AccountId, id: u16) -> Device {
        let phone = &w.accounts[account].devices[&0];
        Device {
            id,
            noise_key: None,
            keys: phone.keys.clone(),
            key_index: u32::from(id),
            conn: None,
            offline: VecDeque::new(),
            in_flight: VecDeque::new(),
            acked: VecDeque::new(),
            platform: "Chrome".into(),
            signed_identity: None,
        }
    }

    /// A world with two accounts; account 0 has a companion (device 5) logged in and active on
    /// the returned connection, whose mailbox is the receiver.
    fn world_with_companion() -> (World, DeviceAddr, ConnId, tokio::sync::mpsc::UnboundedReceiver<ConnCommand>)
    {
        let mut rng = StdRng::seed_from_u64(7);
        let keys = ServerKeys::generate(&mut rng, 1_700_000_000);
        let mut w = World::new(rng, Arc::new(crate::clock::ManualClock::new(1_700_000_000)), keys, 6);
        let me = w.create_account("15550001000", "Me").unwrap();
        w.create_account("15550001001", "Bob").unwrap();
        let mut companion = companion(&w, me, 5);
        companion.signed_identity = Some(vec![1]);
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

    /// What the connection was sent, without the edge routing bulletin of each login (ib.rs).
    fn sent(rx: &mut tokio::sync::mpsc::UnboundedReceiver<ConnCommand>) -> Vec<Node> {
        let mut out = Vec::new();
        while let Ok(c) = rx.try_recv() {
            if let ConnCommand::Node(n) = c
                && n.child("edge_routing").is_none()
            {
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
    fn a_devices_presence_is_recorded_and_its_name_renames_the_account() {
        let (mut w, me, conn, _rx) = world_with_companion();
        // Without a name: recorded, the push name stays.
        w.on_node(conn, Node::new("presence").attr("type", "unavailable"));
        assert_eq!(w.accounts[me.account].push_name, "Me");
        // A subscription to a contact is not about us.
        w.on_node(
            conn,
            Node::new("presence").attr("type", "subscribe").attr("to", "15550001001@s.whatsapp.net"),
        );
        w.on_node(conn, Node::new("presence").attr("type", "available").attr("name", "Ana"));
        assert_eq!(w.accounts[me.account].push_name, "Ana");
        let log: Vec<(String, Option<String>)> =
            w.accounts[me.account].presences.iter().map(|p| (p.kind.clone(), p.name.clone())).collect();
        assert_eq!(log, vec![("unavailable".into(), None), ("available".into(), Some("Ana".into()))]);
        assert!(w.events.iter().any(|e| matches!(e,
            WorldEvent::PresenceSent { device: 5, kind, name: Some(n), .. } if kind == "available" && n == "Ana")));
        // A connection that is not logged in changes nothing.
        let (tx, _rx2) = tokio::sync::mpsc::unbounded_channel();
        let stranger = w.connect(tx);
        w.on_node(stranger, Node::new("presence").attr("type", "available").attr("name", "Mallory"));
        assert_eq!(w.accounts[me.account].push_name, "Ana");
        assert_eq!(w.accounts[me.account].presences.len(), 2);
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
