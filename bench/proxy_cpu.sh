#!/usr/bin/env bash
# CPU the proxy process itself spends per forwarded transaction: pgwarden vs pgbouncer (session
# mode), same run, same cluster. A figure that scheduling noise on a shared machine barely moves,
# unlike TPS (bench/passthrough.sh).
#
# For every mode (simple, extended, prepared) x client count, a fixed `pgbench -S -t` run goes
# through each proxy in turn (interleaved, REPEAT times); around each run the script reads
#   - utime+stime of the proxy process, all threads (/proc/PID/stat, clock ticks), and
#   - voluntary+nonvoluntary context switches summed over its threads (/proc/PID/task/*/status),
# and prints per-transaction ranges (min-max over the repeats) and the pgwarden/pgbouncer ratio
# of each repeat. Then `strace -c -f` is attached to each proxy for a shorter run per mode and
# the syscalls per transaction (one transaction of `pgbench -S` = one round trip) are printed.
#
# Usage: bash bench/proxy_cpu.sh            (as root or as a user that can run postgres)
# Environment:
#   TX=30000          transactions per run (split over the clients)
#   REPEAT=3          runs per proxy and point
#   CLIENTS="1 8 32"  client counts
#   MODES="simple extended prepared"
#   STRACE_TX=4000    transactions per strace run (strace slows the proxy; counts are exact)
#   STRACE_CLIENTS="1 8"  client counts of the strace section ("" skips it)
#   BASE=path         also measure this pgwarden binary (e.g. a build of an earlier commit) as
#                     a third proxy, same defaults
#   SKIP_BUILD=1      use target/release/pgwarden as it is
#   PGWARDEN=path     measure this binary instead of target/release/pgwarden (implies nothing
#                     about SKIP_BUILD)
#   SCALE=10, PGBIN=/usr/lib/postgresql/15/bin
# pgwarden runs with its defaults (enforce mode, audit log on). Loopback only; everything is in
# a temp dir removed at exit; pgbouncer is installed from Debian's packages if missing.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

TX="${TX:-30000}"
REPEAT="${REPEAT:-3}"
CLIENTS="${CLIENTS:-1 8 32}"
MODES="${MODES:-simple extended prepared}"
STRACE_TX="${STRACE_TX:-4000}"
STRACE_CLIENTS="${STRACE_CLIENTS-1 8}"
BASE="${BASE:-}"
SCALE="${SCALE:-10}"
PGBIN="${PGBIN:-/usr/lib/postgresql/15/bin}"

for b in initdb pg_ctl pgbench psql; do
    [[ -x "$PGBIN/$b" ]] || { echo "missing $PGBIN/$b: apt-get install postgresql-15 postgresql-client-15" >&2; exit 1; }
done
if ! command -v pgbouncer >/dev/null; then
    echo "== installing pgbouncer (Debian package)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q && apt-get install -y -q --no-install-recommends pgbouncer
fi
if [[ -n "$STRACE_CLIENTS" ]] && ! command -v strace >/dev/null; then
    echo "missing strace: apt-get install strace (or STRACE_CLIENTS= to skip that section)" >&2
    exit 1
fi

if [[ "${SKIP_BUILD:-}" != 1 ]]; then
    echo "== cargo build --release"
    cargo build --release --quiet --bin pgwarden
fi
PGWARDEN="${PGWARDEN:-$PWD/target/release/pgwarden}"
[[ -z "$BASE" || -x "$BASE" ]] || { echo "BASE=$BASE is not an executable" >&2; exit 1; }

if [[ $(id -u) == 0 ]]; then as_pg() { runuser -u postgres -- "$@"; }; else as_pg() { "$@"; }; fi
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

WORK="$(mktemp -d /tmp/pgwarden-cpubench.XXXXXX)"
chmod 755 "$WORK"
PIDS=()
WARDEN_PID=""; BASE_PID=""
cleanup() {
    # start_warden runs in a command substitution: its pids are kept here, not in PIDS.
    for p in "${PIDS[@]:-}" $WARDEN_PID $BASE_PID; do [[ -n "$p" ]] && kill "$p" 2>/dev/null || true; done
    # runuser does not pass the signal on to pgbouncer: stop it by its own pid file.
    [[ -f "$WORK/pgbouncer.pid" ]] && kill "$(cat "$WORK/pgbouncer.pid")" 2>/dev/null || true
    as_pg "$PGBIN/pg_ctl" -D "$WORK/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT
[[ $(id -u) == 0 ]] && chown postgres: "$WORK"

PGPORT_=$(free_port); BOUNCER_PORT=$(free_port); WARDEN_PORT=$(free_port); BASE_PORT=$(free_port)

as_pg "$PGBIN/initdb" -D "$WORK/data" -U postgres -A trust -E UTF8 --locale=C --no-sync >/dev/null
cat >> "$WORK/data/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $PGPORT_
unix_socket_directories = '$WORK'
max_connections = 200
shared_buffers = 256MB
fsync = off
synchronous_commit = off
full_page_writes = off
autovacuum = off
EOF
as_pg "$PGBIN/pg_ctl" -D "$WORK/data" -l "$WORK/pg.log" -w start >/dev/null

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
max_client_conn = 150
default_pool_size = 100
max_db_connections = 0
logfile = $WORK/pgbouncer.log
pidfile = $WORK/pgbouncer.pid
EOF
echo '"postgres" ""' > "$WORK/userlist.txt"
[[ $(id -u) == 0 ]] && chown postgres: "$WORK"/pgbouncer.ini "$WORK"/userlist.txt
as_pg pgbouncer "$WORK/pgbouncer.ini" >/dev/null 2>&1 &
PIDS+=($!)

# Default configuration (enforce mode, audit log on), run from its own dir so the audit log's
# default relative path lands there.
start_warden() { # binary port dir
    mkdir -p "$3"
    (cd "$3" && exec "$1" serve --listen "127.0.0.1:$2" --upstream "127.0.0.1:$PGPORT_") >"$3/pgwarden.log" 2>&1 &
    echo $!
}
WARDEN_PID=$(start_warden "$PGWARDEN" "$WARDEN_PORT" "$WORK/warden")
[[ -n "$BASE" ]] && BASE_PID=$(start_warden "$BASE" "$BASE_PORT" "$WORK/base")

wait_ready() {
    for _ in $(seq 100); do
        "$PGBIN/psql" -X -h 127.0.0.1 -p "$1" -U postgres -d postgres -Atc 'SELECT 1' >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "port $1 never became ready" >&2; cat "$WORK"/*.log >&2; exit 1
}
wait_ready "$PGPORT_"; wait_ready "$BOUNCER_PORT"; wait_ready "$WARDEN_PORT"
[[ -n "$BASE" ]] && wait_ready "$BASE_PORT"
BOUNCER_PID=$(cat "$WORK/pgbouncer.pid")

"$PGBIN/pgbench" -h 127.0.0.1 -p "$PGPORT_" -U postgres -i -q -s "$SCALE" postgres >/dev/null 2>&1

CLK_TCK=$(getconf CLK_TCK)
# "utime stime" of the whole process (all threads, live and exited), in clock ticks.
cpu_ticks() { sed 's/^.*) //' "/proc/$1/stat" | awk '{ print $12, $13 }'; }
# Voluntary + nonvoluntary context switches, summed over the live threads.
ctx_switches() {
    cat /proc/"$1"/task/*/status 2>/dev/null |
        awk '/^(voluntary|nonvoluntary)_ctxt_switches:/ { n += $2 } END { print n + 0 }'
}

# One fixed run: pgbench -S -M mode -c clients, TX transactions in all. Fails loudly: it runs
# in subshells, so a failure also leaves $WORK/failed for `check_failed`.
run_pgbench() { # port mode clients tx
    local jobs=$(( $3 < 2 ? 1 : 2 )) per=$(( ($4 + $3 - 1) / $3 )) out
    out=$("$PGBIN/pgbench" -h 127.0.0.1 -p "$1" -U postgres -n -S -M "$2" -c "$3" -j "$jobs" -t "$per" postgres 2>&1) \
        || { echo "pgbench failed on port $1: $out" >&2; touch "$WORK/failed"; exit 1; }
    grep -q "number of failed transactions: 0 " <<<"$out" \
        || { echo "pgbench reported failures: $out" >&2; touch "$WORK/failed"; exit 1; }
    echo $(( per * $3 ))
}

# Prints "CPU_US_PER_TX CS_PER_TX USER_US_PER_TX" of one run through the proxy with pid $1.
measure() { # pid port mode clients
    local u0 s0 c0 u1 s1 c1 n
    read -r u0 s0 < <(cpu_ticks "$1"); c0=$(ctx_switches "$1")
    n=$(run_pgbench "$2" "$3" "$4" "$TX")
    read -r u1 s1 < <(cpu_ticks "$1"); c1=$(ctx_switches "$1")
    awk -v u="$((u1 - u0))" -v s="$((s1 - s0))" -v c="$((c1 - c0))" -v n="$n" -v hz="$CLK_TCK" \
        'BEGIN { printf "%.1f %.2f %.1f\n", (u + s) * 1e6 / hz / n, c / n, u * 1e6 / hz / n }'
}

check_failed() { [[ ! -e "$WORK/failed" ]] || exit 1; }

range() { sort -g | awk 'NR == 1 { lo = $1 } { hi = $1 } END { if (lo == hi) printf "%s", lo; else printf "%s–%s", lo, hi }'; }

run_point() { # mode clients → one table row
    local mode=$1 c=$2 i b w x bc wc xc bu wu xu ratios="" ratios_base=""
    local bs=() ws=() xs=() bcs=() wcs=() xcs=() bus=() wus=() xus=()
    for ((i = 0; i < REPEAT; i++)); do
        read -r b bc bu < <(measure "$BOUNCER_PID" "$BOUNCER_PORT" "$mode" "$c")
        read -r w wc wu < <(measure "$WARDEN_PID" "$WARDEN_PORT" "$mode" "$c")
        check_failed
        bs+=("$b"); ws+=("$w"); bcs+=("$bc"); wcs+=("$wc"); bus+=("$bu"); wus+=("$wu")
        ratios+="$(awk -v a="$w" -v b="$b" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }')"$'\n'
        if [[ -n "$BASE" ]]; then
            read -r x xc xu < <(measure "$BASE_PID" "$BASE_PORT" "$mode" "$c")
            check_failed
            xs+=("$x"); xcs+=("$xc"); xus+=("$xu")
            ratios_base+="$(awk -v a="$x" -v b="$b" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }')"$'\n'
        fi
    done
    local row
    row=$(printf '| %-8s | %7s | %-11s | %-11s | %-9s | %-9s | %-11s | %-11s | %-11s |' "$mode" "$c" \
        "$(printf '%s\n' "${bs[@]}" | range)" "$(printf '%s\n' "${ws[@]}" | range)" \
        "$(printf '%s' "$ratios" | range)" \
        "$(printf '%s\n' "${bus[@]}" | range)" "$(printf '%s\n' "${wus[@]}" | range)" \
        "$(printf '%s\n' "${bcs[@]}" | range)" "$(printf '%s\n' "${wcs[@]}" | range)")
    if [[ -n "$BASE" ]]; then
        row+=$(printf ' %-11s | %-9s | %-9s | %-11s |' "$(printf '%s\n' "${xs[@]}" | range)" \
            "$(printf '%s' "$ratios_base" | range)" "$(printf '%s\n' "${xus[@]}" | range)" \
            "$(printf '%s\n' "${xcs[@]}" | range)")
    fi
    echo "$row"
}

# Warm caches and the proxies' allocators once.
for p in "$BOUNCER_PORT" "$WARDEN_PORT" ${BASE:+"$BASE_PORT"}; do run_pgbench "$p" simple 8 4000 >/dev/null; done

echo
echo "proxy CPU per transaction: pgbench -S -t (TX=$TX per run in all), $REPEAT runs per proxy and point, interleaved"
echo "µs/tx = (utime+stime) of the proxy process / transactions; user = utime part; cs = context switches (vol+invol, all threads)"
echo "$(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)); CLK_TCK=$CLK_TCK (1 tick = $((1000000 / CLK_TCK)) µs of CPU)"
echo "pgwarden $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet 2>/dev/null || echo '+dirty'), $("$PGBIN/postgres" --version), $(pgbouncer --version | head -1)"
[[ -n "$BASE" ]] && echo "base: $BASE"
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
header='| mode     | clients | pgb µs/tx   | pgw µs/tx   | pgw/pgb   | pgb user  | pgw user    | pgb cs/tx   | pgw cs/tx   |'
sep='|----------|---------|-------------|-------------|-----------|-----------|-------------|-------------|-------------|'
if [[ -n "$BASE" ]]; then
    header+=' base µs/tx  | base/pgb  | base user | base cs/tx  |'
    sep+='-------------|-----------|-----------|-------------|'
fi
echo "$header"; echo "$sep"
for mode in $MODES; do
    for c in $CLIENTS; do run_point "$mode" "$c"; done
done
echo
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"

[[ -z "$STRACE_CLIENTS" ]] && exit 0

# strace -c -f attached to the proxy for one fixed run; prints "TOTAL_PER_TX top-syscalls".
strace_run() { # pid port mode clients
    local out="$WORK/strace.$1.$3.$4" n s
    strace -f -c -o "$out" -p "$1" 2>"$out.err" &
    s=$!
    # Attached once strace has reported every thread of the process.
    local threads
    threads=$(ls "/proc/$1/task" | wc -l)
    for _ in $(seq 100); do
        [[ $(grep -c attached "$out.err" 2>/dev/null || true) -ge "$threads" ]] && break
        sleep 0.05
    done
    n=$(run_pgbench "$2" "$3" "$4" "$STRACE_TX")
    kill -INT "$s"; wait "$s" 2>/dev/null || true
    # strace -c: "% time seconds usecs/call calls [errors] syscall"; skip header and total.
    local total detail
    total=$(awk -v n="$n" '$NF == "total" { printf "%.2f", $4 / n }' "$out")
    detail=$(awk -v n="$n" '$1 ~ /^[0-9.]+$/ && $NF != "total" && NF >= 5 && $4 / n >= 0.05 { printf "%s %.2f\n", $NF, $4 / n }' "$out" |
        sort -k2,2 -gr | awk '{ printf "%s%s %s", (NR > 1 ? ", " : ""), $1, $2 }')
    echo "$total $detail"
}

echo
echo "syscalls per transaction (= per round trip), strace -c -f -p PID over pgbench -S -t (STRACE_TX=$STRACE_TX in all)"
echo
echo '| mode     | clients | proxy     | syscalls/tx | by syscall (per tx, ≥ 0.05) |'
echo '|----------|---------|-----------|-------------|-----------------------------|'
for mode in $MODES; do
    for c in $STRACE_CLIENTS; do
        for who in pgbouncer pgwarden ${BASE:+base}; do
            case $who in
                pgbouncer) pid=$BOUNCER_PID port=$BOUNCER_PORT ;;
                pgwarden) pid=$WARDEN_PID port=$WARDEN_PORT ;;
                base) pid=$BASE_PID port=$BASE_PORT ;;
            esac
            read -r total detail < <(strace_run "$pid" "$port" "$mode" "$c")
            check_failed
            printf '| %-8s | %7s | %-9s | %11s | %s |\n' "$mode" "$c" "$who" "$total" "$detail"
        done
    done
done
