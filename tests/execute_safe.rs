//! Safe execution end to end (src/execute): pgwarden runs lock-taking DDL under its own
//! timeouts, retries lock waits, names the blocker, and leaves the client's settings alone.
//! Real PostgreSQL, real clients (psql, Alembic + psycopg2, asyncpg, psycopg 3, tokio-postgres),
//! small tables with blockers: no timing assertions, the conditions are waited for.
mod common;

use std::time::Duration;

use common::execute::*;
use common::*;

const MIGRATION: &str = "BEGIN;\nALTER TABLE orders ADD COLUMN note text;\nCOMMIT;\n";

#[tokio::test(flavor = "multi_thread")]
async fn psql_migration_waits_out_a_blocker_and_completes() {
    let s = Setup::new("exec_psql_ok", &[]);
    let (db, proxy) = (&s.db, &s.proxy);
    let conn = s.conn.clone();
    let b = blocker(db, "blocker_app").await;
    let run = blocking(move || psql_script(&conn, MIGRATION));
    wait_retries(proxy, 2);
    // While pgwarden backs off, the application's writes go through.
    Cluster::shared().sql(db, "INSERT INTO orders (amount) VALUES (7)");
    b.commit().await;
    let out = run.await.expect("psql");
    out.assert_success();
    assert_eq!(columns(db, "orders"), "id,amount,note");
    let logs = proxy.logs();
    assert!(logs.contains(&format!("pid {}", b.pid)), "{logs}");
    assert!(
        !logs.contains("require-lock-timeout"),
        "no timeout warnings: {logs}"
    );
    // Every attempt is in the audit log, and the report shows them.
    let audit = s.audit_path();
    let text = s.audit_log();
    let rec = text
        .lines()
        .find(|l| l.contains("\"type\":\"attempts\""))
        .unwrap_or_else(|| panic!("no attempts record:\n{text}"));
    assert!(rec.contains("\"outcome\":\"lock_timeout\""), "{rec}");
    assert!(rec.contains("\"outcome\":\"ok\""), "{rec}");
    assert!(rec.contains(&format!("\"pid\":{}", b.pid)), "{rec}");
    assert!(
        text.contains("set lock_timeout") || text.contains("class timeouts"),
        "{text}"
    );
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_pgwarden"));
    cmd.args(["audit", "report"]).arg(&audit);
    let report = run_cmd(cmd, None, CMD_TIMEOUT);
    report.assert_success();
    assert!(
        report.stdout.contains("attempt 1: lock_timeout"),
        "{}",
        report.stdout
    );
    assert!(report.stdout.contains("blocker_app"), "{}", report.stdout);
}

#[tokio::test(flavor = "multi_thread")]
async fn alembic_psycopg2_completes_once_the_blocker_commits() {
    let s = Setup::new("exec_alembic_ok", &[]);
    let (db, proxy) = (&s.db, &s.proxy);
    let conn = s.conn.clone();
    let b = blocker(db, "report_job").await;
    let project = alembic_project(ADD_NOTE);
    let path = project.path().to_path_buf();
    let run = blocking(move || common::alembic::alembic(&path, &conn, "psycopg2"));
    wait_retries(proxy, 1);
    b.commit().await;
    let out = run.await.expect("alembic");
    out.assert_success();
    assert_eq!(columns(db, "orders"), "id,amount,note");
    assert_eq!(alembic_version(db), "e01");
    assert!(
        !out.stderr.contains("pgwarden"),
        "no warnings reach Alembic: {}",
        out.stderr
    );
    assert!(
        !proxy.logs().contains("require-lock-timeout"),
        "{}",
        proxy.logs()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn alembic_psycopg2_gives_up_after_the_budget_and_names_the_blocker() {
    let s = Setup::new(
        "exec_alembic_fail",
        &["quick_lock_timeout = \"300ms\"", "retry_budget = \"2s\""],
    );
    let db = &s.db;
    let conn = s.conn.clone();
    let b = blocker(db, "nightly_report").await;
    let project = alembic_project(ADD_NOTE);
    let path = project.path().to_path_buf();
    let out = blocking(move || common::alembic::alembic(&path, &conn, "psycopg2"))
        .await
        .expect("alembic");
    out.assert_failure();
    let text = format!("{}{}", out.stdout, out.stderr);
    assert!(
        text.contains("LockNotAvailable"),
        "SQLSTATE 55P03 kept: {text}"
    );
    assert!(text.contains(&format!("pid {}", b.pid)), "{text}");
    assert!(text.contains("nightly_report"), "{text}");
    assert!(text.contains("in its transaction for"), "{text}");
    assert!(
        text.contains("could not get its ACCESS EXCLUSIVE lock on orders"),
        "{text}"
    );
    assert!(text.contains("times over"), "{text}");
    assert!(text.contains("pg_terminate_backend"), "HINT shown: {text}");
    // Nothing of the migration stayed.
    assert_eq!(columns(db, "orders"), "id,amount");
    assert_eq!(alembic_version(db), "no table");
    drop(b);
}

#[tokio::test(flavor = "multi_thread")]
async fn asyncpg_migration_completes_once_the_blocker_commits() {
    let s = Setup::new("exec_asyncpg", &[]);
    let (db, proxy) = (&s.db, &s.proxy);
    let url = s.url();
    let b = blocker(db, "blocker").await;
    let run = blocking(move || {
        run_python(
            "execute.py",
            &[
                "asyncpg_migrate",
                &url,
                "ALTER TABLE orders ADD COLUMN note text",
            ],
        )
    });
    wait_retries(proxy, 1);
    b.commit().await;
    let out = run.await.expect("python");
    out.assert_success();
    assert!(out.stdout.contains("\"ok\": true"), "{}", out.stdout);
    assert_eq!(columns(db, "orders"), "id,amount,note");
}

#[tokio::test(flavor = "multi_thread")]
async fn asyncpg_failure_keeps_55p03_and_leaves_nothing() {
    let s = Setup::new(
        "exec_asyncpg_fail",
        &["quick_lock_timeout = \"200ms\"", "retry_budget = \"1s\""],
    );
    let db = &s.db;
    let url = s.url();
    let b = blocker(db, "holder").await;
    let out = blocking(move || {
        run_python(
            "execute.py",
            &[
                "asyncpg_migrate",
                &url,
                "ALTER TABLE orders ADD COLUMN note text",
            ],
        )
    })
    .await
    .expect("python");
    out.assert_success();
    let v: serde_json::Value = serde_json::from_str(out.stdout.trim()).expect("json");
    assert_eq!(v["sqlstate"], "55P03", "{v}");
    let detail = v["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains(&format!("pid {}", b.pid)) && detail.contains("holder"),
        "{v}"
    );
    assert_eq!(columns(db, "orders"), "id,amount");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_transaction_already_holding_a_strong_lock_fails_at_once() {
    let s = Setup::new("exec_strong", &[]);
    let (db, proxy) = (&s.db, &s.proxy);
    let conn = s.conn.clone();
    let b = blocker(db, "blocker").await;
    let script = "BEGIN;\nALTER TABLE customers ADD COLUMN x int;\n\
                  ALTER TABLE orders ADD COLUMN note text;\nCOMMIT;\n";
    let out = blocking(move || psql_script(&conn, script))
        .await
        .expect("psql");
    out.assert_failure();
    assert!(
        out.stderr
            .contains("already holds AccessExclusiveLock on public.customers"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("transaction_per_migration=True"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains(&format!("pid {}", b.pid)),
        "{}",
        out.stderr
    );
    assert_eq!(
        retries(proxy),
        0,
        "no retry while holding a lock: {}",
        proxy.logs()
    );
    assert_eq!(columns(db, "customers"), "id,name");
    assert_eq!(columns(db, "orders"), "id,amount");
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_index_waits_for_an_older_transaction_and_completes() {
    // A short quick-class timeout: CREATE INDEX CONCURRENTLY must not run under it.
    let s = Setup::new("exec_cic", &["quick_lock_timeout = \"200ms\""]);
    let (db, conn) = (&s.db, s.conn.clone());
    let b = blocker(db, "old_tx").await;
    let run = blocking(move || {
        psql(
            &conn,
            &[
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                "CREATE INDEX CONCURRENTLY ix_amount ON orders (amount)",
            ],
        )
    });
    // Waiting for the old transaction, for longer than the quick lock_timeout.
    let waiting = wait_until(Duration::from_secs(60), || {
        Cluster::shared().sql(
            db,
            "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'CREATE INDEX CONCURRENTLY%' \
             AND wait_event_type = 'Lock' AND now() - query_start > interval '1 second'",
        ) == "1"
    });
    assert!(waiting, "the build is not waiting");
    b.commit().await;
    run.await.expect("psql").assert_success();
    assert_eq!(
        Cluster::shared().sql(
            db,
            "SELECT indisvalid FROM pg_index WHERE indexrelid = 'ix_amount'::regclass"
        ),
        "t"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn psql_sees_its_own_settings_after_every_sequence() {
    let db = database("exec_show");
    let c = Cluster::shared();
    c.sql(
        "postgres",
        &format!("ALTER DATABASE \"{db}\" SET statement_timeout = '45s'"),
    );
    let proxy = config(&[]).start(c);
    let conn = c.conn(&db).with_port(proxy.port());
    let script = "SHOW lock_timeout; SHOW statement_timeout;
ALTER TABLE orders ADD COLUMN a int;
SHOW lock_timeout;
SHOW statement_timeout;
BEGIN;
ALTER TABLE orders ADD COLUMN b int;
SHOW lock_timeout;
SHOW statement_timeout;
COMMIT;
SET lock_timeout = '7s';
ALTER TABLE orders ADD COLUMN c int;
SHOW lock_timeout;
BEGIN;
SET LOCAL lock_timeout = '2s';
ALTER TABLE orders ADD COLUMN d int;
SHOW lock_timeout;
ROLLBACK;
SHOW lock_timeout;
SHOW statement_timeout;
";
    let out = psql_stdin(
        &conn,
        &["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1"],
        Some(script.as_bytes()),
    );
    out.assert_success();
    let shown: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| {
            !l.is_empty()
                && !l.starts_with("ALTER")
                && !l.starts_with("BEGIN")
                && !l.starts_with("COMMIT")
                && !l.starts_with("SET")
                && !l.starts_with("ROLLBACK")
        })
        .collect();
    assert_eq!(
        shown,
        vec!["0", "45s", "0", "45s", "0", "45s", "7s", "2s", "7s", "45s"],
        "{}",
        out.stdout
    );
    assert_eq!(columns(&db, "orders"), "id,amount,a,b,c");
    // pgwarden did run them under its own timeouts (the log says so per statement).
    assert!(
        !proxy.logs().contains("require-lock-timeout"),
        "{}",
        proxy.logs()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn asyncpg_and_psycopg3_see_their_own_settings() {
    let s = Setup::new("exec_show_py", &[]);
    let db = &s.db;
    let url = s.url();
    let u = url.clone();
    let out = blocking(move || run_python("execute.py", &["asyncpg_settings", &u]))
        .await
        .expect("python");
    out.assert_success();
    let v: serde_json::Value = serde_json::from_str(out.stdout.trim()).expect("json");
    let pair = |k: &str| {
        v[k].as_array()
            .map(|a| {
                a.iter()
                    .map(|x| x.as_str().unwrap_or("?").to_string())
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default()
    };
    for k in ["start", "after_autocommit", "in_tx", "after_tx"] {
        assert_eq!(pair(k), vec!["0", "0"], "{k}: {v}");
    }
    assert_eq!(pair("after_client_set"), vec!["7s", "0"], "{v}");
    assert_eq!(pair("in_tx_after_set_local"), vec!["7s", "9s"], "{v}");
    assert_eq!(pair("end"), vec!["7s", "0"], "{v}");
    let out = blocking(move || run_python("execute.py", &["psycopg3_settings", &url]))
        .await
        .expect("python");
    out.assert_success();
    let v: serde_json::Value = serde_json::from_str(out.stdout.trim()).expect("json");
    for k in ["start", "after_extended", "in_pipeline", "in_tx", "end"] {
        let got: Vec<&str> = v[k]
            .as_array()
            .map(|a| a.iter().filter_map(|x| x.as_str()).collect())
            .unwrap_or_default();
        assert_eq!(got, vec!["0", "0"], "{k}: {v}");
    }
    assert_eq!(columns(db, "orders"), "id,amount,a1,a2,a3,a4,a5,p1,p2,p3");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_clients_own_lock_timeout_is_respected_and_not_retried() {
    let s = Setup::new("exec_own", &[]);
    let (db, proxy) = (&s.db, &s.proxy);
    let conn = s.conn.clone();
    let _b = blocker(db, "blocker").await;
    let script = "BEGIN;\nSET LOCAL lock_timeout = '300ms';\nALTER TABLE orders ADD COLUMN note text;\nCOMMIT;\n";
    let out = blocking(move || psql_script(&conn, script))
        .await
        .expect("psql");
    out.assert_failure();
    assert!(
        out.stderr
            .contains("canceling statement due to lock timeout"),
        "the server's own error: {}",
        out.stderr
    );
    assert!(!out.stderr.contains("pgwarden"), "{}", out.stderr);
    assert_eq!(retries(proxy), 0, "{}", proxy.logs());
    assert_eq!(columns(db, "orders"), "id,amount");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cancel_during_the_backoff_ends_the_retries_with_57014() {
    let s = Setup::new(
        "exec_cancel",
        &[
            "quick_lock_timeout = \"200ms\"",
            "backoff_initial = \"20s\"",
            "backoff_max = \"20s\"",
            "retry_budget = \"10min\"",
        ],
    );
    let (db, proxy) = (&s.db, &s.proxy);
    let b = blocker(db, "blocker").await;
    let client = Cluster::shared()
        .conn(db)
        .with_port(proxy.port())
        .connect()
        .await;
    let token = client.cancel_token();
    client.batch_execute("BEGIN").await.expect("begin");
    let alter = tokio::spawn(async move {
        let r = client
            .simple_query("ALTER TABLE orders ADD COLUMN note text")
            .await;
        (client, r)
    });
    let p = &proxy;
    let retried = tokio::task::block_in_place(|| {
        wait_until(Duration::from_secs(60), || {
            p.logs().contains("pgwarden rolls back the attempt")
        })
    });
    assert!(retried, "{}", proxy.logs());
    token
        .cancel_query(tokio_postgres::NoTls)
        .await
        .expect("cancel");
    let (client, r) = alter.await.expect("task");
    let e = r.expect_err("cancelled");
    let db_err = e.as_db_error().expect("server error");
    assert_eq!(db_err.code().code(), "57014", "{db_err:?}");
    assert!(
        db_err
            .detail()
            .unwrap_or_default()
            .contains("pgwarden was waiting to retry"),
        "{db_err:?}"
    );
    // The transaction is aborted as after any cancel; the session goes on.
    let e = client.simple_query("SELECT 1").await.expect_err("aborted");
    assert_eq!(e.code().map(|c| c.code()), Some("25P02"), "{e:?}");
    client.batch_execute("ROLLBACK").await.expect("rollback");
    assert_eq!(columns(db, "orders"), "id,amount");
    drop(b);
}
