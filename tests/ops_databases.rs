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
    // With a row: an empty table nobody else uses is only warned about by ban-drop-table.
    one.sql(&db1, "create table t (id bigint); insert into t values (1)");
    two.sql(&db2, "create table t (id bigint); insert into t values (1)");
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

/// `select ssl from pg_stat_ssl` of the backend pgwarden opened for `db`: "t", "f", or the error.
fn server_leg_ssl(proxy: &ProxyProcess, cluster: &Cluster, db: &str) -> CmdOutput {
    psql(
        &cluster.conn(db).with_port(proxy.port()),
        &[
            "-At",
            "-c",
            "select ssl from pg_stat_ssl where pid = pg_backend_pid()",
        ],
    )
}

#[test]
fn each_database_entry_reaches_its_upstream_with_its_own_tls_settings() {
    let plain = Cluster::shared();
    let secure = Cluster::start(ClusterOptions {
        ssl: true,
        ..Default::default()
    });
    let db1 = plain.fresh_db("ops_tls_plain");
    let dbs = secure.fresh_db("ops_tls_secure");
    let ca = secure.ca_cert.clone().expect("ssl cluster has a CA");
    let other_ca_dir = tempfile::tempdir().unwrap();
    let other_ca = other_ca_dir.path().join("other-ca.crt");
    std::fs::write(&other_ca, TestCa::new().cert_pem()).unwrap();
    let toml = format!(
        "[server]\nupstream_tls = \"disable\"\n[policy]\nmode = \"dry-run\"\n\
         [databases.plain]\nupstream = \"{p}\"\ndatabase = \"{db1}\"\n\
         [databases.secure]\nupstream = \"{s}\"\ndatabase = \"{dbs}\"\nupstream_tls = \"verify-full\"\n\
         upstream_tls_ca_file = \"{ca}\"\nupstream_tls_server_name = \"localhost\"\n\
         [databases.secure_unencrypted]\nupstream = \"{s}\"\ndatabase = \"{dbs}\"\n\
         [databases.wrong_ca]\nupstream = \"{s}\"\ndatabase = \"{dbs}\"\nupstream_tls = \"verify-full\"\n\
         upstream_tls_ca_file = \"{other}\"\n",
        p = plain.addr(),
        s = secure.addr(),
        ca = ca.display(),
        other = other_ca.display(),
    );
    let proxy = ProxyProcess::start("127.0.0.1:1", &toml);

    let out = server_leg_ssl(&proxy, plain, "plain");
    out.assert_success();
    assert_eq!(out.stdout.trim(), "f");
    let out = server_leg_ssl(&proxy, plain, "secure");
    out.assert_success();
    assert_eq!(
        out.stdout.trim(),
        "t",
        "verify-full entry: TLS to the server"
    );
    // Same server, the entry sets no TLS: [server] upstream_tls = "disable" is inherited.
    let out = server_leg_ssl(&proxy, plain, "secure_unencrypted");
    out.assert_success();
    assert_eq!(out.stdout.trim(), "f");
    // A CA that did not sign the server's certificate: refused for that entry only.
    let out = server_leg_ssl(&proxy, plain, "wrong_ca");
    out.assert_failure();
    assert!(
        out.stderr.contains("could not connect to the upstream") || out.stderr.contains("TLS"),
        "{}",
        out.stderr
    );
    let out = server_leg_ssl(&proxy, plain, "secure");
    out.assert_success();
    assert_eq!(out.stdout.trim(), "t");
}

/// Waits until the log has `needle` `n` times.
fn wait_log(proxy: &ProxyProcess, needle: &str, n: usize) {
    assert!(
        wait_until(std::time::Duration::from_secs(60), || proxy
            .logs()
            .matches(needle)
            .count()
            >= n),
        "no {n}x {needle:?} in:\n{}",
        proxy.logs()
    );
}

fn hup(proxy: &ProxyProcess) {
    let mut c = std::process::Command::new("kill");
    c.args(["-HUP", &proxy.pid().to_string()]);
    run_cmd(c, None, std::time::Duration::from_secs(10)).assert_success();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reroutes_new_sessions_reloads_execute_and_log_level_and_keeps_open_sessions() {
    let one = Cluster::shared();
    let two = Cluster::start(ClusterOptions::default());
    let db1 = one.fresh_db("ops_reroute_one");
    let db2 = two.fresh_db("ops_reroute_two");
    one.sql(&db1, "create table t (id bigint)");
    let config = |log_level: &str, lock_timeout: &str, extra: &str| {
        format!(
            "[server]\nlog_level = \"{log_level}\"\n{extra}\n[policy]\nmode = \"enforce\"\n\
             [policy.rules]\n\"require-lock-timeout\" = \"off\"\n\
             \"require-statement-timeout\" = \"off\"\n\
             [execute]\nquick_lock_timeout = \"{lock_timeout}\"\n\
             [databases.\"{db1}\"]\nupstream = \"{}\"\n",
            one.addr()
        )
    };
    let moved = format!(
        "[databases.moved]\nupstream = \"{}\"\ndatabase = \"{db2}\"\n",
        two.addr()
    );
    // RUST_LOG unset: `log_level` decides the filter, so a reload can change it.
    let proxy = ProxyProcess::start_with_env(
        "127.0.0.1:1",
        &config("info", "1s", ""),
        &[],
        &[("RUST_LOG", None)],
    );
    let audit = proxy.config_path.with_file_name("pgwarden-audit.jsonl");
    let open = one.conn(&db1).with_port(proxy.port()).connect().await;
    open.batch_execute("alter table t add column a int")
        .await
        .unwrap();
    assert!(std::fs::read_to_string(&audit)
        .unwrap()
        .contains("lock_timeout 1000 ms"));
    let out = whereami(&proxy, one, "moved");
    out.assert_failure();
    assert!(
        out.stderr.contains("no [databases] entry"),
        "{}",
        out.stderr
    );
    assert!(
        !proxy.logs().contains("session started"),
        "{}",
        proxy.logs()
    );

    // New route, new lock_timeout, debug logging, and a restart-only change.
    std::fs::write(
        &proxy.config_path,
        config("info,pgwarden=debug", "777ms", "max_connections = 7") + &moved,
    )
    .unwrap();
    hup(&proxy);
    wait_log(&proxy, "config reloaded", 1);
    let logs = proxy.logs();
    assert!(
        logs.contains("[server] max_connections changed; that takes a restart"),
        "{logs}"
    );
    for what in ["[execute]", "routing", "log_level"] {
        assert!(
            logs.lines()
                .any(|l| l.contains("config reloaded") && l.contains(what)),
            "{what}: {logs}"
        );
    }
    // The session opened before the reload: its next statement runs under the new timeout.
    open.batch_execute("alter table t add column b int")
        .await
        .unwrap();
    assert!(std::fs::read_to_string(&audit)
        .unwrap()
        .contains("lock_timeout 777 ms"));
    // A new session for `moved` goes to the second cluster, and is logged at debug level.
    let out = whereami(&proxy, one, "moved");
    out.assert_success();
    assert_eq!(out.stdout.trim(), format!("{db2} {}", two.port));
    wait_log(&proxy, "session started", 1);
    let on_two = one.conn("moved").with_port(proxy.port()).connect().await;

    // `moved` removed again: new sessions get 3D000, open ones on both clusters stay.
    std::fs::write(&proxy.config_path, config("info", "777ms", "")).unwrap();
    hup(&proxy);
    wait_log(&proxy, "config reloaded", 2);
    let out = whereami(&proxy, one, "moved");
    out.assert_failure();
    assert!(
        out.stderr.contains("no [databases] entry"),
        "{}",
        out.stderr
    );
    let port: String = on_two
        .query_one("select current_setting('port')", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(port, two.port.to_string());
    open.batch_execute("select 1").await.unwrap();

    // A file whose CA cannot be read is refused as a whole: the route it adds does not appear.
    std::fs::write(
        &proxy.config_path,
        config("info", "777ms", "")
            + &moved
            + "upstream_tls = \"verify-full\"\nupstream_tls_ca_file = \"/nonexistent/ca.crt\"\n",
    )
    .unwrap();
    hup(&proxy);
    wait_log(&proxy, "config reload refused", 1);
    assert!(
        proxy.logs().contains("/nonexistent/ca.crt"),
        "{}",
        proxy.logs()
    );
    let out = whereami(&proxy, one, "moved");
    out.assert_failure();
    assert!(
        out.stderr.contains("no [databases] entry"),
        "{}",
        out.stderr
    );
}
