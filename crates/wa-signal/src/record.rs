//! The persisted form of wa-signal's records: protobuf (prost derive on these hand-written
//! structs), versioned.
//!
//! Every record starts with `version` (field 1). Readers accept versions up to
//! [`RECORD_VERSION`]; an older version is upgraded in [`upgrade_session`] /
//! [`upgrade_sender_key`] step by step before it is turned into typed state, and a newer one is
//! refused with [`SignalError::UnsupportedRecordVersion`] rather than misread. Version 1 is the
//! first format, so the upgrade chain is currently the identity; a v2 adds a `1 => …` arm there.
//!
//! Skipped message keys are stored packed (indexes as packed varints, seeds concatenated), about
//! 33 bytes per key, so records stay small at the skipped-key caps.

use prost::Message;
use wa_crypto::{KeyPair, PrivateKey, PublicKey};

use crate::error::SignalError;
use crate::keys::{PreKeyRecord, SignedPreKeyRecord};
use crate::sender_key::{SenderKeyRecord, SenderKeyState};
use crate::session::{PendingPreKey, ReceivingChain, SendingChain, SessionRecord, SessionState, SkippedKey};

/// The newest record format this build writes and reads.
pub const RECORD_VERSION: u32 = 1;

#[derive(Clone, PartialEq, Message)]
struct SessionRecordProto {
    #[prost(uint32, tag = "1")]
    version: u32,
    #[prost(message, optional, tag = "2")]
    current: Option<SessionStateProto>,
    #[prost(message, repeated, tag = "3")]
    previous: Vec<SessionStateProto>,
}

#[derive(Clone, PartialEq, Message)]
struct SessionStateProto {
    #[prost(bytes = "vec", tag = "1")]
    remote_identity: Vec<u8>,
    #[prost(uint32, tag = "2")]
    remote_registration_id: u32,
    #[prost(bytes = "vec", tag = "3")]
    base_key: Vec<u8>,
    #[prost(bool, tag = "4")]
    initiated_by_us: bool,
    #[prost(bytes = "vec", tag = "5")]
    root_key: Vec<u8>,
    #[prost(bytes = "vec", tag = "6")]
    our_ratchet_private: Vec<u8>,
    #[prost(bytes = "vec", tag = "7")]
    our_ratchet_public: Vec<u8>,
    #[prost(message, optional, tag = "8")]
    sending: Option<ChainProto>,
    #[prost(uint32, tag = "9")]
    previous_counter: u32,
    #[prost(message, repeated, tag = "10")]
    receiving: Vec<ReceivingChainProto>,
    #[prost(message, optional, tag = "11")]
    pending_pre_key: Option<PendingPreKeyProto>,
}

#[derive(Clone, PartialEq, Message)]
struct ChainProto {
    #[prost(bytes = "vec", tag = "1")]
    chain_key: Vec<u8>,
    #[prost(uint32, tag = "2")]
    next_index: u32,
}

#[derive(Clone, PartialEq, Message)]
struct ReceivingChainProto {
    #[prost(bytes = "vec", tag = "1")]
    ratchet_key: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    chain_key: Vec<u8>,
    #[prost(uint32, tag = "3")]
    next_index: u32,
    #[prost(uint32, repeated, packed = "true", tag = "4")]
    skipped_indexes: Vec<u32>,
    #[prost(bytes = "vec", tag = "5")]
    skipped_seeds: Vec<u8>,
}

#[derive(Clone, PartialEq, Message)]
struct PendingPreKeyProto {
    #[prost(uint32, optional, tag = "1")]
    pre_key_id: Option<u32>,
    #[prost(uint32, tag = "2")]
    signed_pre_key_id: u32,
    #[prost(bytes = "vec", tag = "3")]
    base_key: Vec<u8>,
}

#[derive(Clone, PartialEq, Message)]
struct SenderKeyRecordProto {
    #[prost(uint32, tag = "1")]
    version: u32,
    #[prost(message, repeated, tag = "2")]
    states: Vec<SenderKeyStateProto>,
}

#[derive(Clone, PartialEq, Message)]
struct SenderKeyStateProto {
    #[prost(uint32, tag = "1")]
    key_id: u32,
    #[prost(uint32, tag = "2")]
    iteration: u32,
    #[prost(bytes = "vec", tag = "3")]
    chain_key: Vec<u8>,
    #[prost(bytes = "vec", tag = "4")]
    signing_public: Vec<u8>,
    #[prost(bytes = "vec", optional, tag = "5")]
    signing_private: Option<Vec<u8>>,
    #[prost(uint32, repeated, packed = "true", tag = "6")]
    skipped_indexes: Vec<u32>,
    #[prost(bytes = "vec", tag = "7")]
    skipped_seeds: Vec<u8>,
}

#[derive(Clone, PartialEq, Message)]
struct PreKeyRecordProto {
    #[prost(uint32, tag = "1")]
    version: u32,
    #[prost(uint32, tag = "2")]
    id: u32,
    #[prost(bytes = "vec", tag = "3")]
    public: Vec<u8>,
    #[prost(bytes = "vec", tag = "4")]
    private: Vec<u8>,
    #[prost(bytes = "vec", optional, tag = "5")]
    signature: Option<Vec<u8>>,
}

const SESSION: &str = "session record";
const SENDER_KEY: &str = "sender-key record";
const PRE_KEY: &str = "prekey record";

fn arr32(what: &'static str, field: &'static str, b: &[u8]) -> Result<[u8; 32], SignalError> {
    b.try_into()
        .map_err(|_| SignalError::malformed(what, format_args!("{field} is {} bytes, expected 32", b.len())))
}

fn public(what: &'static str, b: &[u8]) -> Result<PublicKey, SignalError> {
    PublicKey::from_bytes(b).map_err(SignalError::key(what))
}

fn key_pair(what: &'static str, private: &[u8], public_bytes: &[u8]) -> Result<KeyPair, SignalError> {
    Ok(KeyPair {
        private: PrivateKey::from_bytes(arr32(what, "private key", private)?),
        public: public(what, public_bytes)?,
    })
}

fn check_version(what: &'static str, version: u32) -> Result<(), SignalError> {
    match version {
        0 => Err(SignalError::MissingField { what, field: "version" }),
        v if v > RECORD_VERSION => {
            Err(SignalError::UnsupportedRecordVersion { found: v, supported: RECORD_VERSION })
        }
        _ => Ok(()),
    }
}

fn pack_skipped(keys: &[SkippedKey]) -> (Vec<u32>, Vec<u8>) {
    let mut seeds = Vec::with_capacity(keys.len() * 32);
    for k in keys {
        seeds.extend_from_slice(&k.seed);
    }
    (keys.iter().map(|k| k.index).collect(), seeds)
}

fn unpack_skipped(what: &'static str, indexes: &[u32], seeds: &[u8]) -> Result<Vec<SkippedKey>, SignalError> {
    if seeds.len() != indexes.len() * 32 {
        return Err(SignalError::malformed(what, "skipped key indexes and seeds differ in count"));
    }
    let keys: Vec<SkippedKey> = indexes
        .iter()
        .zip(seeds.chunks_exact(32))
        .map(|(&index, s)| SkippedKey { index, seed: s.try_into().unwrap_or([0; 32]) })
        .collect();
    if keys.windows(2).any(|w| w[0].index >= w[1].index) {
        return Err(SignalError::malformed(what, "skipped key indexes are not strictly ascending"));
    }
    Ok(keys)
}

/// Brings an older session record to the current version (step by step).
fn upgrade_session(p: SessionRecordProto) -> Result<SessionRecordProto, SignalError> {
    check_version(SESSION, p.version)?;
    // Version 1 is current; future versions add `n => migrate_n_to_n1(p)` steps here.
    Ok(p)
}

/// Brings an older sender-key record to the current version (step by step).
fn upgrade_sender_key(p: SenderKeyRecordProto) -> Result<SenderKeyRecordProto, SignalError> {
    check_version(SENDER_KEY, p.version)?;
    Ok(p)
}

fn state_to_proto(s: &SessionState) -> SessionStateProto {
    SessionStateProto {
        remote_identity: s.remote_identity.as_bytes().to_vec(),
        remote_registration_id: s.remote_registration_id,
        base_key: s.base_key.as_bytes().to_vec(),
        initiated_by_us: s.initiated_by_us,
        root_key: s.root_key.to_vec(),
        our_ratchet_private: s.our_ratchet.private.as_bytes().to_vec(),
        our_ratchet_public: s.our_ratchet.public.as_bytes().to_vec(),
        sending: s
            .sending
            .as_ref()
            .map(|c| ChainProto { chain_key: c.chain_key.to_vec(), next_index: c.next_index }),
        previous_counter: s.previous_counter,
        receiving: s
            .receiving
            .iter()
            .map(|c| {
                let (skipped_indexes, skipped_seeds) = pack_skipped(&c.skipped);
                ReceivingChainProto {
                    ratchet_key: c.ratchet_key.as_bytes().to_vec(),
                    chain_key: c.chain_key.to_vec(),
                    next_index: c.next_index,
                    skipped_indexes,
                    skipped_seeds,
                }
            })
            .collect(),
        pending_pre_key: s.pending_pre_key.as_ref().map(|p| PendingPreKeyProto {
            pre_key_id: p.pre_key_id,
            signed_pre_key_id: p.signed_pre_key_id,
            base_key: p.base_key.as_bytes().to_vec(),
        }),
    }
}

fn state_from_proto(p: &SessionStateProto) -> Result<SessionState, SignalError> {
    let receiving = p
        .receiving
        .iter()
        .map(|c| {
            let skipped = unpack_skipped(SESSION, &c.skipped_indexes, &c.skipped_seeds)?;
            if skipped.last().is_some_and(|k| k.index >= c.next_index) {
                return Err(SignalError::malformed(SESSION, "skipped key beyond its chain position"));
            }
            Ok(ReceivingChain {
                ratchet_key: public(SESSION, &c.ratchet_key)?,
                chain_key: arr32(SESSION, "chain key", &c.chain_key)?,
                next_index: c.next_index,
                skipped,
            })
        })
        .collect::<Result<Vec<_>, SignalError>>()?;
    Ok(SessionState {
        remote_identity: public(SESSION, &p.remote_identity)?,
        remote_registration_id: p.remote_registration_id,
        base_key: public(SESSION, &p.base_key)?,
        initiated_by_us: p.initiated_by_us,
        root_key: arr32(SESSION, "root key", &p.root_key)?,
        our_ratchet: key_pair(SESSION, &p.our_ratchet_private, &p.our_ratchet_public)?,
        sending: p
            .sending
            .as_ref()
            .map(|c| {
                Ok::<_, SignalError>(SendingChain {
                    chain_key: arr32(SESSION, "chain key", &c.chain_key)?,
                    next_index: c.next_index,
                })
            })
            .transpose()?,
        previous_counter: p.previous_counter,
        receiving,
        pending_pre_key: p
            .pending_pre_key
            .as_ref()
            .map(|q| {
                Ok::<_, SignalError>(PendingPreKey {
                    pre_key_id: q.pre_key_id,
                    signed_pre_key_id: q.signed_pre_key_id,
                    base_key: public(SESSION, &q.base_key)?,
                })
            })
            .transpose()?,
    })
}

impl SessionRecord {
    /// Serializes the record (current format version).
    pub fn to_bytes(&self) -> Vec<u8> {
        SessionRecordProto {
            version: RECORD_VERSION,
            current: self.current.as_ref().map(state_to_proto),
            previous: self.previous.iter().map(state_to_proto).collect(),
        }
        .encode_to_vec()
    }

    /// Parses a stored record, upgrading older formats.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, SignalError> {
        let p = SessionRecordProto::decode(bytes).map_err(|e| SignalError::malformed(SESSION, e))?;
        let p = upgrade_session(p)?;
        Ok(SessionRecord {
            current: p.current.as_ref().map(state_from_proto).transpose()?,
            previous: p.previous.iter().map(state_from_proto).collect::<Result<_, _>>()?,
        })
    }
}

impl SenderKeyRecord {
    /// Serializes the record (current format version).
    pub fn to_bytes(&self) -> Vec<u8> {
        SenderKeyRecordProto {
            version: RECORD_VERSION,
            states: self
                .states
                .iter()
                .map(|s| {
                    let (skipped_indexes, skipped_seeds) = pack_skipped(&s.skipped);
                    SenderKeyStateProto {
                        key_id: s.key_id,
                        iteration: s.iteration,
                        chain_key: s.chain_key.to_vec(),
                        signing_public: s.signing_public.as_bytes().to_vec(),
                        signing_private: s.signing_private.as_ref().map(|k| k.as_bytes().to_vec()),
                        skipped_indexes,
                        skipped_seeds,
                    }
                })
                .collect(),
        }
        .encode_to_vec()
    }

    /// Parses a stored record, upgrading older formats.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, SignalError> {
        let p = SenderKeyRecordProto::decode(bytes).map_err(|e| SignalError::malformed(SENDER_KEY, e))?;
        let p = upgrade_sender_key(p)?;
        let states = p
            .states
            .iter()
            .map(|s| {
                let skipped = unpack_skipped(SENDER_KEY, &s.skipped_indexes, &s.skipped_seeds)?;
                if skipped.last().is_some_and(|k| k.index >= s.iteration) {
                    return Err(SignalError::malformed(SENDER_KEY, "skipped key beyond its chain position"));
                }
                Ok(SenderKeyState {
                    key_id: s.key_id,
                    iteration: s.iteration,
                    chain_key: arr32(SENDER_KEY, "chain key", &s.chain_key)?,
                    signing_public: public(SENDER_KEY, &s.signing_public)?,
                    signing_private: s
                        .signing_private
                        .as_ref()
                        .map(|k| {
                            Ok::<_, SignalError>(PrivateKey::from_bytes(arr32(SENDER_KEY, "signing key", k)?))
                        })
                        .transpose()?,
                    skipped,
                })
            })
            .collect::<Result<_, SignalError>>()?;
        Ok(SenderKeyRecord { states })
    }
}

fn pre_key_from_proto(bytes: &[u8]) -> Result<PreKeyRecordProto, SignalError> {
    let p = PreKeyRecordProto::decode(bytes).map_err(|e| SignalError::malformed(PRE_KEY, e))?;
    check_version(PRE_KEY, p.version)?;
    Ok(p)
}

impl PreKeyRecord {
    /// Serializes the prekey (current format version).
    pub fn to_bytes(&self) -> Vec<u8> {
        PreKeyRecordProto {
            version: RECORD_VERSION,
            id: self.id,
            public: self.key_pair.public.as_bytes().to_vec(),
            private: self.key_pair.private.as_bytes().to_vec(),
            signature: None,
        }
        .encode_to_vec()
    }

    /// Parses a stored prekey.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, SignalError> {
        let p = pre_key_from_proto(bytes)?;
        Ok(PreKeyRecord { id: p.id, key_pair: key_pair(PRE_KEY, &p.private, &p.public)? })
    }
}

impl SignedPreKeyRecord {
    /// Serializes the signed prekey (current format version).
    pub fn to_bytes(&self) -> Vec<u8> {
        PreKeyRecordProto {
            version: RECORD_VERSION,
            id: self.id,
            public: self.key_pair.public.as_bytes().to_vec(),
            private: self.key_pair.private.as_bytes().to_vec(),
            signature: Some(self.signature.to_vec()),
        }
        .encode_to_vec()
    }

    /// Parses a stored signed prekey.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, SignalError> {
        let p = pre_key_from_proto(bytes)?;
        let sig = p.signature.ok_or(SignalError::MissingField { what: PRE_KEY, field: "signature" })?;
        let signature: [u8; 64] = sig.as_slice().try_into().map_err(|_| {
            SignalError::malformed(PRE_KEY, format_args!("signature is {} bytes, expected 64", sig.len()))
        })?;
        Ok(SignedPreKeyRecord { id: p.id, key_pair: key_pair(PRE_KEY, &p.private, &p.public)?, signature })
    }
}
