//! psql, pgbench and tokio-postgres through pgwarden, each compared with a direct connection.
mod common;

use std::time::Duration;

use common::*;
use futures_util::{pin_mut, SinkExt, StreamExt, TryStreamExt};
use tokio_postgres::{AsyncMessage, SimpleQueryMessage};

/// Direct and proxied connection parameters for a fresh database on the shared cluster.
fn setup(tag: &str) -> (ConnInfo, ConnInfo, ProxyProcess) {
    let c = Cluster::shared();
    let db = c.fresh_db(tag);
    let proxy = start_proxy(c);
    let direct = c.conn(&db);
    let via = direct.with_port(proxy.port());
    (direct, via, proxy)
}

/// psql prints the server's port in connection errors; the proxy's differs by design.
fn without_ports(s: &str, ports: &[u16]) -> String {
    ports
        .iter()
        .fold(s.to_string(), |acc, p| acc.replace(&p.to_string(), "PORT"))
}

// ------------------------------------------------------------------------------------ psql

#[test]
fn psql_multi_statement_c_matches_direct() {
    let (direct, via, _proxy) = setup("psql_multi");
    let q = "CREATE TEMP TABLE t(x int, s text); \
             INSERT INTO t SELECT g, repeat(chr(64 + g % 26), g) FROM generate_series(1, 500) g; \
             SELECT count(*), sum(x), md5(string_agg(s, ',' ORDER BY x)) FROM t";
    let a = psql(&direct, &["-At", "-v", "ON_ERROR_STOP=1", "-c", q]);
    let b = psql(&via, &["-At", "-v", "ON_ERROR_STOP=1", "-c", q]);
    a.assert_success();
    b.assert_success();
    // psql 15 prints every statement's result of a multi-statement -c.
    assert!(
        a.stdout.contains("INSERT 0 500\n500|125250|"),
        "{}",
        a.stdout
    );
    assert_eq!(a.stdout, b.stdout);

    // One multi-statement Query is one implicit transaction: the error undoes the CREATE.
    let q = "CREATE TABLE multi_err(x int); SELECT 1/0; SELECT 2";
    let a = psql(&direct, &["-At", "-c", q]);
    let b = psql(&via, &["-At", "-c", q]);
    a.assert_failure();
    b.assert_failure();
    assert!(
        b.stderr.contains("division by zero"),
        "stderr via proxy: {}",
        b.stderr
    );
    assert_eq!(a.stderr, b.stderr);
    let exists = psql(
        &direct,
        &["-Atc", "SELECT to_regclass('multi_err') IS NULL"],
    );
    assert_eq!(exists.assert_success().stdout.trim(), "t");
}

#[test]
fn psql_copy_in_and_out_matches_input() {
    let (direct, via, _proxy) = setup("psql_copy");
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("in.tsv");
    let mut data = String::new();
    for i in 0..20_000 {
        data.push_str(&format!(
            "{i}\tname {i} with \\\\ backslash and ü\t{}\n",
            i * 7
        ));
    }
    std::fs::write(&input, &data).expect("write input");
    for (name, conn) in [("direct", &direct), ("proxy", &via)] {
        let out_path = dir.path().join(format!("out-{name}.tsv"));
        let script = format!(
            "CREATE TEMP TABLE c(id int, name text, n bigint);\n\
             \\copy c from '{}'\n\
             \\copy (SELECT * FROM c ORDER BY id) to '{}'\n\
             SELECT count(*), sum(n) FROM c;\n",
            input.display(),
            out_path.display()
        );
        let out = psql_stdin(
            conn,
            &["-At", "-v", "ON_ERROR_STOP=1", "-f", "-"],
            Some(script.as_bytes()),
        );
        out.assert_success();
        assert!(
            out.stdout.contains("COPY 20000") && out.stdout.contains("20000|1399930000"),
            "{name}: {}",
            out.stdout
        );
        let copied = std::fs::read_to_string(&out_path).expect("read copy output");
        assert_eq!(copied, data, "{name}: \\copy out differs from \\copy in");
    }
}

#[test]
fn psql_notices_and_warnings_reach_the_client() {
    let (direct, via, proxy) = setup("psql_notice");
    let q = "DO $$ BEGIN RAISE NOTICE 'notice % from server', 42; RAISE WARNING 'careful: %', 'x'; END $$; \
             SELECT 'after'";
    let a = psql(&direct, &["-At", "-c", q]);
    let b = psql(&via, &["-At", "-c", q]);
    a.assert_success();
    b.assert_success();
    assert!(
        b.stderr.contains("NOTICE:  notice 42 from server")
            && b.stderr.contains("WARNING:  careful: x"),
        "stderr via proxy: {}\nproxy log:\n{}",
        b.stderr,
        proxy.logs()
    );
    assert_eq!(a.stderr, b.stderr);
    assert_eq!(a.stdout, b.stdout);
    assert_eq!(b.stdout.trim().lines().last(), Some("after"));
}

#[test]
fn psql_error_text_matches_direct() {
    let (direct, via, proxy) = setup("psql_err");
    let q = "SELECT * FROM no_such_table";
    let a = psql(&direct, &["-c", q]);
    let b = psql(&via, &["-c", q]);
    a.assert_failure();
    b.assert_failure();
    assert_eq!(
        without_ports(&a.stderr, &[direct.port]),
        without_ports(&b.stderr, &[proxy.port()])
    );
    assert!(b
        .stderr
        .contains("relation \"no_such_table\" does not exist"));
}

// ------------------------------------------------------------------------------------ pgbench

fn pgbench_through_proxy(mode: &str) {
    let (direct, via, proxy) = setup(&format!("bench_{mode}"));
    pgbench(&via, &["-i", "-s", "1", "-q"]).assert_success();
    let out = pgbench(&via, &["-n", "-c", "4", "-j", "2", "-t", "50", "-M", mode]);
    out.assert_success();
    assert!(
        out.stdout
            .contains("number of transactions actually processed: 200/200"),
        "pgbench -M {mode} output:\n{}\n{}\nproxy log:\n{}",
        out.stdout,
        out.stderr,
        proxy.logs()
    );
    assert!(
        out.stdout.contains("number of failed transactions: 0 "),
        "{}",
        out.stdout
    );
    // Every transaction's UPDATE and INSERT landed exactly once.
    let check = psql(
        &direct,
        &[
            "-Atc",
            "SELECT (SELECT sum(abalance) FROM pgbench_accounts) = (SELECT sum(delta) FROM pgbench_history), \
             (SELECT count(*) FROM pgbench_history), (SELECT count(*) FROM pgbench_accounts)",
        ],
    );
    assert_eq!(check.assert_success().stdout.trim(), "t|200|100000");
}

#[test]
fn pgbench_simple_protocol() {
    pgbench_through_proxy("simple");
}

#[test]
fn pgbench_extended_protocol() {
    pgbench_through_proxy("extended");
}

#[test]
fn pgbench_prepared_statements() {
    pgbench_through_proxy("prepared");
}

// ------------------------------------------------------------------------------ tokio-postgres

fn simple_rows(msgs: &[SimpleQueryMessage]) -> Vec<String> {
    msgs.iter()
        .map(|m| match m {
            SimpleQueryMessage::Row(r) => (0..r.len())
                .map(|i| r.get(i).unwrap_or("NULL").to_string())
                .collect::<Vec<_>>()
                .join("|"),
            SimpleQueryMessage::CommandComplete(n) => format!("complete {n}"),
            SimpleQueryMessage::RowDescription(_) => "desc".into(),
            _ => "other".into(),
        })
        .collect()
}

/// Simple and extended queries, errors and recovery, transactions: a transcript to compare.
async fn tokio_workload(conn: &ConnInfo) -> Vec<String> {
    let client = conn.connect().await;
    let mut t = Vec::new();
    let msgs = client
        .simple_query(
            "CREATE TEMP TABLE k(id int PRIMARY KEY, v text, n numeric); \
             INSERT INTO k VALUES (1, 'a', 1.5), (2, NULL, -2), (3, 'ünïcødé ✓', 1e20); \
             SELECT id, v, n FROM k ORDER BY id",
        )
        .await
        .expect("simple multi-statement");
    t.extend(simple_rows(&msgs));

    let stmt = client
        .prepare("SELECT id, v, id * $1::int FROM k WHERE id >= $2 ORDER BY id")
        .await
        .expect("prepare");
    for i in 0..20i32 {
        for row in client.query(&stmt, &[&i, &2i32]).await.expect("execute") {
            let id: i32 = row.get(0);
            let v: Option<String> = row.get(1);
            let p: i32 = row.get(2);
            t.push(format!("{i}: {id} {v:?} {p}"));
        }
    }
    // Unnamed statements (query with a string) and a server error in the extended protocol.
    let err = client
        .query("SELECT 1 / $1::int", &[&0i32])
        .await
        .expect_err("division by zero");
    t.push(format!(
        "error {:?}",
        err.as_db_error().map(|e| (e.code().code(), e.message()))
    ));
    let one: i64 = client
        .query_one("SELECT count(*) FROM k WHERE v IS NOT NULL", &[])
        .await
        .expect("after error")
        .get(0);
    t.push(format!("count {one}"));

    client.batch_execute("BEGIN").await.expect("begin");
    client
        .execute(
            "INSERT INTO k VALUES ($1, $2, 0)",
            &[&10i32, &"rolled back"],
        )
        .await
        .expect("insert");
    client.batch_execute("ROLLBACK").await.expect("rollback");
    let n: i64 = client
        .query_one("SELECT count(*) FROM k", &[])
        .await
        .expect("count")
        .get(0);
    t.push(format!("after rollback {n}"));
    t
}

#[tokio::test]
async fn tokio_postgres_simple_and_extended_match_direct() {
    let (direct, via, _proxy) = setup("tp_queries");
    let a = tokio_workload(&direct).await;
    let b = tokio_workload(&via).await;
    assert!(a.len() > 40, "{a:?}");
    assert_eq!(a, b);
}

#[tokio::test]
async fn tokio_postgres_copy_in_and_out() {
    let (direct, via, _proxy) = setup("tp_copy");
    let mut data = Vec::new();
    for i in 0..100_000u32 {
        data.extend_from_slice(format!("{i}\trow number {i}\n").as_bytes());
    }
    for conn in [&direct, &via] {
        let client = conn.connect().await;
        client
            .batch_execute("CREATE TEMP TABLE cp(id int, s text)")
            .await
            .expect("create");
        let sink = client.copy_in("COPY cp FROM STDIN").await.expect("copy in");
        pin_mut!(sink);
        // Several chunks so CopyData frames cross buffer boundaries.
        for chunk in data.chunks(64 * 1024 + 7) {
            sink.send(bytes::Bytes::copy_from_slice(chunk))
                .await
                .expect("copy data");
        }
        let n = sink.finish().await.expect("copy done");
        assert_eq!(n, 100_000);
        let stream = client
            .copy_out("COPY (SELECT * FROM cp ORDER BY id) TO STDOUT")
            .await
            .expect("copy out");
        let chunks: Vec<bytes::Bytes> = stream.try_collect().await.expect("copy out data");
        let out: Vec<u8> = chunks.concat();
        assert_eq!(out.len(), data.len());
        assert!(out == data, "COPY TO STDOUT returned different bytes");
    }
}

#[tokio::test]
async fn tokio_postgres_listen_notify_and_notices() {
    let (direct, via, _proxy) = setup("tp_notify");
    let (client, mut connection) = via
        .tokio_config()
        .connect(tokio_postgres::NoTls)
        .await
        .expect("connect via proxy");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    tokio::spawn(async move {
        let stream = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        pin_mut!(stream);
        while let Some(msg) = stream.next().await {
            let text = match msg {
                Ok(AsyncMessage::Notification(n)) => {
                    format!("notify {} {}", n.channel(), n.payload())
                }
                Ok(AsyncMessage::Notice(n)) => format!("notice {}", n.message()),
                Ok(_) => continue,
                Err(_) => break,
            };
            if tx.send(text).is_err() {
                break;
            }
        }
    });
    client.batch_execute("LISTEN chan").await.expect("listen");
    // Sent from another session while the listener is idle: must arrive unprompted.
    let direct_client = direct.connect().await;
    direct_client
        .batch_execute("NOTIFY chan, 'from direct'")
        .await
        .expect("notify direct");
    let via_client = via.connect().await;
    via_client
        .batch_execute("SELECT pg_notify('chan', 'from proxy')")
        .await
        .expect("notify via proxy");
    client
        .batch_execute("DO $$ BEGIN RAISE NOTICE 'hello notice'; END $$")
        .await
        .expect("notice");
    let mut got = Vec::new();
    while got.len() < 3 {
        match tokio::time::timeout(Duration::from_secs(10), rx.recv()).await {
            Ok(Some(m)) => got.push(m),
            other => panic!("waiting for notifications, got {got:?} then {other:?}"),
        }
    }
    got.sort();
    assert_eq!(
        got,
        vec![
            "notice hello notice".to_string(),
            "notify chan from direct".to_string(),
            "notify chan from proxy".to_string(),
        ]
    );
}

#[tokio::test]
async fn tokio_postgres_cancel_through_proxy() {
    let (direct, via, proxy) = setup("tp_cancel");
    let client = via.connect().await;
    let token = client.cancel_token();
    let started = std::time::Instant::now();
    let sleeper = tokio::spawn(async move {
        let r = client
            .simple_query("SELECT pg_sleep(60), 'cancel-me'")
            .await;
        (r, client)
    });
    // Wait until the server really runs the sleep, then cancel through the proxy's address.
    let watcher = direct.connect().await;
    let mut running = false;
    for _ in 0..200 {
        let n: i64 = watcher
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(60)%' AND state = 'active'",
                &[],
            )
            .await
            .expect("poll activity")
            .get(0);
        if n == 1 {
            running = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(
        running,
        "pg_sleep never started; proxy log:\n{}",
        proxy.logs()
    );
    token
        .cancel_query(tokio_postgres::NoTls)
        .await
        .expect("send cancel via proxy");
    let (result, client) = tokio::time::timeout(Duration::from_secs(20), sleeper)
        .await
        .expect("cancelled query returns")
        .expect("join");
    let err = result.expect_err("query was cancelled");
    assert_eq!(
        err.as_db_error().map(|e| e.code().code()),
        Some("57014"),
        "{err:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(30));
    // The session survives a cancel.
    let one: i32 = client
        .query_one("SELECT 1", &[])
        .await
        .expect("after cancel")
        .get(0);
    assert_eq!(one, 1);
}
