//! What `twinledger bench` reports: the report's parts (also its `--json` form) and the table.

use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

/// Latency percentiles, in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Latency {
    /// Median.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Slowest.
    pub max_ms: f64,
}

impl Latency {
    pub(super) fn of(mut samples: Vec<Duration>) -> Self {
        if samples.is_empty() {
            return Self::default();
        }
        samples.sort_unstable();
        let at = |q: f64| {
            let i = ((samples.len() - 1) as f64 * q).round() as usize;
            samples[i].as_secs_f64() * 1e3
        };
        Self {
            p50_ms: at(0.50),
            p99_ms: at(0.99),
            max_ms: at(1.0),
        }
    }
}

/// Log mode under full load.
#[derive(Debug, Default, Serialize)]
pub struct LogModeReport {
    /// Records written.
    pub records: u64,
    /// Records acknowledged (durably stored) per second.
    pub acked_per_s: f64,
    /// Records anchored per second (until the last one was anchored).
    pub anchored_per_s: f64,
    /// Plain POST latency at full load.
    pub post: Latency,
    /// Time from a record's acknowledgement until it was seen anchored.
    pub ack_to_anchor: Latency,
    /// Plain POST latency at half the peak rate (paced, open loop).
    pub post_at_half_rate: Latency,
    /// The rate that half-rate run offered, records per second.
    pub half_rate_per_s: f64,
    /// POST latency with `?wait=anchored`.
    pub post_wait_anchored: Latency,
    /// Anchor transactions mined.
    pub anchors: u64,
    /// Gas of all anchors divided by the records they anchored.
    pub gas_per_record: f64,
    /// `GET /v1/twins/{id}/verify` requests answered per second (median of the read rounds).
    pub verify_per_s: f64,
    /// Versions of each twin verified (the median of the read rounds is reported).
    pub versions_per_twin: f64,
    /// In-process check of one record's proof bundle (hashes and inclusion), microseconds.
    pub bundle_verify_us: f64,
    /// Peak resident memory of the service process, MiB.
    pub peak_rss_mib: f64,
}

/// Log mode with anchors spaced out by `anchor.min_interval_ms`.
#[derive(Debug, Default, Serialize)]
pub struct BatchedReport {
    /// The configured least interval between anchors, ms.
    pub min_interval_ms: u64,
    /// Records written.
    pub records: u64,
    /// Records acknowledged per second.
    pub acked_per_s: f64,
    /// Time from acknowledgement until anchored.
    pub ack_to_anchor: Latency,
    /// Average records per anchor, over the anchors after the first.
    pub records_per_anchor: f64,
    /// Gas per record over those anchors.
    pub gas_per_record: f64,
}

/// One point of the scale curve.
#[derive(Debug, Default, Serialize)]
pub struct ScalePoint {
    /// Records in the log.
    pub log_size: u64,
    /// Records per second appended in a burst at this size.
    pub append_per_s: f64,
    /// POST latency in that burst.
    pub append: Latency,
    /// `GET .../proof` latency (one client).
    pub proof: Latency,
    /// `GET .../verify` latency (one client).
    pub verify: Latency,
    /// Seconds `twinledger audit` takes per million records at this size.
    pub audit_s_per_million: f64,
    /// Bytes the database takes on disk per record at this size: records, tree nodes and
    /// indexes (SQLite's main file; PostgreSQL's `pg_database_size`).
    pub disk_bytes_per_record: f64,
    /// Resident memory of the service process, MiB.
    pub rss_mib: f64,
}

/// One round of the ceiling and the log mode's full load, measured one after the other.
#[derive(Debug, Default, Serialize)]
pub struct Round {
    /// `POST /bench/noop` requests per second.
    pub http_ceiling_per_s: f64,
    /// Log mode records acknowledged per second.
    pub acked_per_s: f64,
    /// The two divided.
    pub log_over_ceiling: f64,
}

/// The read rounds on one service, with their medians.
#[derive(Debug, Default, Serialize)]
pub struct ReadRounds {
    /// Each round.
    pub rounds: Vec<ReadRound>,
    /// Median of the rounds' verifications over the ceiling.
    pub verify_over_ceiling_median: f64,
    /// Median of the rounds' proof bundles over the ceiling.
    pub proof_over_ceiling_median: f64,
    /// Median verifications per second.
    #[serde(skip)]
    pub verify_per_s_median: f64,
}

/// One round of the read path, on twins of exactly ten anchored versions: the ceiling, then
/// verifications, then proof bundles, one after the other.
#[derive(Debug, Default, Serialize)]
pub struct ReadRound {
    /// `POST /bench/noop` requests per second.
    pub http_ceiling_per_s: f64,
    /// `GET /v1/twins/{id}/verify` answered per second.
    pub verify_per_s: f64,
    /// `GET /v1/twins/{id}/versions/{v}/proof` answered per second.
    pub proof_per_s: f64,
    /// Verifications over the ceiling.
    pub verify_over_ceiling: f64,
    /// Proof bundles over the ceiling.
    pub proof_over_ceiling: f64,
}

/// The whole report.
#[derive(Debug, Default, Serialize)]
pub struct BenchReport {
    /// Machine and versions.
    pub machine: Value,
    /// Concurrent clients.
    pub writers: usize,
    /// `POST /bench/noop` requests per second: the HTTP ceiling of this machine and client.
    pub http_ceiling_per_s: f64,
    /// Log mode.
    pub log: LogModeReport,
    /// Legacy mode: records per second, each acknowledged once its own transaction is mined.
    pub legacy_per_s: f64,
    /// Legacy POST latency.
    pub legacy_post: Latency,
    /// Legacy gas per record.
    pub legacy_gas_per_record: f64,
    /// Log mode with `anchor.min_interval_ms` set so that anchors gather many records: what a
    /// deployment paying for gas would run.
    pub batched: BatchedReport,
    /// Log mode acknowledged records/s divided by legacy records/s.
    pub log_over_legacy: f64,
    /// Log mode acknowledged records/s divided by the HTTP ceiling (the first round).
    pub log_over_ceiling: f64,
    /// Every round (`--rounds`), the first being the one above.
    pub rounds: Vec<Round>,
    /// Median of the rounds' ratios.
    pub log_over_ceiling_median: f64,
    /// Rounds of the read path (`--rounds` of them).
    pub reads: Vec<ReadRound>,
    /// Median of the read rounds' verifications over the ceiling.
    pub verify_over_ceiling_median: f64,
    /// Median of the read rounds' proof bundles over the ceiling.
    pub proof_over_ceiling_median: f64,
    /// Costs as the log grows.
    pub scale: Vec<ScalePoint>,
}

pub(super) fn print_table(r: &BenchReport) {
    let l = &r.log;
    let lat = |x: &Latency| format!("{:.2} / {:.2} / {:.2} ms", x.p50_ms, x.p99_ms, x.max_ms);
    println!("machine: {}", r.machine);
    println!("writers: {}\n", r.writers);
    println!("{:<44} {:>28}", "measure", "value");
    let row = |k: &str, v: String| println!("{k:<44} {v:>28}");
    row(
        "HTTP ceiling (POST /bench/noop)",
        format!("{:.0} req/s", r.http_ceiling_per_s),
    );
    row(
        "log: records acknowledged",
        format!("{:.0} /s", l.acked_per_s),
    );
    row(
        "log: records anchored",
        format!("{:.0} /s", l.anchored_per_s),
    );
    row("log: POST p50/p99/max", lat(&l.post));
    row("log: ack -> anchored p50/p99/max", lat(&l.ack_to_anchor));
    row(
        &format!("log: POST at half rate ({:.0}/s)", l.half_rate_per_s),
        lat(&l.post_at_half_rate),
    );
    row(
        "log: POST ?wait=anchored p50/p99/max",
        lat(&l.post_wait_anchored),
    );
    row("log: anchors", l.anchors.to_string());
    row("log: gas per record", format!("{:.1}", l.gas_per_record));
    row(
        &format!("log: verify ({:.0} versions/twin)", l.versions_per_twin),
        format!("{:.0} req/s", l.verify_per_s),
    );
    row(
        "log: proof bundle check in-process",
        format!("{:.1} us", l.bundle_verify_us),
    );
    row(
        "log: service peak RSS",
        format!("{:.1} MiB", l.peak_rss_mib),
    );
    let b = &r.batched;
    row(
        &format!("batched ({} ms): records acknowledged", b.min_interval_ms),
        format!("{:.0} /s", b.acked_per_s),
    );
    row(
        "batched: ack -> anchored p50/p99/max",
        lat(&b.ack_to_anchor),
    );
    row(
        "batched: records per anchor",
        format!("{:.0}", b.records_per_anchor),
    );
    row(
        "batched: gas per record",
        format!("{:.1}", b.gas_per_record),
    );
    row("legacy: records", format!("{:.1} /s", r.legacy_per_s));
    row("legacy: POST p50/p99/max", lat(&r.legacy_post));
    row(
        "legacy: gas per record",
        format!("{:.0}", r.legacy_gas_per_record),
    );
    row("ratio log / legacy", format!("{:.1}x", r.log_over_legacy));
    row(
        "ratio log / HTTP ceiling",
        format!("{:.2}", r.log_over_ceiling),
    );
    if r.rounds.len() > 1 {
        let each: Vec<String> = r
            .rounds
            .iter()
            .map(|x| format!("{:.2}", x.log_over_ceiling))
            .collect();
        row(
            &format!("  median of {} rounds ({})", r.rounds.len(), each.join(" ")),
            format!("{:.2}", r.log_over_ceiling_median),
        );
    }
    if !r.reads.is_empty() {
        let each = |f: fn(&ReadRound) -> f64| -> String {
            let v: Vec<String> = r.reads.iter().map(|x| format!("{:.3}", f(x))).collect();
            v.join(" ")
        };
        row(
            &format!(
                "verify / HTTP ceiling, median ({})",
                each(|x| x.verify_over_ceiling)
            ),
            format!("{:.3}", r.verify_over_ceiling_median),
        );
        row(
            &format!(
                "proof / HTTP ceiling, median ({})",
                each(|x| x.proof_over_ceiling)
            ),
            format!("{:.3}", r.proof_over_ceiling_median),
        );
        row("  proof bundles per round (req/s)", each(|x| x.proof_per_s));
    }
    if !r.scale.is_empty() {
        println!();
        print_scale(&r.scale);
    }
}

/// The scale curve as a table.
pub(super) fn print_scale(points: &[ScalePoint]) {
    println!(
        "{:>10} {:>12} {:>22} {:>22} {:>22} {:>11} {:>9} {:>10}",
        "log size",
        "append/s",
        "append p50/p99 ms",
        "proof p50/p99 ms",
        "verify p50/p99 ms",
        "audit s/1M",
        "RSS MiB",
        "disk B/rec"
    );
    for p in points {
        let pp = |x: &Latency| format!("{:.2} / {:.2}", x.p50_ms, x.p99_ms);
        println!(
            "{:>10} {:>12.0} {:>22} {:>22} {:>22} {:>11.2} {:>9.1} {:>10.0}",
            p.log_size,
            p.append_per_s,
            pp(&p.append),
            pp(&p.proof),
            pp(&p.verify),
            p.audit_s_per_million,
            p.rss_mib,
            p.disk_bytes_per_record
        );
    }
}
