//! The audit log through the real proxy: an Alembic run (upgrade, then a revision the server
//! fails), redaction, an unwritable log, and `kill -9` of pgwarden in the middle of DDL.
mod common;

use std::path::Path;
use std::time::Duration;

use common::alembic::{alembic, project};
use common::*;
use serde_json::Value;

/// A database with the small setup (the audit tests need no million rows).
fn database(tag: &str) -> String {
    let c = Cluster::shared();
    let db = c.fresh_db(tag);
    c.sql(
        &db,
        "CREATE TABLE accounts (id integer PRIMARY KEY, name varchar(50) NOT NULL, payload text,
             counter integer NOT NULL DEFAULT 0, owner_id integer, created_at timestamptz NOT NULL DEFAULT now());
         CREATE TABLE events (id bigint PRIMARY KEY, account_id integer NOT NULL, kind varchar(50) NOT NULL,
             payload text, counter integer NOT NULL DEFAULT 0, owner_id integer, created_at timestamptz NOT NULL DEFAULT now());
         INSERT INTO accounts (id, name) SELECT g, 'a' || g FROM generate_series(1, 300) g;
         ANALYZE;",
    );
    db
}

fn proxy_with_audit(path: &Path, extra: &str) -> ProxyProcess {
    ProxyProcess::start(
        &Cluster::shared().addr(),
        &format!("[audit]\npath = \"{}\"\n{extra}", path.display()),
    )
}

#[test]
fn alembic_run_is_audited_with_revisions_outcomes_and_fates() {
    audited_alembic_run("psycopg2");
}

/// psycopg 3 sends parameterless DDL as simple Queries but runs Alembic's bookkeeping through
/// the extended protocol; asyncpg prepares every statement (named Parse) and runs it with a
/// later Bind: the record is written at that Bind.
#[test]
fn alembic_run_is_audited_with_psycopg3_and_asyncpg() {
    audited_alembic_run("psycopg");
    audited_alembic_run("asyncpg");
}

fn audited_alembic_run(driver: &str) {
    let c = Cluster::shared();
    let db = database(&format!("audit_alembic_{driver}"));
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("audit.jsonl");
    let px = proxy_with_audit(&log, "");
    let conn = c.conn(&db).with_port(px.port());
    alembic(project(None, None).path(), &conn, driver).assert_success();
    let failing = alembic(project(Some("u_failing"), None).path(), &conn, driver);
    failing.assert_failure();

    let recs = audit_records(&log);
    let of = |t: &'static str| recs.iter().filter(move |r| r["type"] == t);
    // Every DDL the upgrade sent appears once: same text, one statement record each.
    let texts: Vec<&str> = of("statement").filter_map(|r| r["text"].as_str()).collect();
    for needle in [
        "CREATE TABLE alembic_version",
        "CREATE TYPE project_status",
        "CREATE TABLE projects",
        "CREATE INDEX ix_projects_name",
        "ALTER TABLE events ADD COLUMN note",
        "CREATE INDEX CONCURRENTLY ix_events_account_id",
        "ALTER TABLE events VALIDATE CONSTRAINT fk_events_account",
        "ALTER TYPE project_status ADD VALUE",
        "ALTER TABLE events ALTER COLUMN kind TYPE VARCHAR(100)",
        "CREATE TABLE created_then_rolled_back",
        "ALTER TABLE no_such_table",
    ] {
        let n = texts.iter().filter(|t| t.contains(needle)).count();
        assert_eq!(
            n, 1,
            "{driver}: {needle}: {n} statement records\n{texts:#?}"
        );
    }
    let seq_of = |needle: &str| -> (Value, Value) {
        let r = of("statement")
            .find(|r| r["text"].as_str().is_some_and(|t| t.contains(needle)))
            .expect("statement record");
        (r["session_id"].clone(), r["seq"].clone())
    };
    let outcome_of = |needle: &str| -> Value {
        let (sid, seq) = seq_of(needle);
        of("outcome")
            .find(|r| r["session_id"] == sid && r["seq"] == seq)
            .unwrap_or_else(|| panic!("no outcome for {needle}"))["outcome"]
            .clone()
    };
    let fate_of = |needle: &str| -> Value {
        let (sid, seq) = seq_of(needle);
        of("fate")
            .find(|r| {
                r["session_id"] == sid && r["seqs"].as_array().is_some_and(|s| s.contains(&seq))
            })
            .unwrap_or_else(|| panic!("no fate for {needle}"))
            .clone()
    };
    assert_eq!(outcome_of("CREATE TABLE projects")["tag"], "CREATE TABLE");
    let f = fate_of("CREATE TABLE projects");
    assert_eq!(f["fate"], "committed", "{f}");
    let revisions: Vec<&str> = f["migrations"]
        .as_array()
        .expect("migrations")
        .iter()
        .filter_map(|m| m["revision"].as_str())
        .collect();
    assert!(revisions.contains(&"s01"), "{f}");
    // The failing revision: its SQLSTATE, and its whole transaction rolled back (the table it
    // created earlier in that transaction never existed for anyone).
    let o = outcome_of("ALTER TABLE no_such_table");
    assert_eq!(o["result"], "error", "{o}");
    assert_eq!(o["sqlstate"], "42P01", "{o}");
    assert_eq!(fate_of("ALTER TABLE no_such_table")["fate"], "rolled_back");
    assert_eq!(
        outcome_of("CREATE TABLE created_then_rolled_back")["tag"],
        "CREATE TABLE"
    );
    assert_eq!(
        fate_of("CREATE TABLE created_then_rolled_back")["fate"],
        "rolled_back"
    );
    // The report reads it.
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_pgwarden"));
    cmd.args(["audit", "report"]).arg(&log);
    let report = run_cmd(cmd, None, Duration::from_secs(60));
    report.assert_success();
    assert!(report.stdout.contains("rolled_back"), "{}", report.stdout);
    assert!(report.stdout.contains("s01"), "{}", report.stdout);
}

#[test]
fn passwords_are_redacted() {
    let c = Cluster::shared();
    let db = c.fresh_db("audit_redact");
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("audit.jsonl");
    let px = proxy_with_audit(&log, "");
    let conn = c.conn(&db).with_port(px.port());
    psql(
        &conn,
        &[
            "-X",
            "-c",
            "CREATE ROLE audit_redact_role LOGIN PASSWORD 'hunter2-secret'",
        ],
    )
    .assert_success();
    psql(&conn, &["-X", "-c", "DROP ROLE audit_redact_role"]).assert_success();
    let text = std::fs::read_to_string(&log).expect("log");
    assert!(text.contains("CREATE ROLE audit_redact_role"), "{text}");
    assert!(
        !text.contains("hunter2"),
        "password reached the audit log:\n{text}"
    );
}

/// DDL must not run unaudited: with the log unwritable (/dev/full: every write fails with
/// ENOSPC) DDL is refused with a clear error, and plain queries keep working.
#[test]
fn unwritable_audit_log_refuses_ddl_but_not_queries() {
    let c = Cluster::shared();
    let db = c.fresh_db("audit_full");
    let px = proxy_with_audit(Path::new("/dev/full"), "");
    let conn = c.conn(&db).with_port(px.port());
    let ddl = psql(&conn, &["-X", "-c", "CREATE TABLE must_not_exist (id int)"]);
    ddl.assert_failure();
    assert!(
        ddl.stderr.contains("audit log unavailable"),
        "{}",
        ddl.stderr
    );
    assert_eq!(
        c.sql(
            &db,
            "SELECT count(*) FROM pg_class WHERE relname = 'must_not_exist'"
        ),
        "0"
    );
    let q = psql(&conn, &["-X", "-A", "-t", "-c", "SELECT 40 + 2"]);
    q.assert_success();
    assert_eq!(q.stdout.trim(), "42");
}

/// `kill -9` of pgwarden while DDL runs: every line is a complete JSON object, and every
/// statement whose answer reached the client has its statement and outcome records.
#[test]
fn kill_dash_nine_mid_run_leaves_a_valid_log() {
    let c = Cluster::shared();
    let db = c.fresh_db("audit_kill");
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("audit.jsonl");
    let mut px = proxy_with_audit(&log, "");
    let conn = c.conn(&db).with_port(px.port());
    let script: String = (0..2000)
        .map(|i| format!("CREATE TABLE kill_{i} (id int);\n"))
        .collect();
    let mut cmd = std::process::Command::new(pg_bin("psql"));
    cmd.args(["-X", "-v", "ON_ERROR_STOP=1"])
        .envs(conn.env())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    let mut child = cmd.spawn().expect("psql");
    let mut stdin = child.stdin.take().expect("stdin");
    let writer = std::thread::spawn(move || {
        use std::io::Write;
        let _ = stdin.write_all(script.as_bytes());
    });
    // Let some DDL through, then kill pgwarden without warning.
    assert!(
        wait_until(Duration::from_secs(60), || {
            std::fs::read_to_string(&log).is_ok_and(|t| t.matches("\"outcome\"").count() >= 50)
        }),
        "no DDL went through"
    );
    let _ = std::process::Command::new("kill")
        .args(["-9", &px.pid().to_string()])
        .status();
    let out = child.wait_with_output().expect("psql output");
    let _ = writer.join();
    let _ = px.wait_exit(Duration::from_secs(10));
    let acknowledged = String::from_utf8_lossy(&out.stdout)
        .matches("CREATE TABLE")
        .count();
    // Answers in flight when the socket was reset may never reach the client, so it can
    // have seen fewer than the log holds, never more.
    assert!(acknowledged >= 1, "client saw no result before the kill");
    let recs = audit_records(&log);
    let outcomes = recs
        .iter()
        .filter(|r| r["type"] == "outcome" && r["outcome"]["tag"] == "CREATE TABLE")
        .count();
    assert!(
        outcomes >= acknowledged,
        "client saw {acknowledged} CREATE TABLE answers, the log has {outcomes} outcomes"
    );
}
