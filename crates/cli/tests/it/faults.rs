//! Faults: the chain node going away, the service restarting.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use twinledger_chain::NodeKind;
use twinledger_testkit::free_port;

use crate::support::*;

#[tokio::test(flavor = "multi_thread")]
async fn a_chain_outage_answers_503_loses_nothing_and_shows_nothing_valid_in_log_mode() {
    chain_outage("log").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_chain_outage_answers_503_loses_nothing_and_shows_nothing_valid_in_legacy_mode() {
    chain_outage("legacy").await;
}

async fn chain_outage(mode: &str) {
    let dir = data_dir();
    let state = dir.path().join("external-anvil.json");
    let port = free_port();
    let node = start_node(NodeKind::Anvil, port, Some(state.clone())).await;
    let rpc = node.url().to_owned();
    deploy_in(dir.path(), &rpc, mode);
    let app = external_app(dir.path(), &["--rpc", &rpc, "--mode", mode]);
    let (status, _) = post_update(&app, "boiler", json!({"t": 1})).await;
    assert_eq!(status, 200);

    // Stop the node gracefully (it saves its state), as an operator restarting it would.
    node.stop(Duration::from_secs(30)).await.expect("stop node");

    let (status, body) = post_update(&app, "boiler", json!({"t": 2})).await;
    assert_eq!(status, 503, "{body}");
    let msg = body["error"].as_str().expect("error");
    assert!(
        msg.contains("pending") && msg.contains("version 2"),
        "{msg}"
    );
    let (status, body) = post_update(&app, "kiln", json!({"t": 9})).await;
    assert_eq!(status, 503, "{body}");
    // Many more through /v1 from concurrent writers: each accepted (201) as pending.
    let during = if mode == "log" { 400 } else { 100 };
    let app = std::sync::Arc::new(app);
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let app = app.clone();
            tokio::spawn(async move {
                for i in (w..during).step_by(8) {
                    let r = http()
                        .post(app.url(&format!("/v1/twins/line-{}/states", i % 10)))
                        .json(&json!({"i": i}))
                        .send()
                        .await
                        .expect("post");
                    assert_eq!(r.status().as_u16(), 201, "accepted while the chain is down");
                }
            })
        })
        .collect();
    for w in writers {
        w.await.expect("writer");
    }
    let during = during as i64;

    // Stored, pending, never Valid.
    assert_eq!(record_count(dir.path()), 3 + during);
    let (status, body) = get(&app, "/get_twin_from_blockchain/boiler").await;
    assert_ne!(body["integrity"], "Valid", "{status} {body}");
    let (status, body) = get(&app, "/get_twin_from_blockchain/kiln").await;
    assert_eq!(
        (status, body["integrity"].as_str()),
        (200, Some("Pending")),
        "{body}"
    );
    let (status, health) = get(&app, "/health").await;
    assert_eq!(status, 503, "{health}");
    assert_eq!(health["status"], "degraded");
    assert_eq!(health["database"]["pending"], 2 + during);
    assert_eq!(health["chain"]["ok"], false);

    // The node comes back: the pending records are anchored without anyone asking.
    let node = start_node(NodeKind::Anvil, port, Some(state)).await;
    let back = Instant::now();
    let deadline = back + Duration::from_secs(120);
    loop {
        let (_, health) = get(&app, "/health").await;
        if health["database"]["pending"] == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "backlog not drained: {health}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!(
        "{mode} mode outage: {} records accepted while the chain was down; backlog drained \
         {:.2} s after the node came back",
        2 + during,
        back.elapsed().as_secs_f64()
    );
    assert_eq!(integrity(&app, "boiler").await, "Valid");
    assert_eq!(integrity(&app, "kiln").await, "Valid");
    if mode == "legacy" {
        let anchored: i64 = db(dir.path())
            .query_row(
                "SELECT COUNT(*) FROM records WHERE status = 'anchored'",
                [],
                |r| r.get(0),
            )
            .expect("count");
        assert_eq!(anchored, 3 + during);
    } else {
        let (_, health) = get(&app, "/health").await;
        assert_eq!(health["anchoring"]["anchored_size"], 3 + during, "{health}");
    }
    drop(app);
    node.stop(Duration::from_secs(30)).await.expect("stop");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restarted_service_finds_its_data_and_contract_again() {
    for mode in ["log", "legacy"] {
        restart_in(mode).await;
    }
}

async fn restart_in(mode: &str) {
    let dir = data_dir();
    let mut app = embedded_app_in(dir.path(), mode);
    let (status, _) = post_update(&app, "press", json!({"bar": 3.5})).await;
    assert_eq!(status, 200);
    let (_, health) = get(&app, "/health").await;
    let contract = health["chain"]["contract"].clone();
    app.terminate();
    assert!(
        dir.path().join("anvil-state.json.gz").is_file(),
        "chain state persisted"
    );
    assert!(
        !dir.path().join("node.json").exists(),
        "node file removed on clean exit"
    );

    let app = embedded_app(dir.path());
    let (_, health) = get(&app, "/health").await;
    assert_eq!(
        health["chain"]["contract"], contract,
        "same contract, not a new one"
    );
    assert_eq!(integrity(&app, "press").await, "Valid");
    let (status, _) = post_update(&app, "press", json!({"bar": 3.6})).await;
    assert_eq!(status, 200);
    assert_eq!(integrity(&app, "press").await, "Valid");
    let version: i64 = db(dir.path())
        .query_row(
            "SELECT latest_version FROM twins WHERE twin_id = 'press'",
            [],
            |r| r.get(0),
        )
        .expect("twin");
    assert_eq!(version, 2);
}

/// SIGKILL at random moments under concurrent writers, many times: every acknowledged record is
/// there afterwards, versions stay dense, anchors chain without repeats, and audit is clean.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_under_concurrent_writers_loses_no_acknowledged_record() {
    use std::collections::BTreeMap;
    use std::sync::{Arc, Mutex};

    let dir = data_dir();
    let node = start_node(NodeKind::Anvil, 0, None).await;
    let rpc = node.url().to_owned();
    deploy_in(dir.path(), &rpc, "log");
    // (twin, version) -> state acknowledged with 201
    let acked: Arc<Mutex<BTreeMap<(String, u64), Value>>> = Arc::default();
    let mut seed = 0x2545_f491_u64;
    const CYCLES: usize = 12;
    for cycle in 0..CYCLES {
        let mut app = external_app(dir.path(), &["--rpc", &rpc]);
        let base = app.base_url.clone();
        let mut writers = Vec::new();
        for w in 0..8 {
            let (acked, base) = (acked.clone(), base.clone());
            writers.push(tokio::spawn(async move {
                let client = http();
                // Paced, so that the kill lands while writes are in flight.
                for i in 0..60 {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    let twin = if i % 2 == 0 {
                        format!("own-{w}")
                    } else {
                        "shared".to_owned()
                    };
                    let state = json!({"cycle": cycle, "writer": w, "i": i});
                    let Ok(r) = client
                        .post(format!("{base}/v1/twins/{twin}/states"))
                        .json(&state)
                        .send()
                        .await
                    else {
                        return;
                    };
                    if r.status().as_u16() != 201 {
                        return;
                    }
                    let Ok(body) = r.json::<Value>().await else {
                        return;
                    };
                    let version = body["version"].as_u64().expect("version");
                    acked.lock().expect("lock").insert((twin, version), state);
                }
            }));
        }
        // The kill lands at a random moment after this cycle's first acknowledgement: on a
        // loaded machine the first answers can take longer than the whole random window.
        let before = acked.lock().expect("lock").len();
        let deadline = Instant::now() + Duration::from_secs(30);
        while acked.lock().expect("lock").len() == before {
            assert!(
                Instant::now() < deadline,
                "cycle {cycle}: nothing acknowledged"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        tokio::time::sleep(Duration::from_millis(150 + seed % 600)).await;
        app.kill();
        for w in writers {
            let _ = w.await;
        }
    }
    let app = external_app(dir.path(), &["--rpc", &rpc]);
    let acked = acked.lock().expect("lock").clone();
    assert!(
        acked.len() > 50,
        "the test acknowledged too little to mean anything: {}",
        acked.len()
    );
    let total = record_count(dir.path()) as u64;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, health) = get(&app, "/health").await;
        if health["anchoring"]["anchored_size"] == total {
            break;
        }
        assert!(Instant::now() < deadline, "not all anchored: {health}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_stored(dir.path(), &acked);
    let (_, verdict) = get(&app, "/v1/twins/shared/verify").await;
    assert_eq!(verdict["integrity"], "Valid", "{verdict}");
    let (_, heads) = get(&app, "/v1/tree-heads?limit=1000").await;
    let mut prev = 0;
    for a in heads["anchors"].as_array().expect("anchors") {
        assert_eq!(
            a["prev_size"].as_u64(),
            Some(prev),
            "anchors chain without repeats at size {prev}"
        );
        prev = a["size"].as_u64().expect("size");
    }
    let out = run(&[
        "audit",
        "--rpc",
        &rpc,
        "--data-dir",
        dir.path().to_str().expect("path"),
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    println!(
        "{CYCLES} kill cycles, {} acknowledged records, {total} stored",
        acked.len()
    );
}

/// A service started while its chain node is down accepts writes as pending, says so in
/// /health, and anchors them once the node is back.
#[tokio::test(flavor = "multi_thread")]
async fn a_service_started_while_its_chain_is_down_anchors_later() {
    let dir = data_dir();
    let state = dir.path().join("external-anvil.json");
    let port = free_port();
    let node = start_node(NodeKind::Anvil, port, Some(state.clone())).await;
    let rpc = node.url().to_owned();
    deploy_in(dir.path(), &rpc, "log");
    let mut app = external_app(dir.path(), &["--rpc", &rpc]);
    let (status, _) = post_update(&app, "pump", json!({"rpm": 1})).await;
    assert_eq!(status, 200);
    app.terminate();
    node.stop(Duration::from_secs(30)).await.expect("stop node");

    let app = external_app(dir.path(), &["--rpc", &rpc]);
    let r = http()
        .post(app.url("/v1/twins/pump/states"))
        .json(&json!({"rpm": 2}))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status().as_u16(), 201, "accepted while the chain is down");
    let rec: Value = r.json().await.expect("json");
    assert_eq!(rec["status"], "pending");
    let (status, body) = post_update(&app, "pump", json!({"rpm": 3})).await;
    assert_eq!(status, 503, "the seed endpoint waits for an anchor: {body}");
    let (status, health) = get(&app, "/health").await;
    assert_eq!(status, 503, "{health}");
    assert_eq!(health["chain"]["ok"], false);

    let node = start_node(NodeKind::Anvil, port, Some(state)).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, health) = get(&app, "/health").await;
        if health["status"] == "ok" && health["database"]["pending"] == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "backlog not drained: {health}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (_, verdict) = get(&app, "/v1/twins/pump/verify").await;
    assert_eq!(verdict["integrity"], "Valid", "{verdict}");
    assert_eq!(verdict["versions"], 3);
    drop(app);
    node.stop(Duration::from_secs(30)).await.expect("stop");
}
