//! Authentication: bearer API keys, required for writes (and reads, when configured).

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

/// Routes answered to anyone: health, the API's description (`/openapi.json`, `/docs`) and the
/// dashboard's scripts and styles, which hold nothing about the ledger.
pub(crate) fn is_public(path: &str) -> bool {
    path == "/health"
        || path.starts_with(crate::dashboard::ASSETS)
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
    let Some(token) = bearer(req.headers()) else {
        if required {
            return refuse(
                StatusCode::UNAUTHORIZED,
                "this request needs an API key (Authorization: Bearer <key>)".into(),
                None,
            );
        }
        return next.run(req).await;
    };
    let key_id = token
        .strip_prefix("tl_")
        .and_then(|r| r.split('_').next())
        .map(str::to_owned);
    match app.ledger.authenticate(token).await {
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
        Err(e) => refuse(StatusCode::UNAUTHORIZED, e.to_string(), key_id.as_deref()),
    }
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
