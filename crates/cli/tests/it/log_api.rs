//! Log mode: the /v1 API, proof bundles checked by `verify-proof`, and tampering of every kind
//! found by verify.

use serde_json::{Value, json};

use crate::support::*;

#[tokio::test(flavor = "multi_thread")]
async fn the_v1_api_records_lists_pages_and_reports_heads() {
    let dir = data_dir();
    let app = embedded_app(dir.path());
    let (status, rec) = post_state(
        &app,
        "pump-1",
        "?wait=anchored",
        json!({"rpm": 1450, "ok": true}),
    )
    .await;
    assert_eq!(status, 201, "{rec}");
    assert_eq!(
        (rec["version"].as_u64(), rec["index"].as_u64()),
        (Some(1), Some(0))
    );
    assert_eq!(rec["status"], "anchored");
    assert_eq!(rec["hash_scheme"], "jcs-sha256");
    assert_eq!(rec["state"], json!({"rpm": 1450, "ok": true}));
    assert!(
        rec["anchor"]["tx_hash"]
            .as_str()
            .expect("tx")
            .starts_with("0x")
    );
    for v in 2..=5 {
        let (status, rec) = post_state(
            &app,
            "pump-1",
            "?wait=confirmed&scheme=seed-sha256",
            json!({"rpm": v}),
        )
        .await;
        assert_eq!(status, 201, "{rec}");
        assert_eq!(rec["status"], "confirmed");
        assert_eq!(rec["hash_scheme"], "seed-sha256");
    }
    let (status, rec) = post_state(&app, "pump-2", "", json!({"rpm": 1})).await;
    assert_eq!((status, rec["version"].as_u64()), (201, Some(1)));

    let (status, twins) = get(&app, "/v1/twins?limit=1").await;
    assert_eq!(status, 200);
    assert_eq!(twins["twins"][0]["twin_id"], "pump-1");
    assert_eq!(twins["next_after"], "pump-1");
    let (_, twins) = get(&app, "/v1/twins?after=pump-1").await;
    assert_eq!(twins["twins"][0]["twin_id"], "pump-2");
    assert_eq!(twins["next_after"], Value::Null);
    let (status, twins) = get(&app, "/v1/twins?prefix=pump-2").await;
    assert_eq!(status, 200, "{twins}");
    assert_eq!(twins["twins"].as_array().map(Vec::len), Some(1), "{twins}");
    assert_eq!(twins["twins"][0]["twin_id"], "pump-2");
    let (_, twins) = get(&app, "/v1/twins?prefix=valve").await;
    assert_eq!(twins["twins"], json!([]));

    let (_, twin) = get(&app, "/v1/twins/pump-1").await;
    assert_eq!(twin["latest_version"], 5);
    assert_eq!(twin["latest"]["state"], json!({"rpm": 5}));
    let (_, page) = get(&app, "/v1/twins/pump-1/history?limit=2").await;
    assert_eq!(page["records"].as_array().map(Vec::len), Some(2));
    let cursor = page["next_cursor"].as_str().expect("cursor").to_owned();
    assert!(cursor.starts_with("3."), "{cursor}");
    // An edited cursor is refused, not followed.
    let forged = cursor.replacen('3', "1", 1);
    let (status, body) = get(&app, &format!("/v1/twins/pump-1/history?cursor={forged}")).await;
    assert_eq!(status, 400, "{body}");
    let (status, _) = get(&app, &format!("/v1/twins/pump-2/history?cursor={cursor}")).await;
    assert_eq!(status, 400, "a cursor belongs to its twin");
    let (_, page) = get(
        &app,
        &format!("/v1/twins/pump-1/history?cursor={cursor}&limit=10"),
    )
    .await;
    let versions: Vec<u64> = page["records"]
        .as_array()
        .expect("records")
        .iter()
        .map(|r| r["version"].as_u64().expect("v"))
        .collect();
    assert_eq!(versions, [3, 4, 5]);
    assert_eq!(page["next_cursor"], Value::Null);
    let (status, v2) = get(&app, "/v1/twins/pump-1/versions/2").await;
    assert_eq!((status, &v2["state"]), (200, &json!({"rpm": 2})));
    // States are shown exactly as recorded: number spellings and key order kept.
    let r = http()
        .post(app.url("/v1/twins/spelled/states?scheme=seed-sha256"))
        .header("content-type", "application/json")
        .body(r#"{"b": 1.50, "a": 1e2, "big": 123456789012345678901234567890}"#)
        .send()
        .await
        .expect("post");
    assert_eq!(r.status().as_u16(), 201);
    for path in [
        "/v1/twins/spelled/versions/1",
        "/v1/twins/spelled",
        "/v1/twins/spelled/history",
    ] {
        let text = http()
            .get(app.url(path))
            .send()
            .await
            .expect("get")
            .text()
            .await
            .expect("body");
        assert!(
            text.contains(r#""state":{"b":1.50,"a":1e2,"big":123456789012345678901234567890}"#),
            "{path}: {text}"
        );
    }

    let (_, verdict) = get(&app, "/v1/twins/pump-1/verify").await;
    assert_eq!(verdict["integrity"], "Valid", "{verdict}");
    let (_, heads) = get(&app, "/v1/tree-heads").await;
    assert_eq!(heads["log"]["size"], 7);
    assert!(heads["anchors"].as_array().expect("anchors").len() >= 5);

    for (path, status) in [
        ("/v1/twins/nobody", 404),
        ("/v1/twins/pump-1/versions/9", 404),
        ("/v1/twins/pump-1/versions/0", 400),
        ("/v1/twins/pump-1/versions/x", 400),
        ("/v1/twins/pump-1/history?cursor=-1", 400),
        ("/v1/twins/pump-1/history?limit=100000", 400),
        ("/v1/twins?limit=abc", 400),
        ("/v1/twins?bogus=1", 400),
        ("/v1/twins/nobody/history", 404),
    ] {
        let (got, body) = get(&app, path).await;
        assert_eq!(got, status, "{path}: {body}");
        assert!(body["error"].is_string(), "{path}: {body}");
    }
    let (status, body) = post_state(&app, "pump-1", "?wait=soon", json!({})).await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = post_state(&app, "pump-1", "?scheme=md5", json!({})).await;
    assert_eq!(status, 400, "{body}");
    let r = http()
        .post(app.url("/v1/twins/pump-1/states"))
        .header("content-type", "application/json")
        .body(r#"{"n": 123456789012345678901234567890}"#)
        .send()
        .await
        .expect("request");
    assert_eq!(
        r.status().as_u16(),
        422,
        "a jcs-sha256 state needs exact doubles"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_exported_proof_bundle_is_verified_against_the_chain_and_forgeries_fail() {
    let dir = data_dir();
    let app = embedded_app(dir.path());
    for v in 0..7 {
        let (status, _) = post_state(&app, "meter", "?wait=anchored", json!({"kwh": v})).await;
        assert_eq!(status, 201);
    }
    let proof = http()
        .get(app.url("/v1/twins/meter/versions/3/proof"))
        .send()
        .await
        .expect("request")
        .text()
        .await
        .expect("body");
    let file = dir.path().join("proof.json");
    std::fs::write(&file, &proof).expect("write");
    let node: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("node.json")).expect("node.json"))
            .expect("json");
    let rpc = node["url"].as_str().expect("url").to_owned();
    let (_, health) = get(&app, "/health").await;
    let contract = health["chain"]["contract"]
        .as_str()
        .expect("contract")
        .to_owned();
    let f = file.to_str().expect("path");

    let out = run(&[
        "verify-proof",
        f,
        "--rpc",
        &rpc,
        "--contract",
        &contract,
        "--chain-id",
        "31337",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.starts_with("VALID"), "{stdout}");

    // One byte changed anywhere in the record or proof: refused.
    let bytes = proof.as_bytes();
    let mut positions: Vec<usize> = Vec::new();
    for key in [
        "\"kwh\":2",
        "\"salt\":\"",
        "\"path\":[\"",
        "\"root\":\"",
        "\"recorded_at_ms\":",
        "\"version\":",
    ] {
        positions.push(proof.find(key).expect(key) + key.len() - 1 + 1);
    }
    for pos in positions {
        let mut forged = bytes.to_vec();
        forged[pos] = if forged[pos] == b'1' { b'2' } else { b'1' };
        std::fs::write(&file, &forged).expect("write");
        let out = run(&["verify-proof", f, "--rpc", &rpc, "--contract", &contract]);
        assert_eq!(
            out.status.code(),
            Some(1),
            "byte {pos} changed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    std::fs::write(&file, &proof).expect("write");
    // Another transaction than the one that anchored the head.
    let tx_at = proof.find("\"tx_hash\":\"0x").expect("tx_hash") + 13;
    let mut forged = proof.clone().into_bytes();
    forged[tx_at] = if forged[tx_at] == b'a' { b'b' } else { b'a' };
    std::fs::write(&file, &forged).expect("write");
    let out = run(&["verify-proof", f, "--rpc", &rpc, "--contract", &contract]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("did not anchor"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    std::fs::write(&file, &proof).expect("write");
    // The service refuses to hand out a bundle for a record altered in its database.
    db(dir.path())
        .execute(
            "UPDATE records SET state = '{\"kwh\":99}' WHERE twin_id = 'meter' AND version = 2",
            [],
        )
        .expect("tamper");
    let (status, body) = get(&app, "/v1/twins/meter/versions/2/proof").await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"]
            .as_str()
            .expect("error")
            .contains("fails its own checks"),
        "{body}"
    );
    // The wrong chain, the wrong contract, no chain at all, a truncated file.
    for (args, code, expected) in [
        (
            vec!["--rpc", &rpc, "--contract", &contract, "--chain-id", "1"],
            1,
            "not the expected chain",
        ),
        (
            vec![
                "--rpc",
                &rpc,
                "--contract",
                "0x00000000000000000000000000000000000000aa",
            ],
            1,
            "not the trusted contract",
        ),
        (
            vec!["--rpc", "http://127.0.0.1:9", "--contract", &contract],
            2,
            "cannot reach the chain",
        ),
        (vec!["--contract", &contract], 2, "give --rpc"),
        (vec!["--rpc", &rpc], 2, "never taken from the bundle"),
    ] {
        let mut full = vec!["verify-proof", f];
        full.extend(args.iter().copied());
        let out = run(&full);
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {text}");
        assert!(text.contains(expected), "{args:?}: {text}");
    }
    std::fs::write(&file, &proof[..proof.len() / 2]).expect("write");
    let out = run(&["verify-proof", f, "--rpc", &rpc, "--contract", &contract]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("malformed"));
    std::fs::write(&file, &proof).expect("write");
    let out = run(&["verify-proof", f, "--offline"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("NOT checked against any chain"));
}

/// Each kind of tampering, on its own twin of five anchored versions, is reported at the
/// version it touched, at once after a verification that found it Valid (what the service keeps
/// between verifications, the chain's head, hides no edit).
#[tokio::test(flavor = "multi_thread")]
async fn verify_pinpoints_edits_deletions_insertions_swaps_and_rewrites() {
    let dir = data_dir();
    let app = embedded_app(dir.path());
    let twins = ["t-edit", "t-del", "t-ins", "t-swap", "t-rewrite", "t-clean"];
    for twin in twins {
        for v in 1..=5 {
            let (status, _) = post_state(&app, twin, "?wait=anchored", json!({"v": v})).await;
            assert_eq!(status, 201);
        }
    }
    for twin in twins {
        let (_, verdict) = get(&app, &format!("/v1/twins/{twin}/verify")).await;
        assert_eq!(
            verdict["integrity"], "Valid",
            "{twin} before the edits: {verdict}"
        );
    }
    // A new anchor is used at once, not when the kept head ages out: the version acknowledged
    // as anchored verifies Valid, not Pending.
    let (status, _) = post_state(&app, "t-clean", "?wait=anchored", json!({"v": 6})).await;
    assert_eq!(status, 201);
    let (_, clean) = get(&app, "/v1/twins/t-clean/verify").await;
    assert_eq!(
        (clean["integrity"].as_str(), clean["versions"].as_u64()),
        (Some("Valid"), Some(6)),
        "{clean}"
    );
    let db = db(dir.path());
    db.execute(
        "UPDATE records SET state = '{\"v\":33}' WHERE twin_id = 't-edit' AND version = 3",
        [],
    )
    .expect("edit");
    db.execute(
        "DELETE FROM records WHERE twin_id = 't-del' AND version = 2",
        [],
    )
    .expect("delete");
    db.execute(
        "INSERT INTO records (idx, twin_id, version, kind, state, hash_scheme, state_hash, prev_leaf_hash, \
         recorded_at_ms, salt, leaf_hash, status) SELECT 1000, twin_id, 6, kind, state, hash_scheme, state_hash, \
         leaf_hash, recorded_at_ms, salt, leaf_hash, 'pending' FROM records WHERE twin_id = 't-ins' AND version = 5",
        [],
    )
    .expect("insert");
    db.execute_batch(
        "UPDATE records SET version = -4 WHERE twin_id = 't-swap' AND version = 4; \
         UPDATE records SET version = 4 WHERE twin_id = 't-swap' AND version = 2; \
         UPDATE records SET version = 2 WHERE twin_id = 't-swap' AND version = -4;",
    )
    .expect("swap");
    // A rewrite that keeps the stored hashes consistent with the new state.
    let state = twinledger_core::json::parse(br#"{"v":44}"#, &Default::default()).expect("json");
    let hash = twinledger_core::HashScheme::JcsSha256
        .hash(&state)
        .expect("hash");
    db.execute(
        "UPDATE records SET state = '{\"v\":44}', state_hash = ?1 WHERE twin_id = 't-rewrite' AND version = 4",
        [hash.as_slice()],
    )
    .expect("rewrite");
    let row: twinledger_core::Record = {
        let store =
            twinledger_store::SqliteStore::open(dir.path().join("twinledger.db")).expect("open");
        let id = twinledger_core::TwinId::new("t-rewrite").expect("id");
        twinledger_store::TwinStore::record(&store, &id, 4)
            .await
            .expect("read")
            .expect("row")
            .decode()
            .expect("decode")
    };
    db.execute(
        "UPDATE records SET leaf_hash = ?1 WHERE twin_id = 't-rewrite' AND version = 4",
        [row.leaf_hash().0.as_slice()],
    )
    .expect("rewrite leaf");

    let app = &app;
    let expect = |twin: &'static str, versions: &'static [u64], words: &'static str| async move {
        let (_, verdict) = get(app, &format!("/v1/twins/{twin}/verify")).await;
        assert_eq!(verdict["integrity"], "Tampered", "{twin}: {verdict}");
        let problems = verdict["problems"].as_array().expect("problems");
        let named: std::collections::BTreeSet<u64> = problems
            .iter()
            .filter_map(|p| p["version"].as_u64())
            .collect();
        assert_eq!(
            named,
            versions.iter().copied().collect(),
            "{twin}: {verdict}"
        );
        assert!(
            verdict["problems"].to_string().contains(words),
            "{twin}: {verdict}"
        );
    };
    expect("t-edit", &[3], "state does not match its stored hash").await;
    // The deleted leaf is also the sibling version 3's inclusion proof needs.
    expect("t-del", &[2, 3], "versions 2 to 2 are missing").await;
    expect("t-ins", &[5, 6], "latest version is 5").await;
    expect("t-swap", &[2, 4], "not in the tree").await;
    // Version 3 is version 4's sibling in the tree: its proof runs through the rewritten leaf.
    expect("t-rewrite", &[3, 4], "not in the tree").await;
    let (_, clean) = get(app, "/v1/twins/t-clean/verify").await;
    assert_eq!(clean["integrity"], "Valid", "{clean}");
}

/// Several anchors in flight, each of at most `batch_max` records, all landing in order.
#[tokio::test(flavor = "multi_thread")]
async fn anchors_in_flight_and_batch_max_are_honoured() {
    let dir = data_dir();
    let app = std::sync::Arc::new(embedded_app_with(
        dir.path(),
        "[anchor]\nin_flight = 3\nbatch_max = 7\nmin_interval_ms = 20\n",
    ));
    let mut tasks = Vec::new();
    for w in 0..8 {
        let app = app.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..10 {
                let (status, _) = post_state(&app, &format!("w{w}"), "", json!({"i": i})).await;
                assert_eq!(status, 201);
            }
        }));
    }
    for t in tasks {
        t.await.expect("writer");
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let (_, heads) = get(&app, "/v1/tree-heads?limit=1000").await;
        if heads["anchored"]["anchored"] == 80 {
            let anchors = heads["anchors"].as_array().expect("anchors");
            let mut prev = 0;
            for a in anchors {
                let size = a["size"].as_u64().expect("size");
                assert_eq!(
                    a["prev_size"].as_u64(),
                    Some(prev),
                    "anchors chain: {heads}"
                );
                assert!(size - prev <= 7, "batch_max exceeded: {heads}");
                prev = size;
            }
            assert_eq!(prev, 80);
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not all anchored: {heads}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    for w in 0..8 {
        let (_, verdict) = get(&app, &format!("/v1/twins/w{w}/verify")).await;
        assert_eq!(verdict["integrity"], "Valid", "{verdict}");
    }
}

/// Under a steady load anchors are spaced by `anchor.busy_interval_ms`; a caller that waits for
/// each anchor in turn is anchored at once, record by record.
#[tokio::test(flavor = "multi_thread")]
async fn anchors_are_spaced_while_records_keep_coming() {
    let dir = data_dir();
    let app = std::sync::Arc::new(embedded_app_with(
        dir.path(),
        "[anchor]\nbusy_interval_ms = 5000\n",
    ));
    // One caller at a time: the ledger is idle between records, so no spacing applies (with
    // it, these four would take at least 15 s).
    let started = std::time::Instant::now();
    for i in 0..4 {
        let (status, rec) = post_state(&app, "solo", "?wait=anchored", json!({"i": i})).await;
        assert_eq!((status, &rec["status"]), (201, &json!("anchored")), "{rec}");
        assert_eq!(rec["anchor"]["tree_size"], i + 1, "{rec}");
    }
    assert!(
        started.elapsed() < std::time::Duration::from_secs(12),
        "sequential anchored writes were held back: {:?}",
        started.elapsed()
    );
    // Eight writers at once: after the first anchor, records keep coming while it is in flight,
    // so the rest wait for the busy interval and gather into few anchors.
    let mut tasks = Vec::new();
    for w in 0..8 {
        let app = app.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..25 {
                let (status, _) = post_state(&app, &format!("b{w}"), "", json!({"i": i})).await;
                assert_eq!(status, 201);
            }
        }));
    }
    let burst = std::time::Instant::now();
    for t in tasks {
        t.await.expect("writer");
    }
    let burst = burst.elapsed();
    let heads = poll_until(&app, "/v1/tree-heads?limit=1000", 60, |h| {
        h["anchored"]["anchored"] == 204
    })
    .await;
    let sizes: Vec<u64> = heads["anchors"]
        .as_array()
        .expect("anchors")
        .iter()
        .filter_map(|a| a["size"].as_u64())
        .collect();
    assert_eq!(&sizes[..4], &[1, 2, 3, 4], "{heads}");
    // Back to back (no spacing), anchors follow each other every few tens of milliseconds
    // while the writers go on: over a burst of seconds, a hundred or more. Spaced, a few
    // during the burst and one per straggler after it.
    assert!(
        sizes.len() - 4 <= 20,
        "{} anchors for 200 records written in {burst:?}: {sizes:?}",
        sizes.len() - 4
    );
}

/// A retried POST with the same Idempotency-Key returns the first result and writes once, even
/// when the retries race each other.
#[tokio::test(flavor = "multi_thread")]
async fn idempotency_keys_make_retries_safe() {
    let dir = data_dir();
    let app = std::sync::Arc::new(embedded_app(dir.path()));
    let post = |key: &'static str, body: Value, query: &'static str| {
        let app = app.clone();
        async move {
            let r = http()
                .post(app.url(&format!("/v1/twins/door/states{query}")))
                .header("idempotency-key", key)
                .json(&body)
                .send()
                .await
                .expect("post");
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.expect("json"))
        }
    };
    let (s1, first) = post("op-1", json!({"open": true}), "?wait=anchored").await;
    let (s2, again) = post("op-1", json!({"open": true}), "?wait=anchored").await;
    assert_eq!((s1, s2), (201, 201));
    assert_eq!(first, again, "a retry returns the first result");
    let (status, body) = post("op-1", json!({"open": false}), "").await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["error"]
            .as_str()
            .expect("error")
            .contains("different request")
    );
    // Eight racing retries of one new request: one record.
    let racing: Vec<_> = (0..8)
        .map(|_| tokio::spawn(post("op-2", json!({"open": false}), "")))
        .collect();
    let mut indexes = std::collections::BTreeSet::new();
    for r in racing {
        let (status, body) = r.await.expect("task");
        assert_eq!(status, 201, "{body}");
        indexes.insert(body["index"].as_u64().expect("index"));
    }
    assert_eq!(indexes.len(), 1, "all retries name one record: {indexes:?}");
    assert_eq!(record_count(dir.path()), 2);
    // The seed endpoint honours the header too; a malformed key is refused.
    for _ in 0..2 {
        let r = http()
            .post(app.url("/update_twin_on_blockchain/"))
            .header("idempotency-key", "seed-op")
            .json(&json!({"twin_id": "door", "data": {"open": true}}))
            .send()
            .await
            .expect("post");
        assert_eq!(r.status().as_u16(), 200);
    }
    assert_eq!(record_count(dir.path()), 3);
    let r = http()
        .post(app.url("/v1/twins/door/states"))
        .header("idempotency-key", "has space")
        .json(&json!({}))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status().as_u16(), 400);
    assert_eq!(record_count(dir.path()), 3);
}

/// Idempotency keys are kept for `idempotency.retention_secs`: a retry within it gets the first
/// result, a retry after the key was pruned is a new request.
#[tokio::test(flavor = "multi_thread")]
async fn idempotency_keys_are_pruned_after_their_retention() {
    let dir = data_dir();
    // The service reads twinledger.toml from its working directory, the data directory here.
    let app = embedded_app_with(dir.path(), "[idempotency]\nretention_secs = 3\n");
    let post = || async {
        let r = http()
            .post(app.url("/v1/twins/gate/states"))
            .header("idempotency-key", "op-1")
            .json(&json!({"open": true}))
            .send()
            .await
            .expect("post");
        let status = r.status().as_u16();
        (status, r.json::<Value>().await.expect("json"))
    };
    let keys = || -> i64 {
        db(dir.path())
            .query_row("SELECT COUNT(*) FROM idempotency_keys", [], |r| r.get(0))
            .expect("count")
    };
    let started = std::time::Instant::now();
    let (s1, first) = post().await;
    let (s2, again) = post().await;
    assert_eq!((s1, s2), (201, 201), "{first} {again}");
    // The first record (its status may have moved on to anchored meanwhile).
    for field in ["index", "version", "leaf_hash", "recorded_at_ms"] {
        assert_eq!(
            first[field], again[field],
            "a retry within retention returns the first result: {first} {again}"
        );
    }
    assert_eq!(keys(), 1);

    let deadline = started + std::time::Duration::from_secs(30);
    while keys() > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the key was never pruned"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        started.elapsed() >= std::time::Duration::from_secs(3),
        "pruned before its retention ended: {:?}",
        started.elapsed()
    );
    let (status, later) = post().await;
    assert_eq!(status, 201, "{later}");
    assert_eq!(
        later["version"], 2,
        "a retry after retention is a new request: {later}"
    );
    assert_eq!(record_count(dir.path()), 2);
}
