//! Media encryption as WhatsApp does it for attachments, history-sync blobs and app-state
//! blobs: the 32-byte media key is HKDF-expanded (with a per-kind `info` label) into an IV, an
//! AES-256-CBC key and an HMAC-SHA256 key; the file is `AES-CBC(plain) ‖ HMAC(iv ‖ ct)[..10]`,
//! and the message carries SHA-256 of the plaintext and of that blob.
//!
//! It lives here, below the client, because both the client's transfers and the sans-I/O
//! app-state layer (snapshot and history blobs) decrypt with it.

use crate::{ct_eq, hkdf_sha256_array, hmac_sha256, sha256};

/// HKDF `info` of images and stickers.
pub const IMAGE_INFO: &[u8] = b"WhatsApp Image Keys";
/// HKDF `info` of videos and GIFs.
pub const VIDEO_INFO: &[u8] = b"WhatsApp Video Keys";
/// HKDF `info` of audio and voice notes.
pub const AUDIO_INFO: &[u8] = b"WhatsApp Audio Keys";
/// HKDF `info` of documents.
pub const DOCUMENT_INFO: &[u8] = b"WhatsApp Document Keys";
/// HKDF `info` of history-sync blobs (`md-msg-hist`).
pub const HISTORY_INFO: &[u8] = b"WhatsApp History Keys";
/// HKDF `info` of app-state blobs (`md-app-state`): external snapshots and mutations.
pub const APP_STATE_INFO: &[u8] = b"WhatsApp App State Keys";

/// Length of the truncated HMAC at the end of an encrypted media file.
pub const MAC_LEN: usize = 10;

/// The keys expanded from a media key.
#[derive(Clone, PartialEq, Eq)]
pub struct MediaKeys {
    /// AES-CBC IV.
    pub iv: [u8; 16],
    /// AES-256-CBC key.
    pub cipher_key: [u8; 32],
    /// HMAC-SHA256 key of the 10-byte file MAC.
    pub mac_key: [u8; 32],
}

impl std::fmt::Debug for MediaKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MediaKeys(..)")
    }
}

impl MediaKeys {
    /// HKDF-SHA256 of the media key (no salt) to 112 bytes: IV, cipher key, MAC key, and 32
    /// bytes nobody uses.
    pub fn expand(media_key: &[u8; 32], info: &[u8]) -> Self {
        let okm: [u8; 112] = hkdf_sha256_array(media_key, &[], info);
        let mut k = MediaKeys { iv: [0; 16], cipher_key: [0; 32], mac_key: [0; 32] };
        k.iv.copy_from_slice(&okm[..16]);
        k.cipher_key.copy_from_slice(&okm[16..48]);
        k.mac_key.copy_from_slice(&okm[48..80]);
        k
    }
}

/// An encrypted media file, ready to upload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncryptedMedia {
    /// `ciphertext ‖ mac(10)`: the bytes to upload.
    pub blob: Vec<u8>,
    /// SHA-256 of the plaintext.
    pub file_sha256: [u8; 32],
    /// SHA-256 of `blob`.
    pub file_enc_sha256: [u8; 32],
    /// Plaintext length.
    pub file_length: u64,
}

/// Why a downloaded media blob was refused. Each check that can fail has its own variant,
/// so a caller can tell a truncated download from tampering.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MediaError {
    /// SHA-256 of the downloaded blob differs from the message's `fileEncSha256`.
    #[error("encrypted file hash does not match fileEncSha256")]
    EncHashMismatch,
    /// The blob is not `ciphertext ‖ mac(10)` with a whole number of AES blocks.
    #[error("encrypted media of {0} bytes is not ciphertext ‖ mac")]
    BadLength(usize),
    /// The 10-byte HMAC does not verify.
    #[error("media MAC mismatch")]
    MacMismatch,
    /// The MAC verified but the PKCS#7 padding did not (the sender encrypted garbage).
    #[error("decrypt: invalid PKCS#7 padding")]
    BadPadding,
    /// SHA-256 of the plaintext differs from the message's `fileSha256`.
    #[error("decrypted file hash does not match fileSha256")]
    PlainHashMismatch,
}

/// Encrypts `plain` under `media_key` with the keys of `info`.
pub fn encrypt(media_key: &[u8; 32], info: &[u8], plain: &[u8]) -> EncryptedMedia {
    let k = MediaKeys::expand(media_key, info);
    let mut blob = crate::cbc::encrypt(&k.cipher_key, &k.iv, plain);
    let mac = hmac_sha256(&k.mac_key, &[&k.iv, &blob]);
    blob.extend_from_slice(&mac[..MAC_LEN]);
    EncryptedMedia {
        file_enc_sha256: sha256(&[&blob]),
        file_sha256: sha256(&[plain]),
        file_length: plain.len() as u64,
        blob,
    }
}

/// Verifies and decrypts a downloaded blob: `file_enc_sha256` and `file_sha256` are checked
/// when given (they come from the message), the MAC always, before any plaintext is returned.
pub fn decrypt(
    media_key: &[u8; 32],
    info: &[u8],
    blob: &[u8],
    file_enc_sha256: Option<&[u8]>,
    file_sha256: Option<&[u8]>,
) -> Result<Vec<u8>, MediaError> {
    if let Some(h) = file_enc_sha256
        && !ct_eq(&sha256(&[blob]), h)
    {
        return Err(MediaError::EncHashMismatch);
    }
    if blob.len() < MAC_LEN + 16 || !(blob.len() - MAC_LEN).is_multiple_of(16) {
        return Err(MediaError::BadLength(blob.len()));
    }
    let (ct, mac) = blob.split_at(blob.len() - MAC_LEN);
    let k = MediaKeys::expand(media_key, info);
    let expected = hmac_sha256(&k.mac_key, &[&k.iv, ct]);
    if !ct_eq(&expected[..MAC_LEN], mac) {
        return Err(MediaError::MacMismatch);
    }
    let plain = crate::cbc::decrypt(&k.cipher_key, &k.iv, ct).map_err(|_| MediaError::BadPadding)?;
    if let Some(h) = file_sha256
        && !ct_eq(&sha256(&[&plain]), h)
    {
        return Err(MediaError::PlainHashMismatch);
    }
    Ok(plain)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn round_trip_and_each_check() {
        let key = [7u8; 32];
        let e = encrypt(&key, HISTORY_INFO, b"history bytes");
        let ok = decrypt(&key, HISTORY_INFO, &e.blob, Some(&e.file_enc_sha256), Some(&e.file_sha256));
        assert_eq!(ok.unwrap(), b"history bytes");
        // the label is part of the key: the same blob under another kind fails its MAC
        assert_eq!(decrypt(&key, APP_STATE_INFO, &e.blob, None, None), Err(MediaError::MacMismatch));
        let mut bad = e.blob.clone();
        bad[0] ^= 1;
        assert_eq!(
            decrypt(&key, HISTORY_INFO, &bad, Some(&e.file_enc_sha256), None),
            Err(MediaError::EncHashMismatch)
        );
        assert_eq!(decrypt(&key, HISTORY_INFO, &bad, None, None), Err(MediaError::MacMismatch));
        assert_eq!(
            decrypt(&key, HISTORY_INFO, &e.blob[1..], None, None),
            Err(MediaError::BadLength(e.blob.len() - 1))
        );
        assert_eq!(
            decrypt(&key, HISTORY_INFO, &e.blob, None, Some(&[0; 32])),
            Err(MediaError::PlainHashMismatch)
        );
    }
}
