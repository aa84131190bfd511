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
}

/// Something a session reports about its connection.
#[derive(Debug, Clone, PartialEq, Eq)]
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
    },
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
#[derive(Debug, Clone, PartialEq, Eq)]
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
    },
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
    /// The recipient has no WhatsApp account; the message did not go out (a repeat fails the
    /// same way).
    #[error("{0} is not on WhatsApp")]
    NotOnWhatsApp(String),
    #[error("{0}")]
    Failed(String),
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
