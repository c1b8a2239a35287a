-- Tree heads sent to the TwinLedger contract (log mode). A row is written when the anchoring
-- transaction is sent, so a restart finds it and checks it instead of sending another.
CREATE TABLE anchors (
    size         INTEGER PRIMARY KEY,
    root         BLOB NOT NULL,
    prev_size    INTEGER NOT NULL,
    tx_hash      TEXT NOT NULL,
    status       TEXT NOT NULL,      -- sent | mined | confirmed
    block_number INTEGER,
    block_hash   TEXT,
    block_time   INTEGER,
    gas_used     INTEGER
) STRICT;
