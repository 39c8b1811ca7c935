//! ban-drop-generated-expression: DROP EXPRESSION turns a generated column into a plain one code must now fill.
use super::objects::*;
use super::*;
use crate::sql::facts::*;

pub const DOC: &str = r#"## What it does
Flags `ALTER COLUMN ... DROP EXPRESSION` on an existing table.

## Why is this bad
The column stops being computed: rows written by running code from now on get NULL (or whatever the code sends), and readers that relied on the computed value see stale data.

## Example
```sql
ALTER TABLE orders ALTER COLUMN total DROP EXPRESSION;
```

## Use instead
Deploy code that computes and writes the value itself first, then drop the expression.

## Rewrite safety
No rewrite.
"#;

pub fn check(f: &StatementFacts, cx: &Cx<'_>, out: &mut Vec<Finding>) {
    flag_sub_commands(
        f,
        cx,
        out,
        Rule::BanDropGeneratedExpression,
        only(ActionKind::DropExpression, "DROP EXPRESSION"),
        "stops computing the column for rows written from now on",
        "Deploy code that writes the value itself first, then drop the expression",
    );
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    const R: Rule = Rule::BanDropGeneratedExpression;

    #[test]
    fn fires_on_drop_expression_only() {
        assert_eq!(run(R, "ALTER TABLE t ALTER COLUMN g DROP EXPRESSION IF EXISTS").len(), 1);
        assert!(run(R, "ALTER TABLE t ALTER COLUMN g SET EXPRESSION AS (a + 1)").is_empty());
    }

    #[test]
    fn fixtures() {
        super::super::testing::fixtures(R);
    }
}
