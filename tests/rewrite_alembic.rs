//! Multi-step rewrites end to end (issue 16): real Alembic revisions written the plain way,
//! through pgwarden with its default config, on a 1,050,000-row `orders` table. Each ends in
//! the schema a direct run produces, or fails saying what was committed and what is left.
mod common;

use std::time::Duration;

use common::rewrite::*;
use common::*;

/// [`REVISIONS`] through pgwarden with both psycopg drivers, in one transaction mode.
fn five_statements(per_migration: bool) {
    let c = Cluster::shared();
    let p = project(&REVISIONS);
    let expected = direct_schema();
    let (px, audit) = proxy();
    for driver in ["psycopg2", "psycopg"] {
        let db = fresh("rw_five");
        let out = alembic(
            p.path(),
            &c.conn(&db).with_port(px.port()),
            driver,
            per_migration,
        );
        assert!(
            out.status.success(),
            "{driver} per_migration={per_migration}: refused or failed through pgwarden:\n{}\n{}\nproxy log:\n{}",
            out.stdout,
            out.stderr,
            px.logs()
        );
        assert_eq!(
            schema(&db),
            expected,
            "{driver} per_migration={per_migration}: schema differs from a direct run"
        );
        assert_eq!(leftovers(&db), "", "{driver}");
    }
    let logs = px.logs();
    assert!(logs.contains("completion steps queued"), "{logs}");
    let a = audit_text(&audit);
    assert!(a.contains("\"type\":\"steps\""), "{a}");
    assert!(
        a.contains("VALIDATE CONSTRAINT orders_customer_id_fkey"),
        "every step is in the audit log: {a}"
    );
    assert!(a.contains("after COMMIT"), "{a}");
}

/// Alembic's default: the whole upgrade is one transaction, every completion step waits for
/// its COMMIT.
#[test]
fn five_statements_in_one_transaction_end_like_a_direct_run() {
    five_statements(false);
}

/// transaction_per_migration=True: each revision's COMMIT runs that revision's steps.
#[test]
fn five_statements_one_transaction_per_revision_end_like_a_direct_run() {
    five_statements(true);
}

/// Rows violating the foreign key, NULLs for NOT NULL, duplicates for the unique constraint:
/// the transaction commits, the completion steps fail, and the client's COMMIT gets an error
/// saying so (Alembic exits non-zero and shows it); no NOT VALID helper, no INVALID index.
#[test]
fn failed_completion_steps_say_what_was_committed_and_what_is_left() {
    let c = Cluster::shared();
    let revs = [REVISIONS[0], REVISIONS[2], REVISIONS[4]];
    let p = project(&revs);
    let (px, audit) = proxy();
    for driver in ["psycopg2", "psycopg"] {
        let db = fresh("rw_fail");
        c.sql(
            &db,
            "UPDATE orders SET customer_id = 5000 WHERE id = 10; \
             UPDATE orders SET status = NULL WHERE id = 20; \
             UPDATE orders SET ref = 1 WHERE id = 30;",
        );
        let out = alembic(p.path(), &c.conn(&db).with_port(px.port()), driver, false);
        let text = format!("{}\n{}", out.stdout, out.stderr);
        assert!(
            !out.status.success(),
            "{driver}: must exit non-zero:\n{text}"
        );
        for needle in [
            "COMMITTED",
            "VALIDATE CONSTRAINT orders_customer_id_fkey",
            "NOT VALID",
            "still nullable",
            "CREATE UNIQUE INDEX CONCURRENTLY orders_ref_key",
        ] {
            assert!(
                text.contains(needle),
                "{driver}: `{needle}` missing:\n{text}"
            );
        }
        // Committed: the revision and the NOT VALID foreign key (new rows are checked).
        assert_eq!(c.sql(&db, "SELECT version_num FROM alembic_version"), "r5");
        assert_eq!(leftovers(&db), "orders_customer_id_fkey", "{driver}");
        let nullable = c.sql(
            &db,
            "SELECT is_nullable FROM information_schema.columns \
             WHERE table_name = 'orders' AND column_name = 'status'",
        );
        assert_eq!(nullable, "YES", "{driver}");
        let others = c.sql(
            &db,
            "SELECT count(*) FROM pg_constraint WHERE conname IN \
             ('pgwarden_status_not_null', 'orders_ref_key')",
        );
        assert_eq!(others, "0", "{driver}");
        let index = c.sql(
            &db,
            "SELECT count(*) FROM pg_class WHERE relname = 'orders_ref_key'",
        );
        assert_eq!(index, "0", "{driver}: the failed build's index was dropped");
    }
    // psql shows the SQLSTATE: pgwarden's own, in place of COMMIT's answer.
    let db = fresh("rw_fail_psql");
    c.sql(&db, "UPDATE orders SET customer_id = 5000 WHERE id = 10");
    let out = psql_stdin(
        &c.conn(&db).with_port(px.port()),
        &["-X"],
        Some(
            b"\\set VERBOSITY verbose\nBEGIN;\nALTER TABLE orders ADD CONSTRAINT fk2 FOREIGN KEY \
              (customer_id) REFERENCES customers (id);\nCOMMIT;\n",
        ),
    );
    assert!(
        out.stderr.contains("PW002"),
        "{}\n{}",
        out.stdout,
        out.stderr
    );
    assert!(
        !out.stdout.contains("COMMIT"),
        "COMMIT's own answer must not reach the client"
    );
    assert_eq!(leftovers(&db), "fk2");
    let a = audit_text(&audit);
    assert!(a.contains("\"outcome\":\"23505\""), "{a}");
    assert!(a.contains("clean-up") || a.contains("undo"), "{a}");
    // The COMMIT answered PW002 committed: the audit log says so.
    assert!(a.contains("\"fate\":\"committed\""), "{a}");
    assert!(!a.contains("\"fate\":\"rolled_back\""), "{a}");
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_pgwarden"));
    cmd.args(["audit", "report"])
        .arg(audit.path().join("audit.jsonl"));
    let report = run_cmd(cmd, None, Duration::from_secs(60));
    report.assert_success();
    assert!(
        report.stdout.contains("step (after COMMIT): ALTER TABLE public.orders VALIDATE CONSTRAINT orders_customer_id_fkey -> 23503"),
        "{}",
        report.stdout
    );
}

/// A later revision fails: the transaction rolls back and no completion step runs.
#[test]
fn rollback_discards_the_completion_steps() {
    let c = Cluster::shared();
    let p = project(&[
        REVISIONS[3],
        (
            "r9",
            "op.execute('ALTER TABLE no_such_table ADD COLUMN x int')",
        ),
    ]);
    let (px, _audit) = proxy();
    let db = fresh("rw_rollback");
    let out = alembic(
        p.path(),
        &c.conn(&db).with_port(px.port()),
        "psycopg2",
        false,
    );
    assert!(!out.status.success(), "{}", out.stderr);
    assert!(out.stderr.contains("no_such_table"), "{}", out.stderr);
    let n = c.sql(
        &db,
        "SELECT count(*) FROM pg_class WHERE relname = 'ix_orders_amount'",
    );
    assert_eq!(n, "0", "a completion step ran after ROLLBACK");
    assert!(
        px.logs().contains("completion steps discarded"),
        "{}",
        px.logs()
    );
}

/// A statement needing the deferred index in the same transaction is refused, and nothing of
/// the transaction is applied.
#[test]
fn a_statement_needing_a_deferred_index_is_refused() {
    let c = Cluster::shared();
    let p = project(&[
        REVISIONS[3],
        (
            "r6",
            "op.execute(\"COMMENT ON INDEX ix_orders_amount IS 'by amount'\")",
        ),
    ]);
    let (px, _audit) = proxy();
    let db = fresh("rw_depends");
    let before = schema(&db);
    let out = alembic(
        p.path(),
        &c.conn(&db).with_port(px.port()),
        "psycopg2",
        false,
    );
    assert!(!out.status.success(), "{}", out.stdout);
    assert!(
        out.stderr
            .contains("ix_orders_amount, which pgwarden builds only after COMMIT"),
        "{}",
        out.stderr
    );
    assert_eq!(schema(&db), before, "nothing may be applied");
}

/// Outside a transaction block the steps run one after another and the client gets one
/// answer; a failing step undoes the earlier ones and its own error is the answer.
#[test]
fn outside_a_transaction_a_failed_step_undoes_the_earlier_ones() {
    let c = Cluster::shared();
    let (px, _audit) = proxy();
    let db = fresh("rw_autocommit");
    c.sql(
        &db,
        "UPDATE orders SET customer_id = 5000 WHERE id = 10; \
         UPDATE orders SET ref = 1 WHERE id = 30;",
    );
    let conn = c.conn(&db).with_port(px.port());
    let fk = psql(
        &conn,
        &[
            "-X",
            "-c",
            "ALTER TABLE orders ADD FOREIGN KEY (customer_id) REFERENCES customers (id)",
        ],
    );
    assert!(!fk.status.success());
    assert!(fk.stderr.contains("violates foreign key"), "{}", fk.stderr);
    let uq = psql(&conn, &["-X", "-c", "ALTER TABLE orders ADD UNIQUE (ref)"]);
    assert!(!uq.status.success());
    assert!(
        uq.stderr.contains("could not create unique index"),
        "{}",
        uq.stderr
    );
    assert_eq!(leftovers(&db), "", "nothing NOT VALID or INVALID left");
    let n = c.sql(
        &db,
        "SELECT count(*) FROM pg_constraint WHERE conrelid = 'orders'::regclass AND contype IN ('f', 'u')",
    );
    assert_eq!(n, "0");
    // The same statements succeed once the data is right, with the direct run's names.
    c.sql(
        &db,
        "UPDATE orders SET customer_id = 1 WHERE id = 10; UPDATE orders SET ref = 30 WHERE id = 30;",
    );
    let ok = psql(
        &conn,
        &[
            "-X",
            "-c",
            "ALTER TABLE orders ADD FOREIGN KEY (customer_id) REFERENCES customers (id)",
            "-c",
            "ALTER TABLE orders ADD UNIQUE (ref)",
            "-c",
            "ALTER TABLE orders ALTER COLUMN status SET NOT NULL",
        ],
    );
    ok.assert_success();
    assert!(ok.stdout.contains("ALTER TABLE"), "{}", ok.stdout);
    let names = c.sql(
        &db,
        "SELECT string_agg(conname || ':' || convalidated, ',' ORDER BY conname) FROM pg_constraint \
         WHERE conrelid = 'orders'::regclass AND contype IN ('f', 'u', 'c')",
    );
    assert_eq!(names, "orders_customer_id_fkey:true,orders_ref_key:true");
    assert!(px.logs().contains("multi-step rewrite"), "{}", px.logs());
}

/// Only the INVALID index of pgwarden's own failed build is dropped: an INVALID index that was
/// there before (someone else's failed build) stays, and a valid one is never touched.
#[test]
fn only_pgwardens_own_invalid_index_is_dropped() {
    let c = Cluster::shared();
    let (px, _audit) = proxy();
    let db = fresh("rw_invalid");
    c.sql(&db, "UPDATE orders SET ref = 1 WHERE id = 30");
    // Someone else's failed concurrent build, directly on the server.
    let mut cmd = std::process::Command::new(pg_bin("psql"));
    cmd.args(["-X", "-h"])
        .arg(&c.socket_dir)
        .args(["-p", &c.port.to_string(), "-U", "postgres", "-d", &db, "-c"])
        .arg("CREATE UNIQUE INDEX CONCURRENTLY ix_theirs ON orders (ref)");
    run_cmd(cmd, None, Duration::from_secs(120)).assert_failure();
    assert_eq!(leftovers(&db), "ix_theirs");
    let conn = c.conn(&db).with_port(px.port());
    // The same name through pgwarden: the build fails at once (the name is taken) and the
    // other index stays.
    let out = psql(
        &conn,
        &["-X", "-c", "CREATE UNIQUE INDEX ix_theirs ON orders (ref)"],
    );
    assert!(out.stderr.contains("already exists"), "{}", out.stderr);
    assert_eq!(leftovers(&db), "ix_theirs", "another's index was dropped");
    // pgwarden's own failed build (duplicates) leaves nothing.
    let out = psql(
        &conn,
        &["-X", "-c", "CREATE UNIQUE INDEX ix_mine ON orders (ref)"],
    );
    assert!(
        out.stderr.contains("could not create unique index"),
        "{}",
        out.stderr
    );
    assert_eq!(leftovers(&db), "ix_theirs");
    assert!(
        px.logs().contains("dropped the INVALID index"),
        "{}",
        px.logs()
    );
}

/// A COMMIT sent as a prepared statement (psycopg 3 in pipeline mode) cannot be followed by
/// the completion steps: it is refused, and nothing of the transaction is applied (rather
/// than committing an index that is never built).
#[test]
fn a_prepared_commit_owing_completion_steps_is_refused() {
    let c = Cluster::shared();
    let (px, _audit) = proxy();
    let db = fresh("rw_pipeline");
    let url = c.conn(&db).with_port(px.port()).url();
    let script = r#"
import sys, psycopg
conn = psycopg.connect(sys.argv[1])
conn.execute("ALTER TABLE orders ADD COLUMN note text")
conn.execute("CREATE INDEX ix_pipe ON orders (amount)")
try:
    with conn.pipeline():
        conn.commit()
    print("committed")
except psycopg.Error as e:
    print("refused:", e)
"#;
    let mut cmd = std::process::Command::new(python());
    cmd.args(["-c", script, &url]);
    let out = run_cmd(cmd, None, Duration::from_secs(60));
    out.assert_success();
    assert!(
        out.stdout.contains("refused:"),
        "{}\n{}",
        out.stdout,
        out.stderr
    );
    assert!(out.stdout.contains("completion steps"), "{}", out.stdout);
    let n = c.sql(
        &db,
        "SELECT count(*) FROM pg_class WHERE relname = 'ix_pipe' \
         UNION ALL SELECT count(*) FROM information_schema.columns \
           WHERE table_name = 'orders' AND column_name = 'note'",
    );
    assert_eq!(n, "0\n0", "nothing of the transaction may stay");
}

/// `psql -X -v ON_ERROR_STOP=1` with each of `cmds` as its own Query (`-c`), through `px`.
fn psql_each(px: &ProxyProcess, db: &str, cmds: &[&str]) -> CmdOutput {
    let conn = Cluster::shared().conn(db).with_port(px.port());
    let mut args: Vec<&str> = vec!["-X", "-v", "ON_ERROR_STOP=1"];
    for c in cmds {
        args.push("-c");
        args.push(c);
    }
    psql(&conn, &args)
}

fn indexes(db: &str) -> String {
    Cluster::shared().sql(
        db,
        "SELECT coalesce(string_agg(indexrelid::regclass::text, ',' ORDER BY 1), '') FROM pg_index \
         WHERE indrelid = 'orders'::regclass AND indexrelid::regclass::text LIKE 'ix_sp%'",
    )
}

/// The queued completion steps follow the client's savepoints: a ROLLBACK TO undoes the steps
/// of the statements after that savepoint (a direct run would not have their objects either),
/// RELEASE keeps them, and a name taken before the first queued step undoes them all.
#[test]
fn completion_steps_follow_the_clients_savepoints() {
    let c = Cluster::shared();
    let (px, _audit) = proxy();
    let db = fresh("rw_savepoints");
    let out = psql_each(
        &px,
        &db,
        &[
            "BEGIN",
            "SAVEPOINT a",
            "ALTER TABLE orders ADD FOREIGN KEY (customer_id) REFERENCES customers (id)",
            "CREATE INDEX ix_sp_gone ON orders (amount)",
            "ROLLBACK TO SAVEPOINT a",
            "SAVEPOINT \"B\"",
            "CREATE INDEX ix_sp_kept ON orders (amount)",
            "RELEASE \"B\"",
            "savepoint s2",
            "CREATE INDEX ix_sp_rolled ON orders (ref)",
            "ROLLBACK TO S2",
            "COMMIT",
        ],
    );
    assert!(out.status.success(), "{}\n{}", out.stderr, px.logs());
    assert_eq!(indexes(&db), "ix_sp_kept");
    let fks = c.sql(
        &db,
        "SELECT count(*) FROM pg_constraint WHERE conrelid = 'orders'::regclass AND contype = 'f'",
    );
    assert_eq!(
        fks, "0",
        "the rolled-back foreign key must not be added after COMMIT"
    );
    assert_eq!(leftovers(&db), "");
    assert!(
        px.logs()
            .contains("rolled back to a savepoint before their statement"),
        "{}",
        px.logs()
    );

    // A savepoint taken before the first queued step: ROLLBACK TO it undoes every step.
    let db = fresh("rw_savepoints_outer");
    psql_each(
        &px,
        &db,
        &[
            "BEGIN",
            "SAVEPOINT outer_sp",
            "CREATE INDEX ix_sp_one ON orders (amount)",
            "SAVEPOINT inner_sp",
            "CREATE INDEX ix_sp_two ON orders (ref)",
            "ROLLBACK TO outer_sp",
            "COMMIT",
        ],
    )
    .assert_success();
    assert_eq!(indexes(&db), "");
}

/// A transaction that owes completion steps cannot end where pgwarden cannot run them
/// (COMMIT AND CHAIN, PREPARE TRANSACTION, a COMMIT inside a longer Query): refused, and the
/// refusal fails the transaction, so nothing of it stays.
#[test]
fn a_transaction_owing_steps_cannot_end_where_they_cannot_run() {
    let (px, _audit) = proxy();
    for (tag, end) in [
        ("chain", "COMMIT AND CHAIN"),
        ("prepare", "PREPARE TRANSACTION 'pgwarden_rw_test'"),
        ("longer", "SELECT 1; COMMIT"),
    ] {
        let db = fresh(&format!("rw_end_{tag}"));
        let before = schema(&db);
        let out = psql_each(
            &px,
            &db,
            &[
                "BEGIN",
                "ALTER TABLE orders ADD COLUMN note text",
                "CREATE INDEX ix_sp_end ON orders (amount)",
                end,
            ],
        );
        assert!(!out.status.success(), "{tag}: {}", out.stdout);
        assert!(
            out.stderr.contains("owes completion steps"),
            "{tag}: {}",
            out.stderr
        );
        assert_eq!(schema(&db), before, "{tag}: nothing may be applied");
        let prepared = Cluster::shared().sql(&db, "SELECT count(*) FROM pg_prepared_xacts");
        assert_eq!(prepared, "0", "{tag}");
    }
}

/// A foreign key or CHECK pgwarden cannot run as NOT VALID + VALIDATE (here: in a Query with
/// other statements) is never sent as a lone `... NOT VALID`: that would leave it unvalidated
/// for good. It runs as written or is refused; it never ends NOT VALID.
#[test]
fn a_foreign_key_in_a_longer_query_never_ends_not_valid() {
    let (px, _audit) = proxy();
    for (tag, sql) in [
        (
            "fk",
            "ALTER TABLE orders ADD FOREIGN KEY (customer_id) REFERENCES customers (id); SELECT 1",
        ),
        (
            "check",
            "SELECT 1; ALTER TABLE orders ADD CONSTRAINT ck_amount CHECK (amount > 0)",
        ),
        (
            "tx",
            "BEGIN; ALTER TABLE orders ADD FOREIGN KEY (customer_id) REFERENCES customers (id); COMMIT",
        ),
    ] {
        let db = fresh(&format!("rw_longer_{tag}"));
        let out = psql_each(&px, &db, &[sql]);
        let n = Cluster::shared().sql(
            &db,
            "SELECT count(*) FROM pg_constraint WHERE conrelid = 'orders'::regclass AND contype IN ('f', 'c')",
        );
        assert_eq!(leftovers(&db), "", "{tag}: {}\n{}", out.stderr, px.logs());
        if out.status.success() {
            assert_eq!(n, "1", "{tag}");
        } else {
            assert_eq!(n, "0", "{tag}: {}", out.stderr);
            assert!(out.stderr.contains("pgwarden"), "{tag}: {}", out.stderr);
        }
    }
}
