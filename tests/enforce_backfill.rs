//! unbatched-backfill end to end (issue 11 deliver 4, second half): a large UPDATE/DELETE in a
//! migration transaction, graded by the EXPLAIN pgwarden injects inside its own savepoint, with
//! our own Alembic project on psycopg2 and psycopg 3 against real PostgreSQL. Every refusal is
//! checked over a direct connection afterwards: nothing of the refused revision may be there.
mod common;

use std::time::Duration;

use common::alembic::{assert_ok, url as alembic_url};
use common::*;

const DRIVERS: [&str; 2] = ["psycopg2", "psycopg"];

/// `package` (1,000,000 rows) and `tiny_pkg` (10 rows), analysed: loaded once per binary
/// into a template database ([`Cluster::fresh_from_template`]).
const SETUP: &str = "CREATE TABLE package (id int PRIMARY KEY, name text NOT NULL);
     INSERT INTO package SELECT g, 'p' || g FROM generate_series(1, 1000000) g;
     CREATE TABLE tiny_pkg (id int PRIMARY KEY, name text NOT NULL);
     INSERT INTO tiny_pkg SELECT g, 't' || g FROM generate_series(1, 10) g;
     VACUUM ANALYZE;";

/// A new database, a copy of the template with [`SETUP`].
fn fresh(tag: &str) -> String {
    Cluster::shared().fresh_from_template(SETUP, tag)
}

/// pgwarden with the default policy, an audit log and an admin listener (its port).
fn proxy() -> (ProxyProcess, tempfile::TempDir, u16) {
    let dir = tempfile::tempdir().expect("tempdir");
    let admin = free_port();
    let toml = format!(
        "[policy]\n[audit]\npath = \"{}\"\n[admin]\nlisten = \"127.0.0.1:{admin}\"\n",
        dir.path().join("audit.jsonl").display()
    );
    (
        ProxyProcess::start(&Cluster::shared().addr(), &toml),
        dir,
        admin,
    )
}

fn audit_log(dir: &tempfile::TempDir) -> String {
    std::fs::read_to_string(dir.path().join("audit.jsonl")).unwrap_or_default()
}

/// An Alembic project with one revision: a column added to the 10-row table (the schema
/// change that makes the transaction a migration), then `body` (Python lines).
fn project(body: &str) -> tempfile::TempDir {
    let revision = format!(
        r#"
import sqlalchemy as sa
from alembic import op
revision = "d1"
down_revision = None

def upgrade():
    op.add_column("tiny_pkg", sa.Column("extras", sa.Text))
{body}

def downgrade():
    op.drop_column("tiny_pkg", "extras")
"#
    );
    alembic::project_of("pgwarden-backfill-", &[("d1.py", &revision)])
}

fn alembic_upgrade(dir: &std::path::Path, url: &str) -> CmdOutput {
    alembic::run(dir, url, &["upgrade", "head"])
}

fn sql(db: &str, q: &str) -> String {
    Cluster::shared().sql(db, q)
}

fn columns(db: &str, table: &str) -> String {
    sql(
        db,
        &format!(
            "SELECT coalesce(string_agg(column_name, ',' ORDER BY column_name), '') FROM \
             information_schema.columns WHERE table_schema = 'public' AND table_name = '{table}'"
        ),
    )
}

fn has_alembic_version(db: &str) -> bool {
    sql(
        db,
        "SELECT to_regclass('public.alembic_version') IS NOT NULL",
    ) == "t"
}

/// The seed's data-migration pattern on a table the revision did not lock: a column added
/// elsewhere, then a whole-table UPDATE of the million-row table in the same transaction. Refused
/// at the UPDATE, naming the table, its size, the estimated rows and the recipe (Alembic first);
/// nothing of the revision remains.
#[test]
fn full_table_update_in_a_migration_is_refused_with_the_estimate() {
    let (px, audit, _) = proxy();
    let dir = project(r#"    op.execute("UPDATE package SET name = upper(name)")"#);
    for driver in DRIVERS {
        let db = fresh(&format!("bf_full_{driver}"));
        let out = alembic_upgrade(dir.path(), &alembic_url(&db, px.port(), driver));
        assert!(
            !out.status.success(),
            "{driver} went through:\n{}",
            out.stdout
        );
        for needle in [
            "unbatched-backfill",
            "UPDATE on package (~1.0M rows) changes ~1.0M rows",
            "EXPLAIN without ANALYZE",
            "autocommit_block",
            "WHERE id BETWEEN",
            "SET LOCAL pgwarden.allow = 'unbatched-backfill: <reason>'",
        ] {
            assert!(
                out.stderr.contains(needle),
                "{driver}: refusal does not say {needle:?}:\n{}",
                out.stderr
            );
        }
        assert_eq!(
            columns(&db, "tiny_pkg"),
            "id,name",
            "{driver}: half-applied"
        );
        assert!(!has_alembic_version(&db), "{driver}: half-applied");
        assert_eq!(
            sql(
                &db,
                "SELECT count(*) FROM package WHERE name <> lower(name)"
            ),
            "0",
            "{driver}: the UPDATE ran"
        );
    }
    let log = audit_log(&audit);
    assert!(
        log.contains("of UPDATE on package: ~1000000 rows"),
        "the estimate is not in the audit log:\n{log}"
    );
}

/// A few rows by primary key in the same kind of revision: estimated, and through.
#[test]
fn a_few_rows_by_primary_key_in_a_migration_pass() {
    let (px, audit, _) = proxy();
    let dir = project(
        r#"    op.execute("UPDATE package SET name = 'renamed' WHERE id IN (1, 2, 3)")
    op.execute("DELETE FROM package WHERE id = 4")"#,
    );
    for driver in DRIVERS {
        let db = fresh(&format!("bf_pk_{driver}"));
        let out = alembic_upgrade(dir.path(), &alembic_url(&db, px.port(), driver));
        assert_ok(&out, driver, &px);
        assert_eq!(
            sql(&db, "SELECT count(*) FROM package WHERE name = 'renamed'"),
            "3"
        );
        assert_eq!(sql(&db, "SELECT count(*) FROM package"), "999999");
        assert_eq!(columns(&db, "tiny_pkg"), "extras,id,name");
    }
    let log = audit_log(&audit);
    assert!(
        log.contains("of UPDATE on package: ~3 rows")
            && log.contains("of DELETE on package: ~1 rows"),
        "the estimates are not in the audit log:\n{log}"
    );
}

/// With bound parameters (SQLAlchemy `text().bindparams()`): psycopg2 interpolates them and
/// the text is estimated; psycopg 3 sends `$1` in a Parse, which PostgreSQL 15 cannot EXPLAIN
/// without values — a statement with nothing that could narrow it is then the whole table
/// (refused), one with a WHERE passes with a warning in the log.
#[test]
fn parametrized_updates_are_judged_on_both_drivers() {
    let (px, _audit, _) = proxy();
    let whole = project(
        r#"    op.execute(sa.text("UPDATE package SET name = :n").bindparams(n="renamed"))"#,
    );
    let by_pk = project(
        r#"    op.execute(sa.text("UPDATE package SET name = :n WHERE id = :i").bindparams(n="one", i=7))"#,
    );
    for driver in DRIVERS {
        let db = fresh(&format!("bf_params_{driver}"));
        let url = alembic_url(&db, px.port(), driver);
        let out = alembic_upgrade(whole.path(), &url);
        assert!(
            !out.status.success(),
            "{driver} went through:\n{}",
            out.stdout
        );
        assert!(
            out.stderr.contains("unbatched-backfill")
                && out.stderr.contains("package (~1.0M rows)"),
            "{driver}: {}",
            out.stderr
        );
        // psycopg2's text was estimated; psycopg 3's `$1` could not be.
        let how = if driver == "psycopg" {
            "changes every row of it (no WHERE clause; pgwarden could not EXPLAIN it: it has bind parameters"
        } else {
            "changes ~1.0M rows"
        };
        assert!(out.stderr.contains(how), "{driver}: {}", out.stderr);
        assert_eq!(
            columns(&db, "tiny_pkg"),
            "id,name",
            "{driver}: half-applied"
        );
        assert_eq!(
            sql(&db, "SELECT count(*) FROM package WHERE name = 'renamed'"),
            "0"
        );
        assert_ok(&alembic_upgrade(by_pk.path(), &url), driver, &px);
        assert_eq!(sql(&db, "SELECT name FROM package WHERE id = 7"), "one");
    }
}

/// The lines of an Alembic failure from the database error on (the traceback above it names
/// files and the connection differs): what the user reads.
fn error_tail(stderr: &str) -> String {
    let lines: Vec<&str> = stderr.lines().collect();
    let from = lines
        .iter()
        .rposition(|l| l.contains("UndefinedColumn"))
        .unwrap_or(lines.len());
    lines[from..].join("\n")
}

/// An UPDATE the server refuses (unknown column): pgwarden's EXPLAIN fails inside its
/// savepoint, the transaction is untouched, the statement runs as sent, and the client gets the
/// server's own error, exactly as over a direct connection.
#[test]
fn a_failing_update_gets_the_servers_own_error() {
    let (px, audit, _) = proxy();
    let dir = project(r#"    op.execute("UPDATE package SET nosuch = 1")"#);
    for driver in DRIVERS {
        let direct_db = fresh(&format!("bf_err_direct_{driver}"));
        let direct = alembic_upgrade(
            dir.path(),
            &alembic_url(&direct_db, Cluster::shared().conn(&direct_db).port, driver),
        );
        let db = fresh(&format!("bf_err_{driver}"));
        let proxied = alembic_upgrade(dir.path(), &alembic_url(&db, px.port(), driver));
        assert!(!direct.status.success() && !proxied.status.success());
        let (want, got) = (error_tail(&direct.stderr), error_tail(&proxied.stderr));
        assert!(
            want.contains("column \"nosuch\" of relation \"package\" does not exist"),
            "{driver}: direct run said:\n{}",
            direct.stderr
        );
        assert_eq!(
            got,
            want.replace(&direct_db, &db),
            "{driver}: not the server's own error"
        );
        assert!(!got.contains("pgwarden"), "{got}");
        assert_eq!(columns(&db, "tiny_pkg"), "id,name", "{driver}");
        assert!(!has_alembic_version(&db), "{driver}");
    }
    let log = audit_log(&audit);
    assert!(
        log.contains("no estimate, decided without it: the server refused it"),
        "{log}"
    );
}

/// An application transaction (no schema change) running the same whole-table UPDATE is not
/// analysed: pgwarden injects nothing (no catalog lookup counted) and writes no record. The
/// same UPDATE after a CREATE TABLE in the transaction is estimated and refused.
#[test]
fn an_application_transaction_is_not_analysed() {
    let (px, audit, admin) = proxy();
    let db = fresh("bf_app");
    let conn = Cluster::shared().conn(&db).with_port(px.port());
    let before = catalog_lookups(admin);
    let app =
        "BEGIN;\nUPDATE package SET name = upper(name);\nDELETE FROM package WHERE id > 999990;\n\
               ROLLBACK;\n";
    let out = psql_stdin(
        &conn,
        &["-v", "ON_ERROR_STOP=1", "-f", "-"],
        Some(app.as_bytes()),
    );
    assert!(out.status.success(), "{}\n{}", out.stdout, out.stderr);
    assert_eq!(
        catalog_lookups(admin),
        before,
        "the application's UPDATE paid a lookup"
    );
    assert!(
        !audit_log(&audit).contains("package"),
        "{}",
        audit_log(&audit)
    );
    // Control: the same statement in a migration transaction is looked at (and refused).
    let migration =
        "BEGIN;\nCREATE TABLE package_note (id int);\nUPDATE package SET name = upper(name);\n\
                     COMMIT;\n";
    let out = psql_stdin(
        &conn,
        &["-v", "ON_ERROR_STOP=1", "-f", "-"],
        Some(migration.as_bytes()),
    );
    assert!(!out.status.success(), "{}", out.stdout);
    assert!(out.stderr.contains("unbatched-backfill"), "{}", out.stderr);
    assert!(catalog_lookups(admin) >= before + 2.0);
    // The rolled-back UPDATE left a million dead rows: the planner counts the heap's pages.
    let log = audit_log(&audit);
    assert!(log.contains("of UPDATE on package: ~"), "{log}");
    assert_eq!(sql(&db, "SELECT to_regclass('package_note') IS NULL"), "t");
}

/// `SET LOCAL pgwarden.allow` earlier in the revision lets the backfill through, and its reason
/// goes to the audit log; without a reason it does not.
#[test]
fn set_local_pgwarden_allow_lets_the_backfill_through() {
    let (px, audit, _) = proxy();
    for driver in DRIVERS {
        let db = fresh(&format!("bf_allow_{driver}"));
        let url = alembic_url(&db, px.port(), driver);
        let no_reason = project(
            r#"    op.execute("SET LOCAL pgwarden.allow = 'unbatched-backfill'")
    op.execute("UPDATE package SET name = upper(name)")"#,
        );
        let out = alembic_upgrade(no_reason.path(), &url);
        assert!(!out.status.success(), "{driver}: {}", out.stdout);
        assert!(out.stderr.contains("unbatched-backfill"), "{}", out.stderr);
        assert_eq!(columns(&db, "tiny_pkg"), "id,name", "{driver}");
        let allowed = project(
            r#"    op.execute("SET LOCAL pgwarden.allow = 'unbatched-backfill: package is idle during the release window'")
    op.execute("UPDATE package SET name = upper(name)")"#,
        );
        let out = alembic_upgrade(allowed.path(), &url);
        assert_ok(&out, driver, &px);
        assert_eq!(
            sql(
                &db,
                "SELECT count(*) FROM package WHERE name <> upper(name)"
            ),
            "0",
            "{driver}"
        );
        assert_eq!(columns(&db, "tiny_pkg"), "extras,id,name", "{driver}");
    }
    let log = audit_log(&audit);
    assert!(
        log.contains(
            "\"allowed\":[\"unbatched-backfill: pgwarden.allow: package is idle during the release window\"]"
        ),
        "reason not in the audit log:\n{log}"
    );
}

/// `pgwarden rules` lists the rule; `pgwarden explain` documents the signal and the recipe.
#[test]
fn rules_and_explain_document_the_rule() {
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_pgwarden"))
            .args(args)
            .output()
            .expect("pgwarden");
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(run(&["rules"]).contains("unbatched-backfill"));
    let text = run(&["explain", "unbatched-backfill"]);
    for needle in [
        "EXPLAIN",
        "already changed the schema",
        "estimate_timeout",
        "autocommit_block",
        "SET LOCAL pgwarden.allow = 'unbatched-backfill: <reason>'",
    ] {
        assert!(text.contains(needle), "{needle}: {text}");
    }
}

/// The EXPLAIN cannot get its lock (another session holds SHARE on the table) within
/// `estimate_timeout`: it fails inside pgwarden's savepoint, the client's transaction goes on
/// untouched, the UPDATE is decided without an estimate (a warning saying why), waits for the
/// lock as it would directly, and the migration commits once the other session is done.
#[tokio::test(flavor = "multi_thread")]
async fn an_explain_that_cannot_get_its_lock_leaves_the_transaction_healthy() {
    let db = fresh("bf_lock");
    let dir = tempfile::tempdir().expect("tempdir");
    let toml = format!(
        "[policy]\nestimate_timeout = \"200ms\"\n[audit]\npath = \"{}\"\n",
        dir.path().join("audit.jsonl").display()
    );
    let px = ProxyProcess::start(&Cluster::shared().addr(), &toml);
    let (holder, conn) = Cluster::shared()
        .conn(&db)
        .tokio_config()
        .connect(tokio_postgres::NoTls)
        .await
        .expect("holder");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    holder
        .batch_execute("BEGIN; LOCK TABLE package IN SHARE MODE;")
        .await
        .expect("holder locks");
    let client = Cluster::shared().conn(&db).with_port(px.port());
    let script = "BEGIN;\nCREATE TABLE package_note (id int);\n\
                  UPDATE package SET name = 'waited' WHERE id = 1;\nCOMMIT;\n";
    let run = tokio::task::spawn_blocking(move || {
        psql_stdin(
            &client,
            &["-v", "ON_ERROR_STOP=1", "-f", "-"],
            Some(script.as_bytes()),
        )
    });
    // The client's own UPDATE (not pgwarden's EXPLAIN) waits for the lock.
    let waiting = wait_until(Duration::from_secs(60), || {
        sql(
            "postgres",
            &format!(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = '{db}' \
                 AND wait_event_type = 'Lock' AND query LIKE 'UPDATE package SET name%'"
            ),
        ) == "1"
    });
    assert!(
        waiting,
        "the UPDATE never waited; pgwarden said:\n{}",
        px.logs()
    );
    holder
        .batch_execute("COMMIT")
        .await
        .expect("holder commits");
    let out = run.await.expect("psql");
    assert!(
        out.status.success(),
        "{}\n{}\n{}",
        out.stdout,
        out.stderr,
        px.logs()
    );
    assert!(
        out.stderr.contains("unbatched-backfill") && out.stderr.contains("could not estimate"),
        "{}",
        out.stderr
    );
    assert_eq!(sql(&db, "SELECT name FROM package WHERE id = 1"), "waited");
    assert_eq!(
        sql(&db, "SELECT to_regclass('package_note') IS NOT NULL"),
        "t"
    );
    let log = std::fs::read_to_string(dir.path().join("audit.jsonl")).unwrap_or_default();
    assert!(
        log.contains("no estimate, decided without it: the EXPLAIN did not get its lock"),
        "{log}"
    );
}
