//! With the audit log on, the answer to a request inside a transaction block is held back
//! until its ReadyForQuery has had its audit turn, and goes out with it (src/proxy/session.rs,
//! `server_scan::hold_for_ready`). What the client receives must stay exactly what the server
//! sent, in the server's order: notices, rows, large results (never held), errors, several
//! statements in one Query, and the end of the transaction. Compared message by message with
//! the same session run directly against PostgreSQL, and every DDL statement's records are in
//! the audit log.
mod common;

use std::io::Write;
use std::net::SocketAddr;

use common::*;

/// The session: (Query text, expected ReadyForQuery status).
const SESSION: &[(&str, u8)] = &[
    ("BEGIN", b'T'),
    ("CREATE TABLE hold_a (id int PRIMARY KEY, note text)", b'T'),
    // A server NOTICE before the CommandComplete.
    ("CREATE TABLE IF NOT EXISTS hold_a (id int)", b'T'),
    (
        "DO $$ BEGIN RAISE NOTICE 'first'; RAISE NOTICE 'second'; END $$",
        b'T',
    ),
    ("ALTER TABLE hold_a ADD COLUMN flag boolean DEFAULT false NOT NULL", b'T'),
    ("INSERT INTO hold_a SELECT g, repeat('x', 50) FROM generate_series(1, 400) g", b'T'),
    // Far more than pgwarden holds back: written as it comes.
    ("SELECT id, note FROM hold_a ORDER BY id", b'T'),
    ("SELECT repeat('y', 20000)", b'T'),
    // Several statements, DDL among them, in one Query.
    (
        "CREATE INDEX hold_a_note ON hold_a (note); SELECT count(*) FROM hold_a; CREATE TABLE hold_b (id int)",
        b'T',
    ),
    ("COMMIT", b'I'),
    ("BEGIN", b'T'),
    ("CREATE TABLE hold_c (id int)", b'T'),
    // An error inside the block, then what a failed block answers.
    ("ALTER TABLE hold_missing ADD COLUMN x int", b'E'),
    ("SELECT 1", b'E'),
    ("ROLLBACK", b'I'),
    ("DROP TABLE hold_b", b'I'),
];

/// Every message the server sent for each Query, up to and including its ReadyForQuery,
/// without pgwarden's own notices and without ParameterStatus (both only through pgwarden).
fn run(addr: SocketAddr, db: &str) -> Vec<Vec<(u8, Vec<u8>)>> {
    let (mut s, _) = raw_session(addr, db);
    let mut out = Vec::new();
    for (sql, status) in SESSION {
        s.write_all(&query_message(sql)).expect("send");
        let mut msgs = Vec::new();
        loop {
            let (kind, body) = read_message(&mut s).unwrap_or_else(|e| panic!("{sql}: {e}"));
            let ours = kind == b'N' && String::from_utf8_lossy(&body).contains("pgwarden");
            if kind != b'S' && !ours {
                msgs.push((kind, body.clone()));
            }
            if kind == b'Z' {
                assert_eq!(body, vec![*status], "{sql}");
                break;
            }
        }
        out.push(msgs);
    }
    s.write_all(b"X\0\0\0\x04").expect("terminate");
    out
}

#[test]
fn answers_held_for_the_audit_turn_arrive_whole_and_in_order() {
    let c = Cluster::shared();
    let direct_db = c.fresh_db("hold_direct");
    let proxied_db = c.fresh_db("hold_proxied");
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("audit.jsonl");
    let proxy = ProxyProcess::start(
        &c.addr(),
        &format!(
            "[audit]\npath = \"{}\"\nfsync = \"always\"\n",
            log.display()
        ),
    );
    let direct_addr: SocketAddr = c.addr().parse().expect("cluster address");
    let direct = run(direct_addr, &direct_db);
    let proxied = run(proxy.addr, &proxied_db);
    for ((sql, _), (d, p)) in SESSION.iter().zip(direct.iter().zip(&proxied)) {
        let tags = |m: &[(u8, Vec<u8>)]| m.iter().map(|(k, _)| *k as char).collect::<String>();
        assert_eq!(tags(p), tags(d), "message types of {sql:?}");
        for ((dk, db), (_, pb)) in d.iter().zip(p) {
            // A RowDescription names the table's oid, which differs between the databases;
            // everything else (rows, tags, notices and errors with their source fields) is the
            // same bytes.
            if *dk == b'T' {
                continue;
            }
            assert_eq!(
                String::from_utf8_lossy(pb),
                String::from_utf8_lossy(db),
                "{} of {sql:?}",
                *dk as char
            );
        }
    }
    drop(proxy);
    // Every DDL statement that ran has its statement and outcome records, and the committed
    // one a fate.
    let recs = audit_records(&log);
    for text in [
        "CREATE TABLE hold_a (id int PRIMARY KEY, note text)",
        "ALTER TABLE hold_a ADD COLUMN flag boolean DEFAULT false NOT NULL",
        "CREATE TABLE hold_c (id int)",
        "ALTER TABLE hold_missing ADD COLUMN x int",
        "DROP TABLE hold_b",
    ] {
        let s = recs
            .iter()
            .find(|r| r["type"] == "statement" && r["text"].as_str() == Some(text))
            .unwrap_or_else(|| panic!("no statement record for {text}"));
        assert!(
            recs.iter().any(|r| r["type"] == "outcome"
                && r["session_id"] == s["session_id"]
                && r["seq"] == s["seq"]),
            "no outcome record for {text}"
        );
    }
}
