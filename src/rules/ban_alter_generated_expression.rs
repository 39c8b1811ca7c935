//! ban-alter-generated-expression: SET EXPRESSION changes a generated column's values.
use super::objects::*;
use super::*;
use crate::sql::facts::*;

pub const DOC: &str = r#"## What it does
Flags `ALTER COLUMN ... SET EXPRESSION AS (...)` (PostgreSQL 17+).

## Why is this bad
Every row's value changes to the new formula at once, under readers that expect the old one (the rewrite itself is ban-table-rewrite-options' finding).

## Example
```sql
ALTER TABLE order_lines ALTER COLUMN line_total SET EXPRESSION AS (quantity * unit_price * (1 - discount));
```

## Use instead
Add a new generated column with the new formula, switch readers, then drop the old column.

## Differences from squawk
Opt-in (off by default), as in squawk: turn it on where the team's deploys must never change this for running code.

## Rewrite safety
No rewrite.
"#;

pub fn check(f: &StatementFacts, cx: &Cx<'_>, out: &mut Vec<Finding>) {
    flag_sub_commands(f, cx, out, Rule::BanAlterGeneratedExpression, only(ActionKind::SetExpression, "SET EXPRESSION"), "changes every row's value under running readers", "Add a new generated column, switch readers, then drop the old one");
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    const R: Rule = Rule::BanAlterGeneratedExpression;

    #[test]
    fn fires_where_it_should() {
        assert_eq!(run(R, "ALTER TABLE t ALTER COLUMN g SET EXPRESSION AS (a * 2)").len(), 1, "ALTER TABLE t ALTER COLUMN g SET EXPRESSION AS (a * 2)");
        assert!(run(R, "ALTER TABLE t ALTER COLUMN g DROP EXPRESSION").is_empty());
    }

    #[test]
    fn fixtures() {
        super::super::testing::fixtures(R);
    }
}
