//! `pgwarden audit report` as a user runs it: the real binary on sample files.
use std::process::Command;

const SAMPLE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/audit/deploy.jsonl"
);

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_pgwarden"))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run pgwarden: {e}"));
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn text_report_shows_revisions_outcomes_and_fates() {
    let (code, out, err) = run(&["audit", "report", SAMPLE]);
    assert_eq!(code, 0, "{err}");
    for needle in [
        "session 18c0ffee-77-1  user=deploy db=shop",
        "statements seen 14, warned 0, rejected 1, rewritten 0",
        "revision alembic 0001: committed",
        "revision alembic 0002: committed",
        "CREATE TABLE users ( id SERIAL NOT NULL, name TEXT, PRIMARY KEY (id) )",
        "-> CREATE TABLE  4.2 ms  committed (commit)",
        "ALTER ROLE app PASSWORD '[REDACTED]'",
        "no migration revision recorded, one transaction: rolled_back",
        "[require-concurrent-index-creation] CREATE INDEX ix_orders_user ON orders (user_id)",
        "-> ERROR XP001: require-concurrent-index-creation",
        "rolled_back (rollback)",
        "totals: 4 statements: 3 committed, 1 rolled back, 0 undecided; 1 errors",
    ] {
        assert!(out.contains(needle), "missing {needle:?} in:\n{out}");
    }
    // Statement order within the session is kept.
    let a = out.find("#3 ").unwrap_or(usize::MAX);
    let b = out.find("#10 ").unwrap_or(0);
    assert!(a < b, "{out}");
}

#[test]
fn json_report_is_machine_readable() {
    let (code, out, err) = run(&["audit", "report", "--format", "json", SAMPLE]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(v["totals"]["statements"], 4);
    assert_eq!(v["totals"]["rolled_back"], 1);
    let groups = &v["sessions"][0]["groups"];
    assert_eq!(groups[0]["migration"]["revision"], "0001");
    assert_eq!(groups[0]["fate"], "committed");
    assert_eq!(groups[2]["statements"][0]["outcome"]["sqlstate"], "XP001");
    assert_eq!(groups[2]["statements"][0]["fate"], "rolled_back");
}

#[test]
fn truncated_last_line_is_reported_and_tolerated() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let p = dir.path().join("a.jsonl");
    let mut data = std::fs::read_to_string(SAMPLE).unwrap_or_else(|e| panic!("{e}"));
    let lines = data.lines().count();
    data.push_str("{\"type\":\"statement\",\"time\":\"2026-11-26T02:00:05");
    std::fs::write(&p, data).unwrap_or_else(|e| panic!("{e}"));
    let (code, out, err) = run(&["audit", "report", &p.display().to_string()]);
    assert_eq!(code, 0, "{err}");
    let note = format!("note: line {} is an incomplete record", lines + 1);
    assert!(out.contains(&note), "{out}");
    assert!(out.contains("totals: 4 statements"), "{out}");
}

#[test]
fn invalid_line_in_the_middle_is_an_error_naming_the_line() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let p = dir.path().join("a.jsonl");
    let data = std::fs::read_to_string(SAMPLE).unwrap_or_else(|e| panic!("{e}"));
    let mut lines: Vec<&str> = data.lines().collect();
    lines[4] = "{\"type\":\"outcome\",\"session_id\":";
    std::fs::write(&p, lines.join("\n") + "\n").unwrap_or_else(|e| panic!("{e}"));
    let path = p.display().to_string();
    let (code, out, err) = run(&["audit", "report", &path]);
    assert_eq!(code, 2, "{out}");
    assert!(
        err.contains(&format!("{path}:5: not a valid audit record")),
        "{err}"
    );
}

#[test]
fn usage_errors() {
    let (code, _, err) = run(&["audit", "report", "/nonexistent/audit.jsonl"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("cannot read /nonexistent/audit.jsonl"),
        "{err}"
    );
    let (code, _, err) = run(&["audit", "report", "--format", "yaml", SAMPLE]);
    assert_eq!(code, 2);
    assert!(err.contains("unknown --format \"yaml\""), "{err}");
}
