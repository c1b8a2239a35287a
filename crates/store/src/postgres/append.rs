//! The append transaction on PostgreSQL: lock `log_head`, read in one round trip everything
//! the batch's planner may ask about, plan, and write the plan with binary COPY and array
//! statements.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use tokio_postgres::IsolationLevel;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::Type;
use twinledger_core::RecordKind;

use super::{Param, PostgresStore, frontier_of};
use crate::batch::{self, BatchContext, Desired, Lookup, Plan, TwinState};
use crate::model::{AppendOutcome, NewRecord};
use crate::{Result, StoreError};

/// The channel each committed batch is announced on, with the log's new size.
pub const LOG_CHANNEL: &str = "twinledger_log";

/// What the database held before the batch, for everything the batch names.
struct Prefetched {
    twins: HashMap<String, TwinState>,
    keys: HashMap<String, (u64, Vec<u8>)>,
    device_keys: HashMap<String, (String, bool)>,
    desired: HashMap<u64, Arc<Desired>>,
}

impl Lookup for Prefetched {
    fn twin(&mut self, twin_id: &str) -> Result<Option<TwinState>> {
        Ok(self.twins.get(twin_id).cloned())
    }

    fn idempotency_key(&mut self, key: &str) -> Result<Option<(u64, Vec<u8>)>> {
        Ok(self.keys.get(key).cloned())
    }

    fn device_key(&mut self, twin_id: &str) -> Result<Option<(String, bool)>> {
        Ok(self.device_keys.get(twin_id).cloned())
    }

    fn desired(&mut self, index: u64) -> Result<Arc<Desired>> {
        self.desired.get(&index).cloned().ok_or_else(|| {
            StoreError::Inconsistent(format!("desired state at log index {index} is missing"))
        })
    }
}

impl PostgresStore {
    pub(super) async fn append_batch(&self, batch: Vec<NewRecord>) -> Result<AppendOutcome> {
        let mut client = self.client().await?;
        // READ COMMITTED: every statement after the lock sees each batch committed before it,
        // on any node, which is what keeps versions and idempotency keys right.
        let tx = client
            .build_transaction()
            .isolation_level(IsolationLevel::ReadCommitted)
            .start()
            .await?;
        let (lock_head, read_mode, read_twins, read_keys, read_device_keys) = tokio::try_join!(
            tx.prepare_cached("SELECT size, peaks FROM log_head FOR UPDATE"),
            tx.prepare_cached("SELECT value FROM meta WHERE key = 'mode'"),
            tx.prepare_cached(
                "SELECT t.twin_id, t.latest_version, t.latest_leaf_hash, t.desired_idx, t.band, \
                 d.version, d.state, d.annex \
                 FROM twins t LEFT JOIN records d ON d.idx = t.desired_idx \
                 WHERE t.twin_id = ANY($1)"
            ),
            tx.prepare_cached("SELECT key, idx, request FROM idempotency_keys WHERE key = ANY($1)"),
            tx.prepare_cached(
                "SELECT twin_id, public_key, require_signature FROM device_keys \
                 WHERE twin_id = ANY($1)"
            ),
        )?;
        let twin_ids = distinct(batch.iter().map(|n| n.twin_id.as_str()));
        let keys = distinct(
            batch
                .iter()
                .filter_map(|n| n.idempotency.as_ref().map(|(k, _)| k.as_str())),
        );
        let reporting = distinct(
            batch
                .iter()
                .filter(|n| n.kind == RecordKind::Reported)
                .map(|n| n.twin_id.as_str()),
        );
        // Pipelined, in this order: the lock is taken first, and the reads after it wait for
        // it, so they see every batch committed before this one. Device keys are read for the
        // batch's reporting twins whether or not any exist: in the same round trip, that costs
        // less than asking first.
        let twin_ids: [&Param<'_>; 1] = [&twin_ids];
        let keys: [&Param<'_>; 1] = [&keys];
        let reporting: [&Param<'_>; 1] = [&reporting];
        let (head, mode, twin_rows, key_rows, device_rows) = tokio::try_join!(
            tx.query_one(&lock_head, &[]),
            tx.query_opt(&read_mode, &[]),
            tx.query(&read_twins, &twin_ids),
            tx.query(&read_keys, &keys),
            tx.query(&read_device_keys, &reporting),
        )?;
        let locked = std::time::Instant::now();
        let frontier = frontier_of(&head)?;
        let mode: Option<String> = mode.map(|r| r.try_get(0)).transpose()?;
        let mut lookup = prefetched(&twin_rows, &key_rows, &device_rows)?;
        let context = BatchContext {
            log_mode: mode.as_deref() == Some("log"),
            any_device_key: true,
        };
        let plan = batch::plan(batch, &frontier, &self.bands, context, &mut lookup)?;
        write(&tx, &plan).await?;
        tx.commit().await?;
        let mut outcome = plan.outcome;
        outcome.held = locked.elapsed();
        Ok(outcome)
    }
}

fn distinct<'a>(items: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let mut seen = HashSet::new();
    items.filter(|i| seen.insert(*i)).collect()
}

fn prefetched(
    twins: &[tokio_postgres::Row],
    keys: &[tokio_postgres::Row],
    device_keys: &[tokio_postgres::Row],
) -> Result<Prefetched> {
    let mut out = Prefetched {
        twins: HashMap::with_capacity(twins.len()),
        keys: HashMap::with_capacity(keys.len()),
        device_keys: HashMap::with_capacity(device_keys.len()),
        desired: HashMap::new(),
    };
    for row in twins {
        let twin_id: String = row.try_get(0)?;
        let desired_idx: Option<i64> = row.try_get(3)?;
        let state = TwinState::from_row(
            &twin_id,
            row.try_get(1)?,
            row.try_get(2)?,
            desired_idx,
            row.try_get(4)?,
        )?;
        if let Some(index) = desired_idx {
            let version: Option<i64> = row.try_get(5)?;
            let text: Option<&str> = row.try_get(6)?;
            // A twin pointing at a record that is not there is left out here, and its next
            // report fails the batch as inconsistent.
            if let (Some(version), Some(text)) = (version, text) {
                let index = index as u64;
                let desired = Desired::from_row(index, version, text, row.try_get(7)?)?;
                out.desired.insert(index, Arc::new(desired));
            }
        }
        out.twins.insert(twin_id, state);
    }
    for row in keys {
        out.keys.insert(
            row.try_get(0)?,
            (row.try_get::<_, i64>(1)? as u64, row.try_get(2)?),
        );
    }
    for row in device_keys {
        out.device_keys
            .insert(row.try_get(0)?, (row.try_get(1)?, row.try_get(2)?));
    }
    Ok(out)
}

async fn write(tx: &deadpool_postgres::Transaction<'_>, plan: &Plan) -> Result<()> {
    if plan.records.is_empty() {
        // Replays and refusals only: nothing to write but keys (of refused submissions).
        return insert_keys(tx, plan).await;
    }
    let sink = tx
        .copy_in(
            "COPY records (idx, twin_id, version, kind, state, hash_scheme, state_hash, \
             prev_leaf_hash, recorded_at_ms, salt, leaf_hash, status, annex) \
             FROM STDIN (FORMAT binary)",
        )
        .await?;
    let writer = BinaryCopyInWriter::new(
        sink,
        &[
            Type::INT8,
            Type::TEXT,
            Type::INT8,
            Type::TEXT,
            Type::TEXT,
            Type::TEXT,
            Type::BYTEA,
            Type::BYTEA,
            Type::INT8,
            Type::BYTEA,
            Type::BYTEA,
            Type::TEXT,
            Type::TEXT,
        ],
    );
    let mut writer = std::pin::pin!(writer);
    for r in &plan.records {
        let prev = r.prev_leaf_hash.as_ref().map(|h| h.0.as_slice());
        let row: [&Param<'_>; 13] = [
            &r.index,
            &r.twin_id,
            &r.version,
            &r.kind,
            &r.state,
            &r.scheme,
            &r.state_hash.0.as_slice(),
            &prev,
            &r.recorded_at_ms,
            &r.salt.as_slice(),
            &r.leaf_hash.0.as_slice(),
            &plan.status,
            &r.annex,
        ];
        writer.as_mut().write(&row).await?;
    }
    writer.finish().await?;
    if !plan.nodes.is_empty() {
        let sink = tx
            .copy_in("COPY tree_nodes (key, hash) FROM STDIN (FORMAT binary)")
            .await?;
        let writer = BinaryCopyInWriter::new(sink, &[Type::INT8, Type::BYTEA]);
        let mut writer = std::pin::pin!(writer);
        for (key, hash) in &plan.nodes {
            writer.as_mut().write(&[key, &hash.0.as_slice()]).await?;
        }
        writer.finish().await?;
    }
    let (upsert_twins, set_head, notify) = tokio::try_join!(
        // A desired record moves the twin's desired state and a shift event its band: the
        // planner gives each twin's row as the batch left it, so every column is set.
        tx.prepare_cached(
            "INSERT INTO twins (twin_id, latest_version, latest_idx, latest_leaf_hash, \
             created_at_ms, updated_at_ms, desired_idx, band) \
             SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::bytea[], \
             $5::bigint[], $6::bigint[], $7::bigint[], $8::text[]) \
             ON CONFLICT (twin_id) DO UPDATE SET latest_version = excluded.latest_version, \
             latest_idx = excluded.latest_idx, latest_leaf_hash = excluded.latest_leaf_hash, \
             updated_at_ms = excluded.updated_at_ms, desired_idx = excluded.desired_idx, \
             band = excluded.band"
        ),
        tx.prepare_cached("UPDATE log_head SET size = $1, peaks = $2"),
        tx.prepare_cached("SELECT pg_notify($1, $2)"),
    )?;
    let twin_ids: Vec<&str> = plan.twins.iter().map(|t| t.twin_id.as_str()).collect();
    let versions: Vec<i64> = plan.twins.iter().map(|t| t.latest_version).collect();
    let indexes: Vec<i64> = plan.twins.iter().map(|t| t.latest_idx).collect();
    let leaves: Vec<&[u8]> = plan
        .twins
        .iter()
        .map(|t| t.latest_leaf_hash.0.as_slice())
        .collect();
    let created: Vec<i64> = plan.twins.iter().map(|t| t.created_at_ms).collect();
    let updated: Vec<i64> = plan.twins.iter().map(|t| t.updated_at_ms).collect();
    let desired: Vec<Option<i64>> = plan.twins.iter().map(|t| t.desired_idx).collect();
    let bands: Vec<Option<&str>> = plan.twins.iter().map(|t| t.band.as_deref()).collect();
    let frontier = &plan.outcome.frontier;
    let size = frontier.size() as i64;
    let peaks: Vec<u8> = frontier.peaks().iter().flat_map(|p| p.0).collect();
    let announced = size.to_string();
    let twin_params: [&Param<'_>; 8] = [
        &twin_ids, &versions, &indexes, &leaves, &created, &updated, &desired, &bands,
    ];
    let head_params: [&Param<'_>; 2] = [&size, &peaks];
    let notify_params: [&Param<'_>; 2] = [&LOG_CHANNEL, &announced];
    tokio::try_join!(
        async { Ok::<_, StoreError>(tx.execute(&upsert_twins, &twin_params).await?) },
        insert_keys(tx, plan),
        async { Ok(tx.execute(&set_head, &head_params).await?) },
        // Delivered on commit, once per batch: other nodes learn of the new records.
        async { Ok(tx.execute(&notify, &notify_params).await?) },
    )?;
    Ok(())
}

async fn insert_keys(tx: &deadpool_postgres::Transaction<'_>, plan: &Plan) -> Result<()> {
    if plan.keys.is_empty() {
        return Ok(());
    }
    let stmt = tx
        .prepare_cached(
            "INSERT INTO idempotency_keys (key, request, idx, created_at_ms) \
             SELECT * FROM unnest($1::text[], $2::bytea[], $3::bigint[], $4::bigint[])",
        )
        .await?;
    let keys: Vec<&str> = plan.keys.iter().map(|k| k.key.as_str()).collect();
    let requests: Vec<&[u8]> = plan.keys.iter().map(|k| k.request.0.as_slice()).collect();
    let indexes: Vec<i64> = plan.keys.iter().map(|k| k.index).collect();
    let created: Vec<i64> = plan.keys.iter().map(|k| k.created_at_ms).collect();
    tx.execute(&stmt, &[&keys, &requests, &indexes, &created])
        .await?;
    Ok(())
}
