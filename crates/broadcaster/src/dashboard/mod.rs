//! The web dashboard: one HTML page with inline script and style, embedded in the binary (no
//! build step). It talks to the same REST API with an API key kept in the browser's local
//! storage, so it can do exactly what the key's role allows and nothing more.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Redirect};
use axum::routing::get;

use crate::state::AppState;

const INDEX_HTML: &str = include_str!("index.html");

/// The page says whether the server runs against the emulator, so it can show the simulated
/// phone panel without probing an endpoint that would answer 404.
const EMULATOR_OFF: &str = "<body data-emulator=\"false\">";
const EMULATOR_ON: &str = "<body data-emulator=\"true\">";

fn page(emulator: bool) -> String {
    if emulator { INDEX_HTML.replacen(EMULATOR_OFF, EMULATOR_ON, 1) } else { INDEX_HTML.to_owned() }
}

pub fn routes() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/dashboard", get(index))
        .route("/dashboard/", get(|| async { Redirect::permanent("/dashboard") }))
}

async fn index(State(st): State<AppState>) -> impl IntoResponse {
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
        page(st.emulator.is_some()),
    )
}

#[cfg(test)]
mod tests {
    use super::{EMULATOR_OFF, EMULATOR_ON, INDEX_HTML, page};

    #[test]
    fn page_is_self_contained() {
        assert!(INDEX_HTML.starts_with("<!doctype html>"));
        assert!(!INDEX_HTML.contains("http://") && !INDEX_HTML.contains("https://"), "no external assets");
        for id in [
            "tab-accounts",
            "tab-send",
            "tab-contacts",
            "tab-templates",
            "tab-campaigns",
            "tab-messages",
            "tab-webhooks",
            "tab-phone",
            "qr-modal",
            "live",
        ] {
            assert!(INDEX_HTML.contains(&format!("id=\"{id}\"")), "{id}");
        }
    }

    #[test]
    fn emulator_flag_is_injected_once() {
        assert_eq!(INDEX_HTML.matches(EMULATOR_OFF).count(), 1);
        assert!(!INDEX_HTML.contains(EMULATOR_ON));
        assert!(page(true).contains(EMULATOR_ON) && !page(true).contains(EMULATOR_OFF));
        assert_eq!(page(false), INDEX_HTML);
    }
}
