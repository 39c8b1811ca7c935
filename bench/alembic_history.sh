#!/usr/bin/env bash
# A real Alembic history, run the way a deploy runs it: `alembic upgrade head` on an empty
# database, one connection, the whole upgrade in one transaction (Alembic's default), psycopg2,
# through nothing (direct) and through pgwarden (audit log on with fsync = "always", the
# default, and off). The revisions are written with Alembic's operations, so the statements are
# what Alembic and SQLAlchemy render: per revision a table with an enum column (CREATE TYPE +
# CREATE TABLE with identity, defaults, unique, FK to the previous revision's table), an index,
# a column with a server default, a foreign key and a column type change.
#
# What it measures: the time of `context.run_migrations()` inside env.py (Python's start-up
# and imports excluded, the connection's set-up and every per-connection cost pgwarden has —
# its first lookups parse and plan their statements — included), per run on a fresh database;
# ROUNDS runs per target, interleaved (the order rotated per round); the added time per DDL
# statement is (median through pgwarden - median direct) / DDL statements.
#
# Usage: bash bench/alembic_history.sh
# Environment:
#   REVISIONS=30     revisions (6 DDL statements each, plus alembic_version's CREATE TABLE)
#   ROUNDS=15        runs per target
#   SKIP_BUILD=1     do not build; PGWARDEN=path measures that binary
#   BASE=path        also measure this pgwarden binary (audit on), interleaved
#   VERBOSE=1        also print every run's time
#   SERVER_LOG=path  after the timed runs, one more upgrade direct, one through pgwarden
#                    (audit on) and one through BASE with log_min_duration_statement = 0: the
#                    server time of each kind of statement per DDL statement is printed, the
#                    logs kept (path.<label>)
#   PGBIN=/usr/lib/postgresql/15/bin
# The client libraries come from the test suite's venv (target/test-venv, created if missing).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

REVISIONS="${REVISIONS:-30}"
ROUNDS="${ROUNDS:-15}"
PGBIN="${PGBIN:-/usr/lib/postgresql/15/bin}"
for b in initdb pg_ctl psql pg_isready; do
    [[ -x "$PGBIN/$b" ]] || { echo "missing $PGBIN/$b: apt-get install postgresql-15 postgresql-client-15" >&2; exit 1; }
done
if [[ "${SKIP_BUILD:-}" != 1 ]]; then
    echo "== cargo build --release"
    cargo build --release --quiet --bin pgwarden
fi
PGWARDEN="${PGWARDEN:-$PWD/target/release/pgwarden}"
VENV="$PWD/target/test-venv"
bash tests/python/setup-venv.sh "$VENV"
PY="$VENV/bin/python"

if [[ $(id -u) == 0 ]]; then as_pg() { runuser -u postgres -- "$@"; }; else as_pg() { "$@"; }; fi
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

WORK="$(mktemp -d /tmp/pgwarden-alembicbench.XXXXXX)"
chmod 755 "$WORK"
WARDEN_PIDS=()
cleanup() {
    for p in "${WARDEN_PIDS[@]:-}"; do [[ -n "$p" ]] && kill "$p" 2>/dev/null || true; done
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

start_warden() { # $1 = audit section, $2 = binary; sets WARDEN_PORT
    WARDEN_PORT=$(free_port)
    printf '%s\n' "$1" > "$WORK/warden-$WARDEN_PORT.toml"
    "$2" serve --config "$WORK/warden-$WARDEN_PORT.toml" --listen "127.0.0.1:$WARDEN_PORT" \
        --upstream "127.0.0.1:$PGPORT_" >"$WORK/warden-$WARDEN_PORT.log" 2>&1 &
    WARDEN_PIDS+=($!)
    for _ in $(seq 100); do
        "$PGBIN/pg_isready" -q -h 127.0.0.1 -p "$WARDEN_PORT" && return
        sleep 0.1
    done
    echo "pgwarden did not start: $(cat "$WORK/warden-$WARDEN_PORT.log")" >&2
    exit 1
}
ADMIN_PORT=$(free_port)
start_warden "[audit]
path = \"$WORK/audit.jsonl\"
fsync = \"always\"
[admin]
listen = \"127.0.0.1:$ADMIN_PORT\"" "$PGWARDEN"
P_AUDIT=$WARDEN_PORT
PID_AUDIT=${WARDEN_PIDS[-1]}
start_warden "[audit]
enabled = false" "$PGWARDEN"
P_NOAUDIT=$WARDEN_PORT
PID_NOAUDIT=${WARDEN_PIDS[-1]}
BASE="${BASE:-}"
if [[ -n "$BASE" ]]; then
    start_warden "[audit]
path = \"$WORK/audit-base.jsonl\"
fsync = \"always\"" "$BASE"
    P_BASE=$WARDEN_PORT
    PID_BASE=${WARDEN_PIDS[-1]}
fi

# The Alembic project.
P="$WORK/project"
mkdir -p "$P/versions"
cat > "$P/alembic.ini" <<'EOF'
[alembic]
script_location = %(here)s
EOF
cat > "$P/env.py" <<'EOF'
import os
import time

from alembic import context
from sqlalchemy import create_engine, pool

engine = create_engine(os.environ["BENCH_URL"], poolclass=pool.NullPool)
with engine.connect() as connection:
    context.configure(connection=connection)
    started = time.perf_counter()
    with context.begin_transaction():
        context.run_migrations()
    elapsed = time.perf_counter() - started
with open(os.environ["BENCH_OUT"], "w") as out:
    out.write(f"{elapsed * 1e6:.0f}\n")
EOF
for ((r = 1; r <= REVISIONS; r++)); do
    prev=$((r - 1))
    if (( r == 1 )); then down=None; parent_fk=""; else down="'r$prev'"; parent_fk="sa.ForeignKey('item_r$prev.id', ondelete='CASCADE'), "; fi
    cat > "$P/versions/r$r.py" <<EOF
import sqlalchemy as sa
from alembic import op

revision = 'r$r'
down_revision = $down


def upgrade():
    op.create_table(
        'item_r$r',
        sa.Column('id', sa.Integer, sa.Identity(start=1, increment=1), primary_key=True),
        sa.Column('parent_id', sa.Integer, ${parent_fk}nullable=True),
        sa.Column('name', sa.String(120), nullable=False, unique=True),
        sa.Column('status', sa.Enum('new', 'active', 'closed', name='status_r$r'),
                  server_default='new', nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.func.now(),
                  nullable=False),
    )
    op.create_index('ix_item_r${r}_created_at', 'item_r$r', ['created_at'])
    op.add_column('item_r$r', sa.Column('is_admin', sa.Boolean, server_default=sa.false(),
                                        nullable=False))
    op.create_foreign_key('fk_item_r${r}_self', 'item_r$r', 'item_r$r', ['parent_id'], ['id'])
    op.alter_column('item_r$r', 'name', type_=sa.String(255))
EOF
done
DDL=$((REVISIONS * 6 + 1))

N=0
run() { # $1 = port; prints µs of run_migrations on a fresh database
    N=$((N + 1))
    local db="h$N"
    "$PGBIN/psql" -h 127.0.0.1 -p "$PGPORT_" -U postgres -X -q -c "CREATE DATABASE $db" >/dev/null
    (cd "$P" && BENCH_URL="postgresql+psycopg2://postgres@127.0.0.1:$1/$db" BENCH_OUT="$WORK/out" \
        "$PY" -m alembic -c alembic.ini upgrade head >"$WORK/alembic.log" 2>&1) \
        || { echo "alembic upgrade failed on port $1:" >&2; cat "$WORK/alembic.log" >&2; exit 1; }
    cat "$WORK/out"
}
median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

echo "== alembic upgrade head: $REVISIONS revisions, $DDL DDL statements, one transaction, psycopg2, fresh database per run"
echo "pgwarden: $PGWARDEN${BASE:+; base: $BASE}; load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
: > "$WORK/direct"; : > "$WORK/audit"; : > "$WORK/noaudit"; : > "$WORK/base"
run "$PGPORT_" >/dev/null   # warm-up: Python's and the server's caches
# CPU of each pgwarden process (all threads, utime and stime from /proc) over the timed runs.
cpu_ticks() { awk '{ print $14, $15 }' "/proc/$1/stat"; }
CPU0_AUDIT=$(cpu_ticks "$PID_AUDIT"); CPU0_NOAUDIT=$(cpu_ticks "$PID_NOAUDIT")
[[ -n "$BASE" ]] && CPU0_BASE=$(cpu_ticks "$PID_BASE")
# Each round runs every target once, in an order rotated from round to round, so that no target
# always follows the same one (a run after another target's run meets that run's caches).
TARGETS=("$PGPORT_:direct" "$P_AUDIT:audit" "$P_NOAUDIT:noaudit")
[[ -n "$BASE" ]] && TARGETS+=("$P_BASE:base")
for ((i = 1; i <= ROUNDS; i++)); do
    for ((k = 0; k < ${#TARGETS[@]}; k++)); do
        t=${TARGETS[$(( (i + k) % ${#TARGETS[@]} ))]}
        run "${t%%:*}" >> "$WORK/${t#*:}"
    done
done
d=$(median < "$WORK/direct")
report() { # label file
    local m p; m=$(median < "$2")
    # Paired: each run against the direct run of its own round (a round's runs follow each
    # other within a second or two, so they share the machine's state); the median of those
    # differences moves less with the machine than the difference of the medians.
    p=$(paste -d' ' "$2" "$WORK/direct" | awk '{ print $1 - $2 }' | median)
    local f fd; f=$(sort -n "$2" | head -1); fd=$(sort -n "$WORK/direct" | head -1)
    printf "%-30s median %7s µs  added per DDL statement: %4s µs (paired: %4s, fastest runs: %4s)\n" \
        "$1" "$m" "$(( (m - d) / DDL ))" "$(( p / DDL ))" "$(( (f - fd) / DDL ))"
    [[ -n "${VERBOSE:-}" ]] && echo "    runs: $(tr '\n' ' ' < "$2")"
    return 0
}
printf "%-30s median %7s µs  (fastest %s, slowest %s)\n" "direct" "$d" "$(sort -n "$WORK/direct" | head -1)" "$(sort -n "$WORK/direct" | tail -1)"
report "pgwarden, audit fsync=always" "$WORK/audit"
report "pgwarden, audit off" "$WORK/noaudit"
[[ -n "$BASE" ]] && report "base, audit fsync=always" "$WORK/base"
cpu_report() { # label pid ticks-before
    local after; after=$(cpu_ticks "$2")
    awk -v b="$3" -v a="$after" -v n=$((ROUNDS * DDL)) -v hz="$(getconf CLK_TCK)" -v label="$1" 'BEGIN {
        split(b, x, " "); split(a, y, " ")
        u = (y[1] - x[1]) * 1e6 / hz / n; s = (y[2] - x[2]) * 1e6 / hz / n
        printf "%-30s pgwarden CPU per DDL statement %4.0f µs (user %.0f, system %.0f)\n", label, u + s, u, s }'
}
cpu_report "pgwarden, audit fsync=always" "$PID_AUDIT" "$CPU0_AUDIT"
cpu_report "pgwarden, audit off" "$PID_NOAUDIT" "$CPU0_NOAUDIT"
[[ -n "$BASE" ]] && cpu_report "base, audit fsync=always" "$PID_BASE" "$CPU0_BASE"
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "audit records written: $(wc -l < "$WORK/audit.jsonl")"
# The audit log's fsyncs (group commit: a transaction's records are fsynced before its COMMIT,
# not one by one), from the audit-on pgwarden's /metrics.
FSYNCS=$("$PY" -c "import urllib.request
for l in urllib.request.urlopen('http://127.0.0.1:$ADMIN_PORT/metrics').read().decode().splitlines():
    if l.startswith('pgwarden_audit_fsyncs_total '): print(int(float(l.split()[1])))")
echo "audit fsyncs per upgrade (audit on): $(awk -v f="$FSYNCS" -v n="$ROUNDS" 'BEGIN { printf "%.1f", f / n }')"

if [[ -n "${SERVER_LOG:-}" ]]; then
    # One more upgrade each way with every statement's server time logged.
    logged() { # $1 = port, $2 = label
        "$PGBIN/psql" -h 127.0.0.1 -p "$PGPORT_" -U postgres -X -q \
            -c "ALTER SYSTEM SET log_min_duration_statement = 0" -c "SELECT pg_reload_conf()" >/dev/null
        sleep 0.2
        local from; from=$(wc -l < "$WORK/pg.log")
        run "$1" >/dev/null
        "$PGBIN/psql" -h 127.0.0.1 -p "$PGPORT_" -U postgres -X -q \
            -c "ALTER SYSTEM RESET log_min_duration_statement" -c "SELECT pg_reload_conf()" >/dev/null
        tail -n +"$((from + 1))" "$WORK/pg.log" | grep "duration:" > "$SERVER_LOG.$2"
        awk -v n="$DDL" -v label="$2" '
            { d = $0; sub(/.*duration: /, "", d); sub(/ ms.*/, "", d)
              phase = ($0 ~ /  parse /) ? "parse" : ($0 ~ /  bind /) ? "bind" : "execute"
              if ($0 ~ /CREATE DATABASE|ALTER SYSTEM|pg_reload_conf/) next
              who = ($0 ~ /pgwarden_/) ? "pgwarden" : "client"
              if (who == "pgwarden") { match($0, /pgwarden_[a-z0-9_]+/); name = substr($0, RSTART, RLENGTH); sub(/_[0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f]$/, "", name) }
              else name = "client"
              t[who] += d; c[who]++; k[name " " phase] += d; m[name " " phase]++ }
            END {
              printf "%s: client statements %d, %.0f µs of server time per DDL statement; pgwarden statements %d, %.0f µs per DDL statement\n", label, c["client"], t["client"] * 1000 / n, c["pgwarden"], t["pgwarden"] * 1000 / n
              for (x in k) if (x !~ /^client/) printf "    %-40s %5d  %7.1f µs per DDL statement\n", x, m[x], k[x] * 1000 / n }' "$SERVER_LOG.$2" |
            awk 'NR == 1 { print; next } { print | "sort -k1,1 -s" }'

        local ph med
        for ph in bind execute; do
            med=$( (grep " $ph pgwarden_lookup_relation" "$SERVER_LOG.$2" || true) | sed 's/.*duration: \([0-9.]*\) ms.*/\1/' | median)
            [[ -n "$med" ]] && printf "    relation query, median %s: %s ms\n" "$ph" "$med"
        done
        return 0
    }
    echo
    echo "server time, one upgrade each, log_min_duration_statement = 0 (logs: $SERVER_LOG.direct, $SERVER_LOG.pgwarden):"
    logged "$PGPORT_" direct
    logged "$P_AUDIT" pgwarden
    if [[ -n "$BASE" ]]; then logged "$P_BASE" base; fi
fi
