//! opaque-ddl: a DO block whose effect cannot be read.
use super::*;
use crate::sql::facts::*;

pub const DOC: &str = r#"## What it does
Flags a `DO` block pgwarden cannot see into: dynamic SQL (`EXECUTE`), a language other than PL/pgSQL, or a body that does not parse.

## Why is this bad
Whatever it does — DDL on a large table included — passes unchecked. pgwarden fails closed on what it cannot analyse (configurable).

## Example
```sql
DO $$ BEGIN EXECUTE 'ALTER TABLE ' || tbl || ' ADD COLUMN x int'; END $$;
```

## Use instead
Write the DDL as plain statements (or a DO block with static SQL, which pgwarden checks statement by statement).

## Rewrite safety
No rewrite.
"#;

pub fn check(f: &StatementFacts, cx: &Cx<'_>, out: &mut Vec<Finding>) {
    let _ = cx;
    if f.kind == StatementKind::Do && f.opaque {
        out.push(Finding::new(
            Rule::OpaqueDdl,
            f,
            "this DO block runs SQL pgwarden cannot read (dynamic EXECUTE or another language): \
             its locks and costs are unknown"
                .to_string(),
            "Write the DDL as plain statements, or allow it explicitly with \
             `-- pgwarden:allow opaque-ddl reason=\"...\"`."
                .to_string(),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    const R: Rule = Rule::OpaqueDdl;

    #[test]
    fn dynamic_sql_fires_static_does_not() {
        assert_eq!(run(R, "DO $$ BEGIN EXECUTE 'select 1'; END $$").len(), 1);
        assert!(run(R, "DO $$ BEGIN CREATE TYPE k AS ENUM ('a'); EXCEPTION WHEN duplicate_object THEN null; END $$").is_empty());
    }

    #[test]
    fn fixtures() {
        super::super::testing::fixtures(R);
    }
}
