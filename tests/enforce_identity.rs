//! Which table a statement really touches (issue 9 classes 1, 3, 4; issue 11 deliver 1), end to
//! end: psql, pgbench, psycopg2/psycopg 3 and Alembic through pgwarden against a database with a
//! 1,200,000-row table `big`. Every attack ends with a look over a direct connection: the
//! refused change must not be there; every legitimate case must have applied.
mod common;

use std::sync::OnceLock;
use std::time::Duration;

use common::*;

/// The template: `big` (1.2M rows, PK, an index), `tiny` (0 rows) referencing nothing yet, and
/// `s2.big`, a 3-row table of the same name in another schema.
fn template() -> &'static str {
    static T: OnceLock<String> = OnceLock::new();
    T.get_or_init(|| {
        let c = Cluster::shared();
        let db = c.fresh_db("identity_tmpl");
        c.sql(
            &db,
            "CREATE TABLE big (id int PRIMARY KEY, v int NOT NULL);
             INSERT INTO big SELECT g, g FROM generate_series(1, 1200000) g;
             CREATE INDEX big_v ON big (v);
             CREATE TABLE tiny (id int PRIMARY KEY, big_id int);
             CREATE SCHEMA s2;
             CREATE TABLE s2.big (id int PRIMARY KEY);
             INSERT INTO s2.big VALUES (1), (2), (3);
             ANALYZE;",
        );
        db
    })
}

static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

fn fresh(tag: &str) -> String {
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = format!("{tag}_{}_{n}", std::process::id());
    Cluster::shared().sql(
        "postgres",
        &format!("CREATE DATABASE \"{name}\" TEMPLATE \"{}\"", template()),
    );
    name
}

fn proxy() -> (ProxyProcess, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let toml = format!(
        "[policy]\n[audit]\npath = \"{}\"\n",
        dir.path().join("audit.jsonl").display()
    );
    (ProxyProcess::start(&Cluster::shared().addr(), &toml), dir)
}

/// Does `schema.table` have column `col`? Over a direct connection.
fn has_column(db: &str, schema: &str, table: &str, col: &str) -> bool {
    Cluster::shared().sql(
        db,
        &format!(
            "SELECT count(*) FROM information_schema.columns WHERE table_schema = '{schema}' \
             AND table_name = '{table}' AND column_name = '{col}'"
        ),
    ) == "1"
}

/// The rewriting statement every attack tries to get onto `big`.
const ADD_X: &str = "ADD COLUMN x int NOT NULL DEFAULT (random() * 10)::int";

/// psql script (each statement its own Query) through pgwarden, stopping at the first error.
fn script(conn: &ConnInfo, sql: &str) -> CmdOutput {
    psql_stdin(
        conn,
        &["-v", "ON_ERROR_STOP=1", "-f", "-"],
        Some(sql.as_bytes()),
    )
}

#[track_caller]
fn assert_refused(out: &CmdOutput, what: &str) {
    let all = format!("{}{}", out.stdout, out.stderr);
    assert!(
        !out.status.success() && all.contains("adding-field-with-default"),
        "{what}: not refused by pgwarden:\n{all}"
    );
    assert!(all.contains("1.2M rows"), "{what}: size not named:\n{all}");
}

/// Class 1: a name proves nothing. Each attack "creates" a table called `big` without creating
/// the `big` the ALTER then hits.
#[test]
fn a_table_is_new_only_if_the_server_created_it() {
    let c = Cluster::shared();
    let (px, _audit) = proxy();
    let attacks: [(&str, String); 7] = [
        (
            "IF NOT EXISTS, one Query",
            format!("CREATE TABLE IF NOT EXISTS big (id int); ALTER TABLE big {ADD_X};"),
        ),
        (
            "IF NOT EXISTS, separate Queries",
            format!("BEGIN;\nCREATE TABLE IF NOT EXISTS big (id int);\nALTER TABLE big {ADD_X};\nCOMMIT;"),
        ),
        (
            "temporary table of the same name",
            format!("BEGIN;\nCREATE TEMP TABLE big (id int);\nALTER TABLE public.big {ADD_X};\nCOMMIT;"),
        ),
        (
            "same name in another schema",
            format!("BEGIN;\nCREATE SCHEMA s3;\nCREATE TABLE s3.big (id int);\nALTER TABLE big {ADD_X};\nCOMMIT;"),
        ),
        (
            "ROLLBACK TO SAVEPOINT undid the CREATE",
            format!(
                "BEGIN;\nCREATE SCHEMA s4;\nSET search_path = s4, public;\nSAVEPOINT a;\n\
                 CREATE TABLE big (id int);\nROLLBACK TO SAVEPOINT a;\nALTER TABLE big {ADD_X};\nCOMMIT;"
            ),
        ),
        (
            "DROP of the new table",
            format!(
                "BEGIN;\nCREATE SCHEMA s5;\nSET search_path = s5, public;\n\
                 CREATE TABLE big (id int);\nDROP TABLE big;\nALTER TABLE big {ADD_X};\nCOMMIT;"
            ),
        ),
        (
            "ROLLBACK AND CHAIN undid the CREATE",
            format!(
                "BEGIN;\nCREATE SCHEMA s6;\nSET LOCAL search_path = s6, public;\nCREATE TABLE big (id int);\n\
                 ROLLBACK AND CHAIN;\nALTER TABLE big {ADD_X};\nCOMMIT;"
            ),
        ),
    ];
    for (what, sql) in attacks {
        let db = fresh("ident_c1");
        let out = script(&c.conn(&db).with_port(px.port()), &sql);
        assert_refused(&out, what);
        assert!(
            !has_column(&db, "public", "big", "x"),
            "{what}: big was rewritten"
        );
    }
    // The legitimate case: a table really created in the transaction, and a temporary one.
    let db = fresh("ident_c1_ok");
    let out = script(
        &c.conn(&db).with_port(px.port()),
        &format!(
            "BEGIN;\nCREATE TABLE fresh (id int);\nALTER TABLE fresh {ADD_X};\n\
             CREATE TEMP TABLE scratch (id int);\nALTER TABLE scratch {ADD_X};\nCOMMIT;\n\
             CREATE TABLE one_query (id int); ALTER TABLE one_query {ADD_X};"
        ),
    );
    out.assert_success();
    assert!(has_column(&db, "public", "fresh", "x"));
    assert!(has_column(&db, "public", "one_query", "x"));
}

/// Class 3: the statement is decided on what it touches when it runs: a search_path change
/// earlier in the same Query (SET or set_config) cannot redirect an ALTER sized on `s2.big`
/// (3 rows) to `public.big`; startup `options` are the session's own search_path, which the
/// in-session lookup uses.
#[test]
fn search_path_changes_cannot_redirect_a_decision() {
    let c = Cluster::shared();
    let (px, _audit) = proxy();
    let db = fresh("ident_c3");
    let conn = c.conn(&db).with_port(px.port());
    for (what, sql) in [
        (
            "SET in the same Query",
            format!("SET search_path = public; ALTER TABLE big {ADD_X}"),
        ),
        (
            "set_config in the same Query",
            format!("SELECT pg_catalog.set_config('search_path', 'public', false); ALTER TABLE big {ADD_X}"),
        ),
    ] {
        let mut cmd = std::process::Command::new(pg_bin("psql"));
        cmd.args(["-X", "-c", &sql])
            .envs(conn.env())
            .env("PGOPTIONS", "-c search_path=s2");
        let out = run_cmd(cmd, None, Duration::from_secs(60));
        let all = format!("{}{}", out.stdout, out.stderr);
        assert!(
            !out.status.success() && all.contains("adding-field-with-default"),
            "{what}: not refused:\n{all}"
        );
        assert!(!has_column(&db, "public", "big", "x"), "{what}: big was rewritten");
    }
    // Startup options: `big` is s2.big (3 rows) for this session, and that is what is altered.
    let mut cmd = std::process::Command::new(pg_bin("psql"));
    cmd.args([
        "-X",
        "-v",
        "ON_ERROR_STOP=1",
        "-c",
        &format!("ALTER TABLE big {ADD_X}"),
    ])
    .envs(conn.env())
    .env("PGOPTIONS", "-c search_path=s2");
    run_cmd(cmd, None, Duration::from_secs(60)).assert_success();
    assert!(has_column(&db, "s2", "big", "x"));
    assert!(!has_column(&db, "public", "big", "x"));
    // And the other way round: options pointing at public size public.big.
    let mut cmd = std::process::Command::new(pg_bin("psql"));
    cmd.args([
        "-X",
        "-c",
        "ALTER TABLE big ADD COLUMN y int NOT NULL DEFAULT (random() * 10)::int",
    ])
    .envs(conn.env())
    .env("PGOPTIONS", "-c search_path=public,s2");
    let out = run_cmd(cmd, None, Duration::from_secs(60));
    assert_refused(&out, "options search_path=public");
    assert!(!has_column(&db, "public", "big", "y"));
}

/// Class 4: the user's operators, types and search_path cannot hijack or break the lookup. A
/// `public.=(oid, regclass)` that says "false" would make `big` look absent; one that raises
/// would abort the client's transaction; a `public.text` type first on the search_path would
/// capture `::text`.
#[test]
fn planted_operators_and_types_cannot_hijack_the_lookup() {
    let c = Cluster::shared();
    let (px, _audit) = proxy();
    for (what, body) in [
        ("operator that lies", "SELECT false"),
        ("operator that raises", "SELECT 1/0 = 1"),
    ] {
        let db = fresh("ident_c4");
        c.sql(
            &db,
            &format!(
                "CREATE FUNCTION public.pw_eq(oid, regclass) RETURNS bool LANGUAGE sql AS $${body}$$;
                 CREATE OPERATOR public.= (LEFTARG = oid, RIGHTARG = regclass, FUNCTION = public.pw_eq);
                 CREATE FUNCTION public.pw_eq2(oid, oid) RETURNS bool LANGUAGE sql AS $${body}$$;
                 CREATE OPERATOR public.= (LEFTARG = oid, RIGHTARG = oid, FUNCTION = public.pw_eq2);
                 CREATE FUNCTION public.pw_cat(text, text) RETURNS text LANGUAGE sql AS $$SELECT 'nope'$$;
                 CREATE OPERATOR public.|| (LEFTARG = text, RIGHTARG = text, FUNCTION = public.pw_cat);
                 CREATE TYPE public.text AS (a int);
                 ALTER DATABASE \"{db}\" SET search_path = public, pg_catalog;"
            ),
        );
        let conn = c.conn(&db).with_port(px.port());
        let out = script(&conn, &format!("BEGIN;\nALTER TABLE big {ADD_X};\nCOMMIT;"));
        assert_refused(&out, what);
        let all = format!("{}{}", out.stdout, out.stderr);
        assert!(
            !all.contains("division by zero"),
            "{what}: the lookup failed:\n{all}"
        );
        assert!(
            !has_column(&db, "public", "big", "x"),
            "{what}: big was rewritten"
        );
        // The client's own transaction is not disturbed by the lookup.
        let out = script(
            &conn,
            "BEGIN;\nCREATE TABLE ok1 (id int);\nALTER TABLE ok1 ADD COLUMN y int;\n\
             CREATE INDEX ok1_y ON ok1 (y);\nCOMMIT;",
        );
        out.assert_success();
        assert!(has_column(&db, "public", "ok1", "y"), "{what}");
    }
}

/// Issue 11 deliver 1: existence and size from the server, for the table that pays.
#[test]
fn no_ops_and_the_table_that_pays() {
    let c = Cluster::shared();
    let (px, _audit) = proxy();
    let db = fresh("ident_11");
    let conn = c.conn(&db).with_port(px.port());
    // IF EXISTS on what does not exist, SET NOT NULL on a NOT NULL column, a type change to
    // the current type (on the 1.2M-row table), a FK from the 0-row table to the big one.
    script(
        &conn,
        "BEGIN;\nDROP TABLE IF EXISTS migrate_version;\nDROP INDEX IF EXISTS nothing_here;\n\
         ALTER TABLE IF EXISTS nothing_here DROP COLUMN a;\n\
         ALTER TABLE big ALTER COLUMN v SET NOT NULL;\nALTER TABLE big ALTER COLUMN v TYPE int;\n\
         ALTER TABLE tiny ADD CONSTRAINT tiny_big_fk FOREIGN KEY (big_id) REFERENCES big (id);\nCOMMIT;",
    )
    .assert_success();
    assert_eq!(
        c.sql(
            &db,
            "SELECT count(*) FROM pg_constraint WHERE conname = 'tiny_big_fk'"
        ),
        "1"
    );
    // The other way round the big table is scanned: refused (with the rule set to reject;
    // its default runs it as NOT VALID + VALIDATE, tests/rewrite_alembic.rs), naming it and
    // its size.
    let strict = ProxyProcess::start(
        &c.addr(),
        "[policy.rules]\nadding-foreign-key-constraint = \"reject\"\n[audit]\nenabled = false\n",
    );
    let out = script(
        &c.conn(&db).with_port(strict.port()),
        "BEGIN;\nALTER TABLE big ADD CONSTRAINT big_tiny_fk FOREIGN KEY (v) REFERENCES tiny (id);\nCOMMIT;",
    );
    let all = format!("{}{}", out.stdout, out.stderr);
    assert!(!out.status.success(), "{all}");
    assert!(all.contains("every row of big (~1.2M rows)"), "{all}");
    assert_eq!(
        c.sql(
            &db,
            "SELECT count(*) FROM pg_constraint WHERE conname = 'big_tiny_fk'"
        ),
        "0"
    );
    // DROP INDEX names the table it locks, with the table's size.
    let out = script(&conn, "BEGIN;\nDROP INDEX big_v;\nCOMMIT;");
    let all = format!("{}{}", out.stdout, out.stderr);
    assert!(!out.status.success(), "{all}");
    assert!(
        all.contains("on its table public.big (~1.2M rows)"),
        "{all}"
    );
    assert_eq!(
        c.sql(&db, "SELECT count(*) FROM pg_class WHERE relname = 'big_v'"),
        "1"
    );
    // A DROP ... IF EXISTS of a table that does exist is still a DROP.
    let out = script(&conn, "DROP TABLE IF EXISTS big;");
    out.assert_failure();
    assert_eq!(c.sql(&db, "SELECT count(*) FROM big"), "1200000");
}

/// pgbench -i on a fresh database drops its tables IF EXISTS, creates them, commits, loads and
/// then adds primary keys: every table is the session's own.
#[test]
fn pgbench_initialises_a_fresh_database_through_pgwarden() {
    let c = Cluster::shared();
    let (px, _audit) = proxy();
    let db = c.fresh_db("ident_pgbench");
    let out = pgbench(&c.conn(&db).with_port(px.port()), &["-i", "-s", "1"]);
    assert!(
        out.status.success(),
        "pgbench -i refused:\n{}\n{}\n{}",
        out.stdout,
        out.stderr,
        px.logs()
    );
    assert_eq!(
        c.sql(&db, "SELECT count(*) FROM pgbench_accounts"),
        "100000"
    );
    assert_eq!(
        c.sql(
            &db,
            "SELECT count(*) FROM pg_constraint WHERE conname = 'pgbench_accounts_pkey'"
        ),
        "1"
    );
}

/// One revision: create under a temporary name, rename (CKAN), commit mid-run for a
/// CONCURRENTLY index (warehouse), then rewrite, drop a column, add a FK from the new table to
/// the big one, `nullable=False` on the big table's NOT NULL column, and an IF EXISTS drop of a
/// table that does not exist. (Its downgrade runs in a new session, where `member` is an
/// ordinary committed table: how drops of empty tables are treated is issue 11 deliver 2.)
const REVISION: &str = r#"
import sqlalchemy as sa
from alembic import op
revision = "r1"
down_revision = None

def upgrade():
    op.execute("DROP TABLE IF EXISTS migrate_version")
    op.create_table("member_tmp", sa.Column("id", sa.Integer, primary_key=True),
                    sa.Column("big_id", sa.Integer), sa.Column("old", sa.Text))
    op.rename_table("member_tmp", "member")
    with op.get_context().autocommit_block():
        op.create_index("ix_member_big_id", "member", ["big_id"], postgresql_concurrently=True)
    op.add_column("member", sa.Column("x", sa.Integer, nullable=False,
                                      server_default=sa.text("(random() * 10)::int")))
    op.drop_column("member", "old")
    op.create_foreign_key("member_big_fk", "member", "big", ["big_id"], ["id"])
    op.alter_column("big", "v", existing_type=sa.Integer, nullable=False)

def downgrade():
    op.drop_constraint("member_big_fk", "member", type_="foreignkey")
    op.drop_index("ix_member_big_id", table_name="member")
    op.drop_table("member")
"#;

#[test]
fn alembic_create_rename_commit_alter_upgrade_passes() {
    let c = Cluster::shared();
    let (px, _audit) = proxy();
    let dir = common::alembic::project_of("ident_alembic", &[("r1.py", REVISION)]);
    for driver in ["psycopg2", "psycopg"] {
        let db = fresh(&format!("ident_alembic_{driver}"));
        let url = common::alembic::url(&db, px.port(), driver);
        let out = common::alembic::run(dir.path(), &url, &["upgrade", "head"]);
        common::alembic::assert_ok(&out, &format!("{driver} upgrade head"), &px);
        assert!(has_column(&db, "public", "member", "x"), "{driver}");
        assert!(!has_column(&db, "public", "member", "old"), "{driver}");
        assert_eq!(
            c.sql(&db, "SELECT version_num FROM alembic_version"),
            "r1",
            "{driver}"
        );
    }
}

/// Class 3, prepared statements: a named DDL statement is decided again at each Bind of a
/// later request. Prepared while `big` is `s2.big` (3 rows), executed after the search_path
/// moved to `public.big` (1.2M rows): refused, and `public.big` is untouched.
#[test]
fn a_prepared_ddl_statement_is_decided_again_when_it_runs() {
    let c = Cluster::shared();
    let (px, _audit) = proxy();
    let db = fresh("ident_prep");
    let conn = c.conn(&db).with_port(px.port());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let client = conn.connect().await;
        client
            .batch_execute("SET search_path = s2")
            .await
            .expect("set");
        let alter = client
            .prepare(&format!("ALTER TABLE big {ADD_X}"))
            .await
            .expect("prepared while big is s2.big");
        client
            .batch_execute("SET search_path = public")
            .await
            .expect("set");
        let err = client
            .execute(&alter, &[])
            .await
            .expect_err("executed against public.big");
        let text = format!("{err:?}");
        assert!(text.contains("pgwarden refused"), "{text}");
        assert!(text.contains("adding-field-with-default"), "{text}");
        // The session goes on; back on s2 the same statement runs against s2.big.
        client
            .batch_execute("SET search_path = s2")
            .await
            .expect("set");
        client
            .execute(&alter, &[])
            .await
            .expect("s2.big is small: allowed");
    });
    assert!(!has_column(&db, "public", "big", "x"));
    assert!(has_column(&db, "s2", "big", "x"));
}

/// The lookup's statements are prepared once per server session and only bound after that;
/// the client may deallocate them at any time (`DEALLOCATE ALL`, `DISCARD ALL`, or from inside
/// a function where pgwarden cannot see it). Then the lookup's savepoint is rolled back, the
/// lookup is sent again, and the client's transaction, its own savepoints and every decision
/// are as if nothing had happened.
#[test]
fn lookup_statements_deallocated_by_the_client_are_prepared_again() {
    let c = Cluster::shared();
    let (px, _audit) = proxy();
    let db = fresh("ident_dealloc");
    // A routine that deallocates from where pgwarden cannot see it (created directly:
    // pgwarden refuses a body it cannot read).
    c.sql(
        &db,
        "CREATE FUNCTION dealloc() RETURNS int LANGUAGE plpgsql AS \
         $$ BEGIN EXECUTE 'DEALLOCATE ALL'; RETURN 1; END $$;",
    );
    let conn = c.conn(&db).with_port(px.port());
    let uses = "SELECT 'uses=' || sum(generic_plans + custom_plans) FROM pg_prepared_statements \
                WHERE name LIKE 'pgwarden_lookup_settings_%';";
    let out = script(
        &conn,
        &format!(
            "BEGIN;\nCREATE TABLE t1 (id int);\nCREATE INDEX t1_id ON t1 (id);\n\
             ALTER TABLE t1 ADD COLUMN p int;\n{uses}\n\
             DEALLOCATE ALL;\nSAVEPOINT mine;\nALTER TABLE t1 ADD COLUMN a int;\n\
             SELECT dealloc();\nALTER TABLE t1 ADD COLUMN b int;\n\
             ROLLBACK TO SAVEPOINT mine;\nALTER TABLE t1 ADD COLUMN c int;\nCOMMIT;\n\
             DISCARD ALL;\nALTER TABLE tiny ADD COLUMN z int;\n"
        ),
    );
    out.assert_success();
    // Three DDL statements, three bindings of one prepared settings statement: parsed once.
    assert!(out.stdout.contains("uses=3"), "{}", out.stdout);
    for (col, present) in [
        ("id", true),
        ("p", true),
        ("a", false),
        ("b", false),
        ("c", true),
    ] {
        assert_eq!(has_column(&db, "public", "t1", col), present, "t1.{col}");
    }
    assert_eq!(
        c.sql(
            &db,
            "SELECT count(*) FROM pg_indexes WHERE indexname = 't1_id'"
        ),
        "1"
    );
    assert!(has_column(&db, "public", "tiny", "z"));

    // After a deallocation the decision is still made on the real table: the rewrite of the
    // 1.2M-row `big` is refused, and nothing of the transaction stays.
    let out = script(
        &conn,
        &format!(
            "BEGIN;\nALTER TABLE tiny ADD COLUMN y int;\nSELECT dealloc();\n\
             ALTER TABLE big {ADD_X};\nCOMMIT;"
        ),
    );
    assert_refused(&out, "after DEALLOCATE ALL in a function");
    assert!(!has_column(&db, "public", "big", "x"));
    assert!(!has_column(&db, "public", "tiny", "y"));
}
