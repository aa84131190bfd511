//! One error type for the crate. Each variant belongs to one [`ErrorKind`], so a caller can
//! tell a malformed patch (drop it, resync) from a MAC or LTHash mismatch (tampering or
//! a diverged local state: fetch a snapshot), a missing key (wait for a key share) and a
//! version problem (refetch from the local version).

use crate::keys::KeyId;

/// What class of failure an [`AppStateError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The bytes do not have the shape of a patch, snapshot, record or blob.
    Malformed,
    /// A MAC or the LTHash did not verify: tampered bytes, a wrong key, or a local state
    /// that no longer matches the server's.
    Integrity,
    /// A record or patch names an app-state key we do not hold.
    MissingKey,
    /// The version is not the next one, or does not fit WhatsApp's 32-bit MAC encoding.
    Version,
}

/// Why an app-state operation failed. Nothing is changed when one is returned: the state
/// passed in is borrowed, never mutated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AppStateError {
    /// A protobuf did not decode.
    #[error("{what} does not decode: {source}")]
    Protobuf {
        /// Which message.
        what: &'static str,
        /// prost's reason.
        source: wa_proto::DecodeError,
    },
    /// A required field is absent or has the wrong length.
    #[error("malformed {what}")]
    Malformed {
        /// What is wrong, e.g. "record index MAC (32 bytes)".
        what: &'static str,
    },
    /// A mutation's operation is neither SET nor REMOVE (an open proto enum).
    #[error("mutation #{mutation}: unknown operation {value}")]
    UnknownOperation {
        /// Position of the mutation (records, for a snapshot).
        mutation: usize,
        /// The operation number.
        value: i32,
    },
    /// The decrypted value's MAC verified but its padding did not: the sender encrypted
    /// garbage under a valid key, which no MAC check can catch earlier.
    #[error("mutation #{mutation}: value decrypts with invalid padding")]
    BadPadding {
        /// Position of the mutation.
        mutation: usize,
    },
    /// The index of a mutation is not a JSON array of strings.
    #[error("mutation #{mutation}: index is not a JSON array of strings")]
    BadIndex {
        /// Position of the mutation.
        mutation: usize,
    },
    /// A collection name outside the five WhatsApp has.
    #[error("unknown app-state collection {0:?}")]
    UnknownCollection(String),
    /// The patch still points to external mutations that were not attached.
    #[error("patch v{version} has external mutations that were not attached")]
    ExternalMutationsNotAttached {
        /// The patch version.
        version: u64,
    },
    /// A sync response node is not shaped like one.
    #[error("sync response: {0}")]
    BadSyncResponse(&'static str),
    /// A media blob (snapshot, external mutations, history) failed its hashes or MAC.
    #[error("blob: {0}")]
    Blob(#[from] wa_crypto::media::MediaError),
    /// A history blob does not inflate, or inflates beyond the limit.
    #[error("history blob: {0}")]
    Inflate(String),

    /// No key with this id in the key ring.
    #[error("no app-state key {key_id}")]
    MissingKey {
        /// The key id as standard base64.
        key_id: KeyId,
    },

    /// A record's value MAC does not verify.
    #[error("mutation #{mutation}: value MAC mismatch")]
    ValueMacMismatch {
        /// Position of the mutation.
        mutation: usize,
    },
    /// A record's index MAC is not the HMAC of its decrypted index.
    #[error("mutation #{mutation}: index MAC mismatch")]
    IndexMacMismatch {
        /// Position of the mutation.
        mutation: usize,
    },
    /// The patch MAC (over the snapshot MAC, every value MAC, version and name) does not verify.
    #[error("patch v{version}: patch MAC mismatch")]
    PatchMacMismatch {
        /// The patch version.
        version: u64,
    },
    /// The snapshot MAC over the resulting LTHash does not verify: the state we would have
    /// after this patch or snapshot is not the one the server has.
    #[error("v{version}: snapshot MAC (LTHash) mismatch")]
    SnapshotMacMismatch {
        /// The version the MAC was computed for.
        version: u64,
    },

    /// The patch is not the next one after the local version.
    #[error("patch v{got} does not follow local v{local} (expected v{expected})", expected = local.wrapping_add(1))]
    VersionMismatch {
        /// The local version.
        local: u64,
        /// The patch's version.
        got: u64,
    },
    /// A version of 2^32 or more: WhatsApp's MACs carry only the low 32 bits of the version
    /// (Baileys writes it with `writeUint32BE`), so such a version cannot be authenticated.
    #[error("version {0} does not fit the 32-bit MAC encoding")]
    VersionOutOfRange(u64),
}

impl AppStateError {
    /// The class of this failure.
    pub fn kind(&self) -> ErrorKind {
        use AppStateError::*;
        match self {
            Protobuf { .. }
            | Malformed { .. }
            | UnknownOperation { .. }
            | BadPadding { .. }
            | BadIndex { .. }
            | UnknownCollection(_)
            | ExternalMutationsNotAttached { .. }
            | BadSyncResponse(_)
            | Inflate(_) => ErrorKind::Malformed,
            Blob(e) => match e {
                wa_crypto::media::MediaError::BadLength(_) | wa_crypto::media::MediaError::BadPadding => {
                    ErrorKind::Malformed
                }
                _ => ErrorKind::Integrity,
            },
            MissingKey { .. } => ErrorKind::MissingKey,
            ValueMacMismatch { .. }
            | IndexMacMismatch { .. }
            | PatchMacMismatch { .. }
            | SnapshotMacMismatch { .. } => ErrorKind::Integrity,
            VersionMismatch { .. } | VersionOutOfRange(_) => ErrorKind::Version,
        }
    }
}

pub(crate) fn protobuf(what: &'static str) -> impl FnOnce(wa_proto::DecodeError) -> AppStateError {
    move |source| AppStateError::Protobuf { what, source }
}

pub(crate) const fn malformed(what: &'static str) -> AppStateError {
    AppStateError::Malformed { what }
}
