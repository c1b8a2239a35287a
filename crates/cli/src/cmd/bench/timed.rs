//! `twinledger bench --block-time SECONDS`: anchoring against an Anvil that mines on a timer,
//! as real chains do. For each block time: the lag from acknowledgement to anchored for one
//! caller waiting with `?wait=anchored` and at the full write rate, in milliseconds and in
//! block times, with records per anchor and gas per record.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::Serialize;
use serde_json::Value;
use twinledger_chain::{LocalNode, LocalNodeConfig, NodeKind};

use super::load::{drive, record_request, written_index};
use super::report::Latency;
use super::{BenchArgs, Service, anchor_gas, client, expect_ok, watch_anchoring};

/// One block time's figures.
#[derive(Debug, Default, Serialize)]
pub struct TimedChain {
    /// Seconds between blocks.
    pub block_time_s: f64,
    /// One caller posting with `?wait=anchored`, one request after the other.
    pub one_caller: Latency,
    /// Requests that caller made.
    pub one_caller_records: u64,
    /// Its p50 and p99 in block times.
    pub one_caller_p50_blocks: f64,
    /// See `one_caller_p50_blocks`.
    pub one_caller_p99_blocks: f64,
    /// Records written as fast as the writers go.
    pub full_rate_records: u64,
    /// Records acknowledged per second at the full rate.
    pub full_rate_acked_per_s: f64,
    /// Acknowledgement to anchored at the full rate.
    pub full_rate_lag: Latency,
    /// Its p50 and p99 in block times.
    pub full_rate_p50_blocks: f64,
    /// See `full_rate_p50_blocks`.
    pub full_rate_p99_blocks: f64,
    /// Anchors mined over both runs.
    pub anchors: u64,
    /// Blocks the chain made over both runs.
    pub blocks: u64,
    /// Records anchored divided by anchors.
    pub records_per_anchor: f64,
    /// Gas of all anchors divided by the records they anchored.
    pub gas_per_record: f64,
}

/// The report of a `--block-time` run.
#[derive(Debug, Default, Serialize)]
pub struct TimedReport {
    /// Machine and versions.
    pub machine: Value,
    /// Concurrent clients at the full rate.
    pub writers: usize,
    /// Each block time measured.
    pub chains: Vec<TimedChain>,
}

/// Blocks each of the two runs lasts at least (and 30 s).
const BLOCKS_PER_RUN: f64 = 10.0;

impl BenchArgs {
    pub(super) async fn timed(&self, work: &Path, anvil: &Path) -> Result<TimedReport> {
        let mut report = TimedReport {
            machine: super::machine(),
            writers: self.writers,
            chains: Vec::new(),
        };
        for &seconds in &self.block_time {
            if !(seconds > 0.0 && seconds.is_finite()) {
                bail!("--block-time takes seconds greater than 0, not {seconds}");
            }
            eprintln!("bench: anchoring on an Anvil mining every {seconds} s");
            let dir = work.join(format!("block-time-{seconds}"));
            report
                .chains
                .push(self.timed_chain(&dir, anvil, seconds).await?);
        }
        Ok(report)
    }

    async fn timed_chain(&self, dir: &Path, anvil: &Path, seconds: f64) -> Result<TimedChain> {
        std::fs::create_dir_all(dir)?;
        let node = LocalNode::start(&LocalNodeConfig {
            kind: NodeKind::Anvil,
            program: anvil.to_owned(),
            port: 0,
            state_path: None,
            reorg_depth: None,
            extra_args: vec!["--block-time".into(), seconds.to_string()],
        })
        .await
        .context("cannot start Anvil")?;
        let rpc = node.url().to_owned();
        let result = async {
            deploy(dir, &rpc).await?;
            // On a chain the service did not start, writes need a key by default.
            let svc = Service::start(dir, &["--rpc", &rpc], "[auth]\nwrites = false\n").await?;
            let measured = self.measure_timed(&svc, &rpc, seconds).await;
            svc.stop().await?;
            measured
        }
        .await;
        let _ = node.stop(Duration::from_secs(30)).await;
        result
    }

    async fn measure_timed(&self, svc: &Service, rpc: &str, seconds: f64) -> Result<TimedChain> {
        let block = Duration::from_secs_f64(seconds);
        let run_for = block.mul_f64(BLOCKS_PER_RUN).max(Duration::from_secs(30));
        let first_block = block_number(rpc).await?;
        let twins = 100;

        // One caller, one request after the other.
        let c = client()?;
        let mut one = Vec::new();
        let started = Instant::now();
        let mut i = 0u64;
        while started.elapsed() < run_for {
            let req = record_request(i, twins, "?wait=anchored");
            let t = Instant::now();
            expect_ok(
                c.post(svc.url(&req.path))
                    .header("content-type", "application/json")
                    .body(req.body.clone().unwrap_or_default())
                    .send()
                    .await?,
            )
            .await?;
            one.push(t.elapsed());
            i += 1;
        }
        let one_caller_records = i;

        // The full rate, in rounds until the run lasted its blocks.
        let mut lags = Vec::new();
        let mut from = i;
        let started = Instant::now();
        let mut acked = 0u64;
        let mut acked_time = Duration::ZERO;
        while started.elapsed() < run_for {
            let n = self.records.min(50_000);
            let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
            let watcher = tokio::spawn(watch_anchoring(svc.base.clone(), from + n, seen.clone()));
            let round = Instant::now();
            let samples = drive(
                &svc.base,
                self.writers,
                n,
                move |k| record_request(from + k, twins, ""),
                written_index,
            )
            .await?;
            let last_ack = samples.iter().map(|s| s.done).max().unwrap_or(round);
            watcher.await??;
            let seen = seen.lock().map(|s| s.clone()).unwrap_or_default();
            lags.extend(samples.iter().filter_map(|s| {
                let index = s.index?;
                let at = seen
                    .get(seen.partition_point(|(_, size)| *size <= index))?
                    .0;
                Some(at.saturating_duration_since(s.done))
            }));
            acked += n;
            acked_time += last_ack - round;
            from += n;
        }
        let blocks = block_number(rpc).await?.saturating_sub(first_block);
        let (anchors, gas, anchored) = anchor_gas(&svc.base).await?;
        let one_caller = Latency::of(one);
        let full_rate_lag = Latency::of(lags);
        let in_blocks = |ms: f64| ms / 1e3 / seconds;
        Ok(TimedChain {
            block_time_s: seconds,
            one_caller,
            one_caller_records,
            one_caller_p50_blocks: in_blocks(one_caller.p50_ms),
            one_caller_p99_blocks: in_blocks(one_caller.p99_ms),
            full_rate_records: acked,
            full_rate_acked_per_s: acked as f64 / acked_time.as_secs_f64().max(1e-9),
            full_rate_lag,
            full_rate_p50_blocks: in_blocks(full_rate_lag.p50_ms),
            full_rate_p99_blocks: in_blocks(full_rate_lag.p99_ms),
            anchors,
            blocks,
            records_per_anchor: anchored as f64 / anchors.max(1) as f64,
            gas_per_record: gas as f64 / anchored.max(1) as f64,
        })
    }
}

/// `twinledger deploy --mode log --rpc URL --data-dir DIR`.
async fn deploy(dir: &Path, rpc: &str) -> Result<()> {
    let exe = std::env::current_exe()?;
    let out = tokio::process::Command::new(exe)
        .arg("deploy")
        .args(["--mode", "log", "--rpc", rpc, "--data-dir"])
        .arg(dir)
        .env("RUST_LOG", "warn")
        .output()
        .await?;
    if !out.status.success() {
        bail!("deploy failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

async fn block_number(rpc: &str) -> Result<u64> {
    Ok(twinledger_chain::block_number(rpc).await?)
}

pub(super) fn print_timed(r: &TimedReport) {
    println!("machine: {}", r.machine);
    println!("writers at the full rate: {}\n", r.writers);
    println!(
        "{:>6} {:>28} {:>12} {:>28} {:>12} {:>10} {:>9} {:>9}",
        "block",
        "one caller p50/p99 ms",
        "in blocks",
        "full rate lag p50/p99 ms",
        "in blocks",
        "acked/s",
        "rec/anch",
        "gas/rec"
    );
    for c in &r.chains {
        println!(
            "{:>5}s {:>28} {:>12} {:>28} {:>12} {:>10.0} {:>9.1} {:>9.1}",
            c.block_time_s,
            format!("{:.0} / {:.0}", c.one_caller.p50_ms, c.one_caller.p99_ms),
            format!(
                "{:.2} / {:.2}",
                c.one_caller_p50_blocks, c.one_caller_p99_blocks
            ),
            format!(
                "{:.0} / {:.0}",
                c.full_rate_lag.p50_ms, c.full_rate_lag.p99_ms
            ),
            format!(
                "{:.2} / {:.2}",
                c.full_rate_p50_blocks, c.full_rate_p99_blocks
            ),
            c.full_rate_acked_per_s,
            c.records_per_anchor,
            c.gas_per_record
        );
    }
}
