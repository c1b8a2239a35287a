//! Proof bundles: everything a third party needs to check that a record is in the log and that
//! the log's head is anchored on chain (format `twinledger-proof-v1`, see docs/proof-format.md).
//!
//! Bundles are read with the strict parser of [`crate::json`], so the state keeps its exact
//! number spellings and a bundle with duplicate keys is refused rather than read one way here
//! and another way elsewhere.

use std::str::FromStr;

use crate::HashScheme;
use crate::hash::Hash;
use crate::json::{self, Limits, Number, Object, Value};
use crate::proof::{InclusionProof, ProofError};
use crate::record::{Annex, Record, RecordKind, Salt};
use crate::signature::{DeviceSignature, SignatureError};
use crate::tree::TreeHead;
use crate::twin::TwinId;

/// The format name every bundle carries.
pub const BUNDLE_FORMAT: &str = "twinledger-proof-v1";

/// Where the bundle says its tree head was anchored. A verifier must not trust the chain and
/// contract named here: it compares them with its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleAnchor {
    /// Chain id.
    pub chain_id: u64,
    /// Contract address, `0x`-prefixed hex.
    pub contract: String,
    /// The anchoring transaction.
    pub tx_hash: String,
    /// Block holding it.
    pub block_number: u64,
    /// That block's timestamp.
    pub block_timestamp: u64,
}

/// A record with its inclusion proof and anchored tree head.
#[derive(Debug, Clone, PartialEq)]
pub struct ProofBundle {
    /// The record.
    pub record: Record,
    /// The record's leaf bytes, as the bundle states them (informative: checked against the
    /// record, which is what counts).
    pub leaf: Vec<u8>,
    /// Its leaf hash, as the bundle states it.
    pub leaf_hash: Hash,
    /// Inclusion of the leaf in the tree of `tree_head.size` leaves.
    pub inclusion_proof: InclusionProof,
    /// The anchored tree head.
    pub tree_head: TreeHead,
    /// Where the head was anchored.
    pub anchor: BundleAnchor,
}

/// Why a bundle is unreadable or does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BundleError {
    /// Not JSON, or not the bundle's shape.
    #[error("malformed proof bundle: {0}")]
    Malformed(String),
    /// The state does not hash to the stated state hash.
    #[error("the state does not match its hash: expected {expected}, got {got}")]
    StateHash {
        /// Stated.
        expected: Hash,
        /// Recomputed.
        got: Hash,
    },
    /// The record does not encode to the stated leaf hash.
    #[error("the record does not match its leaf hash: expected {expected}, got {got}")]
    LeafHash {
        /// Stated.
        expected: Hash,
        /// Recomputed.
        got: Hash,
    },
    /// The proof is for another index or tree size than the bundle states.
    #[error(
        "the inclusion proof is for leaf {proof_index} of {proof_size}, the record is leaf {index} of {size}"
    )]
    ProofMismatch {
        /// The proof's index.
        proof_index: u64,
        /// The proof's size.
        proof_size: u64,
        /// The record's index.
        index: u64,
        /// The head's size.
        size: u64,
    },
    /// The record carries a device signature that does not hold.
    #[error("the device signature fails: {0}")]
    Signature(#[from] SignatureError),
    /// The inclusion proof does not lead to the tree head.
    #[error("the inclusion proof fails: {0}")]
    Inclusion(#[from] ProofError),
}

fn malformed(msg: impl Into<String>) -> BundleError {
    BundleError::Malformed(msg.into())
}

fn field<'a>(o: &'a Object, key: &str) -> Result<&'a Value, BundleError> {
    o.get(key)
        .ok_or_else(|| malformed(format!("missing field {key:?}")))
}

fn object<'a>(o: &'a Object, key: &str) -> Result<&'a Object, BundleError> {
    field(o, key)?
        .as_object()
        .ok_or_else(|| malformed(format!("{key:?} must be an object")))
}

fn string<'a>(o: &'a Object, key: &str) -> Result<&'a str, BundleError> {
    field(o, key)?
        .as_str()
        .ok_or_else(|| malformed(format!("{key:?} must be a string")))
}

fn u64_field(o: &Object, key: &str) -> Result<u64, BundleError> {
    field(o, key)?
        .as_number()
        .filter(|n| n.is_integer())
        .and_then(|n| n.as_lexeme().parse().ok())
        .ok_or_else(|| malformed(format!("{key:?} must be a non-negative integer")))
}

fn i64_field(o: &Object, key: &str) -> Result<i64, BundleError> {
    field(o, key)?
        .as_number()
        .filter(|n| n.is_integer())
        .and_then(|n| n.as_lexeme().parse().ok())
        .ok_or_else(|| malformed(format!("{key:?} must be an integer")))
}

fn hash_field(o: &Object, key: &str) -> Result<Hash, BundleError> {
    Hash::from_hex(string(o, key)?).map_err(|e| malformed(format!("{key:?}: {e}")))
}

fn only_fields(o: &Object, allowed: &[&str], what: &str) -> Result<(), BundleError> {
    match o.iter().find(|(k, _)| !allowed.contains(k)) {
        Some((k, _)) => Err(malformed(format!("unknown field {k:?} in {what}"))),
        None => Ok(()),
    }
}

fn num(n: u64) -> Value {
    Value::Number(Number::from_u64(n))
}

fn text(s: impl Into<String>) -> Value {
    Value::String(s.into())
}

impl ProofBundle {
    /// The bundle as JSON (compact, fields in documented order).
    pub fn to_json(&self) -> String {
        let r = &self.record;
        let mut record = Object::new();
        record.insert("index", num(r.index));
        record.insert("twin_id", text(r.twin_id.as_str()));
        record.insert("version", num(r.version));
        record.insert("kind", text(r.kind.as_str()));
        record.insert("state", r.state.clone());
        record.insert("hash_scheme", text(r.scheme.as_str()));
        record.insert("state_hash", text(r.state_hash.to_hex()));
        record.insert(
            "prev_leaf_hash",
            r.prev_leaf_hash.map_or(Value::Null, |h| text(h.to_hex())),
        );
        record.insert(
            "recorded_at_ms",
            Value::Number(Number::from_i64(r.recorded_at_ms)),
        );
        record.insert("salt", text(hex::encode(r.salt.0)));
        if let Some(annex) = &r.annex {
            record.insert("annex", annex.value().clone());
        }
        let mut proof = Object::new();
        proof.insert("leaf_index", num(self.inclusion_proof.index));
        proof.insert("tree_size", num(self.inclusion_proof.size));
        proof.insert(
            "path",
            Value::Array(
                self.inclusion_proof
                    .path
                    .iter()
                    .map(|h| text(h.to_hex()))
                    .collect(),
            ),
        );
        let mut head = Object::new();
        head.insert("size", num(self.tree_head.size));
        head.insert("root", text(self.tree_head.root.to_hex()));
        let a = &self.anchor;
        let mut anchor = Object::new();
        anchor.insert("chain_id", num(a.chain_id));
        anchor.insert("contract", text(&a.contract));
        anchor.insert("tx_hash", text(&a.tx_hash));
        anchor.insert("block_number", num(a.block_number));
        anchor.insert("block_timestamp", num(a.block_timestamp));
        let mut out = Object::new();
        out.insert("format", text(BUNDLE_FORMAT));
        out.insert("record", Value::Object(record));
        out.insert("leaf", text(hex::encode(&self.leaf)));
        out.insert("leaf_hash", text(self.leaf_hash.to_hex()));
        out.insert("inclusion_proof", Value::Object(proof));
        out.insert("tree_head", Value::Object(head));
        out.insert("anchor", Value::Object(anchor));
        Value::Object(out).to_json()
    }

    /// Reads a bundle. Reading checks the shape only; [`ProofBundle::verify`] checks the math.
    pub fn from_json(bytes: &[u8]) -> Result<Self, BundleError> {
        let limits = Limits {
            max_depth: 128,
            max_string_bytes: 16 * 1024 * 1024,
            ..Limits::default()
        };
        let v = json::parse(bytes, &limits).map_err(|e| malformed(e.to_string()))?;
        let top = v
            .as_object()
            .ok_or_else(|| malformed("a bundle is a JSON object"))?;
        only_fields(
            top,
            &[
                "format",
                "record",
                "leaf",
                "leaf_hash",
                "inclusion_proof",
                "tree_head",
                "anchor",
            ],
            "the bundle",
        )?;
        let format = string(top, "format")?;
        if format != BUNDLE_FORMAT {
            return Err(malformed(format!(
                "unknown format {format:?}; this program reads {BUNDLE_FORMAT:?}"
            )));
        }
        let r = object(top, "record")?;
        only_fields(
            r,
            &[
                "index",
                "twin_id",
                "version",
                "kind",
                "state",
                "hash_scheme",
                "state_hash",
                "prev_leaf_hash",
                "recorded_at_ms",
                "salt",
                "annex",
            ],
            "record",
        )?;
        let state = field(r, "state")?;
        if state.as_object().is_none() {
            return Err(malformed("record.state must be an object"));
        }
        let prev_leaf_hash = match field(r, "prev_leaf_hash")? {
            Value::Null => None,
            _ => Some(hash_field(r, "prev_leaf_hash")?),
        };
        let mut salt = [0u8; 32];
        hex::decode_to_slice(string(r, "salt")?, &mut salt)
            .map_err(|_| malformed("record.salt must be 64 hex digits"))?;
        let record = Record {
            index: u64_field(r, "index")?,
            twin_id: TwinId::new(string(r, "twin_id")?).map_err(|e| malformed(e.to_string()))?,
            version: u64_field(r, "version")?,
            kind: RecordKind::from_str(string(r, "kind")?).map_err(|e| malformed(e.to_string()))?,
            state: state.clone(),
            scheme: HashScheme::from_str(string(r, "hash_scheme")?)
                .map_err(|e| malformed(e.to_string()))?,
            state_hash: hash_field(r, "state_hash")?,
            prev_leaf_hash,
            recorded_at_ms: i64_field(r, "recorded_at_ms")?,
            salt: Salt(salt),
            annex: match r.get("annex") {
                None => None,
                Some(v @ Value::Object(_)) => Some(
                    Annex::new(v.clone()).map_err(|e| malformed(format!("record.annex: {e}")))?,
                ),
                Some(_) => return Err(malformed("record.annex must be an object")),
            },
        };
        let p = object(top, "inclusion_proof")?;
        only_fields(p, &["leaf_index", "tree_size", "path"], "inclusion_proof")?;
        let path = field(p, "path")?
            .as_array()
            .ok_or_else(|| malformed("inclusion_proof.path must be an array"))?
            .iter()
            .map(|h| {
                h.as_str()
                    .and_then(|s| Hash::from_hex(s).ok())
                    .ok_or_else(|| malformed("inclusion_proof.path holds 64-hex-digit hashes"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if path.len() > 64 {
            return Err(malformed(
                "inclusion_proof.path is longer than any tree needs",
            ));
        }
        let h = object(top, "tree_head")?;
        only_fields(h, &["size", "root"], "tree_head")?;
        let a = object(top, "anchor")?;
        only_fields(
            a,
            &[
                "chain_id",
                "contract",
                "tx_hash",
                "block_number",
                "block_timestamp",
            ],
            "anchor",
        )?;
        let leaf = hex::decode(string(top, "leaf")?).map_err(|_| malformed("leaf must be hex"))?;
        let bundle = Self {
            record,
            leaf,
            leaf_hash: hash_field(top, "leaf_hash")?,
            inclusion_proof: InclusionProof {
                index: u64_field(p, "leaf_index")?,
                size: u64_field(p, "tree_size")?,
                path,
            },
            tree_head: TreeHead {
                size: u64_field(h, "size")?,
                root: hash_field(h, "root")?,
            },
            anchor: BundleAnchor {
                chain_id: u64_field(a, "chain_id")?,
                contract: string(a, "contract")?.to_owned(),
                tx_hash: string(a, "tx_hash")?.to_owned(),
                block_number: u64_field(a, "block_number")?,
                block_timestamp: u64_field(a, "block_timestamp")?,
            },
        };
        Ok(bundle)
    }

    /// The hash math, with no chain: the state hashes to its stated hash, the record encodes to
    /// its leaf hash, and the inclusion proof leads from that leaf to the tree head's root.
    pub fn verify(&self) -> Result<(), BundleError> {
        let r = &self.record;
        let got = r
            .scheme
            .hash(&r.state)
            .map(Hash)
            .map_err(|e| malformed(e.to_string()))?;
        if got != r.state_hash {
            return Err(BundleError::StateHash {
                expected: r.state_hash,
                got,
            });
        }
        let leaf = r.leaf_hash();
        if leaf != self.leaf_hash {
            return Err(BundleError::LeafHash {
                expected: self.leaf_hash,
                got: leaf,
            });
        }
        if self.leaf != r.leaf() {
            return Err(BundleError::Malformed(
                "the leaf bytes do not encode the record".into(),
            ));
        }
        let p = &self.inclusion_proof;
        if p.index != r.index || p.size != self.tree_head.size {
            return Err(BundleError::ProofMismatch {
                proof_index: p.index,
                proof_size: p.size,
                index: r.index,
                size: self.tree_head.size,
            });
        }
        p.verify(&leaf, &self.tree_head.root)?;
        if let Some(member) = r.annex.as_ref().and_then(|a| a.get("signature")) {
            DeviceSignature::check_annex_member(member, &r.state)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::Frontier;
    use crate::tree::tests::Nodes;

    fn bundle() -> ProofBundle {
        let mut frontier = Frontier::new();
        let mut nodes = Nodes::default();
        let mut records = Vec::new();
        let mut prev = None;
        for i in 0..11u64 {
            let state = json::parse(
                format!(r#"{{"t": {i}.5, "big": 123456789012345678901234567890, "s": "é"}}"#)
                    .as_bytes(),
                &Limits::default(),
            )
            .expect("state");
            let record = Record {
                index: i,
                twin_id: TwinId::new("pump-1").expect("id"),
                version: i + 1,
                kind: RecordKind::Reported,
                state_hash: Hash(HashScheme::SeedSha256.hash(&state).expect("hash")),
                state,
                scheme: HashScheme::SeedSha256,
                prev_leaf_hash: prev,
                recorded_at_ms: 1_700_000_000_000 + i as i64,
                salt: Salt([i as u8; 32]),
                annex: None,
            };
            let leaf = record.leaf_hash();
            prev = Some(leaf);
            nodes.0.insert((0, i), leaf);
            for c in frontier.push(leaf) {
                nodes.0.insert((c.level, c.index), c.hash);
            }
            records.push(record);
        }
        let head = frontier.head();
        let record = records.swap_remove(6);
        ProofBundle {
            leaf: record.leaf(),
            leaf_hash: record.leaf_hash(),
            inclusion_proof: InclusionProof::generate(&nodes, 6, head.size).expect("proof"),
            record,
            tree_head: head,
            anchor: BundleAnchor {
                chain_id: 31337,
                contract: "0x5FbDB2315678afecb367f032d93F642f64180aa3".into(),
                tx_hash: format!("0x{}", "ab".repeat(32)),
                block_number: 7,
                block_timestamp: 1_700_000_100,
            },
        }
    }

    #[test]
    fn a_bundle_round_trips_and_verifies() {
        let b = bundle();
        let text = b.to_json();
        let back = ProofBundle::from_json(text.as_bytes()).expect("reads");
        assert_eq!(back, b);
        back.verify().expect("verifies");
        assert!(
            text.contains("123456789012345678901234567890"),
            "numbers stay exact"
        );
    }

    /// A one-record log whose record has an annex with a device signature.
    fn signed_bundle(tamper_state: bool) -> ProofBundle {
        use crate::signature::DeviceSigner;
        let parse = |s: &str| json::parse(s.as_bytes(), &Limits::default()).expect("json");
        let state = parse(r#"{"t": 21.5, "mode": "auto"}"#);
        let signer = DeviceSigner::from_seed(&[3; 32]);
        let sig = signer.sign(&state).expect("sign");
        let signature = signer.public_key().verify(&state, &sig).expect("valid");
        let mut annex = Object::new();
        annex.insert("signature", signature.to_annex_member());
        annex.insert("source", text("mqtt"));
        let state = if tamper_state {
            parse(r#"{"t": 99, "mode": "auto"}"#)
        } else {
            state
        };
        let record = Record {
            index: 0,
            twin_id: TwinId::new("pump-2").expect("id"),
            version: 1,
            kind: RecordKind::Reported,
            state_hash: Hash(HashScheme::JcsSha256.hash(&state).expect("hash")),
            state,
            scheme: HashScheme::JcsSha256,
            prev_leaf_hash: None,
            recorded_at_ms: 1_700_000_000_000,
            salt: Salt([9; 32]),
            annex: Some(Annex::new(Value::Object(annex)).expect("annex")),
        };
        let leaf = record.leaf_hash();
        ProofBundle {
            leaf: record.leaf(),
            leaf_hash: leaf,
            inclusion_proof: InclusionProof {
                index: 0,
                size: 1,
                path: Vec::new(),
            },
            record,
            tree_head: TreeHead {
                size: 1,
                root: leaf,
            },
            anchor: bundle().anchor,
        }
    }

    #[test]
    fn signed_records_carry_a_v2_leaf_and_their_signature_is_checked() {
        let b = signed_bundle(false);
        assert_eq!(b.leaf[0], crate::record::LEAF_FORMAT_V2);
        let back = ProofBundle::from_json(b.to_json().as_bytes()).expect("reads");
        assert_eq!(back, b);
        back.verify().expect("verifies");
        // Hashes recomputed over a state the device did not sign: only the signature fails.
        assert!(matches!(
            signed_bundle(true).verify(),
            Err(BundleError::Signature(SignatureError::Mismatch))
        ));
    }

    #[test]
    fn every_single_byte_change_is_caught() {
        every_single_byte_change_is_caught_in(bundle());
        every_single_byte_change_is_caught_in(signed_bundle(false));
    }

    fn every_single_byte_change_is_caught_in(bundle: ProofBundle) {
        let original = bundle.clone();
        let bundle = || original.clone();
        let text = bundle().to_json().into_bytes();
        let mut undetected = Vec::new();
        for i in 0..text.len() {
            for flip in [0x01u8, 0x20] {
                let mut t = text.clone();
                t[i] ^= flip;
                if let Ok(b) = ProofBundle::from_json(&t)
                    && b.verify().is_ok()
                    && b != bundle()
                {
                    undetected.push((
                        i,
                        String::from_utf8_lossy(&t[i.saturating_sub(10)..(i + 10).min(t.len())])
                            .into_owned(),
                    ));
                }
            }
        }
        // Only the anchor's claims survive the hash math; the chain check catches those.
        assert!(
            undetected.iter().all(|(i, _)| {
                let anchor_at = text
                    .windows(9)
                    .position(|w| w == b"\"anchor\":")
                    .expect("anchor");
                *i > anchor_at
            }),
            "{undetected:?}"
        );
    }

    #[test]
    fn malformed_bundles_say_what_is_wrong() {
        let good = bundle().to_json();
        for (bad, expected) in [
            ("{".to_owned(), "malformed"),
            ("[]".to_owned(), "a bundle is a JSON object"),
            (good.replace(BUNDLE_FORMAT, "other-v9"), "unknown format"),
            (
                good.replace("\"tree_head\"", "\"tree_hed\""),
                "unknown field",
            ),
            (
                good.replacen("\"index\":6", "\"index\":-6", 1),
                "non-negative integer",
            ),
            (good[..good.len() / 2].to_owned(), "malformed"),
            (
                good.replacen("{\"format\"", "{\"format\":\"x\",\"format\"", 1),
                "duplicate key",
            ),
        ] {
            let err = ProofBundle::from_json(bad.as_bytes()).expect_err(expected);
            assert!(
                err.to_string().contains(expected),
                "{err} lacks {expected:?}"
            );
        }
    }
}
