//! A connection to one chain through one signer.

use std::time::Duration;

use alloy::network::{EthereumWallet, NetworkTransactionBuilder, TransactionBuilder};
use alloy::primitives::{Address, Bytes, TxHash};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::rpc::types::{TransactionReceipt, TransactionRequest};
use serde::Serialize;

use crate::{ChainError, Result, SignerConfig};

/// A connection to one chain, sending as one account.
#[derive(Clone)]
pub struct ChainClient {
    provider: DynProvider,
    /// The local key, when transactions are signed here (else the node signs for its unlocked
    /// account).
    wallet: Option<EthereumWallet>,
    from: Address,
    chain_id: u64,
    /// The first is used while it answers; the others are fallbacks.
    rpc_urls: Vec<reqwest::Url>,
}

impl std::fmt::Debug for ChainClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChainClient")
            .field("rpc_url", &self.rpc_url_redacted())
            .field("chain_id", &self.chain_id)
            .field("from", &self.from)
            .finish()
    }
}

/// A transaction signed and not necessarily sent: its hash is known before it is sent, so a
/// send whose answer was lost can be looked up, or sent again byte for byte, instead of being
/// sent a second time under another nonce.
#[derive(Debug, Clone)]
pub struct SignedTx {
    /// Its hash.
    pub hash: TxHash,
    /// Its encoded bytes, as `eth_sendRawTransaction` takes them.
    pub raw: Bytes,
}

/// What `/health` shows of the chain.
#[derive(Debug, Clone, Serialize)]
pub struct ChainStatus {
    /// Chain id.
    pub chain_id: u64,
    /// Latest block number.
    pub block_number: u64,
}

/// Runs `call` again (a few times, 20 ms apart) while the node answers that the state it was
/// asked about is gone: Anvil without its history of states (`--prune-history`, the embedded
/// node's setting) keeps only the latest block's state, so a call on "latest" that races the
/// next block is refused with `BlockOutOfRangeError: block height is N+1 but requested was N`.
/// Asked again, it answers from the new block.
pub async fn past_pruned_state<T, E, F, Fut>(mut call: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = std::result::Result<T, E>>,
    E: std::fmt::Display + Into<ChainError>,
{
    let mut tries = 0;
    loop {
        match call().await {
            Ok(v) => return Ok(v),
            Err(e) if tries < 5 && e.to_string().contains("BlockOutOfRange") => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Retries of a call a provider refused for its rate limit (HTTP 429 or 503, or a JSON-RPC
/// rate-limit error), backing off from this many milliseconds.
const RATE_LIMIT_RETRIES: u32 = 8;
const RATE_LIMIT_BACKOFF_MS: u64 = 100;

/// The JSON-RPC methods twinledger calls. Through several URLs each goes to one provider at a
/// time, the best-ranked first and the next when it fails (alloy's "sequential" methods), not
/// to all of them at once: a send must not race itself, and a stale provider that answers first
/// must not win a read.
const METHODS: &[&str] = &[
    "eth_accounts",
    "eth_blockNumber",
    "eth_call",
    "eth_chainId",
    "eth_estimateGas",
    "eth_feeHistory",
    "eth_gasPrice",
    "eth_getBlockByNumber",
    "eth_getCode",
    "eth_getLogs",
    "eth_getTransactionByHash",
    "eth_getTransactionCount",
    "eth_getTransactionReceipt",
    "eth_maxPriorityFeePerGas",
    "eth_sendRawTransaction",
    "eth_sendTransaction",
    "eth_signTransaction",
];

/// The RPC client over `urls` (at least one).
fn rpc_client(urls: &[reqwest::Url]) -> alloy::rpc::client::RpcClient {
    use alloy::rpc::client::ClientBuilder;
    use alloy::transports::http::Http;
    use alloy::transports::layers::{FallbackService, RetryBackoffLayer};
    let retry = RetryBackoffLayer::new(RATE_LIMIT_RETRIES, RATE_LIMIT_BACKOFF_MS, u64::MAX);
    if let [url] = urls {
        return ClientBuilder::default().layer(retry).http(url.clone());
    }
    let transports: Vec<Http<reqwest::Client>> =
        urls.iter().map(|u| Http::new(u.clone())).collect();
    let fallback = FallbackService::new_with_sequential_methods(
        transports,
        urls.len(),
        METHODS.iter().map(|m| (*m).to_owned()).collect(),
    );
    ClientBuilder::default()
        .layer(retry)
        .transport(fallback, false)
}

/// The URL reduced to scheme, host and port: providers carry API keys in the path, the query
/// or the user info.
pub(crate) fn redact_url(url: &reqwest::Url) -> String {
    crate::error::redact_url_str(url.as_str())
}

impl ChainClient {
    /// Connects to `rpc_url`, learns the chain id and resolves the sending account.
    pub async fn connect(rpc_url: &str, signer: SignerConfig) -> Result<Self> {
        Self::connect_or_assume(rpc_url, signer, None).await
    }

    /// Like [`ChainClient::connect`], but when the node cannot be reached and `known` holds the
    /// chain id and sending account learnt on an earlier run, builds the client from those, so
    /// that a service can start (and accept writes as pending) while its node is down.
    pub async fn connect_or_assume(
        rpc_url: &str,
        signer: SignerConfig,
        known: Option<(u64, Address)>,
    ) -> Result<Self> {
        Self::connect_urls(&[rpc_url.to_owned()], signer, known).await
    }

    /// Like [`ChainClient::connect_or_assume`], through several URLs of one chain: each call
    /// goes to the best-ranked URL that answers (alloy's fallback transport ranks them by
    /// success and latency), and calls a provider refuses for its rate limit (429, 503) are
    /// retried with backoff.
    pub async fn connect_urls(
        rpc_urls: &[String],
        signer: SignerConfig,
        known: Option<(u64, Address)>,
    ) -> Result<Self> {
        let mut urls = Vec::with_capacity(rpc_urls.len());
        for rpc_url in rpc_urls {
            let url: reqwest::Url = rpc_url
                .parse()
                .map_err(|_| ChainError::BadUrl("not a URL"))?;
            if !matches!(url.scheme(), "http" | "https") {
                return Err(ChainError::BadUrl("expected an http:// or https:// URL"));
            }
            urls.push(url);
        }
        if urls.is_empty() {
            return Err(ChainError::BadUrl("no URL given"));
        }
        let (provider, from, wallet) = match signer {
            SignerConfig::Unlocked(from) => {
                // The node picks the nonce, as with web3.py's transact(); gas is estimated here
                // because nodes differ in their default (Ganache's 90,000 is too little for a
                // deployment or an updateTwin with a long id).
                let provider = ProviderBuilder::new()
                    .disable_recommended_fillers()
                    .with_gas_estimation()
                    .connect_client(rpc_client(&urls))
                    .erased();
                let from = match from {
                    Some(a) => a,
                    None => match provider.get_accounts().await.map_err(ChainError::from) {
                        Ok(accounts) => *accounts.first().ok_or(ChainError::NoAccounts)?,
                        Err(e) if e.is_retryable() && known.is_some() => {
                            known.map(|(_, a)| a).unwrap_or_default()
                        }
                        Err(e) => return Err(e),
                    },
                };
                (provider, from, None)
            }
            SignerConfig::Local(key) => {
                let from = key.address();
                let wallet = EthereumWallet::from(key);
                // Simple nonce management asks the node for the pending nonce on every send: the
                // senders here are sequential, and a failed send never leaves a gap behind.
                let provider = ProviderBuilder::new()
                    .disable_recommended_fillers()
                    .with_gas_estimation()
                    .with_simple_nonce_management()
                    .fetch_chain_id()
                    .wallet(wallet.clone())
                    .connect_client(rpc_client(&urls))
                    .erased();
                (provider, from, Some(wallet))
            }
        };
        let chain_id = match provider.get_chain_id().await.map_err(ChainError::from) {
            Ok(id) => id,
            Err(e) if e.is_retryable() && known.is_some() => {
                let id = known.map(|(id, _)| id).unwrap_or_default();
                tracing::warn!(target: "twinledger::chain", chain_id = id, error = %e, "chain node unreachable; assuming the chain of the last run");
                id
            }
            Err(e) => return Err(e),
        };
        Ok(Self {
            provider,
            wallet,
            from,
            chain_id,
            rpc_urls: urls,
        })
    }

    /// The provider, for contract bindings.
    pub fn provider(&self) -> &DynProvider {
        &self.provider
    }

    /// The sending account.
    pub fn from(&self) -> Address {
        self.from
    }

    /// The chain id learned at connect time.
    pub fn chain_id(&self) -> u64 {
        self.chain_id
    }

    /// The RPC URL with any credentials removed, for logs and health reports (and how many
    /// fallbacks stand behind it).
    pub fn rpc_url_redacted(&self) -> String {
        let first = self.rpc_urls.first().map(redact_url).unwrap_or_default();
        match self.rpc_urls.len() {
            0 | 1 => first,
            n => format!(
                "{first} (+{} fallback{})",
                n - 1,
                if n > 2 { "s" } else { "" }
            ),
        }
    }

    /// Chain id and latest block, read now.
    pub async fn status(&self) -> Result<ChainStatus> {
        Ok(ChainStatus {
            chain_id: self.chain_id,
            block_number: self.provider.get_block_number().await?,
        })
    }

    /// The sending account's nonce: the next one to use counting transactions waiting in the
    /// node's pool (`pending`), or counting only mined ones.
    pub async fn nonce(&self, pending: bool) -> Result<u64> {
        let call = self.provider.get_transaction_count(self.from);
        Ok(if pending {
            call.pending()
        } else {
            call.latest()
        }
        .await?)
    }

    /// Signs a complete `request` (nonce, gas and fees set) as the sending account: with the
    /// local key, or by the node for its unlocked account (`eth_signTransaction`).
    pub async fn sign(&self, request: TransactionRequest) -> Result<SignedTx> {
        use alloy::eips::eip2718::Encodable2718;
        let request = request.from(self.from).with_chain_id(self.chain_id);
        let raw: Bytes = match &self.wallet {
            Some(wallet) => {
                let envelope =
                    NetworkTransactionBuilder::<alloy::network::Ethereum>::build(request, wallet)
                        .await
                        .map_err(|e| ChainError::Signer(e.to_string()))?;
                envelope.encoded_2718().into()
            }
            None => {
                self.provider
                    .raw_request("eth_signTransaction".into(), (request,))
                    .await?
            }
        };
        Ok(SignedTx {
            hash: alloy::primitives::keccak256(&raw),
            raw,
        })
    }

    /// Sends a signed transaction. A node that already holds it answers so, which counts as
    /// sent: the same bytes sent again are the same transaction.
    pub async fn send_signed(&self, tx: &SignedTx) -> Result<()> {
        match self.provider.send_raw_transaction(&tx.raw).await {
            Ok(_) => Ok(()),
            Err(e) => {
                let text = e.to_string().to_ascii_lowercase();
                if ["already known", "already imported", "known transaction"]
                    .iter()
                    .any(|m| text.contains(m))
                {
                    return Ok(());
                }
                Err(e.into())
            }
        }
    }

    /// The node's suggested EIP-1559 fees (from its fee history: twice the next base fee plus
    /// a priority fee from recent blocks). Anvil without its history of states answers the
    /// fee history of a block it is still mining with `BlockOutOfRangeError` now and then (seen
    /// with 32 concurrent legacy writers); asked again a moment later, it answers.
    ///
    /// Alloy's estimator prices from the latest block's base fee; a fee cap under the next
    /// block's (after a spike) is refused at once ("max fee per gas less than block base fee"),
    /// so the cap is at least twice the next block's base fee plus the priority fee.
    pub async fn suggest_fees(&self) -> Result<alloy::eips::eip1559::Eip1559Estimation> {
        let mut fees = past_pruned_state(|| self.provider.estimate_eip1559_fees()).await?;
        if let Ok(next) = self.next_base_fee().await {
            fees.max_fee_per_gas = fees
                .max_fee_per_gas
                .max(next.saturating_mul(2) + fees.max_priority_fee_per_gas);
        }
        Ok(fees)
    }

    /// The base fee of the next block, in wei per gas: what a transaction must offer at least
    /// to be mined in it.
    pub async fn next_base_fee(&self) -> Result<u128> {
        let history = self
            .provider
            .get_fee_history(1, alloy::eips::BlockNumberOrTag::Latest, &[])
            .await?;
        history
            .next_block_base_fee()
            .ok_or_else(|| ChainError::Rpc("eth_feeHistory gave no base fee".into()))
    }

    /// Fails unless contract code is deployed at `address`.
    pub async fn ensure_code(&self, address: Address) -> Result<()> {
        let code = self.provider.get_code_at(address).await?;
        if code.is_empty() {
            return Err(ChainError::NoContract {
                address: address.to_string(),
                chain_id: self.chain_id,
            });
        }
        Ok(())
    }

    /// Deploys `code` (creation bytecode with any constructor arguments appended) from the
    /// sending account and returns the new contract's address.
    pub async fn deploy(&self, code: Vec<u8>) -> Result<Address> {
        let tx = TransactionRequest::default()
            .from(self.from)
            .with_deploy_code(code);
        let pending = self.provider.send_transaction(tx).await?;
        let receipt = self
            .wait_receipt(*pending.tx_hash(), Duration::from_secs(120))
            .await?;
        if !receipt.status() {
            return Err(ChainError::Reverted(receipt.transaction_hash.to_string()));
        }
        receipt
            .contract_address
            .ok_or_else(|| ChainError::Rpc("deployment receipt has no contract address".into()))
    }

    /// Polls for the receipt of `tx` until it appears or `timeout` passes.
    pub async fn wait_receipt(&self, tx: TxHash, timeout: Duration) -> Result<TransactionReceipt> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut delay = Duration::from_millis(5);
        loop {
            if let Some(r) = self.provider.get_transaction_receipt(tx).await? {
                return Ok(r);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(ChainError::ReceiptTimeout {
                    tx: tx.to_string(),
                    secs: timeout.as_secs(),
                });
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_millis(500));
        }
    }

    /// Whether the node knows transaction `tx` (mined or still waiting in its pool).
    pub async fn knows_transaction(&self, tx: TxHash) -> Result<bool> {
        Ok(self.provider.get_transaction_by_hash(tx).await?.is_some())
    }

    /// Whether the node still holds block `number` (a node that prunes its history, such as
    /// the compacted embedded Anvil, answers no for old blocks).
    pub async fn has_block(&self, number: u64) -> Result<bool> {
        Ok(self
            .provider
            .get_block_by_number(number.into())
            .await?
            .is_some())
    }

    /// The chain's finalized block (the `finalized` tag of proof-of-stake chains), or `None`
    /// when the node does not report one.
    pub async fn finalized_block(&self) -> Result<Option<u64>> {
        match self
            .provider
            .get_block_by_number(alloy::eips::BlockNumberOrTag::Finalized)
            .await
        {
            Ok(block) => Ok(block.map(|b| b.header.number)),
            // A node that does not know the tag refuses it; one that cannot be reached is
            // an error.
            Err(alloy::transports::RpcError::ErrorResp(_)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Timestamp of block `number`, seconds since the Unix epoch.
    pub async fn block_timestamp(&self, number: u64) -> Result<u64> {
        let block = self
            .provider
            .get_block_by_number(number.into())
            .await?
            .ok_or_else(|| ChainError::Rpc(format!("block {number} not found")))?;
        Ok(block.header.timestamp)
    }
}
