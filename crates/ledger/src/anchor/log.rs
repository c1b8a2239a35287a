//! Log mode: tree heads of the Merkle log anchored on the TwinLedger contract, as a group
//! commit. When no anchor is in flight the tail is anchored at once (low latency at low load);
//! while anchors are in flight new records gather for the next one (large batches at high load).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use twinledger_chain::{AnchorReceipt, ChainError, LogContract, TxHash};
use twinledger_core::TreeHead;
use twinledger_store::{Anchor, Store};

use super::{AnchorInfo, AnchorState, AnchorWaiters, AnchoredSizes, Level};
use crate::{LedgerError, Result, on_store};

/// Log-mode anchoring settings.
#[derive(Debug, Clone)]
pub struct AnchorConfig {
    /// Most records one anchor covers.
    pub batch_max: u64,
    /// Least time between two anchors (for chains where each transaction costs real money).
    pub min_interval: Duration,
    /// Anchors sent and not yet mined, at most.
    pub in_flight: usize,
    /// Blocks (the anchor's own included) before an anchor counts as confirmed.
    pub confirmations: u64,
    /// How long to wait for an anchor's receipt.
    pub receipt_timeout: Duration,
}

impl Default for AnchorConfig {
    fn default() -> Self {
        Self {
            batch_max: 100_000,
            min_interval: Duration::ZERO,
            in_flight: 1,
            confirmations: 1,
            receipt_timeout: Duration::from_secs(60),
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

struct InFlight {
    head: TreeHead,
    tx: TxHash,
}

/// Everything the log anchorer works with.
pub(crate) struct LogAnchorer {
    pub store: Arc<dyn Store>,
    pub contract: LogContract,
    pub waiters: Arc<AnchorWaiters>,
    pub tree: watch::Receiver<u64>,
    pub sizes: watch::Sender<AnchoredSizes>,
    pub state: watch::Sender<AnchorState>,
    pub config: AnchorConfig,
    pub shutdown: watch::Receiver<bool>,
}

/// Compares the chain's latest head with the local log and returns it: the log must hold at
/// least that many records and have the same root at that size, or anchoring on top of it
/// would extend a history the chain does not have.
pub(crate) async fn reconcile(store: &Arc<dyn Store>, contract: &LogContract) -> Result<TreeHead> {
    let on_chain = contract.latest_head().await?;
    let local_size = on_store(store, |s| s.frontier()).await?.size();
    if on_chain.size > local_size {
        return Err(LedgerError::Diverged(format!(
            "the chain has anchored {} records but the database holds only {local_size}; \
             records were deleted from the database (run `twinledger audit`)",
            on_chain.size
        )));
    }
    if on_chain.size > 0 {
        let size = on_chain.size;
        let local = on_store(store, move |s| s.tree_head(size)).await?;
        if local.root != on_chain.root {
            return Err(LedgerError::Diverged(format!(
                "the database's log differs from the head anchored on chain at size {size} \
                 (chain root {}, database root {}); run `twinledger audit` to find where",
                on_chain.root, local.root
            )));
        }
    }
    // Anchors mined but never recorded (the process died between sending and noting, or
    // before the receipt): recovered from the contract's events since the last recorded one.
    let known = on_store(store, |s| s.latest_mined_anchor()).await?;
    let from_block = known.and_then(|a| a.block_number).unwrap_or(0);
    for event in contract.anchored_events(from_block).await? {
        let size = event.head.size;
        let local = on_store(store, move |s| s.anchors(size, 1)).await?;
        if local
            .first()
            .is_some_and(|a| a.size == size && a.status != "sent")
        {
            continue;
        }
        let (root, prev, tx) = (
            event.head.root,
            event.previous_size,
            event.tx_hash.to_string(),
        );
        on_store(store, move |s| s.put_anchor_sent(size, &root, prev, &tx)).await?;
        let receipt = contract.wait_anchor(event.tx_hash, Duration::ZERO).await?;
        record_mined(store, size, &receipt).await?;
    }
    // Anchors noted as sent but not reflected on chain: mined ones are recorded, the rest
    // forgotten (they are sent again from the chain's head).
    let sent = on_store(store, |s| s.anchors(0, usize::MAX)).await?;
    for a in sent.into_iter().filter(|a| a.status == "sent") {
        let mined = match a.tx_hash.parse::<TxHash>() {
            Ok(tx) if a.size <= on_chain.size => {
                contract.wait_anchor(tx, Duration::ZERO).await.ok()
            }
            _ => None,
        };
        match mined {
            Some(r) => record_mined(store, a.size, &r).await?,
            None => {
                let size = a.size;
                on_store(store, move |s| s.delete_anchor(size)).await?;
            }
        }
    }
    Ok(on_chain)
}

async fn record_mined(store: &Arc<dyn Store>, size: u64, r: &AnchorReceipt) -> Result<()> {
    let (block, hash, time, gas) = (
        r.block_number,
        r.block_hash.to_string(),
        r.block_timestamp,
        r.gas_used,
    );
    on_store(store, move |s| {
        s.set_anchor_mined(size, block, &hash, time, gas)
    })
    .await
}

impl LogAnchorer {
    /// Reconciles with the chain until it answers (the node was down at start).
    async fn reconcile_when_reachable(&mut self) -> Option<TreeHead> {
        let mut backoff = Duration::from_millis(500);
        loop {
            match reconcile(&self.store, &self.contract).await {
                Ok(head) => {
                    self.state.send_modify(|s| s.last_error = None);
                    return Some(head);
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

    /// Runs until shutdown, from the reconciled chain head `anchored` (`None`: reconcile first,
    /// once the chain answers).
    pub async fn run(mut self, anchored: Option<TreeHead>) {
        let mut anchored = match anchored {
            Some(head) => head,
            None => match self.reconcile_when_reachable().await {
                Some(head) => head,
                None => return,
            },
        };
        let (done_tx, mut done_rx) =
            mpsc::unbounded_channel::<(u64, Result<AnchorReceipt, ChainError>)>();
        let mut in_flight: VecDeque<InFlight> = VecDeque::new();
        let mut results: BTreeMap<u64, Result<AnchorReceipt, ChainError>> = BTreeMap::new();
        let mut last_send: Option<Instant> = None;
        let mut backoff = Duration::from_millis(200);
        let mut retry_at: Option<Instant> = None;
        let mut unconfirmed: VecDeque<(u64, AnchorInfo)> = VecDeque::new();
        self.sizes.send_modify(|s| {
            s.anchored = anchored.size;
            s.confirmed = anchored.size;
        });
        loop {
            if *self.shutdown.borrow() {
                return;
            }
            // Apply mined anchors in size order.
            while let Some(front) = in_flight.front() {
                let Some(result) = results.remove(&front.head.size) else {
                    break;
                };
                let head = front.head;
                match result {
                    Ok(receipt) => {
                        in_flight.pop_front();
                        if let Err(e) = record_mined(&self.store, head.size, &receipt).await {
                            tracing::error!(target: "twinledger::anchor", error = %e, "cannot record a mined anchor");
                        }
                        anchored = head;
                        let info = AnchorInfo {
                            tx_hash: receipt.tx_hash.to_string(),
                            block_number: receipt.block_number,
                            block_timestamp: receipt.block_timestamp,
                            tree_size: Some(head.size),
                        };
                        tracing::debug!(target: "twinledger::anchor", size = head.size, tx = %receipt.tx_hash, gas = receipt.gas_used, "anchored");
                        self.sizes.send_modify(|s| s.anchored = head.size);
                        self.waiters
                            .resolve_below(Level::Anchored, head.size, &info);
                        unconfirmed.push_back((head.size, info));
                        self.state.send_modify(|s| s.last_error = None);
                        backoff = Duration::from_millis(200);
                    }
                    Err(e) => {
                        self.fail(
                            &format!("anchoring failed: {e}"),
                            &mut backoff,
                            &mut retry_at,
                        );
                        // Later anchors in flight built on this one; start again from the chain.
                        for f in in_flight.drain(..) {
                            results.remove(&f.head.size);
                            let size = f.head.size;
                            let _ = on_store(&self.store, move |s| s.delete_anchor(size)).await;
                        }
                        match reconcile(&self.store, &self.contract).await {
                            Ok(h) => anchored = h,
                            Err(e) => {
                                tracing::error!(target: "twinledger::anchor", error = %e, "cannot reconcile with the chain")
                            }
                        }
                    }
                }
            }
            self.confirm(&mut unconfirmed).await;

            let tree_size = *self.tree.borrow();
            let base = in_flight.back().map_or(anchored, |f| f.head);
            let now = Instant::now();
            let interval_ok = last_send.is_none_or(|t| now >= t + self.config.min_interval);
            let retry_ok = retry_at.is_none_or(|t| now >= t);
            if tree_size > base.size
                && in_flight.len() < self.config.in_flight.max(1)
                && interval_ok
                && retry_ok
            {
                match self.send(base, tree_size).await {
                    Ok(flight) => {
                        retry_at = None;
                        last_send = Some(Instant::now());
                        let (contract, done, timeout) = (
                            self.contract.clone(),
                            done_tx.clone(),
                            self.config.receipt_timeout,
                        );
                        let (size, tx) = (flight.head.size, flight.tx);
                        tokio::spawn(async move {
                            let _ = done.send((size, contract.wait_anchor(tx, timeout).await));
                        });
                        in_flight.push_back(flight);
                    }
                    Err(SendFailure { message, refused }) => {
                        self.fail(&message, &mut backoff, &mut retry_at);
                        if refused && in_flight.is_empty() {
                            match reconcile(&self.store, &self.contract).await {
                                Ok(h) => anchored = h,
                                Err(e) => {
                                    tracing::error!(target: "twinledger::anchor", error = %e, "cannot reconcile with the chain")
                                }
                            }
                        }
                    }
                }
                continue;
            }
            // Wake for the retry or the minimum interval only when there is something to send;
            // otherwise a new commit, a receipt or the periodic confirmation check wakes us.
            let pending_work = tree_size > base.size;
            let wake = match (retry_at, last_send) {
                (Some(t), _) if pending_work && t > now => t,
                (_, Some(t)) if pending_work && t + self.config.min_interval > now => {
                    t + self.config.min_interval
                }
                _ => now + Duration::from_secs(1),
            };
            tokio::select! {
                r = done_rx.recv() => {
                    if let Some((size, result)) = r {
                        results.insert(size, result);
                    }
                }
                // The writer is gone (the ledger was dropped): nothing more will come.
                r = self.tree.changed() => if r.is_err() { return; },
                _ = tokio::time::sleep_until(wake.max(now + Duration::from_millis(1))) => {}
                _ = self.shutdown.changed() => {}
            }
        }
    }

    fn fail(&self, msg: &str, backoff: &mut Duration, retry_at: &mut Option<Instant>) {
        tracing::warn!(target: "twinledger::anchor", error = %msg, retry_in_ms = backoff.as_millis() as u64, "anchoring failed; records stay pending");
        self.state
            .send_modify(|s| s.last_error = Some(msg.to_owned()));
        self.waiters.fail_all(msg);
        *retry_at = Some(Instant::now() + *backoff);
        *backoff = (*backoff * 2).min(Duration::from_secs(5));
    }

    /// Anchors the tree of up to `batch_max` more records than `base`.
    async fn send(&self, base: TreeHead, tree_size: u64) -> Result<InFlight, SendFailure> {
        let size = tree_size.min(base.size + self.config.batch_max.max(1));
        let (head, proof) = on_store(&self.store, move |s| {
            let head = s.tree_head(size)?;
            let proof = match base.size {
                0 => None,
                first => Some(s.consistency_proof(first, size)?),
            };
            Ok((head, proof))
        })
        .await
        .map_err(SendFailure::from)?;
        let tx = self
            .contract
            .send_anchor(&head, proof.as_ref())
            .await
            .map_err(|e| SendFailure {
                refused: matches!(e, ChainError::Refused(_)),
                message: format!("chain unavailable: {e}"),
            })?;
        let (root, prev, txs) = (head.root, base.size, tx.to_string());
        on_store(&self.store, move |s| {
            s.put_anchor_sent(size, &root, prev, &txs)
        })
        .await
        .map_err(SendFailure::from)?;
        Ok(InFlight { head, tx })
    }

    /// Marks anchors confirmed once `confirmations` blocks hold them.
    async fn confirm(&self, unconfirmed: &mut VecDeque<(u64, AnchorInfo)>) {
        if unconfirmed.is_empty() {
            return;
        }
        let need = self.config.confirmations.max(1);
        let head_block = if need == 1 {
            u64::MAX
        } else {
            match self.contract.client().status().await {
                Ok(s) => s.block_number,
                Err(_) => return,
            }
        };
        let mut confirmed = None;
        while let Some((size, info)) = unconfirmed.front() {
            if info.block_number.saturating_add(need - 1) > head_block {
                break;
            }
            self.waiters.resolve_below(Level::Confirmed, *size, info);
            confirmed = Some(*size);
            unconfirmed.pop_front();
        }
        if let Some(size) = confirmed {
            self.sizes.send_modify(|s| s.confirmed = size);
            let _ = on_store(&self.store, move |s| s.set_anchors_confirmed(size)).await;
        }
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
