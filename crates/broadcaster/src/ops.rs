//! Operations endpoints: liveness, readiness and the Prometheus scrape.

use axum::Json;
use axum::extract::{FromRequestParts, State};
use axum::http::header;
use axum::response::IntoResponse;

use crate::error::ApiError;
use crate::metrics;
use crate::state::AppState;

/// Liveness: the process is serving.
#[utoipa::path(get, path = "/healthz", tag = "ops", responses((status = 200, description = "alive")))]
pub async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

/// `/readyz`: the server can serve, and which WhatsApp Web version its sessions report.
#[derive(Debug, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Ready {
    /// Always `ready` (a server that is not answers 503).
    pub status: String,
    /// The WhatsApp Web version the sessions report now, e.g. `2.3000.1045649367` (absent
    /// without a WhatsApp runtime).
    pub wa_version: Option<String>,
    /// Where it came from: `configured` (`--wa-version`), `fetched` (`auto`, from sw.js) or
    /// `built_in` (`auto` before or without a successful fetch).
    pub wa_version_source: Option<String>,
}

/// Readiness: the database answers.
#[utoipa::path(get, path = "/readyz", tag = "ops",
    responses((status = 200, description = "ready", body = Ready), (status = 503, body = crate::error::ErrorBody)))]
pub async fn readyz(State(st): State<AppState>) -> Result<Json<Ready>, ApiError> {
    st.db
        .call(|c| c.query_row("SELECT 1", [], |r| r.get::<i64>(0)))
        .await
        .map_err(|e| ApiError::Unavailable(format!("database not ready: {e}")))?;
    let in_use = st.wa_version.as_ref().map(|v| v.in_use());
    Ok(Json(Ready {
        status: "ready".into(),
        wa_version: in_use.map(|(v, _)| wa_client::version::format_app_version(v)),
        wa_version_source: in_use.map(|(_, s)| s.as_str().to_owned()),
    }))
}

/// Prometheus text format: gauges from the database plus the process counters. The counts span
/// every tenant, so reading them takes an admin key, the scrape token
/// (`BROADCASTER_METRICS_TOKEN`) or `--metrics-public` (see [`crate::access::MetricsAccess`]).
#[utoipa::path(get, path = "/metrics", tag = "ops",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain"),
              (status = 401, body = crate::error::ErrorBody), (status = 403, body = crate::error::ErrorBody)),
    security(("api_key" = [])))]
pub async fn metrics(State(st): State<AppState>, _: MetricsReader) -> Result<impl IntoResponse, ApiError> {
    let gauges = st.db.call(metrics::read_gauges).await?;
    let version = st.wa_version.as_ref().map(|v| {
        let (version, source) = v.in_use();
        (wa_client::version::format_app_version(version), source.as_str())
    });
    let out = metrics::render(&gauges, version.as_ref().map(|(v, s)| (v.as_str(), *s)), &st.metrics);
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out))
}

/// An extractor that lets a request through to `/metrics` per [`crate::access::MetricsAccess`].
pub struct MetricsReader;

impl FromRequestParts<AppState> for MetricsReader {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        st: &AppState,
    ) -> Result<Self, ApiError> {
        let presented = crate::auth::request_key(parts).map(str::to_owned);
        match &st.access.metrics {
            crate::access::MetricsAccess::Public => return Ok(Self),
            crate::access::MetricsAccess::AdminKeyOrToken(token)
                if presented.as_deref().is_some_and(|k| constant_time_eq(k.as_bytes(), token.as_bytes())) =>
            {
                return Ok(Self);
            }
            _ => {}
        }
        let p = crate::auth::Principal::from_request_parts(parts, st).await?;
        p.require_admin()?;
        Ok(Self)
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
