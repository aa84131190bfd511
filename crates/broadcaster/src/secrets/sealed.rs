//! Secret columns of the server's database, sealed with AES-256-GCM (wa-crypto) under a key
//! derived from the master key.
//!
//! Stored form: `bsec1:<key id, 16 hex>:<base64url(nonce 12 | ciphertext | tag 16)>`. The prefix
//! tells a sealed value from a clear one written by an older release (webhook secrets start
//! `whsec_`), and the key id tells which master key sealed it, so a start can refuse a wrong
//! key and re-seal rows during a rotation. The AAD binds the column and the row id, so a sealed
//! value copied onto another row fails to open instead of being used there.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::master_key::MasterKey;

const PREFIX: &str = "bsec1:";
const NONCE_LEN: usize = 12;
const AAD_LABEL: &[u8] = b"broadcaster/secret-column/v1";

/// A column holding a secret (the AAD names it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SecretColumn {
    /// `webhooks.secret`: the HMAC key deliveries are signed with.
    WebhookSecret,
    /// `accounts.proxy_url`: the account's proxy URL, its password included.
    AccountProxy,
}

impl SecretColumn {
    pub fn name(self) -> &'static str {
        match self {
            Self::WebhookSecret => "webhooks.secret",
            Self::AccountProxy => "accounts.proxy_url",
        }
    }
}

/// A stored secret that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SecretError {
    /// A clear value where a sealed one belongs: written by an older release and not migrated,
    /// or injected.
    #[error("{column} of {row} is stored in clear")]
    Clear { column: &'static str, row: String },
    /// Sealed with another master key.
    #[error("{column} of {row} is sealed with master key {found}, not the configured {configured}")]
    OtherKey { column: &'static str, row: String, found: String, configured: String },
    /// Truncated, tampered with, or moved from another row.
    #[error("{column} of {row} fails authentication (tampered, moved from another row, or corrupted)")]
    Integrity { column: &'static str, row: String },
}

/// What a stored value is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored<'a> {
    Clear,
    Sealed { key_id: &'a str },
}

/// Tells a sealed value from a clear one.
pub fn classify(stored: &str) -> Stored<'_> {
    match stored.strip_prefix(PREFIX).and_then(|rest| rest.split_once(':')) {
        Some((key_id, _)) => Stored::Sealed { key_id },
        None => Stored::Clear,
    }
}

/// Seals and opens secret columns under one master key. Cheap to share (`Arc`).
#[derive(Clone)]
pub struct SecretBox {
    cipher: wa_crypto::aead::Aes256Gcm,
    key_id: String,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretBox").field("key_id", &self.key_id).finish_non_exhaustive()
    }
}

fn aad(column: SecretColumn, row: &str) -> Vec<u8> {
    let name = column.name().as_bytes();
    let mut a = Vec::with_capacity(AAD_LABEL.len() + 8 + name.len() + row.len());
    a.extend_from_slice(AAD_LABEL);
    for part in [name, row.as_bytes()] {
        a.extend_from_slice(&u32::try_from(part.len()).unwrap_or(u32::MAX).to_be_bytes());
        a.extend_from_slice(part);
    }
    a
}

impl SecretBox {
    pub fn new(master: &MasterKey) -> Self {
        Self {
            cipher: wa_crypto::aead::Aes256Gcm::new(&master.derive(b"broadcaster/secret-columns/v1")),
            key_id: master.id(),
        }
    }

    /// A box under a random key nobody keeps, for a state built without a master key (unit
    /// tests of handlers); the server always installs the master key's box.
    pub fn ephemeral() -> Self {
        Self::new(&MasterKey::generate())
    }

    /// The master key's id.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// Seals `plain` for `column` of row `row`.
    pub fn seal(&self, column: SecretColumn, row: &str, plain: &str) -> String {
        let nonce: [u8; NONCE_LEN] = rand::random();
        let mut body = Vec::with_capacity(NONCE_LEN + plain.len() + wa_crypto::aead::TAG_LEN);
        body.extend_from_slice(&nonce);
        body.extend_from_slice(plain.as_bytes());
        let tag = self.cipher.encrypt_detached(&nonce, &aad(column, row), &mut body[NONCE_LEN..]);
        body.extend_from_slice(&tag);
        format!("{PREFIX}{}:{}", self.key_id, URL_SAFE_NO_PAD.encode(body))
    }

    /// Opens a value [`SecretBox::seal`] made for the same column and row. A clear value is
    /// refused: after the start's migration every row is sealed.
    pub fn open(&self, column: SecretColumn, row: &str, stored: &str) -> Result<String, SecretError> {
        let integrity = || SecretError::Integrity { column: column.name(), row: row.to_owned() };
        let Some((key_id, body)) = stored.strip_prefix(PREFIX).and_then(|rest| rest.split_once(':')) else {
            return Err(SecretError::Clear { column: column.name(), row: row.to_owned() });
        };
        if key_id != self.key_id {
            return Err(SecretError::OtherKey {
                column: column.name(),
                row: row.to_owned(),
                found: key_id.to_owned(),
                configured: self.key_id.clone(),
            });
        }
        let mut body = URL_SAFE_NO_PAD.decode(body).map_err(|_| integrity())?;
        if body.len() < NONCE_LEN + wa_crypto::aead::TAG_LEN {
            return Err(integrity());
        }
        let mut ct = body.split_off(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = body.try_into().map_err(|_| integrity())?;
        self.cipher.decrypt_in_place(&nonce, &aad(column, row), &mut ct).map_err(|_| integrity())?;
        String::from_utf8(ct).map_err(|_| integrity())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COL: SecretColumn = SecretColumn::WebhookSecret;

    #[test]
    fn a_sealed_secret_opens_only_for_its_row_with_its_key_and_hides_the_text() {
        let k = MasterKey::from_bytes([3; 32]);
        let b = SecretBox::new(&k);
        let s = b.seal(COL, "whk_1", "whsec_0123");
        assert!(!s.contains("whsec_0123") && s.starts_with("bsec1:"), "{s}");
        assert_eq!(classify(&s), Stored::Sealed { key_id: &k.id() });
        assert_eq!(classify("whsec_0123"), Stored::Clear);
        assert_eq!(b.open(COL, "whk_1", &s).unwrap(), "whsec_0123");
        assert_ne!(b.seal(COL, "whk_1", "whsec_0123"), s, "a fresh nonce each time");
        assert!(matches!(b.open(COL, "whk_2", &s), Err(SecretError::Integrity { .. })), "moved row");
        let other = SecretBox::new(&MasterKey::from_bytes([4; 32]));
        assert!(matches!(other.open(COL, "whk_1", &s), Err(SecretError::OtherKey { .. })));
        assert!(matches!(b.open(COL, "whk_1", "whsec_0123"), Err(SecretError::Clear { .. })));
        // Any flipped character of the body fails authentication, never yields another secret.
        let body_start = s.rfind(':').unwrap() + 1;
        for i in body_start..s.len() {
            let mut t = s.clone().into_bytes();
            t[i] = if t[i] == b'A' { b'B' } else { b'A' };
            let t = String::from_utf8(t).unwrap();
            assert!(b.open(COL, "whk_1", &t).is_err(), "flip at {i}");
        }
        assert!(b.open(COL, "whk_1", &s[..s.len() - 4]).is_err(), "truncated");
    }
}
