#!/usr/bin/env bash
# Creates (or reuses) the Python venv the integration tests use, with the pinned client libraries.
# Usage: tests/python/setup-venv.sh VENV_DIR
# Idempotent: a stamp file holding the requirements' checksum marks a complete venv, so a venv
# that a killed run left half-built is rebuilt rather than trusted. Callers serialise with a lock.
set -euo pipefail
venv="${1:?usage: setup-venv.sh VENV_DIR}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
req="$here/requirements.txt"
python="${PGWARDEN_TEST_PYTHON:-$(command -v python3.11 || command -v python3 || true)}"
if [[ -z "$python" ]]; then
    echo "setup-venv.sh: no python3.11/python3 found; install Python 3.11 (apt-get install python3 python3-venv)" >&2
    exit 1
fi
want="$(sha256sum "$req" | cut -d' ' -f1)"
if [[ -f "$venv/.pgwarden-stamp" && "$(cat "$venv/.pgwarden-stamp")" == "$want" ]]; then
    exit 0
fi
rm -rf "$venv"
"$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req"
echo "$want" > "$venv/.pgwarden-stamp"
