//! Properties: patches and a snapshot of the same final records agree on the LTHash; no
//! input, however broken, makes decoding panic.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use proptest::prelude::*;
use wa_appstate::patch::snapshot_mac;
use wa_appstate::{
    Action, Collection, CollectionState, KeyId, KeyRing, MutationInput, Operation, action, apply_patch,
    apply_snapshot, decode_patch, decode_snapshot, encode_patch, parse_sync_response,
};
use wa_proto::prost_message::Message as _;
use wa_proto::{SyncActionValue, SyncdRecord, SyncdSnapshot, SyncdVersion};

fn keys() -> (KeyRing, [KeyId; 2]) {
    let ids = [KeyId(vec![0, 0, 0, 1, 0xfb, 0xff]), KeyId(vec![7])];
    let mut r = KeyRing::new();
    r.insert(&ids[0], &[1; 32]);
    r.insert(&ids[1], &[2; 32]);
    (r, ids)
}

/// One generated mutation: which of a few chats, SET or REMOVE, a value, which key, its IV.
#[derive(Debug, Clone)]
struct Op {
    chat: u8,
    remove: bool,
    pinned: bool,
    ts: i64,
    key: usize,
    iv: [u8; 16],
}

fn op() -> impl Strategy<Value = Op> {
    (0u8..6, prop::bool::weighted(0.25), any::<bool>(), 0i64..2_000_000_000_000, 0usize..2, any::<[u8; 16]>())
        .prop_map(|(chat, remove, pinned, ts, key, iv)| Op { chat, remove, pinned, ts, key, iv })
}

fn input(o: &Op) -> MutationInput {
    let mut m = action::pin(&format!("1555000{:04}@s.whatsapp.net", o.chat), o.pinned, o.ts);
    if o.remove {
        m.operation = Operation::Remove;
    }
    m
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Apply random mutations as patches of 1–3 (each encoded by us, relayed with its version,
    /// verified and applied), then a snapshot holding the latest SET record of every live
    /// index: the snapshot verifies against the patches' LTHash and gives the same state.
    #[test]
    fn patches_and_snapshot_agree(ops in prop::collection::vec(op(), 1..24), sizes in prop::collection::vec(1usize..4, 24)) {
        let (ring, ids) = keys();
        let mut state = CollectionState::new(Collection::RegularLow);
        state.version = 41;
        let mut live: BTreeMap<[u8; 32], SyncdRecord> = BTreeMap::new();
        let mut rest = &ops[..];
        let mut sizes = sizes.iter();
        while !rest.is_empty() {
            let n = (*sizes.next().unwrap_or(&1)).min(rest.len());
            let (chunk, tail) = rest.split_at(n);
            rest = tail;
            // one patch is under one key; records inside keep theirs
            let key = &ids[chunk[0].key];
            let batch: Vec<(MutationInput, [u8; 16])> = chunk.iter().map(|o| (input(o), o.iv)).collect();
            let enc = encode_patch(&state, &batch, key, &ring).unwrap();
            let mut relayed = decode_patch(&enc.bytes).unwrap();
            relayed.version = Some(SyncdVersion { version: Some(state.version + 1) });
            let applied = apply_patch(&state, &relayed, &ring).unwrap();
            prop_assert_eq!(&applied.state, &enc.applied.state);
            for (m, d) in relayed.mutations.iter().zip(&applied.mutations) {
                if d.operation == Operation::Remove {
                    live.remove(&d.index_mac);
                } else {
                    live.insert(d.index_mac, m.record.clone().unwrap());
                }
                prop_assert!(matches!(d.action, Action::Pin { .. }), "not a pin: {:?}", d.action);
            }
            state = applied.state;
        }
        let key = &ids[ops[0].key];
        let mac = snapshot_mac(&state.hash, state.version, state.collection, &ring.get(key.as_bytes()).unwrap().snapshot_mac);
        let snap = SyncdSnapshot {
            version: Some(SyncdVersion { version: Some(state.version) }),
            // a snapshot's order is the server's; the hash must not depend on it
            records: live.into_values().rev().collect(),
            mac: Some(mac.to_vec()),
            key_id: Some(wa_proto::KeyId { id: Some(key.0.clone()) }),
        };
        let from_snapshot = apply_snapshot(state.collection, &decode_snapshot(&snap.encode_to_vec()).unwrap(), &ring).unwrap();
        prop_assert_eq!(from_snapshot.state.hash, state.hash);
        prop_assert_eq!(from_snapshot.state, state);
    }

    /// Arbitrary bytes as a patch, a snapshot, a sync response, a history blob or an index.
    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..600), version in 0u64..3) {
        let (ring, _) = keys();
        if let Ok(p) = decode_patch(&bytes) {
            let mut st = CollectionState::new(Collection::Regular);
            st.version = p.version.as_ref().and_then(|v| v.version).unwrap_or(1).saturating_sub(version);
            let _ = apply_patch(&st, &p, &ring);
            let _ = wa_appstate::required_key_ids(&p);
        }
        if let Ok(s) = decode_snapshot(&bytes) {
            let _ = apply_snapshot(Collection::Regular, &s, &ring);
        }
        if let Ok(node) = wa_binary::decode_frame(&bytes) {
            let _ = parse_sync_response(&node);
        }
        let _ = wa_appstate::history::inflate(&bytes, 1 << 16).map(|b| wa_appstate::history::decode_history(&b));
        if let Some(index) = wa_appstate::index::decode_index(&bytes) {
            let _ = Action::decode(&index, SyncActionValue::decode(bytes.as_slice()).ok().as_ref());
        }
    }

    /// A valid patch with one byte flipped: refused with a typed error, or (a flip in a
    /// field nothing reads) applied exactly as the original.
    #[test]
    fn flipped_patch_bytes_never_panic(o in op(), at in any::<prop::sample::Index>(), bit in 0u8..8) {
        let (ring, ids) = keys();
        let state = CollectionState::new(Collection::RegularLow);
        let enc = encode_patch(&state, &[(input(&o), o.iv)], &ids[o.key], &ring).unwrap();
        let mut relayed = enc.patch.clone();
        relayed.version = Some(SyncdVersion { version: Some(1) });
        let mut bytes = relayed.encode_to_vec();
        let i = at.index(bytes.len());
        bytes[i] ^= 1 << bit;
        if let Ok(p) = decode_patch(&bytes) {
            match apply_patch(&state, &p, &ring) {
                Ok(a) => prop_assert_eq!(a.state, enc.applied.state),
                Err(e) => { let _ = e.kind(); }
            }
        }
    }
}
