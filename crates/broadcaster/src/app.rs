//! The HTTP router: every route, the fallbacks and the layers around them.

use axum::Json;
use axum::Router;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{delete, get, post};

use crate::error::ApiError;
use crate::state::AppState;
use crate::{accounts, compat, emulator_api, live_ws, messages, ops, tenants, webhooks};

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
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
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
        .route("/metrics", get(ops::metrics))
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
        .route(
            "/api/v1/accounts/{id}/chats/{chat}",
            get(crate::chats::http::get).patch(crate::chats::http::update),
        )
        .route("/api/v1/webhooks", post(webhooks::create).get(webhooks::list))
        .route("/api/v1/webhooks/{id}", delete(webhooks::delete).patch(webhooks::update))
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
        .layer(axum::middleware::from_fn_with_state(state.clone(), crate::live_socketio::limit_new_sessions))
        .with_state(state)
}
