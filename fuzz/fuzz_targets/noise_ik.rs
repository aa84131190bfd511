//! The IK read steps. Mode (first byte, modulo 3):
//! * 0: the IK client reads the raw fuzz input as the server's answer (accepting or
//!   XXfallback shape);
//! * 1: a genuine XXfallback ServerHello whose certificate chain is the fuzz input (so the
//!   chain parser and verifier run behind a valid AEAD);
//! * 2: the server reads a genuine IK hello carrying the fuzz input as its ClientPayload
//!   (decoded), then the two transports exchange the input as a frame.
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use wa_crypto::{KeyPair, PrivateKey};
use wa_noise::{
    CertChainBuilder, CertVerifier, ClientHelloOutcome, ConnectionHeader, IkInitiator, IkServerHello,
    InitiatorConfig, Responder, ResponderConfig,
};

fn key(n: u8) -> KeyPair {
    KeyPair::from_private(PrivateKey::from_bytes([n; 32]))
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let mode = mode % 3;
    let (root, int, server) = (key(1), key(2), key(3));
    let header = ConnectionHeader::new();
    let config = InitiatorConfig {
        header: header.clone(),
        static_key: key(5),
        verifier: CertVerifier::new(root.public),
    };
    let chain = match mode {
        1 => rest.to_vec(),
        _ => CertChainBuilder::new(int.public, server.public, 0, u64::MAX).sign(&root.private, &int.private),
    };
    let responder = Responder::new(
        Arc::new(ResponderConfig { static_key: server.clone(), cert_chain: chain }),
        &header,
        key(4),
    );
    // Mode 1 caches a stale key so that the server falls back.
    let cached = if mode == 1 { key(7).public } else { server.public };
    let payload = if mode == 2 { rest } else { b"payload" };
    let mut wire = Vec::new();
    let Ok(client) = IkInitiator::new(config, cached, key(6)).write_client_hello(payload, &mut wire) else {
        panic!("our own IK hello must be written")
    };
    let message = match mode {
        0 => rest.to_vec(),
        1 => {
            let Ok(ClientHelloOutcome::Full(received)) = responder.read_client_hello(&wire[7..]) else {
                panic!("a stale key must fall back")
            };
            let mut out = Vec::new();
            if received.write_server_hello(&mut out).is_err() {
                return;
            }
            out.split_off(3)
        }
        _ => {
            let Ok(ClientHelloOutcome::Resumed(received)) = responder.read_client_hello(&wire[7..]) else {
                panic!("our own IK hello must resume")
            };
            let _ = received.client().client_payload();
            let mut out = Vec::new();
            let Ok((server_tx, _)) = received.write_server_hello(&mut out) else { return };
            let Ok(IkServerHello::Resumed(resumed)) = client.read_server_hello(&out[3..], 1) else {
                panic!("our own accepting ServerHello must resume")
            };
            let mut client_tx = resumed.transport;
            let mut frame = Vec::new();
            if client_tx.encrypt_frame(rest, &mut frame).is_err() {
                return;
            }
            let (_, mut rx) = server_tx.split();
            assert_eq!(rx.decrypt_frame_to_vec(&frame[3..]).expect("own frame"), rest);
            return;
        }
    };
    match client.read_server_hello(&message, u64::from(data[0]) << 24) {
        Ok(IkServerHello::Fallback(done)) => {
            let _ = done.write_client_finish(b"payload", &mut Vec::new());
        }
        Ok(IkServerHello::Resumed(_)) | Err(_) => {}
    }
});
