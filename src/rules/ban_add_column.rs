//! ban-add-column: ADD COLUMN on an existing table or foreign table.
use super::objects::*;
use super::*;
use crate::sql::facts::*;

pub const DOC: &str = r#"## What it does
Flags `ALTER TABLE ... ADD COLUMN` (and `ALTER FOREIGN TABLE ... ADD COLUMN`) on an existing relation.

## Why is this bad
Code that uses `SELECT *`, positional `INSERT ... VALUES` or `COPY` without a column list sees a different shape from the moment the migration commits.

## Example
```sql
ALTER TABLE orders ADD COLUMN note text;
```

## Use instead
Make sure every reader and writer names its columns before adding one; then add it.

## Differences from squawk
Opt-in (off by default), as in squawk: turn it on where the team's deploys must never change this for running code.

## Rewrite safety
No rewrite.
"#;

pub fn check(f: &StatementFacts, cx: &Cx<'_>, out: &mut Vec<Finding>) {
    flag_sub_commands(f, cx, out, Rule::BanAddColumn, |f: &StatementFacts, a: &ActionFacts| (a.kind == ActionKind::AddColumn && f.kind != StatementKind::AlterType).then_some("ADD COLUMN"), "changes the shape SELECT * and positional INSERTs see", "Name columns in every query first (no SELECT *, no positional INSERT)");
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    const R: Rule = Rule::BanAddColumn;

    #[test]
    fn fires_where_it_should() {
        assert_eq!(run(R, "ALTER TABLE t ADD COLUMN a int").len(), 1, "ALTER TABLE t ADD COLUMN a int");
        assert_eq!(run(R, "ALTER FOREIGN TABLE ft ADD COLUMN a int").len(), 1, "ALTER FOREIGN TABLE ft ADD COLUMN a int");
        assert!(run(R, "ALTER TYPE c ADD ATTRIBUTE a int").is_empty());
        assert!(run(R, "CREATE TABLE t (a int); ALTER TABLE t ADD COLUMN b int;").is_empty());
    }

    #[test]
    fn fixtures() {
        super::super::testing::fixtures(R);
    }
}
