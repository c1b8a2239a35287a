//! Group commit: one thread gathers concurrent submissions into batches and appends each in one
//! transaction.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{broadcast, mpsc, oneshot, watch};
use twinledger_core::Record;
use twinledger_store::{AppendOutcome, Appended, NewRecord, Store, StoreError};

use crate::anchor::{AnchorOutcome, AnchorWaiters, Level};
use crate::metrics::LedgerMetrics;
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
    /// Counted in the answering task, off the writer thread.
    pub metrics: LedgerMetrics,
}

/// What one batch came to, for the callers waiting on it.
enum Committed {
    Appended {
        replies: Vec<Reply>,
        results: Vec<Appended>,
        shifts: Vec<Record>,
        size: u64,
        took: Duration,
        /// Of which the log's serialization point was held.
        held: Duration,
    },
    Failed {
        replies: Vec<Reply>,
        error: String,
        /// The storage failed mid-commit: the batch may be on disk or not.
        unknown: bool,
    },
}

type Reply = (
    oneshot::Sender<Result<Appended>>,
    Option<(Level, oneshot::Sender<AnchorOutcome>)>,
);

/// Runs the writer until every sender is dropped. Callers are answered from a task on
/// `runtime`: waking each of a batch's callers from this thread would put every one through
/// the runtime's shared queue; one wake per batch hands them to a worker, which wakes them
/// locally.
pub(crate) fn run(
    store: Arc<dyn Store>,
    mut rx: mpsc::Receiver<WriteRequest>,
    batch_max: usize,
    outlets: Outlets,
    runtime: tokio::runtime::Handle,
) {
    let (done_tx, done_rx) = mpsc::unbounded_channel();
    runtime.spawn(answer(done_rx, outlets));
    let mut news: Vec<NewRecord> = Vec::with_capacity(batch_max);
    // Set once the storage failed an I/O call. After a failed sync the kernel may have dropped
    // the pages it could not write and a later sync succeeds anyway, so a commit acknowledged
    // after it could sit on data that is gone (PostgreSQL's fsync lesson of 2018): every later
    // write is refused until a restart, which lets SQLite recover the log from what is on disk.
    let mut failed_storage: Option<String> = None;
    while let Some(first) = rx.blocking_recv() {
        if failed_storage.is_none() {
            runtime.block_on(store.await_turn());
        }
        let mut replies = Vec::with_capacity(batch_max);
        let mut next = Some(first);
        while let Some(req) = next.take() {
            news.push(req.new);
            replies.push((req.reply, req.anchor_waiter));
            if news.len() < batch_max {
                next = rx.try_recv().ok();
            }
        }
        if let Some(error) = &failed_storage {
            news.clear();
            let committed = Committed::Failed {
                replies,
                error: error.clone(),
                unknown: false,
            };
            if done_tx.send(committed).is_err() {
                return;
            }
            continue;
        }
        let started = Instant::now();
        let committed = match runtime.block_on(store.append(std::mem::take(&mut news))) {
            Ok(AppendOutcome {
                results,
                derived,
                frontier,
                held,
            }) => Committed::Appended {
                replies,
                results,
                shifts: derived,
                size: frontier.size(),
                took: started.elapsed(),
                held,
            },
            Err(e) => {
                // The transaction was rolled back and the store extends the tree it holds, so
                // the next batch continues the log without a gap once the storage works again.
                tracing::error!(target: "twinledger::ledger", error = %e, "append failed");
                let unknown = matches!(e, StoreError::Io(_));
                let error = if unknown {
                    let error = format!(
                        "writes are refused until the service is restarted: the storage failed \
                         ({e})"
                    );
                    tracing::error!(target: "twinledger::ledger", error = %error, "storage failure; refusing writes");
                    failed_storage = Some(error.clone());
                    error
                } else {
                    e.to_string()
                };
                Committed::Failed {
                    replies,
                    error,
                    unknown,
                }
            }
        };
        if done_tx.send(committed).is_err() {
            // The runtime is gone: nobody is waiting any more.
            return;
        }
    }
}

/// Answers each batch's callers, in commit order.
async fn answer(mut done: mpsc::UnboundedReceiver<Committed>, outlets: Outlets) {
    let Outlets {
        waiters,
        tree,
        write_error,
        derived,
        metrics,
    } = outlets;
    while let Some(committed) = done.recv().await {
        match committed {
            Committed::Appended {
                replies,
                results,
                shifts,
                size,
                took,
                held,
            } => {
                let kinds = results
                    .iter()
                    .filter_map(|a| match a {
                        Appended::New(r) => Some(r.kind),
                        _ => None,
                    })
                    .chain(shifts.iter().map(|s| s.kind));
                let written = kinds.clone().count() as u64;
                metrics.committed(replies.len(), took, held, kinds);
                // This batch's own records: other nodes' batches may sit just below them.
                let acknowledged_from = size.saturating_sub(written);
                for ((reply, waiter), appended) in replies.into_iter().zip(results) {
                    // A replay's record was registered (or anchored) with its first request.
                    if let (Some((level, w)), Appended::New(record)) = (waiter, &appended) {
                        waiters.register(record.index, level, w);
                    }
                    let _ = reply.send(Ok(appended));
                }
                // Published after the waiters are registered, so no anchor can outrun them.
                grow(&tree, size);
                metrics.acknowledged(acknowledged_from, size);
                write_error.send_if_modified(|e| e.take().is_some());
                for shift in shifts {
                    if let Some(band) = shift_band(&shift) {
                        metrics.shifted(band);
                    }
                    // No receiver is fine: corrections are off.
                    let _ = derived.send(Arc::new(shift));
                }
            }
            Committed::Failed {
                replies,
                error,
                unknown,
            } => {
                // A failed write or sync may have reached the disk all the same.
                let msg = if unknown {
                    format!(
                        "{error}; whether this record was written is unknown until the restart \
                         (retry with the same Idempotency-Key to write it once)"
                    )
                } else {
                    format!("{error}; nothing was written")
                };
                write_error.send_replace(Some(error));
                metrics.write_failed();
                for (reply, _) in replies {
                    let _ = reply.send(Err(LedgerError::Store(msg.clone())));
                }
            }
        }
    }
}

/// The band a congruence shift event moved its twin into.
fn shift_band(record: &Record) -> Option<&str> {
    let state = record.state.as_object()?;
    if state.get("type")?.as_str()? != twinledger_core::congruence::SHIFT_EVENT {
        return None;
    }
    state.get("to")?.as_str()
}

/// Moves the published log size up to `size`; never down, since this writer's batches and
/// other nodes' (heard through the store) arrive in no particular order.
pub(crate) fn grow(tree: &watch::Sender<u64>, size: u64) {
    tree.send_if_modified(|s| {
        let grew = size > *s;
        if grew {
            *s = size;
        }
        grew
    });
}
