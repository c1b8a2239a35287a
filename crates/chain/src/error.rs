//! Chain errors.

use alloy::transports::{RpcError, TransportError};

/// Result of a chain operation.
pub type Result<T, E = ChainError> = std::result::Result<T, E>;

/// Why a chain operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    /// The node could not be reached or did not answer; retrying later can help.
    #[error("chain node unreachable: {0}")]
    Unreachable(String),
    /// The node answered with an error; retrying the same request will not help.
    #[error("chain node refused the request: {0}")]
    Rpc(String),
    /// The transaction was mined but reverted.
    #[error("transaction {0} reverted")]
    Reverted(String),
    /// No receipt appeared in time.
    #[error("no receipt for transaction {tx} after {secs} s")]
    ReceiptTimeout {
        /// The transaction.
        tx: String,
        /// How long we waited.
        secs: u64,
    },
    /// There is no contract code at the configured address.
    #[error("no contract at {address} on chain {chain_id}")]
    NoContract {
        /// The address.
        address: String,
        /// The chain.
        chain_id: u64,
    },
    /// The node has no unlocked account to send from.
    #[error("the node offers no unlocked account; configure a private key or keystore")]
    NoAccounts,
    /// The signing key could not be loaded. Never carries key material.
    #[error("cannot load signing key: {0}")]
    Signer(String),
    /// A local node process could not be started or stopped.
    #[error("local node: {0}")]
    Node(String),
    /// The RPC URL is not a valid http(s) URL.
    #[error("invalid RPC URL {0:?}")]
    BadUrl(String),
}

impl ChainError {
    /// Whether the same operation may succeed later (node down, timeout).
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unreachable(_) | Self::ReceiptTimeout { .. })
    }
}

impl From<TransportError> for ChainError {
    fn from(e: TransportError) -> Self {
        match &e {
            RpcError::ErrorResp(resp) => Self::Rpc(resp.to_string()),
            RpcError::Transport(_) => Self::Unreachable(e.to_string()),
            _ => Self::Rpc(e.to_string()),
        }
    }
}

impl From<alloy::contract::Error> for ChainError {
    fn from(e: alloy::contract::Error) -> Self {
        match e {
            alloy::contract::Error::TransportError(t) => t.into(),
            other => Self::Rpc(other.to_string()),
        }
    }
}

impl From<alloy::providers::PendingTransactionError> for ChainError {
    fn from(e: alloy::providers::PendingTransactionError) -> Self {
        match e {
            alloy::providers::PendingTransactionError::TransportError(t) => t.into(),
            other => Self::Unreachable(other.to_string()),
        }
    }
}
