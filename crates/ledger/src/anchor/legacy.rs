//! Legacy mode: one `updateTwin` transaction of the seed contract per record, in log order.
//!
//! Transactions are pipelined: each record's goes out as soon as it is stored, under the next
//! nonce, without waiting for the ones before it to be mined, so on a chain that mines on a
//! timer a record waits for the next block, not for every transaction ahead of it. Nonces follow
//! the log, so the chain executes the records in log order and its latest value for a twin is
//! its latest version. Each transaction is signed and noted before it is sent; one the node no
//! longer holds (its answer was lost, the node dropped it) is sent again, byte for byte.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;
use twinledger_chain::{ChainError, LegacyContract, SignedTx, TxHash};
use twinledger_store::{LegacyAnchor, Store, StoredRecord};

use super::{AnchorInfo, AnchorWaiters, AnchoringStatus};
use crate::metrics::LedgerMetrics;

/// Transactions sent and not yet mined, at most.
const IN_FLIGHT: usize = 256;
/// How often receipts are looked for while transactions are in flight.
const POLL: Duration = Duration::from_millis(100);

/// A record's transaction, sent (or noted and about to be) and not yet seen mined.
struct Flight {
    index: u64,
    twin_id: String,
    chain_timestamp: String,
    data_hash: String,
    tx: TxHash,
    /// Its bytes, to send again; `None` for one found in the node's pool after a restart.
    signed: Option<SignedTx>,
    nonce: Option<u64>,
    sent_at: Instant,
}

/// Everything the legacy anchorer works with.
#[derive(Clone)]
pub(crate) struct LegacyAnchorer {
    pub store: Arc<dyn Store>,
    pub contract: LegacyContract,
    pub waiters: Arc<AnchorWaiters>,
    pub tree: watch::Receiver<u64>,
    pub state: watch::Sender<AnchoringStatus>,
    pub receipt_timeout: Duration,
    pub shutdown: watch::Receiver<bool>,
    pub metrics: LedgerMetrics,
}

/// The anchorer's working state between loop turns.
#[derive(Default)]
struct Progress {
    in_flight: VecDeque<Flight>,
    /// The nonce after the last transaction sent.
    next_nonce: Option<u64>,
    /// Rows that cannot be decoded (edited by hand) are skipped, not retried forever; verify and
    /// audit report them.
    undecodable: HashSet<u64>,
    /// Transactions sent for records whose database row could not note them (a full disk):
    /// looked up on the next round like a noted one, so a retry never sends a second.
    unnoted: HashMap<u64, TxHash>,
    /// The latest block number seen: a new one is when a transaction the node no longer holds
    /// is sent again.
    block: u64,
}

impl LegacyAnchorer {
    /// Runs until shutdown.
    pub async fn run(mut self) {
        let mut p = Progress::default();
        let mut backoff = Duration::from_millis(200);
        loop {
            if *self.shutdown.borrow() {
                return;
            }
            let turn = async {
                self.settle(&mut p).await?;
                self.send(&mut p).await
            }
            .await;
            match turn {
                Ok(()) => {
                    backoff = Duration::from_millis(200);
                    self.state.send_modify(|s| s.last_error = None);
                }
                Err(e) => {
                    self.metrics.anchor_failed();
                    let msg = format!("chain unavailable: {e}");
                    tracing::warn!(target: "twinledger::anchor", error = %e, retry_in_ms = backoff.as_millis() as u64, "anchoring failed; records stay pending");
                    self.state.send_modify(|s| s.last_error = Some(msg.clone()));
                    self.waiters.fail_all(&msg);
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = self.shutdown.changed() => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
            }
            let wait = if p.in_flight.is_empty() {
                Duration::from_secs(5)
            } else {
                POLL
            };
            tokio::select! {
                // The writer is gone (the ledger was dropped): nothing more will come.
                r = self.tree.changed() => if r.is_err() { return; },
                _ = tokio::time::sleep(wait) => {}
                _ = self.shutdown.changed() => {}
            }
        }
    }

    /// Notes the mined transactions at the front, in log order; sends again one the node no
    /// longer holds.
    async fn settle(&self, p: &mut Progress) -> Result<(), ChainError> {
        if p.in_flight.is_empty() {
            return Ok(());
        }
        let block = self.contract.client().status().await?.block_number;
        let new_block = block != p.block;
        p.block = block;
        while let Some(front) = p.in_flight.front() {
            let receipt = match self.contract.update_receipt(front.tx).await {
                Ok(r) => r,
                Err(ChainError::Reverted(tx)) => {
                    // The seed contract reverts nothing it is given; a revert means something
                    // else is wrong (gas, the account): everything is sent again from the node's
                    // count.
                    let index = front.index;
                    self.restart_from_node(p);
                    return Err(ChainError::Reverted(format!("{tx} (record {index})")));
                }
                Err(e) => return Err(e),
            };
            let Some(receipt) = receipt else {
                if new_block {
                    self.resend_if_lost(p).await?;
                }
                if front_waited(p) > self.receipt_timeout {
                    let msg = format!(
                        "transaction {} of record {} not mined after {} s; still waiting",
                        p.in_flight[0].tx,
                        p.in_flight[0].index,
                        self.receipt_timeout.as_secs()
                    );
                    tracing::warn!(target: "twinledger::anchor", error = %msg, "anchor late");
                    self.state.send_modify(|s| s.last_error = Some(msg.clone()));
                    self.waiters.fail_all(&msg);
                    if let Some(f) = p.in_flight.front_mut() {
                        f.sent_at = Instant::now();
                    }
                }
                return Ok(());
            };
            let Some(front) = p.in_flight.pop_front() else {
                break;
            };
            if !receipt.records(&front.twin_id, &front.chain_timestamp, &front.data_hash) {
                // Not this record's (a hash noted by an earlier run for other content): it is
                // sent again on the next round.
                tracing::warn!(target: "twinledger::anchor", index = front.index, tx = %front.tx, "a noted transaction records something else; sending the record again");
                self.restart_from_node(p);
                return Ok(());
            }
            self.note_mined(p, &front, receipt.block_number, receipt.block_timestamp)
                .await?;
        }
        Ok(())
    }

    /// The front transaction is unknown to the node (mined ones are known): its bytes are sent
    /// again; one without bytes (found after a restart) makes everything go out again.
    async fn resend_if_lost(&self, p: &mut Progress) -> Result<(), ChainError> {
        let Some(front) = p.in_flight.front() else {
            return Ok(());
        };
        if self.contract.client().knows_transaction(front.tx).await? {
            return Ok(());
        }
        match &front.signed {
            Some(signed) => {
                tracing::info!(target: "twinledger::anchor", index = front.index, tx = %front.tx, "the node lost a record's transaction; sending it again");
                if let Err(e) = self.contract.client().send_signed(signed).await {
                    tracing::debug!(target: "twinledger::anchor", tx = %front.tx, error = %e, "cannot send a record's transaction again");
                }
            }
            None => self.restart_from_node(p),
        }
        Ok(())
    }

    /// Forgets what is in flight (its records are pending again, and each noted transaction is
    /// looked up before another is sent) and takes the next nonce from the node.
    fn restart_from_node(&self, p: &mut Progress) {
        p.in_flight.clear();
        p.next_nonce = None;
    }

    async fn note_mined(
        &self,
        p: &mut Progress,
        flight: &Flight,
        block_number: u64,
        block_timestamp: u64,
    ) -> Result<(), ChainError> {
        let anchor = LegacyAnchor {
            tx_hash: flight.tx.to_string(),
            block_number,
            block_timestamp,
            chain_timestamp: flight.chain_timestamp.clone(),
        };
        let index = flight.index;
        match self.store.set_legacy_anchor(index, &anchor).await {
            Ok(()) => {
                p.unnoted.remove(&index);
                self.metrics.anchor_mined(None);
                // Records are mined in log order: every one before this is anchored too.
                self.metrics.anchored_below(index + 1);
                self.waiters.resolve_one(
                    index,
                    Ok(AnchorInfo {
                        tx_hash: anchor.tx_hash,
                        block_number,
                        block_timestamp,
                        tree_size: None,
                    }),
                );
                Ok(())
            }
            Err(e) => {
                p.unnoted.insert(index, flight.tx);
                self.waiters.resolve_one(
                    index,
                    Err(format!("anchored in {} but not recorded: {e}", flight.tx)),
                );
                self.restart_from_node(p);
                Err(ChainError::Node(format!("store: {e}")))
            }
        }
    }

    /// Sends the transactions of pending records not yet in flight, in log order.
    async fn send(&self, p: &mut Progress) -> Result<(), ChainError> {
        if p.in_flight.len() >= IN_FLIGHT {
            return Ok(());
        }
        let after = p.in_flight.back().map(|f| f.index);
        let pending = self
            .store
            .pending(IN_FLIGHT)
            .await
            .map_err(|e| ChainError::Node(format!("cannot read pending records: {e}")))?;
        for row in pending {
            if p.in_flight.len() >= IN_FLIGHT {
                break;
            }
            if after.is_some_and(|a| row.index <= a) || p.undecodable.contains(&row.index) {
                continue;
            }
            self.send_one(p, &row).await?;
        }
        Ok(())
    }

    async fn send_one(&self, p: &mut Progress, row: &StoredRecord) -> Result<(), ChainError> {
        let record = match row.decode() {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(target: "twinledger::anchor", index = row.index, error = %e, "pending record is corrupt; not anchoring it");
                p.undecodable.insert(row.index);
                self.waiters
                    .resolve_one(row.index, Err(format!("stored record is corrupt: {e}")));
                return Ok(());
            }
        };
        let ts = chain_timestamp(record.recorded_at_ms);
        let hash = record.state_hash.to_hex();
        let twin_id = record.twin_id.as_str().to_owned();
        let flight = |tx, signed, nonce| Flight {
            index: row.index,
            twin_id: twin_id.clone(),
            chain_timestamp: ts.clone(),
            data_hash: hash.clone(),
            tx,
            signed,
            nonce,
            sent_at: Instant::now(),
        };
        // A transaction sent before a crash or a lost answer is looked up first, so the record
        // is not anchored twice.
        if let Some(tx) = row
            .anchor_tx
            .as_deref()
            .and_then(|t| t.parse::<TxHash>().ok())
            .or_else(|| p.unnoted.get(&row.index).copied())
        {
            match self.contract.update_receipt(tx).await {
                Ok(Some(r)) if r.records(&twin_id, &ts, &hash) => {
                    let f = flight(tx, None, None);
                    return self
                        .note_mined(p, &f, r.block_number, r.block_timestamp)
                        .await;
                }
                // Not mined yet but still in the node's pool: waited for, not sent again.
                Ok(None) if self.contract.client().knows_transaction(tx).await? => {
                    p.in_flight.push_back(flight(tx, None, None));
                    // Its nonce is the node's to know: the next is asked for again.
                    p.next_nonce = None;
                    return Ok(());
                }
                Ok(_) => {}
                Err(e) if e.is_retryable() => return Err(e),
                Err(_) => {}
            }
        }
        let nonce = match p.in_flight.back().and_then(|f| f.nonce) {
            Some(n) => n + 1,
            // The node's count, never below ours: a stale provider's lower count would reuse
            // a nonce.
            None => self
                .contract
                .client()
                .nonce(true)
                .await?
                .max(p.next_nonce.unwrap_or(0)),
        };
        let signed = self
            .contract
            .prepare_update(&twin_id, &ts, &hash, nonce)
            .await?;
        let noted = self
            .store
            .set_legacy_sent(row.index, &signed.hash.to_string(), &ts)
            .await;
        if noted.is_err() {
            tracing::warn!(target: "twinledger::anchor", index = row.index, tx = %signed.hash, "cannot note a transaction before sending it; it is remembered until it can be recorded");
            p.unnoted.insert(row.index, signed.hash);
        }
        match self.contract.client().send_signed(&signed).await {
            Ok(()) => {}
            // The answer was lost: the node may hold it. Waited for as sent, and sent again at
            // the next block if the node does not know it.
            Err(e) if e.is_retryable() => {
                tracing::warn!(target: "twinledger::anchor", index = row.index, tx = %signed.hash, error = %e, "no answer to a record's transaction; it is sent again until the node holds it");
            }
            Err(e) => return Err(e),
        }
        self.metrics.anchor_sent();
        p.next_nonce = Some(nonce + 1);
        p.in_flight
            .push_back(flight(signed.hash, Some(signed), Some(nonce)));
        Ok(())
    }
}

/// How long the front transaction has waited.
fn front_waited(p: &Progress) -> Duration {
    p.in_flight
        .front()
        .map_or(Duration::ZERO, |f| f.sent_at.elapsed())
}

/// The `_timestamp` argument for a record: its acceptance time in Unix seconds, as the seed
/// formats block timestamps. It is fixed by the record, so a resent transaction carries the same.
pub(crate) fn chain_timestamp(recorded_at_ms: i64) -> String {
    recorded_at_ms.div_euclid(1000).to_string()
}
