//! The command line: help, update, verify, deploy, signing keys.

use serde_json::json;
use twinledger_chain::NodeKind;

use crate::support::*;

/// Anvil's second dev account: a well-known test key, never a real one.
const ANVIL_KEY_1: &str = "59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";

#[test]
fn every_subcommand_has_help() {
    for args in [
        vec!["--help"],
        vec!["serve", "--help"],
        vec!["deploy", "--help"],
        vec!["update", "--help"],
        vec!["verify", "--help"],
        vec!["simulate", "--help"],
        vec!["device-key", "--help"],
    ] {
        let out = run(&args);
        assert!(out.status.success(), "{args:?}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("Usage: twinledger"), "{args:?}: {text}");
    }
    let out = run(&["frobnicate"]);
    assert!(!out.status.success());
}

#[tokio::test(flavor = "multi_thread")]
async fn update_and_verify_through_the_cli() {
    let dir = data_dir();
    let app = embedded_app(dir.path());
    let d = dir.path().to_str().expect("path");
    for state in [r#"{"level": 1}"#, r#"{"level": 2, "note": "é"}"#] {
        let out = run(&[
            "update",
            "tank",
            state,
            "--server",
            &app.base_url,
            "--data-dir",
            d,
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let answer: serde_json::Value =
            serde_json::from_slice(&out.stdout).expect("JSON on stdout");
        assert_eq!(answer["message"], "Digital Twin updated on blockchain");
    }
    let out = run(&["verify", "tank", "--data-dir", d, "--json"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let verdict: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON verdict");
    assert_eq!(verdict["integrity"], "Valid");
    assert_eq!(verdict["versions"], 2);

    db(dir.path())
        .execute(
            "UPDATE records SET state = '{\"level\": 7}' WHERE twin_id = 'tank' AND version = 1",
            [],
        )
        .expect("tamper");
    let out = run(&["verify", "tank", "--data-dir", d]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("Tampered") && text.contains("version 1 (log index 0)"),
        "{text}"
    );
    assert!(
        !text.contains("version 2 (log index"),
        "only the edited version is named: {text}"
    );

    db(dir.path())
        .execute(
            "DELETE FROM records WHERE twin_id = 'tank' AND version = 1",
            [],
        )
        .expect("delete");
    let out = run(&["verify", "tank", "--data-dir", d, "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let verdict: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON verdict");
    let problems = verdict["problems"].to_string();
    assert!(
        problems.contains("versions 1 to 1 are missing"),
        "{problems}"
    );

    let out = run(&["verify", "nobody", "--data-dir", d]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not found"));
}

#[test]
fn bad_cli_input_is_refused_before_anything_is_sent() {
    let dir = data_dir();
    let d = dir.path().to_str().expect("path");
    // Port 9 (discard) is never our service: reaching the network would fail differently.
    for (args, expected) in [
        (vec!["update", "", "{}"], "invalid TWIN_ID"),
        (vec!["update", "a b", "{}"], "invalid TWIN_ID"),
        (vec!["update", "t", "{"], "invalid JSON"),
        (vec!["update", "t", "[1]"], "must be a JSON object"),
        (vec!["update", "t", r#"{"a": 1, "a": 2}"#], "duplicate key"),
    ] {
        let mut full = args.clone();
        full.extend(["--server", "http://127.0.0.1:9", "--data-dir", d]);
        let out = run(&full);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
    let out = run(&["verify", "t", "--data-dir", d]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no database"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_local_key_signs_and_never_appears_in_output() {
    let dir = data_dir();
    let node = start_node(NodeKind::Anvil, 0, None).await;
    let key_file = dir.path().join("deployer.key");
    std::fs::write(&key_file, ANVIL_KEY_1).expect("write key");
    let k = key_file.to_str().expect("path");
    let d = dir.path().to_str().expect("path");
    let out = run(&[
        "deploy",
        "--rpc",
        node.url(),
        "--private-key-file",
        k,
        "--data-dir",
        d,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut all =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);

    let app = external_app(dir.path(), &["--rpc", node.url(), "--private-key-file", k]);
    let (status, body) = post_update(&app, "signed", json!({"v": 1})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(integrity(&app, "signed").await, "Valid");
    let (_, health) = get(&app, "/health").await;
    all += &health.to_string();
    all += &app.output();
    for args in [vec!["serve", "--help"], vec!["deploy", "--help"]] {
        all += &String::from_utf8_lossy(&run(&args).stdout);
    }
    assert!(!all.contains(ANVIL_KEY_1), "the private key leaked:\n{all}");

    // The transaction came from the key's account, not the node's unlocked first account.
    let tx = body["tx_hash"].as_str().expect("tx");
    let v: serde_json::Value = http()
        .post(node.url())
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "eth_getTransactionByHash", "params": [tx]}))
        .send()
        .await
        .expect("rpc")
        .json()
        .await
        .expect("json");
    assert_eq!(
        v["result"]["from"]
            .as_str()
            .map(str::to_lowercase)
            .as_deref(),
        Some("0x70997970c51812dc3a010c7d01b50e0d17dc79c8")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_on_an_external_chain_needs_a_contract() {
    let dir = data_dir();
    let node = start_node(NodeKind::Anvil, 0, None).await;
    let d = dir.path().to_str().expect("path");
    let out = run(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--rpc",
        node.url(),
        "--data-dir",
        d,
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("twinledger deploy"));
    // An explicit --contract that has no code is refused too.
    let out = run(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--rpc",
        node.url(),
        "--data-dir",
        d,
        "--contract",
        "0x00000000000000000000000000000000000000aa",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no contract at"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_service_on_the_same_data_directory_is_refused() {
    let dir = data_dir();
    let app = embedded_app(dir.path());
    let d = dir.path().to_str().expect("path");
    let out = run(&["serve", "--listen", "127.0.0.1:0", "--data-dir", d]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("another twinledger serve"), "{stderr}");
    // The first one is unaffected.
    let (status, _) = get(&app, "/health").await;
    assert_eq!(status, 200);
}

#[test]
fn serve_refuses_a_bad_mqtt_broker_or_bad_congruence_bands_before_starting() {
    for (config, expected) in [
        ("[mqtt]\nbroker = \"no-port\"\n", "invalid mqtt.broker"),
        ("[mqtt]\nbroker = \":1883\"\n", "invalid mqtt.broker"),
        (
            "[congruence]\nbands = [{name = \"ok\", min_score = 0.5}]\n",
            "invalid [congruence] bands",
        ),
    ] {
        let dir = data_dir();
        let file = dir.path().join("t.toml");
        std::fs::write(&file, config).expect("config");
        let d = dir.path().to_str().expect("utf8");
        let f = file.to_str().expect("utf8");
        let out = run(&[
            "--config",
            f,
            "--data-dir",
            d,
            "serve",
            "--listen",
            "127.0.0.1:0",
        ]);
        assert_eq!(out.status.code(), Some(2), "{config}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(expected), "{config}: {err}");
    }
}
