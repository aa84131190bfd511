//! The emulator's own certificate hierarchy: a root key (which clients are configured to
//! trust instead of WhatsApp's), an intermediate, and the Noise static key it certifies.
//!
//! The static key must not move for a given seed: clients cache it after their first XX
//! handshake and resume with IK against it (WA Web; whatsapp-rust `src/handshake.rs`
//! `select_pattern` uses the cached leaf key until the leaf expires). A key that moved
//! would make every such client fall back to XX once (XXfallback) after each restart.

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
    /// Draws a root, an intermediate and a static key, in that order; the chain is valid
    /// from an hour before `now` for ten years. `Emulator::start` calls this first on the
    /// freshly seeded rng, before anything reads the rest of the config, so the keys
    /// depend on the seed alone (`now` only sets the validity).
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

    /// Keys saved earlier (see `persist`): the root, the Noise static key and the chain
    /// certifying it, which must verify against the two at `now`.
    pub(crate) fn from_parts(
        root: KeyPair,
        static_key: KeyPair,
        cert_chain: Vec<u8>,
        now: u64,
    ) -> Result<Self, wa_noise::Error> {
        wa_noise::CertVerifier::new(root.public).verify(&cert_chain, &static_key.public, now)?;
        Ok(Self { root, responder: Arc::new(ResponderConfig { static_key, cert_chain }) })
    }

    /// The root key pair and the responder configuration (for `persist`).
    pub(crate) fn parts(&self) -> (&KeyPair, &ResponderConfig) {
        (&self.root, &self.responder)
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

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    /// Pins the keys of seed 1. If a dependency upgrade (rand's `StdRng`) changes them,
    /// every seeded emulator's server key rotates: clients that cached it fall back to XX
    /// once. Update the values only knowingly.
    #[test]
    fn keys_depend_on_the_seed_alone() {
        let a = ServerKeys::generate(&mut StdRng::seed_from_u64(1), 1_700_000_000);
        let b = ServerKeys::generate(&mut StdRng::seed_from_u64(1), 1_900_000_000);
        assert_eq!(a.static_public_key(), b.static_public_key());
        assert_eq!(a.root_public_key(), b.root_public_key());
        assert_ne!(a.responder().cert_chain, b.responder().cert_chain, "only the validity differs");
        let other = ServerKeys::generate(&mut StdRng::seed_from_u64(2), 1_700_000_000);
        assert_ne!(a.static_public_key(), other.static_public_key());
        assert_eq!(
            hex::encode(a.static_public_key().as_bytes()),
            "5f50e050c50bf6e0b79093be9f85070603136635d8c837ea551c0dc3a1b3273c"
        );
        assert_eq!(
            hex::encode(a.root_public_key().as_bytes()),
            "e496f6ee85fc5bbdfc6715085e461486045d09ad3de054895e13fd62f5245235"
        );
    }
}
