use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256, Sha512};
use subtle::ConstantTimeEq;

use crate::CryptoError;

type HmacSha256 = Hmac<Sha256>;

/// HMAC-SHA256 over the concatenation of `parts` (no copy is made to join them).
pub fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <HmacSha256 as KeyInit>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

/// An HMAC-SHA256 key with its schedule (the hashed inner and outer pad blocks) computed
/// once: each MAC under it then costs two SHA-256 compressions fewer than
/// [`hmac_sha256`]. For hash chains that derive several values from one key.
#[derive(Clone)]
pub struct HmacSha256Key(HmacSha256);

impl HmacSha256Key {
    /// Prepares `key` (any length).
    pub fn new(key: &[u8]) -> Self {
        Self(
            <HmacSha256 as KeyInit>::new_from_slice(key)
                .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length")),
        )
    }

    /// HMAC-SHA256 over the concatenation of `parts`, equal to [`hmac_sha256`] with this key.
    pub fn mac(&self, parts: &[&[u8]]) -> [u8; 32] {
        let mut mac = self.0.clone();
        for p in parts {
            mac.update(p);
        }
        mac.finalize().into_bytes().into()
    }
}

/// The HMAC state keyed with HKDF's default salt (HashLen zero bytes), shared by every
/// extract without a salt instead of hashing the two pad blocks each time.
fn default_salt_hmac() -> &'static HmacSha256 {
    static STATE: std::sync::OnceLock<HmacSha256> = std::sync::OnceLock::new();
    STATE.get_or_init(|| {
        <HmacSha256 as KeyInit>::new_from_slice(&[0u8; 32])
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"))
    })
}

/// HKDF-Extract (RFC 5869) into a ready-to-expand HKDF.
fn hkdf_extract(ikm: &[u8], salt: &[u8]) -> hkdf::Hkdf<Sha256> {
    let prk: [u8; 32] = if salt.is_empty() {
        let mut mac = default_salt_hmac().clone();
        mac.update(ikm);
        mac.finalize().into_bytes().into()
    } else {
        hmac_sha256(salt, &[ikm])
    };
    hkdf::Hkdf::<Sha256>::from_prk(&prk).unwrap_or_else(|_| unreachable!("a 32-byte PRK is valid"))
}

/// SHA-256 over the concatenation of `parts`.
pub fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// MD5 over the concatenation of `parts`. Not for security: WhatsApp's `buildHash` in the
/// registration payload is MD5 of the version string.
pub fn md5(parts: &[&[u8]]) -> [u8; 16] {
    let mut h = md5::Md5::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// SHA-512 over the concatenation of `parts`.
pub fn sha512(parts: &[&[u8]]) -> [u8; 64] {
    let mut h = Sha512::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// HKDF-SHA256 (RFC 5869) filling `out`. An empty `salt` means the RFC's default (zeros).
///
/// Fails only if `out` is longer than 255 × 32 bytes.
pub fn hkdf_sha256(ikm: &[u8], salt: &[u8], info: &[u8], out: &mut [u8]) -> Result<(), CryptoError> {
    hkdf_extract(ikm, salt)
        .expand(info, out)
        .map_err(|_| CryptoError::InvalidLength("HKDF output (max 8160 bytes)"))
}

/// HKDF-SHA256 into a fixed-size array. `N` must be at most 8160; checked at compile time.
pub fn hkdf_sha256_array<const N: usize>(ikm: &[u8], salt: &[u8], info: &[u8]) -> [u8; N] {
    const { assert!(N <= 255 * 32, "HKDF-SHA256 output is at most 8160 bytes") };
    let mut out = [0u8; N];
    // Cannot fail: N is checked above.
    if hkdf_extract(ikm, salt).expand(info, &mut out).is_err() {
        unreachable!("HKDF length checked at compile time")
    }
    out
}

/// Compares two byte strings in time that depends only on their lengths.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hkdf_rfc5869_case_1() {
        let ikm = [0x0b; 22];
        let salt = hex::decode("000102030405060708090a0b0c").unwrap();
        let info = hex::decode("f0f1f2f3f4f5f6f7f8f9").unwrap();
        let okm: [u8; 42] = hkdf_sha256_array(&ikm, &salt, &info);
        assert_eq!(
            hex::encode(okm),
            "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"
        );
    }

    #[test]
    fn hmac_parts_equal_joined() {
        let a = hmac_sha256(b"key", &[b"hello ", b"world"]);
        let b = hmac_sha256(b"key", &[b"hello world"]);
        assert_eq!(a, b);
        // RFC 4231 test case 2
        assert_eq!(
            hex::encode(hmac_sha256(b"Jefe", &[b"what do ya want for nothing?"])),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn hkdf_rfc5869_case_3_default_salt() {
        // RFC 5869 test case 3: no salt, no info; an explicit all-zero salt is the same.
        let ikm = [0x0b; 22];
        let expect = "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8";
        let okm: [u8; 42] = hkdf_sha256_array(&ikm, &[], &[]);
        assert_eq!(hex::encode(okm), expect);
        let okm: [u8; 42] = hkdf_sha256_array(&ikm, &[0u8; 32], &[]);
        assert_eq!(hex::encode(okm), expect);
        let mut out = [0u8; 42];
        hkdf_sha256(&ikm, &[], &[], &mut out).unwrap();
        assert_eq!(hex::encode(out), expect);
    }

    #[test]
    fn prepared_hmac_key_equals_one_shot() {
        for key in [&b""[..], b"Jefe", &[0xaa; 131]] {
            let k = HmacSha256Key::new(key);
            for msg in [&b""[..], b"what do ya want for nothing?", &[7u8; 200]] {
                assert_eq!(k.mac(&[msg]), hmac_sha256(key, &[msg]));
                assert_eq!(k.mac(&[&msg[..msg.len() / 2], &msg[msg.len() / 2..]]), hmac_sha256(key, &[msg]));
            }
        }
    }

    #[test]
    fn hkdf_too_long_is_an_error() {
        let mut out = vec![0u8; 8161];
        assert!(hkdf_sha256(b"k", b"", b"", &mut out).is_err());
    }

    #[test]
    fn ct_eq_works() {
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
    }
}

#[cfg(test)]
mod md5_tests {
    #[test]
    fn md5_of_build_version() {
        // RFC 1321 test suite value, and the buildHash Baileys sent for 2.3000.1043857760
        // (tests/vectors/noise_handshake.json, base64 9vZcBgehzf/YdSsFH8le3w==).
        assert_eq!(super::md5(&[b"abc"]).to_vec(), hex::decode("900150983cd24fb0d6963f7d28e17f72").unwrap());
        assert_eq!(
            super::md5(&[b"2.3000.", b"1043857760"]).to_vec(),
            hex::decode("f6f65c0607a1cdffd8752b051fc95edf").unwrap()
        );
    }
}
