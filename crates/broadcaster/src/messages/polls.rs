//! Polls: what is stored with a poll (its question and options, the secret its votes are
//! sealed under, each voter's current vote) and votes coming in: opened with the poll's
//! secret, recorded per voter (a new vote replaces the voter's earlier one; an empty one
//! withdraws it), counted, and announced as `poll_vote`.
//!
//! The secret stays in the stored payload and never leaves the server: the API shows the poll
//! (`poll`) and its results (`poll_results`).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{StoredMessage, load};
use crate::db::{Conn, DbError, DbResult, OptionalExtension, params};
use crate::outbox;
use crate::runtime::{Poll, PollVoteCipher};

/// One voter's current vote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PollVote {
    /// The voter's JID (phone-number one when known).
    pub voter: String,
    /// The options chosen (empty: none).
    pub options: Vec<String>,
    /// When (ms since epoch).
    pub at: i64,
}

/// How many voters chose one option.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PollCount {
    pub option: String,
    pub votes: i64,
}

/// A poll's results: a count per option (in the poll's order) and each voter's vote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PollResults {
    pub counts: Vec<PollCount>,
    pub voters: Vec<PollVote>,
}

/// The `payload` of a poll message.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct PollRecord {
    #[serde(flatten)]
    pub poll: Poll,
    /// The message secret, hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    #[serde(default)]
    pub votes: Vec<PollVote>,
}

impl PollRecord {
    pub fn new(poll: Poll, secret: Option<&[u8]>) -> Self {
        Self { poll, secret: secret.map(hex::encode), votes: Vec::new() }
    }

    pub fn encode(&self) -> DbResult<String> {
        serde_json::to_string(self).map_err(|e| DbError::Encode(e.to_string()))
    }

    pub fn secret(&self) -> Option<[u8; 32]> {
        hex::decode(self.secret.as_deref()?).ok()?.try_into().ok()
    }

    pub fn results(&self) -> PollResults {
        let counts = self
            .poll
            .options
            .iter()
            .map(|o| PollCount {
                option: o.clone(),
                votes: self.votes.iter().filter(|v| v.options.contains(o)).count() as i64,
            })
            .collect();
        PollResults { counts, voters: self.votes.clone() }
    }
}

/// The `data` of a `poll_vote` event.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PollVoteEvent {
    /// Our id of the poll.
    pub message_id: String,
    /// WhatsApp's id of the poll.
    pub wa_message_id: String,
    pub chat: String,
    /// The voter (phone-number JID when known).
    pub voter: String,
    pub voter_phone: Option<String>,
    pub push_name: Option<String>,
    /// The options the voter chose now (empty: withdrew the vote).
    pub options: Vec<String>,
    pub at: i64,
    /// The poll after the vote (its `poll_results`).
    pub message: Option<StoredMessage>,
}

/// Why a vote was not recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VoteOutcome {
    /// Recorded; the event (name, data) for the live bus.
    Recorded(&'static str, serde_json::Value),
    /// The same vote again (WhatsApp redelivers): nothing changed.
    Repeat,
    /// We hold no poll with that id, or not its secret.
    UnknownPoll,
    /// It does not open under the poll's secret, or names options the poll lacks.
    Invalid(String),
}

/// Opens `vote` by `voter` (the sender as history names it) and records it on the poll, in one
/// transaction with its outbox event.
pub fn record_vote(
    c: &mut Conn,
    tenant_id: &str,
    account_id: &str,
    cipher: &PollVoteCipher,
    voter: &super::actor::Actor<'_>,
) -> DbResult<VoteOutcome> {
    let tx = c.transaction()?;
    let row: Option<(String, Option<String>)> = tx
        .query_row(
            "SELECT id, payload FROM messages WHERE tenant_id = ?1 AND account_id = ?2 AND wa_message_id = ?3
               AND kind = 'poll' LIMIT 1",
            params![tenant_id, account_id, cipher.target_id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let Some((id, payload)) = row else { return Ok(VoteOutcome::UnknownPoll) };
    let Some(mut record) = super::json_col::<PollRecord>(payload) else {
        return Ok(VoteOutcome::UnknownPoll);
    };
    let Some(secret) = record.secret() else { return Ok(VoteOutcome::UnknownPoll) };
    let (Ok(creator), Ok(voter_jid)) = (cipher.creator.parse(), cipher.voter.parse()) else {
        return Ok(VoteOutcome::Invalid("the vote names no valid creator or voter".into()));
    };
    let vote = wa_proto::message::PollEncValue {
        enc_payload: Some(cipher.enc_payload.clone()),
        enc_iv: Some(cipher.enc_iv.clone()),
    };
    let hashes = match wa_client::polls::decrypt_vote(&vote, &secret, &cipher.target_id, &creator, &voter_jid)
    {
        Ok(h) => h,
        Err(e) => return Ok(VoteOutcome::Invalid(e.to_string())),
    };
    let mut options = Vec::with_capacity(hashes.len());
    for h in &hashes {
        match record.poll.options.iter().find(|o| wa_client::polls::option_hash(o).as_slice() == h.as_slice())
        {
            Some(o) => options.push(o.clone()),
            None => return Ok(VoteOutcome::Invalid("the vote names an option the poll lacks".into())),
        }
    }
    let before = record.votes.iter().find(|v| v.voter == voter.sender).map(|v| v.options.clone());
    if before.as_ref() == Some(&options) || (before.is_none() && options.is_empty()) {
        return Ok(VoteOutcome::Repeat);
    }
    record.votes.retain(|v| v.voter != voter.sender);
    if !options.is_empty() {
        record.votes.push(PollVote {
            voter: voter.sender.to_owned(),
            options: options.clone(),
            at: voter.at,
        });
    }
    tx.execute(
        "UPDATE messages SET payload = ?2, updated_at = ?3 WHERE id = ?1",
        params![id, record.encode()?, voter.at],
    )?;
    let message = load(&tx, tenant_id, &id)?;
    let event = PollVoteEvent {
        message_id: id,
        wa_message_id: cipher.target_id.clone(),
        chat: voter.chat.to_owned(),
        voter: voter.sender.to_owned(),
        voter_phone: voter.sender_phone.map(str::to_owned),
        push_name: voter.push_name.map(str::to_owned),
        options,
        at: voter.at,
        message,
    };
    let data = serde_json::to_value(&event).map_err(|e| DbError::Encode(e.to_string()))?;
    outbox::enqueue(&tx, tenant_id, Some(account_id), POLL_VOTE_EVENT, data.clone(), voter.at)?;
    tx.commit()?;
    Ok(VoteOutcome::Recorded(POLL_VOTE_EVENT, data))
}

/// The event a recorded vote emits.
pub const POLL_VOTE_EVENT: &str = "poll_vote";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_count_each_option_and_the_secret_stays_out_of_the_poll() {
        let poll = Poll {
            name: "Lunch?".into(),
            options: vec!["pizza".into(), "salad".into()],
            selectable_count: 0,
        };
        let mut r = PollRecord::new(poll.clone(), Some(&[7u8; 32]));
        r.votes.push(PollVote { voter: "a".into(), options: vec!["pizza".into(), "salad".into()], at: 1 });
        r.votes.push(PollVote { voter: "b".into(), options: vec!["pizza".into()], at: 2 });
        let counts: Vec<(String, i64)> =
            r.results().counts.into_iter().map(|c| (c.option, c.votes)).collect();
        assert_eq!(counts, vec![("pizza".into(), 2), ("salad".into(), 1)]);
        let json = r.encode().unwrap();
        let back: PollRecord = serde_json::from_str(&json).unwrap();
        assert_eq!(back.secret(), Some([7u8; 32]));
        // The API reads the same payload as a `Poll`: no secret in it.
        let as_poll: Poll = serde_json::from_str(&json).unwrap();
        assert_eq!(as_poll, poll);
    }
}
