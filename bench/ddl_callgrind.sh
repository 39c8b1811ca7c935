#!/usr/bin/env bash
# Instructions pgwarden executes per DDL statement of the history-shaped transaction
# (bench/history_sql.sh, the one bench/ddl_latency.sh times): a count the machine's load does not
# move, where the added wall time per statement swings by a millisecond between rounds.
# pgwarden (release build, default policy: the history's findings are warnings) runs under
# `valgrind --tool=callgrind`; after WARMUP histories the counters are zeroed
# (`callgrind_control -z`), N histories run through one connection (pgbench -M simple -t N),
# the counters are dumped, and the dump's total / (N x DDL statements) is printed, with the
# functions of most self cost and of most inclusive cost per DDL statement. Everything
# pgwarden does in those histories is counted (BEGIN, the version row's INSERT/UPDATE and the
# ROLLBACK too: 11 of the history's 60 statements), on every thread.
#
# Usage: bash bench/ddl_callgrind.sh
# Environment:
#   N=10          histories measured      WARMUP=3   histories before the counters are zeroed
#   REVISIONS=8   revisions per history (6 DDL statements each, plus 1 for alembic_version)
#   AUDIT=off     off, or on (`fsync = "always"`, the default)
#   PGWARDEN=path binary to measure (default target/release/pgwarden; SKIP_BUILD=1 skips the build)
#   BASE=path     also measure this binary (e.g. a build of main), after the first, same settings
#   TOP=25        functions listed (self and inclusive), 0 for none
#   KEEP=dir      keep the callgrind dumps there
#   PGBIN=/usr/lib/postgresql/15/bin
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

N="${N:-10}"
WARMUP="${WARMUP:-3}"
REVISIONS="${REVISIONS:-8}"
AUDIT="${AUDIT:-off}"
TOP="${TOP:-25}"
PGBIN="${PGBIN:-/usr/lib/postgresql/15/bin}"
for b in initdb pg_ctl pgbench pg_isready; do
    [[ -x "$PGBIN/$b" ]] || { echo "missing $PGBIN/$b" >&2; exit 1; }
done
command -v valgrind >/dev/null || { echo "missing valgrind: apt-get install valgrind" >&2; exit 1; }
if [[ "${SKIP_BUILD:-}" != 1 ]]; then
    cargo build --release --quiet --bin pgwarden
fi
PGWARDEN="${PGWARDEN:-$PWD/target/release/pgwarden}"
DDL=$((REVISIONS * 6 + 1))

if [[ $(id -u) == 0 ]]; then as_pg() { runuser -u postgres -- "$@"; }; else as_pg() { "$@"; }; fi
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

WORK="$(mktemp -d /tmp/pgwarden-ddlcg.XXXXXX)"
chmod 755 "$WORK"
VG_PID=""
stop_valgrind() {
    if [[ -n "$VG_PID" ]]; then
        # valgrind writes its final dump while it exits: wait for it before removing $WORK.
        kill "$VG_PID" 2>/dev/null || true
        for _ in $(seq 150); do kill -0 "$VG_PID" 2>/dev/null || break; sleep 0.2; done
        kill -9 "$VG_PID" 2>/dev/null || true
        wait "$VG_PID" 2>/dev/null || true
        VG_PID=""
    fi
}
cleanup() {
    stop_valgrind
    as_pg "$PGBIN/pg_ctl" -D "$WORK/data" -m immediate stop >/dev/null 2>&1 || true
    if [[ -n "${KEEP:-}" ]]; then
        mkdir -p "$KEEP"
        for d in "$WORK"/*/; do
            for f in "$d"cg.*; do [[ -e "$f" ]] && cp "$f" "$KEEP/$(basename "$d").$(basename "$f")"; done
        done
    fi
    rm -rf "$WORK" || true
}
trap cleanup EXIT
[[ $(id -u) == 0 ]] && chown postgres: "$WORK"

PGPORT_=$(free_port)
as_pg "$PGBIN/initdb" -D "$WORK/data" -U postgres -A trust -E UTF8 --locale=C --no-sync >/dev/null
cat >> "$WORK/data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $PGPORT_
unix_socket_directories = '$WORK'
fsync = off
synchronous_commit = off
autovacuum = off
CONF
as_pg "$PGBIN/pg_ctl" -D "$WORK/data" -l "$WORK/pg.log" -w start >/dev/null
REVISIONS="$REVISIONS" bash bench/history_sql.sh > "$WORK/history.sql"

echo "load average: $(cut -d' ' -f1-3 /proc/loadavg) (does not change instruction counts)"
echo "history: $DDL DDL statements of 60 client statements; $N histories measured after $WARMUP; audit $AUDIT"

measure() { # $1 = binary, $2 = label
    local bin="$1" label="$2" port dump total
    port=$(free_port)
    mkdir -p "$WORK/$label"
    if [[ "$AUDIT" == off ]]; then
        printf '[audit]\nenabled = false\n' > "$WORK/$label/pgwarden.toml"
    else
        printf '[audit]\npath = "%s/audit.jsonl"\nfsync = "always"\n' \
            "$WORK/$label" > "$WORK/$label/pgwarden.toml"
    fi
    (cd "$WORK/$label" && exec valgrind --tool=callgrind --callgrind-out-file="$WORK/$label/cg.%p" \
        "$bin" serve --config "$WORK/$label/pgwarden.toml" --listen "127.0.0.1:$port" \
        --upstream "127.0.0.1:$PGPORT_") > "$WORK/$label/warden.log" 2>&1 &
    VG_PID=$!
    for _ in $(seq 600); do
        "$PGBIN/pg_isready" -q -h 127.0.0.1 -p "$port" && break
        sleep 0.2
    done
    pgb() { "$PGBIN/pgbench" -n -h 127.0.0.1 -p "$port" -U postgres -M simple -c 1 -t "$1" \
        -f "$WORK/history.sql" postgres > "$WORK/$label/pgbench.log" 2>&1; }
    pgb "$WARMUP"
    callgrind_control -z "$VG_PID" >/dev/null 2>&1
    pgb "$N"
    callgrind_control -d "$VG_PID" >/dev/null 2>&1
    # The first dump is part 1; wait until callgrind has written its totals line.
    dump="$WORK/$label/cg.$VG_PID.1"
    for _ in $(seq 300); do
        [[ -s "$dump" ]] && grep -q '^totals:' "$dump" && break
        sleep 0.2
    done
    grep -q '^totals:' "$dump" || { echo "no callgrind dump $dump for $label" >&2; exit 1; }
    stop_valgrind
    total=$(awk '/^summary:/ { print $2; exit }' "$dump")
    echo
    echo "== $label ($bin): $total instructions / $((N * DDL)) DDL statements = $((total / (N * DDL))) per DDL statement"
    [[ "$TOP" -gt 0 ]] || return 0
    echo "-- self, per DDL statement"
    python3 - "$dump" "$TOP" "$((N * DDL))" <<'PY'
import collections, re, sys
path, top, div = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
names, cost, fn, skip = {}, collections.Counter(), None, False
def name(s):
    m = re.match(r"\((\d+)\)(?: (.*))?", s)
    if not m:
        return s
    if m.group(2) is not None:
        names[m.group(1)] = m.group(2)
    return names.get(m.group(1), s)
for line in open(path, errors="replace"):
    line = line.rstrip("\n")
    if line.startswith("fn="):
        fn = name(line[3:])
    elif line.startswith("cfn="):
        name(line[4:])
    elif line.startswith("calls="):
        skip = True
    elif line and (line[0].isdigit() or line[0] in "+-*"):
        if skip:
            skip = False
            continue
        parts = line.split()
        if len(parts) >= 2 and fn:
            cost[fn] += int(parts[1])
for f, c in cost.most_common(top):
    print(f"{c / div:9.0f}  {f[:140]}")
PY
    echo "-- inclusive, per DDL statement"
    callgrind_annotate --inclusive=yes "$dump" > "$WORK/$label/annotate" 2>/dev/null || true
    awk -v top="$TOP" -v div="$((N * DDL))" '
        /file:function/ { on = 1; next }
        on && /^ *[0-9][0-9,]* / { c = $1; gsub(",", "", c); sub(/^ *[0-9,]+ +\([ 0-9.%]+\) +/, "");
                                    printf "%9.0f  %s\n", c / div, substr($0, 1, 140); if (++n >= top) exit }' \
        "$WORK/$label/annotate"
}

measure "$PGWARDEN" "pgwarden"
if [[ -n "${BASE:-}" ]]; then
    measure "$BASE" "base"
fi
