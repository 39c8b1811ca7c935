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
