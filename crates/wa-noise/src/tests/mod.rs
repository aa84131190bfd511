//! Crate tests: in-crate so they can compare internal keys with recorded transcripts.

mod cert_policy;
mod roundtrip;
mod tampering;
mod vectors;

use std::sync::Arc;

use wa_crypto::{KeyPair, PrivateKey};

use crate::{CertChainBuilder, CertVerifier, ConnectionHeader, InitiatorConfig, ResponderConfig};

/// A deterministic key pair named by `label`.
pub(crate) fn key(label: &str) -> KeyPair {
    KeyPair::from_private(PrivateKey::from_bytes(wa_crypto::sha256(&[
        b"wa-noise test key ",
        label.as_bytes(),
    ])))
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
