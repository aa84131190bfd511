//! whatsapp-rust's client handshakes (wacore-noise 0.7: `IkHandshakeState`,
//! `XxFallbackHandshakeState`, `XxHandshakeState`, the code whatsapp-rust 0.7 connects with)
//! against our responder: bytes made by another implementation, both ways.
//!
//! Built only with `--features interop`, which also turns on wacore-noise's
//! `danger-skip-cert-chain-verify`: its client otherwise insists on WhatsApp's root
//! signatures, and our chain is signed by a test root. Only those two XEdDSA checks are
//! skipped; the chain's structure and the leaf key binding are still checked.
//! `cargo test -p wa-benches --no-default-features --features interop --test noise_interop`
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use bytes::BytesMut;
use wa_crypto::{KeyPair, PrivateKey};
use wa_noise::{
    CertChainBuilder, ClientFinished, ClientHelloOutcome, ConnectionHeader, FallbackReason, Pattern,
    Responder, ResponderConfig, Transport,
};
use wacore_noise::{
    IkHandshakeState, IkServerHelloOutcome, NoiseCipher, XxFallbackHandshakeState, XxHandshakeState,
};

const PROLOGUE: [u8; 4] = [b'W', b'A', 6, 3];
const PAYLOAD: &[u8] = b"a login ClientPayload";

fn key(label: &str) -> KeyPair {
    KeyPair::from_private(PrivateKey::from_bytes(wa_crypto::sha256(&[b"interop ", label.as_bytes()])))
}

/// Our key pair in wacore-libsignal's type.
fn theirs(k: &KeyPair) -> wacore_libsignal::protocol::KeyPair {
    wacore_libsignal::protocol::KeyPair::new(
        wacore_libsignal::protocol::PublicKey::from_djb_public_key_bytes(k.public.as_bytes()).unwrap(),
        wacore_libsignal::protocol::PrivateKey::deserialize(k.private.as_bytes()).unwrap(),
    )
}

fn responder() -> Responder {
    let (root, intermediate, server) = (key("root"), key("intermediate"), key("server static"));
    let chain = CertChainBuilder::new(intermediate.public, server.public, 1_700_000_000, 1_900_000_000)
        .sign(&root.private, &intermediate.private);
    Responder::new(
        Arc::new(ResponderConfig { static_key: server, cert_chain: chain }),
        &ConnectionHeader::new(),
        key("server e"),
    )
}

fn genuine() -> ClientFinished {
    ClientFinished { client_static: key("client static").public, payload: PAYLOAD.to_vec() }
}

/// Frames flow both ways between their cipher pair and our transport.
fn exchange(write: &NoiseCipher, read: &NoiseCipher, ours: &mut Transport) {
    let up = write.encrypt_with_counter(0, b"<iq/>").unwrap();
    assert_eq!(&ours.decrypt_frame(BytesMut::from(&up[..])).unwrap()[..], b"<iq/>");
    let mut down = Vec::new();
    ours.encrypt_frame(b"<success/>", &mut down).unwrap();
    let mut buf = down[3..].to_vec();
    read.decrypt_in_place_with_counter(0, &mut buf).unwrap();
    assert_eq!(buf, b"<success/>");
}

#[test]
fn whatsapp_rust_resumes_with_ik() {
    let server_static: [u8; 32] = *key("server static").public.as_bytes();
    let mut ik =
        IkHandshakeState::new(theirs(&key("client static")), server_static, PAYLOAD.to_vec(), &PROLOGUE)
            .unwrap();
    let hello = ik.build_client_hello().unwrap();

    let outcome = responder().read_client_hello(&hello).expect("their IK hello parses");
    assert_eq!(outcome.pattern(), Pattern::Ik);
    let ClientHelloOutcome::Resumed(server) = outcome else { panic!("their IK hello did not decrypt") };
    assert_eq!(server.client(), &genuine());
    let mut out = Vec::new();
    let (mut server_tx, finished) = server.write_server_hello(&mut out).unwrap();
    assert_eq!(finished, genuine());

    let IkServerHelloOutcome::Continue(keys) = ik.read_server_hello(&out[3..]).expect("they read our answer")
    else {
        panic!("they took our accepting ServerHello for a fallback")
    };
    exchange(&keys.write_cipher, &keys.read_cipher, &mut server_tx);
}

#[test]
fn whatsapp_rust_finishes_our_xxfallback() {
    // A cache from another server: ours cannot open the hello and falls back.
    let stale: [u8; 32] = *key("rotated server static").public.as_bytes();
    let mut ik =
        IkHandshakeState::new(theirs(&key("client static")), stale, PAYLOAD.to_vec(), &PROLOGUE).unwrap();
    let hello = ik.build_client_hello().unwrap();

    let ClientHelloOutcome::Full(server) = responder().read_client_hello(&hello).expect("parses") else {
        panic!("resumed with a stale key")
    };
    assert_eq!(server.fallback_reason(), Some(FallbackReason::UnknownServerStatic));
    let mut out = Vec::new();
    let server = server.write_server_hello(&mut out).unwrap();

    let IkServerHelloOutcome::Fallback(inputs) =
        ik.read_server_hello(&out[3..]).expect("they read our answer")
    else {
        panic!("they resumed although we fell back")
    };
    let mut fallback = XxFallbackHandshakeState::from_ik_failure(*inputs, &PROLOGUE).unwrap();
    let finish = fallback.build_client_finish().expect("they authenticate our XXfallback ServerHello");
    let (mut server_tx, finished) =
        server.read_client_finish(&finish).expect("we authenticate their ClientFinish");
    assert_eq!(finished, genuine());
    let done = fallback.finish().unwrap();
    assert_eq!(
        &done.server_cert_chain.leaf_key,
        key("server static").public.as_bytes(),
        "the key they cache"
    );
    exchange(&done.write_cipher, &done.read_cipher, &mut server_tx);
}

#[test]
fn whatsapp_rust_connects_with_xx() {
    let mut xx = XxHandshakeState::new(theirs(&key("client static")), PAYLOAD.to_vec(), &PROLOGUE).unwrap();
    let hello = xx.build_client_hello().unwrap();
    let ClientHelloOutcome::Full(server) = responder().read_client_hello(&hello).expect("parses") else {
        panic!("an XX hello resumed")
    };
    assert_eq!(server.pattern(), Pattern::Xx);
    let mut out = Vec::new();
    let server = server.write_server_hello(&mut out).unwrap();
    let finish = xx.read_server_hello_and_build_client_finish(&out[3..]).expect("they authenticate us");
    let (mut server_tx, finished) = server.read_client_finish(&finish).expect("we authenticate them");
    assert_eq!(finished, genuine());
    let done = xx.finish().unwrap();
    exchange(&done.write_cipher, &done.read_cipher, &mut server_tx);
}
