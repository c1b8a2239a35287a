//! Reconciliation: the chain's latest head against the local log, at start and whenever the
//! anchorer starts again from the chain (a failure, a reorganisation, a restarted embedded
//! node). Local anchors are brought in line with what the chain holds.

use std::sync::Arc;

use twinledger_chain::{LogContract, SentAnchor, TxHash};
use twinledger_core::TreeHead;
use twinledger_store::{Anchor, Store};

use super::log::record_mined;
use super::loss::{ChainNotes, Reanchoring};
use crate::{LedgerError, Result};

/// The chain's view at reconciliation: its latest head, and anchors of ours still waiting in
/// the node's pool on top of it, in size order.
pub(crate) struct Reconciled {
    pub head: TreeHead,
    pub waiting: Vec<(TreeHead, SentAnchor)>,
    /// Mined anchors the chain no longer holds, now forgotten.
    pub lost: usize,
    /// Set when the lost anchors were recorded as a chain-state loss.
    pub reanchoring: Option<Reanchoring>,
}

/// Compares the chain's latest head with the local log: the log must hold at least that many
/// records and have the same root at that size, or anchoring on top of it would extend a
/// history the chain does not have. Brings the local anchors in line with the chain.
///
/// With `notes` (the embedded chain), mined anchors the chain no longer holds are recorded as a
/// chain-state loss before they are forgotten, so that a crash here records them again.
pub(crate) async fn reconcile(
    store: &Arc<dyn Store>,
    contract: &LogContract,
    notes: Option<&ChainNotes>,
) -> Result<Reconciled> {
    let on_chain = contract.latest_head().await?;
    let local_size = store.frontier().await?.size();
    if on_chain.size > local_size {
        return Err(LedgerError::Diverged(format!(
            "the chain has anchored {} records but the database holds only {local_size}; \
             records were deleted from the database (run `twinledger audit`)",
            on_chain.size
        )));
    }
    if on_chain.size > 0 {
        let size = on_chain.size;
        let local = store.tree_head(size).await?;
        if local.root != on_chain.root {
            return Err(LedgerError::Diverged(format!(
                "the database's log differs from the head anchored on chain at size {size} \
                 (chain root {}, database root {}); run `twinledger audit` to find where",
                on_chain.root, local.root
            )));
        }
    }
    // Anchors recorded as mined beyond the chain's head were dropped by a reorganisation;
    // forgetting them makes their records pending, to be anchored again.
    let beyond = on_chain.size + 1;
    let lost: Vec<Anchor> = store
        .anchors(beyond, usize::MAX)
        .await?
        .into_iter()
        .filter(|a| a.status != "sent")
        .collect();
    let reanchoring = match (notes, lost.is_empty()) {
        (Some(notes), false) => {
            let r = notes.lost(&lost, &on_chain).await?;
            tracing::warn!(target: "twinledger::anchor", lost_heads = lost.len(), from_size = lost[0].size, to_size = r.covers, chain_size = on_chain.size, event_index = r.lost_event, "the embedded chain lost anchors (it came back from an older snapshot); recorded, anchoring them again");
            Some(r)
        }
        _ => None,
    };
    for a in &lost {
        if notes.is_none() {
            tracing::warn!(target: "twinledger::anchor", size = a.size, tx = %a.tx_hash, chain_size = on_chain.size, "anchor dropped by a chain reorganisation; anchoring again");
        }
        let size = a.size;
        store.delete_anchor(size).await?;
    }
    // Anchors mined but never recorded (the process died between sending and noting, or
    // before the receipt): recovered from the contract's events since the last recorded one.
    let known = store.latest_mined_anchor().await?;
    // A node asked for logs from beyond its head refuses; a restored chain can be behind the
    // block the last noted anchor was mined in.
    let head_block = contract.client().status().await?.block_number;
    let from_block = known
        .and_then(|a| a.block_number)
        .unwrap_or(0)
        .min(head_block);
    for event in contract.anchored_events(from_block).await? {
        let size = event.head.size;
        let local = store.anchors(size, 1).await?;
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
        store.put_anchor_sent(size, &root, prev, &tx).await?;
        if let Some(receipt) = contract.receipt(event.tx_hash).await? {
            record_mined(store, size, &receipt).await?;
        }
    }
    // Anchors noted as sent but not mined: those still waiting in the node's pool on top of
    // the chain's head are picked up again (left alone, their nonces would hold back every
    // later transaction); the rest are forgotten and sent again from the chain's head.
    let sent = store.anchors(0, usize::MAX).await?;
    let mut waiting = Vec::new();
    let mut base = on_chain.size;
    for a in sent.into_iter().filter(|a| a.status == "sent") {
        let tx = a.tx_hash.parse::<TxHash>().ok();
        if let Some(tx) = tx {
            if a.size <= on_chain.size
                && let Ok(Some(r)) = contract.receipt(tx).await
            {
                record_mined(store, a.size, &r).await?;
                continue;
            }
            if a.size > base
                && a.prev_size == base
                && let Some(sent) = contract.resume(tx).await?
            {
                tracing::info!(target: "twinledger::anchor", size = a.size, tx = %tx, nonce = sent.nonce(), "anchor of an earlier run still waits in the pool; waiting for it");
                waiting.push((
                    TreeHead {
                        size: a.size,
                        root: a.root,
                    },
                    sent,
                ));
                base = a.size;
                continue;
            }
        }
        let size = a.size;
        store.delete_anchor(size).await?;
    }
    Ok(Reconciled {
        head: on_chain,
        waiting,
        lost: lost.len(),
        reanchoring,
    })
}
