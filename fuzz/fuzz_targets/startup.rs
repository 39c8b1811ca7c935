//! Fuzz target: the first packet of a connection (no type byte) — SSLRequest, GSSENCRequest,
//! CancelRequest, StartupMessage or garbage — is checked and parsed without panicking; and a
//! StartupMessage built from the input with repeated keys is read as PostgreSQL reads it
//! (the last value of every key wins), and `options` strings never panic.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use pgwarden::protocol::startup::{
    check_startup, option_settings, parse_startup, StartupRequest, PROTOCOL_3_0,
};

/// Few keys, so that repeats are common.
const KEYS: [&str; 5] = ["user", "database", "options", "application_name", "client_encoding"];

fuzz_target!(|data: &[u8]| {
    if let Ok(Some(len)) = check_startup(data) {
        if let Some(packet) = data.get(..len) {
            drop(parse_startup(packet));
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        drop(option_settings(text));
    }

    // Pairs: one byte picks the key, the next bytes up to a 0xff are the value.
    let mut pairs: Vec<(&str, String)> = Vec::new();
    let mut rest = data;
    while let Some((&k, tail)) = rest.split_first() {
        let end = tail.iter().position(|&b| b == 0xff).unwrap_or(tail.len());
        let value: String = String::from_utf8_lossy(&tail[..end])
            .chars()
            .filter(|&c| c != '\0')
            .collect();
        pairs.push((KEYS[k as usize % KEYS.len()], value));
        rest = tail.get(end + 1..).unwrap_or(&[]);
    }
    let mut body = PROTOCOL_3_0.to_be_bytes().to_vec();
    for (k, v) in &pairs {
        body.extend_from_slice(k.as_bytes());
        body.push(0);
        body.extend_from_slice(v.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut packet = ((body.len() + 4) as u32).to_be_bytes().to_vec();
    packet.extend_from_slice(&body);
    let last = |key: &str| pairs.iter().rev().find(|(k, _)| *k == key).map(|(_, v)| v.as_str());
    match parse_startup(&packet) {
        Ok(StartupRequest::Startup(m)) => {
            for key in KEYS {
                assert_eq!(m.param(key), last(key), "key {key}");
            }
            let mut keys: Vec<&str> = m.params.iter().map(|(k, _)| k.as_str()).collect();
            keys.sort_unstable();
            let n = keys.len();
            keys.dedup();
            assert_eq!(keys.len(), n, "a key twice in {:?}", m.params);
            // What pgwarden forwards reads back the same.
            let mut out = BytesMut::new();
            m.encode_v30(&mut out);
            let Ok(StartupRequest::Startup(again)) = parse_startup(&out) else {
                panic!("re-encoded packet does not parse");
            };
            assert_eq!(again.params, m.params);
        }
        Ok(other) => panic!("a StartupMessage parsed as {other:?}"),
        // No user (or an empty last one), or a packet over the length bound.
        Err(_) => assert!(
            last("user").is_none_or(str::is_empty) || packet.len() > 10_000,
            "refused a valid packet: {pairs:?}"
        ),
    }
});
