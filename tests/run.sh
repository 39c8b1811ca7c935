#!/usr/bin/env bash
# The single command that checks everything: formatting, lints, and the whole test suite
# (unit tests, doc tests, integration tests against real PostgreSQL 15 clusters and real clients).
# It sets up first (tests/setup.sh): as root it installs the missing Debian packages
# (PostgreSQL 15 server and client, OpenSSL, python3-venv, util-linux), otherwise it stops with
# the command to run; then it creates the Python venv (target/test-venv) from
# tests/python/requirements.txt.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash tests/setup.sh

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets -- -D warnings
echo "== cargo test"
# Build first so no test's time limit is spent compiling.
cargo test --all-targets --no-run
# Doc tests and the benches (run once each as a smoke test) first, so the log ends with the
# main suite and its totals.
cargo test --doc
cargo test --benches
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
cargo test --lib --bins --tests 2>&1 | tee "$log"
# One closing line over every test binary.
awk '/^test result:/ { p += $4; f += $6 } END { printf "%d passed, %d failed\n", p, f }' "$log"
