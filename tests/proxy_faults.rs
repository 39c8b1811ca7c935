//! Faults and limits: upstream restart, malformed client input, max_connections, startup timeout,
//! unreachable upstream, and graceful shutdown with an open transaction.
mod common;

use std::io::Write;
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use common::*;

/// One malformed-input case: (name, bytes, needs an authenticated session first, half-close
/// after sending, SQLSTATE the proxy must answer with before closing, if any).
type Case = (&'static str, Vec<u8>, bool, bool, Option<&'static str>);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_input_closes_only_that_connection() {
    let c = Cluster::shared();
    let db = c.fresh_db("faults_malformed");
    let mut proxy = start_proxy(c);
    let addr = proxy.addr;
    let via = c.conn(&db).with_port(proxy.port());
    // A bystander session that must keep working through all of this.
    let bystander = via.connect().await;
    bystander
        .batch_execute("CREATE TEMP TABLE alive(n int)")
        .await
        .expect("bystander setup");

    let huge_q = {
        let mut v = vec![b'Q'];
        v.extend_from_slice(&0x7fff_ffffu32.to_be_bytes());
        v.extend_from_slice(b"SELECT 1");
        v
    };
    let big_sync = {
        let mut v = vec![b'S'];
        v.extend_from_slice(&1_000_000u32.to_be_bytes());
        v.extend_from_slice(&[0u8; 64]);
        v
    };
    let negative_q = {
        let mut v = vec![b'Q'];
        v.extend_from_slice(&0xffff_fff0u32.to_be_bytes());
        v.extend_from_slice(b"SELECT 1\0");
        v
    };
    let short_len_q = vec![b'Q', 0, 0, 0, 2, b'x'];
    let truncated_q = {
        let mut v = vec![b'Q'];
        v.extend_from_slice(&1000u32.to_be_bytes());
        v.extend_from_slice(b"SELECT 1; -- and then nothing");
        v
    };
    let truncated_startup = {
        let full = startup_message(SUPERUSER, &db);
        full[..full.len() / 2].to_vec()
    };
    let cases: Vec<Case> = vec![
        (
            "garbage first packet (HTTP)",
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            false,
            false,
            None,
        ),
        (
            "negative length first packet",
            vec![0x80, 0, 0, 0, 0, 3, 0, 0],
            false,
            false,
            None,
        ),
        (
            "unknown protocol code",
            vec![0, 0, 0, 8, 0x12, 0x34, 0x56, 0x78],
            false,
            false,
            None,
        ),
        (
            "truncated startup packet",
            truncated_startup,
            false,
            true,
            None,
        ),
        (
            "Query length over the cap",
            huge_q,
            true,
            false,
            Some("54000"),
        ),
        (
            "Sync length over the small-message cap",
            big_sync,
            true,
            false,
            Some("54000"),
        ),
        ("negative Query length", negative_q, true, false, None),
        ("Query length below 4", short_len_q, true, false, None),
        ("truncated Query frame", truncated_q, true, true, None),
    ];
    for (name, bytes, authed, half_close, want_code) in cases {
        let db = db.clone();
        let (closed, got) = tokio::task::spawn_blocking(move || {
            let mut s = if authed {
                raw_session(addr, &db).0
            } else {
                TcpStream::connect(addr).expect("connect")
            };
            // The peer may close before taking everything: that is the expected outcome.
            let _ = s.write_all(&bytes);
            if half_close {
                let _ = s.shutdown(Shutdown::Write);
            }
            closed_within(&mut s, Duration::from_secs(10))
        })
        .await
        .expect("join");
        assert!(
            closed,
            "{name}: connection not closed; got {got:?}\nproxy log:\n{}",
            proxy.logs()
        );
        if authed && !got.is_empty() {
            assert_eq!(
                got[0], b'E',
                "{name}: only an ErrorResponse may come back: {got:?}"
            );
        }
        if let Some(code) = want_code {
            assert_eq!(error_code(&got).as_deref(), Some(code), "{name}: {got:?}");
        }
        // The other session goes on, and the proxy still accepts new ones.
        bystander
            .execute("INSERT INTO alive VALUES (1)", &[])
            .await
            .unwrap_or_else(|e| panic!("bystander broken after {name}: {e}"));
        assert!(proxy.is_running(), "proxy died after {name}");
    }
    let fresh = via.connect().await;
    let n: i64 = bystander
        .query_one("SELECT count(*) FROM alive", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(n, 9);
    fresh.batch_execute("SELECT 1").await.expect("new session");
}

/// DDL built to nest as deep as the statement length allows (1 MB: a 500,000-operator chain,
/// 5,000 NOTs, nested CASE). Before the prefilter bounded operator chains, the first one
/// aborted the whole proxy with a stack overflow inside the parser's tree builder: every
/// session died. Now each is analysed within bounds or refused as cannot-analyse, the server
/// answers, and the session and its neighbours go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_ddl_nesting_cannot_crash_the_proxy() {
    let c = Cluster::shared();
    let db = c.fresh_db("faults_hostile_ddl");
    let proxy = start_proxy(c);
    let via = c.conn(&db).with_port(proxy.port());
    let bystander = via.connect().await;
    let a = via.connect().await;
    a.batch_execute("CREATE TABLE t (a int)")
        .await
        .expect("setup");
    let hostile = [
        format!("ALTER TABLE t ADD CHECK ({}a > 0)", "a+".repeat(500_000)),
        format!("ALTER TABLE t ADD CHECK ({}a)", "NOT ".repeat(5_000)),
        format!(
            "ALTER TABLE t ADD CHECK ({}true{})",
            "CASE WHEN a > 0 THEN ".repeat(2_000),
            " END".repeat(2_000)
        ),
        format!("DO $$BEGIN PERFORM {}1; END$$", "1+".repeat(200_000)),
    ];
    for sql in &hostile {
        // The server may refuse it (stack depth limit, or pgwarden's dry-run passes it on):
        // what matters is that an answer comes back and the connection stays usable.
        let _ = a.batch_execute(sql).await;
        let one: i32 = a
            .query_one("SELECT 1", &[])
            .await
            .expect("same session")
            .get(0);
        assert_eq!(one, 1);
    }
    bystander
        .batch_execute("SELECT 1")
        .await
        .expect("bystander");
    let fresh = via.connect().await;
    fresh.batch_execute("SELECT 1").await.expect("new session");
}

#[tokio::test]
async fn upstream_restart_errors_that_client_and_new_clients_work() {
    // Own cluster: restarting the shared one would break the other tests of this binary.
    let c = Cluster::start(ClusterOptions::default());
    let db = c.fresh_db("faults_restart");
    let proxy = start_proxy(&c);
    let via = c.conn(&db).with_port(proxy.port());
    let a = via.connect().await;
    a.batch_execute("SELECT 1").await.expect("before restart");
    c.restart();
    let err = a
        .batch_execute("SELECT 1")
        .await
        .expect_err("the session of a restarted server must fail");
    drop(err);
    assert!(
        eventually(Duration::from_secs(10), || a.is_closed()).await,
        "client connection not closed after upstream restart"
    );
    let b = via.connect().await;
    let one: i32 = b
        .query_one("SELECT 1", &[])
        .await
        .expect("new client")
        .get(0);
    assert_eq!(one, 1);
}

#[tokio::test]
async fn over_max_connections_is_53300_and_frees_up() {
    let c = Cluster::shared();
    let db = c.fresh_db("faults_maxconn");
    let proxy = ProxyConfig {
        max_connections: Some(3),
        ..Default::default()
    }
    .start(c);
    let via = c.conn(&db).with_port(proxy.port());
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(via.connect().await);
    }
    let err = via
        .tokio_config()
        .connect(tokio_postgres::NoTls)
        .await
        .err()
        .expect("a 4th session over max_connections=3 must be refused");
    let db_err = err.as_db_error().unwrap_or_else(|| panic!("{err:?}"));
    assert_eq!(db_err.code().code(), "53300", "{db_err:?}");
    assert_eq!(db_err.severity(), "FATAL");
    held.pop();
    // The slot is released when the session ends.
    let mut ok = false;
    for _ in 0..100 {
        if via
            .tokio_config()
            .connect(tokio_postgres::NoTls)
            .await
            .is_ok()
        {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ok, "no slot freed after a session ended");
}

#[tokio::test]
async fn unreachable_upstream_is_08006_naming_it() {
    let c = Cluster::shared();
    let dead = format!("127.0.0.1:{}", free_port());
    let proxy = ProxyProcess::start(&dead, "");
    let via = c.conn("postgres").with_port(proxy.port());
    let err = via
        .tokio_config()
        .connect(tokio_postgres::NoTls)
        .await
        .err()
        .expect("connect through a proxy whose upstream is down");
    let db_err = err.as_db_error().unwrap_or_else(|| panic!("{err:?}"));
    assert_eq!(db_err.code().code(), "08006");
    assert!(db_err.message().contains(&dead), "{}", db_err.message());
}

#[test]
fn silent_client_is_dropped_after_startup_timeout() {
    let c = Cluster::shared();
    let proxy = ProxyConfig {
        startup_timeout_secs: Some(1),
        ..Default::default()
    }
    .start(c);
    let mut s = TcpStream::connect(proxy.addr).expect("connect");
    let started = Instant::now();
    let (closed, _) = closed_within(&mut s, Duration::from_secs(10));
    assert!(closed, "a client that sends nothing was not dropped");
    assert!(started.elapsed() >= Duration::from_millis(900));
}

#[tokio::test]
async fn graceful_shutdown_lets_an_open_transaction_commit() {
    let c = Cluster::shared();
    let db = c.fresh_db("faults_grace");
    c.sql(&db, "CREATE TABLE t(n int)");
    let mut proxy = ProxyConfig {
        shutdown_grace_secs: Some(20),
        ..Default::default()
    }
    .start(c);
    let via = c.conn(&db).with_port(proxy.port());
    let in_tx = via.connect().await;
    let idle = via.connect().await;
    idle.batch_execute("SELECT 1").await.expect("idle session");
    in_tx
        .batch_execute("BEGIN; INSERT INTO t VALUES (1)")
        .await
        .expect("open transaction");
    proxy.sigterm();
    // The idle session ends at once; new sessions are not accepted.
    assert!(
        eventually(Duration::from_secs(10), || idle.is_closed()).await,
        "idle session still open after SIGTERM; proxy log:\n{}",
        proxy.logs()
    );
    assert!(
        via.tokio_config()
            .connect(tokio_postgres::NoTls)
            .await
            .is_err(),
        "new session accepted during shutdown"
    );
    // The open transaction may finish within the grace period.
    tokio::time::sleep(Duration::from_millis(500)).await;
    in_tx
        .batch_execute("INSERT INTO t VALUES (2); COMMIT")
        .await
        .expect("commit during the grace period");
    let status = proxy.wait_exit(Duration::from_secs(15));
    assert!(status.success(), "exit status {status}");
    assert_eq!(c.sql(&db, "SELECT count(*) FROM t"), "2");
}

#[tokio::test]
async fn graceful_shutdown_closes_a_transaction_that_outlives_the_grace() {
    let c = Cluster::shared();
    let db = c.fresh_db("faults_grace_over");
    c.sql(&db, "CREATE TABLE t(n int)");
    let mut proxy = ProxyConfig {
        shutdown_grace_secs: Some(1),
        ..Default::default()
    }
    .start(c);
    let via = c.conn(&db).with_port(proxy.port());
    let in_tx = via.connect().await;
    in_tx
        .batch_execute("BEGIN; INSERT INTO t VALUES (1)")
        .await
        .expect("open transaction");
    proxy.sigterm();
    proxy.wait_exit(Duration::from_secs(15));
    assert!(
        in_tx.batch_execute("COMMIT").await.is_err(),
        "COMMIT after the grace period must fail"
    );
    // The server session went away with the proxy, rolling the transaction back.
    assert!(
        wait_until(Duration::from_secs(10), || c.sql(
            "postgres",
            &format!("SELECT count(*) FROM pg_stat_activity WHERE datname = '{db}'")
        ) == "0"),
        "server session still open after the grace period"
    );
    assert_eq!(c.sql(&db, "SELECT count(*) FROM t"), "0");
}
