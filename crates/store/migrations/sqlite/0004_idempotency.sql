-- Idempotency keys of writes: a retried request with the same key gets the first result and
-- writes nothing. `request` fingerprints what was asked, so a reused key with another request
-- is refused.
CREATE TABLE idempotency_keys (
    key           TEXT PRIMARY KEY,
    request       BLOB NOT NULL,
    idx           INTEGER NOT NULL,
    created_at_ms INTEGER NOT NULL
) STRICT;
