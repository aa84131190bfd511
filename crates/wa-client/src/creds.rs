//! Our own credentials: generated before the first connection, completed at pairing,
//! stored through wa-store, and converted to the crypto types on use.

use rand_core::CryptoRng;
use wa_binary::Jid;
use wa_crypto::{KeyPair, PrivateKey};
use wa_signal::{LocalIdentity, SignedPreKeyRecord};
use wa_store::Credentials;

use crate::error::{Error, Result};

pub(crate) fn to_store_pair(k: &KeyPair) -> wa_store::KeyPair {
    wa_store::KeyPair { public: *k.public.as_bytes(), private: *k.private.as_bytes() }
}

pub(crate) fn from_store_pair(k: &wa_store::KeyPair) -> KeyPair {
    KeyPair::from_private(PrivateKey::from_bytes(k.private))
}

/// Fresh credentials for a device that is not paired yet.
pub(crate) fn generate<R: CryptoRng + ?Sized>(rng: &mut R, now: i64) -> Credentials {
    let noise = KeyPair::generate(rng);
    let identity = KeyPair::generate(rng);
    let spk = SignedPreKeyRecord::generate(&identity, 1, rng);
    let registration_id = wa_signal::generate_registration_id(rng);
    let mut adv = [0u8; 32];
    rng.fill_bytes(&mut adv);
    Credentials {
        noise_key: to_store_pair(&noise),
        identity_key: to_store_pair(&identity),
        signed_pre_key: wa_store::SignedPreKey {
            id: spk.id,
            key_pair: to_store_pair(&spk.key_pair),
            signature: spk.signature,
            created_at: now,
        },
        registration_id,
        adv_secret_key: adv,
        signed_device_identity: None,
        jid: None,
        lid: None,
        push_name: None,
        platform: None,
        lid_migrated: None,
    }
}

/// Views of stored credentials in the types the protocol crates take.
pub(crate) trait CredentialsExt {
    fn identity(&self) -> KeyPair;
    fn local_identity(&self) -> LocalIdentity;
    fn noise(&self) -> KeyPair;
    fn own_jid(&self) -> Result<Option<Jid>>;
    fn own_lid(&self) -> Result<Option<Jid>>;
    fn registration_keys(&self) -> wa_noise::RegistrationKeys;
}

impl CredentialsExt for Credentials {
    fn identity(&self) -> KeyPair {
        from_store_pair(&self.identity_key)
    }
    fn local_identity(&self) -> LocalIdentity {
        LocalIdentity::new(self.identity(), self.registration_id)
    }
    fn noise(&self) -> KeyPair {
        from_store_pair(&self.noise_key)
    }
    fn own_jid(&self) -> Result<Option<Jid>> {
        self.jid
            .as_deref()
            .map(|j| j.parse::<Jid>().map_err(|e| Error::CorruptStore(format!("own jid {j:?}: {e}"))))
            .transpose()
    }
    fn own_lid(&self) -> Result<Option<Jid>> {
        self.lid
            .as_deref()
            .map(|j| j.parse::<Jid>().map_err(|e| Error::CorruptStore(format!("own lid {j:?}: {e}"))))
            .transpose()
    }
    fn registration_keys(&self) -> wa_noise::RegistrationKeys {
        let spk = from_store_pair(&self.signed_pre_key.key_pair);
        wa_noise::RegistrationKeys {
            registration_id: self.registration_id,
            identity_key: self.identity().public,
            signed_pre_key_id: self.signed_pre_key.id,
            signed_pre_key: spk.public,
            signed_pre_key_signature: self.signed_pre_key.signature,
        }
    }
}
