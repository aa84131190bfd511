//! The seam between the server and a WhatsApp connection.
//!
//! [`AccountRuntime`] is what the server asks of a live session: start connecting (by QR or
//! pairing code), disconnect, log out. Implementations report what happens through
//! [`SessionEvent`]s, which [`crate::accounts::apply_session_event`] turns into recorded state
//! transitions and outbox events. The production implementation wraps `wa-client`; until that
//! lands, the binary runs with no runtime and connect requests answer 503.

use std::future::Future;
use std::pin::Pin;

use serde::{Deserialize, Serialize};

/// How to link a new device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkMethod {
    Qr,
    /// Pairing code for this E.164 number (digits only, no `+`).
    PairingCode {
        phone_digits: String,
    },
}

/// Per-account settings a session starts with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionOptions {
    /// The push name to announce for the account (`None`: the name the owner chose on the phone
    /// stays; nothing is announced).
    pub push_name: Option<String>,
    /// The HTTP CONNECT proxy the account's connections go through (`None`: direct).
    pub proxy: Option<crate::proxy::ProxyUrl>,
}

/// Something a session reports about its connection.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum SessionEvent {
    /// A QR to show; `expires_at_ms` when it rotates.
    Qr {
        code: String,
        expires_at_ms: i64,
    },
    PairingCode {
        code: String,
        expires_at_ms: i64,
    },
    /// Logged in (or resumed); `phone` is E.164 when known.
    Connected {
        phone: Option<String>,
        push_name: Option<String>,
    },
    /// The transport dropped; the runtime will retry.
    Reconnecting {
        reason: String,
    },
    Disconnected {
        reason: String,
    },
    /// The device was unlinked (from the phone or by us).
    LoggedOut {
        reason: String,
    },
    Failed {
        reason: String,
    },
    /// WhatsApp refused the WhatsApp Web version the session reported as outdated (405) and no
    /// newer one was found; the session stopped. `message` says so in plain words.
    ClientOutdated {
        message: String,
    },
    /// WhatsApp set or lifted the account's reach-out time-lock (wa-client
    /// `Event::ReachoutTimelock`): while it is in force, messages to people who never gave the
    /// account a token are refused (463), so campaigns and bulk sends wait for its end.
    ReachoutTimelock {
        /// The lock is in force.
        active: bool,
        /// When it ends (ms since epoch), while active.
        until_ms: Option<i64>,
        /// WhatsApp's reason (`enforcement_type`, e.g. `RESTRICT_ALL_COMPANIONS`).
        enforcement_type: String,
    },
    /// The account's phone (or another of its devices) changed a chat's settings: archived,
    /// pinned, muted, marked read or unread (wa-client `Event::AppState`). `wa_chat` is the chat
    /// as WhatsApp's app state names it; `chat` as history does (its phone-number JID when
    /// known, else its LID).
    ChatSettingChanged {
        chat: String,
        wa_chat: String,
        change: ChatChange,
        /// When the device made the change (ms), as it said.
        at_ms: i64,
    },
    /// A contact's name in the phone's address book (app-state `contact` action); both names
    /// `None`: the entry was removed.
    ContactName {
        /// The contact's JID (its phone-number JID when known, else its LID).
        jid: String,
        /// Its LID, when known.
        lid: Option<String>,
        full_name: Option<String>,
        first_name: Option<String>,
    },
    /// Names the contacts chose for themselves (push names), as history sync carries them:
    /// `(JID, name)`, the JID its phone-number JID when known, else its LID.
    PushNames {
        names: Vec<(String, String)>,
    },
    /// A sent message's delivery status changed (from a receipt).
    MessageStatus {
        message_id: String,
        status: DeliveryStatus,
        at_ms: i64,
    },
    /// A message arrived on this account.
    IncomingMessage {
        message_id: String,
        /// The chat JID: a group, or for a 1:1 chat the contact's phone-number JID when known
        /// (one chat per contact however WhatsApp addressed the message), else its LID.
        chat: String,
        /// The 1:1 chat's LID, when known.
        chat_lid: Option<String>,
        /// The sender's JID (its phone-number JID when known, else its LID).
        from: String,
        /// The sender's LID, when known.
        from_lid: Option<String>,
        /// The sender's E.164 number when known.
        from_phone: Option<String>,
        push_name: Option<String>,
        /// Text body or media caption.
        text: Option<String>,
        media: Option<MediaKind>,
        timestamp_ms: i64,
        /// What the message says about its media file (with `media`).
        /// Boxed: the handle and metadata would make every session event this large.
        media_info: Option<Box<IncomingMedia>>,
        /// The WhatsApp id of the message this one quotes (a reply).
        quoted_id: Option<String>,
        /// What the message is when it is not plain text or media (a reaction, an edit, a
        /// location, …). Boxed for the same reason as `media_info`.
        detail: Option<Box<MessageDetail>>,
    },
}

/// What a message is beyond text and media: either an action on another message (reaction,
/// edit, revoke), which updates that message instead of becoming one, or a typed payload.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum MessageDetail {
    /// A reaction to the message `target_id` (WhatsApp id); an empty emoji removes it.
    Reaction {
        target_id: String,
        emoji: String,
    },
    /// The sender edited its message `target_id`; `text` is the new text.
    Edit {
        target_id: String,
        text: Option<String>,
    },
    /// The sender deleted its message `target_id` for everyone.
    Revoke {
        target_id: String,
    },
    Location(Location),
    Contact(ContactCard),
    /// A poll, with the secret its votes are sealed under (when it carries one).
    Poll {
        poll: Poll,
        secret: Option<Vec<u8>>,
    },
    /// A vote in the poll `target_id`, still sealed (opened by the server, which holds the
    /// poll's secret).
    PollVote(PollVoteCipher),
}

/// A sealed poll vote and what opens it besides the poll's secret.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PollVoteCipher {
    /// WhatsApp's id of the poll.
    pub target_id: String,
    /// The poll's creator and the voter, non-device JIDs in the chat's namespace.
    pub creator: String,
    pub voter: String,
    pub enc_payload: Vec<u8>,
    pub enc_iv: Vec<u8>,
}

impl PollVoteCipher {
    pub fn new(
        target_id: String,
        creator: String,
        voter: String,
        enc_payload: Vec<u8>,
        enc_iv: Vec<u8>,
    ) -> Self {
        Self { target_id, creator, voter, enc_payload, enc_iv }
    }
}

/// A shared location.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Location {
    /// Degrees, -90 to 90.
    pub latitude: f64,
    /// Degrees, -180 to 180.
    pub longitude: f64,
    /// The place's name.
    pub name: Option<String>,
    pub address: Option<String>,
}

/// A contact card.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ContactCard {
    /// The name shown on the card.
    pub display_name: String,
    /// The vCard (3.0) text.
    pub vcard: String,
}

/// A poll.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Poll {
    /// The question.
    pub name: String,
    /// The options, 2 to 12, each unique.
    pub options: Vec<String>,
    /// How many options a voter may pick (0: any number).
    pub selectable_count: u32,
}

/// The message an action (reaction, edit, revoke, read) applies to, as WhatsApp keys it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct MessageTarget {
    /// WhatsApp's id of the message.
    pub id: String,
    /// Its chat (a group, or the contact's phone-number JID or LID).
    pub chat: String,
    /// The 1:1 chat's LID, when known (a LID-migrated chat is keyed by it).
    pub chat_lid: Option<String>,
    /// We sent it.
    pub from_me: bool,
    /// Its sender in a group (the participant), when not us.
    pub sender: Option<String>,
}

impl MessageTarget {
    pub fn new(
        id: String,
        chat: String,
        chat_lid: Option<String>,
        from_me: bool,
        sender: Option<String>,
    ) -> Self {
        Self { id, chat, chat_lid, from_me, sender }
    }
}

/// One change to a chat's settings, as the account's app state carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChatChange {
    Archived(bool),
    Pinned(bool),
    /// Muted until (ms since the epoch; `-1`: always), or unmuted (`None`).
    Muted(Option<i64>),
    /// Marked read (`true`) or unread.
    Read(bool),
}

/// A typing indicator state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChatState {
    Typing,
    /// Recording a voice note.
    Recording,
    /// Stopped typing or recording.
    Paused,
}

/// The media file of an incoming message: metadata to record, and the runtime's own handle to
/// fetch and decrypt it later through [`AccountRuntime::download_media`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct IncomingMedia {
    pub mimetype: Option<String>,
    pub file_name: Option<String>,
    /// Plaintext size as announced by the sender.
    pub size: Option<u64>,
    /// Opaque to the server: stored as is and handed back to `download_media`.
    pub handle: Vec<u8>,
}

impl IncomingMedia {
    pub fn new(
        mimetype: Option<String>,
        file_name: Option<String>,
        size: Option<u64>,
        handle: Vec<u8>,
    ) -> Self {
        Self { mimetype, file_name, size, handle }
    }
}

/// Where a message is on its way to the recipient. Ordered: a status never moves backwards
/// (except to `Failed`, which the server handles explicitly).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    Pending,
    Sent,
    Delivered,
    Read,
    Played,
    Failed,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Sent => "sent",
            Self::Delivered => "delivered",
            Self::Read => "read",
            Self::Played => "played",
            Self::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => Self::Pending,
            "sent" => Self::Sent,
            "delivered" => Self::Delivered,
            "read" => Self::Read,
            "played" => Self::Played,
            "failed" => Self::Failed,
            _ => return None,
        })
    }
}

/// The kind of a media message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MediaKind {
    Image,
    Video,
    Audio,
    /// Push-to-talk audio.
    Voice,
    Document,
    Sticker,
}

impl MediaKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Image => "image",
            Self::Video => "video",
            Self::Audio => "audio",
            Self::Voice => "voice",
            Self::Document => "document",
            Self::Sticker => "sticker",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "image" => Self::Image,
            "video" => Self::Video,
            "audio" => Self::Audio,
            "voice" => Self::Voice,
            "document" => Self::Document,
            "sticker" => Self::Sticker,
            _ => return None,
        })
    }
}

/// What to send. Media bytes are already fetched and validated by the server.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum OutgoingContent {
    Text {
        body: String,
        /// Our id of the message this replies to.
        quoted_id: Option<String>,
    },
    Media {
        kind: MediaKind,
        data: bytes::Bytes,
        mimetype: String,
        caption: Option<String>,
        file_name: Option<String>,
        /// Our id or WhatsApp's id of the message this replies to (resolved to the WhatsApp
        /// id before the runtime sees it).
        quoted_id: Option<String>,
    },
    Location {
        location: Location,
        quoted_id: Option<String>,
    },
    Contact {
        card: ContactCard,
        quoted_id: Option<String>,
    },
    /// A poll; `secret` (32 random bytes, stored with it) seals its votes.
    Poll {
        poll: Poll,
        secret: [u8; 32],
    },
    /// A reaction to `target` (an empty emoji removes ours).
    Reaction {
        target: MessageTarget,
        emoji: String,
    },
    /// New text for our message `target`, or its new caption when `media` names the kind of
    /// media message it is (image, video or document).
    Edit {
        target: MessageTarget,
        text: String,
        media: Option<MediaKind>,
    },
    /// Deletes our message `target` for everyone.
    Revoke {
        target: MessageTarget,
    },
}

impl OutgoingContent {
    /// The message this one replies to, for the kinds that can reply.
    pub fn quoted_id_mut(&mut self) -> Option<&mut Option<String>> {
        match self {
            Self::Text { quoted_id, .. }
            | Self::Media { quoted_id, .. }
            | Self::Location { quoted_id, .. }
            | Self::Contact { quoted_id, .. } => Some(quoted_id),
            _ => None,
        }
    }
}

/// A message the runtime handed to WhatsApp.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SentMessage {
    pub message_id: String,
    pub timestamp_ms: i64,
    /// The 1:1 chat's LID, when the runtime knows it (a LID-migrated account sends to it).
    pub chat_lid: Option<String>,
}

impl SentMessage {
    pub fn new(message_id: String, timestamp_ms: i64) -> Self {
        Self { message_id, timestamp_ms, chat_lid: None }
    }

    /// The chat's LID beside the phone number it was sent to.
    pub fn with_chat_lid(mut self, lid: Option<String>) -> Self {
        self.chat_lid = lid;
        self
    }
}

/// The answer of an is-on-WhatsApp query for one number.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct NumberCheck {
    /// Digits only, no `+`.
    pub phone: String,
    pub on_whatsapp: bool,
    pub jid: Option<String>,
}

impl NumberCheck {
    pub fn new(phone: String, on_whatsapp: bool, jid: Option<String>) -> Self {
        Self { phone, on_whatsapp, jid }
    }
}

/// Errors a runtime returns for a command.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RuntimeError {
    #[error("account is not running")]
    NotRunning,
    /// The message went out but WhatsApp's ack never came (the connection ended under it, or
    /// the ack timed out): it may have reached the recipient. Not a failure: the row stays
    /// `pending`, due again shortly, and is sent again under the same WhatsApp id (recipients
    /// keep one copy per id) unless a receipt naming that id settles it first.
    #[error("unconfirmed: {0}")]
    Unconfirmed(String),
    /// Nothing went out: the session's live connection has not read WhatsApp's offline queue
    /// yet ([`AccountRuntime::send_with_id_caught_up`]); ask again shortly.
    #[error("the session has not read WhatsApp's offline queue yet")]
    AwaitingCatchUp,
    /// The recipient has no WhatsApp account; the message did not go out (a repeat fails the
    /// same way).
    #[error("{0} is not on WhatsApp")]
    NotOnWhatsApp(String),
    /// WhatsApp refused a first contact (error 463, with the server's text): the account may
    /// not reach out to this recipient now. A retry would be another reach-out, so nothing
    /// here retries it.
    #[error("restricted: WhatsApp refused this first contact (463): {0}")]
    ReachoutRestricted(String),
    /// WhatsApp refused a group request.
    #[error("{0}")]
    Group(GroupRefusal),
    #[error("{0}")]
    Failed(String),
}

/// Why WhatsApp refused a group request (its error codes, as whatsmeow maps them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GroupRefusal {
    /// No such group (404).
    #[error("group not found")]
    NotFound,
    /// The account is not in the group, or the change is for admins only (403).
    #[error("the account is not a participant of the group, or the change is for admins only")]
    Forbidden,
    /// Only admins may do this (401).
    #[error("only group admins may do this")]
    NotAdmin,
    /// The invite link opens no group (406).
    #[error("the invite link is not valid")]
    InviteInvalid,
    /// The invite link was revoked (410).
    #[error("the invite link was revoked")]
    InviteRevoked,
    /// The description changed meanwhile (409).
    #[error("the group description changed meanwhile; retry")]
    Conflict,
}

/// A group member's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum GroupRole {
    Member,
    Admin,
    /// The creator.
    Superadmin,
}

/// A group member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct GroupMember {
    /// As the group names the member: a phone-number JID, or a LID in LID-addressed groups.
    pub jid: String,
    /// E.164 (`+15550001111`), when WhatsApp gives it.
    pub phone: Option<String>,
    /// The member's LID, when WhatsApp gives it.
    pub lid: Option<String>,
    pub role: GroupRole,
}

/// A group as WhatsApp describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct GroupInfo {
    /// The group JID (`…@g.us`): the `to` of a send, the `chat` in history.
    pub jid: String,
    pub subject: String,
    pub description: Option<String>,
    /// The creator's JID, when known.
    pub creator: Option<String>,
    /// Creation time (ms since the epoch).
    pub created_at: i64,
    /// `lid` when WhatsApp names members by LID, else `pn`.
    pub addressing_mode: String,
    pub participants: Vec<GroupMember>,
}

/// A participant change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ParticipantAction {
    Add,
    Remove,
    /// Make admin.
    Promote,
    /// Take admin away.
    Demote,
}

/// The outcome of a participant change for one participant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ParticipantOutcome {
    /// The participant as WhatsApp named it in its answer.
    pub jid: String,
    /// `ok`, or why WhatsApp refused this one participant.
    pub status: String,
    /// WhatsApp's code for a refused participant (e.g. 404: not on WhatsApp, 403: their
    /// privacy settings, 409: already a member).
    pub error_code: Option<u16>,
}

/// A group request to a runtime. Groups are named by JID (`…@g.us`), people by JID or E.164
/// digits.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum GroupCommand {
    /// The groups the account is in.
    List,
    Create {
        subject: String,
        participants: Vec<String>,
    },
    Info {
        group: String,
    },
    Participants {
        group: String,
        action: ParticipantAction,
        participants: Vec<String>,
    },
    Subject {
        group: String,
        subject: String,
    },
    /// `None` deletes the description.
    Description {
        group: String,
        description: Option<String>,
    },
    /// The invite link; `reset` revokes the current one first.
    InviteLink {
        group: String,
        reset: bool,
    },
    /// Join by an invite link or code.
    Join {
        link: String,
    },
    Leave {
        group: String,
    },
}

/// A runtime's answer to a [`GroupCommand`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum GroupReply {
    Groups(Vec<GroupInfo>),
    Group(GroupInfo),
    Participants(Vec<ParticipantOutcome>),
    InviteLink(String),
    /// Joined: the group's JID.
    Joined(String),
    Done,
}

/// A new WhatsApp message id in WhatsApp Web's format (`3EB0` + 18 hex digits, 72 random bits).
/// The server chooses it and stores it with the message before sending, so that a send
/// interrupted by a crash is retried under the same id: the recipient's devices keep one copy.
pub fn new_wa_message_id() -> String {
    let bytes: [u8; 9] = rand::random();
    format!("3EB0{}", hex::encode_upper(bytes))
}

pub type RuntimeFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, RuntimeError>> + Send + 'a>>;

/// Sink for a session's events: the server's side of the seam.
/// Runtimes await each `emit`, so events are applied in order and a slow database slows the
/// session down instead of queueing without bound.
pub trait SessionEvents: Send + Sync + 'static {
    fn emit<'a>(
        &'a self,
        tenant_id: &'a str,
        account_id: &'a str,
        event: SessionEvent,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

    /// [`SessionEvents::emit`], answering whether the event is now durably recorded. Runtimes
    /// confirm an incoming message to WhatsApp's client store (so it is not replayed at the
    /// next start) only after `true`. Sinks that record nothing keep the default (`true` once
    /// emitted).
    fn record<'a>(
        &'a self,
        tenant_id: &'a str,
        account_id: &'a str,
        event: SessionEvent,
    ) -> Pin<Box<dyn Future<Output = bool> + Send + 'a>> {
        Box::pin(async move {
            self.emit(tenant_id, account_id, event).await;
            true
        })
    }
}

/// Drives live WhatsApp sessions, one per account.
pub trait AccountRuntime: Send + Sync + 'static {
    /// Starts (or resumes, when stored credentials exist) the session of `account_id`.
    fn connect<'a>(
        &'a self,
        tenant_id: &'a str,
        account_id: &'a str,
        method: LinkMethod,
    ) -> RuntimeFuture<'a, ()>;
    /// [`AccountRuntime::connect`] with per-account settings. Runtimes without any keep the
    /// default, which ignores them.
    fn connect_with<'a>(
        &'a self,
        tenant_id: &'a str,
        account_id: &'a str,
        method: LinkMethod,
        options: SessionOptions,
    ) -> RuntimeFuture<'a, ()> {
        let _ = options;
        self.connect(tenant_id, account_id, method)
    }
    /// Closes the connection, keeping credentials.
    fn disconnect<'a>(&'a self, tenant_id: &'a str, account_id: &'a str) -> RuntimeFuture<'a, ()>;
    /// Unlinks the device and forgets its credentials.
    fn logout<'a>(&'a self, tenant_id: &'a str, account_id: &'a str) -> RuntimeFuture<'a, ()>;
    /// Sends `content` to `to`, a JID string (user or group) or E.164 digits.
    /// Errors: [`RuntimeError::NotRunning`] when the account is not connected.
    fn send<'a>(
        &'a self,
        tenant_id: &'a str,
        account_id: &'a str,
        to: &'a str,
        content: OutgoingContent,
    ) -> RuntimeFuture<'a, SentMessage>;
    /// [`AccountRuntime::send`] under a WhatsApp message id the server chose and stored
    /// beforehand ([`new_wa_message_id`]): a retry after a crash reuses it, so the recipient
    /// sees one message. Runtimes that cannot choose ids keep the default, which ignores it
    /// (a retry may then show twice).
    fn send_with_id<'a>(
        &'a self,
        tenant_id: &'a str,
        account_id: &'a str,
        to: &'a str,
        wa_message_id: &'a str,
        content: OutgoingContent,
    ) -> RuntimeFuture<'a, SentMessage> {
        let _ = wa_message_id;
        self.send(tenant_id, account_id, to, content)
    }
    /// [`AccountRuntime::send_with_id`] for the queue, whose rows may have gone out before
    /// unconfirmed: it goes out only on a connection whose offline queue the session has read
    /// ([`AccountRuntime::caught_up`]), checked where the stanza is written, so a connection
    /// that comes up between a look at `caught_up` and the send cannot carry it before the
    /// receipt that would settle the row. Otherwise [`RuntimeError::AwaitingCatchUp`] and
    /// nothing goes out. Runtimes without such a queue keep the default (a plain send).
    fn send_with_id_caught_up<'a>(
        &'a self,
        tenant_id: &'a str,
        account_id: &'a str,
        to: &'a str,
        wa_message_id: &'a str,
        content: OutgoingContent,
    ) -> RuntimeFuture<'a, SentMessage> {
        self.send_with_id(tenant_id, account_id, to, wa_message_id, content)
    }
    /// Gets the session ready to send to all of `to` (JIDs or E.164 digits) soon, in batched
    /// queries. Best effort; the default does nothing.
    fn prepare_recipients<'a>(
        &'a self,
        tenant_id: &'a str,
        account_id: &'a str,
        to: &'a [String],
    ) -> RuntimeFuture<'a, ()> {
        let _ = (tenant_id, account_id, to);
        Box::pin(async { Ok(()) })
    }
    /// Asks WhatsApp which of `phones` (E.164 digits) have an account.
    fn check_numbers<'a>(
        &'a self,
        tenant_id: &'a str,
        account_id: &'a str,
        phones: &'a [String],
    ) -> RuntimeFuture<'a, Vec<NumberCheck>>;
    /// Stops the session (if any) and deletes everything the auth store holds for the account
    /// (keys, sessions, credentials), without telling WhatsApp. Used when an account is deleted.
    /// Runtimes that store nothing keep the default.
    fn forget<'a>(&'a self, tenant_id: &'a str, account_id: &'a str) -> RuntimeFuture<'a, ()> {
        let _ = (tenant_id, account_id);
        Box::pin(async { Ok(()) })
    }
    /// Sends read receipts for received messages of one chat (`sender`: the participant, in
    /// groups). Runtimes without receipts keep the default, which refuses.
    fn mark_read<'a>(
        &'a self,
        tenant_id: &'a str,
        account_id: &'a str,
        targets: &'a [MessageTarget],
    ) -> RuntimeFuture<'a, ()> {
        let _ = (tenant_id, account_id, targets);
        Box::pin(async { Err(RuntimeError::Failed("this runtime cannot send read receipts".into())) })
    }
    /// Whether the account's session has taken in what WhatsApp queued for it while it was
    /// away (receipts among it), so that a queued message whose earlier attempt is unconfirmed
    /// is not sent again before the receipt that would settle it is read. `true` when there is
    /// no session (the send then reports [`RuntimeError::NotRunning`]) and for runtimes without
    /// such a queue (the default).
    fn caught_up(&self, tenant_id: &str, account_id: &str) -> bool {
        let _ = (tenant_id, account_id);
        true
    }
    /// Shows (or stops showing) typing or recording in the chat `to`. Runtimes without chat
    /// states keep the default, which refuses.
    fn send_chat_state<'a>(
        &'a self,
        tenant_id: &'a str,
        account_id: &'a str,
        to: &'a str,
        state: ChatState,
    ) -> RuntimeFuture<'a, ()> {
        let _ = (tenant_id, account_id, to, state);
        Box::pin(async { Err(RuntimeError::Failed("this runtime cannot send typing indicators".into())) })
    }
    /// Changes a chat's settings on every device of the account (an app-state patch the
    /// phone applies). `chat` is the chat as WhatsApp's app state names it. Runtimes without
    /// app state keep the default, which refuses.
    fn change_chat<'a>(
        &'a self,
        tenant_id: &'a str,
        account_id: &'a str,
        chat: &'a str,
        change: ChatChange,
    ) -> RuntimeFuture<'a, ()> {
        let _ = (tenant_id, account_id, chat, change);
        Box::pin(async { Err(RuntimeError::Failed("this runtime cannot change chat settings".into())) })
    }
    /// Carries out a group request. Runtimes without groups keep the default, which refuses.
    fn group<'a>(
        &'a self,
        tenant_id: &'a str,
        account_id: &'a str,
        command: GroupCommand,
    ) -> RuntimeFuture<'a, GroupReply> {
        let _ = (tenant_id, account_id, command);
        Box::pin(async { Err(RuntimeError::Failed("this runtime cannot manage groups".into())) })
    }
    /// Fetches and decrypts the media file of a received message, given the
    /// [`IncomingMedia::handle`] this runtime reported. Runtimes that never report incoming
    /// media keep the default, which refuses.
    fn download_media<'a>(
        &'a self,
        tenant_id: &'a str,
        account_id: &'a str,
        handle: &'a [u8],
    ) -> RuntimeFuture<'a, Vec<u8>> {
        let _ = (tenant_id, account_id, handle);
        Box::pin(async { Err(RuntimeError::Failed("this runtime cannot download media".into())) })
    }
}
