-- What is recorded with a record besides its state (a JSON object: congruence, device
-- signature, tolerances, source); hashed into the record's v2 leaf. NULL for v1 leaves.
ALTER TABLE records ADD COLUMN annex TEXT;
-- The twin's current desired state (log index of its latest desired record) and the
-- congruence band of its latest assessed report; both kept by the append transaction.
ALTER TABLE twins ADD COLUMN desired_idx INTEGER;
ALTER TABLE twins ADD COLUMN band TEXT;
-- Ed25519 public keys of devices, one per twin (registered before or after the twin's first
-- record); require_signature = 1 refuses the twin's unsigned reports.
CREATE TABLE device_keys (
    twin_id           TEXT PRIMARY KEY,
    public_key        TEXT NOT NULL,
    require_signature INTEGER NOT NULL,
    registered_at_ms  INTEGER NOT NULL
) STRICT;
