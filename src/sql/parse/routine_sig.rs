//! The signatures a `DROP FUNCTION / PROCEDURE / ROUTINE / AGGREGATE` names, as the server
//! resolves them: the name, and the argument types in a spelling `to_regtype` reads without
//! raising (the proxy's live lookup resolves them on the server; `enforce::routines`).
//!
//! Only the proxy asks, and only for those statements: the statement text is parsed again
//! here rather than every statement's facts carrying argument lists nobody else reads.
use squawk_syntax::{SyntaxKind as K, SyntaxNode};

use crate::sql::facts::ObjectName;

/// One routine a DROP names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutineSig {
    pub name: ObjectName,
    /// `None`: no argument list (`DROP FUNCTION f`: the name must be unique).
    pub args: Option<Vec<SigArg>>,
}

/// One written argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigArg {
    /// Declared `OUT`: DROP FUNCTION ignores it; DROP PROCEDURE / ROUTINE may match on it.
    pub out: bool,
    /// The type, typmods dropped (the server ignores them in a signature), in a spelling
    /// PostgreSQL's type-name parser accepts; `None` when pgwarden cannot vouch for that
    /// (`tbl.col%TYPE`, Unicode-escaped names, three-part names): a malformed type name makes
    /// `to_regtype` raise, which would abort the client's transaction.
    pub ty: Option<String>,
}

/// The routines of a DROP statement text, in order; empty for any other statement.
pub fn dropped_routines(statement: &str) -> Vec<RoutineSig> {
    let (root, _) = super::tree::parse_tree(statement);
    let Some(stmt) = root.children().next() else {
        return Vec::new();
    };
    let sigs: Vec<SyntaxNode> = match stmt.kind() {
        K::DROP_FUNCTION | K::DROP_PROCEDURE | K::DROP_ROUTINE => stmt
            .children()
            .filter(|c| {
                matches!(
                    c.kind(),
                    K::FUNCTION_SIG_LIST | K::PROCEDURE_SIG_LIST | K::ROUTINE_SIG_LIST
                )
            })
            .flat_map(|l| l.children())
            .filter(|c| {
                matches!(
                    c.kind(),
                    K::FUNCTION_SIG | K::PROCEDURE_SIG | K::ROUTINE_SIG
                )
            })
            .collect(),
        K::DROP_AGGREGATE => stmt
            .children()
            .filter(|c| c.kind() == K::AGGREGATE)
            .collect(),
        _ => return Vec::new(),
    };
    sigs.iter()
        .filter_map(|sig| {
            let name = super::object_name(sig)?;
            let args = sig
                .children()
                .find(|c| c.kind() == K::PARAM_LIST)
                .map(|list| params(&list));
            Some(RoutineSig { name, args })
        })
        .collect()
}

/// The parameters of a list; an aggregate's `ORDER BY` arguments follow its direct ones, as in
/// `pg_proc.proargtypes`; `(*)` is no argument.
fn params(list: &SyntaxNode) -> Vec<SigArg> {
    let mut out = Vec::new();
    for c in list.children() {
        match c.kind() {
            K::PARAM => out.push(param(&c)),
            K::AGGREGATE_ORDER_BY => out.extend(
                c.children()
                    .filter(|p| p.kind() == K::PARAM)
                    .map(|p| param(&p)),
            ),
            _ => {}
        }
    }
    out
}

fn param(p: &SyntaxNode) -> SigArg {
    SigArg {
        out: p.children().any(|c| c.kind() == K::PARAM_OUT),
        ty: p.children().find_map(|c| spell_type(&c)),
    }
}

/// A type node's spelling for `to_regtype`, or `None` (not a type node, or not vouched for).
fn spell_type(node: &SyntaxNode) -> Option<String> {
    match node.kind() {
        K::PATH_TYPE => {
            let path = node.children().find(|c| c.kind() == K::PATH_REF)?;
            let spelled = spell_path(&path)?;
            // `float(p)` is real or double precision by its precision: not a typmod to drop.
            if spelled.eq_ignore_ascii_case("float")
                && node.children().any(|c| c.kind() == K::ARG_LIST)
            {
                return None;
            }
            Some(spelled)
        }
        K::ARRAY_TYPE => {
            let inner = node.children().find_map(|c| spell_type(&c))?;
            Some(format!("{inner}[]"))
        }
        // Keyword spellings; their parenthesised typmods and INTERVAL's fields are dropped.
        K::DOUBLE_TYPE
        | K::VARCHAR_TYPE
        | K::CHARACTER_TYPE
        | K::BIT_TYPE
        | K::BIT_VARYING_TYPE
        | K::TIME_TYPE
        | K::TIMESTAMP_TYPE
        | K::INTERVAL_TYPE => {
            let mut words = Vec::new();
            keywords(node, &mut words);
            if node.kind() == K::INTERVAL_TYPE {
                words.truncate(1);
            }
            let ok = !words.is_empty()
                && words
                    .iter()
                    .all(|w| !w.is_empty() && w.bytes().all(|b| b.is_ascii_alphabetic()));
            ok.then(|| words.join(" ").to_ascii_lowercase())
        }
        _ => None,
    }
}

/// The words of a keyword type, outside its argument list and parentheses.
fn keywords(node: &SyntaxNode, out: &mut Vec<String>) {
    let mut depth = 0usize;
    for el in node.children_with_tokens() {
        match el {
            rowan::NodeOrToken::Node(n) => {
                if n.kind() != K::ARG_LIST && depth == 0 {
                    keywords(&n, out);
                }
            }
            rowan::NodeOrToken::Token(t) => match t.kind() {
                K::L_PAREN => depth += 1,
                K::R_PAREN => depth = depth.saturating_sub(1),
                k if k.is_trivia() => {}
                _ if depth == 0 => out.push(t.text().to_string()),
                _ => {}
            },
        }
    }
}

/// `name` or `schema.name`, each segment a plain or double-quoted identifier as written, or a
/// keyword the type-name grammar accepts in that place: the first segment not a reserved
/// keyword, nor a column-name keyword other than the numeric and boolean type names alone
/// (`int`, `numeric`; `between` is not a type name); after the dot any keyword.
fn spell_path(path: &SyntaxNode) -> Option<String> {
    let tokens: Vec<_> = path
        .descendants_with_tokens()
        .filter_map(|e| e.into_token())
        .filter(|t| !t.kind().is_trivia())
        .collect();
    let segments = tokens.iter().filter(|t| t.kind() != K::DOT).count();
    let mut text = String::new();
    let mut seen = 0;
    for t in &tokens {
        let s = t.text();
        if t.kind() == K::DOT {
            text.push('.');
            continue;
        }
        let first = seen == 0;
        seen += 1;
        let ok = if t.kind() == K::IDENT {
            let plain = s
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'$')
                && s.bytes().next().is_some_and(|b| !b.is_ascii_digit());
            let quoted = s.len() >= 2
                && s.starts_with('"')
                && s.ends_with('"')
                && !s[1..s.len() - 1].replace("\"\"", "").contains('"');
            plain || quoted
        } else if !s.bytes().all(|b| b.is_ascii_alphabetic()) || s.is_empty() {
            false
        } else if !first {
            true
        } else if squawk_parser::is_reserved_keyword(t.kind()) {
            false
        } else if squawk_parser::is_col_name_keyword(t.kind()) {
            segments == 1
                && matches!(
                    t.kind(),
                    K::INT_KW
                        | K::INTEGER_KW
                        | K::SMALLINT_KW
                        | K::BIGINT_KW
                        | K::REAL_KW
                        | K::FLOAT_KW
                        | K::DECIMAL_KW
                        | K::DEC_KW
                        | K::NUMERIC_KW
                        | K::BOOLEAN_KW
                        | K::JSON_KW
                        | K::CHAR_KW
                        | K::CHARACTER_KW
                        | K::VARCHAR_KW
                        | K::NCHAR_KW
                        | K::BIT_KW
                        | K::TIME_KW
                        | K::TIMESTAMP_KW
                        | K::INTERVAL_KW
                )
        } else {
            true
        };
        if !ok {
            return None;
        }
        text.push_str(s);
    }
    (segments == 2 || segments == 1)
        .then_some(())
        .filter(|_| !text.starts_with('.') && !text.ends_with('.') && !text.contains(".."))
        .map(|_| text)
}

#[cfg(test)]
mod tests {
    use super::*;

    type Args = Option<Vec<(bool, Option<String>)>>;

    fn sigs(sql: &str) -> Vec<(String, Args)> {
        dropped_routines(sql)
            .into_iter()
            .map(|s| {
                (
                    s.name.to_string(),
                    s.args
                        .map(|a| a.into_iter().map(|x| (x.out, x.ty)).collect()),
                )
            })
            .collect()
    }

    fn t(s: &str) -> Option<String> {
        Some(s.to_string())
    }

    #[test]
    fn names_modes_and_types_as_the_server_reads_them() {
        assert_eq!(
            sigs("DROP FUNCTION IF EXISTS s.f(IN a int, OUT b text, VARIADIC c int[]), G CASCADE"),
            vec![
                (
                    "s.f".to_string(),
                    Some(vec![
                        (false, t("int")),
                        (true, t("text")),
                        (false, t("int[]"))
                    ])
                ),
                ("g".to_string(), None),
            ]
        );
        assert_eq!(
            sigs("DROP PROCEDURE p(INOUT x numeric(10,2), timestamp(3) with time zone, t.c%TYPE)"),
            vec![(
                "p".to_string(),
                Some(vec![
                    (false, t("numeric")),
                    (false, t("timestamp with time zone")),
                    (false, None)
                ])
            )]
        );
        assert_eq!(
            sigs("DROP ROUTINE r(\"My T\"[], s.\"x\"\"y\", character varying(10), interval day to second)"),
            vec![(
                "r".to_string(),
                Some(vec![
                    (false, t("\"My T\"[]")),
                    (false, t("s.\"x\"\"y\"")),
                    (false, t("character varying")),
                    (false, t("interval"))
                ])
            )]
        );
    }

    #[test]
    fn aggregates_star_and_order_by() {
        assert_eq!(
            sigs("DROP AGGREGATE a(*), b(int ORDER BY text), c(double precision)"),
            vec![
                ("a".to_string(), Some(vec![])),
                (
                    "b".to_string(),
                    Some(vec![(false, t("int")), (false, t("text"))])
                ),
                ("c".to_string(), Some(vec![(false, t("double precision"))])),
            ]
        );
        assert!(sigs("DROP TABLE t").is_empty());
        assert!(sigs("").is_empty());
    }

    #[test]
    fn names_the_type_grammar_refuses_are_not_vouched_for() {
        // Three-part names, Unicode escapes, float(p), keywords that are no type name: any of
        // these would make `to_regtype` raise inside the client's transaction.
        let one = |sql: &str| sigs(sql).remove(0).1.unwrap().remove(0).1;
        for sql in [
            "DROP FUNCTION f(a.b.c)",
            "DROP FUNCTION f(U&\"d\\0061t\")",
            "DROP FUNCTION f(float(24))",
        ] {
            assert_eq!(sigs(sql).len(), 1, "{sql}");
            assert_eq!(one(sql), None, "{sql}");
        }
        for (sql, spelled) in [
            ("DROP FUNCTION f(float)", "float"),
            ("DROP FUNCTION f(s.select)", "s.select"),
            ("DROP FUNCTION f(bigint)", "bigint"),
            ("DROP FUNCTION f(json)", "json"),
        ] {
            assert_eq!(one(sql).as_deref(), Some(spelled), "{sql}");
        }
    }
}
