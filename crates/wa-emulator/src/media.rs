//! Media: encrypted blobs stored by upload token, and the phone's side of sending and
//! reading images (WhatsApp's media encryption: HKDF-expanded key, AES-256-CBC, 10-byte MAC).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand_core::Rng;
use wa_binary::Jid;

use crate::world::{AccountId, ControlError, World};

/// HKDF info of image keys.
pub const IMAGE_KEYS_INFO: &[u8] = b"WhatsApp Image Keys";

struct MediaKeys {
    iv: [u8; 16],
    cipher: [u8; 32],
    mac: [u8; 32],
}

fn expand(media_key: &[u8; 32], info: &[u8]) -> MediaKeys {
    let exp: [u8; 112] = wa_crypto::hkdf_sha256_array(media_key, &[], info);
    let mut keys = MediaKeys { iv: [0; 16], cipher: [0; 32], mac: [0; 32] };
    keys.iv.copy_from_slice(&exp[..16]);
    keys.cipher.copy_from_slice(&exp[16..48]);
    keys.mac.copy_from_slice(&exp[48..80]);
    keys
}

/// Encrypts a media file: `ct ‖ HMAC(macKey, iv ‖ ct)[..10]`.
pub fn encrypt_media(plain: &[u8], media_key: &[u8; 32], info: &[u8]) -> Vec<u8> {
    let k = expand(media_key, info);
    let mut blob = wa_crypto::cbc::encrypt(&k.cipher, &k.iv, plain);
    let mac = wa_crypto::hmac_sha256(&k.mac, &[&k.iv, &blob]);
    blob.extend_from_slice(&mac[..10]);
    blob
}

/// Checks the MAC and decrypts a media blob.
pub fn decrypt_media(blob: &[u8], media_key: &[u8; 32], info: &[u8]) -> Option<Vec<u8>> {
    if blob.len() < 10 {
        return None;
    }
    let k = expand(media_key, info);
    let (ct, mac) = blob.split_at(blob.len() - 10);
    let want = wa_crypto::hmac_sha256(&k.mac, &[&k.iv, ct]);
    if !wa_crypto::ct_eq(&want[..10], mac) {
        return None;
    }
    wa_crypto::cbc::decrypt(&k.cipher, &k.iv, ct).ok()
}

impl World {
    /// The stored (encrypted) blob at a direct path such as `/m/image/TOKEN.enc`.
    pub fn media_blob(&self, direct_path: &str) -> Option<&[u8]> {
        self.media.get(direct_path).map(Vec::as_slice)
    }

    /// The upload auth token `media_conn` hands out.
    pub fn media_auth(&self) -> &str {
        &self.media_auth
    }

    /// Where media URLs point (`https://IP:PORT`, or `http://` with TLS off).
    pub fn media_base(&self) -> &str {
        &self.media_base
    }

    /// Stores an uploaded blob; returns (direct path, url).
    pub(crate) fn store_media(&mut self, kind: &str, token: &str, blob: Vec<u8>) -> (String, String) {
        let kind: String = kind.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-').collect();
        let token: String =
            token.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_').collect();
        let direct_path = format!("/m/{kind}/{token}.enc");
        let url = format!("{}{}", self.media_base, direct_path);
        self.media.insert(direct_path.clone(), blob);
        // Its age decides when downloads start answering 410 (`mediaretry::MEDIA_TTL_SECS`).
        let now = self.now();
        self.traffic.media_stored_at.insert(direct_path.clone(), now);
        (direct_path, url)
    }

    /// The phone of `account` uploads and sends an image to a user or group.
    pub fn phone_send_image(
        &mut self,
        account: AccountId,
        to: &Jid,
        image: &[u8],
        mimetype: &str,
        caption: Option<&str>,
    ) -> Result<String, ControlError> {
        let mut media_key = [0u8; 32];
        self.rng.fill_bytes(&mut media_key);
        let blob = encrypt_media(image, &media_key, IMAGE_KEYS_INFO);
        let enc_sha = wa_crypto::sha256(&[&blob]);
        let token = URL_SAFE_NO_PAD.encode(enc_sha);
        let (direct_path, url) = self.store_media("image", &token, blob);
        let now = self.now();
        let message = wa_proto::Message {
            image_message: Some(Box::new(wa_proto::message::ImageMessage {
                url: Some(url),
                mimetype: Some(mimetype.to_owned()),
                caption: caption.map(str::to_owned),
                file_sha256: Some(wa_crypto::sha256(&[image]).to_vec()),
                file_length: Some(image.len() as u64),
                media_key: Some(media_key.to_vec()),
                file_enc_sha256: Some(enc_sha.to_vec()),
                direct_path: Some(direct_path),
                media_key_timestamp: Some(now as i64),
                ..Default::default()
            })),
            ..Default::default()
        };
        let id = self.phone_send(account, to, &message)?;
        // The phone keeps its file: a media retry request makes it upload it again.
        self.traffic.phone_media.insert((account, id.clone()), message);
        Ok(id)
    }

    /// Downloads and decrypts an image message's file from the media store.
    pub fn fetch_image(&self, image: &wa_proto::message::ImageMessage) -> Result<Vec<u8>, ControlError> {
        let path = image.direct_path.clone().unwrap_or_default();
        let path = path.split('?').next().unwrap_or_default().to_owned();
        let blob = self.media.get(&path).ok_or_else(|| ControlError::UnknownMedia(path.clone()))?;
        let key: [u8; 32] = image
            .media_key
            .as_deref()
            .and_then(|k| k.try_into().ok())
            .ok_or_else(|| ControlError::UnknownMedia("no media key".into()))?;
        decrypt_media(blob, &key, IMAGE_KEYS_INFO)
            .ok_or_else(|| ControlError::UnknownMedia(format!("{path}: bad MAC")))
    }
}
