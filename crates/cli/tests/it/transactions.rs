//! Anchoring transactions against a real Anvil: reorganisations that drop anchors, anchors stuck
//! in the pool and replaced with higher fees (also across a restart), and another process
//! sending with the service's key.

use std::time::Duration;

use serde_json::{Value, json};
use twinledger_chain::NodeKind;
use twinledger_testkit::App;

use crate::support::*;

/// Anvil's first dev account: the unlocked account the service and `deploy` send from.
const ACCOUNT: &str = "0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266";

async fn nonce(rpc: &str, block: &str) -> u64 {
    let n = node_rpc(rpc, "eth_getTransactionCount", json!([ACCOUNT, block])).await;
    u64::from_str_radix(n.as_str().expect("hex").trim_start_matches("0x"), 16).expect("nonce")
}

fn hex_u128(v: &Value) -> u128 {
    u128::from_str_radix(v.as_str().expect("hex").trim_start_matches("0x"), 16).expect("number")
}

/// The `new_tx` and `max_fee_per_gas` of each "replaced with higher fees" line the service
/// logged, in order.
fn logged_replacements(app: &App) -> Vec<(String, u128)> {
    app.output()
        .lines()
        .filter(|l| l.contains("replaced with higher fees"))
        .map(|l| {
            let field = |name: &str| {
                l.split_whitespace()
                    .find_map(|w| w.strip_prefix(name))
                    .unwrap_or_else(|| panic!("{name} missing in {l}"))
                    .to_owned()
            };
            let fee = field("max_fee_per_gas=").parse().expect("fee");
            (field("new_tx="), fee)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_anchor_dropped_by_a_reorganisation_is_anchored_again_and_confirmed_only_when_deep_enough()
 {
    let dir = data_dir();
    let node = start_reorg_node(64).await;
    let rpc = node.url().to_owned();
    deploy_in(dir.path(), &rpc, "log");
    let app = external_app_with(
        dir.path(),
        &["--rpc", &rpc],
        "[anchor]\nconfirmations = 4\n",
    );
    let (status, rec) = post_state(&app, "valve", "?wait=anchored", json!({"open": true})).await;
    assert_eq!(status, 201, "{rec}");
    assert_eq!(rec["status"], "anchored");
    let first_tx = rec["anchor"]["tx_hash"].clone();

    // Two blocks on top: three of the four confirmations; the anchorer looks every second.
    node_rpc(&rpc, "anvil_mine", json!([2])).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (_, v) = get(&app, "/v1/twins/valve/versions/1").await;
    assert_eq!(v["status"], "anchored", "not deep enough yet: {v}");

    // The anchor's block and the two after it are replaced by three empty blocks.
    node_rpc(&rpc, "anvil_reorg", json!([3, []])).await;
    let v = poll_until(&app, "/v1/twins/valve/versions/1", 30, |v| {
        v["status"] == "anchored" && v["anchor"]["tx_hash"] != first_tx
    })
    .await;
    let (_, health) = get(&app, "/health").await;
    assert!(
        health["anchoring"]["reorganisations"].as_u64() >= Some(1),
        "{health}"
    );
    assert_eq!(health["anchoring"]["confirmed_size"], 0, "{health}");
    let reorganisations = metric(&app, "twinledger_reorganisations_total").await;
    assert!(reorganisations >= Some(1.0), "{reorganisations:?}");
    // The dropped anchor was sent again: one record, two anchors mined.
    assert!(metric(&app, "twinledger_anchors_mined_total").await >= Some(2.0));
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (_, again) = get(&app, "/v1/twins/valve/versions/1").await;
    assert_eq!(again["status"], "anchored", "{again}");

    node_rpc(&rpc, "anvil_mine", json!([3])).await;
    let confirmed = poll_until(&app, "/v1/twins/valve/versions/1", 30, |v| {
        v["status"] == "confirmed"
    })
    .await;
    assert_eq!(confirmed["anchor"], v["anchor"]);
    let (_, verdict) = get(&app, "/v1/twins/valve/verify").await;
    assert_eq!(verdict["integrity"], "Valid", "{verdict}");
    drop(app);
    node.stop(Duration::from_secs(10)).await.expect("stop");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stuck_anchor_is_replaced_with_higher_fees_also_after_a_restart() {
    let dir = data_dir();
    let node = start_node(NodeKind::Anvil, 0, None).await;
    let rpc = node.url().to_owned();
    deploy_in(dir.path(), &rpc, "log");
    let settings = "[anchor]\nreplace_after_ms = 400\n";
    let mut app = external_app_with(dir.path(), &["--rpc", &rpc], settings);
    let before = nonce(&rpc, "latest").await;
    // From here on blocks come only when the test mines one: the anchor waits in the pool.
    node_rpc(&rpc, "evm_setAutomine", json!([false])).await;
    let (status, rec) = post_state(&app, "pump", "", json!({"rpm": 1})).await;
    assert_eq!(status, 201);
    assert_eq!(rec["status"], "pending");
    poll_until(&app, "/health", 30, |h| {
        h["anchoring"]["replacements"].as_u64() >= Some(2)
    })
    .await;
    // Replacements are counted apart: the anchor was sent once.
    assert!(metric(&app, "twinledger_anchors_replaced_total").await >= Some(2.0));
    assert_eq!(
        metric(&app, "twinledger_anchors_sent_total").await,
        Some(1.0)
    );
    let replaced = logged_replacements(&app);
    assert!(
        replaced.windows(2).all(|w| w[1].1 > w[0].1),
        "each replacement offers more: {replaced:?}"
    );
    assert_eq!(
        nonce(&rpc, "pending").await,
        before + 1,
        "replacements reuse the nonce"
    );

    // Killed with the anchor still waiting: the restart picks it up instead of queueing a
    // second transaction behind it, and goes on replacing it.
    app.kill();
    let app = external_app_with(dir.path(), &["--rpc", &rpc], settings);
    poll_until(&app, "/health", 30, |h| {
        h["anchoring"]["replacements"].as_u64() >= Some(1)
    })
    .await;
    assert!(
        app.output().contains("still waits in the pool"),
        "{}",
        app.output()
    );
    let last = logged_replacements(&app).pop().expect("a replacement");
    assert!(
        last.1 > replaced.last().expect("earlier").1,
        "fees keep rising"
    );
    node_rpc(&rpc, "evm_mine", json!([])).await;
    let v = poll_until(&app, "/v1/twins/pump/versions/1", 30, |v| {
        v["status"] != "pending"
    })
    .await;
    let tx = v["anchor"]["tx_hash"].as_str().expect("tx").to_owned();
    assert!(
        replaced
            .iter()
            .chain(logged_replacements(&app).iter())
            .any(|(h, _)| *h == tx),
        "a replacement was mined: {tx}"
    );
    let mined = node_rpc(&rpc, "eth_getTransactionByHash", json!([tx])).await;
    assert!(hex_u128(&mined["maxFeePerGas"]) >= replaced[0].1);
    assert_eq!(
        nonce(&rpc, "latest").await,
        before + 1,
        "one nonce, one anchor"
    );
    assert_eq!(
        nonce(&rpc, "pending").await,
        before + 1,
        "nothing left behind"
    );
    // Each replacement is counted on its anchor, for the dashboard's anchors page.
    let counted: i64 = db(dir.path())
        .query_row(
            "SELECT replacements FROM anchors WHERE tx_hash = ?1",
            [&tx],
            |r| r.get(0),
        )
        .expect("the mined anchor");
    assert!(
        counted as usize > replaced.len(),
        "{counted} replacements counted, more than {} were logged before the restart",
        replaced.len()
    );
    let (_, verdict) = get(&app, "/v1/twins/pump/verify").await;
    assert_eq!(verdict["integrity"], "Valid", "{verdict}");
    drop(app);
    node.stop(Duration::from_secs(10)).await.expect("stop");
}

#[tokio::test(flavor = "multi_thread")]
async fn another_process_sending_with_the_same_key_is_detected_not_replaced() {
    let dir = data_dir();
    let node = start_node(NodeKind::Anvil, 0, None).await;
    let rpc = node.url().to_owned();
    deploy_in(dir.path(), &rpc, "log");
    let app = external_app_with(
        dir.path(),
        &["--rpc", &rpc],
        "[anchor]\nreplace_after_ms = 500\n",
    );
    let (status, _) = post_state(&app, "fan", "?wait=anchored", json!({"on": true})).await;
    assert_eq!(status, 201);

    // The other process takes the nonce the service's next anchor waits with: its transaction
    // replaces ours in the pool and is mined.
    node_rpc(&rpc, "evm_setAutomine", json!([false])).await;
    let taken = nonce(&rpc, "latest").await;
    let (status, _) = post_state(&app, "fan", "", json!({"on": false})).await;
    assert_eq!(status, 201);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while nonce(&rpc, "pending").await == taken {
        assert!(std::time::Instant::now() < deadline, "no anchor sent");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    node_rpc(
        &rpc,
        "eth_sendTransaction",
        json!([{
            "from": ACCOUNT,
            "to": "0x70997970c51812dc3a010c7d01b50e0d17dc79c8",
            "value": "0x1",
            "nonce": format!("{taken:#x}"),
            "maxFeePerGas": "0x174876e800",
            "maxPriorityFeePerGas": "0x174876e800",
        }]),
    )
    .await;
    node_rpc(&rpc, "evm_mine", json!([])).await;
    let health = poll_until(&app, "/health", 30, |h| {
        h["anchoring"]["other_sender"].is_string()
    })
    .await;
    assert!(
        health["anchoring"]["other_sender"]
            .as_str()
            .is_some_and(|m| m.contains("another process")),
        "{health}"
    );
    // The service goes on with the next free nonce; its record gets anchored.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        node_rpc(&rpc, "evm_mine", json!([])).await;
        let (_, v) = get(&app, "/v1/twins/fan/versions/2").await;
        if v["status"] != "pending" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "not anchored: {v}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (_, verdict) = get(&app, "/v1/twins/fan/verify").await;
    assert_eq!(verdict["integrity"], "Valid", "{verdict}");
    drop(app);
    node.stop(Duration::from_secs(10)).await.expect("stop");
}
