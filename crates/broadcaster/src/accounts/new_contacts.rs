//! The per-account limit on *new contacts* a day: people the account never exchanged a message
//! with. WhatsApp restricts first contacts far more than messages in existing chats (a first
//! contact without the recipient's token is a "reach-out": error 463 and time-locks, issue 16),
//! so first contacts have their own budget beside the total daily limit.
//!
//! Cheap by construction: `account_contacts` holds who each account knows (one primary-key
//! probe per send) and the account row carries today's count and the day it belongs to (one
//! row update per first contact); nothing counts over `messages`.

use crate::db::{Conn, DbResult, OptionalExtension, params};

/// New contacts an account may reach a day unless set otherwise. A conservative estimate,
/// not a published number (WhatsApp publishes none for companion devices): Meta's Business
/// Platform lets an unverified number start 250 conversations with unique customers per
/// rolling 24 hours, and long let new ones start 50; a personal account driven from a companion
/// is trusted less than a verified business one, so the default stays at the lower figure.
/// Raise it per account (`new_contact_limit`) for a number with a long, clean history.
pub const DEFAULT_NEW_CONTACT_LIMIT: i64 = 50;

/// What the limit says about one outgoing message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirstContact {
    /// A group, or someone the account already knows: the limit does not apply.
    Known,
    /// A first contact, counted (the recipient is known from now on).
    Counted,
    /// A first contact over today's limit: nothing was recorded; it may go at `reset_at`.
    LimitReached { limit: i64, reset_at: i64 },
}

/// Today's counter as stored: `(day start, count)`; a count from another day is zero.
pub fn today(day_stored: i64, count_stored: i64, day_start: i64) -> i64 {
    if day_stored == day_start { count_stored } else { 0 }
}

/// Judges a message from `account_id` to `chat_jid` (inside the caller's transaction) and,
/// for a first contact within the limit, counts it and records the contact as known, its
/// first message `message_id`. `day` is the account's current day `(start, reset_at)`.
pub fn admit(
    c: &Conn,
    account_id: &str,
    chat_jid: &str,
    message_id: &str,
    day: (i64, i64),
    now: i64,
) -> DbResult<FirstContact> {
    if chat_jid.ends_with("@g.us") || is_known(c, account_id, chat_jid)? {
        return Ok(FirstContact::Known);
    }
    let (start, reset_at) = day;
    let Some((limit, day_stored, count)): Option<(i64, i64, i64)> = c
        .prepare_cached(
            "SELECT new_contact_limit, new_contacts_day, new_contacts_today FROM accounts WHERE id = ?1",
        )?
        .query_row(params![account_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?
    else {
        return Ok(FirstContact::Known);
    };
    if today(day_stored, count, start) >= limit {
        return Ok(FirstContact::LimitReached { limit, reset_at });
    }
    c.prepare_cached(
        "UPDATE accounts SET new_contacts_today = CASE WHEN new_contacts_day = ?2 THEN new_contacts_today + 1 ELSE 1 END,
           new_contacts_day = ?2 WHERE id = ?1",
    )?
    .execute(params![account_id, start])?;
    c.prepare_cached(
        "INSERT INTO account_contacts (account_id, chat_jid, first_message_id, first_at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (account_id, chat_jid) DO NOTHING",
    )?
    .execute(params![account_id, chat_jid, message_id, now])?;
    Ok(FirstContact::Counted)
}

/// The account has exchanged a message with `chat_jid`.
pub fn is_known(c: &Conn, account_id: &str, chat_jid: &str) -> DbResult<bool> {
    Ok(c.prepare_cached("SELECT 1 FROM account_contacts WHERE account_id = ?1 AND chat_jid = ?2")?
        .query_row(params![account_id, chat_jid], |r| r.get::<i64>(0))
        .optional()?
        .is_some())
}

/// Someone wrote to the account: from now on they are a known contact.
pub fn note_incoming(c: &Conn, account_id: &str, chat_jid: &str, now: i64) -> DbResult<()> {
    if chat_jid.ends_with("@g.us") {
        return Ok(());
    }
    c.prepare_cached(
        "INSERT INTO account_contacts (account_id, chat_jid, first_message_id, first_at) VALUES (?1, ?2, NULL, ?3)
         ON CONFLICT (account_id, chat_jid) DO NOTHING",
    )?
    .execute(params![account_id, chat_jid, now])?;
    Ok(())
}

/// The first message `message_id` to a contact failed: the contact is not known after all
/// (a later message is a first contact again). WhatsApp saw the attempt (a refused reach-out
/// counts there too), so today's count stays.
pub fn forget_failed_first(c: &Conn, account_id: &str, message_id: &str) -> DbResult<()> {
    c.prepare_cached("DELETE FROM account_contacts WHERE account_id = ?1 AND first_message_id = ?2")?
        .execute(params![account_id, message_id])?;
    Ok(())
}

/// The first message `message_id` never left (its number is not on WhatsApp): the contact is
/// forgotten and its count given back, if the counter is still on the day it was counted.
pub fn undo_unsent_first(c: &Conn, account_id: &str, message_id: &str) -> DbResult<()> {
    let first_at: Option<i64> = c
        .prepare_cached(
            "SELECT first_at FROM account_contacts WHERE account_id = ?1 AND first_message_id = ?2",
        )?
        .query_row(params![account_id, message_id], |r| r.get(0))
        .optional()?;
    let Some(first_at) = first_at else { return Ok(()) };
    c.prepare_cached("DELETE FROM account_contacts WHERE account_id = ?1 AND first_message_id = ?2")?
        .execute(params![account_id, message_id])?;
    c.prepare_cached(
        "UPDATE accounts SET new_contacts_today = new_contacts_today - 1
         WHERE id = ?1 AND new_contacts_day <= ?2 AND new_contacts_today > 0",
    )?
    .execute(params![account_id, first_at])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::Db;

    const DAY: i64 = 86_400_000;

    #[tokio::test]
    async fn first_contacts_are_counted_once_a_day_up_to_the_limit() {
        let db = Db::open_in_memory().unwrap();
        db.call(|c| {
            c.execute("INSERT INTO tenants (id, name, created_at) VALUES ('t','t',0)", [])?;
            c.execute(
                "INSERT INTO accounts (id, tenant_id, name, state, daily_limit, time_zone, created_at, updated_at, new_contact_limit)
                 VALUES ('a','t','a','active',1000,'UTC',0,0,2)",
                [],
            )?;
            let day1 = (DAY, 2 * DAY);
            let jid = |n: u32| format!("1555000000{n}@s.whatsapp.net");
            assert_eq!(admit(c, "a", &jid(1), "m1", day1, DAY + 1)?, FirstContact::Counted);
            // The same person again, and a group: not first contacts.
            assert_eq!(admit(c, "a", &jid(1), "m2", day1, DAY + 2)?, FirstContact::Known);
            assert_eq!(admit(c, "a", "123-456@g.us", "m3", day1, DAY + 3)?, FirstContact::Known);
            // Someone who wrote first is known.
            note_incoming(c, "a", &jid(2), DAY + 4)?;
            assert_eq!(admit(c, "a", &jid(2), "m4", day1, DAY + 5)?, FirstContact::Known);
            assert_eq!(admit(c, "a", &jid(3), "m5", day1, DAY + 6)?, FirstContact::Counted);
            assert_eq!(
                admit(c, "a", &jid(4), "m6", day1, DAY + 7)?,
                FirstContact::LimitReached { limit: 2, reset_at: 2 * DAY }
            );
            // A first message that never left gives its count back; one that failed keeps it
            // but the person stays new.
            undo_unsent_first(c, "a", "m5")?;
            assert!(!is_known(c, "a", &jid(3))?);
            assert_eq!(admit(c, "a", &jid(4), "m7", day1, DAY + 8)?, FirstContact::Counted);
            forget_failed_first(c, "a", "m7")?;
            assert!(!is_known(c, "a", &jid(4))?);
            assert!(matches!(admit(c, "a", &jid(4), "m8", day1, DAY + 9)?, FirstContact::LimitReached { .. }));
            // The next day starts from zero.
            let day2 = (2 * DAY, 3 * DAY);
            assert_eq!(admit(c, "a", &jid(4), "m9", day2, 2 * DAY + 1)?, FirstContact::Counted);
            let (day, count): (i64, i64) = c.query_row(
                "SELECT new_contacts_day, new_contacts_today FROM accounts WHERE id = 'a'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            assert_eq!((day, count), (2 * DAY, 1));
            Ok(())
        })
        .await
        .unwrap();
    }

    #[test]
    fn a_count_from_another_day_is_zero() {
        assert_eq!(today(1000, 7, 1000), 7);
        assert_eq!(today(1000, 7, 2000), 0);
    }
}
