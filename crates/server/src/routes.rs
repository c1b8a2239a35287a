//! Routes: the seed's endpoints and health.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use twinledger_core::json::Value;
use twinledger_core::{HashScheme, RecordKind, TwinId};
use twinledger_ledger::{LedgerError, Scope, Submission, Wait};

use crate::auth::{MaybeCaller, check};
use crate::body::JsonObject;
use crate::{ApiError, AppState};

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/update_twin_on_blockchain/", post(update_twin))
        .route("/update_twin_on_blockchain", post(update_twin))
        .route("/get_twin_from_blockchain/{twin_id}", get(get_twin))
        .route("/health", get(health))
        .merge(crate::v1::routes())
        .merge(crate::congruence::routes())
        .merge(crate::events::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "no such endpoint")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method not allowed on this endpoint",
    )
}

/// Splits the seed's `{"twin_id": "...", "data": {...}}` body, refusing anything else.
fn seed_update(body: JsonObject) -> Result<(TwinId, Value), ApiError> {
    let mut twin_id = None;
    let mut data = None;
    for (key, value) in body.0.into_members() {
        match key.as_str() {
            "twin_id" => twin_id = Some(value),
            "data" => data = Some(value),
            other => {
                return Err(ApiError::unprocessable(format!(
                    "unknown field {other:?}; expected \"twin_id\" and \"data\""
                )));
            }
        }
    }
    let twin_id = match twin_id {
        None => return Err(ApiError::unprocessable("missing field \"twin_id\"")),
        Some(Value::String(s)) => {
            TwinId::new(s).map_err(|e| ApiError::unprocessable(e.to_string()))?
        }
        Some(_) => return Err(ApiError::unprocessable("twin_id must be a string")),
    };
    let data = match data {
        None => return Err(ApiError::unprocessable("missing field \"data\"")),
        Some(v @ Value::Object(_)) => v,
        Some(_) => return Err(ApiError::unprocessable("data must be a JSON object")),
    };
    Ok((twin_id, data))
}

/// `POST /update_twin_on_blockchain/`: the seed's write. Stores the update (durably, as
/// pending), anchors it with the seed contract and answers with the transaction hash.
async fn update_twin(
    State(app): State<AppState>,
    caller: MaybeCaller,
    headers: axum::http::HeaderMap,
    body: JsonObject,
) -> Result<Response, ApiError> {
    let idempotency_key = crate::body::idempotency_key(&headers)?;
    let (twin_id, data) = seed_update(body)?;
    check(&caller, Scope::Write, Some(&twin_id))?;
    let submission = Submission {
        idempotency_key,
        ..Submission::plain(twin_id, RecordKind::Reported, data, HashScheme::SeedSha256)
    };
    let wait = app.config.anchor_wait;
    let outcome = tokio::time::timeout(wait, app.ledger.record(submission, Wait::Anchored)).await;
    let (_, anchor) = match outcome {
        Ok(r) => r?,
        Err(_) => {
            return Err(LedgerError::Chain(format!(
                "not anchored within {} s; the update is stored as pending and will be anchored when the chain catches up",
                wait.as_secs()
            ))
            .into());
        }
    };
    let tx_hash = anchor.map(|a| a.tx_hash).unwrap_or_default();
    Ok(Json(json!({
        "message": "Digital Twin updated on blockchain",
        "tx_hash": tx_hash,
    }))
    .into_response())
}

/// `GET /get_twin_from_blockchain/{twin_id}`: the seed's integrity check of a twin's latest
/// state against the contract.
async fn get_twin(
    State(app): State<AppState>,
    caller: MaybeCaller,
    Path(twin_id): Path<String>,
) -> Result<Response, ApiError> {
    let twin_id = TwinId::new(twin_id).map_err(|e| ApiError::bad_request(e.to_string()))?;
    check(&caller, Scope::Read, Some(&twin_id))?;
    match app.ledger.seed_check(&twin_id).await {
        Ok(check) => Ok(Json(check).into_response()),
        Err(LedgerError::TwinNotFound(_)) => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "Twin not found in local storage",
        )),
        Err(e) => Err(e.into()),
    }
}

/// `POST /bench/noop`: takes the body and answers like a write would, doing nothing in between.
pub(crate) async fn noop(_body: axum::body::Bytes) -> Response {
    (StatusCode::CREATED, Json(json!({"index": 0}))).into_response()
}

/// `GET /health`: database and chain.
async fn health(State(app): State<AppState>) -> Response {
    let h = app.ledger.health().await;
    let healthy = h.database.is_ok() && h.chain.is_ok() && h.anchoring.last_error.is_none();
    let mut database = match &h.database {
        Ok(s) => json!({"ok": true, "records": s.records, "twins": s.twins, "pending": s.pending}),
        Err(e) => json!({"ok": false, "error": e}),
    };
    // Reads can succeed while writes fail (a full or read-only disk): that is not healthy.
    if let Some(e) = &h.write_error {
        database["ok"] = json!(false);
        database["write_error"] = json!(e);
    }
    let healthy = healthy && h.write_error.is_none();
    let chain = match &h.chain {
        Ok(c) => {
            json!({"ok": true, "chain_id": c.chain_id, "block_number": c.block_number, "contract": h.contract})
        }
        Err(e) => json!({"ok": false, "error": e, "contract": h.contract}),
    };
    let mut body = json!({
        "status": if healthy { "ok" } else { "degraded" },
        "mode": h.mode,
        "database": database,
        "chain": chain,
        "anchoring": {
            "last_error": h.anchoring.last_error,
            "replacements": h.anchoring.replacements,
            "reorganisations": h.anchoring.reorganisations,
            "other_sender": h.anchoring.other_sender,
            "chain_state_losses": h.anchoring.chain_state_losses,
            "lost_heads": h.anchoring.lost_heads,
        },
    });
    if let Some(sizes) = h.anchored {
        body["anchoring"]["anchored_size"] = json!(sizes.anchored);
        body["anchoring"]["confirmed_size"] = json!(sizes.confirmed);
        body["anchoring"]["finalized_size"] = json!(sizes.finalized);
    }
    // A broker that is down degrades ingestion only: HTTP writes still work.
    if let Some(ingestion) = h.ingestion {
        body["mqtt"] = json!(ingestion);
    }
    let status = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}
