//! The append transaction: indexes, versions, chain links, tree nodes, and each reported
//! state's congruence with its twin's desired state (with the shift event a band change
//! brings), all decided inside the one transaction that makes them durable.

use std::collections::HashMap;
use std::sync::Arc;

use rusqlite::{OptionalExtension, Transaction, params};
use twinledger_core::congruence::{annex_member, compare, shift_state};
use twinledger_core::json::{self, Limits, Object, Value};
use twinledger_core::{Annex, Bands, Frontier, Hash, HashScheme, Record, RecordKind, Tolerances};

use crate::model::{AppendOutcome, Appended, NewRecord};
use crate::{Result, StoreError};

/// A twin's desired state as the comparison needs it.
#[derive(Debug)]
pub(super) struct Desired {
    version: u64,
    state: Value,
    tolerances: Tolerances,
}

/// Parsed desired states by log index. A record never changes, so an entry never goes stale;
/// the map is cleared when it grows past its bound.
#[derive(Debug, Default)]
pub(super) struct DesiredCache(HashMap<u64, Arc<Desired>>);

const DESIRED_CACHE_MAX: usize = 4096;

impl DesiredCache {
    fn get(&mut self, tx: &Transaction<'_>, index: u64) -> Result<Arc<Desired>> {
        if let Some(d) = self.0.get(&index) {
            return Ok(d.clone());
        }
        let (version, state, annex): (i64, String, Option<String>) = tx
            .prepare_cached("SELECT version, state, annex FROM records WHERE idx = ?1")?
            .query_row([index as i64], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        let bad = |what: &str, e: &dyn std::fmt::Display| {
            StoreError::Inconsistent(format!("desired state at log index {index}: {what}: {e}"))
        };
        let state =
            json::parse(state.as_bytes(), &Limits::unbounded()).map_err(|e| bad("state", &e))?;
        let tolerances = match annex {
            None => Tolerances::default(),
            Some(a) => {
                let a = json::parse(a.as_bytes(), &Limits::unbounded())
                    .map_err(|e| bad("annex", &e))?;
                match a.as_object().and_then(|o| o.get("tolerances")) {
                    None => Tolerances::default(),
                    Some(t) => Tolerances::from_json(t).map_err(|e| bad("tolerances", &e))?,
                }
            }
        };
        let d = Arc::new(Desired {
            version: version as u64,
            state,
            tolerances,
        });
        if self.0.len() >= DESIRED_CACHE_MAX {
            self.0.clear();
        }
        self.0.insert(index, d.clone());
        Ok(d)
    }
}

/// A twin's row as the append reads it.
struct TwinRow {
    version: u64,
    leaf: Hash,
    desired_index: Option<u64>,
    band: Option<String>,
}

/// Appends `batch` inside `tx` (which the caller commits).
pub(super) fn append(
    tx: &Transaction<'_>,
    batch: Vec<NewRecord>,
    frontier: &Frontier,
    bands: &Bands,
    cache: &mut DesiredCache,
) -> Result<AppendOutcome> {
    let mut frontier = frontier.clone();
    let first_index: u64 = tx
        .prepare_cached("SELECT COALESCE(MAX(idx) + 1, 0) FROM records")?
        .query_row([], |r| r.get::<_, i64>(0))
        .map(|v| v as u64)?;
    if first_index != frontier.size() {
        return Err(StoreError::Inconsistent(format!(
            "the log holds {first_index} records but its tree {}",
            frontier.size()
        )));
    }
    let mut get_twin = tx.prepare_cached(
        "SELECT latest_version, latest_leaf_hash, desired_idx, band FROM twins WHERE twin_id = ?1",
    )?;
    let mut get_key =
        tx.prepare_cached("SELECT idx, request FROM idempotency_keys WHERE key = ?1")?;
    let mut insert_key = tx.prepare_cached(
        "INSERT INTO idempotency_keys (key, request, idx, created_at_ms) VALUES (?1, ?2, ?3, ?4)",
    )?;
    let mut get_device_key = tx.prepare_cached(
        "SELECT public_key, require_signature FROM device_keys WHERE twin_id = ?1",
    )?;
    // Most ledgers register no device keys: one look per batch spares a search per record.
    let any_device_key: bool = tx
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM device_keys)")?
        .query_row([], |r| r.get(0))?;
    // Log mode anchors by tree heads: its records never wait in records_pending.
    let mode: Option<String> = tx
        .prepare_cached("SELECT value FROM meta WHERE key = 'mode'")?
        .query_row([], |r| r.get(0))
        .optional()?;
    let status = if mode.as_deref() == Some("log") {
        "logged"
    } else {
        "pending"
    };
    let mut rows = Rows::new(tx, status)?;
    let mut results = Vec::with_capacity(batch.len());
    let mut derived = Vec::new();
    let mut index = first_index;
    for new in batch {
        if let Some((key, request)) = &new.idempotency {
            let seen: Option<(i64, Vec<u8>)> = get_key
                .query_row([key], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?;
            if let Some((idx, seen_request)) = seen {
                results.push(Appended::Replay {
                    index: idx as u64,
                    same_request: seen_request == request.0,
                });
                continue;
            }
            insert_key.execute(params![
                key,
                request.0.as_slice(),
                index as i64,
                new.recorded_at_ms
            ])?;
        }
        if new.kind == RecordKind::Reported
            && (any_device_key || new.annex.get("signature").is_some())
        {
            let registered: Option<(String, bool)> = get_device_key
                .query_row([new.twin_id.as_str()], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?;
            if let Some(reason) = refusal(&new, registered) {
                results.push(Appended::Refused(reason));
                continue;
            }
        }
        let twin = get_twin
            .query_row([new.twin_id.as_str()], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, Vec<u8>>(1)?,
                    r.get::<_, Option<i64>>(2)?,
                    r.get::<_, Option<String>>(3)?,
                ))
            })
            .optional()?
            .map(|(v, leaf, desired, band)| {
                let leaf = Hash::from_slice(&leaf).map_err(|e| {
                    StoreError::Inconsistent(format!("twin {}: latest leaf hash: {e}", new.twin_id))
                })?;
                Ok::<_, StoreError>(TwinRow {
                    version: v as u64,
                    leaf,
                    desired_index: desired.map(|d| d as u64),
                    band,
                })
            })
            .transpose()?;
        let mut annex = new.annex;
        let mut shift = None;
        if let (
            RecordKind::Reported,
            Some(TwinRow {
                desired_index: Some(d),
                band,
                ..
            }),
        ) = (new.kind, &twin)
        {
            let desired = cache.get(tx, *d)?;
            let comparison = compare(&desired.state, &desired.tolerances, &new.state);
            let now = bands.of(comparison.score());
            annex.insert(
                "congruence",
                annex_member(desired.version, &comparison, now),
            );
            if band.as_deref() != Some(now.name.as_str()) {
                shift = Some((
                    band.clone(),
                    now.clone(),
                    comparison.score(),
                    desired.version,
                ));
            }
        }
        let record = Record {
            index,
            version: twin.as_ref().map_or(1, |t| t.version + 1),
            prev_leaf_hash: twin.as_ref().map(|t| t.leaf),
            twin_id: new.twin_id,
            kind: new.kind,
            state: new.state,
            scheme: new.scheme,
            state_hash: new.state_hash,
            recorded_at_ms: new.recorded_at_ms,
            salt: new.salt,
            annex: annex_of(annex)?,
        };
        let desired_index = (record.kind == RecordKind::Desired).then_some(index);
        let leaf = rows.insert(&record, &mut frontier, desired_index, None, twin.is_some())?;
        index += 1;
        if let Some((from, to, score, desired_version)) = shift {
            let state = shift_state(from.as_deref(), &to, score, record.version, desired_version);
            let event = Record {
                index,
                twin_id: record.twin_id.clone(),
                version: record.version + 1,
                kind: RecordKind::Event,
                state_hash: Hash(
                    HashScheme::JcsSha256
                        .hash(&state)
                        .map_err(|e| StoreError::Inconsistent(format!("shift event: {e}")))?,
                ),
                state,
                scheme: HashScheme::JcsSha256,
                prev_leaf_hash: Some(leaf),
                recorded_at_ms: record.recorded_at_ms,
                salt: record.salt.derive("twinledger congruence shift"),
                annex: None,
            };
            rows.insert(&event, &mut frontier, None, Some(&to.name), true)?;
            index += 1;
            derived.push(event);
        }
        results.push(Appended::New(record));
    }
    Ok(AppendOutcome {
        results,
        derived,
        frontier,
    })
}

/// Why a reported state may not be recorded under the twin's device key, if it may not. The
/// signature itself was checked before the append, against the key registered then.
fn refusal(new: &NewRecord, registered: Option<(String, bool)>) -> Option<String> {
    let signed_with = new
        .annex
        .get("signature")
        .and_then(Value::as_object)
        .and_then(|s| s.get("public_key"))
        .and_then(Value::as_str);
    match (registered, signed_with) {
        (Some((key, _)), Some(used)) if key != used => Some(format!(
            "twin {} has another device key than the one that signed",
            new.twin_id
        )),
        (None, Some(_)) => Some(format!("twin {} has no device key", new.twin_id)),
        (Some((_, true)), None) => Some(format!(
            "twin {} requires reports signed with its device key",
            new.twin_id
        )),
        _ => None,
    }
}

fn annex_of(members: Object) -> Result<Option<Annex>> {
    if members.is_empty() {
        return Ok(None);
    }
    Annex::new(Value::Object(members))
        .map(Some)
        .map_err(|e| StoreError::Inconsistent(format!("annex: {e}")))
}

/// The statements that write one record.
struct Rows<'t> {
    /// `status` of new records: 'logged' in log mode, 'pending' (until their own anchor) in
    /// legacy mode.
    status: &'static str,
    insert: rusqlite::CachedStatement<'t>,
    insert_node: rusqlite::CachedStatement<'t>,
    insert_twin: rusqlite::CachedStatement<'t>,
    update_twin: rusqlite::CachedStatement<'t>,
}

impl<'t> Rows<'t> {
    fn new(tx: &'t Transaction<'_>, status: &'static str) -> Result<Self> {
        Ok(Self {
            status,
            insert: tx.prepare_cached(
                "INSERT INTO records (idx, twin_id, version, kind, state, hash_scheme, \
                 state_hash, prev_leaf_hash, recorded_at_ms, salt, leaf_hash, status, annex) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?13, ?12)",
            )?,
            insert_node: tx.prepare_cached("INSERT INTO tree_nodes (key, hash) VALUES (?1, ?2)")?,
            insert_twin: tx.prepare_cached(
                "INSERT INTO twins (twin_id, latest_version, latest_idx, latest_leaf_hash, \
                 created_at_ms, updated_at_ms, desired_idx, band) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?6, ?7)",
            )?,
            // A desired record moves the twin's desired state; a shift event moves its band.
            update_twin: tx.prepare_cached(
                "UPDATE twins SET latest_version = ?2, latest_idx = ?3, latest_leaf_hash = ?4, \
                 updated_at_ms = ?5, desired_idx = COALESCE(?6, desired_idx), \
                 band = COALESCE(?7, band) WHERE twin_id = ?1",
            )?,
        })
    }

    /// Writes the record, the tree nodes its leaf completes and its twin's row (`twin_exists`:
    /// the append has read it); returns the leaf hash.
    fn insert(
        &mut self,
        record: &Record,
        frontier: &mut Frontier,
        desired_index: Option<u64>,
        band: Option<&str>,
        twin_exists: bool,
    ) -> Result<Hash> {
        let leaf_hash = record.leaf_hash();
        self.insert.execute(params![
            record.index as i64,
            record.twin_id.as_str(),
            record.version as i64,
            record.kind.as_str(),
            record.state.to_json(),
            record.scheme.as_str(),
            record.state_hash.0.as_slice(),
            record.prev_leaf_hash.as_ref().map(|h| h.0.as_slice()),
            record.recorded_at_ms,
            record.salt.0.as_slice(),
            leaf_hash.0.as_slice(),
            record.annex.as_ref().map(|a| a.value().to_json()),
            self.status,
        ])?;
        for node in frontier.push(leaf_hash) {
            self.insert_node.execute(params![
                super::node_key(node.level, node.index)?,
                node.hash.0.as_slice()
            ])?;
        }
        let twin = if twin_exists {
            &mut self.update_twin
        } else {
            &mut self.insert_twin
        };
        twin.execute(params![
            record.twin_id.as_str(),
            record.version as i64,
            record.index as i64,
            leaf_hash.0.as_slice(),
            record.recorded_at_ms,
            desired_index.map(|i| i as i64),
            band,
        ])?;
        Ok(leaf_hash)
    }
}
