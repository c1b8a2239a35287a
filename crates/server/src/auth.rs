//! Authentication: bearer API keys, required for writes (and reads, when configured), or the
//! same key kept by the dashboard's session cookie (`dashboard::session`).

use axum::Extension;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use twinledger_core::TwinId;
use twinledger_ledger::{AccessError, Caller, Scope};

use crate::{ApiError, AppState};

/// When a key is required.
#[derive(Debug, Clone, Copy, Default)]
pub struct AuthPolicy {
    /// Writes need a key with the write scope.
    pub writes: bool,
    /// Reads need a key too.
    pub reads: bool,
}

/// The cookie that holds the dashboard session's key.
pub(crate) const SESSION_COOKIE: &str = "twinledger_key";

/// The key of the dashboard's session, if the request carries one.
fn session_key(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(cookie::Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == SESSION_COOKIE)
        .map(|c| c.value().to_owned())
        .filter(|k| !k.is_empty())
}

/// Whether a request comes from a page of this service. A browser sends `Origin` with every
/// request a script or form makes other than a GET, and `Sec-Fetch-Site` too when it is recent;
/// a request without them is not a browser's and carries no one's cookie by accident. Behind a
/// proxy, `Host` must be passed through unchanged (nginx: `proxy_set_header Host $host`).
pub(crate) fn same_origin(headers: &HeaderMap) -> bool {
    let text = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    if text(header::HeaderName::from_static("sec-fetch-site")).is_some_and(|s| s != "same-origin") {
        return false;
    }
    match (text(header::ORIGIN), text(header::HOST)) {
        (Some(origin), Some(host)) => origin
            .split_once("://")
            .is_some_and(|(_, authority)| authority.eq_ignore_ascii_case(host)),
        _ => false,
    }
}

/// A browser asking for a page of the dashboard (not a script asking for a fragment).
fn wants_page(req: &Request) -> bool {
    let path = req.uri().path();
    *req.method() == Method::GET
        && (path == crate::dashboard::ROOT
            || path.starts_with(&format!("{}/", crate::dashboard::ROOT)))
        && req
            .headers()
            .get(header::ACCEPT)
            .and_then(|a| a.to_str().ok())
            .is_some_and(|a| a.contains("text/html"))
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

fn refuse(status: StatusCode, message: String, key_id: Option<&str>) -> Response {
    // The attempt is logged with the key's public id only, never the token.
    let mut r = ApiError {
        key_id: key_id.map(str::to_owned),
        ..ApiError::new(status, message)
    }
    .into_response();
    if status == StatusCode::UNAUTHORIZED {
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
    }
    r
}

/// Routes answered to anyone: health, the API's description (`/openapi.json`, `/docs`), the
/// dashboard's scripts and styles and its key prompt, which hold nothing about the ledger.
pub(crate) fn is_public(path: &str) -> bool {
    path == "/health"
        // Only the way to the dashboard, which asks for a key itself.
        || path == "/"
        || path.starts_with(crate::dashboard::ASSETS)
        || path == crate::dashboard::session::PATH
        || path == crate::dashboard::session::END_PATH
        || path == crate::openapi::DOCUMENT_PATH
        || path == crate::openapi::UI_PATH
        || path
            .strip_prefix(crate::openapi::UI_PATH)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// Checks the bearer key of every request but the public ones, and hands the caller to the
/// handlers.
pub(crate) async fn authenticate(
    State(app): State<AppState>,
    mut req: Request,
    next: Next,
) -> Response {
    if is_public(req.uri().path()) {
        return next.run(req).await;
    }
    let need = if matches!(*req.method(), Method::GET | Method::HEAD) {
        Scope::Read
    } else {
        Scope::Write
    };
    let policy = app.config.auth;
    let required = match need {
        Scope::Write => policy.writes,
        Scope::Read => policy.reads,
    };
    let (token, from_session) = match bearer(req.headers()) {
        Some(t) => (Some(t.to_owned()), false),
        None => (session_key(req.headers()), true),
    };
    let Some(token) = token else {
        if required {
            if wants_page(&req) {
                return crate::dashboard::session::prompt(
                    StatusCode::UNAUTHORIZED,
                    &return_to(&req),
                    None,
                );
            }
            return refuse(
                StatusCode::UNAUTHORIZED,
                "this request needs an API key (Authorization: Bearer <key>)".into(),
                None,
            );
        }
        return next.run(req).await;
    };
    // The cookie goes with every request to this service, whichever site made it: only the
    // service's own pages may write with it.
    if from_session && need == Scope::Write && !same_origin(req.headers()) {
        return refuse(
            StatusCode::FORBIDDEN,
            "a write with the dashboard's session must come from the dashboard's own pages \
             (Origin and Host differ); send the key as Authorization: Bearer <key> instead"
                .into(),
            None,
        );
    }
    let key_id = token
        .strip_prefix("tl_")
        .and_then(|r| r.split('_').next())
        .map(str::to_owned);
    match app.ledger.authenticate(&token).await {
        Ok(caller) => {
            if let Err(e) = caller.allows(need, None).or_else(|e| match e {
                // Prefix limits are checked by the handler, which knows the twin.
                AccessError::Forbidden(_) if caller.scope >= need => Ok(()),
                e => Err(e),
            }) {
                return refuse(StatusCode::FORBIDDEN, e.to_string(), Some(&caller.key_id));
            }
            req.extensions_mut().insert(caller);
            next.run(req).await
        }
        // A session whose key was revoked: the prompt again, or no key at all where none is
        // needed (an old cookie must not lock anyone out of an open dashboard).
        Err(e) if from_session => {
            if !required {
                return next.run(req).await;
            }
            if wants_page(&req) {
                let message = format!("The session's key no longer opens this ledger: {e}.");
                return crate::dashboard::session::forget(crate::dashboard::session::prompt(
                    StatusCode::UNAUTHORIZED,
                    &return_to(&req),
                    Some(&message),
                ));
            }
            refuse(StatusCode::UNAUTHORIZED, e.to_string(), key_id.as_deref())
        }
        Err(e) => refuse(StatusCode::UNAUTHORIZED, e.to_string(), key_id.as_deref()),
    }
}

/// The page a prompt returns to.
fn return_to(req: &Request) -> String {
    req.uri()
        .path_and_query()
        .map_or(crate::dashboard::ROOT.to_owned(), |p| p.as_str().to_owned())
}

/// The caller of a request, when it presented a key.
pub(crate) type MaybeCaller = Option<Extension<Caller>>;

/// Refuses (403) a caller whose key does not reach `twin` (`None`: the whole ledger).
pub(crate) fn check(
    caller: &MaybeCaller,
    need: Scope,
    twin: Option<&TwinId>,
) -> Result<(), ApiError> {
    match caller {
        None => Ok(()),
        Some(Extension(c)) => c.allows(need, twin).map_err(|e| ApiError {
            key_id: Some(c.key_id.clone()),
            ..ApiError::new(StatusCode::FORBIDDEN, e.to_string())
        }),
    }
}
