//! Tests of the parent module.

use super::*;
use crate::Appended;
use crate::model::{AppendOutcome, DeviceKeyRow, LegacyAnchor, NewRecord};
use twinledger_core::json::{Limits, parse};
use twinledger_core::json::{Object, Value};
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
fn append_assigns_dense_indexes_and_versions_and_links_each_twin() {
    let (_dir, store) = open();
    let first = append(
        &store,
        vec![
            new("a", r#"{"x":1}"#),
            new("b", r#"{"y":1}"#),
            new("a", r#"{"x":2}"#),
        ],
    );
    let second = append(&store, vec![new("a", r#"{"x":3}"#)]);
    let all: Vec<_> = first.iter().chain(&second).collect();
    assert_eq!(
        all.iter().map(|r| r.index).collect::<Vec<_>>(),
        [0, 1, 2, 3]
    );
    assert_eq!(
        all.iter().map(|r| r.version).collect::<Vec<_>>(),
        [1, 1, 2, 3]
    );
    assert_eq!(all[0].prev_leaf_hash, None);
    assert_eq!(all[2].prev_leaf_hash, Some(all[0].leaf_hash()));
    assert_eq!(all[3].prev_leaf_hash, Some(all[2].leaf_hash()));

    let a = TwinId::new("a").expect("id");
    let summary = store.twin(&a).expect("read").expect("twin a");
    assert_eq!((summary.latest_version, summary.latest_index), (3, 3));
    let history = store.history(&a, 1, 10).expect("history");
    assert_eq!(history.len(), 3);
    for (stored, record) in history.iter().zip([all[0], all[2], all[3]]) {
        assert_eq!(
            &stored.decode().expect("decodes"),
            record,
            "stored exactly as appended"
        );
        assert_eq!(stored.leaf_hash, record.leaf_hash().0);
    }
    assert_eq!(store.history(&a, 3, 10).expect("page").len(), 1);
    assert_eq!(
        store.stats().expect("stats"),
        StoreStats {
            records: 4,
            twins: 2,
            pending: 4
        }
    );
}

#[test]
fn pending_records_come_in_log_order_until_anchored() {
    let (_dir, store) = open();
    append(&store, vec![new("a", "{}"), new("b", "{}"), new("c", "{}")]);
    store
        .set_legacy_sent(0, "0xaa", "1700000000")
        .expect("sent");
    let pending = store.pending(10).expect("pending");
    assert_eq!(
        pending.iter().map(|r| r.index).collect::<Vec<_>>(),
        [0, 1, 2]
    );
    assert_eq!(pending[0].anchor_tx.as_deref(), Some("0xaa"));
    assert!(pending[0].legacy_anchor().is_none(), "sent is not anchored");
    let anchor = LegacyAnchor {
        tx_hash: "0xaa".into(),
        block_number: 5,
        block_timestamp: 1_700_000_001,
        chain_timestamp: "1700000000".into(),
    };
    store.set_legacy_anchor(0, &anchor).expect("anchor");
    let pending = store.pending(10).expect("pending");
    assert_eq!(pending.iter().map(|r| r.index).collect::<Vec<_>>(), [1, 2]);
    let a = store
        .record(&TwinId::new("a").expect("id"), 1)
        .expect("read")
        .expect("a");
    assert_eq!(a.legacy_anchor(), Some(anchor));
    assert_eq!(a.status(), Some(crate::RecordStatus::Anchored));
}

#[test]
fn data_survives_reopening_and_meta_round_trips() {
    let (dir, store) = open();
    append(&store, vec![new("a", r#"{"k":"v"}"#)]);
    store.set_meta("legacy_contract.1", "0xabc").expect("meta");
    drop(store);
    let store = Database::open(dir.path().join("t.db").as_ref(), Bands::default()).expect("reopen");
    assert_eq!(
        store.meta("legacy_contract.1").expect("meta").as_deref(),
        Some("0xabc")
    );
    assert_eq!(store.meta("missing").expect("meta"), None);
    let next = append(&store, vec![new("a", "{}")]);
    assert_eq!((next[0].index, next[0].version), (1, 2));
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
fn a_tampered_row_decodes_to_a_precise_error() {
    let (dir, store) = open();
    append(&store, vec![new("a", r#"{"x":1}"#)]);
    let conn = Connection::open(dir.path().join("t.db")).expect("open");
    conn.execute("UPDATE records SET state = '{not json'", [])
        .expect("tamper");
    let row = store
        .record(&TwinId::new("a").expect("id"), 1)
        .expect("read")
        .expect("row");
    let err = row.decode().expect_err("undecodable");
    assert!(err.to_string().starts_with("column state:"), "{err}");
}

#[test]
fn the_tree_is_stored_with_the_records_and_proves_inclusion_and_consistency() {
    let (_dir, store) = open();
    let mut leaves = Vec::new();
    for batch in 0..7 {
        let records = append(
            &store,
            (0..batch * 3 + 1)
                .map(|i| new(&format!("t{i}"), "{}"))
                .collect(),
        );
        leaves.extend(records.iter().map(Record::leaf_hash));
    }
    let n = leaves.len() as u64;
    assert_eq!(
        store.frontier().expect("frontier").head(),
        TreeHead {
            size: n,
            root: twinledger_core::root_of(&leaves)
        }
    );
    for size in [1, 2, 5, 17, n] {
        let head = store.tree_head(size).expect("head");
        assert_eq!(
            head.root,
            twinledger_core::root_of(&leaves[..size as usize])
        );
        for index in 0..size {
            let proof = store.inclusion_proof(index, size).expect("proof");
            proof
                .verify(&leaves[index as usize], &head.root)
                .expect("inclusion");
        }
        if size < n {
            let full = store.tree_head(n).expect("head");
            let proof = store.consistency_proof(size, n).expect("proof");
            proof.verify(&head.root, &full.root).expect("consistency");
        }
    }
}

/// A submission carrying idempotency key `key` for the request fingerprinted `req`.
fn keyed(twin: &str, key: &str, req: u8) -> NewRecord {
    NewRecord {
        idempotency: Some((key.to_owned(), Hash([req; 32]))),
        ..new(twin, "{}")
    }
}

#[test]
fn an_idempotency_key_writes_once_even_within_one_batch() {
    let (_dir, store) = open();
    let AppendOutcome { results: out, .. } = store
        .append(vec![
            keyed("a", "k1", 1),
            keyed("a", "k1", 1),
            keyed("b", "k2", 2),
        ])
        .expect("append");
    assert!(matches!(&out[0], Appended::New(r) if r.index == 0));
    assert_eq!(
        out[1],
        Appended::Replay {
            index: 0,
            same_request: true
        }
    );
    assert!(matches!(&out[2], Appended::New(r) if r.index == 1 && r.version == 1));
    let out = store
        .append(vec![keyed("a", "k1", 9), keyed("a", "k3", 3)])
        .expect("append")
        .results;
    assert_eq!(
        out[0],
        Appended::Replay {
            index: 0,
            same_request: false
        }
    );
    assert!(matches!(&out[1], Appended::New(r) if r.index == 2 && r.version == 2));
    assert_eq!(
        store.stats().expect("stats").records,
        3,
        "replays write nothing"
    );
}

#[test]
fn idempotency_keys_past_retention_are_pruned_in_batches_and_newer_ones_still_replay() {
    let (_dir, store) = open();
    let at = |record: NewRecord, ms: i64| NewRecord {
        recorded_at_ms: ms,
        ..record
    };
    let mut batch: Vec<_> = (0..5)
        .map(|i| at(keyed("old", &format!("old-{i}"), 1), 1_000 + i))
        .collect();
    batch.push(at(keyed("young", "young", 2), 5_000));
    store.append(batch).expect("append");
    let keys = |store: &Database| -> Vec<String> {
        store
            .read(|c| {
                let mut stmt = c.prepare("SELECT key FROM idempotency_keys ORDER BY key")?;
                let rows = stmt.query_map([], |r| r.get(0))?;
                Ok(rows.collect::<rusqlite::Result<Vec<String>>>()?)
            })
            .expect("keys")
    };

    // Keys created before 5000 go, two per call; the one created at 5000 stays.
    let pruned: Vec<usize> = (0..4)
        .map(|_| store.prune_idempotency_keys(5_000, 2).expect("prune"))
        .collect();
    assert_eq!(pruned, [2, 2, 1, 0]);
    assert_eq!(keys(&store), ["young"]);

    // Each batch finds its rows through the index, not by scanning every key.
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

    // A retry within retention still gets the first result; a key past retention is
    // forgotten, so its retry is a new request.
    let out = store
        .append(vec![keyed("young", "young", 2), keyed("old", "old-0", 1)])
        .expect("append")
        .results;
    assert_eq!(
        out[0],
        Appended::Replay {
            index: 5,
            same_request: true
        }
    );
    assert!(matches!(&out[1], Appended::New(r) if r.index == 6 && r.version == 6));
    assert_eq!(keys(&store), ["old-0", "young"]);
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

fn of_kind(twin: &str, kind: RecordKind, state: &str, annex: &str) -> NewRecord {
    let mut n = new(twin, state);
    n.kind = kind;
    if let Value::Object(o) = parse(annex.as_bytes(), &Limits::default()).expect("annex") {
        n.annex = o;
    }
    n
}

#[test]
fn reports_are_scored_against_the_desired_state_and_band_changes_append_shift_events() {
    let (_dir, store) = open();
    let desired = of_kind(
        "pump",
        RecordKind::Desired,
        r#"{"t": 20, "mode": "auto"}"#,
        r#"{"tolerances": {"/t": {"absolute": 1}}}"#,
    );
    let report = |s: &str| of_kind("pump", RecordKind::Reported, s, "{}");
    // One batch: the report before the desired state is not scored; the one after is, and
    // brings the first shift (from no band).
    let out = store
        .append(vec![
            report(r#"{"t": 25, "mode": "auto"}"#),
            desired,
            report(r#"{"t": 20.5, "mode": "auto"}"#),
            report(r#"{"t": 20.9, "mode": "auto"}"#),
            report(r#"{"t": 25, "mode": "auto"}"#),
            report(r#"{"t": 25}"#),
        ])
        .expect("append");
    let records: Vec<Record> = out
        .results
        .into_iter()
        .map(|a| match a {
            Appended::New(r) => r,
            other => panic!("not written: {other:?}"),
        })
        .collect();
    assert!(records[0].annex.is_none(), "nothing to compare with yet");
    assert_eq!(records[0].leaf()[0], twinledger_core::LEAF_FORMAT_V1);
    let congruence = |r: &Record| {
        let c = r
            .annex
            .as_ref()
            .and_then(|a| a.get("congruence"))
            .expect("congruence");
        let c = c.as_object().expect("object");
        (
            c.get("score").expect("score").to_json(),
            c.get("band")
                .and_then(Value::as_str)
                .expect("band")
                .to_owned(),
            c.get("diverging").expect("diverging").to_json(),
        )
    };
    assert_eq!(
        congruence(&records[2]),
        ("1".into(), "congruent".into(), "[]".into())
    );
    assert_eq!(records[2].leaf()[0], twinledger_core::LEAF_FORMAT_V2);
    assert_eq!(congruence(&records[3]).1, "congruent");
    assert_eq!(
        congruence(&records[4]),
        ("0.5".into(), "drifting".into(), r#"["/t"]"#.into())
    );
    assert_eq!(
        congruence(&records[5]),
        ("0".into(), "diverged".into(), r#"["/t","/mode"]"#.into())
    );
    // Shifts: none -> congruent (after v3), congruent -> drifting, drifting -> diverged.
    let shifts: Vec<(u64, u64, String)> = out
        .derived
        .iter()
        .map(|e| {
            assert_eq!(e.kind, RecordKind::Event);
            let s = e.state.as_object().expect("object");
            (
                e.index,
                e.version,
                format!(
                    "{}->{}",
                    s.get("from").expect("from").to_json(),
                    s.get("to").and_then(Value::as_str).expect("to")
                ),
            )
        })
        .collect();
    assert_eq!(
        shifts,
        vec![
            (3, 4, "null->congruent".into()),
            (6, 7, r#""congruent"->drifting"#.into()),
            (8, 9, r#""drifting"->diverged"#.into()),
        ]
    );
    // The event is chained into the twin's history like any record.
    assert_eq!(records[3].version, 5);
    assert_eq!(records[3].prev_leaf_hash, Some(out.derived[0].leaf_hash()));
    let twin = store
        .twin(&TwinId::new("pump").expect("id"))
        .expect("twin")
        .expect("some");
    assert_eq!(
        (twin.band.as_deref(), twin.desired_index),
        (Some("diverged"), Some(1))
    );
    assert_eq!(twin.latest_version, 9);
    // Stored rows decode to the same records, annexes included.
    for r in records.iter().chain(&out.derived) {
        let row = store.record_at(r.index).expect("read").expect("row");
        assert_eq!(&row.decode().expect("decode"), r);
        assert_eq!(row.leaf_hash, r.leaf_hash().0.to_vec());
    }
    let history = store
        .congruence_history(&TwinId::new("pump").expect("id"), 0, 0, i64::MAX, 10)
        .expect("history");
    assert_eq!(
        history.iter().map(|r| r.version).collect::<Vec<_>>(),
        [3, 5, 6, 8]
    );
    let from = store
        .records_from(4, Some(&TwinId::new("pump").expect("id")), 3)
        .expect("records");
    assert_eq!(from.iter().map(|r| r.index).collect::<Vec<_>>(), [4, 5, 6]);
}

#[test]
fn device_keys_are_registered_replaced_and_removed() {
    let (_dir, store) = open();
    let key = DeviceKeyRow {
        twin_id: "pump".into(),
        public_key: "ab".repeat(32),
        require_signature: false,
        registered_at_ms: 1,
    };
    store.put_device_key(&key).expect("put");
    let replaced = DeviceKeyRow {
        require_signature: true,
        registered_at_ms: 2,
        ..key.clone()
    };
    store.put_device_key(&replaced).expect("replace");
    assert_eq!(store.device_key("pump").expect("get"), Some(replaced));
    // Checked inside the append: unsigned reports are refused, desired states are not.
    let signed_by = |key: &str| {
        let mut n = new("pump", "{}");
        let mut sig = Object::new();
        sig.insert("public_key", Value::String(key.into()));
        n.annex.insert("signature", Value::Object(sig));
        n
    };
    let out = store
        .append(vec![
            new("pump", "{}"),
            signed_by(&"cd".repeat(32)),
            signed_by(&"ab".repeat(32)),
            of_kind("pump", RecordKind::Desired, "{}", "{}"),
            signed_by(&"ab".repeat(32)),
        ])
        .expect("append")
        .results;
    let refused: Vec<bool> = out
        .iter()
        .map(|a| matches!(a, Appended::Refused(_)))
        .collect();
    assert_eq!(refused, [true, true, false, false, false]);
    assert!(matches!(&out[0], Appended::Refused(m) if m.contains("requires reports signed")));
    assert!(matches!(&out[1], Appended::Refused(m) if m.contains("another device key")));
    assert!(matches!(&out[2], Appended::New(r) if r.index == 0));
    assert!(store.delete_device_key("pump").expect("delete"));
    assert!(!store.delete_device_key("pump").expect("delete"));
    assert_eq!(store.device_key("pump").expect("get"), None);
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
