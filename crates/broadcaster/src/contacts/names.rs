//! Contacts' names as each linked account's phone knows them: the name saved in its address
//! book (app-state `contact` action, full name else first name) and the name the contact chose
//! for itself (push name, from history sync). Kept per account and JID; shown beside the
//! tenant's contacts (matched by phone number), on chats and on history.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::db::{Conn, DbResult, params};

/// What one linked account's phone calls a contact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct WhatsAppName {
    pub account_id: String,
    /// The name saved in the phone's address book (full name, else first name).
    pub saved_name: Option<String>,
    /// The name the contact chose for itself (push name).
    pub push_name: Option<String>,
}

/// `+digits` for a phone-number JID (`…@s.whatsapp.net`), `None` for anything else.
fn phone_of(jid: &str) -> Option<String> {
    let user = jid.strip_suffix("@s.whatsapp.net")?;
    let digits = user.split([':', '.']).next()?;
    (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())).then(|| format!("+{digits}"))
}

/// Records the address-book entry of `jid` (both names `None`: removed from the book).
#[allow(clippy::too_many_arguments)]
pub fn apply_saved_name(
    c: &Conn,
    tenant_id: &str,
    account_id: &str,
    jid: &str,
    lid: Option<&str>,
    full_name: Option<&str>,
    first_name: Option<&str>,
    now: i64,
) -> DbResult<()> {
    c.execute(
        "INSERT INTO contact_names (tenant_id, account_id, jid, phone, lid, full_name, first_name, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT (account_id, jid) DO UPDATE SET lid = COALESCE(?5, contact_names.lid),
           full_name = ?6, first_name = ?7, updated_at = ?8",
        params![tenant_id, account_id, jid, phone_of(jid), lid, full_name, first_name, now],
    )?;
    Ok(())
}

/// Records push names (`(JID, name)`), in one transaction.
pub fn apply_push_names(
    c: &Conn,
    tenant_id: &str,
    account_id: &str,
    names: &[(String, String)],
    now: i64,
) -> DbResult<()> {
    let tx = c.transaction()?;
    for (jid, name) in names {
        tx.execute(
            "INSERT INTO contact_names (tenant_id, account_id, jid, phone, push_name, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (account_id, jid) DO UPDATE SET push_name = ?5, updated_at = ?6",
            params![tenant_id, account_id, jid, phone_of(jid), name, now],
        )?;
    }
    tx.commit()
}

/// The name the account's phone shows for `jid` (a phone-number JID or a LID): the saved
/// name, else the push name.
pub fn display_name(c: &Conn, tenant_id: &str, account_id: &str, jid: &str) -> DbResult<Option<String>> {
    let mut stmt = c.prepare_cached(
        "SELECT COALESCE(full_name, first_name, push_name) FROM contact_names
          WHERE tenant_id = ?1 AND account_id = ?2 AND (jid = ?3 OR lid = ?3)
            AND COALESCE(full_name, first_name, push_name) IS NOT NULL
          ORDER BY CASE WHEN full_name IS NULL AND first_name IS NULL THEN 1 ELSE 0 END
          LIMIT 1",
    )?;
    stmt.query_map(params![tenant_id, account_id, jid], |r| r.get(0))?.next().transpose()
}

/// What each of the tenant's accounts calls the number `phone` (E.164).
pub fn for_phone(c: &Conn, tenant_id: &str, phone: &str) -> DbResult<Vec<WhatsAppName>> {
    let mut stmt = c.prepare_cached(
        "SELECT account_id, COALESCE(full_name, first_name), push_name FROM contact_names
          WHERE tenant_id = ?1 AND phone = ?2 ORDER BY account_id",
    )?;
    stmt.query_map(params![tenant_id, phone], |r| {
        Ok(WhatsAppName { account_id: r.get(0)?, saved_name: r.get(1)?, push_name: r.get(2)? })
    })?
    .filter(|n| n.as_ref().map_or(true, |n| n.saved_name.is_some() || n.push_name.is_some()))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::Db;

    #[tokio::test]
    async fn the_saved_name_wins_over_the_push_name_and_is_found_by_lid() {
        let db = Db::open_in_memory().unwrap();
        db.call(|c| {
            c.execute("INSERT INTO tenants (id, name, created_at) VALUES ('t', 't', 0)", params![])?;
            c.execute(
                "INSERT INTO accounts (id, tenant_id, name, state, daily_limit, time_zone, created_at, updated_at)
                 VALUES ('a', 't', 'a', 'active', 10, 'UTC', 0, 0)",
                params![],
            )?;
            let ann = "15550001111@s.whatsapp.net";
            let names = [(ann.to_owned(), "Annie".to_owned()), ("777@lid".to_owned(), "Lidia".to_owned())];
            apply_push_names(c, "t", "a", &names, 1)?;
            assert_eq!(display_name(c, "t", "a", ann)?.as_deref(), Some("Annie"));
            assert_eq!(display_name(c, "t", "a", "777@lid")?.as_deref(), Some("Lidia"));
            apply_saved_name(c, "t", "a", ann, Some("888@lid"), Some("Ann Smith"), Some("Ann"), 2)?;
            assert_eq!(display_name(c, "t", "a", ann)?.as_deref(), Some("Ann Smith"));
            assert_eq!(display_name(c, "t", "a", "888@lid")?.as_deref(), Some("Ann Smith"), "by its LID");
            let listed = for_phone(c, "t", "+15550001111")?;
            let want = WhatsAppName {
                account_id: "a".into(),
                saved_name: Some("Ann Smith".into()),
                push_name: Some("Annie".into()),
            };
            assert_eq!(listed, [want]);
            // Removed from the address book: the push name shows again.
            apply_saved_name(c, "t", "a", ann, None, None, None, 3)?;
            assert_eq!(display_name(c, "t", "a", ann)?.as_deref(), Some("Annie"));
            // Another tenant sees nothing.
            assert_eq!(display_name(c, "other", "a", ann)?, None);
            assert!(for_phone(c, "other", "+15550001111")?.is_empty());
            Ok(())
        })
        .await
        .unwrap();
    }

    #[test]
    fn only_phone_number_jids_have_a_phone() {
        assert_eq!(phone_of("15550001111@s.whatsapp.net").as_deref(), Some("+15550001111"));
        assert_eq!(phone_of("15550001111:3@s.whatsapp.net").as_deref(), Some("+15550001111"));
        assert_eq!(phone_of("123456@lid"), None);
        assert_eq!(phone_of("x1@s.whatsapp.net"), None);
    }
}
