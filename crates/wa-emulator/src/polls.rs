//! A phone voting in a poll it received: the vote is a `pollUpdateMessage` whose
//! `PollVoteMessage` (the SHA-256 of each chosen option's name) is sealed under a key derived
//! from the poll's `messageSecret` (whatsmeow `send.go` `BuildPollVote` / `EncryptPollVote`,
//! `msgsecret.go`; Baileys `Utils/process-message.ts` `decryptPollVote`). The poll's creator
//! and the voter are named in the namespace the poll reached the phone in (its sender's
//! server), as whatsmeow and Baileys name both from the poll's key and the vote's sender.

use rand_core::Rng as _;
use wa_binary::Jid;
use wa_crypto::msg_secret;
use wa_proto::prost_message::Message as _;

use crate::world::{AccountId, ControlError, World};

/// The poll inside a message, any version.
fn poll_of(m: &wa_proto::Message) -> Option<&wa_proto::message::PollCreationMessage> {
    m.poll_creation_message
        .as_deref()
        .or(m.poll_creation_message_v2.as_deref())
        .or(m.poll_creation_message_v3.as_deref())
}

impl World {
    /// `account`'s phone votes for `options` (by name; none retracts its vote) in the poll
    /// `poll_id` it received in `chat`. Returns the vote's message id.
    pub fn phone_vote(
        &mut self,
        account: AccountId,
        chat: &Jid,
        poll_id: &str,
        options: &[&str],
    ) -> Result<String, ControlError> {
        let m = self.inbox_message(account, poll_id)?;
        let poll_msg = wa_proto::Message::decode(m.message.as_slice())
            .map_err(|e| ControlError::Signal(format!("stored message does not decode: {e}")))?;
        let not_a_poll = || ControlError::UnknownMessage(format!("{poll_id} (not a poll with a secret)"));
        let poll = poll_of(&poll_msg).ok_or_else(not_a_poll)?;
        let secret = poll_msg
            .message_context_info
            .as_ref()
            .and_then(|c| c.message_secret.clone())
            .filter(|s| s.len() == 32)
            .ok_or_else(not_a_poll)?;
        let mut selected = Vec::with_capacity(options.len());
        for o in options {
            if !poll.options.iter().any(|p| p.option_name.as_deref() == Some(*o)) {
                return Err(ControlError::UnknownMessage(format!("{poll_id} has no option {o:?}")));
            }
            selected.push(wa_crypto::sha256(&[o.as_bytes()]).to_vec());
        }
        let creator: Jid = m.sender.parse().map_err(|_| ControlError::BadJid(m.sender.clone()))?;
        let creator = creator.to_non_ad();
        let voter = self.user_jid(account, creator.server());
        let key = msg_secret::modification_key(
            &secret,
            poll_id,
            &creator.to_string(),
            &voter.to_string(),
            msg_secret::POLL_VOTE,
        );
        let mut iv = [0u8; 12];
        self.rng.fill_bytes(&mut iv);
        let plain = wa_proto::message::PollVoteMessage { selected_options: selected }.encode_to_vec();
        let sealed = msg_secret::seal(&key, &iv, poll_id, &voter.to_string(), &plain);
        let remote = if chat.is_group() { chat.to_non_ad() } else { creator.clone() };
        let message = wa_proto::Message {
            poll_update_message: Some(wa_proto::message::PollUpdateMessage {
                poll_creation_message_key: Some(wa_proto::MessageKey {
                    remote_jid: Some(remote.to_string()),
                    from_me: Some(false),
                    id: Some(poll_id.to_owned()),
                    participant: chat.is_group().then(|| creator.to_string()),
                }),
                vote: Some(wa_proto::message::PollEncValue {
                    enc_payload: Some(sealed),
                    enc_iv: Some(iv.to_vec()),
                }),
                sender_timestamp_ms: Some(i64::try_from(self.now().saturating_mul(1000)).unwrap_or(i64::MAX)),
            }),
            ..Default::default()
        };
        self.phone_send(account, chat, &message)
    }
}
