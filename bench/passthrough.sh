#!/usr/bin/env bash
# Passthrough benchmark: pgbench -S through nothing (direct), pgbouncer (session mode) and pgwarden,
# for -M simple|extended|prepared at 1, 8 and 32 clients, plus RSS per idle client connection.
#
# Usage: bash bench/passthrough.sh            (as root or as a user that can run postgres)
# Environment:
#   DURATION=10      seconds per pgbench point
#   REPEAT=1         runs per point; the run with the median TPS is reported (noisy machines)
#   CLIENTS="1 8 32" client counts
#   MODES="simple extended prepared"
#   SCALE=10         pgbench scale factor (10 = 1M accounts, fits in shared_buffers)
#   IDLE=250         idle connections for the RSS measurement
#   PGBIN=/usr/lib/postgresql/15/bin
# Everything runs on loopback in a temp dir that is removed at exit; pgbouncer is installed from
# Debian's packages if missing; pgwarden is built with `cargo build --release`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

DURATION="${DURATION:-10}"
REPEAT="${REPEAT:-1}"
CLIENTS="${CLIENTS:-1 8 32}"
MODES="${MODES:-simple extended prepared}"
SCALE="${SCALE:-10}"
IDLE="${IDLE:-250}"
PGBIN="${PGBIN:-/usr/lib/postgresql/15/bin}"

for b in initdb pg_ctl pgbench psql; do
    [[ -x "$PGBIN/$b" ]] || { echo "missing $PGBIN/$b: apt-get install postgresql-15 postgresql-client-15" >&2; exit 1; }
done
if ! command -v pgbouncer >/dev/null; then
    echo "== installing pgbouncer (Debian package)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q && apt-get install -y -q --no-install-recommends pgbouncer
fi

echo "== cargo build --release"
cargo build --release --quiet
PGWARDEN="$PWD/target/release/pgwarden"

# Run server-side programs as `postgres` when root (PostgreSQL and pgbouncer refuse root).
if [[ $(id -u) == 0 ]]; then as_pg() { runuser -u postgres -- "$@"; }; else as_pg() { "$@"; }; fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

WORK="$(mktemp -d /tmp/pgwarden-bench.XXXXXX)"
chmod 755 "$WORK"
PIDS=()
cleanup() {
    for p in "${PIDS[@]:-}"; do [[ -n "$p" ]] && kill "$p" 2>/dev/null || true; done
    # runuser does not pass the signal on to pgbouncer: stop it by its own pid file.
    [[ -f "$WORK/pgbouncer.pid" ]] && kill "$(cat "$WORK/pgbouncer.pid")" 2>/dev/null || true
    as_pg "$PGBIN/pg_ctl" -D "$WORK/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT
[[ $(id -u) == 0 ]] && chown postgres: "$WORK"

PGPORT_=$(free_port); BOUNCER_PORT=$(free_port); WARDEN_PORT=$(free_port)

echo "== PostgreSQL cluster on 127.0.0.1:$PGPORT_"
as_pg "$PGBIN/initdb" -D "$WORK/data" -U postgres -A trust -E UTF8 --locale=C --no-sync >/dev/null
cat >> "$WORK/data/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $PGPORT_
unix_socket_directories = '$WORK'
max_connections = $((IDLE + 100))
shared_buffers = 512MB
fsync = off
synchronous_commit = off
full_page_writes = off
autovacuum = off
EOF
as_pg "$PGBIN/pg_ctl" -D "$WORK/data" -l "$WORK/pg.log" -w start >/dev/null

echo "== pgbouncer (session mode) on 127.0.0.1:$BOUNCER_PORT"
cat > "$WORK/pgbouncer.ini" <<EOF
[databases]
* = host=127.0.0.1 port=$PGPORT_
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $BOUNCER_PORT
unix_socket_dir =
auth_type = trust
auth_file = $WORK/userlist.txt
pool_mode = session
max_client_conn = $((IDLE + 100))
default_pool_size = $((IDLE + 50))
max_db_connections = 0
logfile = $WORK/pgbouncer.log
pidfile = $WORK/pgbouncer.pid
EOF
echo '"postgres" ""' > "$WORK/userlist.txt"
[[ $(id -u) == 0 ]] && chown postgres: "$WORK"/pgbouncer.ini "$WORK"/userlist.txt
as_pg pgbouncer "$WORK/pgbouncer.ini" >/dev/null 2>&1 &
PIDS+=($!)

echo "== pgwarden on 127.0.0.1:$WARDEN_PORT"
# Default configuration (enforce mode, audit log on): run from $WORK so the audit log's default
# relative path lands there.
(cd "$WORK" && exec "$PGWARDEN" serve --listen "127.0.0.1:$WARDEN_PORT" --upstream "127.0.0.1:$PGPORT_") >"$WORK/pgwarden.log" 2>&1 &
WARDEN_PID=$!
PIDS+=($WARDEN_PID)

wait_ready() {
    for _ in $(seq 100); do
        "$PGBIN/psql" -X -h 127.0.0.1 -p "$1" -U postgres -d postgres -Atc 'SELECT 1' >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "port $1 never became ready" >&2; cat "$WORK"/*.log >&2; exit 1
}
wait_ready "$PGPORT_"; wait_ready "$BOUNCER_PORT"; wait_ready "$WARDEN_PORT"
BOUNCER_PID=$(cat "$WORK/pgbouncer.pid")

echo "== pgbench -i -s $SCALE (direct)"
"$PGBIN/pgbench" -h 127.0.0.1 -p "$PGPORT_" -U postgres -i -q -s "$SCALE" postgres >/dev/null 2>&1

# One pgbench point: prints "TPS LATENCY_MS".
point() { # port mode clients
    local jobs=$(( $3 < 2 ? 1 : 2 ))
    local out
    out=$("$PGBIN/pgbench" -h 127.0.0.1 -p "$1" -U postgres -n -S -M "$2" -c "$3" -j "$jobs" -T "$DURATION" postgres 2>&1) \
        || { echo "pgbench failed on port $1: $out" >&2; exit 1; }
    if ! grep -q "number of failed transactions: 0 " <<<"$out"; then echo "pgbench reported failures: $out" >&2; exit 1; fi
    local tps lat
    tps=$(sed -n 's/^tps = \([0-9.]*\) (without initial connection time)/\1/p' <<<"$out")
    lat=$(sed -n 's/^latency average = \([0-9.]*\) ms/\1/p' <<<"$out")
    echo "$tps $lat"
}

# REPEAT runs of one point; prints the "TPS LATENCY_MS" of the run with the median TPS.
median_point() { # port mode clients
    local i
    for ((i = 0; i < REPEAT; i++)); do point "$@"; done | sort -n -k1,1 | sed -n "$(((REPEAT + 1) / 2))p"
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }'; }

# Warm the caches once so the first measured point is not penalised.
point "$PGPORT_" simple 8 >/dev/null

echo
echo "pgbench -S, ${DURATION}s per point (median of $REPEAT), scale $SCALE, $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs))"
echo "pgwarden $(git rev-parse --short HEAD 2>/dev/null || echo '?'), $("$PGBIN/postgres" --version), $(pgbouncer --version | head -1)"
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
printf '| %-8s | %7s | %-20s | %-20s | %-20s | %9s | %9s |\n' mode clients "direct TPS (lat ms)" "pgbouncer TPS (lat)" "pgwarden TPS (lat)" "pgw/direct" "pgw/pgb"
printf '|%s|\n' "----------|---------|----------------------|----------------------|----------------------|-----------|-----------"
for mode in $MODES; do
    for c in $CLIENTS; do
        # Interleaved per point so slow drift of the machine hits all three alike.
        read -r dt dl < <(median_point "$PGPORT_" "$mode" "$c")
        read -r bt bl < <(median_point "$BOUNCER_PORT" "$mode" "$c")
        read -r wt wl < <(median_point "$WARDEN_PORT" "$mode" "$c")
        printf '| %-8s | %7s | %-20s | %-20s | %-20s | %9s | %9s |\n' "$mode" "$c" \
            "$(printf '%.0f (%.3f)' "$dt" "$dl")" "$(printf '%.0f (%.3f)' "$bt" "$bl")" \
            "$(printf '%.0f (%.3f)' "$wt" "$wl")" "$(ratio "$wt" "$dt")" "$(ratio "$wt" "$bt")"
    done
done

# Established TCP connections whose local port is $1 (accepted client sockets), from /proc.
established() {
    local hex
    hex=$(printf '%04X' "$1")
    awk -v p=":$hex" '$2 ~ p"$" && $4 == "01" { n++ } END { print n + 0 }' /proc/net/tcp
}

echo
echo "load average at end of pgbench points: $(cut -d' ' -f1-3 /proc/loadavg)"

rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }

# RSS per idle client: IDLE pgbench clients that connect and then only \sleep.
echo '\sleep 20 s' > "$WORK/idle.sql"
idle_rss() { # name port pid
    local before after n
    before=$(rss_kib "$3")
    "$PGBIN/pgbench" -h 127.0.0.1 -p "$2" -U postgres -n -c "$IDLE" -j 2 -T 12 -f "$WORK/idle.sql" postgres >/dev/null 2>&1 &
    local bench=$!
    # Wait until every client is connected to the process under test.
    for _ in $(seq 100); do
        n=$(established "$2")
        [[ "$n" -ge "$IDLE" ]] && break
        sleep 0.1
    done
    [[ "$n" -ge "$IDLE" ]] || { echo "only $n of $IDLE idle clients connected to $1" >&2; exit 1; }
    sleep 1
    after=$(rss_kib "$3")
    wait "$bench" || true
    printf '| %-9s | %10s | %10s | %12s |\n' "$1" "$before" "$after" \
        "$(awk -v a="$after" -v b="$before" -v n="$IDLE" 'BEGIN { printf "%.1f", (a - b) / n }')"
}
echo
echo "RSS per idle client connection ($IDLE idle connections, pgbench clients that only \\sleep)"
echo
printf '| %-9s | %10s | %10s | %12s |\n' process "RSS before (KiB)" "RSS with idle (KiB)" "KiB per conn"
printf '|%s|\n' "-----------|------------|------------|--------------"
idle_rss pgbouncer "$BOUNCER_PORT" "$BOUNCER_PID"
idle_rss pgwarden "$WARDEN_PORT" "$WARDEN_PID"
