//! A device that publishes its reported state over MQTT, optionally signed, and listens for
//! the desired state the ledger publishes back: the simulator's devices, and the tests'.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rumqttc::{AsyncClient, Event, MqttOptions, Outgoing, Packet, QoS};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use twinledger_core::json::{self, Limits, Value};
use twinledger_core::{DeviceSigner, TwinId};

use crate::MqttError;
use crate::topic::{desired_topic, reported_topic};

/// The member of a published state object that carries the device's Ed25519 signature (128
/// hex digits) of the rest of the object's JCS encoding. It is not part of the state.
pub const SIGNATURE_MEMBER: &str = "$signature";

/// Largest payload a device publishes or accepts (the ingestion's own limit is configured).
const MAX_PACKET: usize = 4 * 1024 * 1024;

/// A connected device.
pub struct Device {
    client: AsyncClient,
    /// Publications queued, and acknowledged by the broker.
    published: Arc<(AtomicU64, AtomicU64)>,
    twin: TwinId,
    signer: Option<DeviceSigner>,
    desired: mpsc::UnboundedReceiver<Value>,
    events: JoinHandle<()>,
}

impl Device {
    /// Connects to the broker at `127.0.0.1:port` (or `host`) as the device of `twin`, and
    /// subscribes to its desired-state topic.
    pub async fn connect(
        host: &str,
        port: u16,
        twin: TwinId,
        signer: Option<DeviceSigner>,
    ) -> Result<Self, MqttError> {
        let id = format!("twinledger-device-{twin}-{:08x}", rand::random::<u32>());
        let mut options = MqttOptions::new(id, host, port);
        options
            .set_keep_alive(Duration::from_secs(5))
            .set_max_packet_size(MAX_PACKET, MAX_PACKET);
        let (client, mut events) = AsyncClient::new(options, 1024);
        let (connected_tx, connected_rx) = oneshot::channel();
        let (desired_tx, desired) = mpsc::unbounded_channel();
        let desired_topic = desired_topic(&twin);
        let subscriber = client.clone();
        let published = Arc::new((AtomicU64::new(0), AtomicU64::new(0)));
        let acked = published.clone();
        let events = tokio::spawn(async move {
            let mut connected = Some(connected_tx);
            loop {
                match events.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        let _ = subscriber.try_subscribe(desired_topic.clone(), QoS::AtLeastOnce);
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        if let Some(tx) = connected.take() {
                            let _ = tx.send(Ok(()));
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        if let Ok(v) = json::parse(&p.payload, &Limits::default()) {
                            let _ = desired_tx.send(v);
                        }
                    }
                    Ok(Event::Incoming(Packet::PubAck(_))) => {
                        acked.1.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(Event::Outgoing(Outgoing::Disconnect)) => return,
                    Ok(_) => {}
                    Err(e) => {
                        if let Some(tx) = connected.take() {
                            let _ = tx.send(Err(e.to_string()));
                            return;
                        }
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            }
        });
        match tokio::time::timeout(Duration::from_secs(10), connected_rx).await {
            Ok(Ok(Ok(()))) => Ok(Self {
                client,
                published,
                twin,
                signer,
                desired,
                events,
            }),
            Ok(Ok(Err(e))) => Err(MqttError::Client(e)),
            _ => Err(MqttError::Client("no connection within 10 s".into())),
        }
    }

    /// The twin this device reports for.
    pub fn twin(&self) -> &TwinId {
        &self.twin
    }

    /// Publishes `state` (a JSON object) to the twin's reported topic, signed if the device
    /// has a key.
    pub async fn report(&self, state: &Value) -> Result<(), MqttError> {
        let mut payload = state.clone();
        if let (Some(signer), Value::Object(members)) = (&self.signer, &mut payload) {
            let signature = signer
                .sign(state)
                .map_err(|e| MqttError::Client(e.to_string()))?;
            members.insert(SIGNATURE_MEMBER, Value::String(signature));
        }
        self.publish(&reported_topic(&self.twin), payload.to_json().into_bytes())
            .await
    }

    /// Publishes raw bytes to any topic (QoS 1): for tests of what the ingestion refuses.
    pub async fn publish(&self, topic: &str, payload: Vec<u8>) -> Result<(), MqttError> {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload)
            .await
            .map_err(|e| MqttError::Client(e.to_string()))?;
        self.published.0.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// The next desired state published to this device, waiting at most `within`.
    pub async fn next_desired(&mut self, within: Duration) -> Option<Value> {
        tokio::time::timeout(within, self.desired.recv())
            .await
            .ok()
            .flatten()
    }

    /// Disconnects, once the broker has acknowledged every publication (or 30 s passed).
    pub async fn disconnect(self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while self.published.1.load(Ordering::Relaxed) < self.published.0.load(Ordering::Relaxed)
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let _ = self.client.disconnect().await;
        let _ = tokio::time::timeout(Duration::from_secs(5), self.events).await;
    }
}
