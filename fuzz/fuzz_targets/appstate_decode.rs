//! Arbitrary bytes through app-state decoding: as a patch, a snapshot, a sync-response
//! frame, and as the plaintext of a record whose MACs we forge ourselves (so the fuzzer
//! reaches the index JSON and action decoding behind the MAC checks). Nothing may panic;
//! whatever applies must leave a state that re-applies nothing twice.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wa_appstate::mutation::{index_mac, value_mac};
use wa_appstate::patch::{patch_mac, snapshot_mac};
use wa_appstate::{
    Collection, CollectionState, KeyId, KeyRing, Operation, apply_patch, apply_snapshot, decode_patch,
    decode_snapshot, parse_sync_response,
};
use wa_proto::prost_message::Message as _;
use wa_proto::{SyncActionData, SyncdIndex, SyncdMutation, SyncdPatch, SyncdRecord, SyncdValue, SyncdVersion};

fn ring() -> (KeyRing, KeyId) {
    let id = KeyId(vec![0, 0, 0, 1, 0xfb, 0xff]);
    let mut r = KeyRing::new();
    r.insert(&id, &[9; 32]);
    (r, id)
}

/// A patch at version 1 whose single record decrypts to `plain` with every MAC valid.
fn forged(plain: &[u8], remove: bool) -> SyncdPatch {
    let (r, id) = ring();
    let k = r.get(id.as_bytes()).expect("key");
    let op = if remove { Operation::Remove } else { Operation::Set };
    let iv = [3u8; 16];
    let mut enc = iv.to_vec();
    wa_crypto::cbc::encrypt_append(&k.value_encryption, &iv, plain, &mut enc);
    let vmac = value_mac(op, id.as_bytes(), &enc, &k.value_mac);
    let index = SyncActionData::decode(plain).ok().and_then(|d| d.index).unwrap_or_default();
    let imac = index_mac(&index, &k.index);
    enc.extend_from_slice(&vmac);
    let mut state = CollectionState::new(Collection::Regular);
    state.mix(op, imac, vmac);
    let snap = snapshot_mac(&state.hash, 1, Collection::Regular, &k.snapshot_mac);
    SyncdPatch {
        version: Some(SyncdVersion { version: Some(1) }),
        mutations: vec![SyncdMutation {
            operation: Some(op.to_proto()),
            record: Some(SyncdRecord {
                index: Some(SyncdIndex { blob: Some(imac.to_vec()) }),
                value: Some(SyncdValue { blob: Some(enc) }),
                key_id: Some(wa_proto::KeyId { id: Some(id.0.clone()) }),
            }),
        }],
        snapshot_mac: Some(snap.to_vec()),
        patch_mac: Some(patch_mac(&snap, [&vmac], 1, Collection::Regular, &k.patch_mac).to_vec()),
        key_id: Some(wa_proto::KeyId { id: Some(id.0) }),
        ..Default::default()
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let (r, _) = ring();
    let empty = CollectionState::new(Collection::Regular);
    match mode % 4 {
        0 => {
            if let Ok(p) = decode_patch(rest) {
                let mut st = empty.clone();
                st.version = p.version.as_ref().and_then(|v| v.version).unwrap_or(1).saturating_sub(1);
                let _ = apply_patch(&st, &p, &r);
            }
        }
        1 => {
            if let Ok(s) = decode_snapshot(rest) {
                let _ = apply_snapshot(Collection::Regular, &s, &r);
            }
        }
        2 => {
            if let Ok(node) = wa_binary::decode_frame(rest) {
                let _ = parse_sync_response(&node);
            }
        }
        _ => {
            let p = forged(rest, mode & 4 != 0);
            if let Ok(a) = apply_patch(&empty, &p, &r) {
                // verified and applied: the same patch on the new state is a version error
                assert!(apply_patch(&a.state, &p, &r).is_err());
                assert_eq!(a.mutations.len(), 1);
            }
        }
    }
});
