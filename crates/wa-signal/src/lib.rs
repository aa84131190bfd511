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

mod error;
mod kdf;
mod keys;
mod record;
mod sender_key;
mod session;
pub mod wire;
mod wire_proto;

pub use error::SignalError;
pub use keys::{
    LocalIdentity, MAX_PRE_KEY_ID, PreKeyBundle, PreKeyRecord, PreKeySet, PreKeyStore, SignedPreKeyRecord,
    generate_registration_id,
};
pub use record::RECORD_VERSION;
pub use sender_key::{SenderKeyConfig, SenderKeyRecord};
pub use session::{CiphertextMessage, Decrypted, IdentityCheck, MessageKind, SessionConfig, SessionRecord};
pub use wa_crypto::{KeyPair, PrivateKey, PublicKey};
pub use wire::{PreKeySignalMessage, SenderKeyDistributionMessage, SenderKeyMessage, SignalMessage};
