//! What every backend must do alike: written once against `&dyn Store`, run on each backend
//! (`sqlite::…` and `postgres::…`).

use futures_util::StreamExt;
use twinledger_core::json::{Limits, Object, Value, parse};
use twinledger_core::{Hash, HashScheme, Record, RecordKind, Salt, TreeHead, TwinId};
use twinledger_store::{
    Anchor, ApiKey, AppendOutcome, Appended, CopyError, DeviceKeyRow, LegacyAnchor, NewRecord,
    RecordStatus, Store, StoreStats, Table, copy_ledger,
};

use super::backends::Db;

/// One test per case and backend.
macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread")]
                async fn $case() {
                    super::$case(super::Db::sqlite().await).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread")]
                async fn $case() {
                    super::$case(super::Db::postgres().await).await
                }
            )*
        }
    };
}

conformance!(
    append_assigns_dense_indexes_and_versions_and_links_each_twin,
    pending_records_come_in_log_order_until_anchored,
    data_survives_reopening_and_meta_round_trips,
    a_tampered_row_decodes_to_a_precise_error,
    the_tree_is_stored_with_the_records_and_proves_inclusion_and_consistency,
    an_idempotency_key_writes_once_even_within_one_batch,
    idempotency_keys_past_retention_are_pruned_in_batches_and_newer_ones_still_replay,
    reports_are_scored_against_the_desired_state_and_band_changes_append_shift_events,
    device_keys_are_registered_replaced_and_removed,
    a_refused_request_keeps_no_idempotency_key_and_its_retry_is_checked_again,
    log_mode_records_are_logged_and_never_pending,
    anchors_go_from_sent_to_mined_to_confirmed,
    api_keys_are_stored_listed_and_revoked_once,
    a_scan_reads_the_whole_log_in_batches_and_unbounded_limits_read_everything,
    twins_are_paged_in_id_order_and_found_by_prefix,
    a_copy_to_either_backend_reads_back_identically_and_appends_on,
    a_target_that_holds_anything_is_refused_and_left_unchanged,
);

pub fn new(twin: &str, state: &str) -> NewRecord {
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

/// A submission carrying idempotency key `key` for the request fingerprinted `req`.
pub fn keyed(twin: &str, key: &str, req: u8) -> NewRecord {
    NewRecord {
        idempotency: Some((key.to_owned(), Hash([req; 32]))),
        ..new(twin, "{}")
    }
}

fn of_kind(twin: &str, kind: RecordKind, state: &str, annex: &str) -> NewRecord {
    let mut n = new(twin, state);
    n.kind = kind;
    if let Value::Object(o) = parse(annex.as_bytes(), &Limits::default()).expect("annex") {
        n.annex = o;
    }
    n
}

fn written(out: AppendOutcome) -> Vec<Record> {
    out.results
        .into_iter()
        .map(|a| match a {
            Appended::New(r) => r,
            other => panic!("not written: {other:?}"),
        })
        .collect()
}

async fn append(store: &dyn Store, batch: Vec<NewRecord>) -> Vec<Record> {
    written(store.append(batch).await.expect("append"))
}

fn id(twin: &str) -> TwinId {
    TwinId::new(twin).expect("id")
}

async fn append_assigns_dense_indexes_and_versions_and_links_each_twin(db: Db) {
    let store = &*db.store;
    let first = append(
        store,
        vec![
            new("a", r#"{"x":1}"#),
            new("b", r#"{"y":1}"#),
            new("a", r#"{"x":2}"#),
        ],
    )
    .await;
    let second = append(store, vec![new("a", r#"{"x":3}"#)]).await;
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

    let a = id("a");
    let summary = store.twin(&a).await.expect("read").expect("twin a");
    assert_eq!((summary.latest_version, summary.latest_index), (3, 3));
    assert_eq!(
        (summary.created_at_ms, summary.updated_at_ms),
        (1_700_000_000_000, 1_700_000_000_000)
    );
    let history = store.history(&a, 1, 10).await.expect("history");
    assert_eq!(history.len(), 3);
    for (stored, record) in history.iter().zip([all[0], all[2], all[3]]) {
        assert_eq!(
            &stored.decode().expect("decodes"),
            record,
            "stored exactly as appended"
        );
        assert_eq!(stored.leaf_hash, record.leaf_hash().0);
    }
    assert_eq!(store.history(&a, 3, 10).await.expect("page").len(), 1);
    assert_eq!(
        store.record(&a, 2).await.expect("read").map(|r| r.index),
        Some(2)
    );
    assert!(store.record(&a, 4).await.expect("read").is_none());
    assert!(store.twin(&id("zz")).await.expect("read").is_none());
    let stats = store.stats().await.expect("stats");
    assert_eq!(
        stats,
        StoreStats {
            records: 4,
            twins: 2,
            pending: 4,
            bytes: stats.bytes,
        }
    );
    assert!(stats.bytes > 0, "{stats:?}");
}

async fn pending_records_come_in_log_order_until_anchored(db: Db) {
    let store = &*db.store;
    append(store, vec![new("a", "{}"), new("b", "{}"), new("c", "{}")]).await;
    store
        .set_legacy_sent(0, "0xaa", "1700000000")
        .await
        .expect("sent");
    let pending = store.pending(10).await.expect("pending");
    assert_eq!(
        pending.iter().map(|r| r.index).collect::<Vec<_>>(),
        [0, 1, 2]
    );
    assert_eq!(pending[0].anchor_tx.as_deref(), Some("0xaa"));
    assert!(pending[0].legacy_anchor().is_none(), "sent is not anchored");
    assert_eq!(store.pending(2).await.expect("pending").len(), 2);
    let anchor = LegacyAnchor {
        tx_hash: "0xaa".into(),
        block_number: 5,
        block_timestamp: 1_700_000_001,
        chain_timestamp: "1700000000".into(),
    };
    store.set_legacy_anchor(0, &anchor).await.expect("anchor");
    let pending = store.pending(10).await.expect("pending");
    assert_eq!(pending.iter().map(|r| r.index).collect::<Vec<_>>(), [1, 2]);
    let a = store.record(&id("a"), 1).await.expect("read").expect("a");
    assert_eq!(a.legacy_anchor(), Some(anchor));
    assert_eq!(a.status(), Some(RecordStatus::Anchored));
    assert_eq!(store.latest_anchor_block().await.expect("block"), Some(5));
    // Sent notes only touch pending records.
    store
        .set_legacy_sent(0, "0xbb", "1700000009")
        .await
        .expect("sent");
    let a = store.record_at(0).await.expect("read").expect("a");
    assert_eq!(a.anchor_tx.as_deref(), Some("0xaa"));
    assert_eq!(store.stats().await.expect("stats").pending, 2);
}

async fn data_survives_reopening_and_meta_round_trips(db: Db) {
    append(&*db.store, vec![new("a", r#"{"k":"v"}"#)]).await;
    db.store
        .set_meta("legacy_contract.1", "0xabc")
        .await
        .expect("meta");
    db.store
        .set_meta("legacy_contract.1", "0xabd")
        .await
        .expect("meta replaced");
    let store = db.reopen().await;
    assert_eq!(
        store
            .meta("legacy_contract.1")
            .await
            .expect("meta")
            .as_deref(),
        Some("0xabd")
    );
    assert_eq!(store.meta("missing").await.expect("meta"), None);
    // The first value stored once stays; later ones get it back.
    assert_eq!(
        store.set_meta_once("key", "first").await.expect("once"),
        "first"
    );
    assert_eq!(
        store.set_meta_once("key", "second").await.expect("once"),
        "first"
    );
    assert_eq!(
        store.meta("key").await.expect("meta").as_deref(),
        Some("first")
    );
    let next = append(&*store, vec![new("a", "{}")]).await;
    assert_eq!((next[0].index, next[0].version), (1, 2));
    assert_eq!(store.frontier().await.expect("frontier").size(), 2);
}

async fn a_tampered_row_decodes_to_a_precise_error(db: Db) {
    append(&*db.store, vec![new("a", r#"{"x":1}"#)]).await;
    db.execute("UPDATE records SET state = '{not json'").await;
    let row = db
        .store
        .record(&id("a"), 1)
        .await
        .expect("read")
        .expect("row");
    let err = row.decode().expect_err("undecodable");
    assert!(err.to_string().starts_with("column state:"), "{err}");
}

async fn the_tree_is_stored_with_the_records_and_proves_inclusion_and_consistency(db: Db) {
    let store = &*db.store;
    let mut leaves = Vec::new();
    for batch in 0..7 {
        let records = append(
            store,
            (0..batch * 3 + 1)
                .map(|i| new(&format!("t{i}"), "{}"))
                .collect(),
        )
        .await;
        leaves.extend(records.iter().map(Record::leaf_hash));
    }
    let n = leaves.len() as u64;
    assert_eq!(
        store.frontier().await.expect("frontier").head(),
        TreeHead {
            size: n,
            root: twinledger_core::root_of(&leaves)
        }
    );
    for size in [1, 2, 5, 17, n] {
        let head = store.tree_head(size).await.expect("head");
        assert_eq!(
            head.root,
            twinledger_core::root_of(&leaves[..size as usize])
        );
        // The frontier part-way (an audit that begins at `size`) has the same head.
        let frontier = store.frontier_at(size).await.expect("frontier");
        assert_eq!(frontier.head(), head);
        for index in 0..size {
            let proof = store.inclusion_proof(index, size).await.expect("proof");
            proof
                .verify(&leaves[index as usize], &head.root)
                .expect("inclusion");
        }
        // Several in one read: the same proofs, in the order asked.
        let asked: Vec<u64> = (0..size).rev().collect();
        let proofs = store
            .inclusion_proofs(asked.clone(), size)
            .await
            .expect("proofs");
        assert_eq!(proofs.len(), asked.len());
        for (index, proof) in asked.iter().zip(proofs) {
            let proof = proof.expect("proof");
            assert_eq!(
                proof,
                store.inclusion_proof(*index, size).await.expect("proof")
            );
        }
        if size < n {
            let full = store.tree_head(n).await.expect("head");
            let proof = store.consistency_proof(size, n).await.expect("proof");
            proof.verify(&head.root, &full.root).expect("consistency");
        }
    }
    // A tree larger than the log has nodes nobody stored.
    let err = store.tree_head(n + 1).await.expect_err("beyond the log");
    assert!(err.to_string().contains("is missing"), "{err}");
    // A proof that cannot be made is an error in its place, not the read's.
    let beyond = store
        .inclusion_proofs(vec![0], n + 1)
        .await
        .expect("the read");
    let err = beyond[0].as_ref().expect_err("beyond the log");
    assert!(err.to_string().contains("is missing"), "{err}");
}

async fn an_idempotency_key_writes_once_even_within_one_batch(db: Db) {
    let store = &*db.store;
    let AppendOutcome { results: out, .. } = store
        .append(vec![
            keyed("a", "k1", 1),
            keyed("a", "k1", 1),
            keyed("b", "k2", 2),
        ])
        .await
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
        .await
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
        store.stats().await.expect("stats").records,
        3,
        "replays write nothing"
    );
    // A batch of replays only writes nothing and leaves the tree as it was.
    let out = store
        .append(vec![keyed("b", "k2", 2)])
        .await
        .expect("append");
    assert_eq!(out.frontier.size(), 3);
    assert_eq!(store.frontier().await.expect("frontier").size(), 3);
}

async fn idempotency_keys_past_retention_are_pruned_in_batches_and_newer_ones_still_replay(db: Db) {
    let store = &*db.store;
    let at = |record: NewRecord, ms: i64| NewRecord {
        recorded_at_ms: ms,
        ..record
    };
    let mut batch: Vec<_> = (0..5)
        .map(|i| at(keyed("old", &format!("old-{i}"), 1), 1_000 + i))
        .collect();
    batch.push(at(keyed("young", "young", 2), 5_000));
    store.append(batch).await.expect("append");
    let keys = "SELECT key FROM idempotency_keys ORDER BY key";

    // Keys created before 5000 go, two per call; the one created at 5000 stays.
    let mut pruned = Vec::new();
    for _ in 0..4 {
        pruned.push(store.prune_idempotency_keys(5_000, 2).await.expect("prune"));
    }
    assert_eq!(pruned, [2, 2, 1, 0]);
    assert_eq!(db.texts(keys).await, ["young"]);

    // A retry within retention still gets the first result; a key past retention is
    // forgotten, so its retry is a new request.
    let out = store
        .append(vec![keyed("young", "young", 2), keyed("old", "old-0", 1)])
        .await
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
    assert_eq!(db.texts(keys).await, ["old-0", "young"]);
    assert_eq!(
        store
            .prune_idempotency_keys(i64::MAX, usize::MAX)
            .await
            .expect("prune all"),
        2
    );
}

async fn reports_are_scored_against_the_desired_state_and_band_changes_append_shift_events(db: Db) {
    let store = &*db.store;
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
        .await
        .expect("append");
    let derived = out.derived.clone();
    let records = written(out);
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
    let shifts: Vec<(u64, u64, String)> = derived
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
    assert_eq!(records[3].prev_leaf_hash, Some(derived[0].leaf_hash()));
    let pump = id("pump");
    let twin = store.twin(&pump).await.expect("twin").expect("some");
    assert_eq!(
        (twin.band.as_deref(), twin.desired_index),
        (Some("diverged"), Some(1))
    );
    assert_eq!(twin.latest_version, 9);
    // Stored rows decode to the same records, annexes included.
    for r in records.iter().chain(&derived) {
        let row = store.record_at(r.index).await.expect("read").expect("row");
        assert_eq!(&row.decode().expect("decode"), r);
        assert_eq!(row.leaf_hash, r.leaf_hash().0.to_vec());
    }
    let history = store
        .congruence_history(&pump, 0, 0, i64::MAX, 10)
        .await
        .expect("history");
    assert_eq!(
        history.iter().map(|r| r.version).collect::<Vec<_>>(),
        [3, 5, 6, 8]
    );
    let later = store
        .congruence_history(&pump, 5, 0, i64::MAX, 1)
        .await
        .expect("history");
    assert_eq!(later.iter().map(|r| r.version).collect::<Vec<_>>(), [6]);
    let latest = store.latest_assessed(&pump).await.expect("latest");
    assert_eq!(latest.map(|r| r.version), Some(8));
    let from = store
        .records_from(4, Some(&pump), 3)
        .await
        .expect("records");
    assert_eq!(from.iter().map(|r| r.index).collect::<Vec<_>>(), [4, 5, 6]);

    // The next batch reads the desired state back from the database and goes on from the
    // twin's stored band: a still diverged report brings no shift.
    let out = store
        .append(vec![
            report(r#"{"t": 25}"#),
            report(r#"{"t": 20, "mode": "auto"}"#),
        ])
        .await
        .expect("append");
    let again = written(out.clone());
    assert_eq!(congruence(&again[0]).1, "diverged");
    assert_eq!(congruence(&again[1]).1, "congruent");
    assert_eq!(
        out.derived
            .iter()
            .map(|e| (e.index, e.version))
            .collect::<Vec<_>>(),
        [(11, 12)]
    );
}

async fn device_keys_are_registered_replaced_and_removed(db: Db) {
    let store = &*db.store;
    let key = DeviceKeyRow {
        twin_id: "pump".into(),
        public_key: "ab".repeat(32),
        require_signature: false,
        registered_at_ms: 1,
    };
    store.put_device_key(&key).await.expect("put");
    let replaced = DeviceKeyRow {
        require_signature: true,
        registered_at_ms: 2,
        ..key.clone()
    };
    store.put_device_key(&replaced).await.expect("replace");
    assert_eq!(store.device_key("pump").await.expect("get"), Some(replaced));
    // Checked inside the append: unsigned reports are refused, desired states are not.
    let signed_by = |twin: &str, key: &str| {
        let mut n = new(twin, "{}");
        let mut sig = Object::new();
        sig.insert("public_key", Value::String(key.into()));
        n.annex.insert("signature", Value::Object(sig));
        n
    };
    let out = store
        .append(vec![
            new("pump", "{}"),
            signed_by("pump", &"cd".repeat(32)),
            signed_by("pump", &"ab".repeat(32)),
            of_kind("pump", RecordKind::Desired, "{}", "{}"),
            signed_by("pump", &"ab".repeat(32)),
            signed_by("fan", &"ab".repeat(32)),
            new("fan", "{}"),
        ])
        .await
        .expect("append")
        .results;
    let refused: Vec<bool> = out
        .iter()
        .map(|a| matches!(a, Appended::Refused(_)))
        .collect();
    assert_eq!(refused, [true, true, false, false, false, true, false]);
    assert!(matches!(&out[0], Appended::Refused(m) if m.contains("requires reports signed")));
    assert!(matches!(&out[1], Appended::Refused(m) if m.contains("another device key")));
    assert!(matches!(&out[2], Appended::New(r) if r.index == 0));
    assert!(matches!(&out[5], Appended::Refused(m) if m.contains("twin fan has no device key")));
    assert!(store.delete_device_key("pump").await.expect("delete"));
    assert!(!store.delete_device_key("pump").await.expect("delete"));
    assert_eq!(store.device_key("pump").await.expect("get"), None);
}

async fn a_refused_request_keeps_no_idempotency_key_and_its_retry_is_checked_again(db: Db) {
    let store = &*db.store;
    store
        .put_device_key(&DeviceKeyRow {
            twin_id: "pump".into(),
            public_key: "ab".repeat(32),
            require_signature: true,
            registered_at_ms: 1,
        })
        .await
        .expect("put");
    let out = store
        .append(vec![keyed("pump", "k1", 1), new("fan", "{}")])
        .await
        .expect("append")
        .results;
    assert!(matches!(&out[0], Appended::Refused(_)), "{out:?}");
    assert!(matches!(&out[1], Appended::New(r) if r.index == 0));
    // Once signatures are no longer required, the same request is recorded, not answered as a
    // replay of the fan's record that took the index the refused one would have had.
    assert!(store.delete_device_key("pump").await.expect("delete"));
    let out = store
        .append(vec![keyed("pump", "k1", 1)])
        .await
        .expect("append")
        .results;
    assert!(
        matches!(&out[0], Appended::New(r) if r.index == 1 && r.twin_id.as_str() == "pump"),
        "{out:?}"
    );
    let out = store
        .append(vec![keyed("pump", "k1", 1)])
        .await
        .expect("append")
        .results;
    assert_eq!(
        out,
        [Appended::Replay {
            index: 1,
            same_request: true
        }]
    );
}

async fn log_mode_records_are_logged_and_never_pending(db: Db) {
    let store = &*db.store;
    store.set_meta("mode", "log").await.expect("mode");
    append(store, vec![new("a", "{}"), new("b", "{}")]).await;
    assert!(store.pending(10).await.expect("pending").is_empty());
    assert_eq!(store.stats().await.expect("stats").pending, 0);
    let row = store.record_at(1).await.expect("read").expect("row");
    assert_eq!(row.status, "logged");
    assert_eq!(row.status(), None, "not a legacy status");
}

async fn anchors_go_from_sent_to_mined_to_confirmed(db: Db) {
    let store = &*db.store;
    let root = Hash([3; 32]);
    assert_eq!(store.latest_mined_anchor().await.expect("latest"), None);
    store
        .put_anchor_sent(4, &root, 0, "0x01")
        .await
        .expect("sent");
    store.set_anchor_tx(4, "0x02").await.expect("replaced");
    store
        .put_anchor_sent(9, &root, 4, "0x03")
        .await
        .expect("sent");
    assert_eq!(
        store.anchor_covering(2).await.expect("covering"),
        None,
        "a sent anchor covers nothing yet"
    );
    store
        .set_anchor_mined(4, 100, "0xb100", 1_700_000_100, 21_000)
        .await
        .expect("mined");
    // A mined anchor's transaction is no longer replaced.
    store.set_anchor_tx(4, "0x04").await.expect("no-op");
    let mined = Anchor {
        size: 4,
        root,
        prev_size: 0,
        tx_hash: "0x02".into(),
        status: "mined".into(),
        block_number: Some(100),
        block_hash: Some("0xb100".into()),
        block_time: Some(1_700_000_100),
        gas_used: Some(21_000),
        replacements: 1,
    };
    assert_eq!(
        store.anchor_covering(3).await.expect("covering"),
        Some(mined.clone())
    );
    assert_eq!(store.anchor_covering(4).await.expect("covering"), None);
    assert_eq!(
        store.latest_mined_anchor().await.expect("latest"),
        Some(mined.clone())
    );
    assert_eq!(store.latest_anchor_block().await.expect("block"), Some(100));
    store.set_anchors_confirmed(9).await.expect("confirmed");
    let all = store.anchors(0, usize::MAX).await.expect("anchors");
    assert_eq!(
        all.iter()
            .map(|a| (a.size, a.status.as_str()))
            .collect::<Vec<_>>(),
        [(4, "confirmed"), (9, "sent")]
    );
    assert_eq!(store.anchors(5, 10).await.expect("anchors").len(), 1);
    let sizes = |anchors: Vec<twinledger_store::Anchor>| -> Vec<u64> {
        anchors.iter().map(|a| a.size).collect()
    };
    // Newest first, below a size.
    let below = |size, limit| store.anchors_below(size, limit);
    assert_eq!(sizes(below(u64::MAX, 10).await.expect("below")), [9, 4]);
    assert_eq!(sizes(below(u64::MAX, 1).await.expect("below")), [9]);
    assert_eq!(sizes(below(9, 10).await.expect("below")), [4]);
    assert_eq!(sizes(below(4, 10).await.expect("below")), Vec::<u64>::new());
    // Sent again after a reorganisation: back to sent, its block forgotten.
    store
        .put_anchor_sent(4, &root, 0, "0x05")
        .await
        .expect("resent");
    let again = store.anchors(4, 1).await.expect("anchors");
    assert_eq!(
        (
            again[0].status.as_str(),
            again[0].block_number,
            again[0].replacements
        ),
        ("sent", None, 0)
    );
    store.delete_anchor(9).await.expect("delete");
    assert_eq!(store.anchors(0, 10).await.expect("anchors").len(), 1);
}

async fn api_keys_are_stored_listed_and_revoked_once(db: Db) {
    let store = &*db.store;
    let key = |id: &str, at: i64| ApiKey {
        id: id.into(),
        secret_hash: Hash([9; 32]),
        scope: "write".into(),
        twin_prefix: Some("plant-".into()),
        label: format!("key {id}"),
        created_at_ms: at,
        revoked_at_ms: None,
    };
    store.put_api_key(&key("b", 1)).await.expect("put");
    store.put_api_key(&key("a", 2)).await.expect("put");
    store.put_api_key(&key("c", 1)).await.expect("put");
    assert!(
        store.put_api_key(&key("a", 3)).await.is_err(),
        "an id is used once"
    );
    assert_eq!(store.api_key("a").await.expect("get"), Some(key("a", 2)));
    assert_eq!(store.api_key("zz").await.expect("get"), None);
    let ids: Vec<String> = store
        .api_keys()
        .await
        .expect("list")
        .into_iter()
        .map(|k| k.id)
        .collect();
    assert_eq!(ids, ["b", "c", "a"]);
    assert!(store.revoke_api_key("a", 7).await.expect("revoke"));
    assert!(!store.revoke_api_key("a", 8).await.expect("revoke"));
    assert!(!store.revoke_api_key("zz", 8).await.expect("revoke"));
    let a = store.api_key("a").await.expect("get").expect("a");
    assert_eq!(a.revoked_at_ms, Some(7));
}

async fn a_scan_reads_the_whole_log_in_batches_and_unbounded_limits_read_everything(db: Db) {
    let store = &*db.store;
    for chunk in 0..5 {
        append(
            store,
            (0..1000)
                .map(|i| {
                    new(
                        &format!("t{}", i % 7),
                        &format!(r#"{{"i":{}}}"#, chunk * 1000 + i),
                    )
                })
                .collect(),
        )
        .await;
    }
    let mut scan = store.scan(1);
    let mut next = 1;
    while let Some(batch) = scan.next().await {
        for r in batch.expect("batch") {
            assert_eq!(r.index, next);
            next += 1;
        }
    }
    assert_eq!(next, 5000);
    assert_eq!(store.scan(5000).next().await.map(|b| b.is_ok()), None);
    let all = store
        .records_from(0, None, usize::MAX)
        .await
        .expect("records");
    assert_eq!(all.len(), 5000);
    let t3 = store
        .records_from(10, Some(&id("t3")), usize::MAX)
        .await
        .expect("records");
    assert!(t3.iter().all(|r| r.twin_id == "t3" && r.index >= 10));
    assert_eq!(
        store
            .history(&id("t3"), 1, usize::MAX)
            .await
            .expect("history")
            .len(),
        715
    );
    assert_eq!(
        store.pending(usize::MAX).await.expect("pending").len(),
        5000
    );
}

async fn twins_are_paged_in_id_order_and_found_by_prefix(db: Db) {
    let store = &*db.store;
    append(
        store,
        ["b", "B", "a-1", "a", "c", "a_2", "ab", "é-1", "é"]
            .iter()
            .map(|t| new(t, "{}"))
            .collect(),
    )
    .await;
    let page = |prefix: &'static str, after: Option<&'static str>, limit: usize| async move {
        store
            .twins(prefix, after, limit)
            .await
            .expect("twins")
            .into_iter()
            .map(|t| t.twin_id)
            .collect::<Vec<_>>()
    };
    // Bytewise, whatever the database's locale.
    assert_eq!(
        page("", None, usize::MAX).await,
        ["B", "a", "a-1", "a_2", "ab", "b", "c", "é", "é-1"]
    );
    assert_eq!(page("", None, 2).await, ["B", "a"]);
    assert_eq!(page("", Some("a"), 2).await, ["a-1", "a_2"]);
    assert_eq!(page("", Some("é-1"), 2).await, Vec::<String>::new());
    // A prefix is a range of the index, paged the same way; case and accents count.
    assert_eq!(page("a", None, 10).await, ["a", "a-1", "a_2", "ab"]);
    assert_eq!(page("a", Some("a-1"), 2).await, ["a_2", "ab"]);
    assert_eq!(page("a-", None, 10).await, ["a-1"]);
    assert_eq!(page("é", None, 10).await, ["é", "é-1"]);
    assert_eq!(page("A", None, 10).await, Vec::<String>::new());
    assert_eq!(page("c", Some("b"), 10).await, ["c"]);
}

/// A ledger with a row in every table: several twins with desired and reported states (so
/// shift events), a device key and a signed report, idempotency keys, API keys (one revoked),
/// anchors in each status, a legacy anchor on one record, and facts.
async fn fill(store: &dyn Store) {
    let tolerances = r#"{"tolerances": {"/t": {"absolute": 1}}}"#;
    let report = |twin: &str, t: u32| {
        of_kind(
            twin,
            RecordKind::Reported,
            &format!(r#"{{"t": {t}}}"#),
            "{}",
        )
    };
    store
        .put_device_key(&DeviceKeyRow {
            twin_id: "pump-1".into(),
            public_key: "ab".repeat(32),
            require_signature: false,
            registered_at_ms: 5,
        })
        .await
        .expect("device key");
    for round in 0..6u32 {
        let mut batch = Vec::new();
        for twin in ["pump-1", "pump-2", "fan"] {
            if round % 3 == 0 {
                batch.push(of_kind(
                    twin,
                    RecordKind::Desired,
                    r#"{"t": 20}"#,
                    tolerances,
                ));
            }
            batch.push(report(twin, 20 + round * 2));
            batch.push(NewRecord {
                recorded_at_ms: 1_700_000_000_000 + i64::from(round),
                ..keyed(twin, &format!("{twin}-{round}"), round as u8)
            });
        }
        let mut signed = report("pump-1", 20);
        let mut sig = Object::new();
        sig.insert("public_key", Value::String("ab".repeat(32)));
        signed.annex.insert("signature", Value::Object(sig));
        batch.push(signed);
        append(store, batch).await;
    }
    let size = store.frontier().await.expect("frontier").size();
    assert!(size > 40, "shift events were derived: {size}");
    for (at, (tx, status)) in [
        (10, ("0x0a", "confirmed")),
        (25, ("0x19", "mined")),
        (size, ("0x2c", "sent")),
    ] {
        let root = store.tree_head(at).await.expect("head").root;
        store.put_anchor_sent(at, &root, 0, tx).await.expect("sent");
        if status != "sent" {
            store
                .set_anchor_mined(at, at * 10, &format!("0xb{at}"), 1_700_000_000 + at, 40_000)
                .await
                .expect("mined");
        }
    }
    store.set_anchors_confirmed(10).await.expect("confirmed");
    store
        .set_legacy_sent(3, "0xlegacy", "1700000000")
        .await
        .expect("legacy sent");
    store
        .set_legacy_anchor(
            3,
            &LegacyAnchor {
                tx_hash: "0xlegacy".into(),
                block_number: 7,
                block_timestamp: 1_700_000_007,
                chain_timestamp: "1700000000".into(),
            },
        )
        .await
        .expect("legacy anchor");
    for (id, revoked) in [("k-read", None), ("k-write", Some(9))] {
        store
            .put_api_key(&ApiKey {
                id: id.into(),
                secret_hash: Hash([4; 32]),
                scope: "write".into(),
                twin_prefix: revoked.map(|_| "pump-".into()),
                label: format!("key {id}"),
                created_at_ms: 3,
                revoked_at_ms: None,
            })
            .await
            .expect("api key");
        if let Some(at) = revoked {
            assert!(store.revoke_api_key(id, at).await.expect("revoke"));
        }
    }
    store
        .set_meta("log_contract.31337", "0xc0ffee")
        .await
        .expect("meta");
    store.set_meta("chain_id", "31337").await.expect("meta");
}

/// Every table's rows exactly as stored, one text per table.
async fn tables(store: &dyn Store) -> Vec<(Table, String)> {
    let mut out = Vec::new();
    for table in Table::ALL {
        let mut text = String::new();
        let mut batches = store.export(table);
        while let Some(batch) = batches.next().await {
            text.push_str(&format!("{:?}", batch.expect("batch")));
        }
        out.push((table, text));
    }
    out
}

/// What the store's interface answers about the ledger, for comparing two stores.
async fn readings(store: &dyn Store) -> String {
    let size = store.frontier().await.expect("frontier").size();
    let mut out = format!(
        "{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n",
        // Bytes on disk are each backend's own.
        StoreStats {
            bytes: 0,
            ..store.stats().await.expect("stats")
        },
        store.frontier().await.expect("frontier").head(),
        store.twins("", None, usize::MAX).await.expect("twins"),
        store.anchors(0, usize::MAX).await.expect("anchors"),
        store.api_keys().await.expect("api keys"),
    );
    for key in ["mode", "chain_id", "log_contract.31337"] {
        out.push_str(&format!(
            "{key}={:?}\n",
            store.meta(key).await.expect("meta")
        ));
    }
    out.push_str(&format!(
        "{:?}\n",
        store.device_key("pump-1").await.expect("device key")
    ));
    out.push_str(&format!(
        "{:?}\n",
        store.latest_mined_anchor().await.expect("latest")
    ));
    for index in (0..size).step_by(5) {
        out.push_str(&format!(
            "{:?} {:?} {:?}\n",
            store.record_at(index).await.expect("record"),
            store.inclusion_proof(index, size).await.expect("inclusion"),
            store.anchor_covering(index).await.expect("covering"),
        ));
    }
    for first in [1, 10, 25] {
        out.push_str(&format!(
            "{:?}\n",
            store
                .consistency_proof(first, size)
                .await
                .expect("consistency")
        ));
    }
    out
}

async fn a_copy_to_either_backend_reads_back_identically_and_appends_on(db: Db) {
    let source = &*db.store;
    fill(source).await;
    let expected_tables = tables(source).await;
    let expected = readings(source).await;
    let mut copies = Vec::new();
    for target in [Db::sqlite().await, Db::postgres().await] {
        let copy = &*target.store;
        assert!(copy.is_empty().await.expect("empty"));
        let mut copied = Vec::new();
        let report = copy_ledger(source, copy, |p| copied.push(p))
            .await
            .expect("copied");
        assert!(!copied.is_empty(), "progress was reported");
        assert_eq!(report.rows, source.row_counts().await.expect("counts"));
        assert!(
            Table::ALL.iter().all(|t| report.rows_of(*t) > 0),
            "{report:?}"
        );
        assert_eq!(
            report.anchored_sizes,
            [10, 25],
            "mined and confirmed anchors only"
        );
        assert_eq!(
            report.head,
            source.frontier().await.expect("frontier").head()
        );
        assert_eq!(tables(copy).await, expected_tables, "every row as stored");
        assert_eq!(readings(copy).await, expected, "the same answers");
        copies.push(target);
    }
    // Reopened (as a service would start on it), each copy goes on where the source does: the
    // same submissions make the same records, scored against the copied desired state, with a
    // shift event derived from the copied band, and the copied idempotency key replays.
    let next = || {
        vec![
            of_kind("pump-2", RecordKind::Reported, r#"{"t": 20}"#, "{}"),
            keyed("fan", "fan-0", 0),
        ]
    };
    let reopened = db.reopen().await;
    let on_source = reopened.append(next()).await.expect("append on the source");
    assert_eq!(on_source.derived.len(), 1, "a shift from the stored band");
    assert!(matches!(
        on_source.results[1],
        Appended::Replay {
            same_request: true,
            ..
        }
    ));
    for target in &copies {
        let copy = target.reopen().await;
        let on_copy = copy.append(next()).await.expect("append on the copy");
        assert_eq!(on_copy.results, on_source.results);
        assert_eq!(on_copy.derived, on_source.derived);
        assert_eq!(on_copy.frontier.head(), on_source.frontier.head());
        assert_eq!(tables(&*copy).await, tables(&*reopened).await);
    }
}

async fn a_target_that_holds_anything_is_refused_and_left_unchanged(db: Db) {
    let source = Db::sqlite().await;
    fill(&*source.store).await;
    let target = &*db.store;
    // Even a fact alone: a target that was ever used is someone's ledger.
    target.set_meta("mode", "legacy").await.expect("meta");
    assert!(!target.is_empty().await.expect("read"));
    let err = copy_ledger(&*source.store, target, |_| {})
        .await
        .expect_err("refused");
    assert!(matches!(err, CopyError::TargetNotEmpty(_)), "{err}");
    assert!(err.to_string().contains("1 meta"), "{err}");

    append(target, vec![new("other", "{}"), new("other", "{}")]).await;
    let before = tables(target).await;
    let err = copy_ledger(&*source.store, target, |_| {})
        .await
        .expect_err("refused");
    let text = err.to_string();
    assert!(
        text.contains("2 records") && text.contains("1 twins") && text.contains("1 meta"),
        "{text}"
    );
    assert_eq!(tables(target).await, before, "nothing was written");
    assert_eq!(target.meta("log_contract.31337").await.expect("meta"), None);
}
