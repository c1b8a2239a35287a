#!/usr/bin/env bash
# Installs what twinledger needs on a fresh Debian/Ubuntu machine with Rust and Node.js:
# Debian packages for building (pkg-config, OpenSSL headers), the sqlite3 CLI used in the
# README walkthrough, the Mosquitto MQTT broker, Prometheus (with promtool) and PostgreSQL; the
# pinned npm packages (Anvil, Ganache, solc-js, OpenZeppelin) into ./node_modules; the pinned
# Python tools (Schemathesis) into ./.venv. Safe to run again: it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v pkg-config >/dev/null || missing+=(pkg-config)
dpkg -s libssl-dev >/dev/null 2>&1 || missing+=(libssl-dev)
command -v sqlite3 >/dev/null || missing+=(sqlite3)
command -v cc >/dev/null || missing+=(build-essential)
command -v node >/dev/null || missing+=(nodejs npm)
# The MQTT broker devices publish to; tests and `serve --mqtt-embedded` start their own.
command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ] || missing+=(mosquitto)
# The crash suites (crates/cli/tests/it/crash, scripts/crash-suite.sh): strace injects the
# per-syscall faults; eatmydata turns fsync off for the power-loss negative control; the power
# cuts need an ext4 file system on a loop device (e2fsprogs, losetup from mount) and python3
# for the EXT4_IOC_SHUTDOWN ioctl.
command -v strace >/dev/null || missing+=(strace)
command -v eatmydata >/dev/null || missing+=(eatmydata)
command -v mkfs.ext4 >/dev/null || [ -x /sbin/mkfs.ext4 ] || missing+=(e2fsprogs)
command -v losetup >/dev/null || [ -x /sbin/losetup ] || missing+=(mount)
command -v python3 >/dev/null || missing+=(python3)
# Schemathesis, the outside fuzzer of the HTTP API, runs from a virtual environment (.venv).
python3 -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)
# The dashboard's browser tests drive Debian's Chromium with playwright-core (never a downloaded
# browser).
command -v chromium >/dev/null || missing+=(chromium)
# The metrics tests: promtool checks the scraped page and docs/alerts.yml, and a real
# Prometheus server scrapes a running service.
command -v promtool >/dev/null || missing+=(prometheus)
# PostgreSQL 15 for the PostgreSQL store's tests and `bench --database postgres`, which make
# their own clusters with initdb and pg_ctl (Debian keeps those in /usr/lib/postgresql/15/bin).
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || command -v initdb >/dev/null || missing+=(postgresql)
if ((${#missing[@]})); then
    echo "setup: installing Debian packages: ${missing[*]}" >&2
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

command -v cargo >/dev/null || {
    echo "setup: cargo not found; install Rust from your distribution or rustup first" >&2
    exit 1
}

# npm ci reinstalls exactly what package-lock.json pins; skip it when that is already there.
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
    echo "setup: installing npm packages (npm ci)" >&2
    npm ci --no-audit --no-fund --loglevel=error
fi
chmod +x node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil 2>/dev/null || true

# The pinned Python tools (scripts/requirements.txt) into ./.venv; again only when that file
# changed since the last install.
if [ ! -x .venv/bin/st ] || [ scripts/requirements.txt -nt .venv/.installed ]; then
    echo "setup: installing Python tools into .venv (pip)" >&2
    python3 -m venv .venv
    .venv/bin/pip install --quiet --disable-pip-version-check -r scripts/requirements.txt
    touch .venv/.installed
fi
