//! The admin listener against real PostgreSQL and real clients: `/metrics` after a known
//! workload (values, and `promtool check metrics` on the text), `/healthz`, `/readyz` when the
//! upstream goes away and comes back, `/activity` during a migration blocked behind an
//! idle-in-transaction session.
mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;

/// GET `path` on the admin listener: (status code, body).
fn get(port: u16, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to admin listener");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).expect("read admin response");
    let (head, body) = raw.split_once("\r\n\r\n").expect("HTTP head");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status code");
    (status, body.to_string())
}

/// The value of one sample line `name{labels} value` (exact series text before the space).
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

fn proxy_with_admin(upstream: &str, policy: &str) -> (ProxyProcess, u16) {
    let admin = free_port();
    let toml = format!(
        "[server]\nmax_connections = 2\n[admin]\nlisten = \"127.0.0.1:{admin}\"\n\
         ready_timeout = \"1s\"\n[policy]\n{policy}\n"
    );
    (ProxyProcess::start(upstream, &toml), admin)
}

fn promtool_check(text: &str) {
    let Ok(path) = which("promtool") else {
        panic!(
            "promtool not found: install Debian's `prometheus` package \
             (apt-get install prometheus; tests/setup.sh does it when run as root)"
        );
    };
    let mut cmd = std::process::Command::new(path);
    cmd.args(["check", "metrics"]);
    let out = run_cmd(cmd, Some(text.as_bytes()), Duration::from_secs(60));
    out.assert_success();
}

fn which(name: &str) -> Result<std::path::PathBuf, ()> {
    std::env::var_os("PATH")
        .and_then(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join(name))
                .find(|f| f.is_file())
        })
        .ok_or(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_a_known_workload_in_valid_exposition_format() {
    let cluster = Cluster::shared();
    let db = cluster.fresh_db("ops_metrics");
    let (proxy, admin) = proxy_with_admin(
        &cluster.addr(),
        "mode = \"enforce\"\n[policy.rules]\n\"ban-drop-table\" = \"reject\"",
    );
    let via = cluster.conn(&db).with_port(proxy.port());

    let (status, body) = get(admin, "/healthz");
    assert_eq!((status, body.as_str()), (200, "ok\n"));

    // Session 1: three plain queries, one allowed DDL, one rejected DDL.
    let out = psql(
        &via,
        &[
            "-c",
            "select 1",
            "-c",
            "select 2",
            "-c",
            "select 3",
            "-c",
            "create table orders (id bigint primary key)",
        ],
    );
    out.assert_success();
    // With a row in it (an empty table nobody else uses is only warned about).
    cluster.sql(&db, "insert into orders values (1)");
    let out = psql(&via, &["-c", "drop table orders"]);
    out.assert_failure();
    // Session 3 is held open while a fourth connection finds max_connections (2) reached.
    let held = via.connect().await;
    let held2 = via.connect().await;
    psql(&via, &["-c", "select 1"]).assert_failure();
    drop(held);
    drop(held2);
    assert!(
        eventually(Duration::from_secs(20), || {
            sample(&get(admin, "/metrics").1, "pgwarden_client_sessions") == Some(0.0)
        })
        .await,
        "sessions gauge did not return to 0:\n{}",
        get(admin, "/metrics").1
    );

    let (status, m) = get(admin, "/metrics");
    assert_eq!(status, 200);
    promtool_check(&m);
    let expect = |series: &str, v: f64| {
        assert_eq!(sample(&m, series), Some(v), "{series} in:\n{m}");
    };
    expect("pgwarden_client_sessions_total", 4.0);
    expect("pgwarden_client_connections_total", 5.0);
    expect(
        "pgwarden_client_sessions_refused_total{reason=\"max_connections\"}",
        1.0,
    );
    expect(
        "pgwarden_client_sessions_refused_total{reason=\"upstream_unreachable\"}",
        0.0,
    );
    expect(
        "pgwarden_statements_analysed_total{decision=\"allow\",kind=\"create_table\"}",
        1.0,
    );
    expect(
        "pgwarden_statements_analysed_total{decision=\"reject\",kind=\"drop_table\"}",
        1.0,
    );
    expect(
        "pgwarden_rule_findings_total{decision=\"reject\",rule=\"ban-drop-table\"}",
        1.0,
    );
    expect("pgwarden_analysis_duration_seconds_count", 2.0);
    expect("pgwarden_lock_wait_retries_total", 0.0);
    expect("pgwarden_injected_timeouts_total", 0.0);
    // Both DDL statements were audited (statement + outcome records and session records).
    assert!(
        sample(&m, "pgwarden_audit_records_written_total").unwrap_or(0.0) >= 4.0,
        "{m}"
    );
    assert!(sample(&m, "pgwarden_audit_fsync_duration_seconds_count").unwrap_or(0.0) >= 1.0);
    for dir in ["client_to_server", "server_to_client"] {
        let bytes = sample(
            &m,
            &format!("pgwarden_forwarded_bytes_total{{direction=\"{dir}\"}}"),
        );
        let msgs = sample(
            &m,
            &format!("pgwarden_forwarded_messages_total{{direction=\"{dir}\"}}"),
        );
        assert!(bytes.unwrap_or(0.0) > 100.0, "{dir} bytes: {m}");
        // At least one Query + Terminate per psql command from the client; at least one
        // answer per query from the server.
        assert!(msgs.unwrap_or(0.0) >= 6.0, "{dir} messages: {m}");
    }
    // Never a table name or SQL text in a label.
    assert!(!m.contains("orders"), "{m}");
}

/// A TCP relay in front of the cluster that can be taken down and brought back on the same port.
struct Relay {
    port: u16,
    target: String,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Relay {
    fn start(port: u16, target: &str) -> Relay {
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind relay port");
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let (s, t) = (stop.clone(), target.to_string());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((client, _)) => {
                        let _ = client.set_nonblocking(false);
                        let Ok(server) = TcpStream::connect(&t) else {
                            continue;
                        };
                        for (mut a, mut b) in [
                            (client.try_clone().unwrap(), server.try_clone().unwrap()),
                            (server, client),
                        ] {
                            std::thread::spawn(move || {
                                let _ = std::io::copy(&mut a, &mut b);
                                let _ = b.shutdown(std::net::Shutdown::Both);
                            });
                        }
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        Relay {
            port,
            target: target.to_string(),
            stop,
            thread: Some(thread),
        }
    }

    fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_follows_the_upstream() {
    let cluster = Cluster::shared();
    let db = cluster.fresh_db("ops_ready");
    let port = free_port();
    let mut relay = Relay::start(port, &cluster.addr());
    let (proxy, admin) = proxy_with_admin(&format!("127.0.0.1:{port}"), "mode = \"dry-run\"");
    let via = cluster.conn(&db).with_port(proxy.port());
    assert_eq!(get(admin, "/readyz"), (200, "ready\n".to_string()));
    psql(&via, &["-c", "select 1"]).assert_success();

    relay.stop();
    let (status, body) = get(admin, "/readyz");
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains(&format!("upstream 127.0.0.1:{port}")),
        "{body}"
    );
    // Alive all the same.
    assert_eq!(get(admin, "/healthz").0, 200);
    psql(&via, &["-c", "select 1"]).assert_failure();

    let relay = Relay::start(relay.port, &relay.target);
    assert_eq!(get(admin, "/readyz"), (200, "ready\n".to_string()));
    psql(&via, &["-c", "select 1"]).assert_success();
    let m = get(admin, "/metrics").1;
    assert_eq!(
        sample(
            &m,
            "pgwarden_client_sessions_refused_total{reason=\"upstream_unreachable\"}"
        ),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        sample(
            &m,
            "pgwarden_upstream_connect_failures_total{reason=\"io\"}"
        ),
        Some(1.0),
        "{m}"
    );
    drop(relay);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn activity_shows_a_migration_blocked_behind_an_idle_transaction() {
    let cluster = Cluster::shared();
    let db = cluster.fresh_db("ops_activity");
    cluster.sql(&db, "create table accounts (id bigint primary key)");
    let (proxy, admin) = proxy_with_admin(&cluster.addr(), "mode = \"warn\"");
    let via = cluster.conn(&db).with_port(proxy.port());

    let mut cfg = via.tokio_config();
    cfg.application_name("report-worker");
    let (blocker, conn) = cfg.connect(tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    let pid: i32 = blocker
        .query_one("select pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    blocker
        .batch_execute("begin; select count(*) from accounts")
        .await
        .unwrap();

    let mut cfg = via.tokio_config();
    cfg.application_name("alembic");
    let (migrator, conn) = cfg.connect(tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    let migration = tokio::spawn(async move {
        migrator
            .batch_execute("alter table accounts add column note text")
            .await
    });

    let mut seen = serde_json::Value::Null;
    let found = eventually(Duration::from_secs(30), || {
        let v: serde_json::Value =
            serde_json::from_str(&get(admin, "/activity").1).expect("activity is JSON");
        let hit = v["ddl_in_flight"].as_array().is_some_and(|a| {
            a.iter().any(|d| {
                d["statement"]
                    .as_str()
                    .is_some_and(|s| s.contains("add column note"))
                    && d["phase"].as_str().is_some_and(|p| p.starts_with("sent"))
            })
        });
        seen = v;
        hit
    })
    .await;
    assert!(found, "no DDL in flight in {seen:#}");
    let d = &seen["ddl_in_flight"][0];
    assert_eq!(d["application_name"], "alembic", "{seen:#}");
    assert_eq!(d["kind"], "alter_table", "{seen:#}");
    assert!(
        d["locks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["mode"] == "ACCESS EXCLUSIVE"
                && l["table"].as_str().is_some_and(|t| t.contains("accounts"))),
        "{seen:#}"
    );
    let blockers = d["possible_blockers"].as_array().unwrap();
    assert_eq!(blockers.len(), 1, "{seen:#}");
    assert_eq!(blockers[0]["backend_pid"], pid, "{seen:#}");
    assert_eq!(blockers[0]["application_name"], "report-worker");
    assert_eq!(blockers[0]["state"], "idle in transaction");
    let sessions = seen["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 2, "{seen:#}");
    assert!(sessions
        .iter()
        .all(|s| s["database"] == db.as_str() && s["user"].is_string()));

    blocker.batch_execute("commit").await.unwrap();
    migration
        .await
        .unwrap()
        .expect("migration runs once unblocked");
    let v: serde_json::Value = serde_json::from_str(&get(admin, "/activity").1).unwrap();
    assert_eq!(
        v["ddl_in_flight"].as_array().map(Vec::len),
        Some(0),
        "{v:#}"
    );
}

/// The image's HEALTHCHECK command (docker/Dockerfile), as the argv Docker runs.
fn dockerfile_healthcheck() -> Vec<String> {
    let text = std::fs::read_to_string(repo_root().join("docker/Dockerfile")).unwrap();
    let line = text
        .lines()
        .skip_while(|l| !l.starts_with("HEALTHCHECK"))
        .find_map(|l| l.trim().strip_prefix("CMD "))
        .expect("a HEALTHCHECK ... CMD [...] in docker/Dockerfile");
    serde_json::from_str(line).expect("exec-form JSON array")
}

/// Runs the health check with the admin port replaced: true when it reports healthy.
fn healthy(argv: &[String], admin: u16) -> bool {
    let argv: Vec<String> = argv
        .iter()
        .map(|a| a.replace("127.0.0.1/9187", &format!("127.0.0.1/{admin}")))
        .collect();
    let mut c = std::process::Command::new(&argv[0]);
    c.args(&argv[1..]);
    run_cmd(c, None, Duration::from_secs(30)).status.success()
}

#[test]
fn the_image_health_check_follows_readyz_and_compose_runs_the_same_command() {
    let argv = dockerfile_healthcheck();
    // docker/compose.yaml runs the same command on its PGWARDEN_ADMIN_PORT.
    let compose = std::fs::read_to_string(repo_root().join("docker/compose.yaml")).unwrap();
    let test_line = compose
        .lines()
        .find_map(|l| l.trim().strip_prefix("test: "))
        .expect("a healthcheck test in docker/compose.yaml");
    let compose_argv: Vec<String> = serde_json::from_str(test_line).unwrap();
    let compose_argv: Vec<String> = compose_argv[1..]
        .iter()
        .map(|a| {
            a.replace("${PGWARDEN_ADMIN_PORT:-9187}", "9187")
                .replace("$$", "$")
        })
        .collect();
    assert_eq!(
        compose_argv, argv,
        "compose and Dockerfile health checks differ"
    );

    let cluster = Cluster::shared();
    let port = free_port();
    let mut relay = Relay::start(port, &cluster.addr());
    let admin = free_port();
    // `--admin-listen`, as the compose file passes it (no [admin] in the file).
    let proxy = ProxyProcess::start_with_args(
        &format!("127.0.0.1:{port}"),
        "[policy]\nmode = \"dry-run\"\n",
        &["--admin-listen", &format!("127.0.0.1:{admin}")],
    );
    assert!(healthy(&argv, admin), "{}", proxy.logs());
    relay.stop();
    assert!(!healthy(&argv, admin), "healthy without an upstream");
    let relay = Relay::start(relay.port, &relay.target);
    assert!(healthy(&argv, admin));
    drop(relay);
    drop(proxy);
    // Nothing listening: unhealthy, not a hang.
    assert!(!healthy(&argv, admin));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn activity_names_the_blocker_the_server_reported_at_pgwardens_lock_timeout() {
    let cluster = Cluster::shared();
    let db = cluster.fresh_db("ops_activity_retry");
    cluster.sql(&db, "create table ledger (id bigint primary key)");
    let admin = free_port();
    let toml = format!(
        "[admin]\nlisten = \"127.0.0.1:{admin}\"\n[policy]\nmode = \"warn\"\n\
         [execute]\nquick_lock_timeout = \"200ms\"\nretry_budget = \"2m\"\n\
         backoff_initial = \"500ms\"\nbackoff_max = \"1s\"\n"
    );
    let proxy = ProxyProcess::start(&cluster.addr(), &toml);
    // The blocker is connected to PostgreSQL directly: only the server can name it.
    let mut cfg = cluster.conn(&db).tokio_config();
    cfg.application_name("direct-report");
    let (blocker, conn) = cfg.connect(tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    let pid: i32 = blocker
        .query_one("select pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    blocker
        .batch_execute("begin; select count(*) from ledger")
        .await
        .unwrap();
    let migrator = cluster.conn(&db).with_port(proxy.port()).connect().await;
    let migration = tokio::spawn(async move {
        migrator
            .batch_execute("alter table ledger add column n int")
            .await
    });

    let mut seen = serde_json::Value::Null;
    let found = eventually(Duration::from_secs(60), || {
        let v: serde_json::Value =
            serde_json::from_str(&get(admin, "/activity").1).expect("activity is JSON");
        let hit = v["ddl_in_flight"].as_array().is_some_and(|a| {
            a.iter().any(|d| {
                d["attempt"].as_u64().is_some_and(|n| n >= 1)
                    && d["blockers_seen_by_server"]
                        .as_array()
                        .is_some_and(|b| b.iter().any(|b| b["pid"] == pid))
            })
        });
        seen = v;
        hit
    })
    .await;
    assert!(found, "no retried DDL naming pid {pid} in {seen:#}");
    let d = &seen["ddl_in_flight"][0];
    let b = &d["blockers_seen_by_server"][0];
    assert_eq!(b["application_name"], "direct-report", "{seen:#}");
    assert_eq!(b["mode"], "AccessShareLock", "{seen:#}");
    assert!(d["last_lock_wait_ms"].as_u64().is_some(), "{seen:#}");
    // Not a pgwarden session: the heuristic list cannot know it.
    assert_eq!(d["possible_blockers"].as_array().map(Vec::len), Some(0));

    blocker.batch_execute("commit").await.unwrap();
    migration
        .await
        .unwrap()
        .expect("the retry succeeds once the blocker commits");
}

#[test]
fn the_steps_of_a_multi_step_rewrite_are_counted_by_result() {
    let cluster = Cluster::shared();
    let db = cluster.fresh_db("ops_steps");
    cluster.sql(
        &db,
        "create table orders (id bigint primary key); \
         insert into orders select generate_series(1, 10); analyze orders",
    );
    // Ten rows count as large here, so the rewrite applies as on a big table.
    let (proxy, admin) = proxy_with_admin(&cluster.addr(), "large_rows = 5");
    let via = cluster.conn(&db).with_port(proxy.port());
    psql(
        &via,
        &[
            "-X",
            "-c",
            "alter table orders add constraint positive check (id > 0)",
        ],
    )
    .assert_success();
    let m = get(admin, "/metrics").1;
    let ok = sample(&m, "pgwarden_completion_steps_total{result=\"ok\"}").unwrap_or(0.0);
    assert!(ok >= 2.0, "NOT VALID + VALIDATE: {m}");
    assert_eq!(
        sample(&m, "pgwarden_completion_steps_total{result=\"failed\"}"),
        Some(0.0),
        "{m}"
    );
    // Rows 1..5 violate it: the VALIDATE step fails and is counted so.
    psql(
        &via,
        &[
            "-X",
            "-c",
            "alter table orders add constraint big check (id > 5)",
        ],
    )
    .assert_failure();
    let m = get(admin, "/metrics").1;
    assert!(
        sample(&m, "pgwarden_completion_steps_total{result=\"failed\"}").unwrap_or(0.0) >= 1.0,
        "{m}"
    );
    promtool_check(&m);
}
