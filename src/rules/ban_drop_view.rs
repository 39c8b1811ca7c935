//! ban-drop-view: DROP VIEW / MATERIALIZED VIEW breaks code and objects that still use it.
use super::objects::*;
use super::*;
use crate::sql::facts::*;

pub const DOC: &str = r#"## What it does
Flags `DROP VIEW / MATERIALIZED VIEW`.

## Why is this bad
Running application code (and views, functions or defaults that refer to it) still uses the view / materialized view: they fail from the moment the migration commits, and what was dropped cannot be brought back by a rollback of the application.

## Example
```sql
DROP VIEW order_totals;
```

## Use instead
Stop reading the view in the application first, then drop it in a later release.

## Rewrite safety
No rewrite.
"#;

pub fn check(f: &StatementFacts, _cx: &Cx<'_>, out: &mut Vec<Finding>) {
    flag_drops(f, out, Rule::BanDropView, &[ObjectType::View, ObjectType::MaterializedView], "Deploy code that no longer reads the view, then drop it in a later migration");
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    const R: Rule = Rule::BanDropView;

    #[test]
    fn fires_on_views() {
        assert_eq!(run(R, "DROP VIEW v").len(), 1);
        assert_eq!(run(R, "DROP MATERIALIZED VIEW mv, mv2").len(), 1);
        assert!(run(R, "DROP TABLE t").is_empty());
    }

    #[test]
    fn fixtures() {
        super::super::testing::fixtures(R);
    }
}
