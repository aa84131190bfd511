//! The initiator reading a ServerHello: either the raw fuzz input (parser and AEAD
//! checks), or a genuine ServerHello whose encrypted payload is the fuzz input (so the
//! certificate-chain parser and verifier run behind a valid AEAD).
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use wa_crypto::{KeyPair, PrivateKey};
use wa_noise::{
    CertVerifier, ClientHelloOutcome, ConnectionHeader, Initiator, InitiatorConfig, Responder,
    ResponderConfig,
};

fn key(n: u8) -> KeyPair {
    KeyPair::from_private(PrivateKey::from_bytes([n; 32]))
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let header = ConnectionHeader::new();
    let config = InitiatorConfig {
        header: header.clone(),
        static_key: key(5),
        verifier: CertVerifier::new(key(1).public),
    };
    let mut wire = Vec::new();
    let Ok(client) = Initiator::new(config, key(6)).write_client_hello(&mut wire) else { return };
    let message = if mode & 1 == 0 {
        rest.to_vec()
    } else {
        let server = Arc::new(ResponderConfig { static_key: key(3), cert_chain: rest.to_vec() });
        let Ok(ClientHelloOutcome::Full(received)) =
            Responder::new(server, &header, key(4)).read_client_hello(&wire[7..])
        else {
            panic!("our own XX ClientHello must parse and be answered with XX")
        };
        let mut out = Vec::new();
        if received.write_server_hello(&mut out).is_err() {
            return;
        }
        out.split_off(3)
    };
    if let Ok(done) = client.read_server_hello(&message, u64::from(mode) << 24) {
        let mut out = Vec::new();
        let _ = done.write_client_finish(b"payload", &mut out);
    }
});
