-- Log mode anchors records by tree heads, never one by one, so its records no longer wait as
-- 'pending' in records_pending (where they stayed forever: an index entry written per record
-- and never used, and a count over the whole log for each /health). They are 'logged'; a
-- record's anchoring there follows from the anchored tree size. Legacy mode keeps 'pending'
-- until its own transaction is mined.
UPDATE records SET status = 'logged'
WHERE status = 'pending' AND (SELECT value FROM meta WHERE key = 'mode') = 'log';
