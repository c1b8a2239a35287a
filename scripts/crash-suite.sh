#!/usr/bin/env bash
# Runs the crash suites of issue 16 in full, one test at a time, and prints their summaries:
#   - hard kills of the whole process group under load (TWINLEDGER_CRASH_CYCLES, default 100 here),
#     and the issue's scenario (200 anchored records, the group killed at once);
#   - power cuts of an ext4 file system on a loop device (TWINLEDGER_POWER_CYCLES, default 50
#     here), and the negative control without fsync, which must see losses;
#   - EIO from, and SIGKILL in, every file-system call of an append batch
#     (TWINLEDGER_SYSCALL_FULL=1).
# CI runs the same tests in their short form as part of `cargo test`. Needs root and loop
# devices. TWINLEDGER_CRASH_SEED=N repeats a run's random choices (each test prints its seed).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh

export TWINLEDGER_CRASH_CYCLES="${TWINLEDGER_CRASH_CYCLES:-100}"
export TWINLEDGER_POWER_CYCLES="${TWINLEDGER_POWER_CYCLES:-50}"
export TWINLEDGER_SYSCALL_FULL="${TWINLEDGER_SYSCALL_FULL:-1}"

log="$(mktemp)"
trap 'rm -f "$log"' EXIT
started=$SECONDS
set +e
cargo test --locked -p twinledger --test it crash:: -- --nocapture --test-threads=1 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e

echo
echo "== crash suites: summaries ($((SECONDS - started)) s; cycles: kill $TWINLEDGER_CRASH_CYCLES, power $TWINLEDGER_POWER_CYCLES, syscall full=$TWINLEDGER_SYSCALL_FULL) =="
# libtest prints "test NAME ... " and the test's first line of output on one line.
grep -oE '(kill|scenario|power|power control \(eatmydata\)|syscall): .*' "$log" |
    grep -vE '^syscall: ([a-z0-9_]+ #[0-9]+ |batch |strace output)' || true
grep -E '^test result:|^test crash::.*(FAILED|ok)$' "$log" || true
exit "$status"
