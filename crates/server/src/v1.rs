//! The versioned JSON API, `/v1`.

use std::collections::HashMap;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::value::RawValue;
use twinledger_core::json::Value;
use twinledger_core::{Hash, HashScheme, Record, RecordKind, TreeHead, TwinId};
use twinledger_ledger::{
    AnchorInfo, AnchoredSizes, LedgerError, Scope, Status, Submission, TwinVerdict, Wait,
};
use twinledger_store::{StoredRecord, TwinSummary};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{MaybeCaller, check};
use crate::body::{JsonObject, WriteHeaders};
use crate::openapi::{ErrorBody, TwinIdParam, VersionParam};
use crate::{ApiError, AppState};

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_twins))
        .routes(routes!(get_twin))
        .routes(routes!(post_state))
        .routes(routes!(history))
        .routes(routes!(get_version))
        .routes(routes!(get_proof))
        .routes(routes!(verify))
        .routes(routes!(tree_heads))
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

/// The `prefix` and `after` of a listing of twins, checked: a prefix some id can start with, and
/// an id to list after.
pub(crate) fn twin_listing<'a>(
    prefix: Option<&'a String>,
    after: Option<&String>,
) -> Result<(&'a str, Option<TwinId>), ApiError> {
    let prefix = prefix.map(String::as_str).unwrap_or_default();
    twinledger_core::check_twin_prefix(prefix)
        .map_err(|e| ApiError::bad_request(format!("prefix: {e}")))?;
    let after = after
        .map(|a| TwinId::new(a.as_str()))
        .transpose()
        .map_err(|e| ApiError::bad_request(format!("after: {e}")))?;
    Ok((prefix, after))
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
#[derive(Serialize, ToSchema)]
#[schema(as = Record)]
pub(crate) struct RecordView {
    /// Position in the log (0 for the first record).
    index: u64,
    twin_id: String,
    /// The twin's version, from 1.
    version: i64,
    /// `reported`, `desired`, or an event (`shift`, `correction`, ...).
    kind: String,
    /// The state as stored; `{"unreadable": "..."}` for a row that is not JSON (edited by hand).
    #[schema(value_type = Object)]
    state: StateView,
    /// `jcs-sha256` or `seed-sha256`.
    hash_scheme: String,
    #[schema(value_type = Hash)]
    state_hash: Hex,
    /// The leaf hash of the twin's previous version (none for version 1).
    #[schema(value_type = Option<Hash>)]
    prev_leaf_hash: Option<Hex>,
    /// When the service accepted it, ms since the Unix epoch.
    recorded_at_ms: i64,
    /// The random salt hashed with the state.
    #[schema(value_type = Hash)]
    salt: Hex,
    /// The RFC 9162 leaf hash.
    #[schema(value_type = Hash)]
    leaf_hash: Hex,
    /// What the ledger recorded with the state: tolerances of a desired state, the congruence
    /// of an assessed report.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    annex: Option<StateView>,
    status: Status,
    /// Where it was anchored, once it is.
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
#[derive(Serialize, ToSchema)]
#[schema(as = Twin)]
struct TwinView {
    twin_id: String,
    latest_version: u64,
    created_at_ms: i64,
    updated_at_ms: i64,
    latest: Option<RecordView>,
}

/// `GET /v1/twins/{id}/history`.
#[derive(Serialize, ToSchema)]
struct HistoryPage {
    records: Vec<RecordView>,
    /// Pass as `cursor` for the next page; none on the last page.
    next_cursor: Option<String>,
}

/// `GET /v1/twins`.
#[derive(Serialize, ToSchema)]
struct TwinPage {
    twins: Vec<TwinSummary>,
    /// Pass as `after` for the next page; none on the last page.
    next_after: Option<String>,
}

/// `GET /v1/tree-heads`.
#[derive(Serialize, ToSchema)]
struct TreeHeads {
    /// The log's current head.
    log: TreeHead,
    anchored: AnchoredSizes,
    /// Anchored heads from `from`, by size.
    anchors: Vec<AnchorView>,
}

/// A tree head sent to the contract, and where it landed.
#[derive(Serialize, ToSchema)]
#[schema(as = Anchor)]
struct AnchorView {
    size: u64,
    root: Hash,
    /// The previously anchored size its consistency proof starts from.
    prev_size: u64,
    tx_hash: String,
    /// `sent`, `mined` or `confirmed`.
    status: String,
    block_number: Option<u64>,
    /// Unix seconds.
    block_timestamp: Option<u64>,
    gas_used: Option<u64>,
}

async fn shown(app: &AppState, row: &StoredRecord) -> Result<RecordView, ApiError> {
    let (status, anchor) = app.ledger.status(row).await?;
    Ok(record_json(row, status, anchor))
}

/// The header carrying a device's signature of the posted state (128 hex digits).
pub(crate) const SIGNATURE_HEADER: &str = "twinledger-signature";

/// Request parameter `wait`.
#[derive(Serialize, ToSchema)]
#[schema(as = Wait)]
#[allow(dead_code)] // Describes the parameter; the handler matches its text.
#[serde(rename_all = "lowercase")]
pub(crate) enum WaitParam {
    Stored,
    Anchored,
    Confirmed,
    Finalized,
}

/// Request parameter `scheme`.
#[derive(Serialize, ToSchema)]
#[schema(as = HashSchemeName)]
#[allow(dead_code)] // Describes the parameter; the handler parses its text.
#[serde(rename_all = "kebab-case")]
pub(crate) enum SchemeParam {
    JcsSha256,
    SeedSha256,
}

/// Records a reported state (the body, a JSON object). Answers once it is durably stored, or
/// with `wait`, once it is anchored, confirmed or finalized.
#[utoipa::path(
    post,
    path = "/v1/twins/{id}/states",
    tag = "twins",
    params(
        ("id" = TwinIdParam, Path, description = "The twin."),
        ("wait" = Option<WaitParam>, Query, nullable = false, description = "How long to wait before answering (default `stored`)."),
        ("scheme" = Option<SchemeParam>, Query, nullable = false, description = "How the state is hashed (default `jcs-sha256`)."),
        ("Idempotency-Key" = Option<String>, Header, nullable = false, min_length = 1, max_length = 255, pattern = "^[\\x21-\\x7e]+$", description = "Makes a retried write record once (1 to 255 visible ASCII characters)."),
        ("Twinledger-Signature" = Option<String>, Header, nullable = false, pattern = "^[0-9a-fA-F]{128}$", description = "The device's Ed25519 signature of the state (128 hex digits); required when the twin's device key says so."),
    ),
    request_body(content = Object, content_type = "application/json", description = "The state."),
    responses(
        (status = 201, description = "Recorded (and, with `wait`, as far on the chain as asked).", body = RecordView),
        (status = 202, description = "Recorded, but not as far on the chain as `wait` asked within `http.anchor_wait_secs`; `status` says where it is. Do not send it again: it will be anchored.", body = RecordView),
        (status = 409, description = "Refused by the ledger (an idempotency key reused with another body).", body = ErrorBody),
    )
)]
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
    let (record, anchor) = app
        .ledger
        .record_within(submission, wait, app.config.anchor_wait)
        .await?;
    if wait != Wait::Stored && anchor.is_none() {
        // Stored, but the chain did not get as far as asked in time. Not an error to retry:
        // a retry without an idempotency key would record the state a second time.
        let index = record.index;
        let row = app
            .ledger
            .store()
            .record_at(index)
            .await?
            .ok_or_else(|| LedgerError::Store(format!("record {index} vanished")))?;
        return Ok((StatusCode::ACCEPTED, Json(shown(&app, &row).await?)).into_response());
    }
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

/// Twins in id order, a page at a time.
#[utoipa::path(
    get,
    path = "/v1/twins",
    tag = "twins",
    params(
        ("prefix" = Option<String>, Query, nullable = false, max_length = 128, description = "Only twins whose id starts with this."),
        ("after" = Option<String>, Query, nullable = false, description = "List twins after this id (`next_after` of the previous page)."),
        ("limit" = Option<u32>, Query, nullable = false, minimum = 1, maximum = 1000, description = "Page size (default 100)."),
    ),
    responses(
        (status = 200, description = "A page of twins.", body = TwinPage),
        (status = 400, description = "A bad parameter.", body = ErrorBody),
    )
)]
async fn list_twins(
    State(app): State<AppState>,
    caller: MaybeCaller,
    q: Params,
) -> Result<Response, ApiError> {
    check(&caller, Scope::Read, None)?;
    let p = params(q, &["prefix", "after", "limit"])?;
    let limit = limit(&p)?;
    let (prefix, after) = twin_listing(p.get("prefix"), p.get("after"))?;
    let twins = app
        .ledger
        .store()
        .twins(prefix, after.as_ref().map(TwinId::as_str), limit)
        .await?;
    let next = (twins.len() == limit)
        .then(|| twins.last().map(|t| t.twin_id.clone()))
        .flatten();
    Ok(Json(TwinPage {
        twins,
        next_after: next,
    })
    .into_response())
}

/// A twin and its latest record.
#[utoipa::path(
    get,
    path = "/v1/twins/{id}",
    tag = "twins",
    params(("id" = TwinIdParam, Path, description = "The twin.")),
    responses(
        (status = 200, description = "The twin.", body = TwinView),
        (status = 400, description = "Not a valid twin id.", body = ErrorBody),
        (status = 404, description = "No such twin.", body = ErrorBody),
    )
)]
async fn get_twin(
    State(app): State<AppState>,
    caller: MaybeCaller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = twin_id(id)?;
    check(&caller, Scope::Read, Some(&id))?;
    let twin = app.ledger.store().twin(&id).await?;
    let latest = match &twin {
        Some(t) => app.ledger.store().record(&id, t.latest_version).await?,
        None => None,
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

/// A twin's versions in order, a page at a time.
#[utoipa::path(
    get,
    path = "/v1/twins/{id}/history",
    tag = "twins",
    params(
        ("id" = TwinIdParam, Path, description = "The twin."),
        ("cursor" = Option<String>, Query, nullable = false, pattern = "^[0-9]{1,19}\\.[0-9a-f]{16}$", description = "Where to go on (`next_cursor` of the previous page); from version 1 when absent."),
        ("limit" = Option<u32>, Query, nullable = false, minimum = 1, maximum = 1000, description = "Page size (default 100)."),
    ),
    responses(
        (status = 200, description = "A page of records.", body = HistoryPage),
        (status = 400, description = "A bad parameter or cursor.", body = ErrorBody),
        (status = 404, description = "No such twin.", body = ErrorBody),
    )
)]
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
    let store = app.ledger.store();
    let (twin, rows) = tokio::try_join!(store.twin(&id), store.history(&id, from, limit))?;
    if twin.is_none() {
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
        .store()
        .record(&id2, v)
        .await?
        .ok_or_else(|| LedgerError::VersionNotFound(id.to_string(), v).into())
}

/// One version of a twin.
#[utoipa::path(
    get,
    path = "/v1/twins/{id}/versions/{v}",
    tag = "twins",
    params(("id" = TwinIdParam, Path, description = "The twin."), ("v" = VersionParam, Path, description = "The version.")),
    responses(
        (status = 200, description = "The record.", body = RecordView),
        (status = 400, description = "Not a valid twin id or version.", body = ErrorBody),
        (status = 404, description = "No such twin or version.", body = ErrorBody),
    )
)]
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

/// The proof bundle of one version (docs/proof-format.md): everything needed to check it
/// against the chain without this service.
#[utoipa::path(
    get,
    path = "/v1/twins/{id}/versions/{v}/proof",
    tag = "twins",
    params(("id" = TwinIdParam, Path, description = "The twin."), ("v" = VersionParam, Path, description = "The version.")),
    responses(
        (status = 200, description = "The bundle (format `twinledger-proof/1`, docs/proof-format.md).", content_type = "application/json", body = Object),
        (status = 400, description = "Not a valid twin id or version.", body = ErrorBody),
        (status = 404, description = "No such twin or version.", body = ErrorBody),
        (status = 409, description = "Not anchored yet, or the ledger runs in legacy mode.", body = ErrorBody),
    )
)]
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

/// Every version of a twin checked against its hashes, its chain links and the chain.
#[utoipa::path(
    get,
    path = "/v1/twins/{id}/verify",
    tag = "twins",
    params(("id" = TwinIdParam, Path, description = "The twin.")),
    responses(
        (status = 200, description = "The verdict: `Valid`, `Tampered` (with each problem) or `Pending`.", body = TwinVerdict),
        (status = 400, description = "Not a valid twin id.", body = ErrorBody),
        (status = 404, description = "No such twin.", body = ErrorBody),
    )
)]
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

/// The log's current head, the anchored sizes and the anchored heads.
#[utoipa::path(
    get,
    path = "/v1/tree-heads",
    tag = "log",
    params(
        ("from" = Option<u64>, Query, nullable = false, description = "Anchored heads of this size and larger (default 0)."),
        ("limit" = Option<u32>, Query, nullable = false, minimum = 1, maximum = 1000, description = "Page size (default 100)."),
    ),
    responses(
        (status = 200, description = "The heads.", body = TreeHeads),
        (status = 400, description = "A bad parameter.", body = ErrorBody),
    )
)]
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
    let store = app.ledger.store();
    let (head, anchors) = tokio::try_join!(store.tree_head(size), store.anchors(from, limit))?;
    let anchors = anchors
        .into_iter()
        .map(|a| AnchorView {
            size: a.size,
            root: a.root,
            prev_size: a.prev_size,
            tx_hash: a.tx_hash,
            status: a.status,
            block_number: a.block_number,
            block_timestamp: a.block_time,
            gas_used: a.gas_used,
        })
        .collect();
    Ok(Json(TreeHeads {
        log: head,
        anchored: app.ledger.anchored_sizes(),
        anchors,
    })
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
