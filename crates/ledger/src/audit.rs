//! Audit: recompute every record and the whole tree from the database and compare them with
//! every head anchored on chain.

use std::collections::HashMap;
use std::sync::Arc;

use serde::Serialize;
use twinledger_core::{Frontier, Hash, TreeHead};
use twinledger_store::{Store, StoredRecord};

use twinledger_chain::LogContract;

use futures_util::StreamExt;

use crate::{Anchoring, LedgerError, Result};

/// One thing the audit found wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditProblem {
    /// Log index, when the problem is one record.
    pub index: Option<u64>,
    /// Twin, when known.
    pub twin_id: Option<String>,
    /// Version, when known.
    pub version: Option<u64>,
    /// What is wrong.
    pub reason: String,
}

/// Where the database's log stops matching the anchored heads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Divergence {
    /// The largest anchored size whose root the database still reproduces (0 if none).
    pub last_matching_size: u64,
    /// The first anchored size whose root it does not.
    pub first_mismatching_size: u64,
    /// What that means.
    pub reason: String,
}

/// The audit's findings.
#[derive(Debug, Clone, Serialize)]
pub struct AuditReport {
    /// Records read.
    pub records: u64,
    /// Twins seen.
    pub twins: u64,
    /// Anchored heads compared with the recomputed tree.
    pub anchored_heads_checked: u64,
    /// The latest anchored head on chain (log mode).
    pub chain_head: Option<TreeHead>,
    /// Where the log diverges from the chain, if it does.
    pub divergence: Option<Divergence>,
    /// Every problem found with single records.
    pub problems: Vec<AuditProblem>,
}

impl AuditReport {
    /// Whether nothing is wrong.
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty() && self.divergence.is_none()
    }
}

/// What the scan remembers per twin: its last version and that record's stored leaf hash.
struct TwinState {
    version: u64,
    leaf: Option<Hash>,
}

/// Audits the ledger in `store` against `anchoring`'s chain. `progress(done, total)` is called
/// now and then from the scanning thread.
pub async fn audit(
    store: Arc<dyn Store>,
    anchoring: &Anchoring,
    progress: impl FnMut(u64, u64) + Send + 'static,
) -> Result<AuditReport> {
    let heads = match anchoring {
        Anchoring::Log(c) => chain_heads(&store, c).await?,
        Anchoring::Legacy(_) => Vec::new(),
    };
    let chain_head = match anchoring {
        Anchoring::Log(c) => Some(c.latest_head().await?),
        Anchoring::Legacy(_) => None,
    };
    let mut report = scan(store.as_ref(), &heads, progress).await?;
    if let Some(head) = chain_head
        && head.size > report.records
        && report.divergence.is_none()
    {
        report.divergence = Some(Divergence {
            last_matching_size: report.records,
            first_mismatching_size: head.size,
            reason: format!(
                "the chain has anchored {} records but the database holds {}",
                head.size, report.records
            ),
        });
    }
    report.chain_head = chain_head;
    Ok(report)
}

/// Every head anchored on the contract that the chain can name: those of its `Anchored` events,
/// and, for anchors the database noted as mined whose events the node no longer holds (the
/// compacted embedded chain prunes its history), the root the contract stores for that size.
async fn chain_heads(store: &Arc<dyn Store>, contract: &LogContract) -> Result<Vec<TreeHead>> {
    let mut heads = contract.anchored_heads().await?;
    let known: std::collections::HashSet<u64> = heads.iter().map(|h| h.size).collect();
    let noted = store.anchors(0, usize::MAX).await?;
    let mut missing = noted
        .into_iter()
        .filter(|a| a.status != "sent" && !known.contains(&a.size))
        .map(|a| a.size);
    let mut reads = tokio::task::JoinSet::new();
    loop {
        while reads.len() < 16
            && let Some(size) = missing.next()
        {
            let contract = contract.clone();
            reads.spawn(async move { (size, contract.anchored_root(size).await) });
        }
        let Some(read) = reads.join_next().await else {
            break;
        };
        let (size, root) = read.map_err(|e| LedgerError::Store(format!("audit task: {e}")))?;
        if let Some(r) = root? {
            heads.push(TreeHead { size, root: r.root });
        }
    }
    heads.sort_by_key(|h| h.size);
    Ok(heads)
}

fn problem(row: &StoredRecord, reason: impl Into<String>) -> AuditProblem {
    AuditProblem {
        index: Some(row.index),
        twin_id: Some(row.twin_id.clone()),
        version: u64::try_from(row.version).ok(),
        reason: reason.into(),
    }
}

async fn scan(
    store: &dyn Store,
    heads: &[TreeHead],
    mut progress: impl FnMut(u64, u64),
) -> Result<AuditReport> {
    let total = store.stats().await?.records;
    let mut problems = Vec::new();
    let mut twins: HashMap<String, TwinState> = HashMap::new();
    let mut frontier = Frontier::new();
    let mut next_head = heads.iter().peekable();
    let mut last_matching = 0u64;
    let mut divergence = None;
    let mut checked = 0u64;
    let mut expected_index = 0u64;
    let mut seen = 0u64;
    let mut batches = store.scan(0);
    while let Some(batch) = batches.next().await {
        for row in batch? {
            seen += 1;
            if seen.is_multiple_of(10_000) {
                progress(seen, total);
            }
            if row.index != expected_index {
                problems.push(AuditProblem {
                    index: Some(expected_index),
                    twin_id: None,
                    version: None,
                    reason: format!(
                        "log indexes {expected_index} to {} are missing (records deleted)",
                        row.index.saturating_sub(1)
                    ),
                });
            }
            expected_index = row.index + 1;
            // The tree is rebuilt from the records as they are now, whatever their stored hashes
            // claim, so any change to a record changes the roots compared below.
            let leaf = match row.decode() {
                Ok(record) => {
                    match record.scheme.hash(&record.state) {
                        Ok(h) if Hash(h) == record.state_hash => {}
                        Ok(h) => problems.push(problem(
                            &row,
                            format!(
                                "state does not match its stored hash (expected {}, got {})",
                                record.state_hash,
                                Hash(h)
                            ),
                        )),
                        Err(e) => {
                            problems.push(problem(&row, format!("state cannot be hashed: {e}")))
                        }
                    }
                    if let Some(reason) = crate::verify::signature_problem(&record) {
                        problems.push(problem(&row, reason));
                    }
                    let mut rehashed = record.clone();
                    if let Ok(h) = record.scheme.hash(&record.state) {
                        rehashed.state_hash = Hash(h);
                    }
                    let leaf = rehashed.leaf_hash();
                    if row.leaf_hash != leaf.0 {
                        problems.push(problem(&row, "record does not match its stored leaf hash"));
                    }
                    leaf
                }
                Err(e) => {
                    problems.push(problem(&row, format!("stored record is unreadable: {e}")));
                    Hash::digest(&row.leaf_hash)
                }
            };
            let version = u64::try_from(row.version).unwrap_or(0);
            let stored_prev = row
                .prev_leaf_hash
                .as_deref()
                .and_then(|p| Hash::from_slice(p).ok());
            match twins.get(&row.twin_id) {
                None if version != 1 => problems.push(problem(
                    &row,
                    format!("the twin's first record has version {version}, not 1"),
                )),
                Some(t) if version != t.version + 1 => problems.push(problem(
                    &row,
                    format!("follows version {} of its twin in the log", t.version),
                )),
                Some(t) if stored_prev != t.leaf => problems.push(problem(
                    &row,
                    "does not link to the previous version's leaf hash",
                )),
                _ => {}
            }
            twins.insert(
                row.twin_id.clone(),
                TwinState {
                    version,
                    leaf: Hash::from_slice(&row.leaf_hash).ok(),
                },
            );
            frontier.push(leaf);
            while let Some(head) = next_head.peek() {
                if head.size > frontier.size() {
                    break;
                }
                if head.size == frontier.size() && divergence.is_none() {
                    checked += 1;
                    if frontier.head().root == head.root {
                        last_matching = head.size;
                    } else {
                        divergence = Some(Divergence {
                            last_matching_size: last_matching,
                            first_mismatching_size: head.size,
                            reason: format!(
                                "the records at log indexes {last_matching} to {} no longer hash to the root anchored for size {}",
                                head.size - 1,
                                head.size
                            ),
                        });
                    }
                }
                next_head.next();
            }
        }
    }
    progress(seen, total);
    // Every twin's summary must agree with its history.
    let mut after: Option<String> = None;
    loop {
        let page = store.twins("", after.as_deref(), 1000).await?;
        for t in &page {
            let scanned = twins.get(&t.twin_id).map_or(0, |s| s.version);
            if scanned != t.latest_version {
                problems.push(AuditProblem {
                    index: Some(t.latest_index),
                    twin_id: Some(t.twin_id.clone()),
                    version: Some(t.latest_version),
                    reason: format!(
                        "the twin's latest version is {} but its records end at version {scanned}",
                        t.latest_version
                    ),
                });
            }
        }
        match page.last() {
            Some(last) if page.len() == 1000 => after = Some(last.twin_id.clone()),
            _ => break,
        }
    }
    Ok(AuditReport {
        records: seen,
        twins: twins.len() as u64,
        anchored_heads_checked: checked,
        chain_head: None,
        divergence,
        problems,
    })
}
