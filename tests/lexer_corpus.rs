//! Splits every case of the migration corpus and checks the statements against squawk's parser,
//! used here only as an independent oracle for statement boundaries.
use pgwarden::sql::lexer::{split, LexOptions, StatementClass};
use squawk_syntax::ast::AstNode;
use squawk_syntax::SourceFile;

const CORPUS: &str = include_str!("fixtures/migration-statements.sql");

/// (case id, query text) pairs: each case starts with a `-- case: <id> ...` marker line and
/// runs to the next marker.
fn cases() -> Vec<(&'static str, &'static str)> {
    let mut out = Vec::new();
    let mut offsets = Vec::new();
    let mut pos = 0;
    for line in CORPUS.split_inclusive('\n') {
        if let Some(rest) = line.strip_prefix("-- case: ") {
            let id = rest.split_whitespace().next().unwrap_or("");
            offsets.push((id, pos, pos + line.len()));
        }
        pos += line.len();
    }
    for (k, &(id, _, body_start)) in offsets.iter().enumerate() {
        let end = offsets.get(k + 1).map_or(CORPUS.len(), |next| next.1);
        out.push((id, &CORPUS[body_start..end]));
    }
    out
}

#[test]
fn corpus_has_the_documented_number_of_cases() {
    assert_eq!(cases().len(), 282);
}

#[test]
fn every_case_splits_like_the_parser_sees_it() {
    let opts = LexOptions::default();
    let mut total = 0;
    let mut mismatches = Vec::new();
    for (id, text) in cases() {
        let ours: Vec<_> = split(text, &opts)
            .filter(|s| s.class != StatementClass::Empty)
            .collect();
        for st in &ours {
            assert_eq!(st.unanalysable, None, "case {id}: {st:?}");
        }
        let parse = SourceFile::parse(text);
        let theirs: Vec<_> = parse
            .tree()
            .stmts()
            .map(|s| {
                let r = s.syntax().text_range();
                let (start, mut end) = (usize::from(r.start()), usize::from(r.end()));
                // squawk's statement node owns its terminating `;`; our spans exclude it.
                if text[..end].ends_with(';') {
                    end -= 1;
                }
                start..end
            })
            .collect();
        total += ours.len();
        let our_bodies: Vec<_> = ours.iter().map(|s| s.body.clone()).collect();
        if our_bodies != theirs {
            mismatches.push(format!(
                "case {id}: lexer {:?} vs parser {:?}",
                ours.iter().map(|s| s.body_text(text)).collect::<Vec<_>>(),
                theirs.iter().map(|r| &text[r.clone()]).collect::<Vec<_>>()
            ));
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
    // 282 query strings, some holding several statements (the m* cases).
    assert_eq!(total, 308);
}

#[test]
fn corpus_classes_are_sane() {
    let opts = LexOptions::default();
    let mut counts = std::collections::BTreeMap::new();
    for (id, text) in cases() {
        for st in split(text, &opts).filter(|s| s.class != StatementClass::Empty) {
            *counts.entry(format!("{:?}", st.class)).or_insert(0) += 1;
            let body = st.body_text(text).to_ascii_uppercase();
            // Anything that creates, alters or drops must reach the parser.
            for ddl in [
                "CREATE ", "ALTER ", "DROP ", "TRUNCATE", "REINDEX", "VACUUM", "CLUSTER",
            ] {
                if body.starts_with(ddl) {
                    assert_eq!(st.class, StatementClass::DdlOrUtility, "case {id}: {body}");
                }
            }
        }
    }
    println!("{counts:?}");
}
