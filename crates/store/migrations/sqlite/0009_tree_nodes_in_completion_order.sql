-- Tree nodes keyed in the order they are completed: node (level, idx) covers leaves up to
-- ((idx + 1) << level) - 1 and is completed by that leaf, so its key is that leaf's index
-- shifted left 6 bits, plus the level. Keyed by (level, idx), each append touched the last
-- page of every level (half of all pages an append wrote); keyed so, every node goes to the
-- end of one B-tree.
CREATE TABLE tree_nodes_by_completion (
    key  INTEGER PRIMARY KEY,
    hash BLOB NOT NULL
) STRICT;
INSERT INTO tree_nodes_by_completion
    SELECT ((((idx + 1) << level) - 1) << 6) | level, hash FROM tree_nodes ORDER BY 1;
DROP TABLE tree_nodes;
ALTER TABLE tree_nodes_by_completion RENAME TO tree_nodes;
