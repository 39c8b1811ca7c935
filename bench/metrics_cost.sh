#!/usr/bin/env bash
# What metrics cost the forwarding path: two pgwardens from the same release binary in front of
# the same PostgreSQL, one as shipped (metrics on: one relaxed atomic add per counter per read
# batch) and one started with PGWARDEN_BENCH_NO_METRICS=1 (no recorder installed, so the hot
# path's counters are skipped), measured in the same run, interleaved point by point.
# Per point: pgbench -S TPS and pgwarden's own CPU time (utime+stime from /proc/PID/stat)
# divided by the transactions pgbench completed: µs of pgwarden CPU per transaction, which is
# far less noisy than TPS on a shared machine.
#
# Usage: bash bench/metrics_cost.sh     (as root or a user that can run postgres)
#   DURATION=10 REPEAT=3 CLIENTS="1 8" MODES="simple prepared" SCALE=10
#   PGWARDEN_BIN=path/to/pgwarden (skip the build)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

DURATION="${DURATION:-10}"
REPEAT="${REPEAT:-3}"
CLIENTS="${CLIENTS:-1 8}"
MODES="${MODES:-simple prepared}"
SCALE="${SCALE:-10}"
PGBIN="${PGBIN:-/usr/lib/postgresql/15/bin}"
for b in initdb pg_ctl pgbench psql; do
    [[ -x "$PGBIN/$b" ]] || { echo "missing $PGBIN/$b: apt-get install postgresql-15 postgresql-client-15" >&2; exit 1; }
done

if [[ -n ${PGWARDEN_BIN:-} ]]; then
    PGWARDEN="$PGWARDEN_BIN"    # an already built release binary
else
    echo "== cargo build --release"
    cargo build --release --quiet
    PGWARDEN="$PWD/target/release/pgwarden"
fi

if [[ $(id -u) == 0 ]]; then as_pg() { runuser -u postgres -- "$@"; }; else as_pg() { "$@"; }; fi
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

WORK="$(mktemp -d /tmp/pgwarden-metrics-cost.XXXXXX)"
chmod 755 "$WORK"
PIDS=()
cleanup() {
    for p in "${PIDS[@]:-}"; do [[ -n "$p" ]] && kill "$p" 2>/dev/null || true; done
    as_pg "$PGBIN/pg_ctl" -D "$WORK/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT
[[ $(id -u) == 0 ]] && chown postgres: "$WORK"

PGPORT_=$(free_port); ON_PORT=$(free_port); OFF_PORT=$(free_port)
as_pg "$PGBIN/initdb" -D "$WORK/data" -U postgres -A trust -E UTF8 --locale=C --no-sync >/dev/null
cat >> "$WORK/data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $PGPORT_
unix_socket_directories = '$WORK'
shared_buffers = 256MB
fsync = off
synchronous_commit = off
full_page_writes = off
autovacuum = off
CONF
as_pg "$PGBIN/pg_ctl" -D "$WORK/data" -l "$WORK/pg.log" -w start >/dev/null

# Default configuration (enforce mode, audit log on), each in its own directory.
mkdir -p "$WORK/on" "$WORK/off"
(cd "$WORK/on" && exec "$PGWARDEN" serve --listen "127.0.0.1:$ON_PORT" --upstream "127.0.0.1:$PGPORT_") >"$WORK/on.log" 2>&1 &
ON_PID=$!; PIDS+=($ON_PID)
(cd "$WORK/off" && PGWARDEN_BENCH_NO_METRICS=1 exec "$PGWARDEN" serve --listen "127.0.0.1:$OFF_PORT" --upstream "127.0.0.1:$PGPORT_") >"$WORK/off.log" 2>&1 &
OFF_PID=$!; PIDS+=($OFF_PID)

wait_ready() {
    for _ in $(seq 100); do
        "$PGBIN/psql" -X -h 127.0.0.1 -p "$1" -U postgres -d postgres -Atc 'SELECT 1' >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "port $1 never became ready" >&2; cat "$WORK"/*.log >&2; exit 1
}
wait_ready "$PGPORT_"; wait_ready "$ON_PORT"; wait_ready "$OFF_PORT"
"$PGBIN/pgbench" -h 127.0.0.1 -p "$PGPORT_" -U postgres -i -q -s "$SCALE" postgres >/dev/null 2>&1

cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
TCK=$(getconf CLK_TCK)

# One point: prints "TPS CPU_US_PER_TX".
point() { # port pid mode clients
    local jobs=$(( $4 < 2 ? 1 : 2 )) before after out tps tx
    before=$(cpu_ticks "$2")
    out=$("$PGBIN/pgbench" -h 127.0.0.1 -p "$1" -U postgres -n -S -M "$3" -c "$4" -j "$jobs" -T "$DURATION" postgres 2>&1) \
        || { echo "pgbench failed on port $1: $out" >&2; exit 1; }
    after=$(cpu_ticks "$2")
    grep -q "number of failed transactions: 0 " <<<"$out" || { echo "pgbench failures: $out" >&2; exit 1; }
    tps=$(sed -n 's/^tps = \([0-9.]*\) (without initial connection time)/\1/p' <<<"$out")
    tx=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' <<<"$out")
    awk -v t="$tps" -v a="$after" -v b="$before" -v k="$TCK" -v n="$tx" 'BEGIN { printf "%.0f %.2f\n", t, (a - b) / k * 1e6 / n }'
}

point "$ON_PORT" "$ON_PID" simple 8 >/dev/null
point "$OFF_PORT" "$OFF_PID" simple 8 >/dev/null

echo
echo "pgbench -S, ${DURATION}s per point, $REPEAT runs each (alternating on/off), scale $SCALE, $(nproc) cores"
echo "pgwarden $(git rev-parse --short HEAD 2>/dev/null || echo '?'), $("$PGBIN/postgres" --version)"
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
printf '| %-8s | %7s | %-28s | %-28s | %12s | %12s |\n' mode clients "metrics on: TPS, µs CPU/tx" "metrics off: TPS, µs CPU/tx" "TPS on/off" "CPU on-off"
printf '|%s|\n' "----------|---------|------------------------------|------------------------------|--------------|--------------"
median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
for mode in $MODES; do
    for c in $CLIENTS; do
        : > "$WORK/on.pts"; : > "$WORK/off.pts"
        for ((i = 0; i < REPEAT; i++)); do
            # Alternate which goes first, so drift of the machine hits both alike.
            if ((i % 2 == 0)); then
                point "$ON_PORT" "$ON_PID" "$mode" "$c" >> "$WORK/on.pts"
                point "$OFF_PORT" "$OFF_PID" "$mode" "$c" >> "$WORK/off.pts"
            else
                point "$OFF_PORT" "$OFF_PID" "$mode" "$c" >> "$WORK/off.pts"
                point "$ON_PORT" "$ON_PID" "$mode" "$c" >> "$WORK/on.pts"
            fi
        done
        ot=$(cut -d' ' -f1 "$WORK/on.pts" | median); oc=$(cut -d' ' -f2 "$WORK/on.pts" | median)
        ft=$(cut -d' ' -f1 "$WORK/off.pts" | median); fc=$(cut -d' ' -f2 "$WORK/off.pts" | median)
        printf '| %-8s | %7s | %-28s | %-28s | %12s | %12s |\n' "$mode" "$c" \
            "$ot, $oc ($(paste -sd/ <(cut -d' ' -f2 "$WORK/on.pts")))" \
            "$ft, $fc ($(paste -sd/ <(cut -d' ' -f2 "$WORK/off.pts")))" \
            "$(awk -v a="$ot" -v b="$ft" 'BEGIN { printf "%.3f", a / b }')" \
            "$(awk -v a="$oc" -v b="$fc" 'BEGIN { printf "%+.2f µs", a - b }')"
    done
done
echo
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
