//! Python drivers through pgwarden (psycopg2, psycopg 3 incl. pipeline mode, asyncpg), compared
//! with the same workload run directly. The workloads live in tests/python/clients.py.
mod common;

use common::*;

fn compare(workload: &str) {
    let c = Cluster::shared();
    let db = c.fresh_db(&format!("py_{}", workload.replace('-', "_")));
    let proxy = start_proxy(c);
    let direct = c.conn(&db);
    let via = direct.with_port(proxy.port());
    let a = run_python("clients.py", &[workload, &direct.url()]);
    a.assert_success();
    let b = run_python("clients.py", &[workload, &via.url()]);
    assert!(
        b.status.success(),
        "{workload} through pgwarden failed:\n{}\n{}\nproxy log:\n{}",
        b.stdout,
        b.stderr,
        proxy.logs()
    );
    println!("{workload} direct: {}", a.stdout);
    assert!(a.stdout.trim().len() > 20, "{}", a.stdout);
    assert_eq!(a.stdout, b.stdout, "{workload}: direct vs proxy differ");
}

#[test]
fn psycopg2_matches_direct() {
    compare("psycopg2");
}

#[test]
fn psycopg3_matches_direct() {
    compare("psycopg3");
}

#[test]
fn psycopg3_pipeline_mode_matches_direct() {
    compare("psycopg3-pipeline");
}

#[test]
fn asyncpg_named_statements_match_direct() {
    compare("asyncpg");
}
