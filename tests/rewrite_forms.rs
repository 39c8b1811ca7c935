//! The statement forms of issue 16 beyond the first five (helper "forms"): ADD PRIMARY KEY,
//! unnamed ADD CHECK, UNIQUE / PRIMARY KEY with options, several sub-commands in one ALTER
//! TABLE, and the clean-up of failed or cancelled concurrent builds. Real Alembic revisions
//! (psycopg2 and psycopg 3) and real clients through pgwarden with its default config, on a
//! 1,050,000-row `orders` table; each ends in the schema a direct run produces (`pg_dump
//! --schema-only`), or is refused saying why and what to write.
mod common;

use std::sync::OnceLock;
use std::time::Duration;

use common::rewrite::{alembic, leftovers, project, schema};
use common::*;

const SETUP: &str = "
CREATE TABLE customers (id integer PRIMARY KEY, name text NOT NULL);
INSERT INTO customers SELECT g, 'c' || g FROM generate_series(1, 1000) g;
CREATE TABLE orders (
    id bigint NOT NULL,
    customer_id integer NOT NULL,
    amount integer NOT NULL,
    status text,
    ref bigint NOT NULL,
    note text
);
INSERT INTO orders SELECT g, 1 + g % 1000, 1 + g % 500, 'new', g, 'n' || (g % 7)
  FROM generate_series(1, 1050000) g;
-- A relation with the name PostgreSQL tries first for the unnamed primary key: it takes
-- orders_pkey1, in a direct run and through pgwarden alike.
CREATE SEQUENCE orders_pkey;
-- A valid index pgwarden did not create: it must survive every failure.
CREATE INDEX ix_orders_customer ON orders (customer_id);
ANALYZE customers;
ANALYZE orders;
";

/// A database of its own, a copy of the template with [`SETUP`].
fn fresh(tag: &str) -> String {
    Cluster::shared().fresh_from_template(SETUP, tag)
}

fn proxy() -> ProxyProcess {
    ProxyProcess::start(&Cluster::shared().addr(), "")
}

/// `psql -X -v ON_ERROR_STOP=1`, each of `cmds` its own Query, directly or through `px`.
fn psql_each(px: Option<&ProxyProcess>, db: &str, cmds: &[&str]) -> CmdOutput {
    let conn = Cluster::shared().conn(db);
    let conn = match px {
        Some(p) => conn.with_port(p.port()),
        None => conn,
    };
    let mut args: Vec<&str> = vec!["-X", "-v", "ON_ERROR_STOP=1"];
    for c in cmds {
        args.push("-c");
        args.push(c);
    }
    psql(&conn, &args)
}

/// Every new form, one revision each, written the plain Alembic way where Alembic has the
/// operation. Unnamed objects must come out with PostgreSQL's names: `orders_pkey1` (a
/// relation has `orders_pkey`), `orders_ref_note_key` (INCLUDE columns are in the name),
/// `orders_amount_check` / `..._check1` (one column, collision), `orders_check` (two
/// columns), `orders_note_check` (a quoted column).
const REVISIONS: [(&str, &str); 8] = [
    ("f1", "op.create_primary_key(None, 'orders', ['id'])"),
    (
        "f2",
        "op.create_unique_constraint(None, 'orders', ['ref'], postgresql_include=[sa.column('note')])",
    ),
    (
        "f3",
        "op.create_unique_constraint('uq_orders_amount_ref', 'orders', ['amount', 'ref'], \
         deferrable=True, initially='DEFERRED')",
    ),
    (
        "f4",
        "op.execute('ALTER TABLE orders ADD UNIQUE NULLS NOT DISTINCT (customer_id, ref) \
         WITH (fillfactor = 80) USING INDEX TABLESPACE pg_default')",
    ),
    ("f5", "op.create_check_constraint(None, 'orders', 'amount > 0')"),
    (
        "f6",
        "op.create_check_constraint(None, 'orders', 'amount < 100000')",
    ),
    (
        "f7",
        "op.create_check_constraint(None, 'orders', 'amount <> customer_id OR ref > 0')",
    ),
    (
        "f8",
        "op.execute('ALTER TABLE orders ADD CHECK (length(\"note\") < 100)')",
    ),
];

/// The schema of a direct run of [`REVISIONS`] (psycopg2, no pgwarden), made once.
fn direct_schema() -> &'static str {
    static S: OnceLock<String> = OnceLock::new();
    S.get_or_init(|| {
        let c = Cluster::shared();
        let p = project(&REVISIONS);
        let direct = fresh("rf_direct");
        alembic(p.path(), &c.conn(&direct), "psycopg2", false).assert_success();
        let expected = schema(&direct);
        for name in [
            "orders_pkey1 PRIMARY KEY (id)",
            "orders_ref_note_key UNIQUE (ref) INCLUDE (note)",
            "uq_orders_amount_ref UNIQUE (amount, ref) DEFERRABLE INITIALLY DEFERRED",
            "UNIQUE NULLS NOT DISTINCT (customer_id, ref) WITH (fillfactor='80')",
            "orders_amount_check CHECK",
            "orders_amount_check1 CHECK",
            "orders_check CHECK",
            "orders_note_check CHECK",
        ] {
            assert!(
                expected.contains(name),
                "direct run lacks `{name}`: {expected}"
            );
        }
        expected
    })
}

fn all_forms(per_migration: bool) {
    let c = Cluster::shared();
    let p = project(&REVISIONS);
    let expected = direct_schema();
    let px = proxy();
    // Both drivers in Alembic's default mode; psycopg 3 alone per revision (the steps do not
    // depend on the driver, only on where the COMMITs fall), to keep the suite lean.
    let drivers: &[&str] = if per_migration {
        &["psycopg"]
    } else {
        &["psycopg2", "psycopg"]
    };
    for &driver in drivers {
        let db = fresh("rf_forms");
        let out = alembic(
            p.path(),
            &c.conn(&db).with_port(px.port()),
            driver,
            per_migration,
        );
        assert!(
            out.status.success(),
            "{driver} per_migration={per_migration}: failed through pgwarden:\n{}\n{}\nproxy log:\n{}",
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
        assert_eq!(c.sql(&db, "SELECT version_num FROM alembic_version"), "f8");
    }
    let logs = px.logs();
    for form in ["primary key", "unique constraint", "check constraint"] {
        assert!(
            logs.contains(&format!("form=\"{form}\"")) || logs.contains(&format!("form={form}")),
            "`{form}` did not run as a multi-step rewrite: {logs}"
        );
    }
}

/// Alembic's default: one transaction; the index builds and VALIDATEs wait for its COMMIT.
#[test]
fn new_forms_in_one_transaction_end_like_a_direct_run() {
    all_forms(false);
}

/// transaction_per_migration=True: each revision's COMMIT runs that revision's steps.
#[test]
fn new_forms_one_transaction_per_revision_end_like_a_direct_run() {
    all_forms(true);
}

/// ADD PRIMARY KEY on a nullable column would set it NOT NULL with a scan under ACCESS
/// EXCLUSIVE: refused with the recipe (NOT NULL first), and nothing of the migration stays.
#[test]
fn a_primary_key_on_a_nullable_column_is_refused_with_the_recipe() {
    let c = Cluster::shared();
    let p = project(&[
        (
            "n1",
            "op.add_column('orders', sa.Column('extra', sa.Integer()))",
        ),
        (
            "n2",
            "op.create_primary_key('pk_orders_status', 'orders', ['id', 'status'])",
        ),
    ]);
    let px = proxy();
    for driver in ["psycopg2", "psycopg"] {
        let db = fresh("rf_nullable");
        let before = schema(&db);
        let out = alembic(p.path(), &c.conn(&db).with_port(px.port()), driver, false);
        assert!(!out.status.success(), "{driver}: {}", out.stdout);
        for needle in [
            "adding-serial-primary-key-field",
            "status is nullable",
            "op.alter_column('orders', 'status', nullable=False)",
            // The size as the decision saw it (reltuples).
            " rows)",
        ] {
            assert!(
                out.stderr.contains(needle),
                "{driver}: `{needle}` missing:\n{}",
                out.stderr
            );
        }
        assert_eq!(schema(&db), before, "{driver}: nothing may be applied");
    }
    // A later statement of the same transaction that drops NOT NULL from the key's column
    // (the key is attached only after COMMIT): refused, nothing of the transaction applied.
    let db = fresh("rf_pk_dependency");
    let before = schema(&db);
    let out = psql_each(
        Some(&px),
        &db,
        &[
            "BEGIN",
            "ALTER TABLE orders ADD PRIMARY KEY (id)",
            "ALTER TABLE orders ALTER COLUMN id DROP NOT NULL",
            "COMMIT",
        ],
    );
    assert!(
        out.stderr
            .contains("drops NOT NULL from a column of the primary key"),
        "{}",
        out.stderr
    );
    assert_eq!(schema(&db), before, "nothing may be applied");
    // Outside a transaction block too: nothing is built.
    let db = fresh("rf_nullable_psql");
    let out = psql_each(
        Some(&px),
        &db,
        &["ALTER TABLE orders ADD PRIMARY KEY (status)"],
    );
    assert!(out.stderr.contains("status is nullable"), "{}", out.stderr);
    assert_eq!(
        c.sql(
            &db,
            "SELECT count(*) FROM pg_index WHERE indrelid = 'orders'::regclass"
        ),
        "1"
    );
}

/// Outside a transaction block: a primary key whose build fails (duplicates) leaves no
/// index, the valid index pgwarden did not create stays, and once the data is right the
/// named, DEFERRABLE key ends exactly as a direct run's.
#[test]
fn a_primary_key_outside_a_transaction_fails_cleanly_then_matches_a_direct_run() {
    let c = Cluster::shared();
    let px = proxy();
    let db = fresh("rf_pk_psql");
    c.sql(&db, "UPDATE orders SET id = 1 WHERE id = 2");
    let out = psql_each(Some(&px), &db, &["ALTER TABLE orders ADD PRIMARY KEY (id)"]);
    assert!(
        out.stderr.contains("could not create unique index"),
        "{}",
        out.stderr
    );
    assert_eq!(leftovers(&db), "");
    assert_eq!(
        c.sql(
            &db,
            "SELECT string_agg(indexrelid::regclass::text, ',') FROM pg_index \
             WHERE indrelid = 'orders'::regclass"
        ),
        "ix_orders_customer",
        "only the index pgwarden did not create may remain"
    );
    assert!(
        px.logs().contains("dropped the INVALID index"),
        "{}",
        px.logs()
    );
    c.sql(&db, "UPDATE orders SET id = 2 WHERE ref = 2");
    let stmt = "ALTER TABLE orders ADD CONSTRAINT pk_orders PRIMARY KEY (id, customer_id) \
                INCLUDE (amount) WITH (fillfactor = 90) DEFERRABLE INITIALLY IMMEDIATE";
    // A tablespace of its own: USING INDEX TABLESPACE must land the index there.
    let ts = format!("rf_ts_{}", std::process::id());
    let dir = tempfile::tempdir().expect("tablespace dir");
    if is_root() {
        let mut chown = std::process::Command::new("chown");
        chown.arg("postgres:postgres").arg(dir.path());
        run_cmd(chown, None, Duration::from_secs(30)).assert_success();
    }
    c.sql(
        "postgres",
        &format!("CREATE TABLESPACE {ts} LOCATION '{}'", dir.path().display()),
    );
    let unique =
        format!("ALTER TABLE orders ADD CONSTRAINT uq_ts UNIQUE (ref) USING INDEX TABLESPACE {ts}");
    psql_each(Some(&px), &db, &[stmt, &unique]).assert_success();
    let direct = fresh("rf_pk_direct");
    psql_each(None, &direct, &[stmt, &unique]).assert_success();
    assert!(schema(&db).contains(&format!("SET default_tablespace = {ts}")));
    assert_eq!(schema(&db), schema(&direct));
    assert!(
        px.logs().contains("multi-step rewrite"),
        "it must have been rewritten: {}",
        px.logs()
    );
    // The tablespace's directory goes with this test: nothing may be left in it.
    for d in [&db, &direct] {
        c.sql("postgres", &format!("DROP DATABASE \"{d}\""));
    }
    c.sql("postgres", &format!("DROP TABLESPACE {ts}"));
}

/// Several sub-commands in one ALTER TABLE, one of which needs a multi-step form: never sent
/// with a sub-command dropped, never half-applied. pgwarden refuses it saying why and how to
/// write it (one ALTER TABLE per constraint), and nothing of it is applied.
#[test]
fn several_sub_commands_are_refused_whole_with_how_to_write_them() {
    let px = proxy();
    for (tag, stmt) in [
        (
            "col_fk",
            "ALTER TABLE orders ADD COLUMN extra integer, ADD CONSTRAINT fk_orders_customer \
             FOREIGN KEY (customer_id) REFERENCES customers (id)",
        ),
        (
            "two_unique",
            "ALTER TABLE orders ADD CONSTRAINT uq_a UNIQUE (ref), ADD CONSTRAINT uq_b UNIQUE (amount, ref)",
        ),
        (
            "check_pk",
            "ALTER TABLE orders ADD CHECK (amount > 0), ADD PRIMARY KEY (id)",
        ),
    ] {
        for in_tx in [false, true] {
            let db = fresh(&format!("rf_multi_{tag}"));
            let before = schema(&db);
            let cmds: Vec<&str> = if in_tx {
                vec!["BEGIN", stmt, "COMMIT"]
            } else {
                vec![stmt]
            };
            let out = psql_each(Some(&px), &db, &cmds);
            assert!(!out.status.success(), "{tag} in_tx={in_tx}: {}", out.stdout);
            assert!(
                out.stderr.contains("several sub-commands"),
                "{tag}: the message must say why: {}",
                out.stderr
            );
            assert!(
                out.stderr.contains("an ALTER TABLE of its own"),
                "{tag}: the message must say how: {}",
                out.stderr
            );
            assert_eq!(schema(&db), before, "{tag} in_tx={in_tx}: nothing may be applied");
        }
    }
}

/// A direct connection's open transaction that wrote to `orders`: a concurrent build waits
/// for it ("waiting for writers before build") with its INVALID index already in the catalog.
async fn writer(db: &str) -> tokio_postgres::Client {
    let w = Cluster::shared().conn(db).connect().await;
    w.batch_execute("SET statement_timeout = 0; BEGIN; UPDATE orders SET note = note WHERE id = 1")
        .await
        .expect("writer");
    w
}

/// Polls `sql` (a count) on a direct connection until it is positive; 60 s at most, then
/// fails showing what the server was doing and pgwarden's log.
async fn wait_for(px: &ProxyProcess, db: &str, what: &str, sql: &str) {
    let probe = Cluster::shared().conn(db).connect().await;
    probe
        .batch_execute("SET statement_timeout = 0")
        .await
        .expect("probe setting");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let n: i64 = probe.query_one(sql, &[]).await.expect("probe").get(0);
        if n > 0 {
            return;
        }
        if std::time::Instant::now() >= deadline {
            let activity = Cluster::shared().sql(
                db,
                "SELECT string_agg(pid || ' ' || state || ' ' || coalesce(wait_event, '-') \
                 || ': ' || left(query, 120), E'\n') FROM pg_stat_activity \
                 WHERE datname = current_database()",
            );
            panic!(
                "timed out waiting for {what}\nserver sessions:\n{activity}\nproxy log:\n{}",
                px.logs()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// pgwarden's build waits for the writer, its INVALID index in the catalog.
const BUILD_WAITING: &str = "SELECT count(*) FROM pg_stat_progress_create_index p \
     JOIN pg_index i ON i.indexrelid = p.index_relid \
     WHERE p.datname = current_database() AND NOT i.indisvalid \
       AND p.phase = 'waiting for writers before build'";

/// pgwarden's clean-up of that index is running (it too waits for the writer): the condition
/// on pg_stat_activity.
const DROP_ACTIVE: &str = "datname = current_database() AND state = 'active' \
       AND query ILIKE '%DROP INDEX CONCURRENTLY IF EXISTS%' \
       AND pid <> pg_backend_pid()";

fn drop_running() -> String {
    format!("SELECT count(*) FROM pg_stat_activity WHERE {DROP_ACTIVE}")
}

fn index_count(db: &str, name: &str) -> String {
    Cluster::shared().sql(
        db,
        &format!("SELECT count(*) FROM pg_class WHERE relname = '{name}'"),
    )
}

/// A client's CancelRequest during pgwarden's concurrent build, outside a transaction block
/// and in a completion step after COMMIT: the build's INVALID index is dropped, the valid
/// index pgwarden did not create stays, and the client gets the cancel's error.
#[tokio::test(flavor = "multi_thread")]
async fn a_cancelled_build_leaves_no_invalid_index() {
    let c = Cluster::shared();
    let px = proxy();
    for in_tx in [false, true] {
        let db = fresh("rf_cancel");
        let w = writer(&db).await;
        let client = c.conn(&db).with_port(px.port()).connect().await;
        let token = client.cancel_token();
        let task = tokio::spawn(async move {
            if in_tx {
                client.batch_execute("BEGIN").await.expect("begin");
                client
                    .simple_query("CREATE INDEX ix_cancel ON orders (amount)")
                    .await
                    .expect("queued for COMMIT");
                client.simple_query("COMMIT").await
            } else {
                client
                    .simple_query("CREATE INDEX ix_cancel ON orders (amount)")
                    .await
            }
        });
        wait_for(
            &px,
            &db,
            "the build waiting with its INVALID index",
            BUILD_WAITING,
        )
        .await;
        token
            .cancel_query(tokio_postgres::NoTls)
            .await
            .expect("cancel");
        wait_for(&px, &db, "pgwarden's clean-up", &drop_running()).await;
        // PostgreSQL delivers a cancel as two SIGINTs (to the backend and to its process
        // group): on a loaded machine the second can land in pgwarden's clean-up. Such a stray
        // cancel (here sent on purpose) must not leave the INVALID index: pgwarden runs its
        // DROP again.
        let since = c.sql(&db, "SELECT clock_timestamp()");
        let hit = c.sql(
            &db,
            &format!(
                "SELECT count(*) FILTER (WHERE pg_cancel_backend(pid)) FROM pg_stat_activity \
                 WHERE {DROP_ACTIVE}"
            ),
        );
        assert_eq!(hit, "1", "in_tx={in_tx}: the clean-up was not running");
        wait_for(
            &px,
            &db,
            "pgwarden's clean-up, again after a stray cancel",
            &format!(
                "SELECT count(*) FROM pg_stat_activity WHERE {DROP_ACTIVE} \
                 AND query_start > '{since}'"
            ),
        )
        .await;
        w.batch_execute("COMMIT").await.expect("writer commit");
        let e = task.await.expect("task").expect_err("cancelled");
        let db_err = e.as_db_error().expect("server error");
        if in_tx {
            assert_eq!(db_err.code().code(), "PW002", "{db_err:?}");
            assert!(
                db_err
                    .message()
                    .contains("canceling statement due to user request"),
                "{db_err:?}"
            );
        } else {
            assert_eq!(db_err.code().code(), "57014", "{db_err:?}");
        }
        assert_eq!(leftovers(&db), "", "in_tx={in_tx}");
        assert_eq!(index_count(&db, "ix_cancel"), "0");
        assert_eq!(index_count(&db, "ix_orders_customer"), "1");
    }
    assert!(
        px.logs().contains("dropped the INVALID index"),
        "{}",
        px.logs()
    );
}

/// The server's statement_timeout (the database's own setting, kept by pgwarden) cancels
/// pgwarden's build: its INVALID index is dropped all the same.
#[tokio::test(flavor = "multi_thread")]
async fn a_build_cancelled_by_statement_timeout_leaves_no_invalid_index() {
    let c = Cluster::shared();
    let px = proxy();
    let db = fresh("rf_timeout");
    c.sql(
        "postgres",
        &format!("ALTER DATABASE \"{db}\" SET statement_timeout = '2s'"),
    );
    let w = writer(&db).await;
    let client = c.conn(&db).with_port(px.port()).connect().await;
    let task = tokio::spawn(async move {
        client
            .simple_query("CREATE UNIQUE INDEX ix_timeout ON orders (ref)")
            .await
    });
    // The timeout fires while the build waits for the writer; then the clean-up waits too.
    wait_for(
        &px,
        &db,
        "pgwarden's clean-up after the timeout",
        &drop_running(),
    )
    .await;
    w.batch_execute("COMMIT").await.expect("writer commit");
    let e = task.await.expect("task").expect_err("timed out");
    let db_err = e.as_db_error().expect("server error");
    assert_eq!(db_err.code().code(), "57014", "{db_err:?}");
    assert!(db_err.message().contains("statement timeout"), "{db_err:?}");
    assert_eq!(leftovers(&db), "");
    assert_eq!(index_count(&db, "ix_timeout"), "0");
    assert_eq!(index_count(&db, "ix_orders_customer"), "1");
}

/// An INVALID index the user's own failed build left is not pgwarden's to drop: a
/// `CREATE INDEX IF NOT EXISTS` of its name builds nothing and says so (invalid-index-kept),
/// and an unnamed UNIQUE whose first name is taken by it gets the next name, as a direct run
/// does; the user's index stays in both cases.
#[test]
fn a_users_invalid_index_of_the_same_name_is_kept() {
    let c = Cluster::shared();
    let px = proxy();
    let db = fresh("rf_users_invalid");
    for name in ["ix_user", "orders_ref_key"] {
        psql_each(
            None,
            &db,
            &[&format!(
                "CREATE UNIQUE INDEX CONCURRENTLY {name} ON orders (amount)"
            )],
        )
        .assert_failure();
    }
    assert_eq!(leftovers(&db), "ix_user,orders_ref_key");
    let out = psql_each(
        Some(&px),
        &db,
        &["CREATE INDEX IF NOT EXISTS ix_user ON orders (amount)"],
    );
    out.assert_success();
    assert!(out.stderr.contains("invalid-index-kept"), "{}", out.stderr);
    psql_each(Some(&px), &db, &["ALTER TABLE orders ADD UNIQUE (ref)"]).assert_success();
    assert_eq!(
        c.sql(
            &db,
            "SELECT string_agg(conname, ',') FROM pg_constraint WHERE conrelid = 'orders'::regclass"
        ),
        "orders_ref_key1"
    );
    assert_eq!(
        leftovers(&db),
        "ix_user,orders_ref_key",
        "the user's indexes stay"
    );
}

/// Steps after the COMMIT run without the transaction's `SET LOCAL search_path`: they must
/// still reach the table the statement named then (here the big `tenant.orders`), not a
/// same-named table the session's own search_path finds first (a small `public.orders`).
#[test]
fn steps_after_commit_reach_the_table_the_transaction_named() {
    let c = Cluster::shared();
    let migration = [
        "BEGIN",
        "SET LOCAL search_path = tenant, public",
        "CREATE INDEX ix_orders_amount ON orders (amount)",
        "ALTER TABLE orders ALTER COLUMN status SET NOT NULL",
        "ALTER TABLE orders ADD CONSTRAINT uq_orders_ref UNIQUE (ref)",
        "COMMIT",
    ];
    let set_up = |tag: &str| {
        let db = fresh(tag);
        c.sql(
            &db,
            "CREATE SCHEMA tenant; ALTER TABLE orders SET SCHEMA tenant; \
             CREATE TABLE public.orders (LIKE tenant.orders); \
             INSERT INTO public.orders SELECT * FROM tenant.orders LIMIT 10",
        );
        db
    };
    let direct = set_up("rf_tenant_direct");
    psql_each(None, &direct, &migration).assert_success();
    let expected = schema(&direct);
    assert!(
        expected.contains("CREATE INDEX ix_orders_amount ON tenant.orders"),
        "{expected}"
    );

    let px = proxy();
    let db = set_up("rf_tenant");
    let out = psql_each(Some(&px), &db, &migration);
    assert!(
        out.status.success(),
        "through pgwarden: {}\n{}\nproxy log:\n{}",
        out.stdout,
        out.stderr,
        px.logs()
    );
    let logs = px.logs();
    assert!(
        logs.contains("completion steps queued"),
        "the statements did not run as steps after COMMIT: {logs}"
    );
    assert_eq!(schema(&db), expected, "schema differs from a direct run");
    assert_eq!(leftovers(&db), "");
}
