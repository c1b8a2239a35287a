//! The ledger's Prometheus instruments, registered into the registry the program builds.
//!
//! The write path does a fixed amount of work per batch, off the writer thread: an atomic
//! increment per record on a counter resolved at registration, two histogram observations
//! (prometheus-client histograms take a short, uncontended lock) and one lock to note when the
//! batch was acknowledged, so that the delay to its anchor can be observed when the anchor is
//! mined. Values the ledger already keeps (log size, anchored sizes, reorganisations) are read
//! when Prometheus scrapes.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio::sync::watch;
use twinledger_core::RecordKind;
use twinledger_store::Store;

use crate::anchor::{AnchoredSizes, AnchoringStatus};
use crate::verify::Integrity;

/// Batches remembered while they wait for their anchor. Beyond this (anchoring stalled for a
/// long time under load) new batches are merged into the last one, which makes the delays
/// they report a little short rather than letting the memory grow without bound.
const AWAITING_ANCHOR_MAX: usize = 1 << 16;

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct VerdictLabel {
    verdict: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct BandLabel {
    band: String,
}

/// A committed batch of log indices `start..end`, acknowledged at `acknowledged`.
#[derive(Debug)]
struct AwaitingAnchor {
    start: u64,
    end: u64,
    acknowledged: Instant,
}

/// The ledger's instruments. Cheap to clone; the default is registered nowhere (for tests
/// and tools that run a ledger without exporting metrics).
#[derive(Debug, Clone, Default)]
pub struct LedgerMetrics {
    inner: Arc<Instruments>,
}

#[derive(Debug)]
struct Instruments {
    /// One handle per record kind, resolved at registration: counting a record hashes no
    /// label set.
    appended: [Counter; 3],
    write_batch_records: Histogram,
    commit_seconds: Histogram,
    log_lock_seconds: Histogram,
    write_failures: Counter,
    anchors_sent: Counter,
    anchors_mined: Counter,
    anchors_failed: Counter,
    anchor_gas: Histogram,
    anchor_delay_seconds: Histogram,
    verdicts: Family<VerdictLabel, Counter>,
    shifts: Family<BandLabel, Counter>,
    awaiting_anchor: Mutex<VecDeque<AwaitingAnchor>>,
    state: Arc<OnceLock<StateView>>,
}

impl Default for Instruments {
    fn default() -> Self {
        let appended = Family::<KindLabel, Counter>::default();
        Self::new(appended)
    }
}

impl Instruments {
    fn new(appended: Family<KindLabel, Counter>) -> Self {
        let kind = |k: RecordKind| appended.get_or_create_owned(&KindLabel { kind: k.as_str() });
        Self {
            appended: [
                kind(RecordKind::Reported),
                kind(RecordKind::Desired),
                kind(RecordKind::Event),
            ],
            // 1 to 65536 records: group commit batches grow with concurrency.
            write_batch_records: Histogram::new(exponential_buckets(1.0, 2.0, 17)),
            // 100 µs to about 3 s: an fsync on a good disk to a stalled one.
            commit_seconds: Histogram::new(exponential_buckets(0.0001, 2.0, 15)),
            log_lock_seconds: Histogram::new(exponential_buckets(0.0001, 2.0, 15)),
            write_failures: Counter::default(),
            anchors_sent: Counter::default(),
            anchors_mined: Counter::default(),
            anchors_failed: Counter::default(),
            // 50k to about 3.2M gas: one anchor with a short proof to a long one.
            anchor_gas: Histogram::new(exponential_buckets(50_000.0, 2.0, 7)),
            // 10 ms to about 20 min: an automining node to a congested chain.
            anchor_delay_seconds: Histogram::new(exponential_buckets(0.01, 2.0, 17)),
            verdicts: Family::default(),
            shifts: Family::default(),
            awaiting_anchor: Mutex::new(VecDeque::new()),
            state: Arc::new(OnceLock::new()),
        }
    }
}

impl LedgerMetrics {
    /// The ledger's instruments, registered into `registry` (names as they appear with the
    /// `twinledger` prefix the program gives it).
    pub fn register(registry: &mut Registry) -> Self {
        let appended = Family::<KindLabel, Counter>::default();
        let i = Instruments::new(appended.clone());
        registry.register(
            "records_appended",
            "Records appended to the log, by kind (reported, desired, event)",
            appended,
        );
        registry.register(
            "write_batch_records",
            "Submissions committed together in one database transaction (group commit)",
            i.write_batch_records.clone(),
        );
        registry.register(
            "write_commit_seconds",
            "Time to commit one batch of submissions to the database",
            i.commit_seconds.clone(),
        );
        registry.register(
            "write_log_lock_seconds",
            "Time one batch held the log's serialization point (SQLite's write transaction, \
             PostgreSQL's log_head row lock), which no other batch on the database passes",
            i.log_lock_seconds.clone(),
        );
        registry.register(
            "write_failures",
            "Batches of submissions the database failed to commit (their callers got an error)",
            i.write_failures.clone(),
        );
        registry.register(
            "anchors_sent",
            "Anchor transactions sent (a replacement is not counted again)",
            i.anchors_sent.clone(),
        );
        registry.register(
            "anchors_mined",
            "Anchor transactions seen mined",
            i.anchors_mined.clone(),
        );
        registry.register(
            "anchors_failed",
            "Anchors that could not be sent, or were sent and failed (reverted, nonce taken); \
             their records stay pending and are anchored again",
            i.anchors_failed.clone(),
        );
        registry.register(
            "anchor_gas",
            "Gas used by each mined anchor transaction",
            i.anchor_gas.clone(),
        );
        registry.register(
            "anchor_delay_seconds",
            "Time from a record's acknowledgement to the mining of the first anchor that holds \
             it, observed once per record (Trillian's merge delay)",
            i.anchor_delay_seconds.clone(),
        );
        registry.register(
            "verify_verdicts",
            "Twin verifications answered, by verdict (valid, tampered, pending)",
            i.verdicts.clone(),
        );
        registry.register(
            "congruence_shifts",
            "Congruence shift events recorded, by the band the twin moved into",
            i.shifts.clone(),
        );
        registry.register_collector(Box::new(StateCollector(i.state.clone())));
        Self { inner: Arc::new(i) }
    }

    /// Gives the scrape-time collector what it reads; the first ledger started with these
    /// instruments is the one they report.
    pub(crate) fn attach(&self, view: StateView) {
        let _ = self.inner.state.set(view);
    }

    /// A batch of `submissions` committed in `took`, holding new records of `kinds` (replays
    /// of earlier requests are not new records).
    pub(crate) fn committed(
        &self,
        submissions: usize,
        took: Duration,
        held: Duration,
        kinds: impl Iterator<Item = RecordKind>,
    ) {
        let i = &self.inner;
        i.write_batch_records.observe(submissions as f64);
        i.commit_seconds.observe(took.as_secs_f64());
        i.log_lock_seconds.observe(held.as_secs_f64());
        for kind in kinds {
            i.appended[usize::from(kind.code()).min(2)].inc();
        }
    }

    /// The log indices `start..end` were acknowledged to their callers now.
    pub(crate) fn acknowledged(&self, start: u64, end: u64) {
        if end <= start {
            return;
        }
        let Ok(mut q) = self.inner.awaiting_anchor.lock() else {
            return;
        };
        if q.len() >= AWAITING_ANCHOR_MAX
            && let Some(last) = q.back_mut()
        {
            last.end = end;
            return;
        }
        q.push_back(AwaitingAnchor {
            start,
            end,
            acknowledged: Instant::now(),
        });
    }

    /// Every record below log index `size` is now in a mined anchor: each one acknowledged
    /// by this process and not seen anchored before gets its delay observed.
    pub(crate) fn anchored_below(&self, size: u64) {
        let now = Instant::now();
        let Ok(mut q) = self.inner.awaiting_anchor.lock() else {
            return;
        };
        while let Some(front) = q.front_mut() {
            if front.start >= size {
                break;
            }
            let upto = front.end.min(size);
            let delay = now
                .saturating_duration_since(front.acknowledged)
                .as_secs_f64();
            for _ in front.start..upto {
                self.inner.anchor_delay_seconds.observe(delay);
            }
            if front.end <= size {
                q.pop_front();
            } else {
                front.start = size;
            }
        }
    }

    /// A batch the database failed to commit.
    pub(crate) fn write_failed(&self) {
        self.inner.write_failures.inc();
    }

    /// A congruence shift into `band`.
    pub(crate) fn shifted(&self, band: &str) {
        self.inner
            .shifts
            .get_or_create(&BandLabel {
                band: band.to_owned(),
            })
            .inc();
    }

    pub(crate) fn anchor_sent(&self) {
        self.inner.anchors_sent.inc();
    }

    pub(crate) fn anchor_mined(&self, gas_used: Option<u64>) {
        self.inner.anchors_mined.inc();
        if let Some(gas) = gas_used {
            self.inner.anchor_gas.observe(gas as f64);
        }
    }

    pub(crate) fn anchor_failed(&self) {
        self.inner.anchors_failed.inc();
    }

    pub(crate) fn verdict(&self, integrity: Integrity) {
        let verdict = match integrity {
            Integrity::Valid => "valid",
            Integrity::Tampered => "tampered",
            Integrity::Pending => "pending",
        };
        self.inner
            .verdicts
            .get_or_create(&VerdictLabel { verdict })
            .inc();
    }
}

/// What the collector reads at scrape time.
pub(crate) struct StateView {
    pub tree: watch::Receiver<u64>,
    /// Log mode only.
    pub sizes: Option<watch::Receiver<AnchoredSizes>>,
    pub anchoring: watch::Receiver<AnchoringStatus>,
    /// Legacy mode counts its pending records in the database.
    pub store: Arc<dyn Store>,
}

impl std::fmt::Debug for StateView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateView")
            .field("log_size", &*self.tree.borrow())
            .finish_non_exhaustive()
    }
}

/// Encodes the ledger's state as it is at the scrape.
struct StateCollector(Arc<OnceLock<StateView>>);

impl std::fmt::Debug for StateCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StateCollector")
    }
}

fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: u64,
) -> Result<(), std::fmt::Error> {
    let g = ConstGauge::new(value);
    // Registered metrics get the same full stop from the registry.
    let help = format!("{help}.");
    g.encode(encoder.encode_descriptor(name, &help, None, g.metric_type())?)
}

/// Encodes one counter whose value is read at scrape time (a collector's), with its help text
/// ended as the registry ends those of registered metrics.
pub fn counter(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: u64,
) -> Result<(), std::fmt::Error> {
    let c = ConstCounter::new(value);
    // Registered metrics get the same full stop from the registry.
    let help = format!("{help}.");
    c.encode(encoder.encode_descriptor(name, &help, None, c.metric_type())?)
}

impl Collector for StateCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(view) = self.0.get() else {
            return Ok(());
        };
        let e = &mut encoder;
        let size = *view.tree.borrow();
        gauge(
            e,
            "log_size",
            "Records in the log (its Merkle tree size)",
            size,
        )?;
        let pending = match &view.sizes {
            Some(sizes) => {
                let s = *sizes.borrow();
                gauge(
                    e,
                    "anchored_size",
                    "Log size covered by mined anchors",
                    s.anchored,
                )?;
                gauge(
                    e,
                    "confirmed_size",
                    "Log size covered by anchors with the configured confirmations",
                    s.confirmed,
                )?;
                gauge(
                    e,
                    "finalized_size",
                    "Log size covered by anchors in blocks the chain reports finalized",
                    s.finalized,
                )?;
                Some(size.saturating_sub(s.anchored))
            }
            // The legacy anchorer keeps no anchored size: its pending rows are counted (the
            // `/health` query), and a failing database leaves the gauge out of this scrape.
            // Encoding runs on a blocking thread (the page is built off the async workers),
            // where waiting for the store is allowed.
            None => tokio::runtime::Handle::try_current()
                .ok()
                .and_then(|rt| rt.block_on(view.store.stats()).ok())
                .map(|s| s.pending),
        };
        if let Some(pending) = pending {
            gauge(
                e,
                "pending_records",
                "Records stored and not yet in a mined anchor (the anchoring backlog)",
                pending,
            )?;
        }
        let a = view.anchoring.borrow().clone();
        gauge(
            e,
            "anchoring_failing",
            "1 while anchoring fails (the last attempt's error is in /health), else 0",
            u64::from(a.last_error.is_some()),
        )?;
        counter(
            e,
            "anchors_replaced",
            "Anchors sent again with higher fees because they waited too long",
            a.replacements,
        )?;
        counter(
            e,
            "reorganisations",
            "Chain reorganisations that dropped anchors, which were then sent again",
            a.reorganisations,
        )?;
        counter(
            e,
            "chain_state_losses",
            "Times the embedded chain came back without anchors it had mined",
            a.chain_state_losses,
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registered() -> (Registry, LedgerMetrics) {
        let mut registry = Registry::with_prefix("twinledger");
        let m = LedgerMetrics::register(&mut registry);
        (registry, m)
    }

    fn page(registry: &Registry) -> String {
        let mut page = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut page, registry).expect("encodes");
        page
    }

    fn delays_observed(registry: &Registry) -> u64 {
        page(registry)
            .lines()
            .find_map(|l| l.strip_prefix("twinledger_anchor_delay_seconds_count "))
            .and_then(|v| v.parse().ok())
            .expect("the delay histogram's count")
    }

    #[test]
    fn each_record_gets_one_delay_even_when_an_anchor_splits_its_batch() {
        let (r, m) = registered();
        m.acknowledged(0, 4);
        m.acknowledged(4, 10);
        m.anchored_below(6);
        assert_eq!(
            delays_observed(&r),
            6,
            "the first batch and 2 of the second"
        );
        // A reorganisation takes the anchored size back; the records are not counted twice.
        m.anchored_below(3);
        assert_eq!(delays_observed(&r), 6);
        m.anchored_below(10);
        assert_eq!(delays_observed(&r), 10);
        // Records from before this process started (below the first batch) have no delay.
        m.acknowledged(20, 21);
        m.anchored_below(21);
        assert_eq!(delays_observed(&r), 11);
    }

    #[test]
    fn a_full_queue_merges_new_batches_into_the_last_one() {
        let (r, m) = registered();
        for i in 0..AWAITING_ANCHOR_MAX as u64 + 5 {
            m.acknowledged(i, i + 1);
        }
        let queued = m.inner.awaiting_anchor.lock().map(|q| q.len()).unwrap_or(0);
        assert_eq!(queued, AWAITING_ANCHOR_MAX);
        m.anchored_below(AWAITING_ANCHOR_MAX as u64 + 5);
        assert_eq!(delays_observed(&r), AWAITING_ANCHOR_MAX as u64 + 5);
    }

    #[test]
    fn records_are_counted_by_kind_and_shifts_by_band() {
        let (registry, m) = registered();
        m.committed(
            3,
            Duration::from_millis(2),
            Duration::from_millis(1),
            [
                RecordKind::Reported,
                RecordKind::Reported,
                RecordKind::Event,
            ]
            .into_iter(),
        );
        m.shifted("drifting");
        let page = page(&registry);
        assert!(page.contains("twinledger_records_appended_total{kind=\"reported\"} 2\n"));
        assert!(page.contains("twinledger_records_appended_total{kind=\"event\"} 1\n"));
        assert!(page.contains("twinledger_records_appended_total{kind=\"desired\"} 0\n"));
        assert!(page.contains("twinledger_congruence_shifts_total{band=\"drifting\"} 1\n"));
        assert!(
            page.contains("twinledger_write_batch_records_sum 3.0\n")
                && page.contains("twinledger_write_log_lock_seconds_sum 0.001\n"),
            "{page}"
        );
    }
}
