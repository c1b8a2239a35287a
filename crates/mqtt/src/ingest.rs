//! The ingestion: reported states from `twins/{id}/reported` into the ledger, and corrections
//! back to `twins/{id}/desired`.
//!
//! Messages are acknowledged to the broker (QoS 1, manual acks) only once recorded durably
//! or refused, on a persistent session: a message the ledger could not store is redelivered
//! after a reconnect, and one that arrived while the service was down waits in the broker.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rumqttc::{AsyncClient, Event, MqttOptions, Outgoing, Packet, Publish, QoS};
use tokio::sync::{Semaphore, broadcast, watch};
use tokio::task::JoinHandle;
use twinledger_core::congruence::{CORRECTION_EVENT, SHIFT_EVENT};
use twinledger_core::json::{self, Limits, Number, Object, Value};
use twinledger_core::{HashScheme, Record, RecordKind, TwinId};
use twinledger_ledger::{Ledger, LedgerError, Rejection, Submission, Wait};

use crate::device::SIGNATURE_MEMBER;
use crate::topic::{desired_topic, is_desired_topic, reported_twin};

/// How the ingestion connects and what it accepts.
#[derive(Debug, Clone)]
pub struct MqttConfig {
    /// Broker host.
    pub host: String,
    /// Broker port.
    pub port: u16,
    /// Client id: stable, so that the broker keeps the session (and queued messages) across
    /// restarts; unique per ledger.
    pub client_id: String,
    /// Largest payload recorded, in bytes.
    pub max_payload: usize,
    /// Record reports for twins that have no record yet.
    pub auto_create: bool,
    /// Publish the desired state when a twin enters `diverged_band`.
    pub corrections: bool,
    /// The band whose entry publishes a correction.
    pub diverged_band: String,
    /// Messages being recorded at once.
    pub max_in_flight: usize,
    /// When several nodes ingest from one broker: the shared subscription's group, so that
    /// the broker hands each device message to one of them (each node keeps its own
    /// `client_id`).
    pub share_group: Option<String>,
}

impl Default for MqttConfig {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 1883,
            client_id: "twinledger-ingest".into(),
            max_payload: 64 * 1024,
            auto_create: true,
            corrections: true,
            diverged_band: "diverged".into(),
            max_in_flight: 1024,
            share_group: None,
        }
    }
}

/// The client's own packet limit: far above `max_payload`, so that an oversized message is
/// refused (and acknowledged) by us, not dropped with the connection and redelivered forever.
const MAX_PACKET: usize = 16 * 1024 * 1024;

/// Corrections published and waiting for the broker's acknowledgement.
#[derive(Default)]
struct Corrections {
    /// In publication order, before the client assigns a packet id.
    queued: VecDeque<Correction>,
    /// By packet id, until acknowledged.
    sent: HashMap<u16, Correction>,
}

/// A desired state published to a diverged twin.
#[derive(Debug, Clone)]
struct Correction {
    twin: TwinId,
    topic: String,
    desired_version: u64,
    shift_version: u64,
}

/// The running ingestion.
pub struct Ingestion {
    task: JoinHandle<()>,
}

impl Ingestion {
    /// Connects (and keeps reconnecting) to the broker and records what devices report,
    /// until `closing` turns true.
    pub fn spawn(ledger: Ledger, config: MqttConfig, closing: watch::Receiver<bool>) -> Self {
        ledger.ingestion().enable();
        Self {
            task: tokio::spawn(run(ledger, config, closing)),
        }
    }

    /// Waits for it to end (after `closing`).
    pub async fn join(self) {
        let _ = self.task.await;
    }
}

async fn run(ledger: Ledger, config: MqttConfig, mut closing: watch::Receiver<bool>) {
    let mut options = MqttOptions::new(config.client_id.clone(), config.host.clone(), config.port);
    options
        .set_keep_alive(Duration::from_secs(5))
        .set_clean_session(false)
        .set_manual_acks(true)
        .set_max_packet_size(MAX_PACKET, MAX_PACKET);
    let (client, mut events) = AsyncClient::new(options, config.max_in_flight.max(16));
    let corrections = Arc::new(Mutex::new(Corrections::default()));
    let permits = Arc::new(Semaphore::new(config.max_in_flight.max(1)));
    let config = Arc::new(config);
    let publisher = config.corrections.then(|| {
        tokio::spawn(publish_corrections(
            ledger.clone(),
            client.clone(),
            config.clone(),
            corrections.clone(),
            ledger.shifts(),
        ))
    });
    let stats = ledger.ingestion().clone();
    // The broker's in-flight limit bounds what waits here.
    let (incoming, mut queue) = tokio::sync::mpsc::unbounded_channel::<Publish>();
    let dispatcher = {
        let (ledger, client, config) = (ledger.clone(), client.clone(), config.clone());
        tokio::spawn(async move {
            while let Some(p) = queue.recv().await {
                let Ok(permit) = permits.clone().acquire_owned().await else {
                    return;
                };
                let (ledger, client, config) = (ledger.clone(), client.clone(), config.clone());
                tokio::spawn(async move {
                    if take(&ledger, &config, &p).await {
                        let _ = client.ack(&p).await;
                    }
                    drop(permit);
                });
            }
        })
    };
    let mut backoff = Duration::from_millis(100);
    loop {
        let event = tokio::select! {
            e = events.poll() => e,
            _ = closing.changed() => break,
        };
        match event {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                backoff = Duration::from_millis(100);
                stats.set_connected(true);
                tracing::info!(target: "twinledger::mqtt", broker = %format!("{}:{}", config.host, config.port), "connected");
                if !ack.session_present {
                    // `try_`: awaiting here could wait on the loop that is this one.
                    // All of `twins/`, so that a device publishing to a wrong topic is seen
                    // and counted rather than silently unheard.
                    let filter = match &config.share_group {
                        Some(group) => format!("$share/{group}/twins/#"),
                        None => "twins/#".to_owned(),
                    };
                    if let Err(e) = client.try_subscribe(filter, QoS::AtLeastOnce) {
                        tracing::error!(target: "twinledger::mqtt", error = %e, "cannot subscribe");
                    }
                }
            }
            Ok(Event::Incoming(Packet::Publish(p))) if is_desired_topic(&p.topic) => {
                // Desired states (ours, or set by others for the devices): not device input.
                // Acknowledged all the same, or they would fill the broker's in-flight window.
                let client = client.clone();
                tokio::spawn(async move {
                    let _ = client.ack(&p).await;
                });
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                stats.received();
                // Handed on, never awaited here: the acks the handlers send go through this
                // loop, so waiting on them here would stop both.
                let _ = incoming.send(p);
            }
            Ok(Event::Outgoing(Outgoing::Publish(pkid))) => {
                if let Ok(mut c) = corrections.lock()
                    && let Some(correction) = c.queued.pop_front()
                {
                    c.sent.insert(pkid, correction);
                }
            }
            Ok(Event::Incoming(Packet::PubAck(ack))) => {
                let done = corrections
                    .lock()
                    .ok()
                    .and_then(|mut c| c.sent.remove(&ack.pkid));
                if let Some(correction) = done {
                    tokio::spawn(record_correction(ledger.clone(), correction));
                }
            }
            Ok(_) => {}
            Err(e) => {
                stats.set_connected(false);
                tracing::warn!(target: "twinledger::mqtt", error = %e, "broker connection lost; reconnecting");
                // rumqttc reconnects on the next poll at once; without a pause a broker that
                // is down would spin this loop.
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = closing.changed() => break,
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
    stats.set_connected(false);
    dispatcher.abort();
    if let Some(p) = publisher {
        p.abort();
    }
    let _ = client.try_disconnect();
    // Let the disconnect go out.
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while let Ok(e) = events.poll().await {
            if matches!(e, Event::Outgoing(Outgoing::Disconnect)) {
                break;
            }
        }
    })
    .await;
}

/// Records one message, or refuses it; true when the broker may forget it (recorded or
/// refused for good), false to have it redelivered.
async fn take(ledger: &Ledger, config: &MqttConfig, p: &Publish) -> bool {
    let stats = ledger.ingestion();
    let refuse = |why: Rejection, detail: &str| {
        stats.rejected(why);
        tracing::warn!(target: "twinledger::mqtt", topic = %p.topic, reason = ?why, detail, "message refused");
        true
    };
    let Some(twin) = reported_twin(&p.topic) else {
        return refuse(Rejection::Topic, "expected twins/{id}/reported");
    };
    if p.payload.len() > config.max_payload {
        return refuse(Rejection::Oversized, &format!("{} bytes", p.payload.len()));
    }
    let members = match json::parse(&p.payload, &Limits::default()) {
        Ok(Value::Object(o)) => o,
        Ok(_) => return refuse(Rejection::NotObject, "the payload is a JSON object"),
        Err(e) => return refuse(Rejection::NotJson, &e.to_string()),
    };
    let mut state = Object::new();
    let mut signature = None;
    for (key, value) in members.into_members() {
        match (key.as_str(), value) {
            (SIGNATURE_MEMBER, Value::String(s)) => signature = Some(s),
            (SIGNATURE_MEMBER, _) => {
                return refuse(Rejection::BadSignature, "$signature must be a hex string");
            }
            (_, value) => {
                state.insert(key, value);
            }
        }
    }
    if !config.auto_create {
        match ledger.twin(&twin).await {
            Ok(_) => {}
            Err(LedgerError::TwinNotFound(_)) => {
                return refuse(Rejection::UnknownTwin, "auto-creation is off");
            }
            Err(e) => {
                stats.rejected(Rejection::Unrecorded);
                tracing::error!(target: "twinledger::mqtt", error = %e, "cannot look up the twin; the broker will redeliver");
                return false;
            }
        }
    }
    let state = Value::Object(state);
    // A message the broker delivers again (its first delivery's acknowledgement was lost, as
    // when a node dies between recording it and acknowledging it) may already be recorded,
    // by this node or another.
    if p.dup && recently_recorded(ledger, &twin, &state).await {
        stats.redelivered();
        return true;
    }
    let signed = signature.is_some();
    let mut annex = Object::new();
    annex.insert("source", Value::String("mqtt".into()));
    let submission = Submission {
        signature,
        annex,
        ..Submission::plain(twin, RecordKind::Reported, state, HashScheme::JcsSha256)
    };
    match ledger.record(submission, Wait::Stored).await {
        Ok(_) => {
            stats.recorded();
            true
        }
        Err(LedgerError::Signature(e)) if signed => refuse(Rejection::BadSignature, &e),
        Err(LedgerError::Signature(e)) => refuse(Rejection::Unsigned, &e),
        Err(e @ (LedgerError::Unhashable(_) | LedgerError::Invalid(_))) => {
            refuse(Rejection::NotJson, &e.to_string())
        }
        Err(e) => {
            stats.rejected(Rejection::Unrecorded);
            tracing::error!(target: "twinledger::mqtt", error = %e, "not recorded; the broker will redeliver");
            false
        }
    }
}

/// How far back a redelivered message is looked for among its twin's records: a node that died
/// holding it may come back minutes later, its twin's log moved on meanwhile.
const REDELIVERY_WINDOW_MS: i64 = 10 * 60 * 1000;
const REDELIVERY_VERSIONS_MAX: u64 = 50_000;
const REDELIVERY_PAGE: u64 = 1000;

/// Whether `state` was recorded from MQTT for `twin` within [`REDELIVERY_WINDOW_MS`] of its
/// latest record (looking back at most [`REDELIVERY_VERSIONS_MAX`] versions, newest first).
/// Only a message the broker marks as delivered again is looked for, so this is rare.
async fn recently_recorded(ledger: &Ledger, twin: &TwinId, state: &Value) -> bool {
    let Ok(hash) = HashScheme::JcsSha256.hash(state) else {
        return false;
    };
    let Ok(summary) = ledger.twin(twin).await else {
        return false;
    };
    let since = summary.updated_at_ms - REDELIVERY_WINDOW_MS;
    let oldest = summary
        .latest_version
        .saturating_sub(REDELIVERY_VERSIONS_MAX)
        .max(1);
    let mut to = summary.latest_version;
    while to >= oldest {
        let from = to.saturating_sub(REDELIVERY_PAGE - 1).max(oldest);
        let Ok(rows) = ledger
            .store()
            .history(twin, from, (to - from + 1) as usize)
            .await
        else {
            return false;
        };
        if rows.iter().any(|r| {
            r.kind == RecordKind::Reported.as_str()
                && r.recorded_at_ms >= since
                && r.state_hash == hash
                && r.annex
                    .as_deref()
                    .is_some_and(|a| a.contains(r#""source":"mqtt""#))
        }) {
            return true;
        }
        if from == oldest || rows.first().is_none_or(|r| r.recorded_at_ms < since) {
            return false;
        }
        to = from - 1;
    }
    false
}

/// Publishes the desired state of each twin that enters the diverged band.
async fn publish_corrections(
    ledger: Ledger,
    client: AsyncClient,
    config: Arc<MqttConfig>,
    corrections: Arc<Mutex<Corrections>>,
    mut shifts: broadcast::Receiver<Arc<Record>>,
) {
    loop {
        let shift = match shifts.recv().await {
            Ok(s) => s,
            Err(broadcast::error::RecvError::Lagged(n)) => {
                tracing::warn!(target: "twinledger::mqtt", missed = n, "shift events missed; their corrections are not published");
                continue;
            }
            Err(broadcast::error::RecvError::Closed) => return,
        };
        let state = shift.state.as_object();
        let to = state.and_then(|s| s.get("to")).and_then(Value::as_str);
        let is_shift =
            state.and_then(|s| s.get("type")).and_then(Value::as_str) == Some(SHIFT_EVENT);
        if !is_shift || to != Some(config.diverged_band.as_str()) {
            continue;
        }
        let desired = match desired_state(&ledger, &shift.twin_id).await {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(target: "twinledger::mqtt", twin = %shift.twin_id, error = %e, "cannot read the desired state to publish");
                continue;
            }
        };
        let topic = desired_topic(&shift.twin_id);
        let correction = Correction {
            twin: shift.twin_id.clone(),
            topic: topic.clone(),
            desired_version: desired.0,
            shift_version: shift.version,
        };
        if let Ok(mut c) = corrections.lock() {
            c.queued.push_back(correction);
        }
        // Retained, as in the device-shadow pattern: a device that connects later gets it.
        if let Err(e) = client
            .publish(topic, QoS::AtLeastOnce, true, desired.1.into_bytes())
            .await
        {
            tracing::error!(target: "twinledger::mqtt", error = %e, "cannot publish a correction");
            if let Ok(mut c) = corrections.lock() {
                c.queued.pop_back();
            }
        }
    }
}

/// The twin's current desired version and state (JSON text).
async fn desired_state(ledger: &Ledger, twin: &TwinId) -> Result<(u64, String), LedgerError> {
    let summary = ledger.twin(twin).await?;
    let index = summary
        .desired_index
        .ok_or_else(|| LedgerError::Conflict(format!("twin {twin} has no desired state")))?;
    let row = ledger
        .store()
        .record_at(index)
        .await?
        .ok_or_else(|| LedgerError::Store(format!("record {index} vanished")))?;
    Ok((row.version.max(0) as u64, row.state))
}

/// Records that a correction reached the broker.
async fn record_correction(ledger: Ledger, c: Correction) {
    let mut state = Object::new();
    state.insert("type", Value::String(CORRECTION_EVENT.into()));
    state.insert("topic", Value::String(c.topic.clone()));
    state.insert(
        "desired_version",
        Value::Number(Number::from_u64(c.desired_version)),
    );
    state.insert(
        "shift_version",
        Value::Number(Number::from_u64(c.shift_version)),
    );
    let submission = Submission::plain(
        c.twin.clone(),
        RecordKind::Event,
        Value::Object(state),
        HashScheme::JcsSha256,
    );
    match ledger.record(submission, Wait::Stored).await {
        Ok(_) => ledger.ingestion().corrected(),
        Err(e) => {
            tracing::error!(target: "twinledger::mqtt", twin = %c.twin, error = %e, "correction published but not recorded");
        }
    }
}
