//! Fuzz target: hostile bytes from either peer. The frame checker and every decoder the
//! session uses must return values or errors, never panic, on any input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pgwarden::protocol::frame::{check_header, Origin};
use pgwarden::protocol::{backend, frontend, FrameLimits};

fuzz_target!(|data: &[u8]| {
    let limits = FrameLimits::default();
    for origin in [Origin::Client, Origin::Server] {
        let mut pos = 0;
        while let Ok(Some(h)) = check_header(&data[pos..], &limits, origin) {
            let end = (pos + h.total).min(data.len());
            let body = &data[pos + 5..end];
            match (origin, h.tag) {
                (Origin::Client, b'Q') => drop(frontend::decode_query(body)),
                (Origin::Client, b'P') => drop(frontend::decode_parse(body)),
                (Origin::Client, b'B') => {
                    drop(frontend::decode_bind(body));
                    drop(frontend::bind_text_params(body));
                }
                (Origin::Client, b'C') => drop(frontend::decode_close(body)),
                (Origin::Server, b'Z') => drop(backend::decode_ready_for_query(body)),
                (Origin::Server, b'S') => drop(backend::decode_parameter_status(body)),
                (Origin::Server, b'K') => drop(backend::decode_backend_key_data(body)),
                (Origin::Server, b'C') => drop(backend::decode_command_complete(body)),
                (Origin::Server, b'E') => drop(backend::decode_error(body)),
                _ => {}
            }
            if end < pos + h.total {
                break;
            }
            pos = end;
        }
    }
});
