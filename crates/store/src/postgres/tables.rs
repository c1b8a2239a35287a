//! Every table as stored (`crate::TableStore`): exported by one streamed query per table,
//! imported by one binary COPY per batch.

use std::pin::Pin;

use async_trait::async_trait;
use deadpool_postgres::Object;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::Type;
use tokio_postgres::{Row, RowStream};
use twinledger_core::Frontier;

use super::keys::device_key_row;
use super::twins::twin_row;
use super::{PostgresStore, anchor_row, api_key_row, client, stored_record};
use crate::tables::{CellType, IdempotencyKeyRow, MetaRow, Table, TableRows, TreeNodeRow, wrap};
use crate::{Result, TableBatches, TableStore};

/// Rows per exported batch.
const BATCH: usize = 4096;

/// Reads one row of a query.
type ReadRow<T> = fn(&Row) -> Result<T>;

/// Where an export is.
enum Export {
    /// Not started.
    Start,
    /// Reading rows; the connection is held until the last row, so the pool hands it to no
    /// one else while the server still sends the query's rows on it.
    Reading {
        _client: Box<Object>,
        rows: Pin<Box<RowStream>>,
    },
    /// Every row read.
    Done,
}

impl PostgresStore {
    /// The rows `sql` selects, read by `read`, in batches: one query whose rows are taken off
    /// the connection as the consumer asks for them.
    fn batches<T: Send + 'static>(
        &self,
        sql: String,
        read: ReadRow<T>,
    ) -> BoxStream<'static, Result<Vec<T>>> {
        let (pool, target) = (self.pool.clone(), self.target.clone());
        Box::pin(futures_util::stream::try_unfold(
            Export::Start,
            move |state| {
                let (pool, target, sql) = (pool.clone(), target.clone(), sql.clone());
                async move {
                    let (client, mut rows) = match state {
                        Export::Done => return Ok(None),
                        Export::Reading { _client, rows } => (_client, rows),
                        Export::Start => {
                            let client = client(&pool, &target).await?;
                            let rows = client
                                .query_raw(sql.as_str(), std::iter::empty::<i64>())
                                .await?;
                            (Box::new(client), Box::pin(rows))
                        }
                    };
                    let mut batch = Vec::with_capacity(BATCH);
                    while batch.len() < BATCH {
                        match rows.next().await {
                            Some(row) => batch.push(read(&row?)?),
                            None => break,
                        }
                    }
                    let next = if batch.len() < BATCH {
                        Export::Done
                    } else {
                        Export::Reading {
                            _client: client,
                            rows,
                        }
                    };
                    Ok((!batch.is_empty()).then_some((batch, next)))
                }
            },
        ))
    }
}

fn tree_node_row(r: &Row) -> Result<TreeNodeRow> {
    Ok(TreeNodeRow {
        key: r.try_get(0)?,
        hash: r.try_get(1)?,
    })
}

fn idempotency_key_row(r: &Row) -> Result<IdempotencyKeyRow> {
    Ok(IdempotencyKeyRow {
        key: r.try_get(0)?,
        request: r.try_get(1)?,
        index: r.try_get::<_, i64>(2)? as u64,
        created_at_ms: r.try_get(3)?,
    })
}

fn meta_row(r: &Row) -> Result<MetaRow> {
    Ok(MetaRow {
        key: r.try_get(0)?,
        value: r.try_get(1)?,
    })
}

#[async_trait]
impl TableStore for PostgresStore {
    fn export(&self, table: Table) -> TableBatches {
        let sql = table.select();
        match table {
            Table::Records => wrap(self.batches(sql, stored_record), TableRows::Records),
            Table::TreeNodes => wrap(self.batches(sql, tree_node_row), TableRows::TreeNodes),
            Table::Twins => wrap(self.batches(sql, twin_row), TableRows::Twins),
            Table::Anchors => wrap(self.batches(sql, anchor_row), TableRows::Anchors),
            Table::IdempotencyKeys => wrap(
                self.batches(sql, idempotency_key_row),
                TableRows::IdempotencyKeys,
            ),
            Table::ApiKeys => wrap(self.batches(sql, api_key_row), TableRows::ApiKeys),
            Table::DeviceKeys => wrap(self.batches(sql, device_key_row), TableRows::DeviceKeys),
            Table::Meta => wrap(self.batches(sql, meta_row), TableRows::Meta),
        }
    }

    async fn import(&self, rows: TableRows) -> Result<()> {
        let table = rows.table();
        let types: Vec<Type> = table
            .types()
            .iter()
            .map(|t| match t {
                CellType::Int => Type::INT8,
                CellType::Text => Type::TEXT,
                CellType::Bytes => Type::BYTEA,
                CellType::Bool => Type::BOOL,
            })
            .collect();
        let client = self.client().await?;
        // One COPY is one transaction: a batch is written whole or not at all.
        let sink = client
            .copy_in(&format!(
                "COPY {table} ({}) FROM STDIN (FORMAT binary)",
                table.columns()
            ))
            .await?;
        let writer = BinaryCopyInWriter::new(sink, &types);
        let mut writer = std::pin::pin!(writer);
        for i in 0..rows.len() {
            writer.as_mut().write_raw(rows.cells(i)).await?;
        }
        writer.finish().await?;
        Ok(())
    }

    async fn finish_import(&self) -> Result<()> {
        let size: i64 = self
            .client()
            .await?
            .query_one("SELECT COALESCE(MAX(idx) + 1, 0) FROM records", &[])
            .await?
            .try_get(0)?;
        let frontier = self
            .with_nodes(|nodes| Frontier::load(nodes, size as u64))
            .await?;
        let peaks: Vec<u8> = frontier.peaks().iter().flat_map(|p| p.0).collect();
        let client = self.client().await?;
        client
            .execute(
                "UPDATE log_head SET size = $1, peaks = $2",
                &[&size, &peaks],
            )
            .await?;
        // Bulk-loaded tables have no planner statistics until autovacuum comes round; the
        // service's first queries should not be planned blind.
        client.batch_execute("ANALYZE").await?;
        Ok(())
    }

    async fn row_counts(&self) -> Result<Vec<(Table, u64)>> {
        let counts: Vec<String> = Table::ALL
            .iter()
            .map(|t| format!("(SELECT COUNT(*) FROM {t})"))
            .collect();
        let row = self
            .client()
            .await?
            .query_one(&format!("SELECT {}", counts.join(", ")), &[])
            .await?;
        Table::ALL
            .iter()
            .enumerate()
            .map(|(i, &t)| Ok((t, row.try_get::<_, i64>(i)? as u64)))
            .collect()
    }
}
