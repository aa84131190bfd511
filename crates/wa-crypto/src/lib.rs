//! Cryptographic primitives shared by the Noise (`wa-noise`) and Signal (`wa-signal`)
//! layers, on RustCrypto and curve25519-dalek.
//!
//! - [`PublicKey`], [`PrivateKey`], [`KeyPair`]: Curve25519 keys as WhatsApp and Signal use
//!   them (32 raw bytes on the wire in nodes, 33 bytes with the `0x05` DJB type prefix inside
//!   Signal messages), X25519 agreement and XEdDSA signatures.
//! - [`hkdf_sha256`], [`hmac_sha256`], [`sha256`], [`sha512`]: hashing and key derivation.
//! - [`aead`]: AES-256-GCM; [`cbc`]: AES-256-CBC with PKCS#7 padding.
//! - [`ct_eq`]: constant-time comparison of MACs and tags.
//! - [`media`]: WhatsApp media encryption (attachments, history-sync and app-state blobs).
//! - [`msg_secret`]: modifications sealed under a message's secret (poll votes).
//!
//! Everything here is sans-I/O and allocation-light; randomness is always passed in.

pub mod aead;
pub mod cbc;
mod error;
mod hash;
mod keys;
pub mod media;
pub mod msg_secret;

pub use error::CryptoError;
pub use hash::{HmacSha256Key, ct_eq, hkdf_sha256, hkdf_sha256_array, hmac_sha256, md5, sha256, sha512};
pub use keys::{DJB_TYPE, KeyPair, PrivateKey, PublicKey, SigningKey, VerifyingKey};
pub use rand_core;
