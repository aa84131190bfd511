//! Errors of the Signal layer.
//!
//! Variants separate a malformed peer (bytes that do not parse), a cryptographic rejection
//! (bad MAC or signature), a state mismatch (no session, unknown prekey, duplicate) and a policy
//! refusal (too far ahead, identity changed). Every failing operation leaves its record untouched.

use wa_crypto::{CryptoError, PublicKey};

/// Everything that can go wrong in `wa-signal`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SignalError {
    /// The message is shorter than its fixed framing (version byte, MAC or signature).
    #[error("{what} is too short ({len} bytes)")]
    TooShort {
        /// Which message.
        what: &'static str,
        /// Its length.
        len: usize,
    },
    /// The version byte is not 0x33 (Signal v3).
    #[error("unsupported message version byte {0:#04x} (expected 0x33)")]
    UnsupportedVersion(u8),
    /// The protobuf body did not decode.
    #[error("malformed {what}: {reason}")]
    Malformed {
        /// Which message or record.
        what: &'static str,
        /// Why.
        reason: String,
    },
    /// A required protobuf field is absent.
    #[error("{what} lacks required field `{field}`")]
    MissingField {
        /// Which message or record.
        what: &'static str,
        /// Which field.
        field: &'static str,
    },
    /// A key inside a message or record is not a valid Curve25519 key encoding.
    #[error("invalid key in {what}: {source}")]
    InvalidKey {
        /// Where the key was.
        what: &'static str,
        /// The underlying error.
        #[source]
        source: CryptoError,
    },
    /// The truncated MAC of a SignalMessage does not match: forged, corrupted, or for another session.
    #[error("bad MAC")]
    BadMac,
    /// The XEdDSA signature of a SenderKeyMessage does not verify.
    #[error("bad sender-key message signature")]
    BadSignature,
    /// The signed prekey of a bundle is not signed by the bundle's identity key.
    #[error("signed prekey signature of the bundle does not verify")]
    BadSignedPreKeySignature,
    /// The body decrypted but its padding is wrong (forged or corrupted).
    #[error("ciphertext body does not decrypt: {0}")]
    BadCiphertext(#[source] CryptoError),
    /// A Diffie-Hellman agreement failed (a low-order peer key).
    #[error("key agreement failed: {0}")]
    Agreement(#[source] CryptoError),
    /// There is no session to decrypt (or encrypt) with.
    #[error("no session")]
    NoSession,
    /// No state in the record matches the message (its ratchet chain is unknown or pruned).
    #[error("no session state matches the message")]
    NoMatchingState,
    /// The PreKeySignalMessage names a signed prekey we do not hold.
    #[error("unknown signed prekey id {0}")]
    UnknownSignedPreKey(u32),
    /// The PreKeySignalMessage names a one-time prekey we do not hold (already used or never issued).
    #[error("unknown one-time prekey id {0}")]
    UnknownPreKey(u32),
    /// The message key was already used (a duplicate delivery) or was pruned long ago.
    #[error("duplicate message (counter {counter} already consumed)")]
    DuplicateMessage {
        /// The counter (or sender-key iteration) of the message.
        counter: u32,
    },
    /// The message is further ahead in its chain than the configured limit allows.
    #[error("message is {ahead} messages ahead of its chain (limit {limit})")]
    TooFarAhead {
        /// How many message keys would have to be skipped.
        ahead: u32,
        /// The configured limit.
        limit: u32,
    },
    /// The peer's identity key differs from the one on record and policy refuses changes.
    #[error("remote identity key changed (was {previous:?}, now {new:?})")]
    IdentityChanged {
        /// The identity on record.
        previous: PublicKey,
        /// The identity in the message or bundle.
        new: PublicKey,
    },
    /// No sender-key state with this key id.
    #[error("no sender-key state for key id {0}")]
    UnknownSenderKeyId(u32),
    /// No sender-key state at all.
    #[error("no sender-key state")]
    NoSenderKeyState,
    /// Our own sender-key state cannot sign (it was received, not created).
    #[error("sender-key state has no signing private key")]
    NotASenderKeyOwner,
    /// A chain counter would overflow u32.
    #[error("chain counter overflow")]
    CounterOverflow,
    /// A stored record is from a newer, unknown format version.
    #[error("record format version {found} is newer than supported {supported}")]
    UnsupportedRecordVersion {
        /// Version found.
        found: u32,
        /// Newest supported.
        supported: u32,
    },
}

impl SignalError {
    pub(crate) fn malformed(what: &'static str, e: impl core::fmt::Display) -> Self {
        SignalError::Malformed { what, reason: e.to_string() }
    }
    pub(crate) fn key(what: &'static str) -> impl FnOnce(CryptoError) -> Self {
        move |source| SignalError::InvalidKey { what, source }
    }
}
