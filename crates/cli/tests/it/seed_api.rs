//! The seed's endpoints: its demo, on Anvil and Ganache; history; unknown twins; bad input.

use serde_json::json;
use twinledger_chain::NodeKind;
use twinledger_testkit::App;

use crate::support::*;

/// The seed's demo: post its example, read it back Valid, alter the stored row, read it back
/// Tampered. Returns the app for further checks.
async fn seed_demo(app: &App) {
    let (status, body) = post_update(
        app,
        "expert_123",
        json!({"temperature": 25.3, "status": "operational"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["message"], "Digital Twin updated on blockchain");
    let tx = body["tx_hash"].as_str().expect("tx_hash");
    assert!(tx.starts_with("0x") && tx.len() == 66, "{tx}");

    let (status, body) = get(app, "/get_twin_from_blockchain/expert_123").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["twin_id"], "expert_123");
    assert_eq!(body["integrity"], "Valid");
    let ts: u64 = body["timestamp"]
        .as_str()
        .expect("timestamp")
        .parse()
        .expect("unix seconds");
    assert!(ts > 1_600_000_000, "{ts}");

    db(&app.data_dir)
        .execute(
            "UPDATE records SET state = '{\"temperature\": 99.9, \"status\": \"operational\"}' \
             WHERE twin_id = 'expert_123'",
            [],
        )
        .expect("tamper");
    assert_eq!(integrity(app, "expert_123").await, "Tampered");
}

#[tokio::test(flavor = "multi_thread")]
async fn seed_demo_on_the_embedded_anvil_in_log_mode() {
    let dir = data_dir();
    let app = embedded_app(dir.path());
    seed_demo(&app).await;
    let (_, health) = get(&app, "/health").await;
    assert_eq!(health["mode"], "log");
}

#[tokio::test(flavor = "multi_thread")]
async fn seed_demo_on_the_embedded_anvil_in_legacy_mode() {
    let dir = data_dir();
    let app = embedded_app_in(dir.path(), "legacy");
    seed_demo(&app).await;
    let (_, health) = get(&app, "/health").await;
    assert_eq!(health["mode"], "legacy");
}

async fn seed_demo_on_ganache(mode: &str) {
    let dir = data_dir();
    let node = start_node(NodeKind::Ganache, 0, None).await;
    let address = deploy_in(dir.path(), node.url(), mode);
    assert!(
        address.starts_with("0x") && address.len() == 42,
        "{address}"
    );
    let app = external_app(dir.path(), &["--rpc", node.url(), "--mode", mode]);
    seed_demo(&app).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn seed_demo_on_ganache_in_log_mode() {
    seed_demo_on_ganache("log").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn seed_demo_on_ganache_in_legacy_mode() {
    seed_demo_on_ganache("legacy").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_timestamp_is_that_of_the_block_holding_the_transaction_in_both_modes() {
    for mode in ["log", "legacy"] {
        block_timestamp_in(mode).await;
    }
}

async fn block_timestamp_in(mode: &str) {
    let dir = data_dir();
    let node = start_node(NodeKind::Anvil, 0, None).await;
    deploy_in(dir.path(), node.url(), mode);
    let app = external_app(dir.path(), &["--rpc", node.url(), "--mode", mode]);
    let (_, body) = post_update(&app, "t", json!({"a": 1})).await;
    let tx = body["tx_hash"].as_str().expect("tx").to_owned();
    let rpc = |method: &str, params: serde_json::Value| {
        let url = node.url().to_owned();
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
        async move {
            let v: serde_json::Value = http()
                .post(url)
                .json(&body)
                .send()
                .await
                .expect("rpc")
                .json()
                .await
                .expect("json");
            v["result"].clone()
        }
    };
    let receipt = rpc("eth_getTransactionReceipt", json!([tx])).await;
    let block = rpc(
        "eth_getBlockByNumber",
        json!([receipt["blockNumber"], false]),
    )
    .await;
    let block_ts = u64::from_str_radix(
        block["timestamp"]
            .as_str()
            .expect("ts")
            .trim_start_matches("0x"),
        16,
    )
    .expect("hex");
    let (_, body) = get(&app, "/get_twin_from_blockchain/t").await;
    assert_eq!(body["timestamp"], block_ts.to_string());
    assert_eq!(body["integrity"], "Valid");
}

#[tokio::test(flavor = "multi_thread")]
async fn legacy_history_is_kept_and_an_edited_timestamp_is_tampering() {
    let dir = data_dir();
    let app = embedded_app_in(dir.path(), "legacy");
    for v in 1..=3 {
        let (status, body) = post_update(&app, "pump-1", json!({"rpm": v * 100})).await;
        assert_eq!(status, 200, "{body}");
    }
    let rows: Vec<(i64, String, String)> = {
        let db = db(dir.path());
        let mut stmt = db
            .prepare("SELECT version, state, status FROM records WHERE twin_id = 'pump-1' ORDER BY version")
            .expect("prepare");
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows")
    };
    assert_eq!(rows.len(), 3, "every update is kept");
    for (i, (version, state, status)) in rows.iter().enumerate() {
        assert_eq!(*version, i as i64 + 1);
        assert_eq!(state, &format!("{{\"rpm\":{}}}", (i + 1) * 100));
        assert_eq!(status, "anchored");
    }
    assert_eq!(integrity(&app, "pump-1").await, "Valid");
    // The seed passed an edited timestamp as Valid; here the stored timestamp must equal the chain's.
    db(dir.path())
        .execute(
            "UPDATE records SET anchor_timestamp = '1' WHERE twin_id = 'pump-1' AND version = 3",
            [],
        )
        .expect("tamper");
    assert_eq!(integrity(&app, "pump-1").await, "Tampered");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_twin_is_404_with_the_seed_error() {
    let dir = data_dir();
    let app = embedded_app(dir.path());
    let (status, body) = get(&app, "/get_twin_from_blockchain/nobody").await;
    assert_eq!(status, 404);
    assert_eq!(body, json!({"error": "Twin not found in local storage"}));
    let (status, body) = get(&app, "/no/such/endpoint").await;
    assert_eq!(status, 404);
    assert!(body["error"].is_string());
}

#[tokio::test(flavor = "multi_thread")]
async fn health_reports_database_and_chain() {
    let dir = data_dir();
    let app = embedded_app(dir.path());
    let (status, body) = get(&app, "/health").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "ok");
    assert_eq!(body["database"]["ok"], true);
    assert_eq!(body["chain"]["chain_id"], 31337);
    assert!(body["chain"]["block_number"].as_u64().is_some());
    assert!(
        body["chain"]["contract"]
            .as_str()
            .expect("contract")
            .starts_with("0x")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_gets_a_4xx_json_error_and_writes_nothing() {
    let dir = data_dir();
    let app = embedded_app(dir.path());
    let long_id = "x".repeat(129);
    let huge = format!(
        "{{\"twin_id\": \"a\", \"data\": {{\"blob\": \"{}\"}}}}",
        "a".repeat(1024 * 1024)
    );
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "malformed JSON",
            "{\"twin_id\": \"a\", \"data\": {".into(),
            "invalid JSON",
        ),
        ("not an object", "[1, 2]".into(), "must be a JSON object"),
        (
            "missing twin_id",
            r#"{"data": {}}"#.into(),
            "missing field \"twin_id\"",
        ),
        (
            "missing data",
            r#"{"twin_id": "a"}"#.into(),
            "missing field \"data\"",
        ),
        (
            "data not an object",
            r#"{"twin_id": "a", "data": [1]}"#.into(),
            "data must be a JSON object",
        ),
        (
            "data a string",
            r#"{"twin_id": "a", "data": "x"}"#.into(),
            "data must be a JSON object",
        ),
        (
            "twin_id not a string",
            r#"{"twin_id": 5, "data": {}}"#.into(),
            "twin_id must be a string",
        ),
        (
            "empty twin id",
            r#"{"twin_id": "", "data": {}}"#.into(),
            "must not be empty",
        ),
        (
            "twin id too long",
            format!(r#"{{"twin_id": "{long_id}", "data": {{}}}}"#),
            "129 characters",
        ),
        (
            "twin id with a space",
            r#"{"twin_id": "a b", "data": {}}"#.into(),
            "whitespace",
        ),
        (
            "twin id with a tab",
            r#"{"twin_id": "a\tb", "data": {}}"#.into(),
            "whitespace",
        ),
        (
            "twin id with a control char",
            r#"{"twin_id": "a\u0001b", "data": {}}"#.into(),
            "control",
        ),
        (
            "NaN",
            r#"{"twin_id": "a", "data": {"x": NaN}}"#.into(),
            "invalid JSON",
        ),
        (
            "Infinity",
            r#"{"twin_id": "a", "data": {"x": Infinity}}"#.into(),
            "invalid JSON",
        ),
        (
            "-Infinity",
            r#"{"twin_id": "a", "data": {"x": -Infinity}}"#.into(),
            "invalid JSON",
        ),
        (
            "overflowing number",
            r#"{"twin_id": "a", "data": {"x": 1e400}}"#.into(),
            "out of range",
        ),
        (
            "duplicate key in data",
            r#"{"twin_id": "a", "data": {"x": 1, "x": 2}}"#.into(),
            "duplicate key",
        ),
        (
            "duplicate key at top",
            r#"{"twin_id": "a", "twin_id": "b", "data": {}}"#.into(),
            "duplicate key",
        ),
        (
            "unknown field",
            r#"{"twin_id": "a", "data": {}, "extra": 1}"#.into(),
            "unknown field",
        ),
        ("body over 1 MiB", huge, "larger than"),
    ];
    for (what, body, expected) in &cases {
        let (status, answer) = post_raw(&app, body).await;
        assert!(
            (400..500).contains(&status),
            "{what}: status {status} {answer}"
        );
        let msg = answer["error"]
            .as_str()
            .unwrap_or_else(|| panic!("{what}: no error field: {answer}"));
        assert!(
            msg.contains(expected),
            "{what}: {msg:?} does not mention {expected:?}"
        );
    }
    let r = http()
        .post(app.url("/update_twin_on_blockchain/"))
        .header("content-type", "text/plain")
        .body(r#"{"twin_id": "a", "data": {}}"#)
        .send()
        .await
        .expect("request");
    assert_eq!(r.status().as_u16(), 415);
    assert_eq!(record_count(dir.path()), 0, "nothing was written");
    let (status, health) = get(&app, "/health").await;
    assert_eq!(status, 200, "still healthy: {health}");
    let (status, _) = post_update(&app, "a", json!({})).await;
    assert_eq!(status, 200, "and still accepting good input");
}
