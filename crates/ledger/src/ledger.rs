//! The ledger: accepts submissions, anchors them, verifies them.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand::RngCore;
use serde::Serialize;
use tokio::sync::{Notify, mpsc, oneshot, watch};
use twinledger_chain::{ChainStatus, LegacyContract};
use twinledger_core::json::Value;
use twinledger_core::{Hash, HashScheme, Record, RecordKind, Salt, TwinId};
use twinledger_store::{LegacyAnchor, NewRecord, Store, StoreStats};

use crate::anchor::{self, AnchorState, AnchorWaiters};
use crate::verify::Verifier;
use crate::writer::{self, WriteRequest};
use crate::{LedgerError, Result};

/// Ledger tuning.
#[derive(Debug, Clone)]
pub struct LedgerConfig {
    /// Most submissions committed in one database transaction.
    pub batch_max: usize,
    /// How long to wait for a transaction's receipt before treating the chain as failing.
    pub receipt_timeout: Duration,
}

impl Default for LedgerConfig {
    fn default() -> Self {
        Self {
            batch_max: 1024,
            receipt_timeout: Duration::from_secs(60),
        }
    }
}

/// One state submitted for a twin.
#[derive(Debug, Clone)]
pub struct Submission {
    /// The twin.
    pub twin_id: TwinId,
    /// The state object.
    pub state: Value,
    /// The hash scheme.
    pub scheme: HashScheme,
}

/// How long [`Ledger::record`] waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Until the record is durable.
    Stored,
    /// Until the record's anchoring transaction is mined.
    Anchored,
}

/// What `/health` reports.
#[derive(Debug, Clone, Serialize)]
pub struct Health {
    /// Database counts, or the error reading them.
    pub database: std::result::Result<StoreStats, String>,
    /// Chain status, or the error reaching it.
    pub chain: std::result::Result<ChainStatus, String>,
    /// The contract address.
    pub contract: String,
    /// The last anchoring error, while anchoring fails.
    pub anchoring_error: Option<String>,
}

struct Inner {
    store: Arc<dyn Store>,
    contract: LegacyContract,
    verifier: Verifier,
    writer: mpsc::Sender<WriteRequest>,
    anchor_state: watch::Receiver<AnchorState>,
    shutdown: watch::Sender<bool>,
}

/// The ledger. Cheap to clone.
#[derive(Clone)]
pub struct Ledger {
    inner: Arc<Inner>,
}

impl Ledger {
    /// Starts the writer and the anchorer over `store`, anchoring with the seed contract.
    /// Records left pending by an earlier run are anchored first.
    pub fn start(
        store: Arc<dyn Store>,
        contract: LegacyContract,
        config: LedgerConfig,
    ) -> Result<Self> {
        let frontier = store.frontier()?;
        let (wtx, wrx) = mpsc::channel(config.batch_max * 4);
        let waiters = Arc::new(AnchorWaiters::default());
        let committed = Arc::new(Notify::new());
        let (state_tx, state_rx) = watch::channel(AnchorState::default());
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        {
            let (store, waiters, committed) = (store.clone(), waiters.clone(), committed.clone());
            let batch_max = config.batch_max.max(1);
            std::thread::Builder::new()
                .name("twinledger-writer".into())
                .spawn(move || writer::run(store, wrx, batch_max, waiters, committed, frontier))
                .map_err(|e| LedgerError::Store(format!("cannot start the writer thread: {e}")))?;
        }
        tokio::spawn(anchor::run_legacy(
            store.clone(),
            contract.clone(),
            waiters,
            committed,
            state_tx,
            config.receipt_timeout,
            shutdown_rx,
        ));
        Ok(Self {
            inner: Arc::new(Inner {
                verifier: Verifier::new(store.clone(), contract.clone()),
                store,
                contract,
                writer: wtx,
                anchor_state: state_rx,
                shutdown: shutdown_tx,
            }),
        })
    }

    /// Stops the anchorer; records not yet anchored stay pending for the next start.
    pub fn shutdown(&self) {
        let _ = self.inner.shutdown.send(true);
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    /// The contract.
    pub fn contract(&self) -> &LegacyContract {
        &self.inner.contract
    }

    /// Records a state. Returns once the record is durable (and anchored, with
    /// [`Wait::Anchored`]). On a chain failure while waiting for the anchor the record stays
    /// stored as pending and the error says so.
    pub async fn record(
        &self,
        sub: Submission,
        wait: Wait,
    ) -> Result<(Record, Option<LegacyAnchor>)> {
        let state_hash = sub
            .scheme
            .hash(&sub.state)
            .map(Hash)
            .map_err(|e| LedgerError::Unhashable(e.to_string()))?;
        let mut salt = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut salt);
        let new = NewRecord {
            twin_id: sub.twin_id,
            kind: RecordKind::Reported,
            state: sub.state,
            scheme: sub.scheme,
            state_hash,
            recorded_at_ms: now_ms(),
            salt: Salt(salt),
        };
        let (reply_tx, reply_rx) = oneshot::channel();
        let (anchor_tx, anchor_rx) = match wait {
            Wait::Anchored => {
                let (t, r) = oneshot::channel();
                (Some(t), Some(r))
            }
            Wait::Stored => (None, None),
        };
        self.inner
            .writer
            .send(WriteRequest {
                new,
                reply: reply_tx,
                anchor_waiter: anchor_tx,
            })
            .await
            .map_err(|_| LedgerError::ShuttingDown)?;
        let record = reply_rx.await.map_err(|_| LedgerError::ShuttingDown)??;
        let anchor = match anchor_rx {
            None => None,
            Some(rx) => match rx.await {
                Ok(Ok(a)) => Some(a),
                Ok(Err(e)) => {
                    return Err(LedgerError::Chain(format!(
                        "{e}; twin {} version {} is stored as pending (log index {}) and will be anchored when the chain is back",
                        record.twin_id, record.version, record.index
                    )));
                }
                Err(_) => return Err(LedgerError::ShuttingDown),
            },
        };
        Ok((record, anchor))
    }

    /// A verifier over the same store and contract.
    pub fn verifier(&self) -> &Verifier {
        &self.inner.verifier
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn Store) -> twinledger_store::Result<T> + Send + 'static,
    ) -> Result<T> {
        let store = self.inner.store.clone();
        tokio::task::spawn_blocking(move || f(store.as_ref()))
            .await
            .map_err(|e| LedgerError::Store(format!("store task failed: {e}")))?
            .map_err(Into::into)
    }

    /// Database and chain health.
    pub async fn health(&self) -> Health {
        let database = self.read(|s| s.stats()).await.map_err(|e| e.to_string());
        let chain = self
            .inner
            .contract
            .client()
            .status()
            .await
            .map_err(|e| e.to_string());
        Health {
            database,
            chain,
            contract: self.inner.contract.address().to_string(),
            anchoring_error: self.inner.anchor_state.borrow().last_error.clone(),
        }
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
