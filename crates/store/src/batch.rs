//! What an append does with a batch, whatever database keeps it: idempotency replays, device-key
//! refusals, twin versions and chain links, each reported state's congruence with its twin's
//! desired state (with the shift event a band change brings), leaf hashes and tree nodes.
//!
//! The planner reads the database as it was before the batch through [`Lookup`], and keeps
//! what the batch itself changed in its own overlay, so a backend may read everything it needs
//! up front (PostgreSQL, in one round trip) or as it goes (SQLite, through its transaction).
//! It writes nothing: it returns the rows to write, which the backend writes in the same
//! transaction it read in.

use std::collections::HashMap;
use std::sync::Arc;

use twinledger_core::congruence::{annex_member, compare, shift_state};
use twinledger_core::json::{self, Limits, Object, Value};
use twinledger_core::{Annex, Bands, Frontier, Hash, HashScheme, Record, RecordKind, Tolerances};

use crate::model::{AppendOutcome, Appended, NewRecord};
use crate::{Result, StoreError};

/// A twin's desired state as the comparison needs it.
#[derive(Debug)]
pub(crate) struct Desired {
    version: u64,
    state: Value,
    tolerances: Tolerances,
}

impl Desired {
    /// Parses the desired record at log index `index` from its stored columns.
    pub(crate) fn from_row(
        index: u64,
        version: i64,
        state: &str,
        annex: Option<&str>,
    ) -> Result<Self> {
        let bad = |what: &str, e: &dyn std::fmt::Display| {
            StoreError::Inconsistent(format!("desired state at log index {index}: {what}: {e}"))
        };
        let state =
            json::parse(state.as_bytes(), &Limits::unbounded()).map_err(|e| bad("state", &e))?;
        let tolerances = match annex {
            None => Tolerances::default(),
            Some(a) => {
                let a = json::parse(a.as_bytes(), &Limits::unbounded())
                    .map_err(|e| bad("annex", &e))?;
                match a.as_object().and_then(|o| o.get("tolerances")) {
                    None => Tolerances::default(),
                    Some(t) => Tolerances::from_json(t).map_err(|e| bad("tolerances", &e))?,
                }
            }
        };
        Ok(Self {
            version: version as u64,
            state,
            tolerances,
        })
    }
}

/// A twin's row as an append reads it.
#[derive(Debug, Clone)]
pub(crate) struct TwinState {
    version: u64,
    leaf: Hash,
    desired_index: Option<u64>,
    band: Option<String>,
}

impl TwinState {
    /// The state of twin `twin_id` from its stored columns.
    pub(crate) fn from_row(
        twin_id: &str,
        version: i64,
        leaf: &[u8],
        desired_index: Option<i64>,
        band: Option<String>,
    ) -> Result<Self> {
        let leaf = Hash::from_slice(leaf).map_err(|e| {
            StoreError::Inconsistent(format!("twin {twin_id}: latest leaf hash: {e}"))
        })?;
        Ok(Self {
            version: version as u64,
            leaf,
            desired_index: desired_index.map(|d| d as u64),
            band,
        })
    }
}

/// The database as it was before the batch. Each answer must come from the same transaction
/// that writes the plan, after whatever lock serializes appends.
pub(crate) trait Lookup {
    /// The twin's row.
    fn twin(&mut self, twin_id: &str) -> Result<Option<TwinState>>;
    /// The log index and request fingerprint an idempotency key was first used with.
    fn idempotency_key(&mut self, key: &str) -> Result<Option<(u64, Vec<u8>)>>;
    /// The twin's device key and whether its reports must be signed with it.
    fn device_key(&mut self, twin_id: &str) -> Result<Option<(String, bool)>>;
    /// The desired record at log index `index` (a twin's `desired_idx`).
    fn desired(&mut self, index: u64) -> Result<Arc<Desired>>;
}

/// Facts about the database the whole batch shares.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BatchContext {
    /// Whether the ledger is in log mode (its records are 'logged', never 'pending').
    pub log_mode: bool,
    /// Whether any device key is registered: most ledgers have none, and then an unsigned
    /// report needs no device-key lookup.
    pub any_device_key: bool,
}

/// A record row to insert.
#[derive(Debug)]
pub(crate) struct RecordRow {
    pub index: i64,
    pub twin_id: String,
    pub version: i64,
    pub kind: &'static str,
    pub state: String,
    pub scheme: &'static str,
    pub state_hash: Hash,
    pub prev_leaf_hash: Option<Hash>,
    pub recorded_at_ms: i64,
    pub salt: [u8; 32],
    pub leaf_hash: Hash,
    pub annex: Option<String>,
}

/// A twin's row after the batch.
#[derive(Debug)]
pub(crate) struct TwinRow {
    pub twin_id: String,
    /// False when the batch made the twin: its row is inserted, not updated.
    pub existed: bool,
    pub latest_version: i64,
    pub latest_idx: i64,
    pub latest_leaf_hash: Hash,
    /// The twin's first record's time; only written when the row is inserted.
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    pub desired_idx: Option<i64>,
    pub band: Option<String>,
}

/// An idempotency key the batch used for the first time.
#[derive(Debug)]
pub(crate) struct KeyRow {
    pub key: String,
    pub request: Hash,
    pub index: i64,
    pub created_at_ms: i64,
}

/// Everything an append writes, and what it tells its caller.
#[derive(Debug)]
pub(crate) struct Plan {
    pub outcome: AppendOutcome,
    /// `status` of every new record: 'logged' in log mode, 'pending' (until its own anchor)
    /// in legacy mode.
    pub status: &'static str,
    pub records: Vec<RecordRow>,
    /// Tree nodes the batch completed, as `(tree_nodes.key, hash)`, in completion order.
    pub nodes: Vec<(i64, Hash)>,
    /// Every twin the batch touched, once, in the order first touched.
    pub twins: Vec<TwinRow>,
    pub keys: Vec<KeyRow>,
}

/// Decides everything about `batch` appended after the tree `frontier`.
pub(crate) fn plan(
    batch: Vec<NewRecord>,
    frontier: &Frontier,
    bands: &Bands,
    context: BatchContext,
    lookup: &mut dyn Lookup,
) -> Result<Plan> {
    let mut planner = Planner {
        lookup,
        bands,
        context,
        frontier: frontier.clone(),
        twins: HashMap::new(),
        twin_order: Vec::new(),
        keys: HashMap::new(),
        desired: HashMap::new(),
        plan_records: Vec::with_capacity(batch.len()),
        nodes: Vec::new(),
        key_rows: Vec::new(),
    };
    let mut results = Vec::with_capacity(batch.len());
    let mut derived = Vec::new();
    for new in batch {
        results.push(planner.one(new, &mut derived)?);
    }
    let Planner {
        frontier,
        mut twins,
        twin_order,
        plan_records,
        nodes,
        key_rows,
        ..
    } = planner;
    let twins = twin_order
        .into_iter()
        .filter_map(|id| twins.remove(&id))
        .filter_map(|t| t.written)
        .collect();
    Ok(Plan {
        outcome: AppendOutcome {
            results,
            derived,
            frontier,
            held: std::time::Duration::ZERO,
        },
        status: if context.log_mode {
            "logged"
        } else {
            "pending"
        },
        records: plan_records,
        nodes,
        twins,
        keys: key_rows,
    })
}

/// A twin as the batch left it so far.
struct Overlay {
    state: Option<TwinState>,
    /// Its row to write, once the batch wrote one of its records.
    written: Option<TwinRow>,
}

struct Planner<'a> {
    lookup: &'a mut dyn Lookup,
    bands: &'a Bands,
    context: BatchContext,
    frontier: Frontier,
    twins: HashMap<String, Overlay>,
    twin_order: Vec<String>,
    /// Keys used earlier in the batch.
    keys: HashMap<String, (u64, Vec<u8>)>,
    /// Desired records appended earlier in the batch, by log index.
    desired: HashMap<u64, Arc<Desired>>,
    plan_records: Vec<RecordRow>,
    nodes: Vec<(i64, Hash)>,
    key_rows: Vec<KeyRow>,
}

impl Planner<'_> {
    fn next_index(&self) -> u64 {
        self.frontier.size()
    }

    fn one(&mut self, new: NewRecord, derived: &mut Vec<Record>) -> Result<Appended> {
        if let Some((key, request)) = &new.idempotency {
            let seen = match self.keys.get(key) {
                Some(seen) => Some(seen.clone()),
                None => self.lookup.idempotency_key(key)?,
            };
            if let Some((index, seen_request)) = seen {
                return Ok(Appended::Replay {
                    index,
                    same_request: seen_request == request.0,
                });
            }
        }
        if new.kind == RecordKind::Reported
            && (self.context.any_device_key || new.annex.get("signature").is_some())
        {
            let registered = self.lookup.device_key(new.twin_id.as_str())?;
            if let Some(reason) = refusal(&new, registered) {
                return Ok(Appended::Refused(reason));
            }
        }
        // Only a record written keeps its key: a refused request wrote nothing, and its retry
        // is checked again rather than answered as a replay of whatever record came next.
        if let Some((key, request)) = &new.idempotency {
            let index = self.next_index();
            self.keys.insert(key.clone(), (index, request.0.to_vec()));
            self.key_rows.push(KeyRow {
                key: key.clone(),
                request: *request,
                index: index as i64,
                created_at_ms: new.recorded_at_ms,
            });
        }
        let twin = self.twin(new.twin_id.as_str())?;
        let mut annex = new.annex;
        let mut shift = None;
        if let (
            RecordKind::Reported,
            Some(TwinState {
                desired_index: Some(d),
                band,
                ..
            }),
        ) = (new.kind, &twin)
        {
            let desired = self.desired(*d)?;
            let comparison = compare(&desired.state, &desired.tolerances, &new.state);
            let now = self.bands.of(comparison.score());
            annex.insert(
                "congruence",
                annex_member(desired.version, &comparison, now),
            );
            if band.as_deref() != Some(now.name.as_str()) {
                shift = Some((
                    band.clone(),
                    now.clone(),
                    comparison.score(),
                    desired.version,
                ));
            }
        }
        let record = Record {
            index: self.next_index(),
            version: twin.as_ref().map_or(1, |t| t.version + 1),
            prev_leaf_hash: twin.as_ref().map(|t| t.leaf),
            twin_id: new.twin_id,
            kind: new.kind,
            state: new.state,
            scheme: new.scheme,
            state_hash: new.state_hash,
            recorded_at_ms: new.recorded_at_ms,
            salt: new.salt,
            annex: annex_of(annex)?,
        };
        let leaf = self.write(&record, None)?;
        if let Some((from, to, score, desired_version)) = shift {
            let state = shift_state(from.as_deref(), &to, score, record.version, desired_version);
            let event = Record {
                index: self.next_index(),
                twin_id: record.twin_id.clone(),
                version: record.version + 1,
                kind: RecordKind::Event,
                state_hash: Hash(
                    HashScheme::JcsSha256
                        .hash(&state)
                        .map_err(|e| StoreError::Inconsistent(format!("shift event: {e}")))?,
                ),
                state,
                scheme: HashScheme::JcsSha256,
                prev_leaf_hash: Some(leaf),
                recorded_at_ms: record.recorded_at_ms,
                salt: record.salt.derive("twinledger congruence shift"),
                annex: None,
            };
            self.write(&event, Some(to.name.clone()))?;
            derived.push(event);
        }
        Ok(Appended::New(record))
    }

    /// The twin as the batch left it, read from the database the first time.
    fn twin(&mut self, twin_id: &str) -> Result<Option<TwinState>> {
        if let Some(overlay) = self.twins.get(twin_id) {
            return Ok(overlay.state.clone());
        }
        let state = self.lookup.twin(twin_id)?;
        self.twins.insert(
            twin_id.to_owned(),
            Overlay {
                state: state.clone(),
                written: None,
            },
        );
        self.twin_order.push(twin_id.to_owned());
        Ok(state)
    }

    fn desired(&mut self, index: u64) -> Result<Arc<Desired>> {
        match self.desired.get(&index) {
            Some(d) => Ok(d.clone()),
            None => self.lookup.desired(index),
        }
    }

    /// Adds the record's row, the tree nodes its leaf completes and its twin's new state (a
    /// shift event moves the twin's band to `band`); returns the leaf hash.
    fn write(&mut self, record: &Record, band: Option<String>) -> Result<Hash> {
        let leaf_hash = record.leaf_hash();
        let row = RecordRow {
            index: record.index as i64,
            twin_id: record.twin_id.as_str().to_owned(),
            version: record.version as i64,
            kind: record.kind.as_str(),
            state: record.state.to_json(),
            scheme: record.scheme.as_str(),
            state_hash: record.state_hash,
            prev_leaf_hash: record.prev_leaf_hash,
            recorded_at_ms: record.recorded_at_ms,
            salt: record.salt.0,
            leaf_hash,
            annex: record.annex.as_ref().map(|a| a.value().to_json()),
        };
        if record.kind == RecordKind::Desired {
            // Parsed from the row as written, exactly as a later batch will read it back.
            let desired =
                Desired::from_row(record.index, row.version, &row.state, row.annex.as_deref())?;
            self.desired.insert(record.index, Arc::new(desired));
        }
        self.plan_records.push(row);
        for node in self.frontier.push(leaf_hash) {
            self.nodes
                .push((node_key(node.level, node.index)?, node.hash));
        }
        let twin_id = record.twin_id.as_str();
        // The record's twin was read by `twin` before it was built.
        let overlay = self.twins.get_mut(twin_id).ok_or_else(|| {
            StoreError::Inconsistent(format!("twin {twin_id} written before it was read"))
        })?;
        let before = overlay.state.take();
        let desired_index = if record.kind == RecordKind::Desired {
            Some(record.index)
        } else {
            before.as_ref().and_then(|t| t.desired_index)
        };
        let band = band.or_else(|| before.as_ref().and_then(|t| t.band.clone()));
        overlay.state = Some(TwinState {
            version: record.version,
            leaf: leaf_hash,
            desired_index,
            band: band.clone(),
        });
        let created_at_ms = overlay
            .written
            .as_ref()
            .map_or(record.recorded_at_ms, |w| w.created_at_ms);
        let existed = match &overlay.written {
            Some(w) => w.existed,
            None => before.is_some(),
        };
        overlay.written = Some(TwinRow {
            twin_id: twin_id.to_owned(),
            existed,
            latest_version: record.version as i64,
            latest_idx: record.index as i64,
            latest_leaf_hash: leaf_hash,
            created_at_ms,
            updated_at_ms: record.recorded_at_ms,
            desired_idx: desired_index.map(|i| i as i64),
            band,
        });
        Ok(leaf_hash)
    }
}

/// Why a reported state may not be recorded under the twin's device key, if it may not. The
/// signature itself was checked before the append, against the key registered then.
fn refusal(new: &NewRecord, registered: Option<(String, bool)>) -> Option<String> {
    let signed_with = new
        .annex
        .get("signature")
        .and_then(Value::as_object)
        .and_then(|s| s.get("public_key"))
        .and_then(Value::as_str);
    match (registered, signed_with) {
        (Some((key, _)), Some(used)) if key != used => Some(format!(
            "twin {} has another device key than the one that signed",
            new.twin_id
        )),
        (None, Some(_)) => Some(format!("twin {} has no device key", new.twin_id)),
        (Some((_, true)), None) => Some(format!(
            "twin {} requires reports signed with its device key",
            new.twin_id
        )),
        _ => None,
    }
}

fn annex_of(members: Object) -> Result<Option<Annex>> {
    if members.is_empty() {
        return Ok(None);
    }
    Annex::new(Value::Object(members))
        .map(Some)
        .map_err(|e| StoreError::Inconsistent(format!("annex: {e}")))
}

/// The `tree_nodes` key of node (`level`, `index`), level ≥ 1: the index of the last leaf it
/// covers, which completes it, shifted left 6 bits, plus the level; so nodes are keyed in the
/// order they are written (SQLite's migration 0009 computes the same in SQL).
pub(crate) fn node_key(level: u32, index: u64) -> Result<i64> {
    let last_leaf = index
        .checked_add(1)
        .and_then(|n| n.checked_mul(1u64.checked_shl(level)?))
        .map(|end| end - 1);
    match last_leaf {
        // 57 bits of leaf index and 6 of level fit in a signed 64-bit integer.
        Some(leaf) if leaf < 1 << 57 => Ok((leaf << 6 | u64::from(level)) as i64),
        _ => Err(StoreError::Inconsistent(format!(
            "tree node ({level}, {index}) is beyond any log"
        ))),
    }
}
