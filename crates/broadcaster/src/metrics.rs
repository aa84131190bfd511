//! Prometheus text exposition at `/metrics`: gauges read from the database at scrape time
//! (sessions by state, messages by status, webhook queue depth) plus process counters.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use crate::account_state::AccountState;
use crate::error::ApiError;
use crate::state::AppState;

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

/// The counts span every tenant, so reading them takes an admin key, the scrape token
/// (`BROADCASTER_METRICS_TOKEN`) or `--metrics-public` (see [`crate::access::MetricsAccess`]).
#[utoipa::path(get, path = "/metrics", tag = "ops",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain"),
              (status = 401, body = crate::error::ErrorBody), (status = 403, body = crate::error::ErrorBody)),
    security(("api_key" = [])))]
pub async fn metrics(
    State(st): State<AppState>,
    _: crate::access::MetricsReader,
) -> Result<impl IntoResponse, ApiError> {
    let (states, statuses, queue) = st
        .db
        .call(|c| {
            let states: Vec<(String, i64)> = c
                .prepare("SELECT state, COUNT(*) FROM accounts GROUP BY state")?
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<_, _>>()?;
            let statuses: Vec<(String, String, i64)> = c
                .prepare("SELECT direction, status, COUNT(*) FROM messages GROUP BY direction, status")?
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect::<Result<_, _>>()?;
            let queue: Vec<(String, i64)> = c
                .prepare(
                    "SELECT status, COUNT(*) FROM webhook_outbox WHERE status != 'delivered' GROUP BY status",
                )?
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<_, _>>()?;
            Ok((states, statuses, queue))
        })
        .await?;
    let mut out = String::with_capacity(2048);
    out.push_str(
        "# HELP broadcaster_sessions Accounts by connection state.\n# TYPE broadcaster_sessions gauge\n",
    );
    for s in AccountState::ALL {
        let n = states.iter().find(|(k, _)| k == s.as_str()).map_or(0, |(_, n)| *n);
        let _ = writeln!(out, "broadcaster_sessions{{state=\"{}\"}} {n}", s.as_str());
    }
    out.push_str("# HELP broadcaster_messages Recorded messages by direction and status.\n# TYPE broadcaster_messages gauge\n");
    for (d, s, n) in &statuses {
        let _ = writeln!(out, "broadcaster_messages{{direction=\"{d}\",status=\"{s}\"}} {n}");
    }
    out.push_str("# HELP broadcaster_webhook_queue Undelivered webhook deliveries.\n# TYPE broadcaster_webhook_queue gauge\n");
    for s in ["pending", "dead"] {
        let n = queue.iter().find(|(k, _)| k == s).map_or(0, |(_, n)| *n);
        let _ = writeln!(out, "broadcaster_webhook_queue{{status=\"{s}\"}} {n}");
    }
    if let Some(v) = &st.wa_version {
        let (version, source) = v.in_use();
        let _ = writeln!(
            out,
            "# HELP broadcaster_wa_version_info The WhatsApp Web version the sessions report.\n\
             # TYPE broadcaster_wa_version_info gauge\n\
             broadcaster_wa_version_info{{version=\"{}\",source=\"{}\"}} 1",
            wa_client::version::format_app_version(version),
            source.as_str()
        );
    }
    let m = &st.metrics;
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
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out))
}
