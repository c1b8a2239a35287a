//! Every table as stored (`crate::TableStore`): exported in batches from one read transaction,
//! imported one transaction per batch.

use async_trait::async_trait;
use futures_util::stream::BoxStream;
use rusqlite::{Connection, Row};

use super::keys::device_key_row;
use super::twins::twin_row;
use super::{Database, SqliteStore, anchor_row, api_key_row, stored_record};
use crate::tables::{IdempotencyKeyRow, MetaRow, Table, TableRows, TreeNodeRow, wrap};
use crate::{Result, TableBatches, TableStore};

/// Rows per batch of a scan or an export, and batches read ahead of the consumer.
const BATCH: usize = 4096;
const READ_AHEAD: usize = 4;

/// Reads one row of a query.
type ReadRow<T> = fn(&Row<'_>) -> rusqlite::Result<T>;

impl SqliteStore {
    /// The rows `sql` selects (with `params`), read by `read`, in batches. One read
    /// transaction on one blocking thread hands batches over as the consumer takes them, so
    /// they form one consistent view; a consumer that stops reading closes the channel, which
    /// ends the read.
    pub(super) fn batches<T: Send + 'static>(
        &self,
        sql: String,
        params: Vec<i64>,
        read: ReadRow<T>,
    ) -> BoxStream<'static, Result<Vec<T>>> {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<T>>>(READ_AHEAD);
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || {
            let mut batch = Vec::with_capacity(BATCH);
            let mut open = true;
            let read = db.read_snapshot(|c| {
                each_row(c, &sql, &params, read, &mut |row| {
                    batch.push(row);
                    if batch.len() == BATCH {
                        let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
                        open = tx.blocking_send(Ok(full)).is_ok();
                    }
                    open
                })
            });
            let last = match read {
                Ok(()) if batch.is_empty() => return,
                Ok(()) => Ok(batch),
                Err(e) => Err(e),
            };
            let _ = tx.blocking_send(last);
        });
        Box::pin(futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|batch| (batch, rx))
        }))
    }
}

/// Calls `f` with each row `sql` selects, until it returns false (in the caller's read
/// transaction: one snapshot of the whole table).
fn each_row<T>(
    c: &Connection,
    sql: &str,
    params: &[i64],
    read: ReadRow<T>,
    f: &mut dyn FnMut(T) -> bool,
) -> Result<()> {
    {
        let mut stmt = c.prepare(sql)?;
        let mut rows = stmt.query(rusqlite::params_from_iter(params))?;
        while let Some(row) = rows.next()? {
            if !f(read(row)?) {
                break;
            }
        }
    }
    Ok(())
}

fn tree_node_row(r: &Row<'_>) -> rusqlite::Result<TreeNodeRow> {
    Ok(TreeNodeRow {
        key: r.get(0)?,
        hash: r.get(1)?,
    })
}

fn idempotency_key_row(r: &Row<'_>) -> rusqlite::Result<IdempotencyKeyRow> {
    Ok(IdempotencyKeyRow {
        key: r.get(0)?,
        request: r.get(1)?,
        index: r.get::<_, i64>(2)? as u64,
        created_at_ms: r.get(3)?,
    })
}

fn meta_row(r: &Row<'_>) -> rusqlite::Result<MetaRow> {
    Ok(MetaRow {
        key: r.get(0)?,
        value: r.get(1)?,
    })
}

impl Database {
    fn import(&self, rows: &TableRows) -> Result<()> {
        let table = rows.table();
        let placeholders: Vec<String> =
            (1..=table.types().len()).map(|i| format!("?{i}")).collect();
        let sql = format!(
            "INSERT INTO {table} ({}) VALUES ({})",
            table.columns(),
            placeholders.join(", ")
        );
        self.write(|c| {
            let tx = c.transaction()?;
            {
                let mut insert = tx.prepare_cached(&sql)?;
                for i in 0..rows.len() {
                    insert.execute(rusqlite::params_from_iter(rows.cells(i)))?;
                }
            }
            tx.commit()?;
            Ok(())
        })
    }

    fn finish_import(&self) {
        // The next append reads the tree back from the imported nodes, as after a restart;
        // cached desired states were read from the same rows and stay right, but an import
        // is rare enough not to reason about it.
        *self.tree.lock().unwrap_or_else(|p| p.into_inner()) = None;
        *self.desired.lock().unwrap_or_else(|p| p.into_inner()) = Default::default();
    }

    fn row_counts(&self) -> Result<Vec<(Table, u64)>> {
        self.read(|c| {
            Table::ALL
                .iter()
                .map(|&table| {
                    let n: i64 =
                        c.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))?;
                    Ok((table, n as u64))
                })
                .collect()
        })
    }
}

#[async_trait]
impl TableStore for SqliteStore {
    fn export(&self, table: Table) -> TableBatches {
        let sql = table.select();
        match table {
            Table::Records => wrap(self.batches(sql, vec![], stored_record), TableRows::Records),
            Table::TreeNodes => wrap(
                self.batches(sql, vec![], tree_node_row),
                TableRows::TreeNodes,
            ),
            Table::Twins => wrap(self.batches(sql, vec![], twin_row), TableRows::Twins),
            Table::Anchors => wrap(self.batches(sql, vec![], anchor_row), TableRows::Anchors),
            Table::IdempotencyKeys => wrap(
                self.batches(sql, vec![], idempotency_key_row),
                TableRows::IdempotencyKeys,
            ),
            Table::ApiKeys => wrap(self.batches(sql, vec![], api_key_row), TableRows::ApiKeys),
            Table::DeviceKeys => wrap(
                self.batches(sql, vec![], device_key_row),
                TableRows::DeviceKeys,
            ),
            Table::Meta => wrap(self.batches(sql, vec![], meta_row), TableRows::Meta),
        }
    }

    async fn import(&self, rows: TableRows) -> Result<()> {
        self.run(move |db| db.import(&rows)).await
    }

    async fn finish_import(&self) -> Result<()> {
        self.run(|db| {
            db.finish_import();
            Ok(())
        })
        .await
    }

    async fn row_counts(&self) -> Result<Vec<(Table, u64)>> {
        self.run(Database::row_counts).await
    }
}
