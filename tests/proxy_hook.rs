//! The statement hook sees every statement: a counting hook passed to `pgwarden::proxy::run`
//! (in process) is compared with an independent record of what each client actually sent
//! (a frame-recording relay in front of the proxy), for psql, pgbench (all three modes),
//! tokio-postgres and the Python drivers.
mod common;

use std::sync::{Arc, Mutex};

use common::*;
use pgwarden::proxy::hook::{ProtocolPath, SessionView, StatementHook, Verdict};

/// Records every call, tagged with the session's database.
#[derive(Default)]
struct CountingHook {
    calls: Mutex<Vec<(String, SentStatement)>>,
}

impl StatementHook for CountingHook {
    fn inspect(&self, session: &SessionView<'_>, sql: &str, path: ProtocolPath<'_>) -> Verdict {
        let call = match path {
            ProtocolPath::Simple => SentStatement::Query(sql.to_string()),
            ProtocolPath::Extended { statement } => SentStatement::Parse {
                name: statement.to_string(),
                sql: sql.to_string(),
            },
        };
        self.calls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((session.database.to_string(), call));
        Verdict::Forward
    }
}

/// An in-process proxy with a counting hook, behind a frame recorder, for one fresh database.
struct Rig {
    db: String,
    hook: Arc<CountingHook>,
    recorder: FrameRecorder,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), pgwarden::proxy::ProxyError>>,
}

impl Rig {
    async fn start(tag: &str) -> Rig {
        let cluster = Cluster::shared();
        let db = cluster.fresh_db(tag);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind proxy listener");
        let proxy_addr = listener.local_addr().expect("addr");
        let config = pgwarden::config::Config::from_toml(&format!(
            // dry-run: the enforcer analyses (and looks up) every DDL statement but forwards
            // it unchanged, so the hook's counts compare 1:1 with what the clients sent.
            "[server]\nupstream = \"{}\"\nshutdown_grace = \"2s\"\n[policy]\nmode = \"dry-run\"\n[audit]\nenabled = false\n",
            cluster.addr()
        ))
        .expect("config");
        let hook = Arc::new(CountingHook::default());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(pgwarden::proxy::run(
            listener,
            Arc::new(config),
            hook.clone() as Arc<dyn StatementHook>,
            async move {
                let _ = stopped.await;
            },
        ));
        let recorder = FrameRecorder::start(proxy_addr).await;
        Rig {
            db,
            hook,
            recorder,
            stop: Some(stop),
            task,
        }
    }

    /// Client connection parameters: through the recorder, then the proxy.
    fn conn(&self) -> ConnInfo {
        Cluster::shared()
            .conn(&self.db)
            .with_port(self.recorder.port())
    }

    /// What the hook saw for this rig's database.
    fn hooked(&self) -> Vec<SentStatement> {
        self.hook
            .calls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|(db, _)| *db == self.db)
            .map(|(_, s)| s.clone())
            .collect()
    }

    /// Asserts the hook saw exactly what the clients sent; `ordered` for single-session clients.
    async fn assert_hook_saw_everything(mut self, ordered: bool) -> Vec<SentStatement> {
        // The proxy calls the hook before forwarding, so by the time a client has its answer
        // the call is recorded; still, let in-flight sessions settle.
        let _ = self.stop.take().map(|s| s.send(()));
        let result = tokio::time::timeout(std::time::Duration::from_secs(30), &mut self.task)
            .await
            .expect("proxy shut down")
            .expect("join proxy task");
        result.expect("proxy run returned an error");
        let mut sent = self.recorder.sent();
        let mut hooked = self.hooked();
        assert!(!sent.is_empty(), "the client sent nothing?");
        if !ordered {
            sent.sort();
            hooked.sort();
        }
        if sent != hooked {
            let missing: Vec<_> = sent.iter().filter(|s| !hooked.contains(s)).collect();
            let extra: Vec<_> = hooked.iter().filter(|s| !sent.contains(s)).collect();
            panic!(
                "hook calls differ from what was sent: {} sent, {} hooked\nmissing: {missing:#?}\nextra: {extra:#?}",
                sent.len(),
                hooked.len()
            );
        }
        sent
    }
}

fn count(sent: &[SentStatement], f: impl Fn(&SentStatement) -> bool) -> usize {
    sent.iter().filter(|s| f(s)).count()
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.expect("join")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hook_sees_every_psql_statement() {
    let rig = Rig::start("hook_psql").await;
    let conn = rig.conn();
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("in.csv");
    std::fs::write(&input, "1,a\n2,b\n3,c\n").expect("write");
    let script = format!(
        "CREATE TABLE h(id int, v text);\n\
         \\copy h from '{}' csv\n\
         SELECT count(*) FROM h \\; SELECT 2;\n\
         BEGIN;\nUPDATE h SET v = 'z' WHERE id = 1;\nCOMMIT;\n",
        input.display()
    );
    blocking(move || {
        psql(
            &conn,
            &[
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                "SELECT 1; SELECT 2",
                "-c",
                "SELECT 3",
            ],
        )
        .assert_success();
        psql_stdin(
            &conn,
            &["-v", "ON_ERROR_STOP=1", "-f", "-"],
            Some(script.as_bytes()),
        )
        .assert_success();
    })
    .await;
    let sent = rig.assert_hook_saw_everything(true).await;
    assert!(sent.contains(&SentStatement::Query("SELECT 1; SELECT 2".into())));
    // `a \; b` reaches the server as one multi-statement Query.
    assert!(
        sent.iter().any(|s| matches!(s, SentStatement::Query(q)
            if q.contains("SELECT count(*) FROM h") && q.contains("SELECT 2"))),
        "{sent:#?}"
    );
    assert!(
        count(&sent, |s| matches!(s, SentStatement::Query(_))) >= 7,
        "{sent:#?}"
    );
}

async fn pgbench_rig(mode: &'static str) {
    let rig = Rig::start(&format!("hook_bench_{mode}")).await;
    let conn = rig.conn();
    let out = blocking(move || {
        pgbench(&conn, &["-i", "-s", "1", "-q"]).assert_success();
        let out = pgbench(&conn, &["-n", "-c", "2", "-j", "2", "-t", "20", "-M", mode]);
        out.assert_success();
        out
    })
    .await;
    assert!(
        out.stdout
            .contains("number of transactions actually processed: 40/40"),
        "{}",
        out.stdout
    );
    let sent = rig.assert_hook_saw_everything(false).await;
    // The built-in TPC-B-like script has 7 statements per transaction (BEGIN ... END).
    let updates = |s: &SentStatement| match s {
        SentStatement::Query(q) => q.starts_with("UPDATE pgbench_accounts"),
        SentStatement::Parse { sql, .. } => sql.starts_with("UPDATE pgbench_accounts"),
    };
    let n = count(&sent, updates);
    match mode {
        "simple" => assert_eq!(n, 40),
        "extended" => assert_eq!(n, 40),
        // Prepared once per connection, then executed by Bind alone.
        _ => {
            assert_eq!(n, 2, "{sent:#?}");
            assert!(sent
                .iter()
                .any(|s| matches!(s, SentStatement::Parse { name, .. } if name.starts_with('P'))));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hook_sees_every_pgbench_statement_simple() {
    pgbench_rig("simple").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hook_sees_every_pgbench_statement_extended() {
    pgbench_rig("extended").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hook_sees_every_pgbench_statement_prepared() {
    pgbench_rig("prepared").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hook_sees_every_tokio_postgres_statement() {
    use futures_util::{pin_mut, SinkExt};
    let rig = Rig::start("hook_tokio").await;
    let client = rig.conn().connect().await;
    client
        .batch_execute("CREATE TEMP TABLE k(id int, v text); INSERT INTO k VALUES (1, 'a')")
        .await
        .expect("simple");
    let stmt = client
        .prepare("SELECT v FROM k WHERE id = $1")
        .await
        .expect("prepare");
    for _ in 0..10 {
        client.query(&stmt, &[&1i32]).await.expect("execute");
    }
    client
        .query("SELECT $1::int + 1", &[&41i32])
        .await
        .expect("unprepared");
    let sink = client.copy_in("COPY k FROM STDIN").await.expect("copy in");
    pin_mut!(sink);
    sink.send(bytes::Bytes::from_static(b"2\tb\n"))
        .await
        .expect("data");
    sink.finish().await.expect("finish");
    drop(client);
    let sent = rig.assert_hook_saw_everything(true).await;
    let selects = count(
        &sent,
        |s| matches!(s, SentStatement::Parse { sql, .. } if sql == "SELECT v FROM k WHERE id = $1"),
    );
    assert_eq!(
        selects, 1,
        "prepared once, executed 10 times by Bind: {sent:#?}"
    );
}

async fn python_rig(workload: &'static str) -> Vec<SentStatement> {
    let rig = Rig::start(&format!("hook_py_{}", workload.replace('-', "_"))).await;
    let url = rig.conn().url();
    blocking(move || {
        run_python("clients.py", &[workload, &url])
            .assert_success()
            .stdout
            .clone()
    })
    .await;
    rig.assert_hook_saw_everything(true).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hook_sees_every_psycopg2_statement() {
    let sent = python_rig("psycopg2").await;
    // psycopg2 sends everything as simple Query (parameters interpolated).
    assert!(sent.iter().all(|s| matches!(s, SentStatement::Query(_))));
    assert!(sent.contains(&SentStatement::Query("BEGIN".into())));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hook_sees_every_psycopg3_statement() {
    let sent = python_rig("psycopg3").await;
    let runs = count(
        &sent,
        |s| matches!(s, SentStatement::Parse { sql, .. } if sql == "SELECT v FROM p3 WHERE id = $1"),
    );
    // Executed 12 times; after the prepare threshold it is a named statement run by Bind alone.
    assert!((1..12).contains(&runs), "{sent:#?}");
    assert!(sent.iter().any(
        |s| matches!(s, SentStatement::Parse { name, sql } if !name.is_empty() && sql == "SELECT v FROM p3 WHERE id = $1")
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hook_sees_every_psycopg3_pipeline_statement() {
    let sent = python_rig("psycopg3-pipeline").await;
    // 60 pipelined executions; psycopg prepares repeated ones, so fewer Parse messages.
    let parses = count(&sent, |s| matches!(s, SentStatement::Parse { .. }));
    assert!((10..=60).contains(&parses), "{parses}: {sent:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hook_sees_every_asyncpg_statement() {
    let sent = python_rig("asyncpg").await;
    // asyncpg names every statement (DDL included) and re-runs it with Bind alone.
    let repeated = count(
        &sent,
        |s| matches!(s, SentStatement::Parse { name, sql } if !name.is_empty() && sql == "SELECT v FROM ap WHERE id = $1"),
    );
    assert_eq!(repeated, 1, "20 executions, one Parse: {sent:#?}");
    assert!(sent.iter().any(
        |s| matches!(s, SentStatement::Parse { name, sql } if !name.is_empty() && sql == "CREATE TEMP TABLE ap2 (x int)")
    ));
}
