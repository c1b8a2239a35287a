//! Counters of device messages taken in over MQTT, and of those refused by reason: what
//! `/health` shows so that an operator sees bad input without reading logs.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use serde::Serialize;

/// Why a device message was not recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// Not `twins/{id}/reported`, or an invalid twin id.
    Topic,
    /// Larger than the configured limit.
    Oversized,
    /// Not JSON (or beyond the JSON limits).
    NotJson,
    /// JSON, but not an object.
    NotObject,
    /// A signature that does not hold, or a twin without a device key.
    BadSignature,
    /// Unsigned, for a twin that requires signatures.
    Unsigned,
    /// For a twin that does not exist, with auto-creation off.
    UnknownTwin,
    /// The ledger could not record it (storage failure); the broker redelivers it.
    Unrecorded,
}

const REASONS: usize = 8;

impl Rejection {
    fn slot(self) -> usize {
        self as usize
    }
}

/// Live counters, shared by the ingestion and `/health`.
#[derive(Debug, Default)]
pub struct IngestionStats {
    enabled: AtomicBool,
    connected: AtomicBool,
    received: AtomicU64,
    recorded: AtomicU64,
    redelivered: AtomicU64,
    corrections: AtomicU64,
    rejected: [AtomicU64; REASONS],
}

/// A snapshot of [`IngestionStats`].
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct IngestionReport {
    /// Whether the ingestion is connected to its broker.
    pub connected: bool,
    /// Messages received on the subscribed topics.
    pub received: u64,
    /// Messages recorded.
    pub recorded: u64,
    /// Messages the broker delivered again that were already recorded (not recorded twice).
    pub redelivered: u64,
    /// Desired states published as corrections.
    pub corrections: u64,
    /// Messages refused, by reason.
    pub rejected: Rejected,
}

/// Refused messages by reason.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Rejected {
    /// Unexpected topic.
    pub topic: u64,
    /// Too large.
    pub oversized: u64,
    /// Not JSON.
    pub not_json: u64,
    /// Not a JSON object.
    pub not_object: u64,
    /// Bad signature.
    pub bad_signature: u64,
    /// Missing signature.
    pub unsigned: u64,
    /// Unknown twin.
    pub unknown_twin: u64,
    /// Not recorded for a storage failure.
    pub unrecorded: u64,
    /// All of them.
    pub total: u64,
}

impl IngestionStats {
    /// Marks the ingestion as running (so `/health` reports it).
    pub fn enable(&self) {
        self.enabled.store(true, Ordering::Relaxed);
    }

    /// Notes a (dis)connection from the broker.
    pub fn set_connected(&self, connected: bool) {
        self.connected.store(connected, Ordering::Relaxed);
    }

    /// Counts a message received.
    pub fn received(&self) {
        self.received.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a message recorded.
    pub fn recorded(&self) {
        self.recorded.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a redelivered message found already recorded.
    pub fn redelivered(&self) {
        self.redelivered.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a correction published.
    pub fn corrected(&self) {
        self.corrections.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a refused message.
    pub fn rejected(&self, why: Rejection) {
        self.rejected[why.slot()].fetch_add(1, Ordering::Relaxed);
    }

    /// The counters now, if the ingestion runs.
    pub fn report(&self) -> Option<IngestionReport> {
        if !self.enabled.load(Ordering::Relaxed) {
            return None;
        }
        let r = |why: Rejection| self.rejected[why.slot()].load(Ordering::Relaxed);
        Some(IngestionReport {
            connected: self.connected.load(Ordering::Relaxed),
            received: self.received.load(Ordering::Relaxed),
            recorded: self.recorded.load(Ordering::Relaxed),
            redelivered: self.redelivered.load(Ordering::Relaxed),
            corrections: self.corrections.load(Ordering::Relaxed),
            rejected: Rejected {
                topic: r(Rejection::Topic),
                oversized: r(Rejection::Oversized),
                not_json: r(Rejection::NotJson),
                not_object: r(Rejection::NotObject),
                bad_signature: r(Rejection::BadSignature),
                unsigned: r(Rejection::Unsigned),
                unknown_twin: r(Rejection::UnknownTwin),
                unrecorded: r(Rejection::Unrecorded),
                total: self
                    .rejected
                    .iter()
                    .map(|c| c.load(Ordering::Relaxed))
                    .sum(),
            },
        })
    }
}
