//! Anchoring through RPC providers as they really behave: slow, rate-limited, dropping
//! connections, serving stale blocks, going down; with a second provider as fallback.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::json;
use twinledger_chain::NodeKind;
use twinledger_testkit::{Faults, FlakyRpc};

use crate::support::*;

/// Four writers posting to twins `w0`..`w3` until stopped.
struct Writers {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<u64>>,
}

impl Writers {
    fn start(app: &twinledger_testkit::App) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = (0..4)
            .map(|w| {
                let (stop, base) = (stop.clone(), app.base_url.clone());
                tokio::spawn(async move {
                    let client = http();
                    let mut n = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        let r = client
                            .post(format!("{base}/v1/twins/w{w}/states"))
                            .json(&json!({"n": n}))
                            .send()
                            .await
                            .expect("answered");
                        assert_eq!(r.status().as_u16(), 201);
                        n += 1;
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    n
                })
            })
            .collect();
        Self { stop, tasks }
    }

    /// Stops them; the records they wrote.
    async fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        let mut written = 0;
        for t in self.tasks {
            written += t.await.expect("writer");
        }
        written
    }
}

/// Through a flaky provider (delays, 429, 503, connections dropped before and after the node saw
/// the request, stale block numbers, receipts and nonces), alone and then with a second one (slow
/// and stale now and then) as fallback, on a chain mining every second: writes and reads go on
/// while the first provider is down, every record is anchored, and on the chain itself every
/// transaction of the service's account succeeded (a second anchor for a head, or one built on a
/// stale view, would revert), each anchor one nonce.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn anchoring_rides_out_a_flaky_provider_and_its_outage_through_a_fallback() {
    let dir = data_dir();
    let node = start_node_args(NodeKind::Anvil, &["--block-time", "1"]).await;
    let rpc = node.url().to_owned();
    deploy_in(dir.path(), &rpc, "log");
    let flaky = FlakyRpc::start(&rpc, 7).await;
    let fallback = FlakyRpc::start(&rpc, 11).await;
    let faults = Faults {
        delay: 0.1,
        rate_limited: 0.08,
        unavailable: 0.08,
        dropped_before: 0.04,
        dropped_after: 0.08,
        stale: 0.15,
        down: false,
    };
    // A fallback that answers, if late or stale: a read during the first's outage has nowhere
    // else to go.
    fallback.set(Faults {
        delay: 0.1,
        stale: 0.15,
        ..Faults::default()
    });
    // First through the flaky provider alone: nothing masks its faults. Everything gets
    // anchored through it.
    flaky.set(faults);
    let mut app = external_app(dir.path(), &["--rpc", flaky.url()]);
    let writers = Writers::start(&app);
    tokio::time::sleep(Duration::from_secs(6)).await;
    let mut written = writers.stop().await;
    let (_, health) = get(&app, "/health").await;
    let stored = health["database"]["records"].as_u64().expect("records");
    poll_until(&app, "/health", 60, |h| {
        h["anchoring"]["anchored_size"].as_u64() == Some(stored)
    })
    .await;
    app.terminate();
    // Then with the second as fallback, the first down: the service starts, anchors, and reads
    // the chain through the second; then the first comes back.
    flaky.set(Faults {
        down: true,
        ..faults
    });
    let urls = format!("{},{}", flaky.url(), fallback.url());
    let app = external_app(dir.path(), &["--rpc", &urls]);
    let (status, body) = post_state(&app, "r", "?wait=anchored", json!({"r": 1})).await;
    assert_eq!(status, 201, "{body}");
    let writers = Writers::start(&app);
    tokio::time::sleep(Duration::from_secs(2)).await;
    // Reads of the chain (the anchored root verify checks) go to the fallback.
    assert_eq!(integrity(&app, "r").await, "Valid");
    tokio::time::sleep(Duration::from_secs(2)).await;
    flaky.set(faults);
    tokio::time::sleep(Duration::from_secs(4)).await;
    written += writers.stop().await;
    assert!(written >= 40, "{written} records");
    let (_, health) = get(&app, "/health").await;
    let total = health["database"]["records"].as_u64().expect("records");
    poll_until(&app, "/health", 60, |h| {
        h["anchoring"]["anchored_size"].as_u64() == Some(total)
    })
    .await;
    let (_, heads) = get(&app, "/v1/tree-heads?limit=1000").await;
    let anchors = heads["anchors"].as_array().expect("anchors");
    let mut prev = 0;
    for a in anchors {
        assert_eq!(a["prev_size"].as_u64(), Some(prev), "{a}");
        prev = a["size"].as_u64().expect("size");
    }
    // On the chain, not through the proxies: every transaction the account sent succeeded.
    let account = node_rpc(&rpc, "eth_accounts", json!([])).await[0]
        .as_str()
        .expect("account")
        .to_lowercase();
    let latest = quantity(&node_rpc(&rpc, "eth_blockNumber", json!([])).await);
    let mut sent = 0;
    for b in 1..=latest {
        let block = node_rpc(
            &rpc,
            "eth_getBlockByNumber",
            json!([format!("0x{b:x}"), true]),
        )
        .await;
        for tx in block["transactions"].as_array().expect("transactions") {
            if tx["from"].as_str().map(str::to_lowercase).as_deref() != Some(&account) {
                continue;
            }
            let receipt = node_rpc(&rpc, "eth_getTransactionReceipt", json!([tx["hash"]])).await;
            if receipt["status"] != "0x1" {
                panic!(
                    "transaction reverted: nonce {} block {b} hash {} input {}; anchors: {heads}",
                    tx["nonce"], tx["hash"], tx["input"]
                );
            }
            sent += 1;
        }
    }
    let nonce =
        quantity(&node_rpc(&rpc, "eth_getTransactionCount", json!([account, "latest"])).await);
    assert_eq!(
        nonce, sent,
        "every nonce used once, by a transaction that succeeded"
    );
    // The deployment (and its role grant, if any) and one transaction per anchor.
    assert!(sent as usize >= anchors.len(), "{sent} < {}", anchors.len());
    // The faults did happen.
    let (first, second) = (flaky.injected().counts(), fallback.injected().counts());
    for (fault, count) in &first {
        assert!(*count > 0, "no {fault} injected: {first:?}");
    }
    println!(
        "{written} records, {} anchors; first provider: {first:?}; second: {second:?}",
        anchors.len()
    );
    for w in 0..4 {
        assert_eq!(integrity(&app, &format!("w{w}")).await, "Valid");
    }
    audit_clean(dir.path(), &rpc);
}
