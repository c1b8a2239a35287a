-- Idempotency keys are pruned once they are older than the retention; this index lets each
-- pruning batch find the oldest keys without scanning the table.
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at_ms);
