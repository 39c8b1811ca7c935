//! The names PostgreSQL generates for unnamed constraints and indexes (`makeObjectName` and
//! its callers in src/backend/commands/indexcmds.c and catalog/pg_constraint.c), so a rewrite
//! that has to name an object itself names it exactly as a direct run would.
//!
//! The server still decides which candidate is free ([`CHOOSE_SQL`]): the first one no
//! constraint (and, for index-backed constraints, no relation) of the schema already uses.

/// NAMEDATALEN - 1: the longest identifier PostgreSQL keeps.
const MAX_IDENT: usize = 63;

/// How many numbered candidates (`_key`, `_key1`, ...) pgwarden offers the server.
const CANDIDATES: usize = 20;

/// `makeObjectName(name1, name2, label)`: `name1_name2_label`, shortening the longer of the
/// first two until it fits in 63 bytes (never cutting a UTF-8 character).
pub fn make_object_name(name1: &str, name2: Option<&str>, label: &str) -> String {
    let mut overhead = 0;
    let mut n1 = name1.len();
    let mut n2 = name2.map_or(0, str::len);
    if name2.is_some() {
        overhead += 1;
    }
    if !label.is_empty() {
        overhead += label.len() + 1;
    }
    let avail = MAX_IDENT.saturating_sub(overhead);
    while n1 + n2 > avail {
        if n1 > n2 {
            n1 -= 1;
        } else {
            n2 -= 1;
        }
    }
    let mut out = clip(name1, n1).to_string();
    if let Some(n) = name2 {
        out.push('_');
        out.push_str(clip(n, n2));
    }
    if !label.is_empty() {
        out.push('_');
        out.push_str(label);
    }
    out
}

/// `pg_mbcliplen`: at most `len` bytes, on a character boundary.
fn clip(s: &str, mut len: usize) -> &str {
    while len > 0 && !s.is_char_boundary(len) {
        len -= 1;
    }
    &s[..len.min(s.len())]
}

/// `ChooseForeignKeyConstraintNameAddition` / `ChooseIndexNameAddition`: the column names
/// joined with `_`, stopping once the result reaches NAMEDATALEN.
pub fn columns_addition(columns: &[String]) -> String {
    let mut buf = String::new();
    for c in columns {
        if !buf.is_empty() {
            buf.push('_');
        }
        buf.push_str(clip(c, MAX_IDENT + 1));
        if buf.len() > MAX_IDENT {
            break;
        }
    }
    buf
}

/// The names PostgreSQL tries in order for an unnamed object of `table` labelled `label`
/// (`fkey`, `key`, `idx`): `label`, then `label1`, `label2`, ...
pub fn candidates(table: &str, columns: &[String], label: &str) -> Vec<String> {
    let addition = columns_addition(columns);
    let name2 = (!addition.is_empty()).then_some(addition.as_str());
    (0..CANDIDATES)
        .map(|pass| {
            let label = if pass == 0 {
                label.to_string()
            } else {
                format!("{label}{pass}")
            };
            make_object_name(table, name2, &label)
        })
        .collect()
}

/// The first free candidate. `$1`: the candidates as a text array literal, `$2`: the table
/// (regclass text), `$3`: a relation of that name takes it (indexes), `$4`: a constraint of
/// that name takes it (constraints, index-backed ones included).
pub const CHOOSE_SQL: &str = "SELECT u.c FROM pg_catalog.unnest($1::pg_catalog.text[]) \
     WITH ORDINALITY AS u(c, i) \
     WHERE NOT ($4::pg_catalog.bool AND EXISTS (SELECT 1 FROM pg_catalog.pg_constraint k \
         WHERE k.conname OPERATOR(pg_catalog.=) u.c::pg_catalog.name \
         AND k.connamespace OPERATOR(pg_catalog.=) (SELECT r.relnamespace FROM pg_catalog.pg_class r \
             WHERE r.oid OPERATOR(pg_catalog.=) $2::pg_catalog.regclass))) \
     AND NOT ($3::pg_catalog.bool AND EXISTS (SELECT 1 FROM pg_catalog.pg_class r2 \
         WHERE r2.relname OPERATOR(pg_catalog.=) u.c::pg_catalog.name \
         AND r2.relnamespace OPERATOR(pg_catalog.=) (SELECT r.relnamespace FROM pg_catalog.pg_class r \
             WHERE r.oid OPERATOR(pg_catalog.=) $2::pg_catalog.regclass))) \
     ORDER BY u.i LIMIT 1";

/// The constraint names of table `$1` (regclass text) as a text array, before an unnamed
/// CHECK is added: [`NEW_CHECK_SQL`] finds the one the server then chose.
pub const CONSTRAINT_NAMES_SQL: &str = "SELECT COALESCE(pg_catalog.array_agg(CAST(k.conname AS pg_catalog.text)), \
       CAST('{}' AS pg_catalog.text[])) FROM pg_catalog.pg_constraint k \
     WHERE k.conrelid OPERATOR(pg_catalog.=) CAST(pg_catalog.to_regclass($1::pg_catalog.text) AS pg_catalog.oid)";

/// The NOT VALID CHECK of table `$1` whose name is not among `$2` (the names before): the
/// name PostgreSQL gave the unnamed CHECK pgwarden just added (`ChooseConstraintName`: the
/// one column its expression reads, collision suffixes, truncation, all the server's own).
pub const NEW_CHECK_SQL: &str = "SELECT CAST(k.conname AS pg_catalog.text) FROM pg_catalog.pg_constraint k \
     WHERE k.conrelid OPERATOR(pg_catalog.=) CAST(pg_catalog.to_regclass($1::pg_catalog.text) AS pg_catalog.oid) \
     AND k.contype OPERATOR(pg_catalog.=) CAST('c' AS pg_catalog.\"char\") AND NOT k.convalidated \
     AND NOT (CAST(k.conname AS pg_catalog.text) OPERATOR(pg_catalog.=) ANY ($2::pg_catalog.text[]))";

/// Which of columns `$2` (text array) of table `$1` are nullable, comma-separated (NULL when
/// none, or no such table: the statement itself then fails as it would directly).
pub const NULLABLE_SQL: &str = "SELECT pg_catalog.string_agg(CAST(a.attname AS pg_catalog.text), ', ' ORDER BY a.attnum) \
     FROM pg_catalog.pg_attribute a \
     WHERE a.attrelid OPERATOR(pg_catalog.=) CAST(pg_catalog.to_regclass($1::pg_catalog.text) AS pg_catalog.oid) \
     AND a.attnum OPERATOR(pg_catalog.>) CAST(0 AS pg_catalog.int2) AND NOT a.attisdropped AND NOT a.attnotnull \
     AND CAST(a.attname AS pg_catalog.text) OPERATOR(pg_catalog.=) ANY ($2::pg_catalog.text[])";

/// A text array literal of `items` (`{"a","b\"c"}`), for a bind parameter.
pub fn array_literal(items: &[String]) -> String {
    let quoted: Vec<String> = items
        .iter()
        .map(|s| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\"")))
        .collect();
    format!("{{{}}}", quoted.join(","))
}

/// An identifier as SQL text: bare when PostgreSQL would read it back unchanged.
pub fn quote_ident(name: &str) -> String {
    let bare = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '$')
        && !RESERVED.contains(&name);
    if bare {
        name.to_string()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

/// PostgreSQL's reserved and type/function-name keywords: quoted when used as a name
/// (quoting any other word would be harmless too; the catalog keeps the same name).
const RESERVED: &[&str] = &[
    "all",
    "analyse",
    "analyze",
    "and",
    "any",
    "array",
    "as",
    "asc",
    "asymmetric",
    "authorization",
    "binary",
    "both",
    "case",
    "cast",
    "check",
    "collate",
    "collation",
    "column",
    "concurrently",
    "constraint",
    "create",
    "cross",
    "current_catalog",
    "current_date",
    "current_role",
    "current_schema",
    "current_time",
    "current_timestamp",
    "current_user",
    "default",
    "deferrable",
    "desc",
    "distinct",
    "do",
    "else",
    "end",
    "except",
    "false",
    "fetch",
    "for",
    "foreign",
    "freeze",
    "from",
    "full",
    "grant",
    "group",
    "having",
    "ilike",
    "in",
    "initially",
    "inner",
    "intersect",
    "into",
    "is",
    "isnull",
    "join",
    "lateral",
    "leading",
    "left",
    "like",
    "limit",
    "localtime",
    "localtimestamp",
    "natural",
    "not",
    "notnull",
    "null",
    "offset",
    "on",
    "only",
    "or",
    "order",
    "outer",
    "overlaps",
    "placing",
    "primary",
    "references",
    "returning",
    "right",
    "select",
    "session_user",
    "similar",
    "some",
    "symmetric",
    "system_user",
    "table",
    "tablesample",
    "then",
    "to",
    "trailing",
    "true",
    "union",
    "unique",
    "user",
    "using",
    "variadic",
    "verbose",
    "when",
    "where",
    "window",
    "with",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_as_postgres_makes_them() {
        let cols = |c: &[&str]| c.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            candidates("orders", &cols(&["customer_id"]), "fkey")[0],
            "orders_customer_id_fkey"
        );
        let c = candidates("orders", &cols(&["id", "amount"]), "key");
        assert_eq!(c[0], "orders_id_amount_key");
        assert_eq!(c[1], "orders_id_amount_key1");
        // 63 bytes at most: the longer part is shortened first.
        let long = "a".repeat(60);
        let n = make_object_name(&long, Some("customer_id"), "fkey");
        assert_eq!(n.len(), 63);
        assert!(n.ends_with("_customer_id_fkey"), "{n}");
        let n = make_object_name("t", Some(&"é".repeat(40)), "key");
        assert!(n.len() <= 63 && n.ends_with("_key"), "{n}");
    }

    #[test]
    fn quoting_and_arrays() {
        assert_eq!(quote_ident("orders"), "orders");
        assert_eq!(quote_ident("Orders"), "\"Orders\"");
        assert_eq!(quote_ident("select"), "\"select\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(
            array_literal(&["a".into(), "b\"c".into()]),
            "{\"a\",\"b\\\"c\"}"
        );
    }
}
