//! wa-signal against wacore-libsignal 0.7 (whatsapp-rust), same work, same run:
//! session establishment from a prekey bundle, steady-state encrypt + decrypt of 256 bytes,
//! and group (sender-key) encrypt + decrypt of 256 bytes.
//!
//! `cargo bench -p wa-benches --bench signal`
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::hint::black_box;

use criterion::{BatchSize, Criterion, criterion_group};
use rand::SeedableRng;
use rand::rngs::StdRng;

use wa_signal as ours;
use wacore_libsignal::protocol as wl;
use wacore_libsignal::protocol::GenericSignedPreKey as _;
use wacore_libsignal::store::sender_key_name::SenderKeyName;

const PLAINTEXT: [u8; 256] = [0x5a; 256];

// ---------------------------------------------------------------- ours

struct OurParty {
    identity: ours::LocalIdentity,
    pre_keys: ours::PreKeySet,
    bundle: ours::PreKeyBundle,
}

fn our_party(rng: &mut StdRng) -> OurParty {
    let identity = ours::LocalIdentity::generate(rng);
    let spk = ours::SignedPreKeyRecord::generate(&identity.key_pair, 1, rng);
    let opk = ours::PreKeyRecord::generate(1, rng);
    let bundle = ours::PreKeyBundle {
        registration_id: identity.registration_id,
        identity_key: identity.public_key(),
        signed_pre_key_id: spk.id,
        signed_pre_key: spk.key_pair.public,
        signed_pre_key_signature: spk.signature,
        pre_key: Some((opk.id, opk.key_pair.public)),
    };
    OurParty { identity, pre_keys: ours::PreKeySet { signed: vec![spk], one_time: vec![opk] }, bundle }
}

/// Alice and Bob with an acknowledged session (one pkmsg delivered, one reply delivered).
fn our_established(rng: &mut StdRng) -> (OurParty, ours::SessionRecord, OurParty, ours::SessionRecord) {
    let cfg = ours::SessionConfig::default();
    let alice = our_party(rng);
    let bob = our_party(rng);
    let mut a = ours::SessionRecord::new();
    a.initiate(&alice.identity, &bob.bundle, &cfg, rng).unwrap();
    let mut b = ours::SessionRecord::new();
    let ct = a.encrypt(&alice.identity, b"hello").unwrap();
    b.decrypt_pre_key_message(&bob.identity, ct.bytes(), &bob.pre_keys, &cfg, rng).unwrap();
    let r = b.encrypt(&bob.identity, b"hi").unwrap();
    a.decrypt_message(&alice.identity, r.bytes(), &cfg, rng).unwrap();
    (alice, a, bob, b)
}

// ---------------------------------------------------------------- wacore-libsignal

type WlResult<T> = wacore_libsignal::protocol::error::Result<T>;

struct WlIdentity {
    pair: wl::IdentityKeyPair,
    registration_id: u32,
    known: HashMap<wl::ProtocolAddress, wl::IdentityKey>,
}

#[async_trait::async_trait]
impl wl::IdentityKeyStore for WlIdentity {
    async fn get_identity_key_pair(&self) -> WlResult<wl::IdentityKeyPair> {
        Ok(self.pair.clone())
    }
    async fn get_local_registration_id(&self) -> WlResult<u32> {
        Ok(self.registration_id)
    }
    async fn save_identity(
        &mut self,
        a: &wl::ProtocolAddress,
        k: &wl::IdentityKey,
    ) -> WlResult<wl::IdentityChange> {
        let changed = self.known.insert(a.clone(), *k).is_some_and(|old| old != *k);
        Ok(wl::IdentityChange::from_changed(changed))
    }
    async fn is_trusted_identity(
        &self,
        _: &wl::ProtocolAddress,
        _: &wl::IdentityKey,
        _: wl::Direction,
    ) -> WlResult<bool> {
        Ok(true)
    }
    async fn get_identity(&self, a: &wl::ProtocolAddress) -> WlResult<Option<wl::IdentityKey>> {
        Ok(self.known.get(a).copied())
    }
}

#[derive(Default)]
struct WlPreKeys(HashMap<wl::PreKeyId, wl::PreKeyRecord>);

#[async_trait::async_trait]
impl wl::PreKeyStore for WlPreKeys {
    async fn get_pre_key(&self, id: wl::PreKeyId) -> WlResult<wl::PreKeyRecord> {
        self.0.get(&id).cloned().ok_or(wl::SignalProtocolError::InvalidPreKeyId)
    }
    async fn save_pre_key(&mut self, id: wl::PreKeyId, r: &wl::PreKeyRecord) -> WlResult<()> {
        self.0.insert(id, r.clone());
        Ok(())
    }
    async fn remove_pre_key(&mut self, id: wl::PreKeyId) -> WlResult<()> {
        self.0.remove(&id);
        Ok(())
    }
}

#[derive(Default)]
struct WlSignedPreKeys(HashMap<wl::SignedPreKeyId, wl::SignedPreKeyRecord>);

#[async_trait::async_trait]
impl wl::SignedPreKeyStore for WlSignedPreKeys {
    async fn get_signed_pre_key(&self, id: wl::SignedPreKeyId) -> WlResult<wl::SignedPreKeyRecord> {
        self.0.get(&id).cloned().ok_or(wl::SignalProtocolError::InvalidSignedPreKeyId)
    }
    async fn save_signed_pre_key(
        &mut self,
        id: wl::SignedPreKeyId,
        r: &wl::SignedPreKeyRecord,
    ) -> WlResult<()> {
        self.0.insert(id, r.clone());
        Ok(())
    }
}

#[derive(Default)]
struct WlSessions(HashMap<wl::ProtocolAddress, wl::SessionRecord>);

#[async_trait::async_trait]
impl wl::SessionStore for WlSessions {
    async fn load_session(&self, a: &wl::ProtocolAddress) -> WlResult<Option<wl::SessionRecord>> {
        Ok(self.0.get(a).cloned())
    }
    async fn has_session(&self, a: &wl::ProtocolAddress) -> WlResult<bool> {
        Ok(self.0.contains_key(a))
    }
    async fn store_session(&mut self, a: &wl::ProtocolAddress, r: wl::SessionRecord) -> WlResult<()> {
        self.0.insert(a.clone(), r);
        Ok(())
    }
}

#[derive(Default)]
struct WlSenderKeys(HashMap<SenderKeyName, wl::SenderKeyRecord>);

#[async_trait::async_trait]
impl wl::SenderKeyStore for WlSenderKeys {
    async fn store_sender_key(&mut self, n: &SenderKeyName, r: wl::SenderKeyRecord) -> WlResult<()> {
        self.0.insert(n.clone(), r);
        Ok(())
    }
    async fn load_sender_key(&self, n: &SenderKeyName) -> WlResult<Option<wl::SenderKeyRecord>> {
        Ok(self.0.get(n).cloned())
    }
}

struct WlParty {
    address: wl::ProtocolAddress,
    identity: WlIdentity,
    pre_keys: WlPreKeys,
    signed: WlSignedPreKeys,
    sessions: WlSessions,
    sender_keys: WlSenderKeys,
    bundle: wl::PreKeyBundle,
}

fn wl_party(name: &str, rng: &mut StdRng) -> WlParty {
    use rand::RngExt as _;
    let pair = wl::IdentityKeyPair::generate(rng);
    let registration_id = rng.random::<u32>() & 0x3FFF;
    let opk = wl::KeyPair::generate(rng);
    let spk = wl::KeyPair::generate(rng);
    let sig = pair.private_key().calculate_signature(&spk.public_key.serialize(), rng).unwrap();
    let mut pre_keys = WlPreKeys::default();
    pre_keys.0.insert(1.into(), wl::PreKeyRecord::new(1.into(), &opk));
    let mut signed = WlSignedPreKeys::default();
    signed.0.insert(
        1.into(),
        wl::SignedPreKeyRecord::new(1.into(), wl::Timestamp::from_epoch_millis(0), &spk, &sig),
    );
    let bundle = wl::PreKeyBundle::new(
        registration_id,
        1.into(),
        Some((1.into(), opk.public_key)),
        1.into(),
        spk.public_key,
        sig.to_vec(),
        *pair.identity_key(),
    )
    .unwrap();
    WlParty {
        address: wl::ProtocolAddress::new(name, 1.into()),
        identity: WlIdentity { pair, registration_id, known: HashMap::new() },
        pre_keys,
        signed,
        sessions: WlSessions::default(),
        sender_keys: WlSenderKeys::default(),
        bundle,
    }
}

fn wl_initiate(from: &mut WlParty, to: &wl::ProtocolAddress, bundle: &wl::PreKeyBundle, rng: &mut StdRng) {
    futures::executor::block_on(wl::process_prekey_bundle(
        to,
        &mut from.sessions,
        &mut from.identity,
        bundle,
        rng,
        wl::UsePQRatchet::No,
    ))
    .unwrap();
}

fn wl_encrypt(from: &mut WlParty, to: &wl::ProtocolAddress, pt: &[u8]) -> Vec<u8> {
    let ct = futures::executor::block_on(wl::message_encrypt(pt, to, &mut from.sessions, &mut from.identity))
        .unwrap();
    ct.serialize().to_vec()
}

fn wl_decrypt(
    to: &mut WlParty,
    from: &wl::ProtocolAddress,
    bytes: &[u8],
    prekey: bool,
    rng: &mut StdRng,
) -> Vec<u8> {
    let ct = if prekey {
        wl::CiphertextMessage::PreKeySignalMessage(wl::PreKeySignalMessage::try_from(bytes).unwrap())
    } else {
        wl::CiphertextMessage::SignalMessage(wl::SignalMessage::try_from(bytes).unwrap())
    };
    futures::executor::block_on(wl::message_decrypt(
        &ct,
        from,
        &mut to.sessions,
        &mut to.identity,
        &mut to.pre_keys,
        &to.signed,
        rng,
        wl::UsePQRatchet::No,
    ))
    .unwrap()
    .plaintext
}

fn wl_established(rng: &mut StdRng) -> (WlParty, WlParty) {
    let mut alice = wl_party("alice", rng);
    let mut bob = wl_party("bob", rng);
    let bundle = bob.bundle.clone();
    wl_initiate(&mut alice, &bob.address.clone(), &bundle, rng);
    let ct = wl_encrypt(&mut alice, &bob.address.clone(), b"hello");
    wl_decrypt(&mut bob, &alice.address.clone(), &ct, true, rng);
    let r = wl_encrypt(&mut bob, &alice.address.clone(), b"hi");
    wl_decrypt(&mut alice, &bob.address.clone(), &r, false, rng);
    (alice, bob)
}

// ---------------------------------------------------------------- benches

fn session_establishment(c: &mut Criterion) {
    let mut g = c.benchmark_group("signal/session_from_bundle");
    let mut rng = StdRng::seed_from_u64(1);
    let cfg = ours::SessionConfig::default();
    let alice = our_party(&mut rng);
    let bob = our_party(&mut rng);
    g.bench_function("wa-signal", |b| {
        b.iter_batched_ref(
            ours::SessionRecord::new,
            |rec| {
                black_box(rec.initiate(&alice.identity, &bob.bundle, &cfg, &mut rng).unwrap());
            },
            BatchSize::SmallInput,
        )
    });
    let mut rng2 = StdRng::seed_from_u64(2);
    let mut setup_rng = StdRng::seed_from_u64(22);
    let wl_bob = wl_party("bob", &mut rng2);
    g.bench_function("wacore-libsignal", |b| {
        b.iter_batched_ref(
            || wl_party("alice", &mut setup_rng),
            |alice| wl_initiate(alice, &wl_bob.address, &wl_bob.bundle, &mut rng2),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

fn steady_state(c: &mut Criterion) {
    let mut g = c.benchmark_group("signal/encrypt_decrypt_256B");
    let mut rng = StdRng::seed_from_u64(3);
    let cfg = ours::SessionConfig::default();
    let (alice, mut a, bob, mut b_rec) = our_established(&mut rng);
    g.bench_function("wa-signal", |bch| {
        bch.iter(|| {
            let ct = a.encrypt(&alice.identity, &PLAINTEXT).unwrap();
            let d = b_rec.decrypt_message(&bob.identity, ct.bytes(), &cfg, &mut rng).unwrap();
            black_box(d.plaintext);
        })
    });
    let mut rng2 = StdRng::seed_from_u64(4);
    let (mut wa, mut wb) = wl_established(&mut rng2);
    let (aa, ba) = (wa.address.clone(), wb.address.clone());
    g.bench_function("wacore-libsignal", |bch| {
        bch.iter(|| {
            let ct = wl_encrypt(&mut wa, &ba, &PLAINTEXT);
            black_box(wl_decrypt(&mut wb, &aa, &ct, false, &mut rng2));
        })
    });
    g.finish();
}

fn group(c: &mut Criterion) {
    let mut g = c.benchmark_group("signal/group_encrypt_decrypt_256B");
    let mut rng = StdRng::seed_from_u64(5);
    let cfg = ours::SenderKeyConfig::default();
    let mut sender = ours::SenderKeyRecord::new();
    sender.generate_own_state(&cfg, &mut rng);
    let mut receiver = ours::SenderKeyRecord::new();
    receiver.process_distribution_message(&sender.distribution_message().unwrap(), &cfg);
    g.bench_function("wa-signal", |bch| {
        bch.iter(|| {
            let ct = sender.encrypt(&PLAINTEXT).unwrap();
            black_box(receiver.decrypt_in_place(&ct, &cfg).unwrap());
        })
    });

    let mut rng2 = StdRng::seed_from_u64(6);
    let mut alice = wl_party("alice", &mut rng2);
    let mut bob = wl_party("bob", &mut rng2);
    let name = SenderKeyName::new("120363000000000001@g.us".to_string(), alice.address.name().to_string());
    let skdm = futures::executor::block_on(wl::create_sender_key_distribution_message(
        &name,
        &mut alice.sender_keys,
        &mut rng2,
    ))
    .unwrap();
    futures::executor::block_on(wl::process_sender_key_distribution_message(
        &name,
        &skdm,
        &mut bob.sender_keys,
    ))
    .unwrap();
    g.bench_function("wacore-libsignal", |bch| {
        bch.iter(|| {
            let skm = futures::executor::block_on(wl::group_encrypt(
                &mut alice.sender_keys,
                &name,
                &PLAINTEXT,
                &mut rng2,
            ))
            .unwrap();
            let pt =
                futures::executor::block_on(wl::group_decrypt(skm.serialized(), &mut bob.sender_keys, &name))
                    .unwrap();
            black_box(pt);
        })
    });
    g.finish();
}

/// `WA_SIGNAL_GROUP_ONE=<side>:<iterations>` (side `ours`/`theirs`) runs only the group
/// encrypt + decrypt loop and exits: a fixed workload for `valgrind --tool=callgrind`
/// (subtract a run with 0 iterations to remove the setup).
fn group_one(spec: &str) {
    let (side, iters) = spec.split_once(':').expect("WA_SIGNAL_GROUP_ONE=side:iterations");
    let iters: u32 = iters.parse().unwrap();
    let mut rng = StdRng::seed_from_u64(5);
    if side == "ours" {
        let cfg = ours::SenderKeyConfig::default();
        let mut sender = ours::SenderKeyRecord::new();
        sender.generate_own_state(&cfg, &mut rng);
        let mut receiver = ours::SenderKeyRecord::new();
        receiver.process_distribution_message(&sender.distribution_message().unwrap(), &cfg);
        for _ in 0..iters {
            let ct = sender.encrypt(&PLAINTEXT).unwrap();
            black_box(receiver.decrypt_in_place(&ct, &cfg).unwrap());
        }
    } else {
        let mut alice = wl_party("alice", &mut rng);
        let mut bob = wl_party("bob", &mut rng);
        let name =
            SenderKeyName::new("120363000000000001@g.us".to_string(), alice.address.name().to_string());
        let skdm = futures::executor::block_on(wl::create_sender_key_distribution_message(
            &name,
            &mut alice.sender_keys,
            &mut rng,
        ))
        .unwrap();
        futures::executor::block_on(wl::process_sender_key_distribution_message(
            &name,
            &skdm,
            &mut bob.sender_keys,
        ))
        .unwrap();
        for _ in 0..iters {
            let skm = futures::executor::block_on(wl::group_encrypt(
                &mut alice.sender_keys,
                &name,
                &PLAINTEXT,
                &mut rng,
            ))
            .unwrap();
            let pt =
                futures::executor::block_on(wl::group_decrypt(skm.serialized(), &mut bob.sender_keys, &name))
                    .unwrap();
            black_box(pt);
        }
    }
}

/// `WA_SIGNAL_GROUP_AB=<rounds>` times the group round trip in short alternating rounds
/// (50 iterations of ours, then 50 of theirs, the order swapped every round) and prints each
/// side's median time per iteration and the median of the per-round ratios (theirs / ours).
/// On a shared machine whose load drifts within seconds this pairs each of our rounds with
/// one of theirs taken moments apart, which a criterion run (all of ours, then all of
/// theirs) cannot.
fn group_ab(rounds: usize) {
    use std::time::Instant;
    const ITERS: u32 = 50;
    let mut rng = StdRng::seed_from_u64(5);
    let cfg = ours::SenderKeyConfig::default();
    let mut sender = ours::SenderKeyRecord::new();
    sender.generate_own_state(&cfg, &mut rng);
    let mut receiver = ours::SenderKeyRecord::new();
    receiver.process_distribution_message(&sender.distribution_message().unwrap(), &cfg);
    let mut alice = wl_party("alice", &mut rng);
    let mut bob = wl_party("bob", &mut rng);
    let name = SenderKeyName::new("120363000000000001@g.us".to_string(), alice.address.name().to_string());
    let skdm = futures::executor::block_on(wl::create_sender_key_distribution_message(
        &name,
        &mut alice.sender_keys,
        &mut rng,
    ))
    .unwrap();
    futures::executor::block_on(wl::process_sender_key_distribution_message(
        &name,
        &skdm,
        &mut bob.sender_keys,
    ))
    .unwrap();
    let mut ours_round = || {
        let t = Instant::now();
        for _ in 0..ITERS {
            let ct = sender.encrypt(&PLAINTEXT).unwrap();
            black_box(receiver.decrypt_in_place(&ct, &cfg).unwrap());
        }
        t.elapsed().as_secs_f64() / f64::from(ITERS)
    };
    let mut theirs_round = || {
        let t = Instant::now();
        for _ in 0..ITERS {
            let skm = futures::executor::block_on(wl::group_encrypt(
                &mut alice.sender_keys,
                &name,
                &PLAINTEXT,
                &mut rng,
            ))
            .unwrap();
            black_box(
                futures::executor::block_on(wl::group_decrypt(skm.serialized(), &mut bob.sender_keys, &name))
                    .unwrap(),
            );
        }
        t.elapsed().as_secs_f64() / f64::from(ITERS)
    };
    // Warm-up: the signing and verifying keys' Edwards forms are cached on first use.
    ours_round();
    theirs_round();
    let (mut o, mut t, mut r) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..rounds {
        let (a, b) = if i % 2 == 0 {
            let a = ours_round();
            (a, theirs_round())
        } else {
            let b = theirs_round();
            (ours_round(), b)
        };
        o.push(a);
        t.push(b);
        r.push(b / a);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!(
        "group encrypt+decrypt 256 B, {rounds} alternating rounds of {ITERS}: wa-signal median {:.1} µs, \
         wacore-libsignal median {:.1} µs, median per-round ratio {:.3}x",
        median(&mut o) * 1e6,
        median(&mut t) * 1e6,
        median(&mut r)
    );
}

criterion_group!(benches, session_establishment, steady_state, group);

fn main() {
    if let Ok(spec) = std::env::var("WA_SIGNAL_GROUP_ONE") {
        return group_one(&spec);
    }
    if let Ok(rounds) = std::env::var("WA_SIGNAL_GROUP_AB") {
        return group_ab(rounds.parse().expect("WA_SIGNAL_GROUP_AB=<rounds>"));
    }
    benches();
    criterion::Criterion::default().configure_from_args().final_summary();
}
