//! API errors: a status and `{"error": "..."}`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use twinledger_ledger::LedgerError;

/// An error answered to a client.
#[derive(Debug)]
pub struct ApiError {
    /// The status.
    pub status: StatusCode,
    /// The message, for `{"error": ...}`.
    pub message: String,
    /// The public id of the API key refused, for the log line.
    pub key_id: Option<String>,
}

/// What the log line of a refused or failed request says, handed from the answer to the
/// layer that writes it (which knows the request's id and route).
#[derive(Debug, Clone)]
pub(crate) struct Failure {
    pub message: String,
    pub key_id: Option<String>,
}

impl ApiError {
    /// An error with `status`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            key_id: None,
        }
    }

    /// 400 Bad Request.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// 422 Unprocessable Entity: well-formed JSON with the wrong shape.
    pub fn unprocessable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        // Refusals and failures are logged, by the request's layer (crate::observe); other
        // client errors (a 404, a bad parameter) are not worth a line each.
        let logged = self.status.is_server_error()
            || matches!(
                self.status,
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
            );
        let failure = logged.then(|| Failure {
            message: self.message.clone(),
            key_id: self.key_id,
        });
        let mut response = (
            self.status,
            Json(serde_json::json!({ "error": self.message })),
        )
            .into_response();
        if let Some(f) = failure {
            response.extensions_mut().insert(f);
        }
        response
    }
}

impl From<twinledger_store::StoreError> for ApiError {
    fn from(e: twinledger_store::StoreError) -> Self {
        LedgerError::from(e).into()
    }
}

impl From<LedgerError> for ApiError {
    fn from(e: LedgerError) -> Self {
        let status = match &e {
            LedgerError::TwinNotFound(_) | LedgerError::VersionNotFound(..) => {
                StatusCode::NOT_FOUND
            }
            LedgerError::Conflict(_) => StatusCode::CONFLICT,
            LedgerError::Unhashable(_)
            | LedgerError::IdempotencyMismatch(_)
            | LedgerError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            LedgerError::Signature(_) => StatusCode::FORBIDDEN,
            LedgerError::Store(_)
            | LedgerError::Chain(_)
            | LedgerError::ChainUnavailable(_)
            | LedgerError::Diverged(_)
            | LedgerError::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
        };
        Self::new(status, e.to_string())
    }
}
