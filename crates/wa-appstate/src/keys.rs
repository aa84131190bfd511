//! App-state sync keys: the 32-byte key data the primary phone shares in an
//! `APP_STATE_SYNC_KEY_SHARE` protocol message, its expansion into the five mutation keys,
//! and a key ring to look them up by key id.
//!
//! Key ids are opaque bytes (1, 6 and 16 bytes all occur). Baileys stores and looks them up
//! as standard base64 with padding, so [`KeyId`] displays and parses that form.

use std::collections::HashMap;
use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use wa_proto::message::AppStateSyncKeyShare;

use crate::error::{AppStateError, malformed};

/// HKDF `info` of the mutation keys.
pub const MUTATION_KEYS_INFO: &[u8] = b"WhatsApp Mutation Keys";

/// An app-state key id: opaque bytes, shown as padded standard base64 (`AAAAAfv/`, `Bw==`).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct KeyId(pub Vec<u8>);

impl KeyId {
    /// The id bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Parses the padded standard base64 form Baileys stores keys under.
    pub fn from_base64(s: &str) -> Option<Self> {
        STANDARD.decode(s).ok().map(KeyId)
    }

    /// The padded standard base64 form.
    pub fn to_base64(&self) -> String {
        STANDARD.encode(&self.0)
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_base64())
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

impl From<&[u8]> for KeyId {
    fn from(b: &[u8]) -> Self {
        KeyId(b.to_vec())
    }
}

/// The five keys expanded from one app-state sync key.
#[derive(Clone, PartialEq, Eq)]
pub struct MutationKeys {
    /// HMAC-SHA256 key of the index MAC.
    pub index: [u8; 32],
    /// AES-256-CBC key of the value.
    pub value_encryption: [u8; 32],
    /// HMAC-SHA512 key of the value MAC.
    pub value_mac: [u8; 32],
    /// HMAC-SHA256 key of the snapshot MAC.
    pub snapshot_mac: [u8; 32],
    /// HMAC-SHA256 key of the patch MAC.
    pub patch_mac: [u8; 32],
}

impl fmt::Debug for MutationKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MutationKeys(..)")
    }
}

impl MutationKeys {
    /// HKDF-SHA256 of the key data (no salt) to 160 bytes, cut into five 32-byte keys in the
    /// order index, value encryption, value MAC, snapshot MAC, patch MAC.
    pub fn expand(key_data: &[u8]) -> Self {
        let okm: [u8; 160] = wa_crypto::hkdf_sha256_array(key_data, &[], MUTATION_KEYS_INFO);
        let part = |i: usize| {
            let mut k = [0u8; 32];
            k.copy_from_slice(&okm[i * 32..(i + 1) * 32]);
            k
        };
        MutationKeys {
            index: part(0),
            value_encryption: part(1),
            value_mac: part(2),
            snapshot_mac: part(3),
            patch_mac: part(4),
        }
    }
}

/// One key from a key share.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct SyncKey {
    /// The key id.
    pub id: KeyId,
    /// The 32-byte key data.
    pub data: [u8; 32],
    /// When the phone made it (ms since the epoch), if given.
    pub timestamp: Option<i64>,
}

/// Parses the keys of an `APP_STATE_SYNC_KEY_SHARE`, in message order. Every key must carry
/// an id and 32 bytes of key data; one that does not makes the whole share malformed rather
/// than silently half-stored.
pub fn parse_key_share(share: &AppStateSyncKeyShare) -> Result<Vec<SyncKey>, AppStateError> {
    share
        .keys
        .iter()
        .map(|k| {
            let id = k
                .key_id
                .as_ref()
                .and_then(|i| i.key_id.as_deref())
                .ok_or(malformed("key share: key without an id"))?;
            let data = k.key_data.as_ref().ok_or(malformed("key share: key without data"))?;
            let bytes: [u8; 32] = data
                .key_data
                .as_deref()
                .and_then(|d| d.try_into().ok())
                .ok_or(malformed("key share: key data (32 bytes)"))?;
            Ok(SyncKey { id: KeyId(id.to_vec()), data: bytes, timestamp: data.timestamp })
        })
        .collect()
}

/// The key a client encodes its own mutations with after a share: the last one in the
/// message, as Baileys sets `myAppStateKeyId`.
pub fn newest_key_id(keys: &[SyncKey]) -> Option<&KeyId> {
    keys.last().map(|k| &k.id)
}

/// Expanded keys by key id. The caller loads into it the keys a patch needs (see
/// [`crate::required_key_ids`]); lookups never do I/O.
#[derive(Clone, Default, Debug)]
pub struct KeyRing {
    keys: HashMap<Vec<u8>, MutationKeys>,
}

impl KeyRing {
    /// An empty ring.
    pub fn new() -> Self {
        Self::default()
    }

    /// Expands and adds a key (replacing one with the same id).
    pub fn insert(&mut self, id: &KeyId, key_data: &[u8]) {
        self.keys.insert(id.0.clone(), MutationKeys::expand(key_data));
    }

    /// Adds every key of a parsed share.
    pub fn extend_from_share(&mut self, keys: &[SyncKey]) {
        for k in keys {
            self.insert(&k.id, &k.data);
        }
    }

    /// The expanded keys of `id`, if held.
    pub fn get(&self, id: &[u8]) -> Option<&MutationKeys> {
        self.keys.get(id)
    }

    /// The expanded keys of `id`, or [`AppStateError::MissingKey`].
    pub fn require(&self, id: &[u8]) -> Result<&MutationKeys, AppStateError> {
        self.get(id).ok_or_else(|| AppStateError::MissingKey { key_id: KeyId(id.to_vec()) })
    }

    /// Whether the ring holds `id`.
    pub fn contains(&self, id: &[u8]) -> bool {
        self.keys.contains_key(id)
    }

    /// Number of keys held.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the ring is empty.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}
