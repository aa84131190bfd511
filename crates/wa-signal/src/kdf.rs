//! The key derivations of Signal v3 (libsignal `WhisperText` / `WhisperRatchet` /
//! `WhisperMessageKeys` / `WhisperGroup`), all built on wa-crypto's HMAC and HKDF.

use wa_crypto::{HmacSha256Key, PrivateKey, PublicKey, hkdf_sha256_array, hmac_sha256};

use crate::error::SignalError;
use crate::session::SkippedKey;

/// HKDF's default salt: HashLen zero bytes, which is what libsignal passes explicitly
/// (`wa_crypto` keeps the HMAC state of this key ready).
const ZERO_SALT: [u8; 0] = [];

/// The chain key of the next position: HMAC(CK, 0x02).
#[inline]
pub(crate) fn next_chain_key(chain_key: &[u8; 32]) -> [u8; 32] {
    hmac_sha256(chain_key, &[&[0x02]])
}

/// One chain position: (message-key seed, next chain key), sharing one HMAC key schedule.
#[inline]
pub(crate) fn chain_step(chain_key: &[u8; 32]) -> ([u8; 32], [u8; 32]) {
    let key = HmacSha256Key::new(chain_key);
    (key.mac(&[&[0x01]]), key.mac(&[&[0x02]]))
}

/// Keys of one pairwise message.
pub(crate) struct MessageKeys {
    pub cipher_key: [u8; 32],
    pub mac_key: [u8; 32],
    pub iv: [u8; 16],
}

/// HKDF(seed, zero salt, "WhisperMessageKeys", 80) → cipher key, MAC key, IV.
pub(crate) fn message_keys(seed: &[u8; 32]) -> MessageKeys {
    let okm: [u8; 80] = hkdf_sha256_array(seed, &ZERO_SALT, b"WhisperMessageKeys");
    let mut cipher_key = [0u8; 32];
    let mut mac_key = [0u8; 32];
    let mut iv = [0u8; 16];
    cipher_key.copy_from_slice(&okm[..32]);
    mac_key.copy_from_slice(&okm[32..64]);
    iv.copy_from_slice(&okm[64..80]);
    MessageKeys { cipher_key, mac_key, iv }
}

/// Keys of one sender-key (group) message: HKDF(seed, no salt, "WhisperGroup", 48) → IV ‖ key.
pub(crate) fn group_message_keys(seed: &[u8; 32]) -> ([u8; 16], [u8; 32]) {
    let okm: [u8; 48] = hkdf_sha256_array(seed, &[], b"WhisperGroup");
    let mut iv = [0u8; 16];
    let mut key = [0u8; 32];
    iv.copy_from_slice(&okm[..16]);
    key.copy_from_slice(&okm[16..48]);
    (iv, key)
}

/// The X3DH master secret → (root key, chain key) with info "WhisperText".
pub(crate) fn initial_root(master: &[u8]) -> ([u8; 32], [u8; 32]) {
    split64(hkdf_sha256_array::<64>(master, &ZERO_SALT, b"WhisperText"))
}

/// One root-chain step: HKDF(DH(ours, theirs), salt = RK, "WhisperRatchet") → (new RK, chain key).
pub(crate) fn root_step(
    root_key: &[u8; 32],
    ours: &PrivateKey,
    theirs: &PublicKey,
) -> Result<([u8; 32], [u8; 32]), SignalError> {
    let shared = ours.agree(theirs).map_err(SignalError::Agreement)?;
    Ok(split64(hkdf_sha256_array::<64>(&shared, root_key, b"WhisperRatchet")))
}

fn split64(okm: [u8; 64]) -> ([u8; 32], [u8; 32]) {
    let mut a = [0u8; 32];
    let mut b = [0u8; 32];
    a.copy_from_slice(&okm[..32]);
    b.copy_from_slice(&okm[32..]);
    (a, b)
}

/// The result of walking a hash chain forward to a target position.
pub(crate) struct ChainWalk {
    /// Message-key seed at the target.
    pub seed: [u8; 32],
    /// Chain key after the target.
    pub chain_key: [u8; 32],
    /// Position after the target.
    pub next: u32,
    /// Seeds of the positions passed over, ascending.
    pub skipped: Vec<SkippedKey>,
}

/// Walks a chain from `(chain_key, next)` to `target` (which must be ≥ `next`), refusing to
/// skip more than `limit` positions.
pub(crate) fn walk_chain(
    chain_key: &[u8; 32],
    next: u32,
    target: u32,
    limit: u32,
) -> Result<ChainWalk, SignalError> {
    let ahead = target.checked_sub(next).ok_or(SignalError::DuplicateMessage { counter: target })?;
    if ahead > limit {
        return Err(SignalError::TooFarAhead { ahead, limit });
    }
    let after = target.checked_add(1).ok_or(SignalError::CounterOverflow)?;
    let mut ck = *chain_key;
    let mut skipped = Vec::new();
    if ahead > 0 {
        skipped.reserve_exact(ahead as usize);
        for index in next..target {
            let (seed, next_ck) = chain_step(&ck);
            skipped.push(SkippedKey { index, seed });
            ck = next_ck;
        }
    }
    let (seed, chain_key) = chain_step(&ck);
    Ok(ChainWalk { seed, chain_key, next: after, skipped })
}
