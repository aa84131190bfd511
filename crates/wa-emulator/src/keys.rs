//! The emulator's own certificate hierarchy: a root key (which clients are configured to
//! trust instead of WhatsApp's), an intermediate, and the Noise static key it certifies.

use std::sync::Arc;

use rand_core::CryptoRng;
use wa_crypto::{KeyPair, PublicKey};
use wa_noise::{CertChainBuilder, ResponderConfig};

/// The server's keys and the serialized certificate chain it presents.
#[derive(Debug)]
pub struct ServerKeys {
    root: KeyPair,
    responder: Arc<ResponderConfig>,
}

impl ServerKeys {
    /// Draws a root, an intermediate and a static key; the chain is valid from an hour
    /// before `now` for ten years.
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R, now: u64) -> Self {
        let root = KeyPair::generate(rng);
        let intermediate = KeyPair::generate(rng);
        let static_key = KeyPair::generate(rng);
        let not_before = now.saturating_sub(3600);
        let not_after = now.saturating_add(10 * 365 * 86_400);
        let chain = CertChainBuilder::new(intermediate.public, static_key.public, not_before, not_after)
            .sign(&root.private, &intermediate.private);
        Self { root, responder: Arc::new(ResponderConfig { static_key, cert_chain: chain }) }
    }

    /// The root public key clients must trust.
    pub fn root_public_key(&self) -> PublicKey {
        self.root.public
    }

    /// The server's Noise static public key.
    pub fn static_public_key(&self) -> PublicKey {
        self.responder.static_key.public
    }

    /// The Noise responder configuration shared by every connection.
    pub fn responder(&self) -> Arc<ResponderConfig> {
        self.responder.clone()
    }
}
