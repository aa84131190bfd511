//! One mutation: an index MAC and an encrypted, MAC'd value under one app-state key.
//!
//! - index MAC = HMAC-SHA256(index key, index JSON bytes);
//! - value = IV(16) ‖ AES-256-CBC(value-encryption key, `SyncActionData`) ‖ value MAC(32);
//! - value MAC = HMAC-SHA512(value-MAC key, op ‖ key id ‖ IV ‖ ciphertext ‖ trailer)[..32],
//!   op = 1 for SET, 2 for REMOVE, trailer = `1 + len(key id)` as 8 bytes big-endian.
//!
//! The trailer is written as a full `u64` (as whatsmeow does); Baileys writes only its last
//! byte, which is the same for every key id shorter than 255 bytes (real ones have 1 to 16).

use hmac::{Hmac, KeyInit, Mac as _};
use sha2::Sha512;
use wa_proto::prost_message::Message as _;
use wa_proto::{SyncActionData, SyncActionValue, SyncdIndex, SyncdMutation, SyncdRecord, SyncdValue};

use crate::action::Action;
use crate::error::{AppStateError, malformed, protobuf};
use crate::index::{decode_index, encode_index};
use crate::keys::{KeyId, MutationKeys};
use crate::state::Collection;

/// A mutation's operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    /// Sets (adds or replaces) the value at an index.
    Set,
    /// Removes the value at an index.
    Remove,
}

impl Operation {
    /// The `SyncdOperation` number (SET 0, REMOVE 1).
    pub fn to_proto(self) -> i32 {
        match self {
            Operation::Set => 0,
            Operation::Remove => 1,
        }
    }

    /// From the `SyncdOperation` number; an absent one is SET, the proto default.
    pub fn from_proto(v: Option<i32>) -> Option<Self> {
        match v.unwrap_or(0) {
            0 => Some(Operation::Set),
            1 => Some(Operation::Remove),
            _ => None,
        }
    }

    fn mac_byte(self) -> u8 {
        match self {
            Operation::Set => 1,
            Operation::Remove => 2,
        }
    }
}

/// The value MAC of `enc` (= IV ‖ ciphertext).
pub fn value_mac(op: Operation, key_id: &[u8], enc: &[u8], value_mac_key: &[u8; 32]) -> [u8; 32] {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut m = <Hmac<Sha512> as KeyInit>::new_from_slice(value_mac_key)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    m.update(&[op.mac_byte()]);
    m.update(key_id);
    m.update(enc);
    m.update(&(key_id.len() as u64 + 1).to_be_bytes());
    let full = m.finalize().into_bytes();
    let mut out = [0u8; 32];
    out.copy_from_slice(&full[..32]);
    out
}

/// The index MAC of the index JSON bytes.
pub fn index_mac(index_json: &[u8], index_key: &[u8; 32]) -> [u8; 32] {
    wa_crypto::hmac_sha256(index_key, &[index_json])
}

/// A record split into its parts, before any cryptography.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RawRecord<'a> {
    pub op: Operation,
    pub index_mac: [u8; 32],
    /// IV ‖ ciphertext.
    pub enc: &'a [u8],
    pub value_mac: [u8; 32],
    pub key_id: &'a [u8],
}

/// Shortest value blob: IV, one AES block, MAC.
const MIN_VALUE_BLOB: usize = 16 + 16 + 32;

pub(crate) fn parse_record<'a>(
    position: usize,
    operation: Option<i32>,
    record: Option<&'a SyncdRecord>,
) -> Result<RawRecord<'a>, AppStateError> {
    let op = Operation::from_proto(operation)
        .ok_or(AppStateError::UnknownOperation { mutation: position, value: operation.unwrap_or(0) })?;
    let record = record.ok_or(malformed("mutation without a record"))?;
    let index_mac: [u8; 32] = record
        .index
        .as_ref()
        .and_then(|i| i.blob.as_deref())
        .and_then(|b| b.try_into().ok())
        .ok_or(malformed("record index MAC (32 bytes)"))?;
    let blob = record
        .value
        .as_ref()
        .and_then(|v| v.blob.as_deref())
        .filter(|b| b.len() >= MIN_VALUE_BLOB && (b.len() - 48).is_multiple_of(16))
        .ok_or(malformed("record value (IV ‖ AES-CBC blocks ‖ 32-byte MAC)"))?;
    let key_id = record.key_id.as_ref().and_then(|k| k.id.as_deref()).ok_or(malformed("record key id"))?;
    let (enc, mac) = blob.split_at(blob.len() - 32);
    let mut value_mac = [0u8; 32];
    value_mac.copy_from_slice(mac);
    Ok(RawRecord { op, index_mac, enc, value_mac, key_id })
}

/// A verified, decrypted mutation.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedMutation {
    /// SET or REMOVE.
    pub operation: Operation,
    /// The key the record was encrypted with.
    pub key_id: KeyId,
    /// The index MAC.
    pub index_mac: [u8; 32],
    /// The value MAC.
    pub value_mac: [u8; 32],
    /// The index, e.g. `["mute", "1555…@s.whatsapp.net"]`.
    pub index: Vec<String>,
    /// The decoded value, as sent.
    pub value: Option<SyncActionValue>,
    /// `SyncActionData.version`: the action's API version.
    pub api_version: Option<i32>,
    /// The typed action.
    pub action: Action,
}

/// Verifies and decrypts one mutation on its own (no state, no patch MAC): value MAC,
/// AES-CBC, `SyncActionData`, index MAC. `position` only labels errors.
pub fn decode_mutation(
    position: usize,
    mutation: &SyncdMutation,
    keys: &crate::KeyRing,
) -> Result<DecodedMutation, AppStateError> {
    let raw = parse_record(position, mutation.operation, mutation.record.as_ref())?;
    decode_raw(position, &raw, keys.require(raw.key_id)?)
}

/// Verifies the value MAC, decrypts, decodes `SyncActionData`, verifies the index MAC.
pub(crate) fn decode_raw(
    position: usize,
    raw: &RawRecord<'_>,
    keys: &MutationKeys,
) -> Result<DecodedMutation, AppStateError> {
    let expected = value_mac(raw.op, raw.key_id, raw.enc, &keys.value_mac);
    if !wa_crypto::ct_eq(&expected, &raw.value_mac) {
        return Err(AppStateError::ValueMacMismatch { mutation: position });
    }
    let (iv, ct) = raw.enc.split_at(16);
    let iv: &[u8; 16] = iv.try_into().map_err(|_| malformed("value IV"))?;
    let plain = wa_crypto::cbc::decrypt(&keys.value_encryption, iv, ct)
        .map_err(|_| AppStateError::BadPadding { mutation: position })?;
    let data = SyncActionData::decode(plain.as_slice()).map_err(protobuf("SyncActionData"))?;
    let index_json = data.index.as_deref().ok_or(malformed("SyncActionData without an index"))?;
    if !wa_crypto::ct_eq(&index_mac(index_json, &keys.index), &raw.index_mac) {
        return Err(AppStateError::IndexMacMismatch { mutation: position });
    }
    let index = decode_index(index_json).ok_or(AppStateError::BadIndex { mutation: position })?;
    let action = Action::decode(&index, data.value.as_ref());
    Ok(DecodedMutation {
        operation: raw.op,
        key_id: KeyId(raw.key_id.to_vec()),
        index_mac: raw.index_mac,
        value_mac: raw.value_mac,
        index,
        value: data.value,
        api_version: data.version,
        action,
    })
}

/// A mutation of our own, before encryption.
#[derive(Debug, Clone, PartialEq)]
pub struct MutationInput {
    /// The collection the index belongs to.
    pub collection: Collection,
    /// SET or REMOVE.
    pub operation: Operation,
    /// The index.
    pub index: Vec<String>,
    /// The value (its `timestamp` is the action time in ms).
    pub value: SyncActionValue,
    /// The action's API version, written into `SyncActionData.version`.
    pub api_version: i32,
}

/// An encrypted mutation and its MACs.
#[derive(Debug, Clone, PartialEq)]
pub struct EncodedMutation {
    /// The `SyncdMutation` to put in a patch.
    pub mutation: SyncdMutation,
    /// Its index MAC.
    pub index_mac: [u8; 32],
    /// Its value MAC.
    pub value_mac: [u8; 32],
}

/// The `SyncActionData` plaintext of a mutation: index JSON, value, an empty padding field
/// (always written, as WhatsApp Web does) and the API version.
pub fn action_data(input: &MutationInput) -> SyncActionData {
    SyncActionData {
        index: Some(encode_index(&input.index)),
        value: Some(input.value.clone()),
        padding: Some(Vec::new()),
        version: Some(input.api_version),
    }
}

/// Encrypts and MACs a mutation under `key_id` with the caller's random `iv`.
pub fn encode_mutation(
    input: &MutationInput,
    key_id: &KeyId,
    keys: &MutationKeys,
    iv: &[u8; 16],
) -> EncodedMutation {
    let data = action_data(input);
    let plain = data.encode_to_vec();
    let mut enc = Vec::with_capacity(16 + wa_crypto::cbc::padded_len(plain.len()) + 32);
    enc.extend_from_slice(iv);
    wa_crypto::cbc::encrypt_append(&keys.value_encryption, iv, &plain, &mut enc);
    let vmac = value_mac(input.operation, key_id.as_bytes(), &enc, &keys.value_mac);
    let imac = index_mac(data.index.as_deref().unwrap_or_default(), &keys.index);
    enc.extend_from_slice(&vmac);
    EncodedMutation {
        mutation: SyncdMutation {
            operation: Some(input.operation.to_proto()),
            record: Some(SyncdRecord {
                index: Some(SyncdIndex { blob: Some(imac.to_vec()) }),
                value: Some(SyncdValue { blob: Some(enc) }),
                key_id: Some(wa_proto::KeyId { id: Some(key_id.0.clone()) }),
            }),
        },
        index_mac: imac,
        value_mac: vmac,
    }
}
