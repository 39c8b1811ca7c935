#!/usr/bin/env bash
# DDL latency benchmark: what pgwarden adds to one DDL statement that needs its in-session
# catalog lookup (analysis + one injected round trip + decision), and what the audit log's
# durable record adds on top. Prints median and p95 latency per transaction, side by side:
# direct, pgwarden (audit off), pgwarden (audit on, fsync = always).
#
# Then a history-shaped case: what a real Alembic history sends (psycopg2: one simple Query per
# statement, the whole upgrade in one transaction): BEGIN, alembic_version, then REVISIONS
# revisions of CREATE TABLE (identity, defaults, FK to the previous revision's table), CREATE
# INDEX, ADD COLUMN with a default, ADD CONSTRAINT FOREIGN KEY, ALTER COLUMN TYPE, CREATE TYPE
# and the version row's UPDATE; ROLLBACK at the end so the run repeats. The added time per DDL
# statement is (median history through pgwarden - median direct) / DDL statements, and
# `pgbench -r` shows which statements it goes to.
#
# Usage: bash bench/ddl_latency.sh
# Environment:
#   COUNT=3000       statements per run (one per transaction, one client)
#   HISTORIES=40     runs of the history-shaped transaction per measurement
#   REVISIONS=8      revisions in it (6 DDL statements each, plus 1 for alembic_version)
#   SKIP_BUILD=1     do not build; PGWARDEN=path measures that binary
#   HISTORY_ONLY=1   only the history-shaped case
#   BASE=path        also measure this pgwarden binary (e.g. a build of an earlier commit) in
#                    the history-shaped case, interleaved in the same rounds
#   ROUNDS=2         rounds of the history-shaped case
# With strace installed, the history-shaped case also counts per history, exactly (noise cannot
# move them): fdatasync calls of the audit log and sendto calls of pgwarden (its writes to the
# client and to the server: round trips), strace -f attached for HISTORIES histories.
#   CPU_ROUNDS=2     rounds of the CPU / context-switch count
#   SERVER_LOG=path  keep the server's log of the server-time part (path.<label>)
#   PGBIN=/usr/lib/postgresql/15/bin
# Everything runs on loopback in a temp dir removed at exit; pgwarden is built with
# `cargo build --release`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

COUNT="${COUNT:-3000}"
HISTORIES="${HISTORIES:-40}"
REVISIONS="${REVISIONS:-8}"
PGBIN="${PGBIN:-/usr/lib/postgresql/15/bin}"
for b in initdb pg_ctl pgbench psql; do
    [[ -x "$PGBIN/$b" ]] || { echo "missing $PGBIN/$b: apt-get install postgresql-15 postgresql-client-15" >&2; exit 1; }
done

if [[ "${SKIP_BUILD:-}" != 1 ]]; then
    echo "== cargo build --release"
    cargo build --release --quiet --bin pgwarden
fi
PGWARDEN="${PGWARDEN:-$PWD/target/release/pgwarden}"

if [[ $(id -u) == 0 ]]; then as_pg() { runuser -u postgres -- "$@"; }; else as_pg() { "$@"; }; fi
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

WORK="$(mktemp -d /tmp/pgwarden-ddlbench.XXXXXX)"
chmod 755 "$WORK"
PIDS=()
WARDEN_PIDS=()
cleanup() {
    # start_warden runs in a command substitution: its pids come back through this file.
    [[ -f "$WORK/warden.pids" ]] && WARDEN_PIDS=($(cat "$WORK/warden.pids"))
    for p in "${PIDS[@]:-}" "${WARDEN_PIDS[@]:-}"; do [[ -n "$p" ]] && kill "$p" 2>/dev/null || true; done
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

start_warden() { # $1 = audit section, $2 = binary (default $PGWARDEN)
    local port; port=$(free_port)
    cat > "$WORK/warden-$port.toml" <<EOF
$1
EOF
    "${2:-$PGWARDEN}" serve --config "$WORK/warden-$port.toml" --listen "127.0.0.1:$port" \
        --upstream "127.0.0.1:$PGPORT_" >"$WORK/warden-$port.log" 2>&1 &
    echo $! >> "$WORK/warden.pids"
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
BASE="${BASE:-}"
if [[ -n "$BASE" ]]; then
    BASE_NOAUDIT=$(start_warden "[audit]
enabled = false" "$BASE")
    BASE_AUDIT=$(start_warden "[audit]
path = \"$WORK/audit-base.jsonl\"
fsync = \"always\"" "$BASE")
fi
ROUNDS="${ROUNDS:-2}"

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
[[ "${HISTORY_ONLY:-}" == 1 ]] && echo "(skipped: HISTORY_ONLY=1)"
for round in 1 2; do
    [[ "${HISTORY_ONLY:-}" == 1 ]] && break
    measure "$PGPORT_"        "$WORK/ddl.sql"    "DDL direct (round $round)"
    measure "$WARDEN_NOAUDIT" "$WORK/ddl.sql"    "DDL pgwarden, audit off"
    measure "$WARDEN_AUDIT"   "$WORK/ddl.sql"    "DDL pgwarden, audit fsync=always"
    measure "$PGPORT_"        "$WORK/select.sql" "SELECT 1 direct"
    measure "$WARDEN_AUDIT"   "$WORK/select.sql" "SELECT 1 pgwarden (audit on)"
done

# The history (bench/history_sql.sh): statement shapes as Alembic renders them, all in one
# transaction.
REVISIONS="$REVISIONS" bash bench/history_sql.sh > "$WORK/history.sql"
HISTORY_DDL=$((REVISIONS * 6 + 1))

# Median whole-history latency (µs) over HISTORIES runs, and pgbench -r's per-statement averages.
measure_history() { # $1 = port, $2 = label
    rm -f "$WORK"/pgbench_log.*
    (cd "$WORK" && "$PGBIN/pgbench" -n -h 127.0.0.1 -p "$1" -U postgres -M simple -c 1 \
        -t "$HISTORIES" -f "$WORK/history.sql" -l -r postgres >"$WORK/history.$1.out" 2>&1) \
        || { cat "$WORK/history.$1.out" >&2; exit 1; }
    cat "$WORK"/pgbench_log.* | awk '{print $3}' | sort -n | awk -v label="$2" '
        { v[NR] = $1 }
        END { printf "%-34s %9.0f\n", label, v[int(NR*0.5)+1] }'
}

echo
echo "== history-shaped: $HISTORIES x one transaction of $HISTORY_DDL DDL statements ($REVISIONS revisions), 1 client, -M simple"
echo "pgwarden: $PGWARDEN${BASE:+; base: $BASE}; load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
printf "%-34s %9s\n" "" "median µs per history"
for ((round = 1; round <= ROUNDS; round++)); do
    d=$(measure_history "$PGPORT_" "history direct (round $round)"); echo "$d"
    a=$(measure_history "$WARDEN_NOAUDIT" "history pgwarden, audit off"); echo "$a"
    f=$(measure_history "$WARDEN_AUDIT" "history pgwarden, audit fsync=always"); echo "$f"
    dv=$(awk '{print $NF}' <<<"$d"); av=$(awk '{print $NF}' <<<"$a"); fv=$(awk '{print $NF}' <<<"$f")
    awk -v d="$dv" -v a="$av" -v f="$fv" -v n="$HISTORY_DDL" 'BEGIN {
        printf "added per DDL statement: audit off %.0f µs, audit fsync=always %.0f µs\n", (a - d) / n, (f - d) / n }'
    if [[ -n "$BASE" ]]; then
        ba=$(measure_history "$BASE_NOAUDIT" "history base, audit off"); echo "$ba"
        bf=$(measure_history "$BASE_AUDIT" "history base, audit fsync=always"); echo "$bf"
        bav=$(awk '{print $NF}' <<<"$ba"); bfv=$(awk '{print $NF}' <<<"$bf")
        awk -v d="$dv" -v a="$bav" -v f="$bfv" -v n="$HISTORY_DDL" 'BEGIN {
            printf "base, added per DDL statement: audit off %.0f µs, audit fsync=always %.0f µs\n", (a - d) / n, (f - d) / n }'
    fi
done
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"

# Exact counts per history: fdatasync (audit log) and sendto (pgwarden's writes: to the client
# and to the server), strace attached to the pgwarden listening on the port.
count_history() { # port label
    local pid out s
    pid=$(ss -ltnpH "sport = :$1" | grep -o 'pid=[0-9]*' | head -1 | cut -d= -f2)
    [[ -n "$pid" ]] || { echo "$2: no pid"; return; }
    out="$WORK/strace-$1"
    strace -f -c -e trace=fdatasync,fsync,sendto,write,recvfrom -o "$out" -p "$pid" 2>"$out.err" &
    s=$!
    for _ in $(seq 100); do grep -q attached "$out.err" 2>/dev/null && break; sleep 0.05; done
    sleep 0.5
    (cd "$WORK" && "$PGBIN/pgbench" -n -h 127.0.0.1 -p "$1" -U postgres -M simple -c 1 \
        -t "$HISTORIES" -f "$WORK/history.sql" postgres >/dev/null 2>&1)
    kill -INT "$s"; wait "$s" 2>/dev/null || true
    awk -v n="$HISTORIES" -v label="$2" '
        $NF == "fdatasync" || $NF == "fsync" { f += $4 } $NF == "sendto" { t += $4 }
        $NF == "write" { w += $4 } $NF == "recvfrom" { r += $4 }
        END { printf "%-34s fdatasync %.1f, sendto %.1f, recvfrom %.1f, write %.1f per history\n", label, f / n, t / n, r / n, w / n }' "$out"
}
if command -v strace >/dev/null && command -v ss >/dev/null; then
    echo
    echo "exact counts per history (strace -f -c over $HISTORIES histories; $HISTORY_DDL DDL statements each)"
    count_history "$WARDEN_AUDIT" "pgwarden, audit fsync=always"
    count_history "$WARDEN_NOAUDIT" "pgwarden, audit off"
    if [[ -n "$BASE" ]]; then
        count_history "$BASE_AUDIT" "base, audit fsync=always"
        count_history "$BASE_NOAUDIT" "base, audit off"
    fi
fi
# pgwarden's own CPU (utime + stime, all threads, clock ticks of 10 ms) and context switches
# (voluntary + involuntary, summed over /proc/PID/task/*/status) per DDL statement over
# HISTORIES histories: figures the machine's load moves less than wall time.
proc_cpu() { # pid -> "ticks switches"
    local t=0 c=0 f
    for f in /proc/"$1"/task/*; do
        t=$((t + $(awk '{ sub(/.*\) /, ""); print $12 + $13 }' "$f/stat")))
        c=$((c + $(awk '/ctxt_switches/ { n += $2 } END { print n }' "$f/status")))
    done
    echo "$t $c"
}
cpu_history() { # port label
    local pid before after
    pid=$(ss -ltnpH "sport = :$1" | grep -o 'pid=[0-9]*' | head -1 | cut -d= -f2)
    [[ -n "$pid" ]] || { echo "$2: no pid"; return; }
    before=$(proc_cpu "$pid")
    (cd "$WORK" && "$PGBIN/pgbench" -n -h 127.0.0.1 -p "$1" -U postgres -M simple -c 1 \
        -t "$HISTORIES" -f "$WORK/history.sql" postgres >/dev/null 2>&1)
    after=$(proc_cpu "$pid")
    awk -v b="$before" -v a="$after" -v n=$((HISTORIES * HISTORY_DDL)) -v label="$2" -v hz="$(getconf CLK_TCK)" 'BEGIN {
        split(b, x, " "); split(a, y, " ")
        printf "%-34s CPU %6.0f µs, context switches %5.2f per DDL statement (%d ticks)\n", label, (y[1] - x[1]) * 1e6 / hz / n, (y[2] - x[2]) / n, y[1] - x[1] }'
}
if command -v ss >/dev/null; then
    echo
    echo "pgwarden's CPU (all threads) and context switches per DDL statement ($HISTORIES histories, ${CPU_ROUNDS:-2} rounds)"
    for ((round = 1; round <= ${CPU_ROUNDS:-2}; round++)); do
        cpu_history "$WARDEN_AUDIT" "pgwarden, audit fsync=always"
        cpu_history "$WARDEN_NOAUDIT" "pgwarden, audit off"
        if [[ -n "$BASE" ]]; then
            cpu_history "$BASE_AUDIT" "base, audit fsync=always"
            cpu_history "$BASE_NOAUDIT" "base, audit off"
        fi
    done
fi
# Server time of pgwarden's injected statements (the catalog lookup, its savepoint), per DDL
# statement, from the server's own log: what the lookup costs the server, by protocol phase
# (parse / bind / execute), whatever the machine's load does to the round trips.
server_time() { # port label
    "$PGBIN/psql" -h 127.0.0.1 -p "$PGPORT_" -U postgres -X -q \
        -c "ALTER SYSTEM SET log_min_duration_statement = 0" -c "SELECT pg_reload_conf()" >/dev/null
    sleep 0.2
    : > "$WORK/pg.log"
    (cd "$WORK" && "$PGBIN/pgbench" -n -h 127.0.0.1 -p "$1" -U postgres -M simple -c 1 \
        -t "$HISTORIES" -f "$WORK/history.sql" postgres >/dev/null 2>&1)
    "$PGBIN/psql" -h 127.0.0.1 -p "$PGPORT_" -U postgres -X -q \
        -c "ALTER SYSTEM RESET log_min_duration_statement" -c "SELECT pg_reload_conf()" >/dev/null
    [[ -n "${SERVER_LOG:-}" ]] && cp "$WORK/pg.log" "$SERVER_LOG.$2"
    grep "duration:" "$WORK/pg.log" | awk -v n=$((HISTORIES * HISTORY_DDL)) -v label="$2" '
        { d = $0; sub(/.*duration: /, "", d); sub(/ ms.*/, "", d)
          if ($0 !~ /pgwarden_lookup/) next
          phase = ($0 ~ /  parse /) ? "parse" : ($0 ~ /  bind /) ? "bind" : "execute"
          t[phase] += d; all += d }
        END { printf "%-34s %7.0f  (parse %.0f, bind %.0f, execute %.0f)\n", label, all * 1000 / n, t["parse"] * 1000 / n, t["bind"] * 1000 / n, t["execute"] * 1000 / n }'
}
echo
echo "server time of pgwarden's injected statements, µs per DDL statement ($HISTORIES histories, log_min_duration_statement = 0)"
server_time "$WARDEN_NOAUDIT" "pgwarden"
[[ -n "$BASE" ]] && server_time "$BASE_NOAUDIT" "base"

echo
echo "per-statement average latency (ms, pgbench -r) of the last round, first revision's statements:"
paste <(sed -n '/statement latencies/,$p' "$WORK/history.$PGPORT_.out" | awk 'NR > 1 { print $1 }') \
      <(sed -n '/statement latencies/,$p' "$WORK/history.$WARDEN_NOAUDIT.out" | awk 'NR > 1 { print $1 }') \
      <(sed -n '/statement latencies/,$p' "$WORK/history.$WARDEN_AUDIT.out" | awk 'NR > 1 { print $1 }') \
      <(sed -n '/statement latencies/,$p' "$WORK/history.$PGPORT_.out" | awk 'NR > 1 { $1 = $2 = ""; print substr($0, 3, 70) }') |
    awk -F'\t' 'NR > 11 { next } BEGIN { printf "%8s %8s %8s  %s\n", "direct", "no-audit", "audit", "statement" } { printf "%8s %8s %8s  %s\n", $1, $2, $3, $4 }'

echo
echo "audit records written: $(wc -l < "$WORK/audit.jsonl")${BASE:+ (base: $(wc -l < "$WORK/audit-base.jsonl"))}"
