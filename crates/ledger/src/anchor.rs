//! Anchoring: puts pending records on chain in log order.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, oneshot, watch};
use twinledger_chain::{ChainError, LegacyContract, TxHash};
use twinledger_store::{LegacyAnchor, Store, StoredRecord};

/// What a waiter learns about its record's anchor.
pub(crate) type AnchorOutcome = Result<LegacyAnchor, String>;

/// Callers waiting for the anchor of a record, by log index.
#[derive(Default)]
pub(crate) struct AnchorWaiters {
    by_index: Mutex<HashMap<u64, oneshot::Sender<AnchorOutcome>>>,
}

impl AnchorWaiters {
    pub fn register(&self, index: u64, tx: oneshot::Sender<AnchorOutcome>) {
        if let Ok(mut m) = self.by_index.lock() {
            m.insert(index, tx);
        }
    }

    fn resolve(&self, index: u64, outcome: AnchorOutcome) {
        let waiter = self.by_index.lock().ok().and_then(|mut m| m.remove(&index));
        if let Some(w) = waiter {
            let _ = w.send(outcome);
        }
    }

    /// Fails every waiter: while the head of the queue cannot be anchored, nothing behind it can
    /// (records are anchored in log order), so every caller learns it now.
    fn fail_all(&self, msg: &str) {
        let all: Vec<_> = match self.by_index.lock() {
            Ok(mut m) => m.drain().collect(),
            Err(_) => return,
        };
        for (_, w) in all {
            let _ = w.send(Err(msg.to_owned()));
        }
    }
}

/// The chain's health as the anchorer last saw it.
#[derive(Debug, Clone, Default)]
pub(crate) struct AnchorState {
    /// The last error, while the chain is failing.
    pub last_error: Option<String>,
}

/// Runs the legacy anchorer: one `updateTwin` per record, in log order.
pub(crate) async fn run_legacy(
    store: Arc<dyn Store>,
    contract: LegacyContract,
    waiters: Arc<AnchorWaiters>,
    committed: Arc<Notify>,
    state: watch::Sender<AnchorState>,
    receipt_timeout: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut backoff = Duration::from_millis(200);
    // Rows that cannot be decoded (edited by hand) are skipped, not retried forever; verify and
    // audit report them.
    let mut undecodable: HashSet<u64> = HashSet::new();
    loop {
        if *shutdown.borrow() {
            return;
        }
        let s = store.clone();
        let pending = tokio::task::spawn_blocking(move || s.pending(256)).await;
        let pending: Vec<StoredRecord> = match pending {
            Ok(Ok(p)) => p
                .into_iter()
                .filter(|r| !undecodable.contains(&r.index))
                .collect(),
            Ok(Err(e)) => {
                tracing::error!(target: "twinledger::anchor", error = %e, "cannot read pending records");
                sleep_or_shutdown(Duration::from_secs(1), &mut shutdown).await;
                continue;
            }
            Err(_) => return,
        };
        if pending.is_empty() {
            tokio::select! {
                _ = committed.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                _ = shutdown.changed() => {}
            }
            continue;
        }
        match anchor_legacy_batch(
            &store,
            &contract,
            &waiters,
            &pending,
            receipt_timeout,
            &mut undecodable,
        )
        .await
        {
            Ok(()) => {
                backoff = Duration::from_millis(200);
                state.send_modify(|s| s.last_error = None);
            }
            Err(e) => {
                let msg = format!("chain unavailable: {e}");
                tracing::warn!(target: "twinledger::anchor", error = %e, retry_in_ms = backoff.as_millis() as u64, "anchoring failed; records stay pending");
                state.send_modify(|s| s.last_error = Some(msg.clone()));
                waiters.fail_all(&msg);
                sleep_or_shutdown(backoff, &mut shutdown).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

async fn sleep_or_shutdown(d: Duration, shutdown: &mut watch::Receiver<bool>) {
    tokio::select! {
        _ = tokio::time::sleep(d) => {}
        _ = shutdown.changed() => {}
    }
}

/// The `_timestamp` argument for a record: its acceptance time in Unix seconds, as the seed
/// formats block timestamps. It is fixed by the record, so a resent transaction carries the same.
pub(crate) fn chain_timestamp(recorded_at_ms: i64) -> String {
    recorded_at_ms.div_euclid(1000).to_string()
}

async fn anchor_legacy_batch(
    store: &Arc<dyn Store>,
    contract: &LegacyContract,
    waiters: &AnchorWaiters,
    pending: &[StoredRecord],
    receipt_timeout: Duration,
    undecodable: &mut HashSet<u64>,
) -> Result<(), ChainError> {
    // Sends go out one at a time so that the account's nonces, and so the order of execution,
    // follow the log: the chain's latest value for a twin is then its latest version.
    let mut sent: Vec<(u64, TxHash, String)> = Vec::new();
    let mut failure = None;
    for row in pending {
        let record = match row.decode() {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(target: "twinledger::anchor", index = row.index, error = %e, "pending record is corrupt; not anchoring it");
                undecodable.insert(row.index);
                waiters.resolve(row.index, Err(format!("stored record is corrupt: {e}")));
                continue;
            }
        };
        let ts = chain_timestamp(record.recorded_at_ms);
        let hash = record.state_hash.to_hex();
        // A transaction sent before a crash or a failed receipt wait is looked up first, so the
        // record is not anchored twice.
        if let Some(tx) = row
            .anchor_tx
            .as_deref()
            .and_then(|t| t.parse::<TxHash>().ok())
        {
            match contract.update_receipt(tx).await {
                Ok(Some(r)) if r.records(record.twin_id.as_str(), &ts, &hash) => {
                    sent.push((row.index, tx, ts));
                    continue;
                }
                // Not mined yet but still in the node's pool: wait for it rather than send
                // a second transaction for the same record.
                Ok(None) if matches!(contract.client().knows_transaction(tx).await, Ok(true)) => {
                    sent.push((row.index, tx, ts));
                    continue;
                }
                Ok(_) => {}
                Err(e) if e.is_retryable() => {
                    failure = Some(e);
                    break;
                }
                Err(_) => {}
            }
        }
        match contract
            .send_update(record.twin_id.as_str(), &ts, &hash)
            .await
        {
            Ok(tx) => {
                let s = store.clone();
                let (idx, txs, tss) = (row.index, tx.to_string(), ts.clone());
                let _ =
                    tokio::task::spawn_blocking(move || s.set_legacy_sent(idx, &txs, &tss)).await;
                sent.push((row.index, tx, ts));
            }
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    for (index, tx, ts) in sent {
        let receipt = contract.wait_update(tx, receipt_timeout).await?;
        let anchor = LegacyAnchor {
            tx_hash: tx.to_string(),
            block_number: receipt.block_number,
            block_timestamp: receipt.block_timestamp,
            chain_timestamp: ts,
        };
        let s = store.clone();
        let a = anchor.clone();
        let stored = tokio::task::spawn_blocking(move || s.set_legacy_anchor(index, &a)).await;
        match stored {
            Ok(Ok(())) => waiters.resolve(index, Ok(anchor)),
            Ok(Err(e)) => {
                waiters.resolve(
                    index,
                    Err(format!("anchored in {tx} but not recorded: {e}")),
                );
                return Err(ChainError::Node(format!("store: {e}")));
            }
            Err(_) => return Err(ChainError::Node("store task failed".into())),
        }
    }
    match failure {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
