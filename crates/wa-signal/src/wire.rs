//! Signal v3 wire messages: parsing (borrowing the input, typed keys) and sealing.
//!
//! ```text
//! SignalMessage              0x33 ‖ proto{ratchetKey, counter, previousCounter, ciphertext} ‖ mac[8]
//! PreKeySignalMessage        0x33 ‖ proto{preKeyId, baseKey, identityKey, message, registrationId, signedPreKeyId}
//! SenderKeyMessage           0x33 ‖ proto{id, iteration, ciphertext} ‖ xeddsa[64]
//! SenderKeyDistributionMsg   0x33 ‖ proto{id, iteration, chainKey, signingKey}
//! ```

use prost::Message as _;
use wa_crypto::{PublicKey, ct_eq, hmac_sha256};

use crate::error::SignalError;

/// The only version byte we speak: (3 << 4) | 3.
pub const VERSION_BYTE: u8 = 0x33;
/// Truncated MAC length of a SignalMessage.
pub const MAC_LEN: usize = 8;
/// XEdDSA signature length of a SenderKeyMessage.
pub const SIGNATURE_LEN: usize = 64;

fn check_version(what: &'static str, bytes: &[u8], trailer: usize) -> Result<(), SignalError> {
    if bytes.len() < 1 + trailer {
        return Err(SignalError::TooShort { what, len: bytes.len() });
    }
    if bytes[0] != VERSION_BYTE {
        return Err(SignalError::UnsupportedVersion(bytes[0]));
    }
    Ok(())
}

fn parse_key(what: &'static str, field: &'static str, b: Option<Vec<u8>>) -> Result<PublicKey, SignalError> {
    let b = b.ok_or(SignalError::MissingField { what, field })?;
    PublicKey::from_bytes(&b).map_err(SignalError::key(what))
}

/// A parsed SignalMessage ("msg"), borrowing the bytes it came from.
#[derive(Debug, Clone)]
pub struct SignalMessage<'a> {
    raw: &'a [u8],
    /// The sender's current ratchet key.
    pub ratchet_key: PublicKey,
    /// Position in the sender's chain.
    pub counter: u32,
    /// Last position in the sender's previous chain.
    pub previous_counter: u32,
    /// AES-256-CBC body.
    pub ciphertext: Vec<u8>,
}

impl<'a> SignalMessage<'a> {
    /// Parses `0x33 ‖ proto ‖ mac8`.
    pub fn parse(raw: &'a [u8]) -> Result<Self, SignalError> {
        const WHAT: &str = "SignalMessage";
        check_version(WHAT, raw, MAC_LEN)?;
        let proto = wa_proto::SignalMessage::decode(&raw[1..raw.len() - MAC_LEN])
            .map_err(|e| SignalError::malformed(WHAT, e))?;
        Ok(SignalMessage {
            raw,
            ratchet_key: parse_key(WHAT, "ratchetKey", proto.ratchet_key)?,
            counter: proto.counter.unwrap_or(0),
            previous_counter: proto.previous_counter.unwrap_or(0),
            ciphertext: proto
                .ciphertext
                .ok_or(SignalError::MissingField { what: WHAT, field: "ciphertext" })?,
        })
    }

    /// The bytes this was parsed from.
    pub fn serialized(&self) -> &'a [u8] {
        self.raw
    }

    /// Checks the truncated MAC: HMAC(macKey, sender ‖ receiver ‖ 0x33 ‖ proto)[..8].
    pub(crate) fn verify_mac(&self, mac_key: &[u8; 32], sender: &PublicKey, receiver: &PublicKey) -> bool {
        let (body, mac) = self.raw.split_at(self.raw.len() - MAC_LEN);
        let full = hmac_sha256(mac_key, &[&sender.to_djb(), &receiver.to_djb(), body]);
        ct_eq(&full[..MAC_LEN], mac)
    }
}

/// Serializes and MACs a SignalMessage into `out` (appending).
pub(crate) fn seal_signal_message(
    out: &mut Vec<u8>,
    ratchet_key: &PublicKey,
    counter: u32,
    previous_counter: u32,
    ciphertext: Vec<u8>,
    mac_key: &[u8; 32],
    (sender, receiver): (&PublicKey, &PublicKey),
) {
    let proto = wa_proto::SignalMessage {
        ratchet_key: Some(ratchet_key.to_djb().to_vec()),
        counter: Some(counter),
        previous_counter: Some(previous_counter),
        ciphertext: Some(ciphertext),
    };
    let start = out.len();
    out.reserve(1 + proto.encoded_len() + MAC_LEN);
    out.push(VERSION_BYTE);
    proto.encode_raw(out);
    let mac = hmac_sha256(mac_key, &[&sender.to_djb(), &receiver.to_djb(), &out[start..]]);
    out.extend_from_slice(&mac[..MAC_LEN]);
}

/// A parsed PreKeySignalMessage ("pkmsg").
#[derive(Debug, Clone)]
pub struct PreKeySignalMessage<'a> {
    raw: &'a [u8],
    /// Sender's registration id.
    pub registration_id: u32,
    /// One-time prekey used, if any.
    pub pre_key_id: Option<u32>,
    /// Signed prekey used.
    pub signed_pre_key_id: u32,
    /// Sender's X3DH base key.
    pub base_key: PublicKey,
    /// Sender's identity key.
    pub identity_key: PublicKey,
    /// The inner SignalMessage bytes.
    message_bytes: Vec<u8>,
}

impl<'a> PreKeySignalMessage<'a> {
    /// Parses `0x33 ‖ proto`; the inner SignalMessage is parsed by [`Self::message`].
    pub fn parse(raw: &'a [u8]) -> Result<Self, SignalError> {
        const WHAT: &str = "PreKeySignalMessage";
        check_version(WHAT, raw, 0)?;
        let proto =
            wa_proto::PreKeySignalMessage::decode(&raw[1..]).map_err(|e| SignalError::malformed(WHAT, e))?;
        Ok(PreKeySignalMessage {
            raw,
            registration_id: proto.registration_id.unwrap_or(0),
            pre_key_id: proto.pre_key_id,
            signed_pre_key_id: proto
                .signed_pre_key_id
                .ok_or(SignalError::MissingField { what: WHAT, field: "signedPreKeyId" })?,
            base_key: parse_key(WHAT, "baseKey", proto.base_key)?,
            identity_key: parse_key(WHAT, "identityKey", proto.identity_key)?,
            message_bytes: proto.message.ok_or(SignalError::MissingField { what: WHAT, field: "message" })?,
        })
    }

    /// The bytes this was parsed from.
    pub fn serialized(&self) -> &'a [u8] {
        self.raw
    }

    /// The inner SignalMessage.
    pub fn message(&self) -> Result<SignalMessage<'_>, SignalError> {
        SignalMessage::parse(&self.message_bytes)
    }
}

/// Wraps a sealed SignalMessage into a PreKeySignalMessage.
pub(crate) fn seal_pre_key_message(
    registration_id: u32,
    pre_key_id: Option<u32>,
    signed_pre_key_id: u32,
    base_key: &PublicKey,
    identity_key: &PublicKey,
    message: Vec<u8>,
) -> Vec<u8> {
    let proto = wa_proto::PreKeySignalMessage {
        registration_id: Some(registration_id),
        pre_key_id,
        signed_pre_key_id: Some(signed_pre_key_id),
        base_key: Some(base_key.to_djb().to_vec()),
        identity_key: Some(identity_key.to_djb().to_vec()),
        message: Some(message),
    };
    let mut out = Vec::with_capacity(1 + proto.encoded_len());
    out.push(VERSION_BYTE);
    proto.encode_raw(&mut out);
    out
}

/// A parsed SenderKeyMessage ("skmsg").
#[derive(Debug, Clone)]
pub struct SenderKeyMessage<'a> {
    raw: &'a [u8],
    /// Sender key id.
    pub key_id: u32,
    /// Chain iteration.
    pub iteration: u32,
    /// AES-256-CBC body.
    pub ciphertext: Vec<u8>,
}

impl<'a> SenderKeyMessage<'a> {
    /// Parses `0x33 ‖ proto ‖ signature64`.
    pub fn parse(raw: &'a [u8]) -> Result<Self, SignalError> {
        const WHAT: &str = "SenderKeyMessage";
        check_version(WHAT, raw, SIGNATURE_LEN)?;
        let proto = wa_proto::SenderKeyMessage::decode(&raw[1..raw.len() - SIGNATURE_LEN])
            .map_err(|e| SignalError::malformed(WHAT, e))?;
        Ok(SenderKeyMessage {
            raw,
            key_id: proto.id.ok_or(SignalError::MissingField { what: WHAT, field: "id" })?,
            iteration: proto.iteration.unwrap_or(0),
            ciphertext: proto
                .ciphertext
                .ok_or(SignalError::MissingField { what: WHAT, field: "ciphertext" })?,
        })
    }

    /// Checks the XEdDSA signature over everything before it.
    pub(crate) fn verify_signature(&self, signing_key: &wa_crypto::VerifyingKey) -> bool {
        let (body, sig) = self.raw.split_at(self.raw.len() - SIGNATURE_LEN);
        let mut s = [0u8; SIGNATURE_LEN];
        s.copy_from_slice(sig);
        signing_key.verify(body, &s)
    }
}

/// A parsed SenderKeyDistributionMessage (SKDM).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SenderKeyDistributionMessage {
    /// Sender key id.
    pub key_id: u32,
    /// Chain iteration of `chain_key`.
    pub iteration: u32,
    /// Chain key at `iteration`.
    pub chain_key: [u8; 32],
    /// The sender's signing public key.
    pub signing_key: PublicKey,
}

impl SenderKeyDistributionMessage {
    /// Parses `0x33 ‖ proto`.
    pub fn parse(raw: &[u8]) -> Result<Self, SignalError> {
        const WHAT: &str = "SenderKeyDistributionMessage";
        check_version(WHAT, raw, 0)?;
        let proto = wa_proto::SenderKeyDistributionMessage::decode(&raw[1..])
            .map_err(|e| SignalError::malformed(WHAT, e))?;
        let ck = proto.chain_key.ok_or(SignalError::MissingField { what: WHAT, field: "chainKey" })?;
        let chain_key: [u8; 32] = ck.as_slice().try_into().map_err(|_| {
            SignalError::malformed(WHAT, format_args!("chainKey is {} bytes, expected 32", ck.len()))
        })?;
        Ok(SenderKeyDistributionMessage {
            key_id: proto.id.ok_or(SignalError::MissingField { what: WHAT, field: "id" })?,
            iteration: proto.iteration.unwrap_or(0),
            chain_key,
            signing_key: parse_key(WHAT, "signingKey", proto.signing_key)?,
        })
    }

    /// Serializes to `0x33 ‖ proto`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let proto = wa_proto::SenderKeyDistributionMessage {
            id: Some(self.key_id),
            iteration: Some(self.iteration),
            chain_key: Some(self.chain_key.to_vec()),
            signing_key: Some(self.signing_key.to_djb().to_vec()),
        };
        let mut out = Vec::with_capacity(1 + proto.encoded_len());
        out.push(VERSION_BYTE);
        proto.encode_raw(&mut out);
        out
    }
}

/// Serializes and signs a SenderKeyMessage: `0x33 ‖ proto{id, iteration, ciphertext} ‖ xeddsa`,
/// encrypting `plaintext` straight into the one output buffer. The protobuf is written by hand
/// (fields 1, 2, 3 in order, each present), byte-identical to prost's encoding (tested).
pub(crate) fn seal_sender_key_message(
    key_id: u32,
    iteration: u32,
    key: &[u8; 32],
    iv: &[u8; 16],
    plaintext: &[u8],
    signing_key: &wa_crypto::SigningKey,
) -> Vec<u8> {
    let ct_len = wa_crypto::cbc::padded_len(plaintext.len());
    let mut out = Vec::with_capacity(1 + 3 * 10 + 3 + ct_len + SIGNATURE_LEN);
    out.push(VERSION_BYTE);
    out.push(0x08); // field 1 (id), varint
    put_varint(&mut out, u64::from(key_id));
    out.push(0x10); // field 2 (iteration), varint
    put_varint(&mut out, u64::from(iteration));
    out.push(0x1a); // field 3 (ciphertext), length-delimited
    put_varint(&mut out, ct_len as u64);
    wa_crypto::cbc::encrypt_append(key, iv, plaintext, &mut out);
    let sig = signing_key.sign(&out);
    out.extend_from_slice(&sig);
    out
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn hand_written_sender_key_message_equals_prost() {
        let signing = wa_crypto::PrivateKey::from_bytes([7; 32]).signing_key();
        let (key, iv) = ([3u8; 32], [4u8; 16]);
        for (id, it, n) in [(0, 0, 0), (1, 0, 5), (0x7fff_ffff, 127, 16), (300, 128, 200), (u32::MAX, u32::MAX, 1000)] {
            let plaintext = vec![0x5a; n];
            let sealed = seal_sender_key_message(id, it, &key, &iv, &plaintext, &signing);
            let proto = wa_proto::SenderKeyMessage {
                id: Some(id),
                iteration: Some(it),
                ciphertext: Some(wa_crypto::cbc::encrypt(&key, &iv, &plaintext)),
            };
            let mut expect = vec![VERSION_BYTE];
            proto.encode_raw(&mut expect);
            let body = &sealed[..sealed.len() - SIGNATURE_LEN];
            assert_eq!(body, &expect[..]);
            assert_eq!(sealed[body.len()..], signing.sign(body));
            let parsed = SenderKeyMessage::parse(&sealed).unwrap();
            assert_eq!((parsed.key_id, parsed.iteration), (id, it));
        }
    }
}
