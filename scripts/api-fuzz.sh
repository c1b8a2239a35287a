#!/usr/bin/env bash
# Schemathesis at length against a live service on the embedded default: the same test CI runs
# with a few examples per operation (crates/cli/tests/it/api_schema.rs), with EXAMPLES per
# operation (default 1000). Run scripts/setup.sh first.
set -euo pipefail
cd "$(dirname "$0")/.."
export TWINLEDGER_FUZZ_EXAMPLES="${1:-1000}"
exec cargo test --locked -p twinledger --test it -- --exact \
    api_schema::schemathesis_finds_nothing_on_any_operation --nocapture
