//! What only the SQLite store does: its file and its migrations, its disk-full handling, its
//! node keys. What every backend does alike is in `tests/it/conformance.rs`.

use super::*;
use crate::Appended;
use crate::model::NewRecord;
use twinledger_core::json::Object;
use twinledger_core::json::{Limits, parse};
use twinledger_core::{HashScheme, Record, RecordKind, Salt};
use twinledger_core::{TreeHead, TwinId};

fn new(twin: &str, state: &str) -> NewRecord {
    let state = parse(state.as_bytes(), &Limits::default()).expect("json");
    NewRecord {
        twin_id: TwinId::new(twin).expect("id"),
        kind: RecordKind::Reported,
        state_hash: Hash(HashScheme::SeedSha256.hash(&state).expect("hash")),
        state,
        scheme: HashScheme::SeedSha256,
        recorded_at_ms: 1_700_000_000_000,
        salt: Salt([7; 32]),
        idempotency: None,
        annex: Object::new(),
    }
}

fn append(store: &Database, batch: Vec<NewRecord>) -> Vec<Record> {
    store
        .append(batch)
        .expect("append")
        .results
        .into_iter()
        .map(|a| match a {
            Appended::New(r) => r,
            other => panic!("not written: {other:?}"),
        })
        .collect()
}

fn open() -> (tempfile::TempDir, Database) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Database::open(dir.path().join("t.db").as_ref(), Bands::default()).expect("open");
    (dir, store)
}

#[test]
fn a_database_from_a_newer_program_is_refused() {
    let (dir, store) = open();
    drop(store);
    let conn = Connection::open(dir.path().join("t.db")).expect("open");
    conn.pragma_update(None, "user_version", 99).expect("bump");
    drop(conn);
    let err =
        Database::open(dir.path().join("t.db").as_ref(), Bands::default()).expect_err("refused");
    assert!(
        matches!(err, StoreError::SchemaTooNew { found: 99, .. }),
        "{err}"
    );
}

#[test]
fn pruning_finds_idempotency_keys_through_their_index() {
    let (_dir, store) = open();
    let plan: String = store
        .read(|c| {
            Ok(c.query_row(
                "EXPLAIN QUERY PLAN SELECT rowid FROM idempotency_keys \
                 WHERE created_at_ms < 1 LIMIT 1",
                [],
                |r| r.get(3),
            )?)
        })
        .expect("plan");
    assert!(plan.contains("idempotency_keys_created"), "{plan}");
}

#[test]
fn a_full_disk_fails_the_whole_batch_by_name_and_the_log_continues_once_space_returns() {
    let (_dir, store) = open();
    append(&store, vec![new("a", r#"{"x":1}"#)]);
    // SQLite's page limit fails a write exactly as a full disk does (SQLITE_FULL), without
    // filling a real disk.
    let limit_pages = |pages: Option<i64>| {
        store
            .write(|c| {
                let pages = match pages {
                    Some(p) => p,
                    None => c.pragma_query_value(None, "page_count", |r| r.get(0))?,
                };
                Ok(
                    c.pragma_update_and_check(None, "max_page_count", pages, |r| {
                        r.get::<_, i64>(0)
                    })?,
                )
            })
            .expect("max_page_count")
    };
    limit_pages(None);
    let big = format!(r#"{{"blob":"{}"}}"#, "x".repeat(64 * 1024));
    let frontier = store.frontier().expect("frontier");
    let err = store
        .append(vec![new("a", "{}"), new("b", &big)])
        .expect_err("the disk is full");
    assert!(matches!(err, StoreError::DiskFull(_)), "{err:?}");
    assert_eq!(
        err.to_string(),
        "the disk holding the database is full (database or disk is full)"
    );
    assert_eq!(
        store.stats().expect("stats").records,
        1,
        "nothing of the batch was written"
    );
    assert_eq!(store.frontier().expect("frontier"), frontier);

    limit_pages(Some(1 << 30));
    let next = append(&store, vec![new("a", "{}"), new("b", &big)]);
    assert_eq!(
        next.iter()
            .map(|r| (r.index, r.version))
            .collect::<Vec<_>>(),
        [(1, 2), (2, 1)],
        "the failed batch left no gap"
    );
    assert_eq!(
        store.frontier().expect("frontier").size(),
        3,
        "the stored tree matches the log"
    );
}

#[test]
fn tree_node_keys_follow_completion_order_and_match_the_migration() {
    let conn = rusqlite::Connection::open_in_memory().expect("sqlite");
    let mut last = -1;
    // Nodes in the order a growing log completes them: after each leaf, the levels it closes.
    for leaf in 0u64..4096 {
        let mut level = 1;
        while (leaf + 1).is_multiple_of(1 << level) {
            let index = (leaf + 1) / (1 << level) - 1;
            let key = super::node_key(level, index).expect("key");
            assert!(
                key > last,
                "node ({level}, {index}) keyed before an earlier one"
            );
            last = key;
            let in_sql: i64 = conn
                .query_row(
                    "SELECT ((((?2 + 1) << ?1) - 1) << 6) | ?1",
                    [i64::from(level), index as i64],
                    |r| r.get(0),
                )
                .expect("sql");
            assert_eq!(
                in_sql, key,
                "migration 0009 keys node ({level}, {index}) differently"
            );
            level += 1;
        }
    }
    assert!(super::node_key(1, u64::MAX).is_err());
    assert!(super::node_key(63, 1).is_err());
}

/// A database of schema 7 (tree nodes keyed by level and index, twins a rowid table, log-mode
/// records 'pending') comes through migrations 8 to 10 with the same tree, twins and records,
/// and goes on growing the same tree.
#[test]
fn a_schema_7_database_keeps_its_tree_twins_and_records_through_the_migrations() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("l.db");
    let batch = |from: u32, to: u32| -> Vec<NewRecord> {
        (from..to)
            .map(|i| new(&format!("t{}", i % 5), &format!(r#"{{"i":{i}}}"#)))
            .collect()
    };
    let heads = |store: &Database, n: u64| -> Vec<TreeHead> {
        (1..=n).map(|s| store.tree_head(s).expect("head")).collect()
    };
    let (before, twin, record) = {
        let store = Database::open(path.as_ref(), Bands::default()).expect("open");
        store.set_meta("mode", "log").expect("mode");
        append(&store, batch(0, 37));
        let t3 = TwinId::new("t3").expect("id");
        (
            heads(&store, 37),
            store.twin(&t3).expect("twin"),
            store.record(&t3, 4).expect("record"),
        )
    };
    let conn = Connection::open(&path).expect("sqlite");
    conn.execute_batch(
        "CREATE TABLE nodes_7 (level INTEGER NOT NULL, idx INTEGER NOT NULL, hash BLOB NOT NULL,
             PRIMARY KEY (level, idx)) STRICT, WITHOUT ROWID;
         INSERT INTO nodes_7
             SELECT key & 63, (((key >> 6) + 1) >> (key & 63)) - 1, hash FROM tree_nodes;
         DROP TABLE tree_nodes;
         ALTER TABLE nodes_7 RENAME TO tree_nodes;
         CREATE TABLE twins_7 (twin_id TEXT PRIMARY KEY, latest_version INTEGER NOT NULL,
             latest_idx INTEGER NOT NULL, latest_leaf_hash BLOB NOT NULL,
             created_at_ms INTEGER NOT NULL, updated_at_ms INTEGER NOT NULL,
             desired_idx INTEGER, band TEXT) STRICT;
         INSERT INTO twins_7 SELECT * FROM twins;
         DROP TABLE twins;
         ALTER TABLE twins_7 RENAME TO twins;
         UPDATE records SET status = 'pending';
         ALTER TABLE anchors DROP COLUMN replacements;
         PRAGMA user_version = 7;",
    )
    .expect("back to schema 7");
    drop(conn);

    let store = Database::open(path.as_ref(), Bands::default()).expect("migrate");
    assert_eq!(heads(&store, 37), before);
    let t3 = TwinId::new("t3").expect("id");
    assert_eq!(store.twin(&t3).expect("twin"), twin);
    assert_eq!(
        store.record(&t3, 4).expect("record").map(|r| r.leaf_hash),
        record.map(|r| r.leaf_hash)
    );
    // Log-mode records are out of the legacy backlog.
    assert_eq!(store.stats().expect("stats").pending, 0);
    assert!(store.pending(10).expect("pending").is_empty());
    // The tree rebuilt from the migrated nodes goes on: appends after the migration give the
    // heads a tree of all 50 leaves has.
    append(&store, batch(37, 50));
    let grown = heads(&store, 50);
    assert_eq!(&grown[..37], &before[..]);
    let fresh_dir = tempfile::tempdir().expect("tempdir");
    let fresh =
        Database::open(fresh_dir.path().join("l.db").as_ref(), Bands::default()).expect("open");
    fresh.set_meta("mode", "log").expect("mode");
    append(&fresh, batch(0, 37));
    append(&fresh, batch(37, 50));
    assert_eq!(heads(&fresh, 50), grown);
}
