//! Limits, record sizes, atomicity of failures, identity changes, simultaneous initiation.
#![allow(clippy::unwrap_used, clippy::expect_used)] // helpers outside #[test] fns

mod common;

use common::TestRng;
use wa_signal::{
    CiphertextMessage, IdentityCheck, LocalIdentity, PreKeyBundle, PreKeyRecord, PreKeySet, SenderKeyConfig,
    SenderKeyRecord, SessionConfig, SessionRecord, SignalError, SignedPreKeyRecord,
};

pub struct Party {
    pub id: LocalIdentity,
    pub keys: PreKeySet,
}

impl Party {
    pub fn new(rng: &mut TestRng) -> Self {
        let id = LocalIdentity::generate(rng);
        let signed = SignedPreKeyRecord::generate(&id.key_pair, 1, rng);
        let one_time = PreKeyRecord::generate_batch(1, 5, rng);
        Party { id, keys: PreKeySet { signed: vec![signed], one_time } }
    }
    pub fn bundle(&self) -> PreKeyBundle {
        let s = &self.keys.signed[0];
        PreKeyBundle {
            registration_id: self.id.registration_id,
            identity_key: self.id.public_key(),
            signed_pre_key_id: s.id,
            signed_pre_key: s.key_pair.public,
            signed_pre_key_signature: s.signature,
            pre_key: self.keys.one_time.first().map(|p| (p.id, p.key_pair.public)),
        }
    }
}

fn deliver(
    to: &Party,
    rec: &mut SessionRecord,
    ct: &CiphertextMessage,
    rng: &mut TestRng,
) -> Result<Vec<u8>, SignalError> {
    let cfg = SessionConfig::default();
    match ct {
        CiphertextMessage::PreKey(b) => {
            rec.decrypt_pre_key_message(&to.id, b, &to.keys, &cfg, rng).map(|d| d.plaintext)
        }
        CiphertextMessage::Whisper(b) => rec.decrypt_message(&to.id, b, &cfg, rng).map(|d| d.plaintext),
    }
}

/// Alice and Bob with an acknowledged session.
fn established(rng: &mut TestRng) -> (Party, SessionRecord, Party, SessionRecord) {
    let alice = Party::new(rng);
    let bob = Party::new(rng);
    let mut a = SessionRecord::new();
    a.initiate(&alice.id, &bob.bundle(), &SessionConfig::default(), rng).unwrap();
    let mut b = SessionRecord::new();
    let ct = a.encrypt(&alice.id, b"hello").unwrap();
    deliver(&bob, &mut b, &ct, rng).unwrap();
    let r = b.encrypt(&bob.id, b"hi").unwrap();
    deliver(&alice, &mut a, &r, rng).unwrap();
    (alice, a, bob, b)
}

#[test]
fn two_thousand_ahead_succeeds_two_thousand_and_one_fails_cleanly() {
    let mut rng = TestRng(1);
    let (alice, mut a, bob, mut b) = established(&mut rng);
    // Skip exactly 2,000 message keys, then deliver the next one.
    let mut msgs: Vec<CiphertextMessage> =
        (0..2002).map(|i| a.encrypt(&alice.id, &[i as u8; 10]).unwrap()).collect();
    let last = msgs.pop().unwrap(); // index 2001: 2,001 ahead of a fresh receiver
    let at_limit = msgs.pop().unwrap(); // index 2000: 2,000 ahead
    let before = b.to_bytes();
    let err = deliver(&bob, &mut b, &last, &mut rng).unwrap_err();
    assert!(matches!(err, SignalError::TooFarAhead { ahead: 2001, limit: 2000 }), "{err}");
    assert_eq!(b.to_bytes(), before, "a refused message must not change the record");
    assert_eq!(deliver(&bob, &mut b, &at_limit, &mut rng).unwrap(), vec![2000u32 as u8; 10]);
    // The 2,000 skipped keys decrypt the late messages, each once.
    for (i, m) in msgs.iter().enumerate().rev().take(50) {
        assert_eq!(deliver(&bob, &mut b, m, &mut rng).unwrap(), vec![i as u8; 10]);
        assert!(matches!(deliver(&bob, &mut b, m, &mut rng), Err(SignalError::DuplicateMessage { .. })));
    }
    // And now the former 2,001st is in range.
    assert_eq!(deliver(&bob, &mut b, &last, &mut rng).unwrap(), vec![2001u32 as u8; 10]);
}

#[test]
fn sender_key_two_thousand_ahead_limit() {
    let mut rng = TestRng(2);
    let cfg = SenderKeyConfig::default();
    let mut s = SenderKeyRecord::new();
    s.generate_own_state(&cfg, &mut rng);
    let mut r = SenderKeyRecord::new();
    r.process_distribution_message(&s.distribution_message().unwrap(), &cfg);
    let msgs: Vec<Vec<u8>> = (0..2002).map(|i| s.encrypt(&[i as u8; 3]).unwrap()).collect();
    let before = r.to_bytes();
    let err = r.decrypt_in_place(&msgs[2001], &cfg).unwrap_err();
    assert!(matches!(err, SignalError::TooFarAhead { ahead: 2001, limit: 2000 }), "{err}");
    assert_eq!(r.to_bytes(), before);
    assert_eq!(r.decrypt_in_place(&msgs[2000], &cfg).unwrap(), vec![2000u32 as u8; 3]);
    // Skipped keys are capped (oldest dropped) and the record stays under 64 KB.
    assert_eq!(r.skipped_keys(), cfg.max_skipped_keys);
    let size = r.to_bytes().len();
    assert!(size <= 64 * 1024, "sender-key record at the skipped-key cap is {size} bytes");
    eprintln!("sender-key record at the skipped-key cap ({} keys): {size} bytes", r.skipped_keys());
    // The newest skipped keys are the ones kept.
    assert_eq!(r.decrypt_in_place(&msgs[1999], &cfg).unwrap(), vec![1999u32 as u8; 3]);
    assert!(matches!(r.decrypt_in_place(&msgs[0], &cfg), Err(SignalError::DuplicateMessage { .. })));
}

#[test]
fn sender_key_record_at_cap_with_several_states_stays_small() {
    let mut rng = TestRng(3);
    let cfg = SenderKeyConfig::default();
    let mut r = SenderKeyRecord::new();
    // Five senders' key rotations, each jumped far ahead: the cap is per record.
    for _ in 0..5 {
        let mut s = SenderKeyRecord::new();
        s.generate_own_state(&cfg, &mut rng);
        r.process_distribution_message(&s.distribution_message().unwrap(), &cfg);
        s.skip_sending_iterations(1990).unwrap();
        let m = s.encrypt(b"x").unwrap();
        r.decrypt_in_place(&m, &cfg).unwrap();
    }
    let size = r.to_bytes().len();
    assert!(r.skipped_keys() <= cfg.max_skipped_keys);
    assert!(size <= 64 * 1024, "{size}");
    eprintln!("sender-key record, 5 states at the cap: {size} bytes");
}

#[test]
fn one_to_one_record_stays_under_16k_after_5000_alternating_messages() {
    let mut rng = TestRng(4);
    let (alice, mut a, bob, mut b) = established(&mut rng);
    for i in 0..5000u32 {
        let (from, from_rec, to, to_rec) =
            if i % 2 == 0 { (&alice, &mut a, &bob, &mut b) } else { (&bob, &mut b, &alice, &mut a) };
        let ct = from_rec.encrypt(&from.id, &i.to_le_bytes()).unwrap();
        assert_eq!(deliver(to, to_rec, &ct, &mut rng).unwrap(), i.to_le_bytes());
    }
    for rec in [&a, &b] {
        let size = rec.to_bytes().len();
        assert!(size <= 16 * 1024, "record is {size} bytes");
        eprintln!("1:1 record after 5,000 alternating messages: {size} bytes");
    }
}

#[test]
fn failures_leave_the_record_untouched() {
    let mut rng = TestRng(5);
    let (alice, mut a, bob, mut b) = established(&mut rng);
    let ct = a.encrypt(&alice.id, b"payload").unwrap().into_bytes();
    let before = b.to_bytes();
    // Bad MAC.
    let mut t = ct.clone();
    *t.last_mut().unwrap() ^= 1;
    assert!(matches!(
        b.decrypt_message(&bob.id, &t, &SessionConfig::default(), &mut rng),
        Err(SignalError::BadMac)
    ));
    // Corrupted body.
    let mut t = ct.clone();
    let n = t.len();
    t[n - 12] ^= 0x40;
    assert!(b.decrypt_message(&bob.id, &t, &SessionConfig::default(), &mut rng).is_err());
    // Wrong version, truncated.
    let mut t = ct.clone();
    t[0] = 0x34;
    assert!(matches!(
        b.decrypt_message(&bob.id, &t, &SessionConfig::default(), &mut rng),
        Err(SignalError::UnsupportedVersion(0x34))
    ));
    assert!(b.decrypt_message(&bob.id, &ct[..5], &SessionConfig::default(), &mut rng).is_err());
    assert_eq!(b.to_bytes(), before);
    // The genuine message still decrypts afterwards.
    assert_eq!(
        b.decrypt_message(&bob.id, &ct, &SessionConfig::default(), &mut rng).unwrap().plaintext,
        b"payload"
    );
    // The pure form never modifies its input.
    let snapshot = b.to_bytes();
    assert!(
        b.decrypt(
            &bob.id,
            wa_signal::MessageKind::Whisper,
            &ct,
            &bob.keys,
            &SessionConfig::default(),
            &mut rng
        )
        .is_err()
    );
    assert_eq!(b.to_bytes(), snapshot);
}

#[test]
fn unknown_prekeys_are_typed_errors_and_change_nothing() {
    let mut rng = TestRng(6);
    let alice = Party::new(&mut rng);
    let bob = Party::new(&mut rng);
    let mut a = SessionRecord::new();
    a.initiate(&alice.id, &bob.bundle(), &SessionConfig::default(), &mut rng).unwrap();
    let ct = a.encrypt(&alice.id, b"x").unwrap().into_bytes();
    let mut b = SessionRecord::new();
    let empty = PreKeySet::default();
    let err =
        b.decrypt_pre_key_message(&bob.id, &ct, &empty, &SessionConfig::default(), &mut rng).unwrap_err();
    assert!(matches!(err, SignalError::UnknownSignedPreKey(1)), "{err}");
    let only_signed = PreKeySet { signed: bob.keys.signed.clone(), one_time: vec![] };
    let err = b
        .decrypt_pre_key_message(&bob.id, &ct, &only_signed, &SessionConfig::default(), &mut rng)
        .unwrap_err();
    assert!(matches!(err, SignalError::UnknownPreKey(1)), "{err}");
    assert!(!b.has_current_session());
    let d = b.decrypt_pre_key_message(&bob.id, &ct, &bob.keys, &SessionConfig::default(), &mut rng).unwrap();
    assert_eq!(d.used_pre_key, Some(1));
    assert_eq!(d.identity, IdentityCheck::FirstContact);
}

#[test]
fn identity_changes_are_reported_or_refused() {
    let mut rng = TestRng(7);
    let (alice, mut a, bob, mut b) = established(&mut rng);
    // Bob reinstalls: new identity, new prekeys.
    let bob2 = Party::new(&mut rng);
    let strict = SessionConfig { accept_identity_change: false, ..SessionConfig::default() };
    let before = a.to_bytes();
    let err = a.initiate(&alice.id, &bob2.bundle(), &strict, &mut rng).unwrap_err();
    assert!(
        matches!(err, SignalError::IdentityChanged { previous, new } if previous == bob.id.public_key() && new == bob2.id.public_key())
    );
    assert_eq!(a.to_bytes(), before);
    let check = a.initiate(&alice.id, &bob2.bundle(), &SessionConfig::default(), &mut rng).unwrap();
    assert_eq!(check, IdentityCheck::Changed { previous: bob.id.public_key() });
    // Same identity again: unchanged.
    let check = a.initiate(&alice.id, &bob2.bundle(), &SessionConfig::default(), &mut rng).unwrap();
    assert_eq!(check, IdentityCheck::Unchanged);

    // Receiving side: Alice reinstalls and writes to Bob.
    let alice2 = Party::new(&mut rng);
    let mut a2 = SessionRecord::new();
    a2.initiate(&alice2.id, &Party::bundle(&bob), &SessionConfig::default(), &mut rng).unwrap();
    let ct = a2.encrypt(&alice2.id, b"new phone").unwrap().into_bytes();
    let before = b.to_bytes();
    let err = b.decrypt_pre_key_message(&bob.id, &ct, &bob.keys, &strict, &mut rng).unwrap_err();
    assert!(matches!(err, SignalError::IdentityChanged { .. }));
    assert_eq!(b.to_bytes(), before);
    let d = b.decrypt_pre_key_message(&bob.id, &ct, &bob.keys, &SessionConfig::default(), &mut rng).unwrap();
    assert_eq!(d.identity, IdentityCheck::Changed { previous: alice.id.public_key() });
    assert_eq!(d.plaintext, b"new phone");
}

#[test]
fn simultaneous_initiation_converges_and_loses_nothing() {
    let mut rng = TestRng(8);
    let alice = Party::new(&mut rng);
    let bob = Party::new(&mut rng);
    let (mut a, mut b) = (SessionRecord::new(), SessionRecord::new());
    a.initiate(&alice.id, &bob.bundle(), &SessionConfig::default(), &mut rng).unwrap();
    b.initiate(&bob.id, &alice.bundle(), &SessionConfig::default(), &mut rng).unwrap();
    let from_a = a.encrypt(&alice.id, b"A1").unwrap();
    let from_b = b.encrypt(&bob.id, b"B1").unwrap();
    assert_eq!(deliver(&bob, &mut b, &from_a, &mut rng).unwrap(), b"A1");
    assert_eq!(deliver(&alice, &mut a, &from_b, &mut rng).unwrap(), b"B1");
    // Both keep talking, crossing messages; every message decrypts.
    for round in 0..6u8 {
        let x = a.encrypt(&alice.id, &[round, 1]).unwrap();
        let y = b.encrypt(&bob.id, &[round, 2]).unwrap();
        assert_eq!(deliver(&bob, &mut b, &x, &mut rng).unwrap(), [round, 1]);
        assert_eq!(deliver(&alice, &mut a, &y, &mut rng).unwrap(), [round, 2]);
    }
    // Then a quiet exchange: both end up on the same session.
    let x = a.encrypt(&alice.id, b"q").unwrap();
    assert_eq!(deliver(&bob, &mut b, &x, &mut rng).unwrap(), b"q");
    let y = b.encrypt(&bob.id, b"r").unwrap();
    assert_eq!(deliver(&alice, &mut a, &y, &mut rng).unwrap(), b"r");
    assert!(!a.has_unacknowledged_pre_key() && !b.has_unacknowledged_pre_key());
}

#[test]
fn archived_states_decrypt_late_messages_and_are_capped() {
    let mut rng = TestRng(9);
    let (alice, mut a, bob, mut b) = established(&mut rng);
    let late = a.encrypt(&alice.id, b"late").unwrap();
    // Alice starts over (e.g. after a retry receipt) 45 times; Bob sees each new session.
    let cfg = SessionConfig::default();
    let mut bob_keys = bob.keys.clone();
    for i in 0..45u32 {
        bob_keys.one_time.push(PreKeyRecord::generate(100 + i, &mut rng));
        let mut bundle = bob.bundle();
        bundle.pre_key = Some((100 + i, bob_keys.one_time.last().unwrap().key_pair.public));
        a.initiate(&alice.id, &bundle, &cfg, &mut rng).unwrap();
        let ct = a.encrypt(&alice.id, b"again").unwrap();
        let d = b.decrypt_pre_key_message(&bob.id, ct.bytes(), &bob_keys, &cfg, &mut rng).unwrap();
        bob_keys.remove_one_time(d.used_pre_key.unwrap());
        if i == 3 {
            // A message from the first session, delivered late, still decrypts.
            assert_eq!(deliver(&bob, &mut b, &late, &mut rng).unwrap(), b"late");
        }
    }
    assert_eq!(a.archived_states(), cfg.max_archived_states);
    assert_eq!(b.archived_states(), cfg.max_archived_states);
}

#[test]
fn records_round_trip_and_reject_bad_bytes() {
    let mut rng = TestRng(10);
    let (_alice, a, _bob, _b) = established(&mut rng);
    let bytes = a.to_bytes();
    assert_eq!(SessionRecord::from_bytes(&bytes).unwrap().to_bytes(), bytes);
    // A record from a newer format is refused, not misread.
    let mut newer = bytes.clone();
    assert_eq!(newer[0], 0x08); // field 1 (version), varint
    newer[1] = 9;
    assert!(matches!(
        SessionRecord::from_bytes(&newer),
        Err(SignalError::UnsupportedRecordVersion { found: 9, supported: 1 })
    ));
    assert!(SessionRecord::from_bytes(&[]).is_err());
    assert!(SessionRecord::from_bytes(&[0xff, 0xff, 0xff]).is_err());
    for cut in [1, bytes.len() / 2, bytes.len() - 1] {
        assert!(SessionRecord::from_bytes(&bytes[..cut]).is_err(), "cut at {cut}");
    }
    let pk = PreKeyRecord::generate(7, &mut rng);
    let rt = PreKeyRecord::from_bytes(&pk.to_bytes()).unwrap();
    assert_eq!((rt.id, rt.key_pair.public), (7, pk.key_pair.public));
    let id = LocalIdentity::generate(&mut rng);
    let spk = SignedPreKeyRecord::generate(&id.key_pair, 3, &mut rng);
    let rt = SignedPreKeyRecord::from_bytes(&spk.to_bytes()).unwrap();
    assert_eq!((rt.id, rt.signature), (3, spk.signature));
    assert!(SignedPreKeyRecord::from_bytes(&pk.to_bytes()).is_err());
}
