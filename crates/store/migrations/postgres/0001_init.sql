-- The schema SQLite reached by its migration 0010, in PostgreSQL's types, plus log_head. Text
-- keys sort bytewise (COLLATE "C"), as in SQLite, whatever the database's locale: twins and
-- keys are paged in that order.

-- Key/value facts about this ledger: chain id, contract address, anchoring mode.
CREATE TABLE meta (
    key   text COLLATE "C" PRIMARY KEY,
    value text NOT NULL
);

-- One row per twin: where its history ends, its desired state and its last congruence band.
CREATE TABLE twins (
    twin_id          text COLLATE "C" PRIMARY KEY,
    latest_version   bigint NOT NULL,
    latest_idx       bigint NOT NULL,
    latest_leaf_hash bytea NOT NULL,
    created_at_ms    bigint NOT NULL,
    updated_at_ms    bigint NOT NULL,
    desired_idx      bigint,
    band             text
);

-- The append-only log: every state change of every twin, never updated except for its status
-- and, in legacy mode, its own anchoring transaction.
CREATE TABLE records (
    idx               bigint PRIMARY KEY,
    twin_id           text COLLATE "C" NOT NULL,
    version           bigint NOT NULL,
    kind              text NOT NULL,
    state             text NOT NULL,
    hash_scheme       text NOT NULL,
    state_hash        bytea NOT NULL,
    prev_leaf_hash    bytea,
    recorded_at_ms    bigint NOT NULL,
    salt              bytea NOT NULL,
    leaf_hash         bytea NOT NULL,
    -- 'logged' in log mode; 'pending', 'anchored' or 'confirmed' in legacy mode.
    status            text NOT NULL DEFAULT 'pending',
    anchor_tx         text,
    anchor_block      bigint,
    anchor_block_time bigint,
    anchor_timestamp  text,
    annex             text
);
CREATE UNIQUE INDEX records_twin_version ON records (twin_id, version);
CREATE INDEX records_pending ON records (idx) WHERE status = 'pending';

-- Complete subtrees of the log's Merkle tree, levels 1 and up (level 0 is records.leaf_hash),
-- keyed by the last leaf they cover and their level, the order appends complete them.
CREATE TABLE tree_nodes (
    key  bigint PRIMARY KEY,
    hash bytea NOT NULL
);

-- The tree's size and its frontier's peaks (32 bytes each, largest subtree first). Every
-- append locks this row first: that lock serializes appenders on every node, and log indexes
-- come from it.
CREATE TABLE log_head (
    id    boolean PRIMARY KEY DEFAULT true CHECK (id),
    size  bigint NOT NULL,
    peaks bytea NOT NULL
);
INSERT INTO log_head (size, peaks) VALUES (0, '\x');

-- Tree heads sent to the TwinLedger contract (log mode), written before the bytes go out.
CREATE TABLE anchors (
    size         bigint PRIMARY KEY,
    root         bytea NOT NULL,
    prev_size    bigint NOT NULL,
    tx_hash      text NOT NULL,
    status       text NOT NULL,      -- sent | mined | confirmed
    block_number bigint,
    block_hash   text,
    block_time   bigint,
    gas_used     bigint
);

-- Idempotency keys of writes, pruned past their retention (oldest first, by created_at_ms).
CREATE TABLE idempotency_keys (
    key           text COLLATE "C" PRIMARY KEY,
    request       bytea NOT NULL,
    idx           bigint NOT NULL,
    created_at_ms bigint NOT NULL
);
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at_ms);

-- API keys: only a SHA-256 of each secret is kept.
CREATE TABLE api_keys (
    id            text COLLATE "C" PRIMARY KEY,
    secret_hash   bytea NOT NULL,
    scope         text NOT NULL,
    twin_prefix   text,
    label         text NOT NULL,
    created_at_ms bigint NOT NULL,
    revoked_at_ms bigint
);

-- Ed25519 public keys of devices, one per twin.
CREATE TABLE device_keys (
    twin_id           text COLLATE "C" PRIMARY KEY,
    public_key        text NOT NULL,
    require_signature boolean NOT NULL,
    registered_at_ms  bigint NOT NULL
);

-- Which node anchors: one row, held by renewing it and taken over once it runs out (times on
-- the database's clock, so the nodes' clocks do not matter). The epoch counts changes of hands.
CREATE TABLE anchor_lease (
    id         boolean PRIMARY KEY DEFAULT true CHECK (id),
    holder     text NOT NULL,
    epoch      bigint NOT NULL,
    expires_at timestamptz NOT NULL
);
