//! Prometheus text exposition (served at `/metrics` by [`crate::ops`]): gauges read from the
//! database at scrape time (sessions by state, messages by status, webhook queue depth) plus
//! process counters.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::account_state::AccountState;
use crate::db::{Conn, DbResult};

/// Counters the process increments as things happen.
#[derive(Debug, Default)]
pub struct Metrics {
    pub decrypt_failures: AtomicU64,
    pub messages_received: AtomicU64,
    pub rate_limited: AtomicU64,
}

impl Metrics {
    pub fn inc(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }
}

/// The gauges read from the database at scrape time.
#[derive(Debug, Default)]
pub struct Gauges {
    /// Accounts by state.
    states: Vec<(String, i64)>,
    /// Messages by direction and status.
    statuses: Vec<(String, String, i64)>,
    /// Undelivered webhook deliveries by status.
    queue: Vec<(String, i64)>,
}

/// Reads the gauges (one connection, three grouped counts).
pub fn read_gauges(c: &mut Conn) -> DbResult<Gauges> {
    let states: Vec<(String, i64)> = c
        .prepare("SELECT state, COUNT(*) FROM accounts GROUP BY state")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    let statuses: Vec<(String, String, i64)> = c
        .prepare("SELECT direction, status, COUNT(*) FROM messages GROUP BY direction, status")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<Result<_, _>>()?;
    let queue: Vec<(String, i64)> = c
        .prepare("SELECT status, COUNT(*) FROM webhook_outbox WHERE status != 'delivered' GROUP BY status")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    Ok(Gauges { states, statuses, queue })
}

/// The Prometheus text document for `gauges`, the WhatsApp Web version in use (the version and
/// where it came from) and the counters.
pub fn render(gauges: &Gauges, wa_version: Option<(&str, &str)>, m: &Metrics) -> String {
    let Gauges { states, statuses, queue } = gauges;
    let mut out = String::with_capacity(2048);
    out.push_str(
        "# HELP broadcaster_sessions Accounts by connection state.\n# TYPE broadcaster_sessions gauge\n",
    );
    for s in AccountState::ALL {
        let n = states.iter().find(|(k, _)| k == s.as_str()).map_or(0, |(_, n)| *n);
        let _ = writeln!(out, "broadcaster_sessions{{state=\"{}\"}} {n}", s.as_str());
    }
    out.push_str("# HELP broadcaster_messages Recorded messages by direction and status.\n# TYPE broadcaster_messages gauge\n");
    for (d, s, n) in statuses {
        let _ = writeln!(out, "broadcaster_messages{{direction=\"{d}\",status=\"{s}\"}} {n}");
    }
    out.push_str("# HELP broadcaster_webhook_queue Undelivered webhook deliveries.\n# TYPE broadcaster_webhook_queue gauge\n");
    for s in ["pending", "dead"] {
        let n = queue.iter().find(|(k, _)| k == s).map_or(0, |(_, n)| *n);
        let _ = writeln!(out, "broadcaster_webhook_queue{{status=\"{s}\"}} {n}");
    }
    if let Some((version, source)) = wa_version {
        let _ = writeln!(
            out,
            "# HELP broadcaster_wa_version_info The WhatsApp Web version the sessions report.\n\
             # TYPE broadcaster_wa_version_info gauge\n\
             broadcaster_wa_version_info{{version=\"{version}\",source=\"{source}\"}} 1"
        );
    }
    for (name, help, v) in [
        (
            "broadcaster_decrypt_failures_total",
            "Incoming messages that could not be decrypted.",
            &m.decrypt_failures,
        ),
        (
            "broadcaster_messages_received_total",
            "Incoming messages recorded by this process.",
            &m.messages_received,
        ),
        ("broadcaster_rate_limited_total", "Requests refused by the per-key rate limit.", &m.rate_limited),
    ] {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
            v.load(Ordering::Relaxed)
        );
    }
    out
}
