//! Column lists every backend reads rows by: each backend's row readers take columns in this
//! order.

/// An anchor, as `model::Anchor`.
pub(crate) const ANCHOR_COLUMNS: &str =
    "size, root, prev_size, tx_hash, status, block_number, block_hash, block_time, gas_used";

/// A record row, as `model::StoredRecord`.
pub(crate) const RECORD_COLUMNS: &str = "idx, twin_id, version, kind, state, hash_scheme, \
     state_hash, prev_leaf_hash, recorded_at_ms, salt, leaf_hash, status, anchor_tx, \
     anchor_block, anchor_block_time, anchor_timestamp, annex";

/// An API key, as `model::ApiKey`.
pub(crate) const API_KEY_COLUMNS: &str =
    "id, secret_hash, scope, twin_prefix, label, created_at_ms, revoked_at_ms";

/// A twin's summary, as `model::TwinSummary`.
pub(crate) const TWIN_COLUMNS: &str =
    "twin_id, latest_version, latest_idx, created_at_ms, updated_at_ms, desired_idx, band";
