//! Each twin's view of the log.

use rusqlite::{OptionalExtension, Row, params};
use twinledger_core::TwinId;

use super::{Database, RECORD_COLUMNS, stored_record};
use crate::Result;
use crate::columns::TWIN_COLUMNS;
use crate::model::{StoredRecord, TwinSummary};
use crate::tables::TwinRow;

impl Database {
    pub(super) fn twin(&self, id: &TwinId) -> Result<Option<TwinSummary>> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {TWIN_COLUMNS} FROM twins WHERE twin_id = ?1"
            ))?;
            Ok(stmt.query_row([id.as_str()], twin_summary).optional()?)
        })
    }

    pub(super) fn twins(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<TwinSummary>> {
        let (after, from, below) = crate::model::twin_range(prefix, after);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(|c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {TWIN_COLUMNS} FROM twins \
                 WHERE twin_id > ?1 AND twin_id >= ?2 AND twin_id < ?3 \
                 ORDER BY twin_id LIMIT ?4"
            ))?;
            let rows = stmt.query_map(params![after, from, below, limit], twin_summary)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    pub(super) fn record(&self, id: &TwinId, version: u64) -> Result<Option<StoredRecord>> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {RECORD_COLUMNS} FROM records WHERE twin_id = ?1 AND version = ?2"
            ))?;
            Ok(stmt
                .query_row(params![id.as_str(), version as i64], stored_record)
                .optional()?)
        })
    }

    pub(super) fn history(
        &self,
        id: &TwinId,
        from_version: u64,
        limit: usize,
    ) -> Result<Vec<StoredRecord>> {
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

    pub(super) fn congruence_history(
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

    pub(super) fn latest_assessed(&self, id: &TwinId) -> Result<Option<StoredRecord>> {
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
}

pub(super) fn twin_summary(r: &Row<'_>) -> rusqlite::Result<TwinSummary> {
    Ok(TwinSummary {
        twin_id: r.get(0)?,
        latest_version: r.get::<_, i64>(1)? as u64,
        latest_index: r.get::<_, i64>(2)? as u64,
        created_at_ms: r.get(3)?,
        updated_at_ms: r.get(4)?,
        desired_index: r.get::<_, Option<i64>>(5)?.map(|v| v as u64),
        band: r.get(6)?,
    })
}

/// A whole twin row, read by `TWIN_ROW_COLUMNS`.
pub(super) fn twin_row(r: &Row<'_>) -> rusqlite::Result<TwinRow> {
    Ok(TwinRow {
        summary: twin_summary(r)?,
        latest_leaf_hash: r.get(7)?,
    })
}
