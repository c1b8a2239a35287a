//! The log: appends, records by index, the tree and its proofs.

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};

use async_trait::async_trait;
use twinledger_core::{
    ConsistencyProof, Frontier, Hash, InclusionProof, NodeSource, TreeHead, TwinId,
};

use super::{Param, PostgresStore, client, frontier_of, limit, position, stored_records};
use crate::batch::node_key;
use crate::columns::RECORD_COLUMNS;
use crate::model::{AppendOutcome, NewRecord, StoredRecord};
use crate::{LogStore, RecordBatches, Result, StoreError};

/// Records per batch of a scan: one query each.
const SCAN_BATCH: usize = 4096;

/// Tree nodes for one proof or head. A proof's path depends only on its sizes and indexes, not
/// on any hash: generated once against `Wanted`, it names every node it needs, which are then
/// read in one round trip and the proof generated again from them.
pub(super) enum Nodes<'w> {
    /// Notes each node asked for and answers a placeholder.
    Wanted(&'w RefCell<BTreeSet<(u32, u64)>>),
    /// The nodes read.
    Read(HashMap<(u32, u64), Hash>),
}

impl NodeSource for Nodes<'_> {
    type Error = StoreError;

    fn node(&self, level: u32, index: u64) -> Result<Hash> {
        match self {
            Self::Wanted(wanted) => {
                wanted.borrow_mut().insert((level, index));
                Ok(Hash::default())
            }
            Self::Read(read) => read.get(&(level, index)).copied().ok_or_else(|| {
                StoreError::Inconsistent(format!("tree node ({level}, {index}) is missing"))
            }),
        }
    }
}

impl PostgresStore {
    /// Runs `generate` against the stored nodes it needs, read in one round trip.
    pub(super) async fn with_nodes<T>(
        &self,
        generate: impl Fn(&Nodes<'_>) -> Result<T>,
    ) -> Result<T> {
        let wanted = {
            let wanted = RefCell::default();
            generate(&Nodes::Wanted(&wanted))?;
            wanted.into_inner()
        };
        let mut leaves = Vec::new();
        let mut keys = Vec::new();
        let mut by_key = HashMap::new();
        for &(level, index) in &wanted {
            if level == 0 {
                leaves.push(position(index));
            } else {
                let key = node_key(level, index)?;
                keys.push(key);
                by_key.insert(key, (level, index));
            }
        }
        let mut read = HashMap::with_capacity(wanted.len());
        if !wanted.is_empty() {
            let client = self.client().await?;
            let (read_leaves, read_nodes) = tokio::try_join!(
                client.prepare_cached("SELECT idx, leaf_hash FROM records WHERE idx = ANY($1)"),
                client.prepare_cached("SELECT key, hash FROM tree_nodes WHERE key = ANY($1)"),
            )?;
            let (leaves, keys): ([&Param<'_>; 1], [&Param<'_>; 1]) = ([&leaves], [&keys]);
            let (leaf_rows, node_rows) = tokio::try_join!(
                client.query(&read_leaves, &leaves),
                client.query(&read_nodes, &keys),
            )?;
            let mut put = |at: (u32, u64), bytes: &[u8]| -> Result<()> {
                let hash = Hash::from_slice(bytes).map_err(|e| {
                    StoreError::Inconsistent(format!("tree node ({}, {}): {e}", at.0, at.1))
                })?;
                read.insert(at, hash);
                Ok(())
            };
            for row in &leaf_rows {
                put((0, row.try_get::<_, i64>(0)? as u64), row.try_get(1)?)?;
            }
            for row in &node_rows {
                let key: i64 = row.try_get(0)?;
                if let Some(&at) = by_key.get(&key) {
                    put(at, row.try_get(1)?)?;
                }
            }
        }
        generate(&Nodes::Read(read))
    }
}

#[async_trait]
impl LogStore for PostgresStore {
    async fn append(&self, batch: Vec<NewRecord>) -> Result<AppendOutcome> {
        self.appender.append(batch).await
    }

    async fn await_turn(&self) {
        self.appender.await_turn().await
    }

    async fn frontier(&self) -> Result<Frontier> {
        let client = self.client().await?;
        let row = client
            .query_one("SELECT size, peaks FROM log_head", &[])
            .await?;
        frontier_of(&row)
    }

    async fn frontier_at(&self, size: u64) -> Result<Frontier> {
        self.with_nodes(|nodes| Frontier::load(nodes, size)).await
    }

    async fn inclusion_proof(&self, index: u64, size: u64) -> Result<InclusionProof> {
        self.with_nodes(|nodes| InclusionProof::generate(nodes, index, size))
            .await
    }

    async fn inclusion_proofs(
        &self,
        indexes: Vec<u64>,
        size: u64,
    ) -> Result<Vec<Result<InclusionProof>>> {
        // Every node of every proof in one round trip; a node missing fails only the proofs
        // that need it.
        self.with_nodes(|nodes| {
            Ok(indexes
                .iter()
                .map(|&i| InclusionProof::generate(nodes, i, size))
                .collect())
        })
        .await
    }

    async fn consistency_proof(&self, first: u64, second: u64) -> Result<ConsistencyProof> {
        self.with_nodes(|nodes| ConsistencyProof::generate(nodes, first, second))
            .await
    }

    async fn tree_head(&self, size: u64) -> Result<TreeHead> {
        let root = self
            .with_nodes(|nodes| twinledger_core::range_root(nodes, 0, size))
            .await?;
        Ok(TreeHead { size, root })
    }

    async fn record_at(&self, index: u64) -> Result<Option<StoredRecord>> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(&format!(
                "SELECT {RECORD_COLUMNS} FROM records WHERE idx = $1"
            ))
            .await?;
        let rows = client.query(&stmt, &[&position(index)]).await?;
        Ok(stored_records(&rows)?.pop())
    }

    fn log_sizes(&self) -> Option<crate::LogSizes> {
        Some(super::listen::log_sizes(&self.config))
    }

    fn scan(&self, from: u64) -> RecordBatches {
        let (pool, target) = (self.pool.clone(), self.target.clone());
        // Keyset pages, each read when the consumer asks for the next: records are never
        // rewritten, so pages read one after another form one consistent log.
        Box::pin(futures_util::stream::unfold(Some(from), move |next| {
            let (pool, target) = (pool.clone(), target.clone());
            async move {
                let from = next?;
                let page = async {
                    let client = client(&pool, &target).await?;
                    let stmt = client
                        .prepare_cached(&format!(
                            "SELECT {RECORD_COLUMNS} FROM records WHERE idx >= $1 \
                             ORDER BY idx LIMIT $2"
                        ))
                        .await?;
                    let rows = client
                        .query(&stmt, &[&position(from), &limit(SCAN_BATCH)])
                        .await?;
                    stored_records(&rows)
                };
                match page.await {
                    Ok(records) if records.is_empty() => None,
                    Ok(records) => {
                        let after = match records.last() {
                            Some(last) if records.len() == SCAN_BATCH => Some(last.index + 1),
                            _ => None,
                        };
                        Some((Ok(records), after))
                    }
                    Err(e) => Some((Err(e), None)),
                }
            }
        }))
    }

    async fn records_from(
        &self,
        from: u64,
        twin: Option<&TwinId>,
        limit_to: usize,
    ) -> Result<Vec<StoredRecord>> {
        let client = self.client().await?;
        let rows = match twin {
            None => {
                let stmt = client
                    .prepare_cached(&format!(
                        "SELECT {RECORD_COLUMNS} FROM records WHERE idx >= $1 ORDER BY idx LIMIT $2"
                    ))
                    .await?;
                client
                    .query(&stmt, &[&position(from), &limit(limit_to)])
                    .await?
            }
            // Through the (twin_id, version) index: versions grow with log indexes.
            Some(id) => {
                let stmt = client
                    .prepare_cached(&format!(
                        "SELECT {RECORD_COLUMNS} FROM records WHERE twin_id = $1 AND idx >= $2 \
                         ORDER BY version LIMIT $3"
                    ))
                    .await?;
                client
                    .query(&stmt, &[&id.as_str(), &position(from), &limit(limit_to)])
                    .await?
            }
        };
        stored_records(&rows)
    }
}
