//! Reach-out restrictions: the account may be barred for a while from starting chats with
//! people who hold no token from it (a *reach-out time-lock*). The server announces the lock
//! and its end in a `mex` notification, answers its current state to a `w:mex` query, and
//! refuses such messages with `<ack error="463">` ([`crate::Error::ReachoutRestricted`]).
//!
//! Shapes: whatsmeow notification.go `handleMexNotification` and types/events
//! `NotifyAccountReachoutTimelock`; Baileys messages-recv.ts `handleReachoutTimelockNotification`
//! and socket.ts `fetchAccountReachoutTimelock` (Types/Mex.ts `REACHOUT_TIMELOCK`).

use serde_json::Value;
use tracing::{debug, warn};
use wa_binary::Node;

use crate::client::{Client, Shared};
use crate::conn::server_jid;
use crate::error::{Error, Result};
use crate::event::Event;

/// The `op_name` of the notification that sets or lifts the lock (Baileys messages-recv.ts).
pub const TIMELOCK_OP_NAME: &str = "NotificationUserReachoutTimelockUpdate";
/// The persisted query id of `xwa2_fetch_account_reachout_timelock` (Baileys Types/Mex.ts
/// `QueryIds.REACHOUT_TIMELOCK`).
pub const TIMELOCK_QUERY_ID: &str = "23983697327930364";
/// How long a lock lasts when the server names no end: WA Web assumes one minute (Baileys
/// messages-recv.ts `handleReachoutTimelockNotification`).
const DEFAULT_LOCK_SECS: u64 = 60;

/// The account's reach-out time-lock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReachoutTimelock {
    /// The lock is in force.
    pub active: bool,
    /// When it ends (unix seconds), while active.
    pub until: Option<u64>,
    /// The server's reason (`enforcement_type`: `DEFAULT`, `RESTRICT_ALL_COMPANIONS`,
    /// `BIZ_QUALITY`, …); `DEFAULT` when it names none.
    pub enforcement_type: String,
}

/// Reads the lock from the server's JSON object (`is_active`, `time_enforcement_ends` as a
/// decimal string of unix seconds, `"0"` for none, `enforcement_type`). `now` fills in the
/// end of an active lock that names none.
fn parse_timelock(v: &Value, now: u64, default_end: bool) -> Result<ReachoutTimelock> {
    let obj = v.as_object().ok_or_else(|| Error::Malformed("reach-out time-lock is not an object".into()))?;
    let active = obj.get("is_active").and_then(Value::as_bool).unwrap_or(false);
    let ends = match obj.get("time_enforcement_ends") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => {
            Some(s.parse::<u64>().map_err(|_| Error::Malformed(format!("time_enforcement_ends {s:?}")))?)
        }
        Some(Value::Number(n)) => n.as_u64(),
        Some(other) => return Err(Error::Malformed(format!("time_enforcement_ends {other}"))),
    }
    .filter(|&t| t > 0);
    let until = match (active, ends) {
        (false, _) => None,
        (true, Some(t)) => Some(t),
        (true, None) => default_end.then_some(now + DEFAULT_LOCK_SECS),
    };
    let enforcement_type = obj
        .get("enforcement_type")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .unwrap_or("DEFAULT")
        .to_owned();
    Ok(ReachoutTimelock { active, until, enforcement_type })
}

/// `<notification type="mex"><update op_name=…>{"data":{…}}</update></notification>`: a
/// reach-out lock update becomes [`Event::ReachoutTimelock`]; other operations are logged.
pub(crate) fn on_mex_notification(shared: &Shared, node: &Node) {
    for update in node.children_by_tag("update") {
        let op = update.opt_attr_str("op_name").unwrap_or_default();
        if op != TIMELOCK_OP_NAME {
            debug!(op = %op, "mex notification");
            continue;
        }
        let parsed = update
            .content_bytes()
            .ok_or_else(|| Error::Malformed("mex update without JSON".into()))
            .and_then(|b| {
                serde_json::from_slice::<Value>(b).map_err(|e| Error::Malformed(format!("mex JSON: {e}")))
            })
            .and_then(|v| {
                let lock = v.pointer("/data/xwa2_notify_account_reachout_timelock").ok_or_else(|| {
                    Error::Malformed("mex update without xwa2_notify_account_reachout_timelock".into())
                })?;
                parse_timelock(lock, u64::try_from(shared.now()).unwrap_or(0), true)
            });
        match parsed {
            Ok(l) => shared.emit(Event::ReachoutTimelock {
                active: l.active,
                until: l.until,
                enforcement_type: l.enforcement_type,
            }),
            Err(e) => warn!(%e, "malformed reach-out time-lock notification"),
        }
    }
}

impl Client {
    /// Asks the server whether the account is under a reach-out time-lock now: `<iq
    /// xmlns="w:mex" type="get"><query query_id>{"variables":{}}</query></iq>`, answered with
    /// `<result>{"data":{"xwa2_fetch_account_reachout_timelock":{…}}}</result>` (Baileys
    /// socket.ts `fetchAccountReachoutTimelock`, mex.ts `executeWMexQuery`).
    pub async fn reachout_timelock(&self) -> Result<ReachoutTimelock> {
        let query =
            Node::new("query").attr("query_id", TIMELOCK_QUERY_ID).bytes(br#"{"variables":{}}"#.to_vec());
        let iq = Node::new("iq")
            .attr("xmlns", "w:mex")
            .attr("type", "get")
            .attr("to", server_jid())
            .children([query]);
        let answer = self.shared.iq(iq).await?;
        let body = answer
            .child("result")
            .and_then(Node::content_bytes)
            .ok_or_else(|| Error::Malformed("w:mex answer without <result>".into()))?;
        let v: Value =
            serde_json::from_slice(body).map_err(|e| Error::Malformed(format!("w:mex JSON: {e}")))?;
        if let Some(err) = v.get("errors").and_then(Value::as_array).and_then(|a| a.first()) {
            let code = err.pointer("/extensions/error_code").and_then(Value::as_u64).unwrap_or(400);
            return Err(Error::Iq {
                what: "reach-out time-lock".into(),
                code: u16::try_from(code).unwrap_or(400),
                text: err.get("message").and_then(Value::as_str).unwrap_or("GraphQL error").to_owned(),
            });
        }
        let lock = v.pointer("/data/xwa2_fetch_account_reachout_timelock").ok_or_else(|| {
            Error::Malformed("w:mex answer without xwa2_fetch_account_reachout_timelock".into())
        })?;
        parse_timelock(lock, 0, false)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use serde_json::json;

    use super::*;

    #[test]
    fn reads_the_lock_as_the_references_do() {
        let on = json!({"is_active": true, "time_enforcement_ends": "1752672830", "enforcement_type": "RESTRICT_ALL_COMPANIONS"});
        assert_eq!(
            parse_timelock(&on, 100, true).unwrap(),
            ReachoutTimelock {
                active: true,
                until: Some(1_752_672_830),
                enforcement_type: "RESTRICT_ALL_COMPANIONS".into()
            }
        );
        // An active lock without an end lasts a minute in a notification, is open in a query.
        let open = json!({"is_active": true});
        assert_eq!(parse_timelock(&open, 100, true).unwrap().until, Some(160));
        assert_eq!(parse_timelock(&open, 100, false).unwrap().until, None);
        let off = json!({"is_active": false, "time_enforcement_ends": "0"});
        assert_eq!(
            parse_timelock(&off, 100, true).unwrap(),
            ReachoutTimelock { active: false, until: None, enforcement_type: "DEFAULT".into() }
        );
        assert!(matches!(
            parse_timelock(&json!({"time_enforcement_ends": "soon"}), 0, true),
            Err(Error::Malformed(_))
        ));
        assert!(matches!(parse_timelock(&json!([1]), 0, true), Err(Error::Malformed(_))));
    }
}
