//! Errors of the client, one enum; each variant says whether the peer, the network, the
//! store or the caller was at fault.

use std::time::Duration;

/// Everything the client can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The WebSocket could not be opened or broke.
    #[error("websocket: {0}")]
    WebSocket(String),
    /// Framing, handshake or transport cipher failure (includes certificate refusal).
    #[error("noise: {0}")]
    Noise(#[from] wa_noise::Error),
    /// The server sent bytes that are not a valid binary node.
    #[error("binary node decode: {0}")]
    Decode(#[from] wa_binary::DecodeError),
    /// A node we built could not be encoded (a bug or an oversized payload).
    #[error("binary node encode: {0}")]
    Encode(#[from] wa_binary::EncodeError),
    /// A stanza is missing something the protocol requires.
    #[error("malformed stanza from server: {0}")]
    Malformed(String),
    /// A protobuf from the network did not decode.
    #[error("protobuf {what}: {source}")]
    Protobuf {
        /// Which message.
        what: &'static str,
        /// The decoder's error.
        source: prost::DecodeError,
    },
    /// The server refused a group request.
    #[error("group: {0}")]
    Group(#[from] crate::groups::GroupError),
    /// The server answered an IQ with an error.
    #[error("server returned error {code} ({text}) to {what}")]
    Iq {
        /// What we asked.
        what: String,
        /// The error code.
        code: u16,
        /// The error text.
        text: String,
    },
    /// No answer in time.
    #[error("timed out after {after:?} waiting for {what}")]
    Timeout {
        /// What we waited for.
        what: String,
        /// How long.
        after: Duration,
    },
    /// The server refused a message with error 463: the account may not reach out to this
    /// recipient now (restricted, time-locked, or over its limit of new contacts, and the
    /// recipient gave it no token). Retrying counts as another reach-out and worsens the
    /// restriction (Baileys messages-recv.ts), so the library never retries it and callers
    /// should not either.
    #[error("reach-out restricted (463): {text}")]
    ReachoutRestricted {
        /// The server's text, or a description when it sent none.
        text: String,
    },
    /// The operation needs a live, logged-in connection.
    #[error("not connected")]
    NotConnected,
    /// A message stanza was handed to the connection but the server's ack never came (the
    /// connection ended, or the ack timed out): the message may have reached WhatsApp or not.
    /// Unlike [`Error::NotConnected`] this is no proof that nothing went out, so it must not
    /// be reported as a failure; send it again under the same `id` (recipients keep one copy
    /// per message id) or wait for a receipt naming `id`.
    #[error("message {id} went out but {cause}; it may have reached WhatsApp")]
    Unacknowledged {
        /// The message id, to resend under or to match receipts against.
        id: String,
        /// What happened instead of the ack.
        cause: AckLoss,
    },
    /// The operation needs a paired account.
    #[error("not logged in (no paired account in the store)")]
    NotLoggedIn,
    /// The client was shut down.
    #[error("client closed")]
    Closed,
    /// The auth store failed.
    #[error("store: {0}")]
    Store(#[from] wa_store::Error),
    /// Stored data is unusable (a corrupt record, a key of the wrong length).
    #[error("stored data is invalid: {0}")]
    CorruptStore(String),
    /// Signal encryption or decryption failed.
    #[error("signal: {0}")]
    Signal(#[from] wa_signal::SignalError),
    /// Pairing failed (a bad HMAC or signature from the phone, a bad code).
    #[error("pairing: {0}")]
    Pairing(String),
    /// The proxy could not be reached or refused to tunnel.
    #[error("proxy {0}")]
    Proxy(String),
    /// Media transfer or integrity check failed.
    #[error("media: {0}")]
    Media(String),
    /// The media hosts no longer have the file (HTTP 404 or 410): too old. Our phone can
    /// upload it again ([`crate::Client::download_with_retry`]).
    #[error("media is gone from the media hosts (HTTP {status})")]
    MediaGone {
        /// 404 or 410.
        status: u16,
    },
    /// Our phone could not upload a file again.
    #[error("media retry: {0}")]
    MediaRetry(#[from] crate::mediaretry::MediaRetryError),
    /// The caller passed an invalid argument.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The recipient has no WhatsApp account: a usync query found no LID (LID-addressed
    /// accounts) or no device for it. Sending to it again fails the same way.
    #[error("{0} is not on WhatsApp")]
    NotOnWhatsApp(String),
    /// The current WhatsApp Web version could not be fetched (network, HTTP status, or no
    /// `client_revision` in `sw.js`).
    #[error("fetching the current WhatsApp Web version: {0}")]
    VersionFetch(String),
    /// Presence carries the account's push name, and none is known: set one with
    /// [`crate::ClientBuilder::push_name`] (whatsmeow refuses the same way, `ErrNoPushName`).
    #[error("no push name to send with the presence (set ClientBuilder::push_name)")]
    NoPushName,
    /// App-state sync failed: a MAC or LTHash mismatch, a missing key, a malformed patch.
    #[error("app state: {0}")]
    AppState(#[from] wa_appstate::AppStateError),
    /// The server refused an app-state patch or fetch for a collection (`<error code>`).
    #[error("app state {collection}: the server answered {code}")]
    AppStateRefused {
        /// The collection.
        collection: String,
        /// The error code (409: the patch was built on a stale version).
        code: String,
    },
}

/// The client's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<wa_binary::AttrError> for Error {
    fn from(e: wa_binary::AttrError) -> Self {
        Error::Malformed(e.to_string())
    }
}

impl From<wa_binary::JidError> for Error {
    fn from(e: wa_binary::JidError) -> Self {
        Error::Malformed(format!("jid: {e}"))
    }
}

impl From<wa_crypto::CryptoError> for Error {
    fn from(e: wa_crypto::CryptoError) -> Self {
        Error::CorruptStore(format!("key: {e}"))
    }
}

pub(crate) fn protobuf(what: &'static str) -> impl FnOnce(prost::DecodeError) -> Error {
    move |source| Error::Protobuf { what, source }
}

/// Why a message's server ack never came ([`Error::Unacknowledged`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AckLoss {
    /// The connection ended before the ack arrived.
    #[error("the connection ended before the server's ack")]
    ConnectionEnded,
    /// No ack within the wait.
    #[error("no server ack came within {0:?}")]
    TimedOut(std::time::Duration),
}
