/// Why a cryptographic operation failed.
///
/// Variants say whether the *input* was malformed (lengths, key types) or whether an
/// authenticity check failed ([`CryptoError::BadTag`], [`CryptoError::BadPadding`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CryptoError {
    /// A key had the wrong length.
    #[error("invalid key length: expected {expected} bytes, got {actual}")]
    InvalidKeyLength {
        /// The length that was required.
        expected: usize,
        /// The length that was given.
        actual: usize,
    },
    /// A 33-byte public key whose first byte is not the DJB type `0x05`.
    #[error("invalid key type byte 0x{0:02x} (expected 0x05)")]
    InvalidKeyType(u8),
    /// AES-GCM authentication failed: wrong key, nonce or associated data, or tampered bytes.
    #[error("authentication tag mismatch")]
    BadTag,
    /// AES-CBC plaintext did not end in valid PKCS#7 padding (wrong key or tampered bytes).
    #[error("invalid PKCS#7 padding")]
    BadPadding,
    /// X25519 with a low-order public key produced the all-zero shared secret.
    #[error("key agreement produced the all-zero secret (low-order public key)")]
    WeakKey,
    /// An input had a length the operation cannot accept.
    #[error("invalid length of {0}")]
    InvalidLength(&'static str),
}
