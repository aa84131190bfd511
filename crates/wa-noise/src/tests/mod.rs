//! Crate tests: in-crate so they can compare internal keys with recorded transcripts.

mod cert_policy;
mod resume;
mod roundtrip;
mod tampering;
mod vectors;

use std::sync::Arc;

use wa_crypto::{KeyPair, PrivateKey};

use crate::{
    CertChainBuilder, CertVerifier, ClientHelloOutcome, ClientHelloReceived, ConnectionHeader,
    InitiatorConfig, Pattern, ResponderConfig,
};

/// The XX answer to an XX `ClientHello` (anything else is a test failure).
pub(crate) fn xx(outcome: ClientHelloOutcome) -> ClientHelloReceived {
    match outcome {
        ClientHelloOutcome::Full(hello) if hello.pattern() == Pattern::Xx => hello,
        other => panic!("an XX ClientHello got {:?}", other.pattern()),
    }
}

/// A deterministic key pair named by `label` (memoized: the tampering tests run
/// thousands of handshakes with the same few keys).
pub(crate) fn key(label: &str) -> KeyPair {
    static KEYS: std::sync::OnceLock<std::sync::Mutex<std::collections::HashMap<String, KeyPair>>> =
        std::sync::OnceLock::new();
    let mut keys = KEYS.get_or_init(Default::default).lock().unwrap_or_else(|p| p.into_inner());
    keys.entry(label.to_owned())
        .or_insert_with(|| {
            KeyPair::from_private(PrivateKey::from_bytes(wa_crypto::sha256(&[
                b"wa-noise test key ",
                label.as_bytes(),
            ])))
        })
        .clone()
}

pub(crate) const NOT_BEFORE: u64 = 1_700_000_000;
pub(crate) const NOT_AFTER: u64 = 1_800_000_000;
pub(crate) const NOW: u64 = 1_750_000_000;

/// A test PKI: root, intermediate and server static, and a chain over them.
pub(crate) struct Pki {
    pub root: KeyPair,
    pub intermediate: KeyPair,
    pub server_static: KeyPair,
}

impl Pki {
    pub fn new() -> Self {
        Self { root: key("root"), intermediate: key("intermediate"), server_static: key("server static") }
    }

    pub fn builder(&self) -> CertChainBuilder {
        CertChainBuilder::new(self.intermediate.public, self.server_static.public, NOT_BEFORE, NOT_AFTER)
    }

    pub fn responder_config(&self, chain: Vec<u8>) -> Arc<ResponderConfig> {
        Arc::new(ResponderConfig { static_key: self.server_static.clone(), cert_chain: chain })
    }

    pub fn initiator_config(&self, header: ConnectionHeader) -> InitiatorConfig {
        InitiatorConfig {
            header,
            static_key: key("client static"),
            verifier: CertVerifier::new(self.root.public),
        }
    }
}
