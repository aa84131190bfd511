//! WhatsApp app-state sync ("syncd"), sans-I/O: what a linked device needs to keep its chat
//! settings, contacts and labels in step with the phone, and to send its own changes.
//!
//! - [`keys`]: app-state sync keys from a key share, expanded ("WhatsApp Mutation Keys") into
//!   index, value-encryption, value-MAC, snapshot-MAC and patch-MAC keys; a [`KeyRing`].
//! - [`lthash`]: the 128-byte LTHash ("WhatsApp Patch Integrity") over the live value MACs.
//! - [`mutation`]: index MAC, value MAC, AES-256-CBC value encryption; [`DecodedMutation`].
//! - [`patch`]: [`apply_patch`], [`apply_snapshot`] and [`encode_patch`] on a plain
//!   [`CollectionState`] (collection, version, LTHash, index MAC → value MAC).
//! - [`action`]: typed [`Action`]s and builders for our own mutations (mark read, archive,
//!   pin, mute, labels).
//! - [`sync`]: the `<sync>` response node; [`history`]: history-sync blobs and side data.
//!
//! # Why a crate of its own
//!
//! App-state sync is protocol logic with no I/O: bytes and keys in, a new state and decoded
//! actions out. Keeping it out of `wa-client` keeps it testable against Baileys' vectors
//! without a runtime, fuzzable, and usable by the emulator (which must produce patches)
//! without depending on the client. It sits beside `wa-signal` in the layering: on
//! `wa-crypto` (HKDF, HMAC, AES-CBC and the media crypto of snapshot and history blobs),
//! `wa-proto` (the messages) and `wa-binary` (only to read the `<sync>` response node).
//!
//! # State and transactions
//!
//! Nothing here mutates a state in place. [`apply_patch`] borrows the current
//! [`CollectionState`] and returns an [`Applied`] — the next state, the changed MAC rows and
//! the decoded mutations — or an error with the input untouched. The caller stores the new
//! version, hash, rows and the mutations' effects in one transaction, so a crash mid-patch
//! leaves the previous state. Keys are looked up in a [`KeyRing`] the caller fills first
//! ([`required_key_ids`]); a missing one is [`AppStateError::MissingKey`].
//!
//! # Matching WhatsApp Web (and Baileys 7.0.0-rc14)
//!
//! - the index JSON is escaped exactly as `JSON.stringify` does ([`index`]);
//! - the value-MAC trailer is `1 + len(key id)` as 8 big-endian bytes;
//! - versions enter the MACs as 8 bytes of which only the low 32 bits can be set: a version
//!   of 2^32 or more is [`AppStateError::VersionOutOfRange`];
//! - key ids are opaque bytes, shown as padded standard base64;
//! - every field the encoder sets is written even when it is a default (`SyncActionData`
//!   always has an empty padding field, SET is written as `08 00`), as protobufjs does.
//!
//! Unlike Baileys' default configuration, every MAC is always verified, and a bad one is an
//! error (never a skipped record): the caller then fetches a snapshot.

pub mod action;
mod error;
pub mod history;
pub mod index;
pub mod keys;
pub mod lthash;
pub mod mutation;
pub mod patch;
mod state;
pub mod sync;

pub use action::{Action, LastMessage, MessageRef};
pub use error::{AppStateError, ErrorKind};
pub use keys::{KeyId, KeyRing, MutationKeys, SyncKey, newest_key_id, parse_key_share};
pub use lthash::LtHash;
pub use mutation::{
    DecodedMutation, EncodedMutation, MutationInput, Operation, decode_mutation, encode_mutation,
};
pub use patch::{
    Applied, EncodedPatch, MAX_VERSION, apply_patch, apply_snapshot, attach_external_mutations, decode_patch,
    decode_snapshot, encode_patch, required_key_ids, required_snapshot_key_ids,
};
pub use state::{Collection, CollectionState, IndexValueMap, MacChanges};
pub use sync::{CollectionSync, decrypt_external_blob, parse_sync_response};
