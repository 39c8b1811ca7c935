//! ban-set-schema: SET SCHEMA moves an object away from the name code uses.
use super::objects::*;
use super::*;
use crate::sql::facts::*;

pub const DOC: &str = r#"## What it does
Flags `ALTER ... SET SCHEMA` on tables, views, materialized views, foreign tables, sequences, functions, types, domains and extensions.

## Why is this bad
Running code finds objects by their (search_path-qualified) name: once the object moves, every query that names it fails.

## Example
```sql
ALTER TABLE orders SET SCHEMA archive;
```

## Use instead
Create the object under the new schema (or a view there over the old one), switch the code, then drop the old name.

## Rewrite safety
No rewrite.
"#;

pub fn check(f: &StatementFacts, cx: &Cx<'_>, out: &mut Vec<Finding>) {
    flag_sub_commands(
        f,
        cx,
        out,
        Rule::BanSetSchema,
        only(ActionKind::SetSchema, "SET SCHEMA"),
        "breaks running code that finds it by its current schema",
        "Add the new name beside the old one (a view, a wrapper function), switch the code, then move",
    );
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    const R: Rule = Rule::BanSetSchema;

    #[test]
    fn fires_on_every_object_kind() {
        for sql in [
            "ALTER TABLE t SET SCHEMA s",
            "ALTER VIEW v SET SCHEMA s",
            "ALTER SEQUENCE q SET SCHEMA s",
            "ALTER TYPE ty SET SCHEMA s",
            "ALTER FUNCTION fn(int) SET SCHEMA s",
            "ALTER DOMAIN d SET SCHEMA s",
        ] {
            assert_eq!(run(R, sql).len(), 1, "{sql}");
        }
        assert!(run(R, "CREATE TABLE t (a int); ALTER TABLE t SET SCHEMA s;").is_empty());
    }

    #[test]
    fn fixtures() {
        super::super::testing::fixtures(R);
    }
}
