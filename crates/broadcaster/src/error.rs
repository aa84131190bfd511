//! The API's typed error, rendered as `{"error":{"code","message"}}` with a matching status.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::db::DbError;

/// Every error the HTTP API returns.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// The body or a parameter is malformed or violates a rule; `code` names the rule.
    #[error("{message}")]
    BadRequest { code: &'static str, message: String },
    #[error("missing or invalid API key")]
    Unauthorized,
    #[error("this API key lacks the `{0}` permission")]
    Forbidden(&'static str),
    /// The key may act, but WhatsApp refused the account this (e.g. a group change for admins
    /// only): 403 with `code`.
    #[error("{message}")]
    Denied { code: &'static str, message: String },
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    #[error("request body too large")]
    PayloadTooLarge,
    /// Something in the request is too large (e.g. media fetched by URL): 413 with `code`.
    #[error("{message}")]
    TooLarge { code: &'static str, message: String },
    /// The body is not of a type this endpoint reads (missing or wrong `Content-Type`): 415.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// Well-formed but refused on its meaning (a number not on WhatsApp, a URL the SSRF policy
    /// refuses): 422 with `code`.
    #[error("{message}")]
    Unprocessable { code: &'static str, message: String },
    #[error("{0}")]
    Unavailable(String),
    /// A limit was reached: 429 with `Retry-After`.
    #[error("{message}")]
    RateLimited { code: &'static str, message: String, retry_after_secs: u64, reset_at: Option<i64> },
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    pub fn bad(code: &'static str, message: impl Into<String>) -> Self {
        Self::BadRequest { code, message: message.into() }
    }

    /// 422 `code`.
    pub fn unprocessable(code: &'static str, message: impl Into<String>) -> Self {
        Self::Unprocessable { code, message: message.into() }
    }

    /// The stable machine-readable code of this error (`invalid_phone`, `not_found`, …).
    pub fn code(&self) -> &'static str {
        self.status_and_code().1
    }

    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            Self::BadRequest { code, .. } => (StatusCode::BAD_REQUEST, code),
            Self::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            Self::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            Self::Denied { code, .. } => (StatusCode::FORBIDDEN, code),
            Self::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            Self::Conflict { code, .. } => (StatusCode::CONFLICT, code),
            Self::PayloadTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            Self::TooLarge { code, .. } => (StatusCode::PAYLOAD_TOO_LARGE, code),
            Self::UnsupportedMediaType(_) => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"),
            Self::Unprocessable { code, .. } => (StatusCode::UNPROCESSABLE_ENTITY, code),
            Self::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            Self::RateLimited { code, .. } => (StatusCode::TOO_MANY_REQUESTS, code),
            Self::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl From<DbError> for ApiError {
    fn from(e: DbError) -> Self {
        if e.is_unavailable() {
            // Not a bug of ours: the database server went away (restart, network); the next
            // request reconnects, so the client should retry.
            tracing::warn!(error = %e, "database unavailable");
            return Self::Unavailable("the database is unavailable; retry shortly".into());
        }
        Self::Internal(e.to_string())
    }
}

/// A phone number that is not one: 400 `invalid_phone`, saying what is wrong.
impl From<crate::phone::PhoneError> for ApiError {
    fn from(e: crate::phone::PhoneError) -> Self {
        Self::bad("invalid_phone", format!("invalid phone number: {e}"))
    }
}

/// A media URL that gave no file: 422 `url_refused` (SSRF policy, bad URL), 413
/// `media_too_large`, 422 `media_fetch_failed` otherwise.
impl From<crate::outbound::fetch::MediaFetchError> for ApiError {
    fn from(e: crate::outbound::fetch::MediaFetchError) -> Self {
        use crate::outbound::fetch::MediaFetchError as E;
        match e {
            E::Refused(_) => Self::unprocessable("url_refused", e.to_string()),
            E::TooLarge { .. } => Self::TooLarge { code: "media_too_large", message: e.to_string() },
            E::Failed(_) => Self::unprocessable("media_fetch_failed", e.to_string()),
        }
    }
}

/// A malformed or oversized multipart body: 413 when it exceeds the route's limit, else 400
/// `invalid_multipart` with what is wrong.
impl From<axum::extract::multipart::MultipartError> for ApiError {
    fn from(e: axum::extract::multipart::MultipartError) -> Self {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Self::PayloadTooLarge
        } else {
            Self::bad("invalid_multipart", e.body_text())
        }
    }
}

/// A body that `axum::extract::Multipart` refuses (e.g. no boundary): 400 `invalid_multipart`.
impl From<axum::extract::multipart::MultipartRejection> for ApiError {
    fn from(e: axum::extract::multipart::MultipartRejection) -> Self {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Self::PayloadTooLarge
        } else {
            Self::bad("invalid_multipart", e.body_text())
        }
    }
}

/// Reads a `multipart/form-data` body: 413 (before reading) when it declares a length past
/// the route's limit, 400 `invalid_multipart` when it has no boundary.
pub async fn multipart<S: Send + Sync>(
    req: Request,
    state: &S,
) -> Result<axum::extract::Multipart, ApiError> {
    if crate::body_limit::declared_too_large(&req) {
        return Err(ApiError::PayloadTooLarge);
    }
    Ok(axum::extract::Multipart::from_request(req, state).await?)
}

/// Checks what a body's headers say before anything else is done with the request: 413 when it
/// declares a length past the route's limit, 415 unless it is JSON (or `multipart/form-data`
/// with `multipart`). For handlers that look something up before reading their body.
pub fn check_body_headers(req: &Request, multipart: bool) -> Result<(), ApiError> {
    if crate::body_limit::declared_too_large(req) {
        return Err(ApiError::PayloadTooLarge);
    }
    let essence = req
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or("").trim().to_ascii_lowercase());
    match essence.as_deref() {
        Some(t) if t == "application/json" || t.ends_with("+json") => Ok(()),
        Some("multipart/form-data") if multipart => Ok(()),
        _ => Err(ApiError::UnsupportedMediaType(if multipart {
            "expected `Content-Type: application/json` or `multipart/form-data`".into()
        } else {
            "expected `Content-Type: application/json`".into()
        })),
    }
}

/// Whether a request's body is `multipart/form-data` (for endpoints that also take JSON).
pub fn is_multipart(req: &Request) -> bool {
    req.headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().to_ascii_lowercase().starts_with("multipart/form-data"))
}

/// The JSON error envelope.
#[derive(Debug, Serialize, serde::Deserialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, serde::Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code, e.g. `invalid_phone`.
    pub code: String,
    /// Human-readable explanation.
    pub message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        if let Self::Internal(detail) = &self {
            // The detail may name tables or paths; log it, never return it.
            tracing::error!(%detail, "internal error");
        }
        let body = ErrorBody { error: ErrorDetail { code: code.to_owned(), message: self.to_string() } };
        let mut resp = (status, axum::Json(body)).into_response();
        if let Self::RateLimited { retry_after_secs, reset_at, .. } = &self {
            let h = resp.headers_mut();
            h.insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from(*retry_after_secs));
            if let Some(r) = reset_at {
                h.insert("x-ratelimit-reset", axum::http::HeaderValue::from(*r));
            }
        }
        resp
    }
}

/// `axum::Json` whose rejections become [`ApiError`]s (JSON envelope): 400 for malformed or
/// invalid JSON, 413 past the route's body limit, 415 without `Content-Type: application/json`.
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    axum::Json<T>: FromRequest<S, Rejection = JsonRejection>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if crate::body_limit::declared_too_large(&req) {
            return Err(ApiError::PayloadTooLarge);
        }
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Self(v)),
            Err(rejection) => Err(match rejection {
                JsonRejection::JsonDataError(e) => ApiError::bad("invalid_body", e.body_text()),
                JsonRejection::JsonSyntaxError(e) => ApiError::bad("malformed_json", e.body_text()),
                JsonRejection::MissingJsonContentType(_) => {
                    ApiError::UnsupportedMediaType("expected `Content-Type: application/json`".into())
                }
                JsonRejection::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                    ApiError::PayloadTooLarge
                }
                other => ApiError::bad("invalid_body", other.body_text()),
            }),
        }
    }
}

impl<S, T> axum::extract::OptionalFromRequest<S> for ApiJson<T>
where
    axum::Json<T>: FromRequest<S, Rejection = JsonRejection>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    /// No body (no `Content-Type`) is `None`; a body must be valid JSON.
    async fn from_request(req: Request, state: &S) -> Result<Option<Self>, Self::Rejection> {
        if req.headers().get(axum::http::header::CONTENT_TYPE).is_none() {
            return Ok(None);
        }
        <Self as FromRequest<S>>::from_request(req, state).await.map(Some)
    }
}

/// `axum::extract::Query` whose rejections become [`ApiError`]s.
pub struct ApiQuery<T>(pub T);

impl<S, T> axum::extract::FromRequestParts<S> for ApiQuery<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(v)| Self(v))
            .map_err(|e| ApiError::bad("invalid_query", e.body_text()))
    }
}
