//! Poll votes: a vote (`pollUpdateMessage`) names the SHA-256 of each chosen option's name,
//! sealed under a key derived from the poll's `messageSecret` (whatsmeow `msgsecret.go`
//! `DecryptPollVote` / `EncryptPollVote`, Baileys `Utils/process-message.ts` `decryptPollVote`).
//! The poll's creator and the voter are non-device user JIDs in the namespace of the chat
//! (both by LID, or both by phone number).

use wa_binary::Jid;
use wa_crypto::msg_secret;
use wa_proto::message::{PollEncValue, PollVoteMessage};
use wa_proto::prost_message::Message as _;

use crate::error::{Error, Result};

/// The hash a vote names an option by.
pub fn option_hash(name: &str) -> [u8; 32] {
    wa_crypto::sha256(&[name.as_bytes()])
}

/// Opens a vote on the poll `poll_id` (created by `creator`, with `secret`) cast by `voter`;
/// the hashes of the options chosen (none: the vote was withdrawn).
pub fn decrypt_vote(
    vote: &PollEncValue,
    secret: &[u8],
    poll_id: &str,
    creator: &Jid,
    voter: &Jid,
) -> Result<Vec<Vec<u8>>> {
    let (Some(payload), Some(iv)) = (vote.enc_payload.as_deref(), vote.enc_iv.as_deref()) else {
        return Err(Error::Malformed("poll vote without payload or IV".into()));
    };
    let voter = voter.to_non_ad().to_string();
    let key = msg_secret::modification_key(
        secret,
        poll_id,
        &creator.to_non_ad().to_string(),
        &voter,
        msg_secret::POLL_VOTE,
    );
    let plain = msg_secret::open(&key, iv, poll_id, &voter, payload)
        .map_err(|e| Error::Malformed(format!("poll vote does not open: {e}")))?;
    let decoded = PollVoteMessage::decode(plain.as_slice())
        .map_err(|source| Error::Protobuf { what: "PollVoteMessage", source })?;
    Ok(decoded.selected_options)
}

/// Seals a vote for the hashes `selected` (see [`option_hash`]) with the 12-byte `iv`.
pub fn encrypt_vote(
    selected: Vec<Vec<u8>>,
    secret: &[u8],
    poll_id: &str,
    creator: &Jid,
    voter: &Jid,
    iv: [u8; 12],
) -> PollEncValue {
    let voter = voter.to_non_ad().to_string();
    let key = msg_secret::modification_key(
        secret,
        poll_id,
        &creator.to_non_ad().to_string(),
        &voter,
        msg_secret::POLL_VOTE,
    );
    let plain = PollVoteMessage { selected_options: selected }.encode_to_vec();
    PollEncValue {
        enc_payload: Some(msg_secret::seal(&key, &iv, poll_id, &voter, &plain)),
        enc_iv: Some(iv.to_vec()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_vote_opens_for_its_poll_and_voter_only() {
        let secret = [9u8; 32];
        let creator: Jid = "100000000000001@lid".parse().unwrap();
        let voter: Jid = "100000000000002:3@lid".parse().unwrap();
        let yes = option_hash("yes").to_vec();
        let v = encrypt_vote(vec![yes.clone()], &secret, "3EB0P", &creator, &voter, [4; 12]);
        assert_eq!(decrypt_vote(&v, &secret, "3EB0P", &creator, &voter).unwrap(), vec![yes]);
        let other: Jid = "100000000000003@lid".parse().unwrap();
        assert!(decrypt_vote(&v, &secret, "3EB0P", &creator, &other).is_err());
        assert!(decrypt_vote(&v, &[8u8; 32], "3EB0P", &creator, &voter).is_err());
        assert!(decrypt_vote(&PollEncValue::default(), &secret, "3EB0P", &creator, &voter).is_err());
    }
}
