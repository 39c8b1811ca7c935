#!/usr/bin/env bash
# The single command that checks everything: formatting, lints, the whole test suite (unit
# tests, doc tests, integration tests against real PostgreSQL 15 clusters and real clients),
# and the Docker image with its compose file (docker/test.sh).
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
totals="$(awk '/^test result:/ { p += $4; f += $6 } END { printf "%d passed, %d failed", p, f }' "$log")"

# The container image and the compose file, built from docker/Dockerfile and run end to end
# (docker/test.sh; root only, see tests/setup.sh). Docker's data is kept between runs in
# PGWARDEN_DOCKER_CACHE (default below; `rm -rf` it to start cold): a warm run compiles only
# pgwarden itself inside the image, a cold one (first run on a machine) every dependency too.
# The packages it installs (docker.io, docker-compose, mmdebstrap) stay, like the others the
# suite installs.
if [[ ${PGWARDEN_SKIP_DOCKER:-0} == 1 ]]; then
    docker_result="docker/test.sh NOT RUN (PGWARDEN_SKIP_DOCKER=1): the image and compose file are untested"
else
    echo "== docker/test.sh"
    PGWARDEN_DOCKER_CACHE="${PGWARDEN_DOCKER_CACHE:-/var/cache/pgwarden-test/docker}" \
    PGWARDEN_DOCKER_KEEP_PACKAGES="${PGWARDEN_DOCKER_KEEP_PACKAGES:-1}" \
        bash docker/test.sh
    docker_result="docker/test.sh OK"
fi
# One closing line over every test binary, and the container test.
echo "$totals; $docker_result"
