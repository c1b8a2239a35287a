//! Routes: the seed's endpoints, health and the API document; [`documented`] gathers every
//! route with its OpenAPI description.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::Serialize;
use twinledger_core::json::Value;
use twinledger_core::{HashScheme, RecordKind, TwinId};
use twinledger_ledger::{
    AnchoringStatus, IngestionReport, LedgerError, Scope, SeedCheck, Submission, Wait,
};
use utoipa::openapi::OpenApi as Document;
use utoipa::{Modify, OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{MaybeCaller, check};
use crate::body::JsonObject;
use crate::openapi::{ApiDoc, Conventions, ErrorBody};
use crate::{ApiError, AppState};

/// Every route and the document describing them, from the same list.
pub(crate) fn documented() -> (Router<AppState>, Document) {
    let (router, mut doc) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(update_twin))
        // The seed's clients post with and without the trailing slash; one is documented.
        .route("/update_twin_on_blockchain", post(update_twin))
        .routes(routes!(get_twin))
        .routes(routes!(health))
        .routes(routes!(crate::openapi::document_route))
        .merge(crate::v1::routes())
        .merge(crate::congruence::routes())
        .merge(crate::events::routes())
        .split_for_parts();
    Conventions.modify(&mut doc);
    (router, doc)
}

pub(crate) async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "no such endpoint")
}

pub(crate) async fn method_not_allowed() -> ApiError {
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

/// The seed's write: `{"twin_id": "...", "data": {...}}`.
#[derive(serde::Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // Describes the body; the handler reads it with the strict parser.
struct SeedUpdate {
    #[schema(value_type = crate::openapi::TwinIdParam)]
    twin_id: String,
    /// Its new state.
    data: serde_json::Map<String, serde_json::Value>,
}

/// The seed's answer to a write.
#[derive(Serialize, ToSchema)]
struct SeedUpdated {
    /// Always `Digital Twin updated on blockchain`.
    message: &'static str,
    /// The anchoring transaction, `0x`-prefixed.
    tx_hash: String,
}

/// Stores the update (durably, as pending), anchors it with the seed contract (legacy mode) or
/// in the log (log mode) and answers with the transaction hash once it is mined.
#[utoipa::path(
    post,
    path = "/update_twin_on_blockchain/",
    tag = "seed",
    request_body(content = SeedUpdate, content_type = "application/json"),
    params(("Idempotency-Key" = Option<String>, Header, nullable = false, min_length = 1, max_length = 255, pattern = "^[\\x21-\\x7e]+$", description = "Makes a retried write record once (1 to 255 visible ASCII characters).")),
    responses(
        (status = 200, description = "Recorded and anchored.", body = SeedUpdated),
        (status = 409, description = "Refused by the ledger (an idempotency key reused, a device-key rule).", body = ErrorBody),
    )
)]
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
    Ok(Json(SeedUpdated {
        message: "Digital Twin updated on blockchain",
        tx_hash,
    })
    .into_response())
}

/// The seed's integrity check of a twin's latest state against the chain.
#[utoipa::path(
    get,
    path = "/get_twin_from_blockchain/{twin_id}",
    tag = "seed",
    params(("twin_id" = crate::openapi::TwinIdParam, Path, description = "The twin.")),
    responses(
        (status = 200, description = "The verdict.", body = SeedCheck),
        (status = 400, description = "Not a valid twin id.", body = ErrorBody),
        (status = 404, description = "No such twin.", body = ErrorBody),
    )
)]
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
    (
        StatusCode::CREATED,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        "{\"index\":0}",
    )
        .into_response()
}

/// `GET /health`.
#[derive(Serialize, ToSchema)]
struct HealthView {
    /// `ok`, or `degraded` (answered with 503) when the database, the chain or anchoring fails.
    status: HealthStatus,
    /// `log` or `legacy`.
    mode: &'static str,
    database: DatabaseHealth,
    chain: ChainHealth,
    anchoring: AnchoringHealth,
    /// Device messages over MQTT, when the ingestion runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    mqtt: Option<IngestionReport>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
enum HealthStatus {
    Ok,
    Degraded,
}

/// The database: counts, or why it cannot be read or written.
#[derive(Serialize, ToSchema)]
struct DatabaseHealth {
    ok: bool,
    /// Records in the log.
    #[serde(skip_serializing_if = "Option::is_none")]
    records: Option<u64>,
    /// Twins.
    #[serde(skip_serializing_if = "Option::is_none")]
    twins: Option<u64>,
    /// Records not yet anchored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pending: Option<u64>,
    /// Why the database cannot be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    /// Why the last write failed, while writes fail (reads may still work).
    #[serde(skip_serializing_if = "Option::is_none")]
    write_error: Option<String>,
}

/// The chain: where it is, or why it cannot be reached.
#[derive(Serialize, ToSchema)]
struct ChainHealth {
    ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    chain_id: Option<u64>,
    /// The latest block.
    #[serde(skip_serializing_if = "Option::is_none")]
    block_number: Option<u64>,
    /// Why the chain cannot be reached.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    /// The contract anchors go to.
    contract: String,
}

/// Anchoring, and in log mode the anchored, confirmed and finalized sizes.
#[derive(Serialize, ToSchema)]
struct AnchoringHealth {
    #[serde(flatten)]
    status: AnchoringStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    anchored_size: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    confirmed_size: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    finalized_size: Option<u64>,
}

/// The database, the chain and anchoring; answered without a key.
#[utoipa::path(
    get,
    path = "/health",
    tag = "service",
    responses(
        (status = 200, description = "Healthy.", body = HealthView),
        (status = 503, description = "Degraded: the body says what fails.", body = HealthView),
    )
)]
async fn health(State(app): State<AppState>) -> Response {
    let h = app.ledger.health().await;
    let mut database = match &h.database {
        Ok(s) => DatabaseHealth {
            ok: true,
            records: Some(s.records),
            twins: Some(s.twins),
            pending: Some(s.pending),
            error: None,
            write_error: None,
        },
        Err(e) => DatabaseHealth {
            ok: false,
            records: None,
            twins: None,
            pending: None,
            error: Some(e.clone()),
            write_error: None,
        },
    };
    // Reads can succeed while writes fail (a full or read-only disk): that is not healthy.
    if let Some(e) = &h.write_error {
        database.ok = false;
        database.write_error = Some(e.clone());
    }
    let chain = match &h.chain {
        Ok(c) => ChainHealth {
            ok: true,
            chain_id: Some(c.chain_id),
            block_number: Some(c.block_number),
            error: None,
            contract: h.contract.clone(),
        },
        Err(e) => ChainHealth {
            ok: false,
            chain_id: None,
            block_number: None,
            error: Some(e.clone()),
            contract: h.contract.clone(),
        },
    };
    let healthy = database.ok && chain.ok && h.anchoring.last_error.is_none();
    let body = HealthView {
        status: if healthy {
            HealthStatus::Ok
        } else {
            HealthStatus::Degraded
        },
        mode: h.mode,
        database,
        chain,
        anchoring: AnchoringHealth {
            status: h.anchoring,
            anchored_size: h.anchored.map(|s| s.anchored),
            confirmed_size: h.anchored.map(|s| s.confirmed),
            finalized_size: h.anchored.map(|s| s.finalized),
        },
        // A broker that is down degrades ingestion only: HTTP writes still work.
        mqtt: h.ingestion,
    };
    let status = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}
