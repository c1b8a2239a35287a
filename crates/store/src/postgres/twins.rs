//! Each twin's view of the log.

use async_trait::async_trait;
use tokio_postgres::Row;
use twinledger_core::TwinId;

use super::{PostgresStore, limit, position, stored_records};
use crate::columns::{RECORD_COLUMNS, TWIN_COLUMNS};
use crate::model::{StoredRecord, TwinSummary};
use crate::tables::TwinRow;
use crate::{Result, TwinStore};

/// A reported record that carries a congruence. SQLite's `json_extract` gives NULL for a JSON
/// null as for a missing member, so a null congruence counts as none here too.
const ASSESSED: &str = "kind = 'reported' AND annex IS NOT NULL \
     AND COALESCE(annex::jsonb -> 'congruence', 'null'::jsonb) <> 'null'::jsonb";

pub(super) fn twin_summary(r: &Row) -> Result<TwinSummary> {
    Ok(TwinSummary {
        twin_id: r.try_get(0)?,
        latest_version: r.try_get::<_, i64>(1)? as u64,
        latest_index: r.try_get::<_, i64>(2)? as u64,
        created_at_ms: r.try_get(3)?,
        updated_at_ms: r.try_get(4)?,
        desired_index: r.try_get::<_, Option<i64>>(5)?.map(|v| v as u64),
        band: r.try_get(6)?,
    })
}

#[async_trait]
impl TwinStore for PostgresStore {
    async fn twin(&self, id: &TwinId) -> Result<Option<TwinSummary>> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(&format!(
                "SELECT {TWIN_COLUMNS} FROM twins WHERE twin_id = $1"
            ))
            .await?;
        let row = client.query_opt(&stmt, &[&id.as_str()]).await?;
        row.as_ref().map(twin_summary).transpose()
    }

    async fn twins(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit_to: usize,
    ) -> Result<Vec<TwinSummary>> {
        let (after, from, below) = crate::model::twin_range(prefix, after);
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(&format!(
                "SELECT {TWIN_COLUMNS} FROM twins \
                 WHERE twin_id > $1 AND twin_id >= $2 AND twin_id < $3 \
                 ORDER BY twin_id LIMIT $4"
            ))
            .await?;
        let rows = client
            .query(&stmt, &[&after, &from, &below, &limit(limit_to)])
            .await?;
        rows.iter().map(twin_summary).collect()
    }

    async fn record(&self, id: &TwinId, version: u64) -> Result<Option<StoredRecord>> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(&format!(
                "SELECT {RECORD_COLUMNS} FROM records WHERE twin_id = $1 AND version = $2"
            ))
            .await?;
        let rows = client
            .query(&stmt, &[&id.as_str(), &position(version)])
            .await?;
        Ok(stored_records(&rows)?.pop())
    }

    async fn history(
        &self,
        id: &TwinId,
        from_version: u64,
        limit_to: usize,
    ) -> Result<Vec<StoredRecord>> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(&format!(
                "SELECT {RECORD_COLUMNS} FROM records WHERE twin_id = $1 AND version >= $2 \
                 ORDER BY version LIMIT $3"
            ))
            .await?;
        let rows = client
            .query(
                &stmt,
                &[&id.as_str(), &position(from_version), &limit(limit_to)],
            )
            .await?;
        stored_records(&rows)
    }

    async fn congruence_history(
        &self,
        id: &TwinId,
        after_version: u64,
        from_ms: i64,
        to_ms: i64,
        limit_to: usize,
    ) -> Result<Vec<StoredRecord>> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(&format!(
                "SELECT {RECORD_COLUMNS} FROM records WHERE twin_id = $1 AND version > $2 \
                 AND {ASSESSED} AND recorded_at_ms BETWEEN $3 AND $4 ORDER BY version LIMIT $5"
            ))
            .await?;
        let rows = client
            .query(
                &stmt,
                &[
                    &id.as_str(),
                    &position(after_version),
                    &from_ms,
                    &to_ms,
                    &limit(limit_to),
                ],
            )
            .await?;
        stored_records(&rows)
    }

    async fn latest_assessed(&self, id: &TwinId) -> Result<Option<StoredRecord>> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(&format!(
                "SELECT {RECORD_COLUMNS} FROM records WHERE twin_id = $1 AND {ASSESSED} \
                 ORDER BY version DESC LIMIT 1"
            ))
            .await?;
        let rows = client.query(&stmt, &[&id.as_str()]).await?;
        Ok(stored_records(&rows)?.pop())
    }
}

/// A whole twin row, read by `TWIN_ROW_COLUMNS`.
pub(super) fn twin_row(r: &Row) -> Result<TwinRow> {
    Ok(TwinRow {
        summary: twin_summary(r)?,
        latest_leaf_hash: r.try_get(7)?,
    })
}
