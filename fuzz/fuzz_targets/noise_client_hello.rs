//! The responder reading an arbitrary ClientHello (XX, or IK: accepted or answered with
//! XXfallback), and answering if it parses.
#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use wa_crypto::{KeyPair, PrivateKey};
use wa_noise::{CertChainBuilder, ClientHelloOutcome, ConnectionHeader, Responder, ResponderConfig};

fn key(n: u8) -> KeyPair {
    KeyPair::from_private(PrivateKey::from_bytes([n; 32]))
}

fn config() -> Arc<ResponderConfig> {
    static CONFIG: OnceLock<Arc<ResponderConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let (root, int, server) = (key(1), key(2), key(3));
            let chain = CertChainBuilder::new(int.public, server.public, 0, u64::MAX)
                .sign(&root.private, &int.private);
            Arc::new(ResponderConfig { static_key: server, cert_chain: chain })
        })
        .clone()
}

fuzz_target!(|data: &[u8]| {
    let responder = Responder::new(config(), &ConnectionHeader::new(), key(4));
    let mut out = Vec::new();
    match responder.read_client_hello(data) {
        Ok(ClientHelloOutcome::Full(received)) => {
            let _ = received.write_server_hello(&mut out);
        }
        Ok(ClientHelloOutcome::Resumed(received)) => {
            let _ = received.write_server_hello(&mut out);
        }
        Err(_) => {}
    }
});
