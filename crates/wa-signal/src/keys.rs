//! Long-lived key material: identity, registration id, one-time and signed prekeys, bundles.

use rand_core::CryptoRng;
use wa_crypto::{KeyPair, PublicKey};

use crate::error::SignalError;

/// Prekey ids are 24-bit on the wire (3 bytes in `<key><id>`).
pub const MAX_PRE_KEY_ID: u32 = 0x00FF_FFFF;

/// Copies a key pair.
pub(crate) fn copy_key_pair(kp: &KeyPair) -> KeyPair {
    kp.clone()
}

/// Our own identity as a Signal party: the long-lived identity key pair and registration id.
pub struct LocalIdentity {
    /// The identity key pair.
    pub key_pair: KeyPair,
    /// Our registration id, sent in every PreKeySignalMessage.
    pub registration_id: u32,
}

impl LocalIdentity {
    /// Builds an identity from existing keys.
    pub fn new(key_pair: KeyPair, registration_id: u32) -> Self {
        LocalIdentity { key_pair, registration_id }
    }

    /// Draws a fresh identity key pair and registration id.
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let key_pair = KeyPair::generate(rng);
        LocalIdentity { key_pair, registration_id: generate_registration_id(rng) }
    }

    /// The identity public key.
    pub fn public_key(&self) -> PublicKey {
        self.key_pair.public
    }
}

impl Clone for LocalIdentity {
    fn clone(&self) -> Self {
        LocalIdentity { key_pair: copy_key_pair(&self.key_pair), registration_id: self.registration_id }
    }
}

impl core::fmt::Debug for LocalIdentity {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("LocalIdentity")
            .field("public", &self.key_pair.public)
            .field("registration_id", &self.registration_id)
            .finish_non_exhaustive()
    }
}

/// A registration id in 1..=16380, as libsignal's key helper draws them (14 bits, never 0).
pub fn generate_registration_id<R: CryptoRng + ?Sized>(rng: &mut R) -> u32 {
    loop {
        let id = rng.next_u32() & 0x3FFF;
        if (1..=16380).contains(&id) {
            return id;
        }
    }
}

/// A one-time prekey we published.
pub struct PreKeyRecord {
    /// 24-bit id.
    pub id: u32,
    /// The key pair.
    pub key_pair: KeyPair,
}

impl PreKeyRecord {
    /// Draws a prekey with the given id (masked to 24 bits).
    pub fn generate<R: CryptoRng + ?Sized>(id: u32, rng: &mut R) -> Self {
        PreKeyRecord { id: id & MAX_PRE_KEY_ID, key_pair: KeyPair::generate(rng) }
    }

    /// `count` prekeys with consecutive ids from `start`, wrapping inside 1..=0xFFFFFF.
    pub fn generate_batch<R: CryptoRng + ?Sized>(start: u32, count: u32, rng: &mut R) -> Vec<Self> {
        (0..count)
            .map(|i| {
                let id = ((start.wrapping_add(i).wrapping_sub(1)) % MAX_PRE_KEY_ID) + 1;
                PreKeyRecord::generate(id, rng)
            })
            .collect()
    }
}

impl Clone for PreKeyRecord {
    fn clone(&self) -> Self {
        PreKeyRecord { id: self.id, key_pair: copy_key_pair(&self.key_pair) }
    }
}

impl core::fmt::Debug for PreKeyRecord {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("PreKeyRecord")
            .field("id", &self.id)
            .field("public", &self.key_pair.public)
            .finish_non_exhaustive()
    }
}

/// A signed prekey: a medium-term key signed by the identity key.
pub struct SignedPreKeyRecord {
    /// 24-bit id.
    pub id: u32,
    /// The key pair.
    pub key_pair: KeyPair,
    /// XEdDSA signature by the identity key over `0x05 ‖ public`.
    pub signature: [u8; 64],
}

impl SignedPreKeyRecord {
    /// Signs `key_pair` with `identity` (deterministic XEdDSA, as curve25519-js / Baileys).
    pub fn new(identity: &KeyPair, id: u32, key_pair: KeyPair) -> Self {
        let signature = identity.private.sign(&key_pair.public.to_djb());
        SignedPreKeyRecord { id: id & MAX_PRE_KEY_ID, key_pair, signature }
    }

    /// Draws and signs a new signed prekey.
    pub fn generate<R: CryptoRng + ?Sized>(identity: &KeyPair, id: u32, rng: &mut R) -> Self {
        let kp = KeyPair::generate(rng);
        SignedPreKeyRecord::new(identity, id, kp)
    }
}

impl Clone for SignedPreKeyRecord {
    fn clone(&self) -> Self {
        SignedPreKeyRecord { id: self.id, key_pair: copy_key_pair(&self.key_pair), signature: self.signature }
    }
}

impl core::fmt::Debug for SignedPreKeyRecord {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SignedPreKeyRecord")
            .field("id", &self.id)
            .field("public", &self.key_pair.public)
            .finish_non_exhaustive()
    }
}

/// What a peer publishes so others can start a session with it (the server's key-fetch answer).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PreKeyBundle {
    /// The peer's registration id.
    pub registration_id: u32,
    /// The peer's identity key.
    pub identity_key: PublicKey,
    /// Signed prekey id.
    pub signed_pre_key_id: u32,
    /// Signed prekey public key.
    pub signed_pre_key: PublicKey,
    /// Identity signature over `0x05 ‖ signed_pre_key`.
    pub signed_pre_key_signature: [u8; 64],
    /// Optional one-time prekey (id, key).
    pub pre_key: Option<(u32, PublicKey)>,
}

impl PreKeyBundle {
    /// Checks the signed prekey's signature against the identity key.
    pub fn verify(&self) -> Result<(), SignalError> {
        if self.identity_key.verify(&self.signed_pre_key.to_djb(), &self.signed_pre_key_signature) {
            Ok(())
        } else {
            Err(SignalError::BadSignedPreKeySignature)
        }
    }
}

/// Where the receiver of a PreKeySignalMessage finds the prekeys the message names.
///
/// It is only consulted when the message starts a new session; the caller deletes the one-time
/// prekey reported in [`crate::Decrypted::used_pre_key`] after storing the new record.
pub trait PreKeyStore {
    /// Our signed prekey with this id.
    fn signed_pre_key(&self, id: u32) -> Option<&KeyPair>;
    /// Our unused one-time prekey with this id.
    fn one_time_pre_key(&self, id: u32) -> Option<&KeyPair>;
}

/// A simple in-memory [`PreKeyStore`].
#[derive(Default, Debug, Clone)]
pub struct PreKeySet {
    /// Signed prekeys.
    pub signed: Vec<SignedPreKeyRecord>,
    /// One-time prekeys.
    pub one_time: Vec<PreKeyRecord>,
}

impl PreKeySet {
    /// Removes a used one-time prekey.
    pub fn remove_one_time(&mut self, id: u32) -> Option<PreKeyRecord> {
        let pos = self.one_time.iter().position(|p| p.id == id)?;
        Some(self.one_time.swap_remove(pos))
    }
}

impl PreKeyStore for PreKeySet {
    fn signed_pre_key(&self, id: u32) -> Option<&KeyPair> {
        self.signed.iter().find(|s| s.id == id).map(|s| &s.key_pair)
    }
    fn one_time_pre_key(&self, id: u32) -> Option<&KeyPair> {
        self.one_time.iter().find(|p| p.id == id).map(|p| &p.key_pair)
    }
}
