//! Daily usage of an account (messages sent that count against its daily limit, messages
//! received) from counters, not row counts: the work is the same on the first day and after a
//! million messages (issue 19).
//!
//! `message_usage` holds per account and UTC quarter hour of `created_at` the counted
//! messages; triggers on `messages` (migration 15) keep it in the transaction of every insert,
//! status change and delete, so retries, failures, settled receipts, discarded sends and
//! restarts cannot make it drift from the rows whichever code path writes them.

use crate::db::params;

/// Width of a `message_usage` bucket (ms): every time zone in use today is a whole number of
/// quarter hours from UTC, so a local day is a whole number of buckets.
pub(crate) const USAGE_BUCKET_MS: i64 = 900_000;

/// Counted messages (sent, received) of an account from bucket `?2` on: `message_usage` is kept
/// by triggers on `messages` (migration 15), in the same transaction as every insert, status
/// change and delete, so it is right whichever path wrote the row. At most ~100 rows a day.
pub(crate) const USAGE_SQL: &str =
    "SELECT CAST(COALESCE(SUM(sent), 0) AS BIGINT), CAST(COALESCE(SUM(received), 0) AS BIGINT)
     FROM message_usage WHERE account_id = ?1 AND bucket >= ?2";

/// Counted messages (sent, received) created in `[since, until)`, from the rows (only for the
/// part of a quarter hour before the first whole bucket, in a zone off the quarter-hour grid).
const USAGE_ROWS_SQL: &str = "SELECT
       CAST(COALESCE(SUM(CASE WHEN direction = 'outgoing' AND status != 'failed' THEN 1 ELSE 0 END), 0) AS BIGINT),
       CAST(COALESCE(SUM(CASE WHEN direction = 'incoming' THEN 1 ELSE 0 END), 0) AS BIGINT)
     FROM messages WHERE account_id = ?1 AND direction IN ('outgoing', 'incoming')
       AND created_at >= ?2 AND created_at < ?3";

/// Messages (sent that count against the daily limit, received) created since `since`.
pub(crate) fn counted_since(
    c: &crate::db::Conn,
    account_id: &str,
    since: i64,
) -> crate::db::DbResult<(i64, i64)> {
    let first_bucket = since.div_euclid(USAGE_BUCKET_MS) + i64::from(since.rem_euclid(USAGE_BUCKET_MS) != 0);
    let (mut sent, mut received): (i64, i64) =
        c.query_row(USAGE_SQL, params![account_id, first_bucket], |r| Ok((r.get(0)?, r.get(1)?)))?;
    let bucket_start = first_bucket * USAGE_BUCKET_MS;
    if bucket_start > since {
        let (s, r): (i64, i64) =
            c.query_row(USAGE_ROWS_SQL, params![account_id, since, bucket_start], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?;
        sent += s;
        received += r;
    }
    Ok((sent, received))
}

/// Outgoing messages that count against the daily limit (all but `failed`) since `since`.
pub fn sent_since(c: &crate::db::Conn, account_id: &str, since: i64) -> crate::db::DbResult<i64> {
    Ok(counted_since(c, account_id, since)?.0)
}

/// Messages received since `since`.
pub fn received_since(c: &crate::db::Conn, account_id: &str, since: i64) -> crate::db::DbResult<i64> {
    Ok(counted_since(c, account_id, since)?.1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::{Conn, Db, DbResult};

    const Q: i64 = USAGE_BUCKET_MS;

    fn setup(c: &Conn) -> DbResult<()> {
        c.execute_batch(
            "INSERT INTO tenants (id, name, created_at) VALUES ('t', 't', 0);
             INSERT INTO accounts (id, tenant_id, name, state, daily_limit, time_zone, created_at, updated_at)
               VALUES ('a', 't', 'a', 'active', 100, 'UTC', 0, 0), ('b', 't', 'b', 'active', 100, 'UTC', 0, 0)",
        )
    }

    fn insert(c: &Conn, id: &str, account: &str, direction: &str, status: &str, at: i64) -> DbResult<()> {
        c.execute(
            "INSERT INTO messages (id, tenant_id, account_id, direction, chat_jid, kind, status, created_at, updated_at)
             VALUES (?1, 't', ?2, ?3, '1@s.whatsapp.net', 'text', ?4, ?5, ?5)",
            params![id, account, direction, status, at],
        )?;
        Ok(())
    }

    fn set_status(c: &Conn, id: &str, status: &str) -> DbResult<()> {
        c.execute("UPDATE messages SET status = ?2 WHERE id = ?1", params![id, status])?;
        Ok(())
    }

    /// The counters against a count of the rows, for every window start in `starts`.
    fn assert_counts_match_rows(c: &Conn, starts: &[i64]) -> DbResult<()> {
        for account in ["a", "b"] {
            for &start in starts {
                let rows: (i64, i64) =
                    c.query_row(USAGE_ROWS_SQL, params![account, start, i64::MAX], |r| {
                        Ok((r.get(0)?, r.get(1)?))
                    })?;
                assert_eq!(counted_since(c, account, start)?, rows, "account {account} since {start}");
            }
        }
        Ok(())
    }

    /// Every way a row changes keeps the counters equal to the rows: sends that go out, fail,
    /// are settled by a receipt after failing, are discarded unsent, incoming messages,
    /// duplicates refused, and a deleted account.
    async fn counters_follow_every_change(db: Db) {
        db.call(|c| {
            setup(c)?;
            let day = 20_000 * 96 * Q;
            let starts = [0, day, day + 1, day + Q, day + Q + 7, day + 5 * Q];
            insert(c, "m1", "a", "outgoing", "pending", day + 10)?;
            insert(c, "m2", "a", "outgoing", "pending", day + Q + 10)?;
            insert(c, "m3", "a", "incoming", "received", day + 2 * Q)?;
            insert(c, "m4", "b", "outgoing", "pending", day + 3 * Q)?;
            insert(c, "m5", "a", "outgoing", "failed", day + 3 * Q)?;
            assert_eq!(counted_since(c, "a", day)?, (2, 1));
            assert_counts_match_rows(c, &starts)?;
            // sent, delivered, read: still one
            for s in ["sent", "delivered", "read"] {
                set_status(c, "m1", s)?;
            }
            assert_eq!(counted_since(c, "a", day)?, (2, 1));
            // a failure gives the slot back; a receipt proving it went out takes it again
            set_status(c, "m2", "failed")?;
            assert_eq!(counted_since(c, "a", day)?, (1, 1));
            set_status(c, "m2", "sent")?;
            set_status(c, "m5", "sent")?;
            assert_eq!(counted_since(c, "a", day)?, (3, 1));
            assert_counts_match_rows(c, &starts)?;
            // a refused duplicate changes nothing; a discarded unsent row gives its slot back
            c.execute(
                "INSERT INTO messages (id, tenant_id, account_id, direction, chat_jid, kind, status, created_at, updated_at)
                 VALUES ('m1', 't', 'a', 'outgoing', 'x', 'text', 'pending', 1, 1) ON CONFLICT DO NOTHING",
                [],
            )?;
            c.execute("DELETE FROM messages WHERE id = 'm4'", [])?;
            c.execute("DELETE FROM messages WHERE id = 'm3'", [])?;
            assert_eq!(counted_since(c, "b", day)?, (0, 0));
            assert_eq!(counted_since(c, "a", day)?, (3, 0));
            // a failed row deleted gives nothing back twice
            set_status(c, "m5", "failed")?;
            c.execute("DELETE FROM messages WHERE id = 'm5'", [])?;
            assert_eq!(counted_since(c, "a", day)?, (2, 0));
            // a rolled-back transaction leaves the counters as they were
            {
                let tx = c.transaction()?;
                insert(&tx, "m6", "a", "outgoing", "pending", day + 4 * Q)?;
                assert_eq!(counted_since(&tx, "a", day)?, (3, 0));
            }
            assert_eq!(counted_since(c, "a", day)?, (2, 0));
            assert_counts_match_rows(c, &starts)?;
            c.execute("DELETE FROM accounts WHERE id = 'a'", [])?;
            let left: i64 =
                c.query_row("SELECT COUNT(*) FROM message_usage WHERE account_id = 'a'", [], |r| r.get(0))?;
            assert_eq!(left, 0);
            Ok(())
        })
        .await
        .unwrap();
    }

    #[tokio::test]
    async fn sqlite_counters_follow_every_change() {
        counters_follow_every_change(Db::open_in_memory().unwrap()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_counters_follow_every_change() {
        counters_follow_every_change(Db::open_postgres(&crate::db::tests::pg_url().await).await.unwrap())
            .await;
    }

    const BACKFILL_ROWS: &str = "INSERT INTO tenants (id, name, created_at) VALUES ('t', 't', 0);
        INSERT INTO accounts (id, tenant_id, name, state, daily_limit, time_zone, created_at, updated_at)
          VALUES ('a', 't', 'a', 'active', 100, 'UTC', 0, 0), ('b', 't', 'b', 'active', 100, 'UTC', 0, 0);
        INSERT INTO messages (id, tenant_id, account_id, direction, chat_jid, kind, status, created_at, updated_at) VALUES
          ('m1', 't', 'a', 'outgoing', 'c', 'text', 'sent', 1800000000000, 0),
          ('m2', 't', 'a', 'outgoing', 'c', 'text', 'failed', 1800000000001, 0),
          ('m3', 't', 'a', 'outgoing', 'c', 'text', 'pending', 1800000950000, 0),
          ('m4', 't', 'a', 'incoming', 'c', 'text', 'received', 1800000950001, 0),
          ('m5', 't', 'b', 'outgoing', 'c', 'text', 'read', 1799999999999, 0)";

    /// A database written before the counters existed: migrating fills them from its rows.
    async fn assert_backfilled(db: &Db) {
        db.call(|c| {
            assert_eq!(counted_since(c, "a", 0)?, (2, 1));
            assert_eq!(counted_since(c, "a", 1_800_000_000_001)?, (1, 1));
            assert_eq!(counted_since(c, "b", 0)?, (1, 0));
            assert_counts_match_rows(c, &[0, 1_799_999_999_999, 1_800_000_000_000, 1_800_000_900_000])
        })
        .await
        .unwrap();
    }

    #[tokio::test]
    async fn sqlite_migration_backfills_the_counters() {
        let dir = tempfile::tempdir().unwrap();
        {
            let conn = rusqlite::Connection::open(dir.path().join(crate::db::SQLITE_FILE)).unwrap();
            conn.execute_batch("PRAGMA foreign_keys = ON").unwrap();
            for sql in &crate::db::MIGRATIONS[..14] {
                conn.execute_batch(sql).unwrap();
            }
            conn.pragma_update(None, "user_version", 14).unwrap();
            conn.execute_batch(BACKFILL_ROWS).unwrap();
        }
        assert_backfilled(&Db::open_in_dir(dir.path()).unwrap()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_migration_backfills_the_counters() {
        let url = crate::db::tests::pg_url().await;
        {
            let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
            let driver = tokio::spawn(conn);
            for sql in &crate::db::postgres::MIGRATIONS[..14] {
                client.batch_execute(sql).await.unwrap();
            }
            client
                .batch_execute("CREATE TABLE broadcaster_schema (version BIGINT NOT NULL); INSERT INTO broadcaster_schema VALUES (14)")
                .await
                .unwrap();
            client.batch_execute(BACKFILL_ROWS).await.unwrap();
            drop(client);
            let _ = driver.await;
        }
        assert_backfilled(&Db::open_postgres(&url).await.unwrap()).await;
    }
}
