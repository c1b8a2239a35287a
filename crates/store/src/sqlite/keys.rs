//! API keys, idempotency keys and device keys.

use rusqlite::{OptionalExtension, Row, params};

use super::{API_KEY_COLUMNS, Database, api_key_row};
use crate::Result;
use crate::columns::DEVICE_KEY_COLUMNS;
use crate::model::{ApiKey, DeviceKeyRow};

impl Database {
    pub(super) fn put_api_key(&self, key: &ApiKey) -> Result<()> {
        self.write(|c| {
            c.prepare_cached(&format!(
                "INSERT INTO api_keys ({API_KEY_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
            ))?
            .execute(params![
                key.id,
                key.secret_hash.0.as_slice(),
                key.scope,
                key.twin_prefix,
                key.label,
                key.created_at_ms,
                key.revoked_at_ms
            ])?;
            Ok(())
        })
    }

    pub(super) fn api_key(&self, id: &str) -> Result<Option<ApiKey>> {
        self.read(|c| {
            Ok(c.prepare_cached(&format!(
                "SELECT {API_KEY_COLUMNS} FROM api_keys WHERE id = ?1"
            ))?
            .query_row([id], api_key_row)
            .optional()?)
        })
    }

    pub(super) fn api_keys(&self) -> Result<Vec<ApiKey>> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {API_KEY_COLUMNS} FROM api_keys ORDER BY created_at_ms, id"
            ))?;
            let rows = stmt.query_map([], api_key_row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    pub(super) fn revoke_api_key(&self, id: &str, at_ms: i64) -> Result<bool> {
        self.write(|c| {
            let n = c
                .prepare_cached(
                    "UPDATE api_keys SET revoked_at_ms = ?2 WHERE id = ?1 AND revoked_at_ms IS NULL",
                )?
                .execute(params![id, at_ms])?;
            Ok(n == 1)
        })
    }

    pub(super) fn prune_idempotency_keys(
        &self,
        created_before_ms: i64,
        limit: usize,
    ) -> Result<usize> {
        self.write(|c| {
            // Through rowids, so that one batch holds the write lock only for `limit` rows; the
            // index on created_at_ms finds them without a table scan.
            Ok(c.prepare_cached(
                "DELETE FROM idempotency_keys WHERE rowid IN (SELECT rowid FROM idempotency_keys \
                 WHERE created_at_ms < ?1 LIMIT ?2)",
            )?
            .execute(params![created_before_ms, limit as i64])?)
        })
    }

    pub(super) fn put_device_key(&self, key: &DeviceKeyRow) -> Result<()> {
        self.write(|c| {
            c.prepare_cached(
                "INSERT INTO device_keys (twin_id, public_key, require_signature, \
                 registered_at_ms) VALUES (?1, ?2, ?3, ?4) ON CONFLICT (twin_id) DO UPDATE SET \
                 public_key = excluded.public_key, require_signature = excluded.require_signature, \
                 registered_at_ms = excluded.registered_at_ms",
            )?
            .execute(params![
                key.twin_id,
                key.public_key,
                key.require_signature,
                key.registered_at_ms
            ])?;
            Ok(())
        })
    }

    pub(super) fn device_key(&self, twin_id: &str) -> Result<Option<DeviceKeyRow>> {
        self.read(|c| {
            Ok(c.prepare_cached(&format!(
                "SELECT {DEVICE_KEY_COLUMNS} FROM device_keys WHERE twin_id = ?1"
            ))?
            .query_row([twin_id], device_key_row)
            .optional()?)
        })
    }

    pub(super) fn delete_device_key(&self, twin_id: &str) -> Result<bool> {
        self.write(|c| {
            let n = c
                .prepare_cached("DELETE FROM device_keys WHERE twin_id = ?1")?
                .execute([twin_id])?;
            Ok(n > 0)
        })
    }
}

/// A device key, read by `DEVICE_KEY_COLUMNS`.
pub(super) fn device_key_row(r: &Row<'_>) -> rusqlite::Result<DeviceKeyRow> {
    Ok(DeviceKeyRow {
        twin_id: r.get(0)?,
        public_key: r.get(1)?,
        require_signature: r.get(2)?,
        registered_at_ms: r.get(3)?,
    })
}
