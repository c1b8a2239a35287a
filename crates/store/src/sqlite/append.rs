//! The append transaction on SQLite: the batch planner (`crate::batch`) reads the database
//! through the transaction as it goes, and its rows are written with cached statements, so
//! everything is decided inside the one transaction that makes it durable.

use std::collections::HashMap;
use std::sync::Arc;

use rusqlite::{OptionalExtension, Transaction, params};
use twinledger_core::{Bands, Frontier};

use crate::batch::{self, BatchContext, Desired, Lookup, Plan, TwinState};
use crate::model::{AppendOutcome, NewRecord};
use crate::{Result, StoreError};

/// Parsed desired states by log index. A committed record never changes, so an entry never
/// goes stale; the map is cleared when it grows past its bound. Only records read back from
/// the database enter it, never those of the batch being appended, which may yet roll back.
#[derive(Debug, Default)]
pub(super) struct DesiredCache(HashMap<u64, Arc<Desired>>);

const DESIRED_CACHE_MAX: usize = 4096;

/// The database before the batch, read through the append's transaction.
struct TransactionLookup<'t, 'c> {
    tx: &'t Transaction<'c>,
    cache: &'t mut DesiredCache,
}

impl Lookup for TransactionLookup<'_, '_> {
    fn twin(&mut self, twin_id: &str) -> Result<Option<TwinState>> {
        self.tx
            .prepare_cached(
                "SELECT latest_version, latest_leaf_hash, desired_idx, band FROM twins \
                 WHERE twin_id = ?1",
            )?
            .query_row([twin_id], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, Vec<u8>>(1)?,
                    r.get::<_, Option<i64>>(2)?,
                    r.get::<_, Option<String>>(3)?,
                ))
            })
            .optional()?
            .map(|(version, leaf, desired, band)| {
                TwinState::from_row(twin_id, version, &leaf, desired, band)
            })
            .transpose()
    }

    fn idempotency_key(&mut self, key: &str) -> Result<Option<(u64, Vec<u8>)>> {
        Ok(self
            .tx
            .prepare_cached("SELECT idx, request FROM idempotency_keys WHERE key = ?1")?
            .query_row([key], |r| Ok((r.get::<_, i64>(0)? as u64, r.get(1)?)))
            .optional()?)
    }

    fn device_key(&mut self, twin_id: &str) -> Result<Option<(String, bool)>> {
        Ok(self
            .tx
            .prepare_cached(
                "SELECT public_key, require_signature FROM device_keys WHERE twin_id = ?1",
            )?
            .query_row([twin_id], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?)
    }

    fn desired(&mut self, index: u64) -> Result<Arc<Desired>> {
        if let Some(d) = self.cache.0.get(&index) {
            return Ok(d.clone());
        }
        let (version, state, annex): (i64, String, Option<String>) = self
            .tx
            .prepare_cached("SELECT version, state, annex FROM records WHERE idx = ?1")?
            .query_row([index as i64], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        let d = Arc::new(Desired::from_row(index, version, &state, annex.as_deref())?);
        if self.cache.0.len() >= DESIRED_CACHE_MAX {
            self.cache.0.clear();
        }
        self.cache.0.insert(index, d.clone());
        Ok(d)
    }
}

/// Appends `batch` inside `tx` (which the caller commits).
pub(super) fn append(
    tx: &Transaction<'_>,
    batch: Vec<NewRecord>,
    frontier: &Frontier,
    bands: &Bands,
    cache: &mut DesiredCache,
) -> Result<AppendOutcome> {
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
    // Most ledgers register no device keys: one look per batch spares a search per record.
    let any_device_key: bool = tx
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM device_keys)")?
        .query_row([], |r| r.get(0))?;
    let mode: Option<String> = tx
        .prepare_cached("SELECT value FROM meta WHERE key = 'mode'")?
        .query_row([], |r| r.get(0))
        .optional()?;
    let context = BatchContext {
        log_mode: mode.as_deref() == Some("log"),
        any_device_key,
    };
    let plan = batch::plan(
        batch,
        frontier,
        bands,
        context,
        &mut TransactionLookup { tx, cache },
    )?;
    write(tx, &plan)?;
    Ok(plan.outcome)
}

fn write(tx: &Transaction<'_>, plan: &Plan) -> Result<()> {
    let mut insert = tx.prepare_cached(
        "INSERT INTO records (idx, twin_id, version, kind, state, hash_scheme, state_hash, \
         prev_leaf_hash, recorded_at_ms, salt, leaf_hash, status, annex) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
    )?;
    for r in &plan.records {
        insert.execute(params![
            r.index,
            r.twin_id,
            r.version,
            r.kind,
            r.state,
            r.scheme,
            r.state_hash.0.as_slice(),
            r.prev_leaf_hash.as_ref().map(|h| h.0.as_slice()),
            r.recorded_at_ms,
            r.salt.as_slice(),
            r.leaf_hash.0.as_slice(),
            plan.status,
            r.annex,
        ])?;
    }
    let mut insert_node =
        tx.prepare_cached("INSERT INTO tree_nodes (key, hash) VALUES (?1, ?2)")?;
    for (key, hash) in &plan.nodes {
        insert_node.execute(params![key, hash.0.as_slice()])?;
    }
    let mut insert_twin = tx.prepare_cached(
        "INSERT INTO twins (twin_id, latest_version, latest_idx, latest_leaf_hash, \
         created_at_ms, updated_at_ms, desired_idx, band) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?;
    let mut update_twin = tx.prepare_cached(
        "UPDATE twins SET latest_version = ?2, latest_idx = ?3, latest_leaf_hash = ?4, \
         updated_at_ms = ?5, desired_idx = ?6, band = ?7 WHERE twin_id = ?1",
    )?;
    for t in &plan.twins {
        let leaf = t.latest_leaf_hash.0.as_slice();
        if t.existed {
            update_twin.execute(params![
                t.twin_id,
                t.latest_version,
                t.latest_idx,
                leaf,
                t.updated_at_ms,
                t.desired_idx,
                t.band,
            ])?;
        } else {
            insert_twin.execute(params![
                t.twin_id,
                t.latest_version,
                t.latest_idx,
                leaf,
                t.created_at_ms,
                t.updated_at_ms,
                t.desired_idx,
                t.band,
            ])?;
        }
    }
    let mut insert_key = tx.prepare_cached(
        "INSERT INTO idempotency_keys (key, request, idx, created_at_ms) VALUES (?1, ?2, ?3, ?4)",
    )?;
    for k in &plan.keys {
        insert_key.execute(params![
            k.key,
            k.request.0.as_slice(),
            k.index,
            k.created_at_ms
        ])?;
    }
    Ok(())
}
