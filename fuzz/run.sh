#!/usr/bin/env bash
# Builds and runs a libFuzzer target without cargo-fuzz and without nightly: coverage
# instrumentation through stable -C flags (what `cargo fuzz` passes, minus AddressSanitizer,
# which needs nightly and buys little for code with no `unsafe`).
#
# Usage: fuzz/run.sh [target=lexer|frames|startup|analysis|prefilter_encodings] [seconds=60]
# Corpus: fuzz/corpus/<target> (seeded from tests/fixtures on first run), crashes: fuzz/artifacts.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
TARGET="${1:-lexer}"
SECONDS_TO_RUN="${2:-60}"
TRIPLE="$(rustc -vV | sed -n 's/^host: //p')"

export RUSTFLAGS="--cfg fuzzing -Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares -Cdebug-assertions -Coverflow-checks"
cargo build --release --manifest-path "$HERE/Cargo.toml" --target "$TRIPLE" --bin "$TARGET"

CORPUS="$HERE/corpus/$TARGET"
mkdir -p "$CORPUS" "$HERE/artifacts/$TARGET"
if [[ -z "$(ls -A "$CORPUS")" ]]; then
    # Seed with each corpus case as its own input.
    awk -v dir="$CORPUS" '/^-- case: /{n++} {print > (dir "/seed-" n ".sql")}' \
        "$HERE/../tests/fixtures/migration-statements.sql"
fi
"$HERE/target/$TRIPLE/release/$TARGET" -max_total_time="$SECONDS_TO_RUN" \
    -artifact_prefix="$HERE/artifacts/$TARGET/" "$CORPUS"
