-- Key/value facts about this ledger: chain id, contract address, anchoring mode.
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) STRICT;

-- One row per twin: where its history ends.
CREATE TABLE twins (
    twin_id          TEXT PRIMARY KEY,
    latest_version   INTEGER NOT NULL,
    latest_idx       INTEGER NOT NULL,
    latest_leaf_hash BLOB NOT NULL,
    created_at_ms    INTEGER NOT NULL,
    updated_at_ms    INTEGER NOT NULL
) STRICT;

-- The append-only log: every state change of every twin, never updated except for its status.
CREATE TABLE records (
    idx               INTEGER PRIMARY KEY,
    twin_id           TEXT NOT NULL,
    version           INTEGER NOT NULL,
    kind              TEXT NOT NULL,
    state             TEXT NOT NULL,
    hash_scheme       TEXT NOT NULL,
    state_hash        BLOB NOT NULL,
    prev_leaf_hash    BLOB,
    recorded_at_ms    INTEGER NOT NULL,
    salt              BLOB NOT NULL,
    leaf_hash         BLOB NOT NULL,
    status            TEXT NOT NULL DEFAULT 'pending',
    -- Legacy mode (the seed's contract): the updateTwin transaction that anchored this record.
    anchor_tx         TEXT,
    anchor_block      INTEGER,
    anchor_block_time INTEGER,
    anchor_timestamp  TEXT
) STRICT;

CREATE UNIQUE INDEX records_twin_version ON records (twin_id, version);
CREATE INDEX records_pending ON records (idx) WHERE status = 'pending';
