//! API keys, idempotency keys and device keys.

use async_trait::async_trait;
use tokio_postgres::Row;

use super::{PostgresStore, api_key_row, limit};
use crate::columns::{API_KEY_COLUMNS, DEVICE_KEY_COLUMNS};
use crate::model::{ApiKey, DeviceKeyRow};
use crate::{KeyStore, Result};

#[async_trait]
impl KeyStore for PostgresStore {
    async fn put_api_key(&self, key: &ApiKey) -> Result<()> {
        self.change(
            &format!(
                "INSERT INTO api_keys ({API_KEY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"
            ),
            &[
                &key.id,
                &key.secret_hash.0.as_slice(),
                &key.scope,
                &key.twin_prefix,
                &key.label,
                &key.created_at_ms,
                &key.revoked_at_ms,
            ],
        )
        .await?;
        Ok(())
    }

    async fn api_key(&self, id: &str) -> Result<Option<ApiKey>> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(&format!(
                "SELECT {API_KEY_COLUMNS} FROM api_keys WHERE id = $1"
            ))
            .await?;
        let row = client.query_opt(&stmt, &[&id]).await?;
        row.as_ref().map(api_key_row).transpose()
    }

    async fn api_keys(&self) -> Result<Vec<ApiKey>> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(&format!(
                "SELECT {API_KEY_COLUMNS} FROM api_keys ORDER BY created_at_ms, id"
            ))
            .await?;
        let rows = client.query(&stmt, &[]).await?;
        rows.iter().map(api_key_row).collect()
    }

    async fn revoke_api_key(&self, id: &str, at_ms: i64) -> Result<bool> {
        let n = self
            .change(
                "UPDATE api_keys SET revoked_at_ms = $2 WHERE id = $1 AND revoked_at_ms IS NULL",
                &[&id, &at_ms],
            )
            .await?;
        Ok(n == 1)
    }

    async fn prune_idempotency_keys(
        &self,
        created_before_ms: i64,
        limit_to: usize,
    ) -> Result<usize> {
        // The oldest first, through the index on created_at_ms, at most `limit_to` per call so
        // one call holds its row locks briefly.
        let n = self
            .change(
                "DELETE FROM idempotency_keys WHERE key IN (SELECT key FROM idempotency_keys \
                 WHERE created_at_ms < $1 ORDER BY created_at_ms LIMIT $2)",
                &[&created_before_ms, &limit(limit_to)],
            )
            .await?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    async fn put_device_key(&self, key: &DeviceKeyRow) -> Result<()> {
        self.change(
            "INSERT INTO device_keys (twin_id, public_key, require_signature, \
             registered_at_ms) VALUES ($1, $2, $3, $4) ON CONFLICT (twin_id) DO UPDATE SET \
             public_key = excluded.public_key, require_signature = excluded.require_signature, \
             registered_at_ms = excluded.registered_at_ms",
            &[
                &key.twin_id,
                &key.public_key,
                &key.require_signature,
                &key.registered_at_ms,
            ],
        )
        .await?;
        Ok(())
    }

    async fn device_key(&self, twin_id: &str) -> Result<Option<DeviceKeyRow>> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(&format!(
                "SELECT {DEVICE_KEY_COLUMNS} FROM device_keys WHERE twin_id = $1"
            ))
            .await?;
        let row = client.query_opt(&stmt, &[&twin_id]).await?;
        row.as_ref().map(device_key_row).transpose()
    }

    async fn delete_device_key(&self, twin_id: &str) -> Result<bool> {
        let n = self
            .change("DELETE FROM device_keys WHERE twin_id = $1", &[&twin_id])
            .await?;
        Ok(n > 0)
    }
}

/// A device key, read by `DEVICE_KEY_COLUMNS`.
pub(super) fn device_key_row(r: &Row) -> Result<DeviceKeyRow> {
    Ok(DeviceKeyRow {
        twin_id: r.try_get(0)?,
        public_key: r.try_get(1)?,
        require_signature: r.try_get(2)?,
        registered_at_ms: r.try_get(3)?,
    })
}
