//! The unix-domain socket listener (`listen_unix`) with real psql against real PostgreSQL:
//! libpq's `host = <directory>` form, the policy on that path too, the socket file removed at
//! shutdown, and a stale socket file replaced at start.
mod common;

use std::time::Duration;

use common::*;

#[test]
fn psql_connects_over_the_unix_socket() {
    let cluster = Cluster::shared();
    let db = cluster.fresh_db("ops_unix");
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join(".s.PGSQL.6432");
    // A stale socket file from a process that died: bound, then its listener dropped.
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
    assert!(socket.exists());
    let toml = format!(
        "[server]\nlisten_unix = \"{}\"\n[policy]\nmode = \"enforce\"\n[policy.rules]\n\
         \"ban-drop-table\" = \"reject\"\n",
        socket.display()
    );
    let mut proxy = ProxyProcess::start(&cluster.addr(), &toml);
    let via = ConnInfo {
        host: dir.path().display().to_string(),
        port: 6432,
        ..cluster.conn(&db)
    };
    let out = psql(
        &via,
        &[
            "-At",
            "-c",
            "select 40 + 2",
            "-c",
            "create table t (id bigint)",
            // A row: an empty table nobody else uses is only warned about.
            "-c",
            "insert into t values (1)",
        ],
    );
    out.assert_success();
    assert!(out.stdout.contains("42"), "{}", out.stdout);
    // The same enforcement as on TCP.
    let out = psql(&via, &["-c", "drop table t"]);
    out.assert_failure();
    assert!(out.stderr.contains("ban-drop-table"), "{}", out.stderr);
    // SSL is answered 'N' on the socket: sslmode=prefer falls back to plaintext.
    let out = psql(
        &ConnInfo {
            sslmode: "prefer".into(),
            ..via.clone()
        },
        &["-c", "select 1"],
    );
    out.assert_success();
    proxy.sigterm();
    assert_eq!(proxy.wait_exit(Duration::from_secs(30)).code(), Some(0));
    assert!(!socket.exists(), "socket file left behind");
}
