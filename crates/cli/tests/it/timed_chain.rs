//! Anchoring on chains as they really run: blocks on a timer, anchors pipelined under
//! consecutive nonces, a dropped anchor sent again.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use twinledger_chain::NodeKind;
use twinledger_testkit::App;

use crate::support::*;

/// Every anchor chains from the one before it (no size anchored twice, none skipped), and every
/// one is mined; returns them.
async fn anchors_chain_once(app: &App) -> Vec<Value> {
    let (_, heads) = get(app, "/v1/tree-heads?limit=1000").await;
    let anchors = heads["anchors"].as_array().expect("anchors").clone();
    let mut prev = 0;
    for a in &anchors {
        assert_eq!(a["prev_size"].as_u64(), Some(prev), "{a}");
        assert!(a["block_number"].is_u64(), "mined: {a}");
        prev = a["size"].as_u64().expect("size");
    }
    assert_eq!(Some(prev), heads["log"]["size"].as_u64(), "{heads}");
    anchors
}

/// `callers` clients posting to four twins `{prefix}0`..`{prefix}3` with `query` for `secs`, each
/// answer checked by `check`; every record written, as (twin, version, state).
async fn post_for(
    base: String,
    callers: usize,
    secs: u64,
    prefix: &'static str,
    query: &'static str,
    check: fn(u16, &Value),
) -> Vec<(String, u64, Value)> {
    let until = Instant::now() + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for c in 0..callers {
        let (base, twin) = (base.clone(), format!("{prefix}{}", c % 4));
        tasks.push(tokio::spawn(async move {
            let client = http();
            let mut written = Vec::new();
            while Instant::now() < until {
                let state = json!({"caller": c, "n": written.len()});
                let r = client
                    .post(format!("{base}/v1/twins/{twin}/states{query}"))
                    .json(&state)
                    .send()
                    .await
                    .expect("answered");
                let status = r.status().as_u16();
                let body: Value = r.json().await.expect("json");
                check(status, &body);
                let version = body["version"].as_u64().expect("version");
                written.push((twin.clone(), version, state));
            }
            written
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("caller"));
    }
    all
}

/// On a chain that mines every second, 16 callers waiting for their records to be anchored are
/// all answered 201 (the pipelined anchors used to be refused, answering 503), and every record
/// is anchored exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn on_a_chain_mining_every_second_waiting_callers_are_all_anchored_once() {
    let dir = data_dir();
    let node = start_node_args(NodeKind::Anvil, &["--block-time", "1"]).await;
    let rpc = node.url().to_owned();
    deploy_in(dir.path(), &rpc, "log");
    let app = external_app(dir.path(), &["--rpc", &rpc]);
    let written = post_for(
        app.base_url.clone(),
        16,
        6,
        "c",
        "?wait=anchored",
        |status, body| {
            assert_eq!(status, 201, "{body}");
            assert!(body["anchor"]["block_number"].is_u64(), "{body}");
        },
    )
    .await;
    let acked: BTreeMap<(String, u64), Value> = written
        .into_iter()
        .map(|(twin, version, state)| ((twin, version), state))
        .collect();
    assert!(acked.len() >= 32, "{} acknowledged", acked.len());
    assert_stored(dir.path(), &acked);
    let anchors = anchors_chain_once(&app).await;
    let mut per_block = BTreeMap::<u64, usize>::new();
    for a in &anchors {
        *per_block
            .entry(a["block_number"].as_u64().expect("block"))
            .or_default() += 1;
    }
    println!(
        "{} records, {} anchors in {} blocks",
        acked.len(),
        anchors.len(),
        per_block.len()
    );
    for t in 0..4 {
        assert_eq!(integrity(&app, &format!("c{t}")).await, "Valid");
    }
    audit_clean(dir.path(), &rpc);
}

/// Anchors sent while none is mined go out pipelined: each extends the one before it under the
/// next nonce, and one block mines them all. One dropped from the pool holds back those after
/// it (a nonce gap) until it is sent again, byte for byte, as soon as a new block shows the
/// node no longer holds it (not after `replace_after_ms`).
#[tokio::test(flavor = "multi_thread")]
async fn pipelined_anchors_are_mined_together_and_a_dropped_one_is_sent_again() {
    let dir = data_dir();
    let node = start_node(NodeKind::Anvil, 0, None).await;
    let rpc = node.url().to_owned();
    deploy_in(dir.path(), &rpc, "log");
    node_rpc(&rpc, "evm_setAutomine", json!([false])).await;
    let app = external_app(dir.path(), &["--rpc", &rpc]);
    let pending =
        || async { quantity(&node_rpc(&rpc, "txpool_status", json!([])).await["pending"]) };
    for i in 0..3 {
        let (status, body) = post_state(&app, "x", "", json!({"i": i})).await;
        assert_eq!(status, 201, "{body}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while pending().await < i + 1 {
            assert!(Instant::now() < deadline, "anchor {i} not sent");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let (_, heads) = get(&app, "/v1/tree-heads").await;
    let sent = heads["anchors"].as_array().expect("anchors");
    assert_eq!(sent.len(), 3, "{heads}");
    // The first is dropped: the node holds the other two, which cannot be mined before it.
    let first = sent[0]["tx_hash"].as_str().expect("tx").to_owned();
    node_rpc(&rpc, "anvil_dropTransaction", json!([first])).await;
    node_rpc(&rpc, "evm_mine", json!([])).await;
    let (_, health) = get(&app, "/health").await;
    assert_eq!(health["anchoring"]["anchored_size"], 0, "{health}");
    // Sent again once a new block (the one just mined) shows the node lost it.
    let deadline = Instant::now() + Duration::from_secs(20);
    while pending().await < 3 {
        assert!(
            Instant::now() < deadline,
            "the dropped anchor was not sent again"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    node_rpc(&rpc, "evm_mine", json!([])).await;
    poll_until(&app, "/health", 20, |h| {
        h["anchoring"]["anchored_size"] == 3
    })
    .await;
    let anchors = anchors_chain_once(&app).await;
    assert_eq!(anchors.len(), 3);
    let blocks: Vec<_> = anchors.iter().map(|a| a["block_number"].clone()).collect();
    assert!(blocks.iter().all(|b| *b == blocks[0]), "{blocks:?}");
    assert_eq!(
        anchors[0]["tx_hash"],
        first.as_str(),
        "the same transaction"
    );
    node_rpc(&rpc, "evm_setAutomine", json!([true])).await;
    assert_eq!(integrity(&app, "x").await, "Valid");
    audit_clean(dir.path(), &rpc);
}

/// A tenfold fee spike on a chain mining every second: anchors priced before it are replaced as
/// soon as the base fee passes them (not after `replace_after_ms`), never offering more than
/// `anchor.max_fee_gwei`; those over the cap wait until the base fee falls under it. Every
/// waiting caller is answered 201 and every record is anchored once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_fee_spike_is_ridden_out_by_replacements_under_the_fee_cap() {
    const GWEI: u128 = 1_000_000_000;
    const CAP_GWEI: u128 = 60;
    let dir = data_dir();
    let node = start_node_args(
        NodeKind::Anvil,
        &["--block-time", "1", "--base-fee", "20000000000"],
    )
    .await;
    let rpc = node.url().to_owned();
    deploy_in(dir.path(), &rpc, "log");
    let app = external_app_with(
        dir.path(),
        &["--rpc", &rpc],
        // Replacements after a wait are out of reach of this test: what replaces here is the
        // base fee passing an anchor's fee cap.
        &format!("[anchor]\nmax_fee_gwei = {CAP_GWEI}\nreplace_after_ms = 600000\n"),
    );
    // Fees in wei, as u128 like the settings' cap.
    let wei = |v: &Value| u128::from(quantity(v));
    let base_fee = || async {
        let block = node_rpc(&rpc, "eth_getBlockByNumber", json!(["latest", false])).await;
        (wei(&block["baseFeePerGas"]), quantity(&block["number"]))
    };
    let callers = tokio::spawn(post_for(
        app.base_url.clone(),
        4,
        14,
        "f",
        "?wait=anchored",
        |status, body| assert_eq!(status, 201, "{body}"),
    ));
    tokio::time::sleep(Duration::from_secs(3)).await;
    // The spike lands on a block that an anchor priced before it waits for: mining stops while
    // an anchor is in the pool, the next block's base fee is raised, and mining goes on.
    let pending = || async {
        let pool = node_rpc(&rpc, "txpool_status", json!([])).await;
        quantity(&pool["pending"])
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let (before, at_block) = loop {
        assert!(Instant::now() < deadline, "no anchor caught in the pool");
        if pending().await == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        }
        node_rpc(&rpc, "evm_setIntervalMining", json!([0])).await;
        if pending().await > 0 {
            break base_fee().await;
        }
        node_rpc(&rpc, "evm_setIntervalMining", json!([1])).await;
    };
    let spike = before * 10;
    assert!(spike > CAP_GWEI * GWEI, "the spike must pass the cap");
    node_rpc(
        &rpc,
        "anvil_setNextBlockBaseFeePerGas",
        json!([format!("0x{spike:x}")]),
    )
    .await;
    node_rpc(&rpc, "evm_setIntervalMining", json!([1])).await;
    let written = callers.await.expect("callers").len();
    assert!(written >= 8, "{written} records");
    let anchors = anchors_chain_once(&app).await;
    // The spike happened: a block after it has ten times the base fee.
    let mut highest = 0;
    let (_, now) = base_fee().await;
    for b in at_block..=now {
        let block = node_rpc(
            &rpc,
            "eth_getBlockByNumber",
            json!([format!("0x{b:x}"), false]),
        )
        .await;
        highest = highest.max(wei(&block["baseFeePerGas"]));
    }
    assert!(highest >= spike * 7 / 8, "{highest} < {spike}");
    for a in &anchors {
        let tx = node_rpc(&rpc, "eth_getTransactionByHash", json!([a["tx_hash"]])).await;
        let offered = wei(&tx["maxFeePerGas"]);
        assert!(offered <= CAP_GWEI * GWEI, "{offered} offered by {a}");
    }
    let (_, health) = get(&app, "/health").await;
    assert!(
        health["anchoring"]["replacements"].as_u64() >= Some(1),
        "{health}"
    );
    for c in 0..4 {
        assert_eq!(integrity(&app, &format!("f{c}")).await, "Valid");
    }
    audit_clean(dir.path(), &rpc);
}

/// Where the chain reports a finalized block (Anvil: two epochs behind its head; here epochs of
/// one slot, so two blocks), a caller can wait until its record's block is finalized, and the
/// record then reads `finalized`; an anchored record is not reported finalized before that.
#[tokio::test(flavor = "multi_thread")]
async fn a_record_can_be_waited_for_until_its_block_is_finalized() {
    let dir = data_dir();
    let node = start_node_args(
        NodeKind::Anvil,
        &["--block-time", "1", "--slots-in-an-epoch", "1"],
    )
    .await;
    let rpc = node.url().to_owned();
    deploy_in(dir.path(), &rpc, "log");
    let app = external_app(dir.path(), &["--rpc", &rpc]);
    let (status, body) = post_state(&app, "f", "?wait=anchored", json!({"a": 1})).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (201, Some("anchored")),
        "{body}"
    );
    let (status, body) = post_state(&app, "f", "?wait=finalized", json!({"a": 2})).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (201, Some("finalized")),
        "{body}"
    );
    let block = body["anchor"]["block_number"].as_u64().expect("block");
    let finalized =
        node_rpc(&rpc, "eth_getBlockByNumber", json!(["finalized", false])).await["number"].clone();
    let finalized = quantity(&finalized);
    assert!(finalized >= block, "block {block}, finalized {finalized}");
    let (_, health) = get(&app, "/health").await;
    assert!(
        health["anchoring"]["finalized_size"].as_u64() >= Some(2),
        "{health}"
    );
    let (_, version) = get(&app, "/v1/twins/f/versions/1").await;
    assert_eq!(version["status"], "finalized", "{version}");
    let (status, body) = post_state(&app, "f", "?wait=soon", json!({"a": 3})).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("finalized")),
        "{body}"
    );
}

/// Ganache, the seed's node, mining every second: waiting callers are answered, every record is
/// anchored once, and since Ganache reports its latest block as finalized, `?wait=finalized`
/// answers once the anchor is mined.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn on_ganache_mining_every_second_every_record_is_anchored_once() {
    let dir = data_dir();
    let node = start_node_args(NodeKind::Ganache, &["--miner.blockTime", "1"]).await;
    let rpc = node.url().to_owned();
    deploy_in(dir.path(), &rpc, "log");
    let app = external_app(dir.path(), &["--rpc", &rpc]);
    let written = post_for(
        app.base_url.clone(),
        6,
        5,
        "g",
        "?wait=finalized",
        |status, body| {
            assert_eq!(
                (status, body["status"].as_str()),
                (201, Some("finalized")),
                "{body}"
            )
        },
    )
    .await
    .len();
    assert!(written >= 12, "{written} records");
    anchors_chain_once(&app).await;
    for c in 0..4 {
        assert_eq!(integrity(&app, &format!("g{c}")).await, "Valid");
    }
    audit_clean(dir.path(), &rpc);
}

/// Legacy mode (one `updateTwin` per record) on a chain mining every second: each record's
/// transaction goes out as it is stored, pipelined by nonce in log order, so callers wait about
/// a block, not for every transaction ahead of theirs; the chain's latest value for each twin is
/// its latest version; one transaction dropped from the pool is sent again, byte for byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn legacy_transactions_are_pipelined_in_log_order_and_a_dropped_one_is_sent_again() {
    let dir = data_dir();
    let node = start_node_args(NodeKind::Anvil, &["--block-time", "1"]).await;
    let rpc = node.url().to_owned();
    deploy_in(dir.path(), &rpc, "legacy");
    let app = external_app(dir.path(), &["--rpc", &rpc, "--mode", "legacy"]);
    let block = || async { quantity(&node_rpc(&rpc, "eth_blockNumber", json!([])).await) };
    let first_block = block().await;
    let until = Instant::now() + Duration::from_secs(5);
    let mut callers = Vec::new();
    for c in 0..8 {
        let base = app.base_url.clone();
        callers.push(tokio::spawn(async move {
            let client = http();
            let mut n = 0u64;
            while Instant::now() < until {
                let body = json!({"twin_id": format!("l{}", c % 3), "data": {"c": c, "n": n}});
                let r = client
                    .post(format!("{base}/update_twin_on_blockchain/"))
                    .json(&body)
                    .send()
                    .await
                    .expect("answered");
                let status = r.status().as_u16();
                let answer: Value = r.json().await.expect("json");
                assert_eq!(status, 200, "{answer}");
                n += 1;
            }
            n
        }));
    }
    let mut written = 0;
    for c in callers {
        written += c.await.expect("caller");
    }
    // Eight callers each waiting for their own transaction get one record into (nearly) every
    // block. Sent in rounds, each after the last round's receipts, they got one every second
    // block or so (29 records in 5 blocks, measured with the earlier code).
    let blocks = block().await - first_block;
    println!("legacy on a 1 s chain: {written} records in {blocks} blocks");
    assert!(
        written * 10 >= 8 * blocks.saturating_sub(1) * 9,
        "{written} records by 8 callers in {blocks} blocks"
    );
    for t in 0..3 {
        let (status, body) = get(&app, &format!("/get_twin_from_blockchain/l{t}")).await;
        assert_eq!(
            (status, &body["integrity"]),
            (200, &json!("Valid")),
            "{body}"
        );
        assert_eq!(integrity(&app, &format!("l{t}")).await, "Valid");
    }

    // A transaction dropped from the pool is sent again at the next block.
    node_rpc(&rpc, "evm_setIntervalMining", json!([0])).await;
    let (status, body) = post_state(&app, "dropped", "", json!({"dropped": true})).await;
    assert_eq!(status, 201, "{body}");
    // The transaction is noted before it is sent.
    let deadline = Instant::now() + Duration::from_secs(20);
    let tx = loop {
        let noted: Option<String> = db(dir.path())
            .query_row(
                "SELECT anchor_tx FROM records WHERE twin_id = 'dropped'",
                [],
                |r| r.get(0),
            )
            .expect("row");
        if let Some(tx) = noted {
            break tx;
        }
        assert!(Instant::now() < deadline, "not sent");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // Sent too: the node holds it.
    let deadline = Instant::now() + Duration::from_secs(20);
    while node_rpc(&rpc, "eth_getTransactionByHash", json!([tx]))
        .await
        .is_null()
    {
        assert!(Instant::now() < deadline, "not in the pool");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    node_rpc(&rpc, "anvil_dropTransaction", json!([tx])).await;
    node_rpc(&rpc, "evm_mine", json!([])).await;
    node_rpc(&rpc, "evm_setIntervalMining", json!([1])).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, v) = get(&app, "/v1/twins/dropped/versions/1").await;
        if v["status"] == "anchored" {
            assert_eq!(
                v["anchor"]["tx_hash"],
                tx.as_str(),
                "the same transaction: {v}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the dropped transaction was not sent again: {v}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    audit_clean(dir.path(), &rpc);
}

/// One of several pipelined anchors fails (another process took its nonce): the ones after it,
/// built on it, revert when mined, and the anchorer starts again from the chain's mined head,
/// anchoring every record once more, each head once.
#[tokio::test(flavor = "multi_thread")]
async fn when_a_pipelined_anchor_fails_those_after_it_are_rebuilt_from_the_mined_head() {
    let dir = data_dir();
    let node = start_node(NodeKind::Anvil, 0, None).await;
    let rpc = node.url().to_owned();
    deploy_in(dir.path(), &rpc, "log");
    let app = external_app_with(
        dir.path(),
        &["--rpc", &rpc],
        "[anchor]\nreplace_after_ms = 500\n",
    );
    let account = node_rpc(&rpc, "eth_accounts", json!([])).await[0].clone();
    node_rpc(&rpc, "evm_setAutomine", json!([false])).await;
    let first =
        quantity(&node_rpc(&rpc, "eth_getTransactionCount", json!([account, "latest"])).await);
    for i in 0..3u64 {
        let (status, body) = post_state(&app, "p", "", json!({"i": i})).await;
        assert_eq!(status, 201, "{body}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while quantity(
            &node_rpc(&rpc, "eth_getTransactionCount", json!([account, "pending"])).await,
        ) < first + i + 1
        {
            assert!(Instant::now() < deadline, "anchor {i} not sent");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    // Another process takes the first anchor's nonce with higher fees.
    node_rpc(
        &rpc,
        "eth_sendTransaction",
        json!([{
            "from": account,
            "to": "0x70997970c51812dc3a010c7d01b50e0d17dc79c8",
            "value": "0x1",
            "nonce": format!("{first:#x}"),
            "maxFeePerGas": "0x174876e800",
            "maxPriorityFeePerGas": "0x174876e800",
        }]),
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        node_rpc(&rpc, "evm_mine", json!([])).await;
        let (_, health) = get(&app, "/health").await;
        if health["anchoring"]["anchored_size"] == 3 {
            break;
        }
        assert!(Instant::now() < deadline, "not anchored again: {health}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The two built on the lost one reverted on chain.
    let latest = quantity(&node_rpc(&rpc, "eth_blockNumber", json!([])).await);
    let mut reverted = 0;
    for b in 1..=latest {
        let block = node_rpc(
            &rpc,
            "eth_getBlockByNumber",
            json!([format!("{b:#x}"), true]),
        )
        .await;
        for tx in block["transactions"].as_array().expect("transactions") {
            let receipt = node_rpc(&rpc, "eth_getTransactionReceipt", json!([tx["hash"]])).await;
            if receipt["status"] == "0x0" {
                reverted += 1;
            }
        }
    }
    assert_eq!(reverted, 2, "the anchors after the lost one");
    let anchors = anchors_chain_once(&app).await;
    assert!(!anchors.is_empty());
    let (_, health) = get(&app, "/health").await;
    assert!(health["anchoring"]["other_sender"].is_string(), "{health}");
    node_rpc(&rpc, "evm_setAutomine", json!([true])).await;
    assert_eq!(integrity(&app, "p").await, "Valid");
    audit_clean(dir.path(), &rpc);
}
