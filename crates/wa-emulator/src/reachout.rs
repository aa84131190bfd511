//! Reach-out limits: how the service keeps an account from messaging too many people who
//! never gave it a trusted-contact token.
//!
//! A companion's 1:1 message is a *reach-out* unless it carries a valid `<tctoken>` (the
//! token the recipient's phone gave the sender's account) or goes to someone the account
//! already chatted with. Reach-outs are refused with `<ack error="463">` when the account is
//! restricted, while a time-lock is in force, or beyond the per-window limit of new contacts;
//! a message with a valid token always goes through (sources: Baileys messages-recv.ts on
//! 463 — "WhatsApp blocks starting new chats but preserves existing ones, since established
//! chats already carry a tctoken"; whatsmeow issue #1197, `RESTRICT_ALL_COMPANIONS`: "restricted
//! from sending to new contacts"; Baileys #2707, #2688). `<cstoken>` (HMAC-SHA256 of the
//! account's NCT salt over the recipient's LID, whatsmeow `cstoken.go`) is verified and
//! reported ([`WorldEvent::ReachOut`]) but weighs nothing: how the service weighs it is not
//! public. The time-lock is announced as `<notification type="mex"><update
//! op_name="NotificationUserReachoutTimelockUpdate">` JSON (whatsmeow notification.go
//! `handleMexNotification`, Baileys messages-recv.ts) and answered to the `w:mex` query
//! `xwa2_fetch_account_reachout_timelock` (Baileys socket.ts `fetchAccountReachoutTimelock`).

use std::collections::{HashMap, HashSet, VecDeque};

use rand_core::Rng;
use serde::{Deserialize, Serialize};
use serde_json::json;
use wa_binary::{Jid, Node, Server};

use crate::notifications::TC_TOKEN_BUCKET_SECS;
use crate::world::{AccountId, DeviceAddr, World, WorldEvent, attr, server_jid};

/// Buckets a token stays valid for (whatsmeow `tctoken.go` `tcTokenNumBuckets`, the AB prop
/// `tctoken_num_buckets`).
pub const TC_TOKEN_NUM_BUCKETS: u64 = 4;
/// The `op_name` of a time-lock update (Baileys messages-recv.ts, whatsmeow issue #1197).
pub const TIMELOCK_OP_NAME: &str = "NotificationUserReachoutTimelockUpdate";
/// The persisted query id of `xwa2_fetch_account_reachout_timelock` (Baileys Types/Mex.ts).
pub const TIMELOCK_QUERY_ID: &str = "23983697327930364";

/// How many new contacts an account may reach out to per window.
///
/// The default is a documented estimate, not a published number: the service publishes no
/// limit for companion accounts. Meta's WhatsApp Business Platform documents tiers of
/// business-initiated conversations with unique customers per rolling 24 hours
/// (developers.facebook.com/docs/whatsapp/messaging-limits: 250 for a new number, then 1,000,
/// 10,000, 100,000); the default is the tier of an established number, 10,000, so that the
/// emulator's accounts behave like warmed-up ones unless a test sets a new number's limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReachoutLimits {
    /// New contacts allowed per window.
    pub new_contacts: u32,
    /// The window, seconds (rolling).
    pub window_secs: u64,
}

impl Default for ReachoutLimits {
    fn default() -> Self {
        Self { new_contacts: 10_000, window_secs: 86_400 }
    }
}

/// A reach-out time-lock in force.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timelock {
    /// When it ends, unix seconds.
    pub until: u64,
    /// The reason the service names (`enforcement_type`, e.g. `RESTRICT_ALL_COMPANIONS`).
    pub enforcement_type: String,
}

/// The token a companion's 1:1 message carried, as the server judged it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenSeen {
    /// A `<tctoken>` the recipient's account gave the sender, still fresh.
    TcToken,
    /// A `<tctoken>` that is unknown, someone else's, or expired.
    BadTcToken,
    /// A `<cstoken>` equal to HMAC-SHA256(sender's NCT salt, recipient's LID).
    CsToken,
    /// A `<cstoken>` that does not match.
    BadCsToken,
    /// Neither.
    None,
}

/// What the server remembers about reach-outs.
#[derive(Debug, Default)]
pub(crate) struct Reachout {
    /// Per-account limits (absent: [`ReachoutLimits::default`]).
    pub limits: HashMap<AccountId, ReachoutLimits>,
    /// New contacts each account reached out to: (when, whom), oldest first.
    pub reached: HashMap<AccountId, VecDeque<(u64, AccountId)>>,
    /// Accounts under a time-lock.
    pub timelocks: HashMap<AccountId, Timelock>,
    /// Accounts restricted from any reach-out until lifted.
    pub restricted: HashSet<AccountId>,
    /// Tokens accounts gave others: (issuer, holder) → (bytes, t).
    pub tokens: HashMap<(AccountId, AccountId), (Vec<u8>, u64)>,
}

/// A token issued at `t` is still valid at `now` (whatsmeow `isTCTokenExpired`: the window is
/// the current bucket and the three before it).
fn token_fresh(t: u64, now: u64) -> bool {
    let cutoff = (now / TC_TOKEN_BUCKET_SECS).saturating_sub(TC_TOKEN_NUM_BUCKETS - 1) * TC_TOKEN_BUCKET_SECS;
    t >= cutoff
}

impl World {
    /// Sets an account's reach-out limits.
    pub fn set_reachout_limits(&mut self, account: AccountId, limits: ReachoutLimits) {
        self.reachout.limits.insert(account, limits);
    }

    /// An account's reach-out limits.
    pub fn reachout_limits(&self, account: AccountId) -> ReachoutLimits {
        self.reachout.limits.get(&account).copied().unwrap_or_default()
    }

    /// Whether an account is restricted from every reach-out.
    pub fn reachout_restricted(&self, account: AccountId) -> bool {
        self.reachout.restricted.contains(&account)
    }

    /// Restricts an account from every reach-out (only messages carrying a valid token go
    /// through), or lifts that.
    pub fn set_reachout_restricted(&mut self, account: AccountId, restricted: bool) {
        if restricted {
            self.reachout.restricted.insert(account);
        } else {
            self.reachout.restricted.remove(&account);
        }
    }

    /// The account's NCT salt: what its phone hands companions in history sync (`nctSalt`)
    /// for cs-tokens. Derived from the account's LID, so it needs no state.
    pub fn nct_salt(&self, account: AccountId) -> [u8; 32] {
        wa_crypto::sha256(&[b"wa-emulator nct salt ", self.accounts[account].lid.as_bytes()])
    }

    /// New contacts the account reached out to in the current window.
    pub fn reachouts_in_window(&mut self, account: AccountId) -> usize {
        self.prune_reachouts(account);
        self.reachout.reached.get(&account).map_or(0, VecDeque::len)
    }

    fn prune_reachouts(&mut self, account: AccountId) {
        let window = self.reachout.limits.get(&account).copied().unwrap_or_default().window_secs;
        let now = self.now();
        if let Some(q) = self.reachout.reached.get_mut(&account) {
            while q.front().is_some_and(|&(t, _)| t + window <= now) {
                q.pop_front();
            }
        }
    }

    /// Puts the account under a time-lock until `until` (unix seconds): its companions get
    /// the `mex` notification at once.
    pub fn set_reachout_timelock(&mut self, account: AccountId, until: u64, enforcement_type: &str) {
        let lock = Timelock { until, enforcement_type: enforcement_type.to_owned() };
        self.reachout.timelocks.insert(account, lock.clone());
        self.notify_timelock(account, Some(&lock));
    }

    /// Ends the account's time-lock now, if one is set: its companions are told.
    pub fn lift_reachout_timelock(&mut self, account: AccountId) {
        if self.reachout.timelocks.remove(&account).is_some() {
            self.notify_timelock(account, None);
        }
    }

    /// The account's time-lock, if in force; one whose end has passed ends here (and the
    /// companions are told), as the service lifts it by itself.
    pub fn reachout_timelock(&mut self, account: AccountId) -> Option<Timelock> {
        let lock = self.reachout.timelocks.get(&account)?.clone();
        if lock.until <= self.now() {
            self.lift_reachout_timelock(account);
            return None;
        }
        Some(lock)
    }

    /// The time-lock as the service's JSON (`is_active`, `time_enforcement_ends` as a string of
    /// unix seconds, `"0"` when none, `enforcement_type`).
    fn timelock_json(lock: Option<&Timelock>) -> serde_json::Value {
        match lock {
            Some(l) => json!({
                "is_active": true,
                "time_enforcement_ends": l.until.to_string(),
                "enforcement_type": l.enforcement_type,
            }),
            None => {
                json!({ "is_active": false, "time_enforcement_ends": "0", "enforcement_type": "DEFAULT" })
            }
        }
    }

    fn notify_timelock(&mut self, account: AccountId, lock: Option<&Timelock>) {
        let body = json!({ "data": { "xwa2_notify_account_reachout_timelock": Self::timelock_json(lock) } });
        let update =
            Node::new("update").attr("op_name", TIMELOCK_OP_NAME).bytes(body.to_string().into_bytes());
        let note = self.notification("mex", server_jid(), vec![update]);
        self.deliver_to_companions(account, &note);
    }

    /// `<iq xmlns="w:mex" type="get"><query query_id>{"variables":{}}</query>`: the time-lock
    /// query is answered with `<result>` JSON; other query ids are not supported.
    pub(crate) fn on_mex_query(&mut self, account: AccountId, iq: &Node) -> Option<Node> {
        let query = iq.child("query")?;
        if attr(query, "query_id") != TIMELOCK_QUERY_ID {
            return None;
        }
        let lock = self.reachout_timelock(account);
        let body =
            json!({ "data": { "xwa2_fetch_account_reachout_timelock": Self::timelock_json(lock.as_ref()) } });
        Some(self.iq_result(iq).children([Node::new("result").bytes(body.to_string().into_bytes())]))
    }

    /// The token `issuer`'s account gave `holder`, with its time, if any.
    pub fn token_given(&self, issuer: AccountId, holder: AccountId) -> Option<(Vec<u8>, u64)> {
        self.reachout.tokens.get(&(issuer, holder)).cloned()
    }

    /// Gives `issuer`'s trusted-contact token to `holder`: stored (for checking `<tctoken>`s
    /// later) and delivered to the holder's companions as `<notification
    /// type="privacy_token">` (see `notifications::issue_privacy_token`); the holder's phone
    /// keeps it for history sync (`Conversation.tcToken`).
    pub fn give_token(&mut self, issuer: AccountId, holder: AccountId) {
        let now = self.now();
        let mut token = vec![0u8; 24];
        self.rng.fill_bytes(&mut token);
        self.reachout.tokens.insert((issuer, holder), (token.clone(), now));
        let (i, h) = (self.accounts[issuer].pn.clone(), self.accounts[holder].pn.clone());
        self.emit(WorldEvent::TokenGiven { issuer: i, holder: h });
        let tokens = Node::new("tokens")
            .children([Node::new("token").attr("type", "trusted_contact").attr("t", now).bytes(token)]);
        let lid = self.user_jid(issuer, Server::Lid);
        let note = self.notification("privacy_token", self.user_jid(issuer, Server::Pn), vec![tokens]);
        let note = note.attr("sender_lid", lid);
        self.deliver_to_companions(holder, &note);
    }

    /// `<iq xmlns="privacy" type="set"><tokens><token jid t type="trusted_contact"/>…`: a
    /// companion gives its account's token to each contact named (whatsmeow `tctoken.go`
    /// `issuePrivacyToken`); the answer carries no token (whatsapp-rust PR #966).
    pub(crate) fn on_issue_tokens(&mut self, issuer: AccountId, iq: &Node) -> Node {
        let holders: Vec<AccountId> = iq
            .child("tokens")
            .map(|t| {
                t.children_by_tag("token")
                    .filter(|n| attr(n, "type") == "trusted_contact")
                    .filter_map(|n| n.attr_jid("jid").ok())
                    .filter_map(|j| self.account_of(&j))
                    .filter(|&a| a != issuer)
                    .collect()
            })
            .unwrap_or_default();
        for h in holders {
            self.give_token(issuer, h);
        }
        self.iq_result(iq)
    }

    /// Judges the token a companion's 1:1 message carries.
    fn token_seen(&self, sender: AccountId, recipient: AccountId, msg: &Node) -> TokenSeen {
        if let Some(tc) = msg.child("tctoken") {
            let fresh = self.reachout.tokens.get(&(recipient, sender)).is_some_and(|(bytes, t)| {
                tc.content_bytes() == Some(bytes.as_slice()) && token_fresh(*t, self.now())
            });
            return if fresh { TokenSeen::TcToken } else { TokenSeen::BadTcToken };
        }
        if let Some(cs) = msg.child("cstoken") {
            let lid = self.user_jid(recipient, Server::Lid).to_string();
            let want = wa_crypto::hmac_sha256(&self.nct_salt(sender), &[lid.as_bytes()]);
            return if cs.content_bytes() == Some(&want[..]) {
                TokenSeen::CsToken
            } else {
                TokenSeen::BadCsToken
            };
        }
        TokenSeen::None
    }

    /// Checks a companion's 1:1 message to `to` against the reach-out rules; `Err(463)` when it
    /// must be refused. A reach-out that goes through is counted.
    pub(crate) fn check_reachout(&mut self, sender: DeviceAddr, to: &Jid, msg: &Node) -> Result<(), u16> {
        if attr(msg, "category") == "peer" {
            return Ok(());
        }
        let Some(recipient) = self.account_of(to) else { return Ok(()) };
        let account = sender.account;
        if recipient == account {
            return Ok(());
        }
        let token = self.token_seen(account, recipient, msg);
        let chatted = self.traffic.chats.contains(&(account.min(recipient), account.max(recipient)));
        self.prune_reachouts(account);
        let reached = self.reachout.reached.entry(account).or_default();
        let counted_already = reached.iter().any(|&(_, a)| a == recipient);
        let used = reached.len();
        let limit = self.reachout.limits.get(&account).copied().unwrap_or_default().new_contacts as usize;
        let locked = self.reachout_timelock(account).is_some();
        let restricted = self.reachout.restricted.contains(&account);
        let outcome = if token == TokenSeen::TcToken {
            Ok(false)
        } else if restricted || locked {
            Err(463)
        } else if chatted || counted_already {
            Ok(false)
        } else if used >= limit {
            Err(463)
        } else {
            Ok(true)
        };
        if outcome == Ok(true) {
            let now = self.now();
            self.reachout.reached.entry(account).or_default().push_back((now, recipient));
        }
        let pn = self.accounts[account].pn.clone();
        let to_pn = self.accounts[recipient].pn.clone();
        let id = attr(msg, "id");
        let new_contact = outcome == Ok(true);
        self.emit(WorldEvent::ReachOut {
            pn,
            device: sender.device,
            id,
            to: to_pn,
            token,
            new_contact,
            refused: outcome.is_err(),
        });
        outcome.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::testutil::{add_companion, login, of, sent, world};

    fn dm(w: &World, to: AccountId, id: &str, extra: Option<Node>) -> Node {
        let lid = w.user_jid(to, Server::Lid);
        Node::new("message").attr("to", lid).attr("id", id).children(extra)
    }

    #[test]
    fn first_contacts_beyond_the_limit_are_refused_and_tokens_open_the_way() {
        let (mut w, clock) = world(4);
        let me = DeviceAddr { account: 0, device: 5 };
        w.set_reachout_limits(0, ReachoutLimits { new_contacts: 1, window_secs: 3600 });
        let to = |w: &World, a| w.user_jid(a, Server::Lid);
        assert_eq!(w.check_reachout(me, &to(&w, 1), &dm(&w, 1, "a", None)), Ok(()));
        assert_eq!(w.check_reachout(me, &to(&w, 1), &dm(&w, 1, "b", None)), Ok(()), "counted once");
        assert_eq!(w.check_reachout(me, &to(&w, 2), &dm(&w, 2, "c", None)), Err(463), "over the limit");
        // Account 3's phone gives us its token: a message carrying it goes through.
        w.give_token(3, 0);
        let token = w.reachout.tokens[&(3, 0)].0.clone();
        let with = dm(&w, 3, "d", Some(Node::new("tctoken").bytes(token.clone())));
        assert_eq!(w.check_reachout(me, &to(&w, 3), &with), Ok(()));
        // Someone else's token does not.
        let wrong = dm(&w, 2, "e", Some(Node::new("tctoken").bytes(token.clone())));
        assert_eq!(w.check_reachout(me, &to(&w, 2), &wrong), Err(463));
        // The window rolls on.
        clock.advance(3600);
        assert_eq!(w.reachouts_in_window(0), 0);
        assert_eq!(w.check_reachout(me, &to(&w, 2), &dm(&w, 2, "f", None)), Ok(()));
        // A token expires after four buckets.
        clock.advance(4 * TC_TOKEN_BUCKET_SECS);
        w.set_reachout_restricted(0, true);
        assert_eq!(w.check_reachout(me, &to(&w, 3), &with), Err(463));
        let refused =
            w.events.iter().filter(|e| matches!(e, WorldEvent::ReachOut { refused: true, .. })).count();
        assert_eq!(refused, 3);
    }

    #[test]
    fn a_restricted_or_time_locked_account_reaches_only_token_holders() {
        let (mut w, clock) = world(3);
        let c = add_companion(&mut w, 0, 5);
        let (conn, mut rx) = login(&mut w, c);
        sent(&mut rx);
        // Account 1 already chatted with us: fine normally, refused while locked.
        let bob = w.user_jid(1, Server::Pn);
        w.phone_send(1, &w.user_jid(0, Server::Pn), &Default::default()).unwrap();
        let now = w.now();
        w.set_reachout_timelock(0, now + 100, "RESTRICT_ALL_COMPANIONS");
        let got = sent(&mut rx);
        let note = of(&got, "notification", Some("mex"))[0];
        let update = note.child("update").unwrap();
        assert_eq!(attr(update, "op_name"), TIMELOCK_OP_NAME);
        let v: serde_json::Value = serde_json::from_slice(update.content_bytes().unwrap()).unwrap();
        assert_eq!(
            v["data"]["xwa2_notify_account_reachout_timelock"],
            json!({"is_active": true, "time_enforcement_ends": (now + 100).to_string(), "enforcement_type": "RESTRICT_ALL_COMPANIONS"})
        );
        assert_eq!(w.check_reachout(c, &bob, &dm(&w, 1, "x", None)), Err(463));
        // Bob's token still opens his chat.
        let token = w.reachout.tokens[&(1, 0)].0.clone();
        assert_eq!(
            w.check_reachout(c, &bob, &dm(&w, 1, "y", Some(Node::new("tctoken").bytes(token)))),
            Ok(())
        );
        // The query answers the lock; once its end passes it is lifted and announced.
        let q = Node::new("iq").attr("id", "q1").attr("xmlns", "w:mex").attr("type", "get").children([
            Node::new("query").attr("query_id", TIMELOCK_QUERY_ID).bytes(br#"{"variables":{}}"#.to_vec()),
        ]);
        let answer = w.on_mex_query(0, &q).unwrap();
        let v: serde_json::Value =
            serde_json::from_slice(answer.child("result").unwrap().content_bytes().unwrap()).unwrap();
        assert_eq!(v["data"]["xwa2_fetch_account_reachout_timelock"]["is_active"], true);
        clock.advance(100);
        assert_eq!(w.reachout_timelock(0), None);
        let ended = sent(&mut rx);
        let note = of(&ended, "notification", Some("mex"))[0];
        let v: serde_json::Value =
            serde_json::from_slice(note.child("update").unwrap().content_bytes().unwrap()).unwrap();
        assert_eq!(v["data"]["xwa2_notify_account_reachout_timelock"]["is_active"], false);
        assert_eq!(w.check_reachout(c, &bob, &dm(&w, 1, "z", None)), Ok(()));
        // Restricted: even the old chat needs a token.
        w.set_reachout_restricted(0, true);
        assert_eq!(w.check_reachout(c, &bob, &dm(&w, 1, "w", None)), Err(463));
        let _ = conn;
    }

    #[test]
    fn cs_tokens_are_checked_against_the_senders_salt() {
        let (mut w, _) = world(2);
        let me = DeviceAddr { account: 0, device: 5 };
        let lid = w.user_jid(1, Server::Lid);
        let good = wa_crypto::hmac_sha256(&w.nct_salt(0), &[lid.to_string().as_bytes()]);
        let bad = wa_crypto::hmac_sha256(&w.nct_salt(1), &[lid.to_string().as_bytes()]);
        w.check_reachout(me, &lid, &dm(&w, 1, "a", Some(Node::new("cstoken").bytes(good.to_vec())))).unwrap();
        w.check_reachout(me, &lid, &dm(&w, 1, "b", Some(Node::new("cstoken").bytes(bad.to_vec())))).unwrap();
        let seen: Vec<TokenSeen> = w
            .events
            .iter()
            .filter_map(|e| match e {
                WorldEvent::ReachOut { token, .. } => Some(*token),
                _ => None,
            })
            .collect();
        assert_eq!(seen, [TokenSeen::CsToken, TokenSeen::BadCsToken]);
    }
}
