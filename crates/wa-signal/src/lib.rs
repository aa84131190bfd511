//! Signal protocol v3 as WhatsApp uses it: X3DH, double ratchet, sender keys (sans-I/O).
//!
//! - [`LocalIdentity`], [`PreKeyRecord`], [`SignedPreKeyRecord`], [`PreKeyBundle`]: key material.
//! - [`SessionRecord`]: pairwise sessions (`pkmsg` / `msg`); build one with
//!   [`SessionRecord::initiate`] from a bundle, or by decrypting a PreKeySignalMessage.
//! - [`SenderKeyRecord`]: group sender keys (`skmsg`) and distribution messages.
//! - Wire formats in [`wire`]; the versioned protobuf record format in `record`.
//!
//! Randomness is always passed in (`rand_core::CryptoRng`), and no function does I/O. Every
//! decrypt is atomic: on error the record is unchanged, so a bad message never corrupts state.
//! Wire and KDF details follow libsignal-node 6.0.0 (what Baileys runs) and are checked against
//! its vectors in `tests/`.
//!
//! ```
//! use rand::{SeedableRng, rngs::StdRng};
//! use wa_signal::*;
//!
//! let mut rng = StdRng::seed_from_u64(1);
//! let cfg = SessionConfig::default();
//! let alice = LocalIdentity::generate(&mut rng);
//! let bob = LocalIdentity::generate(&mut rng);
//! // Bob publishes prekeys; the server hands Alice a bundle.
//! let signed = SignedPreKeyRecord::generate(&bob.key_pair, 1, &mut rng);
//! let one_time = PreKeyRecord::generate(7, &mut rng);
//! let bundle = PreKeyBundle {
//!     registration_id: bob.registration_id,
//!     identity_key: bob.public_key(),
//!     signed_pre_key_id: signed.id,
//!     signed_pre_key: signed.key_pair.public,
//!     signed_pre_key_signature: signed.signature,
//!     pre_key: Some((one_time.id, one_time.key_pair.public)),
//! };
//! let mut bob_keys = PreKeySet { signed: vec![signed], one_time: vec![one_time] };
//!
//! let mut alice_session = SessionRecord::new();
//! alice_session.initiate(&alice, &bundle, &cfg, &mut rng)?;
//! let ct = alice_session.encrypt(&alice, b"hello")?;
//! assert_eq!(ct.enc_type(), "pkmsg");
//!
//! let mut bob_session = SessionRecord::new();
//! let (got, new_record) =
//!     bob_session.decrypt(&bob, MessageKind::PreKey, ct.bytes(), &bob_keys, &cfg, &mut rng)?;
//! assert_eq!(got.plaintext, b"hello");
//! assert_eq!(got.identity, IdentityCheck::FirstContact);
//! // Store `new_record`, then delete the one-time prekey it used.
//! bob_session = new_record;
//! bob_keys.remove_one_time(got.used_pre_key.unwrap());
//! let stored = bob_session.to_bytes();
//! assert!(SessionRecord::from_bytes(&stored).is_ok());
//! # Ok::<(), SignalError>(())
//! ```

mod error;
mod kdf;
mod keys;
mod record;
mod sender_key;
mod session;
pub mod wire;

pub use error::SignalError;
pub use keys::{
    LocalIdentity, MAX_PRE_KEY_ID, PreKeyBundle, PreKeyRecord, PreKeySet, PreKeyStore, SignedPreKeyRecord,
    generate_registration_id,
};
pub use rand_core;
pub use record::RECORD_VERSION;
pub use sender_key::{SenderKeyConfig, SenderKeyRecord};
pub use session::{CiphertextMessage, Decrypted, IdentityCheck, MessageKind, SessionConfig, SessionRecord};
pub use wa_crypto::{KeyPair, PrivateKey, PublicKey};
pub use wire::{PreKeySignalMessage, SenderKeyDistributionMessage, SenderKeyMessage, SignalMessage};
