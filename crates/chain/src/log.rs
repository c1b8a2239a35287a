//! The TwinLedger contract: anchors tree heads of the Merkle log, refusing any head that does not
//! extend the last one.

use std::time::Duration;

use alloy::primitives::{Address, B256, TxHash};
use alloy::providers::Provider;
use alloy::rpc::types::TransactionRequest;
use alloy::sol;
use alloy::sol_types::SolInterface;
use serde::Serialize;
use twinledger_core::{ConsistencyProof, Hash, InclusionProof, TreeHead};

use crate::{ChainClient, ChainError, Result, SignedTx};

sol!(
    #[sol(rpc)]
    #[allow(missing_docs)]
    #[derive(Debug)]
    TwinLedger,
    "../../contracts/out/TwinLedger.json"
);

/// A head as anchored on chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AnchoredRoot {
    /// The root.
    pub root: Hash,
    /// Timestamp of the block that anchored it.
    pub timestamp: u64,
    /// That block.
    pub block_number: u64,
}

/// An `Anchored` event: a head the contract accepted, and where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AnchoredEvent {
    /// The head.
    pub head: TreeHead,
    /// The size it extended.
    pub previous_size: u64,
    /// The transaction that anchored it.
    pub tx_hash: TxHash,
    /// Its block.
    pub block_number: u64,
}

/// An `anchor` transaction signed, sent or to be sent, and not yet seen mined: its request
/// (nonce, gas, fees), every hash it went out under (the first and each replacement with higher
/// fees), and the latest version's bytes, which are sent again as they are if the node does not
/// hold them (a lost answer, a dropped transaction).
#[derive(Debug, Clone)]
pub struct SentAnchor {
    request: TransactionRequest,
    hashes: Vec<TxHash>,
    latest: SignedTx,
}

impl SentAnchor {
    /// The nonce all its versions share.
    pub fn nonce(&self) -> u64 {
        self.request.nonce.unwrap_or_default()
    }

    /// The hash of the latest version.
    pub fn tx_hash(&self) -> TxHash {
        self.hashes.last().copied().unwrap_or_default()
    }

    /// Its gas limit.
    pub fn gas_limit(&self) -> u64 {
        self.request.gas.unwrap_or_default()
    }

    /// The latest version's fee cap, in wei per gas.
    pub fn max_fee_per_gas(&self) -> u128 {
        self.request.max_fee_per_gas.unwrap_or_default()
    }
}

/// A mined `anchor` transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AnchorReceipt {
    /// Transaction hash.
    pub tx_hash: TxHash,
    /// Block holding it.
    pub block_number: u64,
    /// That block's hash (to notice reorganisations).
    pub block_hash: B256,
    /// That block's timestamp.
    pub block_timestamp: u64,
    /// Gas used.
    pub gas_used: u64,
}

fn b256(h: &Hash) -> B256 {
    B256::from(h.0)
}

fn hash(b: B256) -> Hash {
    Hash(b.0)
}

/// The TwinLedger contract at one address.
#[derive(Debug, Clone)]
pub struct LogContract {
    client: ChainClient,
    address: Address,
}

impl LogContract {
    /// Deploys TwinLedger with `admin` holding the admin role and `anchorer` the anchoring role.
    pub async fn deploy(
        client: &ChainClient,
        admin: Address,
        anchorer: Address,
    ) -> Result<Address> {
        let mut code = TwinLedger::BYTECODE.to_vec();
        code.extend_from_slice(&alloy::sol_types::SolValue::abi_encode(&(admin, anchorer)));
        client.deploy(code).await
    }

    /// Binds to an existing deployment, checking that code is there.
    pub async fn at(client: ChainClient, address: Address) -> Result<Self> {
        client.ensure_code(address).await?;
        Ok(Self { client, address })
    }

    /// Binds to a deployment recorded earlier without asking the chain (its node is down);
    /// every later call still goes to the chain.
    pub fn bind_recorded(client: ChainClient, address: Address) -> Self {
        Self { client, address }
    }

    /// The contract address.
    pub fn address(&self) -> Address {
        self.address
    }

    /// The client.
    pub fn client(&self) -> &ChainClient {
        &self.client
    }

    fn instance(&self) -> TwinLedger::TwinLedgerInstance<&alloy::providers::DynProvider> {
        TwinLedger::new(self.address, self.client.provider())
    }

    /// Signs `anchor(head.size, head.root, proof)` with `nonce`, at the fees the node suggests
    /// from its current base fee, offering at most `max_fee_per_gas`, and sends it; returns
    /// once the node accepted it. [`LogContract::prepare_anchor`] and
    /// [`LogContract::submit`] are its two halves, for callers that note the hash first.
    ///
    /// An anchor on the chain's latest head has its gas estimated by the node, and a revert the
    /// node reports then is decoded into a readable reason. A `pipelined` anchor extends one the
    /// chain has not mined yet: the node would estimate it against the mined state, where the
    /// contract refuses it, so its gas limit comes from the proof's length
    /// ([`anchor_gas_limit`]).
    pub async fn send_anchor(
        &self,
        head: &TreeHead,
        proof: Option<&ConsistencyProof>,
        nonce: u64,
        pipelined: bool,
        max_fee_per_gas: Option<u128>,
    ) -> Result<SentAnchor> {
        let sent = self
            .prepare_anchor(head, proof, nonce, pipelined, max_fee_per_gas)
            .await?;
        self.submit(&sent).await?;
        Ok(sent)
    }

    /// Builds and signs an anchor as [`LogContract::send_anchor`] does, without sending it.
    pub async fn prepare_anchor(
        &self,
        head: &TreeHead,
        proof: Option<&ConsistencyProof>,
        nonce: u64,
        pipelined: bool,
        max_fee_per_gas: Option<u128>,
    ) -> Result<SentAnchor> {
        let path: Vec<B256> = proof
            .map(|p| p.path.iter().map(b256).collect())
            .unwrap_or_default();
        let hashes = path.len();
        let instance = self.instance();
        let call = instance
            .anchor(head.size, b256(&head.root), path)
            .from(self.client.from())
            .nonce(nonce);
        let gas = if pipelined {
            anchor_gas_limit(hashes)
        } else {
            // On the latest block, where what the anchor extends is mined; again if the
            // block moved on meanwhile.
            crate::client::past_pruned_state(|| async {
                call.clone()
                    .block(alloy::eips::BlockId::latest())
                    .estimate_gas()
                    .await
                    .map_err(decode_revert)
            })
            .await?
        };
        let fees = self.client.suggest_fees().await?;
        // Over the cap the anchor waits in the pool until the base fee falls below it.
        let max_fee =
            max_fee_per_gas.map_or(fees.max_fee_per_gas, |cap| fees.max_fee_per_gas.min(cap));
        let request = call
            .gas(gas)
            .max_fee_per_gas(max_fee)
            .max_priority_fee_per_gas(fees.max_priority_fee_per_gas.min(max_fee))
            .into_transaction_request();
        let latest = self.client.sign(request.clone()).await?;
        Ok(SentAnchor {
            request,
            hashes: vec![latest.hash],
            latest,
        })
    }

    /// Sends the latest version of `sent` (again): a node that holds it already counts as sent.
    pub async fn submit(&self, sent: &SentAnchor) -> Result<()> {
        self.client.send_signed(&sent.latest).await
    }

    /// Sends `sent` again with the same nonce and higher fees (a quarter more, or what the node
    /// suggests now if that is more), so that it replaces the waiting one. Above
    /// `max_fee_per_gas` it offers the cap itself, as long as that is still the tenth more a
    /// node wants of a replacement. Returns the new hash, or `None` when the cap allows no
    /// replacement (the caller keeps waiting).
    pub async fn replace(
        &self,
        sent: &mut SentAnchor,
        max_fee_per_gas: Option<u128>,
    ) -> Result<Option<TxHash>> {
        let fresh = self.client.suggest_fees().await?;
        let bump = |old: Option<u128>| {
            let old = old.unwrap_or_default();
            old + old.div_ceil(4)
        };
        let old_fee = sent.request.max_fee_per_gas.unwrap_or_default();
        let mut max_fee = bump(sent.request.max_fee_per_gas).max(fresh.max_fee_per_gas);
        if let Some(cap) = max_fee_per_gas
            && max_fee > cap
        {
            if cap < old_fee + old_fee.div_ceil(10) {
                return Ok(None);
            }
            max_fee = cap;
        }
        let old_priority = sent.request.max_priority_fee_per_gas.unwrap_or_default();
        let priority = bump(sent.request.max_priority_fee_per_gas)
            .max(fresh.max_priority_fee_per_gas)
            .min(max_fee)
            .max(old_priority + old_priority.div_ceil(10));
        if priority > max_fee {
            return Ok(None);
        }
        let mut request = sent.request.clone();
        request.max_fee_per_gas = Some(max_fee);
        request.max_priority_fee_per_gas = Some(priority);
        let signed = self.client.sign(request.clone()).await?;
        self.client.send_signed(&signed).await?;
        let tx = signed.hash;
        sent.request = request;
        sent.hashes.push(tx);
        sent.latest = signed;
        Ok(Some(tx))
    }

    /// Picks up an `anchor` transaction of this contract still waiting in the node's pool (a
    /// restart found it sent but not mined), so that it can be waited for and replaced instead
    /// of blocking every later nonce; `None` if the node does not hold it or it is mined.
    pub async fn resume(&self, tx: TxHash) -> Result<Option<SentAnchor>> {
        let Some(found) = self.client.provider().get_transaction_by_hash(tx).await? else {
            return Ok(None);
        };
        if found.block_number.is_some() {
            return Ok(None);
        }
        let raw: alloy::primitives::Bytes = {
            use alloy::eips::eip2718::Encodable2718;
            found.inner.inner().encoded_2718().into()
        };
        let request = found.into_request().from(self.client.from());
        if request.to != Some(self.address.into()) {
            return Ok(None);
        }
        Ok(Some(SentAnchor {
            request,
            hashes: vec![tx],
            latest: SignedTx { hash: tx, raw },
        }))
    }

    /// The receipt of whichever of `sent`'s transactions was mined, if one was.
    pub async fn mined(&self, sent: &SentAnchor) -> Result<Option<AnchorReceipt>> {
        for tx in sent.hashes.iter().rev() {
            if let Some(r) = self.receipt(*tx).await? {
                return Ok(Some(r));
            }
        }
        Ok(None)
    }

    /// The receipt of an `anchor` transaction as the chain has it now (`None` while unmined, or
    /// once a reorganisation dropped it); a reverted one is an error.
    pub async fn receipt(&self, tx: TxHash) -> Result<Option<AnchorReceipt>> {
        let Some(receipt) = self.client.provider().get_transaction_receipt(tx).await? else {
            return Ok(None);
        };
        if !receipt.status() {
            return Err(ChainError::Reverted(tx.to_string()));
        }
        let block_number = receipt
            .block_number
            .ok_or_else(|| ChainError::Rpc(format!("receipt of {tx} has no block number")))?;
        let block_hash = receipt
            .block_hash
            .ok_or_else(|| ChainError::Rpc(format!("receipt of {tx} has no block hash")))?;
        let block_timestamp = self.client.block_timestamp(block_number).await?;
        Ok(Some(AnchorReceipt {
            tx_hash: tx,
            block_number,
            block_hash,
            block_timestamp,
            gas_used: receipt.gas_used,
        }))
    }

    /// Waits for an `anchor` transaction to be mined.
    pub async fn wait_anchor(&self, tx: TxHash, timeout: Duration) -> Result<AnchorReceipt> {
        let receipt = self.client.wait_receipt(tx, timeout).await?;
        if !receipt.status() {
            return Err(ChainError::Reverted(tx.to_string()));
        }
        self.receipt(tx).await?.ok_or_else(|| {
            ChainError::Rpc(format!("the receipt of {tx} disappeared (reorganisation)"))
        })
    }

    /// The latest anchored head (size 0 before the first anchor).
    pub async fn latest_head(&self) -> Result<TreeHead> {
        let r = self.instance().latestHead().call().await?;
        Ok(TreeHead {
            size: r.size,
            root: hash(r.root),
        })
    }

    /// The root anchored for tree size `size`, if any.
    pub async fn anchored_root(&self, size: u64) -> Result<Option<AnchoredRoot>> {
        let r = self.instance().anchoredRoot(size).call().await?;
        if r.root == B256::ZERO {
            return Ok(None);
        }
        Ok(Some(AnchoredRoot {
            root: hash(r.root),
            timestamp: r.timestamp,
            block_number: r.blockNumber,
        }))
    }

    /// The contract's own inclusion check against its anchored root for `proof.size`.
    pub async fn verify_inclusion(&self, leaf_hash: &Hash, proof: &InclusionProof) -> Result<bool> {
        let path: Vec<B256> = proof.path.iter().map(b256).collect();
        Ok(self
            .instance()
            .verifyInclusion(proof.index, proof.size, b256(leaf_hash), path)
            .call()
            .await?)
    }

    /// The head anchored by transaction `tx` on this contract, and its block; `None` if the
    /// chain does not know `tx` or it anchored nothing here.
    pub async fn head_anchored_by(&self, tx: TxHash) -> Result<Option<(TreeHead, u64)>> {
        let Some(receipt) = self.client.provider().get_transaction_receipt(tx).await? else {
            return Ok(None);
        };
        let block = receipt.block_number.unwrap_or_default();
        Ok(receipt
            .inner
            .logs()
            .iter()
            .filter(|l| l.address() == self.address)
            .find_map(|l| l.log_decode::<TwinLedger::Anchored>().ok())
            .map(|e| {
                (
                    TreeHead {
                        size: e.inner.data.size,
                        root: hash(e.inner.data.root),
                    },
                    block,
                )
            }))
    }

    /// Every head anchored on this contract from block `from_block` on, in size order, from its
    /// `Anchored` events.
    pub async fn anchored_events(&self, from_block: u64) -> Result<Vec<AnchoredEvent>> {
        use alloy::sol_types::SolEvent;
        let filter = alloy::rpc::types::Filter::new()
            .address(self.address)
            .event_signature(TwinLedger::Anchored::SIGNATURE_HASH)
            .from_block(from_block);
        let logs = self.client.provider().get_logs(&filter).await?;
        let mut events = Vec::with_capacity(logs.len());
        for log in logs {
            let (tx_hash, block_number) = (log.transaction_hash, log.block_number);
            let e = log
                .log_decode::<TwinLedger::Anchored>()
                .map_err(|e| ChainError::Rpc(format!("undecodable Anchored event: {e}")))?;
            events.push(AnchoredEvent {
                head: TreeHead {
                    size: e.inner.data.size,
                    root: hash(e.inner.data.root),
                },
                previous_size: e.inner.data.previousSize,
                tx_hash: tx_hash.unwrap_or_default(),
                block_number: block_number.unwrap_or_default(),
            });
        }
        events.sort_by_key(|e| e.head.size);
        Ok(events)
    }

    /// Every head anchored on this contract, in size order.
    pub async fn anchored_heads(&self) -> Result<Vec<TreeHead>> {
        Ok(self
            .anchored_events(0)
            .await?
            .into_iter()
            .map(|e| e.head)
            .collect())
    }

    /// Whether `account` holds the anchoring role.
    pub async fn is_anchorer(&self, account: Address) -> Result<bool> {
        let role = self.instance().ANCHORER_ROLE().call().await?;
        Ok(self.instance().hasRole(role, account).call().await?)
    }

    /// Grants (or with `revoke`, revokes) the anchoring role; the sender must be an admin.
    pub async fn set_anchorer(&self, account: Address, grant: bool) -> Result<TxHash> {
        let instance = self.instance();
        let role = instance.ANCHORER_ROLE().call().await?;
        let from = self.client.from();
        let pending = if grant {
            instance.grantRole(role, account).from(from).send().await
        } else {
            instance.revokeRole(role, account).from(from).send().await
        }
        .map_err(decode_revert)?;
        let tx = *pending.tx_hash();
        let receipt = self
            .client
            .wait_receipt(tx, Duration::from_secs(120))
            .await?;
        if !receipt.status() {
            return Err(ChainError::Reverted(tx.to_string()));
        }
        Ok(tx)
    }
}

/// The gas limit of an anchor whose consistency proof holds `proof_hashes` hashes, set without
/// asking the node. An upper bound of what the contract spends, with a quarter or more to
/// spare: Anvil estimates 79,000 gas plus about 2,000 per hash (the checks, the role, two new
/// storage slots and the event; per hash its calldata and two SHA-256 calls). Unused gas is not
/// paid for; a bound too low would revert, which
/// `a_pipelined_anchors_gas_limit_covers_the_nodes_estimate` checks against Anvil's estimate.
pub fn anchor_gas_limit(proof_hashes: usize) -> u64 {
    100_000 + 3_000 * proof_hashes as u64
}

/// Turns a contract call error into a chain error, naming the contract's custom error when the
/// node returned revert data.
fn decode_revert(e: alloy::contract::Error) -> ChainError {
    if let Some(data) = e.as_revert_data()
        && let Ok(err) = TwinLedger::TwinLedgerErrors::abi_decode(&data)
    {
        return ChainError::Refused(describe(&err));
    }
    e.into()
}

fn describe(err: &TwinLedger::TwinLedgerErrors) -> String {
    use TwinLedger::TwinLedgerErrors as E;
    match err {
        E::SizeNotGrowing(e) => format!(
            "the contract refused the head: size {} does not exceed the anchored size {}",
            e.proposedSize, e.latestSize
        ),
        E::InconsistentHead(e) => format!(
            "the contract refused the head: size {} is not consistent with the anchored head of size {}",
            e.proposedSize, e.latestSize
        ),
        E::MalformedAnchor(_) => "the contract refused a malformed anchor".into(),
        E::AccessControlUnauthorizedAccount(e) => format!(
            "account {} lacks the role {} on the contract",
            e.account, e.neededRole
        ),
        other => format!("the contract refused the call: {other:?}"),
    }
}
