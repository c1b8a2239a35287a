//! The seed's contract, `DigitalTwinStorage`, used unchanged ("legacy mode"): one `updateTwin`
//! transaction per record.

use std::time::Duration;

use alloy::primitives::{Address, TxHash, keccak256};
use alloy::providers::Provider;
use alloy::sol;
use serde::Serialize;

use crate::{ChainClient, ChainError, Result, SignedTx};

sol!(
    #[sol(rpc)]
    #[allow(missing_docs)]
    DigitalTwinStorage,
    "../../contracts/out/DigitalTwinStorage.json"
);

/// What the seed contract stores for one twin (`getTwin`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LegacyTwin {
    /// The id as stored; empty when the twin was never written.
    pub id: String,
    /// The `_timestamp` argument of the latest `updateTwin`.
    pub timestamp: String,
    /// The `_dataHash` argument of the latest `updateTwin`.
    pub data_hash: String,
}

/// A mined `updateTwin` transaction and the `TwinUpdated` event it emitted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LegacyReceipt {
    /// Transaction hash.
    pub tx_hash: TxHash,
    /// Block holding it.
    pub block_number: u64,
    /// That block's timestamp.
    pub block_timestamp: u64,
    /// keccak256 of the twin id (the event's indexed topic).
    pub id_topic: alloy::primitives::B256,
    /// The event's timestamp.
    pub timestamp: String,
    /// The event's data hash.
    pub data_hash: String,
}

impl LegacyReceipt {
    /// Whether this receipt records exactly `(id, timestamp, data_hash)`.
    pub fn records(&self, id: &str, timestamp: &str, data_hash: &str) -> bool {
        self.id_topic == keccak256(id.as_bytes())
            && self.timestamp == timestamp
            && self.data_hash == data_hash
    }
}

/// The seed's contract at one address.
#[derive(Debug, Clone)]
pub struct LegacyContract {
    client: ChainClient,
    address: Address,
}

impl LegacyContract {
    /// Deploys a new `DigitalTwinStorage` and returns its address.
    pub async fn deploy(client: &ChainClient) -> Result<Address> {
        client.deploy(DigitalTwinStorage::BYTECODE.to_vec()).await
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

    /// Sends `updateTwin(id, timestamp, data_hash)` and returns once the node accepted it.
    pub async fn send_update(&self, id: &str, timestamp: &str, data_hash: &str) -> Result<TxHash> {
        let contract = DigitalTwinStorage::new(self.address, self.client.provider());
        let pending = contract
            .updateTwin(id.to_owned(), timestamp.to_owned(), data_hash.to_owned())
            .from(self.client.from())
            .send()
            .await?;
        Ok(*pending.tx_hash())
    }

    /// Builds and signs `updateTwin(id, timestamp, data_hash)` with `nonce`, gas estimated by the
    /// node and its suggested fees, without sending it ([`ChainClient::send_signed`] sends it):
    /// the hash is known, and can be noted, before anything goes out.
    pub async fn prepare_update(
        &self,
        id: &str,
        timestamp: &str,
        data_hash: &str,
        nonce: u64,
    ) -> Result<SignedTx> {
        let contract = DigitalTwinStorage::new(self.address, self.client.provider());
        let call = contract
            .updateTwin(id.to_owned(), timestamp.to_owned(), data_hash.to_owned())
            .from(self.client.from());
        // Estimated on the latest block, without the nonce (one ahead of the mined count, as a
        // pipelined one is, is refused), again if the block moved on meanwhile.
        let gas = crate::client::past_pruned_state(|| async {
            call.clone()
                .block(alloy::eips::BlockId::latest())
                .estimate_gas()
                .await
        })
        .await?;
        let call = call.nonce(nonce);
        let fees = self.client.suggest_fees().await?;
        let request = call
            .gas(gas)
            .max_fee_per_gas(fees.max_fee_per_gas)
            .max_priority_fee_per_gas(fees.max_priority_fee_per_gas)
            .into_transaction_request();
        self.client.sign(request).await
    }

    /// Waits for `tx` to be mined and decodes its `TwinUpdated` event.
    pub async fn wait_update(&self, tx: TxHash, timeout: Duration) -> Result<LegacyReceipt> {
        let receipt = self.client.wait_receipt(tx, timeout).await?;
        self.decode_receipt(tx, &receipt).await
    }

    /// Reads the receipt of a past `updateTwin`; `None` if the chain does not know `tx`.
    pub async fn update_receipt(&self, tx: TxHash) -> Result<Option<LegacyReceipt>> {
        match self.client.provider().get_transaction_receipt(tx).await? {
            Some(r) => Ok(Some(self.decode_receipt(tx, &r).await?)),
            None => Ok(None),
        }
    }

    async fn decode_receipt(
        &self,
        tx: TxHash,
        receipt: &alloy::rpc::types::TransactionReceipt,
    ) -> Result<LegacyReceipt> {
        if !receipt.status() {
            return Err(ChainError::Reverted(tx.to_string()));
        }
        let block_number = receipt
            .block_number
            .ok_or_else(|| ChainError::Rpc(format!("receipt of {tx} has no block number")))?;
        let event = receipt
            .inner
            .logs()
            .iter()
            .filter(|l| l.address() == self.address)
            .find_map(|l| l.log_decode::<DigitalTwinStorage::TwinUpdated>().ok())
            .ok_or_else(|| ChainError::Rpc(format!("transaction {tx} emitted no TwinUpdated")))?;
        let event = event.inner.data;
        let block_timestamp = self.client.block_timestamp(block_number).await?;
        Ok(LegacyReceipt {
            tx_hash: tx,
            block_number,
            block_timestamp,
            id_topic: event.id,
            timestamp: event.timestamp,
            data_hash: event.dataHash,
        })
    }

    /// `getTwin(id)`: what the contract holds for the twin now.
    pub async fn get_twin(&self, id: &str) -> Result<LegacyTwin> {
        let contract = DigitalTwinStorage::new(self.address, self.client.provider());
        let r = contract.getTwin(id.to_owned()).call().await?;
        Ok(LegacyTwin {
            id: r._0,
            timestamp: r._1,
            data_hash: r._2,
        })
    }
}
