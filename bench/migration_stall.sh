#!/usr/bin/env bash
# Migration stall benchmark: what the application feels while a migration waits for a lock.
# A writer updates `orders` at a fixed rate (pgbench -R, latency logged per transaction with
# -l: it counts from the scheduled start, so a request arriving during a block waits in it).
# A blocker holds ACCESS SHARE on `orders` for BLOCK seconds; one second after it starts, the
# migration `BEGIN; ALTER TABLE orders ADD COLUMN ...; COMMIT;` runs, once directly and once
# through pgwarden (default config), in the same run against the same table. Prints the
# writer's worst and p99 latency, the migration's wall time and outcome, side by side.
#
# Second part (REWRITES=1, the default): the five statements pgwarden runs as multi-step
# rewrites (issue 16), each `BEGIN; <statement>; COMMIT;` on a copy of an RW_ROWS-row orders
# table (100k-row customers) while the writer runs, direct vs through pgwarden: the writer's
# worst / p99 latency, the migration's wall time and the end state (validated / valid / NOT
# NULL, read from the catalog). "worst at": when the worst request was scheduled, in seconds
# from the migration's start; "during ms": the worst request scheduled while the migration ran.
#
# Usage: bash bench/migration_stall.sh
# Environment:
#   REWRITES=1     also run the five-statement part
#   STALL=0        skip the first part (ADD COLUMN behind a blocker)
#   ONLY=index,unique  run only these of the five (labels: fk check not_null index unique)
#   RW_ROWS=3000000 rows in its orders table
#   RW_SECS=20     seconds the writer runs per statement and path
#   ROWS=1000000   rows in orders
#   RATE=200       writer transactions per second (4 clients)
#   BLOCK=8        seconds the blocker holds its lock
#   PGBIN=/usr/lib/postgresql/15/bin
#   PGWARDEN_BIN   a pgwarden binary to use instead of building target/release/pgwarden
# Everything runs on loopback in a temp dir removed at exit; pgwarden is built with
# `cargo build --release`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

ROWS="${ROWS:-1000000}"
RATE="${RATE:-200}"
BLOCK="${BLOCK:-8}"
PGBIN="${PGBIN:-/usr/lib/postgresql/15/bin}"
for b in initdb pg_ctl pgbench psql pg_isready; do
    [[ -x "$PGBIN/$b" ]] || { echo "missing $PGBIN/$b: apt-get install postgresql-15 postgresql-client-15" >&2; exit 1; }
done

if [[ -n "${PGWARDEN_BIN:-}" ]]; then
    PGWARDEN="$PGWARDEN_BIN"
else
    echo "== cargo build --release"
    cargo build --release --quiet
    PGWARDEN="$PWD/target/release/pgwarden"
fi

if [[ $(id -u) == 0 ]]; then as_pg() { runuser -u postgres -- "$@"; }; else as_pg() { "$@"; }; fi
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

WORK="$(mktemp -d /tmp/pgwarden-stall.XXXXXX)"
chmod 755 "$WORK"
PIDS=()
cleanup() {
    for p in "${PIDS[@]:-}"; do [[ -n "$p" ]] && kill "$p" 2>/dev/null || true; done
    as_pg "$PGBIN/pg_ctl" -D "$WORK/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT
[[ $(id -u) == 0 ]] && chown postgres: "$WORK"

PORT=$(free_port)
as_pg "$PGBIN/initdb" -D "$WORK/data" -U postgres -A trust -E UTF8 --locale=C --no-sync >/dev/null
cat >> "$WORK/data/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $PORT
unix_socket_directories = '$WORK'
fsync = off
synchronous_commit = off
max_connections = 50
EOF
as_pg "$PGBIN/pg_ctl" -D "$WORK/data" -l "$WORK/pg.log" -w start >/dev/null
PSQL=("$PGBIN/psql" -h 127.0.0.1 -U postgres -X -q -v ON_ERROR_STOP=1)
echo "== orders: $ROWS rows"
"${PSQL[@]}" -p "$PORT" -c "CREATE TABLE orders (id bigint PRIMARY KEY, amount int NOT NULL, status text NOT NULL DEFAULT 'new');
    INSERT INTO orders (id, amount) SELECT g, g % 1000 FROM generate_series(1, $ROWS) g; ANALYZE orders;"

WPORT=$(free_port)
cat > "$WORK/pgwarden.toml" <<EOF
[audit]
path = "$WORK/audit.jsonl"
EOF
"$PGWARDEN" serve --config "$WORK/pgwarden.toml" --listen "127.0.0.1:$WPORT" \
    --upstream "127.0.0.1:$PORT" >"$WORK/pgwarden.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do "$PGBIN/pg_isready" -q -h 127.0.0.1 -p "$WPORT" && break; sleep 0.1; done

cat > "$WORK/writer.sql" <<EOF
\set id random(1, $ROWS)
UPDATE orders SET amount = amount + 1 WHERE id = :id;
EOF

# One run: writer, blocker, migration through port $1. Prints one result row.
run() { # $1 = label, $2 = port for the migration, $3 = column name
    local dir="$WORK/$1" secs=$((BLOCK + 5))
    mkdir -p "$dir"
    (cd "$dir" && "$PGBIN/pgbench" -h 127.0.0.1 -p "$PORT" -U postgres -n -c 4 -j 2 \
        -R "$RATE" -T "$secs" -l -f "$WORK/writer.sql" postgres >"$dir/pgbench.out" 2>&1) &
    local writer=$!
    sleep 1
    "${PSQL[@]}" -p "$PORT" -c "SET application_name = 'blocker'; BEGIN; SELECT count(*) FROM orders WHERE id = 1; SELECT pg_sleep($BLOCK); COMMIT;" >/dev/null &
    local blocker=$!
    sleep 1
    local t0 t1 outcome
    t0=$(date +%s.%N)
    if printf 'BEGIN;\nALTER TABLE orders ADD COLUMN %s text;\nCOMMIT;\n' "$3" \
        | "${PSQL[@]}" -p "$2" >"$dir/migration.out" 2>&1; then outcome="completed"; else outcome="failed"; fi
    t1=$(date +%s.%N)
    wait "$blocker" || true
    wait "$writer" || true
    # Column 3 of pgbench's per-transaction log: latency in µs from the scheduled start.
    cat "$dir"/pgbench_log.* | awk '{print $3}' | sort -n > "$dir/lat"
    local n worst p99 p50
    n=$(wc -l < "$dir/lat")
    worst=$(tail -1 "$dir/lat")
    p99=$(awk -v n="$n" 'NR == int(n * 0.99) { print; exit }' "$dir/lat")
    p50=$(awk -v n="$n" 'NR == int(n * 0.50) { print; exit }' "$dir/lat")
    printf '%-10s %10.1f %10.1f %10.1f %10d %12.2f  %s\n' "$1" "$(echo "$worst / 1000" | bc -l)" \
        "$(echo "$p99 / 1000" | bc -l)" "$(echo "$p50 / 1000" | bc -l)" "$n" \
        "$(echo "$t1 - $t0" | bc -l)" "$outcome"
}

if [[ "${STALL:-1}" == 1 ]]; then
echo "== writer ${RATE} tx/s on orders, blocker holds ACCESS SHARE for ${BLOCK} s, migration starts 1 s into it"
printf '%-10s %10s %10s %10s %10s %12s  %s\n' "path" "worst ms" "p99 ms" "p50 ms" "requests" "migration s" "outcome"
run direct "$PORT" note_direct
run pgwarden "$WPORT" note_pgwarden
echo "== pgwarden's retries (from its log)"
grep -c "pgwarden rolls back the attempt" "$WORK/pgwarden.log" | sed 's/^/lock-timeout retries: /'
grep "retries ended" "$WORK/pgwarden.log" | tail -1 | sed 's/.*INFO //'
fi

[[ "${REWRITES:-1}" == 1 ]] || exit 0
RW_ROWS="${RW_ROWS:-3000000}"
RW_SECS="${RW_SECS:-20}"
echo
echo "== multi-step rewrites: orders $RW_ROWS rows, customers 100000, writer ${RATE} tx/s for ${RW_SECS} s"
"${PSQL[@]}" -p "$PORT" -c "CREATE DATABASE rw_tmpl"
"${PSQL[@]}" -p "$PORT" -d rw_tmpl -c "CREATE TABLE customers (id int PRIMARY KEY);
    INSERT INTO customers SELECT generate_series(1, 100000);
    CREATE TABLE orders (id bigint PRIMARY KEY, customer_id int NOT NULL, amount int NOT NULL,
        status text, ref bigint);
    INSERT INTO orders SELECT g, 1 + g % 100000, 1 + g % 1000, 'new', g FROM generate_series(1, $RW_ROWS) g;
    ANALYZE customers; ANALYZE orders; CHECKPOINT;"
STMTS=(
    "fk|ALTER TABLE orders ADD CONSTRAINT orders_customer_fk FOREIGN KEY (customer_id) REFERENCES customers (id)|SELECT 'validated=' || convalidated FROM pg_constraint WHERE conname = 'orders_customer_fk'"
    "check|ALTER TABLE orders ADD CONSTRAINT orders_amount_positive CHECK (amount > 0)|SELECT 'validated=' || convalidated FROM pg_constraint WHERE conname = 'orders_amount_positive'"
    "not_null|ALTER TABLE orders ALTER COLUMN status SET NOT NULL|SELECT 'not_null=' || attnotnull FROM pg_attribute WHERE attrelid = 'orders'::regclass AND attname = 'status'"
    "index|CREATE INDEX ix_orders_amount ON orders (amount)|SELECT 'valid=' || indisvalid FROM pg_index WHERE indexrelid = 'ix_orders_amount'::regclass"
    "unique|ALTER TABLE orders ADD UNIQUE (id, amount)|SELECT 'unique=' || (SELECT count(*) FROM pg_constraint WHERE conname = 'orders_id_amount_key' AND contype = 'u') || ' valid=' || indisvalid FROM pg_index WHERE indexrelid = 'orders_id_amount_key'::regclass"
)
cat > "$WORK/rw_writer.sql" <<EOF
\set id random(1, $RW_ROWS)
UPDATE orders SET amount = amount + 1 WHERE id = :id;
EOF
rw_run() { # $1 = statement label, $2 = path label, $3 = port, $4 = statement, $5 = end-state query
    local db="rw_$1_$2" dir="$WORK/rw_$1_$2"
    mkdir -p "$dir"
    "${PSQL[@]}" -p "$PORT" -c "CREATE DATABASE $db TEMPLATE rw_tmpl"
    (cd "$dir" && "$PGBIN/pgbench" -h 127.0.0.1 -p "$PORT" -U postgres -n -c 4 -j 2 \
        -R "$RATE" -T "$RW_SECS" -l -f "$WORK/rw_writer.sql" "$db" >"$dir/pgbench.out" 2>&1) &
    local writer=$!
    sleep 1
    local t0 t1 outcome state
    t0=$(date +%s.%N)
    if printf 'BEGIN;\n%s;\nCOMMIT;\n' "$4" | "${PSQL[@]}" -p "$3" -d "$db" >"$dir/migration.out" 2>&1
    then outcome="completed"; else outcome="failed"; fi
    t1=$(date +%s.%N)
    wait "$writer" || true
    state=$("${PSQL[@]}" -p "$PORT" -d "$db" -At -c "$5" 2>/dev/null || echo "absent")
    cat "$dir"/pgbench_log.* | awk '{print $3}' | sort -n > "$dir/lat"
    local n worst p99 at
    n=$(wc -l < "$dir/lat")
    worst=$(tail -1 "$dir/lat")
    p99=$(awk -v n="$n" 'NR == int(n * 0.99) { print; exit }' "$dir/lat")
    # When the worst request was scheduled, in seconds from the migration's start (columns 5
    # and 6 of pgbench's log: when it completed).
    at=$(cat "$dir"/pgbench_log.* | awk -v t0="$t0" 'BEGIN { w = -1 }
        $3 > w { w = $3; at = $5 + $6 / 1e6 - $3 / 1e6 - t0 } END { printf "%+.2f", at }')
    # The worst request scheduled while the migration ran (from its start to its end): what
    # the migration itself made the application wait, without the machine's noise before
    # and after it.
    local during
    during=$(cat "$dir"/pgbench_log.* | awk -v t0="$t0" -v t1="$t1" 'BEGIN { w = 0 }
        { s = $5 + $6 / 1e6 - $3 / 1e6 } s >= t0 && s <= t1 && $3 > w { w = $3 }
        END { printf "%.1f", w / 1000 }')
    printf '%-9s %-9s %10.1f %10.1f %8s %10s %10d %12.2f  %-10s %s\n' "$1" "$2" "$(echo "$worst / 1000" | bc -l)" \
        "$(echo "$p99 / 1000" | bc -l)" "$at" "$during" "$n" "$(echo "$t1 - $t0" | bc -l)" "$outcome" "${state:-absent}"
    "${PSQL[@]}" -p "$PORT" -c "DROP DATABASE $db" >/dev/null
}
printf '%-9s %-9s %10s %10s %8s %10s %10s %12s  %-10s %s\n' "statement" "path" "worst ms" "p99 ms" "worst at" "during ms" "requests" "migration s" "outcome" "end state"
for entry in "${STMTS[@]}"; do
    IFS='|' read -r label stmt state <<<"$entry"
    [[ -z "${ONLY:-}" || ",$ONLY," == *",$label,"* ]] || continue
    rw_run "$label" direct "$PORT" "$stmt" "$state"
    rw_run "$label" pgwarden "$WPORT" "$stmt" "$state"
done
