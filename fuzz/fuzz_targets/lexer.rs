//! Fuzz target: the prefilter must never panic, and its spans must stay sound, on any UTF-8
//! text with either setting of standard_conforming_strings.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pgwarden::sql::lexer::{split, LexOptions};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for scs in [true, false] {
        let opts = LexOptions {
            standard_conforming_strings: scs,
            max_statement_len: 256,
            max_depth: 8,
            max_chain: 16,
        };
        let mut next_start = 0;
        for st in split(text, &opts) {
            assert_eq!(st.span.start, next_start, "gap or overlap before {st:?}");
            assert!(st.span.end <= text.len());
            assert!(text.is_char_boundary(st.span.end) && text.is_char_boundary(st.body.start));
            assert!(st.span.start <= st.body.start && st.body.end <= st.span.end);
            next_start = if text[st.span.end..].starts_with(';') {
                st.span.end + 1
            } else {
                st.span.end
            };
        }
        assert_eq!(next_start, text.len(), "text not fully consumed");
    }
});
