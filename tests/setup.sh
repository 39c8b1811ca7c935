#!/usr/bin/env bash
# Set-up step of tests/run.sh: makes sure this machine has what the test suite needs, then
# creates the Python venv with the pinned client libraries.
#   - Debian packages: postgresql-15 (server, incl. initdb/pg_ctl), postgresql-client-15 (psql,
#     pgbench, pg_dump), openssl, python3-venv, util-linux (runuser: the tests start PostgreSQL
#     as the `postgres` OS user when run as root, because the server refuses root).
#     As root, missing ones are installed with apt-get. Not as root, it stops at once and
#     prints the command to run.
#   - Rust: cargo with rustfmt and clippy (never installed here; it says how).
#   - The venv (target/test-venv, or $PGWARDEN_TEST_VENV): always, from PyPI, reused while
#     tests/python/requirements.txt is unchanged.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

need=()
if [[ -n ${PGWARDEN_PG_BINDIR:-} ]]; then
    # The harness takes its PostgreSQL from there; installing Debian's would not help.
    for p in postgres initdb pg_ctl psql pgbench pg_dump; do
        [[ -x $PGWARDEN_PG_BINDIR/$p ]] || { echo "tests/setup.sh: PGWARDEN_PG_BINDIR=$PGWARDEN_PG_BINDIR has no $p" >&2; exit 1; }
    done
fi
bindir="${PGWARDEN_PG_BINDIR:-/usr/lib/postgresql/15/bin}"
[[ -x $bindir/postgres && -x $bindir/initdb && -x $bindir/pg_ctl ]] || need+=(postgresql-15)
[[ -x $bindir/psql && -x $bindir/pgbench && -x $bindir/pg_dump ]] || need+=(postgresql-client-15)
command -v openssl >/dev/null || need+=(openssl)
command -v runuser >/dev/null || need+=(util-linux)
command -v python3 >/dev/null && python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv)
# promtool validates pgwarden's /metrics exposition (tests/ops_admin.rs).
command -v promtool >/dev/null || need+=(prometheus)

root=false
[[ $(id -u) -eq 0 ]] && root=true

if ((${#need[@]})); then
    if ! $root; then
        echo "tests/setup.sh: missing Debian packages: ${need[*]}" >&2
        echo "Install them as root, then run this again:" >&2
        echo "    sudo apt-get update && sudo apt-get install -y --no-install-recommends ${need[*]}" >&2
        exit 1
    fi
    echo "== apt-get install ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${need[@]}"
fi
# The tests start their own clusters; the Debian package's default cluster on 5432 is unused.
if $root && ! id postgres >/dev/null 2>&1; then
    echo "tests/setup.sh: the postgres OS user is missing (postgresql-15 creates it): apt-get install --reinstall -y postgresql-15" >&2
    exit 1
fi

missing_rust=()
command -v cargo >/dev/null || missing_rust+=(cargo)
command -v cargo >/dev/null && ! cargo fmt --version >/dev/null 2>&1 && missing_rust+=(rustfmt)
command -v cargo >/dev/null && ! cargo clippy --version >/dev/null 2>&1 && missing_rust+=(clippy)
if ((${#missing_rust[@]})); then
    echo "tests/setup.sh: missing ${missing_rust[*]} (Rust 1.95 with rustfmt and clippy). With rustup:" >&2
    echo "    rustup toolchain install 1.95 --component rustfmt,clippy" >&2
    exit 1
fi

# docker/test.sh (the last part of tests/run.sh) starts its own dockerd: root only. Said now,
# not after the rest of the suite has run.
if ! $root && [[ ${PGWARDEN_SKIP_DOCKER:-0} != 1 ]]; then
    echo "tests/setup.sh: the suite's Docker test (docker/test.sh) needs root: it starts its own dockerd." >&2
    echo "Run the suite as root, or without the Docker test (it then says so in its last line):" >&2
    echo "    PGWARDEN_SKIP_DOCKER=1 bash tests/run.sh" >&2
    exit 1
fi

venv="${PGWARDEN_TEST_VENV:-target/test-venv}"
echo "== Python venv ($venv)"
bash tests/python/setup-venv.sh "$venv"
