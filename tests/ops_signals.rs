//! Signals of `pgwarden serve` against real PostgreSQL: SIGHUP reloads `[policy]` for the next
//! statement of an already-open session, a broken file keeps the old configuration, and a
//! second SIGTERM during a drain stops at once with exit status 3.
mod common;

use std::process::Command;
use std::time::Duration;

use common::*;

fn kill(sig: &str, pid: u32) {
    let mut c = Command::new("kill");
    c.args([sig, &pid.to_string()]);
    run_cmd(c, None, Duration::from_secs(10)).assert_success();
}

fn policy_toml(drop_table: &str, extra: &str) -> String {
    format!(
        "[server]\nshutdown_grace = \"60s\"\n[policy]\nmode = \"enforce\"\n[policy.rules]\n\
         \"ban-drop-table\" = \"{drop_table}\"\n\"require-lock-timeout\" = \"off\"\n\
         \"require-statement-timeout\" = \"off\"\n{extra}"
    )
}

/// Waits until the log has `needle` `n` times.
fn wait_log(proxy: &ProxyProcess, needle: &str, n: usize) {
    assert!(
        wait_until(Duration::from_secs(30), || proxy
            .logs()
            .matches(needle)
            .count()
            >= n),
        "no {n}x {needle:?} in:\n{}",
        proxy.logs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_changes_the_next_decision_of_an_open_session_and_a_broken_file_keeps_the_old() {
    let cluster = Cluster::shared();
    let db = cluster.fresh_db("ops_reload");
    let proxy = ProxyProcess::start(&cluster.addr(), &policy_toml("reject", ""));
    // Created directly: a table this session created itself would be exempt from the rule.
    cluster.sql(
        &db,
        "create table a (id bigint primary key); create table b (id bigint primary key); \
         create table c (id bigint primary key); \
         insert into a values (1); insert into b values (1); insert into c values (1)",
    );
    let client = cluster.conn(&db).with_port(proxy.port()).connect().await;
    let e = client.batch_execute("drop table a").await.unwrap_err();
    assert_eq!(e.code().map(|c| c.code()), Some("PW001"), "{e}");

    std::fs::write(&proxy.config_path, policy_toml("warn", "")).unwrap();
    kill("-HUP", proxy.pid());
    wait_log(&proxy, "config reloaded", 1);
    // The same session, its next statement: the new action applies.
    client
        .batch_execute("drop table a")
        .await
        .expect("ban-drop-table = warn after the reload");

    // A broken file (an unknown key) that would otherwise turn the rule back to reject.
    std::fs::write(
        &proxy.config_path,
        policy_toml("reject", "[server.nonsense]\nx = 1\n"),
    )
    .unwrap();
    kill("-HUP", proxy.pid());
    wait_log(&proxy, "config reload refused", 1);
    assert!(proxy.logs().contains("nonsense"), "{}", proxy.logs());
    client
        .batch_execute("drop table b")
        .await
        .expect("the old configuration (warn) stays after a refused reload");

    // A valid file again: reject, for a session opened before any reload as well as a new one.
    std::fs::write(&proxy.config_path, policy_toml("reject", "")).unwrap();
    kill("-HUP", proxy.pid());
    wait_log(&proxy, "config reloaded", 2);
    let e = client.batch_execute("drop table c").await.unwrap_err();
    assert_eq!(e.code().map(|c| c.code()), Some("PW001"), "{e}");
    let fresh = cluster.conn(&db).with_port(proxy.port()).connect().await;
    let e = fresh.batch_execute("drop table c").await.unwrap_err();
    assert_eq!(e.code().map(|c| c.code()), Some("PW001"), "{e}");
    // The sessions survived every reload.
    client.batch_execute("select 1").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_sigterm_during_the_drain_stops_at_once_with_status_3() {
    let cluster = Cluster::shared();
    let db = cluster.fresh_db("ops_signal");
    let mut proxy = ProxyProcess::start(&cluster.addr(), &policy_toml("reject", ""));
    let client = cluster.conn(&db).with_port(proxy.port()).connect().await;
    client.batch_execute("begin; select 1").await.unwrap();
    proxy.sigterm();
    wait_log(&proxy, "received shutdown signal", 1);
    // The open transaction has 60 s of grace: the process is draining, not gone.
    assert!(proxy.is_running(), "{}", proxy.logs());
    proxy.sigterm();
    let status = proxy.wait_exit(Duration::from_secs(30));
    assert_eq!(status.code(), Some(3), "{}", proxy.logs());
    assert!(proxy.logs().contains("second shutdown signal"));
    assert!(client.batch_execute("commit").await.is_err());
}

#[test]
fn a_single_sigterm_on_an_idle_proxy_exits_0() {
    let cluster = Cluster::shared();
    let mut proxy = ProxyProcess::start(&cluster.addr(), &policy_toml("reject", ""));
    proxy.sigterm();
    assert_eq!(proxy.wait_exit(Duration::from_secs(30)).code(), Some(0));
}

#[test]
fn sighup_rereads_the_client_tls_certificate_for_new_handshakes() {
    let cluster = Cluster::shared();
    let db = cluster.fresh_db("ops_cert_reload");
    let (a, b) = (ProxyCert::generate(), ProxyCert::generate());
    let toml = |c: &ProxyCert| {
        format!(
            "[server]\ntls_cert_file = \"{}\"\ntls_key_file = \"{}\"\n{}",
            c.cert.display(),
            c.key.display(),
            policy_toml("reject", "").trim_start_matches("[server]\n")
        )
    };
    let proxy = ProxyProcess::start(&cluster.addr(), &toml(&a));
    let via = |ca: &std::path::Path| {
        psql(
            &cluster
                .conn(&db)
                .with_port(proxy.port())
                .with_sslmode("verify-full")
                .with_ca(ca),
            &["-Atc", "select 1"],
        )
    };
    via(&a.ca).assert_success();
    via(&b.ca).assert_failure();
    // The certificate is rotated: the file names change, as cert-manager or certbot would.
    std::fs::write(&proxy.config_path, toml(&b)).unwrap();
    kill("-HUP", proxy.pid());
    wait_log(&proxy, "config reloaded", 1);
    assert!(
        proxy.logs().contains("client TLS files"),
        "{}",
        proxy.logs()
    );
    via(&b.ca).assert_success();
    via(&a.ca).assert_failure();
}
