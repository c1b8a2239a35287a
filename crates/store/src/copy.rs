//! Moving a ledger to another database: every table copied as stored, then the copy proved
//! against the source (row counts, the tree's head, and its root at every anchored size), so
//! that its history keeps the proofs the chain holds.

use futures_util::StreamExt;
use twinledger_core::TreeHead;

use crate::{Store, StoreError, Table};

/// Why a copy did not happen or did not match.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// The target holds rows already; nothing was written to it.
    #[error(
        "the target already holds a ledger ({}); copy only into an empty database",
        describe(.0)
    )]
    TargetNotEmpty(Vec<(Table, u64)>),
    /// Reading the source failed.
    #[error("cannot read the source: {0}")]
    Source(StoreError),
    /// Writing or reading the target failed.
    #[error("cannot write the target: {0}")]
    Target(StoreError),
    /// The copy was written but reads back differently from the source (for example a source
    /// that was written to during the copy).
    #[error("the copy differs from the source: {0}")]
    Differs(String),
}

/// `12 records, 3 twins`: the tables that hold rows.
fn describe(counts: &[(Table, u64)]) -> String {
    counts
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(t, n)| format!("{n} {t}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// How far a copy is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyProgress {
    /// `rows` rows of `table` are written so far.
    Copied {
        /// The table being copied.
        table: Table,
        /// Its rows written so far.
        rows: u64,
    },
    /// `done` of `total` tree heads compared on both sides.
    Compared {
        /// Heads compared so far.
        done: usize,
        /// Heads to compare.
        total: usize,
    },
}

/// What a copy wrote and proved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyReport {
    /// Rows copied per table, in [`Table::ALL`] order; both sides hold exactly these.
    pub rows: Vec<(Table, u64)>,
    /// The whole tree, the same on both sides.
    pub head: TreeHead,
    /// Sizes of the anchors (mined or confirmed) whose roots were compared on both sides.
    pub anchored_sizes: Vec<u64>,
}

impl CopyReport {
    /// Rows copied of `table`.
    pub fn rows_of(&self, table: Table) -> u64 {
        self.rows
            .iter()
            .find(|(t, _)| *t == table)
            .map_or(0, |(_, n)| *n)
    }
}

/// Copies the ledger in `from` to `to`, which must be empty, table by table as stored, and
/// proves the copy: the same rows per table, the same counts, the same tree head, and the same
/// root at every anchored size. `from` must not be written to meanwhile (stop the service).
pub async fn copy_ledger(
    from: &dyn Store,
    to: &dyn Store,
    mut progress: impl FnMut(CopyProgress),
) -> Result<CopyReport, CopyError> {
    let held = to.row_counts().await.map_err(CopyError::Target)?;
    if held.iter().any(|(_, n)| *n > 0) {
        return Err(CopyError::TargetNotEmpty(held));
    }
    let mut rows = Vec::with_capacity(Table::ALL.len());
    for table in Table::ALL {
        let mut copied = 0u64;
        let mut batches = from.export(table);
        let mut next = batches.next().await;
        while let Some(batch) = next {
            let batch = batch.map_err(CopyError::Source)?;
            let n = batch.len() as u64;
            // The next batch is read while this one is written.
            let (following, written) = tokio::join!(batches.next(), to.import(batch));
            written.map_err(CopyError::Target)?;
            copied += n;
            progress(CopyProgress::Copied {
                table,
                rows: copied,
            });
            next = following;
        }
        rows.push((table, copied));
    }
    to.finish_import().await.map_err(CopyError::Target)?;
    prove(from, to, rows, &mut progress).await
}

/// Compares the copy with its source.
async fn prove(
    from: &dyn Store,
    to: &dyn Store,
    rows: Vec<(Table, u64)>,
    progress: &mut impl FnMut(CopyProgress),
) -> Result<CopyReport, CopyError> {
    let source = from.row_counts().await.map_err(CopyError::Source)?;
    let copy = to.row_counts().await.map_err(CopyError::Target)?;
    for ((table, copied), ((_, in_source), (_, in_copy))) in
        rows.iter().zip(source.iter().zip(&copy))
    {
        if (in_source, in_copy) != (copied, copied) {
            return Err(CopyError::Differs(format!(
                "{table}: {copied} rows copied, the source holds {in_source}, the copy {in_copy}"
            )));
        }
    }
    // The same counts; bytes on disk are each database's own.
    let counts = |s: crate::StoreStats| crate::StoreStats { bytes: 0, ..s };
    let (source, copy) = (
        counts(from.stats().await.map_err(CopyError::Source)?),
        counts(to.stats().await.map_err(CopyError::Target)?),
    );
    if source != copy {
        return Err(CopyError::Differs(format!(
            "the source counts {source:?}, the copy {copy:?}"
        )));
    }
    let head = from.frontier().await.map_err(CopyError::Source)?.head();
    let copied_head = to.frontier().await.map_err(CopyError::Target)?.head();
    if head != copied_head {
        return Err(CopyError::Differs(format!(
            "the source's tree is {head:?}, the copy's {copied_head:?}"
        )));
    }
    let anchored_sizes: Vec<u64> = from
        .anchors(0, usize::MAX)
        .await
        .map_err(CopyError::Source)?
        .into_iter()
        .filter(|a| a.status == "mined" || a.status == "confirmed")
        .map(|a| a.size)
        .collect();
    // The full size too: the copy's head above came from its `log_head` on PostgreSQL, this one
    // from its stored nodes.
    let sizes: Vec<u64> = anchored_sizes.iter().copied().chain([head.size]).collect();
    for (done, &size) in sizes.iter().enumerate() {
        let source = from.tree_head(size).await.map_err(CopyError::Source)?;
        let copy = to.tree_head(size).await.map_err(CopyError::Target)?;
        if source != copy {
            return Err(CopyError::Differs(format!(
                "at size {size} the source's root is {}, the copy's {}",
                source.root, copy.root
            )));
        }
        progress(CopyProgress::Compared {
            done: done + 1,
            total: sizes.len(),
        });
    }
    Ok(CopyReport {
        rows,
        head,
        anchored_sizes,
    })
}
