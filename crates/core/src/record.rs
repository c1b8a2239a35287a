//! Records: one state change of one twin, and its leaf in the log.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::hash::{Hash, leaf_hash};
use crate::jcs::jcs_json;
use crate::json::Value;
use crate::twin::TwinId;
use crate::{CanonicalError, HashScheme};

/// Version byte that opens every leaf; a new leaf layout gets a new number.
pub const LEAF_FORMAT_V1: u8 = 1;
/// Leaf layout of a record with an [`Annex`]: the v1 layout followed by the annex's hash.
pub const LEAF_FORMAT_V2: u8 = 2;

/// What a record says about its twin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordKind {
    /// A state the twin (or its device) reported.
    Reported,
    /// A state the twin is expected to reach.
    Desired,
    /// Something the ledger itself observed, such as a congruence shift.
    Event,
}

impl RecordKind {
    /// The kind's name as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Reported => "reported",
            Self::Desired => "desired",
            Self::Event => "event",
        }
    }

    /// The kind's code in the leaf encoding.
    pub fn code(self) -> u8 {
        match self {
            Self::Reported => 0,
            Self::Desired => 1,
            Self::Event => 2,
        }
    }
}

impl fmt::Display for RecordKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that names no record kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown record kind {0:?}")]
pub struct UnknownRecordKind(pub String);

impl FromStr for RecordKind {
    type Err = UnknownRecordKind;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "reported" => Ok(Self::Reported),
            "desired" => Ok(Self::Desired),
            "event" => Ok(Self::Event),
            other => Err(UnknownRecordKind(other.into())),
        }
    }
}

/// 32 random bytes mixed into each leaf so that a leaf hash reveals nothing about the state.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Salt(pub [u8; 32]);

impl Salt {
    /// The salt of a record the ledger derives from this one (a congruence shift): as
    /// unguessable as this salt, and the same whoever derives it.
    pub fn derive(&self, label: &str) -> Salt {
        let mut input = Vec::with_capacity(label.len() + 32);
        input.extend_from_slice(label.as_bytes());
        input.extend_from_slice(&self.0);
        Salt(Hash::digest(&input).0)
    }
}

impl fmt::Debug for Salt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Salt({})", hex::encode(self.0))
    }
}

/// What the ledger records with a record besides its state, covered by its leaf hash: its
/// congruence, the device's signature, the tolerances of a desired state, where it came from.
/// A JSON object; its hash is SHA-256 of its JCS (RFC 8785) encoding.
#[derive(Debug, Clone, PartialEq)]
pub struct Annex {
    value: Value,
    hash: Hash,
}

impl Annex {
    /// Wraps a JSON object; fails on values JCS cannot encode.
    pub fn new(value: Value) -> Result<Self, CanonicalError> {
        let hash = Hash::digest(jcs_json(&value)?.as_bytes());
        Ok(Self { value, hash })
    }

    /// The annex object.
    pub fn value(&self) -> &Value {
        &self.value
    }

    /// One member of the annex.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.value.as_object().and_then(|o| o.get(key))
    }

    /// SHA-256 of its JCS encoding, the last 32 bytes of a v2 leaf.
    pub fn hash(&self) -> Hash {
        self.hash
    }
}

/// One state change of one twin, at its place in the global log.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// Position in the global append-only log, from 0.
    pub index: u64,
    /// The twin this record belongs to.
    pub twin_id: TwinId,
    /// Per-twin version: 1, 2, ... with no gaps.
    pub version: u64,
    /// What the record says.
    pub kind: RecordKind,
    /// The state, a JSON object.
    pub state: Value,
    /// How `state_hash` was computed from `state`.
    pub scheme: HashScheme,
    /// Hash of `state` under `scheme`.
    pub state_hash: Hash,
    /// Leaf hash of the twin's previous record; `None` for version 1.
    pub prev_leaf_hash: Option<Hash>,
    /// When the ledger accepted the record, in milliseconds since the Unix epoch.
    pub recorded_at_ms: i64,
    /// Random salt of the leaf.
    pub salt: Salt,
    /// What is recorded with the state (leaf format v2); `None` for a plain record (v1).
    pub annex: Option<Annex>,
}

impl Record {
    /// The leaf bytes, length-prefixed so that no two records share an encoding. Format v1:
    ///
    /// `0x01 || u64 index || u8 kind || u16 len || twin_id || u64 version || i64 recorded_at_ms ||
    /// u8 len || scheme || state_hash[32] || prev_leaf_hash[32] (zeros for version 1) || salt[32]`,
    /// integers big-endian. Format v2 (a record with an annex): the same with `0x02` first and
    /// `annex_hash[32]` last.
    pub fn leaf(&self) -> Vec<u8> {
        let id = self.twin_id.as_str().as_bytes();
        let scheme = self.scheme.as_str().as_bytes();
        let mut out = Vec::with_capacity(1 + 8 + 1 + 2 + id.len() + 8 + 8 + 1 + scheme.len() + 128);
        out.push(match self.annex {
            None => LEAF_FORMAT_V1,
            Some(_) => LEAF_FORMAT_V2,
        });
        out.extend_from_slice(&self.index.to_be_bytes());
        out.push(self.kind.code());
        // Twin ids are at most 128 characters, so at most 512 bytes: u16 always fits.
        out.extend_from_slice(&(id.len() as u16).to_be_bytes());
        out.extend_from_slice(id);
        out.extend_from_slice(&self.version.to_be_bytes());
        out.extend_from_slice(&self.recorded_at_ms.to_be_bytes());
        out.push(scheme.len() as u8);
        out.extend_from_slice(scheme);
        out.extend_from_slice(&self.state_hash.0);
        out.extend_from_slice(&self.prev_leaf_hash.unwrap_or(Hash::ZERO).0);
        out.extend_from_slice(&self.salt.0);
        if let Some(annex) = &self.annex {
            out.extend_from_slice(&annex.hash.0);
        }
        out
    }

    /// RFC 9162 leaf hash of [`Record::leaf`].
    pub fn leaf_hash(&self) -> Hash {
        leaf_hash(&self.leaf())
    }
}
