//! Messages that modify another message and are sealed under that message's secret
//! (`messageContextInfo.messageSecret`, 32 random bytes the original carries): poll votes.
//!
//! The key is HKDF-SHA256 of the secret (no salt) with the info `original id ‖ original sender
//! ‖ modifying sender ‖ use case`; the payload is AES-256-GCM under it with the AAD
//! `original id \0 modifying sender` (whatsmeow `msgsecret.go` `generateMsgSecretKey`,
//! `decryptMsgSecret`; Baileys `Utils/process-message.ts` `decryptPollVote`, which computes the
//! same HKDF by hand with two HMACs). Senders are non-device user JIDs (`user@server`).

use crate::CryptoError;

/// The use case of a poll vote.
pub const POLL_VOTE: &str = "Poll Vote";

/// The key a `modification_sender` seals its modification of the message `orig_id` (sent by
/// `orig_sender`) under.
pub fn modification_key(
    secret: &[u8],
    orig_id: &str,
    orig_sender: &str,
    modification_sender: &str,
    use_case: &str,
) -> [u8; 32] {
    let info =
        [orig_id.as_bytes(), orig_sender.as_bytes(), modification_sender.as_bytes(), use_case.as_bytes()]
            .concat();
    crate::hkdf_sha256_array(secret, &[], &info)
}

fn aad(orig_id: &str, modification_sender: &str) -> Vec<u8> {
    [orig_id.as_bytes(), b"\0", modification_sender.as_bytes()].concat()
}

/// Seals `plaintext` (ciphertext with the GCM tag appended).
pub fn seal(
    key: &[u8; 32],
    iv: &[u8; 12],
    orig_id: &str,
    modification_sender: &str,
    plaintext: &[u8],
) -> Vec<u8> {
    crate::aead::encrypt(key, iv, &aad(orig_id, modification_sender), plaintext)
}

/// Opens what [`seal`] sealed; fails on a wrong key, IV, id or sender.
pub fn open(
    key: &[u8; 32],
    iv: &[u8],
    orig_id: &str,
    modification_sender: &str,
    sealed: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    let iv: &[u8; 12] =
        iv.try_into().map_err(|_| CryptoError::InvalidLength("message secret IV (12 bytes)"))?;
    crate::aead::decrypt(key, iv, &aad(orig_id, modification_sender), sealed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_baileys_two_hmacs() {
        // Baileys: key0 = HMAC(zeros(32), secret); key = HMAC(key0, id ‖ creator ‖ voter ‖
        // "Poll Vote" ‖ 0x01). HKDF with an empty salt is the same computation.
        let secret = [7u8; 32];
        let (id, creator, voter) = ("3EB0AA", "1555@s.whatsapp.net", "1666@s.whatsapp.net");
        let key0 = crate::hmac_sha256(&[0u8; 32], &[&secret]);
        let manual = crate::hmac_sha256(
            &key0,
            &[id.as_bytes(), creator.as_bytes(), voter.as_bytes(), POLL_VOTE.as_bytes(), &[1]],
        );
        assert_eq!(modification_key(&secret, id, creator, voter, POLL_VOTE), manual);
    }

    #[test]
    fn sealed_votes_open_only_for_the_same_message_and_voter() {
        let key = modification_key(&[1u8; 32], "ID", "a@lid", "b@lid", POLL_VOTE);
        let sealed = seal(&key, &[2u8; 12], "ID", "b@lid", b"vote");
        assert_eq!(open(&key, &[2u8; 12], "ID", "b@lid", &sealed).unwrap(), b"vote");
        assert!(open(&key, &[2u8; 12], "ID", "c@lid", &sealed).is_err());
        assert!(open(&key, &[2u8; 12], "OTHER", "b@lid", &sealed).is_err());
        assert!(open(&key, &[2u8; 11], "ID", "b@lid", &sealed).is_err());
    }
}
