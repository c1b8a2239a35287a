//! Durable storage of the twinledger log.
//!
//! [`Store`] is what the ledger needs from a database, split by concern: [`LogStore`] appends a
//! batch of records in one durable transaction (assigning log indexes and per-twin versions) and
//! reads records and tree proofs back exactly as stored (so that verification sees tampering
//! instead of hiding it); [`TwinStore`] is each twin's view of the log; [`AnchorStore`] tracks
//! what the chain holds; [`KeyStore`] holds API, idempotency and device keys. Every backend
//! implements all four, and [`TableStore`], every table as stored, which [`copy_ledger`] moves a
//! ledger to another database with. [`SqliteStore`] is the embedded default: one file, WAL, migrations by
//! `user_version`. [`PostgresStore`] keeps the log in PostgreSQL, where several nodes may append
//! to one database. Both append through one planner (`batch`), so a batch means the same on
//! either.

mod batch;
mod columns;
mod copy;
mod error;
mod model;
pub mod postgres;
mod sqlite;
mod tables;

pub use copy::{CopyError, CopyProgress, CopyReport, copy_ledger};
pub use error::{Result, StoreError};
pub use model::{
    Anchor, ApiKey, AppendOutcome, Appended, DeviceKeyRow, LegacyAnchor, NewRecord, RecordStatus,
    StoreStats, StoredRecord, StoredRecordError, TwinSummary,
};
pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;
pub use tables::{IdempotencyKeyRow, MetaRow, Table, TableRows, TreeNodeRow, TwinRow};

use async_trait::async_trait;
use futures_util::stream::BoxStream;
use twinledger_core::{ConsistencyProof, Frontier, Hash, InclusionProof, TreeHead, TwinId};

/// Records in index order, batch by batch, as [`LogStore::scan`] reads them.
pub type RecordBatches = BoxStream<'static, Result<Vec<StoredRecord>>>;

/// The log's size after batches committed by any writer, as [`LogStore::log_sizes`] reports it.
pub type LogSizes = BoxStream<'static, u64>;

/// The log: records by log index, the Merkle tree over them, and its proofs.
#[async_trait]
pub trait LogStore: Send + Sync + 'static {
    /// Appends `batch` after the last record in one durable transaction, assigning each
    /// record the next log index and its twin's next version (chained to the twin's previous
    /// leaf), and storing the tree nodes the new leaves complete. A reported state is compared
    /// with its twin's desired state; when its band differs from the twin's last one, a shift
    /// event follows it in the log. The store knows the tree the batch extends: the caller
    /// passes none, so that several writers on one database can each append.
    async fn append(&self, batch: Vec<NewRecord>) -> Result<AppendOutcome>;

    /// Returns when the next batch should be cut. Where writers on other nodes append to the
    /// same log, a store may wait here for the log's serialization point, so that the batch
    /// carries every submission that arrived meanwhile; a store with one writer returns at
    /// once. The caller appends one batch after each turn.
    async fn await_turn(&self) {}

    /// The tree's frontier, rebuilt from stored nodes (at start-up).
    async fn frontier(&self) -> Result<Frontier>;

    /// The frontier of the tree over the first `size` leaves, from stored nodes (an audit that
    /// begins part-way).
    async fn frontier_at(&self, size: u64) -> Result<Frontier>;

    /// Inclusion proof of leaf `index` in the tree of `size` leaves.
    async fn inclusion_proof(&self, index: u64, size: u64) -> Result<InclusionProof>;

    /// Inclusion proofs of the leaves at `indexes` in the tree of `size` leaves, in one read
    /// (a twin's verification proves each of its versions). A proof that cannot be made (a
    /// node is missing) is an error in its place; the outer error is the read's.
    async fn inclusion_proofs(
        &self,
        indexes: Vec<u64>,
        size: u64,
    ) -> Result<Vec<Result<InclusionProof>>>;

    /// Consistency proof from the tree of `first` leaves to the tree of `second`.
    async fn consistency_proof(&self, first: u64, second: u64) -> Result<ConsistencyProof>;

    /// The head of the tree of `size` leaves, from stored nodes.
    async fn tree_head(&self, size: u64) -> Result<TreeHead>;

    /// The record at log index `index`, exactly as stored.
    async fn record_at(&self, index: u64) -> Result<Option<StoredRecord>>;

    /// Every record from log index `from` on, in index order, in batches, read while the
    /// caller consumes them (memory stays flat however long the log). Records are never
    /// rewritten, so batches read one after another form one consistent log.
    fn scan(&self, from: u64) -> RecordBatches;

    /// The log's size each time a batch commits, when processes other than this one append
    /// to the same database (several nodes on PostgreSQL); `None` when this process is the only
    /// writer, which then knows every size from its own appends. Sizes may repeat or arrive
    /// late, never ahead of a commit; the stream keeps going across lost connections.
    fn log_sizes(&self) -> Option<LogSizes>;

    /// Records from log index `from` in index order (only `twin`'s, if given), at most `limit`.
    async fn records_from(
        &self,
        from: u64,
        twin: Option<&TwinId>,
        limit: usize,
    ) -> Result<Vec<StoredRecord>>;
}

/// Each twin's view of the log: its summary, its versions, its congruence.
#[async_trait]
pub trait TwinStore: Send + Sync + 'static {
    /// The twin's summary, if the twin exists.
    async fn twin(&self, id: &TwinId) -> Result<Option<TwinSummary>>;

    /// Twins whose id starts with `prefix` (all of them for `""`), in id order after `after`
    /// (exclusive), at most `limit`: one range of the twins' index, however many twins there
    /// are.
    async fn twins(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<TwinSummary>>;

    /// One version of a twin, exactly as stored.
    async fn record(&self, id: &TwinId, version: u64) -> Result<Option<StoredRecord>>;

    /// Versions `from_version..` of a twin in version order, at most `limit`.
    async fn history(
        &self,
        id: &TwinId,
        from_version: u64,
        limit: usize,
    ) -> Result<Vec<StoredRecord>>;

    /// A twin's reported records that carry a congruence, in version order: versions above
    /// `after_version`, accepted in `[from_ms, to_ms]`, at most `limit`.
    async fn congruence_history(
        &self,
        id: &TwinId,
        after_version: u64,
        from_ms: i64,
        to_ms: i64,
        limit: usize,
    ) -> Result<Vec<StoredRecord>>;

    /// A twin's latest reported record that carries a congruence.
    async fn latest_assessed(&self, id: &TwinId) -> Result<Option<StoredRecord>>;
}

/// What has been anchored on the chain, and what still waits for it.
#[async_trait]
pub trait AnchorStore: Send + Sync + 'static {
    /// Records still waiting for their anchor, in log order, at most `limit`.
    async fn pending(&self, limit: usize) -> Result<Vec<StoredRecord>>;

    /// Notes that record `index`'s legacy `updateTwin` transaction was sent, before its receipt
    /// is known, so that a restart checks that transaction instead of sending another.
    async fn set_legacy_sent(&self, index: u64, tx_hash: &str, chain_timestamp: &str)
    -> Result<()>;

    /// Marks record `index` anchored by a legacy (seed contract) transaction.
    async fn set_legacy_anchor(&self, index: u64, anchor: &LegacyAnchor) -> Result<()>;

    /// The highest block number any record was anchored in, if any: a chain whose head is below
    /// it has lost blocks we depend on.
    async fn latest_anchor_block(&self) -> Result<Option<u64>>;

    /// Notes an anchoring transaction sent for the tree head `(size, root)`.
    async fn put_anchor_sent(
        &self,
        size: u64,
        root: &Hash,
        prev_size: u64,
        tx_hash: &str,
    ) -> Result<()>;

    /// Notes that the anchor of `size` was sent again under another transaction (a replacement
    /// with higher fees), and counts the replacement.
    async fn set_anchor_tx(&self, size: u64, tx_hash: &str) -> Result<()>;

    /// Marks the anchor of `size` mined in `block_number`.
    async fn set_anchor_mined(
        &self,
        size: u64,
        block_number: u64,
        block_hash: &str,
        block_time: u64,
        gas_used: u64,
    ) -> Result<()>;

    /// Marks every mined anchor up to `size` confirmed.
    async fn set_anchors_confirmed(&self, up_to_size: u64) -> Result<()>;

    /// Forgets an anchor whose transaction never landed.
    async fn delete_anchor(&self, size: u64) -> Result<()>;

    /// Anchors in size order, from `from_size`, at most `limit`.
    async fn anchors(&self, from_size: u64, limit: usize) -> Result<Vec<Anchor>>;

    /// Anchors newest first, of sizes below `below_size`, at most `limit`.
    async fn anchors_below(&self, below_size: u64, limit: usize) -> Result<Vec<Anchor>>;

    /// The smallest mined (or confirmed) anchor whose tree holds leaf `index`.
    async fn anchor_covering(&self, index: u64) -> Result<Option<Anchor>>;

    /// The latest mined (or confirmed) anchor.
    async fn latest_mined_anchor(&self) -> Result<Option<Anchor>>;

    /// Takes or keeps the anchoring lease for `holder` for `ttl`, measured on the database's
    /// clock: the lease's epoch while `holder` holds it (a new epoch each time it changes
    /// hands), `None` while another holder's lease runs. One node anchors at a time.
    async fn anchor_lease(&self, holder: &str, ttl: std::time::Duration) -> Result<Option<u64>>;

    /// Ends `holder`'s lease, if it holds it, so that another node takes over at once.
    async fn release_anchor_lease(&self, holder: &str) -> Result<()>;

    /// The largest log size whose every batch the database's synchronous standbys have made
    /// durable: an anchor must go no further, since a commit the standby lacks can vanish in a
    /// failover and an anchored head that loses records is a fork. `None` when the database
    /// promises nothing beyond itself (SQLite, or PostgreSQL without synchronous standbys).
    async fn replicated_size(&self) -> Result<Option<u64>>;
}

/// Keys: API keys, idempotency keys, device keys.
#[async_trait]
pub trait KeyStore: Send + Sync + 'static {
    /// Stores a new API key.
    async fn put_api_key(&self, key: &ApiKey) -> Result<()>;

    /// An API key by id.
    async fn api_key(&self, id: &str) -> Result<Option<ApiKey>>;

    /// Every API key, revoked ones included.
    async fn api_keys(&self) -> Result<Vec<ApiKey>>;

    /// Revokes a key; false if there is no such key.
    async fn revoke_api_key(&self, id: &str, at_ms: i64) -> Result<bool>;

    /// Deletes up to `limit` idempotency keys created before `created_before_ms` (Unix ms);
    /// returns how many it deleted, so a caller can repeat until fewer than `limit` go.
    async fn prune_idempotency_keys(&self, created_before_ms: i64, limit: usize) -> Result<usize>;

    /// Registers (or replaces) the device key of a twin.
    async fn put_device_key(&self, key: &DeviceKeyRow) -> Result<()>;

    /// The device key registered for a twin.
    async fn device_key(&self, twin_id: &str) -> Result<Option<DeviceKeyRow>>;

    /// Removes a twin's device key; false if it had none.
    async fn delete_device_key(&self, twin_id: &str) -> Result<bool>;
}

/// One table's rows in key order, batch by batch, as [`TableStore::export`] reads them.
pub type TableBatches = BoxStream<'static, Result<TableRows>>;

/// Every table exactly as stored, for moving a ledger to another database: rows are read and
/// written as they are, never appended again (an append would score reports and derive shift
/// events anew, and assign what the copy must keep).
#[async_trait]
pub trait TableStore: Send + Sync + 'static {
    /// Every row of `table` in key order, in batches read while the caller consumes them, so
    /// memory stays flat however large the table.
    fn export(&self, table: Table) -> TableBatches;

    /// Writes `rows` as they are, in one transaction. Whatever the store derives from its
    /// tables is set afterwards by [`TableStore::finish_import`].
    async fn import(&self, rows: TableRows) -> Result<()>;

    /// Makes the store consistent with what was imported: PostgreSQL sets `log_head` (size and
    /// frontier) from the imported records and tree nodes; SQLite forgets the tree it cached.
    async fn finish_import(&self) -> Result<()>;

    /// The number of rows in each table, in [`Table::ALL`] order.
    async fn row_counts(&self) -> Result<Vec<(Table, u64)>>;

    /// Whether the store holds nothing but what opening it wrote (its schema; no table has a
    /// row).
    async fn is_empty(&self) -> Result<bool> {
        Ok(self.row_counts().await?.iter().all(|(_, n)| *n == 0))
    }
}

/// What the ledger needs from a database: each concern's part, and the facts about the ledger
/// itself. Every backend implements all of it.
#[async_trait]
pub trait Store: LogStore + TwinStore + AnchorStore + KeyStore + TableStore {
    /// A stored fact about this ledger.
    async fn meta(&self, key: &str) -> Result<Option<String>>;

    /// Stores a fact about this ledger.
    async fn set_meta(&self, key: &str, value: &str) -> Result<()>;

    /// Stores `value` under `key` unless a value is there already; returns the stored value,
    /// so that nodes starting together agree on the first one.
    async fn set_meta_once(&self, key: &str, value: &str) -> Result<String>;

    /// Counts for health reports.
    async fn stats(&self) -> Result<StoreStats>;
}
