//! The typed events a [`crate::Client`] emits, and the stream that delivers them.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::mpsc;
use wa_binary::Jid;

use crate::policy::DisconnectReason;
use crate::qr::QrCode;

/// Something that happened on the account. Non-exhaustive: new protocol features add variants.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Event {
    /// A QR code to show; scan it with the phone before `expires_at`. A new one follows when it
    /// expires, until the server's refs run out (then [`Event::Disconnected`] with
    /// [`DisconnectReason::QrTimeout`]).
    Qr(QrCode),
    /// The pairing code to type on the phone (from [`crate::Client::pair_phone`]).
    PairingCode {
        /// Eight characters, shown to users as `XXXX-XXXX`.
        code: String,
    },
    /// The phone accepted this device; credentials are stored and a login follows.
    PairSuccess {
        /// Our own phone-number JID with device.
        jid: Jid,
        /// Our own LID with device, when the server sent one.
        lid: Option<Jid>,
        /// The phone's platform name (`android`, `iphone`, `smba`, …).
        platform: String,
        /// Business name for business accounts.
        business_name: Option<String>,
    },
    /// The phone's pairing data failed verification; pairing was refused.
    PairError {
        /// What was wrong.
        error: String,
    },
    /// Logged in and ready (prekeys checked, session active).
    Connected {
        /// Our own phone-number JID.
        jid: Jid,
        /// Our own LID, if known.
        lid: Option<Jid>,
    },
    /// The server finished delivering what was queued while we were offline.
    OfflineSyncCompleted {
        /// How many stanzas the server said it delivered.
        count: u64,
        /// The connection it came on ([`crate::Client::connection_number`]): events before
        /// it in the stream carry that connection's offline queue.
        connection: u64,
    },
    /// The connection ended.
    Disconnected {
        /// Why.
        reason: DisconnectReason,
        /// When the client will try again (`None`: it stopped for good).
        reconnect_in: Option<Duration>,
    },
    /// The account is no longer linked; stored credentials were purged.
    LoggedOut {
        /// Why.
        reason: DisconnectReason,
    },
    /// A message was received, decrypted and durably stored.
    Message(Arc<MessageEvent>),
    /// A receipt (delivered, read, played, …) for a message we sent.
    Receipt(ReceiptEvent),
    /// A message that could not be decrypted; a retry was requested from the sender.
    UndecryptableMessage(UndecryptableEvent),
    /// A contact's availability changed.
    Presence(PresenceEvent),
    /// A contact is typing or recording.
    ChatState(ChatStateEvent),
    /// A group changed (participants, subject, …).
    GroupUpdate(GroupUpdateEvent),
    /// A contact's identity key changed (reinstall or new phone).
    IdentityChange {
        /// The contact, as the notification (or message) named it: its LID for a LID-first
        /// account, its phone number for a legacy one.
        jid: Jid,
        /// The contact's phone-number JID, when known.
        pn: Option<Jid>,
        /// The contact's LID, when known.
        lid: Option<Jid>,
    },
    /// A contact linked or removed a companion device (`<notification type="devices">`); the
    /// cached device list follows it.
    DeviceListChanged {
        /// The contact, as the notification named it (its LID for a LID-first account, its
        /// phone number for a legacy one).
        user: Jid,
        /// The contact's phone-number JID, when known.
        pn: Option<Jid>,
        /// The contact's LID, when known.
        lid: Option<Jid>,
        /// The device linked or removed.
        device: Jid,
        /// `true` when linked, `false` when removed.
        added: bool,
    },
    /// A history-sync blob from the primary phone.
    HistorySync(Arc<wa_proto::HistorySync>),
    /// The server is about to deliver what was queued while we were offline
    /// (`<ib><offline_preview>`); [`Event::OfflineSyncCompleted`] follows.
    OfflineSyncPreview(OfflinePreview),
    /// A message arrived as a placeholder (`<unavailable>`: the sender did not encrypt it for
    /// this device); the client asked our phone to resend it, which then arrives as an
    /// [`Event::Message`] with [`MessageEvent::unavailable_request_id`] set.
    MessageUnavailable(UnavailableEvent),
    /// Someone is calling us (`<call><offer>`).
    CallOffer(CallEvent),
    /// A call ended (`<call><terminate>`): hung up, answered or rejected elsewhere, or timed out.
    CallTerminated(CallEvent),
    /// Our own account's device list changed (a companion was linked or removed); the cached
    /// list used to address our other devices was refreshed.
    OwnDevicesChanged {
        /// Every device of the account, the phone first.
        devices: Vec<Jid>,
    },
    /// App-state collections changed on the server (another device wrote to them); the
    /// client fetches them, and each change follows as [`Event::AppState`].
    AppStateChanged {
        /// Each changed collection with its new version.
        collections: Vec<AppStateVersion>,
    },
    /// One app-state change, applied and stored: a contact's name, a chat archived, pinned,
    /// muted or marked read, a message starred, a label, a setting.
    AppState(Arc<crate::appstate::AppStateEvent>),
    /// A collection is up to date at `version`.
    AppStateSynced {
        /// The collection.
        collection: crate::appstate::Collection,
        /// The version reached.
        version: u64,
    },
    /// A collection could not be synced even after a full resync and a key request; its
    /// stored state is the last one that verified. The next `server_sync` tries again.
    AppStateSyncFailed {
        /// The collection.
        collection: crate::appstate::Collection,
        /// What failed last.
        error: String,
    },
    /// A contact's (or our own) profile picture changed.
    Picture(PictureEvent),
    /// A contact changed their about text.
    AboutChanged {
        /// The contact.
        jid: Jid,
        /// The new text.
        text: String,
        /// When (unix seconds).
        timestamp: u64,
    },
    /// A contact gave us their trusted-contact (privacy) token; it is stored.
    PrivacyToken {
        /// Who sent it (the notification's `from`).
        from: Jid,
        /// The JID it is stored under (the contact's LID when the server names it).
        stored_as: Jid,
        /// The token's timestamp (unix seconds).
        timestamp: i64,
    },
    /// The account's reach-out time-lock was set or lifted (`<notification type="mex">`,
    /// whatsmeow `NotifyAccountReachoutTimelock`, Baileys `reachoutTimeLock`). While active,
    /// messages to people who gave the account no token are refused
    /// ([`crate::Error::ReachoutRestricted`]); [`crate::Client::reachout_timelock`] asks for
    /// the current state.
    ReachoutTimelock {
        /// The lock is in force.
        active: bool,
        /// When it ends (unix seconds), while active.
        until: Option<u64>,
        /// The server's reason (`enforcement_type`, `DEFAULT` when none is named).
        enforcement_type: String,
    },
    /// Our phone answered a media retry request (`<notification type="mediaretry">`, still
    /// encrypted); [`crate::Client::download_with_retry`] consumes these itself.
    MediaRetry(MediaRetryEvent),
}

/// What `<ib><offline_preview>` announces.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OfflinePreview {
    /// Stanzas in all.
    pub total: u64,
    /// Messages.
    pub messages: u64,
    /// Notifications.
    pub notifications: u64,
    /// Receipts.
    pub receipts: u64,
    /// Calls.
    pub calls: u64,
    /// App data.
    pub appdata: u64,
}

/// A message that arrived without content for this device.
#[derive(Clone, Debug)]
pub struct UnavailableEvent {
    /// Metadata.
    pub info: MessageInfo,
    /// The placeholder's `type` (`view_once`, …), when it has one.
    pub kind: Option<String>,
}

/// A call signal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallEvent {
    /// Who the stanza came from (the caller).
    pub from: Jid,
    /// The call's id.
    pub call_id: String,
    /// The device that created the call.
    pub creator: Jid,
    /// The caller's phone-number JID, when the creator is a LID.
    pub caller_pn: Option<Jid>,
    /// The group, for group calls.
    pub group: Option<Jid>,
    /// A video call (offers only).
    pub video: bool,
    /// Why it ended (terminations only, when the server says).
    pub reason: Option<String>,
    /// Server timestamp (unix seconds).
    pub timestamp: u64,
    /// Delivered from the offline queue.
    pub offline: bool,
}

/// An app-state collection and its version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppStateVersion {
    /// `critical_block`, `regular_high`, … .
    pub name: String,
    /// The version the server now holds.
    pub version: u64,
}

/// A profile picture change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PictureEvent {
    /// Whose picture.
    pub jid: Jid,
    /// Who changed it (a group admin, for groups).
    pub author: Option<Jid>,
    /// The new picture's id (`None` when removed or not said).
    pub picture_id: Option<String>,
    /// The picture was removed.
    pub removed: bool,
    /// When (unix seconds).
    pub timestamp: u64,
}

/// A `mediaretry` notification: our phone's encrypted answer to a media retry request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MediaRetryEvent {
    /// The message whose media was asked for.
    pub message_id: String,
    /// Its chat.
    pub chat: Jid,
    /// Whether we sent it.
    pub from_me: bool,
    /// Its sender in a group.
    pub sender: Option<Jid>,
    /// When (unix seconds).
    pub timestamp: u64,
    /// The answer.
    pub answer: MediaRetryAnswer,
}

/// What the phone answered to a media retry request.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum MediaRetryAnswer {
    /// An AES-GCM sealed `MediaRetryNotification` (key from the media key).
    Encrypted {
        /// `enc_p`.
        ciphertext: Vec<u8>,
        /// `enc_iv` (12 bytes).
        iv: Vec<u8>,
    },
    /// The server's error code (2: the phone does not have the message).
    Error {
        /// The code.
        code: u32,
    },
}

/// Who sent a message and where.
///
/// WhatsApp names a person by phone number (`…@s.whatsapp.net`) or by LID (`…@lid`); a
/// LID-migrated account's 1:1 chats arrive by LID. `chat` and `sender` are what the message was
/// addressed with; the `_pn` / `_lid` fields give both forms whenever the server or the store
/// told us the other one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageInfo {
    /// The message id.
    pub id: String,
    /// The chat (user or group JID, without device), as addressed.
    pub chat: Jid,
    /// The 1:1 chat's phone-number JID, when known (`None` for groups).
    pub chat_pn: Option<Jid>,
    /// The 1:1 chat's LID, when known (`None` for groups).
    pub chat_lid: Option<Jid>,
    /// The sending device.
    pub sender: Jid,
    /// The sender's phone-number JID (with the sending device), when known.
    pub sender_pn: Option<Jid>,
    /// The sender's LID (with the sending device), when known.
    pub sender_lid: Option<Jid>,
    /// Sent by one of our own devices.
    pub from_me: bool,
    /// Group chat.
    pub is_group: bool,
    /// Server timestamp (unix seconds).
    pub timestamp: u64,
    /// The sender's push name.
    pub push_name: Option<String>,
    /// Delivered from the offline queue.
    pub offline: bool,
}

/// A received message.
#[derive(Clone, Debug)]
pub struct MessageEvent {
    /// Metadata.
    pub info: MessageInfo,
    /// The decrypted message (the inner message of a device-sent copy).
    pub message: wa_proto::Message,
    /// Set when our phone resent this message after it had arrived as a placeholder
    /// ([`Event::MessageUnavailable`]): the id of the request that asked for it.
    pub unavailable_request_id: Option<String>,
}

impl MessageEvent {
    /// The plain text, for text and extended-text messages and media captions.
    pub fn text(&self) -> Option<&str> {
        let m = &self.message;
        m.conversation
            .as_deref()
            .or_else(|| m.extended_text_message.as_ref().and_then(|t| t.text.as_deref()))
            .or_else(|| m.image_message.as_ref().and_then(|t| t.caption.as_deref()))
            .or_else(|| m.video_message.as_ref().and_then(|t| t.caption.as_deref()))
    }
}

/// Kind of a receipt.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReceiptKind {
    /// Delivered to the device.
    Delivered,
    /// Delivered to our own other device.
    Sender,
    /// Delivered to a device that is not active.
    Inactive,
    /// Read.
    Read,
    /// Read while read receipts are off.
    ReadSelf,
    /// Played (voice note, view-once).
    Played,
    /// Played, own device.
    PlayedSelf,
    /// The server acknowledged our message.
    ServerAck,
    /// Another value.
    Other(String),
}

impl ReceiptKind {
    pub(crate) fn parse(t: Option<&str>) -> Self {
        match t {
            None | Some("") => Self::Delivered,
            Some("sender") => Self::Sender,
            Some("inactive") => Self::Inactive,
            Some("read") => Self::Read,
            Some("read-self") => Self::ReadSelf,
            Some("played") => Self::Played,
            Some("played-self") => Self::PlayedSelf,
            Some(o) => Self::Other(o.to_owned()),
        }
    }
}

/// A receipt for messages we sent.
#[derive(Clone, Debug)]
pub struct ReceiptEvent {
    /// The chat, as addressed.
    pub chat: Jid,
    /// The 1:1 chat's phone-number JID, when known (`None` for groups).
    pub chat_pn: Option<Jid>,
    /// The 1:1 chat's LID, when known (`None` for groups).
    pub chat_lid: Option<Jid>,
    /// The device (or group participant) that sent the receipt.
    pub sender: Jid,
    /// The receipt sender's phone-number JID, when known.
    pub sender_pn: Option<Jid>,
    /// The receipt sender's LID, when known.
    pub sender_lid: Option<Jid>,
    /// Message ids covered.
    pub ids: Vec<String>,
    /// The kind.
    pub kind: ReceiptKind,
    /// Timestamp (unix seconds).
    pub timestamp: u64,
    /// Delivered from the offline queue (for example again, after a connection ended before
    /// the receipt was acknowledged).
    pub offline: bool,
    /// `Some` while the server still waits for this receipt's acknowledgement: with
    /// [`crate::ClientBuilder::confirm_handled`] the application sends it with
    /// [`crate::Client::ack_receipt`] once it has durably recorded the receipt. `None`: the
    /// client already acknowledged it.
    pub ack: Option<Box<ReceiptAck>>,
}

/// The acknowledgement a received `<receipt>` still owes the server: the `<ack
/// class="receipt">` built from the receipt's id, sender (`from`, `participant`,
/// `recipient`) and type, and the connection it arrived on. WhatsApp keeps an unacknowledged
/// receipt and delivers it again (from the offline queue) on the next connection, so an
/// acknowledgement is only ever sent on the connection the receipt came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceiptAck {
    pub(crate) id: String,
    pub(crate) receipt_type: Option<String>,
    pub(crate) node: wa_binary::Node,
    pub(crate) connection: u64,
}

impl ReceiptAck {
    /// The receipt's id (the first message id it covers).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The receipt's `type` attribute (`None` for a plain delivery receipt).
    pub fn receipt_type(&self) -> Option<&str> {
        self.receipt_type.as_deref()
    }

    /// Which connection the receipt arrived on (a number unique within the process).
    pub fn connection(&self) -> u64 {
        self.connection
    }
}

/// A message that did not decrypt.
#[derive(Clone, Debug)]
pub struct UndecryptableEvent {
    /// Metadata.
    pub info: MessageInfo,
    /// What failed.
    pub error: String,
}

/// A presence update.
#[derive(Clone, Debug)]
pub struct PresenceEvent {
    /// The contact.
    pub from: Jid,
    /// Online now.
    pub available: bool,
    /// Last seen (unix seconds), when shared.
    pub last_seen: Option<u64>,
}

/// A typing indicator.
#[derive(Clone, Debug)]
pub struct ChatStateEvent {
    /// The chat.
    pub chat: Jid,
    /// Who (in groups, the participant).
    pub sender: Jid,
    /// `composing` (true) or `paused` (false).
    pub composing: bool,
    /// Recording audio rather than typing.
    pub audio: bool,
}

/// A group change notification.
#[derive(Clone, Debug)]
pub struct GroupUpdateEvent {
    /// The group.
    pub group: Jid,
    /// Who made the change.
    pub author: Option<Jid>,
    /// `add`, `remove`, `promote`, `demote`, `subject`, … (the notification's child tag).
    pub action: String,
    /// Participants affected.
    pub participants: Vec<Jid>,
    /// The new subject, for `subject`.
    pub subject: Option<String>,
    /// The new description, for `description` (`None` when it was deleted).
    pub description: Option<String>,
}

/// The event stream of a client (one per [`crate::Client::events`] call; every stream gets
/// every event emitted after it was created). Unbounded: events are never dropped, so keep
/// polling it.
#[derive(Debug)]
pub struct EventStream {
    rx: mpsc::UnboundedReceiver<Box<Event>>,
}

impl EventStream {
    pub(crate) fn new(rx: mpsc::UnboundedReceiver<Box<Event>>) -> Self {
        Self { rx }
    }

    /// The next event; `None` once the client is dropped.
    pub async fn recv(&mut self) -> Option<Event> {
        self.rx.recv().await.map(|e| *e)
    }
}

impl futures::Stream for EventStream {
    type Item = Event;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        self.rx.poll_recv(cx).map(|e| e.map(|e| *e))
    }
}

/// Fan-out of events to every live stream.
///
/// Events travel boxed: tokio's unbounded channel allocates its slots 32 at a time, and an
/// inline `Event` (over 200 bytes) would cost every stream of every idle client about
/// 7 KiB; one small allocation per delivered event is cheap next to what produced it.
#[derive(Debug, Default)]
pub(crate) struct EventBus {
    subscribers: std::sync::Mutex<Vec<mpsc::UnboundedSender<Box<Event>>>>,
}

impl EventBus {
    pub(crate) fn subscribe(&self) -> EventStream {
        let (tx, rx) = mpsc::unbounded_channel();
        self.lock().push(tx);
        EventStream::new(rx)
    }

    pub(crate) fn emit(&self, event: Event) {
        let mut subs = self.lock();
        subs.retain(|s| !s.is_closed());
        if let Some((last, rest)) = subs.split_last() {
            for s in rest {
                let _ = s.send(Box::new(event.clone()));
            }
            let _ = last.send(Box::new(event));
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<mpsc::UnboundedSender<Box<Event>>>> {
        // A panic while holding this lock cannot leave the Vec inconsistent.
        self.subscribers.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
