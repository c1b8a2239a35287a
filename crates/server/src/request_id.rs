//! Request ids: taken from `X-Request-Id` when the client (or a proxy in front) sent a usable
//! one, made otherwise; answered back in the same header and carried by the request's span, so
//! every log line of the request names it.

use axum::extract::{MatchedPath, Request};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;

/// The header.
pub const HEADER: &str = "x-request-id";

/// A request's id, in the request's extensions.
#[derive(Debug, Clone)]
pub struct RequestId(pub HeaderValue);

/// Longest id accepted from a client; longer ones are replaced, so a client cannot fill the
/// logs through this header.
const MAX_LEN: usize = 200;

fn usable(v: &HeaderValue) -> bool {
    let b = v.as_bytes();
    (1..=MAX_LEN).contains(&b.len()) && b.iter().all(|c| c.is_ascii_graphic())
}

fn made() -> HeaderValue {
    let id = format!("{:032x}", rand::random::<u128>());
    // 32 hex digits are always a valid header value.
    HeaderValue::from_str(&id).unwrap_or_else(|_| HeaderValue::from_static("unknown"))
}

/// Sets the request's id before anything else sees the request, and answers it back.
pub(crate) async fn assign(mut req: Request, next: Next) -> Response {
    let id = match req.headers().get(HEADER) {
        Some(v) if usable(v) => v.clone(),
        _ => made(),
    };
    req.extensions_mut().insert(RequestId(id.clone()));
    let mut res = next.run(req).await;
    res.headers_mut().insert(HEADER, id);
    res
}

/// The span of one request: its id, method and route template (never the raw path, which
/// holds twin ids).
pub(crate) fn span<B>(req: &axum::http::Request<B>) -> tracing::Span {
    let id = req
        .extensions()
        .get::<RequestId>()
        .and_then(|r| r.0.to_str().ok())
        .unwrap_or("");
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(MatchedPath::as_str)
        .unwrap_or("unmatched");
    tracing::info_span!("request", request_id = %id, method = %req.method(), route = %route)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_short_visible_ascii_ids_are_taken() {
        assert!(usable(&HeaderValue::from_static("abc-123_X.y")));
        assert!(!usable(&HeaderValue::from_static("")));
        assert!(!usable(&HeaderValue::from_static("a b")));
        let long = "a".repeat(MAX_LEN + 1);
        assert!(!usable(&HeaderValue::from_str(&long).expect("header")));
        assert!(usable(&HeaderValue::from_str(&long[1..]).expect("header")));
        let a = made();
        assert!(usable(&a) && a.len() == 32 && a != made());
    }
}
