//! Fuzz target: the first packet of a connection (no type byte) — SSLRequest, GSSENCRequest,
//! CancelRequest, StartupMessage or garbage — is checked and parsed without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pgwarden::protocol::startup::{check_startup, parse_startup};

fuzz_target!(|data: &[u8]| {
    if let Ok(Some(len)) = check_startup(data) {
        if let Some(packet) = data.get(..len) {
            drop(parse_startup(packet));
        }
    }
});
