//! After an anchor is mined: confirmations, finality, and the checks that the chain still
//! holds what was anchored (a reorganisation or a restarted chain rewinds).

use tokio::time::Instant;
use twinledger_chain::{AnchorReceipt, ChainError};

use super::{
    FINALITY_CHECK_INTERVAL, HEAD_CHECK_INTERVAL, LogAnchorer, Progress, Rewind, anchor_info,
    record_mined,
};
use crate::anchor::Level;

impl LogAnchorer {
    /// Marks anchors confirmed once `confirmations` blocks hold them, checking first that the
    /// chain still has each in the block it was mined in.
    pub(super) async fn confirm(&self, p: &mut Progress) -> Option<Rewind> {
        if p.unconfirmed.is_empty() {
            return None;
        }
        let need = self.config.confirmations.max(1);
        let head_block = if need == 1 {
            u64::MAX
        } else {
            match self.contract.client().status().await {
                Ok(s) => s.block_number,
                Err(_) => return None,
            }
        };
        let mut confirmed = None;
        let mut rewind = None;
        while let Some((size, receipt)) = p.unconfirmed.front() {
            if receipt.block_number.saturating_add(need - 1) > head_block {
                break;
            }
            let size = *size;
            if need > 1 {
                match self.contract.receipt(receipt.tx_hash).await {
                    Ok(Some(now)) if now.block_hash == receipt.block_hash => {}
                    Ok(Some(now)) => {
                        // Mined again in another block: count confirmations from there.
                        let _ = record_mined(&self.store, size, &now).await;
                        if let Some(front) = p.unconfirmed.front_mut() {
                            front.1 = now;
                        }
                        break;
                    }
                    Ok(None) | Err(ChainError::Reverted(_)) => {
                        rewind = Some(Rewind::Reorganised(format!(
                            "anchor {} of tree size {size} is no longer in block {}",
                            receipt.tx_hash, receipt.block_number
                        )));
                        break;
                    }
                    Err(_) => break,
                }
            }
            let info = anchor_info(size, receipt);
            self.waiters.resolve_below(Level::Confirmed, size, &info);
            confirmed = Some(size);
            p.unconfirmed.pop_front();
        }
        if let Some(size) = confirmed {
            self.sizes.send_modify(|s| s.confirmed = size);
            let _ = self.store.set_anchors_confirmed(size).await;
        }
        rewind
    }

    /// The latest anchor the database notes as mined, as a receipt: at start its records are
    /// waited on for finality like those of a new anchor.
    pub(super) async fn latest_mined(&self) -> Option<(u64, AnchorReceipt)> {
        let a = self.store.latest_mined_anchor().await.ok()??;
        Some((
            a.size,
            AnchorReceipt {
                tx_hash: a.tx_hash.parse().ok()?,
                block_number: a.block_number?,
                block_hash: a.block_hash?.parse().ok()?,
                block_timestamp: a.block_time.unwrap_or(0),
                gas_used: a.gas_used.unwrap_or(0),
            },
        ))
    }

    /// Marks anchors finalized once the chain reports a finalized block at or above theirs
    /// (read at most every [`FINALITY_CHECK_INTERVAL`], only while anchors wait for it),
    /// checking first that the chain still has each in the block it was mined in. On a chain that
    /// reports no finalized block, records never read `finalized`.
    pub(super) async fn finalize(&self, p: &mut Progress) -> Option<Rewind> {
        if p.unfinalized.is_empty()
            || p.last_finality_check
                .is_some_and(|t| t.elapsed() < FINALITY_CHECK_INTERVAL)
        {
            return None;
        }
        p.last_finality_check = Some(Instant::now());
        let finalized_block = match self.contract.client().finalized_block().await {
            Ok(Some(b)) => b,
            // A node without the tag never finalizes anything: nothing is kept waiting for it.
            Ok(None) => {
                p.unfinalized.clear();
                return None;
            }
            Err(_) => return None,
        };
        let mut finalized = None;
        while let Some((size, receipt)) = p.unfinalized.front() {
            if receipt.block_number > finalized_block {
                break;
            }
            let size = *size;
            match self.contract.receipt(receipt.tx_hash).await {
                Ok(Some(now)) if now.block_hash == receipt.block_hash => {}
                Ok(Some(now)) => {
                    // Mined again in another block: its finality is that block's.
                    let _ = record_mined(&self.store, size, &now).await;
                    if let Some(front) = p.unfinalized.front_mut() {
                        front.1 = now;
                    }
                    continue;
                }
                Ok(None) | Err(ChainError::Reverted(_)) => {
                    return Some(Rewind::Reorganised(format!(
                        "anchor {} of tree size {size} is no longer in block {}",
                        receipt.tx_hash, receipt.block_number
                    )));
                }
                Err(_) => break,
            }
            let info = anchor_info(size, receipt);
            // Finalized is more than confirmed: a caller waiting for confirmations is done.
            self.waiters.resolve_below(Level::Confirmed, size, &info);
            self.waiters.resolve_below(Level::Finalized, size, &info);
            finalized = Some(size);
            p.unfinalized.pop_front();
        }
        if let Some(size) = finalized {
            self.sizes.send_modify(|s| {
                s.finalized = size;
                s.confirmed = s.confirmed.max(size);
            });
        }
        None
    }

    /// Every [`HEAD_CHECK_INTERVAL`], while nothing is in flight: the chain's latest head must
    /// still be ours, or a reorganisation dropped anchors (even confirmed ones).
    pub(super) async fn check_head(&self, p: &mut Progress) -> Option<Rewind> {
        if p.last_head_check.elapsed() < HEAD_CHECK_INTERVAL {
            return None;
        }
        p.last_head_check = Instant::now();
        let on_chain = self.contract.latest_head().await.ok()?;
        (on_chain != p.anchored).then(|| {
            Rewind::Reorganised(format!(
                "the chain's latest head is size {} but {} was anchored",
                on_chain.size, p.anchored.size
            ))
        })
    }
}
