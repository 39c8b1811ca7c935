//! Fuzz target: the prefilter on arbitrary bytes under every client encoding pgwarden knows
//! and both settings of standard_conforming_strings. Never panics; spans stay sound on the
//! text the server's lexer sees; and reading under unknown settings is never less careful
//! than reading under any known one (if some known reading has DDL, the unknown one says so,
//! and an "exact" reading under unknown settings splits like every known one).
#![no_main]

use libfuzzer_sys::fuzz_target;
use pgwarden::sql::encoding::{server_text, ALL_FAMILIES};
use pgwarden::sql::lexer::{split, LexOptions, StatementClass};
use pgwarden::sql::server_lex::{exact_reading, needs_attention, LexSettings, Reading};

const NAMES: [&str; 7] = ["UTF8", "SJIS", "BIG5", "GB18030", "JOHAB", "LATIN1", "KLINGON"];

fn opts(scs: bool) -> LexOptions {
    LexOptions {
        standard_conforming_strings: scs,
        max_statement_len: 256,
        max_depth: 8,
        max_chain: 16,
    }
}

fn classes(data: &[u8], r: Reading) -> Vec<StatementClass> {
    let text = r.text(data);
    split(&text, &opts(r.standard_conforming_strings))
        .map(|s| s.class)
        .collect()
}

fuzz_target!(|data: &[u8]| {
    if data.contains(&0) {
        return; // a Query text is a C string
    }
    for family in ALL_FAMILIES {
        let text = server_text(data, family);
        // Every ASCII byte the server's lexer sees is one of ours, in order.
        assert!(text.bytes().filter(u8::is_ascii).count() <= data.iter().filter(|b| b.is_ascii()).count());
        for scs in [true, false] {
            let mut next = 0;
            for st in split(&text, &opts(scs)) {
                assert_eq!(st.span.start, next);
                assert!(text.is_char_boundary(st.span.end));
                next = if text[st.span.end..].starts_with(';') { st.span.end + 1 } else { st.span.end };
            }
            assert_eq!(next, text.len());
        }
    }
    let unknown = LexSettings::unknown();
    let base = opts(true);
    let any_ddl = needs_attention(data, &unknown, &base);
    let exact = exact_reading(data, &unknown, &base);
    for name in NAMES {
        for scs in [true, false] {
            let known = LexSettings::known(name, scs);
            if needs_attention(data, &known, &base) {
                assert!(any_ddl, "unknown settings missed DDL that {name}/{scs} sees");
            }
            if let Some(r) = exact {
                let (rs, n) = known.readings(data);
                for k in &rs[..n] {
                    assert_eq!(classes(data, r).len(), classes(data, *k).len());
                }
            }
        }
    }
});
