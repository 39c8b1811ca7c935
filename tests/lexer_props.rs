//! Property tests of the prefilter: it never panics, its spans are sound on any input, and on
//! generated SQL built from complete tokens it finds exactly the statements that were joined.
use pgwarden::sql::lexer::{split, LexOptions, RawStatement};
use proptest::prelude::*;

fn opts(scs: bool) -> LexOptions {
    LexOptions {
        standard_conforming_strings: scs,
        max_statement_len: 64,
        max_depth: 4,
        max_chain: 1000,
    }
}

/// Spans are in bounds, on char boundaries, ordered, non-overlapping, and separated only by
/// the terminating `;` (or nothing, where a psql command starts); bodies sit inside spans.
fn check_invariants(text: &str, stmts: &[RawStatement]) -> Result<(), TestCaseError> {
    let mut expected_start = 0;
    for (k, st) in stmts.iter().enumerate() {
        let (s, b) = (&st.span, &st.body);
        prop_assert!(s.start <= s.end && s.end <= text.len(), "span {:?}", s);
        prop_assert!(text.is_char_boundary(s.start) && text.is_char_boundary(s.end));
        prop_assert!(text.is_char_boundary(b.start) && text.is_char_boundary(b.end));
        prop_assert!(
            s.start <= b.start && b.start <= b.end && b.end <= s.end,
            "{:?}",
            st
        );
        prop_assert_eq!(s.start, expected_start, "statement {} of {:?}", k, stmts);
        expected_start = if text[s.end..].starts_with(';') {
            s.end + 1
        } else {
            prop_assert!(
                s.end == text.len()
                    || text[s.end..].starts_with('\\')
                    || text[s.end..].starts_with('\n'),
                "statement {} ends at {} without a terminator",
                k,
                s.end
            );
            s.end
        };
        if let Some(set) = &st.set {
            prop_assert!(set.name.start <= set.name.end && set.name.end <= b.end.max(set.name.end));
            prop_assert!(
                b.start <= set.name.start && set.value.end <= b.end,
                "{:?}",
                st
            );
        }
    }
    // Everything was consumed (a trailing zero-length piece is not reported).
    prop_assert!(expected_start == text.len() || stmts.is_empty() && text.is_empty());
    Ok(())
}

/// One complete token that may contain `;` inside it but never ends a statement.
fn atom() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        "w[a-z0-9_$]{0,6}",
        "[0-9]{1,4}(\\.[0-9]{1,3})?",
        "\\$[1-9][0-9]?",
        "'([a-z; \"$*/\\n-]|''){0,8}'",
        "E'([a-z; \"$]|\\\\\\\\|\\\\'|''){0,8}'",
        "\"([a-z; '$]|\"\"){1,8}\"",
        "\\$\\$[a-z; '\"\\n]{0,8}\\$\\$",
        "\\$t[a-z]?\\$[a-z; '\"\\n]{0,8}\\$t[a-z]?\\$".prop_filter("same tag", |s| {
            let tag_end = s[1..].find('$').map_or(0, |p| p + 2);
            s.ends_with(&s[..tag_end]) && s.len() >= 2 * tag_end
        }),
        "/\\*[a-z; '\"$\\n]{0,8}(/\\*[a-z; ]{0,4}\\*/[a-z; ]{0,4})?\\*/",
        "--[a-z; '\"$*/]{0,8}\\n",
        prop_oneof![Just(","), Just("+"), Just("="), Just("::"), Just(".")].prop_map(String::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        (prop::collection::vec(inner, 0..4), any::<bool>()).prop_map(|(v, square)| {
            let (open, close) = if square { ("[", "]") } else { ("(", ")") };
            format!("{open}{}{close}", v.join(" "))
        })
    })
}

/// A statement: a leading word, then atoms.
fn statement() -> impl Strategy<Value = String> {
    ("w[a-z]{0,5}", prop::collection::vec(atom(), 0..6))
        .prop_map(|(head, rest)| format!("{head} {}", rest.join(" ")))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn never_panics_and_spans_are_sound_on_sqlish_noise(
        text in "[a-zA-Z0-9 ;'\"$\\\\/*()\\[\\]\\n\\r.&=EeUuBbXx_é☃-]{0,120}",
        scs in any::<bool>(),
    ) {
        let stmts: Vec<_> = split(&text, &opts(scs)).collect();
        check_invariants(&text, &stmts)?;
    }

    #[test]
    fn never_panics_and_spans_are_sound_on_any_string(text in "\\PC{0,80}", scs in any::<bool>()) {
        let stmts: Vec<_> = split(&text, &opts(scs)).collect();
        check_invariants(&text, &stmts)?;
    }

    #[test]
    fn psql_script_mode_keeps_spans_sound_around_copy_data(
        parts in prop::collection::vec(
            prop_oneof![
                Just("COPY t FROM stdin;\n".to_owned()),
                Just("\\.\n".to_owned()),
                "[a-z0-9 ;'\"$\\\\/*\t\r\n.-]{0,20}",
            ],
            0..8,
        ),
    ) {
        let text = parts.concat();
        let mut last_end = 0;
        for st in split(&text, &opts(true)).psql_script() {
            prop_assert!(last_end <= st.span.start && st.span.start <= st.span.end);
            prop_assert!(st.span.end <= text.len());
            prop_assert!(text.is_char_boundary(st.span.start) && text.is_char_boundary(st.span.end));
            prop_assert!(st.span.start <= st.body.start && st.body.end <= st.span.end);
            last_end = st.span.end;
        }
    }

    #[test]
    fn finds_exactly_the_statements_that_were_joined(
        parts in prop::collection::vec(statement(), 1..6),
        trailing in any::<bool>(),
        scs in any::<bool>(),
    ) {
        let mut text = parts.join(";");
        if trailing {
            text.push(';');
        }
        let o = LexOptions { standard_conforming_strings: scs, ..LexOptions::default() };
        let stmts: Vec<_> = split(&text, &o).collect();
        check_invariants(&text, &stmts)?;
        let got: Vec<_> = stmts.iter().map(|s| s.text(&text)).collect();
        prop_assert_eq!(got, parts.iter().map(String::as_str).collect::<Vec<_>>());
        for st in &stmts {
            prop_assert_eq!(st.unanalysable, None);
        }
    }
}
