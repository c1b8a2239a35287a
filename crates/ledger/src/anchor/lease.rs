//! One node anchors at a time: the holder of the store's anchoring lease. The lease is renewed
//! on the database's clock and taken over by another node once it runs out, so a node that dies
//! or stalls hands anchoring on within [`LEASE_TTL`] and a renewal interval. A holder that
//! cannot renew stops anchoring before its lease can have run out; should it still send an
//! anchor late, the contract's consistency check refuses a head that does not extend the one on
//! chain, and the new holder read the account's nonce from the chain when it took over.
//!
//! Nodes without the lease follow what the holder anchors through the database, so that their
//! callers waiting for anchoring are answered and their event streams show every anchor.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::sync::watch;
use tokio::time::Instant;
use twinledger_chain::LogContract;
use twinledger_store::{Anchor, Store};

use super::log::covering_info;
use super::{AnchorInfo, AnchorWaiters, AnchoredSizes, AnchoringStatus, Level};
use crate::LedgerMetrics;

/// How long a lease runs without renewal.
pub(crate) const LEASE_TTL: Duration = Duration::from_secs(10);

/// How often the holder renews, and how often the others try to take it.
pub(crate) const LEASE_RENEWAL: Duration = Duration::from_secs(3);

/// A holder that has not renewed for this long stops anchoring: its lease may run out before
/// the next renewal gets through.
const HOLDER_GIVES_UP: Duration = Duration::from_secs(7);

/// How often a node without the lease reads what the holder anchored.
const FOLLOW_INTERVAL: Duration = Duration::from_millis(500);

/// Runs one term of anchoring until the receiver says stop.
pub(crate) type Term = Box<dyn FnMut(watch::Receiver<bool>) -> BoxFuture<'static, ()> + Send>;

/// Anchoring on whichever node holds the lease.
pub(crate) struct Leadership {
    pub store: Arc<dyn Store>,
    /// This node's name in the lease.
    pub holder: String,
    pub shutdown: watch::Receiver<bool>,
    /// What this node does while it holds the lease.
    pub term: Term,
    /// What it does while another node anchors: follow the anchors.
    pub follower: Follower,
    /// Where `/health` reads whether this node anchors.
    pub state: watch::Sender<AnchoringStatus>,
}

impl Leadership {
    /// Takes the lease when it can, anchors while it holds it, follows otherwise; until
    /// shutdown, when a held lease is given back so another node takes over at once.
    pub async fn run(mut self) {
        loop {
            let Some(epoch) = self.take().await else {
                return;
            };
            tracing::info!(target: "twinledger::anchor", holder = %self.holder, epoch, "this node holds the anchoring lease and anchors");
            self.state.send_modify(|s| s.this_node_anchors = true);
            let (stop_tx, stop_rx) = watch::channel(false);
            let mut term = tokio::spawn((self.term)(stop_rx));
            let mut renewed = Instant::now();
            let shutting_down = loop {
                tokio::select! {
                    // An anchorer ends by itself only when the ledger is gone.
                    _ = &mut term => break true,
                    changed = self.shutdown.changed() => {
                        if changed.is_err() || *self.shutdown.borrow() {
                            break true;
                        }
                    }
                    _ = tokio::time::sleep(LEASE_RENEWAL) => {
                        // A renewal that hangs (a database that does not answer) must not keep
                        // this node anchoring past its lease: it is given until the give-up
                        // time, not longer.
                        let left = HOLDER_GIVES_UP.saturating_sub(renewed.elapsed());
                        let renewal = self.store.anchor_lease(&self.holder, LEASE_TTL);
                        match tokio::time::timeout(left, renewal).await {
                            Ok(Ok(Some(e))) if e == epoch => renewed = Instant::now(),
                            Ok(Ok(_)) => {
                                tracing::warn!(target: "twinledger::anchor", holder = %self.holder, epoch, "the anchoring lease went to another node; this node stops anchoring");
                                break false;
                            }
                            Ok(Err(e)) if renewed.elapsed() < HOLDER_GIVES_UP => {
                                tracing::warn!(target: "twinledger::anchor", error = %e, "cannot renew the anchoring lease; trying again");
                            }
                            _ => {
                                tracing::warn!(target: "twinledger::anchor", holder = %self.holder, "cannot renew the anchoring lease; this node stops anchoring before it runs out");
                                break false;
                            }
                        }
                    }
                }
            };
            let _ = stop_tx.send(true);
            let _ = term.await;
            self.state.send_modify(|s| s.this_node_anchors = false);
            if shutting_down {
                if let Err(e) = self.store.release_anchor_lease(&self.holder).await {
                    tracing::warn!(target: "twinledger::anchor", error = %e, "cannot give back the anchoring lease; another node takes it once it runs out");
                }
                return;
            }
        }
    }

    /// Waits for the lease, following the holder meanwhile; `None` at shutdown.
    async fn take(&mut self) -> Option<u64> {
        let mut next_try = Instant::now();
        loop {
            if *self.shutdown.borrow() {
                return None;
            }
            if Instant::now() >= next_try {
                match self.store.anchor_lease(&self.holder, LEASE_TTL).await {
                    Ok(Some(epoch)) => return Some(epoch),
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!(target: "twinledger::anchor", error = %e, "cannot read the anchoring lease");
                    }
                }
                next_try = Instant::now() + LEASE_RENEWAL;
            }
            self.follower.follow().await;
            tokio::select! {
                _ = tokio::time::sleep(FOLLOW_INTERVAL) => {}
                changed = self.shutdown.changed() => {
                    if changed.is_err() {
                        return None;
                    }
                }
            }
        }
    }
}

/// What a node without the lease learns from the database about what the holder anchored.
pub(crate) enum Follower {
    /// Log mode: anchored heads.
    Log(LogFollower),
    /// Legacy mode: each record's own transaction, for the callers waiting here.
    Legacy(LegacyFollower),
}

impl Follower {
    async fn follow(&mut self) {
        match self {
            Self::Log(f) => f.follow().await,
            Self::Legacy(f) => f.follow().await,
        }
    }
}

/// Log mode: the anchored, confirmed and finalized sizes (from the anchors noted and the
/// chain's finality), for this node's waiting callers and its event streams.
pub(crate) struct LogFollower {
    pub store: Arc<dyn Store>,
    pub contract: LogContract,
    pub waiters: Arc<AnchorWaiters>,
    pub sizes: watch::Sender<AnchoredSizes>,
    pub metrics: LedgerMetrics,
}

/// Anchors read per turn.
const FOLLOW_PAGE: usize = 1000;

impl LogFollower {
    async fn follow(&mut self) {
        let known = *self.sizes.borrow();
        // From the first anchor not known confirmed: its status may still move.
        let anchors = match self.store.anchors(known.confirmed + 1, FOLLOW_PAGE).await {
            Ok(a) => a,
            Err(e) => {
                tracing::debug!(target: "twinledger::anchor", error = %e, "cannot read anchors");
                return;
            }
        };
        let mut mined = anchors.iter().rev().filter(|a| a.status != "sent");
        let anchored = mined.next();
        let confirmed = anchors.iter().rev().find(|a| a.status == "confirmed");
        let finalized = match anchored {
            Some(_) => self.finalized(anchors.iter()).await,
            None => None,
        };
        let resolve = |level, a: Option<&Anchor>| {
            if let Some(info) = a.and_then(|a| covering_info(a).map(|i| (a.size, i))) {
                self.waiters.resolve_below(level, info.0, &info.1);
            }
        };
        if let Some(a) = anchored {
            self.metrics.anchored_below(a.size);
        }
        resolve(Level::Anchored, anchored);
        resolve(Level::Confirmed, confirmed);
        resolve(Level::Confirmed, finalized);
        resolve(Level::Finalized, finalized);
        self.sizes.send_if_modified(|s| {
            let before = *s;
            if let Some(a) = anchored {
                s.anchored = s.anchored.max(a.size);
            }
            if let Some(a) = confirmed.or(finalized) {
                s.confirmed = s.confirmed.max(a.size);
            }
            if let Some(a) = finalized {
                s.finalized = s.finalized.max(a.size);
            }
            *s != before
        });
    }

    /// The largest mined anchor in a block the chain reports finalized, if any.
    async fn finalized<'a>(&self, anchors: impl Iterator<Item = &'a Anchor>) -> Option<&'a Anchor> {
        let block = self.contract.client().finalized_block().await.ok()??;
        anchors
            .filter(|a| a.status != "sent" && a.block_number.is_some_and(|b| b <= block))
            .max_by_key(|a| a.size)
    }
}

/// Legacy mode: answers the callers waiting here once the holder noted their records' mined
/// transactions.
pub(crate) struct LegacyFollower {
    pub store: Arc<dyn Store>,
    pub waiters: Arc<AnchorWaiters>,
}

/// Waiting records looked up per turn.
const LEGACY_FOLLOW_MAX: usize = 256;

impl LegacyFollower {
    async fn follow(&mut self) {
        for index in self.waiters.waiting_indexes(LEGACY_FOLLOW_MAX) {
            let Ok(Some(row)) = self.store.record_at(index).await else {
                continue;
            };
            if let Some(a) = row.legacy_anchor() {
                self.waiters.resolve_one(
                    index,
                    Ok(AnchorInfo {
                        tx_hash: a.tx_hash,
                        block_number: a.block_number,
                        block_timestamp: a.block_timestamp,
                        tree_size: None,
                    }),
                );
            }
        }
    }
}
