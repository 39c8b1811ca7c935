//! opaque-ddl: a DO block whose effect cannot be read.
use super::*;
use crate::sql::facts::*;

pub const DOC: &str = r#"## What it does
Flags a `DO` block pgwarden cannot see into: dynamic SQL (`EXECUTE`), a language other than PL/pgSQL, or a body that does not parse; and a `CREATE [OR REPLACE] FUNCTION/PROCEDURE` whose PL/pgSQL or SQL body uses dynamic SQL or does not parse (static DDL in a routine body is checked statement by statement, like a DO block's).

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
    let what = match f.kind {
        StatementKind::Do => "this DO block runs SQL pgwarden cannot read (dynamic EXECUTE or \
                              another language): its locks and costs are unknown",
        StatementKind::CreateFunction => {
            "this routine's body runs SQL pgwarden cannot read (dynamic EXECUTE): whatever it \
             does when called later — DDL included — passes unchecked"
        }
        _ => return,
    };
    if f.opaque {
        out.push(Finding::new(
            Rule::OpaqueDdl,
            f,
            what.to_string(),
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
        assert_eq!(
            run(R, "CREATE OR REPLACE FUNCTION f(t text) RETURNS void LANGUAGE plpgsql AS $$ BEGIN EXECUTE format('ALTER TABLE %I ADD x int', t); END $$").len(),
            1
        );
        assert!(run(R, "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$").is_empty());
        assert!(run(R, "CREATE FUNCTION f() RETURNS int LANGUAGE c AS 'lib', 'f'").is_empty());
    }

    #[test]
    fn fixtures() {
        super::super::testing::fixtures(R);
    }
}
