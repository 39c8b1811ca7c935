//! Start-up corners of the protocol through pgwarden, on raw sockets: GSSENCRequest, a
//! CancelRequest that follows an SSLRequest (libpq >= 17 does that), protocol 3.2 with `_pq_.`
//! options (NegotiateProtocolVersion), compared with the server's own answers where they exist.
mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::*;

const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];
const GSSENC_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x30];

fn one_byte(s: &mut TcpStream) -> u8 {
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut b = [0u8; 1];
    s.read_exact(&mut b).expect("one-byte answer");
    b[0]
}

#[test]
fn gssenc_request_is_answered_n_and_startup_continues() {
    let c = Cluster::shared();
    let db = c.fresh_db("proto_gss");
    let proxy = start_proxy(c);
    let mut s = TcpStream::connect(proxy.addr).expect("connect");
    s.write_all(&GSSENC_REQUEST).expect("gssenc");
    assert_eq!(one_byte(&mut s), b'N');
    s.write_all(&startup_message(SUPERUSER, &db))
        .expect("startup");
    let (mut s, seen) = raw_until_ready(s);
    assert!(seen.iter().any(|(k, _)| *k == b'K'), "no BackendKeyData");
    s.write_all(&query_message("SELECT 'gss-ok'"))
        .expect("query");
    let mut rows = Vec::new();
    loop {
        let (k, body) = read_message(&mut s).expect("reply");
        if k == b'D' {
            rows.push(String::from_utf8_lossy(&body[6..]).into_owned());
        }
        if k == b'Z' {
            break;
        }
    }
    assert_eq!(rows, vec!["gss-ok".to_string()]);
}

fn backend_key(seen: &[(u8, Vec<u8>)]) -> [u8; 8] {
    let (_, body) = seen
        .iter()
        .find(|(k, _)| *k == b'K')
        .expect("BackendKeyData");
    body[..8].try_into().expect("pid and key")
}

fn cancel_after_ssl_request(target: SocketAddr, key: [u8; 8]) {
    let mut s = TcpStream::connect(target).expect("connect for cancel");
    s.write_all(&SSL_REQUEST).expect("ssl request");
    assert_eq!(one_byte(&mut s), b'N', "no client TLS configured: expect N");
    let mut cancel = vec![0, 0, 0, 16, 0x04, 0xd2, 0x16, 0x2e];
    cancel.extend_from_slice(&key);
    s.write_all(&cancel).expect("cancel request");
    // The proxy (like the server) closes a cancel connection without answering.
    let (closed, got) = closed_within(&mut s, Duration::from_secs(10));
    assert!(closed && got.is_empty(), "{got:?}");
}

#[test]
fn cancel_request_after_ssl_request_cancels_the_right_query() {
    let c = Cluster::shared();
    let db = c.fresh_db("proto_cancel");
    let proxy = start_proxy(c);
    let (mut victim, seen) = raw_session(proxy.addr, &db);
    let (mut bystander, _) = raw_session(proxy.addr, &db);
    bystander
        .write_all(&query_message("SELECT pg_sleep(3)"))
        .expect("bystander query");
    victim
        .write_all(&query_message("SELECT pg_sleep(60)"))
        .expect("victim query");
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    cancel_after_ssl_request(proxy.addr, backend_key(&seen));
    let code = loop {
        let (k, body) = read_message(&mut victim).expect("victim reply");
        if k == b'E' {
            let mut framed = vec![b'E'];
            framed.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
            framed.extend_from_slice(&body);
            break error_code(&framed);
        }
    };
    assert_eq!(code.as_deref(), Some("57014"));
    assert!(started.elapsed() < Duration::from_secs(10));
    // The other session's query was not cancelled: it completes normally.
    loop {
        let (k, _) = read_message(&mut bystander).expect("bystander reply");
        assert_ne!(k, b'E', "the wrong query was cancelled");
        if k == b'Z' {
            break;
        }
    }
}

#[test]
fn psycopg3_cancel_safe_through_proxy() {
    // psycopg 3.3 bundles libpq 18, whose cancel_safe() opens the cancel connection with an
    // SSLRequest first (sslmode=prefer).
    let c = Cluster::shared();
    let db = c.fresh_db("proto_cancel_safe");
    let proxy = start_proxy(c);
    let url = c
        .conn(&db)
        .with_port(proxy.port())
        .with_sslmode("prefer")
        .url();
    let out = run_python("clients.py", &["psycopg3-cancel", &url]);
    out.assert_success();
    assert_eq!(out.stdout.trim(), r#"{"error": "57014", "fast": true}"#);
}

/// Everything up to ReadyForQuery for a 3.2 startup with an unknown `_pq_.` option.
fn negotiate(addr: SocketAddr, db: &str) -> Vec<(u8, Vec<u8>)> {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.write_all(&startup_message_with(
        0x0003_0002,
        &[
            ("user", SUPERUSER),
            ("database", db),
            ("_pq_.pgwarden_test_option", "1"),
        ],
    ))
    .expect("startup");
    raw_until_ready(s).1
}

#[test]
fn newer_minor_version_gets_negotiate_protocol_version_like_the_server() {
    let c = Cluster::shared();
    let db = c.fresh_db("proto_negotiate");
    let proxy = start_proxy(c);
    let direct = negotiate(format!("127.0.0.1:{}", c.port).parse().expect("addr"), &db);
    let via = negotiate(proxy.addr, &db);
    let v = |seen: &[(u8, Vec<u8>)]| {
        seen.iter()
            .find(|(k, _)| *k == b'v')
            .map(|(_, b)| b.clone())
    };
    let via_v = v(&via).expect("pgwarden sent no NegotiateProtocolVersion");
    // Newest version supported: 3.0 (PostgreSQL sends the whole version code); one unrecognised
    // option, named.
    assert_eq!(&via_v[..8], &[0, 3, 0, 0, 0, 0, 0, 1]);
    assert!(String::from_utf8_lossy(&via_v).contains("_pq_.pgwarden_test_option"));
    assert_eq!(
        v(&direct),
        Some(via_v),
        "differs from the server's own answer"
    );
}
