//! The server's certificate chain (`ServerHello.payload`): building one for the emulator
//! and verifying one the way whatsmeow does.
//!
//! ```text
//! root key ──signs──▶ intermediate.details {serial, issuerSerial = 0, key, notBefore, notAfter}
//! intermediate.key ──signs──▶ leaf.details {serial, issuerSerial = intermediate.serial, key = server static, …}
//! ```
//! Signatures are XEdDSA over the raw serialized `details` bytes.

use prost::Message as _;
use wa_crypto::{PrivateKey, PublicKey};
use wa_proto::CertChain;
use wa_proto::cert_chain::NoiseCertificate;
use wa_proto::cert_chain::noise_certificate::Details;

use crate::error::{CertRole, Error, HandshakeStage, Result};

/// WhatsApp's long-term root key ("WhatsAppLongTerm1"), Curve25519 (Montgomery u).
pub const WA_ROOT_KEY: PublicKey = PublicKey::from_array([
    0x14, 0x23, 0x75, 0x57, 0x4d, 0x0a, 0x58, 0x71, 0x66, 0xaa, 0xe7, 0x1e, 0xbe, 0x51, 0x64, 0x37, 0xc4,
    0xa2, 0x8b, 0x73, 0xe3, 0x69, 0x5c, 0x6c, 0xe1, 0xf7, 0xf9, 0x54, 0x5d, 0xa8, 0xee, 0x6b,
]);

/// The serial of the root, hence the `issuerSerial` every intermediate must carry.
pub const ROOT_SERIAL: u32 = 0;

/// The decoded `details` of one certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CertDetails {
    /// This certificate's serial.
    pub serial: u32,
    /// The serial of the certificate that signed it.
    pub issuer_serial: u32,
    /// The certified key.
    pub key: PublicKey,
    /// Start of validity, unix seconds.
    pub not_before: u64,
    /// End of validity (inclusive), unix seconds.
    pub not_after: u64,
}

impl CertDetails {
    /// The serialized `Details` protobuf: the bytes that are signed.
    pub fn encode(&self) -> Vec<u8> {
        Details {
            serial: Some(self.serial),
            issuer_serial: Some(self.issuer_serial),
            key: Some(self.key.as_bytes().to_vec()),
            not_before: Some(self.not_before),
            not_after: Some(self.not_after),
        }
        .encode_to_vec()
    }

    /// Parses serialized `Details`; absent integers read as 0 (proto2 defaults, as
    /// whatsmeow reads them), an absent or wrong-sized key is malformed.
    pub fn decode(bytes: &[u8], cert: CertRole) -> Result<Self> {
        let d = Details::decode(bytes)
            .map_err(|_| Error::MalformedCertificate { cert, reason: "details do not decode" })?;
        let key =
            d.key.as_deref().ok_or(Error::MalformedCertificate { cert, reason: "details have no key" })?;
        let key: [u8; 32] = key
            .try_into()
            .map_err(|_| Error::MalformedCertificate { cert, reason: "key is not 32 bytes" })?;
        Ok(Self {
            serial: d.serial.unwrap_or(0),
            issuer_serial: d.issuer_serial.unwrap_or(0),
            key: PublicKey::from_array(key),
            not_before: d.not_before.unwrap_or(0),
            not_after: d.not_after.unwrap_or(0),
        })
    }

    /// A `NoiseCertificate` of these details signed by `signer` (deterministic XEdDSA).
    pub fn sign(&self, signer: &PrivateKey) -> NoiseCertificate {
        let details = self.encode();
        let signature = signer.sign(&details);
        NoiseCertificate { details: Some(details), signature: Some(signature.to_vec()) }
    }

    fn check_validity(&self, cert: CertRole, now: u64) -> Result<()> {
        if now < self.not_before {
            return Err(Error::CertNotYetValid { cert, not_before: self.not_before, now });
        }
        if now > self.not_after {
            return Err(Error::CertExpired { cert, not_after: self.not_after, now });
        }
        Ok(())
    }
}

/// Builds a signed chain for a server (the emulator). Defaults follow WhatsApp's shape:
/// intermediate serial 1 issued by the root (serial 0), leaf serial 2 issued by it.
#[derive(Clone, Debug)]
pub struct CertChainBuilder {
    /// Details of the intermediate certificate (editable, e.g. to build bad chains in tests).
    pub intermediate: CertDetails,
    /// Details of the leaf certificate.
    pub leaf: CertDetails,
}

impl CertChainBuilder {
    /// A chain certifying `intermediate_key` and `server_static`, both valid over
    /// `[not_before, not_after]`.
    pub fn new(
        intermediate_key: PublicKey,
        server_static: PublicKey,
        not_before: u64,
        not_after: u64,
    ) -> Self {
        Self {
            intermediate: CertDetails {
                serial: 1,
                issuer_serial: ROOT_SERIAL,
                key: intermediate_key,
                not_before,
                not_after,
            },
            leaf: CertDetails { serial: 2, issuer_serial: 1, key: server_static, not_before, not_after },
        }
    }

    /// The serialized `CertChain{leaf, intermediate}`, signed by `root` and `intermediate`.
    pub fn sign(&self, root: &PrivateKey, intermediate: &PrivateKey) -> Vec<u8> {
        CertChain {
            leaf: Some(self.leaf.sign(intermediate)),
            intermediate: Some(self.intermediate.sign(root)),
        }
        .encode_to_vec()
    }
}

/// A chain that passed [`CertVerifier::verify`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VerifiedChain {
    /// The intermediate's details.
    pub intermediate: CertDetails,
    /// The leaf's details (its key is the server's static key).
    pub leaf: CertDetails,
}

/// Verifies server chains against one trusted root key. There is deliberately no way
/// to skip verification: tests pass their own root with [`CertVerifier::new`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertVerifier {
    root: PublicKey,
}

impl Default for CertVerifier {
    /// Trusts WhatsApp's real root key.
    fn default() -> Self {
        Self::new(WA_ROOT_KEY)
    }
}

impl CertVerifier {
    /// Trusts `root` only.
    pub const fn new(root: PublicKey) -> Self {
        Self { root }
    }

    /// The trusted root key.
    pub fn root(&self) -> &PublicKey {
        &self.root
    }

    /// Checks a serialized `CertChain` as whatsmeow does: both signatures 64 bytes; the
    /// intermediate signed by the root and issued by serial 0; the leaf signed by the
    /// intermediate key and issued by its serial; the leaf key equals the server's static
    /// key; `now` (unix seconds) within both validity windows.
    pub fn verify(&self, chain: &[u8], server_static: &PublicKey, now: u64) -> Result<VerifiedChain> {
        let chain = CertChain::decode(chain).map_err(|source| Error::Protobuf {
            stage: HandshakeStage::ServerHello,
            what: "CertChain",
            source,
        })?;
        let (int_details, int_sig) = parts(chain.intermediate.as_ref(), CertRole::Intermediate)?;
        let (leaf_details, leaf_sig) = parts(chain.leaf.as_ref(), CertRole::Leaf)?;

        if !self.root.verify(int_details, int_sig) {
            return Err(Error::UntrustedRoot);
        }
        let intermediate = CertDetails::decode(int_details, CertRole::Intermediate)?;
        if intermediate.issuer_serial != ROOT_SERIAL {
            return Err(Error::IssuerSerialMismatch {
                cert: CertRole::Intermediate,
                expected: ROOT_SERIAL,
                got: intermediate.issuer_serial,
            });
        }
        if !intermediate.key.verify(leaf_details, leaf_sig) {
            return Err(Error::BadSignature { cert: CertRole::Leaf });
        }
        let leaf = CertDetails::decode(leaf_details, CertRole::Leaf)?;
        if leaf.issuer_serial != intermediate.serial {
            return Err(Error::IssuerSerialMismatch {
                cert: CertRole::Leaf,
                expected: intermediate.serial,
                got: leaf.issuer_serial,
            });
        }
        if !wa_crypto::ct_eq(leaf.key.as_bytes(), server_static.as_bytes()) {
            return Err(Error::LeafKeyMismatch);
        }
        intermediate.check_validity(CertRole::Intermediate, now)?;
        leaf.check_validity(CertRole::Leaf, now)?;
        Ok(VerifiedChain { intermediate, leaf })
    }
}

fn parts(cert: Option<&NoiseCertificate>, role: CertRole) -> Result<(&[u8], &[u8; 64])> {
    let cert = cert.ok_or(Error::MalformedCertificate { cert: role, reason: "certificate missing" })?;
    let details =
        cert.details.as_deref().ok_or(Error::MalformedCertificate { cert: role, reason: "no details" })?;
    let sig = cert
        .signature
        .as_deref()
        .ok_or(Error::MalformedCertificate { cert: role, reason: "no signature" })?;
    let sig: &[u8; 64] = sig
        .try_into()
        .map_err(|_| Error::MalformedCertificate { cert: role, reason: "signature is not 64 bytes" })?;
    Ok((details, sig))
}
