//! `twinledger bench`: runs the service on fresh data directories with a local Anvil and drives
//! it over HTTP with concurrent keep-alive clients, measuring the log mode, the seed's design
//! (legacy mode) and the HTTP ceiling in one run, then the costs as the log grows.

use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::settings::Settings;

mod database;
mod load;
mod report;
mod timed;

use load::{Request, drive, drive_over, ignore, reading, record_request, twin_of, written_index};
use report::print_table;
use report::{
    BatchedReport, BenchReport, Latency, LogModeReport, ReadRound, ReadRounds, Round, ScalePoint,
};

/// Versions of each twin the read rounds verify.
const READ_VERSIONS: u64 = 10;

/// Options of `twinledger bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Concurrent HTTP clients, each on its own keep-alive connection.
    #[arg(long, default_value_t = 64)]
    pub writers: usize,
    /// Records written in log mode for throughput and latency.
    #[arg(long, default_value_t = 200_000)]
    pub records: u64,
    /// Records written in legacy mode (one transaction each, as the seed does).
    #[arg(long, default_value_t = 3_000)]
    pub legacy_records: u64,
    /// Log sizes at which the scale curve is measured (comma-separated; `0` skips it).
    #[arg(long, value_delimiter = ',', default_value = "10000,100000,1000000")]
    pub scale: Vec<u64>,
    /// Rounds of the HTTP ceiling and the log mode's full load, measured in turn on the same
    /// service; the ratio between them is reported as the median of the rounds' ratios, which
    /// a machine whose speed drifts during the run moves less than a single pair.
    #[arg(long, default_value_t = 1)]
    pub rounds: usize,
    /// A run of a few seconds that only shows the benchmark works (CI runs this).
    #[arg(long)]
    pub smoke: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Keep the data directories under this directory (default: a temporary one, removed).
    #[arg(long, value_name = "DIR")]
    pub work_dir: Option<PathBuf>,
    /// Instead of the full benchmark, measure anchoring on an Anvil that mines every this many
    /// seconds (comma-separated for several): lag from acknowledgement to anchored for one
    /// caller and at the full rate, records per anchor, gas per record.
    #[arg(long, value_delimiter = ',', value_name = "SECONDS")]
    pub block_time: Vec<f64>,
    /// With `--block-time`: a third into the full-rate run, raise the chain's base fee tenfold
    /// (`anvil_setNextBlockBaseFeePerGas`) and report what anchoring paid per record before it
    /// and from it on.
    #[arg(long, requires = "block_time")]
    pub fee_spike: bool,
}

/// What a full-speed load run measured.
struct FullLoad {
    acked_per_s: f64,
    anchored_per_s: f64,
    post: Latency,
    ack_to_anchor: Latency,
    /// Each record's lag from its acknowledgement to anchored.
    lags: Vec<Duration>,
    /// From the first request to the last acknowledgement.
    acked_in: Duration,
}

/// A `twinledger serve` child on a fresh data directory.
struct Service {
    child: Child,
    base: String,
    data_dir: PathBuf,
    /// The PostgreSQL URL it serves from, when not SQLite in `data_dir`.
    database: Option<String>,
}

impl Service {
    /// Starts `serve` on `data_dir` with `extra` flags and `config` as its twinledger.toml.
    async fn start(data_dir: &Path, extra: &[&str], config: &str) -> Result<Self> {
        std::fs::create_dir_all(data_dir)?;
        // No MQTT broker: the benchmark measures the HTTP path alone.
        std::fs::write(
            data_dir.join("twinledger.toml"),
            format!("[mqtt]\nembedded = false\n{config}"),
        )?;
        let exe = std::env::current_exe().context("cannot find the twinledger executable")?;
        let child = Command::new(exe)
            .arg("serve")
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--listen", "127.0.0.1:0", "--bench-noop"])
            .args(extra)
            .current_dir(data_dir)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("cannot start twinledger serve")?;
        // From here on a failure drops the service, which stops it.
        let mut svc = Self {
            child,
            base: String::new(),
            data_dir: data_dir.to_owned(),
            database: extra
                .iter()
                .position(|a| *a == "--database")
                .and_then(|i| extra.get(i + 1))
                .map(|url| (*url).to_owned()),
        };
        let stdout = svc.child.stdout.take().context("no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let base = tokio::time::timeout(Duration::from_secs(120), async {
            while let Some(line) = lines.next_line().await? {
                if let Some(url) = line.strip_prefix("listening on ") {
                    return Ok::<_, std::io::Error>(Some(url.trim().to_owned()));
                }
            }
            Ok(None)
        })
        .await
        .context("the service did not start in 120 s")??
        .context("the service exited before listening")?;
        // Keep draining stdout so the service never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        svc.base = base;
        Ok(svc)
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// What its database holds and takes on disk, read beside it.
    async fn store_stats(&self) -> Result<twinledger_store::StoreStats> {
        use twinledger_store::{PostgresStore, SqliteStore, Store};
        let store: Arc<dyn Store> = match &self.database {
            Some(url) => Arc::new(PostgresStore::connect(url, Default::default()).await?),
            None => Arc::new(SqliteStore::open(self.data_dir.join("twinledger.db"))?),
        };
        Ok(store.stats().await?)
    }

    /// Resident memory now and at its peak, MiB (Linux `/proc`).
    fn memory_mib(&self) -> (f64, f64) {
        let Some(pid) = self.child.id() else {
            return (0.0, 0.0);
        };
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
                .map_or(0.0, |kb| kb / 1024.0)
        };
        (field("VmRSS:"), field("VmHWM:"))
    }

    /// Asks the service to stop: it then stops its embedded Anvil too, which a kill would
    /// leave running.
    fn terminate(&self) {
        if let Some(pid) = self.child.id() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
    }

    async fn stop(mut self) -> Result<()> {
        self.terminate();
        if tokio::time::timeout(Duration::from_secs(60), self.child.wait())
            .await
            .is_err()
        {
            self.child.kill().await?;
        }
        Ok(())
    }
}

impl Drop for Service {
    /// A run that fails part-way drops its services without `stop`: each still gets SIGTERM
    /// and stops its embedded Anvil, which a kill would leave running.
    fn drop(&mut self) {
        self.terminate();
    }
}

fn client() -> Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .http1_only()
        .pool_max_idle_per_host(1)
        .timeout(Duration::from_secs(300))
        .build()?)
}

async fn expect_ok(r: reqwest::Response) -> Result<reqwest::Response> {
    if !r.status().is_success() {
        let status = r.status();
        bail!("{status}: {}", r.text().await.unwrap_or_default());
    }
    Ok(r)
}

async fn get_json(client: &reqwest::Client, url: &str) -> Result<Value> {
    Ok(expect_ok(client.get(url).send().await?)
        .await?
        .json()
        .await?)
}

fn per_s(n: u64, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64().max(1e-9)
}

/// Polls the anchored size until it reaches `size`, noting when each size was first seen.
async fn watch_anchoring(
    base: String,
    size: u64,
    seen: Arc<std::sync::Mutex<Vec<(Instant, u64)>>>,
) -> Result<Instant> {
    let c = client()?;
    let url = format!("{base}/v1/tree-heads?limit=1&from=18446744073709551615");
    loop {
        let heads = get_json(&c, &url).await?;
        let anchored = heads["anchored"]["anchored"].as_u64().unwrap_or(0);
        let now = Instant::now();
        if let Ok(mut s) = seen.lock() {
            s.push((now, anchored));
        }
        if anchored >= size {
            return Ok(now);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Records in the service's log now.
async fn tree_size(svc: &Service) -> Result<u64> {
    let health = get_json(&client()?, &svc.url("/health")).await?;
    health["database"]["records"]
        .as_u64()
        .context("/health does not say how many records there are")
}

/// Gas of every mined anchor and the records they anchored.
async fn anchor_gas(base: &str) -> Result<(u64, u64, u64)> {
    let c = client()?;
    let (mut from, mut anchors, mut gas, mut size) = (0u64, 0u64, 0u64, 0u64);
    loop {
        let page = get_json(&c, &format!("{base}/v1/tree-heads?limit=1000&from={from}")).await?;
        let list = page["anchors"].as_array().cloned().unwrap_or_default();
        if list.is_empty() {
            return Ok((anchors, gas, size));
        }
        for a in &list {
            if let Some(g) = a["gas_used"].as_u64() {
                anchors += 1;
                gas += g;
                size = size.max(a["size"].as_u64().unwrap_or(0));
            }
            from = a["size"].as_u64().unwrap_or(from) + 1;
        }
    }
}

impl BenchArgs {
    /// Runs the benchmark and prints the report.
    pub async fn run(mut self, settings: Settings) -> Result<ExitCode> {
        if self.smoke {
            self.writers = self.writers.min(4);
            self.records = self.records.min(400);
            self.legacy_records = self.legacy_records.min(20);
            self.scale = vec![200, 600];
        }
        self.scale.retain(|&s| s > 0);
        if self.writers == 0 || self.records == 0 {
            bail!("--writers and --records must be at least 1");
        }
        let temp;
        let work = match &self.work_dir {
            Some(d) => d.clone(),
            None => {
                temp = tempfile_dir()?;
                temp.clone()
            }
        };
        if !self.block_time.is_empty() {
            let anvil = crate::chain::find_anvil(&settings)?;
            let result = self.timed(&work, &anvil).await;
            return self.report(&work, result, timed::print_timed);
        }
        if let Some(database) = &settings.store.url {
            if database != "postgres" {
                bail!(
                    "bench starts its own PostgreSQL: give --database postgres, not a URL \
                     (a benchmark needs fresh databases)"
                );
            }
            let result = self.databases(&work, &settings).await;
            return self.report(&work, result, database::print_databases);
        }
        let mut report = BenchReport {
            machine: machine(),
            writers: self.writers,
            ..BenchReport::default()
        };
        let result = self.measure(&work, &mut report).await;
        if self.work_dir.is_none() {
            let _ = std::fs::remove_dir_all(&work);
        }
        result?;
        if self.json {
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            print_table(&report);
        }
        Ok(ExitCode::SUCCESS)
    }

    /// Removes the work directory (unless `--work-dir` keeps it) and prints the report of a
    /// measurement that ended with `result`.
    fn report<R: serde::Serialize>(
        &self,
        work: &Path,
        result: Result<R>,
        table: impl Fn(&R),
    ) -> Result<ExitCode> {
        if self.work_dir.is_none() {
            let _ = std::fs::remove_dir_all(work);
        }
        let report = result?;
        if self.json {
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            table(&report);
        }
        Ok(ExitCode::SUCCESS)
    }

    async fn measure(&self, work: &Path, report: &mut BenchReport) -> Result<()> {
        let w = self.writers;
        eprintln!("bench: log mode, {w} writers, {} records", self.records);
        let svc = Service::start(&work.join("log"), &[], "").await?;
        report.http_ceiling_per_s = self.ceiling(&svc).await?;
        report.log = self.log_mode(&svc).await?;
        report.log_over_ceiling = report.log.acked_per_s / report.http_ceiling_per_s;
        report.rounds.push(Round {
            http_ceiling_per_s: report.http_ceiling_per_s,
            acked_per_s: report.log.acked_per_s,
            log_over_ceiling: report.log_over_ceiling,
        });
        let reads = self.read_rounds(&svc).await?;
        report.verify_over_ceiling_median = reads.verify_over_ceiling_median;
        report.proof_over_ceiling_median = reads.proof_over_ceiling_median;
        report.log.verify_per_s = reads.verify_per_s_median;
        report.log.versions_per_twin = READ_VERSIONS as f64;
        report.reads = reads.rounds;
        for round in 2..=self.rounds {
            eprintln!("bench: round {round} of {}", self.rounds);
            let ceiling = self.ceiling(&svc).await?;
            let from = tree_size(&svc).await?;
            let n = self.records;
            let load = self.full_load(&svc, from, n, (n / 10).max(1)).await?;
            report.rounds.push(Round {
                http_ceiling_per_s: ceiling,
                acked_per_s: load.acked_per_s,
                log_over_ceiling: load.acked_per_s / ceiling,
            });
        }
        report.log_over_ceiling_median =
            median(report.rounds.iter().map(|r| r.log_over_ceiling).collect());
        svc.stop().await?;

        let interval = 1_000;
        eprintln!("bench: log mode, anchors at least {interval} ms apart");
        let svc = Service::start(
            &work.join("batched"),
            &[],
            &format!("[anchor]\nmin_interval_ms = {interval}\n"),
        )
        .await?;
        report.batched = self.batched(&svc, interval).await?;
        svc.stop().await?;

        eprintln!(
            "bench: legacy mode, {w} writers, {} records",
            self.legacy_records
        );
        let svc = Service::start(&work.join("legacy"), &["--mode", "legacy"], "").await?;
        self.legacy_mode(&svc, report).await?;
        svc.stop().await?;
        report.log_over_legacy = report.log.acked_per_s / report.legacy_per_s;

        if !self.scale.is_empty() {
            let svc = Service::start(&work.join("scale"), &[], "").await?;
            let mut size = 0;
            for &target in &self.scale {
                eprintln!("bench: scale curve at {target} records");
                let point = self.scale_point(&svc, &mut size, target).await?;
                report.scale.push(point);
            }
            svc.stop().await?;
        }
        Ok(())
    }

    /// Rounds of the read path on twins of their own, ten anchored versions each (the
    /// main load's twins gain versions from every later phase): the ceiling, verifications,
    /// proof bundles, each round the three in turn.
    async fn read_rounds(&self, svc: &Service) -> Result<ReadRounds> {
        const VERSIONS: u64 = READ_VERSIONS;
        let twins = (self.records / 50).clamp(1, 1_000);
        let twin = move |i: u64| format!("read-{:06}", i % twins);
        let from = tree_size(svc).await?;
        drive(
            &svc.base,
            self.writers,
            twins * VERSIONS,
            move |i| Request::post(format!("/v1/twins/{}/states", twin(i)), reading(i)),
            ignore,
        )
        .await?;
        watch_anchoring(svc.base.clone(), from + twins * VERSIONS, Arc::default()).await?;
        let count = (self.records / 10).clamp(self.writers as u64, 20_000);
        let mut rounds = Vec::new();
        for round in 1..=self.rounds {
            eprintln!("bench: reads, round {round} of {}", self.rounds);
            let ceiling = self.ceiling(svc).await?;
            let started = Instant::now();
            drive(
                &svc.base,
                self.writers,
                count,
                move |i| Request::get(format!("/v1/twins/{}/verify", twin(i * 7919))),
                |_, body| {
                    let v: Value = serde_json::from_slice(body)?;
                    if v["integrity"] != "Valid" || v["versions"] != VERSIONS {
                        bail!("verify answered {v}");
                    }
                    Ok(None)
                },
            )
            .await?;
            let verify_per_s = per_s(count, started.elapsed());
            let started = Instant::now();
            drive(
                &svc.base,
                self.writers,
                count,
                move |i| {
                    let v = 1 + (i / twins) % VERSIONS;
                    Request::get(format!("/v1/twins/{}/versions/{v}/proof", twin(i * 7919)))
                },
                |_, body| {
                    if !body.starts_with(br#"{"format":"twinledger-proof-v1""#) {
                        bail!("not a proof bundle: {}", String::from_utf8_lossy(body));
                    }
                    Ok(None)
                },
            )
            .await?;
            let proof_per_s = per_s(count, started.elapsed());
            rounds.push(ReadRound {
                http_ceiling_per_s: ceiling,
                verify_per_s,
                proof_per_s,
                verify_over_ceiling: verify_per_s / ceiling,
                proof_over_ceiling: proof_per_s / ceiling,
            });
        }
        let median_of = |f: fn(&ReadRound) -> f64| median(rounds.iter().map(f).collect());
        Ok(ReadRounds {
            verify_over_ceiling_median: median_of(|r| r.verify_over_ceiling),
            proof_over_ceiling_median: median_of(|r| r.proof_over_ceiling),
            verify_per_s_median: median_of(|r| r.verify_per_s),
            rounds,
        })
    }

    /// Full load on a service whose anchors are at least `interval_ms` apart.
    async fn batched(&self, svc: &Service, interval_ms: u64) -> Result<BatchedReport> {
        let n = (self.records / 2).max(1);
        let load = self.full_load(svc, 0, n, (n / 10).max(1)).await?;
        let c = client()?;
        let page = get_json(&c, &svc.url("/v1/tree-heads?limit=1000")).await?;
        let anchors: Vec<(u64, u64)> = page["anchors"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|a| Some((a["size"].as_u64()?, a["gas_used"].as_u64()?)))
                    .collect()
            })
            .unwrap_or_default();
        // The first anchor goes out at once with whatever was there; the rest gathered.
        let (first, rest) = anchors.split_first().context("no anchors")?;
        let records = anchors.last().map_or(0, |a| a.0) - first.0;
        let gas: u64 = rest.iter().map(|a| a.1).sum();
        Ok(BatchedReport {
            min_interval_ms: interval_ms,
            records: n,
            acked_per_s: load.acked_per_s,
            ack_to_anchor: load.ack_to_anchor,
            records_per_anchor: records as f64 / rest.len().max(1) as f64,
            gas_per_record: gas as f64 / records.max(1) as f64,
        })
    }

    /// The same load against `POST /bench/noop`.
    async fn ceiling(&self, svc: &Service) -> Result<f64> {
        let n = self.records.min(200_000);
        let started = Instant::now();
        drive(
            &svc.base,
            self.writers,
            n,
            |i| Request::post("/bench/noop".into(), reading(i)),
            ignore,
        )
        .await?;
        Ok(per_s(n, started.elapsed()))
    }

    /// `n` records from record `from` on as fast as the writers go, watching the anchored size.
    async fn full_load(&self, svc: &Service, from: u64, n: u64, twins: u64) -> Result<FullLoad> {
        self.full_load_over(std::slice::from_ref(&svc.base), &svc.base, from, n, twins)
            .await
    }

    /// [`Self::full_load`] with the clients spread over `bases` (nodes of one ledger), the
    /// anchoring watched on `watched`.
    async fn full_load_over(
        &self,
        bases: &[String],
        watched: &str,
        from: u64,
        n: u64,
        twins: u64,
    ) -> Result<FullLoad> {
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let watcher = tokio::spawn(watch_anchoring(watched.to_owned(), from + n, seen.clone()));
        let started = Instant::now();
        let samples = drive_over(
            bases,
            self.writers,
            n,
            move |i| record_request(from + i, twins, ""),
            written_index,
        )
        .await?;
        let last_ack = samples.iter().map(|s| s.done).max().unwrap_or(started);
        let all_anchored = watcher.await??;
        // Each record's lag: from its acknowledgement to the first poll that saw it anchored
        // (the polls' sizes only grow).
        let seen = seen.lock().map(|s| s.clone()).unwrap_or_default();
        let lags: Vec<Duration> = samples
            .iter()
            .filter_map(|s| {
                let index = s.index?;
                let at = seen
                    .get(seen.partition_point(|(_, size)| *size <= index))?
                    .0;
                Some(at.saturating_duration_since(s.done))
            })
            .collect();
        Ok(FullLoad {
            acked_per_s: per_s(n, last_ack - started),
            anchored_per_s: per_s(n, all_anchored - started),
            post: Latency::of(samples.iter().map(|s| s.done - s.sent).collect()),
            ack_to_anchor: Latency::of(lags.clone()),
            lags,
            acked_in: last_ack - started,
        })
    }

    async fn log_mode(&self, svc: &Service) -> Result<LogModeReport> {
        let (w, n) = (self.writers, self.records);
        let twins = (n / 10).max(1);
        let load = self.full_load(svc, 0, n, twins).await?;
        let mut r = LogModeReport {
            records: n,
            acked_per_s: load.acked_per_s,
            anchored_per_s: load.anchored_per_s,
            post: load.post,
            ack_to_anchor: load.ack_to_anchor,
            ..LogModeReport::default()
        };

        // Half the peak rate, paced: latency from the moment each request was due.
        let rate = r.acked_per_s / 2.0;
        let count = ((rate * 5.0) as u64).clamp(100, n);
        r.half_rate_per_s = rate;
        r.post_at_half_rate = self.paced(svc, n, count, rate, twins).await?;

        let count = (n / 20).clamp(w as u64, 5_000);
        let samples = drive(
            &svc.base,
            w,
            count,
            move |i| record_request(n * 2 + i, twins, "?wait=anchored"),
            ignore,
        )
        .await?;
        r.post_wait_anchored = Latency::of(samples.iter().map(|s| s.done - s.sent).collect());

        let (anchors, gas, anchored) = anchor_gas(&svc.base).await?;
        r.anchors = anchors;
        r.gas_per_record = gas as f64 / anchored.max(1) as f64;

        r.bundle_verify_us = bundle_verify_us(&svc.base, &twin_of(0, twins)).await?;
        r.peak_rss_mib = svc.memory_mib().1;
        Ok(r)
    }

    /// `count` POSTs offered at `rate` per second by the writers together (open loop).
    async fn paced(
        &self,
        svc: &Service,
        offset: u64,
        count: u64,
        rate: f64,
        twins: u64,
    ) -> Result<Latency> {
        let start = Instant::now() + Duration::from_millis(50);
        let interval = Duration::from_secs_f64(1.0 / rate.max(1.0));
        let samples = drive(
            &svc.base,
            self.writers,
            count,
            move |i| Request {
                due: Some(start + interval.mul_f64(i as f64)),
                ..record_request(offset + i, twins, "")
            },
            ignore,
        )
        .await?;
        // Measured from when each request was due, so time spent waiting for a free writer
        // counts too (no coordinated omission).
        Ok(Latency::of(
            samples.iter().map(|s| s.done - s.sent).collect(),
        ))
    }

    async fn legacy_mode(&self, svc: &Service, report: &mut BenchReport) -> Result<()> {
        let n = self.legacy_records;
        let twins = (n / 10).max(1);
        let started = Instant::now();
        let samples = drive(
            &svc.base,
            self.writers,
            n,
            move |i| {
                let body = format!(
                    r#"{{"twin_id":"{}","data":{}}}"#,
                    twin_of(i, twins),
                    reading(i)
                );
                Request::post("/update_twin_on_blockchain/".into(), body)
            },
            ignore,
        )
        .await?;
        report.legacy_per_s = per_s(n, started.elapsed());
        report.legacy_post = Latency::of(samples.iter().map(|s| s.done - s.sent).collect());
        report.legacy_gas_per_record = legacy_gas(&svc.data_dir).await?;
        Ok(())
    }

    async fn scale_point(&self, svc: &Service, size: &mut u64, target: u64) -> Result<ScalePoint> {
        let twins = (target / 10).max(1);
        // Filled to just below `target`, then a measured burst brings it to `target`.
        let burst = (target / 10).clamp(100, 20_000).min(target);
        let fill_to = target - burst;
        if fill_to > *size {
            let (from, count) = (*size, fill_to - *size);
            drive(
                &svc.base,
                self.writers,
                count,
                move |i| record_request(from + i, twins, ""),
                ignore,
            )
            .await?;
            *size = fill_to;
        }
        let from = *size;
        let started = Instant::now();
        let samples = drive(
            &svc.base,
            self.writers,
            burst,
            move |i| record_request(from + i, twins, ""),
            ignore,
        )
        .await?;
        let append_per_s = per_s(burst, started.elapsed());
        *size += burst;
        watch_anchoring(
            svc.base.clone(),
            *size,
            Arc::new(std::sync::Mutex::new(Vec::new())),
        )
        .await?;
        let c = client()?;
        let (mut proof, mut verify) = (Vec::new(), Vec::new());
        for k in 0..200u64 {
            let twin = twin_of(k * 7919, twins);
            let t = Instant::now();
            get_json(&c, &svc.url(&format!("/v1/twins/{twin}/versions/1/proof"))).await?;
            proof.push(t.elapsed());
            let t = Instant::now();
            get_json(&c, &svc.url(&format!("/v1/twins/{twin}/verify"))).await?;
            verify.push(t.elapsed());
        }
        let audit = audit_seconds(svc).await?;
        let stats = svc.store_stats().await?;
        Ok(ScalePoint {
            disk_bytes_per_record: stats.bytes as f64 / (*size).max(1) as f64,
            log_size: *size,
            append_per_s,
            append: Latency::of(samples.iter().map(|s| s.done - s.sent).collect()),
            proof: Latency::of(proof),
            verify: Latency::of(verify),
            audit_s_per_million: audit * 1e6 / *size as f64,
            rss_mib: svc.memory_mib().0,
        })
    }
}

/// Fetches one record's proof bundle and times the in-process check of its hashes and
/// inclusion proof (no chain), per bundle.
async fn bundle_verify_us(base: &str, twin: &str) -> Result<f64> {
    let c = client()?;
    let r = c
        .get(format!("{base}/v1/twins/{twin}/versions/1/proof"))
        .send()
        .await?;
    let bytes = expect_ok(r).await?.bytes().await?;
    let rounds = 2_000u32;
    let started = Instant::now();
    for _ in 0..rounds {
        let bundle = twinledger_core::ProofBundle::from_json(&bytes)?;
        bundle.verify()?;
    }
    Ok(started.elapsed().as_secs_f64() * 1e6 / f64::from(rounds))
}

/// Runs `twinledger audit` on a running service's ledger; its wall time in seconds.
async fn audit_seconds(svc: &Service) -> Result<f64> {
    let exe = std::env::current_exe()?;
    let started = Instant::now();
    let mut audit = Command::new(exe);
    audit
        .arg("audit")
        .arg("--data-dir")
        .arg(&svc.data_dir)
        .arg("--json");
    if let Some(url) = &svc.database {
        audit.args(["--database", url]);
    }
    let out = audit
        .current_dir(&svc.data_dir)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .await?;
    let elapsed = started.elapsed().as_secs_f64();
    if !out.status.success() {
        bail!(
            "audit failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(elapsed)
}

/// Legacy gas per record: the receipts of (up to 200 of) the records' transactions, from the
/// embedded node the service started (its URL is in `node.json`).
async fn legacy_gas(data_dir: &Path) -> Result<f64> {
    let node: Value = serde_json::from_slice(&std::fs::read(data_dir.join("node.json"))?)?;
    let url = node["url"]
        .as_str()
        .context("node.json has no url")?
        .to_owned();
    let store = twinledger_store::SqliteStore::open(data_dir.join("twinledger.db"))?;
    let txs: Vec<String> = twinledger_store::LogStore::records_from(&store, 0, None, 200)
        .await?
        .iter()
        .filter_map(|r| r.legacy_anchor().map(|a| a.tx_hash))
        .collect();
    let c = client()?;
    let mut gas = 0u64;
    for tx in &txs {
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": "eth_getTransactionReceipt", "params": [tx]});
        let r: Value = expect_ok(c.post(&url).json(&body).send().await?)
            .await?
            .json()
            .await?;
        let used = r["result"]["gasUsed"]
            .as_str()
            .context("receipt without gasUsed")?;
        gas += u64::from_str_radix(used.trim_start_matches("0x"), 16)?;
    }
    Ok(gas as f64 / txs.len().max(1) as f64)
}

/// The median of `values` (0 for none).
fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => 0.0,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

fn tempfile_dir() -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("twinledger-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// Cores, memory, kernel and versions, for the report.
fn machine() -> Value {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let cpu = read("/proc/cpuinfo")
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned());
    let mem_gib = read("/proc/meminfo")
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kb| (kb / 1024.0 / 1024.0 * 10.0).round() / 10.0);
    json!({
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "cpu": cpu,
        "memory_gib": mem_gib,
        "kernel": read("/proc/sys/kernel/osrelease").trim(),
        "twinledger": env!("CARGO_PKG_VERSION"),
        "build": if cfg!(debug_assertions) { "debug" } else { "release" },
    })
}
