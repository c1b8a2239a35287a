//! Request bodies: strict JSON (no duplicate keys, bounded) parsed by the core parser, with
//! every rejection answered as `{"error": ...}`.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use twinledger_core::json::{self, Object, Value};

use crate::{ApiError, AppState};

/// A request body that is one JSON object.
pub struct JsonObject(pub Object);

impl FromRequest<AppState> for JsonObject {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        if let Some(ct) = req.headers().get(header::CONTENT_TYPE) {
            let ct = ct.to_str().unwrap_or("").to_ascii_lowercase();
            let essence = ct.split(';').next().unwrap_or("").trim();
            if essence != "application/json" && !essence.ends_with("+json") {
                return Err(ApiError::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    format!("content type must be application/json, not {essence:?}"),
                ));
            }
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            let status = rejection.status();
            if status == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    status,
                    format!(
                        "request body is larger than {} bytes",
                        state.config.body_limit
                    ),
                )
            } else {
                ApiError::new(status, format!("cannot read request body: {rejection}"))
            }
        })?;
        let value = json::parse(&bytes, &state.config.json_limits)
            .map_err(|e| ApiError::bad_request(format!("invalid JSON: {e}")))?;
        match value {
            Value::Object(o) => Ok(Self(o)),
            _ => Err(ApiError::unprocessable(
                "request body must be a JSON object",
            )),
        }
    }
}

/// The `Idempotency-Key` header, if sent: 1 to 255 visible ASCII characters.
pub fn idempotency_key(headers: &axum::http::HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .ok()
        .filter(|k| (1..=255).contains(&k.len()) && k.bytes().all(|b| b.is_ascii_graphic()));
    match key {
        Some(k) => Ok(Some(k.to_owned())),
        None => Err(ApiError::bad_request(
            "Idempotency-Key must be 1 to 255 visible ASCII characters",
        )),
    }
}

/// The headers a write may carry: `Idempotency-Key` and `Twinledger-Signature` (a device's
/// signature of the state), read in place rather than copying the whole header map.
pub struct WriteHeaders {
    /// The client's idempotency key.
    pub idempotency_key: Option<String>,
    /// The device signature, as sent.
    pub signature: Option<String>,
}

impl<S: Send + Sync> FromRequestParts<S> for WriteHeaders {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let signature = match parts.headers.get(crate::v1::SIGNATURE_HEADER) {
            None => None,
            Some(v) => Some(
                v.to_str()
                    .map_err(|_| ApiError::bad_request("Twinledger-Signature must be hex"))?
                    .to_owned(),
            ),
        };
        Ok(Self {
            idempotency_key: idempotency_key(&parts.headers)?,
            signature,
        })
    }
}
