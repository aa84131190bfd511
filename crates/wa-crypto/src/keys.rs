//! Curve25519 keys: X25519 agreement and XEdDSA signatures.

use core::fmt;

use curve25519_dalek::constants::ED25519_BASEPOINT_TABLE;
use curve25519_dalek::edwards::EdwardsPoint;
use curve25519_dalek::montgomery::MontgomeryPoint;
use curve25519_dalek::scalar::Scalar;
use rand_core::CryptoRng;
use sha2::{Digest, Sha512};
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::{CryptoError, ct_eq};

/// The type byte Signal and WhatsApp prefix to serialized Curve25519 public keys.
pub const DJB_TYPE: u8 = 0x05;

/// A Curve25519 public key (Montgomery u-coordinate, 32 bytes).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PublicKey([u8; 32]);

impl PublicKey {
    /// Accepts the 32 raw bytes, or 33 bytes beginning with the DJB type byte `0x05`.
    pub fn from_bytes(b: &[u8]) -> Result<Self, CryptoError> {
        match b.len() {
            32 => Ok(Self(arr32(b))),
            33 => Self::from_djb(b),
            actual => Err(CryptoError::InvalidKeyLength { expected: 32, actual }),
        }
    }

    /// Accepts exactly 33 bytes: `0x05 || key`, as inside Signal messages.
    pub fn from_djb(b: &[u8]) -> Result<Self, CryptoError> {
        if b.len() != 33 {
            return Err(CryptoError::InvalidKeyLength { expected: 33, actual: b.len() });
        }
        if b[0] != DJB_TYPE {
            return Err(CryptoError::InvalidKeyType(b[0]));
        }
        Ok(Self(arr32(&b[1..])))
    }

    /// Wraps 32 raw bytes.
    pub const fn from_array(b: [u8; 32]) -> Self {
        Self(b)
    }

    /// The 32 raw bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// `0x05 || key`, the 33-byte form used inside Signal messages.
    pub fn to_djb(&self) -> [u8; 33] {
        let mut out = [0u8; 33];
        out[0] = DJB_TYPE;
        out[1..].copy_from_slice(&self.0);
        out
    }

    /// Verifies an XEdDSA signature made by the matching private key.
    ///
    /// The Edwards form of the key is derived from the Montgomery u-coordinate; the sign of
    /// its x-coordinate travels in the top bit of the signature's last byte (as libsignal and
    /// curve25519-js write it). `S` must be a canonical scalar.
    pub fn verify(&self, message: &[u8], signature: &[u8; 64]) -> bool {
        VerifyingKey::new(self).is_some_and(|v| v.verify(message, signature))
    }
}

/// An XEdDSA public key prepared for verifying many signatures: the Edwards form is derived
/// once instead of on every [`PublicKey::verify`] (a square root and two inversions saved).
#[derive(Clone, Copy, Debug)]
pub struct VerifyingKey {
    /// The Edwards point with the x sign bit clear; the other sign is its negation.
    point: EdwardsPoint,
    /// Its compressed form (sign bit clear).
    compressed: [u8; 32],
}

impl VerifyingKey {
    /// Prepares `key`; `None` if it has no Edwards form (such a key verifies nothing).
    pub fn new(key: &PublicKey) -> Option<Self> {
        let point = MontgomeryPoint(key.0).to_edwards(0)?;
        Some(Self { point, compressed: point.compress().to_bytes() })
    }

    /// Verifies an XEdDSA signature, exactly as [`PublicKey::verify`].
    pub fn verify(&self, message: &[u8], signature: &[u8; 64]) -> bool {
        let sign_bit = signature[63] >> 7;
        // The sign of the Edwards x-coordinate travels in the signature's top bit.
        let (a_point, mut a_bytes) = (self.point, self.compressed);
        let a_point = if sign_bit == 1 {
            a_bytes[31] |= 0x80;
            -a_point
        } else {
            a_point
        };
        let mut s_bytes = [0u8; 32];
        s_bytes.copy_from_slice(&signature[32..]);
        s_bytes[31] &= 0x7f;
        let Some(s) = Option::<Scalar>::from(Scalar::from_canonical_bytes(s_bytes)) else {
            return false;
        };
        let r_bytes = &signature[..32];
        let k = Scalar::from_hash(
            Sha512::new().chain_update(r_bytes).chain_update(a_bytes).chain_update(message),
        );
        // R' = s·B − k·A must equal R.
        let r_check = EdwardsPoint::vartime_double_scalar_mul_basepoint(&k, &(-a_point), &s);
        ct_eq(r_check.compress().as_bytes(), r_bytes)
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey(")?;
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        write!(f, ")")
    }
}

impl AsRef<[u8]> for PublicKey {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// A Curve25519 private key. Stored as given; clamped whenever it is used.
/// Zeroized on drop; `Debug` never prints it.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct PrivateKey([u8; 32]);

impl PrivateKey {
    /// Wraps 32 bytes.
    pub const fn from_bytes(b: [u8; 32]) -> Self {
        Self(b)
    }

    /// Accepts exactly 32 bytes.
    pub fn from_slice(b: &[u8]) -> Result<Self, CryptoError> {
        if b.len() != 32 {
            return Err(CryptoError::InvalidKeyLength { expected: 32, actual: b.len() });
        }
        Ok(Self(arr32(b)))
    }

    /// The stored bytes (as given, not clamped).
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The matching public key, `X25519(clamp(k), 9)`.
    pub fn public_key(&self) -> PublicKey {
        PublicKey(MontgomeryPoint::mul_base_clamped(self.0).to_bytes())
    }

    /// X25519 agreement. Refuses the all-zero result that low-order points produce.
    ///
    /// Keys on the curve are multiplied in Edwards form (faster than the Montgomery ladder,
    /// especially with the AVX2 backend); keys on the twist, which have no Edwards form, take
    /// the ladder. Both give the same u-coordinate, as the tests check.
    pub fn agree(&self, their: &PublicKey) -> Result<[u8; 32], CryptoError> {
        let u = MontgomeryPoint(their.0);
        let shared = match u.to_edwards(0) {
            Some(p) => p.mul_clamped(self.0).to_montgomery().to_bytes(),
            None => u.mul_clamped(self.0).to_bytes(),
        };
        if ct_eq(&shared, &[0u8; 32]) {
            return Err(CryptoError::WeakKey);
        }
        Ok(shared)
    }

    /// XEdDSA signature with a deterministic nonce, byte-identical to curve25519-js
    /// `sign()` without `opt_random` (what Baileys and libsignal-node produce):
    /// `r = SHA512(a || M)` with `a` the clamped key, and no negation of `a`: the sign of
    /// the Edwards public key is carried in bit 255 of the signature instead.
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.signing_key().sign(message)
    }

    /// This key prepared for signing many messages (its Edwards public key computed once).
    pub fn signing_key(&self) -> SigningKey {
        let mut a_bytes = clamp(self.0);
        let a = Scalar::from_bytes_mod_order(a_bytes);
        let a_pub = (&a * ED25519_BASEPOINT_TABLE).compress().to_bytes();
        a_bytes.zeroize();
        SigningKey { private: self.clone(), a_pub }
    }

    /// XEdDSA signature with 64 bytes of fresh randomness mixed into the nonce, as
    /// libsignal's C implementation does: `r = SHA512(0xFE || 0xFF×31 || a || M || Z)`.
    pub fn sign_with_nonce(&self, message: &[u8], random: &[u8; 64]) -> [u8; 64] {
        let mut a_bytes = clamp(self.0);
        let mut prefix = [0xffu8; 32];
        prefix[0] = 0xfe;
        let r = Scalar::from_hash(
            Sha512::new()
                .chain_update(prefix)
                .chain_update(a_bytes)
                .chain_update(message)
                .chain_update(random),
        );
        a_bytes.zeroize();
        self.signing_key().sign_with_r(r, message)
    }
}

/// A private key prepared for XEdDSA signing: its Edwards public key is computed once, not on
/// every signature. Signatures are identical to [`PrivateKey::sign`]'s.
#[derive(Clone)]
pub struct SigningKey {
    private: PrivateKey,
    a_pub: [u8; 32],
}

impl SigningKey {
    /// Deterministic XEdDSA, byte-identical to [`PrivateKey::sign`].
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        let mut a_bytes = clamp(self.private.0);
        let r = Scalar::from_hash(Sha512::new().chain_update(a_bytes).chain_update(message));
        a_bytes.zeroize();
        self.sign_with_r(r, message)
    }

    fn sign_with_r(&self, r: Scalar, message: &[u8]) -> [u8; 64] {
        let mut a_bytes = clamp(self.private.0);
        let a = Scalar::from_bytes_mod_order(a_bytes);
        a_bytes.zeroize();
        let r_pub = (&r * ED25519_BASEPOINT_TABLE).compress();
        let k = Scalar::from_hash(
            Sha512::new().chain_update(r_pub.as_bytes()).chain_update(self.a_pub).chain_update(message),
        );
        let s = r + k * a;
        let mut sig = [0u8; 64];
        sig[..32].copy_from_slice(r_pub.as_bytes());
        sig[32..].copy_from_slice(s.as_bytes());
        sig[63] |= self.a_pub[31] & 0x80;
        sig
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningKey(<redacted>)")
    }
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PrivateKey(<redacted>)")
    }
}

/// A private key with its public key.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyPair {
    /// The secret half.
    pub private: PrivateKey,
    /// The public half, derived from `private`.
    pub public: PublicKey,
}

impl KeyPair {
    /// Draws a fresh key pair. The private key is stored clamped, as libsignal does.
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let mut b = [0u8; 32];
        rng.fill_bytes(&mut b);
        let kp = Self::from_private(PrivateKey(clamp(b)));
        b.zeroize();
        kp
    }

    /// Derives the public half from a private key.
    pub fn from_private(private: PrivateKey) -> Self {
        let public = private.public_key();
        Self { private, public }
    }
}

impl fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyPair").field("public", &self.public).finish_non_exhaustive()
    }
}

fn clamp(mut k: [u8; 32]) -> [u8; 32] {
    k[0] &= 248;
    k[31] &= 127;
    k[31] |= 64;
    k
}

fn arr32(b: &[u8]) -> [u8; 32] {
    let mut a = [0u8; 32];
    a.copy_from_slice(b);
    a
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn h32(s: &str) -> [u8; 32] {
        hex::decode(s).unwrap().try_into().unwrap()
    }

    #[test]
    fn rfc7748_x25519_vector() {
        let alice =
            PrivateKey::from_bytes(h32("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a"));
        let bob =
            PrivateKey::from_bytes(h32("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb"));
        assert_eq!(
            hex::encode(alice.public_key().as_bytes()),
            "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"
        );
        let shared = alice.agree(&bob.public_key()).unwrap();
        assert_eq!(hex::encode(shared), "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742");
        assert_eq!(shared, bob.agree(&alice.public_key()).unwrap());
    }

    fn ladder(k: &PrivateKey, u: [u8; 32]) -> [u8; 32] {
        MontgomeryPoint(u).mul_clamped(k.0).to_bytes()
    }

    #[test]
    fn edwards_agreement_equals_the_ladder_on_special_points() {
        let k = PrivateKey::from_bytes([0x5a; 32]);
        let mut specials = vec![[0u8; 32], [0xff; 32], [0x7f; 32]];
        let mut one = [0u8; 32];
        one[0] = 1;
        specials.push(one);
        // p - 1 (u = -1 has no Edwards form), p, p + 1 (non-canonical encodings).
        for low in [0xec, 0xed, 0xee] {
            let mut v = [0xffu8; 32];
            v[0] = low;
            v[31] = 0x7f;
            specials.push(v);
        }
        for u in specials {
            let fast = k.agree(&PublicKey::from_array(u));
            let slow = ladder(&k, u);
            match fast {
                Ok(x) => assert_eq!(x, slow, "u = {}", hex::encode(u)),
                Err(_) => assert_eq!(slow, [0u8; 32], "u = {}", hex::encode(u)),
            }
        }
    }

    proptest! {
        #[test]
        fn edwards_agreement_equals_the_ladder(k in any::<[u8; 32]>(), u in any::<[u8; 32]>()) {
            // Random u: about half on the curve (Edwards path), half on the twist (ladder).
            let key = PrivateKey::from_bytes(k);
            let slow = ladder(&key, u);
            match key.agree(&PublicKey::from_array(u)) {
                Ok(x) => prop_assert_eq!(x, slow),
                Err(_) => prop_assert_eq!(slow, [0u8; 32]),
            }
            // And on genuine public keys.
            let their = PrivateKey::from_bytes(u).public_key();
            prop_assert_eq!(key.agree(&their).unwrap(), ladder(&key, *their.as_bytes()));
        }
    }

    #[test]
    fn low_order_point_is_refused() {
        let k = PrivateKey::from_bytes([7; 32]);
        assert_eq!(k.agree(&PublicKey::from_array([0; 32])), Err(CryptoError::WeakKey));
    }

    #[test]
    fn djb_prefix() {
        let pk = PrivateKey::from_bytes([3; 32]).public_key();
        let djb = pk.to_djb();
        assert_eq!(djb[0], 5);
        assert_eq!(PublicKey::from_bytes(&djb).unwrap(), pk);
        assert_eq!(PublicKey::from_djb(&djb).unwrap(), pk);
        let mut bad = djb;
        bad[0] = 6;
        assert_eq!(PublicKey::from_bytes(&bad), Err(CryptoError::InvalidKeyType(6)));
        assert!(PublicKey::from_bytes(&djb[..20]).is_err());
    }

    /// Signatures recorded by Baileys (curve25519-js) in the Signal vectors: our
    /// deterministic signer must reproduce them byte for byte.
    #[test]
    fn reproduces_curve25519_js_signatures_from_vectors() {
        let dir = std::env::var("WA_VECTORS_DIR")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|_| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/vectors"));
        let text = std::fs::read_to_string(dir.join("signal_session.json")).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let mut checked = 0;
        for who in ["alice", "bob"] {
            let p = &v[who];
            let (ik, spk) = (&p["identity_key"], &p["signed_prekey"]);
            let (Some(priv_hex), Some(ik_pub), Some(spk_pub), Some(sig)) = (
                ik["priv_hex"].as_str(),
                ik["pub_hex"].as_str(),
                spk["pub_hex"].as_str(),
                spk["signature_hex"].as_str(),
            ) else {
                continue;
            };
            assert_eq!(hex::encode(PrivateKey::from_bytes(h32(priv_hex)).public_key().as_bytes()), ik_pub);
            let key = PrivateKey::from_bytes(h32(priv_hex));
            let spk_pub = PublicKey::from_bytes(&hex::decode(spk_pub).unwrap()).unwrap();
            let got = key.sign(&spk_pub.to_djb());
            assert_eq!(hex::encode(got), sig, "{who} signed prekey signature");
            assert!(key.public_key().verify(&spk_pub.to_djb(), &got));
            checked += 1;
        }
        assert!(checked > 0, "no signature found in the vectors; the file layout changed");
    }

    proptest! {
        #[test]
        fn sign_verify_roundtrip(seed in any::<[u8; 32]>(), msg in proptest::collection::vec(any::<u8>(), 0..200), rnd in any::<[u8; 32]>()) {
            let key = PrivateKey::from_bytes(seed);
            let pk = key.public_key();
            let sig = key.sign(&msg);
            prop_assert!(pk.verify(&msg, &sig));
            let mut random = [0u8; 64];
            random[..32].copy_from_slice(&rnd);
            let sig2 = key.sign_with_nonce(&msg, &random);
            prop_assert!(pk.verify(&msg, &sig2));
            // any flipped bit breaks it
            let mut bad = sig;
            bad[(rnd[0] as usize) % 64] ^= 1 << (rnd[1] % 8);
            prop_assert!(!pk.verify(&msg, &bad));
            let mut other = msg.clone();
            other.push(1);
            prop_assert!(!pk.verify(&other, &sig));
        }
    }
}
