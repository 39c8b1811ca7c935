//! Precision on real migration histories (issue 11 deliver 2, 3, 4, 7), end to end with Alembic
//! projects of our own, psycopg2 and psycopg 3, through pgwarden's default policy against real
//! PostgreSQL. Every refusal is checked over a direct connection afterwards: nothing of the
//! refused revision may be there.
mod common;

use std::time::Duration;

use common::alembic::{assert_ok, run as alembic_run, url as alembic_url};
use common::*;

const DRIVERS: [&str; 2] = ["psycopg2", "psycopg"];

/// `package` (1,000,000 rows) and `tiny_pkg` (10 rows), analysed: loaded once per binary
/// into a template database ([`Cluster::fresh_from_template`]).
const SETUP: &str = "CREATE TABLE package (id int PRIMARY KEY, name text NOT NULL);
     INSERT INTO package SELECT g, 'p' || g FROM generate_series(1, 1000000) g;
     CREATE TABLE tiny_pkg (id int PRIMARY KEY, name text NOT NULL);
     INSERT INTO tiny_pkg SELECT g, 't' || g FROM generate_series(1, 10) g;
     ANALYZE;";

/// A new database: empty, or a copy of the template with [`SETUP`].
fn fresh(tag: &str, from_template: bool) -> String {
    let c = Cluster::shared();
    if from_template {
        c.fresh_from_template(SETUP, tag)
    } else {
        c.fresh_db(tag)
    }
}

/// pgwarden with the default policy and an audit log.
fn proxy() -> (ProxyProcess, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let toml = format!(
        "[policy]\n[audit]\npath = \"{}\"\n",
        dir.path().join("audit.jsonl").display()
    );
    (ProxyProcess::start(&Cluster::shared().addr(), &toml), dir)
}

fn audit_log(dir: &tempfile::TempDir) -> String {
    std::fs::read_to_string(dir.path().join("audit.jsonl")).unwrap_or_default()
}

/// An Alembic project with these revisions (file name, text).
fn project(revisions: &[(&str, &str)]) -> tempfile::TempDir {
    alembic::project_of("pgwarden-precision-", revisions)
}

#[track_caller]
fn assert_refused(out: &CmdOutput, what: &str, needles: &[&str]) {
    assert!(
        !out.status.success(),
        "{what} went through:\n{}",
        out.stdout
    );
    for n in needles {
        assert!(
            out.stderr.contains(n),
            "{what}: refusal does not say {n:?}:\n{}",
            out.stderr
        );
    }
}

fn sql(db: &str, q: &str) -> String {
    Cluster::shared().sql(db, q)
}

/// Tables of `public` in the database, sorted, comma-separated.
fn tables(db: &str) -> String {
    sql(
        db,
        "SELECT coalesce(string_agg(tablename, ',' ORDER BY tablename), '') FROM pg_tables \
         WHERE schemaname = 'public'",
    )
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

/// Waits until no session is connected to `db` (asked from another database).
fn wait_unused(db: &str) {
    let ok = wait_until(Duration::from_secs(60), || {
        sql(
            "postgres",
            &format!("SELECT count(*) FROM pg_stat_activity WHERE datname = '{db}'"),
        ) == "0"
    });
    assert!(ok, "sessions still connected to {db}");
}

/// A fresh install's history: tables, an enum type, a column added and one dropped, a rename
/// of a table and of a column; each downgrade undoes its upgrade.
const HISTORY: [(&str, &str); 3] = [
    (
        "h1.py",
        r#"
import sqlalchemy as sa
from alembic import op
revision = "h1"
down_revision = None

def upgrade():
    op.execute("CREATE TYPE mood AS ENUM ('calm', 'busy')")
    op.create_table("account", sa.Column("id", sa.Integer, primary_key=True),
                    sa.Column("name", sa.Text, nullable=False),
                    sa.Column("legacy", sa.Text))
    op.create_table("note", sa.Column("id", sa.Integer, primary_key=True),
                    sa.Column("account_id", sa.Integer, sa.ForeignKey("account.id")))
    op.execute("ALTER TABLE account ADD COLUMN feeling mood")

def downgrade():
    op.drop_table("note")
    op.drop_table("account")
    op.execute("DROP TYPE mood")
"#,
    ),
    (
        "h2.py",
        r#"
import sqlalchemy as sa
from alembic import op
revision = "h2"
down_revision = "h1"

def upgrade():
    op.add_column("account", sa.Column("nick", sa.Text))
    op.drop_column("account", "legacy")
    op.rename_table("note", "memo")

def downgrade():
    op.rename_table("memo", "note")
    op.add_column("account", sa.Column("legacy", sa.Text))
    op.drop_column("account", "nick")
"#,
    ),
    (
        "h3.py",
        r#"
from alembic import op
revision = "h3"
down_revision = "h2"

def upgrade():
    op.alter_column("account", "nick", new_column_name="handle")

def downgrade():
    op.alter_column("account", "handle", new_column_name="nick")
"#,
    ),
];

/// The seed's checklist, "Migration tested: upgrade, downgrade, upgrade", on an empty database
/// with the default config: every step passes (downgrades are new sessions: the tables are
/// ordinary committed tables there, empty, in a database nobody else uses).
#[test]
fn fresh_install_upgrade_downgrade_upgrade_passes() {
    let (px, _audit) = proxy();
    let dir = project(&HISTORY);
    for driver in DRIVERS {
        let db = fresh(&format!("prec_fresh_{driver}"), false);
        let url = alembic_url(&db, px.port(), driver);
        for step in [
            &["upgrade", "head"][..],
            &["downgrade", "base"],
            &["upgrade", "head"],
            &["downgrade", "h1"],
        ] {
            // The previous step's backend leaves pg_stat_activity a moment after its client
            // disconnected: wait for the real condition, not for luck.
            wait_unused(&db);
            let out = alembic_run(dir.path(), &url, step);
            assert_ok(&out, &format!("{driver} {step:?}"), &px);
        }
        assert_eq!(tables(&db), "account,alembic_version,note", "{driver}");
        assert_eq!(
            columns(&db, "account"),
            "feeling,id,legacy,name",
            "{driver}"
        );
        assert_eq!(sql(&db, "SELECT version_num FROM alembic_version"), "h1");
    }
}

/// The same downgrade on a table with a row in it, or while another session is connected to
/// the database, is refused, naming the rule and the table; nothing of it is applied.
#[test]
fn downgrade_with_data_or_other_users_is_refused() {
    let c = Cluster::shared();
    let (px, _audit) = proxy();
    let dir = project(&HISTORY);
    for driver in DRIVERS {
        // A row in `account`: h3's downgrade renames its column.
        let db = fresh(&format!("prec_data_{driver}"), false);
        let url = alembic_url(&db, px.port(), driver);
        assert_ok(
            &alembic_run(dir.path(), &url, &["upgrade", "head"]),
            "upgrade",
            &px,
        );
        sql(&db, "INSERT INTO account (id, name) VALUES (1, 'ada')");
        wait_unused(&db);
        let out = alembic_run(dir.path(), &url, &["downgrade", "base"]);
        assert_refused(
            &out,
            driver,
            &["renaming-column", "account", "pgwarden.allow"],
        );
        assert_eq!(
            columns(&db, "account"),
            "feeling,handle,id,name",
            "{driver}"
        );
        assert_eq!(sql(&db, "SELECT version_num FROM alembic_version"), "h3");

        // Empty, but the database is in use: an application session is connected.
        let db = fresh(&format!("prec_inuse_{driver}"), false);
        let url = alembic_url(&db, px.port(), driver);
        assert_ok(
            &alembic_run(dir.path(), &url, &["upgrade", "h2"]),
            "upgrade",
            &px,
        );
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let app = rt.block_on(c.conn(&db).connect());
        rt.block_on(app.simple_query("SELECT 1"))
            .expect("app session");
        let out = alembic_run(dir.path(), &url, &["downgrade", "h1"]);
        assert_refused(&out, driver, &["renaming-table", "memo"]);
        assert_eq!(tables(&db), "account,alembic_version,memo", "{driver}");
        assert_eq!(sql(&db, "SELECT version_num FROM alembic_version"), "h2");
        // The application goes away: now the same downgrade passes.
        drop(app);
        drop(rt);
        wait_unused(&db);
        assert_ok(
            &alembic_run(dir.path(), &url, &["downgrade", "h1"]),
            "downgrade",
            &px,
        );
        assert_eq!(tables(&db), "account,alembic_version,note", "{driver}");
    }
}

/// `op.execute("SET LOCAL pgwarden.allow = '<rule>: <reason>'")` lets one revision's refused
/// statement through, with its reason in the audit log; without a reason it does not.
#[test]
fn set_local_pgwarden_allow_lets_a_revision_through_with_its_reason_audited() {
    let (px, audit) = proxy();
    let base = r#"
import sqlalchemy as sa
from alembic import op
revision = "a1"
down_revision = None

def upgrade():
    op.create_table("account", sa.Column("id", sa.Integer, primary_key=True),
                    sa.Column("legacy", sa.Text))

def downgrade():
    pass
"#;
    let drop = |allow: &str| {
        format!(
            r#"
from alembic import op
revision = "a2"
down_revision = "a1"

def upgrade():
    {allow}
    op.drop_column("account", "legacy")

def downgrade():
    pass
"#
        )
    };
    for driver in DRIVERS {
        let db = fresh(&format!("prec_allow_{driver}"), false);
        let url = alembic_url(&db, px.port(), driver);
        let first = project(&[("a1.py", base)]);
        assert_ok(
            &alembic_run(first.path(), &url, &["upgrade", "head"]),
            "a1",
            &px,
        );
        sql(&db, "INSERT INTO account VALUES (1, 'x')");
        wait_unused(&db);
        for (allow, passes) in [
            ("pass", false),
            (
                r#"op.execute("SET LOCAL pgwarden.allow = 'ban-drop-column'")"#,
                false,
            ),
            (
                r#"op.execute("SET LOCAL pgwarden.allow = 'ban-drop-column: legacy unused since v3'")"#,
                true,
            ),
        ] {
            let dir = project(&[("a1.py", base), ("a2.py", &drop(allow))]);
            let out = alembic_run(dir.path(), &url, &["upgrade", "head"]);
            if passes {
                assert_ok(&out, &format!("{driver} {allow}"), &px);
                assert_eq!(columns(&db, "account"), "id", "{driver}");
            } else {
                assert_refused(
                    &out,
                    &format!("{driver} {allow}"),
                    &["ban-drop-column", "account", "SET LOCAL pgwarden.allow"],
                );
                assert_eq!(columns(&db, "account"), "id,legacy", "{driver}");
            }
        }
        let log = audit_log(&audit);
        assert!(
            log.contains(
                "\"allowed\":[\"ban-drop-column: pgwarden.allow: legacy unused since v3\"]"
            ),
            "{driver}: reason not in the audit log:\n{log}"
        );
    }
}

/// The setting is read as the server holds it: set in the same Query as the DDL it is not
/// set yet (refused); set in an earlier Query of the transaction it is; after COMMIT it is
/// gone (SET LOCAL), and the next transaction's drop is refused again.
#[test]
fn pgwarden_allow_follows_the_servers_scope() {
    let (px, _audit) = proxy();
    let db = fresh("prec_scope", false);
    sql(
        &db,
        "CREATE TABLE t (a int, b int, c int); INSERT INTO t VALUES (1, 2, 3);",
    );
    wait_unused(&db);
    let conn = Cluster::shared().conn(&db).with_port(px.port());
    let same_query = psql(
        &conn,
        &[
            "-c",
            "SET LOCAL pgwarden.allow = 'ban-drop-column: x'; ALTER TABLE t DROP COLUMN a",
        ],
    );
    assert!(!same_query.status.success(), "{}", same_query.stdout);
    assert!(
        same_query.stderr.contains("ban-drop-column"),
        "{}",
        same_query.stderr
    );
    let script = "BEGIN;\nSET LOCAL pgwarden.allow = 'ban-drop-column: moved to t2';\n\
                  ALTER TABLE t DROP COLUMN a;\nCOMMIT;\nBEGIN;\nALTER TABLE t DROP COLUMN b;\nCOMMIT;\n";
    let out = psql_stdin(
        &conn,
        &["-v", "ON_ERROR_STOP=1", "-f", "-"],
        Some(script.as_bytes()),
    );
    assert!(
        !out.status.success(),
        "second drop went through:\n{}",
        out.stdout
    );
    assert!(out.stderr.contains("ban-drop-column"), "{}", out.stderr);
    assert_eq!(columns(&db, "t"), "b,c");
}

/// CKAN's revision 106 pattern: add a column, then a whole-table UPDATE in the same
/// transaction. On a million-row table it is refused at the UPDATE (naming the table, its
/// size and the lock) and nothing of the revision remains; on a 10-row table it passes.
#[test]
fn add_column_then_backfill_in_one_revision_is_refused_on_a_large_table() {
    let (px, _audit) = proxy();
    let revision = |table: &str| {
        format!(
            r#"
import sqlalchemy as sa
from alembic import op
revision = "b1"
down_revision = None

def upgrade():
    op.add_column("{table}", sa.Column("extras", sa.Text))
    op.execute("UPDATE {table} SET extras = name")

def downgrade():
    op.drop_column("{table}", "extras")
"#
        )
    };
    for driver in DRIVERS {
        let db = fresh(&format!("prec_backfill_{driver}"), true);
        let url = alembic_url(&db, px.port(), driver);
        let dir = project(&[("b1.py", &revision("package"))]);
        let out = alembic_run(dir.path(), &url, &["upgrade", "head"]);
        assert_refused(
            &out,
            driver,
            &[
                "backfill-under-lock",
                "package (~1.0M rows)",
                "ACCESS EXCLUSIVE",
            ],
        );
        assert_eq!(columns(&db, "package"), "id,name", "{driver}: half-applied");
        assert!(!tables(&db).contains("alembic_version"), "{driver}");

        let dir = project(&[("b1.py", &revision("tiny_pkg"))]);
        let out = alembic_run(dir.path(), &url, &["upgrade", "head"]);
        assert_ok(&out, &format!("{driver} tiny"), &px);
        assert_eq!(
            sql(&db, "SELECT count(*) FROM tiny_pkg WHERE extras = name"),
            "10"
        );
    }
}

/// Plain psql: an UPDATE of another table, or one after COMMIT, is not held up; the backfill
/// of the locked large table in a later Query of the same transaction is refused.
#[test]
fn backfill_watch_is_per_table_and_per_transaction() {
    let (px, _audit) = proxy();
    let db = fresh("prec_watch", true);
    let conn = Cluster::shared().conn(&db).with_port(px.port());
    let ok = "BEGIN;\nALTER TABLE package ADD COLUMN n1 text;\nUPDATE tiny_pkg SET name = name;\n\
              COMMIT;\nUPDATE package SET n1 = 'x' WHERE id < 10;\n";
    let out = psql_stdin(
        &conn,
        &["-v", "ON_ERROR_STOP=1", "-f", "-"],
        Some(ok.as_bytes()),
    );
    assert!(
        out.status.success(),
        "{}\n{}\n{}",
        out.stdout,
        out.stderr,
        px.logs()
    );
    let bad =
        "BEGIN;\nALTER TABLE package ADD COLUMN n2 text;\nUPDATE package SET n2 = name;\nCOMMIT;\n";
    let out = psql_stdin(
        &conn,
        &["-v", "ON_ERROR_STOP=1", "-f", "-"],
        Some(bad.as_bytes()),
    );
    assert!(!out.status.success(), "{}", out.stdout);
    assert!(out.stderr.contains("backfill-under-lock"), "{}", out.stderr);
    assert_eq!(columns(&db, "package"), "id,n1,name");
}

/// `alembic upgrade head --sql` that crashes part-way leaves `BEGIN;` without `COMMIT;`:
/// `pgwarden check -` fails on it with or without `set -o pipefail`.
#[test]
fn truncated_offline_script_fails_check() {
    let crash = r#"
from alembic import context, op
revision = "c2"
down_revision = "h1"

def upgrade():
    if context.is_offline_mode():
        raise RuntimeError("this revision needs a live database")

def downgrade():
    pass
"#;
    let dir = project(&[HISTORY[0], ("c2.py", crash)]);
    let pgwarden = env!("CARGO_BIN_EXE_pgwarden");
    for pipefail in ["set -o pipefail; ", ""] {
        let line = format!(
            "{pipefail}'{}' -m alembic -c alembic.ini upgrade head --sql | '{pgwarden}' check -",
            python().display()
        );
        let mut cmd = std::process::Command::new("bash");
        cmd.args(["-c", &line])
            .current_dir(dir.path())
            .env("PGWARDEN_TEST_URL", "postgresql://nobody@127.0.0.1:1/none");
        let out = run_cmd(cmd, None, Duration::from_secs(120));
        assert!(
            !out.status.success(),
            "{pipefail:?}: passed:\n{}",
            out.stdout
        );
        assert!(
            out.stdout.contains("ban-uncommitted-transaction"),
            "{pipefail:?}: {}\n{}",
            out.stdout,
            out.stderr
        );
    }
    // The same history without the crash: complete, and it passes.
    let dir = project(&[HISTORY[0]]);
    let line = format!(
        "set -o pipefail; '{}' -m alembic -c alembic.ini upgrade head --sql | '{pgwarden}' check -",
        python().display()
    );
    let mut cmd = std::process::Command::new("bash");
    cmd.args(["-c", &line])
        .current_dir(dir.path())
        .env("PGWARDEN_TEST_URL", "postgresql://nobody@127.0.0.1:1/none");
    let out = run_cmd(cmd, None, Duration::from_secs(120));
    assert!(out.status.success(), "{}\n{}", out.stdout, out.stderr);
    assert!(
        !out.stdout.contains("ban-uncommitted-transaction"),
        "{}",
        out.stdout
    );
}

/// A cancelled or failed CONCURRENTLY build leaves an INVALID index; the retry's IF NOT EXISTS
/// would keep it silently: pgwarden warns, naming it. A valid index of that name: no warning.
#[test]
fn if_not_exists_on_an_invalid_index_warns() {
    let (px, _audit) = proxy();
    let db = fresh("prec_invalid", false);
    sql(
        &db,
        "CREATE TABLE dup (a int); INSERT INTO dup VALUES (1), (1); CREATE INDEX ok_idx ON dup (a);",
    );
    // Fails on the duplicate and leaves dup_a_key INVALID (direct connection).
    let direct = psql(
        &Cluster::shared().conn(&db),
        &[
            "-c",
            "CREATE UNIQUE INDEX CONCURRENTLY dup_a_key ON dup (a)",
        ],
    );
    assert!(!direct.status.success(), "{}", direct.stdout);
    assert_eq!(
        sql(
            &db,
            "SELECT indisvalid FROM pg_index WHERE indexrelid = 'dup_a_key'::regclass"
        ),
        "f"
    );
    wait_unused(&db);
    let conn = Cluster::shared().conn(&db).with_port(px.port());
    let out = psql(
        &conn,
        &[
            "-c",
            "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS dup_a_key ON dup (a)",
        ],
    );
    assert!(
        out.stderr.contains("invalid-index-kept"),
        "{}\n{}",
        out.stderr,
        px.logs()
    );
    assert!(out.stderr.contains("dup_a_key"), "{}", out.stderr);
    let out = psql(
        &conn,
        &[
            "-c",
            "CREATE INDEX CONCURRENTLY IF NOT EXISTS ok_idx ON dup (a)",
        ],
    );
    assert!(out.status.success(), "{}", out.stderr);
    assert!(!out.stderr.contains("invalid-index-kept"), "{}", out.stderr);
}

/// An inline CHECK in ADD COLUMN scans the table under ACCESS EXCLUSIVE: refused on the
/// million-row table, naming it; the column is not there afterwards.
#[test]
fn add_column_with_inline_check_is_refused_on_a_large_table() {
    let (px, _audit) = proxy();
    let db = fresh("prec_check", true);
    let conn = Cluster::shared().conn(&db).with_port(px.port());
    let out = psql(
        &conn,
        &[
            "-c",
            "ALTER TABLE package ADD COLUMN qty int CHECK (qty > 0)",
        ],
    );
    assert!(!out.status.success(), "{}", out.stdout);
    assert!(
        out.stderr.contains("constraint-missing-not-valid")
            && out.stderr.contains("package (~1.0M rows)"),
        "{}",
        out.stderr
    );
    assert_eq!(columns(&db, "package"), "id,name");
    // On the 10-row table it is a warning and runs.
    let out = psql(
        &conn,
        &[
            "-c",
            "ALTER TABLE tiny_pkg ADD COLUMN qty int CHECK (qty > 0)",
        ],
    );
    assert!(out.status.success(), "{}", out.stderr);
    assert!(
        out.stderr.contains("constraint-missing-not-valid"),
        "{}",
        out.stderr
    );
}

/// Autogenerate's rename (add_column + drop_column in one revision) on a table with data is
/// refused, and the refusal says the data would be lost and how to rename instead.
#[test]
fn autogenerated_rename_is_called_data_loss() {
    let (px, _audit) = proxy();
    let revision = r#"
import sqlalchemy as sa
from alembic import op
revision = "n1"
down_revision = None

def upgrade():
    op.add_column("tiny_pkg", sa.Column("label", sa.Text))
    op.drop_column("tiny_pkg", "name")

def downgrade():
    pass
"#;
    for driver in DRIVERS {
        let db = fresh(&format!("prec_rename_{driver}"), true);
        let url = alembic_url(&db, px.port(), driver);
        let dir = project(&[("n1.py", revision)]);
        let out = alembic_run(dir.path(), &url, &["upgrade", "head"]);
        assert_refused(
            &out,
            driver,
            &["ban-drop-column", "tiny_pkg", "LOST", "new_column_name"],
        );
        assert_eq!(columns(&db, "tiny_pkg"), "id,name", "{driver}");
    }
}

/// Dropping a foreign key locks the referenced table ACCESS EXCLUSIVE too: the warnings name
/// the million-row table it references, not only the tiny referencing one.
#[test]
fn dropping_a_foreign_key_names_the_referenced_table() {
    let (px, _audit) = proxy();
    let db = fresh("prec_fkdrop", true);
    sql(
        &db,
        "CREATE TABLE award (id int PRIMARY KEY, package_id int CONSTRAINT award_pkg_fk REFERENCES package (id));",
    );
    wait_unused(&db);
    let conn = Cluster::shared().conn(&db).with_port(px.port());
    let out = psql(
        &conn,
        &["-c", "ALTER TABLE award DROP CONSTRAINT award_pkg_fk"],
    );
    assert!(out.status.success(), "{}", out.stderr);
    assert!(
        out.stderr
            .contains("references, public.package (~1.0M rows)"),
        "{}\n{}",
        out.stderr,
        px.logs()
    );
    assert_eq!(
        sql(
            &db,
            "SELECT count(*) FROM pg_constraint WHERE conname = 'award_pkg_fk'"
        ),
        "0"
    );
}

/// `ALTER TYPE ... ADD VALUE` and then its use in a later Query of the same transaction (as
/// Alembic sends them): pgwarden refuses the use, naming the rule, before the server's 55P04;
/// after COMMIT the value may be used.
#[test]
fn new_enum_value_used_in_the_same_transaction_is_refused() {
    let (px, _audit) = proxy();
    let db = fresh("prec_enum", false);
    sql(
        &db,
        "CREATE TYPE mood AS ENUM ('calm'); CREATE TABLE acct (id int, feeling mood); \
         INSERT INTO acct VALUES (1, 'calm');",
    );
    wait_unused(&db);
    let conn = Cluster::shared().conn(&db).with_port(px.port());
    let bad =
        "BEGIN;\nALTER TYPE mood ADD VALUE 'tense';\nUPDATE acct SET feeling = 'tense';\nCOMMIT;\n";
    let out = psql_stdin(
        &conn,
        &["-v", "ON_ERROR_STOP=1", "-f", "-"],
        Some(bad.as_bytes()),
    );
    assert!(!out.status.success(), "{}", out.stdout);
    assert!(
        out.stderr.contains("enum-value-in-transaction"),
        "{}\n{}",
        out.stderr,
        px.logs()
    );
    let good =
        "BEGIN;\nALTER TYPE mood ADD VALUE 'tense';\nCOMMIT;\nUPDATE acct SET feeling = 'tense';\n";
    let out = psql_stdin(
        &conn,
        &["-v", "ON_ERROR_STOP=1", "-f", "-"],
        Some(good.as_bytes()),
    );
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(sql(&db, "SELECT feeling FROM acct"), "tense");
}

/// `pgwarden explain` says how the drop rules treat empty tables and how to allow a finding.
#[test]
fn explain_documents_empty_tables_and_the_allow_setting() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pgwarden"))
        .args(["explain", "ban-drop-column"])
        .output()
        .expect("pgwarden explain");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("## Empty tables in an unused database"),
        "{text}"
    );
    assert!(
        text.contains("op.execute(\"SET LOCAL pgwarden.allow = 'ban-drop-column: <reason>'\")"),
        "{text}"
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pgwarden"))
        .args(["explain", "cannot-analyse"])
        .output()
        .expect("pgwarden explain");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("pgwarden.allow"), "{text}");
}
