//! wa-appstate against wacore-appstate 0.7 (whatsapp-rust), same bytes, same run: applying a
//! 10,000-record snapshot (`SyncdSnapshot` bytes → verified, decrypted, decoded records and
//! the collection's LTHash), MACs verified on both sides.
//!
//! Ours: `decode_snapshot` + `apply_snapshot` (value MAC, AES-CBC, `SyncActionData`, index
//! MAC and typed action of every record, LTHash, snapshot MAC, index → value MAC map).
//! Theirs: waproto (buffa) decode + `process_snapshot` with `validate_macs = true` (the same
//! checks; it returns the MAC rows as a list instead of a map). The bench asserts both reach
//! the same LTHash before timing.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use wa_benches::appstate::{COLLECTION, KEY_DATA, KEY_ID, snapshot_bytes};
use waproto::buffa::Message as _;

const RECORDS: usize = 10_000;

fn ours(bytes: &[u8], ring: &wa_appstate::KeyRing) -> wa_appstate::Applied {
    let snap = wa_appstate::decode_snapshot(bytes).expect("decodes");
    wa_appstate::apply_snapshot(COLLECTION, &snap, ring).expect("applies")
}

fn theirs(
    bytes: &[u8],
    keys: &Arc<wacore_appstate::ExpandedAppStateKeys>,
) -> wacore_appstate::processor::ProcessedSnapshot {
    let snap = waproto::whatsapp::SyncdSnapshot::decode_from_slice(bytes).expect("decodes");
    let mut state = wacore_appstate::hash::HashState::default();
    wacore_appstate::processor::process_snapshot(
        &snap,
        &mut state,
        |_| Ok(keys.clone()),
        true,
        COLLECTION.as_str(),
    )
    .expect("applies")
}

fn bench(c: &mut Criterion) {
    let bytes = snapshot_bytes(RECORDS);
    let mut ring = wa_appstate::KeyRing::new();
    ring.insert(&wa_appstate::KeyId(KEY_ID.to_vec()), &KEY_DATA);
    let keys = Arc::new(wacore_appstate::expand_app_state_keys(&KEY_DATA));

    let a = ours(&bytes, &ring);
    let b = theirs(&bytes, &keys);
    assert_eq!(a.state.hash.0, b.state.hash, "both implementations reach the same LTHash");
    assert_eq!(a.mutations.len(), RECORDS);
    assert_eq!(b.mutations.len(), RECORDS);

    let mut g = c.benchmark_group("appstate_snapshot_10k");
    g.sample_size(10);
    g.bench_function("wa-appstate", |bch| bch.iter(|| black_box(ours(black_box(&bytes), &ring))));
    g.bench_function("wacore-appstate", |bch| bch.iter(|| black_box(theirs(black_box(&bytes), &keys))));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
