//! Column targets of DML, for `pgwarden check` only: the columns an INSERT column list, an
//! UPDATE (or ON CONFLICT DO UPDATE, MERGE) SET list assigns, and which of them are assigned
//! twice. Part of the parser adapter; the proxy never parses DML (DESIGN.md decision 4).
//!
//! PostgreSQL's rule, which this follows: a column may be assigned several times only when
//! every assignment is to a part of it (`SET a[1] = x, a[2] = y`, `INSERT INTO t (c.f, c.g)`);
//! a whole-column assignment next to any other assignment of that column fails the statement
//! (INSERT: 42701 "column specified more than once"; UPDATE: 42601 "multiple assignments to
//! same column").
use std::ops::Range;

use squawk_syntax::{SyntaxKind as K, SyntaxNode};

use super::{normalise_ident, parse_tree};

/// A column assigned twice in one target list: its name and the second assignment's range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DuplicateTarget {
    pub column: String,
    /// Byte range in the caller's text.
    pub span: Range<usize>,
    /// `INSERT` for a column list, `UPDATE` for a SET list.
    pub clause: &'static str,
}

/// The duplicate column targets of the DML statement `text[span]`; empty when there are none
/// or the text does not parse (a statement the parser cannot read is not this rule's concern).
pub fn duplicate_targets(text: &str, span: Range<usize>) -> Vec<DuplicateTarget> {
    let Some(stmt) = text.get(span.clone()) else {
        return Vec::new();
    };
    let (tree, error) = parse_tree(stmt);
    if error.is_some() {
        return Vec::new();
    }
    let mut out = Vec::new();
    for node in tree.descendants() {
        let list: Vec<SyntaxNode> = match node.kind() {
            // INSERT INTO t (a, b) / MERGE ... INSERT (a, b): the list right under the statement.
            K::INSERT | K::MERGE_INSERT => node
                .children()
                .filter(|c| c.kind() == K::COLUMN_TARGET_LIST)
                .flat_map(|l| {
                    l.children()
                        .filter(|c| c.kind() == K::COLUMN_TARGET)
                        .collect::<Vec<_>>()
                })
                .collect(),
            // SET a = 1, (b, c) = (2, 3): every target of the clause, single or grouped.
            K::SET_CLAUSE => node
                .descendants()
                .filter(|c| c.kind() == K::COLUMN_TARGET)
                .filter(|c| in_this_set_clause(c, &node))
                .collect(),
            _ => continue,
        };
        let clause = if node.kind() == K::SET_CLAUSE {
            "UPDATE"
        } else {
            "INSERT"
        };
        let mut seen: Vec<(String, bool)> = Vec::new();
        for target in list {
            let Some((name, whole)) = target_name(&target) else {
                continue;
            };
            let clash = seen.iter().any(|(n, w)| *n == name && (*w || whole));
            if clash {
                let r = target.text_range();
                out.push(DuplicateTarget {
                    column: name.clone(),
                    span: span.start + usize::from(r.start())..span.start + usize::from(r.end()),
                    clause,
                });
            }
            seen.push((name, whole));
        }
    }
    out
}

/// A target found under `clause` belongs to it, not to a SET clause nested in a sub-query of
/// one of its expressions.
fn in_this_set_clause(target: &SyntaxNode, clause: &SyntaxNode) -> bool {
    target
        .ancestors()
        .find(|a| a.kind() == K::SET_CLAUSE)
        .is_some_and(|a| &a == clause)
        && !target
            .ancestors()
            .take_while(|a| a != clause)
            .any(|a| matches!(a.kind(), K::SET_EXPR | K::SET_EXPR_LIST | K::PAREN_SELECT))
}

/// The column a target assigns, and whether it assigns the whole column (no `[i]` or `.f`).
fn target_name(target: &SyntaxNode) -> Option<(String, bool)> {
    let name = target.children().find(|c| c.kind() == K::COLUMN_NAME_REF)?;
    let token = name
        .descendants_with_tokens()
        .filter_map(|e| e.into_token())
        .find(|t| !t.kind().is_trivia())?;
    let whole = !target.children().any(|c| c.kind() != K::COLUMN_NAME_REF);
    Some((normalise_ident(token.text()), whole))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dups(sql: &str) -> Vec<String> {
        duplicate_targets(sql, 0..sql.len())
            .into_iter()
            .map(|d| format!("{} {}", d.clause, d.column))
            .collect()
    }

    #[test]
    fn whole_columns_assigned_twice() {
        assert_eq!(
            dups("INSERT INTO t (a, b, a) VALUES (1, 2, 3)"),
            ["INSERT a"]
        );
        assert_eq!(dups("UPDATE t SET a = 1, b = 2, a = 3"), ["UPDATE a"]);
        assert_eq!(dups("UPDATE t SET (a, b) = (1, 2), b = 3"), ["UPDATE b"]);
        assert_eq!(dups("UPDATE t SET \"A\" = 1, \"A\" = 2"), ["UPDATE A"]);
        assert_eq!(dups("UPDATE t SET a = 1, A = 2"), ["UPDATE a"]);
        assert_eq!(
            dups("INSERT INTO t (a) VALUES (1) ON CONFLICT (a) DO UPDATE SET b = 1, b = 2"),
            ["UPDATE b"]
        );
        assert_eq!(
            dups("WITH x AS (UPDATE t SET a = 1, a = 2 RETURNING *) SELECT * FROM x"),
            ["UPDATE a"]
        );
        assert_eq!(
            dups(
                "MERGE INTO t USING s ON t.id = s.id \
                 WHEN MATCHED THEN UPDATE SET v = s.v, v = 0 \
                 WHEN NOT MATCHED THEN INSERT (id, id) VALUES (s.id, s.id)"
            ),
            ["UPDATE v", "INSERT id"]
        );
    }

    #[test]
    fn distinct_columns_and_parts_of_one_column_are_fine() {
        assert!(dups("INSERT INTO t (a, b) VALUES (1, 2)").is_empty());
        assert!(dups("UPDATE t SET a = a + 1, b = a").is_empty());
        assert!(dups("UPDATE t SET \"A\" = 1, a = 2").is_empty());
        assert!(dups("UPDATE t SET arr[1] = 1, arr[2] = 2").is_empty());
        assert!(dups("INSERT INTO t (c.x, c.y) VALUES (1, 2)").is_empty());
        // A sub-query's own SET list is not the outer statement's.
        assert!(dups("UPDATE t SET a = (SELECT 1), b = 2").is_empty());
        assert!(dups("SELECT a, a FROM t").is_empty());
        assert!(dups("UPDATE t SET a = ").is_empty());
    }

    #[test]
    fn a_part_next_to_the_whole_column_clashes() {
        assert_eq!(dups("UPDATE t SET arr = '{}', arr[1] = 2"), ["UPDATE arr"]);
        assert_eq!(
            dups("INSERT INTO t (c, c.x) VALUES (NULL, 1)"),
            ["INSERT c"]
        );
    }

    #[test]
    fn spans_point_into_the_callers_text() {
        let text = "SELECT 1;\nUPDATE t SET a = 1, a = 2";
        let start = text.find("UPDATE").unwrap_or_default();
        let d = duplicate_targets(text, start..text.len());
        assert_eq!(d.len(), 1);
        assert_eq!(&text[d[0].span.clone()], "a");
    }
}
