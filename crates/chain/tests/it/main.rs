//! Chain tests against real Anvil and Ganache processes.

mod log_contract;

use std::time::Duration;

use twinledger_chain::{
    ChainClient, ChainError, LegacyContract, LocalNode, LocalNodeConfig, NodeKind, SignerConfig,
};
use twinledger_testkit::{anvil_bin, ganache_bin};

/// Anvil's first dev account: a well-known test key, never a real one.
const ANVIL_KEY_0: &str = "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";

async fn node(kind: NodeKind) -> LocalNode {
    let program = match kind {
        NodeKind::Anvil => anvil_bin(),
        NodeKind::Ganache => ganache_bin(),
    };
    LocalNode::start(&LocalNodeConfig {
        kind,
        program,
        port: 0,
        state_path: None,
        reorg_depth: None,
        extra_args: Vec::new(),
    })
    .await
    .expect("node starts")
}

async fn seed_contract_round_trip(kind: NodeKind, signer: impl FnOnce() -> SignerConfig) {
    let node = node(kind).await;
    let client = ChainClient::connect(node.url(), signer())
        .await
        .expect("connect");
    let address = LegacyContract::deploy(&client).await.expect("deploy");
    let contract = LegacyContract::at(client.clone(), address)
        .await
        .expect("bind");
    assert_eq!(
        contract.get_twin("t1").await.expect("getTwin").data_hash,
        "",
        "an unknown twin reads empty"
    );
    let tx = contract
        .send_update("t1", "123", "abc")
        .await
        .expect("send");
    let receipt = contract
        .wait_update(tx, Duration::from_secs(30))
        .await
        .expect("receipt");
    assert!(receipt.records("t1", "123", "abc"));
    assert!(!receipt.records("t2", "123", "abc"));
    let block_ts = client
        .block_timestamp(receipt.block_number)
        .await
        .expect("block");
    assert_eq!(receipt.block_timestamp, block_ts);
    let twin = contract.get_twin("t1").await.expect("getTwin");
    assert_eq!(
        (
            twin.id.as_str(),
            twin.timestamp.as_str(),
            twin.data_hash.as_str()
        ),
        ("t1", "123", "abc")
    );
    // A second update overwrites: the seed contract keeps only the latest.
    let tx2 = contract
        .send_update("t1", "124", "def")
        .await
        .expect("send");
    contract
        .wait_update(tx2, Duration::from_secs(30))
        .await
        .expect("receipt");
    assert_eq!(
        contract.get_twin("t1").await.expect("getTwin").data_hash,
        "def"
    );
    // The first transaction's receipt still tells what it recorded.
    let first = contract
        .update_receipt(tx)
        .await
        .expect("receipt")
        .expect("known tx");
    assert!(first.records("t1", "123", "abc"));
    node.stop(Duration::from_secs(10)).await.expect("stop");
}

#[tokio::test]
async fn seed_contract_on_anvil_unlocked_account() {
    seed_contract_round_trip(NodeKind::Anvil, || SignerConfig::Unlocked(None)).await;
}

#[tokio::test]
async fn seed_contract_on_ganache_unlocked_account() {
    seed_contract_round_trip(NodeKind::Ganache, || SignerConfig::Unlocked(None)).await;
}

#[tokio::test]
async fn seed_contract_on_anvil_with_a_local_private_key_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key_file = dir.path().join("key");
    std::fs::write(&key_file, format!("0x{ANVIL_KEY_0}\n")).expect("write key");
    let signer = SignerConfig::from_private_key_file(&key_file).expect("key loads");
    let shown = format!("{signer:?}");
    assert!(
        !shown.contains(ANVIL_KEY_0),
        "Debug must not show the key: {shown}"
    );
    seed_contract_round_trip(NodeKind::Anvil, move || signer).await;
}

#[tokio::test]
async fn seed_contract_on_anvil_with_an_encrypted_keystore() {
    use alloy::signers::local::PrivateKeySigner;
    let dir = tempfile::tempdir().expect("tempdir");
    let key = hex_key(ANVIL_KEY_0);
    PrivateKeySigner::encrypt_keystore(
        dir.path(),
        &mut rand::thread_rng(),
        key,
        "s3cret",
        Some("ks.json"),
    )
    .expect("keystore written");
    let password = dir.path().join("password");
    std::fs::write(&password, "s3cret\n").expect("write password");
    let signer =
        SignerConfig::from_keystore(&dir.path().join("ks.json"), &password).expect("decrypts");
    seed_contract_round_trip(NodeKind::Anvil, move || signer).await;

    std::fs::write(&password, "wrong\n").expect("write password");
    let err = SignerConfig::from_keystore(&dir.path().join("ks.json"), &password)
        .expect_err("a wrong password fails");
    assert!(
        !err.to_string().contains("wrong"),
        "errors never echo the password: {err}"
    );
}

fn hex_key(s: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).expect("hex");
    }
    out
}

#[tokio::test]
async fn a_bad_private_key_file_is_a_clear_error_without_its_content() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key_file = dir.path().join("key");
    std::fs::write(&key_file, "not-a-key-0123456789").expect("write");
    let err = SignerConfig::from_private_key_file(&key_file).expect_err("rejected");
    let msg = err.to_string();
    assert!(msg.contains("does not hold a 32-byte hex key"), "{msg}");
    assert!(!msg.contains("not-a-key-0123456789"), "{msg}");
}

#[tokio::test]
async fn an_unreachable_node_is_retryable_and_a_missing_contract_is_reported() {
    let port = twinledger_testkit::free_port();
    let err = ChainClient::connect(
        &format!("http://127.0.0.1:{port}"),
        SignerConfig::Unlocked(None),
    )
    .await
    .expect_err("nothing listens there");
    assert!(err.is_retryable(), "{err:?}");

    let node = node(NodeKind::Anvil).await;
    let client = ChainClient::connect(node.url(), SignerConfig::Unlocked(None))
        .await
        .expect("connect");
    let nowhere = "0x00000000000000000000000000000000000000aa"
        .parse()
        .expect("address");
    let err = LegacyContract::at(client, nowhere)
        .await
        .expect_err("no code there");
    assert!(matches!(err, ChainError::NoContract { .. }), "{err:?}");
    node.stop(Duration::from_secs(10)).await.expect("stop");
}

#[tokio::test]
async fn anvil_state_survives_a_graceful_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state.json");
    let config = LocalNodeConfig {
        kind: NodeKind::Anvil,
        program: anvil_bin(),
        port: 0,
        state_path: Some(state.clone()),
        reorg_depth: None,
        extra_args: Vec::new(),
    };
    let node = LocalNode::start(&config).await.expect("start");
    let client = ChainClient::connect(node.url(), SignerConfig::Unlocked(None))
        .await
        .expect("connect");
    let address = LegacyContract::deploy(&client).await.expect("deploy");
    let contract = LegacyContract::at(client, address).await.expect("bind");
    let tx = contract.send_update("t1", "1", "h1").await.expect("send");
    contract
        .wait_update(tx, Duration::from_secs(30))
        .await
        .expect("mined");
    node.stop(Duration::from_secs(30)).await.expect("stop");
    assert!(state.is_file(), "state saved on SIGTERM");

    let node = LocalNode::start(&config).await.expect("restart");
    let client = ChainClient::connect(node.url(), SignerConfig::Unlocked(None))
        .await
        .expect("connect");
    let contract = LegacyContract::at(client, address)
        .await
        .expect("contract still there");
    assert_eq!(
        contract.get_twin("t1").await.expect("getTwin").data_hash,
        "h1"
    );
    node.stop(Duration::from_secs(30)).await.expect("stop");
}
