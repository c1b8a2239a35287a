//! The embedded chain: what its node loses in a crash is anchored again and recorded, a node
//! that dies alone is started again, its history is kept to a window, and a chain the service
//! did not start that lost anchored blocks is refused.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use twinledger_chain::NodeKind;
use twinledger_testkit::{App, free_port};

use crate::support::*;

/// The embedded chain lost everything (its state file is gone): in log mode the service
/// deploys the contract again, anchors the whole log again and records that it did.
#[tokio::test(flavor = "multi_thread")]
async fn a_lost_embedded_chain_is_anchored_again_and_recorded() {
    let dir = data_dir();
    let mut app = embedded_app(dir.path());
    for i in 0..3 {
        let (status, _) = post_update(&app, "x", json!({"a": i})).await;
        assert_eq!(status, 200);
    }
    app.terminate();
    std::fs::remove_file(dir.path().join("anvil-state.json.gz")).expect("delete chain state");
    let app = embedded_app(dir.path());
    assert_eq!(integrity(&app, "x").await, "Valid");
    let (_, health) = get(&app, "/health").await;
    assert_eq!(health["anchoring"]["chain_state_losses"], 1, "{health}");
    assert_eq!(health["anchoring"]["lost_heads"], 3, "{health}");
    let (status, history) = get(&app, "/v1/twins/twinledger:chain/history").await;
    assert_eq!(status, 200, "{history}");
    let records = history["records"].as_array().expect("records");
    let lost = &records[0]["state"];
    assert_eq!(records[0]["kind"], "event");
    assert_eq!(lost["type"], "chain_state_lost", "{lost}");
    assert_eq!(lost["lost_heads"], 3);
    let sizes: Vec<_> = lost["lost"]
        .as_array()
        .expect("lost")
        .iter()
        .map(|h| h["size"].as_u64().expect("size"))
        .collect();
    assert_eq!(sizes, [1, 2, 3]);
    let reanchored = poll_until(&app, "/v1/twins/twinledger:chain/history", 30, |h| {
        h["records"].as_array().is_some_and(|r| r.len() == 2)
    })
    .await;
    let again = &reanchored["records"][1]["state"];
    assert_eq!(again["type"], "chain_reanchored", "{again}");
    assert_eq!(again["lost_event_index"], records[0]["index"]);
    assert!(
        again["head"]["size"].as_u64().expect("size") >= 3,
        "{again}"
    );
    // The ledger's own twin takes no writes from clients.
    let (status, body) = post_state(&app, "twinledger:chain", "", json!({"type": "forged"})).await;
    assert_eq!(status, 422, "{body}");
}

/// The state file of an earlier version (plain JSON in `anvil-state.json`) is taken over with
/// its anchors; a state file Anvil cannot load is moved aside and the log anchored again.
#[tokio::test(flavor = "multi_thread")]
async fn an_unzipped_state_file_is_adopted_and_an_unloadable_one_moved_aside() {
    let dir = data_dir();
    let (plain, gzipped) = (
        dir.path().join("anvil-state.json"),
        dir.path().join("anvil-state.json.gz"),
    );
    let mut app = embedded_app(dir.path());
    for i in 0..3 {
        let (status, _) = post_state(&app, "x", "?wait=anchored", json!({"a": i})).await;
        assert_eq!(status, 201);
    }
    app.terminate();
    let json = twinledger_chain::read_state_file(&gzipped).expect("state");
    assert!(json.starts_with(b"{"), "gzipped: the JSON comes out");
    assert!(std::fs::metadata(&gzipped).expect("size").len() * 2 < json.len() as u64);
    std::fs::write(&plain, &json).expect("write");
    std::fs::remove_file(&gzipped).expect("remove");

    let mut app = embedded_app(dir.path());
    assert_eq!(integrity(&app, "x").await, "Valid");
    let (_, health) = get(&app, "/health").await;
    assert_eq!(health["anchoring"]["chain_state_losses"], 0, "{health}");
    assert!(gzipped.is_file() && !plain.exists());
    app.terminate();

    // Gzip's magic, then nothing that unzips.
    std::fs::write(&gzipped, b"\x1f\x8b\x08\x00garbage").expect("write");
    let app = embedded_app(dir.path());
    assert_eq!(integrity(&app, "x").await, "Valid");
    let (_, health) = get(&app, "/health").await;
    assert_eq!(health["anchoring"]["chain_state_losses"], 1, "{health}");
    let aside: Vec<_> = std::fs::read_dir(dir.path())
        .expect("dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("anvil-state.unloadable-") && n.ends_with(".json.gz"))
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}");
    assert!(!dir.path().join("anvil-state.json.gz.load").exists());
}

/// Legacy mode's records are the node's own transactions: a lost embedded chain is refused.
#[tokio::test(flavor = "multi_thread")]
async fn a_lost_embedded_chain_in_legacy_mode_is_refused_at_start() {
    let dir = data_dir();
    let mut app = embedded_app_in(dir.path(), "legacy");
    let (status, _) = post_update(&app, "x", json!({"a": 1})).await;
    assert_eq!(status, 200);
    app.terminate();
    std::fs::remove_file(dir.path().join("anvil-state.json.gz")).expect("delete chain state");
    let out = run(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        dir.path().to_str().expect("path"),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("lost its state"), "{stderr}");
}

/// A chain the service did not start that lost anchored blocks is an incident: refused.
#[tokio::test(flavor = "multi_thread")]
async fn an_external_chain_that_lost_anchored_blocks_is_refused_at_start() {
    let dir = data_dir();
    let port = free_port();
    let node = start_node(NodeKind::Anvil, port, None).await;
    let rpc = node.url().to_owned();
    deploy_in(dir.path(), &rpc, "log");
    let mut app = external_app(dir.path(), &["--rpc", &rpc]);
    let (status, _) = post_state(&app, "x", "?wait=anchored", json!({"a": 1})).await;
    assert_eq!(status, 201);
    app.terminate();
    node.kill().await.expect("kill node");
    // The same URL, a chain that starts over.
    let node = start_node(NodeKind::Anvil, port, None).await;
    let out = run(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--rpc",
        &rpc,
        "--data-dir",
        dir.path().to_str().expect("path"),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("lost its state"), "{stderr}");
    node.stop(Duration::from_secs(10)).await.expect("stop");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hard_kill_of_service_and_embedded_chain_keeps_the_last_snapshot() {
    let dir = data_dir();
    // The service reads twinledger.toml from its working directory, the data directory here.
    let mut app = embedded_app_with(dir.path(), "[chain]\nsnapshot_interval_ms = 1000\n");
    let (status, _) = post_update(&app, "valve", json!({"open": true})).await;
    assert_eq!(status, 200);
    // Wait for a periodic snapshot (1 s here) to include the anchor.
    let node: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("node.json")).expect("node.json"))
            .expect("json");
    let anvil_pid = node["pid"].as_u64().expect("pid") as i32;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    app.kill();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(anvil_pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill anvil");
    let app = App::spawn(&bin(), dir.path(), &[]);
    assert_eq!(integrity(&app, "valve").await, "Valid");
}

/// The embedded node's URL and pid, as `serve` noted them.
fn embedded_node(dir: &std::path::Path) -> (String, i32) {
    let node: Value =
        serde_json::from_slice(&std::fs::read(dir.join("node.json")).expect("node.json"))
            .expect("json");
    let url = node["url"].as_str().expect("url").to_owned();
    (url, node["pid"].as_u64().expect("pid") as i32)
}

/// A crash after an anchor is mined and before the database notes it (the process aborts there,
/// its Anvil lives on): the next start finds the anchor on chain and notes it, and never sends
/// a second anchor for the same head.
#[tokio::test(flavor = "multi_thread")]
async fn an_anchor_mined_but_not_noted_is_found_again_and_not_sent_twice() {
    let dir = data_dir();
    let app = embedded_app_with(dir.path(), "[anchor]\ncrash_before_noting_mined = true\n");
    let (url, _) = embedded_node(dir.path());
    let (status, body) = post_state(&app, "valve", "", json!({"open": true})).await;
    assert_eq!(status, 201, "{body}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while http().get(app.url("/health")).send().await.is_ok() {
        assert!(
            Instant::now() < deadline,
            "the fault did not stop the service"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(app.output().contains("fault injection"), "{}", app.output());
    let blocks = node_rpc(&url, "eth_blockNumber", json!([])).await;
    drop(app);
    std::fs::write(dir.path().join("twinledger.toml"), "").expect("config");
    let app = embedded_app(dir.path());
    let record = poll_until(&app, "/v1/twins/valve/versions/1", 30, |r| {
        r["status"] != "pending"
    })
    .await;
    let (url, _) = embedded_node(dir.path());
    let (_, heads) = get(&app, "/v1/tree-heads?limit=10").await;
    let anchors = heads["anchors"].as_array().expect("anchors");
    assert_eq!(anchors.len(), 1, "{heads}");
    assert_eq!(anchors[0]["size"], 1);
    assert_eq!(anchors[0]["tx_hash"], record["anchor"]["tx_hash"]);
    assert_eq!(
        node_rpc(&url, "eth_blockNumber", json!([])).await,
        blocks,
        "no second anchor was sent"
    );
    assert_eq!(integrity(&app, "valve").await, "Valid");
    let (_, health) = get(&app, "/health").await;
    assert_eq!(health["anchoring"]["chain_state_losses"], 0, "{health}");
}

/// The embedded Anvil alone dies under load: writes go on being accepted, the service starts
/// the node again on the same URL from its snapshot, anchors again what it lost, and nothing
/// acknowledged is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_embedded_anvil_killed_under_load_is_restarted_and_loses_nothing() {
    use std::collections::BTreeMap;
    use std::sync::{Arc, Mutex};

    let dir = data_dir();
    let app = embedded_app(dir.path());
    let (url, _) = embedded_node(dir.path());
    let acked: Arc<Mutex<BTreeMap<(String, u64), Value>>> = Arc::default();
    let refused: Arc<Mutex<Vec<String>>> = Arc::default();
    let mut writers = Vec::new();
    for w in 0..4 {
        let (acked, refused, base) = (acked.clone(), refused.clone(), app.base_url.clone());
        writers.push(tokio::spawn(async move {
            let client = http();
            for i in 0..150 {
                tokio::time::sleep(Duration::from_millis(20)).await;
                let twin = format!("pump-{}", (w + i) % 6);
                let state = json!({"writer": w, "i": i});
                let r = client
                    .post(format!("{base}/v1/twins/{twin}/states"))
                    .json(&state)
                    .send()
                    .await
                    .expect("the service answers");
                let status = r.status().as_u16();
                let body: Value = r.json().await.expect("json");
                if status != 201 {
                    refused
                        .lock()
                        .expect("lock")
                        .push(format!("{status} {body}"));
                    continue;
                }
                let version = body["version"].as_u64().expect("version");
                acked.lock().expect("lock").insert((twin, version), state);
            }
        }));
    }
    for at in [800, 1800] {
        tokio::time::sleep(Duration::from_millis(at / 2)).await;
        let (_, pid) = embedded_node(dir.path());
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        )
        .expect("kill anvil");
        // The watcher notices within a tenth of a second and starts it again.
        let deadline = Instant::now() + Duration::from_secs(30);
        while embedded_node(dir.path()).1 == pid {
            assert!(Instant::now() < deadline, "the node was not started again");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(embedded_node(dir.path()).0, url, "same URL");
    }
    for w in writers {
        w.await.expect("writer");
    }
    let refused = refused.lock().expect("lock").clone();
    assert!(
        refused.is_empty(),
        "writes refused while the node was down: {refused:?}"
    );
    let acked = acked.lock().expect("lock").clone();
    assert_eq!(acked.len(), 600);
    let total = record_count(dir.path()) as u64;
    poll_until(&app, "/health", 60, |h| {
        h["anchoring"]["anchored_size"] == total
    })
    .await;
    assert_stored(dir.path(), &acked);
    for t in 0..6 {
        let (_, verdict) = get(&app, &format!("/v1/twins/pump-{t}/verify")).await;
        assert_eq!(verdict["integrity"], "Valid", "{verdict}");
    }
    let out = run(&["audit", "--data-dir", dir.path().to_str().expect("path")]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let (_, health) = get(&app, "/health").await;
    println!(
        "600 acknowledged, {total} stored, chain state losses {}, lost heads {}",
        health["anchoring"]["chain_state_losses"], health["anchoring"]["lost_heads"]
    );
}

/// The embedded Anvil's history is kept to a window (here 8 to 16 blocks), so that its
/// snapshots stay small: nothing anchored is lost, audit still compares every anchored head,
/// and an old bundle whose block the node no longer holds is still proven by the contract's
/// own record of the anchor.
#[tokio::test(flavor = "multi_thread")]
async fn the_embedded_chain_keeps_a_window_of_history_and_old_bundles_still_verify() {
    let dir = data_dir();
    let app = embedded_app_with(dir.path(), "[chain]\nhistory_blocks = 8\n");
    let (_, first_pid) = embedded_node(dir.path());
    for i in 0..40 {
        let (status, body) = post_state(
            &app,
            &format!("m{}", i % 4),
            "?wait=anchored",
            json!({"i": i}),
        )
        .await;
        assert_eq!(status, 201, "{body}");
    }
    // Compactions follow snapshots, at most one a second; each starts the node again.
    let deadline = Instant::now() + Duration::from_secs(20);
    while embedded_node(dir.path()).1 == first_pid {
        assert!(Instant::now() < deadline, "no compaction: {}", app.output());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Compaction follows the chain's growth: once the chain is still, the last one is over.
    let mut pid = embedded_node(dir.path()).1;
    loop {
        tokio::time::sleep(Duration::from_millis(2500)).await;
        let now = embedded_node(dir.path()).1;
        if now == pid {
            break;
        }
        pid = now;
    }
    let (_, health) = get(&app, "/health").await;
    assert_eq!(health["anchoring"]["chain_state_losses"], 0, "{health}");
    assert_eq!(health["anchoring"]["anchored_size"], 40, "{health}");
    let (_, heads) = get(&app, "/v1/tree-heads?limit=1000").await;
    let anchors = heads["anchors"].as_array().expect("anchors");
    let mut prev = 0;
    for a in anchors {
        assert_eq!(a["prev_size"].as_u64(), Some(prev), "{heads}");
        prev = a["size"].as_u64().expect("size");
    }
    for t in 0..4 {
        assert_eq!(integrity(&app, &format!("m{t}")).await, "Valid");
    }
    let d = dir.path().to_str().expect("path");
    let out = run(&["audit", "--data-dir", d]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains(&format!("{} anchored heads compared", anchors.len())),
        "every anchored head is compared, not only those the node still holds: {stdout}"
    );
    let (url, _) = embedded_node(dir.path());
    let contract = health["chain"]["contract"].as_str().expect("contract");
    let verify = |file: &std::path::Path| {
        run(&[
            "verify-proof",
            "--rpc",
            &url,
            "--contract",
            contract,
            file.to_str().expect("path"),
        ])
    };
    // Version 1 of m0 was anchored in block 2, long compacted away.
    let (old, bundle) = anchored_bundle(&app, "m0", 1).await;
    let old_file = dir.path().join("old.json");
    std::fs::write(&old_file, &old).expect("write");
    let out = verify(&old_file);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("was not checked"), "{stdout}");
    // The contract's record still refutes a bundle that lies about its anchor.
    let mut lie: Value = serde_json::from_slice(&old).expect("json");
    lie["anchor"]["block_number"] = json!(bundle.anchor.block_number + 1);
    std::fs::write(&old_file, lie.to_string()).expect("write");
    let out = verify(&old_file);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let (new, _) = anchored_bundle(&app, "m3", 10).await;
    let new_file = dir.path().join("new.json");
    std::fs::write(&new_file, &new).expect("write");
    let out = verify(&new_file);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(!stdout.contains("was not checked"), "{stdout}");
    // What the node snapshots stays within the window.
    let state =
        twinledger_chain::read_state_file(&dir.path().join("anvil-state.json.gz")).expect("state");
    let state: Value = serde_json::from_slice(&state).expect("json");
    let blocks = state["blocks"].as_array().expect("blocks").len();
    assert!(blocks <= 17, "{blocks} blocks in the snapshot");
}
