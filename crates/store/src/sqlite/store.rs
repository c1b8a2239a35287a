//! The store interface over [`Database`]: each call moves its arguments to a blocking thread.

use async_trait::async_trait;
use twinledger_core::{ConsistencyProof, Frontier, Hash, InclusionProof, TreeHead, TwinId};

use super::{Database, RECORD_COLUMNS, SqliteStore, stored_record};
use crate::model::{
    Anchor, ApiKey, AppendOutcome, DeviceKeyRow, LegacyAnchor, NewRecord, StoreStats, StoredRecord,
    TwinSummary,
};
use crate::{AnchorStore, KeyStore, LogStore, RecordBatches, Result, Store, StoreError, TwinStore};

/// Rows (or proofs) a read may ask for and still run on the calling thread
/// ([`SqliteStore::now`]); more go to a blocking thread.
const INLINE_ROWS: usize = 64;

#[async_trait]
impl LogStore for SqliteStore {
    async fn append(&self, batch: Vec<NewRecord>) -> Result<AppendOutcome> {
        let (reply, outcome) = tokio::sync::oneshot::channel();
        let stopped = || StoreError::Inconsistent("the append thread has stopped".into());
        self.appends.send((batch, reply)).map_err(|_| stopped())?;
        outcome.await.map_err(|_| stopped())?
    }

    async fn frontier(&self) -> Result<Frontier> {
        self.run(Database::frontier).await
    }

    async fn frontier_at(&self, size: u64) -> Result<Frontier> {
        self.run(move |db| db.frontier_at(size)).await
    }

    async fn inclusion_proof(&self, index: u64, size: u64) -> Result<InclusionProof> {
        self.now(|db| db.inclusion_proof(index, size))
    }

    async fn inclusion_proofs(
        &self,
        indexes: Vec<u64>,
        size: u64,
    ) -> Result<Vec<Result<InclusionProof>>> {
        if indexes.len() <= INLINE_ROWS {
            self.now(|db| db.inclusion_proofs(&indexes, size))
        } else {
            self.run(move |db| db.inclusion_proofs(&indexes, size))
                .await
        }
    }

    async fn consistency_proof(&self, first: u64, second: u64) -> Result<ConsistencyProof> {
        self.run(move |db| db.consistency_proof(first, second))
            .await
    }

    async fn tree_head(&self, size: u64) -> Result<TreeHead> {
        self.run(move |db| db.tree_head(size)).await
    }

    async fn record_at(&self, index: u64) -> Result<Option<StoredRecord>> {
        self.run(move |db| db.record_at(index)).await
    }

    fn scan(&self, from: u64) -> RecordBatches {
        self.batches(
            format!("SELECT {RECORD_COLUMNS} FROM records WHERE idx >= ?1 ORDER BY idx"),
            vec![from as i64],
            stored_record,
        )
    }

    fn log_sizes(&self) -> Option<crate::LogSizes> {
        // The data directory's lock keeps other processes from serving (and appending to) it.
        None
    }

    async fn records_from(
        &self,
        from: u64,
        twin: Option<&TwinId>,
        limit: usize,
    ) -> Result<Vec<StoredRecord>> {
        let twin = twin.cloned();
        self.run(move |db| db.records_from(from, twin.as_ref(), limit))
            .await
    }
}

#[async_trait]
impl TwinStore for SqliteStore {
    async fn twin(&self, id: &TwinId) -> Result<Option<TwinSummary>> {
        let id = id.clone();
        self.now(|db| db.twin(&id))
    }

    async fn twins(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<TwinSummary>> {
        let (prefix, after) = (prefix.to_owned(), after.map(str::to_owned));
        self.run(move |db| db.twins(&prefix, after.as_deref(), limit))
            .await
    }

    async fn record(&self, id: &TwinId, version: u64) -> Result<Option<StoredRecord>> {
        let id = id.clone();
        self.now(|db| db.record(&id, version))
    }

    async fn history(
        &self,
        id: &TwinId,
        from_version: u64,
        limit: usize,
    ) -> Result<Vec<StoredRecord>> {
        let id = id.clone();
        if limit <= INLINE_ROWS {
            self.now(|db| db.history(&id, from_version, limit))
        } else {
            self.run(move |db| db.history(&id, from_version, limit))
                .await
        }
    }

    async fn congruence_history(
        &self,
        id: &TwinId,
        after_version: u64,
        from_ms: i64,
        to_ms: i64,
        limit: usize,
    ) -> Result<Vec<StoredRecord>> {
        let id = id.clone();
        self.run(move |db| db.congruence_history(&id, after_version, from_ms, to_ms, limit))
            .await
    }

    async fn latest_assessed(&self, id: &TwinId) -> Result<Option<StoredRecord>> {
        let id = id.clone();
        self.run(move |db| db.latest_assessed(&id)).await
    }
}

#[async_trait]
impl AnchorStore for SqliteStore {
    async fn pending(&self, limit: usize) -> Result<Vec<StoredRecord>> {
        self.run(move |db| db.pending(limit)).await
    }

    async fn set_legacy_sent(
        &self,
        index: u64,
        tx_hash: &str,
        chain_timestamp: &str,
    ) -> Result<()> {
        let (tx_hash, chain_timestamp) = (tx_hash.to_owned(), chain_timestamp.to_owned());
        self.run(move |db| db.set_legacy_sent(index, &tx_hash, &chain_timestamp))
            .await
    }

    async fn set_legacy_anchor(&self, index: u64, anchor: &LegacyAnchor) -> Result<()> {
        let anchor = anchor.clone();
        self.run(move |db| db.set_legacy_anchor(index, &anchor))
            .await
    }

    async fn latest_anchor_block(&self) -> Result<Option<u64>> {
        self.run(Database::latest_anchor_block).await
    }

    async fn put_anchor_sent(
        &self,
        size: u64,
        root: &Hash,
        prev_size: u64,
        tx_hash: &str,
    ) -> Result<()> {
        let (root, tx_hash) = (*root, tx_hash.to_owned());
        self.run(move |db| db.put_anchor_sent(size, &root, prev_size, &tx_hash))
            .await
    }

    async fn set_anchor_tx(&self, size: u64, tx_hash: &str) -> Result<()> {
        let tx_hash = tx_hash.to_owned();
        self.run(move |db| db.set_anchor_tx(size, &tx_hash)).await
    }

    async fn set_anchor_mined(
        &self,
        size: u64,
        block_number: u64,
        block_hash: &str,
        block_time: u64,
        gas_used: u64,
    ) -> Result<()> {
        let block_hash = block_hash.to_owned();
        self.run(move |db| {
            db.set_anchor_mined(size, block_number, &block_hash, block_time, gas_used)
        })
        .await
    }

    async fn set_anchors_confirmed(&self, up_to_size: u64) -> Result<()> {
        self.run(move |db| db.set_anchors_confirmed(up_to_size))
            .await
    }

    async fn delete_anchor(&self, size: u64) -> Result<()> {
        self.run(move |db| db.delete_anchor(size)).await
    }

    async fn anchors(&self, from_size: u64, limit: usize) -> Result<Vec<Anchor>> {
        self.run(move |db| db.anchors(from_size, limit)).await
    }

    async fn anchors_below(&self, below_size: u64, limit: usize) -> Result<Vec<Anchor>> {
        self.run(move |db| db.anchors_below(below_size, limit))
            .await
    }

    async fn anchor_covering(&self, index: u64) -> Result<Option<Anchor>> {
        self.now(|db| db.anchor_covering(index))
    }

    async fn latest_mined_anchor(&self) -> Result<Option<Anchor>> {
        self.run(Database::latest_mined_anchor).await
    }

    async fn anchor_lease(&self, _holder: &str, _ttl: std::time::Duration) -> Result<Option<u64>> {
        // One process serves a SQLite file (the data directory is locked): it always anchors.
        Ok(Some(1))
    }

    async fn release_anchor_lease(&self, _holder: &str) -> Result<()> {
        Ok(())
    }

    async fn replicated_size(&self) -> Result<Option<u64>> {
        Ok(None)
    }
}

#[async_trait]
impl KeyStore for SqliteStore {
    async fn put_api_key(&self, key: &ApiKey) -> Result<()> {
        let key = key.clone();
        self.run(move |db| db.put_api_key(&key)).await
    }

    async fn api_key(&self, id: &str) -> Result<Option<ApiKey>> {
        let id = id.to_owned();
        self.now(|db| db.api_key(&id))
    }

    async fn api_keys(&self) -> Result<Vec<ApiKey>> {
        self.run(Database::api_keys).await
    }

    async fn revoke_api_key(&self, id: &str, at_ms: i64) -> Result<bool> {
        let id = id.to_owned();
        self.run(move |db| db.revoke_api_key(&id, at_ms)).await
    }

    async fn prune_idempotency_keys(&self, created_before_ms: i64, limit: usize) -> Result<usize> {
        self.run(move |db| db.prune_idempotency_keys(created_before_ms, limit))
            .await
    }

    async fn put_device_key(&self, key: &DeviceKeyRow) -> Result<()> {
        let key = key.clone();
        self.run(move |db| db.put_device_key(&key)).await
    }

    async fn device_key(&self, twin_id: &str) -> Result<Option<DeviceKeyRow>> {
        let twin_id = twin_id.to_owned();
        self.run(move |db| db.device_key(&twin_id)).await
    }

    async fn delete_device_key(&self, twin_id: &str) -> Result<bool> {
        let twin_id = twin_id.to_owned();
        self.run(move |db| db.delete_device_key(&twin_id)).await
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn meta(&self, key: &str) -> Result<Option<String>> {
        let key = key.to_owned();
        self.run(move |db| db.meta(&key)).await
    }

    async fn set_meta(&self, key: &str, value: &str) -> Result<()> {
        let (key, value) = (key.to_owned(), value.to_owned());
        self.run(move |db| db.set_meta(&key, &value)).await
    }

    async fn set_meta_once(&self, key: &str, value: &str) -> Result<String> {
        let (key, value) = (key.to_owned(), value.to_owned());
        self.run(move |db| db.set_meta_once(&key, &value)).await
    }

    async fn stats(&self) -> Result<StoreStats> {
        self.run(Database::stats).await
    }
}
