//! Retention of idempotency keys: a key only has to outlive the retries of its request, so keys
//! older than the retention are deleted in small batches instead of piling up forever.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use twinledger_store::Store;

use crate::ledger::now_ms;

/// Keys deleted per transaction: small, so that a prune holds the write lock only briefly and
/// group commits are not held up behind it.
const PRUNE_BATCH: usize = 1000;

/// Longest pause between two prunes.
const PRUNE_INTERVAL_MAX: Duration = Duration::from_secs(60);

/// Deletes keys older than `retention` at start and then periodically, until shutdown.
pub(crate) async fn prune_idempotency_keys(
    store: Arc<dyn Store>,
    retention: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    // A key outlives its retention by at most one interval; a short retention is pruned as
    // often as it expires keys, so that it is kept to within a factor of two.
    let interval = retention.clamp(Duration::from_secs(1), PRUNE_INTERVAL_MAX);
    let retention_ms = i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
    loop {
        let cutoff = now_ms().saturating_sub(retention_ms);
        let mut pruned = 0;
        loop {
            match store.prune_idempotency_keys(cutoff, PRUNE_BATCH).await {
                Ok(n) => {
                    pruned += n;
                    if n < PRUNE_BATCH {
                        break;
                    }
                }
                Err(e) => {
                    // Retried at the next interval; an unpruned key only costs space.
                    tracing::warn!(target: "twinledger::ledger", error = %e, "cannot prune idempotency keys");
                    break;
                }
            }
        }
        if pruned > 0 {
            tracing::debug!(target: "twinledger::ledger", pruned, "pruned idempotency keys past retention");
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            // A dropped ledger (Err) stops pruning as a shutdown does.
            r = shutdown.changed() => if r.is_err() || *shutdown.borrow() { return },
        }
    }
}
