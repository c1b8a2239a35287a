//! `twinledger verify-proof`: checks a proof bundle with no database, trusting only the chain
//! and contract the verifier names itself.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use twinledger_chain::{Address, ChainClient, LogContract, SignerConfig};
use twinledger_core::ProofBundle;

use crate::settings::Settings;

/// Options of `verify-proof`.
#[derive(Debug, Args)]
pub struct VerifyProofArgs {
    /// The proof bundle (JSON, as served by /v1/twins/{id}/versions/{v}/proof).
    pub file: PathBuf,
    /// JSON-RPC URL of a node of the chain to check against (or chain.rpc in the configuration).
    #[arg(long, value_name = "URL")]
    pub rpc: Option<String>,
    /// The TwinLedger contract you trust (or chain.contract); never taken from the bundle.
    #[arg(long, value_name = "ADDRESS")]
    pub contract: Option<String>,
    /// The chain id you expect; the node must report it (default: whatever the node reports).
    #[arg(long, value_name = "ID")]
    pub chain_id: Option<u64>,
    /// Check only the hash math, without any chain: says so, and is no proof of anchoring.
    #[arg(long, conflicts_with_all = ["rpc", "contract", "chain_id"])]
    pub offline: bool,
}

/// A failed check: the bundle is not proven (exit 1).
struct Refuted(String);

/// How the bundle's transaction was checked.
#[derive(Debug, PartialEq, Eq)]
enum TxCheck {
    /// The node holds it, and it anchored the bundle's head.
    Anchored,
    /// The node no longer holds the block the contract records the anchor in (it prunes its
    /// history); the contract's record of the anchor stands for it.
    Pruned,
}

impl VerifyProofArgs {
    /// Exit 0 proven, 1 not proven (tampered, forged, not anchored), 2 error.
    pub async fn run(self, settings: Settings) -> Result<ExitCode> {
        let bytes = std::fs::read(&self.file)
            .with_context(|| format!("cannot read {}", self.file.display()))?;
        let bundle = match ProofBundle::from_json(&bytes) {
            Ok(b) => b,
            Err(e) => return Ok(refuted(&Refuted(e.to_string()))),
        };
        if let Err(e) = bundle.verify() {
            return Ok(refuted(&Refuted(e.to_string())));
        }
        let r = &bundle.record;
        if self.offline {
            println!(
                "hash math OK for twin {} version {} (log index {}) in the tree of size {} with root {}",
                r.twin_id, r.version, r.index, bundle.tree_head.size, bundle.tree_head.root
            );
            println!(
                "NOT checked against any chain (--offline): this does not prove the record was anchored"
            );
            return Ok(ExitCode::SUCCESS);
        }
        let rpc = self
            .rpc
            .or(settings.chain.rpc.first().cloned())
            .context("give --rpc URL (or --offline for the hash math only)")?;
        let contract = self
            .contract
            .or(settings.chain.contract.clone())
            .context("give --contract ADDRESS: the contract is never taken from the bundle")?;
        let contract: Address = contract
            .parse()
            .with_context(|| format!("invalid contract address {contract:?}"))?;
        match check_chain(&bundle, &rpc, contract, self.chain_id).await? {
            Ok(checked) => {
                println!(
                    "VALID: twin {} version {} (log index {}) is in the tree of size {} anchored on chain {} by contract {} at block {} (timestamp {})",
                    r.twin_id,
                    r.version,
                    r.index,
                    bundle.tree_head.size,
                    bundle.anchor.chain_id,
                    contract,
                    bundle.anchor.block_number,
                    bundle.anchor.block_timestamp
                );
                if checked == TxCheck::Pruned {
                    println!(
                        "the node no longer holds block {}, so transaction {} was not checked; \
                         the contract's own record of the anchor (root, block, timestamp) was",
                        bundle.anchor.block_number, bundle.anchor.tx_hash
                    );
                }
                Ok(ExitCode::SUCCESS)
            }
            Err(r) => Ok(refuted(&r)),
        }
    }
}

fn refuted(r: &Refuted) -> ExitCode {
    println!("NOT PROVEN: {}", r.0);
    ExitCode::from(1)
}

/// The chain checks: the right chain, the trusted contract, the root anchored there at that
/// size and block, and the contract's own inclusion check. `Err` of the outer result is an
/// error (the chain could not be asked), of the inner one a refutation.
async fn check_chain(
    bundle: &ProofBundle,
    rpc: &str,
    contract: Address,
    expected_chain: Option<u64>,
) -> Result<std::result::Result<TxCheck, Refuted>> {
    let client = ChainClient::connect(rpc, SignerConfig::Unlocked(Some(Address::ZERO)))
        .await
        .context("cannot reach the chain")?;
    let chain_id = client.chain_id();
    if let Some(expected) = expected_chain
        && expected != chain_id
    {
        return Ok(Err(Refuted(format!(
            "the node is on chain {chain_id}, not the expected chain {expected}"
        ))));
    }
    if bundle.anchor.chain_id != chain_id {
        return Ok(Err(Refuted(format!(
            "the bundle claims chain {}, the node is on chain {chain_id}",
            bundle.anchor.chain_id
        ))));
    }
    let named: Option<Address> = bundle.anchor.contract.parse().ok();
    if named != Some(contract) {
        return Ok(Err(Refuted(format!(
            "the bundle names contract {}, not the trusted contract {contract}",
            bundle.anchor.contract
        ))));
    }
    let contract = match LogContract::at(client, contract).await {
        Ok(c) => c,
        Err(twinledger_chain::ChainError::NoContract { .. }) => {
            return Ok(Err(Refuted(format!(
                "there is no contract at {contract} on chain {chain_id}"
            ))));
        }
        Err(e) => return Err(e).context("cannot read the contract"),
    };
    let head = &bundle.tree_head;
    let Some(anchored) = contract
        .anchored_root(head.size)
        .await
        .context("cannot read the anchored root")?
    else {
        return Ok(Err(Refuted(format!(
            "no tree of size {} is anchored on this contract",
            head.size
        ))));
    };
    if anchored.root != head.root {
        return Ok(Err(Refuted(format!(
            "the root anchored for size {} is {}, the bundle's is {}",
            head.size, anchored.root, head.root
        ))));
    }
    if anchored.block_number != bundle.anchor.block_number
        || anchored.timestamp != bundle.anchor.block_timestamp
    {
        return Ok(Err(Refuted(format!(
            "the head was anchored at block {} (timestamp {}), the bundle says block {} (timestamp {})",
            anchored.block_number,
            anchored.timestamp,
            bundle.anchor.block_number,
            bundle.anchor.block_timestamp
        ))));
    }
    // The transaction the bundle names must be the one that anchored this head.
    let tx = bundle
        .anchor
        .tx_hash
        .parse::<twinledger_chain::TxHash>()
        .ok();
    let by_tx = match tx {
        Some(tx) => contract
            .head_anchored_by(tx)
            .await
            .context("cannot read the anchoring transaction")?,
        None => None,
    };
    let checked = if by_tx == Some((*head, anchored.block_number)) {
        TxCheck::Anchored
    } else if by_tx.is_none()
        && !contract
            .client()
            .has_block(anchored.block_number)
            .await
            .context("cannot read the anchor's block")?
    {
        TxCheck::Pruned
    } else {
        return Ok(Err(Refuted(format!(
            "transaction {} did not anchor the tree of size {} on this contract",
            bundle.anchor.tx_hash, head.size
        ))));
    };
    let included = contract
        .verify_inclusion(&bundle.leaf_hash, &bundle.inclusion_proof)
        .await
        .context("cannot call verifyInclusion")?;
    if !included {
        return Ok(Err(Refuted(
            "the contract's verifyInclusion rejects the proof".into(),
        )));
    }
    Ok(Ok(checked))
}
