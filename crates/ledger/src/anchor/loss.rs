//! Anchors the embedded chain lost. The embedded Anvil is only as durable as its last snapshot:
//! after a hard kill or a power cut it comes back without the anchors mined since. The log is
//! the same tree, so those heads are anchored again; the loss is never silent. Before the lost
//! anchors are forgotten, an `event` record of the reserved twin [`CHAIN_TWIN`] names them
//! ([`CHAIN_STATE_LOST`]); once an anchor covering them is mined, a second one names it
//! ([`CHAIN_REANCHORED`]). On any other chain a lost anchored head is an incident for an
//! operator and is refused, not repaired.

use std::sync::Arc;

use rand::RngCore;
use serde_json::json;
use tokio::sync::{mpsc, oneshot};
use twinledger_core::json::{Limits, Value, parse};
use twinledger_core::{Hash, HashScheme, RecordKind, Salt, TreeHead, TwinId};
use twinledger_store::{Anchor, Appended, NewRecord, Store};

use crate::writer::WriteRequest;
use crate::{LedgerError, Result};

/// The twin whose records are the ledger's own notes about its chain. Clients cannot write
/// to it (nor to any twin id starting with [`RESERVED_PREFIX`]).
pub const CHAIN_TWIN: &str = "twinledger:chain";

/// Twin ids starting with this are the ledger's own.
pub const RESERVED_PREFIX: &str = "twinledger:";

/// The `type` of the event recorded when the embedded chain lost anchors.
pub const CHAIN_STATE_LOST: &str = "chain_state_lost";

/// The `type` of the event recorded when an anchor covering the lost ones was mined.
pub const CHAIN_REANCHORED: &str = "chain_reanchored";

/// Lost heads listed one by one in an event; beyond this the event gives their count and range.
const MAX_LISTED: usize = 100;

/// Appends the ledger's notes about its chain through the writer, like any record.
#[derive(Clone)]
pub(crate) struct ChainNotes {
    pub writer: mpsc::Sender<WriteRequest>,
    pub chain_id: u64,
    pub contract: String,
}

/// Re-anchoring under way: the size an anchor must reach to cover every lost head, and the
/// log index of the event that named them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Reanchoring {
    pub covers: u64,
    pub lost_event: u64,
}

impl ChainNotes {
    /// Records that the chain, now at `chain_head`, lost `lost` (mined anchors, in size order).
    pub async fn lost(&self, lost: &[Anchor], chain_head: &TreeHead) -> Result<Reanchoring> {
        let heads: Vec<_> = lost
            .iter()
            .take(MAX_LISTED)
            .map(|a| {
                json!({
                    "size": a.size,
                    "root": a.root.to_hex(),
                    "tx_hash": a.tx_hash,
                    "block_number": a.block_number,
                })
            })
            .collect();
        let blocks = lost.iter().filter_map(|a| a.block_number);
        let covers = lost.iter().map(|a| a.size).max().unwrap_or(chain_head.size);
        let state = json!({
            "type": CHAIN_STATE_LOST,
            "chain_id": self.chain_id,
            "contract": self.contract,
            "chain_head": {"size": chain_head.size, "root": chain_head.root.to_hex()},
            "lost_heads": lost.len(),
            "lost": heads,
            "lost_sizes": {"from": lost.first().map(|a| a.size), "to": covers},
            "lost_blocks": {"from": blocks.clone().min(), "to": blocks.max()},
            "reanchored_from_size": chain_head.size,
        });
        let index = self.append(state).await?;
        Ok(Reanchoring {
            covers,
            lost_event: index,
        })
    }

    /// Records that `head`, mined in `tx_hash` at `block_number`, anchors again everything
    /// the event at `lost_event` named.
    pub async fn reanchored(
        &self,
        lost_event: u64,
        head: &TreeHead,
        tx_hash: &str,
        block_number: u64,
    ) -> Result<()> {
        let state = json!({
            "type": CHAIN_REANCHORED,
            "chain_id": self.chain_id,
            "contract": self.contract,
            "lost_event_index": lost_event,
            "head": {"size": head.size, "root": head.root.to_hex()},
            "tx_hash": tx_hash,
            "block_number": block_number,
        });
        self.append(state).await.map(|_| ())
    }

    async fn append(&self, state: serde_json::Value) -> Result<u64> {
        let state: Value = parse(state.to_string().as_bytes(), &Limits::default())
            .map_err(|e| LedgerError::Store(format!("chain event: {e}")))?;
        let scheme = HashScheme::JcsSha256;
        let state_hash = scheme
            .hash(&state)
            .map(Hash)
            .map_err(|e| LedgerError::Unhashable(e.to_string()))?;
        let mut salt = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut salt);
        let twin_id =
            TwinId::new(CHAIN_TWIN).map_err(|e| LedgerError::Store(format!("chain twin: {e}")))?;
        let (reply, answer) = oneshot::channel();
        let request = WriteRequest {
            new: NewRecord {
                idempotency: None,
                twin_id,
                kind: RecordKind::Event,
                state,
                scheme,
                state_hash,
                recorded_at_ms: crate::ledger::now_ms(),
                salt: Salt(salt),
                annex: Default::default(),
            },
            reply,
            anchor_waiter: None,
        };
        self.writer
            .send(request)
            .await
            .map_err(|_| LedgerError::ShuttingDown)?;
        match answer.await.map_err(|_| LedgerError::ShuttingDown)?? {
            Appended::New(record) => Ok(record.index),
            other => Err(LedgerError::Store(format!(
                "chain event not appended: {other:?}"
            ))),
        }
    }
}

/// Re-anchoring left unfinished by an earlier run: the chain twin's latest record is a
/// [`CHAIN_STATE_LOST`] event with no [`CHAIN_REANCHORED`] after it.
pub(crate) async fn unfinished(store: &Arc<dyn Store>) -> Result<Option<Reanchoring>> {
    let Ok(twin) = TwinId::new(CHAIN_TWIN) else {
        return Ok(None);
    };
    let Some(summary) = store.twin(&twin).await? else {
        return Ok(None);
    };
    let Some(row) = store.record(&twin, summary.latest_version).await? else {
        return Ok(None);
    };
    let state: serde_json::Value = serde_json::from_str(&row.state).unwrap_or_default();
    Ok((state["type"] == CHAIN_STATE_LOST)
        .then(|| state["lost_sizes"]["to"].as_u64())
        .flatten()
        .map(|covers| Reanchoring {
            covers,
            lost_event: row.index,
        }))
}
