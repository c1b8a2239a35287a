//! PostgreSQL: the store for many nodes on one database. Appends from every node are
//! serialized by a row lock on `log_head`, which also holds the tree's size and frontier, so
//! log indexes, twin versions and idempotency keys hold across nodes. [`LocalCluster`] is the
//! throwaway cluster its tests and the benchmark start.

mod anchors;

use anchors::Replication;
mod append;
mod cluster;
mod keys;
mod listen;
mod log;
mod tables;
mod twins;

use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod};
use tokio_postgres::config::Host;
use tokio_postgres::error::SqlState;
use tokio_postgres::{NoTls, Row};
use twinledger_core::{Bands, Frontier, Hash};

pub use append::LOG_CHANNEL;
pub use cluster::{ClusterError, LocalCluster, ROLE};
pub use listen::LISTENER_NAME;

use crate::model::{Anchor, ApiKey, StoreStats, StoredRecord};
use crate::{Result, Store, StoreError};

/// Migrations in order; `schema_version.version` counts how many have run.
const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/postgres/0001_init.sql"),
    include_str!("../../migrations/postgres/0002_fillfactor.sql"),
    include_str!("../../migrations/postgres/0003_anchor_replacements.sql"),
];

/// The schema version this binary migrates to (and the newest it accepts).
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// The advisory lock migrations run under, so that nodes starting together migrate once.
const MIGRATION_LOCK: i64 = 0x7477_696e_6c65_6467;

/// Connections kept per store: appends hold one each, but they queue on `log_head` anyway.
const POOL_SIZE: usize = 16;

/// How long a connection attempt may take when the URL sets no `connect_timeout`: an
/// unreachable host otherwise hangs for the kernel's TCP timeout, minutes.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The PostgreSQL store: a pool of connections to one database (or the first writable one of
/// several hosts).
#[derive(Clone)]
pub struct PostgresStore {
    pool: Pool,
    /// Where appends go: a connection and a thread of their own.
    appender: append::Appender,
    /// What the pool connects with, for connections of their own (`LISTEN`).
    config: std::sync::Arc<tokio_postgres::Config>,
    /// Log sizes seen with the write-ahead log position after them, until the synchronous
    /// standbys have flushed that position.
    unreplicated: std::sync::Arc<std::sync::Mutex<Replication>>,
    /// Where the pool connects, the password left out, for error messages.
    target: std::sync::Arc<str>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("target", &self.target)
            .finish()
    }
}

impl PostgresStore {
    /// Connects to the database at `url` (a libpq URL or key/value string; several hosts and
    /// `target_session_attrs` are accepted), checks that it answers, and brings its schema up
    /// to date. Congruence scores are placed with `bands`.
    pub async fn connect(url: &str, bands: Bands) -> Result<Self> {
        let mut config: tokio_postgres::Config = url.parse().map_err(StoreError::InvalidUrl)?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        let target: std::sync::Arc<str> = describe(&config).into();
        let shared = std::sync::Arc::new(config.clone());
        let manager = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .build()
            .map_err(|e| StoreError::Pool(e.to_string()))?;
        let appender = append::Appender::start(config.clone(), target.clone(), bands.clone())?;
        let store = Self {
            pool,
            appender,
            config: shared,
            unreplicated: std::sync::Arc::default(),
            target,
        };
        let mut client = store.client().await?;
        migrate(&mut client).await?;
        Ok(store)
    }

    /// Where the store connects: user, hosts, ports and database, without the password.
    pub fn target(&self) -> &str {
        &self.target
    }

    async fn client(&self) -> Result<Object> {
        client(&self.pool, &self.target).await
    }

    /// Runs one statement that changes rows; returns how many it changed.
    pub(super) async fn change(&self, sql: &str, params: &[&Param<'_>]) -> Result<u64> {
        let client = self.client().await?;
        let stmt = client.prepare_cached(sql).await?;
        Ok(client.execute(&stmt, params).await?)
    }
}

/// A connection from `pool`, whose server is `target`.
async fn client(pool: &Pool, target: &str) -> Result<Object> {
    pool.get().await.map_err(|e| match e {
        PoolError::Backend(e) => connect_error(target, e),
        other => StoreError::Pool(other.to_string()),
    })
}

/// Names why a connection could not be made: refused credentials, or no server answering.
fn connect_error(target: &str, e: tokio_postgres::Error) -> StoreError {
    let target = target.to_owned();
    match e.code() {
        Some(code)
            if *code == SqlState::INVALID_PASSWORD
                || *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION =>
        {
            StoreError::AuthenticationFailed { target, source: e }
        }
        Some(_) => StoreError::Postgres(e),
        // No answer from a server at all: refused, unreachable, or timed out.
        None => StoreError::Unreachable { target, source: e },
    }
}

/// `user@host:port,host:port/dbname` of `config`, never its password.
fn describe(config: &tokio_postgres::Config) -> String {
    let ports = config.get_ports();
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, host)| {
            let port = match ports {
                [] => 5432,
                [one] => *one,
                many => many.get(i).copied().unwrap_or(5432),
            };
            match host {
                Host::Tcp(name) => format!("{name}:{port}"),
                Host::Unix(dir) => format!("{}:{port}", dir.display()),
            }
        })
        .collect();
    let user = config.get_user().unwrap_or("(default user)");
    let db = config.get_dbname().unwrap_or("(default database)");
    format!("{user}@{}/{db}", hosts.join(","))
}

async fn migrate(client: &mut Object) -> Result<()> {
    let tx = client.transaction().await?;
    // Taken before anything is read or created, and held until commit: a second node starting
    // now waits here, then finds the schema up to date.
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_version (
             id      boolean PRIMARY KEY DEFAULT true CHECK (id),
             version bigint NOT NULL
         )",
    )
    .await?;
    let found: i64 = match tx
        .query_opt("SELECT version FROM schema_version", &[])
        .await?
    {
        Some(row) => row.try_get(0)?,
        None => 0,
    };
    let supported = SCHEMA_VERSION;
    if found > supported {
        return Err(StoreError::SchemaTooNew { found, supported });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(found.max(0) as usize) {
        tx.batch_execute(sql).await?;
        tracing::info!(target: "twinledger::store", version = i + 1, "applied PostgreSQL migration");
    }
    if found < supported {
        tx.execute(
            "INSERT INTO schema_version (version) VALUES ($1) \
             ON CONFLICT (id) DO UPDATE SET version = excluded.version",
            &[&supported],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// A statement parameter.
type Param<'a> = dyn tokio_postgres::types::ToSql + Sync + 'a;

/// A log index or size as a bigint. Beyond bigint's range nothing is stored, so the largest
/// bigint finds the same rows.
fn position(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// A row limit as a bigint: `usize::MAX` means no limit, which `LIMIT -1` would refuse.
fn limit(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn hash_column(row: &Row, i: usize, what: &str) -> Result<Hash> {
    let bytes: &[u8] = row.try_get(i)?;
    Hash::from_slice(bytes).map_err(|e| StoreError::Inconsistent(format!("{what}: {e}")))
}

fn stored_record(row: &Row) -> Result<StoredRecord> {
    Ok(StoredRecord {
        index: row.try_get::<_, i64>(0)? as u64,
        twin_id: row.try_get(1)?,
        version: row.try_get(2)?,
        kind: row.try_get(3)?,
        state: row.try_get(4)?,
        scheme: row.try_get(5)?,
        state_hash: row.try_get(6)?,
        prev_leaf_hash: row.try_get(7)?,
        recorded_at_ms: row.try_get(8)?,
        salt: row.try_get(9)?,
        leaf_hash: row.try_get(10)?,
        status: row.try_get(11)?,
        anchor_tx: row.try_get(12)?,
        anchor_block: row.try_get::<_, Option<i64>>(13)?.map(|v| v as u64),
        anchor_block_time: row.try_get::<_, Option<i64>>(14)?.map(|v| v as u64),
        anchor_timestamp: row.try_get(15)?,
        annex: row.try_get(16)?,
    })
}

fn stored_records(rows: &[Row]) -> Result<Vec<StoredRecord>> {
    rows.iter().map(stored_record).collect()
}

fn anchor_row(row: &Row) -> Result<Anchor> {
    Ok(Anchor {
        size: row.try_get::<_, i64>(0)? as u64,
        root: hash_column(row, 1, "anchor root")?,
        prev_size: row.try_get::<_, i64>(2)? as u64,
        tx_hash: row.try_get(3)?,
        status: row.try_get(4)?,
        block_number: row.try_get::<_, Option<i64>>(5)?.map(|v| v as u64),
        block_hash: row.try_get(6)?,
        block_time: row.try_get::<_, Option<i64>>(7)?.map(|v| v as u64),
        gas_used: row.try_get::<_, Option<i64>>(8)?.map(|v| v as u64),
        replacements: row.try_get::<_, i64>(9)? as u64,
    })
}

fn api_key_row(row: &Row) -> Result<ApiKey> {
    Ok(ApiKey {
        id: row.try_get(0)?,
        secret_hash: hash_column(row, 1, "API key secret hash")?,
        scope: row.try_get(2)?,
        twin_prefix: row.try_get(3)?,
        label: row.try_get(4)?,
        created_at_ms: row.try_get(5)?,
        revoked_at_ms: row.try_get(6)?,
    })
}

/// The tree as `log_head` holds it.
fn frontier_of(row: &Row) -> Result<Frontier> {
    let size: i64 = row.try_get(0)?;
    let peaks: &[u8] = row.try_get(1)?;
    let bad = || {
        StoreError::Inconsistent(format!(
            "log_head: {} bytes of peaks do not fit a tree of {size} leaves",
            peaks.len()
        ))
    };
    if !peaks.len().is_multiple_of(32) {
        return Err(bad());
    }
    let peaks = peaks
        .chunks_exact(32)
        .map(Hash::from_slice)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| bad())?;
    Frontier::from_peaks(size as u64, peaks).ok_or_else(bad)
}

#[async_trait]
impl Store for PostgresStore {
    async fn meta(&self, key: &str) -> Result<Option<String>> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached("SELECT value FROM meta WHERE key = $1")
            .await?;
        let row = client.query_opt(&stmt, &[&key]).await?;
        Ok(row.map(|r| r.try_get(0)).transpose()?)
    }

    async fn set_meta(&self, key: &str, value: &str) -> Result<()> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "INSERT INTO meta (key, value) VALUES ($1, $2) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            )
            .await?;
        client.execute(&stmt, &[&key, &value]).await?;
        Ok(())
    }

    async fn set_meta_once(&self, key: &str, value: &str) -> Result<String> {
        let client = self.client().await?;
        // The no-op update makes RETURNING give the row that was there first.
        let stmt = client
            .prepare_cached(
                "INSERT INTO meta (key, value) VALUES ($1, $2) \
                 ON CONFLICT (key) DO UPDATE SET value = meta.value RETURNING value",
            )
            .await?;
        Ok(client.query_one(&stmt, &[&key, &value]).await?.get(0))
    }

    async fn stats(&self) -> Result<StoreStats> {
        let client = self.client().await?;
        let row = client
            .query_one(
                "SELECT (SELECT size FROM log_head), (SELECT COUNT(*) FROM twins), \
                 (SELECT COUNT(*) FROM records WHERE status = 'pending'), \
                 pg_database_size(current_database())",
                &[],
            )
            .await?;
        Ok(StoreStats {
            records: row.try_get::<_, i64>(0)? as u64,
            twins: row.try_get::<_, i64>(1)? as u64,
            pending: row.try_get::<_, i64>(2)? as u64,
            bytes: row.try_get::<_, i64>(3)? as u64,
        })
    }
}
