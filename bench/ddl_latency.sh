#!/usr/bin/env bash
# DDL latency benchmark: what pgwarden adds to one DDL statement that needs its in-session
# catalog lookup (analysis + one injected round trip + decision), and what the audit log's
# durable record adds on top. Prints median and p95 latency per transaction, side by side:
# direct, pgwarden (audit off), pgwarden (audit on, fsync = always).
#
# Usage: bash bench/ddl_latency.sh
# Environment:
#   COUNT=3000       statements per run (one per transaction, one client)
#   PGBIN=/usr/lib/postgresql/15/bin
# Everything runs on loopback in a temp dir removed at exit; pgwarden is built with
# `cargo build --release`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

COUNT="${COUNT:-3000}"
PGBIN="${PGBIN:-/usr/lib/postgresql/15/bin}"
for b in initdb pg_ctl pgbench psql; do
    [[ -x "$PGBIN/$b" ]] || { echo "missing $PGBIN/$b: apt-get install postgresql-15 postgresql-client-15" >&2; exit 1; }
done

echo "== cargo build --release"
cargo build --release --quiet
PGWARDEN="$PWD/target/release/pgwarden"

if [[ $(id -u) == 0 ]]; then as_pg() { runuser -u postgres -- "$@"; }; else as_pg() { "$@"; }; fi
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

WORK="$(mktemp -d /tmp/pgwarden-ddlbench.XXXXXX)"
chmod 755 "$WORK"
PIDS=()
cleanup() {
    for p in "${PIDS[@]:-}"; do [[ -n "$p" ]] && kill "$p" 2>/dev/null || true; done
    as_pg "$PGBIN/pg_ctl" -D "$WORK/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT
[[ $(id -u) == 0 ]] && chown postgres: "$WORK"

PGPORT_=$(free_port)
as_pg "$PGBIN/initdb" -D "$WORK/data" -U postgres -A trust -E UTF8 --locale=C --no-sync >/dev/null
cat >> "$WORK/data/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $PGPORT_
unix_socket_directories = '$WORK'
fsync = off
synchronous_commit = off
autovacuum = off
EOF
as_pg "$PGBIN/pg_ctl" -D "$WORK/data" -l "$WORK/pg.log" -w start >/dev/null
"$PGBIN/psql" -h 127.0.0.1 -p "$PGPORT_" -U postgres -X -q -c \
    "CREATE TABLE bench_t AS SELECT g AS id FROM generate_series(1, 100000) g; ANALYZE bench_t;"

start_warden() { # $1 = audit section
    local port; port=$(free_port)
    cat > "$WORK/warden-$port.toml" <<EOF
$1
EOF
    "$PGWARDEN" serve --config "$WORK/warden-$port.toml" --listen "127.0.0.1:$port" \
        --upstream "127.0.0.1:$PGPORT_" >"$WORK/warden-$port.log" 2>&1 &
    PIDS+=($!)
    for _ in $(seq 100); do
        "$PGBIN/pg_isready" -q -h 127.0.0.1 -p "$port" && break
        sleep 0.1
    done
    echo "$port"
}

WARDEN_NOAUDIT=$(start_warden "[audit]
enabled = false")
WARDEN_AUDIT=$(start_warden "[audit]
path = \"$WORK/audit.jsonl\"
fsync = \"always\"")

echo "COMMENT ON TABLE bench_t IS 'pgwarden ddl latency';" > "$WORK/ddl.sql"
echo "SELECT 1;" > "$WORK/select.sql"

# Median and p95 of the per-transaction latencies (µs) pgbench logged with -l.
measure() { # $1 = port, $2 = script, $3 = label
    rm -f "$WORK"/pgbench_log.*
    (cd "$WORK" && "$PGBIN/pgbench" -n -h 127.0.0.1 -p "$1" -U postgres -M simple -c 1 \
        -t "$COUNT" -f "$2" -l postgres >/dev/null 2>&1)
    cat "$WORK"/pgbench_log.* | awk '{print $3}' | sort -n | awk -v label="$3" '
        { v[NR] = $1 }
        END { printf "%-34s %9.1f %9.1f\n", label, v[int(NR*0.5)+1], v[int(NR*0.95)+1] }'
}

echo
echo "== $COUNT transactions, 1 client, -M simple (latency in µs per statement)"
printf "%-34s %9s %9s\n" "" "median" "p95"
for round in 1 2; do
    measure "$PGPORT_"        "$WORK/ddl.sql"    "DDL direct (round $round)"
    measure "$WARDEN_NOAUDIT" "$WORK/ddl.sql"    "DDL pgwarden, audit off"
    measure "$WARDEN_AUDIT"   "$WORK/ddl.sql"    "DDL pgwarden, audit fsync=always"
    measure "$PGPORT_"        "$WORK/select.sql" "SELECT 1 direct"
    measure "$WARDEN_AUDIT"   "$WORK/select.sql" "SELECT 1 pgwarden (audit on)"
done
echo
echo "audit records written: $(wc -l < "$WORK/audit.jsonl")"
