//! Settling a sent anchor: waiting for it to be mined, replacing it with higher fees while it
//! waits, and telling a replacement from a nonce that another transaction took.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use twinledger_chain::{AnchorReceipt, ChainError, LogContract, SentAnchor, TxHash};
use twinledger_core::TreeHead;

use super::{InFlight, LogAnchorer, Progress, Settled};

impl LogAnchorer {
    /// Waits for `sent` to be mined, sending it again with higher fees whenever it waited
    /// `replace_after`; reports on `done`.
    pub(super) fn spawn_settle(
        &self,
        p: &mut Progress,
        head: TreeHead,
        mut sent: SentAnchor,
        aimed: Option<u64>,
        held: bool,
        done: &mpsc::UnboundedSender<Settled>,
    ) -> InFlight {
        let held = Arc::new(AtomicBool::new(held));
        let held_by_task = held.clone();
        let (nonce, sent_at) = (sent.nonce(), Instant::now());
        let id = p.next_id;
        p.next_id += 1;
        let (contract, done, config) = (self.contract.clone(), done.clone(), self.config.clone());
        let mut blocks = p.blocks.subscribe();
        let task = tokio::spawn(async move {
            let started = Instant::now();
            let mut since_send = Instant::now();
            let mut late = false;
            let mut delay = Duration::from_millis(5);
            let mut new_block = false;
            loop {
                match contract.mined(&sent).await {
                    Ok(Some(r)) => {
                        let _ = done.send(Settled::Done(id, Ok(r)));
                        return;
                    }
                    Ok(None) => {}
                    Err(e) if !e.is_retryable() && !matches!(e, ChainError::Rpc(_)) => {
                        let _ = done.send(Settled::Done(id, Err(e)));
                        return;
                    }
                    Err(_) => {}
                }
                let block_seen = std::mem::take(&mut new_block);
                let held = held_by_task.load(Ordering::Relaxed);
                // A node that does not hold it (the send's answer was lost, the node dropped
                // it, another provider took it) is sent the same bytes again: at each new block,
                // and at each look while its send is unanswered.
                if (block_seen || !held)
                    && let Ok(known) = contract.client().knows_transaction(sent.tx_hash()).await
                {
                    let resent = if known {
                        Ok(())
                    } else {
                        contract.submit(&sent).await
                    };
                    match resent {
                        Ok(()) => {
                            if !held {
                                held_by_task.store(true, Ordering::Relaxed);
                                let _ = done.send(Settled::Held);
                            }
                        }
                        // Its nonce is used (it was signed with a stale count): it can never
                        // be mined, and what was built on it is rebuilt.
                        Err(e) if nonce_used(&e) => {
                            let _ = done.send(Settled::Done(
                                id,
                                Err(ChainError::NonceTaken {
                                    account: contract.client().from().to_string(),
                                    nonce,
                                }),
                            ));
                            return;
                        }
                        Err(e) => {
                            tracing::debug!(target: "twinledger::anchor", tx = %sent.tx_hash(), error = %e, "cannot send an anchor again");
                        }
                    }
                }
                // Priced under the base fee (it rose since: a fee spike), the anchor cannot be
                // mined until it falls again: replaced at once, not after `replace_after`.
                let priced_out = block_seen
                    && contract
                        .client()
                        .next_base_fee()
                        .await
                        .is_ok_and(|base| base > sent.max_fee_per_gas());
                if priced_out || since_send.elapsed() >= config.replace_after {
                    since_send = Instant::now();
                    match replace_or_detect(&contract, &mut sent, config.max_fee_per_gas).await {
                        Ok(Replacement::Settled(result)) => {
                            let _ = done.send(Settled::Done(id, result));
                            return;
                        }
                        Ok(Replacement::Sent { old, new }) => {
                            let _ = done.send(Settled::Replaced {
                                size: head.size,
                                old,
                                new,
                                max_fee_per_gas: sent.max_fee_per_gas(),
                            });
                        }
                        Ok(Replacement::AtFeeCap) => {}
                        Err(e) => {
                            tracing::warn!(target: "twinledger::anchor", error = %e, "cannot replace a waiting anchor");
                        }
                    }
                }
                if !late && started.elapsed() >= config.receipt_timeout {
                    late = true;
                    let _ = done.send(Settled::Late(format!(
                        "anchor {} (tree size {}) not mined after {} s; still waiting",
                        sent.tx_hash(),
                        head.size,
                        config.receipt_timeout.as_secs()
                    )));
                }
                // An automining chain has the receipt at once; otherwise it comes with a new
                // block, which the anchorer's block clock sees (the timer is the fallback).
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    r = blocks.changed() => match r {
                        Ok(()) => new_block = true,
                        Err(_) => return,
                    },
                }
                delay = (delay * 2).min(Duration::from_millis(1000));
            }
        });
        InFlight {
            id,
            head,
            nonce,
            sent_at,
            aimed,
            held,
            task,
        }
    }
}

/// Whether a node refused a transaction because its nonce is already used (geth and Anvil say
/// "nonce too low", Ganache "the tx doesn't have the correct nonce").
fn nonce_used(e: &ChainError) -> bool {
    let text = e.to_string().to_ascii_lowercase();
    text.contains("nonce too low") || text.contains("correct nonce")
}

/// What became of an attempt to replace a waiting anchor.
enum Replacement {
    /// Its nonce was used meanwhile: by one of its own versions (mined between two polls), or
    /// by a transaction this service did not send.
    Settled(Result<AnchorReceipt, ChainError>),
    /// Sent again with higher fees.
    Sent { old: TxHash, new: TxHash },
    /// The fee cap stops any further raise; it keeps waiting.
    AtFeeCap,
}

/// Replaces a waiting anchor with higher fees, unless its nonce was used meanwhile: sending
/// with a nonce another transaction took would replace nothing of ours.
async fn replace_or_detect(
    contract: &LogContract,
    sent: &mut SentAnchor,
    max_fee_per_gas: Option<u128>,
) -> Result<Replacement, ChainError> {
    if contract.client().nonce(false).await? > sent.nonce() {
        return Ok(Replacement::Settled(match contract.mined(sent).await? {
            Some(r) => Ok(r),
            None => Err(ChainError::NonceTaken {
                account: contract.client().from().to_string(),
                nonce: sent.nonce(),
            }),
        }));
    }
    let old = sent.tx_hash();
    Ok(match contract.replace(sent, max_fee_per_gas).await? {
        Some(new) => Replacement::Sent { old, new },
        None => Replacement::AtFeeCap,
    })
}
