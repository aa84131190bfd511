//! Noise's SymmetricState as WhatsApp runs it: one 32-bit nonce counter shared by both
//! directions during the handshake, reset by every MixKey; AAD = h.

use wa_crypto::aead::Aes256Gcm;
use zeroize::Zeroize;

use crate::error::{Error, HandshakeStage, Result};

/// `"Noise_XX_25519_AESGCM_SHA256\0\0\0\0"`: exactly 32 bytes, so it is the initial
/// `h` and `ck` as is (not hashed).
pub const PROTOCOL_NAME: &[u8; 32] = b"Noise_XX_25519_AESGCM_SHA256\0\0\0\0";

/// `"Noise_IK_25519_AESGCM_SHA256\0\0\0\0"`, likewise used as is (WA Web's resume
/// pattern; whatsapp-rust `wacore-binary/src/consts.rs` `NOISE_PATTERN_IK`).
pub const IK_PROTOCOL_NAME: &[u8; 32] = b"Noise_IK_25519_AESGCM_SHA256\0\0\0\0";

/// `"Noise_XXfallback_25519_AESGCM_SHA256"`: 36 bytes, not padded, so by the Noise rule
/// the initial `h` is its SHA-256 (whatsapp-rust `NOISE_PATTERN_XXFALLBACK`, and its
/// `NoiseState::new`, which hashes names longer than 32 bytes).
pub const XX_FALLBACK_PROTOCOL_NAME: &[u8; 36] = b"Noise_XXfallback_25519_AESGCM_SHA256";

/// AES-GCM tag length.
pub const TAG_LEN: usize = 16;

/// `00 × 8 ‖ u32be(counter)`.
pub(crate) fn nonce(counter: u32) -> [u8; 12] {
    let mut iv = [0u8; 12];
    iv[8..].copy_from_slice(&counter.to_be_bytes());
    iv
}

/// A 32-byte secret (DH output) whose `Debug` does not print it.
pub(crate) struct Secret(pub(crate) [u8; 32]);

impl Drop for Secret {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl core::fmt::Debug for Secret {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Secret(..)")
    }
}

pub(crate) struct SymmetricState {
    pub(crate) h: [u8; 32],
    pub(crate) ck: [u8; 32],
    /// `None` until the first MixKey: before it, Noise's EncryptAndHash is the identity.
    cipher: Option<Aes256Gcm>,
    #[cfg(test)]
    pub(crate) k: [u8; 32],
    counter: u32,
}

impl Drop for SymmetricState {
    fn drop(&mut self) {
        // h is public (a transcript hash); ck derives every later key.
        self.ck.zeroize();
    }
}

impl core::fmt::Debug for SymmetricState {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SymmetricState")
            .field("h", &HexBytes(&self.h))
            .field("has_key", &self.cipher.is_some())
            .field("counter", &self.counter)
            .finish_non_exhaustive()
    }
}

struct HexBytes<'a>(&'a [u8]);

impl core::fmt::Debug for HexBytes<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl SymmetricState {
    /// InitializeSymmetric(XX's name) then MixHash(prologue).
    pub(crate) fn new(prologue: &[u8]) -> Self {
        Self::with_protocol_name(PROTOCOL_NAME, prologue)
    }

    /// InitializeSymmetric(name) then MixHash(prologue). A name of at most 32 bytes is
    /// zero-padded, a longer one hashed (Noise §5.2).
    pub(crate) fn with_protocol_name(name: &[u8], prologue: &[u8]) -> Self {
        let h = match <[u8; 32]>::try_from(name) {
            Ok(exact) => exact,
            Err(_) if name.len() < 32 => {
                let mut padded = [0u8; 32];
                padded[..name.len()].copy_from_slice(name);
                padded
            }
            Err(_) => wa_crypto::sha256(&[name]),
        };
        let mut s = Self {
            h,
            ck: h,
            cipher: None,
            #[cfg(test)]
            k: h,
            counter: 0,
        };
        s.mix_hash(prologue);
        s
    }

    pub(crate) fn mix_hash(&mut self, data: &[u8]) {
        self.h = wa_crypto::sha256(&[&self.h, data]);
    }

    pub(crate) fn mix_key(&mut self, ikm: &Secret) {
        let mut okm: [u8; 64] = wa_crypto::hkdf_sha256_array(&ikm.0, &self.ck, b"");
        let (ck, k) = okm.split_at(32);
        self.ck.copy_from_slice(ck);
        let mut key = [0u8; 32];
        key.copy_from_slice(k);
        self.cipher = Some(Aes256Gcm::new(&key));
        #[cfg(test)]
        {
            self.k = key;
        }
        key.zeroize();
        okm.zeroize();
        self.counter = 0;
    }

    pub(crate) fn encrypt_and_hash(&mut self, plaintext: &[u8]) -> Vec<u8> {
        let mut buf = Vec::with_capacity(plaintext.len() + TAG_LEN);
        buf.extend_from_slice(plaintext);
        if let Some(cipher) = &self.cipher {
            cipher.encrypt_in_place(&nonce(self.counter), &self.h, &mut buf);
            // At most two AEAD operations per key in XX, IK and XXfallback: wrapping is
            // unreachable.
            self.counter = self.counter.wrapping_add(1);
        }
        self.mix_hash(&buf);
        buf
    }

    pub(crate) fn decrypt_and_hash(&mut self, ciphertext: &[u8], stage: HandshakeStage) -> Result<Vec<u8>> {
        let mut buf = ciphertext.to_vec();
        if let Some(cipher) = &self.cipher {
            cipher
                .decrypt_in_place(&nonce(self.counter), &self.h, &mut buf)
                .map_err(|_| Error::HandshakeBadTag { stage })?;
            self.counter = self.counter.wrapping_add(1);
        }
        self.mix_hash(ciphertext);
        Ok(buf)
    }

    /// `(first, second)` halves of HKDF(salt = ck, ikm = empty): the client's write key
    /// and the client's read key.
    pub(crate) fn split(&self) -> (Secret, Secret) {
        let mut okm: [u8; 64] = wa_crypto::hkdf_sha256_array(b"", &self.ck, b"");
        let mut first = [0u8; 32];
        let mut second = [0u8; 32];
        first.copy_from_slice(&okm[..32]);
        second.copy_from_slice(&okm[32..]);
        okm.zeroize();
        (Secret(first), Secret(second))
    }
}
