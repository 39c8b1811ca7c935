//! Proves the prefilter's hot path does not touch the heap.
//!
//! Counting allocations needs a global allocator; implementing one takes `unsafe impl
//! GlobalAlloc`, which this project forbids, so the counting comes from the `stats_alloc` crate.
//! Its counters are process-wide: this binary holds a single test so no other test allocates
//! meanwhile, and each measurement is repeated so that a stray allocation of the test harness
//! cannot fail it (a lexer that allocates would allocate on every run).
use std::alloc::System;
use std::hint::black_box;

use pgwarden::sql::lexer::{split, LexOptions};
use pgwarden::sql::server_lex::{needs_attention, LexSettings};
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Heap operations (allocations + reallocations) while running `f`, the fewest of five runs.
fn heap_ops(mut f: impl FnMut()) -> usize {
    (0..5)
        .map(|_| {
            let region = Region::new(GLOBAL);
            f();
            let change = region.change();
            change.allocations + change.reallocations
        })
        .min()
        .unwrap_or(usize::MAX)
}

#[test]
fn splitting_and_classifying_does_not_allocate() {
    // The counter must see an allocation, or a zero below would prove nothing.
    assert!(heap_ops(|| drop(black_box(Vec::<u8>::with_capacity(64)))) >= 1);

    let texts = [
        "SELECT u.id, u.email FROM users AS u WHERE u.account_id = $1 AND u.status = 'active' ORDER BY u.created_at DESC LIMIT 50",
        "INSERT INTO orders (id, note, tags) VALUES (1, E'it\\'s; fine', ARRAY['a', 'b;c']) RETURNING id",
        "BEGIN; SET LOCAL lock_timeout = '1s'; ALTER TABLE t ADD COLUMN c int; COMMIT;",
        "/* a /* nested */ comment */ WITH x AS (SELECT $tag$ ; $tag$) SELECT * FROM x; -- tail",
        "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; END",
        "\\set ON_ERROR_STOP on\nSELECT 'unterminated",
    ];
    let opts = LexOptions::default();
    for text in texts {
        let ops = heap_ops(|| {
            for st in split(black_box(text), &opts) {
                black_box(st);
            }
        });
        assert_eq!(ops, 0, "allocated while splitting {text:?}");
        // The proxy's per-Query check: the settings the server will apply, then one pass.
        let ops = heap_ops(|| {
            let settings = LexSettings::known(black_box("UTF8"), true);
            black_box(needs_attention(
                black_box(text.as_bytes()),
                &settings,
                &opts,
            ));
        });
        assert_eq!(ops, 0, "allocated in needs_attention for {text:?}");
    }
}
