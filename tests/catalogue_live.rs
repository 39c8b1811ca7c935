//! Rules of the squawk 2.70 catalogue that the live catalog makes sharper (issue 12), end to
//! end: psql through pgwarden against a real PostgreSQL; every change is checked afterwards
//! over a direct connection.
mod common;

use common::*;

fn proxy() -> (ProxyProcess, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let toml = format!(
        "[policy]\n[audit]\npath = \"{}\"\n",
        dir.path().join("audit.jsonl").display()
    );
    (ProxyProcess::start(&Cluster::shared().addr(), &toml), dir)
}

/// psql script (each statement its own Query), stopping at the first error.
fn script(conn: &ConnInfo, sql: &str) -> CmdOutput {
    psql_stdin(
        conn,
        &["-v", "ON_ERROR_STOP=1", "-f", "-"],
        Some(sql.as_bytes()),
    )
}

/// The column's default over a direct connection (empty when it has none).
fn default_of(db: &str, table: &str, col: &str) -> String {
    Cluster::shared().sql(
        db,
        &format!(
            "SELECT coalesce(column_default, '') FROM information_schema.columns \
             WHERE table_name = '{table}' AND column_name = '{col}'"
        ),
    )
}

/// ban-drop-default says what happens to inserts that leave the column out, from the column's
/// NOT NULL in the catalog: they fail (23502) or they store NULL. Both are warnings (the rule's
/// default) and the DROP DEFAULT runs.
#[test]
fn drop_default_names_not_null_or_nullable_from_the_catalog() {
    let c = Cluster::shared();
    let db = c.fresh_db("cat_drop_default");
    c.sql(
        &db,
        "CREATE TABLE orders (id int PRIMARY KEY, status text NOT NULL DEFAULT 'new', \
         note text DEFAULT 'none');
         INSERT INTO orders (id) SELECT g FROM generate_series(1, 100) g;
         ANALYZE orders;",
    );
    let (px, _audit) = proxy();
    let conn = c.conn(&db).with_port(px.port());

    let out = script(
        &conn,
        "ALTER TABLE orders ALTER COLUMN status DROP DEFAULT;",
    );
    out.assert_success();
    let all = format!("{}{}", out.stdout, out.stderr);
    assert!(all.contains("(column status, NOT NULL)"), "{all}");
    assert!(all.contains("not-null violation (23502)"), "{all}");
    assert_eq!(default_of(&db, "orders", "status"), "");

    let out = script(&conn, "ALTER TABLE orders ALTER COLUMN note DROP DEFAULT;");
    out.assert_success();
    let all = format!("{}{}", out.stdout, out.stderr);
    assert!(all.contains("(column note, nullable)"), "{all}");
    assert!(all.contains("silently store NULL"), "{all}");
    assert_eq!(default_of(&db, "orders", "note"), "");

    // What the message said is what the server now does.
    let refused = script(&conn, "INSERT INTO orders (id) VALUES (1000);");
    assert!(!refused.status.success());
    assert!(
        refused.stderr.contains("null value in column \"status\""),
        "{}",
        refused.stderr
    );
}

/// No other session connected to `db` (the harness's own direct connections close
/// asynchronously): then drops of objects without rows are warnings (`rules::unused`).
fn wait_unused(db: &str) {
    let ok = wait_until(std::time::Duration::from_secs(60), || {
        Cluster::shared().sql(
            "postgres",
            &format!("SELECT count(*) FROM pg_stat_activity WHERE datname = '{db}'"),
        ) == "0"
    });
    assert!(ok, "sessions still connected to {db}");
}

/// The routines of that name (any schema), as `regprocedure` prints them (qualified when
/// not on the search_path); immune to the operators and types a test plants.
fn routines(db: &str, name: &str) -> String {
    Cluster::shared().sql(
        db,
        &format!(
            "SELECT coalesce(string_agg(p.oid::regprocedure::pg_catalog.text, ' ' ORDER BY 1), '') \
             FROM pg_proc p WHERE p.proname OPERATOR(pg_catalog.=) '{name}'"
        ),
    )
}

fn output(out: &CmdOutput) -> String {
    format!("{}{}", out.stdout, out.stderr)
}

/// A function that a view, a column default, a check constraint, an index expression, a
/// SQL-standard function body, and (an aggregate) a view use; a trigger function: every DROP
/// of one of them is refused, naming what depends on it, with or without CASCADE, even in a
/// database nobody else uses. Nothing is dropped. The unused overload of the same name is
/// resolved by its argument types, and its drop (nothing depends on it; the database is
/// unused) runs as a warning that names the PL/pgSQL body that mentions the name.
#[test]
fn drop_function_names_what_depends_on_it() {
    let c = Cluster::shared();
    let db = c.fresh_db("cat_drop_fn_deps");
    c.sql(
        &db,
        "CREATE SCHEMA app;
         CREATE FUNCTION app.price(int) RETURNS int IMMUTABLE LANGUAGE sql AS 'SELECT $1';
         CREATE FUNCTION app.price(text) RETURNS int IMMUTABLE LANGUAGE sql AS 'SELECT 1';
         CREATE VIEW app.v AS SELECT app.price(1) AS p;
         CREATE TABLE app.t (a int DEFAULT app.price(2) CHECK (app.price(a) > 0));
         CREATE INDEX t_price ON app.t (app.price(a));
         CREATE FUNCTION app.total() RETURNS int LANGUAGE sql RETURN app.price(3);
         CREATE FUNCTION app.legacy() RETURNS int LANGUAGE plpgsql
           AS $$ BEGIN RETURN app.price('x'); END $$;
         CREATE FUNCTION app.stamp() RETURNS trigger LANGUAGE plpgsql
           AS $$ BEGIN RETURN NEW; END $$;
         CREATE TRIGGER t_stamp BEFORE INSERT ON app.t FOR EACH ROW EXECUTE FUNCTION app.stamp();
         CREATE AGGREGATE app.total_of(int) (sfunc = int4pl, stype = int);
         CREATE VIEW app.sums AS SELECT app.total_of(a) FROM app.t;",
    );
    wait_unused(&db);
    let (px, _audit) = proxy();
    let conn = c.conn(&db).with_port(px.port());

    let out = script(&conn, "DROP FUNCTION app.price(integer);");
    let all = output(&out);
    assert!(!out.status.success(), "{all}");
    for dependent in [
        "ban-drop-function",
        "app.price(integer) is used by",
        "view app.v",
        "default value for column a of table app.t",
        "constraint t_a_check on table app.t",
        "index app.t_price",
        "function app.total()",
        "without CASCADE the server refuses the drop (2BP01",
    ] {
        assert!(all.contains(dependent), "{dependent}: {all}");
    }
    // pg_depend does not see the PL/pgSQL caller, and the unused overload is not named.
    assert!(!all.contains("app.legacy()"), "{all}");
    assert!(!all.contains("price(text)"), "{all}");

    let out = script(&conn, "DROP FUNCTION IF EXISTS app.price(int4) CASCADE;");
    let all = output(&out);
    assert!(!out.status.success(), "{all}");
    assert!(all.contains("view app.v"), "{all}");
    assert!(all.contains("CASCADE drops them with it"), "{all}");

    let out = script(&conn, "DROP ROUTINE app.stamp;");
    let all = output(&out);
    assert!(!out.status.success(), "{all}");
    assert!(all.contains("trigger t_stamp on table app.t"), "{all}");

    let out = script(&conn, "DROP AGGREGATE app.total_of(integer);");
    let all = output(&out);
    assert!(!out.status.success(), "{all}");
    assert!(all.contains("view app.sums"), "{all}");

    // Nothing was dropped by any of them.
    assert_eq!(routines(&db, "price"), "app.price(integer) app.price(text)");
    assert_eq!(routines(&db, "stamp"), "app.stamp()");
    assert_eq!(routines(&db, "total_of"), "app.total_of(integer)");
    assert_eq!(c.sql(&db, "SELECT count(*) FROM app.v"), "1");

    // The overload nothing depends on: a warning (unused database), and it runs.
    // varchar is not text: no such routine; pgwarden says what the server answers.
    let out = script(&conn, "DROP FUNCTION app.price(varchar(20));");
    let all = output(&out);
    assert!(!out.status.success(), "{all}");
    assert!(
        all.contains("does not exist (the server refuses: 42883)"),
        "{all}"
    );
    assert!(
        all.contains("function app.price(character varying) does not exist"),
        "{all}"
    );
    let out = script(&conn, "DROP FUNCTION app.price(text);");
    let all = output(&out);
    out.assert_success();
    assert!(
        all.contains("nothing in the database depends on app.price(text)"),
        "{all}"
    );
    assert!(
        all.contains("the bodies of function app.legacy() mention its name"),
        "{all}"
    );
    assert!(all.contains("allowed as a warning"), "{all}");
    assert_eq!(routines(&db, "price"), "app.price(integer)");
}

/// Resolution as the server does it: an unqualified name through the session's search_path
/// (the first schema with that signature wins), overloads by argument types (typmods and
/// argument names ignored, OUT arguments skipped by DROP FUNCTION and matched by DROP
/// PROCEDURE), and a name without an argument list that is not unique. Each message is about
/// the routine the server then drops (or refuses to).
#[test]
fn drop_function_resolves_overloads_and_the_search_path() {
    let c = Cluster::shared();
    let db = c.fresh_db("cat_drop_fn_resolve");
    c.sql(
        &db,
        "CREATE SCHEMA a; CREATE SCHEMA b;
         CREATE FUNCTION a.f(int) RETURNS int LANGUAGE sql AS 'SELECT 1';
         CREATE FUNCTION b.f(int) RETURNS int LANGUAGE sql AS 'SELECT 2';
         CREATE FUNCTION b.f(text) RETURNS int LANGUAGE sql AS 'SELECT 3';
         CREATE VIEW b.uses_int AS SELECT b.f(1) AS x;
         CREATE VIEW a.uses_text AS SELECT b.f('x'::text) AS x;
         CREATE FUNCTION b.split(IN whole numeric, OUT part int) LANGUAGE sql AS 'SELECT 1';
         CREATE PROCEDURE b.tidy(IN n int, OUT removed int) LANGUAGE sql AS 'SELECT 1';",
    );
    wait_unused(&db);
    let (px, _audit) = proxy();
    let conn = c.conn(&db).with_port(px.port());

    // search_path a, b: f(text) exists only in b, and a view depends on it.
    let out = script(&conn, "SET search_path = a, b;\nDROP FUNCTION f(text);");
    let all = output(&out);
    assert!(!out.status.success(), "{all}");
    assert!(all.contains("is used by view uses_text"), "{all}");
    assert!(!all.contains("uses_int"), "{all}");

    // f(integer) is a.f first: nothing depends on it (b.f(int)'s view is not its dependent).
    let out = script(
        &conn,
        "SET search_path = a, b;\nDROP FUNCTION f(x integer);",
    );
    let all = output(&out);
    out.assert_success();
    assert!(all.contains("nothing in the database depends on"), "{all}");
    assert!(!all.contains("uses_int"), "{all}");
    assert_eq!(routines(&db, "f"), "b.f(integer) b.f(text)");

    // Schema-qualified, the same signature: b.f(int) and its view.
    let out = script(&conn, "DROP FUNCTION b.f(int4);");
    let all = output(&out);
    assert!(!out.status.success(), "{all}");
    assert!(
        all.contains("b.f(integer) is used by view b.uses_int"),
        "{all}"
    );

    // No argument list, two routines named f in b: the server refuses (not unique).
    let out = script(&conn, "DROP FUNCTION b.f;");
    let all = output(&out);
    assert!(!out.status.success(), "{all}");
    assert!(all.contains("matches 2 routines"), "{all}");
    assert!(all.contains("b.f(integer), b.f(text)"), "{all}");
    assert!(all.contains("42725"), "{all}");
    assert_eq!(routines(&db, "f"), "b.f(integer) b.f(text)");

    // DROP FUNCTION skips the OUT argument; DROP PROCEDURE also matches on it.
    let out = script(&conn, "DROP FUNCTION b.split(numeric(10,2), OUT int);");
    let all = output(&out);
    out.assert_success();
    assert!(
        all.contains("nothing in the database depends on b.split(numeric)"),
        "{all}"
    );
    let out = script(&conn, "DROP PROCEDURE b.tidy(int, int);");
    let all = output(&out);
    out.assert_success();
    assert!(
        all.contains("nothing in the database depends on b.tidy(integer)"),
        "{all}"
    );
    assert_eq!(routines(&db, "split"), "");
    assert_eq!(routines(&db, "tidy"), "");
}

/// While another session is connected to the database, a drop of a routine nothing depends
/// on keeps the rule's default: refused, with the sharper message (pg_depend cannot see the
/// application's calls). When that session leaves, the same statement runs as a warning.
#[test]
fn drop_of_an_unused_function_is_refused_while_the_database_is_in_use() {
    let c = Cluster::shared();
    let db = c.fresh_db("cat_drop_fn_inuse");
    c.sql(
        &db,
        "CREATE FUNCTION public.lonely(bigint) RETURNS bigint LANGUAGE sql AS 'SELECT $1';",
    );
    let (px, _audit) = proxy();
    let conn = c.conn(&db).with_port(px.port());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let app = rt.block_on(c.conn(&db).connect());
    rt.block_on(app.simple_query("SELECT 1"))
        .expect("app session");

    let out = script(&conn, "DROP FUNCTION lonely(int8);");
    let all = output(&out);
    assert!(!out.status.success(), "{all}");
    assert!(
        all.contains("nothing in the database depends on lonely(bigint)"),
        "{all}"
    );
    assert!(all.contains("calls from application code"), "{all}");
    assert_eq!(routines(&db, "lonely"), "lonely(bigint)");

    drop(app);
    drop(rt);
    wait_unused(&db);
    let out = script(&conn, "DROP FUNCTION lonely(int8);");
    let all = output(&out);
    out.assert_success();
    assert!(all.contains("allowed as a warning"), "{all}");
    assert_eq!(routines(&db, "lonely"), "");
}

/// The lookup resolves argument types on the server with `to_regtype`, which raises on a
/// malformed type name; inside the client's transaction that would abort it. Every spelling
/// below goes through in a transaction that then goes on and commits (the database is unused,
/// so these drops are warnings and reach the server, which skips them: IF EXISTS), and the
/// lookup answered for each one pgwarden vouches for.
#[test]
fn drop_function_lookup_never_aborts_the_transaction() {
    let c = Cluster::shared();
    let db = c.fresh_db("cat_drop_fn_types");
    c.sql(
        &db,
        "CREATE TYPE \"My T\" AS (a int); CREATE TABLE t (c int);",
    );
    wait_unused(&db);
    let (px, _audit) = proxy();
    let conn = c.conn(&db).with_port(px.port());
    let vouched = [
        "int",
        "integer",
        "\"int4\"",
        "pg_catalog.int4",
        "nosuch",
        "nosuch.t",
        "s.select",
        "float",
        "double precision",
        "character varying(10)",
        "national character varying(3)",
        "timestamp(3) with time zone",
        "time without time zone",
        "interval day to second",
        "bit varying(5)",
        "\"My T\"[]",
        "int[][]",
        "json",
        "numeric(10,2)",
        "a int, OUT b text",
    ];
    for ty in vouched {
        let out = script(
            &conn,
            &format!("BEGIN;\nDROP FUNCTION IF EXISTS nothing_here({ty});\nSELECT 1;\nCOMMIT;"),
        );
        let all = output(&out);
        assert!(out.status.success(), "{ty}: {all}");
        assert!(
            all.contains("does not exist: nothing is dropped"),
            "{ty}: {all}"
        );
    }
    // Not vouched for: not looked up; the transaction goes on all the same.
    for ty in ["float(24)", "t.c%TYPE"] {
        let out = script(
            &conn,
            &format!("BEGIN;\nDROP FUNCTION IF EXISTS nothing_here({ty});\nSELECT 1;\nCOMMIT;"),
        );
        let all = output(&out);
        assert!(out.status.success(), "{ty}: {all}");
        assert!(all.contains("ban-drop-function"), "{ty}: {all}");
        assert!(
            !all.contains("does not exist: nothing is dropped"),
            "{ty}: {all}"
        );
    }
}

/// The user's operators, types and search_path cannot break or hijack the routine lookup
/// (`enforce::lookup`'s rules): with `=` on oid, name and text raising, a `public.text` type
/// and `public` first on the search_path, the dependents are still named, and a drop that
/// goes through leaves the client's transaction able to go on and commit.
#[test]
fn planted_operators_cannot_break_the_routine_lookup() {
    let c = Cluster::shared();
    let db = c.fresh_db("cat_drop_fn_hostile");
    c.sql(
        &db,
        &format!(
            "CREATE FUNCTION public.boom_oid(oid, oid) RETURNS bool LANGUAGE sql AS $$SELECT 1/0 = 1$$;
             CREATE OPERATOR public.= (LEFTARG = oid, RIGHTARG = oid, FUNCTION = public.boom_oid);
             CREATE OPERATOR public.<> (LEFTARG = oid, RIGHTARG = oid, FUNCTION = public.boom_oid);
             CREATE FUNCTION public.boom_name(name, name) RETURNS bool LANGUAGE sql AS $$SELECT 1/0 = 1$$;
             CREATE OPERATOR public.= (LEFTARG = name, RIGHTARG = name, FUNCTION = public.boom_name);
             CREATE FUNCTION public.boom_text(text, text) RETURNS bool LANGUAGE sql AS $$SELECT 1/0 = 1$$;
             CREATE OPERATOR public.= (LEFTARG = text, RIGHTARG = text, FUNCTION = public.boom_text);
             CREATE TYPE public.text AS (a int);
             CREATE FUNCTION public.used(int) RETURNS int LANGUAGE sql AS 'SELECT 1';
             CREATE FUNCTION public.unused(int) RETURNS int LANGUAGE sql AS 'SELECT 1';
             CREATE VIEW public.uses AS SELECT public.used(1) AS x;
             ALTER DATABASE \"{db}\" SET search_path = public, pg_catalog;"
        ),
    );
    wait_unused(&db);
    let (px, _audit) = proxy();
    let conn = c.conn(&db).with_port(px.port());

    let out = script(&conn, "BEGIN;\nDROP FUNCTION used(int);\nCOMMIT;");
    let all = output(&out);
    assert!(!out.status.success(), "{all}");
    assert!(all.contains("used(integer) is used by view uses"), "{all}");
    assert!(
        !all.contains("division by zero"),
        "the lookup failed: {all}"
    );

    let out = script(
        &conn,
        "BEGIN;\nDROP FUNCTION unused(int);\nSELECT 1;\nCOMMIT;",
    );
    let all = output(&out);
    assert!(out.status.success(), "{all}");
    assert!(
        all.contains("nothing in the database depends on unused(integer)"),
        "{all}"
    );
    assert!(
        !all.contains("division by zero"),
        "the lookup failed: {all}"
    );
    assert_eq!(routines(&db, "unused"), "");
    assert_eq!(routines(&db, "used"), "used(integer)");
}
