//! ban-drop-function's live context (issue 12): which routine a `DROP FUNCTION / PROCEDURE /
//! ROUTINE / AGGREGATE` drops, resolved by name and argument types as the server resolves it,
//! and what the catalog records as depending on it.
//!
//! Resolution follows `LookupFuncWithArgs` as PostgreSQL 15 behaves (checked against it):
//! candidates are the routines of that name in the named schema, or in the session's
//! `current_schemas(true)` (pg_catalog first, the temporary schema never for an unqualified
//! name), the earlier schema winning for identical signatures. With an argument list the input
//! types must match `proargtypes` exactly (typmods and argument names are ignored; `OUT`
//! arguments are skipped); DROP PROCEDURE and DROP ROUTINE also match every written argument
//! against the full list (`proallargtypes`), as the server does. Without an argument list the
//! name must be unique, or the server refuses (42725).
//!
//! Dependents are `pg_depend` rows (normal and automatic) on the routine: views (through their
//! rewrite rule), column defaults, triggers, check constraints, index expressions, operators,
//! casts, and functions with SQL-standard bodies (`RETURN ...` / `BEGIN ATOMIC`), which record
//! what they call. pg_depend cannot see calls by name from PL/pgSQL bodies, from SQL functions
//! with a string body (`AS $$ ... $$`), from dynamic SQL or from application code; for the
//! first two the lookup also lists the routines whose body mentions the name as a word (a
//! hint, not proof: the mention may be of another object of the same name).
//!
//! The query obeys `enforce::lookup`'s safety rules: names and types are bind parameters; type
//! names reach `to_regtype` only in a spelling `sql::parse::routine_sig` vouches for (anything
//! else is not looked up), because a malformed type name raises and would abort the client's
//! transaction; a missing schema or type yields NULL, and a NULL type matches nothing.
use crate::sql::context::RoutineLive;
use crate::sql::facts::{ObjectType, StatementFacts, StatementKind};
use crate::sql::parse::routine_sig::{self, RoutineSig};
use crate::sql::Analysis;

/// One row per routine: how many match, their signatures, the kind (`f`, `p`, `a`, `w`) of a
/// single match, its dependents and the routines whose bodies mention the name (at most 11),
/// lists separated by U+001F. `$1` schema or NULL, `$2` name, `$3` input types (`text[]`, NULL
/// without an argument list), `$4` every written type (DROP PROCEDURE / ROUTINE only).
pub const SQL: &str = r#"SELECT pg_catalog.count(*), pg_catalog.string_agg(x.sig, E'\x1f' ORDER BY x.sig), pg_catalog.min(x.kind), pg_catalog.max(x.deps), pg_catalog.max(x.mentions)
FROM (
  SELECT CAST(CAST(c.oid AS pg_catalog.regprocedure) AS pg_catalog.text) AS sig,
    CAST(c.prokind AS pg_catalog.text) AS kind,
    (SELECT pg_catalog.string_agg(d.what, E'\x1f' ORDER BY d.what) FROM (
       SELECT DISTINCT CASE WHEN r.oid IS NOT NULL
         THEN pg_catalog.pg_describe_object(CAST(CAST('pg_catalog.pg_class' AS pg_catalog.regclass) AS pg_catalog.oid), r.ev_class, 0)
         ELSE pg_catalog.pg_describe_object(e.classid, e.objid, e.objsubid) END AS what
       FROM pg_catalog.pg_depend e
       LEFT JOIN pg_catalog.pg_rewrite r ON e.classid OPERATOR(pg_catalog.=) CAST(CAST('pg_catalog.pg_rewrite' AS pg_catalog.regclass) AS pg_catalog.oid)
         AND r.oid OPERATOR(pg_catalog.=) e.objid
       WHERE e.refclassid OPERATOR(pg_catalog.=) CAST(CAST('pg_catalog.pg_proc' AS pg_catalog.regclass) AS pg_catalog.oid)
         AND e.refobjid OPERATOR(pg_catalog.=) c.oid
         AND e.deptype OPERATOR(pg_catalog.=) ANY (CAST(ARRAY['n', 'a'] AS pg_catalog."char"[]))) d) AS deps,
    (SELECT pg_catalog.string_agg(m.what, E'\x1f' ORDER BY m.what) FROM (
       SELECT pg_catalog.pg_describe_object(CAST(CAST('pg_catalog.pg_proc' AS pg_catalog.regclass) AS pg_catalog.oid), q.oid, 0) AS what
       FROM pg_catalog.pg_proc q
       JOIN pg_catalog.pg_language l ON l.oid OPERATOR(pg_catalog.=) q.prolang
       JOIN pg_catalog.pg_namespace qn ON qn.oid OPERATOR(pg_catalog.=) q.pronamespace
       WHERE q.oid OPERATOR(pg_catalog.<>) c.oid
         AND l.lanname OPERATOR(pg_catalog.<>) ALL (CAST(ARRAY['internal', 'c'] AS pg_catalog.name[]))
         AND qn.nspname OPERATOR(pg_catalog.<>) ALL (CAST(ARRAY['pg_catalog', 'information_schema'] AS pg_catalog.name[]))
         AND pg_catalog.lower(CAST($2 AS pg_catalog.text)) OPERATOR(pg_catalog.=) ANY (pg_catalog.regexp_split_to_array(pg_catalog.lower(q.prosrc), '[^a-z0-9_$]+'))
       ORDER BY 1 LIMIT 11) m) AS mentions
  FROM (
    SELECT DISTINCT ON (p.proargtypes) p.oid, p.prokind
    FROM pg_catalog.pg_proc p
    JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) p.pronamespace
    JOIN pg_catalog.unnest(CASE WHEN CAST($1 AS pg_catalog.text) IS NULL THEN pg_catalog.current_schemas(true)
                  ELSE ARRAY[CAST(CAST($1 AS pg_catalog.text) AS pg_catalog.name)] END) WITH ORDINALITY s(nsp, ord)
      ON s.nsp OPERATOR(pg_catalog.=) n.nspname
    WHERE p.proname OPERATOR(pg_catalog.=) CAST(CAST($2 AS pg_catalog.text) AS pg_catalog.name)
      AND (CAST($1 AS pg_catalog.text) IS NOT NULL OR n.oid OPERATOR(pg_catalog.<>) pg_catalog.pg_my_temp_schema())
      AND (CAST($3 AS pg_catalog.text[]) IS NULL
        OR pg_catalog.array_to_string(CAST(p.proargtypes AS pg_catalog.oid[]), ' ') OPERATOR(pg_catalog.=) pg_catalog.array_to_string(ARRAY(
             SELECT CAST(pg_catalog.to_regtype(u.t) AS pg_catalog.oid)
             FROM pg_catalog.unnest(CAST($3 AS pg_catalog.text[])) WITH ORDINALITY u(t, i) ORDER BY u.i), ' ', '0')
        OR (CAST($4 AS pg_catalog.text[]) IS NOT NULL
          AND pg_catalog.array_to_string(COALESCE(p.proallargtypes, CAST(p.proargtypes AS pg_catalog.oid[])), ' ') OPERATOR(pg_catalog.=) pg_catalog.array_to_string(ARRAY(
             SELECT CAST(pg_catalog.to_regtype(u.t) AS pg_catalog.oid)
             FROM pg_catalog.unnest(CAST($4 AS pg_catalog.text[])) WITH ORDINALITY u(t, i) ORDER BY u.i), ' ', '0')))
    ORDER BY p.proargtypes, s.ord) c
) x"#;

/// List separator in the replies.
const SEP: char = '\u{1f}';

/// What to ask about one routine a DROP names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutineQuery {
    pub schema: Option<String>,
    pub name: String,
    /// `text[]` literal of the input types; `None` without an argument list.
    pub input: Option<String>,
    /// `text[]` literal of every written type (procedures and routines).
    pub all: Option<String>,
}

/// One routine of one DROP statement: where its answer goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Asked {
    /// Start offset of the statement in the text (its key in `CatalogFacts::dropped_routines`).
    pub statement: usize,
    /// Position of the routine in the statement's list.
    pub index: usize,
    /// How many routines the statement names.
    pub of: usize,
}

/// The routines the text's top-level DROP FUNCTION / PROCEDURE / ROUTINE / AGGREGATE
/// statements name, with what to ask for each; a routine whose argument types pgwarden cannot
/// spell safely is left out (its finding keeps the rule's default message).
pub fn queries(sql: &str, analysis: &Analysis) -> Vec<(Asked, RoutineQuery)> {
    let mut out = Vec::new();
    for st in &analysis.statements {
        let Some(f) = st.facts() else { continue };
        let Some(kind) = routine_drop(f) else {
            continue;
        };
        let Some(text) = sql.get(f.span.clone()) else {
            continue;
        };
        let sigs = routine_sig::dropped_routines(text);
        let of = sigs.len();
        for (index, sig) in sigs.into_iter().enumerate() {
            if let Some(q) = query(&sig, kind) {
                let asked = Asked {
                    statement: f.span.start,
                    index,
                    of,
                };
                out.push((asked, q));
            }
        }
    }
    out
}

/// The kind of routine a DROP statement drops, if it is one.
fn routine_drop(f: &StatementFacts) -> Option<ObjectType> {
    if f.kind != StatementKind::DropObject {
        return None;
    }
    f.object.filter(|o| {
        matches!(
            o,
            ObjectType::Function
                | ObjectType::Procedure
                | ObjectType::Routine
                | ObjectType::Aggregate
        )
    })
}

fn query(sig: &RoutineSig, kind: ObjectType) -> Option<RoutineQuery> {
    let (input, all) = match &sig.args {
        None => (None, None),
        Some(args) => {
            let types: Option<Vec<(bool, &str)>> = args
                .iter()
                .map(|a| a.ty.as_deref().map(|t| (a.out, t)))
                .collect();
            let types = types?;
            let input: Vec<&str> = types
                .iter()
                .filter(|(out, _)| !out)
                .map(|(_, t)| *t)
                .collect();
            let every: Vec<&str> = types.iter().map(|(_, t)| *t).collect();
            let all = matches!(kind, ObjectType::Procedure | ObjectType::Routine)
                .then(|| array_literal(&every));
            (Some(array_literal(&input)), all)
        }
    };
    Some(RoutineQuery {
        schema: sig.name.schema.clone(),
        name: sig.name.name.clone(),
        input,
        all,
    })
}

/// A `text[]` literal that `array_in` always accepts: every element double-quoted, `"` and `\`
/// escaped.
fn array_literal(items: &[&str]) -> String {
    let quoted: Vec<String> = items
        .iter()
        .map(|s| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\"")))
        .collect();
    format!("{{{}}}", quoted.join(","))
}

/// Reads one reply row (`None` columns are NULLs).
pub fn from_row(text: impl Fn(usize) -> Option<String>) -> RoutineLive {
    let list = |i: usize| -> Vec<String> {
        text(i)
            .map(|s| s.split(SEP).map(str::to_string).collect())
            .unwrap_or_default()
    };
    RoutineLive {
        matches: text(0).and_then(|v| v.parse().ok()).unwrap_or(0),
        signatures: list(1),
        kind: text(2).and_then(|k| k.chars().next()),
        dependents: list(3),
        mentions: list(4),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn array_literals_escape_quotes_and_backslashes() {
        assert_eq!(array_literal(&[]), "{}");
        assert_eq!(
            array_literal(&["int", "s.\"a\"\"b\"", "x\\y"]),
            r#"{"int","s.\"a\"\"b\"","x\\y"}"#
        );
    }

    #[test]
    fn out_arguments_count_for_procedures_only() {
        let sql = "DROP FUNCTION f(int, OUT text); DROP PROCEDURE p(int, OUT text); DROP ROUTINE r; DROP FUNCTION g(t.c%TYPE), h()";
        let a = crate::sql::analyze(sql, &crate::sql::AnalysisContext::default());
        let q = queries(sql, &a);
        let got: Vec<_> = q
            .iter()
            .map(|(a, q)| {
                (
                    a.index,
                    a.of,
                    q.name.as_str(),
                    q.input.as_deref(),
                    q.all.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (0, 1, "f", Some(r#"{"int"}"#), None),
                (0, 1, "p", Some(r#"{"int"}"#), Some(r#"{"int","text"}"#)),
                (0, 1, "r", None, None),
                // g's %TYPE is not looked up; h is.
                (1, 2, "h", Some("{}"), None),
            ]
        );
    }
}
