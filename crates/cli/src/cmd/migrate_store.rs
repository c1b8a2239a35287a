//! `twinledger migrate-store`: copies a ledger to another database (SQLite to PostgreSQL, or
//! back) table by table as stored, and proves the copy against the source.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::Args;
use twinledger_core::Bands;
use twinledger_store::{
    CopyError, CopyProgress, PostgresStore, SqliteStore, Store, Table, copy_ledger,
};

use crate::settings::Settings;

/// Options of `migrate-store`.
#[derive(Debug, Args)]
pub struct MigrateStoreArgs {
    /// The ledger to copy: a `postgres://` (or `postgresql://`) URL, a SQLite file, or a data
    /// directory (its `twinledger.db`). Stop the service that writes it first.
    #[arg(long, value_name = "DATABASE")]
    pub from: String,
    /// Where to copy it, which must hold nothing yet: a PostgreSQL URL (an empty database), or
    /// a SQLite file or data directory (the file is created).
    #[arg(long, value_name = "DATABASE")]
    pub to: String,
}

/// A database named on the command line.
#[derive(Debug)]
enum Location {
    Postgres(String),
    Sqlite(PathBuf),
}

impl Location {
    fn parse(arg: &str) -> Self {
        if arg.starts_with("postgres://") || arg.starts_with("postgresql://") {
            return Self::Postgres(arg.to_owned());
        }
        let path = Path::new(arg);
        // A data directory holds its database under the name `serve` gives it.
        if path.is_dir() {
            Self::Sqlite(path.join("twinledger.db"))
        } else {
            Self::Sqlite(path.to_owned())
        }
    }

    /// Opens the database; a SQLite source must exist already (opening creates a file).
    async fn open(&self, bands: Bands, source: bool) -> Result<Arc<dyn Store>> {
        Ok(match self {
            Self::Postgres(url) => Arc::new(
                PostgresStore::connect(url, bands)
                    .await
                    .context("cannot open the PostgreSQL database")?,
            ),
            Self::Sqlite(path) => {
                if source && !path.is_file() {
                    bail!("no SQLite database at {}", path.display());
                }
                let store = SqliteStore::open_with(path, bands)
                    .with_context(|| format!("cannot open {}", path.display()))?;
                Arc::new(store)
            }
        })
    }

    /// How to run `audit` on the copy.
    fn audit_hint(&self) -> String {
        match self {
            Self::Postgres(_) => "twinledger audit --database <the --to URL>".into(),
            Self::Sqlite(path) => match path.parent() {
                Some(dir) if path.file_name() == Some("twinledger.db".as_ref()) => {
                    format!("twinledger audit --data-dir {}", dir.display())
                }
                _ => "twinledger audit, with the copy as the data directory's twinledger.db".into(),
            },
        }
    }
}

impl MigrateStoreArgs {
    /// Exit 0 once the copy is made and proved (2 on errors, a refused target included, from
    /// main).
    pub async fn run(self, settings: Settings) -> Result<ExitCode> {
        let bands = settings.congruence.bands()?;
        let (from, to) = (Location::parse(&self.from), Location::parse(&self.to));
        let source = from.open(bands.clone(), true).await.context("the source")?;
        let target = to.open(bands, false).await.context("the target")?;
        let started = std::time::Instant::now();
        let report = match copy_ledger(source.as_ref(), target.as_ref(), progress()).await {
            Ok(report) => report,
            // Nothing was written: the message says what the target holds.
            Err(e @ CopyError::TargetNotEmpty(_)) => return Err(e.into()),
            Err(e) => {
                return Err(e).context(
                    "the target holds an unfinished or unproven copy: empty it (drop and \
                     recreate the database, or delete the file) before trying again",
                );
            }
        };
        let elapsed = started.elapsed();
        let rows: Vec<String> = report
            .rows
            .iter()
            .map(|(table, n)| format!("{n} {table}"))
            .collect();
        println!(
            "copied {} in {:.2} s",
            rows.join(", "),
            elapsed.as_secs_f64()
        );
        println!(
            "the same on both sides: {} records of {} twins; tree head size {}, root {}; the \
             root at {} anchored sizes",
            report.rows_of(Table::Records),
            report.rows_of(Table::Twins),
            report.head.size,
            report.head.root,
            report.anchored_sizes.len()
        );
        if source.meta("mode").await?.as_deref() != Some("legacy") {
            println!("check the copy against the chain: {}", to.audit_hint());
        }
        Ok(ExitCode::SUCCESS)
    }
}

/// Progress on stderr: a line every so many rows of each table, and when heads are compared.
fn progress() -> impl FnMut(CopyProgress) {
    const EVERY: u64 = 50_000;
    let mut last: Option<(Table, u64)> = None;
    move |p| match p {
        CopyProgress::Copied { table, rows } => {
            let shown = match last {
                Some((t, shown)) if t == table => shown,
                _ => 0,
            };
            if rows / EVERY > shown / EVERY || shown == 0 {
                eprintln!("copying {table}: {rows} rows");
                last = Some((table, rows));
            }
        }
        CopyProgress::Compared { done, total } if done == total || done % 100 == 0 => {
            eprintln!("compared {done} of {total} tree heads");
        }
        CopyProgress::Compared { .. } => {}
    }
}
