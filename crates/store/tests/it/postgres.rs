//! What only PostgreSQL does: schema versions in a table, migrations several nodes may race,
//! several stores appending to one database, and connection errors that name the server.

use std::collections::HashMap;
use std::sync::Arc;

use futures_util::StreamExt;
use twinledger_core::{Bands, Hash, TreeHead};
use twinledger_store::postgres::{ROLE, SCHEMA_VERSION};
use twinledger_store::{AnchorStore, Appended, LogStore, PostgresStore, Store, StoreError};

use super::backends::{cluster, connect, fresh_database};
use super::conformance::{keyed, new};

#[tokio::test(flavor = "multi_thread")]
async fn a_database_of_a_newer_schema_is_refused() {
    let url = fresh_database().await;
    drop(
        PostgresStore::connect(&url, Bands::default())
            .await
            .expect("connect"),
    );
    connect(&url)
        .await
        .batch_execute("UPDATE schema_version SET version = 99")
        .await
        .expect("bump");
    let err = PostgresStore::connect(&url, Bands::default())
        .await
        .expect_err("refused");
    assert!(
        matches!(
            err,
            StoreError::SchemaTooNew {
                found: 99,
                supported: SCHEMA_VERSION
            }
        ),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn stores_connecting_at_once_migrate_once() {
    let url = fresh_database().await;
    let connects = (0..4).map(|_| PostgresStore::connect(&url, Bands::default()));
    let stores = futures_util::future::join_all(connects).await;
    let stores: Vec<PostgresStore> = stores
        .into_iter()
        .map(|s| s.expect("every store connects"))
        .collect();
    let client = connect(&url).await;
    let versions: Vec<i64> = client
        .query("SELECT version FROM schema_version", &[])
        .await
        .expect("versions")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(versions, [SCHEMA_VERSION]);
    // And again, with the schema in place: nothing to do, nothing broken.
    let again = PostgresStore::connect(&url, Bands::default())
        .await
        .expect("connect again");
    again.append(vec![new("a", "{}")]).await.expect("append");
    assert_eq!(stores[0].stats().await.expect("stats").records, 1);
}

/// Two stores on one database (two nodes), each appending from four tasks at once: the log
/// stays one log.
#[tokio::test(flavor = "multi_thread")]
async fn two_stores_appending_at_once_keep_one_dense_log() {
    const TASKS: usize = 8;
    const BATCHES: usize = 50;
    let url = fresh_database().await;
    let a: Arc<dyn Store> = Arc::new(
        PostgresStore::connect(&url, Bands::default())
            .await
            .expect("a"),
    );
    let b: Arc<dyn Store> = Arc::new(
        PostgresStore::connect(&url, Bands::default())
            .await
            .expect("b"),
    );
    let tasks = (0..TASKS).map(|task| {
        let store = if task % 2 == 0 { a.clone() } else { b.clone() };
        tokio::spawn(async move {
            let mut replays = 0;
            for batch in 0..BATCHES {
                let mut records: Vec<_> = (0..1 + (task + batch) % 4)
                    .map(|i| new(&format!("twin-{}", (task + i) % 5), "{}"))
                    .collect();
                // Every task sends the same key in its batch `batch`, half of them through
                // each store: one of them writes it.
                records.push(keyed("shared", &format!("key-{batch}"), 1));
                // As the ledger's writer does: contended, the turn takes the lock before the
                // batch is cut, and the batch appends under it.
                store.await_turn().await;
                let out = store.append(records).await.expect("append");
                replays += out
                    .results
                    .iter()
                    .filter(|r| matches!(r, Appended::Replay { .. }))
                    .count();
            }
            replays
        })
    });
    let replays: usize = futures_util::future::join_all(tasks)
        .await
        .into_iter()
        .map(|r| r.expect("task"))
        .sum();
    assert_eq!(replays, BATCHES * (TASKS - 1), "each key written once");

    let mut leaves = Vec::new();
    let mut versions: HashMap<String, (u64, Option<Vec<u8>>)> = HashMap::new();
    let mut scan = a.scan(0);
    while let Some(batch) = scan.next().await {
        for row in batch.expect("batch") {
            assert_eq!(row.index, leaves.len() as u64, "indexes are dense");
            let record = row.decode().expect("decodes");
            assert_eq!(row.leaf_hash, record.leaf_hash().0.to_vec());
            let twin = versions.entry(row.twin_id.clone()).or_insert((0, None));
            assert_eq!(
                record.version,
                twin.0 + 1,
                "versions of {} are dense",
                row.twin_id
            );
            assert_eq!(
                row.prev_leaf_hash, twin.1,
                "{} v{} links to the version before",
                row.twin_id, record.version
            );
            *twin = (record.version, Some(row.leaf_hash.clone()));
            leaves.push(record.leaf_hash());
        }
    }
    let expected: usize = (0..TASKS)
        .flat_map(|t| (0..BATCHES).map(move |b| 1 + (t + b) % 4))
        .sum::<usize>()
        + BATCHES;
    assert_eq!(leaves.len(), expected);
    let keys = connect(&url)
        .await
        .query_one("SELECT COUNT(*) FROM idempotency_keys", &[])
        .await
        .expect("keys");
    assert_eq!(keys.get::<_, i64>(0), BATCHES as i64);

    let n = leaves.len() as u64;
    let head = TreeHead {
        size: n,
        root: twinledger_core::root_of(&leaves),
    };
    assert_eq!(a.frontier().await.expect("frontier").head(), head);
    assert_eq!(b.frontier().await.expect("frontier").head(), head);
    for size in [1, 7, 64, 65, n / 2, n] {
        let root: Hash = twinledger_core::root_of(&leaves[..size as usize]);
        assert_eq!(a.tree_head(size).await.expect("head").root, root);
        assert_eq!(b.tree_head(size).await.expect("head").root, root);
    }
    for (store, index) in [(&a, 0), (&b, n / 3), (&a, n - 1)] {
        store
            .inclusion_proof(index, n)
            .await
            .expect("proof")
            .verify(&leaves[index as usize], &head.root)
            .expect("inclusion");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_password_is_named_and_not_shown() {
    let cluster = tokio::task::block_in_place(cluster);
    let url = format!(
        "postgres://{ROLE}:hunter2-not-it@127.0.0.1:{}/postgres",
        cluster.port()
    );
    let err = PostgresStore::connect(&url, Bands::default())
        .await
        .expect_err("refused");
    let text = err.to_string();
    assert!(
        matches!(err, StoreError::AuthenticationFailed { .. }),
        "{text}"
    );
    assert!(
        text.contains(&format!("{ROLE}@127.0.0.1:{}/postgres", cluster.port()))
            && text.contains("password authentication failed"),
        "{text}"
    );
    assert!(!text.contains("hunter2"), "the password shows: {text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_server_is_named_and_other_hosts_are_tried() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let url = format!("postgres://{ROLE}:secret-pw@127.0.0.1:{closed}/ledger");
    let err = PostgresStore::connect(&url, Bands::default())
        .await
        .expect_err("nothing listens");
    let text = err.to_string();
    assert!(matches!(err, StoreError::Unreachable { .. }), "{text}");
    assert!(
        text.starts_with(&format!(
            "cannot reach PostgreSQL at {ROLE}@127.0.0.1:{closed}/ledger:"
        )),
        "{text}"
    );
    assert!(!text.contains("secret-pw"), "the password shows: {text}");

    // With several hosts, the first one that takes writes is used.
    let cluster = tokio::task::block_in_place(cluster);
    let live = fresh_database().await;
    let db = live.rsplit('/').next().expect("db name");
    let password = live
        .split(':')
        .nth(2)
        .and_then(|p| p.split('@').next())
        .expect("password");
    let url = format!(
        "postgres://{ROLE}:{password}@127.0.0.1:{closed},127.0.0.1:{}/{db}?target_session_attrs=read-write",
        cluster.port()
    );
    let store = PostgresStore::connect(&url, Bands::default())
        .await
        .expect("the second host answers");
    assert_eq!(
        store.target(),
        format!(
            "{ROLE}@127.0.0.1:{closed},127.0.0.1:{}/{db}",
            cluster.port()
        )
    );
    store.append(vec![new("a", "{}")]).await.expect("append");
}

#[tokio::test(flavor = "multi_thread")]
async fn each_committed_batch_is_announced_once_with_the_new_size() {
    let url = fresh_database().await;
    let store = PostgresStore::connect(&url, Bands::default())
        .await
        .expect("connect");
    let (listener, mut connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .expect("connects");
    let (heard, mut announcements) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(
        futures_util::stream::poll_fn(move |cx| connection.poll_message(cx)).for_each(
            move |message| {
                if let Ok(tokio_postgres::AsyncMessage::Notification(n)) = message {
                    let _ = heard.send((n.channel().to_owned(), n.payload().to_owned()));
                }
                std::future::ready(())
            },
        ),
    );
    listener
        .batch_execute(&format!(
            "LISTEN {}",
            twinledger_store::postgres::LOG_CHANNEL
        ))
        .await
        .expect("listen");
    store
        .append(vec![new("a", "{}"), new("b", "{}")])
        .await
        .expect("append");
    // One new record, then a batch of a replay only, which writes nothing and announces
    // nothing.
    store
        .append(vec![keyed("a", "k", 1)])
        .await
        .expect("append");
    store
        .append(vec![keyed("a", "k", 1)])
        .await
        .expect("append");
    for size in ["2", "3"] {
        let heard = tokio::time::timeout(std::time::Duration::from_secs(5), announcements.recv())
            .await
            .expect("announced in time")
            .expect("listening");
        assert_eq!(heard, ("twinledger_log".to_owned(), size.to_owned()));
    }
    assert!(
        tokio::time::timeout(std::time::Duration::from_millis(300), announcements.recv())
            .await
            .is_err(),
        "one announcement per batch that wrote"
    );
}

/// The next size from `sizes` at or above `at_least`, within a few seconds.
async fn size_reaching(sizes: &mut twinledger_store::LogSizes, at_least: u64) -> u64 {
    tokio::time::timeout(std::time::Duration::from_secs(10), async {
        loop {
            let size = sizes.next().await.expect("the stream goes on");
            if size >= at_least {
                return size;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no size of {at_least} or more announced in time"))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_store_hears_the_sizes_another_store_appends_even_after_its_connection_drops() {
    let url = fresh_database().await;
    let (here, there) = (
        PostgresStore::connect(&url, Bands::default())
            .await
            .expect("connect"),
        PostgresStore::connect(&url, Bands::default())
            .await
            .expect("connect"),
    );
    let mut sizes = here.log_sizes().expect("a shared database announces sizes");
    // The size at subscription comes first, then each batch the other store commits.
    assert_eq!(size_reaching(&mut sizes, 0).await, 0);
    there
        .append(vec![new("a", "{}"), new("b", "{}")])
        .await
        .expect("append");
    assert_eq!(size_reaching(&mut sizes, 1).await, 2);
    // The listening connection is cut; a batch committed meanwhile is found on reconnection.
    let admin = connect(&url).await;
    let cut = admin
        .query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
            &[&twinledger_store::postgres::LISTENER_NAME],
        )
        .await
        .expect("terminate the listener");
    assert_eq!(cut.len(), 1, "one listening connection");
    there.append(vec![new("c", "{}")]).await.expect("append");
    assert_eq!(size_reaching(&mut sizes, 3).await, 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn one_holder_has_the_anchor_lease_until_it_lets_go_or_stops_renewing() {
    use std::time::Duration;
    let url = fresh_database().await;
    let store = PostgresStore::connect(&url, Bands::default())
        .await
        .expect("connect");
    let long = Duration::from_secs(60);
    let first = store.anchor_lease("a", long).await.expect("lease");
    let e1 = first.expect("a free lease is taken");
    assert_eq!(store.anchor_lease("b", long).await.expect("lease"), None);
    assert_eq!(
        store.anchor_lease("a", long).await.expect("renew"),
        Some(e1),
        "renewing keeps the epoch"
    );
    store.release_anchor_lease("b").await.expect("release");
    assert_eq!(
        store.anchor_lease("b", long).await.expect("lease"),
        None,
        "only its holder lets a lease go"
    );
    store.release_anchor_lease("a").await.expect("release");
    let e2 = store
        .anchor_lease("b", Duration::from_millis(300))
        .await
        .expect("lease")
        .expect("a released lease is taken at once");
    assert!(e2 > e1);
    assert_eq!(store.anchor_lease("a", long).await.expect("lease"), None);
    // Not renewed, it runs out on the database's clock and changes hands.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let e3 = store
        .anchor_lease("a", long)
        .await
        .expect("lease")
        .expect("a lapsed lease is taken");
    assert!(e3 > e2);
    assert_eq!(store.anchor_lease("b", long).await.expect("lease"), None);
}

#[tokio::test(flavor = "multi_thread")]
async fn without_synchronous_standbys_nothing_caps_what_is_anchored() {
    let url = fresh_database().await;
    let store = PostgresStore::connect(&url, Bands::default())
        .await
        .expect("connect");
    store.append(vec![new("a", "{}")]).await.expect("append");
    assert_eq!(store.replicated_size().await.expect("replicated"), None);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_whose_write_fails_leaves_nothing_and_the_log_goes_on() {
    let url = fresh_database().await;
    let store = PostgresStore::connect(&url, Bands::default())
        .await
        .expect("connect");
    store.append(vec![new("a", "{}")]).await.expect("append");
    // A row in the way of the next batch's second record: its insert fails inside the
    // transaction, after the first record's and with the COMMIT already sent behind it.
    let admin = connect(&url).await;
    admin
        .batch_execute(
            "INSERT INTO records (idx, twin_id, version, kind, state, hash_scheme, state_hash, \
             recorded_at_ms, salt, leaf_hash, status) \
             SELECT 2, 'blocker', 1, kind, state, hash_scheme, state_hash, recorded_at_ms, salt, \
             leaf_hash, status FROM records WHERE idx = 0",
        )
        .await
        .expect("a row in the way");
    let err = store
        .append(vec![new("b", "{}"), new("c", "{}")])
        .await
        .expect_err("the batch fails");
    assert!(matches!(err, StoreError::Postgres(_)), "{err}");
    let count = |sql: &'static str| {
        let admin = &admin;
        async move {
            admin
                .query_one(sql, &[])
                .await
                .expect("count")
                .get::<_, i64>(0)
        }
    };
    assert_eq!(
        count("SELECT count(*) FROM records WHERE twin_id IN ('b', 'c')").await,
        0
    );
    assert_eq!(count("SELECT count(*) FROM twins").await, 1);
    assert_eq!(count("SELECT size FROM log_head").await, 1);
    admin
        .batch_execute("DELETE FROM records WHERE twin_id = 'blocker'")
        .await
        .expect("out of the way");
    // The pool's connections still work, and the next batch takes the same indexes.
    for _ in 0..4 {
        assert_eq!(store.frontier().await.expect("frontier").size(), 1);
    }
    let out = store
        .append(vec![new("b", "{}"), new("c", "{}")])
        .await
        .expect("append");
    let indexes: Vec<u64> = out
        .results
        .iter()
        .filter_map(|a| match a {
            Appended::New(r) => Some(r.index),
            _ => None,
        })
        .collect();
    assert_eq!(indexes, [1, 2]);
    assert_eq!(
        store.tree_head(3).await.expect("head"),
        out.frontier.head(),
        "the stored tree is the one the batch extended"
    );
}
