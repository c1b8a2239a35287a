#!/usr/bin/env bash
# Sets up and runs the whole test suite: formatting, lints, the contract artifact check, and
# every unit and integration test (which start their own Anvil, Ganache, Mosquitto and SQLite files).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
echo "== contracts: committed artifacts equal the pinned compiler's output" >&2
npm run --silent contracts:check
echo "== dashboard: the vendored browser modules equal the pinned npm packages" >&2
npm run --silent assets:check
echo "== the JavaScript proof-bundle verifier (node --test)" >&2
npm run --silent verifier:test
echo "== cargo fmt" >&2
cargo fmt --all -- --check
echo "== cargo clippy" >&2
cargo clippy --locked --workspace --all-targets -- -D warnings
echo "== cargo test" >&2
cargo test --locked --workspace --all-targets
