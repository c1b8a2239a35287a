//! Log mode: tree heads of the Merkle log anchored on the TwinLedger contract, as a group
//! commit. When no anchor is in flight the tail is anchored at once (low latency at low load);
//! while anchors are in flight new records gather for the next one (large batches at high load).
//! On a chain that mines on a timer, anchors are pipelined: each extends the one sent before
//! it under the next nonce, one per block, sent just before the block ([`super::pacing`]).

mod finality;
mod settle;

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use twinledger_chain::{AnchorReceipt, ChainError, LogContract, SentAnchor, TxHash};
use twinledger_core::TreeHead;
use twinledger_store::{Anchor, Store};

use super::loss::{ChainNotes, Reanchoring};
use super::pacing::BlockClock;
use super::reconcile::{Reconciled, reconcile};
use super::{AnchorInfo, AnchorWaiters, AnchoredSizes, AnchoringStatus, Level};
use crate::metrics::LedgerMetrics;
use crate::{LedgerError, Result};

/// Log-mode anchoring settings.
#[derive(Debug, Clone)]
pub struct AnchorConfig {
    /// Most records one anchor covers.
    pub batch_max: u64,
    /// Least time between two anchors (for chains where each transaction costs real money).
    pub min_interval: Duration,
    /// Least time between two anchors while records keep coming: when records arrived while
    /// the last anchor was in flight, the next waits until this long after the last was sent.
    /// A ledger that was idle anchors a new record at once.
    pub busy_interval: Duration,
    /// Anchors sent and not yet mined, at most.
    pub in_flight: usize,
    /// Blocks (the anchor's own included) before an anchor counts as confirmed.
    pub confirmations: u64,
    /// How long an anchor may wait for its receipt before callers waiting on it are told it
    /// is late (it is still waited for, and replaced, after that).
    pub receipt_timeout: Duration,
    /// How long an anchor may wait in the pool before it is sent again with higher fees.
    pub replace_after: Duration,
    /// The highest fee per gas a replacement may offer, in wei (`None`: no limit).
    pub max_fee_per_gas: Option<u128>,
    /// Fault injection for the crash tests: abort the process once an anchor is mined, before
    /// the database notes it (the state a crash at that moment leaves).
    pub crash_before_noting_mined: bool,
}

impl Default for AnchorConfig {
    fn default() -> Self {
        Self {
            batch_max: 100_000,
            min_interval: Duration::ZERO,
            busy_interval: Duration::from_millis(250),
            in_flight: 4,
            confirmations: 1,
            receipt_timeout: Duration::from_secs(60),
            replace_after: Duration::from_secs(30),
            max_fee_per_gas: None,
            crash_before_noting_mined: false,
        }
    }
}

/// Why an anchor could not be sent; `refused` when the contract rejected the head itself.
struct SendFailure {
    message: String,
    refused: bool,
}

impl From<LedgerError> for SendFailure {
    fn from(e: LedgerError) -> Self {
        Self {
            message: e.to_string(),
            refused: false,
        }
    }
}

impl From<twinledger_store::StoreError> for SendFailure {
    fn from(e: twinledger_store::StoreError) -> Self {
        LedgerError::from(e).into()
    }
}

/// An anchor sent and not yet applied: its settling task reports under `id`.
struct InFlight {
    id: u64,
    head: TreeHead,
    nonce: u64,
    sent_at: Instant,
    /// The block it was sent for, on a chain whose block clock is known.
    aimed: Option<u64>,
    /// Whether the node is known to hold it (its send was answered, or the node knows its
    /// hash). Nothing is pipelined on an anchor whose send went unanswered until then: sent
    /// under a stale nonce, it would never be mined, and one built on it would revert.
    held: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

/// What a settling anchor reports back to the anchorer.
enum Settled {
    /// Mined, or failed for good.
    Done(u64, Result<AnchorReceipt, ChainError>),
    /// Sent again with higher fees under a new hash.
    Replaced {
        size: u64,
        old: TxHash,
        new: TxHash,
        max_fee_per_gas: u128,
    },
    /// Still not mined after the receipt timeout (it is still waited for).
    Late(String),
    /// The node now holds an anchor whose send went unanswered.
    Held,
}

/// Everything the log anchorer works with.
#[derive(Clone)]
pub(crate) struct LogAnchorer {
    pub store: Arc<dyn Store>,
    pub contract: LogContract,
    pub waiters: Arc<AnchorWaiters>,
    pub tree: watch::Receiver<u64>,
    pub sizes: watch::Sender<AnchoredSizes>,
    pub state: watch::Sender<AnchoringStatus>,
    pub config: AnchorConfig,
    pub shutdown: watch::Receiver<bool>,
    /// On the embedded chain: where anchors it lost are recorded (elsewhere a lost anchor is a
    /// reorganisation).
    pub notes: Option<ChainNotes>,
    /// Counts restarts of the embedded node (each one is reconciled at once).
    pub restarts: watch::Receiver<u64>,
    /// Set while the embedded node is stopped on purpose (its history being compacted):
    /// nothing is sent until it is back.
    pub paused: watch::Receiver<bool>,
    /// Re-anchoring left unfinished by an earlier run.
    pub reanchoring: Option<Reanchoring>,
    pub metrics: LedgerMetrics,
}

pub(crate) async fn record_mined(
    store: &Arc<dyn Store>,
    size: u64,
    r: &AnchorReceipt,
) -> Result<()> {
    let (block, hash, time, gas) = (
        r.block_number,
        r.block_hash.to_string(),
        r.block_timestamp,
        r.gas_used,
    );
    Ok(store
        .set_anchor_mined(size, block, &hash, time, gas)
        .await?)
}

fn anchor_info(size: u64, r: &AnchorReceipt) -> AnchorInfo {
    AnchorInfo {
        tx_hash: r.tx_hash.to_string(),
        block_number: r.block_number,
        block_timestamp: r.block_timestamp,
        tree_size: Some(size),
    }
}

/// How often, when idle, the chain's latest head is compared with ours (to notice anchors a
/// reorganisation dropped after they counted as confirmed).
const HEAD_CHECK_INTERVAL: Duration = Duration::from_secs(2);

/// How often, while anchors wait for finality, the chain's finalized block is read.
const FINALITY_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// The anchorer's working state between loop turns.
struct Progress {
    /// The latest head known mined on chain.
    anchored: TreeHead,
    in_flight: VecDeque<InFlight>,
    /// Outcomes by flight id, with when they were seen, applied in size order.
    results: BTreeMap<u64, (Result<AnchorReceipt, ChainError>, Instant)>,
    /// Re-anchoring of heads the embedded chain lost, until an anchor covers them.
    reanchoring: Option<Reanchoring>,
    /// Mined anchors not yet confirmed, in size order.
    unconfirmed: VecDeque<(u64, AnchorReceipt)>,
    /// Mined anchors not yet in a finalized block, in size order.
    unfinalized: VecDeque<(u64, AnchorReceipt)>,
    /// When the chain's finalized block was last read.
    last_finality_check: Option<Instant>,
    next_id: u64,
    /// The nonce the next anchor should take if nobody else sends with our key.
    next_nonce: Option<u64>,
    last_head_check: Instant,
    clock: BlockClock,
    /// The latest block number the clock read: settling anchors look for their receipts when
    /// it moves.
    blocks: watch::Sender<u64>,
}

impl Progress {
    fn abort_in_flight(&mut self) {
        for f in self.in_flight.drain(..) {
            f.task.abort();
            self.results.remove(&f.id);
        }
    }
}

/// Why the anchorer starts again from the chain's head.
enum Rewind {
    /// An anchor failed (reverted, refused, taken nonce).
    Failed(String),
    /// The chain no longer holds anchors it held.
    Reorganised(String),
    /// The embedded node was started again (from its last snapshot).
    Restarted,
}

impl LogAnchorer {
    /// Reconciles with the chain until it answers (the node was down at start).
    async fn reconcile_when_reachable(&mut self) -> Option<Reconciled> {
        let mut backoff = Duration::from_millis(500);
        loop {
            match reconcile(&self.store, &self.contract, self.notes.as_ref()).await {
                Ok(r) => {
                    self.state.send_modify(|s| s.last_error = None);
                    return Some(r);
                }
                Err(e) => {
                    let msg = format!("cannot reconcile with the chain: {e}");
                    tracing::warn!(target: "twinledger::anchor", error = %msg, "anchoring waits for the chain");
                    self.state.send_modify(|s| s.last_error = Some(msg.clone()));
                    self.waiters.fail_all(&msg);
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = self.shutdown.changed() => return None,
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }

    /// Runs until shutdown, from the reconciled chain view (`None`: reconcile first, once the
    /// chain answers).
    pub async fn run(mut self, start: Option<Reconciled>) {
        let start = match start {
            Some(r) => r,
            None => match self.reconcile_when_reachable().await {
                Some(r) => r,
                None => return,
            },
        };
        self.count_loss(&start);
        let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Settled>();
        let mut p = Progress {
            anchored: start.head,
            in_flight: VecDeque::new(),
            results: BTreeMap::new(),
            unconfirmed: VecDeque::new(),
            unfinalized: self.latest_mined().await.into_iter().collect(),
            last_finality_check: None,
            next_id: 0,
            next_nonce: None,
            last_head_check: Instant::now(),
            reanchoring: start.reanchoring.or(self.reanchoring),
            clock: BlockClock::new(Instant::now()),
            blocks: watch::Sender::new(0),
        };
        self.resume(&mut p, start.waiting, &done_tx);
        self.sizes.send_modify(|s| {
            s.anchored = p.anchored.size;
            s.confirmed = p.anchored.size;
        });
        let mut last_send: Option<Instant> = None;
        // Whether records came in while the last mined anchor was in flight: under a steady
        // load, anchors are spaced by `busy_interval` (each then covers more records, and the
        // chain is not sent a transaction every few milliseconds); a sequential caller waiting
        // for each anchor is not slowed down.
        let mut busy = false;
        let mut backoff = Duration::from_millis(200);
        let mut retry_at: Option<Instant> = None;
        // A restart of the embedded node, noticed while waiting: reconciled on the next turn.
        let mut restarted = false;
        let mut restarts_open = true;
        loop {
            if *self.shutdown.borrow() {
                p.abort_in_flight();
                return;
            }
            // Apply mined anchors in size order.
            let mut rewind = None;
            while let Some(front) = p.in_flight.front() {
                let Some((result, seen_at)) = p.results.remove(&front.id) else {
                    break;
                };
                let (head, sent_at, aimed) = (front.head, front.sent_at, front.aimed);
                p.in_flight.pop_front();
                match result {
                    Ok(receipt) => {
                        // The receipt shows a block the clock may not have read yet.
                        p.clock.observe(receipt.block_number, seen_at);
                        p.clock.mined(sent_at, aimed, receipt.block_number, seen_at);
                        if self.config.crash_before_noting_mined {
                            tracing::error!(target: "twinledger::anchor", size = head.size, tx = %receipt.tx_hash, "fault injection: aborting before noting a mined anchor");
                            std::process::abort();
                        }
                        if let Err(e) = record_mined(&self.store, head.size, &receipt).await {
                            tracing::error!(target: "twinledger::anchor", error = %e, "cannot record a mined anchor");
                        }
                        p.anchored = head;
                        busy = *self.tree.borrow() > head.size;
                        tracing::debug!(target: "twinledger::anchor", size = head.size, tx = %receipt.tx_hash, gas = receipt.gas_used, block = receipt.block_number, aimed = ?aimed, waited_ms = seen_at.saturating_duration_since(sent_at).as_millis() as u64, "anchored");
                        self.sizes.send_modify(|s| s.anchored = head.size);
                        self.metrics.anchor_mined(Some(receipt.gas_used));
                        self.metrics.anchored_below(head.size);
                        self.waiters.resolve_below(
                            Level::Anchored,
                            head.size,
                            &anchor_info(head.size, &receipt),
                        );
                        self.note_reanchored(&mut p, &head, &receipt).await;
                        p.unfinalized.push_back((head.size, receipt.clone()));
                        p.unconfirmed.push_back((head.size, receipt));
                        self.state.send_modify(|s| s.last_error = None);
                        backoff = Duration::from_millis(200);
                    }
                    Err(e) => {
                        self.metrics.anchor_failed();
                        if let ChainError::NonceTaken { .. } = &e {
                            self.note_other_sender(e.to_string());
                        }
                        rewind = Some(Rewind::Failed(format!("anchoring failed: {e}")));
                        break;
                    }
                }
            }
            if rewind.is_none() {
                rewind = self.confirm(&mut p).await;
            }
            if rewind.is_none() {
                rewind = self.finalize(&mut p).await;
            }
            if rewind.is_none() && p.in_flight.is_empty() {
                rewind = self.check_head(&mut p).await;
            }
            if std::mem::take(&mut restarted) {
                rewind = Some(Rewind::Restarted);
            }
            if let Some(why) = rewind {
                if let Rewind::Failed(msg) = &why {
                    self.fail(msg, &mut backoff, &mut retry_at);
                }
                self.rewind(&mut p, why, &done_tx).await;
                continue;
            }

            let base = p.in_flight.back().map_or(p.anchored, |f| f.head);
            let tree_size = self.anchorable(base.size).await;
            let mut now = Instant::now();
            // The block clock is read while there is anchoring to do: it says when a chain
            // that mines on a timer takes the next block.
            let pending_work = tree_size > base.size;
            if (pending_work || !p.in_flight.is_empty()) && p.clock.poll_due(now) {
                if let Ok(status) = self.contract.client().status().await {
                    now = Instant::now();
                    p.clock.observe(status.block_number, now);
                    p.blocks.send_if_modified(|b| {
                        std::mem::replace(b, status.block_number) != status.block_number
                    });
                } else {
                    p.clock.unread(now);
                }
            }
            // A backlog of a whole batch or more goes out at once, pipelined: waiting for the
            // block would not make the anchor cover more, and one anchor per block would cap
            // the rate at `batch_max` records a block.
            let full_batch = tree_size.saturating_sub(base.size) >= self.config.batch_max.max(1);
            let send_at = p.clock.send_at(now).filter(|_| !full_batch);
            // Records that arrive while an anchor is in flight make the ledger busy too: the
            // next anchor, pipelined, waits for the busy interval like one after a mined anchor.
            let interval = if busy || !p.in_flight.is_empty() {
                self.config.min_interval.max(self.config.busy_interval)
            } else {
                self.config.min_interval
            };
            let interval_ok = last_send.is_none_or(|t| now >= t + interval);
            let retry_ok = retry_at.is_none_or(|t| now >= t);
            if pending_work
                && !*self.paused.borrow()
                && p.in_flight.len() < self.config.in_flight.max(1)
                && interval_ok
                && retry_ok
                && send_at.is_none()
                && p.in_flight.iter().all(|f| f.held.load(Ordering::Relaxed))
            {
                match self.send(&mut p, base, tree_size).await {
                    Ok((head, sent, held)) => {
                        self.metrics.anchor_sent();
                        retry_at = None;
                        let sent_at = Instant::now();
                        last_send = Some(sent_at);
                        let aimed = p.clock.sent(sent_at);
                        let flight = self.spawn_settle(&mut p, head, sent, aimed, held, &done_tx);
                        p.in_flight.push_back(flight);
                    }
                    Err(SendFailure { message, refused }) => {
                        self.metrics.anchor_failed();
                        if refused && p.in_flight.is_empty() {
                            // The chain holds another head than this service thought: often
                            // its own anchor, mined after all (a restart of the embedded chain
                            // lost track of it). The rewind reads the chain's head and answers
                            // the callers it covers; failing them first would tell them the
                            // chain is unavailable about records it holds (a CI run saw a 503).
                            self.note_failure(&message, &mut backoff, &mut retry_at);
                            self.rewind(&mut p, Rewind::Failed(message), &done_tx).await;
                        } else {
                            self.fail(&message, &mut backoff, &mut retry_at);
                        }
                    }
                }
                continue;
            }
            // Wake for the retry, the minimum interval or the block clock only when there is
            // something to send; otherwise a new commit, a settled anchor or the periodic
            // checks wake us.
            let mut wake = match (retry_at, last_send) {
                (Some(t), _) if pending_work && t > now => t,
                (_, Some(t)) if pending_work && t + interval > now => t + interval,
                _ => now + Duration::from_secs(1),
            };
            if pending_work && let Some(t) = send_at {
                wake = wake.max(t);
            }
            if pending_work || !p.in_flight.is_empty() {
                wake = wake.min(p.clock.next_poll());
            }
            tokio::select! {
                r = done_rx.recv() => match r {
                    Some(Settled::Done(id, result)) => {
                        p.results.insert(id, (result, Instant::now()));
                    }
                    Some(Settled::Replaced { size, old, new, max_fee_per_gas }) => {
                        tracing::info!(target: "twinledger::anchor", size, old_tx = %old, new_tx = %new, max_fee_per_gas, "anchor not mined in time; replaced with higher fees");
                        self.state.send_modify(|s| s.replacements += 1);
                        // A restart then looks for the replacement, not the one it replaced.
                        let tx = new.to_string();
                        if let Err(e) = self.store.set_anchor_tx(size, &tx).await {
                            tracing::warn!(target: "twinledger::anchor", error = %e, "cannot note a replaced anchor");
                        }
                    }
                    Some(Settled::Held) => {}
                    Some(Settled::Late(msg)) => {
                        tracing::warn!(target: "twinledger::anchor", error = %msg, "anchor late");
                        self.state.send_modify(|s| s.last_error = Some(msg.clone()));
                        self.waiters.fail_all(&msg);
                    }
                    None => {}
                },
                // The writer is gone (the ledger was dropped): nothing more will come.
                r = self.tree.changed() => if r.is_err() { p.abort_in_flight(); return; },
                r = self.restarts.changed(), if restarts_open => match r {
                    Ok(()) => restarted = true,
                    Err(_) => restarts_open = false,
                },
                _ = tokio::time::sleep_until(wake.max(now + Duration::from_millis(1))) => {}
                _ = self.shutdown.changed() => {}
            }
        }
    }

    fn fail(&self, msg: &str, backoff: &mut Duration, retry_at: &mut Option<Instant>) {
        self.note_failure(msg, backoff, retry_at);
        self.waiters.fail_all(msg);
    }

    /// Notes a failed anchor and backs off, leaving the callers waiting.
    fn note_failure(&self, msg: &str, backoff: &mut Duration, retry_at: &mut Option<Instant>) {
        tracing::warn!(target: "twinledger::anchor", error = %msg, retry_in_ms = backoff.as_millis() as u64, "anchoring failed; records stay pending");
        self.state
            .send_modify(|s| s.last_error = Some(msg.to_owned()));
        *retry_at = Some(Instant::now() + *backoff);
        *backoff = (*backoff * 2).min(Duration::from_secs(5));
    }

    fn note_other_sender(&self, msg: String) {
        tracing::error!(target: "twinledger::anchor", account = %self.contract.client().from(), error = %msg, "another process sends with this service's key");
        self.state.send_modify(|s| s.other_sender = Some(msg));
    }

    /// Starts again from the chain's head: anchors in flight are dropped (their records are
    /// sent again), local anchors the chain lost are forgotten, and the anchored and confirmed
    /// sizes go back to what the chain holds.
    async fn rewind(&self, p: &mut Progress, why: Rewind, done: &mpsc::UnboundedSender<Settled>) {
        p.abort_in_flight();
        // Anchors dropped here may never be mined: the node's count is the truth again.
        p.next_nonce = None;
        match &why {
            Rewind::Reorganised(msg) if self.notes.is_none() => {
                tracing::warn!(target: "twinledger::anchor", reason = %msg, "chain reorganisation dropped anchors; anchoring again");
                self.state.send_modify(|s| s.reorganisations += 1);
            }
            Rewind::Restarted => {
                tracing::info!(target: "twinledger::anchor", "the embedded node was started again; comparing its chain with the log");
            }
            _ => {}
        }
        match reconcile(&self.store, &self.contract, self.notes.as_ref()).await {
            Ok(r) => {
                self.count_loss(&r);
                if r.reanchoring.is_some() {
                    p.reanchoring = r.reanchoring;
                }
                p.anchored = r.head;
                p.unconfirmed.retain(|(size, _)| *size <= r.head.size);
                p.unfinalized.retain(|(size, _)| *size <= r.head.size);
                self.sizes.send_modify(|s| {
                    s.anchored = r.head.size;
                    s.confirmed = s.confirmed.min(r.head.size);
                    s.finalized = s.finalized.min(r.head.size);
                });
                // An anchor dropped from flight above may have been mined meanwhile (the
                // reconciliation found it): its callers are answered, and it waits for its
                // confirmations and finality like one settled here.
                if let Some((size, receipt)) = self.latest_mined().await
                    && size == r.head.size
                {
                    self.metrics.anchored_below(size);
                    self.waiters
                        .resolve_below(Level::Anchored, size, &anchor_info(size, &receipt));
                    if p.unconfirmed.back().is_none_or(|(s, _)| *s < size) {
                        p.unconfirmed.push_back((size, receipt.clone()));
                    }
                    if p.unfinalized.back().is_none_or(|(s, _)| *s < size) {
                        p.unfinalized.push_back((size, receipt));
                    }
                }
                self.resume(p, r.waiting, done);
            }
            Err(e) => {
                tracing::error!(target: "twinledger::anchor", error = %e, "cannot reconcile with the chain")
            }
        }
        p.last_head_check = Instant::now();
    }

    /// Counts a reconciliation that found the embedded chain had lost anchors.
    fn count_loss(&self, r: &Reconciled) {
        if r.reanchoring.is_some() {
            self.state.send_modify(|s| {
                s.chain_state_losses += 1;
                s.lost_heads += r.lost as u64;
            });
        }
    }

    /// Once an anchor covers every head the embedded chain lost, records which one did.
    async fn note_reanchored(&self, p: &mut Progress, head: &TreeHead, receipt: &AnchorReceipt) {
        let (Some(r), Some(notes)) = (p.reanchoring, &self.notes) else {
            return;
        };
        if head.size < r.covers {
            return;
        }
        let tx = receipt.tx_hash.to_string();
        match notes
            .reanchored(r.lost_event, head, &tx, receipt.block_number)
            .await
        {
            Ok(()) => {
                tracing::info!(target: "twinledger::anchor", size = head.size, tx = %tx, lost_event = r.lost_event, "the heads the embedded chain lost are anchored again");
                p.reanchoring = None;
            }
            Err(e) => {
                tracing::warn!(target: "twinledger::anchor", error = %e, "cannot record the re-anchoring")
            }
        }
    }

    /// Waits again for anchors that a reconciliation found still in the node's pool.
    fn resume(
        &self,
        p: &mut Progress,
        waiting: Vec<(TreeHead, SentAnchor)>,
        done: &mpsc::UnboundedSender<Settled>,
    ) {
        for (head, sent) in waiting {
            p.next_nonce = Some(sent.nonce() + 1);
            let flight = self.spawn_settle(p, head, sent, None, true, done);
            p.in_flight.push_back(flight);
        }
    }

    /// The log size an anchor may cover now: the log's, but no more than the database's
    /// synchronous standbys hold (a commit they lack can vanish in a failover, and an anchored
    /// head that loses records is a fork). When that cannot be read, nothing beyond `base`.
    async fn anchorable(&self, base: u64) -> u64 {
        let size = *self.tree.borrow();
        if size <= base {
            return size;
        }
        match self.store.replicated_size().await {
            Ok(None) => size,
            Ok(Some(replicated)) => size.min(replicated.max(base)),
            Err(e) => {
                tracing::warn!(target: "twinledger::anchor", error = %e, "cannot read what the standbys hold; anchoring waits");
                base
            }
        }
    }

    /// Anchors the tree of up to `batch_max` more records than `base`, with the account's next
    /// nonce: the one after the last anchor in flight (a pipelined anchor, extending a head the
    /// chain has not mined yet), or the node's count of the account's transactions.
    async fn send(
        &self,
        p: &mut Progress,
        base: TreeHead,
        tree_size: u64,
    ) -> Result<(TreeHead, SentAnchor, bool), SendFailure> {
        let size = tree_size.min(base.size + self.config.batch_max.max(1));
        let head = self.store.tree_head(size).await?;
        let proof = match base.size {
            0 => None,
            first => Some(self.store.consistency_proof(first, size).await?),
        };
        let unavailable = |e: ChainError| SendFailure {
            refused: matches!(e, ChainError::Refused(_)),
            message: format!("chain unavailable: {e}"),
        };
        let pipelined = p.in_flight.back().map(|f| f.nonce + 1);
        let nonce = match pipelined {
            Some(n) => n,
            // With nothing in flight every anchor sent is mined, so the node's count of our
            // transactions is at least ours: a lower count is a stale provider's (using it
            // would reuse a nonce), a higher one means someone else used the key.
            None => self
                .contract
                .client()
                .nonce(true)
                .await
                .map_err(unavailable)?
                .max(p.next_nonce.unwrap_or(0)),
        };
        if let Some(expected) = p.next_nonce
            && nonce > expected
        {
            self.note_other_sender(format!(
                "the account's nonce moved from {expected} to {nonce} without this service \
                 sending: another process is sending with the same key"
            ));
        }
        let sent = self
            .contract
            .prepare_anchor(
                &head,
                proof.as_ref(),
                nonce,
                pipelined.is_some(),
                self.config.max_fee_per_gas,
            )
            .await
            .map_err(unavailable)?;
        // Noted before it is sent: a crash after the send finds it (in the pool or mined)
        // instead of sending a second anchor for the same head under the next nonce.
        let (root, prev, txs) = (head.root, base.size, sent.tx_hash().to_string());
        self.store
            .put_anchor_sent(size, &root, prev, &txs)
            .await
            .map_err(SendFailure::from)?;
        let held = match self.contract.submit(&sent).await {
            Ok(()) => true,
            // The answer was lost (a dropped connection, a timeout): the node may hold it.
            // It is waited for as sent; its settling sends the same bytes again if the node
            // does not know it.
            Err(e) if e.is_retryable() => {
                tracing::warn!(target: "twinledger::anchor", size, tx = %sent.tx_hash(), error = %e, "no answer to an anchor's send; it is sent again until the node holds it");
                false
            }
            Err(e) => {
                let _ = self.store.delete_anchor(size).await;
                return Err(unavailable(e));
            }
        };
        p.next_nonce = Some(nonce + 1);
        Ok((head, sent, held))
    }
}

/// The anchor whose tree first holds record `index`, with its mined block.
pub(crate) fn covering_info(anchor: &Anchor) -> Option<AnchorInfo> {
    Some(AnchorInfo {
        tx_hash: anchor.tx_hash.clone(),
        block_number: anchor.block_number?,
        block_timestamp: anchor.block_time?,
        tree_size: Some(anchor.size),
    })
}
