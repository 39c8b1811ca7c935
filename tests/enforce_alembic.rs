//! Enforcement end to end: real Alembic projects (tests/alembic_project) through pgwarden with
//! psycopg2, psycopg 3 and the asyncpg dialect, against a database with a 1,000,000-row table
//! (`events`) and a 300-row one (`accounts`).
mod common;

use std::sync::OnceLock;
use std::time::Duration;

use common::alembic::{alembic, project, project_dir};
use common::*;

const DRIVERS: [&str; 3] = ["psycopg2", "psycopg", "asyncpg"];

/// The template database with tests/alembic_project/setup.sql loaded, made once per binary.
fn template() -> &'static str {
    static T: OnceLock<String> = OnceLock::new();
    T.get_or_init(|| {
        let c = Cluster::shared();
        let db = c.fresh_db("alembic_tmpl");
        let setup = std::fs::read_to_string(project_dir().join("setup.sql")).expect("setup.sql");
        c.sql(&db, &setup);
        db
    })
}

/// A fresh copy of the template database.
fn fresh(tag: &str) -> String {
    let c = Cluster::shared();
    let tmpl = template();
    let name = format!("{tag}_{}", std::process::id());
    let name = format!(
        "{}_{}",
        name,
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    c.sql(
        "postgres",
        &format!("CREATE DATABASE \"{name}\" TEMPLATE \"{tmpl}\""),
    );
    name
}

static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// Schema of `db` as pg_dump prints it, plus the Alembic revision.
fn schema(db: &str) -> String {
    let c = Cluster::shared();
    let mut cmd = std::process::Command::new(pg_bin("pg_dump"));
    cmd.args(["--schema-only", "--no-owner", "-h"])
        .arg(&c.socket_dir)
        .args(["-p", &c.port.to_string(), "-U", "postgres", db]);
    let out = run_cmd(cmd, None, Duration::from_secs(120));
    out.assert_success();
    let dump: String = out
        .stdout
        .lines()
        .filter(|l| {
            !l.starts_with("--") && !l.starts_with("\\restrict") && !l.starts_with("\\unrestrict")
        })
        .collect::<Vec<_>>()
        .join("\n");
    let version = c.sql(
        db,
        "SELECT coalesce((SELECT string_agg(version_num, ',') FROM alembic_version), '<none>')",
    );
    format!("{dump}\nalembic_version: {version}")
}

/// pgwarden in front of the shared cluster with `policy` lines in `[policy]`, writing its
/// audit log into a temp dir.
fn proxy(policy: &str) -> (ProxyProcess, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let toml = format!(
        "[policy]\n{policy}\n[audit]\npath = \"{}\"\n",
        dir.path().join("audit.jsonl").display()
    );
    (ProxyProcess::start(&Cluster::shared().addr(), &toml), dir)
}

#[test]
fn safe_revisions_apply_like_a_direct_run_with_every_driver() {
    let c = Cluster::shared();
    let direct_db = fresh("safe_direct");
    let p = project(None, None);
    alembic(p.path(), &c.conn(&direct_db), "psycopg2").assert_success();
    let expected = schema(&direct_db);
    assert!(expected.contains("alembic_version: s06"), "{expected}");
    let (px, _audit) = proxy("");
    for driver in DRIVERS {
        let db = fresh(&format!("safe_{driver}"));
        let out = alembic(p.path(), &c.conn(&db).with_port(px.port()), driver);
        assert!(
            out.status.success(),
            "{driver}: safe migrations refused through pgwarden:\n{}\n{}\nproxy log:\n{}",
            out.stdout,
            out.stderr,
            px.logs()
        );
        assert_eq!(
            schema(&db),
            expected,
            "{driver}: schema differs from a direct run"
        );
    }
}

/// Every unsafe revision on the big table without a safe form pgwarden runs is refused with the
/// rule, the table, its size and the recipe in Alembic's output, and leaves schema and
/// alembic_version as they were (the index and the foreign key run as multi-step rewrites with
/// every driver: tests/rewrite_alembic.rs, tests/rewrite_asyncpg.rs).
#[test]
fn unsafe_revisions_on_the_big_table_are_refused_and_change_nothing() {
    let c = Cluster::shared();
    let (px, _audit) = proxy("");
    let cases = [
        (
            "u_index",
            "require-concurrent-index-creation",
            "autocommit_block",
        ),
        ("u_type_change", "changing-column-type", "Expand/contract"),
        ("u_rename", "renaming-column", ""),
        ("u_drop_column", "ban-drop-column", ""),
        (
            "u_foreign_key",
            "adding-foreign-key-constraint",
            "NOT VALID",
        ),
    ];
    for driver in DRIVERS {
        let rewritten = |rev: &str| matches!(rev, "u_index" | "u_foreign_key");
        let db = fresh(&format!("unsafe_{driver}"));
        let conn = c.conn(&db).with_port(px.port());
        alembic(project(None, None).path(), &conn, driver).assert_success();
        let before = schema(&db);
        for (rev, rule, recipe) in cases {
            if rewritten(rev) {
                continue;
            }
            let out = alembic(project(Some(rev), Some("events")).path(), &conn, driver);
            let text = format!("{}\n{}", out.stdout, out.stderr);
            assert!(
                !out.status.success(),
                "{driver}/{rev}: unsafe revision applied through pgwarden:\n{text}"
            );
            assert!(text.contains(rule), "{driver}/{rev}: rule missing:\n{text}");
            assert!(
                text.contains("events"),
                "{driver}/{rev}: table missing:\n{text}"
            );
            assert!(
                text.contains("1.0M rows")
                    || text.contains("1,000,000")
                    || text.contains("1000000"),
                "{driver}/{rev}: size missing:\n{text}"
            );
            if driver != "asyncpg" {
                // asyncpg's exception text carries only the message; the others show HINT.
                assert!(
                    text.contains(recipe),
                    "{driver}/{rev}: recipe missing:\n{text}"
                );
            }
            assert_eq!(
                schema(&db),
                before,
                "{driver}/{rev}: the refused run changed the schema"
            );
        }
    }
}

/// The same statements on the 300-row table: size-aware rules only warn, the rules that break
/// running code (rename, drop column) refuse whatever the size.
#[test]
fn unsafe_revisions_on_the_small_table_follow_the_policy() {
    let c = Cluster::shared();
    let (px, _audit) = proxy("");
    for (rev, applies) in [
        ("u_index", true),
        ("u_type_change", true),
        ("u_foreign_key", true),
        ("u_rename", false),
        ("u_drop_column", false),
    ] {
        let db = fresh(&format!("small_{rev}"));
        let conn = c.conn(&db).with_port(px.port());
        alembic(project(None, None).path(), &conn, "psycopg2").assert_success();
        let out = alembic(
            project(Some(rev), Some("accounts")).path(),
            &conn,
            "psycopg2",
        );
        assert_eq!(
            out.status.success(),
            applies,
            "{rev} on the small table:\n{}\n{}\nproxy log:\n{}",
            out.stdout,
            out.stderr,
            px.logs()
        );
        let version = c.sql(&db, "SELECT version_num FROM alembic_version");
        assert_eq!(version, if applies { "u01" } else { "s06" }, "{rev}");
    }
    // The warnings reached pgwarden's log (Alembic users never see notices).
    assert!(px.logs().contains("decision=\"warn\""), "{}", px.logs());
}

#[test]
fn create_index_outside_a_transaction_is_rewritten_to_concurrently() {
    let c = Cluster::shared();
    let (px, _audit) = proxy("");
    for driver in DRIVERS {
        let db = fresh(&format!("rewrite_{driver}"));
        let conn = c.conn(&db).with_port(px.port());
        alembic(project(None, None).path(), &conn, driver).assert_success();
        let out = alembic(
            project(Some("u_index_autocommit"), Some("events")).path(),
            &conn,
            driver,
        );
        assert!(
            out.status.success(),
            "{driver}: rewritten index build failed:\n{}\n{}\nproxy log:\n{}",
            out.stdout,
            out.stderr,
            px.logs()
        );
        let valid = c.sql(
            &db,
            "SELECT indisvalid FROM pg_index WHERE indexrelid = 'ix_events_created'::regclass",
        );
        assert_eq!(valid, "t", "{driver}");
    }
    assert!(px.logs().contains("decision=\"rewrite\""), "{}", px.logs());
}

/// psql without ON_ERROR_STOP sends the script's COMMIT after the refused statement: the
/// server itself failed the transaction, so nothing of it commits (DESIGN.md decision 5).
#[test]
fn psql_without_on_error_stop_commits_nothing() {
    let c = Cluster::shared();
    let db = fresh("psql_half");
    let (px, _audit) = proxy("");
    let conn = c.conn(&db).with_port(px.port());
    let script = b"BEGIN;\nALTER TABLE events ADD COLUMN half_done int;\nALTER TABLE events DROP COLUMN payload;\nCOMMIT;\n";
    let out = psql_stdin(&conn, &["-X"], Some(script));
    assert!(out.stderr.contains("ban-drop-column"), "{}", out.stderr);
    assert!(
        out.stdout.contains("ROLLBACK"),
        "COMMIT must answer ROLLBACK:\n{}",
        out.stdout
    );
    let col = c.sql(
        &db,
        "SELECT count(*) FROM information_schema.columns WHERE table_name = 'events' AND column_name = 'half_done'",
    );
    assert_eq!(col, "0", "half of the migration committed");
}

#[test]
fn dry_run_forwards_everything_and_logs_what_it_would_do() {
    let c = Cluster::shared();
    let db = fresh("dryrun");
    let (px, _audit) = proxy("mode = \"dry-run\"");
    let conn = c.conn(&db).with_port(px.port());
    alembic(project(None, None).path(), &conn, "psycopg2").assert_success();
    let out = alembic(
        project(Some("u_drop_column"), Some("events")).path(),
        &conn,
        "psycopg2",
    );
    out.assert_success();
    assert_eq!(c.sql(&db, "SELECT version_num FROM alembic_version"), "u01");
    let logs = px.logs();
    assert!(logs.contains("would reject"), "{logs}");
    assert!(logs.contains("ban-drop-column"), "{logs}");
}

/// Nothing is injected in a failed transaction: the decision is taken without live facts and
/// says so; the client sees the server's own "transaction is aborted" answer.
#[test]
fn no_lookup_in_a_failed_transaction_and_hostile_names_are_parameters() {
    let c = Cluster::shared();
    let db = fresh("hostile");
    c.sql(&db, "CREATE TABLE \"we'ird;$$ name\" (id int); INSERT INTO \"we'ird;$$ name\" SELECT generate_series(1, 10); ANALYZE;");
    let (px, _audit) = proxy("");
    let conn = c.conn(&db).with_port(px.port());
    let out = psql_stdin(
        &conn,
        &["-X"],
        Some(b"BEGIN;\nSELECT 1/0;\nCREATE INDEX ix_failed ON events (kind);\nROLLBACK;\n"),
    );
    assert!(
        out.stderr.contains("current transaction is aborted"),
        "{}",
        out.stderr
    );
    let logs = px.logs();
    assert!(logs.contains("the transaction has failed"), "{logs}");
    // A name with a quote, a semicolon and a dollar quote: looked up as a bind parameter, so
    // the size is known (10 rows) and the small-table warning, not a refusal, comes back.
    let out = psql(
        &conn,
        &[
            "-X",
            "-c",
            "CREATE INDEX ix_weird ON \"we'ird;$$ name\" (id)",
        ],
    );
    out.assert_success();
    let logs = px.logs();
    assert!(logs.contains("we'ird;$$ name: ~10 rows"), "{logs}");
}

/// FunctionCall (libpq's fastpath, used by the large-object API) cannot be analysed: refused
/// in enforce mode with pgwarden's message, and the session goes on.
#[test]
fn function_calls_are_refused_and_the_session_goes_on() {
    let c = Cluster::shared();
    let db = c.fresh_db("fastpath");
    let (px, _audit) = proxy("");
    let url = c.conn(&db).with_port(px.port()).url();
    let script = r#"
import sys, psycopg2
conn = psycopg2.connect(sys.argv[1])
try:
    conn.lobject()
    print("lobject created")
except psycopg2.Error as e:
    print("refused:", e)
    conn.rollback()
cur = conn.cursor()
cur.execute("SELECT 1 + 1")
print("after:", cur.fetchone()[0])
"#;
    let mut cmd = std::process::Command::new(python());
    cmd.args(["-c", script, &url]);
    let out = run_cmd(cmd, None, Duration::from_secs(60));
    out.assert_success();
    assert!(out.stdout.contains("refused:"), "{}", out.stdout);
    assert!(out.stdout.contains("FunctionCall"), "{}", out.stdout);
    assert!(out.stdout.contains("after: 2"), "{}", out.stdout);
}
