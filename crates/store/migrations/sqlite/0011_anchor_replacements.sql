-- How many times each anchor's transaction was replaced with higher fees before one was mined,
-- shown beside it on the dashboard's anchors page.
ALTER TABLE anchors ADD COLUMN replacements INTEGER NOT NULL DEFAULT 0;
