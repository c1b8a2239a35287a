//! `twinledger audit`: clean logs pass; edits, rewrites and deletions are found and located.

use serde_json::{Value, json};

use crate::support::*;

fn audit(dir: &std::path::Path) -> (Option<i32>, Value) {
    audit_with(dir, &[])
}

/// `twinledger audit --json` with `args`: its exit code and report.
fn audit_with(dir: &std::path::Path, args: &[&str]) -> (Option<i32>, Value) {
    let mut all = vec!["audit", "--json", "--data-dir", dir.to_str().expect("path")];
    all.extend(args);
    let out = run(&all);
    let report = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("no JSON report: {}", String::from_utf8_lossy(&out.stderr)));
    (out.status.code(), report)
}

/// Thirty records of ten twins, posted one at a time, each waiting for its anchor: every record
/// gets an anchor of its own (sizes 1 to 30), so a divergence can be located to the single
/// record.
async fn thirty_anchored(app: &twinledger_testkit::App) {
    for round in 0..3 {
        for i in 0..10 {
            let r = http()
                .post(app.url(&format!("/v1/twins/a{i}/states?wait=anchored")))
                .json(&json!({"round": round}))
                .send()
                .await
                .expect("post");
            assert_eq!(r.status().as_u16(), 201);
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn audit_is_clean_then_locates_edits_rewrites_and_deletions() {
    let dir = data_dir();
    let app = embedded_app(dir.path());
    thirty_anchored(&app).await;
    let (code, report) = audit(dir.path());
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(report["records"], 30);
    assert!(
        report["anchored_heads_checked"].as_u64().expect("n") >= 3,
        "{report}"
    );
    assert_eq!(report["divergence"], Value::Null);

    // A state edited in place: the record is named and the first anchor holding it diverges.
    db(dir.path())
        .execute(
            "UPDATE records SET state = '{\"round\":9}' WHERE idx = 14",
            [],
        )
        .expect("edit");
    let (code, report) = audit(dir.path());
    assert_eq!(code, Some(1));
    let problems = report["problems"].as_array().expect("problems");
    assert!(problems.iter().all(|p| p["index"] == 14), "{report}");
    assert_eq!(problems[0]["twin_id"], "a4");
    assert_eq!(problems[0]["version"], 2);
    let d = &report["divergence"];
    assert!(d["last_matching_size"].as_u64().expect("n") <= 14, "{d}");
    assert!(d["first_mismatching_size"].as_u64().expect("n") > 14, "{d}");
    assert_eq!(
        d["first_mismatching_size"].as_u64(),
        Some(15),
        "every POST was anchored on its own: {d}"
    );

    // The same edit with every stored hash rewritten to match: no record looks wrong on its
    // own, but the anchored root no longer matches, from that index on.
    let state = twinledger_core::json::parse(br#"{"round":9}"#, &Default::default()).expect("json");
    let hash = twinledger_core::HashScheme::JcsSha256
        .hash(&state)
        .expect("hash");
    db(dir.path())
        .execute(
            "UPDATE records SET state_hash = ?1 WHERE idx = 14",
            [hash.as_slice()],
        )
        .expect("rewrite hash");
    let store =
        twinledger_store::SqliteStore::open(dir.path().join("twinledger.db")).expect("open");
    let leaf = twinledger_store::LogStore::record_at(&store, 14)
        .await
        .expect("read")
        .map(|row| row.decode().expect("decodes").leaf_hash());
    db(dir.path())
        .execute(
            "UPDATE records SET leaf_hash = ?1 WHERE idx = 14",
            [leaf.expect("leaf").0.as_slice()],
        )
        .expect("rewrite leaf");
    let (code, report) = audit(dir.path());
    assert_eq!(code, Some(1), "{report}");
    assert_eq!(
        report["divergence"]["first_mismatching_size"], 15,
        "{report}"
    );
    assert_eq!(report["divergence"]["last_matching_size"], 14, "{report}");
    // The twin's next record still points at the old leaf.
    assert!(
        report["problems"].to_string().contains("does not link"),
        "{report}"
    );

    // A deleted record.
    db(dir.path())
        .execute("DELETE FROM records WHERE idx = 20", [])
        .expect("delete");
    let (code, report) = audit(dir.path());
    assert_eq!(code, Some(1));
    assert!(
        report["problems"]
            .to_string()
            .contains("log indexes 20 to 20 are missing"),
        "{report}"
    );

    // Two records swapped (their states), and a record inserted at the end of the log.
    db(dir.path())
        .execute_batch(
            "UPDATE records SET state = (SELECT state FROM records WHERE idx = 13) WHERE idx = 3; \
             UPDATE records SET state = '{\"round\":0}' WHERE idx = 13;",
        )
        .expect("swap");
    db(dir.path())
        .execute(
            "INSERT INTO records (idx, twin_id, version, kind, state, hash_scheme, state_hash, \
             prev_leaf_hash, recorded_at_ms, salt, leaf_hash, status) SELECT 30, twin_id, 4, kind, \
             state, hash_scheme, state_hash, leaf_hash, recorded_at_ms, salt, leaf_hash, 'pending' \
             FROM records WHERE idx = 29",
            [],
        )
        .expect("insert");
    let (code, report) = audit(dir.path());
    assert_eq!(code, Some(1));
    let problems = report["problems"].as_array().expect("problems");
    let at = |i: u64| problems.iter().any(|p| p["index"] == i);
    assert!(at(3) && at(13), "both swapped records are named: {report}");
    assert!(at(30), "the inserted record is named: {report}");
    assert!(
        report["problems"]
            .to_string()
            .contains("latest version is 3 but its records end at version 4"),
        "{report}"
    );
    drop(app);
}

#[tokio::test(flavor = "multi_thread")]
async fn audit_begins_at_an_index_and_continues_from_a_checkpoint() {
    let dir = data_dir();
    let app = embedded_app(dir.path());
    thirty_anchored(&app).await;
    let checkpoint = dir.path().join("audit-checkpoint.json");

    // From index 17: the tree before it comes from the stored nodes, and the head anchored for
    // size 17 is compared first.
    let (code, report) = audit_with(dir.path(), &["--from", "17"]);
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(report["records"], 13, "{report}");
    assert_eq!(report["began_at"], 17, "{report}");
    assert_eq!(
        report["anchored_heads_checked"], 14,
        "sizes 17 to 30: {report}"
    );
    // The stored leaf hash of record 16 is one of those nodes: rewritten, the first head
    // diverges (the full audit recomputes it from the record instead).
    let stored: Vec<u8> = db(dir.path())
        .query_row("SELECT leaf_hash FROM records WHERE idx = 16", [], |r| {
            r.get(0)
        })
        .expect("leaf");
    db(dir.path())
        .execute(
            "UPDATE records SET leaf_hash = ?1 WHERE idx = 16",
            [[7u8; 32].as_slice()],
        )
        .expect("rewrite leaf");
    let (code, report) = audit_with(dir.path(), &["--from", "17"]);
    assert_eq!(code, Some(1), "{report}");
    assert_eq!(
        report["divergence"]["first_mismatching_size"], 17,
        "{report}"
    );
    db(dir.path())
        .execute(
            "UPDATE records SET leaf_hash = ?1 WHERE idx = 16",
            [stored.as_slice()],
        )
        .expect("restore leaf");

    // An audit in two parts: the first stops at 12 and leaves a checkpoint.
    let (code, report) = audit_with(dir.path(), &["--stop-at", "12", "--checkpoint-every", "5"]);
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(report["stopped_at"], 12, "{report}");
    assert_eq!(report["records"], 12, "{report}");
    assert!(checkpoint.is_file(), "a checkpoint is left");
    // A record past the checkpoint is edited; the second part finds it, counts all thirty
    // records and removes the checkpoint.
    db(dir.path())
        .execute(
            "UPDATE records SET state = '{\"round\":9}' WHERE idx = 20",
            [],
        )
        .expect("edit");
    let (code, report) = audit_with(dir.path(), &["--resume"]);
    assert_eq!(code, Some(1), "{report}");
    assert_eq!(report["records"], 30, "{report}");
    // Every head compared once over the two parts, as one audit does: sizes 1 to 21, where the
    // divergence ends the comparisons.
    assert_eq!(report["anchored_heads_checked"], 21, "{report}");
    assert_eq!(report["stopped_at"], Value::Null, "{report}");
    let problems = report["problems"].as_array().expect("problems");
    assert!(
        !problems.is_empty() && problems.iter().all(|p| p["index"] == 20),
        "{report}"
    );
    assert_eq!(
        report["divergence"]["first_mismatching_size"], 21,
        "{report}"
    );
    assert!(
        !checkpoint.exists(),
        "a finished audit removes its checkpoint"
    );

    // Nothing left to resume, and options that cannot hold: a clear error, exit 2.
    for args in [
        vec!["--resume"],
        vec!["--from", "31"],
        vec!["--from", "10", "--stop-at", "5"],
    ] {
        let mut all = vec!["audit", "--data-dir", dir.path().to_str().expect("path")];
        all.extend(args.iter().copied());
        let out = run(&all);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(
            !String::from_utf8_lossy(&out.stderr).trim().is_empty(),
            "{args:?}"
        );
    }
    drop(app);
}
