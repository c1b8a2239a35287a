//! The log: appends, records by index, the tree and its proofs.

use rusqlite::{Connection, OptionalExtension, params};
use twinledger_core::{ConsistencyProof, Frontier, InclusionProof, TreeHead, TwinId};

use super::{Database, Nodes, RECORD_COLUMNS, append, stored_record};
use crate::Result;
use crate::model::{AppendOutcome, NewRecord, StoredRecord};

impl Database {
    pub(super) fn append(&self, batch: Vec<NewRecord>) -> Result<AppendOutcome> {
        let mut cache = self.desired.lock().unwrap_or_else(|p| p.into_inner());
        let mut tree = self.tree.lock().unwrap_or_else(|p| p.into_inner());
        self.write(|conn| {
            let began = std::time::Instant::now();
            let tx = conn.transaction()?;
            // Taken, not borrowed: after a failed append (or at the first) the tree is read
            // back from the database, so nothing of a rolled-back batch stays in it.
            let before = match tree.take() {
                Some(frontier) => frontier,
                None => load_frontier(&tx)?,
            };
            let mut out = append::append(&tx, batch, &before, &self.bands, &mut cache)?;
            tx.commit()?;
            out.held = began.elapsed();
            *tree = Some(out.frontier.clone());
            Ok(out)
        })
    }

    pub(super) fn frontier(&self) -> Result<Frontier> {
        self.read(load_frontier)
    }

    pub(super) fn frontier_at(&self, size: u64) -> Result<Frontier> {
        self.read_snapshot(|c| Frontier::load(&Nodes(c, None), size))
    }

    pub(super) fn inclusion_proof(&self, index: u64, size: u64) -> Result<InclusionProof> {
        self.read_snapshot(|c| InclusionProof::generate(&Nodes(c, Some(&self.nodes)), index, size))
    }

    /// One reader for all the proofs: one hop off the runtime instead of one each.
    pub(super) fn inclusion_proofs(
        &self,
        indexes: &[u64],
        size: u64,
    ) -> Result<Vec<Result<InclusionProof>>> {
        self.read_snapshot(|c| {
            Ok(indexes
                .iter()
                .map(|&i| InclusionProof::generate(&Nodes(c, Some(&self.nodes)), i, size))
                .collect())
        })
    }

    pub(super) fn consistency_proof(&self, first: u64, second: u64) -> Result<ConsistencyProof> {
        self.read_snapshot(|c| {
            ConsistencyProof::generate(&Nodes(c, Some(&self.nodes)), first, second)
        })
    }

    pub(super) fn tree_head(&self, size: u64) -> Result<TreeHead> {
        self.read_snapshot(|c| {
            Ok(TreeHead {
                size,
                root: twinledger_core::range_root(&Nodes(c, Some(&self.nodes)), 0, size)?,
            })
        })
    }

    pub(super) fn record_at(&self, index: u64) -> Result<Option<StoredRecord>> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {RECORD_COLUMNS} FROM records WHERE idx = ?1"
            ))?;
            Ok(stmt.query_row([index as i64], stored_record).optional()?)
        })
    }

    pub(super) fn records_from(
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
}

/// The tree of every record in the database, from its stored nodes.
fn load_frontier(c: &Connection) -> Result<Frontier> {
    let size: i64 = c.query_row("SELECT COALESCE(MAX(idx) + 1, 0) FROM records", [], |r| {
        r.get(0)
    })?;
    Frontier::load(&Nodes(c, None), size as u64)
}
