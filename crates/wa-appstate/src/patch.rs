//! Patches and snapshots: verification, decryption and application to a [`CollectionState`],
//! and encoding of our own patches.
//!
//! - snapshot MAC = HMAC-SHA256(snapshot-MAC key, LTHash ‖ u64be(version) ‖ collection name);
//! - patch MAC = HMAC-SHA256(patch-MAC key, snapshot MAC ‖ value MAC… ‖ u64be(version) ‖ name),
//!
//! both under the keys of the patch's (or snapshot's) own key id; every record carries its
//! own key id for its index and value keys, so a patch can mix records from before and after
//! a key rotation. Versions must be below 2^32: WhatsApp Web (and Baileys) write only the
//! low 32 bits into the MACs.
//!
//! Everything is verified before anything is returned: patch MAC, every value MAC, every
//! index MAC, then the snapshot MAC over the resulting LTHash. On any error the input state
//! is untouched (it is only borrowed) and nothing is returned, so a caller that persists
//! [`Applied`] in one transaction never stores half a patch.

use std::collections::BTreeSet;

use wa_proto::prost_message::Message as _;
use wa_proto::{SyncdMutations, SyncdPatch, SyncdSnapshot};

use crate::error::{AppStateError, malformed, protobuf};
use crate::keys::{KeyId, KeyRing};
use crate::lthash::LtHash;
use crate::mutation::{DecodedMutation, MutationInput, RawRecord, decode_raw, encode_mutation, parse_record};
use crate::state::{Collection, CollectionState, IndexValueMap, MacChanges, changes_of, mix};

/// The largest version the MAC encoding can carry.
pub const MAX_VERSION: u64 = u32::MAX as u64;

fn check_version(v: u64) -> Result<u64, AppStateError> {
    if v > MAX_VERSION { Err(AppStateError::VersionOutOfRange(v)) } else { Ok(v) }
}

/// The snapshot MAC of a state (also the `snapshotMac` of the patch that produced it).
pub fn snapshot_mac(
    hash: &LtHash,
    version: u64,
    collection: Collection,
    snapshot_mac_key: &[u8; 32],
) -> [u8; 32] {
    wa_crypto::hmac_sha256(
        snapshot_mac_key,
        &[&hash.0, &version.to_be_bytes(), collection.as_str().as_bytes()],
    )
}

/// The patch MAC over a snapshot MAC and the value MACs in mutation order.
pub fn patch_mac<'a>(
    snapshot_mac: &[u8],
    value_macs: impl IntoIterator<Item = &'a [u8; 32]>,
    version: u64,
    collection: Collection,
    patch_mac_key: &[u8; 32],
) -> [u8; 32] {
    let key = wa_crypto::HmacSha256Key::new(patch_mac_key);
    let mut parts: Vec<&[u8]> = vec![snapshot_mac];
    parts.extend(value_macs.into_iter().map(|m| m.as_slice()));
    let v = version.to_be_bytes();
    parts.push(&v);
    parts.push(collection.as_str().as_bytes());
    key.mac(&parts)
}

/// The result of applying a patch or snapshot: persist `state`, `changes` (or the whole
/// map) and the effects of `mutations` together.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    /// The collection after the patch or snapshot.
    pub state: CollectionState,
    /// The index → value MAC rows this patch changed (for a snapshot: every row; the
    /// caller replaces the collection's rows).
    pub changes: MacChanges,
    /// The decoded mutations, in order.
    pub mutations: Vec<DecodedMutation>,
}

/// Decodes a `SyncdPatch`.
pub fn decode_patch(bytes: &[u8]) -> Result<SyncdPatch, AppStateError> {
    SyncdPatch::decode(bytes).map_err(protobuf("SyncdPatch"))
}

/// Decodes a `SyncdSnapshot` (the plaintext of a snapshot blob).
pub fn decode_snapshot(bytes: &[u8]) -> Result<SyncdSnapshot, AppStateError> {
    SyncdSnapshot::decode(bytes).map_err(protobuf("SyncdSnapshot"))
}

/// Every key id a patch needs (its own and each record's), so the caller can load them into
/// a [`KeyRing`] before applying it.
pub fn required_key_ids(patch: &SyncdPatch) -> BTreeSet<KeyId> {
    let mut ids = BTreeSet::new();
    if let Some(id) = patch.key_id.as_ref().and_then(|k| k.id.as_deref()) {
        ids.insert(KeyId(id.to_vec()));
    }
    for m in &patch.mutations {
        if let Some(id) = m.record.as_ref().and_then(|r| r.key_id.as_ref()).and_then(|k| k.id.as_deref()) {
            ids.insert(KeyId(id.to_vec()));
        }
    }
    ids
}

/// Every key id a snapshot needs.
pub fn required_snapshot_key_ids(snapshot: &SyncdSnapshot) -> BTreeSet<KeyId> {
    let mut ids = BTreeSet::new();
    if let Some(id) = snapshot.key_id.as_ref().and_then(|k| k.id.as_deref()) {
        ids.insert(KeyId(id.to_vec()));
    }
    for r in &snapshot.records {
        if let Some(id) = r.key_id.as_ref().and_then(|k| k.id.as_deref()) {
            ids.insert(KeyId(id.to_vec()));
        }
    }
    ids
}

/// Appends the mutations of a downloaded, decrypted external-mutations blob
/// (`SyncdMutations`) to the patch that referenced it, and drops the reference. The patch
/// MAC covers them like inline ones.
pub fn attach_external_mutations(patch: &mut SyncdPatch, decrypted: &[u8]) -> Result<(), AppStateError> {
    let list = SyncdMutations::decode(decrypted).map_err(protobuf("SyncdMutations"))?;
    patch.mutations.extend(list.mutations);
    patch.external_mutations = None;
    Ok(())
}

fn mac32(b: Option<&Vec<u8>>, what: &'static str) -> Result<[u8; 32], AppStateError> {
    b.and_then(|b| b.as_slice().try_into().ok()).ok_or(malformed(what))
}

/// Verifies, decrypts and applies one patch on top of `state`. The patch must be the next
/// version (`state.version + 1`).
pub fn apply_patch(
    state: &CollectionState,
    patch: &SyncdPatch,
    keys: &KeyRing,
) -> Result<Applied, AppStateError> {
    let version =
        patch.version.as_ref().and_then(|v| v.version).ok_or(malformed("patch without a version"))?;
    check_version(version)?;
    if version != state.version.wrapping_add(1) {
        return Err(AppStateError::VersionMismatch { local: state.version, got: version });
    }
    if patch.external_mutations.is_some() {
        return Err(AppStateError::ExternalMutationsNotAttached { version });
    }
    let key_id = patch.key_id.as_ref().and_then(|k| k.id.as_deref()).ok_or(malformed("patch key id"))?;
    let snap_mac = mac32(patch.snapshot_mac.as_ref(), "patch snapshot MAC (32 bytes)")?;
    let expected_patch_mac = mac32(patch.patch_mac.as_ref(), "patch MAC (32 bytes)")?;
    let raws = patch
        .mutations
        .iter()
        .enumerate()
        .map(|(i, m)| parse_record(i, m.operation, m.record.as_ref()))
        .collect::<Result<Vec<_>, _>>()?;

    let patch_keys = keys.require(key_id)?;
    let computed = patch_mac(
        &snap_mac,
        raws.iter().map(|r| &r.value_mac),
        version,
        state.collection,
        &patch_keys.patch_mac,
    );
    if !wa_crypto::ct_eq(&computed, &expected_patch_mac) {
        return Err(AppStateError::PatchMacMismatch { version });
    }

    let mutations = decode_all(&raws, keys)?;
    let mut hash = state.hash;
    let mut map = state.index_value_macs.clone();
    let mut touched = BTreeSet::new();
    for r in &raws {
        mix(&mut hash, &mut map, r.op == crate::Operation::Remove, r.index_mac, r.value_mac);
        touched.insert(r.index_mac);
    }
    let expected = snapshot_mac(&hash, version, state.collection, &patch_keys.snapshot_mac);
    if !wa_crypto::ct_eq(&expected, &snap_mac) {
        return Err(AppStateError::SnapshotMacMismatch { version });
    }
    let changes = changes_of(&map, touched);
    Ok(Applied {
        state: CollectionState { collection: state.collection, version, hash, index_value_macs: map },
        changes,
        mutations,
    })
}

fn decode_all(raws: &[RawRecord<'_>], keys: &KeyRing) -> Result<Vec<DecodedMutation>, AppStateError> {
    raws.iter().enumerate().map(|(i, r)| decode_raw(i, r, keys.require(r.key_id)?)).collect()
}

/// Verifies, decrypts and applies a snapshot: the collection's whole state at one version,
/// replacing whatever was there. Every record is a SET.
pub fn apply_snapshot(
    collection: Collection,
    snapshot: &SyncdSnapshot,
    keys: &KeyRing,
) -> Result<Applied, AppStateError> {
    let version =
        snapshot.version.as_ref().and_then(|v| v.version).ok_or(malformed("snapshot without a version"))?;
    check_version(version)?;
    let key_id =
        snapshot.key_id.as_ref().and_then(|k| k.id.as_deref()).ok_or(malformed("snapshot key id"))?;
    let mac = mac32(snapshot.mac.as_ref(), "snapshot MAC (32 bytes)")?;
    let raws = snapshot
        .records
        .iter()
        .enumerate()
        .map(|(i, r)| parse_record(i, None, Some(r)))
        .collect::<Result<Vec<_>, _>>()?;
    let snap_keys = keys.require(key_id)?;
    let mutations = decode_all(&raws, keys)?;
    let mut hash = LtHash::ZERO;
    let mut map = IndexValueMap::new();
    for r in &raws {
        mix(&mut hash, &mut map, false, r.index_mac, r.value_mac);
    }
    let expected = snapshot_mac(&hash, version, collection, &snap_keys.snapshot_mac);
    if !wa_crypto::ct_eq(&expected, &mac) {
        return Err(AppStateError::SnapshotMacMismatch { version });
    }
    let changes = MacChanges { set: map.iter().map(|(i, v)| (*i, *v)).collect(), removed: Vec::new() };
    Ok(Applied {
        state: CollectionState { collection, version, hash, index_value_macs: map },
        changes,
        mutations,
    })
}

/// A patch of our own, as sent, and the state it leads to once the server accepts it.
#[derive(Debug, Clone, PartialEq)]
pub struct EncodedPatch {
    /// The patch as sent: no version (the server assigns it; it relays the patch with
    /// `state.version + 1`), one mutation per input, both MACs, our key id.
    pub patch: SyncdPatch,
    /// Its protobuf bytes: the content of `<patch>` in the sync request.
    pub bytes: Vec<u8>,
    /// The state after the patch, at `state.version + 1`. A REMOVE drops its index (Baileys'
    /// encoder puts it back into its map with the REMOVE's value MAC; the decoder of the
    /// relayed patch does not, and neither do we).
    pub applied: Applied,
}

/// Encodes our own mutations into one patch on top of `state`, under `key_id`. Each
/// mutation comes with its random 16-byte IV (randomness stays with the caller). The
/// mutations' index and value are checked by [`apply_patch`] once decoded again; here only
/// the collection and the version limit can be wrong.
pub fn encode_patch(
    state: &CollectionState,
    mutations: &[(MutationInput, [u8; 16])],
    key_id: &KeyId,
    keys: &KeyRing,
) -> Result<EncodedPatch, AppStateError> {
    let version = check_version(state.version.saturating_add(1))?;
    let k = keys.require(key_id.as_bytes())?;
    let mut encoded = Vec::with_capacity(mutations.len());
    for (input, iv) in mutations {
        if input.collection != state.collection {
            return Err(malformed("mutation of another collection"));
        }
        encoded.push(encode_mutation(input, key_id, k, iv));
    }
    let mut hash = state.hash;
    let mut map = state.index_value_macs.clone();
    let mut touched = BTreeSet::new();
    for (e, (input, _)) in encoded.iter().zip(mutations) {
        mix(&mut hash, &mut map, input.operation == crate::Operation::Remove, e.index_mac, e.value_mac);
        touched.insert(e.index_mac);
    }
    let snap = snapshot_mac(&hash, version, state.collection, &k.snapshot_mac);
    let pmac =
        patch_mac(&snap, encoded.iter().map(|e| &e.value_mac), version, state.collection, &k.patch_mac);
    let changes = changes_of(&map, touched);
    let decoded = encoded
        .iter()
        .zip(mutations)
        .map(|(e, (input, _))| DecodedMutation {
            operation: input.operation,
            key_id: key_id.clone(),
            index_mac: e.index_mac,
            value_mac: e.value_mac,
            index: input.index.clone(),
            value: Some(input.value.clone()),
            api_version: Some(input.api_version),
            action: crate::Action::decode(&input.index, Some(&input.value)),
        })
        .collect();
    let patch = SyncdPatch {
        mutations: encoded.into_iter().map(|e| e.mutation).collect(),
        snapshot_mac: Some(snap.to_vec()),
        patch_mac: Some(pmac.to_vec()),
        key_id: Some(wa_proto::KeyId { id: Some(key_id.0.clone()) }),
        ..Default::default()
    };
    let bytes = patch.encode_to_vec();
    Ok(EncodedPatch {
        patch,
        bytes,
        applied: Applied {
            state: CollectionState { collection: state.collection, version, hash, index_value_macs: map },
            changes,
            mutations: decoded,
        },
    })
}
