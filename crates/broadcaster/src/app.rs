//! The HTTP router, health endpoints and the OpenAPI document.

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{delete, get, post};
use utoipa::OpenApi;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};

use crate::error::ApiError;
use crate::state::AppState;
use crate::{accounts, compat, emulator_api, live_ws, messages, metrics, tenants, webhooks};

#[derive(OpenApi)]
#[openapi(
    info(title = "Broadcaster API", description = "Connect WhatsApp accounts; send, track and receive messages."),
    paths(
        healthz, readyz,
        tenants::create_tenant, tenants::list_tenants,
        tenants::create_key, tenants::list_keys, tenants::revoke_key,
        accounts::create, accounts::list, accounts::get, accounts::update, accounts::delete,
        accounts::activity, accounts::connect, accounts::disconnect, accounts::logout,
        webhooks::create, webhooks::list, webhooks::delete, webhooks::deliveries, webhooks::replay,
        messages::send, messages::history, messages::get_message, messages::download_media,
        messages::check_numbers,
        messages::actions::react, messages::actions::edit, messages::actions::revoke, messages::actions::read,
        messages::actions::set_chat_state,
        crate::bulk::bulk_send,
        metrics::metrics, accounts::qr, live_ws::events_ws,
        emulator_api::scan, emulator_api::enter_code, emulator_api::create_phone, emulator_api::phone_send,
        emulator_api::phone_inbox, emulator_api::phone_read,
        compat::start_session, compat::sessions, compat::session, compat::session_qr, compat::send_message,
        compat::delete_session,
        crate::chats::http::list,
    ),
    components(schemas(
        crate::outbox::EventEnvelope, crate::live::LiveEvent,
        crate::webhooks::AutoReplyBody, crate::webhooks::AutoReply,
        crate::messages::updates::MessageUpdateEvent, crate::messages::polls::PollVoteEvent,
    )),
    modifiers(&SecurityAddon)
)]
pub struct ApiDoc;

struct SecurityAddon;

impl utoipa::Modify for SecurityAddon {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components.add_security_scheme(
            "x_api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-API-Key"))),
        );
    }
}

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

async fn openapi_json() -> impl IntoResponse {
    Json(crate::api_docs::openapi())
}

async fn not_found() -> ApiError {
    ApiError::NotFound("route")
}

async fn method_not_allowed() -> impl IntoResponse {
    let body = crate::error::ErrorBody {
        error: crate::error::ErrorDetail {
            code: "method_not_allowed".into(),
            message: "method not allowed on this path".into(),
        },
    };
    (StatusCode::METHOD_NOT_ALLOWED, Json(body))
}

pub fn router(state: AppState, max_body_bytes: usize) -> Router {
    // The send endpoint takes media inline (base64 grows it by a third) or as an upload.
    let media = state.limits.fetch.max_bytes;
    let send_body_limit = max_body_bytes.max(media.saturating_add(media / 3).saturating_add(64 * 1024));
    Router::new()
        // A browser opening the server's address lands on the dashboard.
        .route("/", get(|| async { axum::response::Redirect::temporary("/dashboard") }))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/openapi.json", get(openapi_json))
        .route("/api/v1/tenants", post(tenants::create_tenant).get(tenants::list_tenants))
        .route("/api/v1/keys", post(tenants::create_key).get(tenants::list_keys))
        .route("/api/v1/keys/{id}", delete(tenants::revoke_key))
        .route("/api/v1/accounts", post(accounts::create).get(accounts::list))
        .route("/api/v1/accounts/{id}", get(accounts::get).patch(accounts::update).delete(accounts::delete))
        .route("/api/v1/accounts/{id}/activity", get(accounts::activity))
        .route("/api/v1/accounts/{id}/connect", post(accounts::connect))
        .route("/api/v1/accounts/{id}/disconnect", post(accounts::disconnect))
        .route("/api/v1/accounts/{id}/logout", post(accounts::logout))
        .route("/metrics", get(metrics::metrics))
        .route("/api/v1/accounts/{id}/qr", get(accounts::qr))
        .route("/api/v1/whatsapp/start-session", post(compat::start_session))
        .route("/api/v1/whatsapp/sessions", get(compat::sessions))
        .route("/api/v1/whatsapp/sessions/{account_id}", get(compat::session).delete(compat::delete_session))
        .route("/api/v1/whatsapp/sessions/{account_id}/qr", get(compat::session_qr))
        .route("/api/v1/whatsapp/send-message", post(compat::send_message))
        .route("/api/v1/events/ws", get(live_ws::events_ws))
        .route("/api/v1/emulator/accounts/{id}/scan", post(emulator_api::scan))
        .route("/api/v1/emulator/accounts/{id}/enter-code", post(emulator_api::enter_code))
        .route("/api/v1/emulator/phones", post(emulator_api::create_phone))
        .route("/api/v1/emulator/phones/{phone}/send", post(emulator_api::phone_send))
        .route("/api/v1/emulator/phones/{phone}/inbox", get(emulator_api::phone_inbox))
        .route("/api/v1/emulator/phones/{phone}/read", post(emulator_api::phone_read))
        .route(
            "/api/v1/accounts/{id}/messages",
            post(messages::send).layer(crate::body_limit::max(send_body_limit)).get(messages::history),
        )
        .route(
            "/api/v1/accounts/{id}/messages/bulk",
            post(crate::bulk::bulk_send).layer(crate::body_limit::max(send_body_limit)),
        )
        .route(
            "/api/v1/accounts/{id}/messages/{message_id}",
            get(messages::get_message).patch(messages::actions::edit).delete(messages::actions::revoke),
        )
        .route("/api/v1/accounts/{id}/messages/{message_id}/reaction", post(messages::actions::react))
        .route("/api/v1/accounts/{id}/messages/read", post(messages::actions::read))
        .route("/api/v1/accounts/{id}/chat-state", post(messages::actions::set_chat_state))
        .route("/api/v1/accounts/{id}/messages/{message_id}/media", get(messages::download_media))
        .route("/api/v1/accounts/{id}/check-numbers", post(messages::check_numbers))
        .route("/api/v1/accounts/{id}/chats", get(crate::chats::http::list))
        .route("/api/v1/webhooks", post(webhooks::create).get(webhooks::list))
        .route("/api/v1/webhooks/{id}", delete(webhooks::delete))
        .route("/api/v1/webhooks/{id}/deliveries", get(webhooks::deliveries))
        .route("/api/v1/webhooks/deliveries/{id}/replay", post(webhooks::replay))
        .merge(crate::campaigns::routes(send_body_limit))
        .merge(crate::groups::http::routes())
        .merge(crate::dashboard::routes())
        .merge(crate::api_docs::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(crate::body_limit::max(max_body_bytes))
        .layer(crate::live_socketio::layer(state.clone()))
        .with_state(state)
}
