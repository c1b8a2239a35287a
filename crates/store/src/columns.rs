//! Column lists every backend reads rows by: each backend's row readers take columns in this
//! order, and a copy writes them in the same order.

/// An anchor, as `model::Anchor`.
pub(crate) const ANCHOR_COLUMNS: &str = "size, root, prev_size, tx_hash, status, block_number, block_hash, block_time, gas_used, \
     replacements";

/// A record row, as `model::StoredRecord`.
pub(crate) const RECORD_COLUMNS: &str = "idx, twin_id, version, kind, state, hash_scheme, \
     state_hash, prev_leaf_hash, recorded_at_ms, salt, leaf_hash, status, anchor_tx, \
     anchor_block, anchor_block_time, anchor_timestamp, annex";

/// An API key, as `model::ApiKey`.
pub(crate) const API_KEY_COLUMNS: &str =
    "id, secret_hash, scope, twin_prefix, label, created_at_ms, revoked_at_ms";

/// The summary's columns, named once for both lists below.
macro_rules! twin_summary_columns {
    () => {
        "twin_id, latest_version, latest_idx, created_at_ms, updated_at_ms, desired_idx, band"
    };
}

/// A twin's summary, as `model::TwinSummary`.
pub(crate) const TWIN_COLUMNS: &str = twin_summary_columns!();

/// A whole twin row, as `tables::TwinRow`: the summary, then the chain link appends extend.
pub(crate) const TWIN_ROW_COLUMNS: &str = concat!(twin_summary_columns!(), ", latest_leaf_hash");

/// A device key, as `model::DeviceKeyRow`.
pub(crate) const DEVICE_KEY_COLUMNS: &str =
    "twin_id, public_key, require_signature, registered_at_ms";

/// An idempotency key, as `tables::IdempotencyKeyRow`.
pub(crate) const IDEMPOTENCY_KEY_COLUMNS: &str = "key, request, idx, created_at_ms";

/// A tree node, as `tables::TreeNodeRow`.
pub(crate) const TREE_NODE_COLUMNS: &str = "key, hash";

/// A fact about the ledger, as `tables::MetaRow`.
pub(crate) const META_COLUMNS: &str = "key, value";
