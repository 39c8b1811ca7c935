#!/usr/bin/env bash
# initdb on first start (superuser postgres, password $POSTGRES_PASSWORD, scram), then the command.
set -euo pipefail
if [[ ! -s $PGDATA/PG_VERSION ]]; then
    pw="$(mktemp)"
    printf '%s\n' "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD is required}" > "$pw"
    initdb -D "$PGDATA" -U postgres --pwfile="$pw" -A scram-sha-256 -E UTF8 --locale=C.UTF-8 >/dev/null
    rm -f "$pw"
    echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
fi
exec "$@"
