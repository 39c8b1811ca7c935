//! Full analysis time of every DDL statement of the migration corpus (282 real query strings),
//! one statement at a time as the proxy sees them: the distribution over statements (median,
//! p90, p99, max), not one hand-picked statement.
//!
//! `cargo bench --bench corpus` prints the table; `cargo test --benches` runs each statement
//! once as a smoke test.
use std::hint::black_box;
use std::time::Instant;

use pgwarden::policy::Policy;
use pgwarden::sql::lexer::StatementClass;
use pgwarden::sql::AnalysisContext;

/// The allocator the pgwarden binary uses (src/main.rs), so the numbers are the binary's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const CORPUS: &str = include_str!("../tests/fixtures/migration-statements.sql");

fn main() {
    let timing = std::env::args().any(|a| a == "--bench");
    let ctx = AnalysisContext::default();
    let policy = Policy::default();
    // Each DDL/utility statement of each case, on its own (the split the prefilter makes).
    let mut statements: Vec<&str> = Vec::new();
    for case in cases() {
        for raw in pgwarden::sql::lexer::split(case, &ctx.lex) {
            if raw.class == StatementClass::DdlOrUtility && raw.unanalysable.is_none() {
                statements.push(case[raw.span].trim());
            }
        }
    }
    assert!(
        statements.len() > 200,
        "{} DDL statements",
        statements.len()
    );
    if !timing {
        for sql in &statements {
            black_box(policy.check_text(sql, &ctx, true));
        }
        println!("corpus: {} DDL statements analysed once", statements.len());
        return;
    }
    let mut rows: Vec<(f64, f64, &str)> = statements
        .iter()
        .map(|sql| {
            (
                median_us(|| black_box(policy.check_text(black_box(sql), &ctx, true))),
                median_us(|| black_box(policy.report_text(black_box(sql), &ctx))),
                *sql,
            )
        })
        .collect();
    println!(
        "full analysis of each of the corpus's {} DDL statements (median of 21 batches each), µs:",
        rows.len()
    );
    println!(
        "{:<34} {:>8} {:>8} {:>8} {:>8}",
        "", "median", "p90", "p99", "max"
    );
    for (label, col) in [
        ("proxy decision (rewrite allowed)", 0usize),
        ("check (every fix proven)", 1),
    ] {
        rows.sort_by(|a, b| key(a, col).total_cmp(&key(b, col)));
        let q = |p: f64| key(&rows[((rows.len() - 1) as f64 * p).round() as usize], col);
        println!(
            "{label:<34} {:>8.2} {:>8.2} {:>8.2} {:>8.2}",
            q(0.5),
            q(0.9),
            q(0.99),
            q(1.0)
        );
    }
    rows.sort_by(|a, b| b.1.total_cmp(&a.1));
    println!("slowest in check mode:");
    for (d, c, sql) in rows.iter().take(5) {
        let one_line: String = sql.split_whitespace().collect::<Vec<_>>().join(" ");
        let shown: String = one_line.chars().take(90).collect();
        println!("  {d:>7.2} {c:>7.2}  {shown}");
    }
    println!(
        "statements over 20 µs: decision {}, check {}",
        rows.iter().filter(|r| r.0 > 20.0).count(),
        rows.iter().filter(|r| r.1 > 20.0).count()
    );
}

fn key(row: &(f64, f64, &str), col: usize) -> f64 {
    if col == 0 {
        row.0
    } else {
        row.1
    }
}

/// Median over 21 batches of the time per call, in µs; a batch runs ~200 µs.
fn median_us<T>(mut f: impl FnMut() -> T) -> f64 {
    let start = Instant::now();
    black_box(f());
    let once = start.elapsed().as_secs_f64().max(1e-7);
    let per_batch = ((200e-6 / once) as usize).clamp(1, 10_000);
    let mut samples: Vec<f64> = (0..21)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..per_batch {
                black_box(f());
            }
            t.elapsed().as_secs_f64() * 1e6 / per_batch as f64
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

/// The query strings of the corpus, one per `-- case:` marker.
fn cases() -> Vec<&'static str> {
    let mut out = Vec::new();
    let mut start: Option<usize> = None;
    let mut pos = 0;
    for line in CORPUS.split_inclusive('\n') {
        if line.starts_with("-- case: ") {
            if let Some(s) = start {
                out.push(&CORPUS[s..pos]);
            }
            start = Some(pos + line.len());
        }
        pos += line.len();
    }
    if let Some(s) = start {
        out.push(&CORPUS[s..]);
    }
    out
}
