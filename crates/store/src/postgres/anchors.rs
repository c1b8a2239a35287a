//! Anchors on the chain, and the records that wait for one.

use std::collections::VecDeque;
use std::time::Duration;

use async_trait::async_trait;
use twinledger_core::Hash;

use super::{Param, PostgresStore, anchor_row, limit, position, stored_records};
use crate::columns::{ANCHOR_COLUMNS, RECORD_COLUMNS};
use crate::model::{Anchor, LegacyAnchor, StoredRecord};
use crate::{AnchorStore, Result, StoreError};

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
             gas_used = NULL, replacements = 0",
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
            "UPDATE anchors SET tx_hash = $2, replacements = replacements + 1 \
             WHERE size = $1 AND status = 'sent'",
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

    async fn anchors_below(&self, below_size: u64, limit_to: usize) -> Result<Vec<Anchor>> {
        self.anchors_where(
            &format!(
                "SELECT {ANCHOR_COLUMNS} FROM anchors WHERE size < $1 ORDER BY size DESC LIMIT $2"
            ),
            &[
                &i64::try_from(below_size).unwrap_or(i64::MAX),
                &limit(limit_to),
            ],
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

    async fn anchor_lease(&self, holder: &str, ttl: Duration) -> Result<Option<u64>> {
        let client = self.client().await?;
        // Kept by its holder while it runs, taken by anyone once it has run out; the epoch
        // moves whenever the holder changes or a lapsed lease is taken again.
        let stmt = client
            .prepare_cached(
                "INSERT INTO anchor_lease AS l (holder, epoch, expires_at) \
                 VALUES ($1, 1, clock_timestamp() + $2 * interval '1 millisecond') \
                 ON CONFLICT (id) DO UPDATE SET \
                     epoch = CASE WHEN l.holder = excluded.holder \
                                   AND l.expires_at > clock_timestamp() \
                              THEN l.epoch ELSE l.epoch + 1 END, \
                     holder = excluded.holder, \
                     expires_at = excluded.expires_at \
                 WHERE l.holder = excluded.holder OR l.expires_at <= clock_timestamp() \
                 RETURNING epoch",
            )
            .await?;
        let millis = ttl.as_millis().min(i64::MAX as u128) as f64;
        let row = client.query_opt(&stmt, &[&holder, &millis]).await?;
        Ok(row.map(|r| r.get::<_, i64>(0).max(0) as u64))
    }

    async fn release_anchor_lease(&self, holder: &str) -> Result<()> {
        self.change(
            "UPDATE anchor_lease SET expires_at = clock_timestamp() WHERE holder = $1",
            &[&holder],
        )
        .await?;
        Ok(())
    }

    async fn replicated_size(&self) -> Result<Option<u64>> {
        let client = self.client().await?;
        // The size and a write-ahead log position at or after its batch's commit, read
        // together; and how far the synchronous standbys have flushed.
        let stmt = client
            .prepare_cached(
                "SELECT (SELECT size FROM log_head), pg_current_wal_insert_lsn()::text, \
                        current_setting('synchronous_standby_names'), \
                        (SELECT max(flush_lsn)::text FROM pg_stat_replication \
                         WHERE sync_state IN ('sync', 'quorum'))",
            )
            .await?;
        let row = client.query_one(&stmt, &[]).await?;
        let standbys: String = row.get(2);
        if standbys.trim().is_empty() {
            return Ok(None);
        }
        let size = row.get::<_, Option<i64>>(0).unwrap_or(0).max(0) as u64;
        let written = lsn(row.get(1))?;
        let flushed = match row.get::<_, Option<String>>(3) {
            Some(text) => lsn(text)?,
            None => 0,
        };
        let mut r = self.unreplicated.lock().unwrap_or_else(|p| p.into_inner());
        Ok(Some(r.observe(size, written, flushed)))
    }
}

/// A write-ahead log position (`16/B374D848`) as a number.
fn lsn(text: String) -> Result<u64> {
    text.split_once('/')
        .and_then(|(hi, lo)| {
            Some(u64::from_str_radix(hi, 16).ok()? << 32 | u64::from_str_radix(lo, 16).ok()?)
        })
        .ok_or_else(|| StoreError::Inconsistent(format!("not a WAL position: {text}")))
}

/// Log sizes not yet known to be on the synchronous standbys, each with a WAL position at or
/// after its commit, and the largest size known to be there.
#[derive(Debug, Default)]
pub(super) struct Replication {
    waiting: VecDeque<(u64, u64)>,
    replicated: u64,
}

/// Sizes remembered while the standbys lag; commits wait for them, so few pile up.
const REPLICATION_WAITING_MAX: usize = 1024;

impl Replication {
    /// Notes `size` with the position `written` after it, and returns the largest size whose
    /// position the standbys have `flushed`.
    fn observe(&mut self, size: u64, written: u64, flushed: u64) -> u64 {
        if size > self.replicated
            && self.waiting.back().is_none_or(|(s, _)| *s < size)
            && self.waiting.len() < REPLICATION_WAITING_MAX
        {
            self.waiting.push_back((size, written));
        }
        while let Some(&(s, at)) = self.waiting.front() {
            if at > flushed {
                break;
            }
            self.replicated = self.replicated.max(s);
            self.waiting.pop_front();
        }
        self.replicated
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_size_counts_as_replicated_once_the_standby_flushed_past_it() {
        let mut r = Replication::default();
        assert_eq!(r.observe(10, 100, 50), 0);
        assert_eq!(r.observe(20, 200, 150), 10);
        assert_eq!(r.observe(20, 210, 150), 10);
        assert_eq!(r.observe(30, 300, 300), 30);
        assert_eq!(r.observe(30, 310, 0), 30, "never goes back");
    }

    #[test]
    fn wal_positions_read_as_numbers() {
        assert_eq!(lsn("0/0".into()).expect("lsn"), 0);
        assert_eq!(
            lsn("16/B374D848".into()).expect("lsn"),
            0x16 << 32 | 0xB374_D848
        );
        assert!(lsn("nope".into()).is_err());
    }
}
