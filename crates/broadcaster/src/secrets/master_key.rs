//! The master key: 32 random bytes from `BROADCASTER_MASTER_KEY` or a key file, from which the
//! auth store's key and the server database's secret-column key are derived (HKDF-SHA256, one
//! label each, so neither use can stand in for the other).

use std::io::Write as _;
use std::path::{Path, PathBuf};

use base64::Engine as _;

/// The environment variable holding the master key (64 hex digits or base64 of 32 bytes).
pub const MASTER_KEY_VAR: &str = "BROADCASTER_MASTER_KEY";
/// The environment variable holding the key being rotated away from (see the README).
pub const PREVIOUS_MASTER_KEY_VAR: &str = "BROADCASTER_MASTER_KEY_PREVIOUS";
/// The key file in the data dir when neither the variable nor `--master-key-file` is set.
pub const MASTER_KEY_FILE: &str = "master-key";

/// Why a master key cannot be read or saved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MasterKeyError {
    #[error(
        "{source_name} is not a master key: expected 32 bytes written as 64 hex digits or as base64 \
         (generate one with `openssl rand -hex 32`)"
    )]
    Malformed { source_name: String },
    #[error("cannot read the master key file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("cannot save the new master key file {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
}

/// 32 secret bytes. `Debug` shows only the key id.
#[derive(Clone, PartialEq, Eq)]
pub struct MasterKey([u8; 32]);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MasterKey(id {})", self.id())
    }
}

impl MasterKey {
    /// A fresh random key (the OS-seeded CSPRNG of `rand`).
    pub fn generate() -> Self {
        Self(rand::random())
    }

    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// Parses 64 hex digits or base64 (standard or URL-safe, padded or not) of exactly 32
    /// bytes; surrounding whitespace is ignored. `source_name` names where it came from in the
    /// error (never the text itself: it may be a mistyped key).
    pub fn parse(text: &str, source_name: &str) -> Result<Self, MasterKeyError> {
        let t = text.trim();
        let malformed = || MasterKeyError::Malformed { source_name: source_name.to_owned() };
        let bytes = if t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()) {
            hex::decode(t).map_err(|_| malformed())?
        } else {
            use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
            [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
                .iter()
                .find_map(|e| e.decode(t).ok())
                .ok_or_else(malformed)?
        };
        Ok(Self(bytes.try_into().map_err(|_| malformed())?))
    }

    /// Reads a key file (the format of [`MasterKey::parse`]).
    pub fn read_file(path: &Path) -> Result<Self, MasterKeyError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| MasterKeyError::Read { path: path.to_owned(), source })?;
        Self::parse(&text, &format!("the key file {}", path.display()))
    }

    /// Names the key in logs and errors without revealing it: 16 hex digits of SHA-256 over a
    /// label and the key.
    pub fn id(&self) -> String {
        hex::encode(&wa_crypto::sha256(&[&b"broadcaster/master-key-id/v1"[..], &self.0[..]])[..8])
    }

    /// The key as written in a key file: 64 hex digits.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The key the WhatsApp auth store (wa-store) seals its values with.
    pub fn auth_store_key(&self) -> wa_store::EncryptionKey {
        wa_store::EncryptionKey::Raw(self.derive(b"broadcaster/wa-store/v1"))
    }

    pub(crate) fn derive(&self, label: &[u8]) -> [u8; 32] {
        wa_crypto::hkdf_sha256_array(&self.0, b"", label)
    }

    /// Writes a new key file, owner-only (0600 from creation) and synced (file and directory)
    /// before anything is sealed with the key: a crash may lose the start, never the key.
    /// Refuses to overwrite an existing file.
    pub fn write_new_file(&self, path: &Path) -> Result<(), MasterKeyError> {
        let err = |source| MasterKeyError::Write { path: path.to_owned(), source };
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            opts.mode(0o600);
        }
        let mut f = opts.open(path).map_err(err)?;
        writeln!(f, "{}", self.to_hex()).map_err(err)?;
        f.sync_all().map_err(err)?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            // The directory entry must be durable too (POSIX: fsync the directory).
            #[cfg(unix)]
            std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(err)?;
        }
        Ok(())
    }
}

/// Where the master key comes from, as configured (`Config::master_key`).
#[derive(Debug, Clone, Default)]
pub struct MasterKeySettings {
    /// `BROADCASTER_MASTER_KEY`.
    pub key: Option<MasterKey>,
    /// `--master-key-file` (default: [`MASTER_KEY_FILE`] in the data dir).
    pub file: Option<PathBuf>,
    /// `BROADCASTER_MASTER_KEY_PREVIOUS`: data sealed with it is re-sealed with the key at start.
    pub previous: Option<MasterKey>,
}

impl MasterKeySettings {
    /// Reads the two variables through `env`; `file` is the flag's value.
    pub fn from_env(
        env: impl Fn(&str) -> Option<String>,
        file: Option<PathBuf>,
    ) -> Result<Self, MasterKeyError> {
        let read = |var: &str| {
            env(var).filter(|v| !v.trim().is_empty()).map(|v| MasterKey::parse(&v, var)).transpose()
        };
        Ok(Self { key: read(MASTER_KEY_VAR)?, file, previous: read(PREVIOUS_MASTER_KEY_VAR)? })
    }

    /// The key file this configuration uses (when the variable is not set).
    pub fn file_in(&self, data_dir: &Path) -> PathBuf {
        self.file.clone().unwrap_or_else(|| data_dir.join(MASTER_KEY_FILE))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_and_base64_of_32_bytes_parse_to_the_same_key_and_anything_else_is_refused() {
        let k = MasterKey::from_bytes([0xab; 32]);
        assert_eq!(MasterKey::parse(&format!("  {}\n", k.to_hex()), "x").unwrap(), k);
        let b64 = base64::engine::general_purpose::STANDARD.encode([0xab; 32]);
        assert_eq!(MasterKey::parse(&b64, "x").unwrap(), k);
        assert_eq!(MasterKey::parse(b64.trim_end_matches('='), "x").unwrap(), k);
        for bad in ["", "short", &"ab".repeat(31), &"ab".repeat(33), "correct horse battery staple"] {
            let e = MasterKey::parse(bad, "BROADCASTER_MASTER_KEY").unwrap_err().to_string();
            assert!(e.contains("BROADCASTER_MASTER_KEY") && e.contains("64 hex digits"), "{e}");
            assert!(bad.is_empty() || !e.contains(bad), "the text is not echoed: {e}");
        }
        assert!(!format!("{k:?}").contains(&k.to_hex()));
    }

    #[test]
    fn a_new_key_file_is_owner_only_and_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(MASTER_KEY_FILE);
        let k = MasterKey::generate();
        k.write_new_file(&path).unwrap();
        assert_eq!(MasterKey::read_file(&path).unwrap(), k);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        assert!(matches!(MasterKey::generate().write_new_file(&path), Err(MasterKeyError::Write { .. })));
        assert_eq!(MasterKey::read_file(&path).unwrap(), k, "the first key stays");
    }

    #[test]
    fn derived_keys_differ_per_use_and_per_master_key() {
        let (a, b) = (MasterKey::from_bytes([1; 32]), MasterKey::from_bytes([2; 32]));
        assert_ne!(a.derive(b"one"), a.derive(b"two"));
        assert_ne!(a.derive(b"one"), b.derive(b"one"));
        assert_ne!(a.id(), b.id());
        assert_eq!(a.id().len(), 16);
    }
}
