//! Verification: recompute every stored record and compare it with the chain.

use serde::Serialize;
use twinledger_chain::TxHash;
use twinledger_core::{DeviceSignature, Hash, TwinId};
use twinledger_store::StoredRecord;

use std::sync::Arc;

use std::time::{Duration, Instant};
use twinledger_chain::{LegacyContract, LogContract};
use twinledger_core::TreeHead;

use tokio::sync::watch;
use twinledger_core::InclusionProof;
use twinledger_store::{Store, StoreError};

use crate::anchor::AnchoredSizes;

use crate::anchor::legacy::chain_timestamp;
use crate::{Anchoring, LedgerError, Result};

/// The verdict on a twin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Integrity {
    /// Everything stored matches the chain.
    Valid,
    /// Something stored does not match its hash, its chain link or the chain.
    Tampered,
    /// Nothing is wrong, but some records are not anchored yet.
    Pending,
}

/// The seed endpoint's answer: the latest state of a twin checked against `getTwin`.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SeedCheck {
    /// The twin.
    pub twin_id: String,
    /// Timestamp of the block holding the anchoring transaction (Unix seconds), empty while
    /// pending.
    pub timestamp: String,
    /// The verdict.
    pub integrity: Integrity,
}

/// One thing found wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Problem {
    /// The version concerned, when known.
    pub version: Option<u64>,
    /// The log index concerned, when known.
    pub index: Option<u64>,
    /// What is wrong.
    pub reason: String,
}

/// The verdict on a twin's whole history.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TwinVerdict {
    /// The twin.
    pub twin_id: String,
    /// The verdict.
    pub integrity: Integrity,
    /// Versions checked.
    pub versions: u64,
    /// Versions stored but not yet anchored.
    pub pending: Vec<u64>,
    /// Everything found wrong.
    pub problems: Vec<Problem>,
}

fn problem(row: &StoredRecord, reason: impl Into<String>) -> Problem {
    Problem {
        version: u64::try_from(row.version).ok(),
        index: Some(row.index),
        reason: reason.into(),
    }
}

/// What the stored row claims, recomputed: hash and leaf hash from the state, not from the
/// stored hash columns, so rewriting a hash column alongside the state changes nothing.
struct Recomputed {
    state_hash: String,
    leaf_hash: Hash,
}

/// Why the device signature in a record's annex does not hold, if it does not.
fn signature_problem(record: &twinledger_core::Record) -> Option<String> {
    let member = record.annex.as_ref()?.get("signature")?;
    DeviceSignature::check_annex_member(member, &record.state)
        .err()
        .map(|e| format!("device signature: {e}"))
}

/// One stored row checked on its own, as verify and audit both check it.
pub(crate) struct Recheck {
    /// The state's hash and the leaf hash, recomputed from the state; `None` when the row
    /// does not decode or its state cannot be hashed.
    pub(crate) hashes: Option<(Hash, Hash)>,
    /// Everything that does not match.
    pub(crate) faults: Vec<String>,
}

/// Recomputes a stored row: decodes it, hashes its state, checks the stored state hash, the
/// device signature and the stored leaf hash.
pub(crate) fn recheck(row: &StoredRecord) -> Recheck {
    let mut faults = Vec::new();
    let mut record = match row.decode() {
        Ok(r) => r,
        Err(e) => {
            faults.push(format!("stored record is unreadable: {e}"));
            return Recheck {
                hashes: None,
                faults,
            };
        }
    };
    let state_hash = match record.scheme.hash(&record.state) {
        Ok(h) => Hash(h),
        Err(e) => {
            faults.push(format!("state cannot be hashed: {e}"));
            return Recheck {
                hashes: None,
                faults,
            };
        }
    };
    if state_hash != record.state_hash {
        faults.push(format!(
            "state does not match its stored hash (expected {}, got {state_hash})",
            record.state_hash
        ));
    }
    if let Some(reason) = signature_problem(&record) {
        faults.push(reason);
    }
    record.state_hash = state_hash;
    let leaf_hash = record.leaf_hash();
    if row.leaf_hash != leaf_hash.0 {
        faults.push("record does not match its stored leaf hash".into());
    }
    Recheck {
        hashes: Some((state_hash, leaf_hash)),
        faults,
    }
}

fn recompute(row: &StoredRecord, problems: &mut Vec<Problem>) -> Option<Recomputed> {
    let checked = recheck(row);
    problems.extend(checked.faults.into_iter().map(|f| problem(row, f)));
    let (state_hash, leaf_hash) = checked.hashes?;
    Some(Recomputed {
        state_hash: state_hash.to_hex(),
        leaf_hash,
    })
}

/// `Some(reason)` when `proof` does not put `leaf_hash` in `head`.
fn included(
    proof: std::result::Result<InclusionProof, StoreError>,
    leaf_hash: Hash,
    head: TreeHead,
) -> Option<String> {
    let proof = match proof {
        Ok(p) => p,
        Err(e) => {
            return Some(format!(
                "no inclusion proof in the anchored tree of size {}: {e}",
                head.size
            ));
        }
    };
    proof.verify(&leaf_hash, &head.root).err().map(|e| {
        format!(
            "record is not in the tree of size {} anchored on chain, or a record next to it \
             in the log was altered ({e}); `twinledger audit` tells which",
            head.size
        )
    })
}

/// How long a tree head read from the chain is used at most, even while nothing the ledger
/// follows has changed: the backstop for a change of the chain that nothing here noticed.
const HEAD_MAX_AGE: Duration = Duration::from_secs(1);

/// The chain's latest head as a running ledger last read it. Every verification needs it, and
/// reading it is a call to the chain node (most of a verification's time when each asked).
/// The copy is used only while the anchored size the ledger follows is the one it was read at:
/// that size moves whenever an anchor of any node is mined, a reorganisation drops anchors or
/// a restarted chain comes back with fewer (the anchorer rewinds it, and followers track it),
/// and the next verification then reads the chain again. Whatever the size says, a copy is
/// used for at most [`HEAD_MAX_AGE`]. Records are read from the database on every
/// verification, so an edited record is reported at once whatever the copy.
struct ChainHead {
    anchored: watch::Receiver<AnchoredSizes>,
    /// The head, the anchored size when it was read, and when.
    last: std::sync::Mutex<Option<(TreeHead, u64, Instant)>>,
    reading: tokio::sync::Mutex<()>,
}

impl ChainHead {
    fn fresh(&self) -> Option<TreeHead> {
        let (head, anchored, at) = (*self.last.lock().ok()?)?;
        (anchored == self.anchored.borrow().anchored && at.elapsed() < HEAD_MAX_AGE).then_some(head)
    }
}

/// Checks stored records against their hashes and the chain. Needs no running ledger, so the
/// CLI can verify a data directory on its own.
#[derive(Clone)]
pub struct Verifier {
    store: Arc<dyn Store>,
    anchoring: Anchoring,
    head: Option<Arc<ChainHead>>,
}

impl Verifier {
    /// A verifier over `store` and the contract records are anchored with.
    pub fn new(store: Arc<dyn Store>, anchoring: Anchoring) -> Self {
        Self {
            store,
            anchoring,
            head: None,
        }
    }

    /// A verifier inside a running ledger, which keeps the chain's head between verifications
    /// while `anchored` (the ledger's anchored sizes) stays the same ([`ChainHead`]).
    pub(crate) fn following(mut self, anchored: watch::Receiver<AnchoredSizes>) -> Self {
        self.head = Some(Arc::new(ChainHead {
            anchored,
            last: std::sync::Mutex::new(None),
            reading: tokio::sync::Mutex::new(()),
        }));
        self
    }

    fn legacy(&self) -> Option<&LegacyContract> {
        match &self.anchoring {
            Anchoring::Legacy(c) => Some(c),
            Anchoring::Log(_) => None,
        }
    }

    /// Checks that leaf `index`, recomputed as `leaf_hash`, is in the anchored tree `head`, by
    /// an inclusion proof built from the stored tree; `Some(reason)` when it is not.
    async fn check_included(
        &self,
        index: u64,
        leaf_hash: Hash,
        head: TreeHead,
    ) -> Result<Option<String>> {
        let proof = self.store.inclusion_proof(index, head.size).await;
        Ok(included(proof, leaf_hash, head))
    }

    /// The chain's latest tree head: read from the contract, or the copy read last while it is
    /// still true (see [`ChainHead`]).
    async fn chain_head(&self, contract: &LogContract) -> Result<TreeHead> {
        let Some(cache) = &self.head else {
            return Ok(contract.latest_head().await?);
        };
        if let Some(head) = cache.fresh() {
            return Ok(head);
        }
        // One read of the chain at a time; the callers that waited for it use what it read.
        let _reading = cache.reading.lock().await;
        if let Some(head) = cache.fresh() {
            return Ok(head);
        }
        // Taken before the chain is asked: an anchor mined meanwhile changes it again, and the
        // next verification reads the chain again.
        let anchored = cache.anchored.borrow().anchored;
        let head = contract.latest_head().await?;
        if let Ok(mut last) = cache.last.lock() {
            *last = Some((head, anchored, Instant::now()));
        }
        Ok(head)
    }

    /// Every stored version of a twin, in version order.
    pub async fn history(&self, id: &TwinId) -> Result<Vec<StoredRecord>> {
        let mut out = Vec::new();
        let mut from = 1;
        // A small first page: most twins fit in it, and a store answers a small read at once
        // where a large one waits for a thread (SQLite).
        let mut page_size = 64;
        loop {
            let page = self.store.history(id, from, page_size).await?;
            let done = page.len() < page_size;
            page_size = 1000;
            if let Some(last) = page.last() {
                from = last.version.max(0) as u64 + 1;
            }
            out.extend(page);
            if done {
                return Ok(out);
            }
        }
    }

    /// The seed endpoint's check: the latest version's recomputed hash and its timestamp must
    /// equal what `getTwin` returns, and its transaction must be on chain as stored.
    pub async fn seed_check(&self, id: &TwinId) -> Result<SeedCheck> {
        let twin = self.store.twin(id).await?;
        let latest = match &twin {
            Some(t) => self.store.record(id, t.latest_version).await?,
            None => None,
        };
        if twin.is_none() {
            return Err(LedgerError::TwinNotFound(id.to_string()));
        }
        let answer = |timestamp: String, integrity| SeedCheck {
            twin_id: id.to_string(),
            timestamp,
            integrity,
        };
        let Some(row) = latest else {
            return Ok(answer(String::new(), Integrity::Tampered));
        };
        let mut problems = Vec::new();
        let recomputed = recompute(&row, &mut problems);
        if let Anchoring::Log(contract) = &self.anchoring {
            let (timestamp, integrity) = self
                .seed_check_log(contract, &row, recomputed, problems)
                .await?;
            return Ok(answer(timestamp, integrity));
        }
        let Some(anchor) = row.legacy_anchor() else {
            let integrity = if problems.is_empty() {
                Integrity::Pending
            } else {
                Integrity::Tampered
            };
            return Ok(answer(String::new(), integrity));
        };
        let timestamp = anchor.block_timestamp.to_string();
        let Some(recomputed) = recomputed.filter(|_| problems.is_empty()) else {
            return Ok(answer(timestamp, Integrity::Tampered));
        };
        let Some(contract) = self.legacy() else {
            return Ok(answer(timestamp, Integrity::Tampered));
        };
        let on_chain = contract.get_twin(id.as_str()).await?;
        let mut valid = on_chain.data_hash == recomputed.state_hash
            && on_chain.timestamp == anchor.chain_timestamp
            && anchor.chain_timestamp == chain_timestamp(row.recorded_at_ms);
        if valid {
            valid = self
                .check_legacy_tx(&row, &recomputed.state_hash)
                .await?
                .is_none();
        }
        let integrity = if valid {
            Integrity::Valid
        } else {
            Integrity::Tampered
        };
        Ok(answer(timestamp, integrity))
    }

    /// Log mode: the record must be in the first anchored tree that holds it, whose root is read
    /// from the contract; the timestamp is that anchor's block time, as the contract stores it.
    async fn seed_check_log(
        &self,
        contract: &LogContract,
        row: &StoredRecord,
        recomputed: Option<Recomputed>,
        problems: Vec<Problem>,
    ) -> Result<(String, Integrity)> {
        let index = row.index;
        let covering = self.store.anchor_covering(index).await?;
        let Some(covering) = covering else {
            let integrity = if problems.is_empty() {
                Integrity::Pending
            } else {
                Integrity::Tampered
            };
            return Ok((String::new(), integrity));
        };
        let Some(anchored) = contract.anchored_root(covering.size).await? else {
            return Ok((String::new(), Integrity::Tampered));
        };
        let timestamp = anchored.timestamp.to_string();
        let Some(recomputed) = recomputed.filter(|_| problems.is_empty()) else {
            return Ok((timestamp, Integrity::Tampered));
        };
        let head = TreeHead {
            size: covering.size,
            root: anchored.root,
        };
        let integrity = match self
            .check_included(index, recomputed.leaf_hash, head)
            .await?
        {
            None => Integrity::Valid,
            Some(_) => Integrity::Tampered,
        };
        Ok((timestamp, integrity))
    }

    /// Checks a record's `updateTwin` transaction on chain; `Some(reason)` when it does not
    /// record this record.
    async fn check_legacy_tx(
        &self,
        row: &StoredRecord,
        state_hash: &str,
    ) -> Result<Option<String>> {
        let Some(anchor) = row.legacy_anchor() else {
            return Ok(Some("record is not anchored".into()));
        };
        let Ok(tx) = anchor.tx_hash.parse::<TxHash>() else {
            return Ok(Some(format!(
                "stored transaction hash {:?} is malformed",
                anchor.tx_hash
            )));
        };
        let Some(contract) = self.legacy() else {
            return Ok(Some("not a legacy-mode ledger".into()));
        };
        let receipt = match contract.update_receipt(tx).await {
            Ok(Some(r)) => r,
            Ok(None) => return Ok(Some(format!("anchoring transaction {tx} is not on chain"))),
            Err(e) if e.is_retryable() => return Err(e.into()),
            Err(e) => return Ok(Some(format!("anchoring transaction {tx}: {e}"))),
        };
        let expected_ts = chain_timestamp(row.recorded_at_ms);
        if !receipt.records(&row.twin_id, &expected_ts, state_hash) {
            return Ok(Some(format!(
                "chain records another state for this version in {tx} (hash {}, timestamp {})",
                receipt.data_hash, receipt.timestamp
            )));
        }
        if receipt.block_number != anchor.block_number
            || receipt.block_timestamp != anchor.block_timestamp
        {
            return Ok(Some(format!(
                "stored block {} at {} differs from the chain's block {} at {}",
                anchor.block_number,
                anchor.block_timestamp,
                receipt.block_number,
                receipt.block_timestamp
            )));
        }
        Ok(None)
    }

    /// Checks every stored version of a twin: each state against its hash, the per-twin chain of
    /// leaf hashes, dense versions, and each anchoring transaction and the latest `getTwin`
    /// against the chain.
    pub async fn verify_twin(&self, id: &TwinId) -> Result<TwinVerdict> {
        let twin = {
            let id = id.clone();
            self.store.twin(&id).await?
        };
        let rows = self.history(id).await?;
        if twin.is_none() && rows.is_empty() {
            return Err(LedgerError::TwinNotFound(id.to_string()));
        }
        let mut problems = Vec::new();
        let mut pending = Vec::new();
        let mut expected_version: u64 = 1;
        let mut prev_leaf: Option<Hash> = None;
        let mut prev_sound = true;
        let mut latest_anchored: Option<(StoredRecord, String)> = None;
        let log_head = match &self.anchoring {
            Anchoring::Log(c) => Some(self.chain_head(c).await?),
            Anchoring::Legacy(_) => None,
        };
        // Every anchored version's proof in one read of the store.
        let mut proofs = std::collections::HashMap::new();
        if let Some(head) = log_head {
            let anchored: Vec<u64> = rows
                .iter()
                .map(|r| r.index)
                .filter(|&i| i < head.size)
                .collect();
            let made = self
                .store
                .inclusion_proofs(anchored.clone(), head.size)
                .await?;
            proofs.extend(anchored.into_iter().zip(made));
        }
        for row in &rows {
            let version = u64::try_from(row.version).unwrap_or(0);
            if version > expected_version {
                problems.push(Problem {
                    version: Some(expected_version),
                    index: None,
                    reason: format!("versions {expected_version} to {} are missing", version - 1),
                });
            } else if version < expected_version {
                problems.push(problem(row, "version is out of order or duplicated"));
            }
            let after_gap = version != expected_version;
            let problems_before = problems.len();
            expected_version = version + 1;
            let Some(recomputed) = recompute(row, &mut problems) else {
                prev_leaf = None;
                prev_sound = false;
                continue;
            };
            let stored_prev = row
                .prev_leaf_hash
                .as_deref()
                .and_then(|p| Hash::from_slice(p).ok());
            // Right after a gap the link cannot hold; the gap is the finding.
            // A broken previous record is reported at itself; its successor's link then
            // says nothing more.
            if version > 1 && stored_prev != prev_leaf && !after_gap && prev_sound {
                problems.push(problem(
                    row,
                    "does not link to the previous version's leaf hash",
                ));
            }
            // Links are checked against the stored leaf hash: an edit of one record is then
            // reported once, at that record, while a consistent rewrite of its hashes still
            // breaks the next record's link.
            prev_leaf = Hash::from_slice(&row.leaf_hash).ok();
            if let Some(head) = log_head {
                if row.index >= head.size {
                    pending.push(version);
                } else if let Some(reason) = included(
                    proofs.remove(&row.index).unwrap_or_else(|| {
                        Err(StoreError::Inconsistent(
                            "the store gave no proof for this record".into(),
                        ))
                    }),
                    recomputed.leaf_hash,
                    head,
                ) {
                    problems.push(problem(row, reason));
                }
            } else if row.legacy_anchor().is_some() {
                if let Some(reason) = self.check_legacy_tx(row, &recomputed.state_hash).await? {
                    problems.push(problem(row, reason));
                }
                latest_anchored = Some((row.clone(), recomputed.state_hash));
            } else {
                pending.push(version);
            }
            prev_sound = problems.len() == problems_before;
        }
        if let Some(t) = &twin
            && t.latest_version + 1 != expected_version
        {
            problems.push(Problem {
                version: Some(t.latest_version),
                index: Some(t.latest_index),
                reason: format!(
                    "the twin's latest version is {} but the stored history ends at {}",
                    t.latest_version,
                    expected_version.saturating_sub(1)
                ),
            });
        }
        if let (Some((row, hash)), Some(contract)) = (
            latest_anchored.filter(|_| pending.is_empty()),
            self.legacy(),
        ) {
            let on_chain = contract.get_twin(id.as_str()).await?;
            let ts = row.anchor_timestamp.clone().unwrap_or_default();
            if on_chain.data_hash != hash || on_chain.timestamp != ts {
                problems.push(problem(
                    &row,
                    format!(
                        "the contract's current value for this twin (hash {}, timestamp {}) is not the latest version's",
                        on_chain.data_hash, on_chain.timestamp
                    ),
                ));
            }
        }
        let integrity = if !problems.is_empty() {
            Integrity::Tampered
        } else if !pending.is_empty() {
            Integrity::Pending
        } else {
            Integrity::Valid
        };
        Ok(TwinVerdict {
            twin_id: id.to_string(),
            integrity,
            versions: rows.len() as u64,
            pending,
            problems,
        })
    }
}
