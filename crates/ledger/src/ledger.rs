//! The ledger: accepts submissions, anchors them, verifies them.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand::RngCore;
use serde::Serialize;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use twinledger_chain::{ChainClient, ChainStatus, LegacyContract, LogContract};
use twinledger_core::json::{Object, Value};
use twinledger_core::{
    BundleAnchor, DeviceKey, DeviceSignature, Hash, HashScheme, ProofBundle, Record, RecordKind,
    Salt, TreeHead, TwinId,
};
use twinledger_store::{
    Appended, DeviceKeyRow, NewRecord, Store, StoreStats, StoredRecord, TwinSummary,
};

use crate::anchor::log::{AnchorConfig, LogAnchorer, covering_info};
use crate::anchor::loss::{self, ChainNotes, RESERVED_PREFIX};
use crate::anchor::reconcile::reconcile;
use crate::anchor::{AnchorInfo, AnchorWaiters, AnchoredSizes, AnchoringStatus, Level};
use crate::anchor::{lease, legacy};
use crate::ingestion::{IngestionReport, IngestionStats};
use crate::metrics::{LedgerMetrics, StateView};
use crate::retention;
use crate::verify::{SeedCheck, TwinVerdict, Verifier};
use crate::writer::{self, WriteRequest};
use futures_util::StreamExt;

use crate::{LedgerError, Result};

/// Which contract records are anchored with.
#[derive(Debug, Clone)]
pub enum Anchoring {
    /// The seed's `DigitalTwinStorage`: one `updateTwin` per record.
    Legacy(LegacyContract),
    /// `TwinLedger`: tree heads of the Merkle log, many records per transaction.
    Log(LogContract),
}

impl Anchoring {
    /// The chain client.
    pub fn client(&self) -> &ChainClient {
        match self {
            Self::Legacy(c) => c.client(),
            Self::Log(c) => c.client(),
        }
    }

    /// The contract address.
    pub fn address(&self) -> twinledger_chain::Address {
        match self {
            Self::Legacy(c) => c.address(),
            Self::Log(c) => c.address(),
        }
    }

    /// `"legacy"` or `"log"`.
    pub fn mode(&self) -> &'static str {
        match self {
            Self::Legacy(_) => "legacy",
            Self::Log(_) => "log",
        }
    }
}

/// Ledger tuning.
#[derive(Debug, Clone)]
pub struct LedgerConfig {
    /// Most submissions committed in one database transaction.
    pub batch_max: usize,
    /// Log-mode anchoring.
    pub anchor: AnchorConfig,
    /// How long an idempotency key is remembered: older keys are pruned, and a retry after
    /// that counts as a new request (`None`: kept forever).
    pub idempotency_retention: Option<Duration>,
    /// The chain is the embedded node this program runs: anchors it loses (it is only as
    /// durable as its last snapshot) are recorded as a chain-state loss and anchored again.
    /// On any other chain a lost anchor is a reorganisation.
    pub embedded_chain: bool,
    /// Where the ledger counts what it does (registered nowhere by default).
    pub metrics: LedgerMetrics,
    /// This process's name among the nodes sharing the database (in the anchoring lease);
    /// unique per process.
    pub node: String,
}

impl Default for LedgerConfig {
    fn default() -> Self {
        Self {
            batch_max: 1024,
            anchor: AnchorConfig::default(),
            idempotency_retention: Some(Duration::from_secs(24 * 60 * 60)),
            embedded_chain: false,
            metrics: LedgerMetrics::default(),
            node: node_name(),
        }
    }
}

/// `host/pid/random`: names this process apart from every other node, containers included
/// (their processes can share a pid and a host name).
pub fn node_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "node".into());
    format!(
        "{host}/{}/{:08x}",
        std::process::id(),
        rand::random::<u32>()
    )
}

/// One state submitted for a twin.
#[derive(Debug, Clone)]
pub struct Submission {
    /// The twin.
    pub twin_id: TwinId,
    /// What the record says.
    pub kind: RecordKind,
    /// The state object.
    pub state: Value,
    /// The hash scheme.
    pub scheme: HashScheme,
    /// The client's idempotency key: a retry with the same key returns the first result.
    pub idempotency_key: Option<String>,
    /// The device's Ed25519 signature of the state (128 hex digits), checked against the
    /// twin's device key and kept in the record's annex.
    pub signature: Option<String>,
    /// Further annex members: a desired state's `tolerances`, a report's `source`.
    pub annex: Object,
}

impl Submission {
    /// A state to record as it is: no signature, no annex.
    pub fn plain(twin_id: TwinId, kind: RecordKind, state: Value, scheme: HashScheme) -> Self {
        Self {
            twin_id,
            kind,
            state,
            scheme,
            idempotency_key: None,
            signature: None,
            annex: Object::new(),
        }
    }
}

/// How long [`Ledger::record`] waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Until the record is durable.
    Stored,
    /// Until the record's anchoring transaction is mined.
    Anchored,
    /// Until that transaction has the configured confirmations.
    Confirmed,
    /// Until that transaction is in a block the chain reports finalized.
    Finalized,
}

/// Where a record is on its way to the chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Status {
    /// Durably stored, not yet on chain.
    Pending,
    /// In a mined transaction.
    Anchored,
    /// In a transaction with enough confirmations.
    Confirmed,
    /// In a block the chain reports finalized.
    Finalized,
}

/// What `/health` reports.
#[derive(Debug, Clone, Serialize)]
pub struct Health {
    /// `"legacy"` or `"log"`.
    pub mode: &'static str,
    /// Database counts, or the error reading them.
    pub database: std::result::Result<StoreStats, String>,
    /// Why the last write failed, while writes fail (the next write that succeeds clears it).
    pub write_error: Option<String>,
    /// Chain status, or the error reaching it.
    pub chain: std::result::Result<ChainStatus, String>,
    /// The contract address.
    pub contract: String,
    /// Anchoring: the last error while it fails, replacements, reorganisations.
    pub anchoring: AnchoringStatus,
    /// Log mode: anchored and confirmed sizes.
    pub anchored: Option<AnchoredSizes>,
    /// Device messages over MQTT, when the ingestion runs.
    pub ingestion: Option<IngestionReport>,
}

struct Inner {
    store: Arc<dyn Store>,
    anchoring: Anchoring,
    verifier: Verifier,
    writer: mpsc::Sender<WriteRequest>,
    write_error: watch::Receiver<Option<String>>,
    tree: watch::Receiver<u64>,
    sizes: watch::Receiver<AnchoredSizes>,
    anchor_state: watch::Receiver<AnchoringStatus>,
    derived: broadcast::Sender<Arc<Record>>,
    ingestion: Arc<IngestionStats>,
    shutdown: watch::Sender<bool>,
    restarts: watch::Sender<u64>,
    paused: watch::Sender<bool>,
    embedded_chain: bool,
    metrics: LedgerMetrics,
}

/// The ledger. Cheap to clone.
#[derive(Clone)]
pub struct Ledger {
    inner: Arc<Inner>,
}

impl Ledger {
    /// Starts the writer and the anchorer over `store`. In log mode the database's log is first
    /// reconciled with the head anchored on chain; records left pending by an earlier run are
    /// anchored first.
    pub async fn start(
        store: Arc<dyn Store>,
        anchoring: Anchoring,
        config: LedgerConfig,
    ) -> Result<Self> {
        let frontier = store.frontier().await?;
        let (wtx, wrx) = mpsc::channel(config.batch_max.max(1) * 4);
        let waiters = Arc::new(AnchorWaiters::default());
        let (tree_tx, tree_rx) = watch::channel(frontier.size());
        let (state_tx, state_rx) = watch::channel(AnchoringStatus::default());
        let (sizes_tx, sizes_rx) = watch::channel(AnchoredSizes::default());
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let (restarts_tx, restarts_rx) = watch::channel(0u64);
        let (paused_tx, paused_rx) = watch::channel(false);
        let (write_error_tx, write_error_rx) = watch::channel(None);
        // Shifts are rare next to records; a burst of this many can wait for the corrections.
        let (derived_tx, _) = broadcast::channel(16_384);
        // The writer runs before the reconciliation, which may have to record that the
        // embedded chain lost anchors.
        {
            let (store, waiters) = (store.clone(), waiters.clone());
            let batch_max = config.batch_max.max(1);
            // Other nodes' batches grow the log too: their sizes come from the store.
            if let Some(mut sizes) = store.log_sizes() {
                let tree = tree_tx.clone();
                tokio::spawn(async move {
                    while let Some(size) = sizes.next().await {
                        writer::grow(&tree, size);
                    }
                });
            }
            let outlets = writer::Outlets {
                waiters: waiters.clone(),
                tree: tree_tx,
                write_error: write_error_tx,
                derived: derived_tx.clone(),
                metrics: config.metrics.clone(),
            };
            std::thread::Builder::new()
                .name("twinledger-batcher".into())
                .spawn({
                    let runtime = tokio::runtime::Handle::current();
                    move || writer::run(store, wrx, batch_max, outlets, runtime)
                })
                .map_err(|e| LedgerError::Store(format!("cannot start the writer thread: {e}")))?;
        }
        let notes = match (&anchoring, config.embedded_chain) {
            (Anchoring::Log(c), true) => Some(ChainNotes {
                writer: wtx.clone(),
                chain_id: c.client().chain_id(),
                contract: c.address().to_string(),
            }),
            _ => None,
        };
        // Only the node holding the anchoring lease compares the chain with the log (and
        // corrects what the database notes about anchors); the others follow it.
        let holder = config.node.clone();
        let anchors_now = store
            .anchor_lease(&holder, lease::LEASE_TTL)
            .await?
            .is_some();
        // A chain that cannot be reached now is reconciled by the anchorer once it can; writes
        // are accepted (as pending) meanwhile. Any other disagreement stops the start.
        let anchored_head = match &anchoring {
            Anchoring::Log(_) if !anchors_now => None,
            Anchoring::Log(c) => match reconcile(&store, c, notes.as_ref()).await {
                Ok(head) => Some(head),
                Err(LedgerError::ChainUnavailable(e)) => {
                    tracing::warn!(target: "twinledger::anchor", error = %e, "chain unreachable at start; anchoring waits for it");
                    None
                }
                Err(e) => return Err(e),
            },
            Anchoring::Legacy(_) => None,
        };
        let reanchoring = match &notes {
            Some(_) => loss::unfinished(&store).await?,
            None => None,
        };
        if let Some(retention) = config.idempotency_retention {
            tokio::spawn(retention::prune_idempotency_keys(
                store.clone(),
                retention,
                shutdown_rx.clone(),
            ));
        }
        let lease_state = state_tx.clone();
        let (term, follower): (lease::Term, _) = match (&anchoring, anchored_head) {
            (Anchoring::Log(contract), head) => {
                let follower = lease::LogFollower {
                    store: store.clone(),
                    contract: contract.clone(),
                    waiters: waiters.clone(),
                    sizes: sizes_tx.clone(),
                    metrics: config.metrics.clone(),
                };
                let anchorer = LogAnchorer {
                    store: store.clone(),
                    contract: contract.clone(),
                    waiters,
                    tree: tree_rx.clone(),
                    sizes: sizes_tx,
                    state: state_tx,
                    config: config.anchor.clone(),
                    shutdown: shutdown_rx.clone(),
                    notes,
                    restarts: restarts_rx,
                    paused: paused_rx,
                    reanchoring,
                    metrics: config.metrics.clone(),
                };
                // The first term starts from the reconciliation above; later ones (after the
                // lease went elsewhere and came back) reconcile again.
                let mut start = head;
                let term: lease::Term = Box::new(move |stop| {
                    let mut a = anchorer.clone();
                    a.shutdown = stop;
                    Box::pin(a.run(start.take()))
                });
                (term, lease::Follower::Log(follower))
            }
            (Anchoring::Legacy(contract), _) => {
                let follower = lease::LegacyFollower {
                    store: store.clone(),
                    waiters: waiters.clone(),
                };
                let anchorer = legacy::LegacyAnchorer {
                    store: store.clone(),
                    contract: contract.clone(),
                    waiters,
                    tree: tree_rx.clone(),
                    state: state_tx,
                    receipt_timeout: config.anchor.receipt_timeout,
                    shutdown: shutdown_rx.clone(),
                    metrics: config.metrics.clone(),
                };
                let term: lease::Term = Box::new(move |stop| {
                    let mut a = anchorer.clone();
                    a.shutdown = stop;
                    Box::pin(a.run())
                });
                (term, lease::Follower::Legacy(follower))
            }
        };
        tokio::spawn(
            lease::Leadership {
                store: store.clone(),
                holder,
                shutdown: shutdown_rx,
                term,
                follower,
                state: lease_state,
            }
            .run(),
        );
        config.metrics.attach(StateView {
            tree: tree_rx.clone(),
            sizes: matches!(anchoring, Anchoring::Log(_)).then(|| sizes_rx.clone()),
            anchoring: state_rx.clone(),
            store: store.clone(),
        });
        Ok(Self {
            inner: Arc::new(Inner {
                verifier: Verifier::new(store.clone(), anchoring.clone())
                    .following(sizes_rx.clone()),
                store,
                anchoring,
                writer: wtx,
                write_error: write_error_rx,
                tree: tree_rx,
                sizes: sizes_rx,
                anchor_state: state_rx,
                derived: derived_tx,
                ingestion: Arc::default(),
                shutdown: shutdown_tx,
                restarts: restarts_tx,
                paused: paused_tx,
                embedded_chain: config.embedded_chain,
                metrics: config.metrics,
            }),
        })
    }

    /// Stops the anchorer; records not yet anchored stay pending for the next start.
    pub fn shutdown(&self) {
        let _ = self.inner.shutdown.send(true);
    }

    /// Tells the anchorer that the embedded node was started again from its last snapshot:
    /// the chain is compared with the log at once, and anchors it lost are anchored again.
    pub fn chain_restarted(&self) {
        self.inner.paused.send_replace(false);
        self.inner.restarts.send_modify(|n| *n += 1);
    }

    /// Tells the anchorer that the embedded node is about to stop on purpose (to compact its
    /// history): it sends nothing until [`Ledger::chain_restarted`], so that no caller is told
    /// the chain is down for that moment.
    pub fn chain_stopping(&self) {
        self.inner.paused.send_replace(true);
    }

    /// The whole-history verdict on a twin ([`Verifier::verify_twin`]), riding out the moment
    /// the embedded node is away.
    pub async fn verify_twin(&self, id: &TwinId) -> Result<TwinVerdict> {
        let verdict = self
            .reading_chain(|| self.inner.verifier.verify_twin(id))
            .await?;
        self.inner.metrics.verdict(verdict.integrity);
        Ok(verdict)
    }

    /// The seed's integrity check of a twin ([`Verifier::seed_check`]), riding out the moment
    /// the embedded node is away.
    pub async fn seed_check(&self, id: &TwinId) -> Result<SeedCheck> {
        let check = self
            .reading_chain(|| self.inner.verifier.seed_check(id))
            .await?;
        self.inner.metrics.verdict(check.integrity);
        Ok(check)
    }

    /// Runs a read that asks the chain. The embedded node is away for about a second when it
    /// is compacted or started again after dying; a read that finds it away then waits for it
    /// (at most 5 s) and tries again, rather than answering that the chain is down.
    async fn reading_chain<T, F>(&self, read: impl Fn() -> F) -> Result<T>
    where
        F: std::future::Future<Output = Result<T>>,
    {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            match read().await {
                Err(LedgerError::ChainUnavailable(_))
                    if self.inner.embedded_chain && tokio::time::Instant::now() < deadline =>
                {
                    let mut paused = self.inner.paused.subscribe();
                    let back = async {
                        let _ = paused.wait_for(|p| !*p).await;
                        // Not paused: the node died, and its watcher notices within 100 ms.
                        tokio::time::sleep(Duration::from_millis(250)).await;
                    };
                    let _ = tokio::time::timeout_at(deadline, back).await;
                }
                other => return other,
            }
        }
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    /// The contract records are anchored with.
    pub fn anchoring(&self) -> &Anchoring {
        &self.inner.anchoring
    }

    /// A verifier over the same store and contract.
    pub fn verifier(&self) -> &Verifier {
        &self.inner.verifier
    }

    /// Number of records in the log.
    pub fn tree_size(&self) -> u64 {
        *self.inner.tree.borrow()
    }

    /// Log mode: the anchored and confirmed sizes.
    pub fn anchored_sizes(&self) -> AnchoredSizes {
        *self.inner.sizes.borrow()
    }

    /// Records a state. Returns once the record is durable, and, as `wait` asks, anchored or
    /// confirmed. On a chain failure while waiting the record stays stored as pending and the
    /// error says so.
    pub async fn record(
        &self,
        sub: Submission,
        wait: Wait,
    ) -> Result<(Record, Option<AnchorInfo>)> {
        self.record_waiting(sub, wait, None).await
    }

    /// As [`Ledger::record`], but waits at most `limit` for what `wait` asks once the record is
    /// durable: past it, the record is returned without an anchor (it stays stored, and is
    /// anchored when the chain gets to it), so the caller can tell the client what was written.
    pub async fn record_within(
        &self,
        sub: Submission,
        wait: Wait,
        limit: std::time::Duration,
    ) -> Result<(Record, Option<AnchorInfo>)> {
        self.record_waiting(sub, wait, Some(limit)).await
    }

    async fn record_waiting(
        &self,
        sub: Submission,
        wait: Wait,
        limit: Option<std::time::Duration>,
    ) -> Result<(Record, Option<AnchorInfo>)> {
        if sub.twin_id.as_str().starts_with(RESERVED_PREFIX) {
            return Err(LedgerError::Invalid(format!(
                "twin ids starting with {RESERVED_PREFIX:?} are the ledger's own; {} cannot be \
                 written",
                sub.twin_id
            )));
        }
        let state_hash = sub
            .scheme
            .hash(&sub.state)
            .map(Hash)
            .map_err(|e| LedgerError::Unhashable(e.to_string()))?;
        let mut annex = sub.annex;
        if let Some(signature) = &sub.signature {
            let checked = self
                .check_signature(&sub.twin_id, &sub.state, signature)
                .await?;
            annex.insert("signature", checked.to_annex_member());
        }
        let mut salt = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut salt);
        // What the request asked for, so that a key reused for another request is caught.
        let idempotency = sub.idempotency_key.map(|key| {
            let request = format!(
                "{}\0{}\0{}\0{}",
                sub.twin_id,
                sub.kind,
                sub.scheme.as_str(),
                state_hash
            );
            (key, Hash::digest(request.as_bytes()))
        });
        let new = NewRecord {
            idempotency: idempotency.clone(),
            twin_id: sub.twin_id,
            kind: sub.kind,
            state: sub.state,
            scheme: sub.scheme,
            state_hash,
            recorded_at_ms: now_ms(),
            salt: Salt(salt),
            annex,
        };
        let level = match wait {
            Wait::Stored => None,
            Wait::Anchored => Some(Level::Anchored),
            Wait::Confirmed => Some(Level::Confirmed),
            Wait::Finalized => Some(Level::Finalized),
        };
        let (reply_tx, reply_rx) = oneshot::channel();
        let (anchor_tx, anchor_rx) = match level {
            Some(level) => {
                let (t, r) = oneshot::channel();
                (Some((level, t)), Some(r))
            }
            None => (None, None),
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
        let record = match reply_rx.await.map_err(|_| LedgerError::ShuttingDown)?? {
            Appended::New(record) => record,
            Appended::Replay {
                index,
                same_request,
            } => {
                let key = idempotency.map(|(k, _)| k).unwrap_or_default();
                if !same_request {
                    return Err(LedgerError::IdempotencyMismatch(key));
                }
                let replayed = match limit {
                    None => self.replay(index, wait).await,
                    Some(limit) => {
                        match tokio::time::timeout(limit, self.replay(index, wait)).await {
                            Ok(r) => r,
                            Err(_) => self
                                .replay(index, Wait::Stored)
                                .await
                                .map(|(record, _)| (record, None)),
                        }
                    }
                };
                return replayed;
            }
            Appended::Refused(reason) => return Err(LedgerError::Signature(reason)),
        };
        let anchor = match anchor_rx {
            None => None,
            Some(rx) => match within(limit, rx).await {
                None => None,
                Some(Ok(Ok(a))) => Some(a),
                Some(Ok(Err(e))) => {
                    return Err(LedgerError::Chain(format!(
                        "{e}; twin {} version {} is stored as pending (log index {}) and will be anchored when the chain is back",
                        record.twin_id, record.version, record.index
                    )));
                }
                Some(Err(_)) => return Err(LedgerError::ShuttingDown),
            },
        };
        Ok((record, anchor))
    }

    /// Checks a device signature against the twin's registered key.
    async fn check_signature(
        &self,
        twin: &TwinId,
        state: &Value,
        signature: &str,
    ) -> Result<DeviceSignature> {
        let id = twin.as_str().to_owned();
        let row = self
            .store()
            .device_key(&id)
            .await?
            .ok_or_else(|| LedgerError::Signature(format!("twin {twin} has no device key")))?;
        let key = DeviceKey::from_hex(&row.public_key)
            .map_err(|e| LedgerError::Store(format!("twin {twin}: stored device key: {e}")))?;
        key.verify(state, signature)
            .map_err(|e| LedgerError::Signature(format!("twin {twin}: {e}")))
    }

    /// Registers (or replaces) a twin's device key.
    pub async fn put_device_key(
        &self,
        twin: &TwinId,
        key: &DeviceKey,
        require_signature: bool,
    ) -> Result<DeviceKeyRow> {
        let row = DeviceKeyRow {
            twin_id: twin.as_str().to_owned(),
            public_key: key.to_hex(),
            require_signature,
            registered_at_ms: now_ms(),
        };
        let stored = row.clone();
        self.store().put_device_key(&stored).await?;
        Ok(row)
    }

    /// A twin's device key, if registered.
    pub async fn device_key(&self, twin: &TwinId) -> Result<Option<DeviceKeyRow>> {
        let id = twin.as_str().to_owned();
        Ok(self.store().device_key(&id).await?)
    }

    /// Removes a twin's device key; false if it had none.
    pub async fn delete_device_key(&self, twin: &TwinId) -> Result<bool> {
        let id = twin.as_str().to_owned();
        Ok(self.store().delete_device_key(&id).await?)
    }

    /// A twin's summary: versions, current desired state, congruence band.
    pub async fn twin(&self, twin: &TwinId) -> Result<TwinSummary> {
        let id = twin.clone();
        self.store()
            .twin(&id)
            .await?
            .ok_or_else(|| LedgerError::TwinNotFound(twin.to_string()))
    }

    /// Counters of device messages (MQTT ingestion).
    pub fn ingestion(&self) -> &Arc<IngestionStats> {
        &self.inner.ingestion
    }

    /// Shift events, as they are committed.
    pub fn shifts(&self) -> broadcast::Receiver<Arc<Record>> {
        self.inner.derived.subscribe()
    }

    /// Tree size and anchored sizes, to wait on for changes.
    pub fn progress(&self) -> (watch::Receiver<u64>, watch::Receiver<AnchoredSizes>) {
        (self.inner.tree.clone(), self.inner.sizes.clone())
    }

    /// The first result of a retried request: its record, once it is as far as `wait` asks.
    async fn replay(&self, index: u64, wait: Wait) -> Result<(Record, Option<AnchorInfo>)> {
        loop {
            let row = self
                .store()
                .record_at(index)
                .await?
                .ok_or_else(|| LedgerError::Store(format!("record {index} vanished")))?;
            let record = row
                .decode()
                .map_err(|e| LedgerError::Conflict(format!("the stored record is corrupt: {e}")))?;
            let (status, anchor) = self.status(&row).await?;
            let done = match wait {
                Wait::Stored => true,
                Wait::Anchored => status != Status::Pending,
                Wait::Confirmed => matches!(status, Status::Confirmed | Status::Finalized),
                Wait::Finalized => status == Status::Finalized,
            };
            if done {
                return Ok((record, anchor));
            }
            // Rare (a retry while the first request still waits): polling keeps the waiter
            // bookkeeping to one registration per record.
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// A stored record's status and, once anchored, where.
    pub async fn status(&self, row: &StoredRecord) -> Result<(Status, Option<AnchorInfo>)> {
        match &self.inner.anchoring {
            Anchoring::Legacy(_) => Ok(match row.legacy_anchor() {
                Some(a) => (
                    Status::Anchored,
                    Some(AnchorInfo {
                        tx_hash: a.tx_hash,
                        block_number: a.block_number,
                        block_timestamp: a.block_timestamp,
                        tree_size: None,
                    }),
                ),
                None => (Status::Pending, None),
            }),
            Anchoring::Log(_) => {
                let sizes = self.anchored_sizes();
                if row.index >= sizes.anchored {
                    return Ok((Status::Pending, None));
                }
                let index = row.index;
                let anchor = self.inner.store.anchor_covering(index).await?;
                let status = sizes.status_of(row.index);
                Ok((status, anchor.as_ref().and_then(covering_info)))
            }
        }
    }

    /// The proof bundle of one version of a twin (log mode, once anchored): the record, its
    /// inclusion proof in the first anchored tree that holds it, that tree's head, and where it
    /// was anchored.
    pub async fn proof_bundle(&self, id: &TwinId, version: u64) -> Result<ProofBundle> {
        let Anchoring::Log(contract) = &self.inner.anchoring else {
            return Err(LedgerError::Conflict(
                "proof bundles exist in log mode only; this ledger runs in legacy mode".into(),
            ));
        };
        let row = {
            let id = id.clone();
            self.store().record(&id, version).await?
        }
        .ok_or_else(|| LedgerError::VersionNotFound(id.to_string(), version))?;
        let record = row.decode().map_err(|e| {
            LedgerError::Conflict(format!(
                "the stored record is corrupt ({e}); run `twinledger audit`"
            ))
        })?;
        let index = record.index;
        let anchor = self.store().anchor_covering(index).await?;
        let (Some(anchor), true) = (anchor, index < self.anchored_sizes().anchored) else {
            return Err(LedgerError::Conflict(format!(
                "twin {id} version {version} is not anchored yet; retry once it is"
            )));
        };
        let size = anchor.size;
        let proof = self.store().inclusion_proof(index, size).await?;
        let bundle = ProofBundle {
            leaf: record.leaf(),
            leaf_hash: record.leaf_hash(),
            record,
            inclusion_proof: proof,
            tree_head: TreeHead {
                size,
                root: anchor.root,
            },
            anchor: BundleAnchor {
                chain_id: contract.client().chain_id(),
                contract: contract.address().to_string(),
                tx_hash: anchor.tx_hash,
                block_number: anchor.block_number.unwrap_or_default(),
                block_timestamp: anchor.block_time.unwrap_or_default(),
            },
        };
        // A bundle that fails its own hash math proves nothing; the stored data was altered.
        bundle.verify().map_err(|e| {
            LedgerError::Conflict(format!(
                "twin {id} version {version} fails its own checks ({e}); the stored log was \
                 altered: see /v1/twins/{id}/verify or `twinledger audit`"
            ))
        })?;
        Ok(bundle)
    }

    /// Database and chain health.
    pub async fn health(&self) -> Health {
        let database = self
            .inner
            .store
            .stats()
            .await
            .map(|mut stats| {
                if let Anchoring::Log(_) = self.inner.anchoring {
                    stats.pending = stats.records.saturating_sub(self.anchored_sizes().anchored);
                }
                stats
            })
            .map_err(|e| e.to_string());
        let chain = self
            .inner
            .anchoring
            .client()
            .status()
            .await
            .map_err(|e| e.to_string());
        Health {
            mode: self.inner.anchoring.mode(),
            database,
            write_error: self.inner.write_error.borrow().clone(),
            chain,
            contract: self.inner.anchoring.address().to_string(),
            anchoring: self.inner.anchor_state.borrow().clone(),
            anchored: match self.inner.anchoring {
                Anchoring::Log(_) => Some(self.anchored_sizes()),
                Anchoring::Legacy(_) => None,
            },
            ingestion: self.inner.ingestion.report(),
        }
    }
}

/// Now, in Unix milliseconds (0 if the clock is before 1970).
/// `fut`'s output, or `None` once `limit` (if any) has passed.
async fn within<F: std::future::Future>(
    limit: Option<std::time::Duration>,
    fut: F,
) -> Option<F::Output> {
    match limit {
        None => Some(fut.await),
        Some(limit) => tokio::time::timeout(limit, fut).await.ok(),
    }
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
