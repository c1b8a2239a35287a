#!/usr/bin/env bash
# Sets up and starts twinledger on the embedded default: SQLite and a local Anvil chain that
# the service starts, deploys to and stops itself. Extra arguments go to `twinledger serve`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --locked --bin twinledger
exec target/debug/twinledger serve "$@"
