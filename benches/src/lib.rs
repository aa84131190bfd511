//! Benchmarks live in `benches/benches/`; this library only holds inputs shared by a bench
//! and a helper binary (`src/bin/`).

#[cfg(feature = "appstate")]
pub mod appstate {
    //! A deterministic app-state snapshot of N records, for `benches/appstate.rs` and the
    //! peak-memory binary `appstate_peak`.

    use wa_appstate::{Collection, CollectionState, KeyId, KeyRing, MutationKeys, action, encode_mutation};
    use wa_proto::prost_message::Message as _;

    /// The collection of the snapshot (mute records live in `regular_high`).
    pub const COLLECTION: Collection = Collection::RegularHigh;
    /// The app-state key id the records and the snapshot MAC use.
    pub const KEY_ID: [u8; 6] = [0, 0, 0, 1, 0xfb, 0xff];
    /// Its key data.
    pub const KEY_DATA: [u8; 32] = [0x5a; 32];

    /// `SyncdSnapshot` bytes holding `n` mute records for `n` distinct chats, with a valid
    /// snapshot MAC, at version 1000.
    pub fn snapshot_bytes(n: usize) -> Vec<u8> {
        let id = KeyId(KEY_ID.to_vec());
        let keys = MutationKeys::expand(&KEY_DATA);
        let mut ring = KeyRing::new();
        ring.insert(&id, &KEY_DATA);
        let mut state = CollectionState::new(COLLECTION);
        let mut records = Vec::with_capacity(n);
        for i in 0..n {
            let chat = format!("1555{i:07}@s.whatsapp.net");
            let input = action::mute(&chat, Some(1_767_254_400_000 + i as i64), 1_767_225_600_000 + i as i64);
            let mut iv = [0u8; 16];
            iv[..8].copy_from_slice(&(i as u64).to_be_bytes());
            let e = encode_mutation(&input, &id, &keys, &iv);
            state.mix(input.operation, e.index_mac, e.value_mac);
            records.extend(e.mutation.record);
        }
        let version = 1000;
        let mac = wa_appstate::patch::snapshot_mac(&state.hash, version, COLLECTION, &keys.snapshot_mac);
        wa_proto::SyncdSnapshot {
            version: Some(wa_proto::SyncdVersion { version: Some(version) }),
            records,
            mac: Some(mac.to_vec()),
            key_id: Some(wa_proto::KeyId { id: Some(id.0) }),
        }
        .encode_to_vec()
    }
}
