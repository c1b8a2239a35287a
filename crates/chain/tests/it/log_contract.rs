//! The TwinLedger contract on a real Anvil: roles, append-only heads, inclusion checks, gas.

use std::collections::HashMap;
use std::convert::Infallible;
use std::time::Duration;

use twinledger_chain::{
    Address, ChainClient, ChainError, LocalNode, LocalNodeConfig, LogContract, NodeKind,
    SignerConfig,
};
use twinledger_core::{
    ConsistencyProof, Frontier, Hash, InclusionProof, NodeSource, TreeHead, leaf_hash,
};
use twinledger_testkit::anvil_bin;

/// A Merkle log kept in memory for the test.
#[derive(Default)]
struct Log {
    frontier: Frontier,
    nodes: HashMap<(u32, u64), Hash>,
}

impl NodeSource for Log {
    type Error = Infallible;
    fn node(&self, level: u32, index: u64) -> Result<Hash, Infallible> {
        Ok(self.nodes[&(level, index)])
    }
}

impl Log {
    fn grow(&mut self, n: u64) -> TreeHead {
        for _ in 0..n {
            let i = self.frontier.size();
            let leaf = leaf_hash(&i.to_be_bytes());
            self.nodes.insert((0, i), leaf);
            for c in self.frontier.push(leaf) {
                self.nodes.insert((c.level, c.index), c.hash);
            }
        }
        self.frontier.head()
    }
    fn consistency(&self, first: u64, second: u64) -> ConsistencyProof {
        ConsistencyProof::generate(self, first, second).expect("nodes")
    }
    fn inclusion(&self, index: u64, size: u64) -> InclusionProof {
        InclusionProof::generate(self, index, size).expect("nodes")
    }
}

const ANVIL_KEY_1: &str = "59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";

async fn setup() -> (LocalNode, LogContract) {
    let node = LocalNode::start(&LocalNodeConfig {
        kind: NodeKind::Anvil,
        program: anvil_bin(),
        port: 0,
        state_path: None,
        reorg_depth: None,
        extra_args: Vec::new(),
    })
    .await
    .expect("anvil");
    let client = ChainClient::connect(node.url(), SignerConfig::Unlocked(None))
        .await
        .expect("connect");
    let me = client.from();
    let address = LogContract::deploy(&client, me, me).await.expect("deploy");
    let contract = LogContract::at(client, address).await.expect("bind");
    (node, contract)
}

async fn anchor(
    c: &LogContract,
    head: &TreeHead,
    proof: Option<&ConsistencyProof>,
) -> Result<u64, ChainError> {
    let nonce = c.client().nonce(true).await?;
    let sent = c.send_anchor(head, proof, nonce, false, None).await?;
    Ok(c.wait_anchor(sent.tx_hash(), Duration::from_secs(30))
        .await?
        .gas_used)
}

#[tokio::test]
async fn heads_only_grow_and_only_consistently() {
    let (node, c) = setup().await;
    let mut log = Log::default();
    assert_eq!(c.latest_head().await.expect("head").size, 0);
    let h5 = log.grow(5);
    anchor(&c, &h5, None).await.expect("first anchor");
    assert_eq!(c.latest_head().await.expect("head"), h5);

    // Equal and smaller sizes are refused, with the reason decoded.
    let err = anchor(&c, &h5, None).await.expect_err("equal size");
    assert!(
        err.to_string()
            .contains("does not exceed the anchored size 5"),
        "{err}"
    );
    let mut small = Log::default();
    let h3 = small.grow(3);
    let err = anchor(&c, &h3, None).await.expect_err("smaller size");
    assert!(err.to_string().contains("does not exceed"), "{err}");

    // A larger head that rewrites history: consistent with nothing anchored.
    let mut forged = Log::default();
    forged.grow(4);
    forged.nodes.clear();
    let mut other = Log::default();
    for i in 0..9u64 {
        let leaf = leaf_hash(&(i + 1000).to_be_bytes());
        other.nodes.insert((0, i), leaf);
        for n in other.frontier.push(leaf) {
            other.nodes.insert((n.level, n.index), n.hash);
        }
    }
    let h9_forged = other.frontier.head();
    let proof = other.consistency(5, 9);
    let err = anchor(&c, &h9_forged, Some(&proof))
        .await
        .expect_err("rewritten history");
    assert!(err.to_string().contains("not consistent"), "{err}");

    // The honest extension, but with a corrupted proof or none at all.
    let h9 = log.grow(4);
    let mut bad = log.consistency(5, 9);
    bad.path[0].0[0] ^= 1;
    assert!(
        anchor(&c, &h9, Some(&bad)).await.is_err(),
        "corrupt proof accepted"
    );
    assert!(
        anchor(&c, &h9, None).await.is_err(),
        "missing proof accepted"
    );
    anchor(&c, &h9, Some(&log.consistency(5, 9)))
        .await
        .expect("honest extension");
    assert_eq!(c.latest_head().await.expect("head"), h9);
    let anchored = c
        .anchored_root(5)
        .await
        .expect("read")
        .expect("size 5 anchored");
    assert_eq!(anchored.root, h5.root);
    assert!(anchored.timestamp > 0 && anchored.block_number > 0);
    assert_eq!(c.anchored_root(6).await.expect("read"), None);
    node.stop(Duration::from_secs(10)).await.expect("stop");
}

#[tokio::test]
async fn inclusion_is_checked_against_anchored_roots() {
    let (node, c) = setup().await;
    let mut log = Log::default();
    let h = log.grow(13);
    anchor(&c, &h, None).await.expect("anchor");
    for index in 0..13 {
        let proof = log.inclusion(index, 13);
        let leaf = log.nodes[&(0, index)];
        assert!(
            c.verify_inclusion(&leaf, &proof).await.expect("call"),
            "index {index}"
        );
        let wrong = log.nodes[&(0, (index + 1) % 13)];
        assert!(!c.verify_inclusion(&wrong, &proof).await.expect("call"));
    }
    // A valid proof for a size that was never anchored proves nothing.
    log.grow(3);
    let proof = log.inclusion(2, 16);
    assert!(
        !c.verify_inclusion(&log.nodes[&(0, 2)], &proof)
            .await
            .expect("call")
    );
    node.stop(Duration::from_secs(10)).await.expect("stop");
}

#[tokio::test]
async fn only_the_anchoring_role_anchors_and_revocation_takes_effect() {
    let (node, admin) = setup().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let key = dir.path().join("k");
    std::fs::write(&key, ANVIL_KEY_1).expect("key");
    let outsider_client = ChainClient::connect(
        node.url(),
        SignerConfig::from_private_key_file(&key).expect("key"),
    )
    .await
    .expect("connect");
    let outsider: Address = outsider_client.from();
    let as_outsider = LogContract::at(outsider_client, admin.address())
        .await
        .expect("bind");
    let mut log = Log::default();
    let h = log.grow(2);
    let err = anchor(&as_outsider, &h, None)
        .await
        .expect_err("outsider anchors");
    assert!(err.to_string().contains("lacks the role"), "{err}");

    admin.set_anchorer(outsider, true).await.expect("grant");
    assert!(admin.is_anchorer(outsider).await.expect("read"));
    anchor(&as_outsider, &h, None)
        .await
        .expect("granted anchorer anchors");
    admin.set_anchorer(outsider, false).await.expect("revoke");
    let h2 = log.grow(1);
    let err = anchor(&as_outsider, &h2, Some(&log.consistency(2, 3)))
        .await
        .expect_err("revoked");
    assert!(err.to_string().contains("lacks the role"), "{err}");
    node.stop(Duration::from_secs(10)).await.expect("stop");
}

/// Gas of one anchor at 1, 100 and 10,000 records per anchor (figures go into docs/contract.md;
/// run with --nocapture to see them).
#[tokio::test]
async fn gas_per_anchor_at_1_100_and_10000_records() {
    let (node, c) = setup().await;
    let mut log = Log::default();
    let first = log.grow(1);
    let g0 = anchor(&c, &first, None).await.expect("first");
    println!("gas: first anchor (size 1): {g0}");
    let mut size = 1;
    for per_anchor in [1u64, 100, 10_000] {
        let head = log.grow(per_anchor);
        let proof = log.consistency(size, head.size);
        let gas = anchor(&c, &head, Some(&proof)).await.expect("anchor");
        println!(
            "gas: {per_anchor} records per anchor (size {size} -> {}, proof of {} hashes): {gas} per anchor, {:.1} per record",
            head.size,
            proof.path.len(),
            gas as f64 / per_anchor as f64
        );
        assert!(gas < 120_000, "an anchor costs {gas}");
        size = head.size;
    }
    node.stop(Duration::from_secs(10)).await.expect("stop");
}

/// A pipelined anchor's gas limit is set from its proof, not estimated: it must cover what the
/// node estimates for the same anchor on the mined state, at every proof length a log reaches,
/// without reserving absurdly more.
#[tokio::test]
async fn a_pipelined_anchors_gas_limit_covers_the_nodes_estimate() {
    let (node, c) = setup().await;
    let mut log = Log::default();
    // A first size that is not a power of two: its proofs carry one more hash.
    let first = log.grow(3);
    anchor(&c, &first, None).await.expect("first");
    let mut size = first.size;
    let mut lengths = Vec::new();
    // Sizes up to 2^40 are out of reach in memory; the contract's cost per hash is the same
    // at any depth, so a spread of proof lengths up to 18 pins the slope.
    for grow in [1u64, 2, 13, 200, 5_000, 60_000, 200_000] {
        let head = log.grow(grow);
        let proof = log.consistency(size, head.size);
        let nonce = c.client().nonce(true).await.expect("nonce");
        let sent = c
            .send_anchor(&head, Some(&proof), nonce, false, None)
            .await
            .expect("sent");
        let estimate = sent.gas_limit();
        let limit = twinledger_chain::anchor_gas_limit(proof.path.len());
        println!(
            "proof of {} hashes: estimate {estimate}, limit {limit}",
            proof.path.len()
        );
        assert!(
            limit >= estimate,
            "{} hashes: {limit} < {estimate}",
            proof.path.len()
        );
        assert!(
            limit < estimate * 2,
            "{} hashes: {limit} vs {estimate}",
            proof.path.len()
        );
        lengths.push(proof.path.len());
        c.wait_anchor(sent.tx_hash(), Duration::from_secs(30))
            .await
            .expect("mined");
        size = head.size;
    }
    assert!(lengths.iter().max() >= Some(&18), "{lengths:?}");
    node.stop(Duration::from_secs(10)).await.expect("stop");
}

/// Anchors sent one after the other before any is mined, each proving consistency with the one
/// before it under the next nonce, are all mined in one block, in order.
#[tokio::test]
async fn pipelined_anchors_extend_each_other_before_any_is_mined() {
    let (node, c) = setup().await;
    let mut log = Log::default();
    let first = log.grow(2);
    anchor(&c, &first, None).await.expect("first");
    let () = node_call(&c, "evm_setAutomine", (false,)).await;
    let mut nonce = c.client().nonce(true).await.expect("nonce");
    let mut size = first.size;
    let mut sent = Vec::new();
    for grow in [1u64, 5, 9] {
        let head = log.grow(grow);
        let proof = log.consistency(size, head.size);
        sent.push(
            c.send_anchor(&head, Some(&proof), nonce, true, None)
                .await
                .expect("sent"),
        );
        nonce += 1;
        size = head.size;
    }
    let _: String = node_call(&c, "evm_mine", ()).await;
    let mut blocks = Vec::new();
    for s in &sent {
        blocks.push(c.mined(s).await.expect("poll").expect("mined").block_number);
    }
    assert!(blocks.windows(2).all(|w| w[0] == w[1]), "{blocks:?}");
    assert_eq!(c.latest_head().await.expect("head").size, size);
    node.stop(Duration::from_secs(10)).await.expect("stop");
}

/// A node call by name, for Anvil's test methods.
async fn node_call<R>(
    c: &LogContract,
    method: &'static str,
    params: impl serde::Serialize + Clone + std::fmt::Debug + Send + Sync + Unpin,
) -> R
where
    R: serde::de::DeserializeOwned + std::fmt::Debug + Send + Sync + Unpin + 'static,
{
    use alloy::providers::Provider;
    c.client()
        .provider()
        .raw_request(method.into(), params)
        .await
        .expect(method)
}

#[tokio::test]
async fn a_waiting_anchor_is_replaced_under_its_nonce_with_higher_fees() {
    let (node, c) = setup().await;
    let mut log = Log::default();
    let head = log.grow(3);
    // Nothing is mined until the test says so: the anchor waits in the pool.
    let () = node_call(&c, "evm_setAutomine", (false,)).await;
    let nonce = c.client().nonce(true).await.expect("nonce");
    let mut sent = c
        .send_anchor(&head, None, nonce, false, None)
        .await
        .expect("sent");
    let (first, first_fee) = (sent.tx_hash(), sent.max_fee_per_gas());
    assert!(c.mined(&sent).await.expect("poll").is_none());

    let second = c
        .replace(&mut sent, None)
        .await
        .expect("replaced")
        .expect("no fee cap");
    assert_ne!(second, first);
    assert_eq!(sent.nonce(), nonce, "a replacement keeps the nonce");
    assert!(
        sent.max_fee_per_gas() >= first_fee + first_fee / 4,
        "fees rise by a quarter: {first_fee} -> {}",
        sent.max_fee_per_gas()
    );
    let mut capped = sent.clone();
    assert_eq!(
        c.replace(&mut capped, Some(sent.max_fee_per_gas()))
            .await
            .expect("asked"),
        None,
        "no replacement above the fee cap"
    );

    let _: String = node_call(&c, "evm_mine", ()).await;
    let receipt = c.mined(&sent).await.expect("poll").expect("mined");
    assert_eq!(receipt.tx_hash, second, "the replacement is what was mined");
    assert_eq!(c.receipt(first).await.expect("poll"), None);
    assert_eq!(c.latest_head().await.expect("head"), head);
    assert_eq!(c.client().nonce(false).await.expect("nonce"), nonce + 1);
    node.stop(Duration::from_secs(10)).await.expect("stop");
}
