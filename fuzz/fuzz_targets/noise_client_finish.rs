//! The responder reading a ClientFinish after a genuine exchange: either the raw fuzz
//! input, or a genuine ClientFinish whose ClientPayload is the fuzz input (then decoded).
//! Mode bit 1 picks the exchange: XX, or an IK hello sealed to a stale server key that the
//! server answered with XXfallback.
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use wa_crypto::{KeyPair, PrivateKey};
use wa_noise::{
    CertChainBuilder, CertVerifier, ClientHelloOutcome, ConnectionHeader, IkInitiator, IkServerHello,
    Initiator, InitiatorConfig, Responder, ResponderConfig, ServerAuthenticated,
};

fn key(n: u8) -> KeyPair {
    KeyPair::from_private(PrivateKey::from_bytes([n; 32]))
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let (root, int, server) = (key(1), key(2), key(3));
    let chain =
        CertChainBuilder::new(int.public, server.public, 0, u64::MAX).sign(&root.private, &int.private);
    let header = ConnectionHeader::new();
    let config = InitiatorConfig {
        header: header.clone(),
        static_key: key(5),
        verifier: CertVerifier::new(root.public),
    };
    let fallback = mode & 2 != 0;
    let mut wire = Vec::new();
    let client = if fallback {
        let hello = IkInitiator::new(config, key(7).public, key(6)).write_client_hello(b"payload", &mut wire);
        Client::Ik(hello.expect("hello"))
    } else {
        Client::Xx(Initiator::new(config, key(6)).write_client_hello(&mut wire).expect("hello"))
    };
    let outcome =
        Responder::new(Arc::new(ResponderConfig { static_key: server, cert_chain: chain }), &header, key(4))
            .read_client_hello(&wire[7..])
            .expect("own hello parses");
    let ClientHelloOutcome::Full(server) = outcome else { panic!("a stale key must not resume") };
    wire.clear();
    let server = server.write_server_hello(&mut wire).expect("server hello");
    let message = if mode & 1 == 0 {
        rest.to_vec()
    } else {
        let client = client.authenticate(&wire[3..]);
        let mut out = Vec::new();
        if client.write_client_finish(rest, &mut out).is_err() {
            return;
        }
        out.split_off(3)
    };
    if let Ok((_, finished)) = server.read_client_finish(&message) {
        let _ = finished.client_payload();
    }
});

enum Client {
    Xx(wa_noise::AwaitingServerHello),
    Ik(wa_noise::AwaitingIkServerHello),
}

impl Client {
    fn authenticate(self, server_hello: &[u8]) -> ServerAuthenticated {
        match self {
            Self::Xx(c) => c.read_server_hello(server_hello, 1).expect("own chain verifies"),
            Self::Ik(c) => match c.read_server_hello(server_hello, 1).expect("own chain verifies") {
                IkServerHello::Fallback(c) => c,
                IkServerHello::Resumed(_) => panic!("resumed with a stale key"),
            },
        }
    }
}
