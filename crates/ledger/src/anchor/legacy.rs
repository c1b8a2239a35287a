//! Legacy mode: one `updateTwin` transaction of the seed contract per record, in log order.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use twinledger_chain::{ChainError, LegacyContract, TxHash};
use twinledger_store::{LegacyAnchor, Store, StoredRecord};

use super::{AnchorInfo, AnchorWaiters, AnchoringStatus};

/// Runs the legacy anchorer: one `updateTwin` per record, in log order.
pub(crate) async fn run_legacy(
    store: Arc<dyn Store>,
    contract: LegacyContract,
    waiters: Arc<AnchorWaiters>,
    mut tree: watch::Receiver<u64>,
    state: watch::Sender<AnchoringStatus>,
    receipt_timeout: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut backoff = Duration::from_millis(200);
    // Rows that cannot be decoded (edited by hand) are skipped, not retried forever; verify and
    // audit report them.
    let mut undecodable: HashSet<u64> = HashSet::new();
    // Transactions sent for records whose database row could not note them (a full disk):
    // looked up on the next round like a noted one, so a retry never sends a second.
    let mut unnoted: HashMap<u64, TxHash> = HashMap::new();
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
                // The writer is gone (the ledger was dropped): nothing more will come.
                r = tree.changed() => if r.is_err() { return; },
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
            &mut unnoted,
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
    unnoted: &mut HashMap<u64, TxHash>,
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
                waiters.resolve_one(row.index, Err(format!("stored record is corrupt: {e}")));
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
            .or_else(|| unnoted.get(&row.index).copied())
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
                let noted =
                    tokio::task::spawn_blocking(move || s.set_legacy_sent(idx, &txs, &tss)).await;
                if !matches!(noted, Ok(Ok(()))) {
                    tracing::warn!(target: "twinledger::anchor", index = row.index, tx = %tx, "cannot note a sent transaction; it is remembered until it can be recorded");
                    unnoted.insert(row.index, tx);
                }
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
        if !matches!(stored, Ok(Ok(()))) {
            unnoted.insert(index, tx);
        }
        match stored {
            Ok(Ok(())) => {
                unnoted.remove(&index);
                waiters.resolve_one(
                    index,
                    Ok(AnchorInfo {
                        tx_hash: anchor.tx_hash,
                        block_number: anchor.block_number,
                        block_timestamp: anchor.block_timestamp,
                        tree_size: None,
                    }),
                )
            }
            Ok(Err(e)) => {
                waiters.resolve_one(
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
