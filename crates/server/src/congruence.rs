//! Desired states, congruence and device keys: `/v1/twins/{id}/desired`,
//! `/v1/twins/{id}/congruence`, `/v1/twins/{id}/device-key`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use serde_json::json;
use twinledger_core::json::{Object, Value};
use twinledger_core::{DeviceKey, HashScheme, RecordKind, Tolerances, TwinId};
use twinledger_ledger::{LedgerError, Scope, Status, Submission, Wait};
use twinledger_store::StoredRecord;

use crate::auth::{MaybeCaller, check};
use crate::body::JsonObject;
use crate::v1::{Params, limit, new_record_json, params, record_json, twin_id};
use crate::{ApiError, AppState};

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/twins/{id}/desired", get(get_desired).put(put_desired))
        .route("/v1/twins/{id}/congruence", get(congruence))
        .route(
            "/v1/twins/{id}/device-key",
            get(get_device_key)
                .put(put_device_key)
                .delete(delete_device_key),
        )
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

/// `PUT /v1/twins/{id}/desired`: records the state the twin is expected to report, with
/// optional per-field tolerances (`{"/field": {"absolute": x} | {"relative": x}}`).
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

/// `GET /v1/twins/{id}/desired`: the current desired record.
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
    let row = app
        .ledger
        .read(move |s| s.record_at(index))
        .await?
        .ok_or_else(|| ApiError::from(LedgerError::Store(format!("record {index} vanished"))))?;
    let (status, anchor) = app.ledger.status(&row).await?;
    Ok(Json(record_json(&row, status, anchor)).into_response())
}

/// One assessed report in `GET /v1/twins/{id}/congruence`.
#[derive(Serialize)]
struct Assessment {
    version: i64,
    recorded_at_ms: i64,
    /// The annex's `congruence` member, as recorded.
    #[serde(flatten)]
    congruence: serde_json::Map<String, serde_json::Value>,
}

fn assessment(row: &StoredRecord) -> Option<Assessment> {
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

/// `GET /v1/twins/{id}/congruence?from_ms=&to_ms=&after_version=&limit=`: the twin's current
/// congruence (its latest assessed report) and the history of assessed reports in the time
/// range, oldest first, paged by version.
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
    let (history, latest) = {
        let id = id.clone();
        app.ledger
            .read(move |s| {
                let history = s.congruence_history(&id, after, from_ms, to_ms, limit)?;
                // The current score: the latest assessed report whatever the range.
                let latest = s.latest_assessed(&id)?;
                Ok((history, latest))
            })
            .await?
    };
    let next = (history.len() == limit)
        .then(|| history.last().map(|r| r.version))
        .flatten();
    Ok(Json(json!({
        "twin_id": id.as_str(),
        "band": twin.band,
        "current": latest.as_ref().and_then(assessment),
        "history": history.iter().filter_map(assessment).collect::<Vec<_>>(),
        "next_after_version": next,
    }))
    .into_response())
}

/// `PUT /v1/twins/{id}/device-key`: `{"public_key": "<64 hex>", "require_signature": bool}`.
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
