#!/usr/bin/env bash
# Throughput of `pgwarden check --format json` against `squawk --reporter json` on the same
# ~10,000-statement file built from tests/fixtures/migration-statements.sql (issue 3 benchmark).
#
# Usage: bench/check_vs_squawk.sh            (from anywhere; run it from the repo it lives in)
# Env:   RUNS=7             timed runs per tool (median reported)
#        TARGET_STATEMENTS=10000
#        SQUAWK_VERSION=2.68.0   same squawk release as the parser pgwarden embeds
#        SKIP_BUILD=1       use an existing target/release/pgwarden
#        PGWARDEN=path      time another pgwarden binary (no build)
# Needs: cargo, python3 (venv + pip, PyPI reachable for squawk-cli). Uses hyperfine if installed.
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

# Median wall time in seconds of RUNS runs of a command (exit codes 0/1 accepted).
median_seconds() {
    if command -v hyperfine >/dev/null; then
        local cmd
        printf -v cmd '%q ' "$@"
        hyperfine --style none --ignore-failure --warmup 1 --runs "$RUNS" \
            --export-json "$OUT/hyperfine.json" "$cmd >/dev/null 2>&1" >/dev/null
        python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["results"][0]["median"])' "$OUT/hyperfine.json"
        return
    fi
    "$@" >/dev/null 2>&1 || true  # warm-up
    local times=() i t0 t1
    for ((i = 0; i < RUNS; i++)); do
        t0=$(date +%s%N)
        "$@" >/dev/null 2>&1 || true
        t1=$(date +%s%N)
        times+=($(( t1 - t0 )))
    done
    printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {m = (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2; printf "%.6f\n", m / 1e9}'
}

# --- 3. timing --------------------------------------------------------------------------------
timer="date +%s%N loop"
command -v hyperfine >/dev/null && timer="hyperfine"
echo "timing: $RUNS runs each, median, via $timer"

squawk_s=""; pgw_s=""
if validate squawk "$SQUAWK" --reporter json "$SQL"; then
    squawk_s=$(median_seconds "$SQUAWK" --reporter json "$SQL")
fi
if [[ -x "$PGWARDEN" ]] && validate pgwarden "$PGWARDEN" check --format json "$SQL"; then
    pgw_s=$(median_seconds "$PGWARDEN" check --format json "$SQL")
elif [[ ! -x "$PGWARDEN" ]]; then
    echo "pgwarden: unavailable (no $PGWARDEN)"
fi

python3 - "$statements" "$squawk_s" "$pgw_s" <<'PY'
import sys
n = int(sys.argv[1])
sq = float(sys.argv[2]) if sys.argv[2] else None
pg = float(sys.argv[3]) if sys.argv[3] else None
print(f"\n{'tool':<10} {'median s':>10} {'statements/s':>14}")
for name, s in (("pgwarden", pg), ("squawk", sq)):
    if s is None:
        print(f"{name:<10} {'n/a':>10} {'n/a':>14}")
    else:
        print(f"{name:<10} {s:>10.4f} {n / s:>14,.0f}")
if pg and sq:
    print(f"\nratio pgwarden/squawk throughput: {sq / pg:.2f}x (target >= 2x)")
else:
    print("\nratio: n/a (a tool was not measured)")
PY
[[ -n "$squawk_s" ]]
