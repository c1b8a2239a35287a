//! `twinledger verify`: checks a twin's whole history against its hashes and the chain, from
//! the database directly.

use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use twinledger_core::TwinId;
use twinledger_ledger::{Integrity, Verifier};

use crate::cli::ChainArgs;
use crate::settings::Settings;

/// Options of `verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The twin.
    pub twin_id: String,
    /// Print the verdict as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Chain and contract (default: those of the running embedded node).
    #[command(flatten)]
    pub chain: ChainArgs,
}

impl VerifyArgs {
    /// Exit 0 Valid, 1 Tampered, 3 Pending (2 on errors, from main).
    pub async fn run(self, settings: Settings) -> Result<ExitCode> {
        let twin_id = TwinId::new(self.twin_id).context("invalid TWIN_ID")?;
        let (store, contract) = super::open_existing(&settings).await?;
        let verifier = Verifier::new(store, contract);
        let verdict = verifier.verify_twin(&twin_id).await?;
        if self.json {
            println!("{}", serde_json::to_string_pretty(&verdict)?);
        } else {
            println!(
                "{}: {:?} ({} versions checked)",
                verdict.twin_id, verdict.integrity, verdict.versions
            );
            if !verdict.pending.is_empty() {
                println!(
                    "  pending (not anchored yet): versions {:?}",
                    verdict.pending
                );
            }
            for p in &verdict.problems {
                let version = p
                    .version
                    .map(|v| v.to_string())
                    .unwrap_or_else(|| "?".into());
                let index = p.index.map(|i| i.to_string()).unwrap_or_else(|| "?".into());
                println!("  version {version} (log index {index}): {}", p.reason);
            }
        }
        Ok(match verdict.integrity {
            Integrity::Valid => ExitCode::SUCCESS,
            Integrity::Tampered => ExitCode::from(1),
            Integrity::Pending => ExitCode::from(3),
        })
    }
}
