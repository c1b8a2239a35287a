//! `twinledger bench --block-time SECONDS`: anchoring against an Anvil that mines on a timer,
//! as real chains do. For each block time: the lag from acknowledgement to anchored for one
//! caller waiting with `?wait=anchored` and at the full write rate, in milliseconds and in
//! block times, with records per anchor and gas per record.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::Serialize;
use serde_json::{Value, json};
use twinledger_chain::{LocalNode, LocalNodeConfig, NodeKind};

use super::load::record_request;
use super::report::Latency;
use super::{BenchArgs, Service, anchor_gas, client, expect_ok};

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
    /// Fees paid (gas used times effective gas price) per record anchored at the full rate, in
    /// wei: by the anchors mined before the fee spike (all of them without one).
    pub fee_per_record_wei: f64,
    /// With `--fee-spike`: the same for the anchors mined from the spike's block on.
    pub spike_fee_per_record_wei: Option<f64>,
    /// With `--fee-spike`: the base fee before the spike and the one set, wei per gas.
    pub spike_base_fee_wei: Option<(u128, u128)>,
    /// Anchors sent again with higher fees (`/health`).
    pub replacements: u64,
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
        let run_for = if self.smoke {
            block * 3
        } else {
            block.mul_f64(BLOCKS_PER_RUN).max(Duration::from_secs(30))
        };
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

        // The full rate, in rounds until the run lasted its blocks; a third in, the fee spike.
        let full_rate_block = block_number(rpc).await?;
        let spike = self.fee_spike.then(|| {
            let rpc = rpc.to_owned();
            tokio::spawn(async move {
                tokio::time::sleep(run_for / 3).await;
                raise_base_fee(&rpc, 10).await
            })
        });
        let mut lags = Vec::new();
        let mut from = i;
        let started = Instant::now();
        let mut acked = 0u64;
        let mut acked_time = Duration::ZERO;
        while started.elapsed() < run_for {
            let n = self.records.min(50_000);
            let load = self.full_load(svc, from, n, twins).await?;
            lags.extend(load.lags);
            acked_time += load.acked_in;
            acked += n;
            from += n;
        }
        let blocks = block_number(rpc).await?.saturating_sub(first_block);
        let spike = match spike {
            Some(task) => Some(task.await??),
            None => None,
        };
        let fees = fees_per_record(&svc.base, rpc, full_rate_block, spike.map(|s| s.0)).await?;
        let health: Value = super::get_json(&client()?, &svc.url("/health")).await?;
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
            fee_per_record_wei: fees.0,
            spike_fee_per_record_wei: spike.map(|_| fees.1),
            spike_base_fee_wei: spike.map(|s| (s.1, s.2)),
            replacements: health["anchoring"]["replacements"].as_u64().unwrap_or(0),
        })
    }
}

/// Sets the next block's base fee to `factor` times the latest block's; returns that next
/// block's number, the base fee before and the one set.
async fn raise_base_fee(rpc: &str, factor: u128) -> Result<(u64, u128, u128)> {
    let latest = rpc_call(rpc, "eth_getBlockByNumber", json!(["latest", false])).await?;
    let before = quantity(&latest["baseFeePerGas"])?;
    let next = u64::try_from(quantity(&latest["number"])?)? + 1;
    let raised = before * factor;
    rpc_call(
        rpc,
        "anvil_setNextBlockBaseFeePerGas",
        json!([format!("0x{raised:x}")]),
    )
    .await?;
    Ok((next, before, raised))
}

/// Fees paid per record anchored, in wei, by the anchors mined from block `from` on: those
/// before block `split` (all of them when there is none), and those from it on.
async fn fees_per_record(
    base: &str,
    rpc: &str,
    from: u64,
    split: Option<u64>,
) -> Result<(f64, f64)> {
    let c = client()?;
    let page = super::get_json(&c, &format!("{base}/v1/tree-heads?limit=1000")).await?;
    let mut sums = [(0u128, 0u64); 2];
    for a in page["anchors"].as_array().cloned().unwrap_or_default() {
        let (Some(tx), Some(size), Some(prev)) = (
            a["tx_hash"].as_str(),
            a["size"].as_u64(),
            a["prev_size"].as_u64(),
        ) else {
            continue;
        };
        let receipt = rpc_call(rpc, "eth_getTransactionReceipt", json!([tx])).await?;
        if receipt.is_null() {
            continue;
        }
        let fee = quantity(&receipt["gasUsed"])? * quantity(&receipt["effectiveGasPrice"])?;
        let block = u64::try_from(quantity(&receipt["blockNumber"])?)?;
        if block < from {
            continue;
        }
        let part = usize::from(split.is_some_and(|s| block >= s));
        sums[part].0 += fee;
        sums[part].1 += size - prev;
    }
    let per = |(fee, records): (u128, u64)| fee as f64 / records.max(1) as f64;
    Ok((per(sums[0]), per(sums[1])))
}

async fn rpc_call(rpc: &str, method: &str, params: Value) -> Result<Value> {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
    let answer: Value = expect_ok(client()?.post(rpc).json(&body).send().await?)
        .await?
        .json()
        .await?;
    if let Some(e) = answer.get("error") {
        bail!("{method}: {e}");
    }
    Ok(answer["result"].clone())
}

fn quantity(v: &Value) -> Result<u128> {
    let s = v.as_str().context("not a quantity")?;
    Ok(u128::from_str_radix(s.trim_start_matches("0x"), 16)?)
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
        let gwei = |wei: f64| wei / 1e9;
        println!(
            "{:>6} fees per record: {:.3} gwei, {} replacements",
            "",
            gwei(c.fee_per_record_wei),
            c.replacements
        );
        if let (Some(spike), Some((before, raised))) =
            (c.spike_fee_per_record_wei, c.spike_base_fee_wei)
        {
            println!(
                "{:>6} from the fee spike on (base fee {:.3} -> {:.3} gwei): {:.3} gwei per record",
                "",
                gwei(before as f64),
                gwei(raised as f64),
                gwei(spike)
            );
        }
    }
}
