//! Replays the Baileys 7.0.0-rc14 / libsignal-node 6.0.0 vectors (`signal_session.json`,
//! `sender_keys.json`; `WA_VECTORS_DIR` honoured): we decrypt every recorded ciphertext with the
//! recorded keys, and with the recorded randomness our encryptions are byte-identical.
#![allow(clippy::unwrap_used, clippy::expect_used)] // helpers outside #[test] fns

mod common;

use std::collections::VecDeque;

use common::{ScriptedKeys, arr32, hex, key_pair, load};
use serde_json::Value;
use wa_signal::{
    CiphertextMessage, IdentityCheck, LocalIdentity, MessageKind, PreKeyBundle, PreKeyRecord, PreKeySet,
    PublicKey, SenderKeyConfig, SenderKeyDistributionMessage, SenderKeyRecord, SessionConfig, SessionRecord,
    SignalError, SignedPreKeyRecord,
};

fn party(v: &Value) -> LocalIdentity {
    LocalIdentity::new(
        key_pair(&v["identity_key"]["priv_hex"]),
        v["registration_id"].as_u64().unwrap() as u32,
    )
}

/// The recorded key pairs drawn for purposes starting with `prefix` (e.g. "msg 0: bob").
fn drawn(v: &Value, pred: impl Fn(&str) -> bool) -> ScriptedKeys {
    let keys: VecDeque<[u8; 32]> = v["generated_keypairs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| pred(k["purpose"].as_str().unwrap()))
        .map(|k| arr32(&k["priv_hex"]))
        .collect();
    ScriptedKeys(keys)
}

fn bob_bundle(v: &Value) -> PreKeyBundle {
    let bob = &v["bob"];
    PreKeyBundle {
        registration_id: bob["registration_id"].as_u64().unwrap() as u32,
        identity_key: PublicKey::from_bytes(&hex(&bob["identity_key"]["pub_hex"])).unwrap(),
        signed_pre_key_id: bob["signed_prekey"]["id"].as_u64().unwrap() as u32,
        signed_pre_key: PublicKey::from_bytes(&hex(&bob["signed_prekey"]["pub_hex"])).unwrap(),
        signed_pre_key_signature: hex(&bob["signed_prekey"]["signature_hex"]).try_into().unwrap(),
        pre_key: Some((
            bob["one_time_prekey"]["id"].as_u64().unwrap() as u32,
            PublicKey::from_bytes(&hex(&bob["one_time_prekey"]["pub_hex"])).unwrap(),
        )),
    }
}

fn bob_pre_keys(v: &Value) -> PreKeySet {
    let bob = &v["bob"];
    PreKeySet {
        signed: vec![SignedPreKeyRecord {
            id: bob["signed_prekey"]["id"].as_u64().unwrap() as u32,
            key_pair: key_pair(&bob["signed_prekey"]["priv_hex"]),
            signature: hex(&bob["signed_prekey"]["signature_hex"]).try_into().unwrap(),
        }],
        one_time: vec![PreKeyRecord {
            id: bob["one_time_prekey"]["id"].as_u64().unwrap() as u32,
            key_pair: key_pair(&bob["one_time_prekey"]["priv_hex"]),
        }],
    }
}

#[test]
fn recorded_identities_and_signed_prekeys_match() {
    let v = load("signal_session.json");
    for name in ["alice", "bob"] {
        let p = &v[name];
        let id = party(p);
        assert_eq!(id.public_key().as_bytes().as_slice(), hex(&p["identity_key"]["pub_hex"]).as_slice());
        // Our XEdDSA over the DJB-prefixed key reproduces libsignal's signature byte for byte.
        let spk = SignedPreKeyRecord::new(
            &id.key_pair,
            p["signed_prekey"]["id"].as_u64().unwrap() as u32,
            key_pair(&p["signed_prekey"]["priv_hex"]),
        );
        assert_eq!(spk.signature.to_vec(), hex(&p["signed_prekey"]["signature_hex"]), "{name}");
    }
    let bundle = bob_bundle(&v);
    bundle.verify().unwrap();
    let mut bad = bundle.clone();
    bad.signed_pre_key_signature[5] ^= 1;
    assert!(matches!(bad.verify(), Err(SignalError::BadSignedPreKeySignature)));
    // A forged bundle is refused before any state is created.
    let mut rec = SessionRecord::new();
    let mut rng = drawn(&v, |_| true);
    let alice = party(&v["alice"]);
    assert!(rec.initiate(&alice, &bad, &SessionConfig::default(), &mut rng).is_err());
    assert!(!rec.has_current_session());
}

/// Both parties in Rust with the recorded randomness: every encryption must equal Baileys'
/// bytes, and every Baileys ciphertext must decrypt to the recorded plaintext.
#[test]
fn one_to_one_session_is_byte_identical_both_directions() {
    let v = load("signal_session.json");
    let cfg = SessionConfig::default();
    let alice = party(&v["alice"]);
    let bob = party(&v["bob"]);
    let mut alice_rng = drawn(&v, |p| p.starts_with("alice: parseAndInject") || p.ends_with("alice decrypt"));
    let mut bob_rng = drawn(&v, |p| p.ends_with("bob decrypt"));
    let mut bob_keys = bob_pre_keys(&v);

    let mut alice_rec = SessionRecord::new();
    let check = alice_rec.initiate(&alice, &bob_bundle(&v), &cfg, &mut alice_rng).unwrap();
    assert_eq!(check, IdentityCheck::FirstContact);
    let mut bob_rec = SessionRecord::new();

    for m in v["messages"].as_array().unwrap() {
        let seq = m["seq"].as_u64().unwrap();
        let plaintext = hex(&m["plaintext_hex"]);
        let expected = hex(&m["ciphertext_hex"]);
        let kind = if m["enc_type"] == "pkmsg" { MessageKind::PreKey } else { MessageKind::Whisper };
        let (s_id, s_rec, r_id, r_rec, r_rng) = if m["from"] == "alice" {
            (&alice, &mut alice_rec, &bob, &mut bob_rec, &mut bob_rng)
        } else {
            (&bob, &mut bob_rec, &alice, &mut alice_rec, &mut alice_rng)
        };
        let ct = s_rec.encrypt(s_id, &plaintext).unwrap();
        assert_eq!(ct.enc_type(), m["enc_type"].as_str().unwrap(), "msg {seq}");
        assert_eq!(
            hex::encode(ct.bytes()),
            hex::encode(&expected),
            "msg {seq}: ciphertext differs from Baileys'"
        );
        let d = match kind {
            MessageKind::PreKey => {
                r_rec.decrypt_pre_key_message(r_id, &expected, &bob_keys, &cfg, r_rng).unwrap()
            }
            MessageKind::Whisper => r_rec.decrypt_message(r_id, &expected, &cfg, r_rng).unwrap(),
        };
        assert_eq!(d.plaintext, plaintext, "msg {seq}");
        if let Some(id) = d.used_pre_key {
            assert_eq!(seq, 0);
            assert_eq!(d.identity, IdentityCheck::FirstContact);
            bob_keys.remove_one_time(id).unwrap();
        }
        // A replay of the same bytes is recognised as a duplicate and changes nothing.
        let before = r_rec.to_bytes();
        let err = match kind {
            MessageKind::PreKey => {
                r_rec.decrypt_pre_key_message(r_id, &expected, &bob_keys, &cfg, r_rng).unwrap_err()
            }
            MessageKind::Whisper => r_rec.decrypt_message(r_id, &expected, &cfg, r_rng).unwrap_err(),
        };
        assert!(matches!(err, SignalError::DuplicateMessage { .. }), "msg {seq}: {err}");
        assert_eq!(r_rec.to_bytes(), before);
    }
    // Every recorded key pair was consumed exactly where libsignal drew it.
    assert!(alice_rng.0.is_empty() && bob_rng.0.is_empty());
    assert!(!alice_rec.has_unacknowledged_pre_key());
    // Records survive a serialization round trip.
    for rec in [&alice_rec, &bob_rec] {
        assert_eq!(SessionRecord::from_bytes(&rec.to_bytes()).unwrap().to_bytes(), rec.to_bytes());
    }
}

/// Only Bob in Rust: decrypt Alice's (Baileys') messages; only Alice in Rust: decrypt Bob's.
#[test]
fn decrypts_every_baileys_ciphertext_as_each_recipient() {
    let v = load("signal_session.json");
    let cfg = SessionConfig::default();
    let messages = v["messages"].as_array().unwrap();

    let bob = party(&v["bob"]);
    let mut bob_rng = drawn(&v, |p| p.ends_with("bob decrypt"));
    let keys = bob_pre_keys(&v);
    let mut bob_rec = SessionRecord::new();
    for m in messages.iter().filter(|m| m["to"] == "bob") {
        let ct = hex(&m["ciphertext_hex"]);
        let kind = if m["enc_type"] == "pkmsg" { MessageKind::PreKey } else { MessageKind::Whisper };
        // The pure form: the input record is not modified.
        let (d, next) = bob_rec.decrypt(&bob, kind, &ct, &keys, &cfg, &mut bob_rng).unwrap();
        assert_eq!(d.plaintext, hex(&m["plaintext_hex"]));
        bob_rec = next;
    }

    let alice = party(&v["alice"]);
    let mut alice_rng = drawn(&v, |p| p.starts_with("alice: parseAndInject") || p.ends_with("alice decrypt"));
    let mut alice_rec = SessionRecord::new();
    alice_rec.initiate(&alice, &bob_bundle(&v), &cfg, &mut alice_rng).unwrap();
    for m in messages.iter().filter(|m| m["to"] == "alice") {
        let d = alice_rec.decrypt_message(&alice, &hex(&m["ciphertext_hex"]), &cfg, &mut alice_rng).unwrap();
        assert_eq!(d.plaintext, hex(&m["plaintext_hex"]));
    }
    assert!(bob_rng.0.is_empty() && alice_rng.0.is_empty());
}

#[test]
fn parsed_fields_match_the_vector() {
    let v = load("signal_session.json");
    for m in v["messages"].as_array().unwrap() {
        let ct = hex(&m["ciphertext_hex"]);
        let (inner_bytes, w) = if m["enc_type"] == "pkmsg" {
            let pk = wa_signal::PreKeySignalMessage::parse(&ct).unwrap();
            let p = &m["parsed"];
            assert_eq!(pk.registration_id as u64, p["registration_id"].as_u64().unwrap());
            assert_eq!(pk.pre_key_id.map(u64::from), p["pre_key_id"].as_u64());
            assert_eq!(pk.signed_pre_key_id as u64, p["signed_pre_key_id"].as_u64().unwrap());
            assert_eq!(pk.base_key.to_djb().to_vec(), hex(&p["base_key_hex"]));
            assert_eq!(pk.identity_key.to_djb().to_vec(), hex(&p["identity_key_hex"]));
            let inner = pk.message().unwrap().serialized().to_vec();
            (inner, &p["whisper_message"])
        } else {
            (ct.clone(), &m["parsed"])
        };
        let sm = wa_signal::SignalMessage::parse(&inner_bytes).unwrap();
        assert_eq!(sm.ratchet_key.to_djb().to_vec(), hex(&w["ratchet_key_hex"]));
        assert_eq!(sm.counter as u64, w["counter"].as_u64().unwrap());
        assert_eq!(sm.previous_counter as u64, w["previous_counter"].as_u64().unwrap());
        assert_eq!(sm.ciphertext, hex(&w["aes_cbc_ciphertext_hex"]));
    }
}

#[test]
fn sender_keys_are_byte_identical_and_decrypt() {
    let v = load("sender_keys.json");
    let cfg = SenderKeyConfig::default();
    let sender = &v["sender"];
    let mut alice = SenderKeyRecord::new();
    alice.create_own_state(
        sender["key_id"].as_u64().unwrap() as u32,
        arr32(&sender["chain_seed_hex"]),
        key_pair(&sender["signing_key"]["priv_hex"]),
        &cfg,
    );
    let dists = v["distributions"].as_array().unwrap();
    let mut bob = SenderKeyRecord::new();
    let mut carol = SenderKeyRecord::new();
    for m in v["messages"].as_array().unwrap() {
        let seq = m["seq"].as_u64().unwrap();
        for d in dists.iter().filter(|d| d["before_message"].as_u64() == Some(seq)) {
            let ours = alice.distribution_message().unwrap().to_bytes();
            assert_eq!(hex::encode(&ours), d["skdm_hex"].as_str().unwrap(), "SKDM for {}", d["to"]);
            let parsed = SenderKeyDistributionMessage::parse(&hex(&d["skdm_hex"])).unwrap();
            assert_eq!(parsed.iteration as u64, d["parsed"]["iteration"].as_u64().unwrap());
            let target = if d["to"] == "bob" { &mut bob } else { &mut carol };
            target.process_distribution_bytes(&hex(&d["skdm_hex"]), &cfg).unwrap();
        }
        // Baileys asks for iteration 0 first and chain-iteration + 1 afterwards (0, 2, 4, 6).
        if seq > 0 {
            alice.skip_sending_iterations(1).unwrap();
        }
        let plaintext = hex(&m["plaintext_hex"]);
        let expected = hex(&m["skmsg_hex"]);
        let ours = alice.encrypt(&plaintext).unwrap();
        assert_eq!(hex::encode(&ours), hex::encode(&expected), "skmsg {seq}");
        assert_eq!(bob.decrypt_in_place(&expected, &cfg).unwrap(), plaintext, "bob, skmsg {seq}");
        if m["decrypted_by"].as_array().unwrap().iter().any(|r| r == "carol") {
            assert_eq!(carol.decrypt_in_place(&expected, &cfg).unwrap(), plaintext, "carol, skmsg {seq}");
        } else if !carol.is_empty() {
            assert!(carol.decrypt_in_place(&expected, &cfg).is_err());
        }
        // Replays are duplicates and leave the record as it was.
        let before = bob.to_bytes();
        assert!(matches!(bob.decrypt_in_place(&expected, &cfg), Err(SignalError::DuplicateMessage { .. })));
        assert_eq!(bob.to_bytes(), before);
    }
    // Bob holds the keys of the odd iterations Baileys skipped (1, 3, 5).
    assert_eq!(bob.skipped_keys(), 3);
    // Carol joined at iteration 5 and cannot read earlier messages.
    let first = hex(&v["messages"][0]["skmsg_hex"]);
    assert!(matches!(carol.decrypt_in_place(&first, &cfg), Err(SignalError::DuplicateMessage { .. })));
    let rt = SenderKeyRecord::from_bytes(&bob.to_bytes()).unwrap();
    assert_eq!(rt.to_bytes(), bob.to_bytes());
}

#[test]
fn our_encryption_of_baileys_plaintext_round_trips_through_our_decryption() {
    // The same flows as above without recorded randomness: Rust on both sides.
    let v = load("signal_session.json");
    let cfg = SessionConfig::default();
    let alice = party(&v["alice"]);
    let bob = party(&v["bob"]);
    let mut rng = common::TestRng(7);
    let mut keys = bob_pre_keys(&v);
    let mut a = SessionRecord::new();
    let mut b = SessionRecord::new();
    a.initiate(&alice, &bob_bundle(&v), &cfg, &mut rng).unwrap();
    let ct = a.encrypt(&alice, b"hi").unwrap();
    assert!(matches!(ct, CiphertextMessage::PreKey(_)));
    let d = b.decrypt_pre_key_message(&bob, ct.bytes(), &keys, &cfg, &mut rng).unwrap();
    assert_eq!(d.plaintext, b"hi");
    keys.remove_one_time(d.used_pre_key.unwrap());
    let r = b.encrypt(&bob, b"yo").unwrap();
    assert!(matches!(r, CiphertextMessage::Whisper(_)));
    assert_eq!(a.decrypt_message(&alice, r.bytes(), &cfg, &mut rng).unwrap().plaintext, b"yo");
}
