//! An account's reach-out time-lock: WhatsApp's notice that, until a time, the account may not
//! message people who never gave it a token (wa-client `Event::ReachoutTimelock`; whatsmeow
//! `NotifyAccountReachoutTimelock`, Baileys `reachoutTimeLock`). Every first contact it tries
//! meanwhile is refused (463) and counts against it, so the server stops reaching out: the
//! account's campaigns pause with the reason [`REASON`] until the end (the campaign engine
//! resumes them), and its bulk messages move back by the lock's length, keeping their pace.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::db::{Conn, DbResult, OptionalExtension, params};

/// The reason (and `campaign_status` reason) of a campaign paused for a time-lock.
pub const REASON: &str = "reachout_timelock";

/// An account's time-lock in force (`reachout_timelock` of the account JSON, and `data` of the
/// `reachout_timelock` event, where `active: false` announces its end).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Timelock {
    pub account_id: String,
    /// The lock is in force.
    pub active: bool,
    /// When it ends (ms since epoch), while active; campaigns resume then.
    pub until: Option<i64>,
    /// WhatsApp's reason (`enforcement_type`, e.g. `RESTRICT_ALL_COMPANIONS`; `DEFAULT`).
    pub enforcement_type: Option<String>,
}

/// The account's lock in force at `now`, if any: `(until, enforcement type)`.
pub fn in_force(c: &Conn, account_id: &str, now: i64) -> DbResult<Option<(i64, Option<String>)>> {
    let row: Option<(Option<i64>, Option<String>)> = c
        .query_row(
            "SELECT reachout_locked_until, reachout_lock_type FROM accounts WHERE id = ?1",
            params![account_id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    Ok(row.and_then(|(until, kind)| until.filter(|u| *u > now).map(|u| (u, kind))))
}

/// Records a lock set (`until`) or lifted (`None`) for the account at `now`, inside a
/// transaction: moves its queued bulk messages by the change of the lock's end, and writes the
/// `reachout_timelock` webhook event. Returns the event's data when something changed (a state
/// asked for after a reconnection is usually the one already recorded).
pub fn apply(
    c: &mut Conn,
    tenant_id: &str,
    account_id: &str,
    until: Option<i64>,
    enforcement_type: &str,
    now: i64,
) -> DbResult<Option<Timelock>> {
    let tx = c.transaction()?;
    let before = in_force(&tx, account_id, now)?;
    let until = until.filter(|u| *u > now);
    if before.as_ref().map(|b| b.0) == until {
        return Ok(None);
    }
    // Bulk messages keep their pace: all move by how much later sending may start.
    let shift = until.unwrap_or(now) - before.as_ref().map_or(now, |b| b.0);
    if shift != 0 {
        tx.execute(
            "UPDATE messages SET due_at = CASE WHEN due_at + ?2 < ?3 THEN ?3 ELSE due_at + ?2 END
             WHERE account_id = ?1 AND bulk_id IS NOT NULL AND status = 'pending' AND due_at IS NOT NULL",
            params![account_id, shift, now],
        )?;
    }
    let kind = until.map(|_| enforcement_type.to_owned());
    tx.execute(
        "UPDATE accounts SET reachout_locked_until = ?3, reachout_lock_type = ?4 WHERE tenant_id = ?1 AND id = ?2",
        params![tenant_id, account_id, until, kind],
    )?;
    let lock = Timelock {
        account_id: account_id.to_owned(),
        active: until.is_some(),
        until,
        enforcement_type: Some(enforcement_type.to_owned()),
    };
    crate::outbox::enqueue(
        &tx,
        tenant_id,
        Some(account_id),
        "reachout_timelock",
        serde_json::to_value(&lock).unwrap_or_default(),
        now,
    )?;
    tx.commit()?;
    Ok(Some(lock))
}

/// When bulk messages admitted now for the account may start: the end of its lock, if one is
/// in force.
pub fn bulk_start(c: &Conn, account_id: &str, now: i64) -> DbResult<i64> {
    Ok(in_force(c, account_id, now)?.map_or(now, |(until, _)| until))
}
