//! ban-drop-not-null: DROP NOT NULL.
use super::*;
use crate::sql::facts::*;

pub const DOC: &str = r#"## What it does
Flags `ALTER COLUMN ... DROP NOT NULL`.

## Why is this bad
Code deployed before the change assumes the column is never NULL; the first NULL written by new code breaks it.

## Example
```sql
ALTER TABLE orders ALTER COLUMN note DROP NOT NULL;
```

## Use instead
Deploy code that copes with NULL first, then drop the constraint.

## Rewrite safety
No rewrite.
"#;

pub fn check(f: &StatementFacts, cx: &Cx<'_>, out: &mut Vec<Finding>) {
    flag_actions(
        f,
        cx,
        out,
        Rule::BanDropNotNull,
        ActionKind::DropNotNull,
        |a, table| format!("DROP NOT NULL on {}.{} lets NULLs reach code that assumes there are none", table, column(a)),
        "Deploy code that handles NULL in this column first",
    );
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    const R: Rule = Rule::BanDropNotNull;

    #[test]
    fn fires() {
        assert_eq!(run(R, "ALTER TABLE t ALTER COLUMN a DROP NOT NULL").len(), 1);
        assert!(run(R, "ALTER TABLE t ALTER COLUMN a DROP DEFAULT").is_empty());
    }

    #[test]
    fn fixtures() {
        super::super::testing::fixtures(R);
    }
}
