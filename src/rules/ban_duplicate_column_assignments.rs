//! ban-duplicate-column-assignments: the same column defined twice in one CREATE TABLE / ALTER TABLE ADD COLUMN,
//! or assigned twice in one INSERT column list or UPDATE / MERGE SET list (`pgwarden check`).
use super::*;
use crate::sql::facts::*;

pub const DOC: &str = r#"## What it does
Flags a column named twice in one `CREATE TABLE` (or two `ADD COLUMN`s of one name in one `ALTER TABLE`), and, in `pgwarden check`, a column assigned twice in one `INSERT` column list or one `UPDATE` / `ON CONFLICT DO UPDATE` / `MERGE` SET list.

## Why is this bad
Postgres refuses the statement: 42701 for a duplicate column definition or INSERT column, 42601 ("multiple assignments to same column") for an UPDATE. The migration fails at deploy time instead of in review, and in a long generated list the duplicate is easy to miss. Assigning different parts of one column (`SET tags[1] = 'a', tags[2] = 'b'`, `INSERT INTO t (point.x, point.y)`) is allowed and not flagged; a whole-column assignment next to a part of it is refused like any other duplicate.

## Example
```sql
CREATE TABLE invoices (id bigint, total numeric, total numeric);
UPDATE invoices SET total = 0, status = 'void', total = NULL WHERE id = 7;
```

## Use instead
Keep one definition or assignment of each column.

## Differences from squawk
squawk also checks view and `SELECT ... INTO` column lists. The DML checks run in `pgwarden check` only: the proxy does not parse DML (DESIGN.md decision 4), and the server refuses such a statement before it changes anything.

## Rewrite safety
No rewrite.
"#;

pub fn check(f: &StatementFacts, _cx: &Cx<'_>, out: &mut Vec<Finding>) {
    let defined: Vec<(&str, &std::ops::Range<usize>)> = match f.kind {
        StatementKind::CreateTable => f.columns.iter().map(|c| (c.name.as_str(), &c.name_span)).collect(),
        StatementKind::AlterTable => f
            .actions
            .iter()
            .filter_map(|a| a.column_def.as_ref())
            .map(|c| (c.name.as_str(), &c.name_span))
            .collect(),
        _ => return,
    };
    for (i, (name, span)) in defined.iter().enumerate() {
        if defined[..i].iter().any(|(n, _)| n == name) {
            out.push(
                Finding::new(
                    Rule::BanDuplicateColumnAssignments,
                    f,
                    format!("column {name} is defined twice in this statement: Postgres refuses it (42701)"),
                    "Remove the second definition.".to_string(),
                )
                .at((*span).clone()),
            );
        }
    }
}

/// The same for a DML statement of a file (`pgwarden check`): the target lists it assigns.
pub fn on_dml(stmt: &crate::sql::AnalysedStatement, cx: &Cx<'_>) -> Vec<Finding> {
    // Reading the statement costs a parse: only the statements that can assign columns.
    let Some(text) = cx.text.get(stmt.span.clone()) else {
        return Vec::new();
    };
    if !["insert", "update", "merge"].iter().any(|w| contains_word_ignore_case(text, w))
        || !some_word_repeats(text)
    {
        return Vec::new();
    }
    crate::sql::parse::dml::duplicate_targets(cx.text, stmt.span.clone())
        .into_iter()
        .map(|d| {
            let (message, code) = match d.clause {
                "INSERT" => (format!("column {} is listed twice in this INSERT", d.column), "42701"),
                _ => (format!("column {} is assigned twice in this SET list", d.column), "42601"),
            };
            Finding {
                rule: Rule::BanDuplicateColumnAssignments,
                message: format!("{message}: Postgres refuses the statement ({code})"),
                help: "Remove the second assignment.".to_string(),
                span: d.span,
                statement: stmt.span.clone(),
                lock: None,
                rewrite: None,
                small_table: false,
            }
        })
        .collect()
}

/// Can any name occur twice in `text`? A column assigned twice is a name written twice, so
/// `false` is certain and spares the parse (most INSERT ... VALUES and UPDATE ... SET lists
/// name each column once). Names are compared without case and quotes; string literals and
/// comments are skipped. Text this scan could misread (backslash escapes, dollar quotes) and
/// very long lists always count as "may repeat".
fn some_word_repeats(text: &str) -> bool {
    const MAX_WORDS: usize = 256;
    let b = text.as_bytes();
    if b.iter().any(|c| matches!(c, b'\\' | b'$')) {
        return true;
    }
    let word_byte = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c >= 0x80;
    let mut words: Vec<&[u8]> = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let (start, end, next) = if c == b'\'' {
            let close = b[i + 1..].iter().position(|&x| x == b'\'').map_or(b.len(), |p| i + 1 + p);
            i = close + 1;
            continue;
        } else if c == b'-' && b.get(i + 1) == Some(&b'-') {
            i = b[i..].iter().position(|&x| x == b'\n').map_or(b.len(), |p| i + p);
            continue;
        } else if c == b'/' && b.get(i + 1) == Some(&b'*') {
            // Nested comments end later, never earlier: skipping to the first `*/` only
            // leaves more words to compare.
            i = b[i + 2..]
                .windows(2)
                .position(|w| w == b"*/")
                .map_or(b.len(), |p| i + 2 + p + 2);
            continue;
        } else if c == b'"' {
            let close = b[i + 1..].iter().position(|&x| x == b'"').map_or(b.len(), |p| i + 1 + p);
            (i + 1, close, close + 1)
        } else if word_byte(c) && !c.is_ascii_digit() {
            let end = b[i..].iter().position(|&x| !word_byte(x)).map_or(b.len(), |p| i + p);
            (i, end, end)
        } else if c.is_ascii_digit() {
            i = b[i..].iter().position(|&x| !word_byte(x)).map_or(b.len(), |p| i + p);
            continue;
        } else {
            i += 1;
            continue;
        };
        let word = &b[start..end.min(b.len())];
        if words.iter().any(|w| w.eq_ignore_ascii_case(word)) || words.len() == MAX_WORDS {
            return true;
        }
        words.push(word);
        i = next;
    }
    false
}

/// `word` occurs in `text`, in any case (ASCII), without allocating.
fn contains_word_ignore_case(text: &str, word: &str) -> bool {
    text.as_bytes()
        .windows(word.len())
        .any(|w| w.eq_ignore_ascii_case(word.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    const R: Rule = Rule::BanDuplicateColumnAssignments;

    #[test]
    fn fires_on_the_second_definition() {
        assert_eq!(run(R, "CREATE TABLE t (a int, b int, a text)").len(), 1);
        assert_eq!(run(R, "ALTER TABLE t ADD COLUMN a int, ADD COLUMN a int").len(), 1);
        assert!(run(R, "CREATE TABLE t (a int, \"A\" int)").is_empty());
        assert!(run(R, "CREATE TABLE t (a int, b int)").is_empty());
    }

    #[test]
    fn fires_on_dml_target_lists_in_files() {
        let sql = "UPDATE t SET a = 1, b = 2, a = 3;\nINSERT INTO t (x, y, x) VALUES (1, 2, 3);";
        let found = run(R, sql);
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!(&sql[found[0].span.clone()], "a");
        assert!(found[0].message.contains("42601"), "{}", found[0].message);
        assert!(found[1].message.contains("42701"), "{}", found[1].message);
        assert!(run(R, "UPDATE t SET a = a + 1, b = a; INSERT INTO t (a, b) SELECT a, a FROM s").is_empty());
    }

    #[test]
    fn the_repeat_scan_lets_every_duplicate_through() {
        for sql in [
            "UPDATE t SET a = 1, a = 2",
            "UPDATE t SET \"a\" = 1, A = 2",
            "INSERT INTO t (x, y, x) VALUES ('x y', 2, 3)",
            "UPDATE t SET a = E'\\'', a = 2",
            "UPDATE t SET a = 'it''s', /* a */ b = 1, a = 3",
        ] {
            assert!(some_word_repeats(sql), "{sql}");
        }
        for sql in [
            "INSERT INTO t (x, y) VALUES ('x x', 2), (3, 4)",
            "UPDATE t SET b = 1 -- b b\nWHERE id = 3",
        ] {
            assert!(!some_word_repeats(sql), "{sql}");
        }
    }

    #[test]
    fn the_proxy_does_not_parse_dml() {
        let c = AnalysisContext::default();
        assert!(run_with(R, "UPDATE t SET a = 1, a = 2", &c).is_empty());
    }

    #[test]
    fn fixtures() {
        super::super::testing::fixtures(R);
    }
}
