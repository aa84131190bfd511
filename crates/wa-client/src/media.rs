//! Media encryption as WhatsApp does it: HKDF-expanded media key, AES-256-CBC, a 10-byte
//! HMAC-SHA256 tag, and SHA-256 of the plaintext and of the encrypted blob. Decryption
//! checks the blob hash, the MAC, and the plaintext hash before returning anything.

use crate::error::{Error, Result};

/// The kinds of media, each with its own key-derivation label and upload path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MediaType {
    /// Images.
    Image,
    /// Videos and GIFs.
    Video,
    /// Audio and voice notes.
    Audio,
    /// Documents.
    Document,
    /// Stickers (image keys).
    Sticker,
    /// History-sync blobs.
    History,
    /// App-state blobs.
    AppState,
}

impl MediaType {
    /// The HKDF `info` label.
    pub fn hkdf_info(self) -> &'static [u8] {
        match self {
            Self::Image | Self::Sticker => b"WhatsApp Image Keys",
            Self::Video => b"WhatsApp Video Keys",
            Self::Audio => b"WhatsApp Audio Keys",
            Self::Document => b"WhatsApp Document Keys",
            Self::History => b"WhatsApp History Keys",
            Self::AppState => b"WhatsApp App State Keys",
        }
    }

    /// The upload path (`/mms/<type>`).
    pub fn upload_path(self) -> &'static str {
        match self {
            Self::Image | Self::Sticker => "/mms/image",
            Self::Video => "/mms/video",
            Self::Audio => "/mms/audio",
            Self::Document => "/mms/document",
            Self::History => "/mms/md-msg-hist",
            Self::AppState => "/mms/md-app-state",
        }
    }

    /// Parses the names used in vectors and `mediatype` attributes.
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "image" => Self::Image,
            "video" | "gif" | "ptv" => Self::Video,
            "audio" | "ptt" => Self::Audio,
            "document" => Self::Document,
            "sticker" => Self::Sticker,
            "md-msg-hist" | "history" => Self::History,
            "md-app-state" => Self::AppState,
            _ => return None,
        })
    }
}

/// Keys expanded from a media key.
struct MediaKeys {
    iv: [u8; 16],
    cipher_key: [u8; 32],
    mac_key: [u8; 32],
}

fn expand(media_key: &[u8; 32], kind: MediaType) -> MediaKeys {
    let okm: [u8; 112] = wa_crypto::hkdf_sha256_array(media_key, &[], kind.hkdf_info());
    let mut k = MediaKeys { iv: [0; 16], cipher_key: [0; 32], mac_key: [0; 32] };
    k.iv.copy_from_slice(&okm[..16]);
    k.cipher_key.copy_from_slice(&okm[16..48]);
    k.mac_key.copy_from_slice(&okm[48..80]);
    k
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

/// Encrypts `plain` under `media_key`.
pub fn encrypt_media(media_key: &[u8; 32], kind: MediaType, plain: &[u8]) -> EncryptedMedia {
    let k = expand(media_key, kind);
    let mut blob = wa_crypto::cbc::encrypt(&k.cipher_key, &k.iv, plain);
    let mac = wa_crypto::hmac_sha256(&k.mac_key, &[&k.iv, &blob]);
    blob.extend_from_slice(&mac[..10]);
    EncryptedMedia {
        file_enc_sha256: wa_crypto::sha256(&[&blob]),
        file_sha256: wa_crypto::sha256(&[plain]),
        file_length: plain.len() as u64,
        blob,
    }
}

/// Verifies and decrypts a downloaded blob. `file_enc_sha256` / `file_sha256` are checked
/// when given (they come from the message).
pub fn decrypt_media(
    media_key: &[u8; 32],
    kind: MediaType,
    blob: &[u8],
    file_enc_sha256: Option<&[u8]>,
    file_sha256: Option<&[u8]>,
) -> Result<Vec<u8>> {
    if let Some(h) = file_enc_sha256
        && !wa_crypto::ct_eq(&wa_crypto::sha256(&[blob]), h)
    {
        return Err(Error::Media("encrypted file hash does not match fileEncSha256".into()));
    }
    if blob.len() < 10 + 16 || !(blob.len() - 10).is_multiple_of(16) {
        return Err(Error::Media(format!("encrypted media of {} bytes is not ciphertext ‖ mac", blob.len())));
    }
    let (ct, mac) = blob.split_at(blob.len() - 10);
    let k = expand(media_key, kind);
    let expected = wa_crypto::hmac_sha256(&k.mac_key, &[&k.iv, ct]);
    if !wa_crypto::ct_eq(&expected[..10], mac) {
        return Err(Error::Media("media MAC mismatch".into()));
    }
    let plain = wa_crypto::cbc::decrypt(&k.cipher_key, &k.iv, ct)
        .map_err(|e| Error::Media(format!("decrypt: {e}")))?;
    if let Some(h) = file_sha256
        && !wa_crypto::ct_eq(&wa_crypto::sha256(&[&plain]), h)
    {
        return Err(Error::Media("decrypted file hash does not match fileSha256".into()));
    }
    Ok(plain)
}
