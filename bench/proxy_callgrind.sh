#!/usr/bin/env bash
# Instructions pgwarden executes per forwarded pgbench -S transaction: a count the machine's
# load moves far less than CPU time. pgwarden (release build, defaults: enforce mode, audit log
# on) runs under `valgrind --tool=callgrind`; after a warm-up the counters are zeroed
# (`callgrind_control -z`), `pgbench -S -M MODE -c CLIENTS -t PER` runs, the counters are dumped
# (`callgrind_control -d`), and the total Ir of that dump / transactions is printed per mode,
# with the top functions (inclusive) when TOP > 0, and the event loop's turns (epoll_wait calls)
# per transaction: with several clients those vary with scheduling and each costs ~1,000
# instructions; CLIENTS=1 makes them fixed (2 per transaction) and the count repeatable.
#
# Usage: bash bench/proxy_callgrind.sh
# Environment:
#   MODES="simple extended prepared"  CLIENTS=8  PER=250 (transactions per client)
#   TOP=25            functions listed per mode (callgrind_annotate --inclusive=yes)
#   PGWARDEN=path     binary to measure (default target/release/pgwarden; SKIP_BUILD=1 skips the build)
#   KEEP=dir          keep the callgrind dumps there
#   VGOPTS=...        more valgrind options (e.g. --dump-instr=yes for per-instruction counts)
#   LABEL=text        what the binary is (default: this checkout's commit, which PGWARDEN= may not be)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

MODES="${MODES:-simple extended prepared}"
CLIENTS="${CLIENTS:-8}"
PER="${PER:-250}"
TOP="${TOP:-25}"
PGBIN="${PGBIN:-/usr/lib/postgresql/15/bin}"
for b in initdb pg_ctl pgbench psql; do
    [[ -x "$PGBIN/$b" ]] || { echo "missing $PGBIN/$b" >&2; exit 1; }
done
command -v valgrind >/dev/null || { echo "missing valgrind: apt-get install valgrind" >&2; exit 1; }
if [[ "${SKIP_BUILD:-}" != 1 ]]; then
    cargo build --release --quiet --bin pgwarden
fi
PGWARDEN="${PGWARDEN:-$PWD/target/release/pgwarden}"

if [[ $(id -u) == 0 ]]; then as_pg() { runuser -u postgres -- "$@"; }; else as_pg() { "$@"; }; fi
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

WORK="$(mktemp -d /tmp/pgwarden-callgrind.XXXXXX)"
chmod 755 "$WORK"
VG_PID=""
cleanup() {
    if [[ -n "$VG_PID" ]]; then
        # valgrind writes its final dump while it exits: wait for it, or the removal of $WORK
        # below races that write (and fails with "Directory not empty").
        kill "$VG_PID" 2>/dev/null || true
        for _ in $(seq 150); do kill -0 "$VG_PID" 2>/dev/null || break; sleep 0.2; done
        kill -9 "$VG_PID" 2>/dev/null || true
        wait "$VG_PID" 2>/dev/null || true
    fi
    as_pg "$PGBIN/pg_ctl" -D "$WORK/data" -m immediate stop >/dev/null 2>&1 || true
    [[ -n "${KEEP:-}" ]] && { mkdir -p "$KEEP"; cp "$WORK"/cg.* "$KEEP"/ 2>/dev/null || true; }
    rm -rf "$WORK" || true
}
trap cleanup EXIT
[[ $(id -u) == 0 ]] && chown postgres: "$WORK"

PGPORT_=$(free_port); WARDEN_PORT=$(free_port)
as_pg "$PGBIN/initdb" -D "$WORK/data" -U postgres -A trust -E UTF8 --locale=C --no-sync >/dev/null
cat >> "$WORK/data/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $PGPORT_
unix_socket_directories = '$WORK'
max_connections = 100
fsync = off
synchronous_commit = off
autovacuum = off
EOF
as_pg "$PGBIN/pg_ctl" -D "$WORK/data" -l "$WORK/pg.log" -w start >/dev/null
"$PGBIN/pgbench" -h 127.0.0.1 -p "$PGPORT_" -U postgres -i -q -s 1 postgres >/dev/null 2>&1

mkdir -p "$WORK/warden"
(cd "$WORK/warden" && exec valgrind --tool=callgrind ${VGOPTS:-} --callgrind-out-file="$WORK/cg.%p" \
    "$PGWARDEN" serve --listen "127.0.0.1:$WARDEN_PORT" --upstream "127.0.0.1:$PGPORT_") \
    >"$WORK/warden.log" 2>&1 &
VG_PID=$!
for _ in $(seq 600); do
    "$PGBIN/psql" -X -h 127.0.0.1 -p "$WARDEN_PORT" -U postgres -d postgres -Atc 'SELECT 1' >/dev/null 2>&1 && break
    sleep 0.2
done

pgb() { "$PGBIN/pgbench" -h 127.0.0.1 -p "$WARDEN_PORT" -U postgres -n -S -M "$1" -c "$CLIENTS" -j 2 -t "$2" postgres >/dev/null 2>&1; }
echo "pgwarden ${LABEL:-$(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet 2>/dev/null || echo '+dirty')} ($PGWARDEN) under callgrind; pgbench -S -c $CLIENTS -t $PER"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg) (does not change instruction counts)"
part=0
for mode in $MODES; do
    pgb "$mode" 50
    callgrind_control -z "$VG_PID" >/dev/null
    pgb "$mode" "$PER"
    callgrind_control -d "$mode" "$VG_PID" >/dev/null
    # Each dump is its own numbered part file, cg.<pid>.<part>: take this one by name (not "the
    # newest file", which a copy can be), and wait until callgrind has written its totals line.
    part=$((part + 1))
    dump="$WORK/cg.$VG_PID.$part"
    for _ in $(seq 300); do
        [[ -s "$dump" ]] && grep -q '^totals:' "$dump" && break
        sleep 0.2
    done
    grep -q '^totals:' "$dump" || { echo "no callgrind dump $dump for $mode" >&2; exit 1; }
    cp "$dump" "$WORK/cg.$mode"
    tx=$((CLIENTS * PER))
    # The total from the dump's own summary line; no pipeline that ends early (with pipefail a
    # reader that exits before callgrind_annotate finishes writing killed the script by SIGPIPE).
    total=$(awk '/^summary:/ { print $2; exit }' "$WORK/cg.$mode")
    # Event-loop turns (calls of epoll_wait) per transaction: with several clients they vary
    # from run to run with scheduling (how many ready sockets one turn finds), and each turn
    # costs ~1,000 instructions, so compare counts at equal turns or with CLIENTS=1.
    turns=$(python3 - "$WORK/cg.$mode" <<'PY'
import re, sys
names, calls, want = {}, 0, False
for line in open(sys.argv[1], errors="replace"):
    m = re.match(r"(c?fn)=\((\d+)\)(?:\s+(.*))?", line)
    if m:
        if m.group(3):
            names[m.group(2)] = m.group(3).strip()
        want = m.group(1) == "cfn" and names.get(m.group(2)) == "epoll_wait"
    elif line.startswith("calls=") and want:
        calls += int(line[6:].split()[0])
        want = False
print(calls)
PY
)
    echo
    echo "== $mode: $total instructions / $tx transactions = $((total / tx)) per transaction (connection set-up of $CLIENTS clients included); $(awk -v c="$turns" -v t="$tx" 'BEGIN { printf "%.2f", c / t }') epoll_wait per transaction"
    if [[ "$TOP" -gt 0 ]]; then
        callgrind_annotate --inclusive=yes "$WORK/cg.$mode" >"$WORK/annotate.$mode" 2>/dev/null || true
        awk '/file:function/ { on = 1; next } on && /^ *[0-9][0-9,]* / { print; if (++n >= top) exit }' top="$TOP" "$WORK/annotate.$mode"
    fi
done
