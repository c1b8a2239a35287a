//! `twinledger audit`: recomputes every record and the tree from the database and compares them
//! with every head anchored on chain.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;

use crate::cli::ChainArgs;
use crate::settings::Settings;

/// Options of `audit`.
#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Chain and contract (default: those of the running embedded node).
    #[command(flatten)]
    pub chain: ChainArgs,
}

impl AuditArgs {
    /// Exit 0 when everything matches, 1 when anything is wrong (2 on errors, from main).
    pub async fn run(self, settings: Settings) -> Result<ExitCode> {
        let (store, anchoring) = super::open_existing(&settings).await?;
        let interactive = std::io::stderr().is_terminal();
        let started = std::time::Instant::now();
        let report = twinledger_ledger::audit(store, &anchoring, move |done, total| {
            if interactive && total > 0 {
                let width = 40;
                let filled = (done.min(total) * width / total) as usize;
                eprint!(
                    "\raudit [{}{}] {done}/{total} records",
                    "#".repeat(filled),
                    " ".repeat(width as usize - filled)
                );
                let _ = std::io::stderr().flush();
            }
        })
        .await
        .context("audit failed")?;
        if interactive {
            eprintln!();
        }
        let elapsed = started.elapsed();
        if self.json {
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            println!(
                "{} records of {} twins read; {} anchored heads compared; {:.2} s",
                report.records,
                report.twins,
                report.anchored_heads_checked,
                elapsed.as_secs_f64()
            );
            if let Some(h) = &report.chain_head {
                println!("latest head on chain: size {}, root {}", h.size, h.root);
            }
            match &report.divergence {
                Some(d) => println!(
                    "DIVERGED between log sizes {} and {}: {}",
                    d.last_matching_size, d.first_mismatching_size, d.reason
                ),
                None => println!("the log reproduces every anchored head"),
            }
            for p in &report.problems {
                let at = |v: Option<u64>| v.map_or_else(|| "?".into(), |v| v.to_string());
                println!(
                    "  log index {} (twin {}, version {}): {}",
                    at(p.index),
                    p.twin_id.as_deref().unwrap_or("?"),
                    at(p.version),
                    p.reason
                );
            }
            println!(
                "{}",
                if report.is_clean() {
                    "CLEAN"
                } else {
                    "PROBLEMS FOUND"
                }
            );
        }
        Ok(if report.is_clean() {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        })
    }
}
