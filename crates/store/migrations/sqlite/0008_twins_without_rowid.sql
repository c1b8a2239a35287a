-- Every append reads and updates its twin's row by twin_id: keyed by it directly (one B-tree
-- instead of a rowid table behind an index on twin_id), each costs one search.
CREATE TABLE twins_by_id (
    twin_id          TEXT PRIMARY KEY,
    latest_version   INTEGER NOT NULL,
    latest_idx       INTEGER NOT NULL,
    latest_leaf_hash BLOB NOT NULL,
    created_at_ms    INTEGER NOT NULL,
    updated_at_ms    INTEGER NOT NULL,
    desired_idx      INTEGER,
    band             TEXT
) STRICT, WITHOUT ROWID;
INSERT INTO twins_by_id
    SELECT twin_id, latest_version, latest_idx, latest_leaf_hash, created_at_ms, updated_at_ms,
           desired_idx, band
    FROM twins;
DROP TABLE twins;
ALTER TABLE twins_by_id RENAME TO twins;
