//! The databases the tests run against: a SQLite file in a temporary directory, or a fresh
//! database on one PostgreSQL cluster this test binary shares (started once, stopped when the
//! binary exits).

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};

use twinledger_core::Bands;
use twinledger_store::postgres::LocalCluster;
use twinledger_store::{PostgresStore, SqliteStore, Store};

/// Where a test's store keeps its data.
pub enum Backend {
    /// A SQLite file in a directory deleted with the value.
    Sqlite(tempfile::TempDir),
    /// A database of its own on the shared cluster.
    Postgres(String),
}

/// A store and how to reach its database behind its back.
pub struct Db {
    pub store: Arc<dyn Store>,
    pub backend: Backend,
}

/// The cluster every PostgreSQL test of this binary uses. Starting one takes seconds on a
/// loaded machine, so tests share it and each gets a database of its own.
pub fn cluster() -> &'static LocalCluster {
    static CLUSTER: OnceLock<LocalCluster> = OnceLock::new();
    CLUSTER.get_or_init(|| {
        let cluster = LocalCluster::start().expect("the shared PostgreSQL cluster starts");
        cluster
            .stop_when_process_exits()
            .expect("a watcher stops the cluster at exit");
        cluster
    })
}

/// The URL of a new, empty database on the shared cluster.
pub async fn fresh_database() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let cluster = tokio::task::block_in_place(cluster);
    let name = format!("test_{}", NEXT.fetch_add(1, Ordering::Relaxed));
    let admin = connect(&cluster.url("postgres")).await;
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e:?}"));
    cluster.url(&name)
}

/// A plain connection, for what the store's interface does not offer.
pub async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connects");
    tokio::spawn(connection);
    client
}

impl Db {
    pub async fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStore::open(dir.path().join("t.db")).expect("open");
        Self {
            store: Arc::new(store),
            backend: Backend::Sqlite(dir),
        }
    }

    pub async fn postgres() -> Self {
        let url = fresh_database().await;
        let store = PostgresStore::connect(&url, Bands::default())
            .await
            .expect("connect");
        Self {
            store: Arc::new(store),
            backend: Backend::Postgres(url),
        }
    }

    /// Another store on the same database, as after a restart.
    pub async fn reopen(&self) -> Arc<dyn Store> {
        match &self.backend {
            Backend::Sqlite(dir) => {
                Arc::new(SqliteStore::open(dir.path().join("t.db")).expect("reopen"))
            }
            Backend::Postgres(url) => Arc::new(
                PostgresStore::connect(url, Bands::default())
                    .await
                    .expect("reconnect"),
            ),
        }
    }

    /// Runs `sql` on the database directly (to tamper with it).
    pub async fn execute(&self, sql: &str) {
        match &self.backend {
            Backend::Sqlite(dir) => {
                let conn = rusqlite::Connection::open(dir.path().join("t.db")).expect("open");
                conn.execute_batch(sql).expect("execute");
            }
            Backend::Postgres(url) => connect(url)
                .await
                .batch_execute(sql)
                .await
                .expect("execute"),
        }
    }

    /// The first column of each row `sql` returns, as text.
    pub async fn texts(&self, sql: &str) -> Vec<String> {
        match &self.backend {
            Backend::Sqlite(dir) => {
                let conn = rusqlite::Connection::open(dir.path().join("t.db")).expect("open");
                let mut stmt = conn.prepare(sql).expect("prepare");
                stmt.query_map([], |r| r.get(0))
                    .expect("query")
                    .collect::<rusqlite::Result<Vec<String>>>()
                    .expect("rows")
            }
            Backend::Postgres(url) => connect(url)
                .await
                .query(sql, &[])
                .await
                .expect("query")
                .iter()
                .map(|r| r.get(0))
                .collect(),
        }
    }
}
