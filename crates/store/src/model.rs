//! Rows as the store keeps them.

use std::str::FromStr;

use serde::Serialize;
use twinledger_core::json::{self, Limits, Object, Value};
use twinledger_core::{Annex, Frontier, Hash, HashScheme, Record, RecordKind, Salt, TwinId};

/// A record to append: everything but its log index, version and chain link, which the store
/// assigns inside the append transaction.
#[derive(Debug, Clone)]
pub struct NewRecord {
    /// The twin.
    pub twin_id: TwinId,
    /// What the record says.
    pub kind: RecordKind,
    /// The state object.
    pub state: Value,
    /// The state's hash scheme.
    pub scheme: HashScheme,
    /// Hash of `state` under `scheme`.
    pub state_hash: Hash,
    /// Acceptance time, ms since the Unix epoch.
    pub recorded_at_ms: i64,
    /// Leaf salt.
    pub salt: Salt,
    /// The client's idempotency key and a fingerprint of its request, if it sent one.
    pub idempotency: Option<(String, Hash)>,
    /// Annex members given by the ledger (signature, source, tolerances); the store adds the
    /// congruence of a reported state. The record gets an annex (and a v2 leaf) only if the
    /// result is not empty.
    pub annex: Object,
}

/// What one append wrote.
#[derive(Debug, Clone)]
pub struct AppendOutcome {
    /// One result per submission, in batch order.
    pub results: Vec<Appended>,
    /// Records the store derived from the batch (congruence shift events), in log order.
    pub derived: Vec<Record>,
    /// The tree after the batch.
    pub frontier: Frontier,
    /// How long the append held the log's one serialization point, which no other append on
    /// the database can pass meanwhile: SQLite's write transaction; PostgreSQL's `log_head`
    /// row lock, from its reads (which follow the lock) coming back to the commit coming back.
    /// The log's write rate is at most the batch size over this.
    pub held: std::time::Duration,
}

/// What an append did with one submission.
// `New` is by far the common case: boxing it would cost an allocation per record.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Appended {
    /// A new record.
    New(Record),
    /// The idempotency key was seen before: nothing was written; the first request made the
    /// record at `index`, and `same_request` tells whether it asked for the same thing.
    Replay {
        /// Log index of the first request's record.
        index: u64,
        /// Whether the fingerprints match.
        same_request: bool,
    },
    /// Refused by the twin's device-key rules (checked in the transaction, so a key change
    /// cannot race the write); nothing was written.
    Refused(String),
}

/// Where a record is on its way to the chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordStatus {
    /// Durably stored, not yet on chain.
    Pending,
    /// In a mined transaction.
    Anchored,
    /// In a transaction with enough confirmations.
    Confirmed,
}

impl RecordStatus {
    /// The status as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Anchored => "anchored",
            Self::Confirmed => "confirmed",
        }
    }
}

/// A legacy-mode anchor: the seed contract's `updateTwin` transaction for one record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LegacyAnchor {
    /// Transaction hash, `0x`-prefixed hex.
    pub tx_hash: String,
    /// Block holding the transaction.
    pub block_number: u64,
    /// That block's timestamp, seconds since the Unix epoch.
    pub block_timestamp: u64,
    /// The `_timestamp` argument given to `updateTwin`.
    pub chain_timestamp: String,
}

/// A record row exactly as stored, before any check: verification decodes it with
/// [`StoredRecord::decode`] and treats every failure as tampering.
#[derive(Debug, Clone)]
pub struct StoredRecord {
    /// Log index.
    pub index: u64,
    /// Twin id column.
    pub twin_id: String,
    /// Version column.
    pub version: i64,
    /// Kind column.
    pub kind: String,
    /// State column (JSON text).
    pub state: String,
    /// Hash scheme column.
    pub scheme: String,
    /// State hash column.
    pub state_hash: Vec<u8>,
    /// Previous leaf hash column.
    pub prev_leaf_hash: Option<Vec<u8>>,
    /// Acceptance time column.
    pub recorded_at_ms: i64,
    /// Salt column.
    pub salt: Vec<u8>,
    /// Leaf hash column.
    pub leaf_hash: Vec<u8>,
    /// Status column.
    pub status: String,
    /// Legacy mode: the `updateTwin` transaction sent for this record, once sent.
    pub anchor_tx: Option<String>,
    /// Legacy mode: the `_timestamp` argument of that transaction.
    pub anchor_timestamp: Option<String>,
    /// Legacy mode: the block holding that transaction, once mined.
    pub anchor_block: Option<u64>,
    /// Legacy mode: that block's timestamp.
    pub anchor_block_time: Option<u64>,
    /// Annex column (JSON object text), for records with a v2 leaf.
    pub annex: Option<String>,
}

/// Why a stored row does not decode into a [`Record`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoredRecordError {
    /// A column holds a value no valid record has.
    #[error("column {column}: {reason}")]
    Column {
        /// The column.
        column: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

fn column(column: &'static str, reason: impl ToString) -> StoredRecordError {
    StoredRecordError::Column {
        column,
        reason: reason.to_string(),
    }
}

impl StoredRecord {
    /// Decodes the row into a record, without checking any hash.
    pub fn decode(&self) -> Result<Record, StoredRecordError> {
        let twin_id = TwinId::new(self.twin_id.clone()).map_err(|e| column("twin_id", e))?;
        let version = u64::try_from(self.version)
            .ok()
            .filter(|v| *v >= 1)
            .ok_or_else(|| column("version", format!("{} is not a version", self.version)))?;
        let kind = RecordKind::from_str(&self.kind).map_err(|e| column("kind", e))?;
        let state = json::parse(self.state.as_bytes(), &Limits::unbounded())
            .map_err(|e| column("state", e))?;
        let scheme = HashScheme::from_str(&self.scheme).map_err(|e| column("hash_scheme", e))?;
        let state_hash = Hash::from_slice(&self.state_hash).map_err(|e| column("state_hash", e))?;
        let prev_leaf_hash = self
            .prev_leaf_hash
            .as_deref()
            .map(Hash::from_slice)
            .transpose()
            .map_err(|e| column("prev_leaf_hash", e))?;
        let salt = <[u8; 32]>::try_from(self.salt.as_slice())
            .map(Salt)
            .map_err(|_| {
                column(
                    "salt",
                    format!("expected 32 bytes, got {}", self.salt.len()),
                )
            })?;
        let annex = match &self.annex {
            None => None,
            Some(text) => {
                let value = json::parse(text.as_bytes(), &Limits::unbounded())
                    .map_err(|e| column("annex", e))?;
                if value.as_object().is_none() {
                    return Err(column("annex", "not a JSON object"));
                }
                Some(Annex::new(value).map_err(|e| column("annex", e))?)
            }
        };
        Ok(Record {
            index: self.index,
            twin_id,
            version,
            kind,
            state,
            scheme,
            state_hash,
            prev_leaf_hash,
            recorded_at_ms: self.recorded_at_ms,
            salt,
            annex,
        })
    }

    /// The legacy anchor, when the record's transaction was sent and mined.
    pub fn legacy_anchor(&self) -> Option<LegacyAnchor> {
        Some(LegacyAnchor {
            tx_hash: self.anchor_tx.clone()?,
            block_number: self.anchor_block?,
            block_timestamp: self.anchor_block_time?,
            chain_timestamp: self.anchor_timestamp.clone()?,
        })
    }

    /// The status column, if it holds a known status.
    pub fn status(&self) -> Option<RecordStatus> {
        match self.status.as_str() {
            "pending" => Some(RecordStatus::Pending),
            "anchored" => Some(RecordStatus::Anchored),
            "confirmed" => Some(RecordStatus::Confirmed),
            _ => None,
        }
    }
}

/// Where a twin's history ends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TwinSummary {
    /// The twin.
    pub twin_id: String,
    /// Its newest version.
    pub latest_version: u64,
    /// Log index of its newest version.
    pub latest_index: u64,
    /// When its first record was accepted.
    pub created_at_ms: i64,
    /// When its newest record was accepted.
    pub updated_at_ms: i64,
    /// Log index of its current desired state, if it has one.
    pub desired_index: Option<u64>,
    /// The congruence band of its latest assessed report.
    pub band: Option<String>,
}

/// A device's registered Ed25519 public key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeviceKeyRow {
    /// The twin the device reports for.
    pub twin_id: String,
    /// 64 hex digits.
    pub public_key: String,
    /// Whether the twin's reports must be signed with it.
    pub require_signature: bool,
    /// When it was registered, ms since the Unix epoch.
    pub registered_at_ms: i64,
}

/// Counts for health reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StoreStats {
    /// Records in the log.
    pub records: u64,
    /// Twins.
    pub twins: u64,
    /// Records not yet anchored.
    pub pending: u64,
    /// Bytes the database takes on disk, records, tree nodes and indexes together: SQLite's
    /// pages in its main file (the write-ahead log, bounded and emptied by checkpoints, apart),
    /// PostgreSQL's `pg_database_size`.
    pub bytes: u64,
}

/// A tree head sent to the TwinLedger contract, and where it landed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Anchor {
    /// Tree size anchored.
    pub size: u64,
    /// Root of that tree.
    pub root: Hash,
    /// The previously anchored size the consistency proof started from.
    pub prev_size: u64,
    /// The anchoring transaction.
    pub tx_hash: String,
    /// `sent`, `mined` or `confirmed`.
    pub status: String,
    /// Block holding the transaction, once mined.
    pub block_number: Option<u64>,
    /// That block's hash.
    pub block_hash: Option<String>,
    /// That block's timestamp.
    pub block_time: Option<u64>,
    /// Gas the transaction used.
    pub gas_used: Option<u64>,
    /// Times the transaction was replaced with higher fees before one was mined.
    pub replacements: u64,
}

/// An API key as stored: never the secret, only its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiKey {
    /// Public id, the part of the key before the secret.
    pub id: String,
    /// SHA-256 of the secret.
    #[serde(skip)]
    pub secret_hash: Hash,
    /// `read` or `write`.
    pub scope: String,
    /// Twins the key is limited to, by id prefix.
    pub twin_prefix: Option<String>,
    /// What the key is for.
    pub label: String,
    /// When it was created.
    pub created_at_ms: i64,
    /// When it was revoked, if it was.
    pub revoked_at_ms: Option<i64>,
}

/// The bounds of a listing of twins whose id starts with `prefix`, after `after`:
/// `id > .0 AND id >= .1 AND id < .2`, which both databases answer from the twins' index
/// (ids compare as UTF-8 bytes, and no id holds U+10FFFF, the greatest character).
pub(crate) fn twin_range(prefix: &str, after: Option<&str>) -> (String, String, String) {
    (
        after.unwrap_or_default().to_owned(),
        prefix.to_owned(),
        format!("{prefix}\u{10FFFF}"),
    )
}
