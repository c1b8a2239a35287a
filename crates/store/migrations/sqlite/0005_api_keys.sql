-- API keys: only a SHA-256 of each secret is kept. scope is 'read' or 'write' (write includes
-- read); twin_prefix, when set, limits the key to twins whose id starts with it.
CREATE TABLE api_keys (
    id            TEXT PRIMARY KEY,
    secret_hash   BLOB NOT NULL,
    scope         TEXT NOT NULL,
    twin_prefix   TEXT,
    label         TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    revoked_at_ms INTEGER
) STRICT;
