//! Anchors on the chain, and the records that wait for one.

use rusqlite::{OptionalExtension, params};
use twinledger_core::Hash;

use super::{ANCHOR_COLUMNS, Database, RECORD_COLUMNS, anchor_row, stored_record};
use crate::Result;
use crate::model::{Anchor, LegacyAnchor, StoredRecord};

impl Database {
    pub(super) fn pending(&self, limit: usize) -> Result<Vec<StoredRecord>> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {RECORD_COLUMNS} FROM records WHERE status = 'pending' ORDER BY idx LIMIT ?1"
            ))?;
            let rows = stmt.query_map([limit as i64], stored_record)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    pub(super) fn set_legacy_sent(
        &self,
        index: u64,
        tx_hash: &str,
        chain_timestamp: &str,
    ) -> Result<()> {
        self.write(|c| {
            c.prepare_cached(
                "UPDATE records SET anchor_tx = ?2, anchor_timestamp = ?3 \
                 WHERE idx = ?1 AND status = 'pending'",
            )?
            .execute(params![index as i64, tx_hash, chain_timestamp])?;
            Ok(())
        })
    }

    pub(super) fn set_legacy_anchor(&self, index: u64, anchor: &LegacyAnchor) -> Result<()> {
        self.write(|c| {
            c.prepare_cached(
                "UPDATE records SET status = 'anchored', anchor_tx = ?2, anchor_block = ?3, \
                 anchor_block_time = ?4, anchor_timestamp = ?5 WHERE idx = ?1",
            )?
            .execute(params![
                index as i64,
                anchor.tx_hash,
                anchor.block_number as i64,
                anchor.block_timestamp as i64,
                anchor.chain_timestamp,
            ])?;
            Ok(())
        })
    }

    pub(super) fn latest_anchor_block(&self) -> Result<Option<u64>> {
        self.read(|c| {
            let b: Option<i64> = c.query_row(
                "SELECT MAX(b) FROM (SELECT MAX(anchor_block) AS b FROM records \
                 UNION ALL SELECT MAX(block_number) FROM anchors)",
                [],
                |r| r.get(0),
            )?;
            Ok(b.map(|b| b as u64))
        })
    }

    pub(super) fn put_anchor_sent(
        &self,
        size: u64,
        root: &Hash,
        prev_size: u64,
        tx_hash: &str,
    ) -> Result<()> {
        self.write(|c| {
            c.prepare_cached(
                "INSERT INTO anchors (size, root, prev_size, tx_hash, status) \
                 VALUES (?1, ?2, ?3, ?4, 'sent') ON CONFLICT (size) DO UPDATE SET \
                 root = excluded.root, prev_size = excluded.prev_size, tx_hash = excluded.tx_hash, \
                 status = 'sent', block_number = NULL, block_hash = NULL, block_time = NULL, \
                 gas_used = NULL, replacements = 0",
            )?
            .execute(params![
                size as i64,
                root.0.as_slice(),
                prev_size as i64,
                tx_hash
            ])?;
            Ok(())
        })
    }

    pub(super) fn set_anchor_tx(&self, size: u64, tx_hash: &str) -> Result<()> {
        self.write(|c| {
            c.prepare_cached(
                "UPDATE anchors SET tx_hash = ?2, replacements = replacements + 1 \
                 WHERE size = ?1 AND status = 'sent'",
            )?
            .execute(params![size as i64, tx_hash])?;
            Ok(())
        })
    }

    pub(super) fn set_anchor_mined(
        &self,
        size: u64,
        block_number: u64,
        block_hash: &str,
        block_time: u64,
        gas_used: u64,
    ) -> Result<()> {
        self.write(|c| {
            c.prepare_cached(
                "UPDATE anchors SET status = 'mined', block_number = ?2, block_hash = ?3, \
                 block_time = ?4, gas_used = ?5 WHERE size = ?1",
            )?
            .execute(params![
                size as i64,
                block_number as i64,
                block_hash,
                block_time as i64,
                gas_used as i64
            ])?;
            Ok(())
        })
    }

    pub(super) fn set_anchors_confirmed(&self, up_to_size: u64) -> Result<()> {
        self.write(|c| {
            c.prepare_cached(
                "UPDATE anchors SET status = 'confirmed' WHERE size <= ?1 AND status = 'mined'",
            )?
            .execute([up_to_size as i64])?;
            Ok(())
        })
    }

    pub(super) fn delete_anchor(&self, size: u64) -> Result<()> {
        self.write(|c| {
            c.prepare_cached("DELETE FROM anchors WHERE size = ?1")?
                .execute([size as i64])?;
            Ok(())
        })
    }

    pub(super) fn anchors(&self, from_size: u64, limit: usize) -> Result<Vec<Anchor>> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {ANCHOR_COLUMNS} FROM anchors WHERE size >= ?1 ORDER BY size LIMIT ?2"
            ))?;
            let rows = stmt.query_map(params![from_size as i64, limit as i64], anchor_row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    pub(super) fn anchors_below(&self, below_size: u64, limit: usize) -> Result<Vec<Anchor>> {
        let below = i64::try_from(below_size).unwrap_or(i64::MAX);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(|c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {ANCHOR_COLUMNS} FROM anchors WHERE size < ?1 ORDER BY size DESC LIMIT ?2"
            ))?;
            let rows = stmt.query_map(params![below, limit], anchor_row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    pub(super) fn anchor_covering(&self, index: u64) -> Result<Option<Anchor>> {
        self.read(|c| {
            Ok(c.prepare_cached(&format!(
                "SELECT {ANCHOR_COLUMNS} FROM anchors WHERE size > ?1 AND status != 'sent' \
                 ORDER BY size LIMIT 1"
            ))?
            .query_row([index as i64], anchor_row)
            .optional()?)
        })
    }

    pub(super) fn latest_mined_anchor(&self) -> Result<Option<Anchor>> {
        self.read(|c| {
            Ok(c.prepare_cached(&format!(
                "SELECT {ANCHOR_COLUMNS} FROM anchors WHERE status != 'sent' \
                 ORDER BY size DESC LIMIT 1"
            ))?
            .query_row([], anchor_row)
            .optional()?)
        })
    }
}
