//! Anchoring: puts records on chain in log order, and tells waiting callers when it happened.

pub(crate) mod lease;
pub(crate) mod legacy;
pub(crate) mod log;
pub(crate) mod loss;
mod pacing;
pub(crate) mod reconcile;

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde::Serialize;
use tokio::sync::oneshot;

/// Where a record was anchored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AnchorInfo {
    /// The anchoring transaction.
    pub tx_hash: String,
    /// Block holding it.
    pub block_number: u64,
    /// That block's timestamp (Unix seconds).
    pub block_timestamp: u64,
    /// Log mode: the anchored tree size (the record is one of its leaves).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tree_size: Option<u64>,
}

/// What a waiter learns.
pub(crate) type AnchorOutcome = Result<AnchorInfo, String>;

/// How far a waiter waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Level {
    Anchored,
    Confirmed,
    Finalized,
}

/// Waiting callers by level and log index.
type Waiting = BTreeMap<(Level, u64), Vec<oneshot::Sender<AnchorOutcome>>>;

/// Callers waiting for records to be anchored or confirmed, by log index.
#[derive(Default)]
pub(crate) struct AnchorWaiters {
    waiting: Mutex<Waiting>,
}

impl AnchorWaiters {
    pub fn register(&self, index: u64, level: Level, tx: oneshot::Sender<AnchorOutcome>) {
        if let Ok(mut m) = self.waiting.lock() {
            m.entry((level, index)).or_default().push(tx);
        }
    }

    /// Resolves every waiter at `level` for a record below `size` (log mode: an anchored tree of
    /// `size` leaves holds them all).
    pub fn resolve_below(&self, level: Level, size: u64, info: &AnchorInfo) {
        let done: Vec<_> = match self.waiting.lock() {
            Ok(mut m) => {
                let rest = m.split_off(&(level, size));
                let below = std::mem::replace(&mut *m, rest);
                // Keys of other levels that sorted below were split off with these; put back.
                let (mine, others): (Vec<_>, Vec<_>) =
                    below.into_iter().partition(|((l, _), _)| *l == level);
                m.extend(others);
                mine
            }
            Err(_) => return,
        };
        for (_, senders) in done {
            for s in senders {
                let _ = s.send(Ok(info.clone()));
            }
        }
    }

    /// Resolves the waiters of one record at every level (legacy mode has no confirmations).
    pub fn resolve_one(&self, index: u64, outcome: AnchorOutcome) {
        let senders: Vec<_> = match self.waiting.lock() {
            Ok(mut m) => [Level::Anchored, Level::Confirmed, Level::Finalized]
                .into_iter()
                .filter_map(|l| m.remove(&(l, index)))
                .flatten()
                .collect(),
            Err(_) => return,
        };
        for s in senders {
            let _ = s.send(outcome.clone());
        }
    }

    /// Log indexes someone waits for, lowest first, at most `limit`.
    pub fn waiting_indexes(&self, limit: usize) -> Vec<u64> {
        let Ok(m) = self.waiting.lock() else {
            return Vec::new();
        };
        let mut indexes: Vec<u64> = m.keys().map(|(_, index)| *index).collect();
        indexes.sort_unstable();
        indexes.dedup();
        indexes.truncate(limit);
        indexes
    }

    /// Fails every waiter: while the head of the log cannot be anchored nothing behind it can
    /// be either (records are anchored in log order), so every caller learns it now.
    pub fn fail_all(&self, msg: &str) {
        let all = match self.waiting.lock() {
            Ok(mut m) => std::mem::take(&mut *m),
            Err(_) => return,
        };
        for s in all.into_values().flatten() {
            let _ = s.send(Err(msg.to_owned()));
        }
    }
}

/// Anchoring as the anchorer last saw it.
#[derive(Debug, Clone, Default, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AnchoringStatus {
    /// Whether this node anchors: of the nodes sharing a database, the one holding the
    /// anchoring lease does (a node alone on its database always does).
    pub this_node_anchors: bool,
    /// The last error, while anchoring is failing.
    pub last_error: Option<String>,
    /// Anchors sent again with higher fees because they waited too long.
    pub replacements: u64,
    /// Times a chain reorganisation dropped anchors that were then sent again.
    pub reorganisations: u64,
    /// Set when another process was seen sending with this service's key.
    pub other_sender: Option<String>,
    /// Times the embedded chain came back without anchors it had mined (from a snapshot older
    /// than a hard kill), each recorded as a `chain_state_lost` event and anchored again.
    pub chain_state_losses: u64,
    /// Anchored heads the embedded chain lost, over all those times.
    pub lost_heads: u64,
}

/// The anchored and confirmed tree sizes (log mode).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AnchoredSizes {
    /// Records below this index are in a mined anchor.
    pub anchored: u64,
    /// Records below this index are in an anchor with enough confirmations.
    pub confirmed: u64,
    /// Records below this index are in an anchor in a block the chain reports finalized.
    pub finalized: u64,
}

impl AnchoredSizes {
    /// The status of the record at log index `index` (log mode).
    pub fn status_of(&self, index: u64) -> crate::Status {
        use crate::Status;
        if index < self.finalized {
            Status::Finalized
        } else if index < self.confirmed {
            Status::Confirmed
        } else if index < self.anchored {
            Status::Anchored
        } else {
            Status::Pending
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> AnchorInfo {
        AnchorInfo {
            tx_hash: "0x1".into(),
            block_number: 1,
            block_timestamp: 1,
            tree_size: Some(3),
        }
    }

    #[test]
    fn resolving_below_a_size_leaves_later_records_and_other_levels_waiting() {
        let w = AnchorWaiters::default();
        let mut rx = Vec::new();
        for (index, level) in [
            (0, Level::Anchored),
            (2, Level::Anchored),
            (3, Level::Anchored),
            (1, Level::Confirmed),
        ] {
            let (tx, r) = oneshot::channel();
            w.register(index, level, tx);
            rx.push(r);
        }
        w.resolve_below(Level::Anchored, 3, &info());
        assert_eq!(rx[0].try_recv().expect("resolved"), Ok(info()));
        assert_eq!(rx[1].try_recv().expect("resolved"), Ok(info()));
        assert!(
            rx[2].try_recv().is_err(),
            "index 3 is not in a tree of size 3"
        );
        assert!(rx[3].try_recv().is_err(), "confirmation is another level");
        w.resolve_below(Level::Confirmed, 3, &info());
        assert!(rx[3].try_recv().is_ok());
        w.fail_all("down");
        assert_eq!(rx[2].try_recv().expect("failed"), Err("down".into()));
    }
}
