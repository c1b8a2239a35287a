//! Desired states, congruence and device keys: `/v1/twins/{id}/desired`,
//! `/v1/twins/{id}/congruence`, `/v1/twins/{id}/device-key`.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use twinledger_core::json::{Object, Value};
use twinledger_core::{DeviceKey, HashScheme, RecordKind, Tolerances, TwinId};
use twinledger_ledger::{LedgerError, Scope, Status, Submission, Wait};
use twinledger_store::{DeviceKeyRow, StoredRecord};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{MaybeCaller, check};
use crate::body::JsonObject;
use crate::openapi::{ErrorBody, TwinIdParam};
use crate::v1::{Params, RecordView, limit, new_record_json, params, record_json, twin_id};
use crate::{ApiError, AppState};

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_desired, put_desired))
        .routes(routes!(congruence))
        .routes(routes!(get_device_key, put_device_key, delete_device_key))
}

/// The body of `PUT /v1/twins/{id}/desired`.
#[derive(serde::Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // Describes the body; the handler reads it with the strict parser.
struct DesiredBody {
    /// The state the twin is expected to report.
    state: serde_json::Map<String, serde_json::Value>,
    /// Per-field tolerances by JSON Pointer (`"/temperature"`).
    tolerances: Option<std::collections::BTreeMap<String, ToleranceBody>>,
}

/// How far a reported field may be from the desired one and still count as congruent: exactly
/// one of `absolute` or `relative` (a fraction of the desired value), a finite number ≥ 0.
#[derive(serde::Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
#[allow(dead_code)] // Describes the body; the handler reads it with the strict parser.
enum ToleranceBody {
    Absolute(f64),
    Relative(f64),
}

/// The body of `PUT /v1/twins/{id}/device-key`.
#[derive(serde::Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // Describes the body; the handler reads it with the strict parser.
struct DeviceKeyBody {
    /// The device's Ed25519 public key, 64 hex digits.
    #[schema(pattern = "^[0-9a-fA-F]{64}$")]
    public_key: String,
    /// Whether the twin's reports must be signed with it (default false).
    require_signature: Option<bool>,
}

/// Splits `{"state": {...}, "tolerances": {...}}` (tolerances optional).
fn desired_body(body: JsonObject) -> Result<(Value, Object), ApiError> {
    let mut state = None;
    let mut annex = Object::new();
    for (key, value) in body.0.into_members() {
        match key.as_str() {
            "state" if value.as_object().is_some() => state = Some(value),
            "state" => return Err(ApiError::unprocessable("state must be a JSON object")),
            "tolerances" => {
                Tolerances::from_json(&value)
                    .map_err(|e| ApiError::unprocessable(e.to_string()))?;
                annex.insert("tolerances", value);
            }
            other => {
                return Err(ApiError::unprocessable(format!(
                    "unknown field {other:?}; expected \"state\" and optional \"tolerances\""
                )));
            }
        }
    }
    let state = state.ok_or_else(|| ApiError::unprocessable("missing field \"state\""))?;
    Ok((state, annex))
}

/// Records the state the twin is expected to report, with optional per-field tolerances.
#[utoipa::path(
    put,
    path = "/v1/twins/{id}/desired",
    tag = "congruence",
    params(
        ("id" = TwinIdParam, Path, description = "The twin."),
        ("Idempotency-Key" = Option<String>, Header, nullable = false, min_length = 1, max_length = 255, pattern = "^[\\x21-\\x7e]+$", description = "Makes a retried write record once (1 to 255 visible ASCII characters)."),
    ),
    request_body(content = DesiredBody, content_type = "application/json"),
    responses(
        (status = 201, description = "Recorded.", body = RecordView),
        (status = 409, description = "Refused by the ledger (an idempotency key reused with another body).", body = ErrorBody),
    )
)]
async fn put_desired(
    State(app): State<AppState>,
    caller: MaybeCaller,
    Path(id): Path<String>,
    headers: axum::http::HeaderMap,
    body: JsonObject,
) -> Result<Response, ApiError> {
    let twin_id = twin_id(id)?;
    check(&caller, Scope::Write, Some(&twin_id))?;
    let idempotency_key = crate::body::idempotency_key(&headers)?;
    let (state, annex) = desired_body(body)?;
    let submission = Submission {
        idempotency_key,
        annex,
        ..Submission::plain(twin_id, RecordKind::Desired, state, HashScheme::JcsSha256)
    };
    let (record, _) = app.ledger.record(submission, Wait::Stored).await?;
    Ok((
        StatusCode::CREATED,
        Json(new_record_json(&record, Status::Pending, None)),
    )
        .into_response())
}

/// The twin's current desired state.
#[utoipa::path(
    get,
    path = "/v1/twins/{id}/desired",
    tag = "congruence",
    params(("id" = TwinIdParam, Path, description = "The twin.")),
    responses(
        (status = 200, description = "The desired record.", body = RecordView),
        (status = 400, description = "Not a valid twin id.", body = ErrorBody),
        (status = 404, description = "No such twin, or it has no desired state.", body = ErrorBody),
    )
)]
async fn get_desired(
    State(app): State<AppState>,
    caller: MaybeCaller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = twin_id(id)?;
    check(&caller, Scope::Read, Some(&id))?;
    let twin = app.ledger.twin(&id).await?;
    let index = twin.desired_index.ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!("twin {id} has no desired state"),
        )
    })?;
    let row =
        app.ledger.store().record_at(index).await?.ok_or_else(|| {
            ApiError::from(LedgerError::Store(format!("record {index} vanished")))
        })?;
    let (status, anchor) = app.ledger.status(&row).await?;
    Ok(Json(record_json(&row, status, anchor)).into_response())
}

/// One assessed report: its version and time, with the congruence recorded with it (score,
/// band, diverging fields).
#[derive(Serialize, ToSchema)]
pub(crate) struct Assessment {
    version: i64,
    recorded_at_ms: i64,
    /// The annex's `congruence` member, as recorded.
    #[serde(flatten)]
    #[schema(ignore)]
    pub(crate) congruence: serde_json::Map<String, serde_json::Value>,
}

/// `GET /v1/twins/{id}/congruence`.
#[derive(Serialize, ToSchema)]
struct CongruenceView {
    twin_id: String,
    /// The band of the latest assessed report.
    band: Option<String>,
    /// The latest assessed report, whatever the range.
    current: Option<Assessment>,
    /// Assessed reports in the range, oldest first.
    history: Vec<Assessment>,
    /// Pass as `after_version` for the next page; none on the last page.
    next_after_version: Option<i64>,
}

pub(crate) fn assessment(row: &StoredRecord) -> Option<Assessment> {
    let annex: serde_json::Value = serde_json::from_str(row.annex.as_deref()?).ok()?;
    let congruence = annex.get("congruence")?.as_object()?.clone();
    Some(Assessment {
        version: row.version,
        recorded_at_ms: row.recorded_at_ms,
        congruence,
    })
}

fn millis(
    p: &std::collections::HashMap<String, String>,
    key: &str,
    default: i64,
) -> Result<i64, ApiError> {
    match p.get(key) {
        None => Ok(default),
        Some(s) => s.parse::<i64>().map_err(|_| {
            ApiError::bad_request(format!(
                "{key} must be milliseconds since the Unix epoch, not {s:?}"
            ))
        }),
    }
}

/// The twin's current congruence (its latest assessed report) and the history of assessed
/// reports in a time range, oldest first, paged by version.
#[utoipa::path(
    get,
    path = "/v1/twins/{id}/congruence",
    tag = "congruence",
    params(
        ("id" = TwinIdParam, Path, description = "The twin."),
        ("from_ms" = Option<i64>, Query, nullable = false, description = "Reports recorded at or after this time (ms since the Unix epoch)."),
        ("to_ms" = Option<i64>, Query, nullable = false, description = "Reports recorded at or before this time."),
        ("after_version" = Option<u64>, Query, nullable = false, description = "Reports after this version (`next_after_version` of the previous page)."),
        ("limit" = Option<u32>, Query, nullable = false, minimum = 1, maximum = 1000, description = "Page size (default 100)."),
    ),
    responses(
        (status = 200, description = "The congruence.", body = CongruenceView),
        (status = 400, description = "A bad parameter.", body = ErrorBody),
        (status = 404, description = "No such twin.", body = ErrorBody),
    )
)]
async fn congruence(
    State(app): State<AppState>,
    caller: MaybeCaller,
    Path(id): Path<String>,
    q: Params,
) -> Result<Response, ApiError> {
    let id = twin_id(id)?;
    check(&caller, Scope::Read, Some(&id))?;
    let p = params(q, &["from_ms", "to_ms", "after_version", "limit"])?;
    let limit = limit(&p)?;
    let (from_ms, to_ms) = (
        millis(&p, "from_ms", i64::MIN)?,
        millis(&p, "to_ms", i64::MAX)?,
    );
    if from_ms > to_ms {
        return Err(ApiError::bad_request("from_ms is after to_ms"));
    }
    let after = match p.get("after_version") {
        None => 0,
        Some(s) => s.parse::<u64>().map_err(|_| {
            ApiError::bad_request(format!("after_version must be a version, not {s:?}"))
        })?,
    };
    let twin = app.ledger.twin(&id).await?;
    let store = app.ledger.store();
    // The current score is the latest assessed report whatever the range.
    let (history, latest) = tokio::try_join!(
        store.congruence_history(&id, after, from_ms, to_ms, limit),
        store.latest_assessed(&id),
    )?;
    let next = (history.len() == limit)
        .then(|| history.last().map(|r| r.version))
        .flatten();
    Ok(Json(CongruenceView {
        twin_id: id.to_string(),
        band: twin.band,
        current: latest.as_ref().and_then(assessment),
        history: history.iter().filter_map(assessment).collect(),
        next_after_version: next,
    })
    .into_response())
}

/// Registers the device key of a twin (replacing any), and whether reports must be signed.
#[utoipa::path(
    put,
    path = "/v1/twins/{id}/device-key",
    tag = "congruence",
    params(("id" = TwinIdParam, Path, description = "The twin.")),
    request_body(content = DeviceKeyBody, content_type = "application/json"),
    responses(
        (status = 200, description = "Registered.", body = DeviceKeyRow),
        (status = 404, description = "No such twin.", body = ErrorBody),
    )
)]
async fn put_device_key(
    State(app): State<AppState>,
    caller: MaybeCaller,
    Path(id): Path<String>,
    body: JsonObject,
) -> Result<Response, ApiError> {
    let id = twin_id(id)?;
    check(&caller, Scope::Write, Some(&id))?;
    let (mut key, mut require) = (None, false);
    for (name, value) in body.0.iter() {
        match (name, value) {
            ("public_key", Value::String(s)) => {
                key = Some(
                    DeviceKey::from_hex(s).map_err(|e| ApiError::unprocessable(e.to_string()))?,
                );
            }
            ("require_signature", Value::Bool(b)) => require = *b,
            ("public_key" | "require_signature", _) => {
                return Err(ApiError::unprocessable(format!(
                    "{name} has the wrong type"
                )));
            }
            (other, _) => {
                return Err(ApiError::unprocessable(format!(
                    "unknown field {other:?}; expected \"public_key\" and \"require_signature\""
                )));
            }
        }
    }
    let key = key.ok_or_else(|| ApiError::unprocessable("missing field \"public_key\""))?;
    let row = app.ledger.put_device_key(&id, &key, require).await?;
    Ok(Json(row).into_response())
}

/// The twin's device key.
#[utoipa::path(
    get,
    path = "/v1/twins/{id}/device-key",
    tag = "congruence",
    params(("id" = TwinIdParam, Path, description = "The twin.")),
    responses(
        (status = 200, description = "The key.", body = DeviceKeyRow),
        (status = 400, description = "Not a valid twin id.", body = ErrorBody),
        (status = 404, description = "The twin has no device key.", body = ErrorBody),
    )
)]
async fn get_device_key(
    State(app): State<AppState>,
    caller: MaybeCaller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = twin_id(id)?;
    check(&caller, Scope::Read, Some(&id))?;
    match app.ledger.device_key(&id).await? {
        Some(row) => Ok(Json(row).into_response()),
        None => Err(no_key(&id)),
    }
}

/// Removes the twin's device key (its reports need no signature from then on).
#[utoipa::path(
    delete,
    path = "/v1/twins/{id}/device-key",
    tag = "congruence",
    params(("id" = TwinIdParam, Path, description = "The twin.")),
    responses(
        (status = 204, description = "Removed."),
        (status = 400, description = "Not a valid twin id.", body = ErrorBody),
        (status = 404, description = "The twin has no device key.", body = ErrorBody),
    )
)]
async fn delete_device_key(
    State(app): State<AppState>,
    caller: MaybeCaller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = twin_id(id)?;
    check(&caller, Scope::Write, Some(&id))?;
    if app.ledger.delete_device_key(&id).await? {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(no_key(&id))
    }
}

fn no_key(id: &TwinId) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!("twin {id} has no device key"),
    )
}
