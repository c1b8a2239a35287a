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
    /// The contract refused the call (a revert with a known reason); retrying will not help.
    #[error("{0}")]
    Refused(String),
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
    /// A nonce this service sent with was used by a transaction it did not send: another process
    /// is sending with the same key.
    #[error(
        "nonce {nonce} of account {account} was used by a transaction this service did not send; \
         another process is sending with the same key"
    )]
    NonceTaken {
        /// The account.
        account: String,
        /// The nonce.
        nonce: u64,
    },
    /// The RPC URL is not a valid http(s) URL (the URL itself is not repeated: it may hold a key).
    #[error("invalid RPC URL: {0}")]
    BadUrl(&'static str),
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
            RpcError::ErrorResp(resp) => Self::Rpc(redact_urls(&resp.to_string())),
            RpcError::Transport(_) => Self::Unreachable(redact_urls(&e.to_string())),
            _ => Self::Rpc(redact_urls(&e.to_string())),
        }
    }
}

/// Replaces every http(s) URL in `msg` by its scheme, host and port: RPC providers put API keys
/// in the path, the query or the user info, and error texts (reqwest's among them) quote the
/// whole URL.
pub(crate) fn redact_urls(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len());
    let mut rest = msg;
    while let Some(pos) = rest
        .find("http://")
        .into_iter()
        .chain(rest.find("https://"))
        .min()
    {
        out.push_str(&rest[..pos]);
        let tail = &rest[pos..];
        let end = tail
            .find(|c: char| c.is_whitespace() || matches!(c, ')' | '"' | '\'' | '>' | ','))
            .unwrap_or(tail.len());
        out.push_str(&redact_url_str(&tail[..end]));
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// `scheme://host:port/` of a URL, or a placeholder if it does not parse.
pub(crate) fn redact_url_str(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) => match (u.host_str(), u.port()) {
            (Some(h), Some(p)) => format!("{}://{h}:{p}/", u.scheme()),
            (Some(h), None) => format!("{}://{h}/", u.scheme()),
            _ => "<url>".into(),
        },
        Err(_) => "<url>".into(),
    }
}

impl From<alloy::contract::Error> for ChainError {
    fn from(e: alloy::contract::Error) -> Self {
        match e {
            alloy::contract::Error::TransportError(t) => t.into(),
            other => Self::Rpc(redact_urls(&other.to_string())),
        }
    }
}

impl From<alloy::providers::PendingTransactionError> for ChainError {
    fn from(e: alloy::providers::PendingTransactionError) -> Self {
        match e {
            alloy::providers::PendingTransactionError::TransportError(t) => t.into(),
            other => Self::Unreachable(redact_urls(&other.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::redact_urls;

    #[test]
    fn urls_lose_user_path_and_query() {
        let msg = "error sending request for url (https://user:pw@rpc.example:8545/v3/KEY123?key=SECRET); x";
        let red = redact_urls(msg);
        assert_eq!(
            red,
            "error sending request for url (https://rpc.example:8545/); x"
        );
        assert_eq!(
            redact_urls("http://127.0.0.1:9/a http://h/b"),
            "http://127.0.0.1:9/ http://h/"
        );
        assert_eq!(redact_urls("no url here"), "no url here");
    }
}
