//! The audit trail is never wrong: one record per statement of a multi-statement Query with
//! its own outcome, savepoints tracked as PostgreSQL tracks them, two-phase commit outcomes
//! from any session, the would-be decision of dry-run, and Alembic attribution — each through
//! a real client and the real proxy, checked against the database over a direct connection.
mod common;

use std::path::Path;

use common::alembic::{alembic, project};
use common::*;
use serde_json::Value;

/// The audit log of one proxy, read back.
struct Trail {
    recs: Vec<Value>,
}

impl Trail {
    fn read(path: &Path) -> Trail {
        Trail {
            recs: audit_records(path),
        }
    }

    fn of<'a>(&'a self, t: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
        self.recs.iter().filter(move |r| r["type"] == t)
    }

    /// The statement record whose text is exactly `text` (trimmed, without a trailing `;`).
    fn statement(&self, text: &str) -> &Value {
        let found: Vec<&Value> = self
            .of("statement")
            .filter(|r| {
                r["text"]
                    .as_str()
                    .is_some_and(|t| t.trim().trim_end_matches(';').trim() == text)
            })
            .collect();
        assert_eq!(found.len(), 1, "{text}: {found:#?}\n{:#?}", self.recs);
        found[0]
    }

    fn outcome(&self, text: &str) -> Value {
        let s = self.statement(text);
        self.of("outcome")
            .find(|r| r["session_id"] == s["session_id"] && r["seq"] == s["seq"])
            .unwrap_or_else(|| panic!("no outcome for {text}: {:#?}", self.recs))["outcome"]
            .clone()
    }

    /// The last fate record covering the statement (a COMMIT PREPARED supersedes `prepared`).
    fn fate(&self, text: &str) -> Option<Value> {
        let s = self.statement(text);
        self.of("fate")
            .filter(|r| {
                r["session_id"] == s["session_id"]
                    && r["seqs"].as_array().is_some_and(|v| v.contains(&s["seq"]))
            })
            .last()
            .cloned()
    }

    fn fate_is(&self, text: &str, fate: &str) -> Value {
        let f = self
            .fate(text)
            .unwrap_or_else(|| panic!("no fate for {text}: {:#?}", self.recs));
        assert_eq!(f["fate"], fate, "{text}: {f}");
        f
    }
}

fn proxy(log: &Path, extra: &str) -> ProxyProcess {
    ProxyProcess::start(
        &Cluster::shared().addr(),
        &format!("[audit]\npath = \"{}\"\n{extra}", log.display()),
    )
}

/// Which of `tables` exist, asked over a direct connection.
fn existing(db: &str, tables: &[&str]) -> Vec<String> {
    let list = tables
        .iter()
        .map(|t| format!("'{t}'"))
        .collect::<Vec<_>>()
        .join(",");
    let out = Cluster::shared().sql(
        db,
        &format!(
            "SELECT string_agg(relname, ',' ORDER BY relname) FROM pg_class \
             WHERE relname IN ({list}) AND relkind = 'r'"
        ),
    );
    out.split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

#[test]
fn multi_statement_queries_get_one_record_per_statement_with_its_own_outcome() {
    let c = Cluster::shared();
    let db = c.fresh_db("trail_multi");
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("audit.jsonl");
    let px = proxy(&log, "");
    let conn = c.conn(&db).with_port(px.port());
    // psycopg2 execute("a; b"): the client got 42P01, the SET was fine.
    let out = run_python("audit_trail.py", &["multi", &conn.url()]);
    out.assert_success();
    assert!(out.stdout.contains("42P01"), "{}", out.stdout);
    // psql -c: one Query, the second statement fails, the third never runs.
    psql(
        &conn,
        &[
            "-c",
            "CREATE TABLE m_one (id int); CREATE TABLE m_one (id int); CREATE TABLE m_two (id int)",
        ],
    );
    let t = Trail::read(&log);
    assert_eq!(t.outcome("SET lock_timeout = '1s'")["tag"], "SET");
    let o = t.outcome("ALTER TABLE missing ADD COLUMN y int");
    assert_eq!(
        (&o["result"], &o["sqlstate"]),
        (&"error".into(), &"42P01".into()),
        "{o}"
    );
    let stmts: Vec<&Value> = t
        .of("statement")
        .filter(|r| r["text"].as_str().is_some_and(|s| s.contains("m_one")))
        .collect();
    assert_eq!(stmts.len(), 2, "{stmts:#?}");
    let outcome_of = |s: &Value| {
        t.of("outcome")
            .find(|o| o["session_id"] == s["session_id"] && o["seq"] == s["seq"])
            .map(|o| o["outcome"].clone())
            .unwrap_or(Value::Null)
    };
    assert_eq!(outcome_of(stmts[0])["tag"], "CREATE TABLE");
    assert_eq!(outcome_of(stmts[1])["sqlstate"], "42P07");
    assert_eq!(
        t.outcome("CREATE TABLE m_two (id int)")["result"],
        "skipped"
    );
    // The implicit transaction rolled back as a whole: m_one does not exist. The skipped
    // statement never ran: no fate claims it.
    let fate_of = |s: &Value| {
        t.of("fate")
            .find(|f| {
                f["session_id"] == s["session_id"]
                    && f["seqs"].as_array().is_some_and(|v| v.contains(&s["seq"]))
            })
            .map(|f| f["fate"].clone())
    };
    assert_eq!(fate_of(stmts[0]), Some("rolled_back".into()));
    assert_eq!(fate_of(stmts[1]), Some("rolled_back".into()));
    assert_eq!(t.fate("CREATE TABLE m_two (id int)"), None);
    assert!(existing(&db, &["m_one", "m_two"]).is_empty());
    // The report shows each statement's own outcome.
    let text = audit_report(&log);
    assert!(text.contains("-> SET"), "{text}");
    assert!(text.contains("ERROR 42P01"), "{text}");
    assert!(text.contains("not run (an earlier statement"), "{text}");
    assert!(text.contains("0 undecided, 1 not run"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn savepoint_rollback_inside_one_query_undoes_only_its_statements() {
    let c = Cluster::shared();
    let db = c.fresh_db("trail_sp_query");
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("audit.jsonl");
    let px = proxy(&log, "");
    let client = c.conn(&db).with_port(px.port()).connect().await;
    client
        .batch_execute(
            "BEGIN; SAVEPOINT a; CREATE TABLE q_one (id int); ROLLBACK TO a; \
             CREATE TABLE q_two (id int); SAVEPOINT b; CREATE TABLE q_three (id int); \
             ROLLBACK AND CHAIN; CREATE TABLE q_four (id int); COMMIT AND CHAIN; \
             CREATE TABLE q_five (id int); COMMIT",
        )
        .await
        .expect("batch");
    drop(client);
    let t = Trail::read(&log);
    let f = t.fate_is("CREATE TABLE q_one (id int)", "rolled_back");
    assert_eq!(f["reason"], "savepoint_rollback", "{f}");
    t.fate_is("CREATE TABLE q_two (id int)", "rolled_back");
    t.fate_is("CREATE TABLE q_three (id int)", "rolled_back");
    t.fate_is("CREATE TABLE q_four (id int)", "committed");
    t.fate_is("CREATE TABLE q_five (id int)", "committed");
    assert_eq!(
        existing(&db, &["q_one", "q_two", "q_three", "q_four", "q_five"]),
        vec!["q_five", "q_four"]
    );
}

#[test]
fn savepoints_before_the_first_ddl_and_same_names_are_tracked_like_postgres() {
    let c = Cluster::shared();
    let db = c.fresh_db("trail_sp_django");
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("audit.jsonl");
    let px = proxy(&log, "");
    let conn = c.conn(&db).with_port(px.port());
    run_python("audit_trail.py", &["savepoints", &conn.url()]).assert_success();
    let t = Trail::read(&log);
    for (table, fate) in [
        ("sp_three", "rolled_back"),
        ("sp_four", "committed"),
        ("sp_five", "rolled_back"),
        ("sp_six", "rolled_back"),
        ("sp_seven", "committed"),
        ("sp_eight", "committed"),
    ] {
        t.fate_is(&format!("CREATE TABLE {table} (id int)"), fate);
    }
    assert_eq!(
        t.outcome("ALTER TABLE sp_missing ADD COLUMN y int")["sqlstate"],
        "42P01"
    );
    t.fate_is("ALTER TABLE sp_missing ADD COLUMN y int", "rolled_back");
    assert_eq!(
        existing(
            &db,
            &["sp_three", "sp_four", "sp_five", "sp_six", "sp_seven", "sp_eight"]
        ),
        vec!["sp_eight", "sp_four", "sp_seven"]
    );
    assert!(
        t.of("fate").all(|f| f["fate"] != "unknown"),
        "{:#?}",
        t.recs
    );
}

/// psycopg 3's nested `transaction()` blocks send SAVEPOINT / RELEASE / ROLLBACK TO.
#[test]
fn psycopg3_nested_transactions_are_tracked() {
    let c = Cluster::shared();
    let db = c.fresh_db("trail_sp_psycopg3");
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("audit.jsonl");
    let px = proxy(&log, "");
    let conn = c.conn(&db).with_port(px.port());
    run_python("audit_trail.py", &["savepoints3", &conn.url()]).assert_success();
    let t = Trail::read(&log);
    t.fate_is("CREATE TABLE p3_one (id int)", "committed");
    t.fate_is("CREATE TABLE p3_two (id int)", "rolled_back");
    t.fate_is("CREATE TABLE p3_three (id int)", "committed");
    assert_eq!(
        existing(&db, &["p3_one", "p3_two", "p3_three"]),
        vec!["p3_one", "p3_three"]
    );
}

#[test]
fn two_phase_commit_outcomes_are_recorded_from_any_session() {
    let c = Cluster::shared();
    let db = c.fresh_db("trail_2pc");
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("audit.jsonl");
    let px = proxy(&log, "");
    let conn = c.conn(&db).with_port(px.port());
    psql(
        &conn,
        &[
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            "BEGIN",
            "-c",
            "CREATE TABLE tp_one (id int)",
            "-c",
            "PREPARE TRANSACTION 'trail-g1'",
            "-c",
            "BEGIN",
            "-c",
            "CREATE TABLE tp_two (id int)",
            "-c",
            "PREPARE TRANSACTION 'trail-g2'",
        ],
    )
    .assert_success();
    // Another session (a transaction manager) finishes them.
    psql(&conn, &["-c", "COMMIT PREPARED 'trail-g1'"]).assert_success();
    psql(&conn, &["-c", "ROLLBACK PREPARED 'trail-g2'"]).assert_success();
    let t = Trail::read(&log);
    let f = t.fate_is("CREATE TABLE tp_one (id int)", "committed");
    assert_eq!(f["reason"], "commit_prepared", "{f}");
    assert_eq!(f["gid"], "trail-g1");
    let preparer = &t.statement("CREATE TABLE tp_one (id int)")["session_id"];
    assert_eq!(&f["session_id"], preparer);
    assert!(
        f["finished_by"].is_string() && &f["finished_by"] != preparer,
        "{f}"
    );
    let f = t.fate_is("CREATE TABLE tp_two (id int)", "rolled_back");
    assert_eq!(f["reason"], "rollback_prepared", "{f}");
    assert_eq!(existing(&db, &["tp_one", "tp_two"]), vec!["tp_one"]);
    let text = audit_report(&log);
    assert!(text.contains("gid trail-g1, by session"), "{text}");
    assert!(text.contains("0 undecided"), "{text}");
}

#[test]
fn two_phase_commit_after_a_restart_is_joined_by_gid_in_the_report() {
    let c = Cluster::shared();
    let db = c.fresh_db("trail_2pc_restart");
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("audit.jsonl");
    {
        let px = proxy(&log, "");
        let conn = c.conn(&db).with_port(px.port());
        psql(
            &conn,
            &[
                "-c",
                "BEGIN",
                "-c",
                "CREATE TABLE tr_one (id int)",
                "-c",
                "PREPARE TRANSACTION 'trail-r1'",
            ],
        )
        .assert_success();
    }
    // A new pgwarden process (same log) does not know the gid: it records the outcome by gid.
    let px = proxy(&log, "");
    psql(
        &c.conn(&db).with_port(px.port()),
        &["-c", "COMMIT PREPARED 'trail-r1'"],
    )
    .assert_success();
    let t = Trail::read(&log);
    let f = t.fate_is("CREATE TABLE tr_one (id int)", "prepared");
    assert_eq!(f["gid"], "trail-r1");
    let fin = t
        .of("fate")
        .find(|r| r["reason"] == "commit_prepared")
        .expect("commit_prepared record");
    assert_eq!(fin["gid"], "trail-r1");
    assert_eq!(fin["seqs"], serde_json::json!([]));
    let rep = std::process::Command::new(env!("CARGO_BIN_EXE_pgwarden"))
        .args(["audit", "report", "--format", "json"])
        .arg(&log)
        .output()
        .expect("report");
    let v: Value = serde_json::from_slice(&rep.stdout).expect("json report");
    let st = v["sessions"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|s| s["groups"].as_array().into_iter().flatten())
        .flat_map(|g| g["statements"].as_array().into_iter().flatten())
        .find(|s| s["text"].as_str().is_some_and(|t| t.contains("tr_one")))
        .expect("statement in report")
        .clone();
    assert_eq!(st["fate"], "committed", "{st}");
    assert_eq!(existing(&db, &["tr_one"]), vec!["tr_one"]);
}

#[test]
fn dry_run_records_the_would_be_decision() {
    let c = Cluster::shared();
    let db = c.fresh_db("trail_dry");
    c.sql(
        &db,
        "CREATE TABLE dr (id int); INSERT INTO dr SELECT generate_series(1, 1000); ANALYZE dr;",
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("audit.jsonl");
    let px = proxy(&log, "[policy]\nmode = \"dry-run\"\n");
    let conn = c.conn(&db).with_port(px.port());
    psql(&conn, &["-c", "ALTER TABLE dr DROP COLUMN id"]).assert_success();
    let t = Trail::read(&log);
    let s = t.statement("ALTER TABLE dr DROP COLUMN id");
    assert_eq!(s["decision"], "warn", "{s}");
    assert_eq!(s["would"], "reject", "{s}");
}

/// Alembic, default single transaction, psycopg2: s03 runs CONCURRENTLY in an
/// autocommit_block, u01 fails on the server and never writes its version row.
#[test]
fn alembic_statements_are_attributed_to_their_revision() {
    let c = Cluster::shared();
    let db = c.fresh_db("trail_alembic");
    let setup = std::fs::read_to_string(repo_root().join("tests/alembic_project/setup.sql"))
        .expect("setup.sql");
    c.sql(&db, &setup);
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("audit.jsonl");
    let px = proxy(&log, "");
    let conn = c.conn(&db).with_port(px.port());
    alembic(project(Some("u_failing"), None).path(), &conn, "psycopg2").assert_failure();
    let t = Trail::read(&log);
    let conc = t
        .of("statement")
        .find(|r| {
            r["text"]
                .as_str()
                .is_some_and(|s| s.contains("CONCURRENTLY"))
        })
        .expect("CONCURRENTLY statement")
        .clone();
    // Its own fate: committed in autocommit; its revision: named by the transaction that
    // wrote s03's version row.
    let claimed = t.of("fate").any(|f| {
        f["migrations"].as_array().into_iter().flatten().any(|m| {
            m["revision"] == "s03"
                && m["seqs"]
                    .as_array()
                    .is_some_and(|v| v.contains(&conc["seq"]))
        })
    });
    assert!(claimed, "{:#?}", t.recs);
    let f = t.fate_is("ALTER TABLE no_such_table ADD COLUMN x int", "rolled_back");
    assert_eq!(f["after_revision"]["revision"], "s06", "{f}");
    let text = audit_report(&log);
    assert!(text.contains("the revision after alembic s06"), "{text}");
}

/// `COPY ... TO PROGRAM` runs a shell command on the server: it is a utility statement, so it
/// is analysed and audited (plain COPY to the client stays DML and unaudited).
#[test]
fn copy_program_is_audited_as_a_utility_statement() {
    let c = Cluster::shared();
    let db = c.fresh_db("trail_copy");
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("audit.jsonl");
    let px = proxy(&log, "");
    let conn = c.conn(&db).with_port(px.port());
    psql(
        &conn,
        &[
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            "COPY (SELECT 1) TO PROGRAM 'cat > /dev/null'",
            "-c",
            "COPY (SELECT 2) TO STDOUT",
        ],
    )
    .assert_success();
    let t = Trail::read(&log);
    assert_eq!(
        t.outcome("COPY (SELECT 1) TO PROGRAM 'cat > /dev/null'")["tag"],
        "COPY 1"
    );
    t.fate_is("COPY (SELECT 1) TO PROGRAM 'cat > /dev/null'", "committed");
    assert!(
        t.of("statement")
            .all(|r| r["text"] != "COPY (SELECT 2) TO STDOUT"),
        "{:#?}",
        t.recs
    );
}

/// A routine body is analysed like a DO block: DDL in it gets that DDL's findings, dynamic SQL
/// gets `opaque-ddl`, for PL/pgSQL, SQL-string and SQL-standard (`BEGIN ATOMIC`) bodies.
#[test]
fn routine_bodies_get_the_analysis_a_do_block_gets() {
    let c = Cluster::shared();
    let db = c.fresh_db("trail_routine");
    c.sql(
        &db,
        "CREATE TABLE rb (id int, x int); INSERT INTO rb SELECT g, g FROM generate_series(1, 1000) g; ANALYZE rb;",
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("audit.jsonl");
    let px = proxy(&log, "");
    let conn = c.conn(&db).with_port(px.port());
    let cases = [
        ("DO $$ BEGIN ALTER TABLE rb DROP COLUMN x; END $$", "ban-drop-column"),
        (
            "CREATE FUNCTION rb_f1() RETURNS void LANGUAGE plpgsql AS $$ BEGIN ALTER TABLE rb DROP COLUMN x; END $$",
            "ban-drop-column",
        ),
        (
            "CREATE OR REPLACE PROCEDURE rb_p2() LANGUAGE sql AS $$ ALTER TABLE rb DROP COLUMN x $$",
            "ban-drop-column",
        ),
        (
            "CREATE FUNCTION rb_f3(t text) RETURNS void LANGUAGE plpgsql AS $$ BEGIN EXECUTE format('ALTER TABLE %I DROP COLUMN x', t); END $$",
            "opaque-ddl",
        ),
    ];
    for (sql, _) in cases {
        psql(&conn, &["-c", sql]).assert_failure();
    }
    // A routine without DDL in its body is created as before.
    psql(
        &conn,
        &[
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            "CREATE FUNCTION rbok_f() RETURNS int LANGUAGE plpgsql AS $$ BEGIN UPDATE rb SET x = 1 WHERE id = 1; RETURN 1; END $$",
        ],
    )
    .assert_success();
    let t = Trail::read(&log);
    for (sql, rule) in cases {
        let s = t.statement(sql);
        assert_eq!(s["decision"], "reject", "{s}");
        assert!(
            s["rules"]
                .as_array()
                .is_some_and(|r| r.contains(&rule.into())),
            "{rule}: {s}"
        );
    }
    let out = c.sql(
        &db,
        "SELECT count(*) FROM pg_proc WHERE proname LIKE 'rb\\_%'",
    );
    assert_eq!(out.trim(), "0", "{out}");
    let cols = c.sql(
        &db,
        "SELECT count(*) FROM information_schema.columns WHERE table_name = 'rb'",
    );
    assert_eq!(cols.trim(), "2");
}

/// A refused multi-statement Query runs none of its statements: every record says `reject`,
/// the rule sits on the statement it fired on, and each gets the refusal as its outcome.
#[test]
fn refused_multi_statement_query_records_every_statement_as_refused() {
    let c = Cluster::shared();
    let db = c.fresh_db("trail_refused");
    c.sql(
        &db,
        "CREATE TABLE rq (id int, x int); INSERT INTO rq SELECT g, g FROM generate_series(1, 1000) g; ANALYZE rq;",
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("audit.jsonl");
    let px = proxy(&log, "");
    let conn = c.conn(&db).with_port(px.port());
    psql(
        &conn,
        &[
            "-c",
            "CREATE TABLE rq_new (id int); ALTER TABLE rq DROP COLUMN x",
        ],
    )
    .assert_failure();
    let t = Trail::read(&log);
    let first = t.statement("CREATE TABLE rq_new (id int)");
    let second = t.statement("ALTER TABLE rq DROP COLUMN x");
    assert_eq!(first["decision"], "reject");
    assert_eq!(first["rules"], serde_json::json!([]));
    assert!(first["rewritten"].is_null(), "{first}");
    assert_eq!(second["decision"], "reject");
    assert!(
        second["rules"]
            .as_array()
            .is_some_and(|r| r.contains(&"ban-drop-column".into())),
        "{second}"
    );
    assert!(second["rewritten"].is_string(), "{second}");
    for sql in [
        "CREATE TABLE rq_new (id int)",
        "ALTER TABLE rq DROP COLUMN x",
    ] {
        assert_eq!(t.outcome(sql)["result"], "error", "{sql}");
        t.fate_is(sql, "rolled_back");
    }
    assert!(existing(&db, &["rq_new"]).is_empty());
}

/// `alembic downgrade -1` after an upgrade in the same log: the UPDATE of the version row
/// looks like an upgrade step (`SET 's05' WHERE 's06'`); the report knows the step s05 → s06
/// was an upgrade, so this one is the downgrade *of s06*, and says so.
#[test]
fn alembic_downgrade_is_labelled_with_the_revision_it_undoes() {
    let c = Cluster::shared();
    let db = c.fresh_db("trail_downgrade");
    let setup = std::fs::read_to_string(repo_root().join("tests/alembic_project/setup.sql"))
        .expect("setup.sql");
    c.sql(&db, &setup);
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("audit.jsonl");
    // dry-run: the downgrade's narrowing ALTER (on 1M rows) would be refused; here it must
    // run so its version row arrives. Its record says what enforce mode would have done.
    let px = proxy(&log, "[policy]\nmode = \"dry-run\"\n");
    let conn = c.conn(&db).with_port(px.port());
    let proj = project(None, None);
    alembic(proj.path(), &conn, "psycopg2").assert_success();
    let url = conn
        .url()
        .replacen("postgresql://", "postgresql+psycopg2://", 1);
    let mut cmd = std::process::Command::new(python());
    cmd.args(["-m", "alembic", "-c"])
        .arg(proj.path().join("alembic.ini"))
        .args(["downgrade", "-1"])
        .current_dir(proj.path())
        .env("PGWARDEN_TEST_URL", url);
    run_cmd(cmd, None, std::time::Duration::from_secs(300)).assert_success();
    let t = Trail::read(&log);
    let down = t
        .of("fate")
        .flat_map(|f| f["migrations"].as_array().into_iter().flatten())
        .find(|m| m["revision"] == "s05" && m["from"] == "s06")
        .expect("downgrade step recorded")
        .clone();
    assert_eq!(down["tool"], "alembic", "{down}");
    let text = audit_report(&log);
    assert!(
        text.contains("revision alembic s06 (upgrade from s05)"),
        "{text}"
    );
    assert!(
        text.contains("revision alembic downgrade of s06 (to s05)"),
        "{text}"
    );
    // The downgrade's ALTER sits under that label.
    let at = text.find("downgrade of s06").unwrap_or(usize::MAX);
    let alter = text.rfind("TYPE VARCHAR(50)").unwrap_or(0);
    assert!(at < alter, "{text}");
    let v = c.sql(&db, "SELECT version_num FROM alembic_version");
    assert_eq!(v.trim(), "s05");
    let narrowing = t
        .of("statement")
        .find(|r| {
            r["text"]
                .as_str()
                .is_some_and(|s| s.contains("TYPE VARCHAR(50)"))
        })
        .expect("downgrade ALTER");
    assert_eq!(
        (&narrowing["decision"], &narrowing["would"]),
        (&"warn".into(), &"reject".into()),
        "{narrowing}"
    );
}

/// What `pgwarden audit report` prints for the log at `log`.
fn audit_report(log: &std::path::Path) -> String {
    let rep = std::process::Command::new(env!("CARGO_BIN_EXE_pgwarden"))
        .args(["audit", "report"])
        .arg(log)
        .output()
        .expect("run pgwarden audit report");
    String::from_utf8_lossy(&rep.stdout).into_owned()
}
