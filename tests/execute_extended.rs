//! Safe execution beyond a one-statement simple Query: DDL sent in the extended protocol
//! (asyncpg's named statements, Alembic's asyncpg dialect, psycopg 3 binary/prepared/pipelines)
//! and multi-statement simple Queries (`psql -c "BEGIN; ALTER ...; COMMIT"`) run under pgwarden's
//! timeouts and retries, and the client sees what a direct run shows. Real PostgreSQL, real
//! clients; blockers are waited for, never timed.
mod common;

use common::execute::*;
use common::*;

const ADD_NOTE_SQL: &str = "ALTER TABLE orders ADD COLUMN note text";

#[tokio::test(flavor = "multi_thread")]
async fn asyncpg_prepared_migration_waits_out_a_blocker_and_completes() {
    let s = Setup::new("ext_asyncpg_ok", &[]);
    let b = blocker(&s.db, "blocker_app").await;
    let url = s.url();
    let run = blocking(move || run_python("execute.py", &["asyncpg_prepared", &url, ADD_NOTE_SQL]));
    s.wait_retries(1);
    b.commit().await;
    let out = run.await.expect("python");
    out.assert_success();
    assert!(out.stdout.contains("\"ok\": true"), "{}", out.stdout);
    assert_eq!(s.columns("orders"), "id,amount,note");
    let audit = s.audit_log();
    let rec = audit
        .lines()
        .find(|l| l.contains("\"type\":\"attempts\""))
        .unwrap_or_else(|| panic!("no attempts record:\n{audit}"));
    assert!(rec.contains("\"outcome\":\"lock_timeout\""), "{rec}");
    assert!(rec.contains(&format!("\"pid\":{}", b.pid)), "{rec}");
    assert!(
        !s.proxy.logs().contains("require-lock-timeout"),
        "{}",
        s.proxy.logs()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn alembic_asyncpg_gives_up_after_the_budget_and_names_the_blocker() {
    let s = Setup::new(
        "ext_alembic_fail",
        &["quick_lock_timeout = \"300ms\"", "retry_budget = \"2s\""],
    );
    let b = blocker(&s.db, "nightly_report").await;
    let project = alembic_project(ADD_NOTE);
    let (path, conn) = (project.path().to_path_buf(), s.conn.clone());
    let out = blocking(move || common::alembic::alembic(&path, &conn, "asyncpg"))
        .await
        .expect("alembic");
    out.assert_failure();
    let text = format!("{}{}", out.stdout, out.stderr);
    assert!(
        text.contains("LockNotAvailableError"),
        "SQLSTATE 55P03 kept: {text}"
    );
    assert!(
        text.contains("could not get its ACCESS EXCLUSIVE lock on orders"),
        "{text}"
    );
    assert!(text.contains(&format!("pid {}", b.pid)), "{text}");
    assert!(text.contains("nightly_report"), "{text}");
    assert!(retries(&s.proxy) >= 1, "{}", s.proxy.logs());
    // Nothing of the migration stayed.
    assert_eq!(s.columns("orders"), "id,amount");
    assert_eq!(alembic_version(&s.db), "no table");
}

#[tokio::test(flavor = "multi_thread")]
async fn alembic_asyncpg_completes_once_the_blocker_commits() {
    let s = Setup::new("ext_alembic_ok", &[]);
    let b = blocker(&s.db, "report_job").await;
    let project = alembic_project(ADD_NOTE);
    let (path, conn) = (project.path().to_path_buf(), s.conn.clone());
    let run = blocking(move || common::alembic::alembic(&path, &conn, "asyncpg"));
    s.wait_retries(1);
    b.commit().await;
    let out = run.await.expect("alembic");
    out.assert_success();
    assert_eq!(s.columns("orders"), "id,amount,note");
    assert_eq!(alembic_version(&s.db), "e01");
    assert!(
        !s.proxy.logs().contains("require-lock-timeout"),
        "no timeout warnings: {}",
        s.proxy.logs()
    );
}

/// psycopg 3's extended protocol in its three shapes: unnamed Parse/Bind/Describe/Execute/Sync
/// in one write (`binary=True`, what a query with parameters sends), a named statement
/// prepared in its own request (`prepare=True`), and a named Parse executed before the same
/// Sync (a pipeline): each waits out the blocker under pgwarden's retries and completes.
#[tokio::test(flavor = "multi_thread")]
async fn psycopg3_extended_protocol_waits_out_a_blocker() {
    for (i, mode) in ["binary", "prepare", "pipeline"].into_iter().enumerate() {
        let s = Setup::new(&format!("ext_pg3_{mode}"), &[]);
        let b = blocker(&s.db, "blocker").await;
        let url = s.url();
        let sql = format!("ALTER TABLE orders ADD COLUMN c{i} int");
        let run =
            blocking(move || run_python("execute.py", &["psycopg3_extended", &url, &sql, mode]));
        s.wait_retries(1);
        b.commit().await;
        let out = run.await.expect("python");
        out.assert_success();
        assert!(
            out.stdout.contains("\"ok\": true"),
            "{mode}: {}",
            out.stdout
        );
        assert_eq!(s.columns("orders"), format!("id,amount,c{i}"), "{mode}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn psycopg3_extended_failure_keeps_55p03_and_the_blocker() {
    let s = Setup::new(
        "ext_pg3_fail",
        &["quick_lock_timeout = \"200ms\"", "retry_budget = \"1s\""],
    );
    let b = blocker(&s.db, "holder").await;
    let url = s.url();
    let v = tokio::task::spawn_blocking(move || {
        python_json(&["psycopg3_extended", &url, ADD_NOTE_SQL, "binary"])
    })
    .await
    .expect("python");
    assert_eq!(v["sqlstate"], "55P03", "{v}");
    let detail = v["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains(&format!("pid {}", b.pid)) && detail.contains("holder"),
        "{v}"
    );
    assert_eq!(s.columns("orders"), "id,amount");
}

#[tokio::test(flavor = "multi_thread")]
async fn extended_protocol_clients_see_their_own_settings() {
    let s = Setup::new("ext_show", &[]);
    let url = s.url();
    let v = tokio::task::spawn_blocking(move || python_json(&["extended_settings", &url]))
        .await
        .expect("python");
    let pair = |k: &str| -> Vec<String> {
        v[k].as_array()
            .map(|a| {
                a.iter()
                    .map(|x| x.as_str().unwrap_or("?").to_string())
                    .collect()
            })
            .unwrap_or_default()
    };
    for k in [
        "asyncpg_autocommit",
        "asyncpg_in_tx",
        "asyncpg_after_tx",
        "psycopg_binary",
        "psycopg_prepare",
        "psycopg_in_tx",
        "psycopg_pipeline_synced",
        "psycopg_end",
    ] {
        assert_eq!(pair(k), vec!["0", "0"], "{k}: {v}");
    }
    assert_eq!(pair("asyncpg_after_client_set"), vec!["7s", "0"], "{v}");
    assert_eq!(pair("asyncpg_after_set_local"), vec!["7s", "9s"], "{v}");
    assert_eq!(pair("asyncpg_end"), vec!["7s", "0"], "{v}");
    assert_eq!(s.columns("orders"), "id,amount,a1,a2,a3,a4,p1,p2,p3,p4");
    // They did run under pgwarden's timeouts: the audit log says so per statement.
    let audit = s.audit_log();
    let injected = audit
        .lines()
        .filter(|l| l.contains("ALTER TABLE orders ADD COLUMN") && l.contains("class timeouts"))
        .count();
    assert!(injected >= 7, "{audit}");
}

/// Several statements before one Sync: the server runs them in one implicit transaction and
/// pgwarden injects nothing there. The DDL runs as sent, the client's results are intact, and
/// the log and the audit record say why no timeouts were set.
#[tokio::test(flavor = "multi_thread")]
async fn a_pipeline_with_ddl_injects_nothing_and_says_so() {
    let s = Setup::new("ext_pipeline", &[]);
    let url = s.url();
    let v = tokio::task::spawn_blocking(move || python_json(&["pipeline_ddl", &url, ADD_NOTE_SQL]))
        .await
        .expect("python");
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["shown"], serde_json::json!(["0", "0"]), "{v}");
    assert_eq!(v["after"], serde_json::json!(["0", "0"]), "{v}");
    assert_eq!(s.columns("orders"), "id,amount,note");
    let logs = s.proxy.logs();
    assert!(logs.contains("not run under pgwarden's timeouts"), "{logs}");
    let audit = s.audit_log();
    assert!(
        audit
            .lines()
            .any(|l| l.contains("ADD COLUMN note") && l.contains("not run under pgwarden")),
        "{audit}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn psql_multi_statement_migration_waits_out_a_blocker() {
    let s = Setup::new("ext_multi_ok", &[]);
    let b = blocker(&s.db, "blocker_app").await;
    let conn = s.conn.clone();
    let run = blocking(move || {
        psql(
            &conn,
            &[
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                "BEGIN; ALTER TABLE orders ADD COLUMN note text; COMMIT",
            ],
        )
    });
    s.wait_retries(2);
    // The application's writes go through while pgwarden backs off.
    Cluster::shared().sql(&s.db, "INSERT INTO orders (amount) VALUES (7)");
    b.commit().await;
    let out = run.await.expect("psql");
    out.assert_success();
    assert_eq!(
        out.stdout.trim(),
        "BEGIN\nALTER TABLE\nCOMMIT",
        "{}",
        out.stdout
    );
    assert_eq!(s.columns("orders"), "id,amount,note");
    assert!(
        s.audit_log().contains("pgwarden split the Query"),
        "{}",
        s.audit_log()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn psql_multi_statement_gives_up_with_55p03_and_leaves_nothing() {
    let s = Setup::new(
        "ext_multi_fail",
        &["quick_lock_timeout = \"200ms\"", "retry_budget = \"1s\""],
    );
    let b = blocker(&s.db, "holder").await;
    let conn = s.conn.clone();
    let out = blocking(move || {
        psql(
            &conn,
            &[
                "-c",
                "ALTER TABLE customers ADD COLUMN x int; ALTER TABLE orders ADD COLUMN note text",
            ],
        )
    })
    .await
    .expect("psql");
    out.assert_failure();
    // The first ALTER holds its lock in the implicit block: pgwarden does not retry the
    // second while holding it, and says why.
    assert!(
        out.stderr
            .contains("already holds AccessExclusiveLock on public.customers"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains(&format!("pid {}", b.pid)),
        "{}",
        out.stderr
    );
    assert_eq!(s.columns("customers"), "id,name");
    assert_eq!(s.columns("orders"), "id,amount");
    assert_eq!(retries(&s.proxy), 0, "{}", s.proxy.logs());
}

/// psql's stderr without pgwarden's own policy warnings (a NoticeResponse and its HINT line),
/// which a direct run does not have by design.
fn without_policy_warnings(stderr: &str) -> String {
    let mut out = String::new();
    let mut skip_hint = false;
    for line in stderr.lines() {
        if line.starts_with("WARNING:  pgwarden: ") {
            skip_hint = true;
            continue;
        }
        if skip_hint && line.starts_with("HINT:  ") {
            skip_hint = false;
            continue;
        }
        skip_hint = false;
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// Each batch through pgwarden and directly, on two databases alike: psql prints the same
/// (every result, errors, warnings), the settings shown after it are the client's, and the
/// schema ends the same.
#[tokio::test(flavor = "multi_thread")]
async fn multi_statement_queries_answer_as_a_direct_run() {
    let c = Cluster::shared();
    let s = Setup::new("ext_multi_same", &[]);
    let direct_db = database("ext_multi_direct");
    let direct = c.conn(&direct_db);
    let batches = [
        "BEGIN; ALTER TABLE orders ADD COLUMN a int; COMMIT",
        "ALTER TABLE orders ADD COLUMN b int; SELECT count(*) FROM orders",
        "ALTER TABLE orders ADD COLUMN c int; ALTER TABLE orders ADD COLUMN c int",
        "BEGIN; ALTER TABLE orders ADD COLUMN d int; SELECT 1/0; COMMIT",
        "ALTER TABLE orders ADD COLUMN e int; CREATE INDEX CONCURRENTLY ix ON orders (amount)",
        "SET lock_timeout = '2s'; ALTER TABLE orders ADD COLUMN f int; SHOW lock_timeout",
        "CREATE TABLE t1 (a int); ALTER TABLE t1 ADD b int; ALTER TABLE customers ADD COLUMN g int",
        "ALTER TABLE orders ADD COLUMN h int; COMMIT",
        "COMMIT; ALTER TABLE orders ADD COLUMN i int",
    ];
    for batch in batches {
        let args = [
            "-c",
            batch,
            "-c",
            "SHOW lock_timeout",
            "-c",
            "SHOW statement_timeout",
        ];
        let (p, d) = (s.conn.clone(), direct.clone());
        let through = blocking(move || psql(&p, &args)).await.expect("psql");
        let plain = blocking(move || psql(&d, &args)).await.expect("psql");
        assert_eq!(through.stdout, plain.stdout, "{batch}");
        assert_eq!(
            without_policy_warnings(&through.stderr),
            plain.stderr,
            "{batch}"
        );
        assert_eq!(through.status.code(), plain.status.code(), "{batch}");
    }
    for table in ["orders", "customers", "t1"] {
        assert_eq!(s.columns(table), columns(&direct_db, table), "{table}");
    }
    let logs = s.proxy.logs();
    // The batch whose COMMIT follows a statement of the implicit block is forwarded unchanged.
    assert!(
        logs.contains("not run under pgwarden's timeouts: transaction control"),
        "{logs}"
    );
    let audit = s.audit_log();
    assert!(
        audit.matches("pgwarden split the Query").count() >= 6,
        "{audit}"
    );
}
