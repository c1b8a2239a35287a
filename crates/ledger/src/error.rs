//! Ledger errors.

use twinledger_chain::ChainError;
use twinledger_store::StoreError;

/// Result of a ledger operation.
pub type Result<T, E = LedgerError> = std::result::Result<T, E>;

/// Why a ledger operation failed.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// The database failed; nothing was acknowledged.
    #[error("storage unavailable: {0}")]
    Store(String),
    /// The chain failed. For a write, the record is stored as pending and will be anchored when
    /// the chain is back.
    #[error("{0}")]
    Chain(String),
    /// The chain node could not be reached; retrying later can help.
    #[error("chain unavailable: {0}")]
    ChainUnavailable(String),
    /// The state cannot be hashed under the requested scheme.
    #[error("{0}")]
    Unhashable(String),
    /// The twin does not exist.
    #[error("twin {0} not found")]
    TwinNotFound(String),
    /// The twin exists but not this version.
    #[error("twin {0} has no version {1}")]
    VersionNotFound(String, u64),
    /// An idempotency key was reused for a different request.
    #[error("Idempotency-Key {0:?} was already used for a different request")]
    IdempotencyMismatch(String),
    /// The request cannot be served in the ledger's current state (for example a proof of a
    /// record not anchored yet).
    #[error("{0}")]
    Conflict(String),
    /// The database's log and the chain's anchored heads disagree.
    #[error("{0}")]
    Diverged(String),
    /// A report's signature is missing, does not hold, or is not by the twin's device key.
    #[error("{0}")]
    Signature(String),
    /// The request is malformed in a way only the ledger can tell (bad tolerances).
    #[error("{0}")]
    Invalid(String),
    /// The ledger is shutting down.
    #[error("ledger is shutting down")]
    ShuttingDown,
}

impl From<StoreError> for LedgerError {
    fn from(e: StoreError) -> Self {
        Self::Store(e.to_string())
    }
}

impl From<ChainError> for LedgerError {
    fn from(e: ChainError) -> Self {
        if e.is_retryable() {
            Self::ChainUnavailable(e.to_string())
        } else {
            Self::Chain(e.to_string())
        }
    }
}
