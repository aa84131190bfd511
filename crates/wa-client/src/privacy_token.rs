//! Trusted-contact (privacy) tokens and cs-tokens: what lets a 1:1 message reach a contact
//! without counting as a reach-out.
//!
//! * A contact's phone gives us its token (`<notification type="privacy_token">`, or a
//!   conversation's `tcToken` in history sync); we keep it under the contact's LID and attach
//!   it as `<tctoken>` to our messages to that contact while it is fresh (whatsmeow
//!   `tctoken.go` `ensureTCToken`, send.go `sendDM`).
//! * With no fresh token, a message carries `<cstoken>`: HMAC-SHA256 keyed by the account's
//!   NCT salt over the recipient's LID (whatsmeow `cstoken.go` `generateCsToken`); the salt
//!   comes from history sync (`HistorySync.nctSalt`, whatsmeow message.go).
//! * After a message is accepted we give the contact our own token, once per bucket (whatsmeow
//!   send.go `sendDM` → `issuePrivacyTokenAndSave`; Baileys messages-send.ts, which skips
//!   protocol messages as WA Web does). The issuance time is stored with the contact's token
//!   (whatsapp-rust PR #966: persisted when the IQ succeeds; the answer carries no token).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use tracing::{debug, warn};
use wa_binary::{Jid, Node, Server};
use wa_store::{NctSaltStore, PrivacyToken, PrivacyTokenStore};

use crate::client::{Shared, lock};
use crate::conn::server_jid;
use crate::error::Result;
use crate::event::Event;

/// Length of a token bucket, seconds (whatsmeow `tctoken.go` `tcTokenBucketDuration`, the AB
/// prop `tctoken_duration`: 7 days).
pub const TC_TOKEN_BUCKET_SECS: i64 = 604_800;
/// Buckets a received token stays valid for (whatsmeow `tcTokenNumBuckets`, the AB prop
/// `tctoken_num_buckets`: a window of about 28 days).
pub const TC_TOKEN_NUM_BUCKETS: i64 = 4;

/// Contacts we are issuing our token to right now (one IQ per contact at a time, as Baileys'
/// `inFlightTcTokenIssuance`).
#[derive(Default)]
pub(crate) struct Issuing(Mutex<HashSet<Jid>>);

/// The oldest token timestamp still valid at `now`: the start of the oldest bucket of the
/// rolling window (whatsmeow `currentTCTokenCutoffTimestamp`).
fn cutoff(now: i64) -> i64 {
    (now.div_euclid(TC_TOKEN_BUCKET_SECS) - (TC_TOKEN_NUM_BUCKETS - 1)) * TC_TOKEN_BUCKET_SECS
}

/// A token from `timestamp` is no longer valid at `now` (whatsmeow `isTCTokenExpired`).
pub(crate) fn is_expired(timestamp: i64, now: i64) -> bool {
    timestamp <= 0 || timestamp < cutoff(now)
}

/// We last issued our token at `sender_timestamp` (0: never): a new bucket has begun since
/// (whatsmeow `shouldSendNewTCToken`).
pub(crate) fn should_issue(sender_timestamp: i64, now: i64) -> bool {
    sender_timestamp <= 0
        || now.div_euclid(TC_TOKEN_BUCKET_SECS) > sender_timestamp.div_euclid(TC_TOKEN_BUCKET_SECS)
}

/// Users that take tokens: people on a phone number or LID, not the PSA account (`0`) nor
/// bots (whatsmeow `shouldSendTCTokenInChatAction`, `shouldSendCsToken`).
pub(crate) fn takes_tokens(jid: &Jid) -> bool {
    matches!(jid.server(), Server::Pn | Server::Lid) && jid.user() != "0" && !jid.is_bot()
}

/// The cs-token for a recipient: HMAC-SHA256 keyed by the NCT salt over the recipient's bare
/// LID as text, `user@lid` (whatsmeow `cstoken.go` `generateCsToken`; whatsapp-rust PR #433).
pub fn cs_token(nct_salt: &[u8], recipient_lid: &Jid) -> [u8; 32] {
    wa_crypto::hmac_sha256(nct_salt, &[recipient_lid.to_non_ad().to_string().as_bytes()])
}

/// Where a contact's token is kept: its LID when known, else the JID given, without device
/// (whatsmeow `resolveTCTokenStorageLID`).
pub(crate) async fn storage_jid(shared: &Shared, jid: &Jid) -> Result<Jid> {
    let jid = jid.to_non_ad();
    if jid.is_pn()
        && let Some(lid) = crate::lid::lid_for_pn(shared, jid.user()).await?
    {
        return Ok(Jid::lid(&lid)?);
    }
    Ok(jid)
}

/// Keeps a contact's token unless the one held is newer; the issuance time we recorded stays.
/// Returns whether it was stored.
async fn keep(
    shared: &Shared,
    key: &Jid,
    token: &[u8],
    timestamp: i64,
    sender_timestamp: i64,
) -> Result<bool> {
    let held = shared.store.get_privacy_token(&key.to_string()).await?;
    if held.as_ref().is_some_and(|h| !h.token.is_empty() && h.timestamp > timestamp) {
        debug!(%key, "older privacy token ignored");
        return Ok(false);
    }
    let sender_timestamp = held.map_or(0, |h| h.sender_timestamp).max(sender_timestamp);
    let t = PrivacyToken { token: token.to_vec(), timestamp, sender_timestamp };
    shared.store.put_privacy_token(&key.to_string(), &t).await?;
    Ok(true)
}

/// `<notification type="privacy_token" from [sender_lid]><tokens><token type="trusted_contact"
/// t>bytes</token></tokens>`: each token is stored under the contact's LID (the server's
/// `sender_lid`, else the one we know for `from`), as whatsmeow
/// `handlePrivacyTokenNotification`. A token older than the one held does not replace it.
pub(crate) async fn on_notification(shared: &Shared, node: &Node) -> Result<()> {
    let from = node.attr_jid("from")?.to_non_ad();
    let key = match node.attr_jid("sender_lid") {
        Ok(l) => l.to_non_ad(),
        Err(_) => storage_jid(shared, &from).await?,
    };
    let Some(tokens) = node.child("tokens") else {
        warn!(%from, "privacy_token notification without <tokens>");
        return Ok(());
    };
    for t in tokens.children_by_tag("token") {
        if t.opt_attr_str("type").as_deref() != Some("trusted_contact") {
            continue;
        }
        let Some(token) = t.content_bytes().filter(|b| !b.is_empty()) else { continue };
        let timestamp = t.opt_attr_str("t").and_then(|t| t.parse::<i64>().ok()).unwrap_or(0);
        if keep(shared, &key, token, timestamp, 0).await? {
            shared.emit(Event::PrivacyToken { from: from.clone(), stored_as: key.clone(), timestamp });
        }
    }
    Ok(())
}

/// The token fields of a `HistorySync` blob, read beside the full decode: `nctSalt` (19) and
/// each conversation's `id` (1), `tcToken` (21), `tcTokenTimestamp` (22) and
/// `tcTokenSenderTimestamp` (28); numbers from whatsmeow
/// proto/waHistorySync/WAWebProtobufsHistorySync.proto. Other fields are skipped.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct HistoryTokens {
    #[prost(message, repeated, tag = "2")]
    pub conversations: Vec<ConversationToken>,
    #[prost(bytes = "vec", optional, tag = "19")]
    pub nct_salt: Option<Vec<u8>>,
}

/// A conversation's token fields (see [`HistoryTokens`]).
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct ConversationToken {
    #[prost(string, optional, tag = "1")]
    pub id: Option<String>,
    #[prost(bytes = "vec", optional, tag = "21")]
    pub tc_token: Option<Vec<u8>>,
    #[prost(uint64, optional, tag = "22")]
    pub tc_token_timestamp: Option<u64>,
    #[prost(uint64, optional, tag = "28")]
    pub tc_token_sender_timestamp: Option<u64>,
}

/// What a history blob says about tokens: the account's NCT salt (`nctSalt`, when the blob
/// carries the field; an empty one clears it) and each conversation's `tcToken` with its
/// timestamps, kept under the contact's LID (whatsmeow message.go
/// `handleHistorySyncNotification` → `storeNCTSalt`, `storeHistoricalMessageSecrets`).
pub(crate) async fn learn_from_history(shared: &Shared, h: &HistoryTokens) -> Result<()> {
    if let Some(salt) = &h.nct_salt {
        shared.store.save_nct_salt(salt).await?;
    }
    for conv in &h.conversations {
        let Some(token) = conv.tc_token.as_deref().filter(|t| !t.is_empty()) else { continue };
        let Some(chat) = conv.id.as_deref().and_then(|id| id.parse::<Jid>().ok()) else { continue };
        if !takes_tokens(&chat) {
            continue;
        }
        let key = storage_jid(shared, &chat).await?;
        let ts = |v: Option<u64>| v.and_then(|v| i64::try_from(v).ok()).unwrap_or(0);
        keep(shared, &key, token, ts(conv.tc_token_timestamp), ts(conv.tc_token_sender_timestamp)).await?;
    }
    Ok(())
}

/// The token a 1:1 message to `to` carries, and the contact's stored record: `<tctoken>` with
/// the contact's fresh token, else `<cstoken>` when the NCT salt and the recipient's LID are
/// known, else nothing (whatsmeow send.go `sendDM`).
pub(crate) async fn token_for(
    shared: &Shared,
    to: &Jid,
    lid: Option<&Jid>,
) -> Result<(Option<Node>, Option<PrivacyToken>)> {
    if !takes_tokens(to) {
        return Ok((None, None));
    }
    let key = match lid {
        Some(l) => l.to_non_ad(),
        None => storage_jid(shared, to).await?,
    };
    let mut held = shared.store.get_privacy_token(&key.to_string()).await?;
    if let Some(h) = &held
        && !h.token.is_empty()
    {
        if !is_expired(h.timestamp, shared.now()) {
            return Ok((Some(Node::new("tctoken").bytes(h.token.clone())), held));
        }
        // An expired token may never be sent again: it is dropped here, when first found
        // stale, keeping when we last issued ours so that is not repeated early (Baileys
        // tc-token-utils.ts `buildTcTokenFromJid`, which clears expired entries the same way).
        let cleared = PrivacyToken { token: Vec::new(), timestamp: 0, sender_timestamp: h.sender_timestamp };
        shared.store.put_privacy_token(&key.to_string(), &cleared).await?;
        debug!(%key, "expired privacy token dropped");
        held = Some(cleared);
    }
    let node = match (shared.store.load_nct_salt().await?, key.is_lid()) {
        (Some(salt), true) => Some(Node::new("cstoken").bytes(cs_token(&salt, &key).to_vec())),
        _ => None,
    };
    Ok((node, held))
}

/// After a 1:1 message to `to` was accepted: gives the contact our token when a new bucket
/// began since we last did, in the background (whatsmeow send.go `sendDM`,
/// `issuePrivacyTokenAndSave`).
pub(crate) fn issue_after_send(shared: &Arc<Shared>, to: &Jid, held: Option<&PrivacyToken>) {
    let now = shared.now();
    if !takes_tokens(to) || !should_issue(held.map_or(0, |h| h.sender_timestamp), now) {
        return;
    }
    let shared = shared.clone();
    let to = to.to_non_ad();
    tokio::spawn(async move {
        let key = match storage_jid(&shared, &to).await {
            Ok(k) => k,
            Err(e) => return warn!(%to, %e, "privacy token: cannot resolve the contact's LID"),
        };
        if !lock(&shared.issuing.0).insert(key.clone()) {
            return;
        }
        if let Err(e) = issue(&shared, &key, now).await {
            debug!(%key, %e, "issuing our privacy token failed");
        }
        lock(&shared.issuing.0).remove(&key);
    });
}

/// `<iq xmlns="privacy" type="set" to="s.whatsapp.net"><tokens><token jid t
/// type="trusted_contact"/></tokens></iq>` (whatsmeow `tctoken.go` `issuePrivacyToken`), then
/// records when, beside whatever token the contact gave us.
async fn issue(shared: &Shared, contact: &Jid, now: i64) -> Result<()> {
    let token =
        Node::new("token").attr("jid", contact.clone()).attr("t", now).attr("type", "trusted_contact");
    let iq = Node::new("iq")
        .attr("xmlns", "privacy")
        .attr("type", "set")
        .attr("to", server_jid())
        .children([Node::new("tokens").children([token])]);
    shared.iq(iq).await?;
    let key = contact.to_string();
    let mut t = shared.store.get_privacy_token(&key).await?.unwrap_or_default();
    t.sender_timestamp = t.sender_timestamp.max(now);
    shared.store.put_privacy_token(&key, &t).await?;
    debug!(%contact, "issued our privacy token");
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn cs_token_matches_a_worked_example() {
        // Inputs: the salt is the 32 bytes 00 01 … 1f, the recipient `123456789012345@lid`
        // (a device suffix is dropped first). Expected value computed outside Rust, with
        // Python's hmac module: hmac.new(bytes(range(32)), b"123456789012345@lid",
        // hashlib.sha256).hexdigest().
        let salt: Vec<u8> = (0u8..32).collect();
        let lid = Jid::lid("123456789012345").unwrap();
        let expected = "8fb920b283f629fca32fa4a14a4fb9bd852ab9d1c269840c269d1ef65941ba0c";
        assert_eq!(hex::encode(cs_token(&salt, &lid)), expected);
        assert_eq!(hex::encode(cs_token(&salt, &lid.clone().with_device(7).unwrap())), expected);
        assert_ne!(hex::encode(cs_token(&salt[1..], &lid)), expected, "the salt is the key");
    }

    #[test]
    fn tokens_live_four_buckets_and_ours_is_issued_once_per_bucket() {
        let b = TC_TOKEN_BUCKET_SECS;
        let now = 2900 * b + 100; // early in bucket 2900
        // Valid back to the start of bucket 2897 (four buckets: 2897..=2900).
        assert!(!is_expired(2897 * b, now));
        assert!(is_expired(2897 * b - 1, now));
        assert!(is_expired(0, now), "no timestamp: expired");
        assert!(should_issue(0, now), "never issued");
        assert!(!should_issue(2900 * b, now), "already issued in this bucket");
        assert!(should_issue(2900 * b - 1, now), "issued in the previous bucket");
    }

    #[test]
    fn only_people_take_tokens() {
        assert!(takes_tokens(&Jid::lid("123").unwrap()));
        assert!(takes_tokens(&Jid::pn("15550001000").unwrap()));
        assert!(!takes_tokens(&Jid::pn("0").unwrap()), "PSA");
        assert!(!takes_tokens(&Jid::group("1203630").unwrap()));
    }
}
