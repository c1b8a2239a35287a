//! Domain core of twinledger: the JSON model of digital twin states, their
//! canonical encodings and hashes. This crate does no I/O, so every result
//! depends only on its inputs and can be checked against outside oracles.

pub mod canonical;
pub mod jcs;
pub mod json;
pub mod seed;

pub use canonical::{CanonicalError, HashScheme};
pub use jcs::{jcs_json, jcs_sha256};
pub use json::{JsonError, Limits, Number, Object, Value, parse};
pub use seed::{seed_json, seed_sha256};

pub mod hash;
pub mod record;
pub mod twin;

pub use hash::{Hash, HashParseError, leaf_hash, node_hash};
pub use record::{
    Annex, LEAF_FORMAT_V1, LEAF_FORMAT_V2, Record, RecordKind, Salt, UnknownRecordKind,
};
pub mod congruence;

pub mod signature;

pub use congruence::{Band, Bands, Comparison, CongruenceError, Tolerance, Tolerances};
pub use signature::{DeviceKey, DeviceSignature, DeviceSigner, SignatureError};
pub use twin::{MAX_TWIN_ID_CHARS, TwinId, TwinIdError, check_twin_prefix};
pub mod proof;
pub mod tree;

pub use proof::{ConsistencyProof, InclusionProof, ProofError};
pub use tree::{CompletedNode, Frontier, NodeSource, TreeHead, range_root, root_of};
pub mod bundle;

pub use bundle::{BUNDLE_FORMAT, BundleAnchor, BundleError, ProofBundle};
