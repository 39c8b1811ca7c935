//! Criterion benchmarks of the analysis path: full analysis of one DDL statement (prefilter →
//! parse → facts → every rule → policy), and the parse-to-facts step alone.
//!
//! Target (issue 3): median full analysis of one DDL statement ≤ 20 µs. A statement that gets
//! a rewrite (CREATE INDEX → CONCURRENTLY) is parsed twice: the rewrite is re-parsed and
//! re-checked before it may be used.
//! The prefilter-on-DML benchmark lives with the lexer (branch `lexer`).
use std::hint::black_box;

/// The allocator the pgwarden binary uses (src/main.rs), so the numbers are the binary's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use pgwarden::policy::Policy;
use pgwarden::rules::{evaluate, SizeThresholds};
use pgwarden::sql::{analyze, reparse, AnalysisContext};

const CREATE_INDEX: &str = "CREATE INDEX ix_orders_customer ON orders (customer_id)";
const ADD_COLUMN: &str = "ALTER TABLE orders ADD COLUMN note text";
const ALTER_MULTI: &str = "ALTER TABLE orders ADD COLUMN note text, \
     ALTER COLUMN status SET NOT NULL, \
     ADD CONSTRAINT fk_customer FOREIGN KEY (customer_id) REFERENCES customers (id)";
const CREATE_TABLE: &str = "CREATE TABLE account (id UUID DEFAULT gen_random_uuid() NOT NULL, \
     name VARCHAR(120) NOT NULL, email VARCHAR(255) NOT NULL, \
     created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL, \
     CONSTRAINT pk_account PRIMARY KEY (id), CONSTRAINT uq_account_email UNIQUE (email))";

fn ddl(c: &mut Criterion) {
    let ctx = AnalysisContext::default();
    let policy = Policy::default();
    let thresholds = SizeThresholds::default();
    for (name, sql) in [
        ("add_column", ADD_COLUMN),
        ("create_index", CREATE_INDEX),
        ("alter_table_3_actions", ALTER_MULTI),
        ("create_table", CREATE_TABLE),
    ] {
        c.bench_function(&format!("full_analysis/{name}"), |b| {
            b.iter(|| policy.check_text(black_box(sql), &ctx, true))
        });
        // Inside a transaction block (Alembic's default): nothing can be rewritten, so no
        // rewrite is proven.
        c.bench_function(&format!("full_analysis_in_transaction/{name}"), |b| {
            b.iter(|| policy.check_text(black_box(sql), &ctx, false))
        });
        // As `pgwarden check`: every fix a rule offers is proven, to be printed.
        c.bench_function(&format!("full_analysis_check_mode/{name}"), |b| {
            b.iter(|| policy.report_text(black_box(sql), &ctx))
        });
        c.bench_function(&format!("analyze_only/{name}"), |b| {
            b.iter(|| analyze(black_box(sql), &ctx))
        });
        let analysis = analyze(sql, &ctx);
        c.bench_function(&format!("rules_only/{name}"), |b| {
            b.iter(|| evaluate(black_box(sql), &analysis, &ctx, &thresholds))
        });
    }
    // What proving the CONCURRENTLY rewrite costs: one parse of the edited statement alone
    // (squawk parse + validation + facts); the rule's re-check on the facts is negligible.
    let rewritten = "CREATE INDEX CONCURRENTLY ix_orders_customer ON orders (customer_id)";
    assert!(reparse(rewritten).is_some());
    c.bench_function("rewrite_proof_reparse/create_index", |b| {
        b.iter(|| reparse(black_box(rewritten)))
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(50);
    targets = ddl
}
criterion_main!(benches);
