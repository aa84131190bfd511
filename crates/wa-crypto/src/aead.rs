//! AES-256-GCM with a 12-byte nonce and the 16-byte tag appended to the ciphertext.
//!
//! WhatsApp uses it in the Noise handshake and transport (nonce = 8 zero bytes || u32 BE
//! counter), for the pairing-code flow and at rest in our store.

use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::{Nonce, Tag};

use crate::CryptoError;

/// Length of the authentication tag appended to every ciphertext.
pub const TAG_LEN: usize = 16;

/// A keyed AES-256-GCM cipher, for encrypting many messages under one key without
/// re-expanding the key schedule each time.
#[derive(Clone)]
pub struct Aes256Gcm(aes_gcm::Aes256Gcm);

impl Aes256Gcm {
    /// Expands the key schedule.
    pub fn new(key: &[u8; 32]) -> Self {
        Self(aes_gcm::Aes256Gcm::new(key.into()))
    }

    /// Encrypts `buf` in place and appends the tag.
    pub fn encrypt_in_place(&self, nonce: &[u8; 12], aad: &[u8], buf: &mut Vec<u8>) {
        let tag = self.encrypt_detached(nonce, aad, buf);
        buf.extend_from_slice(&tag);
    }

    /// Encrypts `buf` in place and returns the tag (for callers that place it themselves).
    pub fn encrypt_detached(&self, nonce: &[u8; 12], aad: &[u8], buf: &mut [u8]) -> [u8; TAG_LEN] {
        // GCM fails only for inputs over 64 GiB, which no caller can hold in memory here.
        match self.0.encrypt_inout_detached(&Nonce::from(*nonce), aad, buf.into()) {
            Ok(tag) => tag.into(),
            Err(_) => unreachable!("AES-GCM input over 2^36 bytes"),
        }
    }

    /// Decrypts `buf` (ciphertext || tag) in place, truncating the tag away on success.
    /// On failure `buf` is left as it was given.
    pub fn decrypt_in_place(
        &self,
        nonce: &[u8; 12],
        aad: &[u8],
        buf: &mut Vec<u8>,
    ) -> Result<(), CryptoError> {
        let len = buf.len().checked_sub(TAG_LEN).ok_or(CryptoError::BadTag)?;
        let (ct, tag) = buf.split_at_mut(len);
        let tag = *<&[u8; TAG_LEN]>::try_from(&*tag).map_err(|_| CryptoError::BadTag)?;
        self.decrypt_detached(nonce, aad, ct, &tag)?;
        buf.truncate(len);
        Ok(())
    }

    /// Decrypts `buf` in place against a separate tag. On failure `buf` is unchanged.
    pub fn decrypt_detached(
        &self,
        nonce: &[u8; 12],
        aad: &[u8],
        buf: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), CryptoError> {
        self.0
            .decrypt_inout_detached(&Nonce::from(*nonce), aad, buf.into(), &Tag::from(*tag))
            .map_err(|_| CryptoError::BadTag)
    }

    /// Encrypts into a new vector (`plaintext.len() + 16` bytes, one allocation).
    pub fn encrypt(&self, nonce: &[u8; 12], aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let mut buf = Vec::with_capacity(plaintext.len() + TAG_LEN);
        buf.extend_from_slice(plaintext);
        self.encrypt_in_place(nonce, aad, &mut buf);
        buf
    }

    /// Decrypts `ciphertext || tag` into a new vector.
    pub fn decrypt(&self, nonce: &[u8; 12], aad: &[u8], ciphertext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let mut buf = ciphertext.to_vec();
        self.decrypt_in_place(nonce, aad, &mut buf)?;
        Ok(buf)
    }
}

/// One-shot [`Aes256Gcm::encrypt_in_place`].
pub fn encrypt_in_place(key: &[u8; 32], nonce: &[u8; 12], aad: &[u8], buf: &mut Vec<u8>) {
    Aes256Gcm::new(key).encrypt_in_place(nonce, aad, buf)
}

/// One-shot [`Aes256Gcm::decrypt_in_place`].
pub fn decrypt_in_place(
    key: &[u8; 32],
    nonce: &[u8; 12],
    aad: &[u8],
    buf: &mut Vec<u8>,
) -> Result<(), CryptoError> {
    Aes256Gcm::new(key).decrypt_in_place(nonce, aad, buf)
}

/// One-shot [`Aes256Gcm::encrypt`].
pub fn encrypt(key: &[u8; 32], nonce: &[u8; 12], aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
    Aes256Gcm::new(key).encrypt(nonce, aad, plaintext)
}

/// One-shot [`Aes256Gcm::decrypt`].
pub fn decrypt(
    key: &[u8; 32],
    nonce: &[u8; 12],
    aad: &[u8],
    ciphertext: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    Aes256Gcm::new(key).decrypt(nonce, aad, ciphertext)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nist_gcm_vector() {
        // NIST SP 800-38D, AES-256, test case 16 (with AAD).
        let key: [u8; 32] = hex::decode("feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308")
            .unwrap()
            .try_into()
            .unwrap();
        let nonce: [u8; 12] = hex::decode("cafebabefacedbaddecaf888").unwrap().try_into().unwrap();
        let pt = hex::decode("d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39").unwrap();
        let aad = hex::decode("feedfacedeadbeeffeedfacedeadbeefabaddad2").unwrap();
        let ct = encrypt(&key, &nonce, &aad, &pt);
        assert_eq!(
            hex::encode(&ct),
            "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662\
             76fc6ece0f4e1768cddf8853bb2d551b"
        );
        assert_eq!(decrypt(&key, &nonce, &aad, &ct).unwrap(), pt);
    }

    #[test]
    fn tamper_is_bad_tag_and_leaves_buffer() {
        let key = [9u8; 32];
        let nonce = [0u8; 12];
        let mut ct = encrypt(&key, &nonce, b"", b"hello");
        ct[2] ^= 1;
        let before = ct.clone();
        assert_eq!(decrypt_in_place(&key, &nonce, b"", &mut ct), Err(CryptoError::BadTag));
        assert_eq!(ct, before);
        assert_eq!(decrypt(&key, &nonce, b"", &[1, 2, 3]), Err(CryptoError::BadTag));
        assert_eq!(decrypt(&key, &nonce, b"x", &encrypt(&key, &nonce, b"", b"")), Err(CryptoError::BadTag));
    }
}
