#!/usr/bin/env bash
# The single command that checks everything: formatting, lints, and the whole test suite
# (unit tests, integration tests against real PostgreSQL 15 clusters, real clients).
# Needs: Rust 1.95, PostgreSQL 15 server + client binaries, Python 3.11 (see .ci/run, which
# installs them on a fresh Debian machine). The Python venv is created on first use.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets -- -D warnings
echo "== cargo test"
# Build first so the suite's time limits are not spent compiling.
cargo test --all-targets --no-run
cargo test --all-targets
# --all-targets leaves out doc tests; run them too.
cargo test --doc
