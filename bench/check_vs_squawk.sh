#!/usr/bin/env bash
# Throughput of `pgwarden check --format json` against `squawk --reporter json` on the same
# ~10,000-statement file built from tests/fixtures/migration-statements.sql (issue 3 benchmark).
#
# Usage: bench/check_vs_squawk.sh            (from anywhere; run it from the repo it lives in)
# Env:   RUNS=7             interleaved pairs of timed runs (medians and per-pair ranges reported)
#        TARGET_STATEMENTS=10000
#        SQUAWK_VERSION=2.68.0   same squawk release as the parser pgwarden embeds
#        SKIP_BUILD=1       use an existing target/release/pgwarden
#        PGWARDEN=path      time another pgwarden binary (no build)
# Needs: cargo, python3 (venv + pip, PyPI reachable for squawk-cli).
# Exit:  0 when at least squawk was measured; a pgwarden that fails (not built yet, errors) is
#        reported as unavailable instead of timed.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RUNS="${RUNS:-7}"
TARGET_STATEMENTS="${TARGET_STATEMENTS:-10000}"
SQUAWK_VERSION="${SQUAWK_VERSION:-2.68.0}"
CORPUS="$ROOT/tests/fixtures/migration-statements.sql"
OUT="$ROOT/target/bench-check"
VENV="$ROOT/target/bench-venv"
SQL="$OUT/corpus-x.sql"
# Statements in one copy of the corpus: asserted against the lexer and squawk's parser by
# tests/lexer_corpus.rs. The case count below guards against a changed fixture.
CASES_PER_COPY=282
STATEMENTS_PER_COPY=308
# The 2 `COPY ... FROM STDIN` cases (p11, h43) are left out of the input: the corpus holds them as
# the wire carries them (data in CopyData messages), but in a file psql (and `pgwarden check`,
# which reads files as psql scripts) takes every line after them up to `\.` as COPY data, and
# squawk stops at the first syntax error of a file given a `\.` line. Each is one statement.
COPY_STDIN_STATEMENTS=2
STATEMENTS_PER_COPY=$(( STATEMENTS_PER_COPY - COPY_STDIN_STATEMENTS ))

mkdir -p "$OUT"

cases=$(grep -c '^-- case: ' "$CORPUS")
if [[ "$cases" != "$CASES_PER_COPY" ]]; then
    echo "corpus has $cases cases, expected $CASES_PER_COPY: update STATEMENTS_PER_COPY from tests/lexer_corpus.rs" >&2
    exit 2
fi

# --- 1. the input file ------------------------------------------------------------------------
copies=$(( (TARGET_STATEMENTS + STATEMENTS_PER_COPY - 1) / STATEMENTS_PER_COPY ))
statements=$(( copies * STATEMENTS_PER_COPY ))
python3 - "$CORPUS" "$SQL" "$copies" <<'PY'
import re, sys
corpus, out, copies = sys.argv[1], sys.argv[2], int(sys.argv[3])
cases, cur = [], None
for line in open(corpus, encoding="utf-8"):
    if line.startswith("-- case: "):
        cur = [line]
        cases.append(cur)
    elif cur is not None:
        cur.append(line)
cases = [c for c in cases if not re.search(r"\bFROM\s+stdin\b", "".join(c[1:]), re.I)]
assert len(cases) == 280, len(cases)
with open(out, "w", encoding="utf-8") as f:
    for k in range(copies):
        for case in cases:
            marker, body = case[0], "".join(case[1:]).rstrip()
            # Each case is one query string; some end without `;`. A `;` on its own line cannot
            # be swallowed by a trailing `--` comment.
            if not body.endswith(";"):
                body += "\n;"
            f.write(f"-- copy {k} {marker[3:]}{body}\n")
PY
echo "input: $SQL ($copies copies x $STATEMENTS_PER_COPY = $statements statements, $(wc -c <"$SQL") bytes)"

# --- 2. the tools -----------------------------------------------------------------------------
if [[ ! -x "$VENV/bin/squawk" ]] || ! "$VENV/bin/squawk" --version 2>/dev/null | grep -q "$SQUAWK_VERSION"; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "squawk-cli==$SQUAWK_VERSION"
fi
SQUAWK="$VENV/bin/squawk"
echo "squawk: $("$SQUAWK" --version)"

PGWARDEN="${PGWARDEN:-$ROOT/target/release/pgwarden}"
if [[ "${SKIP_BUILD:-}" != 1 && "$PGWARDEN" == "$ROOT/target/release/pgwarden" ]]; then
    (cd "$ROOT" && cargo build --release --quiet --bin pgwarden) || echo "pgwarden: release build failed" >&2
fi

# Runs a tool once; exit 0 (clean) and 1 (findings) are both valid runs, and the output must be
# a JSON document. Prints a reason and fails otherwise.
validate() {
    local name="$1"; shift
    local rc=0
    "$@" >"$OUT/$name.json" 2>"$OUT/$name.err" || rc=$?
    if [[ $rc -gt 1 ]]; then
        echo "$name: unavailable (exit $rc: $(head -c 200 "$OUT/$name.err"))"
        return 1
    fi
    if ! python3 -c 'import json,sys; json.load(open(sys.argv[1]))' "$OUT/$name.json" 2>/dev/null; then
        echo "$name: unavailable (output is not JSON: $(head -c 200 "$OUT/$name.json"))"
        return 1
    fi
    # The finding count is printed so a reader can tell a fast tool from one that checked nothing.
    local findings
    findings=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(len(d) if isinstance(d, list) else "?")' "$OUT/$name.json")
    echo "$name: ok (exit $rc, $findings findings)"
}

# --- 3. timing --------------------------------------------------------------------------------
# The two tools run interleaved (squawk, pgwarden, pgwarden, squawk, ...: the order alternates
# so a drift of the machine's load hits both alike), one warm-up each. Each run is one child
# process, timed with a monotonic clock and measured with wait4's rusage (user and system CPU,
# minor page faults, context switches): on a shared machine the per-pair wall ratios are
# reported as a range, next to the load-independent figures.
echo "timing: $RUNS interleaved pairs, wall via time.monotonic, rusage via wait4; load: $(cut -d' ' -f1-3 /proc/loadavg)"

pgw_ok=""
validate squawk "$SQUAWK" --reporter json "$SQL" || { echo "squawk failed"; exit 1; }
if [[ -x "$PGWARDEN" ]] && validate pgwarden "$PGWARDEN" check --format json "$SQL"; then
    pgw_ok=1
elif [[ ! -x "$PGWARDEN" ]]; then
    echo "pgwarden: unavailable (no $PGWARDEN)"
fi

python3 - "$statements" "$RUNS" "$pgw_ok" "$SQUAWK" "$PGWARDEN" "$SQL" <<'PY'
import os, statistics, sys, time
n, runs, pgw_ok = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "1"
squawk, pgwarden, sql = sys.argv[4], sys.argv[5], sys.argv[6]
cmds = {"squawk": [squawk, "--reporter", "json", sql]}
if pgw_ok:
    cmds["pgwarden"] = [pgwarden, "check", "--format", "json", sql]

def once(argv):
    devnull = os.open(os.devnull, os.O_WRONLY)
    t0 = time.monotonic()
    pid = os.fork()
    if pid == 0:
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        try:
            os.execv(argv[0], argv)
        finally:
            os._exit(127)
    _, status, ru = os.wait4(pid, 0)
    wall = time.monotonic() - t0
    os.close(devnull)
    code = os.waitstatus_to_exitcode(status)
    if code not in (0, 1):
        sys.exit(f"{argv[0]} exited {code}")
    return {"wall": wall, "user": ru.ru_utime, "sys": ru.ru_stime, "minflt": ru.ru_minflt,
            "nvcsw": ru.ru_nvcsw, "nivcsw": ru.ru_nivcsw}

names = list(cmds)
for name in names:  # warm-up (page cache, venv)
    once(cmds[name])
res = {name: [] for name in names}
for i in range(runs):
    for name in (names if i % 2 == 0 else names[::-1]):
        res[name].append(once(cmds[name]))

med = lambda xs: statistics.median(xs)
print(f"\n{'tool':<10} {'median s':>9} {'min s':>7} {'max s':>7} {'stmt/s':>9} {'user s':>7} {'sys s':>6} {'minflt':>7} {'vcsw':>5} {'ivcsw':>6}")
for name in names:
    r = res[name]
    w = [x["wall"] for x in r]
    print(f"{name:<10} {med(w):>9.4f} {min(w):>7.4f} {max(w):>7.4f} {n / med(w):>9,.0f} "
          f"{med([x['user'] for x in r]):>7.3f} {med([x['sys'] for x in r]):>6.3f} "
          f"{med([x['minflt'] for x in r]):>7.0f} {med([x['nvcsw'] for x in r]):>5.0f} {med([x['nivcsw'] for x in r]):>6.0f}")
if pgw_ok:
    ratios = sorted(s["wall"] / p["wall"] for s, p in zip(res["squawk"], res["pgwarden"]))
    cpu = med([x["user"] + x["sys"] for x in res["squawk"]]) / med([x["user"] + x["sys"] for x in res["pgwarden"]])
    print(f"\nratio pgwarden/squawk throughput: {med([x['wall'] for x in res['squawk']]) / med([x['wall'] for x in res['pgwarden']]):.2f}x "
          f"(medians); per interleaved pair {ratios[0]:.2f}-{ratios[-1]:.2f}x, median pair {med(ratios):.2f}x; "
          f"CPU time (user+sys) ratio {cpu:.2f}x (target >= 3x)")
else:
    print("\nratio: n/a (pgwarden was not measured)")
PY
