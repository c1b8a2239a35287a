//! `twinledger audit`: recomputes every record and the tree from the database and compares them
//! with every head anchored on chain.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use twinledger_ledger::{AuditCheckpoint, AuditEvent, AuditPlan, AuditStart};

use crate::cli::ChainArgs;
use crate::settings::Settings;

/// Options of `audit`.
#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Begin at this log index: the tree over the records before it is taken from the stored
    /// nodes, and the first anchored head at or past it checks them.
    #[arg(long, value_name = "INDEX", conflicts_with = "resume")]
    pub from: Option<u64>,
    /// Continue an interrupted audit from the checkpoint it left in the data directory
    /// (`audit-checkpoint.json`, written every million records and removed when an audit ends).
    #[arg(long)]
    pub resume: bool,
    /// Stop at this log index, leaving a checkpoint that `--resume` continues from (an audit
    /// of a large log in parts).
    #[arg(long, value_name = "INDEX")]
    pub stop_at: Option<u64>,
    /// Records between checkpoints.
    #[arg(long, value_name = "RECORDS", default_value_t = 1_000_000)]
    pub checkpoint_every: u64,
    /// Chain and contract (default: those of the running embedded node).
    #[command(flatten)]
    pub chain: ChainArgs,
}

impl AuditArgs {
    /// Exit 0 when everything matches, 1 when anything is wrong (2 on errors, from main).
    pub async fn run(self, settings: Settings) -> Result<ExitCode> {
        let checkpoint_path = settings.data_dir.join("audit-checkpoint.json");
        let start = if self.resume {
            let text = std::fs::read(&checkpoint_path).with_context(|| {
                format!(
                    "no interrupted audit to resume: cannot read {}",
                    checkpoint_path.display()
                )
            })?;
            let checkpoint: AuditCheckpoint = serde_json::from_slice(&text).with_context(|| {
                format!("{} is not an audit checkpoint", checkpoint_path.display())
            })?;
            AuditStart::Checkpoint(checkpoint)
        } else {
            match self.from {
                Some(i) => AuditStart::Index(i),
                None => AuditStart::Beginning,
            }
        };
        let (store, anchoring) = super::open_existing(&settings).await?;
        let interactive = std::io::stderr().is_terminal();
        let started = std::time::Instant::now();
        let keep = checkpoint_path.clone();
        let plan = AuditPlan {
            start,
            stop_at: self.stop_at,
            checkpoint_every: self.checkpoint_every,
        };
        let report = twinledger_ledger::audit(store, &anchoring, plan, move |event| match event {
            AuditEvent::Progress { done, total } => {
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
            }
            AuditEvent::Checkpoint(c) => {
                if let Err(e) = save(&keep, c) {
                    tracing::warn!(error = %e, "audit: cannot write the checkpoint");
                }
            }
        })
        .await
        .context("audit failed")?;
        if interactive {
            eprintln!();
        }
        // An audit that read to the end leaves nothing to resume.
        if report.stopped_at.is_none()
            && let Err(e) = std::fs::remove_file(&checkpoint_path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(error = %e, "audit: cannot remove the checkpoint");
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
            if let Some(at) = report.stopped_at {
                println!(
                    "stopped at log index {at}; `twinledger audit --resume` continues from there"
                );
            }
            println!(
                "{}",
                if report.is_clean() && report.stopped_at.is_some() {
                    "CLEAN SO FAR"
                } else if report.is_clean() {
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

/// Writes `checkpoint` so that a crash mid-write leaves the previous one whole.
fn save(path: &Path, checkpoint: &AuditCheckpoint) -> Result<()> {
    let partial = PathBuf::from(format!("{}.partial", path.display()));
    std::fs::write(&partial, serde_json::to_vec(checkpoint)?)?;
    std::fs::rename(&partial, path)?;
    Ok(())
}
