//! The web dashboard: one HTML page with inline script and style, embedded in the binary (no
//! build step). It talks to the same REST API with an API key kept in the browser's local
//! storage, so it can do exactly what the key's role allows and nothing more.

use axum::http::header;
use axum::response::{IntoResponse, Redirect};
use axum::routing::get;

use crate::state::AppState;

const INDEX_HTML: &str = include_str!("index.html");

pub fn routes() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/dashboard", get(index))
        .route("/dashboard/", get(|| async { Redirect::permanent("/dashboard") }))
}

async fn index() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
            // Everything is inline; images are data: URLs (QR codes). No third-party origins.
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src 'self' data:; connect-src 'self'",
            ),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        INDEX_HTML,
    )
}

#[cfg(test)]
mod tests {
    use super::INDEX_HTML;

    #[test]
    fn page_is_self_contained() {
        assert!(INDEX_HTML.starts_with("<!doctype html>"));
        assert!(!INDEX_HTML.contains("http://") && !INDEX_HTML.contains("https://"), "no external assets");
        for id in ["tab-accounts", "tab-send", "tab-contacts", "tab-templates", "tab-campaigns", "qr-modal"] {
            assert!(INDEX_HTML.contains(&format!("id=\"{id}\"")), "{id}");
        }
    }
}
