#!/usr/bin/env bash
# The migration test of `twinledger migrate-store` at the issue's size: a ledger of RECORDS
# (default 100000) records made and anchored by the SQLite service on the embedded Anvil, moved
# to PostgreSQL, served from there (proof bundles byte-identical, every twin Valid), audited
# clean, and a second migration onto the used target refused. CI runs the same test with 3000
# records (crates/cli/tests/it/migrate_store.rs). Needs PostgreSQL's server programs (initdb,
# pg_ctl), as the store's tests do; run scripts/setup.sh first.
set -euo pipefail
cd "$(dirname "$0")/.."
export TWINLEDGER_MIGRATE_RECORDS="${1:-100000}"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
started=$SECONDS
set +e
cargo test --locked -p twinledger --test it -- --exact \
    migrate_store::a_sqlite_ledger_moves_to_postgres_with_its_proofs_and_a_used_target_is_refused \
    --nocapture 2>&1 | grep -v ' INFO ' | tee "$log"
status=${PIPESTATUS[0]}
set -e
echo
grep 'migrate-store timing' "$log" || true
echo "migrate suite: $TWINLEDGER_MIGRATE_RECORDS records, $((SECONDS - started)) s in all, exit $status"
exit "$status"
