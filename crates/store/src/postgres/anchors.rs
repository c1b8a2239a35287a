//! Anchors on the chain, and the records that wait for one.

use async_trait::async_trait;
use twinledger_core::Hash;

use super::{Param, PostgresStore, anchor_row, limit, position, stored_records};
use crate::columns::{ANCHOR_COLUMNS, RECORD_COLUMNS};
use crate::model::{Anchor, LegacyAnchor, StoredRecord};
use crate::{AnchorStore, Result};

impl PostgresStore {
    async fn anchors_where(&self, sql: &str, params: &[&Param<'_>]) -> Result<Vec<Anchor>> {
        let client = self.client().await?;
        let stmt = client.prepare_cached(sql).await?;
        let rows = client.query(&stmt, params).await?;
        rows.iter().map(anchor_row).collect()
    }
}

#[async_trait]
impl AnchorStore for PostgresStore {
    async fn pending(&self, limit_to: usize) -> Result<Vec<StoredRecord>> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(&format!(
                "SELECT {RECORD_COLUMNS} FROM records WHERE status = 'pending' ORDER BY idx LIMIT $1"
            ))
            .await?;
        let rows = client.query(&stmt, &[&limit(limit_to)]).await?;
        stored_records(&rows)
    }

    async fn set_legacy_sent(
        &self,
        index: u64,
        tx_hash: &str,
        chain_timestamp: &str,
    ) -> Result<()> {
        self.change(
            "UPDATE records SET anchor_tx = $2, anchor_timestamp = $3 \
             WHERE idx = $1 AND status = 'pending'",
            &[&position(index), &tx_hash, &chain_timestamp],
        )
        .await?;
        Ok(())
    }

    async fn set_legacy_anchor(&self, index: u64, anchor: &LegacyAnchor) -> Result<()> {
        self.change(
            "UPDATE records SET status = 'anchored', anchor_tx = $2, anchor_block = $3, \
             anchor_block_time = $4, anchor_timestamp = $5 WHERE idx = $1",
            &[
                &position(index),
                &anchor.tx_hash,
                &(anchor.block_number as i64),
                &(anchor.block_timestamp as i64),
                &anchor.chain_timestamp,
            ],
        )
        .await?;
        Ok(())
    }

    async fn latest_anchor_block(&self) -> Result<Option<u64>> {
        let client = self.client().await?;
        // GREATEST skips NULLs: either table may have no block yet.
        let row = client
            .query_one(
                "SELECT GREATEST((SELECT MAX(anchor_block) FROM records), \
                 (SELECT MAX(block_number) FROM anchors))",
                &[],
            )
            .await?;
        Ok(row.try_get::<_, Option<i64>>(0)?.map(|b| b as u64))
    }

    async fn put_anchor_sent(
        &self,
        size: u64,
        root: &Hash,
        prev_size: u64,
        tx_hash: &str,
    ) -> Result<()> {
        self.change(
            "INSERT INTO anchors (size, root, prev_size, tx_hash, status) \
             VALUES ($1, $2, $3, $4, 'sent') ON CONFLICT (size) DO UPDATE SET \
             root = excluded.root, prev_size = excluded.prev_size, tx_hash = excluded.tx_hash, \
             status = 'sent', block_number = NULL, block_hash = NULL, block_time = NULL, \
             gas_used = NULL",
            &[
                &position(size),
                &root.0.as_slice(),
                &position(prev_size),
                &tx_hash,
            ],
        )
        .await?;
        Ok(())
    }

    async fn set_anchor_tx(&self, size: u64, tx_hash: &str) -> Result<()> {
        self.change(
            "UPDATE anchors SET tx_hash = $2 WHERE size = $1 AND status = 'sent'",
            &[&position(size), &tx_hash],
        )
        .await?;
        Ok(())
    }

    async fn set_anchor_mined(
        &self,
        size: u64,
        block_number: u64,
        block_hash: &str,
        block_time: u64,
        gas_used: u64,
    ) -> Result<()> {
        self.change(
            "UPDATE anchors SET status = 'mined', block_number = $2, block_hash = $3, \
             block_time = $4, gas_used = $5 WHERE size = $1",
            &[
                &position(size),
                &(block_number as i64),
                &block_hash,
                &(block_time as i64),
                &(gas_used as i64),
            ],
        )
        .await?;
        Ok(())
    }

    async fn set_anchors_confirmed(&self, up_to_size: u64) -> Result<()> {
        self.change(
            "UPDATE anchors SET status = 'confirmed' WHERE size <= $1 AND status = 'mined'",
            &[&position(up_to_size)],
        )
        .await?;
        Ok(())
    }

    async fn delete_anchor(&self, size: u64) -> Result<()> {
        self.change("DELETE FROM anchors WHERE size = $1", &[&position(size)])
            .await?;
        Ok(())
    }

    async fn anchors(&self, from_size: u64, limit_to: usize) -> Result<Vec<Anchor>> {
        self.anchors_where(
            &format!(
                "SELECT {ANCHOR_COLUMNS} FROM anchors WHERE size >= $1 ORDER BY size LIMIT $2"
            ),
            &[&position(from_size), &limit(limit_to)],
        )
        .await
    }

    async fn anchor_covering(&self, index: u64) -> Result<Option<Anchor>> {
        Ok(self
            .anchors_where(
                &format!(
                    "SELECT {ANCHOR_COLUMNS} FROM anchors WHERE size > $1 AND status != 'sent' \
                     ORDER BY size LIMIT 1"
                ),
                &[&position(index)],
            )
            .await?
            .pop())
    }

    async fn latest_mined_anchor(&self) -> Result<Option<Anchor>> {
        Ok(self
            .anchors_where(
                &format!(
                    "SELECT {ANCHOR_COLUMNS} FROM anchors WHERE status != 'sent' \
                     ORDER BY size DESC LIMIT 1"
                ),
                &[],
            )
            .await?
            .pop())
    }
}
