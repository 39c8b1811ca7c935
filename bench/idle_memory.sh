#!/usr/bin/env bash
# Memory per idle client connection: RSS of the proxy before and with IDLE connected pgbench
# clients that only `\sleep` (delta / IDLE), for pgwarden (defaults: enforce, audit log on) and,
# in the same run, BASE (another pgwarden binary, e.g. a build of an earlier commit) — each
# measured REPEAT times, alternating. Then the syscalls per round trip of a short pgbench -S run
# (strace -c -f), so a change that saves memory can show it costs no syscall.
#
# Usage: bash bench/idle_memory.sh
# Environment: IDLE=250 REPEAT=3 BASE=path PGWARDEN=path (default target/release/pgwarden,
#   SKIP_BUILD=1 skips the build) STRACE_TX=4000 (0 skips strace) PGBIN=/usr/lib/postgresql/15/bin
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

IDLE="${IDLE:-250}"
REPEAT="${REPEAT:-3}"
BASE="${BASE:-}"
STRACE_TX="${STRACE_TX:-4000}"
PGBIN="${PGBIN:-/usr/lib/postgresql/15/bin}"
if [[ "${SKIP_BUILD:-}" != 1 ]]; then
    cargo build --release --quiet --bin pgwarden
fi
PGWARDEN="${PGWARDEN:-$PWD/target/release/pgwarden}"

if [[ $(id -u) == 0 ]]; then as_pg() { runuser -u postgres -- "$@"; }; else as_pg() { "$@"; }; fi
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

WORK="$(mktemp -d /tmp/pgwarden-idlemem.XXXXXX)"
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
max_connections = $((IDLE + 50))
fsync = off
synchronous_commit = off
autovacuum = off
EOF
as_pg "$PGBIN/pg_ctl" -D "$WORK/data" -l "$WORK/pg.log" -w start >/dev/null
"$PGBIN/pgbench" -h 127.0.0.1 -p "$PGPORT_" -U postgres -i -q -s 1 postgres >/dev/null 2>&1

start() { # binary dir → "pid port"
    local port; port=$(free_port)
    mkdir -p "$2"
    (cd "$2" && exec "$1" serve --listen "127.0.0.1:$port" --upstream "127.0.0.1:$PGPORT_") >"$2/log" 2>&1 &
    local pid=$!
    for _ in $(seq 100); do
        "$PGBIN/psql" -X -h 127.0.0.1 -p "$port" -U postgres -d postgres -Atc 'SELECT 1' >/dev/null 2>&1 && break
        sleep 0.1
    done
    echo "$pid $port"
}
read -r W_PID W_PORT < <(start "$PGWARDEN" "$WORK/new"); PIDS+=("$W_PID")
if [[ -n "$BASE" ]]; then read -r B_PID B_PORT < <(start "$BASE" "$WORK/base"); PIDS+=("$B_PID"); fi

rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
echo '\sleep 20 s' > "$WORK/idle.sql"
idle_rss() { # pid port → KiB per idle connection
    local before after n bench
    # Warm: the allocator's first pages for sessions are not per-connection cost.
    "$PGBIN/pgbench" -h 127.0.0.1 -p "$2" -U postgres -n -S -c 8 -j 2 -t 200 postgres >/dev/null 2>&1
    sleep 1
    before=$(rss_kib "$1")
    "$PGBIN/pgbench" -h 127.0.0.1 -p "$2" -U postgres -n -c "$IDLE" -j 2 -T 12 -f "$WORK/idle.sql" postgres >/dev/null 2>&1 &
    bench=$!
    for _ in $(seq 200); do
        n=$(( $("$PGBIN/psql" -X -h 127.0.0.1 -p "$PGPORT_" -U postgres -d postgres -Atc \
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'") - 1 ))
        [[ "$n" -ge "$IDLE" ]] && break
        sleep 0.1
    done
    sleep 1
    after=$(rss_kib "$1")
    wait "$bench" || true
    awk -v a="$after" -v b="$before" -v n="$IDLE" 'BEGIN { printf "%.1f", (a - b) / n }'
}

echo "RSS per idle client connection: $IDLE pgbench clients that only \\sleep; $REPEAT runs, alternating"
echo "pgwarden: $PGWARDEN${BASE:+; base: $BASE}; load average $(cut -d' ' -f1-3 /proc/loadavg)"
new=(); base=()
for ((i = 0; i < REPEAT; i++)); do
    new+=("$(idle_rss "$W_PID" "$W_PORT")")
    [[ -n "$BASE" ]] && base+=("$(idle_rss "$B_PID" "$B_PORT")")
done
echo "pgwarden KiB/conn: ${new[*]}"
[[ -n "$BASE" ]] && echo "base     KiB/conn: ${base[*]}"

[[ "$STRACE_TX" == 0 ]] && exit 0
command -v strace >/dev/null || { echo "no strace: syscall count skipped"; exit 0; }
strace_per_tx() { # pid port mode
    local out="$WORK/strace.$1.$3" s
    strace -f -c -o "$out" -p "$1" 2>"$out.err" &
    s=$!
    sleep 1
    "$PGBIN/pgbench" -h 127.0.0.1 -p "$2" -U postgres -n -S -M "$3" -c 8 -j 2 -t $((STRACE_TX / 8)) postgres >/dev/null 2>&1
    kill -INT "$s"; wait "$s" 2>/dev/null || true
    awk -v n="$STRACE_TX" '$NF == "total" { t = $4 / n } $1 ~ /^[0-9.]+$/ && $NF != "total" && NF >= 5 && $4 / n >= 0.05 { d = d sprintf("%s %.2f, ", $NF, $4 / n) } END { printf "%.2f (%s)\n", t, d }' "$out"
}
echo
echo "syscalls per transaction, pgbench -S -c 8, strace -c -f"
for mode in simple prepared; do
    echo "$mode pgwarden: $(strace_per_tx "$W_PID" "$W_PORT" "$mode")"
    [[ -n "$BASE" ]] && echo "$mode base:     $(strace_per_tx "$B_PID" "$B_PORT" "$mode")"
done
