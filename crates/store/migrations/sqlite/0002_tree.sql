-- Hashes of the complete (perfect) subtrees of the log's Merkle tree, levels 1 and up; level 0
-- is records.leaf_hash. A node is written once, in the transaction that completes it.
CREATE TABLE tree_nodes (
    level INTEGER NOT NULL,
    idx   INTEGER NOT NULL,
    hash  BLOB NOT NULL,
    PRIMARY KEY (level, idx)
) STRICT, WITHOUT ROWID;
