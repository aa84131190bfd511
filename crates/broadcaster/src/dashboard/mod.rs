//! The web dashboard: an HTML shell, ES modules and one stylesheet, all embedded in the binary
//! (`include_str!`, no build step, no CDN), served under `/dashboard`. It talks to the same REST
//! API with an API key kept in the browser's local storage, so it can do exactly what the key's
//! role allows and nothing more.

use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

use crate::state::AppState;

const INDEX_HTML: &str = include_str!("index.html");

/// Every file the shell loads, by name under `/dashboard/assets/`.
const ASSETS: &[(&str, &str)] = &[
    ("style.css", include_str!("assets/style.css")),
    ("app.js", include_str!("assets/app.js")),
    ("api.js", include_str!("assets/api.js")),
    ("dom.js", include_str!("assets/dom.js")),
    ("live.js", include_str!("assets/live.js")),
    ("link.js", include_str!("assets/link.js")),
    ("chart.js", include_str!("assets/chart.js")),
    ("welcome.js", include_str!("assets/welcome.js")),
    ("accounts.js", include_str!("assets/accounts.js")),
    ("chats.js", include_str!("assets/chats.js")),
    ("contacts.js", include_str!("assets/contacts.js")),
    ("templates.js", include_str!("assets/templates.js")),
    ("campaigns.js", include_str!("assets/campaigns.js")),
    ("webhooks.js", include_str!("assets/webhooks.js")),
    ("phone.js", include_str!("assets/phone.js")),
];

/// Scripts and styles come from this server only; media in chats are `blob:` URLs of
/// authenticated downloads, QR codes `data:` URLs.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; \
                   media-src 'self' blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'";

/// The page says whether the server runs against the emulator, so it can show the simulated
/// phones page without probing an endpoint that would answer 404.
const EMULATOR_OFF: &str = "<body data-emulator=\"false\">";
const EMULATOR_ON: &str = "<body data-emulator=\"true\">";

fn page(emulator: bool) -> String {
    if emulator { INDEX_HTML.replacen(EMULATOR_OFF, EMULATOR_ON, 1) } else { INDEX_HTML.to_owned() }
}

pub fn routes() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/dashboard", get(index))
        .route("/dashboard/", get(|| async { Redirect::permanent("/dashboard") }))
        .route("/dashboard/assets/{file}", get(asset))
}

fn common_headers(resp: &mut Response) {
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
}

async fn index(State(st): State<AppState>) -> Response {
    let mut resp =
        ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], page(st.emulator.is_some())).into_response();
    common_headers(&mut resp);
    resp
}

async fn asset(Path(file): Path<String>) -> Response {
    let Some((name, body)) = ASSETS.iter().find(|(name, _)| *name == file) else {
        return crate::error::ApiError::NotFound("asset").into_response();
    };
    let mime =
        if name.ends_with(".css") { "text/css; charset=utf-8" } else { "text/javascript; charset=utf-8" };
    let mut resp = (StatusCode::OK, [(header::CONTENT_TYPE, mime)], *body).into_response();
    common_headers(&mut resp);
    resp
}

#[cfg(test)]
mod tests {
    use super::{ASSETS, EMULATOR_OFF, EMULATOR_ON, INDEX_HTML, page};

    /// The SVG namespace is a name, not a request.
    const SVG_NS: &str = "http://www.w3.org/2000/svg";

    #[test]
    fn everything_is_embedded() {
        assert!(INDEX_HTML.starts_with("<!doctype html>"));
        for (name, body) in std::iter::once(&("index.html", INDEX_HTML)).chain(ASSETS) {
            let body = body.replace(SVG_NS, "");
            // An input's placeholder shows an example URL to the user; nothing loads it.
            for line in body.lines().filter(|l| !l.contains("placeholder: \"http")) {
                assert!(
                    !line.contains("http://") && !line.contains("https://"),
                    "{name} loads nothing from elsewhere: {line}"
                );
            }
        }
        // Every module a script imports is served.
        for (name, body) in ASSETS {
            for import in body.split("from \"./").skip(1) {
                let target = import.split('"').next().unwrap_or_default();
                assert!(
                    ASSETS.iter().any(|(n, _)| *n == target),
                    "{name} imports {target}, which is not served"
                );
            }
        }
        for href in ["/dashboard/assets/app.js", "/dashboard/assets/style.css"] {
            assert!(INDEX_HTML.contains(href), "{href}");
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
