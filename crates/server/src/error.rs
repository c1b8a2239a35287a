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
}

impl ApiError {
    /// An error with `status`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
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
        if self.status.is_server_error() {
            tracing::warn!(target: "twinledger::http", status = %self.status, error = %self.message, "request failed");
        }
        (
            self.status,
            Json(serde_json::json!({ "error": self.message })),
        )
            .into_response()
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
