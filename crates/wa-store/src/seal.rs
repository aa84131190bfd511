//! Encryption at rest: AES-256-GCM over every stored value.
//!
//! Sealed value: `0x01 | key id (8) | nonce (12) | ciphertext+tag`; clear value: `0x00 | bytes`.
//! The AAD binds device, table, scope and key, so a row copied onto another row (even of the
//! same device and table) fails authentication instead of being read as that row.
//! The key id is the first 8 bytes of SHA-256 over a label and the key: it names the key in
//! errors and lets `rotate_key` tell old rows from new without revealing the key.

use std::fmt;

use aes_gcm::aead::{Aead, Generate, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key};

type GcmNonce = aes_gcm::aead::Nonce<Aes256Gcm>;
use sha2::{Digest, Sha256};

use crate::backend::Table;
use crate::codec::{Dec, Enc};
use crate::error::{Error, Result};

const SEALED: u8 = 1;
const CLEAR: u8 = 0;
const KEY_ID_LEN: usize = 8;
const NONCE_LEN: usize = 12;
const AAD_LABEL: &[u8] = b"wa-store/aad/v1";
const KEY_CHECK: &[u8] = b"wa-store key check v1";

/// Argon2id cost parameters for passphrase-derived keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Argon2Params {
    /// Memory in KiB.
    pub m_cost_kib: u32,
    /// Iterations.
    pub t_cost: u32,
    /// Parallelism.
    pub p_cost: u32,
}

impl Default for Argon2Params {
    /// OWASP's baseline for Argon2id: 19 MiB, 2 iterations, 1 lane.
    fn default() -> Self {
        Argon2Params { m_cost_kib: 19 * 1024, t_cost: 2, p_cost: 1 }
    }
}

/// The key an application supplies to encrypt its store.
#[derive(Clone)]
pub enum EncryptionKey {
    /// 32 raw key bytes (e.g. from a KMS or a secrets file).
    Raw([u8; 32]),
    /// A passphrase stretched with Argon2id. The salt is random per database and stored in it;
    /// `params` apply when the database is created or re-keyed, later opens use the stored ones.
    Passphrase {
        /// The passphrase.
        passphrase: String,
        /// Cost parameters.
        params: Argon2Params,
    },
}

impl fmt::Debug for EncryptionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EncryptionKey::Raw(_) => f.write_str("EncryptionKey::Raw(<redacted>)"),
            EncryptionKey::Passphrase { params, .. } => {
                write!(f, "EncryptionKey::Passphrase {{ passphrase: <redacted>, params: {params:?} }}")
            }
        }
    }
}

impl EncryptionKey {
    /// A passphrase key with default Argon2id costs.
    pub fn passphrase(p: impl Into<String>) -> Self {
        EncryptionKey::Passphrase { passphrase: p.into(), params: Argon2Params::default() }
    }
}

/// How the database's key is derived, as recorded in its metadata.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Kdf {
    Raw,
    Argon2id { params: Argon2Params, salt: Vec<u8> },
}

/// The encryption record stored in the meta table (in clear: it holds no secret).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum EncryptionMeta {
    None,
    Aes256Gcm { key_id: [u8; KEY_ID_LEN], kdf: Kdf, check: Vec<u8> },
}

impl EncryptionMeta {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut e = Enc::new(1);
        match self {
            EncryptionMeta::None => {
                e.u8(0);
            }
            EncryptionMeta::Aes256Gcm { key_id, kdf, check } => {
                e.u8(1).raw(key_id);
                match kdf {
                    Kdf::Raw => {
                        e.u8(0);
                    }
                    Kdf::Argon2id { params, salt } => {
                        e.u8(1).u32(params.m_cost_kib).u32(params.t_cost).u32(params.p_cost).bytes(salt);
                    }
                }
                e.bytes(check);
            }
        }
        e.finish()
    }

    pub(crate) fn decode(b: &[u8]) -> Result<Self> {
        let t = Table::Meta.name();
        let mut d = Dec::new(b, t, 1)?;
        let m = match d.u8()? {
            0 => EncryptionMeta::None,
            1 => {
                let key_id = d.array()?;
                let kdf = match d.u8()? {
                    0 => Kdf::Raw,
                    1 => Kdf::Argon2id {
                        params: Argon2Params { m_cost_kib: d.u32()?, t_cost: d.u32()?, p_cost: d.u32()? },
                        salt: d.bytes()?,
                    },
                    k => {
                        return Err(Error::Corrupt { table: t, reason: format!("unknown kdf {k}") });
                    }
                };
                EncryptionMeta::Aes256Gcm { key_id, kdf, check: d.bytes()? }
            }
            m => {
                return Err(Error::Corrupt { table: t, reason: format!("unknown encryption mode {m}") });
            }
        };
        d.finish()?;
        Ok(m)
    }
}

/// Seals and opens values under one key.
pub(crate) struct Sealer {
    cipher: Aes256Gcm,
    key_id: [u8; KEY_ID_LEN],
    kdf: Kdf,
}

pub(crate) fn random_bytes<const N: usize>() -> Result<[u8; N]> {
    let mut out = [0u8; N];
    for chunk in out.chunks_mut(32) {
        let k = Key::<Aes256Gcm>::try_generate().map_err(|e| Error::Random(e.to_string()))?;
        chunk.copy_from_slice(&k[..chunk.len()]);
    }
    Ok(out)
}

fn key_id_of(key: &[u8; 32]) -> [u8; KEY_ID_LEN] {
    let mut h = Sha256::new();
    h.update(b"wa-store/key-id/v1");
    h.update(key);
    let d = h.finalize();
    let mut id = [0u8; KEY_ID_LEN];
    id.copy_from_slice(&d[..KEY_ID_LEN]);
    id
}

fn derive(passphrase: &str, params: Argon2Params, salt: &[u8]) -> Result<[u8; 32]> {
    let p = argon2::Params::new(params.m_cost_kib, params.t_cost, params.p_cost, Some(32))
        .map_err(|e| Error::KeyDerivation(e.to_string()))?;
    let a = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, p);
    let mut out = [0u8; 32];
    a.hash_password_into(passphrase.as_bytes(), salt, &mut out)
        .map_err(|e| Error::KeyDerivation(e.to_string()))?;
    Ok(out)
}

pub(crate) fn key_id_hex(id: &[u8; KEY_ID_LEN]) -> String {
    hex::encode(id)
}

fn aad(device: &str, table: Table, scope: &str, key: &str) -> Vec<u8> {
    let mut a = Vec::with_capacity(AAD_LABEL.len() + 16 + device.len() + scope.len() + key.len() + 24);
    a.extend_from_slice(AAD_LABEL);
    for part in [device.as_bytes(), table.name().as_bytes(), scope.as_bytes(), key.as_bytes()] {
        a.extend_from_slice(&u32::try_from(part.len()).unwrap_or(u32::MAX).to_be_bytes());
        a.extend_from_slice(part);
    }
    a
}

impl Sealer {
    /// A sealer for a new database (or a re-key): picks a fresh salt for passphrases.
    /// Argon2 is CPU-heavy, so callers run this on a blocking thread.
    pub(crate) fn create(key: &EncryptionKey) -> Result<Self> {
        match key {
            EncryptionKey::Raw(k) => Ok(Self::from_raw(k, Kdf::Raw)),
            EncryptionKey::Passphrase { passphrase, params } => {
                let salt = random_bytes::<16>()?.to_vec();
                let k = derive(passphrase, *params, &salt)?;
                Ok(Self::from_raw(&k, Kdf::Argon2id { params: *params, salt }))
            }
        }
    }

    /// A sealer for an existing database, using the KDF parameters it records.
    pub(crate) fn for_existing(key: &EncryptionKey, kdf: &Kdf) -> Result<Self> {
        match (key, kdf) {
            (EncryptionKey::Raw(k), _) => Ok(Self::from_raw(k, Kdf::Raw)),
            (EncryptionKey::Passphrase { passphrase, .. }, Kdf::Argon2id { params, salt }) => {
                let k = derive(passphrase, *params, salt)?;
                Ok(Self::from_raw(&k, kdf.clone()))
            }
            (EncryptionKey::Passphrase { passphrase, params }, Kdf::Raw) => {
                // The database was keyed with raw bytes; a passphrase can only match by chance,
                // so derive with an empty salt to produce a key id for the error message.
                let k = derive(passphrase, *params, b"wa-store/no-salt")?;
                Ok(Self::from_raw(&k, Kdf::Raw))
            }
        }
    }

    fn from_raw(key: &[u8; 32], kdf: Kdf) -> Self {
        Sealer { cipher: Aes256Gcm::new(&Key::<Aes256Gcm>::from(*key)), key_id: key_id_of(key), kdf }
    }

    pub(crate) fn key_id(&self) -> [u8; KEY_ID_LEN] {
        self.key_id
    }

    pub(crate) fn meta(&self) -> Result<EncryptionMeta> {
        let check = self.seal("", Table::Meta, "", "key-check", KEY_CHECK)?;
        Ok(EncryptionMeta::Aes256Gcm { key_id: self.key_id, kdf: self.kdf.clone(), check })
    }

    /// Checks the database's key-check blob, proving the key (not just its id) is right.
    pub(crate) fn verify_check(&self, check: &[u8]) -> Result<()> {
        let p = self.open("", Table::Meta, "", "key-check", check)?;
        if p != KEY_CHECK {
            return Err(Error::Corrupt { table: Table::Meta.name(), reason: "key check mismatch".into() });
        }
        Ok(())
    }

    pub(crate) fn seal(
        &self,
        device: &str,
        table: Table,
        scope: &str,
        key: &str,
        plain: &[u8],
    ) -> Result<Vec<u8>> {
        let nonce_bytes = random_bytes::<NONCE_LEN>()?;
        let nonce = GcmNonce::from(nonce_bytes);
        let aad = aad(device, table, scope, key);
        let ct = self
            .cipher
            .encrypt(&nonce, Payload { msg: plain, aad: &aad })
            .map_err(|_| Error::InvalidInput(format!("value too large to seal in {}", table.name())))?;
        let mut out = Vec::with_capacity(1 + KEY_ID_LEN + NONCE_LEN + ct.len());
        out.push(SEALED);
        out.extend_from_slice(&self.key_id);
        out.extend_from_slice(&nonce_bytes);
        out.extend_from_slice(&ct);
        Ok(out)
    }

    pub(crate) fn open(
        &self,
        device: &str,
        table: Table,
        scope: &str,
        key: &str,
        stored: &[u8],
    ) -> Result<Vec<u8>> {
        let integrity = || Error::Integrity {
            table: table.name(),
            device: device.to_owned(),
            scope: scope.to_owned(),
            key: key.to_owned(),
        };
        match stored.first() {
            Some(&SEALED) => {}
            // A clear row in an encrypted database is an injection or a downgrade: refuse it.
            _ => return Err(integrity()),
        }
        if stored.len() < 1 + KEY_ID_LEN + NONCE_LEN + 16 {
            return Err(integrity());
        }
        let (id, rest) = stored[1..].split_at(KEY_ID_LEN);
        if id != self.key_id {
            let mut expected = [0u8; KEY_ID_LEN];
            expected.copy_from_slice(id);
            return Err(Error::WrongKey {
                expected: key_id_hex(&expected),
                supplied: key_id_hex(&self.key_id),
            });
        }
        let (nonce, ct) = rest.split_at(NONCE_LEN);
        let nonce = GcmNonce::try_from(nonce).map_err(|_| integrity())?;
        let aad = aad(device, table, scope, key);
        self.cipher.decrypt(&nonce, Payload { msg: ct, aad: &aad }).map_err(|_| integrity())
    }
}

/// Stored form of a value when no key is configured.
pub(crate) fn clear(plain: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(plain.len() + 1);
    v.push(CLEAR);
    v.extend_from_slice(plain);
    v
}

/// Reads a value stored without a key.
pub(crate) fn unclear(table: Table, stored: &[u8]) -> Result<Vec<u8>> {
    match stored.split_first() {
        Some((&CLEAR, rest)) => Ok(rest.to_vec()),
        Some((&SEALED, rest)) if rest.len() >= KEY_ID_LEN => {
            let mut id = [0u8; KEY_ID_LEN];
            id.copy_from_slice(&rest[..KEY_ID_LEN]);
            Err(Error::KeyRequired { key_id: key_id_hex(&id) })
        }
        _ => Err(Error::Corrupt { table: table.name(), reason: "unknown value envelope".into() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_and_aad_binding() {
        let s = Sealer::create(&EncryptionKey::Raw([7; 32])).expect("sealer");
        let c = s.seal("dev", Table::Sessions, "a", "1", b"secret").expect("seal");
        assert_eq!(s.open("dev", Table::Sessions, "a", "1", &c).expect("open"), b"secret");
        for (d, t, sc, k) in [
            ("dev2", Table::Sessions, "a", "1"),
            ("dev", Table::SenderKeys, "a", "1"),
            ("dev", Table::Sessions, "b", "1"),
            ("dev", Table::Sessions, "a", "2"),
        ] {
            assert!(matches!(s.open(d, t, sc, k, &c), Err(Error::Integrity { .. })));
        }
        let mut bad = c.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(matches!(s.open("dev", Table::Sessions, "a", "1", &bad), Err(Error::Integrity { .. })));
        let other = Sealer::create(&EncryptionKey::Raw([8; 32])).expect("sealer");
        assert!(matches!(other.open("dev", Table::Sessions, "a", "1", &c), Err(Error::WrongKey { .. })));
        assert!(matches!(
            s.open("dev", Table::Sessions, "a", "1", &clear(b"x")),
            Err(Error::Integrity { .. })
        ));
    }

    #[test]
    fn passphrase_derivation_is_salted_and_reproducible() {
        let params = Argon2Params { m_cost_kib: 64, t_cost: 1, p_cost: 1 };
        let key = EncryptionKey::Passphrase { passphrase: "hunter2".into(), params };
        let a = Sealer::create(&key).expect("a");
        let b = Sealer::create(&key).expect("b");
        assert_ne!(a.key_id(), b.key_id(), "fresh salt per database");
        let again = Sealer::for_existing(&key, &a.kdf).expect("again");
        assert_eq!(again.key_id(), a.key_id());
        let meta = a.meta().expect("meta");
        let EncryptionMeta::Aes256Gcm { check, .. } = &meta else { panic!("sealed meta") };
        again.verify_check(check).expect("check");
        assert_eq!(EncryptionMeta::decode(&meta.encode()).expect("decode"), meta);
    }
}
