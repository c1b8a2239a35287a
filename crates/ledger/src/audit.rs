//! Audit: recompute every record and the whole tree from the database and compare them with
//! every head anchored on chain.

use std::collections::HashMap;
use std::sync::Arc;

use futures_util::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use twinledger_chain::LogContract;
use twinledger_core::{Frontier, Hash, TreeHead, TwinId};
use twinledger_store::{Store, StoredRecord};

use crate::verify::recheck;
use crate::{Anchoring, LedgerError, Result};

/// One thing the audit found wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
    /// The log index the audit began at (0 unless it was asked to begin later).
    pub began_at: u64,
    /// The log index it stopped at when asked to stop before the end (a checkpoint was left
    /// there); `None` when it read to the end of the log.
    pub stopped_at: Option<u64>,
    /// Twins seen (by this run, when resumed).
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

/// Where an audit begins.
#[derive(Debug, Clone)]
pub enum AuditStart {
    /// At the first record.
    Beginning,
    /// At this log index: the tree over the records before it is taken from the stored nodes,
    /// and the first anchored head at or past it checks them.
    Index(u64),
    /// Where an interrupted audit of the same ledger left off.
    Checkpoint(AuditCheckpoint),
}

/// What an audit has done so far, handed out now and then while it runs: enough to continue it
/// after an interruption without reading again what it has read.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuditCheckpoint {
    /// The ledger audited: chain id and contract address (another ledger's checkpoint is
    /// refused).
    pub ledger: String,
    /// The log index the audit began at.
    pub began_at: u64,
    /// The log index it continues at.
    pub next_index: u64,
    /// The tree over the records before `next_index`, recomputed from them (its peaks).
    pub peaks: Vec<Hash>,
    /// Records read so far.
    pub records: u64,
    /// Anchored heads compared so far.
    pub anchored_heads_checked: u64,
    /// The largest anchored size reproduced so far.
    pub last_matching_size: u64,
    /// Where the log diverged, if it did before `next_index`.
    pub divergence: Option<Divergence>,
    /// Problems found so far.
    pub problems: Vec<AuditProblem>,
}

/// What an audit reports while it runs.
pub enum AuditEvent<'a> {
    /// Records read of all there are.
    Progress {
        /// Log index reached.
        done: u64,
        /// The log's size when the audit began.
        total: u64,
    },
    /// A point the audit can continue from.
    Checkpoint(&'a AuditCheckpoint),
}

/// What part of the log an audit reads, and how often it hands out a checkpoint.
#[derive(Debug, Clone)]
pub struct AuditPlan {
    /// Where it begins.
    pub start: AuditStart,
    /// Stop at this log index with a checkpoint, to continue later (an audit in parts).
    pub stop_at: Option<u64>,
    /// Records between checkpoints.
    pub checkpoint_every: u64,
}

/// Rows checked per task: checking a row (decoding it, hashing its state, its leaf and its
/// signature) is most of an audit's work and needs nothing from other rows, so chunks of a
/// batch are checked on every core while the scan reads ahead and one task folds them in order.
const CHUNK: usize = 1024;

/// Chunks being checked at once.
const CHUNKS_IN_FLIGHT: usize = 4;

/// The chain and contract `anchoring` names, as a checkpoint records them.
fn ledger_name(anchoring: &Anchoring) -> String {
    format!(
        "chain {} contract {}",
        anchoring.client().chain_id(),
        anchoring.address()
    )
}

/// Audits the ledger in `store` against `anchoring`'s chain, the part `plan` names. `observe`
/// is called now and then with the progress and with checkpoints.
pub async fn audit(
    store: Arc<dyn Store>,
    anchoring: &Anchoring,
    plan: AuditPlan,
    observe: impl FnMut(AuditEvent<'_>) + Send,
) -> Result<AuditReport> {
    let ledger = ledger_name(anchoring);
    if let AuditStart::Checkpoint(c) = &plan.start
        && c.ledger != ledger
    {
        return Err(LedgerError::Invalid(format!(
            "the checkpoint is of another ledger ({}), not of this one ({ledger})",
            c.ledger
        )));
    }
    let heads = match anchoring {
        Anchoring::Log(c) => chain_heads(&store, c).await?,
        Anchoring::Legacy(_) => Vec::new(),
    };
    let chain_head = match anchoring {
        Anchoring::Log(c) => Some(c.latest_head().await?),
        Anchoring::Legacy(_) => None,
    };
    let (mut report, reached) = scan(store, ledger, &heads, plan, observe).await?;
    if let Some(head) = chain_head
        && head.size > reached
        && report.divergence.is_none()
        && report.stopped_at.is_none()
    {
        report.divergence = Some(Divergence {
            last_matching_size: reached,
            first_mismatching_size: head.size,
            reason: format!(
                "the chain has anchored {} records but the database holds {reached}",
                head.size
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

/// A row checked on its own: the leaf it hashes to and what is wrong with it alone.
struct Checked {
    row: StoredRecord,
    leaf: Hash,
    problems: Vec<AuditProblem>,
}

fn check(row: StoredRecord) -> Checked {
    let checked = recheck(&row);
    let problems = checked
        .faults
        .into_iter()
        .map(|f| problem(&row, f))
        .collect();
    // The tree is rebuilt from the records as they are now, whatever their stored hashes
    // claim, so any change to a record changes the roots compared. A row that cannot be
    // recomputed gets a leaf no record has.
    let leaf = match checked.hashes {
        Some((_, leaf)) => leaf,
        None => Hash::digest(&row.leaf_hash),
    };
    Checked {
        row,
        leaf,
        problems,
    }
}

/// What the scan remembers per twin: its last version and that record's stored leaf hash.
struct TwinState {
    version: u64,
    leaf: Option<Hash>,
}

/// The audit's running state, folded record by record in log order.
struct Fold<'h> {
    /// Where the audit began (an earlier run's beginning, when resumed).
    began_at: u64,
    /// Where this run began reading: twins it has not seen link to versions before it.
    read_from: u64,
    expected_index: u64,
    records: u64,
    frontier: Frontier,
    twins: HashMap<String, TwinState>,
    heads: std::iter::Peekable<std::slice::Iter<'h, TreeHead>>,
    last_matching: u64,
    checked: u64,
    divergence: Option<Divergence>,
    problems: Vec<AuditProblem>,
}

impl Fold<'_> {
    /// Compares the tree with every anchored head of its size, and passes those below it.
    fn compare_heads(&mut self) {
        while let Some(head) = self.heads.peek() {
            if head.size > self.frontier.size() {
                break;
            }
            if head.size == self.frontier.size() && self.divergence.is_none() {
                self.checked += 1;
                if self.frontier.head().root == head.root {
                    self.last_matching = head.size;
                } else {
                    self.divergence = Some(Divergence {
                        last_matching_size: self.last_matching,
                        first_mismatching_size: head.size,
                        reason: format!(
                            "the records at log indexes {} to {} no longer hash to the root anchored for size {}",
                            self.last_matching,
                            head.size - 1,
                            head.size
                        ),
                    });
                }
            }
            self.heads.next();
        }
    }

    /// Folds one checked row in. `before` is the stored leaf hash of the twin's previous
    /// version when this run began past the log's start and has not seen the twin yet.
    fn push(&mut self, c: Checked, before: Option<&Option<Vec<u8>>>) {
        let row = &c.row;
        self.records += 1;
        if row.index != self.expected_index {
            self.problems.push(AuditProblem {
                index: Some(self.expected_index),
                twin_id: None,
                version: None,
                reason: format!(
                    "log indexes {} to {} are missing (records deleted)",
                    self.expected_index,
                    row.index.saturating_sub(1)
                ),
            });
        }
        self.expected_index = row.index + 1;
        self.problems.extend(c.problems);
        let version = u64::try_from(row.version).unwrap_or(0);
        let stored_prev = row
            .prev_leaf_hash
            .as_deref()
            .and_then(|p| Hash::from_slice(p).ok());
        let leaf = Hash::from_slice(&row.leaf_hash).ok();
        let link = match self.twins.get_mut(&row.twin_id) {
            Some(t) => {
                let reason = if version != t.version + 1 {
                    Some(format!(
                        "follows version {} of its twin in the log",
                        t.version
                    ))
                } else if stored_prev != t.leaf {
                    Some("does not link to the previous version's leaf hash".to_owned())
                } else {
                    None
                };
                *t = TwinState { version, leaf };
                reason
            }
            None => {
                let reason = match before {
                    _ if version == 1 => None,
                    None => Some(format!(
                        "the twin's first record has version {version}, not 1"
                    )),
                    Some(None) => Some(format!(
                        "version {} of the twin is missing",
                        version.saturating_sub(1)
                    )),
                    Some(Some(prev)) if Some(prev.as_slice()) != row.prev_leaf_hash.as_deref() => {
                        Some("does not link to the previous version's leaf hash".to_owned())
                    }
                    Some(Some(_)) => None,
                };
                self.twins
                    .insert(row.twin_id.clone(), TwinState { version, leaf });
                reason
            }
        };
        if let Some(reason) = link {
            self.problems.push(problem(row, reason));
        }
        self.frontier.push(c.leaf);
        self.compare_heads();
    }

    fn checkpoint(&self, ledger: &str) -> AuditCheckpoint {
        AuditCheckpoint {
            ledger: ledger.to_owned(),
            began_at: self.began_at,
            next_index: self.frontier.size(),
            peaks: self.frontier.peaks().to_vec(),
            records: self.records,
            anchored_heads_checked: self.checked,
            last_matching_size: self.last_matching,
            divergence: self.divergence.clone(),
            problems: self.problems.clone(),
        }
    }
}

/// For the first row of each twin this run has not seen yet, when it began reading past the
/// log's start: the stored leaf hash of the twin's version before it (`None` when missing).
async fn links_before(
    store: &dyn Store,
    fold: &Fold<'_>,
    rows: &[Checked],
) -> Result<HashMap<String, Option<Vec<u8>>>> {
    let mut wanted = HashMap::new();
    if fold.read_from > 0 {
        for c in rows {
            let row = &c.row;
            if row.version > 1 && !fold.twins.contains_key(&row.twin_id) {
                wanted.entry(row.twin_id.clone()).or_insert(row.version - 1);
            }
        }
    }
    let reads = wanted.into_iter().map(|(twin, version)| async move {
        let leaf = match TwinId::new(twin.clone()) {
            Ok(id) => store
                .record(&id, version as u64)
                .await?
                .map(|r| r.leaf_hash),
            Err(_) => None,
        };
        Ok::<_, LedgerError>((twin, leaf))
    });
    futures_util::stream::iter(reads)
        .buffer_unordered(16)
        .try_collect()
        .await
}

/// A batch of the scan in chunks of [`CHUNK`] rows.
fn chunked(batch: twinledger_store::Result<Vec<StoredRecord>>) -> Vec<Result<Vec<StoredRecord>>> {
    match batch {
        Ok(rows) => {
            let mut rows = rows.into_iter().peekable();
            let mut chunks = Vec::new();
            while rows.peek().is_some() {
                chunks.push(Ok(rows.by_ref().take(CHUNK).collect()));
            }
            chunks
        }
        Err(e) => vec![Err(e.into())],
    }
}

async fn scan(
    store: Arc<dyn Store>,
    ledger: String,
    heads: &[TreeHead],
    plan: AuditPlan,
    mut observe: impl FnMut(AuditEvent<'_>) + Send,
) -> Result<(AuditReport, u64)> {
    let total = store.stats().await?.records;
    let mut fold = Fold {
        began_at: 0,
        read_from: 0,
        expected_index: 0,
        records: 0,
        frontier: Frontier::new(),
        twins: HashMap::new(),
        heads: heads.iter().peekable(),
        last_matching: 0,
        checked: 0,
        divergence: None,
        problems: Vec::new(),
    };
    // Heads at the size a checkpoint was taken were compared by the run that took it; a head at
    // the index an audit begins at checks the stored nodes it begins with.
    let mut compared_through = None;
    match plan.start {
        AuditStart::Beginning => {}
        AuditStart::Index(i) => {
            if i > total {
                return Err(LedgerError::Invalid(format!(
                    "the log holds {total} records: an audit cannot begin at index {i}"
                )));
            }
            fold.began_at = i;
            fold.expected_index = i;
            fold.frontier = store.frontier_at(i).await?;
        }
        AuditStart::Checkpoint(c) => {
            fold.frontier = Frontier::from_peaks(c.next_index, c.peaks).ok_or_else(|| {
                LedgerError::Invalid("the checkpoint's tree does not fit its size".into())
            })?;
            fold.began_at = c.began_at;
            fold.expected_index = c.next_index;
            fold.records = c.records;
            fold.checked = c.anchored_heads_checked;
            fold.last_matching = c.last_matching_size;
            fold.divergence = c.divergence;
            fold.problems = c.problems;
            compared_through = Some(c.next_index);
        }
    }
    // Heads below where the audit begins were compared before it (or, from an index, cannot be).
    let size = fold.frontier.size();
    while fold
        .heads
        .peek()
        .is_some_and(|h| h.size < size || Some(h.size) == compared_through)
    {
        fold.heads.next();
    }
    fold.compare_heads();
    fold.read_from = fold.frontier.size();
    let every = plan.checkpoint_every.max(1);
    let mut next_checkpoint = fold.read_from + every;
    let stop_at = plan.stop_at.filter(|&s| s < total);
    if let Some(s) = stop_at
        && s <= fold.read_from
    {
        return Err(LedgerError::Invalid(format!(
            "the audit would stop at index {s}, which is not past where it begins ({})",
            fold.read_from
        )));
    }
    let mut next_progress = 0;
    let mut chunks = store
        .scan(fold.read_from)
        .flat_map(|batch| futures_util::stream::iter(chunked(batch)))
        .map(|chunk| async move {
            let rows = chunk?;
            tokio::task::spawn_blocking(move || rows.into_iter().map(check).collect::<Vec<_>>())
                .await
                .map_err(|e| LedgerError::Store(format!("audit task: {e}")))
        })
        .buffered(CHUNKS_IN_FLIGHT);
    'scan: while let Some(rows) = chunks.next().await {
        let rows = rows?;
        let before = links_before(store.as_ref(), &fold, &rows).await?;
        for c in rows {
            if stop_at.is_some_and(|s| fold.frontier.size() >= s) {
                break 'scan;
            }
            let link = before.get(&c.row.twin_id);
            fold.push(c, link);
        }
        let done = fold.frontier.size();
        if done >= next_progress {
            observe(AuditEvent::Progress { done, total });
            next_progress = done + 10_000;
        }
        if done >= next_checkpoint {
            observe(AuditEvent::Checkpoint(&fold.checkpoint(&ledger)));
            next_checkpoint = done + every;
        }
    }
    drop(chunks);
    let reached = fold.frontier.size();
    observe(AuditEvent::Progress {
        done: reached,
        total,
    });
    if let Some(s) = stop_at
        && reached >= s
    {
        observe(AuditEvent::Checkpoint(&fold.checkpoint(&ledger)));
        let report = AuditReport {
            records: fold.records,
            began_at: fold.began_at,
            stopped_at: Some(reached),
            twins: fold.twins.len() as u64,
            anchored_heads_checked: fold.checked,
            chain_head: None,
            divergence: fold.divergence,
            problems: fold.problems,
        };
        return Ok((report, reached));
    }
    // Every twin's summary must agree with its history: twins whose latest record lies past
    // where this run began reading with what it read, the others with nothing read.
    let mut after: Option<String> = None;
    loop {
        let page = store.twins("", after.as_deref(), 1000).await?;
        for t in &page {
            let scanned = fold.twins.get(&t.twin_id).map(|s| s.version);
            let consistent = if t.latest_index >= fold.read_from {
                scanned == Some(t.latest_version)
            } else {
                scanned.is_none()
            };
            if !consistent {
                fold.problems.push(AuditProblem {
                    index: Some(t.latest_index),
                    twin_id: Some(t.twin_id.clone()),
                    version: Some(t.latest_version),
                    reason: format!(
                        "the twin's latest version is {} but its records end at version {}",
                        t.latest_version,
                        scanned.unwrap_or(0)
                    ),
                });
            }
        }
        match page.last() {
            Some(last) if page.len() == 1000 => after = Some(last.twin_id.clone()),
            _ => break,
        }
    }
    let report = AuditReport {
        records: fold.records,
        began_at: fold.began_at,
        stopped_at: None,
        twins: fold.twins.len() as u64,
        anchored_heads_checked: fold.checked,
        chain_head: None,
        divergence: fold.divergence,
        problems: fold.problems,
    };
    Ok((report, reached))
}
