//! Self-test of the shared harness (direct connections only): if these fail, every proxy test would.
mod common;

use common::*;

#[test]
fn cluster_roles_authenticate_directly() {
    let c = Cluster::shared();
    let db = c.fresh_db("harness_auth");
    let base = c.conn(&db);
    for (user, pw) in [
        (TRUST_USER, None),
        (MD5_USER, Some(MD5_PASSWORD)),
        (SCRAM_USER, Some(SCRAM_PASSWORD)),
    ] {
        let out = psql(&base.with_user(user, pw), &["-Atc", "SELECT current_user"]);
        out.assert_success();
        assert_eq!(out.stdout.trim(), user);
    }
    // The password roles really use their method: a wrong password is refused.
    for user in [MD5_USER, SCRAM_USER] {
        let out = psql(&base.with_user(user, Some("wrong")), &["-Atc", "SELECT 1"]);
        out.assert_failure();
        assert!(
            out.stderr.contains("password authentication failed"),
            "{}",
            out.stderr
        );
    }
    let methods = c.sql(
        "postgres",
        "SELECT rolname || ':' || left(rolpassword, 3) FROM pg_authid \
         WHERE rolname IN ('md5_user', 'scram_user') ORDER BY 1",
    );
    assert_eq!(methods, "md5_user:md5\nscram_user:SCR");
}

#[test]
fn ssl_cluster_serves_tls_with_generated_certificate() {
    let c = Cluster::start(ClusterOptions {
        ssl: true,
        ..Default::default()
    });
    let conn = c.conn("postgres").with_sslmode("verify-full");
    let out = psql(
        &conn,
        &[
            "-Atc",
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
        ],
    );
    out.assert_success();
    assert_eq!(out.stdout.trim(), "t");
}

#[test]
fn python_venv_has_pinned_clients() {
    let out = run_python("clients.py", &["versions"]);
    out.assert_success();
    for name in ["psycopg2", "psycopg", "asyncpg", "alembic", "sqlalchemy"] {
        assert!(out.stdout.contains(name), "{}", out.stdout);
    }
}

#[test]
fn listen_line_parser_reads_text_and_json_logs() {
    let text = "2026-11-26T12:00:00Z  INFO pgwarden::proxy: listening on 127.0.0.1:40123";
    assert_eq!(parse_listen_line(text).map(|a| a.port()), Some(40123));
    let json = r#"{"level":"INFO","fields":{"message":"listening on 127.0.0.1:5555"}}"#;
    assert_eq!(parse_listen_line(json).map(|a| a.port()), Some(5555));
    let kv = "INFO listening on addr=127.0.0.1:7777";
    assert_eq!(parse_listen_line(kv).map(|a| a.port()), Some(7777));
    assert_eq!(parse_listen_line("connected to 127.0.0.1:5432"), None);
}
