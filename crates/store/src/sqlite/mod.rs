//! The embedded SQLite store: one file, WAL, one writer connection and a small reader pool.

mod append;

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::{Connection, OpenFlags, OptionalExtension, Row, params};
use twinledger_core::{
    Bands, ConsistencyProof, Frontier, Hash, InclusionProof, NodeSource, TreeHead, TwinId,
};

use crate::model::{
    Anchor, ApiKey, AppendOutcome, DeviceKeyRow, LegacyAnchor, NewRecord, StoreStats, StoredRecord,
    TwinSummary,
};
use crate::{Result, Store, StoreError};

/// Migrations in order; `PRAGMA user_version` counts how many have run.
const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/sqlite/0001_init.sql"),
    include_str!("../../migrations/sqlite/0002_tree.sql"),
    include_str!("../../migrations/sqlite/0003_anchors.sql"),
    include_str!("../../migrations/sqlite/0004_idempotency.sql"),
    include_str!("../../migrations/sqlite/0005_api_keys.sql"),
    include_str!("../../migrations/sqlite/0006_idempotency_retention.sql"),
    include_str!("../../migrations/sqlite/0007_congruence.sql"),
    include_str!("../../migrations/sqlite/0008_twins_without_rowid.sql"),
    include_str!("../../migrations/sqlite/0009_tree_nodes_in_completion_order.sql"),
    include_str!("../../migrations/sqlite/0010_logged_status.sql"),
];

const ANCHOR_COLUMNS: &str =
    "size, root, prev_size, tx_hash, status, block_number, block_hash, block_time, gas_used";

const RECORD_COLUMNS: &str = "idx, twin_id, version, kind, state, hash_scheme, state_hash, \
     prev_leaf_hash, recorded_at_ms, salt, leaf_hash, status, anchor_tx, anchor_block, \
     anchor_block_time, anchor_timestamp, annex";

/// Readers kept open between calls; more are opened on demand and closed after use.
const READER_POOL: usize = 8;

/// The SQLite store.
pub struct SqliteStore {
    path: PathBuf,
    writer: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
    bands: Bands,
    desired: Mutex<append::DesiredCache>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish()
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and brings its schema up to date.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let open_err = |source| StoreError::Open {
            path: path.clone(),
            source,
        };
        let mut writer = Connection::open(&path).map_err(open_err)?;
        configure(&writer).map_err(open_err)?;
        migrate(&mut writer)?;
        Ok(Self {
            path,
            writer: Mutex::new(writer),
            readers: Mutex::new(Vec::new()),
            bands: Bands::default(),
            desired: Mutex::default(),
        })
    }

    /// Uses `bands` to place congruence scores (the default ladder otherwise).
    pub fn with_bands(mut self, bands: Bands) -> Self {
        self.bands = bands;
        self
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn read<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let conn = self.readers.lock().ok().and_then(|mut pool| pool.pop());
        let conn = match conn {
            Some(c) => c,
            None => {
                let c = Connection::open_with_flags(
                    &self.path,
                    OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )?;
                configure_reader(&c)?;
                c
            }
        };
        let out = f(&conn);
        if let Ok(mut pool) = self.readers.lock()
            && pool.len() < READER_POOL
        {
            pool.push(conn);
        }
        out
    }

    fn write<T>(&self, f: impl FnOnce(&mut Connection) -> Result<T>) -> Result<T> {
        // A panic while holding the lock leaves no open transaction behind (rusqlite rolls back
        // on drop), so a poisoned lock is safe to reuse.
        let mut conn = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut conn)
    }
}

fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // FULL: a commit is on disk before the ledger acknowledges it, power loss included.
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(())
}

fn configure_reader(conn: &Connection) -> rusqlite::Result<()> {
    // Readers fetch a few pages per request (a proof is one path of the tree), and the OS
    // already caches the file: a small page cache per reader keeps the service's memory from
    // growing with the log as eight 2 MiB default caches fill.
    conn.pragma_update(None, "cache_size", -512)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))
}

fn migrate(conn: &mut Connection) -> Result<()> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    let supported = MIGRATIONS.len() as i64;
    if version > supported {
        return Err(StoreError::SchemaTooNew {
            found: version,
            supported,
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
        tracing::info!(target: "twinledger::store", version = i + 1, "applied migration");
    }
    Ok(())
}

/// The `tree_nodes` key of node (`level`, `index`), level ≥ 1: the index of the last leaf it
/// covers, which completes it, shifted left 6 bits, plus the level; so nodes are keyed in the
/// order they are written (migration 0009 computes the same in SQL).
pub(super) fn node_key(level: u32, index: u64) -> Result<i64> {
    let last_leaf = index
        .checked_add(1)
        .and_then(|n| n.checked_mul(1u64.checked_shl(level)?))
        .map(|end| end - 1);
    match last_leaf {
        // 57 bits of leaf index and 6 of level fit in SQLite's signed 64-bit integers.
        Some(leaf) if leaf < 1 << 57 => Ok((leaf << 6 | u64::from(level)) as i64),
        _ => Err(StoreError::Inconsistent(format!(
            "tree node ({level}, {index}) is beyond any log"
        ))),
    }
}

/// Stored tree nodes, read through one connection.
struct Nodes<'c>(&'c Connection);

impl NodeSource for Nodes<'_> {
    type Error = StoreError;

    fn node(&self, level: u32, index: u64) -> Result<Hash> {
        let bytes: Option<Vec<u8>> = if level == 0 {
            self.0
                .prepare_cached("SELECT leaf_hash FROM records WHERE idx = ?1")?
                .query_row([index as i64], |r| r.get(0))
                .optional()?
        } else {
            self.0
                .prepare_cached("SELECT hash FROM tree_nodes WHERE key = ?1")?
                .query_row([node_key(level, index)?], |r| r.get(0))
                .optional()?
        };
        let bytes = bytes.ok_or_else(|| {
            StoreError::Inconsistent(format!("tree node ({level}, {index}) is missing"))
        })?;
        Hash::from_slice(&bytes)
            .map_err(|e| StoreError::Inconsistent(format!("tree node ({level}, {index}): {e}")))
    }
}

fn api_key_row(row: &Row<'_>) -> rusqlite::Result<ApiKey> {
    let hash: Vec<u8> = row.get(1)?;
    let secret_hash = Hash::from_slice(&hash).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(1, rusqlite::types::Type::Blob, Box::new(e))
    })?;
    Ok(ApiKey {
        id: row.get(0)?,
        secret_hash,
        scope: row.get(2)?,
        twin_prefix: row.get(3)?,
        label: row.get(4)?,
        created_at_ms: row.get(5)?,
        revoked_at_ms: row.get(6)?,
    })
}

const API_KEY_COLUMNS: &str =
    "id, secret_hash, scope, twin_prefix, label, created_at_ms, revoked_at_ms";

fn anchor_row(row: &Row<'_>) -> rusqlite::Result<Anchor> {
    let root: Vec<u8> = row.get(1)?;
    let root = Hash::from_slice(&root).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(1, rusqlite::types::Type::Blob, Box::new(e))
    })?;
    Ok(Anchor {
        size: row.get::<_, i64>(0)? as u64,
        root,
        prev_size: row.get::<_, i64>(2)? as u64,
        tx_hash: row.get(3)?,
        status: row.get(4)?,
        block_number: row.get::<_, Option<i64>>(5)?.map(|v| v as u64),
        block_hash: row.get(6)?,
        block_time: row.get::<_, Option<i64>>(7)?.map(|v| v as u64),
        gas_used: row.get::<_, Option<i64>>(8)?.map(|v| v as u64),
    })
}

fn stored_record(row: &Row<'_>) -> rusqlite::Result<StoredRecord> {
    Ok(StoredRecord {
        index: row.get::<_, i64>(0)? as u64,
        twin_id: row.get(1)?,
        version: row.get(2)?,
        kind: row.get(3)?,
        state: row.get(4)?,
        scheme: row.get(5)?,
        state_hash: row.get(6)?,
        prev_leaf_hash: row.get(7)?,
        recorded_at_ms: row.get(8)?,
        salt: row.get(9)?,
        leaf_hash: row.get(10)?,
        status: row.get(11)?,
        anchor_tx: row.get(12)?,
        anchor_block: row.get::<_, Option<i64>>(13)?.map(|v| v as u64),
        anchor_block_time: row.get::<_, Option<i64>>(14)?.map(|v| v as u64),
        anchor_timestamp: row.get(15)?,
        annex: row.get(16)?,
    })
}

impl Store for SqliteStore {
    fn append(&self, batch: Vec<NewRecord>, frontier: &Frontier) -> Result<AppendOutcome> {
        let mut cache = self.desired.lock().unwrap_or_else(|p| p.into_inner());
        self.write(|conn| {
            let tx = conn.transaction()?;
            let out = append::append(&tx, batch, frontier, &self.bands, &mut cache)?;
            tx.commit()?;
            Ok(out)
        })
    }

    fn frontier(&self) -> Result<Frontier> {
        self.read(|c| {
            let size: i64 =
                c.query_row("SELECT COALESCE(MAX(idx) + 1, 0) FROM records", [], |r| {
                    r.get(0)
                })?;
            Frontier::load(&Nodes(c), size as u64)
        })
    }

    fn inclusion_proof(&self, index: u64, size: u64) -> Result<InclusionProof> {
        self.read(|c| InclusionProof::generate(&Nodes(c), index, size))
    }

    fn consistency_proof(&self, first: u64, second: u64) -> Result<ConsistencyProof> {
        self.read(|c| ConsistencyProof::generate(&Nodes(c), first, second))
    }

    fn tree_head(&self, size: u64) -> Result<TreeHead> {
        self.read(|c| {
            Ok(TreeHead {
                size,
                root: twinledger_core::range_root(&Nodes(c), 0, size)?,
            })
        })
    }

    fn twin(&self, id: &TwinId) -> Result<Option<TwinSummary>> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT twin_id, latest_version, latest_idx, created_at_ms, updated_at_ms, \
                 desired_idx, band FROM twins WHERE twin_id = ?1",
            )?;
            Ok(stmt
                .query_row([id.as_str()], |r| {
                    Ok(TwinSummary {
                        twin_id: r.get(0)?,
                        latest_version: r.get::<_, i64>(1)? as u64,
                        latest_index: r.get::<_, i64>(2)? as u64,
                        created_at_ms: r.get(3)?,
                        updated_at_ms: r.get(4)?,
                        desired_index: r.get::<_, Option<i64>>(5)?.map(|v| v as u64),
                        band: r.get(6)?,
                    })
                })
                .optional()?)
        })
    }

    fn twins(&self, after: Option<&str>, limit: usize) -> Result<Vec<TwinSummary>> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT twin_id, latest_version, latest_idx, created_at_ms, updated_at_ms, \
                 desired_idx, band FROM twins WHERE ?1 IS NULL OR twin_id > ?1 ORDER BY twin_id LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![after, limit as i64], |r| {
                Ok(TwinSummary {
                    twin_id: r.get(0)?,
                    latest_version: r.get::<_, i64>(1)? as u64,
                    latest_index: r.get::<_, i64>(2)? as u64,
                    created_at_ms: r.get(3)?,
                    updated_at_ms: r.get(4)?,
                    desired_index: r.get::<_, Option<i64>>(5)?.map(|v| v as u64),
                    band: r.get(6)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    fn record(&self, id: &TwinId, version: u64) -> Result<Option<StoredRecord>> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {RECORD_COLUMNS} FROM records WHERE twin_id = ?1 AND version = ?2"
            ))?;
            Ok(stmt
                .query_row(params![id.as_str(), version as i64], stored_record)
                .optional()?)
        })
    }

    fn record_at(&self, index: u64) -> Result<Option<StoredRecord>> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {RECORD_COLUMNS} FROM records WHERE idx = ?1"
            ))?;
            Ok(stmt.query_row([index as i64], stored_record).optional()?)
        })
    }

    fn history(&self, id: &TwinId, from_version: u64, limit: usize) -> Result<Vec<StoredRecord>> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {RECORD_COLUMNS} FROM records WHERE twin_id = ?1 AND version >= ?2 \
                 ORDER BY version LIMIT ?3"
            ))?;
            let rows = stmt.query_map(
                params![id.as_str(), from_version as i64, limit as i64],
                stored_record,
            )?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    fn scan(&self, from: u64, f: &mut dyn FnMut(StoredRecord) -> bool) -> Result<()> {
        self.read(|c| {
            let tx = c.unchecked_transaction()?;
            {
                let mut stmt = tx.prepare(&format!(
                    "SELECT {RECORD_COLUMNS} FROM records WHERE idx >= ?1 ORDER BY idx"
                ))?;
                let mut rows = stmt.query([from as i64])?;
                while let Some(row) = rows.next()? {
                    if !f(stored_record(row)?) {
                        break;
                    }
                }
            }
            tx.commit()?;
            Ok(())
        })
    }

    fn pending(&self, limit: usize) -> Result<Vec<StoredRecord>> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {RECORD_COLUMNS} FROM records WHERE status = 'pending' ORDER BY idx LIMIT ?1"
            ))?;
            let rows = stmt.query_map([limit as i64], stored_record)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    fn set_legacy_anchor(&self, index: u64, anchor: &LegacyAnchor) -> Result<()> {
        self.write(|c| {
            c.prepare_cached(
                "UPDATE records SET status = 'anchored', anchor_tx = ?2, anchor_block = ?3, \
                 anchor_block_time = ?4, anchor_timestamp = ?5 WHERE idx = ?1",
            )?
            .execute(params![
                index as i64,
                anchor.tx_hash,
                anchor.block_number as i64,
                anchor.block_timestamp as i64,
                anchor.chain_timestamp,
            ])?;
            Ok(())
        })
    }

    fn set_legacy_sent(&self, index: u64, tx_hash: &str, chain_timestamp: &str) -> Result<()> {
        self.write(|c| {
            c.prepare_cached(
                "UPDATE records SET anchor_tx = ?2, anchor_timestamp = ?3 \
                 WHERE idx = ?1 AND status = 'pending'",
            )?
            .execute(params![index as i64, tx_hash, chain_timestamp])?;
            Ok(())
        })
    }

    fn latest_anchor_block(&self) -> Result<Option<u64>> {
        self.read(|c| {
            let b: Option<i64> = c.query_row(
                "SELECT MAX(b) FROM (SELECT MAX(anchor_block) AS b FROM records \
                 UNION ALL SELECT MAX(block_number) FROM anchors)",
                [],
                |r| r.get(0),
            )?;
            Ok(b.map(|b| b as u64))
        })
    }

    fn put_anchor_sent(&self, size: u64, root: &Hash, prev_size: u64, tx_hash: &str) -> Result<()> {
        self.write(|c| {
            c.prepare_cached(
                "INSERT INTO anchors (size, root, prev_size, tx_hash, status) \
                 VALUES (?1, ?2, ?3, ?4, 'sent') ON CONFLICT (size) DO UPDATE SET \
                 root = excluded.root, prev_size = excluded.prev_size, tx_hash = excluded.tx_hash, \
                 status = 'sent', block_number = NULL, block_hash = NULL, block_time = NULL, \
                 gas_used = NULL",
            )?
            .execute(params![
                size as i64,
                root.0.as_slice(),
                prev_size as i64,
                tx_hash
            ])?;
            Ok(())
        })
    }

    fn set_anchor_tx(&self, size: u64, tx_hash: &str) -> Result<()> {
        self.write(|c| {
            c.prepare_cached(
                "UPDATE anchors SET tx_hash = ?2 WHERE size = ?1 AND status = 'sent'",
            )?
            .execute(params![size as i64, tx_hash])?;
            Ok(())
        })
    }

    fn set_anchor_mined(
        &self,
        size: u64,
        block_number: u64,
        block_hash: &str,
        block_time: u64,
        gas_used: u64,
    ) -> Result<()> {
        self.write(|c| {
            c.prepare_cached(
                "UPDATE anchors SET status = 'mined', block_number = ?2, block_hash = ?3, \
                 block_time = ?4, gas_used = ?5 WHERE size = ?1",
            )?
            .execute(params![
                size as i64,
                block_number as i64,
                block_hash,
                block_time as i64,
                gas_used as i64
            ])?;
            Ok(())
        })
    }

    fn set_anchors_confirmed(&self, up_to_size: u64) -> Result<()> {
        self.write(|c| {
            c.prepare_cached(
                "UPDATE anchors SET status = 'confirmed' WHERE size <= ?1 AND status = 'mined'",
            )?
            .execute([up_to_size as i64])?;
            Ok(())
        })
    }

    fn delete_anchor(&self, size: u64) -> Result<()> {
        self.write(|c| {
            c.prepare_cached("DELETE FROM anchors WHERE size = ?1")?
                .execute([size as i64])?;
            Ok(())
        })
    }

    fn anchors(&self, from_size: u64, limit: usize) -> Result<Vec<Anchor>> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {ANCHOR_COLUMNS} FROM anchors WHERE size >= ?1 ORDER BY size LIMIT ?2"
            ))?;
            let rows = stmt.query_map(params![from_size as i64, limit as i64], anchor_row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    fn anchor_covering(&self, index: u64) -> Result<Option<Anchor>> {
        self.read(|c| {
            Ok(c.prepare_cached(&format!(
                "SELECT {ANCHOR_COLUMNS} FROM anchors WHERE size > ?1 AND status != 'sent' \
                 ORDER BY size LIMIT 1"
            ))?
            .query_row([index as i64], anchor_row)
            .optional()?)
        })
    }

    fn latest_mined_anchor(&self) -> Result<Option<Anchor>> {
        self.read(|c| {
            Ok(c.prepare_cached(&format!(
                "SELECT {ANCHOR_COLUMNS} FROM anchors WHERE status != 'sent' \
                 ORDER BY size DESC LIMIT 1"
            ))?
            .query_row([], anchor_row)
            .optional()?)
        })
    }

    fn put_api_key(&self, key: &ApiKey) -> Result<()> {
        self.write(|c| {
            c.prepare_cached(&format!(
                "INSERT INTO api_keys ({API_KEY_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
            ))?
            .execute(params![
                key.id,
                key.secret_hash.0.as_slice(),
                key.scope,
                key.twin_prefix,
                key.label,
                key.created_at_ms,
                key.revoked_at_ms
            ])?;
            Ok(())
        })
    }

    fn api_key(&self, id: &str) -> Result<Option<ApiKey>> {
        self.read(|c| {
            Ok(c.prepare_cached(&format!(
                "SELECT {API_KEY_COLUMNS} FROM api_keys WHERE id = ?1"
            ))?
            .query_row([id], api_key_row)
            .optional()?)
        })
    }

    fn api_keys(&self) -> Result<Vec<ApiKey>> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {API_KEY_COLUMNS} FROM api_keys ORDER BY created_at_ms, id"
            ))?;
            let rows = stmt.query_map([], api_key_row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    fn put_device_key(&self, key: &DeviceKeyRow) -> Result<()> {
        self.write(|c| {
            c.prepare_cached(
                "INSERT INTO device_keys (twin_id, public_key, require_signature, \
                 registered_at_ms) VALUES (?1, ?2, ?3, ?4) ON CONFLICT (twin_id) DO UPDATE SET \
                 public_key = excluded.public_key, require_signature = excluded.require_signature, \
                 registered_at_ms = excluded.registered_at_ms",
            )?
            .execute(params![
                key.twin_id,
                key.public_key,
                key.require_signature,
                key.registered_at_ms
            ])?;
            Ok(())
        })
    }

    fn device_key(&self, twin_id: &str) -> Result<Option<DeviceKeyRow>> {
        self.read(|c| {
            Ok(c.prepare_cached(
                "SELECT twin_id, public_key, require_signature, registered_at_ms \
                 FROM device_keys WHERE twin_id = ?1",
            )?
            .query_row([twin_id], |r| {
                Ok(DeviceKeyRow {
                    twin_id: r.get(0)?,
                    public_key: r.get(1)?,
                    require_signature: r.get(2)?,
                    registered_at_ms: r.get(3)?,
                })
            })
            .optional()?)
        })
    }

    fn delete_device_key(&self, twin_id: &str) -> Result<bool> {
        self.write(|c| {
            let n = c
                .prepare_cached("DELETE FROM device_keys WHERE twin_id = ?1")?
                .execute([twin_id])?;
            Ok(n > 0)
        })
    }

    fn congruence_history(
        &self,
        id: &TwinId,
        after_version: u64,
        from_ms: i64,
        to_ms: i64,
        limit: usize,
    ) -> Result<Vec<StoredRecord>> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {RECORD_COLUMNS} FROM records WHERE twin_id = ?1 AND version > ?2 \
                 AND kind = 'reported' AND annex IS NOT NULL \
                 AND json_extract(annex, '$.congruence') IS NOT NULL \
                 AND recorded_at_ms BETWEEN ?3 AND ?4 ORDER BY version LIMIT ?5"
            ))?;
            let rows = stmt.query_map(
                params![
                    id.as_str(),
                    after_version as i64,
                    from_ms,
                    to_ms,
                    limit as i64
                ],
                stored_record,
            )?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    fn latest_assessed(&self, id: &TwinId) -> Result<Option<StoredRecord>> {
        self.read(|c| {
            Ok(c.prepare_cached(&format!(
                "SELECT {RECORD_COLUMNS} FROM records WHERE twin_id = ?1 AND kind = 'reported' \
                 AND annex IS NOT NULL AND json_extract(annex, '$.congruence') IS NOT NULL \
                 ORDER BY version DESC LIMIT 1"
            ))?
            .query_row([id.as_str()], stored_record)
            .optional()?)
        })
    }

    fn records_from(
        &self,
        from: u64,
        twin: Option<&TwinId>,
        limit: usize,
    ) -> Result<Vec<StoredRecord>> {
        self.read(|c| {
            let rows = match twin {
                None => c
                    .prepare_cached(&format!(
                        "SELECT {RECORD_COLUMNS} FROM records WHERE idx >= ?1 ORDER BY idx LIMIT ?2"
                    ))?
                    .query_map(params![from as i64, limit as i64], stored_record)?
                    .collect::<rusqlite::Result<Vec<_>>>()?,
                // Through the (twin_id, version) index: versions grow with log indexes.
                Some(id) => c
                    .prepare_cached(&format!(
                        "SELECT {RECORD_COLUMNS} FROM records WHERE twin_id = ?1 AND idx >= ?2 \
                         ORDER BY version LIMIT ?3"
                    ))?
                    .query_map(
                        params![id.as_str(), from as i64, limit as i64],
                        stored_record,
                    )?
                    .collect::<rusqlite::Result<Vec<_>>>()?,
            };
            Ok(rows)
        })
    }

    fn revoke_api_key(&self, id: &str, at_ms: i64) -> Result<bool> {
        self.write(|c| {
            let n = c
                .prepare_cached(
                    "UPDATE api_keys SET revoked_at_ms = ?2 WHERE id = ?1 AND revoked_at_ms IS NULL",
                )?
                .execute(params![id, at_ms])?;
            Ok(n == 1)
        })
    }

    fn prune_idempotency_keys(&self, created_before_ms: i64, limit: usize) -> Result<usize> {
        self.write(|c| {
            // Through rowids, so that one batch holds the write lock only for `limit` rows; the
            // index on created_at_ms finds them without a table scan.
            Ok(c.prepare_cached(
                "DELETE FROM idempotency_keys WHERE rowid IN (SELECT rowid FROM idempotency_keys \
                 WHERE created_at_ms < ?1 LIMIT ?2)",
            )?
            .execute(params![created_before_ms, limit as i64])?)
        })
    }

    fn meta(&self, key: &str) -> Result<Option<String>> {
        self.read(|c| {
            Ok(c.prepare_cached("SELECT value FROM meta WHERE key = ?1")?
                .query_row([key], |r| r.get(0))
                .optional()?)
        })
    }

    fn set_meta(&self, key: &str, value: &str) -> Result<()> {
        self.write(|c| {
            c.prepare_cached(
                "INSERT INTO meta (key, value) VALUES (?1, ?2) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            )?
            .execute([key, value])?;
            Ok(())
        })
    }

    fn stats(&self) -> Result<StoreStats> {
        self.read(|c| {
            let records: i64 =
                c.query_row("SELECT COALESCE(MAX(idx) + 1, 0) FROM records", [], |r| {
                    r.get(0)
                })?;
            let twins: i64 = c.query_row("SELECT COUNT(*) FROM twins", [], |r| r.get(0))?;
            let pending: i64 = c.query_row(
                "SELECT COUNT(*) FROM records WHERE status = 'pending'",
                [],
                |r| r.get(0),
            )?;
            Ok(StoreStats {
                records: records as u64,
                twins: twins as u64,
                pending: pending as u64,
            })
        })
    }
}

#[cfg(test)]
mod tests;
