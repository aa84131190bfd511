//! Events into the durable webhook outbox, inside the caller's transaction.
//!
//! An event that changes server state is written with that change or not at all, so a crash can
//! never record a state change without its webhook deliveries (or the reverse).

use crate::db::{Conn, params};
use serde::Serialize;

use crate::clock::new_id;

/// One event as delivered to webhooks. `id` is the idempotency key: redeliveries of the same
/// event to the same webhook carry the same id.
#[derive(Debug, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct EventEnvelope {
    pub id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub tenant_id: String,
    pub account_id: Option<String>,
    pub created_at: i64,
    pub data: serde_json::Value,
}

/// Writes one outbox row per enabled webhook of `tenant_id` that subscribes to `event_type` and
/// is either tenant-wide or bound to `account_id`. Returns how many rows were written.
pub fn enqueue(
    tx: &Conn,
    tenant_id: &str,
    account_id: Option<&str>,
    event_type: &str,
    data: serde_json::Value,
    now: i64,
) -> crate::db::DbResult<usize> {
    let mut stmt = tx.prepare_cached(
        "SELECT id, events FROM webhooks WHERE tenant_id = ?1 AND enabled = 1
           AND (account_id IS NULL OR account_id = ?2)",
    )?;
    let hooks: Vec<(String, String)> = stmt
        .query_map(params![tenant_id, account_id], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    let mut n = 0;
    for (hook_id, events) in hooks {
        if !subscribes(&events, event_type) {
            continue;
        }
        let envelope = EventEnvelope {
            id: new_id("evt"),
            event_type: event_type.to_owned(),
            tenant_id: tenant_id.to_owned(),
            account_id: account_id.map(str::to_owned),
            created_at: now,
            data: data.clone(),
        };
        let payload =
            serde_json::to_string(&envelope).map_err(|e| crate::db::DbError::Encode(e.to_string()))?;
        tx.execute(
            "INSERT INTO webhook_outbox (id, tenant_id, webhook_id, event_type, payload, status, attempts,
               next_attempt_at, created_at) VALUES (?1,?2,?3,?4,?5,'pending',0,?6,?6)",
            params![envelope.id, tenant_id, hook_id, event_type, payload, now],
        )?;
        n += 1;
    }
    Ok(n)
}

/// `events` is a comma-separated filter stored with the webhook; `*` means all.
fn subscribes(events: &str, event_type: &str) -> bool {
    events.split(',').any(|e| e == "*" || e == event_type)
}
