//! The twinledger ledger: where records are accepted, made durable, anchored and verified.
//!
//! [`Ledger::record`] hands a state to the group-commit writer (one thread, one SQLite transaction
//! for every batch of concurrent submissions), which acknowledges only after the commit. The
//! anchorer then takes pending records from the store in log order and puts them on chain; in
//! legacy mode that is the seed's contract, one `updateTwin` transaction per record. Verification
//! recomputes everything from the stored rows and compares it with the chain.

mod access;
mod anchor;
mod audit;
mod error;
mod ingestion;
mod ledger;
pub mod metrics;
mod retention;
mod verify;
mod writer;

pub use access::{AccessError, Caller, IssuedKey, Scope, issue_key};
pub use anchor::log::AnchorConfig;
pub use anchor::{AnchorInfo, AnchoredSizes, AnchoringStatus};
pub use audit::{
    AuditCheckpoint, AuditEvent, AuditPlan, AuditProblem, AuditReport, AuditStart, Divergence,
    audit,
};
pub use error::{LedgerError, Result};
pub use ingestion::{IngestionReport, IngestionStats, Rejected, Rejection};
pub use ledger::{Anchoring, Health, Ledger, LedgerConfig, Status, Submission, Wait, node_name};
pub use metrics::LedgerMetrics;
pub use verify::{Integrity, Problem, SeedCheck, TwinVerdict, Verifier};
