//! Group commit: one thread appends every batch of concurrent submissions in one transaction.

use std::sync::Arc;

use tokio::sync::{broadcast, mpsc, oneshot, watch};
use twinledger_core::{Frontier, Record};
use twinledger_store::{AppendOutcome, Appended, NewRecord, Store};

use crate::anchor::{AnchorOutcome, AnchorWaiters, Level};
use crate::{LedgerError, Result};

/// One submission waiting for the writer.
pub(crate) struct WriteRequest {
    pub new: NewRecord,
    pub reply: oneshot::Sender<Result<Appended>>,
    /// Registered for the record's anchor outcome inside the writer, before the anchorer can
    /// see the record, so that no outcome is missed.
    pub anchor_waiter: Option<(Level, oneshot::Sender<AnchorOutcome>)>,
}

/// Where the writer tells the rest of the ledger what it committed.
pub(crate) struct Outlets {
    /// Callers waiting for anchors, registered for each new record before it is published.
    pub waiters: Arc<AnchorWaiters>,
    /// The log's size after the last commit (wakes the anchorer).
    pub tree: watch::Sender<u64>,
    /// Why the last append failed, until one succeeds (for `/health`).
    pub write_error: watch::Sender<Option<String>>,
    /// Records the store derived (congruence shifts), once committed.
    pub derived: broadcast::Sender<Arc<Record>>,
}

/// Runs the writer until every sender is dropped.
pub(crate) fn run(
    store: Arc<dyn Store>,
    mut rx: mpsc::Receiver<WriteRequest>,
    batch_max: usize,
    outlets: Outlets,
    mut frontier: Frontier,
) {
    let Outlets {
        waiters,
        tree,
        write_error,
        derived,
    } = outlets;
    let mut news: Vec<NewRecord> = Vec::with_capacity(batch_max);
    let mut replies = Vec::with_capacity(batch_max);
    while let Some(first) = rx.blocking_recv() {
        let mut next = Some(first);
        while let Some(req) = next.take() {
            news.push(req.new);
            replies.push((req.reply, req.anchor_waiter));
            if news.len() < batch_max {
                next = rx.try_recv().ok();
            }
        }
        match store.append(std::mem::take(&mut news), &frontier) {
            Ok(AppendOutcome {
                results,
                derived: shifts,
                frontier: next,
            }) => {
                frontier = next;
                for ((reply, waiter), appended) in replies.drain(..).zip(results) {
                    // A replay's record was registered (or anchored) with its first request.
                    if let (Some((level, w)), Appended::New(record)) = (waiter, &appended) {
                        waiters.register(record.index, level, w);
                    }
                    let _ = reply.send(Ok(appended));
                }
                // Published after the waiters are registered, so no anchor can outrun them.
                tree.send_replace(frontier.size());
                write_error.send_if_modified(|e| e.take().is_some());
                for shift in shifts {
                    // No receiver is fine: corrections are off.
                    let _ = derived.send(Arc::new(shift));
                }
            }
            Err(e) => {
                // The transaction was rolled back and `frontier` is still the tree before this
                // batch, so the next batch continues the log without a gap once the storage
                // works again.
                tracing::error!(target: "twinledger::ledger", error = %e, "append failed");
                let msg = format!("{e}; nothing was written");
                write_error.send_replace(Some(e.to_string()));
                for (reply, _) in replies.drain(..) {
                    let _ = reply.send(Err(LedgerError::Store(msg.clone())));
                }
            }
        }
    }
}
