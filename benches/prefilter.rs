//! Criterion benchmarks of the prefilter alone: split + classify one query string.
//!
//! Run: `cargo bench --bench prefilter`. Target (issue 3): a typical SELECT in ≤ 1 µs.
use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use pgwarden::sql::lexer::{split, LexOptions, StatementClass};

/// What an ORM sends for a page of rows.
const SELECT: &str = "SELECT u.id, u.email, u.name, u.created_at FROM users AS u \
    WHERE u.account_id = $1 AND u.deleted_at IS NULL AND u.status = 'active' \
    ORDER BY u.created_at DESC LIMIT 50";

/// An INSERT with inline literals of every quoting kind.
const INSERT: &str =
    "INSERT INTO orders (id, customer_id, status, amount, note, tags, created_at) \
    VALUES (4242, 17, 'open', 129.95, E'gift wrap; it\\'s fragile', ARRAY['a', 'b;c'], \
    '2024-05-01 10:00:00+00'), (4243, 18, 'paid', 5, NULL, '{}', now()) RETURNING id";

/// A 20-line CREATE TABLE as Alembic emits it.
const DDL: &str = "CREATE TABLE account (
    id UUID DEFAULT gen_random_uuid() NOT NULL,
    name VARCHAR(120) NOT NULL,
    email VARCHAR(255) NOT NULL,
    status accountstatus DEFAULT 'active' NOT NULL,
    settings JSONB DEFAULT '{}'::jsonb NOT NULL,
    tags VARCHAR[],
    balance NUMERIC(12, 2) DEFAULT '0' NOT NULL,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    updated_at TIMESTAMP WITHOUT TIME ZONE,
    -- soft delete; keep the row for audits
    deleted_at TIMESTAMP WITH TIME ZONE,
    region_id INTEGER,
    external_ref TEXT,
    notes TEXT DEFAULT $$n/a$$,
    version INTEGER DEFAULT 1 NOT NULL,
    CONSTRAINT pk_account PRIMARY KEY (id),
    CONSTRAINT uq_account_email UNIQUE (email),
    CONSTRAINT ck_balance CHECK (balance >= 0),
    CONSTRAINT fk_region FOREIGN KEY (region_id) REFERENCES region (id)
)";

fn prefilter(c: &mut Criterion) {
    let opts = LexOptions::default();
    for (name, text, class) in [
        ("prefilter/select", SELECT, StatementClass::Dml),
        ("prefilter/insert_literals", INSERT, StatementClass::Dml),
        ("prefilter/ddl_20_lines", DDL, StatementClass::DdlOrUtility),
    ] {
        // Fail loudly instead of timing a misclassification.
        let got: Vec<_> = split(text, &opts).map(|s| s.class).collect();
        assert_eq!(got, vec![class], "{name}");
        let mut group = c.benchmark_group(name);
        group.throughput(Throughput::Bytes(text.len() as u64));
        group.bench_function("split+classify", |b| {
            b.iter(|| {
                for st in split(black_box(text), &opts) {
                    black_box(st);
                }
            })
        });
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(50);
    targets = prefilter
}
criterion_main!(benches);
