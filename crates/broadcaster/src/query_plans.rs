//! The hot queries' plans (issue 19): each uses its index and does work independent of table
//! size. The SQL is the code's own (the constants the code runs), planned by SQLite
//! (`EXPLAIN QUERY PLAN`) and PostgreSQL (`EXPLAIN`); a scan of a table or a sort of the rows a
//! query matches fails the test.
//!
//! On PostgreSQL the planner weighs table statistics: the tables are filled with a few
//! thousand rows shaped like a server's (two accounts, many chats, most messages sent, most
//! recipients and webhook deliveries done) and analysed, and the session disables sequential
//! scans, bitmap scans and sorts, so a plan still scanning or sorting has no index path.

use crate::db::{Backend, Conn, Db, DbResult, ToValue};

/// One hot query: where it runs, its SQL, parameters of the right types, and the index its
/// plan must use (each of them: a query with a subquery names two).
struct Hot {
    name: &'static str,
    sql: &'static str,
    params: Vec<Box<dyn ToValue>>,
    indexes: &'static [(&'static str, &'static str)],
}

/// (SQLite index name, PostgreSQL index name).
const MESSAGES_PK: (&str, &str) = ("sqlite_autoindex_messages_1", "messages_pkey");
const MESSAGES_WA_ID: (&str, &str) = ("messages_wa_id", "messages_wa_id");

fn b<T: ToValue + 'static>(v: T) -> Box<dyn ToValue> {
    Box::new(v)
}

fn hot_queries() -> Vec<Hot> {
    let none: Option<String> = None;
    vec![
        Hot {
            name: "messages::load (with the quoted message)",
            sql: crate::messages::LOAD_SQL,
            params: vec![b("t"), b("msg_1")],
            indexes: &[MESSAGES_PK, MESSAGES_WA_ID],
        },
        Hot {
            name: "reply target by our id",
            sql: crate::messages::REPLY_TARGET_BY_ID_SQL,
            params: vec![b("t"), b("a"), b("msg_1")],
            indexes: &[MESSAGES_PK],
        },
        Hot {
            name: "reply target by WhatsApp id",
            sql: crate::messages::REPLY_TARGET_BY_WA_ID_SQL,
            params: vec![b("t"), b("a"), b("3EB0AA")],
            indexes: &[MESSAGES_WA_ID],
        },
        Hot {
            name: "daily usage",
            sql: crate::messages::usage::USAGE_SQL,
            params: vec![b("a"), b(1_900_000_i64)],
            indexes: &[("sqlite_autoindex_message_usage_1", "message_usage_pkey")],
        },
        Hot {
            name: "history page",
            sql: crate::messages::HISTORY_SQL,
            params: vec![b("t"), b("a"), b(none.clone()), b(i64::MAX), b(""), b(51_i64)],
            indexes: &[("messages_account", "messages_account"), MESSAGES_WA_ID],
        },
        Hot {
            name: "history page of a chat",
            sql: crate::messages::HISTORY_CHAT_SQL,
            params: vec![
                b("t"),
                b("a"),
                b(Some("incoming".to_owned())),
                b(1_700_000_000_000_i64),
                b("msg_1"),
                b(51_i64),
                b("491511@s.whatsapp.net"),
            ],
            indexes: &[("messages_chat", "messages_chat"), MESSAGES_WA_ID],
        },
        Hot {
            name: "campaign claim (assigned)",
            sql: crate::campaigns::engine::CLAIM_ASSIGNED_SQL,
            params: vec![b("cmp_1"), b(1_700_000_000_000_i64), b("a"), b(1_i64)],
            indexes: &[("campaign_recipients_claim_assigned", "campaign_recipients_claim_assigned")],
        },
        Hot {
            name: "campaign claim (from other accounts)",
            sql: crate::campaigns::engine::CLAIM_OTHERS_SQL,
            params: vec![b("cmp_1"), b(1_700_000_000_000_i64), b("a"), b(0_i64)],
            indexes: &[("campaign_recipients_claim", "campaign_recipients_claim")],
        },
        Hot {
            name: "campaign window",
            sql: crate::campaigns::engine::TAKE_WINDOW_SQL,
            params: vec![b("cmp_1"), b(1_700_000_000_000_i64), b("a"), b(64_i64)],
            indexes: &[("campaign_recipients_claim", "campaign_recipients_claim")],
        },
        Hot {
            name: "send queue (bulk and single sends due)",
            sql: crate::bulk::DUE_SQL,
            params: vec![b(1_700_000_000_000_i64), b(100_i64)],
            indexes: &[("messages_due_queue", "messages_due_queue")],
        },
        Hot {
            name: "webhook queue",
            sql: crate::webhooks::delivery::DUE_SQL,
            params: vec![b(1_700_000_000_000_i64)],
            indexes: &[("webhook_outbox_pending", "webhook_outbox_pending")],
        },
    ]
}

/// What is wrong with a plan (its lines), if anything.
fn plan_faults(backend: Backend, hot: &Hot, lines: &[String]) -> Vec<String> {
    let mut faults = Vec::new();
    for line in lines {
        let step = line.trim_start().trim_start_matches("->").trim_start();
        let bad = match backend {
            // `SCAN t` reads the whole table, `SCAN t USING INDEX i` the whole index; a temp
            // B-tree sorts (or de-duplicates) every matching row before the first is returned.
            Backend::Sqlite => {
                (step.starts_with("SCAN ") && !step.starts_with("SCAN CONSTANT ROW"))
                    || step.contains("TEMP B-TREE")
            }
            Backend::Postgres => {
                step.starts_with("Seq Scan")
                    || step.starts_with("Sort ")
                    || step.starts_with("Incremental Sort")
                    || step.starts_with("Bitmap Heap Scan")
            }
        };
        if bad {
            faults.push(format!("{}: `{step}`", hot.name));
        }
    }
    for (sqlite, pg) in hot.indexes {
        let index = if backend == Backend::Sqlite { sqlite } else { pg };
        let uses = lines.iter().any(|l| {
            l.split(|ch: char| !(ch.is_ascii_alphanumeric() || ch == '_')).any(|word| word == *index)
        });
        if !uses {
            faults.push(format!("{}: does not use {index}", hot.name));
        }
    }
    faults
}

fn plan(c: &Conn, hot: &Hot) -> DbResult<Vec<String>> {
    let params: Vec<&dyn ToValue> = hot.params.iter().map(|p| p.as_ref()).collect();
    match c.backend() {
        Backend::Sqlite => {
            c.query_all(&format!("EXPLAIN QUERY PLAN {}", hot.sql), params.as_slice(), |r| r.get::<String>(3))
        }
        Backend::Postgres => c.query_all(&format!("EXPLAIN {}", hot.sql), params.as_slice(), |r| r.get(0)),
    }
}

/// Rows shaped like a server's, for PostgreSQL's statistics (`ANALYZE`).
const PG_FILL: &str = "
INSERT INTO tenants (id, name, created_at) VALUES ('t', 't', 0);
INSERT INTO accounts (id, tenant_id, name, state, daily_limit, time_zone, created_at, updated_at)
  VALUES ('a', 't', 'a', 'active', 100000, 'UTC', 0, 0), ('b', 't', 'b', 'active', 100000, 'UTC', 0, 0);
INSERT INTO messages (id, tenant_id, account_id, direction, chat_jid, chat_lid, wa_message_id, kind, body,
    quoted_id, status, created_at, updated_at, due_at)
  SELECT 'msg_' || i, 't', CASE WHEN i % 2 = 0 THEN 'a' ELSE 'b' END,
         CASE WHEN i % 5 = 0 THEN 'incoming' ELSE 'outgoing' END, (i % 300) || '@s.whatsapp.net',
         CASE WHEN i % 3 = 0 THEN (i % 300) || '@lid' END, 'W' || i, 'text', 'hello',
         CASE WHEN i % 7 = 0 THEN 'W' || (i - 1) END,
         CASE WHEN i % 5 = 0 THEN 'received' WHEN i % 50 = 1 THEN 'pending' ELSE 'delivered' END,
         1700000000000 + i * 1000, 1700000000000 + i * 1000,
         CASE WHEN i % 50 = 1 THEN 1700000000000 + i * 1000 END
    FROM generate_series(1, 6000) AS i;
INSERT INTO campaigns (id, tenant_id, name, kind, body, declared, variables, account_ids, status,
    rate_per_minute, jitter_pct, check_numbers, max_attempts, created_at, updated_at)
  SELECT 'cmp_' || i, 't', 'c', 'campaign', 'hi', '[]', '{}', '[\"a\",\"b\"]',
         CASE WHEN i = 1 THEN 'running' ELSE 'completed' END, 60, 0, 0, 3, 0, 0
    FROM generate_series(1, 5) AS i;
INSERT INTO campaign_recipients (campaign_id, tenant_id, phone, account_id, status, next_attempt_at, updated_at)
  SELECT 'cmp_' || (i % 5 + 1), 't', '49151' || i, CASE WHEN i % 2 = 0 THEN 'a' ELSE 'b' END,
         CASE WHEN i % 10 = 0 THEN 'pending' ELSE 'delivered' END, 0, 0
    FROM generate_series(1, 6000) AS i;
INSERT INTO webhooks (id, tenant_id, url, secret, events, created_at)
  VALUES ('wh_1', 't', 'http://example.test/', 's', '[]', 0);
INSERT INTO webhook_outbox (id, tenant_id, webhook_id, event_type, payload, status, next_attempt_at, created_at)
  SELECT 'out_' || i, 't', 'wh_1', 'message_sent', '{}', CASE WHEN i % 20 = 0 THEN 'pending' ELSE 'delivered' END,
         1700000000000 + i * 1000, 0
    FROM generate_series(1, 6000) AS i;
ANALYZE;
";

async fn check_plans(db: Db) {
    let faults = db
        .call(|c| {
            if c.backend() == Backend::Postgres {
                c.execute_batch(PG_FILL)?;
                c.execute_batch(
                    "SET enable_seqscan = off; SET enable_sort = off; SET enable_bitmapscan = off",
                )?;
            }
            let mut faults = Vec::new();
            for hot in hot_queries() {
                let lines = plan(c, &hot)?;
                let found = plan_faults(c.backend(), &hot, &lines);
                if !found.is_empty() {
                    faults.push(format!("{}\n  plan:\n    {}", found.join("\n"), lines.join("\n    ")));
                }
            }
            if c.backend() == Backend::Postgres {
                c.execute_batch("RESET enable_seqscan; RESET enable_sort; RESET enable_bitmapscan")?;
            }
            Ok(faults)
        })
        .await
        .unwrap();
    assert!(faults.is_empty(), "hot queries without an index path:\n{}", faults.join("\n"));
}

#[tokio::test]
async fn sqlite_hot_queries_use_their_indexes_and_sort_nothing() {
    check_plans(Db::open_in_memory().unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_hot_queries_use_their_indexes_and_sort_nothing() {
    check_plans(Db::open_postgres(&crate::db::tests::pg_url().await).await.unwrap()).await;
}

/// The check itself: a plan that scans, sorts or misses its index is refused.
#[test]
fn a_scan_a_sort_or_a_missing_index_is_a_fault() {
    let hot = Hot { name: "q", sql: "", params: vec![], indexes: &[("ix", "ix")] };
    let lines = |ls: &[&str]| ls.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    assert!(plan_faults(Backend::Sqlite, &hot, &lines(&["SEARCH m USING INDEX ix (a=?)"])).is_empty());
    assert_eq!(
        plan_faults(Backend::Sqlite, &hot, &lines(&["SCAN m", "SEARCH m USING INDEX ix (a=?)"])).len(),
        1
    );
    assert_eq!(
        plan_faults(
            Backend::Sqlite,
            &hot,
            &lines(&["SEARCH m USING INDEX ix (a=?)", "USE TEMP B-TREE FOR ORDER BY"])
        )
        .len(),
        1
    );
    assert_eq!(plan_faults(Backend::Sqlite, &hot, &lines(&["SEARCH m USING INDEX ix2 (a=?)"])).len(), 1);
    assert!(
        plan_faults(Backend::Postgres, &hot, &lines(&["Limit", "  ->  Index Scan Backward using ix on m"]))
            .is_empty()
    );
    assert_eq!(
        plan_faults(Backend::Postgres, &hot, &lines(&["Sort  (cost=1)", "  ->  Index Scan using ix on m"]))
            .len(),
        1
    );
    assert_eq!(plan_faults(Backend::Postgres, &hot, &lines(&["  ->  Seq Scan on m", "ix"])).len(), 1);
}
