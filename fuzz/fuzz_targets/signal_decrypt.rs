//! Arbitrary bytes as PreKeySignalMessage / SignalMessage / SenderKeyMessage /
//! SenderKeyDistributionMessage against live records: never a panic, and any error leaves the
//! record byte-for-byte unchanged.
//!
//! Byte 0 picks the mode. Raw modes hand the rest of the input to the decoder as is; splice
//! modes start from a genuine message (so the fuzzer reaches the MAC, ratchet and chain code)
//! and overwrite bytes at positions the input names.
#![no_main]

use std::convert::Infallible;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use wa_signal::rand_core::{TryCryptoRng, TryRng};
use wa_signal::{
    LocalIdentity, PreKeyBundle, PreKeyRecord, PreKeySet, SenderKeyConfig, SenderKeyRecord, SessionConfig,
    SessionRecord, SignedPreKeyRecord,
};

struct Rng(u64);
impl TryRng for Rng {
    type Error = Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        Ok(self.try_next_u64()? as u32)
    }
    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Ok(z ^ (z >> 31))
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        for c in dst.chunks_mut(8) {
            let v = self.try_next_u64()?.to_le_bytes();
            c.copy_from_slice(&v[..c.len()]);
        }
        Ok(())
    }
}
impl TryCryptoRng for Rng {}

struct World {
    bob: LocalIdentity,
    bob_keys: PreKeySet,
    /// Bob's record: an acknowledged session with Alice, with skipped keys and an archived state.
    bob_rec: SessionRecord,
    /// A fresh receiver (no session) for pkmsg that start sessions.
    empty: SessionRecord,
    group: SenderKeyRecord,
    /// Genuine messages to splice: pkmsg, msg (in order, skipped, duplicate), skmsg, SKDM.
    genuine: Vec<(u8, Vec<u8>)>,
}

fn world() -> &'static World {
    static W: OnceLock<World> = OnceLock::new();
    W.get_or_init(|| {
        let mut rng = Rng(42);
        let cfg = SessionConfig::default();
        let alice = LocalIdentity::generate(&mut rng);
        let bob = LocalIdentity::generate(&mut rng);
        let spk = SignedPreKeyRecord::generate(&bob.key_pair, 1, &mut rng);
        let opks = PreKeyRecord::generate_batch(1, 3, &mut rng);
        let bundle = |opk: &PreKeyRecord| PreKeyBundle {
            registration_id: bob.registration_id,
            identity_key: bob.public_key(),
            signed_pre_key_id: spk.id,
            signed_pre_key: spk.key_pair.public,
            signed_pre_key_signature: spk.signature,
            pre_key: Some((opk.id, opk.key_pair.public)),
        };
        let bob_keys = PreKeySet { signed: vec![spk.clone()], one_time: opks.clone() };
        let mut genuine = Vec::new();

        // An older session (archived on Bob's side), then the current one.
        let mut a_old = SessionRecord::new();
        a_old.initiate(&alice, &bundle(&opks[0]), &cfg, &mut rng).expect("initiate");
        let mut bob_rec = SessionRecord::new();
        let first = a_old.encrypt(&alice, b"old").expect("encrypt");
        bob_rec.decrypt_pre_key_message(&bob, first.bytes(), &bob_keys, &cfg, &mut rng).expect("pkmsg");
        let old_late = a_old.encrypt(&alice, b"old late").expect("encrypt");
        genuine.push((0, old_late.bytes().to_vec()));

        let mut a = SessionRecord::new();
        a.initiate(&alice, &bundle(&opks[1]), &cfg, &mut rng).expect("initiate");
        let pk = a.encrypt(&alice, b"new").expect("encrypt");
        bob_rec.decrypt_pre_key_message(&bob, pk.bytes(), &bob_keys, &cfg, &mut rng).expect("pkmsg");
        genuine.push((0, pk.bytes().to_vec()));
        let reply = bob_rec.encrypt(&bob, b"reply").expect("encrypt");
        a.decrypt_message(&alice, reply.bytes(), &cfg, &mut rng).expect("reply");
        let m: Vec<_> = (0..4).map(|i| a.encrypt(&alice, &[i; 20]).expect("encrypt").into_bytes()).collect();
        bob_rec.decrypt_message(&bob, &m[3], &cfg, &mut rng).expect("skip ahead");
        for x in m {
            genuine.push((1, x)); // m[0..3] are skipped keys, m[3] a duplicate
        }
        let next = a.encrypt(&alice, b"next").expect("encrypt");
        genuine.push((1, next.into_bytes()));

        // A brand-new pkmsg (one-time prekey 3) for the empty receiver.
        let mut a3 = SessionRecord::new();
        a3.initiate(&alice, &bundle(&opks[2]), &cfg, &mut rng).expect("initiate");
        genuine.push((0, a3.encrypt(&alice, b"fresh").expect("encrypt").into_bytes()));

        let gcfg = SenderKeyConfig::default();
        let mut sender = SenderKeyRecord::new();
        sender.generate_own_state(&gcfg, &mut rng);
        let skdm = sender.distribution_message().expect("skdm").to_bytes();
        let mut group = SenderKeyRecord::new();
        group.process_distribution_bytes(&skdm, &gcfg).expect("skdm");
        genuine.push((3, skdm));
        let g: Vec<_> = (0..3).map(|i| sender.encrypt(&[i; 40]).expect("encrypt")).collect();
        group.decrypt_in_place(&g[1], &gcfg).expect("group");
        for x in g {
            genuine.push((2, x));
        }
        genuine.push((2, sender.encrypt(b"later").expect("encrypt")));

        World { bob, bob_keys, bob_rec, empty: SessionRecord::new(), group, genuine }
    })
}

fn run(kind: u8, bytes: &[u8], w: &World) {
    let cfg = SessionConfig::default();
    let gcfg = SenderKeyConfig::default();
    let mut rng = Rng(7);
    match kind % 5 {
        0 => {
            for base in [&w.bob_rec, &w.empty] {
                let mut rec = base.clone();
                let before = rec.to_bytes();
                if rec.decrypt_pre_key_message(&w.bob, bytes, &w.bob_keys, &cfg, &mut rng).is_err() {
                    assert_eq!(rec.to_bytes(), before, "record changed on a failed pkmsg");
                }
            }
        }
        1 => {
            let mut rec = w.bob_rec.clone();
            let before = rec.to_bytes();
            if rec.decrypt_message(&w.bob, bytes, &cfg, &mut rng).is_err() {
                assert_eq!(rec.to_bytes(), before, "record changed on a failed msg");
            }
        }
        2 => {
            let mut rec = w.group.clone();
            let before = rec.to_bytes();
            if rec.decrypt_in_place(bytes, &gcfg).is_err() {
                assert_eq!(rec.to_bytes(), before, "record changed on a failed skmsg");
            }
        }
        3 => {
            let mut rec = w.group.clone();
            let before = rec.to_bytes();
            if rec.process_distribution_bytes(bytes, &gcfg).is_err() {
                assert_eq!(rec.to_bytes(), before, "record changed on a bad SKDM");
            }
        }
        _ => {
            // Stored records are untrusted input too.
            if let Ok(r) = SessionRecord::from_bytes(bytes) {
                let _ = r.to_bytes();
            }
            if let Ok(r) = SenderKeyRecord::from_bytes(bytes) {
                let _ = r.to_bytes();
            }
            let _ = PreKeyRecord::from_bytes(bytes);
            let _ = SignedPreKeyRecord::from_bytes(bytes);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let w = world();
    if mode & 0x80 == 0 {
        run(mode, rest, w);
        return;
    }
    // Splice mode: rest[0] picks a genuine message, then (position, value) pairs overwrite it.
    let Some((&pick, edits)) = rest.split_first() else { return };
    let (kind, genuine) = &w.genuine[pick as usize % w.genuine.len()];
    let mut msg = genuine.clone();
    for e in edits.chunks_exact(3) {
        let pos = u16::from_le_bytes([e[0], e[1]]) as usize;
        if pos < msg.len() {
            msg[pos] = e[2];
        } else if pos & 0x8000 != 0 {
            msg.truncate(pos & 0x7fff);
        } else {
            msg.push(e[2]);
        }
    }
    run(*kind, &msg, w);
});
