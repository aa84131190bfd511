//! Request body limits. Every route has one (the router's default or its own); a body past it is
//! refused with 413. A body that declares its length (`Content-Length`) past the limit is
//! refused before a byte of it is read; a chunked one when the limit is crossed while reading.

use axum::extract::{DefaultBodyLimit, Request};
use axum::http::header::CONTENT_LENGTH;

/// The body limit of the route a request was routed to (set by [`max`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyLimit(pub usize);

/// The layer giving a route (or, on the router, every route without its own) a body limit of
/// `bytes`: axum's limit while reading, and the one [`declared_too_large`] checks first.
pub fn max(
    bytes: usize,
) -> tower::ServiceBuilder<
    tower::layer::util::Stack<
        axum::Extension<BodyLimit>,
        tower::layer::util::Stack<DefaultBodyLimit, tower::layer::util::Identity>,
    >,
> {
    tower::ServiceBuilder::new().layer(DefaultBodyLimit::max(bytes)).layer(axum::Extension(BodyLimit(bytes)))
}

/// Whether the request declares a body longer than its route's limit (then it is refused
/// without reading it). Requests without a declared length or limit are read up to the limit.
pub fn declared_too_large(req: &Request) -> bool {
    let Some(BodyLimit(limit)) = req.extensions().get::<BodyLimit>().copied() else { return false };
    req.headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .is_some_and(|n| n > limit as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(len: Option<&str>, limit: Option<usize>) -> Request {
        let mut b = axum::http::Request::builder();
        if let Some(l) = len {
            b = b.header(CONTENT_LENGTH, l);
        }
        let mut r = b.body(axum::body::Body::empty()).unwrap();
        if let Some(l) = limit {
            r.extensions_mut().insert(BodyLimit(l));
        }
        r
    }

    #[test]
    fn only_a_declared_length_past_the_limit_is_too_large() {
        assert!(declared_too_large(&req(Some("1025"), Some(1024))));
        assert!(declared_too_large(&req(Some("31457280"), Some(1024))));
        assert!(!declared_too_large(&req(Some("1024"), Some(1024))));
        assert!(!declared_too_large(&req(None, Some(1024))));
        assert!(!declared_too_large(&req(Some("junk"), Some(1024))));
        assert!(!declared_too_large(&req(Some("99999999"), None)));
    }
}
