//! Hostile sizes: 100,000 nested parentheses and 10 MB statements must be flagged, never crash,
//! and cost linear time. (The parser behind the prefilter overflows its stack at ~4,200 levels.)
use std::time::{Duration, Instant};

use pgwarden::sql::lexer::{split, LexOptions, RawStatement, StatementClass, Unanalysable};

/// Builds a statement of about the given size.
type Maker = fn(usize) -> String;

fn all(text: &str) -> Vec<RawStatement> {
    split(text, &LexOptions::default()).collect()
}

/// Fastest of three runs of splitting `text`.
fn time_split(text: &str) -> Duration {
    (0..3)
        .map(|_| {
            let t = Instant::now();
            let n = split(text, &LexOptions::default()).count();
            assert!(n >= 1);
            t.elapsed()
        })
        .min()
        .unwrap_or_default()
}

#[test]
fn hundred_thousand_nested_parentheses_are_too_deep_and_the_next_statement_is_found() {
    let depth = 100_000;
    let text = format!(
        "SELECT {}1{}; SELECT 2",
        "(".repeat(depth),
        ")".repeat(depth)
    );
    let st = all(&text);
    assert_eq!(st.len(), 2);
    assert_eq!(st[0].unanalysable, Some(Unanalysable::TooDeep));
    assert_eq!(st[0].class, StatementClass::Dml);
    assert_eq!(st[1].body_text(&text), "SELECT 2");
    assert_eq!(st[1].unanalysable, None);
    // Runs on a small thread stack, as the proxy's tasks do: no recursion anywhere.
    let handle = std::thread::Builder::new()
        .stack_size(64 * 1024)
        .spawn(move || {
            let opened = format!("{}; DROP TABLE t", "(".repeat(depth));
            let st: Vec<_> = split(&opened, &LexOptions::default()).collect();
            // Unbalanced: the `;` is inside parentheses, so everything is one unanalysable
            // statement that goes to the parser's gate, not a hidden DROP.
            assert_eq!(st.len(), 1);
            assert_eq!(st[0].unanalysable, Some(Unanalysable::TooDeep));
            assert_eq!(st[0].class, StatementClass::DdlOrUtility);
        })
        .unwrap();
    handle.join().unwrap();
}

#[test]
fn ten_megabyte_statements_are_too_long_in_linear_time() {
    let mb = 1 << 20;
    let kinds: [(&str, Maker); 3] = [
        ("string literal", |n| format!("SELECT '{}'", "x".repeat(n))),
        ("many tokens", |n| format!("SELECT 1{}", "+1".repeat(n / 2))),
        ("block comment", |n| {
            format!("ALTER TABLE t /* {} */ ADD c int", "-/x*".repeat(n / 4))
        }),
    ];
    for (name, make) in kinds {
        let big = make(10 * mb);
        let st = all(&big);
        assert_eq!(st.len(), 1, "{name}");
        assert_eq!(st[0].unanalysable, Some(Unanalysable::TooLong), "{name}");
        let small = make(mb);
        let (t_small, t_big) = (time_split(&small), time_split(&big));
        // Linear is ~10x; quadratic would be ~100x. Generous for a loaded 2-core machine.
        assert!(
            t_big < t_small * 40 + Duration::from_millis(50),
            "{name}: 1 MB {t_small:?}, 10 MB {t_big:?}"
        );
        assert!(
            t_big < Duration::from_secs(10),
            "{name}: 10 MB took {t_big:?}"
        );
    }
}
