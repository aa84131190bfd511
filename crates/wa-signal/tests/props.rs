//! Property tests: random interleavings with reordering, loss, duplication and tampering.
//! Every untampered message decrypts exactly once (later copies are recognised as duplicates),
//! and every tampered copy is rejected without changing the receiver's record.
#![allow(clippy::unwrap_used, clippy::expect_used)] // helpers outside #[test] fns

mod common;

use common::TestRng;
use proptest::prelude::*;
use wa_signal::{
    CiphertextMessage, LocalIdentity, PreKeyBundle, PreKeyRecord, PreKeySet, PreKeySignalMessage,
    SenderKeyConfig, SenderKeyRecord, SessionConfig, SessionRecord, SignalError, SignedPreKeyRecord,
};

/// 48 cases by default (CI budget); `PROPTEST_CASES` raises it for a deeper search.
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(48)
}

#[derive(Clone, Debug)]
enum Op {
    Send(bool),
    Deliver(usize),
    Duplicate(usize),
    Drop(usize),
    Tamper(usize, usize, u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => any::<bool>().prop_map(Op::Send),
        4 => any::<usize>().prop_map(Op::Deliver),
        1 => any::<usize>().prop_map(Op::Duplicate),
        1 => any::<usize>().prop_map(Op::Drop),
        2 => (any::<usize>(), any::<usize>(), 1u8..=255).prop_map(|(i, p, x)| Op::Tamper(i, p, x)),
    ]
}

struct Party {
    id: LocalIdentity,
    keys: PreKeySet,
    rec: SessionRecord,
}

struct InFlight {
    to_bob: bool,
    prekey: bool,
    bytes: Vec<u8>,
    plaintext: Vec<u8>,
    delivered: bool,
}

/// Byte ranges of a message that are authenticated (MAC or X3DH). A PreKeySignalMessage's
/// registration id and prekey ids are not authenticated in Signal v3, so tampering targets the
/// base key, identity key and inner message.
fn authenticated_ranges(m: &InFlight) -> Vec<(usize, usize)> {
    if !m.prekey {
        return vec![(0, m.bytes.len())];
    }
    let p = PreKeySignalMessage::parse(&m.bytes).unwrap();
    let find = |needle: &[u8]| {
        let at = m.bytes.windows(needle.len()).position(|w| w == needle).unwrap();
        (at, at + needle.len())
    };
    vec![find(&p.base_key.to_djb()), find(&p.identity_key.to_djb()), find(p.message().unwrap().serialized())]
}

fn decrypt(
    p: &mut Party,
    m: &InFlight,
    bytes: &[u8],
    cfg: &SessionConfig,
    rng: &mut TestRng,
) -> Result<Vec<u8>, SignalError> {
    if m.prekey {
        let d = p.rec.decrypt_pre_key_message(&p.id, bytes, &p.keys, cfg, rng)?;
        // One-time prekeys are single-use: the caller deletes them once the record is stored.
        if let Some(id) = d.used_pre_key {
            p.keys.remove_one_time(id);
        }
        Ok(d.plaintext)
    } else {
        p.rec.decrypt_message(&p.id, bytes, cfg, rng).map(|d| d.plaintext)
    }
}

fn run_pairwise(seed: u64, ops: Vec<Op>) {
    let mut rng = TestRng(seed);
    // Retention limits are tested on their own; here every chain is kept so that arbitrary
    // delays stay decryptable and the property is exact.
    let cfg = SessionConfig { max_receiving_chains: 1000, ..SessionConfig::default() };
    let mk = |rng: &mut TestRng| {
        let id = LocalIdentity::generate(rng);
        let signed = SignedPreKeyRecord::generate(&id.key_pair, 1, rng);
        let one_time = vec![PreKeyRecord::generate(9, rng)];
        Party { id, keys: PreKeySet { signed: vec![signed], one_time }, rec: SessionRecord::new() }
    };
    let mut alice = mk(&mut rng);
    let mut bob = mk(&mut rng);
    let s = &bob.keys.signed[0];
    let bundle = PreKeyBundle {
        registration_id: bob.id.registration_id,
        identity_key: bob.id.public_key(),
        signed_pre_key_id: s.id,
        signed_pre_key: s.key_pair.public,
        signed_pre_key_signature: s.signature,
        pre_key: Some((9, bob.keys.one_time[0].key_pair.public)),
    };
    alice.rec.initiate(&alice.id, &bundle, &cfg, &mut rng).unwrap();

    let mut net: Vec<InFlight> = Vec::new();
    let mut pending: Vec<usize> = Vec::new(); // indexes of in-flight messages not yet dropped/delivered
    let mut n = 0u32;
    for op in ops {
        match op {
            Op::Send(from_alice) => {
                let (p, to_bob) = if from_alice { (&mut alice, true) } else { (&mut bob, false) };
                if !p.rec.has_current_session() {
                    continue;
                }
                n += 1;
                let plaintext = format!("m{n} from {}", if from_alice { "a" } else { "b" }).into_bytes();
                let ct = p.rec.encrypt(&p.id, &plaintext).unwrap();
                let prekey = matches!(ct, CiphertextMessage::PreKey(_));
                pending.push(net.len());
                net.push(InFlight { to_bob, prekey, bytes: ct.into_bytes(), plaintext, delivered: false });
            }
            Op::Deliver(i) | Op::Duplicate(i) | Op::Drop(i) | Op::Tamper(i, ..) if net.is_empty() => {
                let _ = i;
            }
            Op::Deliver(i) => {
                if pending.is_empty() {
                    continue;
                }
                let k = pending.remove(i % pending.len());
                deliver_genuine(&mut alice, &mut bob, &mut net[k], &cfg, &mut rng);
            }
            Op::Duplicate(i) => {
                // Any message already sent, delivered or not: a second copy.
                let k = i % net.len();
                if net[k].delivered {
                    let m = &net[k];
                    let p = if m.to_bob { &mut bob } else { &mut alice };
                    let before = p.rec.to_bytes();
                    let err = decrypt(p, m, &m.bytes.clone(), &cfg, &mut rng).unwrap_err();
                    assert!(matches!(err, SignalError::DuplicateMessage { .. }), "duplicate gave {err}");
                    assert_eq!(p.rec.to_bytes(), before);
                } else if let Some(pos) = pending.iter().position(|&x| x == k) {
                    pending.remove(pos);
                    deliver_genuine(&mut alice, &mut bob, &mut net[k], &cfg, &mut rng);
                }
            }
            Op::Drop(i) => {
                if !pending.is_empty() {
                    pending.remove(i % pending.len());
                }
            }
            Op::Tamper(i, pos, x) => {
                let m = &net[i % net.len()];
                let ranges = authenticated_ranges(m);
                let (s, e) = ranges[pos % ranges.len()];
                let mut t = m.bytes.clone();
                t[s + (pos / ranges.len()) % (e - s)] ^= x;
                let p = if m.to_bob { &mut bob } else { &mut alice };
                let before = p.rec.to_bytes();
                let keys_before = p.keys.one_time.len();
                let r = decrypt(p, m, &t, &cfg, &mut rng);
                assert!(r.is_err(), "a tampered message was accepted");
                assert_eq!(p.rec.to_bytes(), before, "a tampered message changed the record");
                assert_eq!(p.keys.one_time.len(), keys_before);
            }
        }
    }
    // Everything still in flight arrives at last, in reverse order.
    while let Some(k) = pending.pop() {
        deliver_genuine(&mut alice, &mut bob, &mut net[k], &cfg, &mut rng);
    }
}

fn deliver_genuine(
    alice: &mut Party,
    bob: &mut Party,
    m: &mut InFlight,
    cfg: &SessionConfig,
    rng: &mut TestRng,
) {
    assert!(!m.delivered);
    let p = if m.to_bob { bob } else { alice };
    let pt =
        decrypt(p, m, &m.bytes.clone(), cfg, rng).unwrap_or_else(|e| panic!("genuine message refused: {e}"));
    assert_eq!(pt, m.plaintext);
    m.delivered = true;
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn pairwise_interleavings(seed in any::<u64>(), ops in proptest::collection::vec(op(), 1..80)) {
        run_pairwise(seed, ops);
    }
}

// ------------------------------------------------------------------ sender keys

#[derive(Clone, Debug)]
enum GOp {
    Send,
    Rotate,
    Join(usize),
    Deliver(usize, usize),
    Duplicate(usize, usize),
    Tamper(usize, usize, usize, u8),
}

fn gop() -> impl Strategy<Value = GOp> {
    prop_oneof![
        4 => Just(GOp::Send),
        1 => Just(GOp::Rotate),
        1 => any::<usize>().prop_map(GOp::Join),
        6 => (any::<usize>(), any::<usize>()).prop_map(|(i, r)| GOp::Deliver(i, r)),
        1 => (any::<usize>(), any::<usize>()).prop_map(|(i, r)| GOp::Duplicate(i, r)),
        2 => (any::<usize>(), any::<usize>(), any::<usize>(), 1u8..=255).prop_map(|(i, r, p, x)| GOp::Tamper(i, r, p, x)),
    ]
}

const MEMBERS: usize = 3;

struct GroupMsg {
    bytes: Vec<u8>,
    plaintext: Vec<u8>,
    /// Which members could read it (had the sender key when it was sent), and who has read it.
    readable: [bool; MEMBERS],
    delivered: [bool; MEMBERS],
}

fn run_group(seed: u64, ops: Vec<GOp>) {
    let mut rng = TestRng(seed);
    let cfg = SenderKeyConfig::default();
    let mut sender = SenderKeyRecord::new();
    sender.generate_own_state(&cfg, &mut rng);
    let mut members: Vec<SenderKeyRecord> = (0..MEMBERS).map(|_| SenderKeyRecord::new()).collect();
    let mut joined = [false; MEMBERS];
    let mut rotations = 0;
    let mut net: Vec<GroupMsg> = Vec::new();
    for op in ops {
        match op {
            GOp::Send => {
                let plaintext = format!("group {}", net.len()).into_bytes();
                let bytes = sender.encrypt(&plaintext).unwrap();
                net.push(GroupMsg { bytes, plaintext, readable: joined, delivered: [false; MEMBERS] });
            }
            GOp::Rotate if rotations < 3 => {
                rotations += 1;
                sender.generate_own_state(&cfg, &mut rng);
                let skdm = sender.distribution_message().unwrap().to_bytes();
                for (m, j) in members.iter_mut().zip(joined) {
                    if j {
                        m.process_distribution_bytes(&skdm, &cfg).unwrap();
                    }
                }
            }
            GOp::Rotate => {}
            GOp::Join(r) => {
                let r = r % MEMBERS;
                let skdm = sender.distribution_message().unwrap().to_bytes();
                members[r].process_distribution_bytes(&skdm, &cfg).unwrap();
                joined[r] = true;
            }
            GOp::Deliver(i, r) | GOp::Duplicate(i, r) if !net.is_empty() => {
                let (k, r) = (i % net.len(), r % MEMBERS);
                let m = &mut net[k];
                let before = members[r].to_bytes();
                let res = members[r].decrypt_in_place(&m.bytes, &cfg);
                if m.delivered[r] {
                    assert!(matches!(res, Err(SignalError::DuplicateMessage { .. })), "{res:?}");
                    assert_eq!(members[r].to_bytes(), before);
                } else if m.readable[r] {
                    assert_eq!(res.unwrap(), m.plaintext);
                    m.delivered[r] = true;
                } else {
                    // Sent before this member had the key: refused, record unchanged.
                    assert!(res.is_err());
                    assert_eq!(members[r].to_bytes(), before);
                }
            }
            GOp::Tamper(i, r, pos, x) if !net.is_empty() => {
                let (k, r) = (i % net.len(), r % MEMBERS);
                let mut t = net[k].bytes.clone();
                let p = pos % t.len();
                t[p] ^= x;
                let before = members[r].to_bytes();
                assert!(members[r].decrypt_in_place(&t, &cfg).is_err(), "tampered skmsg accepted");
                assert_eq!(members[r].to_bytes(), before);
            }
            _ => {}
        }
    }
    // Final delivery of everything readable and not yet read, newest first.
    for m in net.iter_mut().rev() {
        for (r, member) in members.iter_mut().enumerate() {
            if m.readable[r] && !m.delivered[r] {
                assert_eq!(member.decrypt_in_place(&m.bytes, &cfg).unwrap(), m.plaintext);
                m.delivered[r] = true;
            }
        }
    }
    // Each record survives serialization.
    for m in &members {
        assert_eq!(SenderKeyRecord::from_bytes(&m.to_bytes()).unwrap().to_bytes(), m.to_bytes());
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn group_interleavings(seed in any::<u64>(), ops in proptest::collection::vec(gop(), 1..80)) {
        run_group(seed, ops);
    }
}
