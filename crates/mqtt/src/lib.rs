//! MQTT for twinledger: devices publish their reported state to `twins/{id}/reported`, the
//! [`Ingestion`] records it (checking device signatures, counting what it refuses), and when
//! a twin's congruence falls into the diverged band its desired state is published to
//! `twins/{id}/desired` as a correction, which is recorded too. [`LocalBroker`] runs a
//! Mosquitto for development and tests; [`Device`] is a publishing device for the simulator
//! and tests.

mod broker;
mod device;
mod ingest;
mod metrics;
mod topic;

pub use broker::LocalBroker;
pub use device::{Device, SIGNATURE_MEMBER};
pub use ingest::{Ingestion, MqttConfig};
pub use metrics::register_metrics;
pub use topic::{desired_topic, reported_topic};

/// Why an MQTT component failed.
#[derive(Debug, thiserror::Error)]
pub enum MqttError {
    /// The broker could not be started.
    #[error("mosquitto: {0}")]
    Broker(String),
    /// The client could not talk to the broker.
    #[error("MQTT client: {0}")]
    Client(String),
}
