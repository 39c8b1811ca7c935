//! One pgwarden in front of two PostgreSQL clusters, routed by the database name the client
//! asks for (`[databases]`), with and without a `*` fallback; the 3D000 for an unknown name is
//! pgwarden's own, before any upstream connection; policy profiles match the client's name.
mod common;

use common::*;

/// `select current_database(), port` through pgwarden as `db`.
fn whereami(proxy: &ProxyProcess, cluster: &Cluster, db: &str) -> CmdOutput {
    let via = cluster.conn(db).with_port(proxy.port());
    psql(
        &via,
        &[
            "-At",
            "-c",
            "select current_database() || ' ' || current_setting('port')",
        ],
    )
}

#[test]
fn two_clusters_by_database_name_fallback_and_unknown_database() {
    let one = Cluster::shared();
    let two = Cluster::start(ClusterOptions::default());
    let db1 = one.fresh_db("ops_route_one");
    let db2 = two.fresh_db("ops_route_two");
    let other2 = two.fresh_db("ops_route_other");
    one.sql(&db1, "create table t (id bigint)");
    two.sql(&db2, "create table t (id bigint)");
    let routes = format!(
        "[databases.\"{db1}\"]\nupstream = \"{}\"\n[databases.reports]\nupstream = \"{}\"\n\
         database = \"{db2}\"\n",
        one.addr(),
        two.addr()
    );
    // `[server] upstream` points nowhere: with [databases] set it is not used.
    let policy = "[policy]\nmode = \"enforce\"\n[policy.rules]\n\"ban-drop-table\" = \"reject\"\n\
                  \"require-lock-timeout\" = \"off\"\n\"require-statement-timeout\" = \"off\"\n\
                  [[policy.profiles]]\nname = \"reports\"\ndatabase = \"reports\"\n\
                  [policy.profiles.rules]\n\"ban-drop-table\" = \"warn\"\n";
    let proxy = ProxyProcess::start("127.0.0.1:1", &format!("{policy}{routes}"));

    let out = whereami(&proxy, one, &db1);
    out.assert_success();
    assert_eq!(out.stdout.trim(), format!("{db1} {}", one.port));
    // `reports` is renamed to db2 on the second cluster.
    let out = whereami(&proxy, one, "reports");
    out.assert_success();
    assert_eq!(out.stdout.trim(), format!("{db2} {}", two.port));

    // Unknown name, no fallback: pgwarden's own 3D000, nothing reached a server.
    let out = whereami(&proxy, one, "nope");
    out.assert_failure();
    assert!(
        out.stderr.contains("database \"nope\" does not exist")
            && out.stderr.contains("no [databases] entry"),
        "{}",
        out.stderr
    );
    assert!(
        !two.server_log().contains("\"nope\""),
        "the server was asked for it"
    );
    assert!(
        !one.server_log().contains("\"nope\""),
        "the server was asked for it"
    );

    // Profiles match the client's name: drop table is rejected on db1, warned on `reports`.
    let out = psql(
        &one.conn(&db1).with_port(proxy.port()),
        &["-c", "drop table t"],
    );
    out.assert_failure();
    assert!(out.stderr.contains("ban-drop-table"), "{}", out.stderr);
    psql(
        &one.conn("reports").with_port(proxy.port()),
        &["-c", "drop table t"],
    )
    .assert_success();
    assert!(two
        .sql(&db2, "select count(*) from pg_tables where tablename = 't'")
        .contains('0'));

    // With a `*` fallback an unlisted name goes there, under its own name.
    let fallback = format!("{routes}[databases.\"*\"]\nupstream = \"{}\"\n", two.addr());
    let proxy2 = ProxyProcess::start("127.0.0.1:1", &format!("{policy}{fallback}"));
    let out = whereami(&proxy2, one, &other2);
    out.assert_success();
    assert_eq!(out.stdout.trim(), format!("{other2} {}", two.port));
    let out = whereami(&proxy2, one, &db1);
    out.assert_success();
    assert_eq!(out.stdout.trim(), format!("{db1} {}", one.port));
    // A fallback name the server does not have: the server's own 3D000.
    let out = whereami(&proxy2, one, "nope");
    out.assert_failure();
    assert!(out.stderr.contains("does not exist"), "{}", out.stderr);
    assert!(
        !out.stderr.contains("no [databases] entry"),
        "{}",
        out.stderr
    );
}
