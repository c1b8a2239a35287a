//! The ingestion's Prometheus metrics: its counters (kept in the ledger's
//! [`IngestionStats`] for `/health`) read when Prometheus scrapes, so the message path counts
//! once, in one place.

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use twinledger_ledger::IngestionStats;
use twinledger_ledger::metrics::counter;

/// Registers the ingestion's metrics, read from `stats` at each scrape (nothing is shown
/// while the ingestion does not run).
pub fn register_metrics(registry: &mut Registry, stats: Arc<IngestionStats>) {
    registry.register_collector(Box::new(IngestionCollector(stats)));
}

#[derive(Debug)]
struct IngestionCollector(Arc<IngestionStats>);

impl Collector for IngestionCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(r) = self.0.report() else {
            return Ok(());
        };
        let e = &mut encoder;
        let connected = ConstGauge::new(u64::from(r.connected));
        connected.encode(e.encode_descriptor(
            "mqtt_connected",
            "1 while the ingestion is connected to its MQTT broker, else 0.",
            None,
            connected.metric_type(),
        )?)?;
        counter(
            e,
            "mqtt_messages_received",
            "Device messages received on the subscribed topics",
            r.received,
        )?;
        counter(
            e,
            "mqtt_messages_recorded",
            "Device messages recorded in the ledger",
            r.recorded,
        )?;
        counter(
            e,
            "mqtt_messages_redelivered",
            "Device messages the broker delivered again that were already recorded",
            r.redelivered,
        )?;
        counter(
            e,
            "mqtt_corrections_published",
            "Desired states published to devices as corrections",
            r.corrections,
        )?;
        let refused = &r.rejected;
        let mut family = e.encode_descriptor(
            "mqtt_messages_refused",
            "Device messages refused, by reason.",
            None,
            MetricType::Counter,
        )?;
        for (reason, value) in [
            ("topic", refused.topic),
            ("oversized", refused.oversized),
            ("not_json", refused.not_json),
            ("not_object", refused.not_object),
            ("bad_signature", refused.bad_signature),
            ("unsigned", refused.unsigned),
            ("unknown_twin", refused.unknown_twin),
            ("unrecorded", refused.unrecorded),
        ] {
            ConstCounter::new(value).encode(family.encode_family(&[("reason", reason)])?)?;
        }
        Ok(())
    }
}
