//! `twinledger bench --database postgres`: the write path on PostgreSQL beside SQLite, in one
//! run on this machine: one node on each (each with its embedded Anvil), three nodes on one
//! database and one Anvil with the clients spread over them, and one node on a primary with a
//! synchronous standby. Each round loads every set-up in turn; ratios are taken within a round
//! and reported as medians. For each load the nodes' own metrics tell how many records a batch
//! carried and how long a batch held the log's serialization point.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde::Serialize;
use serde_json::Value;
use twinledger_chain::{LocalNode, LocalNodeConfig, NodeKind};
use twinledger_store::postgres::LocalCluster;

use super::report::{Latency, ReadRounds, ScalePoint, print_scale};
use super::{BenchArgs, Service, machine, tree_size};
use crate::settings::Settings;

/// What `bench --database postgres` measured.
#[derive(Debug, Default, Serialize)]
pub struct DatabaseReport {
    /// Machine and versions.
    pub machine: Value,
    /// Concurrent clients.
    pub writers: usize,
    /// Records written per load.
    pub records: u64,
    /// Each round's figures.
    pub rounds: Vec<DatabaseRound>,
    /// Median of the rounds' PostgreSQL (one node) over SQLite.
    pub postgres_over_sqlite_median: f64,
    /// Median of the rounds' three nodes over one node, both on PostgreSQL.
    pub three_nodes_over_one_median: f64,
    /// The read path on SQLite, one node (after the write rounds).
    pub reads_sqlite: ReadRounds,
    /// The read path on PostgreSQL, one node.
    pub reads_postgres: ReadRounds,
    /// The scale curve on SQLite, one node, from the log the rounds left.
    pub scale_sqlite: Vec<ScalePoint>,
    /// The scale curve on PostgreSQL, one node.
    pub scale_postgres: Vec<ScalePoint>,
}

/// One round: the same load on each set-up.
#[derive(Debug, Default, Serialize)]
pub struct DatabaseRound {
    /// SQLite, one node.
    pub sqlite: SetupLoad,
    /// PostgreSQL, one node.
    pub postgres: SetupLoad,
    /// PostgreSQL, three nodes on one database.
    pub three_nodes: SetupLoad,
    /// PostgreSQL, one node, on a primary with a synchronous standby.
    pub with_standby: SetupLoad,
    /// PostgreSQL over SQLite, this round.
    pub postgres_over_sqlite: f64,
    /// Three nodes over one, this round.
    pub three_nodes_over_one: f64,
}

/// One set-up's figures under the full load.
#[derive(Debug, Default, Serialize)]
pub struct SetupLoad {
    /// Records acknowledged per second.
    pub acked_per_s: f64,
    /// POST latency.
    pub post: Latency,
    /// Submissions per committed batch, on average.
    pub batch_records: f64,
    /// How long a batch held the log's serialization point, on average, in ms.
    pub lock_held_ms: f64,
}

impl BenchArgs {
    /// Measures SQLite, PostgreSQL and three PostgreSQL nodes, `rounds` times.
    pub(super) async fn databases(
        &self,
        work: &Path,
        settings: &Settings,
    ) -> Result<DatabaseReport> {
        let n = self.records;
        let twins = (n / 10).max(1);
        eprintln!(
            "bench: SQLite and PostgreSQL, {} writers, {n} records a load",
            self.writers
        );
        let sqlite = Service::start(&work.join("sqlite"), &[], "").await?;
        let one = start_cluster().await?;
        let one_url = one.url("postgres");
        let postgres =
            Service::start(&work.join("postgres"), &["--database", &one_url], "").await?;
        let three = start_cluster().await?;
        let three_url = three.url("postgres");
        let chain = LocalNode::start(&LocalNodeConfig {
            kind: NodeKind::Anvil,
            program: crate::chain::find_anvil(settings)?,
            port: 0,
            state_path: None,
            reorg_depth: None,
            extra_args: Vec::new(),
        })
        .await
        .context("cannot start Anvil for the three nodes")?;
        let rpc = chain.url().to_owned();
        deploy(&work.join("nodes-0"), &rpc, &three_url).await?;
        let mut nodes = Vec::new();
        for k in 0..3 {
            let dir = work.join(format!("nodes-{k}"));
            // On a chain of its own a service wants API keys for writes; the load sends none.
            let open = "[auth]\nwrites = false\n";
            nodes.push(
                Service::start(&dir, &["--rpc", &rpc, "--database", &three_url], open).await?,
            );
        }
        let (primary, standby) = start_replicated().await?;
        let replicated_url = primary.url("postgres");
        let with_standby =
            Service::start(&work.join("standby"), &["--database", &replicated_url], "").await?;
        let mut report = DatabaseReport {
            machine: machine(),
            writers: self.writers,
            records: n,
            ..DatabaseReport::default()
        };
        for round in 1..=self.rounds.max(1) {
            eprintln!("bench: round {round} of {}", self.rounds.max(1));
            let s = self.load(std::slice::from_ref(&sqlite), n, twins).await?;
            let p = self.load(std::slice::from_ref(&postgres), n, twins).await?;
            let t = self.load(&nodes, n, twins).await?;
            let r = self
                .load(std::slice::from_ref(&with_standby), n, twins)
                .await?;
            report.rounds.push(DatabaseRound {
                postgres_over_sqlite: p.acked_per_s / s.acked_per_s,
                three_nodes_over_one: t.acked_per_s / p.acked_per_s,
                sqlite: s,
                postgres: p,
                three_nodes: t,
                with_standby: r,
            });
        }
        report.postgres_over_sqlite_median = super::median(
            report
                .rounds
                .iter()
                .map(|r| r.postgres_over_sqlite)
                .collect(),
        );
        report.three_nodes_over_one_median = super::median(
            report
                .rounds
                .iter()
                .map(|r| r.three_nodes_over_one)
                .collect(),
        );
        for node in nodes {
            node.stop().await?;
        }
        with_standby.stop().await?;
        drop((primary, standby));
        eprintln!("bench: reads on SQLite");
        report.reads_sqlite = self.read_rounds(&sqlite).await?;
        eprintln!("bench: reads on PostgreSQL");
        report.reads_postgres = self.read_rounds(&postgres).await?;
        for (svc, curve, name) in [
            (&sqlite, &mut report.scale_sqlite, "SQLite"),
            (&postgres, &mut report.scale_postgres, "PostgreSQL"),
        ] {
            let mut size = tree_size(svc).await?;
            for &target in &self.scale {
                eprintln!("bench: scale curve on {name} at {target} records");
                curve.push(self.scale_point(svc, &mut size, target).await?);
            }
        }
        postgres.stop().await?;
        sqlite.stop().await?;
        chain.stop(Duration::from_secs(10)).await?;
        drop((one, three));
        Ok(report)
    }
}

impl BenchArgs {
    /// The full load spread over `services` (nodes of one ledger), with what their metrics say
    /// about the batches it made.
    async fn load(&self, services: &[Service], n: u64, twins: u64) -> Result<SetupLoad> {
        let before = batch_totals(services).await?;
        let from = tree_size(&services[0]).await?;
        let bases: Vec<String> = services.iter().map(|s| s.base.clone()).collect();
        let load = self
            .full_load_over(&bases, &services[0].base, from, n, twins)
            .await?;
        let after = batch_totals(services).await?;
        let batches = (after.batches - before.batches).max(1.0);
        Ok(SetupLoad {
            acked_per_s: load.acked_per_s,
            post: load.post,
            batch_records: (after.submissions - before.submissions) / batches,
            lock_held_ms: (after.lock_seconds - before.lock_seconds) * 1000.0 / batches,
        })
    }
}

/// Batches committed, submissions in them and seconds they held the log, summed over nodes.
#[derive(Debug, Default)]
struct BatchTotals {
    batches: f64,
    submissions: f64,
    lock_seconds: f64,
}

async fn batch_totals(services: &[Service]) -> Result<BatchTotals> {
    let c = super::client()?;
    let mut t = BatchTotals::default();
    for svc in services {
        let page = c.get(svc.url("/metrics")).send().await?.text().await?;
        let series = |name: &str| -> f64 {
            page.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
                .unwrap_or(0.0)
        };
        t.batches += series("twinledger_write_batch_records_count");
        t.submissions += series("twinledger_write_batch_records_sum");
        t.lock_seconds += series("twinledger_write_log_lock_seconds_sum");
    }
    Ok(t)
}

/// A primary whose commits wait for a synchronous standby, and the standby.
async fn start_replicated() -> Result<(LocalCluster, LocalCluster)> {
    tokio::task::spawn_blocking(|| {
        let primary = LocalCluster::start_with(&["synchronous_standby_names='*'"])?;
        let standby = primary.standby()?;
        Ok::<_, twinledger_store::postgres::ClusterError>((primary, standby))
    })
    .await
    .context("cluster task")?
    .context("cannot start PostgreSQL with a standby")
}

/// A throwaway PostgreSQL cluster (initdb and pg_ctl block, so off the async workers).
async fn start_cluster() -> Result<LocalCluster> {
    tokio::task::spawn_blocking(LocalCluster::start)
        .await
        .context("cluster task")?
        .context("cannot start PostgreSQL (is Debian's postgresql installed?)")
}

/// `twinledger deploy` of the log contract on `rpc`, recorded in the database at `url`.
async fn deploy(dir: &Path, rpc: &str, url: &str) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let exe = std::env::current_exe().context("cannot find the twinledger executable")?;
    let out = tokio::process::Command::new(exe)
        .args(["deploy", "--rpc", rpc, "--database", url, "--data-dir"])
        .arg(dir)
        .output()
        .await?;
    if !out.status.success() {
        bail!("deploy failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

/// The report as a table.
pub(super) fn print_databases(r: &DatabaseReport) {
    println!("machine: {}", r.machine);
    println!("writers: {}, records per load: {}\n", r.writers, r.records);
    println!(
        "{:<6} {:<24} {:>10} {:>18} {:>14} {:>12}",
        "round", "set-up", "rec/s", "p50/p99 POST ms", "records/batch", "lock held ms"
    );
    for (i, x) in r.rounds.iter().enumerate() {
        for (name, l) in [
            ("SQLite, 1 node", &x.sqlite),
            ("PostgreSQL, 1 node", &x.postgres),
            ("PostgreSQL, 3 nodes", &x.three_nodes),
            ("PostgreSQL + sync standby", &x.with_standby),
        ] {
            println!(
                "{:<6} {:<24} {:>10.0} {:>18} {:>14.1} {:>12.2}",
                i + 1,
                name,
                l.acked_per_s,
                format!("{:.1} / {:.1}", l.post.p50_ms, l.post.p99_ms),
                l.batch_records,
                l.lock_held_ms
            );
        }
    }
    println!(
        "\nmedian PostgreSQL / SQLite: {:.2}; median three nodes / one: {:.2}",
        r.postgres_over_sqlite_median, r.three_nodes_over_one_median
    );
    println!("\nread path, over the HTTP ceiling of the same round (median):");
    for (name, x) in [
        ("SQLite", &r.reads_sqlite),
        ("PostgreSQL", &r.reads_postgres),
    ] {
        println!(
            "  {name:<11} verify {:.3}  proof bundles {:.3}",
            x.verify_over_ceiling_median, x.proof_over_ceiling_median
        );
    }
    for (name, curve) in [
        ("SQLite", &r.scale_sqlite),
        ("PostgreSQL", &r.scale_postgres),
    ] {
        if !curve.is_empty() {
            println!("\nscale curve, {name}:");
            print_scale(curve);
        }
    }
}
