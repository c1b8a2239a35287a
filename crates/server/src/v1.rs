//! The versioned JSON API, `/v1`.

use std::collections::HashMap;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{Value as JsonValue, json};
use twinledger_core::json::Value;
use twinledger_core::{HashScheme, Record, RecordKind, TwinId};
use twinledger_ledger::{AnchorInfo, LedgerError, Scope, Status, Submission, Wait};
use twinledger_store::StoredRecord;

use crate::auth::{MaybeCaller, check};
use crate::body::{JsonObject, WriteHeaders};
use crate::{ApiError, AppState};

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/twins", get(list_twins))
        .route("/v1/twins/{id}", get(get_twin))
        .route("/v1/twins/{id}/states", post(post_state))
        .route("/v1/twins/{id}/history", get(history))
        .route("/v1/twins/{id}/versions/{v}", get(get_version))
        .route("/v1/twins/{id}/versions/{v}/proof", get(get_proof))
        .route("/v1/twins/{id}/verify", get(verify))
        .route("/v1/tree-heads", get(tree_heads))
}

pub(crate) type Params = Result<Query<HashMap<String, String>>, QueryRejection>;

/// The query parameters, refusing any not in `allowed`.
pub(crate) fn params(q: Params, allowed: &[&str]) -> Result<HashMap<String, String>, ApiError> {
    let Query(map) = q.map_err(|e| ApiError::bad_request(format!("invalid query string: {e}")))?;
    if let Some(k) = map.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(ApiError::bad_request(format!(
            "unknown query parameter {k:?}; allowed: {}",
            allowed.join(", ")
        )));
    }
    Ok(map)
}

/// `limit`: 1 to 1000, default 100.
pub(crate) fn limit(p: &HashMap<String, String>) -> Result<usize, ApiError> {
    match p.get("limit") {
        None => Ok(100),
        Some(s) => s
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=1000).contains(n))
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "limit must be an integer from 1 to 1000, not {s:?}"
                ))
            }),
    }
}

pub(crate) fn twin_id(s: String) -> Result<TwinId, ApiError> {
    TwinId::new(s).map_err(|e| ApiError::bad_request(e.to_string()))
}

fn version(s: &str) -> Result<u64, ApiError> {
    s.parse::<u64>().ok().filter(|v| *v >= 1).ok_or_else(|| {
        ApiError::bad_request(format!("version must be a positive integer, not {s:?}"))
    })
}

/// A stored record as the API shows it: the state exactly as stored (number spellings and key
/// order kept), its hashes, its status.
#[derive(Serialize)]
pub(crate) struct RecordView {
    index: u64,
    twin_id: String,
    version: i64,
    kind: String,
    state: StateView,
    hash_scheme: String,
    state_hash: Hex,
    prev_leaf_hash: Option<Hex>,
    recorded_at_ms: i64,
    salt: Hex,
    leaf_hash: Hex,
    #[serde(skip_serializing_if = "Option::is_none")]
    annex: Option<StateView>,
    status: Status,
    anchor: Option<AnchorInfo>,
}

/// Bytes shown as lowercase hex digits.
pub(crate) struct Hex(Vec<u8>);

impl Serialize for Hex {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // Hashes and salts are 32 bytes: encoded on the stack, not in a new String.
        let mut buf = [0u8; 64];
        if let Some(out) = buf.get_mut(..self.0.len() * 2)
            && hex::encode_to_slice(&self.0, out).is_ok()
            && let Ok(digits) = std::str::from_utf8(out)
        {
            return s.serialize_str(digits);
        }
        s.serialize_str(&hex::encode(&self.0))
    }
}

/// The stored state text, passed through unparsed; a row whose text is not JSON (edited by
/// hand) is shown as a string instead.
#[derive(Serialize)]
#[serde(untagged)]
pub(crate) enum StateView {
    Json(Box<RawValue>),
    Unreadable { unreadable: String },
}

fn raw(text: String) -> StateView {
    match RawValue::from_string(text.clone()) {
        Ok(v) => StateView::Json(v),
        Err(_) => StateView::Unreadable { unreadable: text },
    }
}

pub(crate) fn record_json(
    row: &StoredRecord,
    status: Status,
    anchor: Option<AnchorInfo>,
) -> RecordView {
    RecordView {
        state: raw(row.state.clone()),
        annex: row.annex.clone().map(raw),
        index: row.index,
        twin_id: row.twin_id.clone(),
        version: row.version,
        kind: row.kind.clone(),
        hash_scheme: row.scheme.clone(),
        state_hash: Hex(row.state_hash.clone()),
        prev_leaf_hash: row.prev_leaf_hash.clone().map(Hex),
        recorded_at_ms: row.recorded_at_ms,
        salt: Hex(row.salt.clone()),
        leaf_hash: Hex(row.leaf_hash.clone()),
        status,
        anchor,
    }
}

/// The view of a record just committed, identical to what reading it back would show.
pub(crate) fn new_record_json(
    r: &Record,
    status: Status,
    anchor: Option<AnchorInfo>,
) -> RecordView {
    RecordView {
        state: raw(r.state.to_json()),
        annex: r.annex.as_ref().map(|a| raw(a.value().to_json())),
        index: r.index,
        twin_id: r.twin_id.to_string(),
        version: r.version as i64,
        kind: r.kind.as_str().to_owned(),
        hash_scheme: r.scheme.as_str().to_owned(),
        state_hash: Hex(r.state_hash.0.to_vec()),
        prev_leaf_hash: r.prev_leaf_hash.map(|h| Hex(h.0.to_vec())),
        recorded_at_ms: r.recorded_at_ms,
        salt: Hex(r.salt.0.to_vec()),
        leaf_hash: Hex(r.leaf_hash().0.to_vec()),
        status,
        anchor,
    }
}

/// `GET /v1/twins/{id}`.
#[derive(Serialize)]
struct TwinView {
    twin_id: String,
    latest_version: u64,
    created_at_ms: i64,
    updated_at_ms: i64,
    latest: Option<RecordView>,
}

/// `GET /v1/twins/{id}/history`.
#[derive(Serialize)]
struct HistoryPage {
    records: Vec<RecordView>,
    next_cursor: Option<String>,
}

async fn shown(app: &AppState, row: &StoredRecord) -> Result<RecordView, ApiError> {
    let (status, anchor) = app.ledger.status(row).await?;
    Ok(record_json(row, status, anchor))
}

/// The header carrying a device's signature of the posted state (128 hex digits).
pub(crate) const SIGNATURE_HEADER: &str = "twinledger-signature";

/// `POST /v1/twins/{id}/states`: records a state (the body); `?wait=anchored|confirmed` answers
/// only once that holds; `?scheme=seed-sha256` picks the seed's hash (default `jcs-sha256`).
async fn post_state(
    State(app): State<AppState>,
    caller: MaybeCaller,
    Path(id): Path<String>,
    q: Params,
    headers: WriteHeaders,
    body: JsonObject,
) -> Result<Response, ApiError> {
    let twin_id = twin_id(id)?;
    check(&caller, Scope::Write, Some(&twin_id))?;
    let WriteHeaders {
        idempotency_key,
        signature,
    } = headers;
    let p = params(q, &["wait", "scheme"])?;
    let wait = match p.get("wait").map(String::as_str) {
        None | Some("stored") => Wait::Stored,
        Some("anchored") => Wait::Anchored,
        Some("confirmed") => Wait::Confirmed,
        Some("finalized") => Wait::Finalized,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "wait must be stored, anchored, confirmed or finalized, not {other:?}"
            )));
        }
    };
    let scheme = match p.get("scheme") {
        None => HashScheme::JcsSha256,
        Some(s) => s
            .parse()
            .map_err(|e: twinledger_core::CanonicalError| ApiError::bad_request(e.to_string()))?,
    };
    let submission = Submission {
        idempotency_key,
        signature,
        ..Submission::plain(
            twin_id.clone(),
            RecordKind::Reported,
            Value::Object(body.0),
            scheme,
        )
    };
    let timeout = app.config.anchor_wait;
    let recorded = app.ledger.record(submission, wait);
    // A durable write needs no timer: only waiting for the chain can take long.
    let outcome = match wait {
        Wait::Stored => Ok(recorded.await),
        _ => tokio::time::timeout(timeout, recorded).await,
    };
    let (record, anchor) = match outcome {
        Ok(r) => r?,
        Err(_) => {
            return Err(LedgerError::Chain(format!(
                "not {} within {} s; the record is stored as pending",
                match wait {
                    Wait::Finalized => "finalized",
                    Wait::Confirmed => "confirmed",
                    _ => "anchored",
                },
                timeout.as_secs()
            ))
            .into());
        }
    };
    let status = match (wait, anchor.is_some()) {
        (Wait::Finalized, true) => Status::Finalized,
        (Wait::Confirmed, true) => Status::Confirmed,
        (_, true) => Status::Anchored,
        _ => Status::Pending,
    };
    // Shown from the committed record itself: no second read of what was just written.
    Ok((
        StatusCode::CREATED,
        Json(new_record_json(&record, status, anchor)),
    )
        .into_response())
}

/// `GET /v1/twins?after=ID&limit=N`: twins in id order.
async fn list_twins(
    State(app): State<AppState>,
    caller: MaybeCaller,
    q: Params,
) -> Result<Response, ApiError> {
    check(&caller, Scope::Read, None)?;
    let p = params(q, &["after", "limit"])?;
    let limit = limit(&p)?;
    let after = p.get("after").cloned();
    let twins = app
        .ledger
        .read(move |s| s.twins(after.as_deref(), limit))
        .await?;
    let next = (twins.len() == limit)
        .then(|| twins.last().map(|t| t.twin_id.clone()))
        .flatten();
    Ok(Json(json!({ "twins": twins, "next_after": next })).into_response())
}

/// `GET /v1/twins/{id}`: the twin and its latest record.
async fn get_twin(
    State(app): State<AppState>,
    caller: MaybeCaller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = twin_id(id)?;
    check(&caller, Scope::Read, Some(&id))?;
    let (twin, latest) = {
        let id = id.clone();
        app.ledger
            .read(move |s| {
                let twin = s.twin(&id)?;
                let latest = match &twin {
                    Some(t) => s.record(&id, t.latest_version)?,
                    None => None,
                };
                Ok((twin, latest))
            })
            .await?
    };
    let twin = twin.ok_or_else(|| ApiError::from(LedgerError::TwinNotFound(id.to_string())))?;
    let latest = match &latest {
        Some(row) => Some(shown(&app, row).await?),
        None => None,
    };
    Ok(Json(TwinView {
        twin_id: twin.twin_id,
        latest_version: twin.latest_version,
        created_at_ms: twin.created_at_ms,
        updated_at_ms: twin.updated_at_ms,
        latest,
    })
    .into_response())
}

/// A history cursor: the next version, tagged with a MAC under the service's cursor key so that
/// an edited cursor is refused rather than silently paging from elsewhere.
fn seal_cursor(app: &AppState, twin: &TwinId, version: u64) -> String {
    format!("{version}.{}", cursor_tag(app, twin, version))
}

fn cursor_tag(app: &AppState, twin: &TwinId, version: u64) -> String {
    let mut data = app.config.cursor_key.to_vec();
    data.extend_from_slice(twin.as_str().as_bytes());
    data.push(0);
    data.extend_from_slice(&version.to_be_bytes());
    twinledger_core::Hash::digest(&data).to_hex()[..16].to_owned()
}

fn open_cursor(app: &AppState, twin: &TwinId, cursor: &str) -> Result<u64, ApiError> {
    let invalid = || ApiError::bad_request(format!("invalid cursor {cursor:?}"));
    let (v, tag) = cursor.split_once('.').ok_or_else(invalid)?;
    let v = version(v).map_err(|_| invalid())?;
    if tag != cursor_tag(app, twin, v) {
        return Err(invalid());
    }
    Ok(v)
}

/// `GET /v1/twins/{id}/history?cursor=C&limit=N`: versions from `cursor` (default 1) on.
async fn history(
    State(app): State<AppState>,
    caller: MaybeCaller,
    Path(id): Path<String>,
    q: Params,
) -> Result<Response, ApiError> {
    let id = twin_id(id)?;
    check(&caller, Scope::Read, Some(&id))?;
    let p = params(q, &["cursor", "limit"])?;
    let limit = limit(&p)?;
    let from = match p.get("cursor") {
        None => 1,
        Some(c) => open_cursor(&app, &id, c)?,
    };
    let (exists, rows) = {
        let id = id.clone();
        app.ledger
            .read(move |s| Ok((s.twin(&id)?.is_some(), s.history(&id, from, limit)?)))
            .await?
    };
    if !exists {
        return Err(LedgerError::TwinNotFound(id.to_string()).into());
    }
    let mut records = Vec::with_capacity(rows.len());
    for row in &rows {
        records.push(shown(&app, row).await?);
    }
    let next = (rows.len() == limit)
        .then(|| {
            rows.last()
                .map(|r| seal_cursor(&app, &id, r.version.max(0) as u64 + 1))
        })
        .flatten();
    Ok(Json(HistoryPage {
        records,
        next_cursor: next,
    })
    .into_response())
}

async fn stored(app: &AppState, id: &TwinId, v: u64) -> Result<StoredRecord, ApiError> {
    let id2 = id.clone();
    app.ledger
        .read(move |s| s.record(&id2, v))
        .await?
        .ok_or_else(|| LedgerError::VersionNotFound(id.to_string(), v).into())
}

/// `GET /v1/twins/{id}/versions/{v}`: one record.
async fn get_version(
    State(app): State<AppState>,
    caller: MaybeCaller,
    Path((id, v)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let (id, v) = (twin_id(id)?, version(&v)?);
    check(&caller, Scope::Read, Some(&id))?;
    let row = stored(&app, &id, v).await?;
    Ok(Json(shown(&app, &row).await?).into_response())
}

/// `GET /v1/twins/{id}/versions/{v}/proof`: the proof bundle (docs/proof-format.md).
async fn get_proof(
    State(app): State<AppState>,
    caller: MaybeCaller,
    Path((id, v)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let (id, v) = (twin_id(id)?, version(&v)?);
    check(&caller, Scope::Read, Some(&id))?;
    let bundle = app.ledger.proof_bundle(&id, v).await?;
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        bundle.to_json(),
    )
        .into_response())
}

/// `GET /v1/twins/{id}/verify`: every version checked against its hashes and the chain.
async fn verify(
    State(app): State<AppState>,
    caller: MaybeCaller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = twin_id(id)?;
    check(&caller, Scope::Read, Some(&id))?;
    let verdict = app.ledger.verify_twin(&id).await?;
    Ok(Json(verdict).into_response())
}

/// `GET /v1/tree-heads?from=SIZE&limit=N`: the log's current head and the anchored heads.
async fn tree_heads(
    State(app): State<AppState>,
    caller: MaybeCaller,
    q: Params,
) -> Result<Response, ApiError> {
    check(&caller, Scope::Read, None)?;
    let p = params(q, &["from", "limit"])?;
    let limit = limit(&p)?;
    let from = match p.get("from") {
        None => 0,
        Some(s) => s
            .parse::<u64>()
            .map_err(|_| ApiError::bad_request(format!("from must be a tree size, not {s:?}")))?,
    };
    let size = app.ledger.tree_size();
    let (head, anchors) = app
        .ledger
        .read(move |s| Ok((s.tree_head(size)?, s.anchors(from, limit)?)))
        .await?;
    let anchors: Vec<JsonValue> = anchors
        .into_iter()
        .map(|a| {
            json!({
                "size": a.size,
                "root": a.root,
                "prev_size": a.prev_size,
                "tx_hash": a.tx_hash,
                "status": a.status,
                "block_number": a.block_number,
                "block_timestamp": a.block_time,
                "gas_used": a.gas_used,
            })
        })
        .collect();
    Ok(Json(json!({
        "log": head,
        "anchored": app.ledger.anchored_sizes(),
        "anchors": anchors,
    }))
    .into_response())
}

#[cfg(test)]
mod tests {
    use super::Hex;

    #[test]
    fn bytes_show_as_lowercase_hex_of_any_length() {
        let shown = |b: Vec<u8>| serde_json::to_string(&Hex(b)).expect("json");
        assert_eq!(shown(vec![0xab; 32]), format!("\"{}\"", "ab".repeat(32)));
        assert_eq!(shown(vec![0x0f, 0xa0]), "\"0fa0\"");
        assert_eq!(shown(Vec::new()), "\"\"");
        // Longer than a hash: not on the stack, still right.
        assert_eq!(shown(vec![0x01; 40]), format!("\"{}\"", "01".repeat(40)));
    }
}
