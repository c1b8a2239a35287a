//! Durable storage of the twinledger log.
//!
//! The [`Store`] trait is what the ledger needs from a database: append a batch of records in one
//! durable transaction (assigning log indexes and per-twin versions), read records back exactly as
//! stored (so that verification sees tampering instead of hiding it), and track anchoring status.
//! [`SqliteStore`] is the embedded default: one file, WAL, migrations by `user_version`.

mod error;
mod model;
mod sqlite;

pub use error::{Result, StoreError};
pub use model::{
    LegacyAnchor, NewRecord, RecordStatus, StoreStats, StoredRecord, StoredRecordError, TwinSummary,
};
pub use sqlite::SqliteStore;

use twinledger_core::{Record, TwinId};

/// What the ledger needs from a database.
pub trait Store: Send + Sync + 'static {
    /// Appends `batch` in one durable transaction, assigning each record the next log index and
    /// its twin's next version (chained to the twin's previous leaf). Returns the records in
    /// batch order.
    fn append(&self, batch: Vec<NewRecord>) -> Result<Vec<Record>>;

    /// The twin's summary, if the twin exists.
    fn twin(&self, id: &TwinId) -> Result<Option<TwinSummary>>;

    /// One version of a twin, exactly as stored.
    fn record(&self, id: &TwinId, version: u64) -> Result<Option<StoredRecord>>;

    /// Versions `from_version..` of a twin in version order, at most `limit`.
    fn history(&self, id: &TwinId, from_version: u64, limit: usize) -> Result<Vec<StoredRecord>>;

    /// Records still waiting for their anchor, in log order, at most `limit`.
    fn pending(&self, limit: usize) -> Result<Vec<StoredRecord>>;

    /// Notes that record `index`'s legacy `updateTwin` transaction was sent, before its receipt
    /// is known, so that a restart checks that transaction instead of sending another.
    fn set_legacy_sent(&self, index: u64, tx_hash: &str, chain_timestamp: &str) -> Result<()>;

    /// Marks record `index` anchored by a legacy (seed contract) transaction.
    fn set_legacy_anchor(&self, index: u64, anchor: &LegacyAnchor) -> Result<()>;

    /// A stored fact about this ledger.
    fn meta(&self, key: &str) -> Result<Option<String>>;

    /// Stores a fact about this ledger.
    fn set_meta(&self, key: &str, value: &str) -> Result<()>;

    /// Counts for health reports.
    fn stats(&self) -> Result<StoreStats>;
}
