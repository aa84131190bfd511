//! Import of libsignal-node session records (what Baileys stores), so an account moved from a
//! Baileys deployment keeps its sessions instead of re-keying every contact.
//!
//! The input is the JSON `SessionRecord.serialize()` gives (`{"_sessions": {…}, "version":
//! "v1"}`, binary fields base64). The open session becomes the current state; closed ones
//! become archived states, most recently closed first. A chain libsignal-node has closed (its
//! key deleted) is imported as a closed chain: its stored message keys still decrypt.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;
use wa_crypto::{KeyPair, PrivateKey, PublicKey};

use crate::error::SignalError;
use crate::session::{PendingPreKey, ReceivingChain, SendingChain, SessionRecord, SessionState, SkippedKey};

const WHAT: &str = "libsignal-node session record";

fn field<'a>(v: &'a Value, name: &'static str) -> Result<&'a Value, SignalError> {
    v.get(name).filter(|x| !x.is_null()).ok_or(SignalError::MissingField { what: WHAT, field: name })
}

fn bytes(v: &Value, name: &'static str) -> Result<Vec<u8>, SignalError> {
    let s = field(v, name)?
        .as_str()
        .ok_or_else(|| SignalError::malformed(WHAT, format_args!("{name} is not a string")))?;
    STANDARD.decode(s).map_err(|e| SignalError::malformed(WHAT, format_args!("{name}: {e}")))
}

fn key32(v: &Value, name: &'static str) -> Result<[u8; 32], SignalError> {
    let b = bytes(v, name)?;
    b.as_slice()
        .try_into()
        .map_err(|_| SignalError::malformed(WHAT, format_args!("{name} is {} bytes, expected 32", b.len())))
}

fn public(v: &Value, name: &'static str) -> Result<PublicKey, SignalError> {
    PublicKey::from_bytes(&bytes(v, name)?).map_err(SignalError::key(WHAT))
}

fn public_b64(s: &str) -> Result<PublicKey, SignalError> {
    let b = STANDARD.decode(s).map_err(|e| SignalError::malformed(WHAT, format_args!("chain id: {e}")))?;
    PublicKey::from_bytes(&b).map_err(SignalError::key(WHAT))
}

fn int(v: &Value, name: &'static str) -> Result<i64, SignalError> {
    field(v, name)?
        .as_i64()
        .ok_or_else(|| SignalError::malformed(WHAT, format_args!("{name} is not an integer")))
}

fn u32_of(v: &Value, name: &'static str) -> Result<u32, SignalError> {
    u32::try_from(int(v, name)?)
        .map_err(|_| SignalError::malformed(WHAT, format_args!("{name} out of range")))
}

/// libsignal-node counts chain positions from -1 ("nothing yet"); we count the next position.
fn next_index(chain: &Value) -> Result<u32, SignalError> {
    let counter = int(field(chain, "chainKey")?, "counter")?;
    u32::try_from(counter + 1).map_err(|_| SignalError::malformed(WHAT, "chain counter out of range"))
}

fn state(s: &Value) -> Result<(SessionState, i64), SignalError> {
    let ratchet = field(s, "currentRatchet")?;
    let index = field(s, "indexInfo")?;
    let eph = field(ratchet, "ephemeralKeyPair")?;
    let our_ratchet =
        KeyPair { private: PrivateKey::from_bytes(key32(eph, "privKey")?), public: public(eph, "pubKey")? };
    let last_remote = public(ratchet, "lastRemoteEphemeralKey")?;
    let mut sending = None;
    let mut receiving = Vec::new();
    let mut newest = None;
    let chains = field(s, "_chains")?
        .as_object()
        .ok_or_else(|| SignalError::malformed(WHAT, "_chains is not an object"))?;
    for (id, chain) in chains {
        let ratchet_key = public_b64(id)?;
        let ck = field(chain, "chainKey")?;
        let key = if ck.get("key").is_some_and(|k| !k.is_null()) { Some(key32(ck, "key")?) } else { None };
        match int(chain, "chainType")? {
            1 => {
                let chain_key = key.ok_or(SignalError::MissingField { what: WHAT, field: "chainKey.key" })?;
                sending = Some(SendingChain { chain_key, next_index: next_index(chain)? });
            }
            2 => {
                let mut skipped = Vec::new();
                if let Some(keys) = chain.get("messageKeys").and_then(Value::as_object) {
                    for (idx, seed) in keys {
                        let index = idx
                            .parse::<u32>()
                            .map_err(|_| SignalError::malformed(WHAT, "message key index"))?;
                        let seed =
                            seed.as_str().ok_or_else(|| SignalError::malformed(WHAT, "message key"))?;
                        let seed = STANDARD.decode(seed).map_err(|e| SignalError::malformed(WHAT, e))?;
                        let seed: [u8; 32] = seed
                            .as_slice()
                            .try_into()
                            .map_err(|_| SignalError::malformed(WHAT, "message key length"))?;
                        skipped.push(SkippedKey { index, seed });
                    }
                }
                skipped.sort_by_key(|k| k.index);
                let c =
                    ReceivingChain { ratchet_key, chain_key: key, next_index: next_index(chain)?, skipped };
                if ratchet_key == last_remote { newest = Some(c) } else { receiving.push(c) }
            }
            t => return Err(SignalError::malformed(WHAT, format_args!("unknown chainType {t}"))),
        }
    }
    // Newest last: the chain of the last remote ratchet key (JSON objects carry no order).
    receiving.extend(newest);
    let pending_pre_key = match s.get("pendingPreKey").filter(|p| !p.is_null()) {
        Some(p) => Some(PendingPreKey {
            pre_key_id: p
                .get("preKeyId")
                .filter(|x| !x.is_null())
                .map(|_| u32_of(p, "preKeyId"))
                .transpose()?,
            signed_pre_key_id: u32_of(p, "signedKeyId")?,
            base_key: public(p, "baseKey")?,
        }),
        None => None,
    };
    let state = SessionState {
        remote_identity: public(index, "remoteIdentityKey")?,
        remote_registration_id: u32_of(s, "registrationId")?,
        base_key: public(index, "baseKey")?,
        initiated_by_us: int(index, "baseKeyType")? == 1,
        root_key: key32(ratchet, "rootKey")?,
        our_ratchet,
        sending,
        previous_counter: u32::try_from(int(ratchet, "previousCounter")?.max(0)).unwrap_or(0),
        receiving,
        pending_pre_key,
    };
    Ok((state, int(index, "closed")?))
}

impl SessionRecord {
    /// Imports a libsignal-node (Baileys) session record from its serialized JSON form.
    ///
    /// Archived states beyond `max_archived_states` (newest kept) are dropped.
    pub fn from_libsignal_node_json(record: &Value, max_archived_states: usize) -> Result<Self, SignalError> {
        let sessions = field(record, "_sessions")?
            .as_object()
            .ok_or_else(|| SignalError::malformed(WHAT, "_sessions is not an object"))?;
        let mut open = Vec::new();
        let mut closed = Vec::new();
        for s in sessions.values() {
            let (st, closed_at) = state(s)?;
            if closed_at < 0 { open.push(st) } else { closed.push((closed_at, st)) }
        }
        if open.len() > 1 {
            return Err(SignalError::malformed(WHAT, "more than one open session"));
        }
        closed.sort_by_key(|(at, _)| core::cmp::Reverse(*at));
        let mut previous: Vec<SessionState> = closed.into_iter().map(|(_, s)| s).collect();
        previous.truncate(max_archived_states);
        Ok(SessionRecord { current: open.pop(), previous })
    }
}
