//! Every table of a ledger as rows, exactly as stored: what [`crate::TableStore`] exports and
//! imports, so that a ledger moves to another database without being appended again (which
//! would score reports and derive shift events anew).

use crate::columns::{
    ANCHOR_COLUMNS, API_KEY_COLUMNS, DEVICE_KEY_COLUMNS, IDEMPOTENCY_KEY_COLUMNS, META_COLUMNS,
    RECORD_COLUMNS, TREE_NODE_COLUMNS, TWIN_ROW_COLUMNS,
};
use crate::model::{Anchor, ApiKey, DeviceKeyRow, StoredRecord, TwinSummary};
use crate::{Result, TableBatches};
use futures_util::StreamExt;
use futures_util::stream::BoxStream;

/// A table a ledger keeps. The size and frontier PostgreSQL keeps in `log_head` are not one:
/// they follow from the records and tree nodes, and a store sets them from those after an
/// import ([`crate::TableStore::finish_import`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Table {
    /// The log.
    Records,
    /// Complete subtrees of the log's tree, levels 1 and up.
    TreeNodes,
    /// Where each twin's history ends.
    Twins,
    /// Tree heads sent to the chain.
    Anchors,
    /// Idempotency keys of writes.
    IdempotencyKeys,
    /// API keys (secret hashes only).
    ApiKeys,
    /// Device public keys.
    DeviceKeys,
    /// Facts about the ledger (mode, contract addresses).
    Meta,
}

/// How a column is typed, for a writer that must declare its columns' types (binary COPY).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CellType {
    Int,
    Text,
    Bytes,
    Bool,
}

impl Table {
    /// Every table, in the order a copy writes them: the log first, facts last, so that a copy
    /// cut short is plainly unfinished (no `mode`, no contract).
    pub const ALL: [Table; 8] = [
        Table::Records,
        Table::TreeNodes,
        Table::Twins,
        Table::Anchors,
        Table::IdempotencyKeys,
        Table::ApiKeys,
        Table::DeviceKeys,
        Table::Meta,
    ];

    /// The table's name in both databases.
    pub fn name(self) -> &'static str {
        match self {
            Table::Records => "records",
            Table::TreeNodes => "tree_nodes",
            Table::Twins => "twins",
            Table::Anchors => "anchors",
            Table::IdempotencyKeys => "idempotency_keys",
            Table::ApiKeys => "api_keys",
            Table::DeviceKeys => "device_keys",
            Table::Meta => "meta",
        }
    }

    /// Its columns, in the order of [`TableRows`]' cells.
    pub(crate) fn columns(self) -> &'static str {
        match self {
            Table::Records => RECORD_COLUMNS,
            Table::TreeNodes => TREE_NODE_COLUMNS,
            Table::Twins => TWIN_ROW_COLUMNS,
            Table::Anchors => ANCHOR_COLUMNS,
            Table::IdempotencyKeys => IDEMPOTENCY_KEY_COLUMNS,
            Table::ApiKeys => API_KEY_COLUMNS,
            Table::DeviceKeys => DEVICE_KEY_COLUMNS,
            Table::Meta => META_COLUMNS,
        }
    }

    /// The columns' types, in the same order.
    pub(crate) fn types(self) -> &'static [CellType] {
        use CellType::{Bool, Bytes, Int, Text};
        match self {
            Table::Records => &[
                Int, Text, Int, Text, Text, Text, Bytes, Bytes, Int, Bytes, Bytes, Text, Text, Int,
                Int, Text, Text,
            ],
            Table::TreeNodes => &[Int, Bytes],
            Table::Twins => &[Text, Int, Int, Int, Int, Int, Text, Bytes],
            Table::Anchors => &[Int, Bytes, Int, Text, Text, Int, Text, Int, Int, Int],
            Table::IdempotencyKeys => &[Text, Bytes, Int, Int],
            Table::ApiKeys => &[Text, Bytes, Text, Text, Text, Int, Int],
            Table::DeviceKeys => &[Text, Text, Bool, Int],
            Table::Meta => &[Text, Text],
        }
    }

    /// Its primary key, which an export reads in order.
    fn key(self) -> &'static str {
        match self {
            Table::Records => "idx",
            Table::TreeNodes | Table::IdempotencyKeys | Table::Meta => "key",
            Table::Twins | Table::DeviceKeys => "twin_id",
            Table::Anchors => "size",
            Table::ApiKeys => "id",
        }
    }

    /// The query an export reads the table with.
    pub(crate) fn select(self) -> String {
        format!(
            "SELECT {} FROM {} ORDER BY {}",
            self.columns(),
            self.name(),
            self.key()
        )
    }
}

impl std::fmt::Display for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A whole `twins` row: the summary, and the leaf hash the twin's next record links to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TwinRow {
    /// The summary columns.
    pub summary: TwinSummary,
    /// The `latest_leaf_hash` column.
    pub latest_leaf_hash: Vec<u8>,
}

/// An `idempotency_keys` row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKeyRow {
    /// The client's key.
    pub key: String,
    /// Fingerprint of the first request.
    pub request: Vec<u8>,
    /// Log index of the record it made.
    pub index: u64,
    /// When it was made, ms since the Unix epoch.
    pub created_at_ms: i64,
}

/// A `tree_nodes` row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeNodeRow {
    /// `(last leaf << 6) | level`.
    pub key: i64,
    /// The node's hash.
    pub hash: Vec<u8>,
}

/// A `meta` row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaRow {
    /// The fact's name.
    pub key: String,
    /// Its value.
    pub value: String,
}

/// A batch of one table's rows.
#[derive(Debug, Clone)]
pub enum TableRows {
    /// `records` rows.
    Records(Vec<StoredRecord>),
    /// `tree_nodes` rows.
    TreeNodes(Vec<TreeNodeRow>),
    /// `twins` rows.
    Twins(Vec<TwinRow>),
    /// `anchors` rows.
    Anchors(Vec<Anchor>),
    /// `idempotency_keys` rows.
    IdempotencyKeys(Vec<IdempotencyKeyRow>),
    /// `api_keys` rows.
    ApiKeys(Vec<ApiKey>),
    /// `device_keys` rows.
    DeviceKeys(Vec<DeviceKeyRow>),
    /// `meta` rows.
    Meta(Vec<MetaRow>),
}

/// One column's value, for either backend's writer.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Cell<'a> {
    Int(Option<i64>),
    Text(Option<&'a str>),
    Bytes(Option<&'a [u8]>),
    Bool(bool),
}

/// Stored as a bigint, as every backend stores indexes and sizes: values read back as `u64`
/// came from a bigint, so the cast gives back the stored value.
fn int(v: u64) -> Cell<'static> {
    Cell::Int(Some(v as i64))
}

fn opt_int(v: Option<u64>) -> Cell<'static> {
    Cell::Int(v.map(|v| v as i64))
}

fn text(v: &str) -> Cell<'_> {
    Cell::Text(Some(v))
}

fn bytes(v: &[u8]) -> Cell<'_> {
    Cell::Bytes(Some(v))
}

impl TableRows {
    /// The table the rows belong to.
    pub fn table(&self) -> Table {
        match self {
            TableRows::Records(_) => Table::Records,
            TableRows::TreeNodes(_) => Table::TreeNodes,
            TableRows::Twins(_) => Table::Twins,
            TableRows::Anchors(_) => Table::Anchors,
            TableRows::IdempotencyKeys(_) => Table::IdempotencyKeys,
            TableRows::ApiKeys(_) => Table::ApiKeys,
            TableRows::DeviceKeys(_) => Table::DeviceKeys,
            TableRows::Meta(_) => Table::Meta,
        }
    }

    /// How many rows.
    pub fn len(&self) -> usize {
        match self {
            TableRows::Records(v) => v.len(),
            TableRows::TreeNodes(v) => v.len(),
            TableRows::Twins(v) => v.len(),
            TableRows::Anchors(v) => v.len(),
            TableRows::IdempotencyKeys(v) => v.len(),
            TableRows::ApiKeys(v) => v.len(),
            TableRows::DeviceKeys(v) => v.len(),
            TableRows::Meta(v) => v.len(),
        }
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Row `i`'s cells in the order of [`Table::columns`].
    pub(crate) fn cells(&self, i: usize) -> Vec<Cell<'_>> {
        match self {
            TableRows::Records(v) => {
                let r = &v[i];
                vec![
                    int(r.index),
                    text(&r.twin_id),
                    Cell::Int(Some(r.version)),
                    text(&r.kind),
                    text(&r.state),
                    text(&r.scheme),
                    bytes(&r.state_hash),
                    Cell::Bytes(r.prev_leaf_hash.as_deref()),
                    Cell::Int(Some(r.recorded_at_ms)),
                    bytes(&r.salt),
                    bytes(&r.leaf_hash),
                    text(&r.status),
                    Cell::Text(r.anchor_tx.as_deref()),
                    opt_int(r.anchor_block),
                    opt_int(r.anchor_block_time),
                    Cell::Text(r.anchor_timestamp.as_deref()),
                    Cell::Text(r.annex.as_deref()),
                ]
            }
            TableRows::TreeNodes(v) => vec![Cell::Int(Some(v[i].key)), bytes(&v[i].hash)],
            TableRows::Twins(v) => {
                let (t, leaf) = (&v[i].summary, &v[i].latest_leaf_hash);
                vec![
                    text(&t.twin_id),
                    int(t.latest_version),
                    int(t.latest_index),
                    Cell::Int(Some(t.created_at_ms)),
                    Cell::Int(Some(t.updated_at_ms)),
                    opt_int(t.desired_index),
                    Cell::Text(t.band.as_deref()),
                    bytes(leaf),
                ]
            }
            TableRows::Anchors(v) => {
                let a = &v[i];
                vec![
                    int(a.size),
                    bytes(&a.root.0),
                    int(a.prev_size),
                    text(&a.tx_hash),
                    text(&a.status),
                    opt_int(a.block_number),
                    Cell::Text(a.block_hash.as_deref()),
                    opt_int(a.block_time),
                    opt_int(a.gas_used),
                    int(a.replacements),
                ]
            }
            TableRows::IdempotencyKeys(v) => {
                let k = &v[i];
                vec![
                    text(&k.key),
                    bytes(&k.request),
                    int(k.index),
                    Cell::Int(Some(k.created_at_ms)),
                ]
            }
            TableRows::ApiKeys(v) => {
                let k = &v[i];
                vec![
                    text(&k.id),
                    bytes(&k.secret_hash.0),
                    text(&k.scope),
                    Cell::Text(k.twin_prefix.as_deref()),
                    text(&k.label),
                    Cell::Int(Some(k.created_at_ms)),
                    Cell::Int(k.revoked_at_ms),
                ]
            }
            TableRows::DeviceKeys(v) => {
                let k = &v[i];
                vec![
                    text(&k.twin_id),
                    text(&k.public_key),
                    Cell::Bool(k.require_signature),
                    Cell::Int(Some(k.registered_at_ms)),
                ]
            }
            TableRows::Meta(v) => vec![text(&v[i].key), text(&v[i].value)],
        }
    }
}

/// `rows`, each batch wrapped as its table's rows.
pub(crate) fn wrap<T: Send + 'static>(
    rows: BoxStream<'static, Result<Vec<T>>>,
    as_rows: fn(Vec<T>) -> TableRows,
) -> TableBatches {
    Box::pin(rows.map(move |batch| batch.map(as_rows)))
}

impl rusqlite::ToSql for Cell<'_> {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        match self {
            Cell::Int(v) => v.to_sql(),
            Cell::Text(v) => v.to_sql(),
            Cell::Bytes(v) => v.to_sql(),
            Cell::Bool(v) => v.to_sql(),
        }
    }
}

impl tokio_postgres::types::ToSql for Cell<'_> {
    fn to_sql(
        &self,
        ty: &tokio_postgres::types::Type,
        out: &mut bytes::BytesMut,
    ) -> Result<tokio_postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            // Checked per value: a cell must suit its column's type, not just some cell type.
            Cell::Int(v) => v.to_sql_checked(ty, out),
            Cell::Text(v) => v.to_sql_checked(ty, out),
            Cell::Bytes(v) => v.to_sql_checked(ty, out),
            Cell::Bool(v) => v.to_sql_checked(ty, out),
        }
    }

    fn accepts(ty: &tokio_postgres::types::Type) -> bool {
        <i64 as tokio_postgres::types::ToSql>::accepts(ty)
            || <&str as tokio_postgres::types::ToSql>::accepts(ty)
            || <&[u8] as tokio_postgres::types::ToSql>::accepts(ty)
            || <bool as tokio_postgres::types::ToSql>::accepts(ty)
    }

    tokio_postgres::types::to_sql_checked!();
}
