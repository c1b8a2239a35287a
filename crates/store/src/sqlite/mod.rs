//! The embedded SQLite store: one file, WAL, one writer connection and a small reader pool.

mod anchors;
mod append;
mod keys;
mod log;
mod store;
mod tables;
mod twins;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OpenFlags, OptionalExtension, Row};
use twinledger_core::{Bands, Frontier, Hash, NodeSource};

pub(super) use crate::columns::{ANCHOR_COLUMNS, API_KEY_COLUMNS, RECORD_COLUMNS};
use crate::model::{Anchor, ApiKey, StoreStats, StoredRecord};
use crate::{Result, StoreError};

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
    include_str!("../../migrations/sqlite/0011_anchor_replacements.sql"),
];

/// Readers kept open between calls; more are opened on demand and closed after use.
const READER_POOL: usize = 8;

/// The SQLite store. SQLite blocks, so its calls run off the async workers: appends on one
/// thread of their own (`twinledger-writer`, which owns the write path and is the thread a
/// fault test traces), everything else on tokio's blocking threads.
#[derive(Clone)]
pub struct SqliteStore {
    db: Arc<Database>,
    appends: std::sync::mpsc::Sender<Append>,
    /// One per pooled reader connection: calls beyond them wait here, on the runtime, rather
    /// than each on a blocking thread of its own opening a connection (and parsing the schema)
    /// that the pool then closes: under 64 concurrent verifications that churn was a good
    /// part of the read path's time.
    calls: Arc<tokio::sync::Semaphore>,
}

/// A batch for the append thread, and where its outcome goes.
type Append = (
    Vec<crate::model::NewRecord>,
    tokio::sync::oneshot::Sender<Result<crate::model::AppendOutcome>>,
);

/// The database's connections and the writer's caches, used synchronously.
pub(crate) struct Database {
    path: PathBuf,
    writer: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
    /// Tree nodes the readers found ([`NODE_CACHE`]).
    nodes: quick_cache::sync::Cache<i64, Hash>,
    bands: Bands,
    desired: Mutex<append::DesiredCache>,
    /// The tree after the last append; a store on SQLite has one writer, so it stays true.
    tree: Mutex<Option<Frontier>>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.db.path)
            .finish()
    }
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database")
            .field("path", &self.path)
            .finish()
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and brings its schema up to date.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::open_with(path, Bands::default())
    }

    /// Opens the database at `path`, placing congruence scores with `bands`.
    pub fn open_with(path: impl AsRef<Path>, bands: Bands) -> Result<Self> {
        let db = Arc::new(Database::open(path.as_ref(), bands)?);
        let (appends, batches) = std::sync::mpsc::channel::<Append>();
        // The thread ends when the last clone of the store is dropped.
        std::thread::Builder::new()
            .name("twinledger-writer".into())
            .spawn({
                let db = db.clone();
                move || {
                    for (batch, reply) in batches {
                        let _ = reply.send(db.append(batch));
                    }
                }
            })
            .map_err(|e| {
                StoreError::Inconsistent(format!("cannot start the append thread: {e}"))
            })?;
        Ok(Self {
            db,
            appends,
            calls: Arc::new(tokio::sync::Semaphore::new(READER_POOL)),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.db.path
    }

    /// Runs `f` here, on the calling task's thread: for reads bounded by a few index lookups
    /// (a twin, a record, a proof, a page of history, a key), which take microseconds from the
    /// OS's page cache. Handing each to a blocking thread and back cost more than the read:
    /// proof bundles answered 1.6 times as fast without the hand-off (`twinledger bench`). A
    /// read that has to wait for the disk holds one async worker for that long.
    fn now<T>(&self, f: impl FnOnce(&Database) -> Result<T>) -> Result<T> {
        f(&self.db)
    }

    /// Runs `f` on a blocking thread.
    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Database) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let db = self.db.clone();
        let permit = self
            .calls
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| StoreError::Inconsistent(format!("store closed: {e}")))?;
        tokio::task::spawn_blocking(move || {
            let out = f(&db);
            drop(permit);
            out
        })
        .await
        .map_err(|e| StoreError::Inconsistent(format!("store task failed: {e}")))?
    }
}

impl Database {
    fn open(path: &Path, bands: Bands) -> Result<Self> {
        let path = path.to_path_buf();
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
            nodes: quick_cache::sync::Cache::new(NODE_CACHE),
            bands,
            desired: Mutex::default(),
            tree: Mutex::default(),
        })
    }

    /// [`Self::read`] in one read transaction: one snapshot for all of `f`'s statements, and
    /// the WAL's read lock taken once rather than by each (a proof is 17 lookups, and each
    /// took and gave back the lock on its own: file-lock system calls were much of a verify).
    /// For one statement it costs more than it saves (`BEGIN` and `ROLLBACK` are statements).
    fn read_snapshot<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        self.read(|c| {
            let tx = c.unchecked_transaction()?;
            f(&tx)
        })
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

/// Plans that do not depend on bound values. Without it, a parameter that the planner compares
/// with the partial index `records_pending` (`status = 'pending'`) marks every statement on
/// `records` to be compiled again whenever that parameter's value changes: a twin's history or
/// a leaf hash read with a new id or index was parsed and planned anew each time (a tenth of a
/// verification's time). The queries that want that index name `'pending'` as a literal.
fn stable_plans(conn: &Connection) -> rusqlite::Result<()> {
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )?;
    Ok(())
}

fn configure(conn: &Connection) -> rusqlite::Result<()> {
    stable_plans(conn)?;
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
    stable_plans(conn)?;
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

pub(super) use crate::batch::node_key;

/// Tree nodes (levels above the leaves) that readers found, shared by all of them. A stored
/// node never changes once committed (the log only grows), and readers see only committed
/// ones, so a copy stays true. Proofs of different records share their upper nodes, which
/// then come from here instead of a lookup each (17 per proof at 100,000 records). Bounded,
/// so the service's memory does not grow with the log. Leaf hashes are always read from the
/// records: an edited record's proof fails as it did without the cache.
const NODE_CACHE: usize = 1 << 16;

/// Stored tree nodes, read through one connection, and through the readers' cache when given
/// one (never on the writer's connection, which sees the nodes of a batch before it commits).
struct Nodes<'c>(
    &'c Connection,
    Option<&'c quick_cache::sync::Cache<i64, Hash>>,
);

impl NodeSource for Nodes<'_> {
    type Error = StoreError;

    fn node(&self, level: u32, index: u64) -> Result<Hash> {
        let key = (level > 0).then(|| node_key(level, index)).transpose()?;
        if let (Some(key), Some(cache)) = (key, self.1)
            && let Some(hash) = cache.get(&key)
        {
            return Ok(hash);
        }
        let bytes: Option<Vec<u8>> = match key {
            None => self
                .0
                .prepare_cached("SELECT leaf_hash FROM records WHERE idx = ?1")?
                .query_row([index as i64], |r| r.get(0))
                .optional()?,
            Some(key) => self
                .0
                .prepare_cached("SELECT hash FROM tree_nodes WHERE key = ?1")?
                .query_row([key], |r| r.get(0))
                .optional()?,
        };
        let bytes = bytes.ok_or_else(|| {
            StoreError::Inconsistent(format!("tree node ({level}, {index}) is missing"))
        })?;
        let hash = Hash::from_slice(&bytes)
            .map_err(|e| StoreError::Inconsistent(format!("tree node ({level}, {index}): {e}")))?;
        if let (Some(key), Some(cache)) = (key, self.1) {
            cache.insert(key, hash);
        }
        Ok(hash)
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
        replacements: row.get::<_, i64>(9)? as u64,
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

impl Database {
    pub(super) fn meta(&self, key: &str) -> Result<Option<String>> {
        self.read(|c| {
            Ok(c.prepare_cached("SELECT value FROM meta WHERE key = ?1")?
                .query_row([key], |r| r.get(0))
                .optional()?)
        })
    }

    pub(super) fn set_meta(&self, key: &str, value: &str) -> Result<()> {
        self.write(|c| {
            c.prepare_cached(
                "INSERT INTO meta (key, value) VALUES (?1, ?2) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            )?
            .execute([key, value])?;
            Ok(())
        })
    }

    pub(super) fn set_meta_once(&self, key: &str, value: &str) -> Result<String> {
        self.write(|c| {
            c.prepare_cached(
                "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO NOTHING",
            )?
            .execute([key, value])?;
            Ok(c.prepare_cached("SELECT value FROM meta WHERE key = ?1")?
                .query_row([key], |r| r.get(0))?)
        })
    }

    pub(super) fn stats(&self) -> Result<StoreStats> {
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
            let bytes: i64 = c.query_row(
                "SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()",
                [],
                |r| r.get(0),
            )?;
            Ok(StoreStats {
                records: records as u64,
                twins: twins as u64,
                pending: pending as u64,
                bytes: bytes as u64,
            })
        })
    }
}

#[cfg(test)]
mod tests;
