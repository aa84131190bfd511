//! AES-256-CBC with PKCS#7 padding, as Signal message bodies and WhatsApp media use it.

use aes::cipher::block_padding::Pkcs7;
use aes::cipher::{BlockModeDecrypt, BlockModeEncrypt, KeyIvInit};

use crate::CryptoError;

type Enc = cbc::Encryptor<aes::Aes256>;
type Dec = cbc::Decryptor<aes::Aes256>;

/// Encrypts and pads; the output is `(len / 16 + 1) * 16` bytes.
pub fn encrypt(key: &[u8; 32], iv: &[u8; 16], plaintext: &[u8]) -> Vec<u8> {
    Enc::new(key.into(), iv.into()).encrypt_padded_vec::<Pkcs7>(plaintext)
}

/// Encrypts and pads into `out` (cleared first), reusing its allocation.
pub fn encrypt_into(key: &[u8; 32], iv: &[u8; 16], plaintext: &[u8], out: &mut Vec<u8>) {
    let padded = (plaintext.len() / 16 + 1) * 16;
    out.clear();
    out.resize(padded, 0);
    out[..plaintext.len()].copy_from_slice(plaintext);
    // The buffer is exactly the padded length, so padding cannot fail.
    match Enc::new(key.into(), iv.into()).encrypt_padded::<Pkcs7>(out, plaintext.len()) {
        Ok(_) => {}
        Err(_) => unreachable!("buffer sized for padding"),
    }
}

/// Encrypts and pads, appending the ciphertext to `out` (no intermediate buffer).
pub fn encrypt_append(key: &[u8; 32], iv: &[u8; 16], plaintext: &[u8], out: &mut Vec<u8>) {
    let start = out.len();
    out.resize(start + padded_len(plaintext.len()), 0);
    let region = &mut out[start..];
    region[..plaintext.len()].copy_from_slice(plaintext);
    // The region is exactly the padded length, so padding cannot fail.
    match Enc::new(key.into(), iv.into()).encrypt_padded::<Pkcs7>(region, plaintext.len()) {
        Ok(_) => {}
        Err(_) => unreachable!("buffer sized for padding"),
    }
}

/// Length of the ciphertext of `plaintext_len` bytes: PKCS#7 always adds 1 to 16 bytes.
pub const fn padded_len(plaintext_len: usize) -> usize {
    (plaintext_len / 16 + 1) * 16
}

/// Decrypts and checks the padding. A wrong key or tampered bytes give
/// [`CryptoError::BadPadding`] (callers that need integrity check a MAC first).
pub fn decrypt(key: &[u8; 32], iv: &[u8; 16], ciphertext: &[u8]) -> Result<Vec<u8>, CryptoError> {
    if ciphertext.is_empty() || !ciphertext.len().is_multiple_of(16) {
        return Err(CryptoError::InvalidLength("AES-CBC ciphertext (a positive multiple of 16)"));
    }
    Dec::new(key.into(), iv.into())
        .decrypt_padded_vec::<Pkcs7>(ciphertext)
        .map_err(|_| CryptoError::BadPadding)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nist_cbc_vector_and_padding() {
        // NIST SP 800-38A F.2.5 (CBC-AES256.Encrypt), first block; PKCS#7 adds a 16-byte block.
        let key: [u8; 32] = hex::decode("603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4")
            .unwrap()
            .try_into()
            .unwrap();
        let iv: [u8; 16] = hex::decode("000102030405060708090a0b0c0d0e0f").unwrap().try_into().unwrap();
        let pt = hex::decode("6bc1bee22e409f96e93d7e117393172a").unwrap();
        let ct = encrypt(&key, &iv, &pt);
        assert_eq!(ct.len(), 32);
        assert_eq!(hex::encode(&ct[..16]), "f58c4c04d6e5f1ba779eabfb5f7bfbd6");
        assert_eq!(decrypt(&key, &iv, &ct).unwrap(), pt);
        let mut into = Vec::new();
        encrypt_into(&key, &iv, &pt, &mut into);
        assert_eq!(into, ct);
        let mut appended = vec![9u8; 3];
        encrypt_append(&key, &iv, &pt, &mut appended);
        assert_eq!(appended[..3], [9, 9, 9]);
        assert_eq!(appended[3..], ct[..]);
        for n in 0..40 {
            assert_eq!(encrypt(&key, &iv, &vec![1u8; n]).len(), padded_len(n));
        }
    }

    #[test]
    fn bad_lengths_and_padding() {
        let key = [1u8; 32];
        let iv = [2u8; 16];
        assert!(matches!(decrypt(&key, &iv, &[]), Err(CryptoError::InvalidLength(_))));
        assert!(matches!(decrypt(&key, &iv, &[0; 15]), Err(CryptoError::InvalidLength(_))));
        let ct = encrypt(&key, &iv, b"abc");
        assert!(decrypt(&[3u8; 32], &iv, &ct).is_err());
    }
}
