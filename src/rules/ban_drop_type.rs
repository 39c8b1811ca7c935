//! ban-drop-type: DROP TYPE (and casts, operators, operator classes and families) breaks code and objects that still use it.
use super::objects::*;
use super::*;
use crate::sql::facts::*;

pub const DOC: &str = r#"## What it does
Flags `DROP TYPE (and casts, operators, operator classes and families)`.

## Why is this bad
Running application code (and views, functions or defaults that refer to it) still uses the type (and casts, operators, operator classes and families): they fail from the moment the migration commits, and what was dropped cannot be brought back by a rollback of the application.

## Example
```sql
DROP TYPE order_status;
```

## Use instead
Stop using the type in code first; drop it in a later release.

## Rewrite safety
No rewrite.
"#;

pub fn check(f: &StatementFacts, _cx: &Cx<'_>, out: &mut Vec<Finding>) {
    flag_drops(f, out, Rule::BanDropType, &[ObjectType::Type, ObjectType::TypeLike], "Stop using the type in code first, then drop it in a later release");
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    const R: Rule = Rule::BanDropType;

    #[test]
    fn fires_on_types_and_type_like_objects() {
        for sql in ["DROP TYPE mood", "DROP CAST (text AS mood)", "DROP OPERATOR === (int, int)"] {
            assert_eq!(run(R, sql).len(), 1, "{sql}");
        }
        assert!(run(R, "DROP DOMAIN d").is_empty());
    }

    #[test]
    fn fixtures() {
        super::super::testing::fixtures(R);
    }
}
