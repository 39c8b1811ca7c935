//! Load through pgwarden: 200 concurrent clients, a 100 MB result set, a 10 MB query text.
mod common;

use common::*;
use futures_util::{pin_mut, StreamExt};
use tokio_postgres::types::ToSql;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_clients() {
    const N: usize = 200;
    let c = Cluster::shared();
    let db = c.fresh_db("load_200");
    c.sql(&db, "CREATE TABLE hits(client int, n int)");
    let proxy = start_proxy(c);
    let via = c.conn(&db).with_port(proxy.port());
    // Open all sessions at once and keep them open: 200 server backends at the same time.
    let clients = futures_util::future::join_all((0..N).map(|_| {
        let via = via.clone();
        async move { via.connect().await }
    }))
    .await;
    let work = clients.iter().enumerate().map(|(i, client)| async move {
        let mut pids = Vec::new();
        for n in 0..5i32 {
            let row = client
                .query_one(
                    "INSERT INTO hits VALUES ($1, $2) RETURNING pg_backend_pid(), $2 * 2",
                    &[&(i as i32), &n],
                )
                .await
                .expect("insert through proxy");
            let doubled: i32 = row.get(1);
            assert_eq!(doubled, n * 2);
            pids.push(row.get::<_, i32>(0));
        }
        pids.dedup();
        assert_eq!(pids.len(), 1, "one server backend per client session");
        pids[0]
    });
    let mut pids = futures_util::future::join_all(work).await;
    pids.sort();
    pids.dedup();
    assert_eq!(pids.len(), N, "distinct server backends");
    let active = c.sql(
        "postgres",
        &format!("SELECT count(*) FROM pg_stat_activity WHERE datname = '{db}'"),
    );
    assert_eq!(active, N.to_string(), "sessions open at the same time");
    let rows = c.sql(
        &db,
        "SELECT count(*), count(DISTINCT client), sum(n) FROM hits",
    );
    assert_eq!(rows, format!("{}|{N}|{}", N * 5, N * 10));
    drop(clients);
}

#[tokio::test]
async fn hundred_megabyte_result_set() {
    let c = Cluster::shared();
    let db = c.fresh_db("load_100mb");
    let proxy = start_proxy(c);
    let client = c.conn(&db).with_port(proxy.port()).connect().await;
    // 100,000 rows of 1,000 bytes each, every row checkable on its own.
    let rows = client
        .query_raw(
            "SELECT g, repeat(chr(65 + g % 26), 1000) FROM generate_series(1, 100000) g ORDER BY g",
            Vec::<&(dyn ToSql + Sync)>::new(),
        )
        .await
        .expect("query");
    pin_mut!(rows);
    let mut expected = 1i32;
    let mut bytes = 0usize;
    while let Some(row) = rows.next().await {
        let row = row.expect("row");
        let g: i32 = row.get(0);
        let s: &str = row.get(1);
        assert_eq!(g, expected);
        let letter = char::from(65 + (g % 26) as u8);
        assert!(
            s.len() == 1000 && s.chars().all(|ch| ch == letter),
            "row {g} corrupted"
        );
        bytes += s.len();
        expected += 1;
    }
    assert_eq!(expected - 1, 100_000);
    assert_eq!(bytes, 100_000_000);
    // The session is healthy afterwards.
    let one: i32 = client
        .query_one("SELECT 1", &[])
        .await
        .expect("after")
        .get(0);
    assert_eq!(one, 1);
}

#[tokio::test]
async fn ten_megabyte_query_text_simple_and_extended() {
    let c = Cluster::shared();
    let db = c.fresh_db("load_10mb");
    let proxy = start_proxy(c);
    let direct = c.conn(&db).connect().await;
    let via = c.conn(&db).with_port(proxy.port()).connect().await;
    // 10 MB of varied text inside a literal (no quotes inside, so it needs no escaping).
    let literal: String = (0..10_000_000u32)
        .map(|i| char::from(b'a' + (i % 23) as u8 + (i / 7 % 3) as u8))
        .collect();
    let sql = format!("SELECT length(s)::text, md5(s) FROM (SELECT '{literal}'::text AS s) x");
    assert!(sql.len() > 10_000_000);
    let simple = |msgs: Vec<tokio_postgres::SimpleQueryMessage>| -> Vec<String> {
        msgs.into_iter()
            .filter_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => Some(format!(
                    "{}|{}",
                    r.get(0).unwrap_or(""),
                    r.get(1).unwrap_or("")
                )),
                _ => None,
            })
            .collect()
    };
    let a = simple(direct.simple_query(&sql).await.expect("direct simple"));
    let b = simple(via.simple_query(&sql).await.expect("simple via proxy"));
    assert_eq!(a.len(), 1);
    assert!(a[0].starts_with("10000000|"), "{a:?}");
    assert_eq!(a, b);
    // The same text as a Parse message, then as a 10 MB Bind parameter.
    let row = via
        .query_one(sql.as_str(), &[])
        .await
        .expect("extended via proxy");
    assert_eq!(
        format!("{}|{}", row.get::<_, String>(0), row.get::<_, String>(1)),
        a[0]
    );
    let row = via
        .query_one(
            "SELECT length($1::text)::text || '|' || md5($1::text)",
            &[&literal],
        )
        .await
        .expect("10 MB parameter via proxy");
    assert_eq!(row.get::<_, String>(0), a[0]);
}
