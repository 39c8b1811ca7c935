//! Multi-step rewrites of DDL sent in the extended protocol (issue 16): Alembic's async
//! template on SQLAlchemy's asyncpg dialect (every statement a named prepared statement:
//! Parse/Describe/Flush, then Bind/Execute/Sync), raw asyncpg and psycopg 3's extended protocol,
//! through pgwarden with its default config on a 1,050,000-row `orders` table. Each ends in the
//! schema a direct run produces, or fails saying what was committed and what is left.
mod common;

use std::time::Duration;

use common::rewrite::*;
use common::*;

/// Alembic with the asyncpg dialect through `px`, on `db`.
fn alembic_async(p: &tempfile::TempDir, px: &ProxyProcess, db: &str, per: bool) -> CmdOutput {
    let conn = Cluster::shared().conn(db).with_port(px.port());
    alembic(p.path(), &conn, "asyncpg", per)
}

/// The five statements through the asyncpg dialect, in one transaction mode.
fn five_statements(per_migration: bool) {
    let p = project(&REVISIONS);
    let expected = direct_schema();
    let (px, audit) = proxy();
    let db = fresh("rwa_five");
    let out = alembic_async(&p, &px, &db, per_migration);
    assert!(
        out.status.success(),
        "per_migration={per_migration}: refused or failed through pgwarden:\n{}\n{}\nproxy log:\n{}",
        out.stdout,
        out.stderr,
        px.logs()
    );
    assert_eq!(
        schema(&db),
        expected,
        "per_migration={per_migration}: schema differs from a direct run"
    );
    assert_eq!(leftovers(&db), "");
    let logs = px.logs();
    assert!(logs.contains("completion steps queued"), "{logs}");
    let a = audit_text(&audit);
    assert!(a.contains("\"type\":\"steps\""), "{a}");
    for step in [
        "VALIDATE CONSTRAINT orders_customer_id_fkey",
        "CREATE INDEX CONCURRENTLY ix_orders_amount",
        "CREATE UNIQUE INDEX CONCURRENTLY orders_ref_key",
        "ADD CONSTRAINT orders_ref_key UNIQUE USING INDEX orders_ref_key",
    ] {
        assert!(a.contains(step), "`{step}` missing from the audit log: {a}");
    }
    assert!(a.contains("after COMMIT"), "{a}");
}

/// Alembic's default: the whole upgrade is one transaction, every completion step waits for
/// its COMMIT (asyncpg sends it as a simple Query).
#[test]
fn asyncpg_five_statements_in_one_transaction_end_like_a_direct_run() {
    five_statements(false);
}

/// transaction_per_migration=True: each revision's COMMIT runs that revision's steps.
#[test]
fn asyncpg_five_statements_one_transaction_per_revision_end_like_a_direct_run() {
    five_statements(true);
}

/// Rows violating the foreign key, NULLs for NOT NULL, duplicates for the unique constraint:
/// the transaction commits, the completion steps fail, and the COMMIT's answer is pgwarden's
/// error with its whole text in Alembic's traceback; exit non-zero, no INVALID index, and the
/// audit log has every step with its outcome.
#[test]
fn asyncpg_failed_completion_steps_say_what_was_committed_and_what_is_left() {
    let c = Cluster::shared();
    let p = project(&[REVISIONS[0], REVISIONS[2], REVISIONS[4]]);
    let (px, audit) = proxy();
    let db = fresh("rwa_fail");
    c.sql(
        &db,
        "UPDATE orders SET customer_id = 5000 WHERE id = 10; \
         UPDATE orders SET status = NULL WHERE id = 20; \
         UPDATE orders SET ref = 1 WHERE id = 30;",
    );
    let out = alembic_async(&p, &px, &db, false);
    let text = format!("{}\n{}", out.stdout, out.stderr);
    assert!(!out.status.success(), "must exit non-zero:\n{text}");
    for needle in [
        "the transaction COMMITTED",
        "violates foreign key constraint",
        "VALIDATE CONSTRAINT orders_customer_id_fkey",
        "NOT VALID",
        "still nullable",
        "ALTER COLUMN status SET NOT NULL",
        "CREATE UNIQUE INDEX CONCURRENTLY orders_ref_key",
        // DETAIL and HINT reach the asyncpg user too (asyncpg prints them with the message).
        "What remains:",
        "finish by hand",
    ] {
        assert!(text.contains(needle), "`{needle}` missing:\n{text}");
    }
    // Committed: the revision and the NOT VALID foreign key (new rows are checked).
    assert_eq!(c.sql(&db, "SELECT version_num FROM alembic_version"), "r5");
    assert_eq!(leftovers(&db), "orders_customer_id_fkey");
    let nullable = c.sql(
        &db,
        "SELECT is_nullable FROM information_schema.columns \
         WHERE table_name = 'orders' AND column_name = 'status'",
    );
    assert_eq!(nullable, "YES");
    let others = c.sql(
        &db,
        "SELECT count(*) FROM pg_class WHERE relname IN ('orders_ref_key') \
         UNION ALL SELECT count(*) FROM pg_constraint \
           WHERE conname IN ('pgwarden_status_not_null', 'orders_ref_key')",
    );
    assert_eq!(others, "0\n0", "pgwarden's own objects were cleaned up");
    let a = audit_text(&audit);
    assert!(a.contains("\"outcome\":\"23503\""), "{a}");
    assert!(a.contains("\"outcome\":\"23505\""), "{a}");
    assert!(a.contains("\"fate\":\"committed\""), "{a}");
    let report = audit_report(&audit);
    assert!(
        report.contains(
            "step (after COMMIT): ALTER TABLE public.orders VALIDATE CONSTRAINT orders_customer_id_fkey -> 23503"
        ),
        "{report}"
    );
}

/// A later revision fails: the transaction rolls back and no completion step runs.
#[test]
fn asyncpg_rollback_discards_the_completion_steps() {
    let c = Cluster::shared();
    let p = project(&[
        REVISIONS[0],
        REVISIONS[3],
        (
            "r9",
            "op.execute('ALTER TABLE no_such_table ADD COLUMN x int')",
        ),
    ]);
    let (px, _audit) = proxy();
    let db = fresh("rwa_rollback");
    let before = schema(&db);
    let out = alembic_async(&p, &px, &db, false);
    assert!(!out.status.success(), "{}", out.stderr);
    assert!(out.stderr.contains("no_such_table"), "{}", out.stderr);
    assert_eq!(schema(&db), before, "a completion step ran after ROLLBACK");
    assert!(
        px.logs().contains("completion steps discarded"),
        "{}",
        px.logs()
    );
    let n = c.sql(
        &db,
        "SELECT count(*) FROM pg_class WHERE relname = 'ix_orders_amount'",
    );
    assert_eq!(n, "0");
}

/// A statement needing the deferred index in the same transaction is refused, with the reason
/// in Alembic's traceback, and nothing of the transaction is applied.
#[test]
fn asyncpg_a_statement_needing_a_deferred_index_is_refused() {
    let p = project(&[
        REVISIONS[3],
        (
            "r6",
            "op.execute(\"COMMENT ON INDEX ix_orders_amount IS 'by amount'\")",
        ),
    ]);
    let (px, _audit) = proxy();
    let db = fresh("rwa_depends");
    let before = schema(&db);
    let out = alembic_async(&p, &px, &db, false);
    assert!(!out.status.success(), "{}", out.stdout);
    assert!(
        out.stderr
            .contains("ix_orders_amount, which pgwarden builds only after COMMIT"),
        "{}",
        out.stderr
    );
    assert_eq!(schema(&db), before, "nothing may be applied");
}

/// `python rewrite.py ARGS...` and its JSON answer.
fn client(args: &[&str]) -> serde_json::Value {
    let mut cmd = std::process::Command::new(python());
    cmd.arg(repo_root().join("tests/python/rewrite.py"))
        .args(args);
    let out = run_cmd(cmd, None, Duration::from_secs(300));
    out.assert_success();
    serde_json::from_str(out.stdout.trim())
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", out.stdout, out.stderr))
}

fn ok(v: &serde_json::Value, i: usize) -> bool {
    v[i]["ok"] == serde_json::Value::Bool(true)
}

/// Outside a transaction block, asyncpg's prepared DDL runs as its steps and gets one answer;
/// a failing step undoes the earlier ones and its own error is the answer. The prepared
/// statements stay on the server as the client's cache has them: the same text runs again by
/// Bind alone once the data is fixed.
#[test]
fn asyncpg_outside_a_transaction_runs_the_steps_with_one_answer() {
    let c = Cluster::shared();
    let (px, _audit) = proxy();
    let db = fresh("rwa_autocommit");
    c.sql(
        &db,
        "UPDATE orders SET customer_id = 5000 WHERE id = 10; \
         UPDATE orders SET ref = 1 WHERE id = 30; \
         UPDATE orders SET status = NULL WHERE id = 20;",
    );
    let url = c.conn(&db).with_port(px.port()).url();
    let url = url.split('?').next().unwrap_or(&url).to_string();
    const FK: &str = "ALTER TABLE orders ADD FOREIGN KEY (customer_id) REFERENCES customers (id)";
    const UQ: &str = "ALTER TABLE orders ADD UNIQUE (ref)";
    const NN: &str = "ALTER TABLE orders ALTER COLUMN status SET NOT NULL";
    let v = client(&[
        "asyncpg",
        &url,
        "autocommit",
        FK,
        UQ,
        NN,
        "UPDATE orders SET customer_id = 1 WHERE id = 10",
        "UPDATE orders SET ref = 30 WHERE id = 30",
        "UPDATE orders SET status = 'new' WHERE id = 20",
        FK,
        UQ,
        NN,
        "CREATE INDEX ON orders (amount)",
    ]);
    assert!(!ok(&v, 0), "{v}");
    assert_eq!(v[0]["type"], "ForeignKeyViolationError", "{v}");
    assert_eq!(v[1]["type"], "UniqueViolationError", "{v}");
    assert_eq!(v[2]["type"], "CheckViolationError", "{v}");
    for i in 3..10 {
        assert!(ok(&v, i), "statement {i}: {v}\n{}", px.logs());
    }
    assert_eq!(v[10]["select"], 42, "{v}");
    assert_eq!(leftovers(&db), "", "nothing NOT VALID or INVALID left");
    assert_eq!(
        objects(&db),
        "orders_amount_idx:true,orders_customer_id_fkey:true,orders_pkey:true,\
         orders_ref_key:true,orders_ref_key:true",
        "the unique constraint and its index, the direct run's names"
    );
    let nullable = c.sql(
        &db,
        "SELECT is_nullable FROM information_schema.columns \
         WHERE table_name = 'orders' AND column_name = 'status'",
    );
    assert_eq!(nullable, "NO");
    assert!(px.logs().contains("multi-step rewrite"), "{}", px.logs());
}

/// Inside asyncpg's own transaction: the in-place parts run, the rest after its COMMIT; a
/// failing completion step answers the COMMIT with pgwarden's error.
#[test]
fn asyncpg_transaction_runs_completion_steps_at_its_commit() {
    let c = Cluster::shared();
    let (px, _audit) = proxy();
    let db = fresh("rwa_tx");
    let url = c.conn(&db).with_port(px.port()).url();
    let url = url.split('?').next().unwrap_or(&url).to_string();
    let v = client(&[
        "asyncpg",
        &url,
        "tx",
        "ALTER TABLE orders ADD CONSTRAINT ck_amount CHECK (amount > 0)",
        "CREATE INDEX ix_tx_amount ON orders (amount)",
    ]);
    for i in 0..3 {
        assert!(ok(&v, i), "{i}: {v}\n{}", px.logs());
    }
    assert_eq!(v[3]["status"], false, "{v}");
    assert_eq!(
        objects(&db),
        "ck_amount:true,ix_tx_amount:true,orders_pkey:true"
    );
    // Duplicates: the COMMIT answers pgwarden's error, the session goes on.
    c.sql(&db, "UPDATE orders SET ref = 1 WHERE id = 30");
    let v = client(&[
        "asyncpg",
        &url,
        "tx",
        "CREATE UNIQUE INDEX ix_tx_ref ON orders (ref)",
    ]);
    assert!(ok(&v, 0), "{v}");
    assert!(!ok(&v, 1), "{v}");
    assert_eq!(v[1]["sqlstate"], "PW002", "{v}");
    let message = v[1]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("COMMITTED") && message.contains("could not create unique index"),
        "{message}"
    );
    assert_eq!(v[2]["select"], 42, "{v}");
    assert_eq!(leftovers(&db), "");
}

/// psycopg 3's extended protocol (the DDL's Parse in the same request as its Bind/Execute):
/// the same steps and one answer, unnamed and named statements alike.
#[test]
fn psycopg3_extended_ddl_runs_as_its_steps() {
    let c = Cluster::shared();
    let (px, _audit) = proxy();
    for mode in ["binary", "prepare"] {
        let db = fresh(&format!("rwa_pg3_{mode}"));
        c.sql(&db, "UPDATE orders SET customer_id = 5000 WHERE id = 10");
        let url = c.conn(&db).with_port(px.port()).url();
        let v = client(&[
            "psycopg",
            &url,
            mode,
            "ALTER TABLE orders ADD FOREIGN KEY (customer_id) REFERENCES customers (id)",
            "UPDATE orders SET customer_id = 1 WHERE id = 10",
            "ALTER TABLE orders ADD FOREIGN KEY (customer_id) REFERENCES customers (id)",
            "CREATE INDEX ix_pg3 ON orders (amount)",
        ]);
        assert_eq!(v[0]["sqlstate"], "23503", "{mode}: {v}");
        for i in 1..4 {
            assert!(ok(&v, i), "{mode} {i}: {v}\n{}", px.logs());
        }
        assert_eq!(v[4]["select"], 42, "{mode}: {v}");
        assert_eq!(leftovers(&db), "", "{mode}");
        assert_eq!(
            objects(&db),
            "ix_pg3:true,orders_customer_id_fkey:true,orders_pkey:true",
            "{mode}"
        );
        // In a transaction: the in-place part runs, the rest after psycopg's COMMIT.
        let v = client(&[
            "psycopg",
            &url,
            &format!("{mode}-tx"),
            "ALTER TABLE orders ADD CONSTRAINT ck_pg3 CHECK (amount > 0)",
            "CREATE UNIQUE INDEX ix_pg3_ref ON orders (ref)",
        ]);
        for i in 0..3 {
            assert!(ok(&v, i), "{mode} tx {i}: {v}\n{}", px.logs());
        }
        assert_eq!(
            objects(&db),
            "ck_pg3:true,ix_pg3:true,ix_pg3_ref:true,orders_customer_id_fkey:true,orders_pkey:true",
            "{mode}"
        );
    }
}

/// A foreign key pgwarden cannot run as its steps (psycopg 3's pipeline: two statements before
/// one Sync, which pgwarden does not hold) is refused, never sent as a lone `... NOT VALID`
/// that would stay unvalidated for good; nothing of it is applied.
#[test]
fn psycopg3_pipelined_foreign_key_is_refused_not_left_not_valid() {
    let c = Cluster::shared();
    let (px, _audit) = proxy();
    let db = fresh("rwa_pg3_pipeline");
    let url = c.conn(&db).with_port(px.port()).url();
    let v = client(&[
        "psycopg",
        &url,
        "pipeline",
        "ALTER TABLE orders ADD FOREIGN KEY (customer_id) REFERENCES customers (id)",
    ]);
    assert!(!ok(&v, 0), "{v}");
    assert_eq!(v[0]["sqlstate"], "PW001", "{v}");
    let message = v[0]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("safe only as ADD ... NOT VALID followed by VALIDATE CONSTRAINT")
            && message.contains("not one pgwarden holds whole"),
        "{message}"
    );
    assert_eq!(v[1]["select"], 42, "{v}");
    assert_eq!(objects(&db), "orders_pkey:true");
}

/// A statement whose safe form is one statement (`CREATE INDEX IF NOT EXISTS` gets
/// CONCURRENTLY: no multi-step form), prepared by asyncpg's statement cache or psycopg 3's
/// `prepare=True` and executed again by Bind alone, or sent as psycopg 3's unnamed
/// Parse/Bind/Execute (binary): the server holds pgwarden's rewrite under the client's name,
/// each execution is decided again against that text, and runs, as a direct run would; the
/// index is built once, valid.
#[test]
fn a_one_statement_rewrite_prepared_and_executed_again_runs_every_time() {
    let c = Cluster::shared();
    let (px, _audit) = proxy();
    const IDX: &str = "CREATE INDEX IF NOT EXISTS customers_name_ine ON customers (name)";
    for (client_name, mode) in [
        ("asyncpg", "autocommit"),
        ("psycopg", "prepare"),
        ("psycopg", "binary"),
    ] {
        let db = fresh(&format!("rwa_ine_{client_name}_{mode}"));
        let url = c.conn(&db).with_port(px.port()).url();
        let url = match client_name {
            "asyncpg" => url.split('?').next().unwrap_or(&url).to_string(),
            _ => url,
        };
        let v = client(&[client_name, &url, mode, IDX, IDX, IDX]);
        for i in 0..3 {
            assert!(ok(&v, i), "{client_name} {mode} {i}: {v}\n{}", px.logs());
        }
        assert_eq!(v[3]["select"], 42, "{client_name} {mode}: {v}");
        assert_eq!(
            c.sql(
                &db,
                "SELECT count(*) FROM pg_index WHERE indexrelid = 'customers_name_ine'::regclass \
                 AND indisvalid"
            ),
            "1",
            "{client_name} {mode}"
        );
    }
}
