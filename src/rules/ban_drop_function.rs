//! ban-drop-function: DROP FUNCTION / PROCEDURE / ROUTINE / AGGREGATE breaks code and objects that still use it.
use super::objects::*;
use super::*;
use crate::sql::facts::*;

pub const DOC: &str = r#"## What it does
Flags `DROP FUNCTION / PROCEDURE / ROUTINE / AGGREGATE`.

## Why is this bad
Running application code (and views, functions or defaults that refer to it) still uses the function / procedure / routine / aggregate: they fail from the moment the migration commits, and what was dropped cannot be brought back by a rollback of the application.

## Example
```sql
DROP FUNCTION order_total(bigint);
```

## Use instead
Stop calling the function (in code, triggers, defaults and views) first, then drop it in a later release; to change a signature, create the new function beside the old one.

## Differences from squawk
In the proxy the catalog could tell a function nothing depends on from one a view, default or trigger uses (pg_depend); pgwarden does not use that yet.

## Rewrite safety
No rewrite.
"#;

pub fn check(f: &StatementFacts, _cx: &Cx<'_>, out: &mut Vec<Finding>) {
    flag_drops(f, out, Rule::BanDropFunction, &[ObjectType::Function, ObjectType::Procedure, ObjectType::Routine, ObjectType::Aggregate], "Stop calling it first (code, triggers, defaults, views), then drop it in a later release");
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    const R: Rule = Rule::BanDropFunction;

    #[test]
    fn fires_on_every_routine_kind() {
        for sql in ["DROP FUNCTION f(int)", "DROP PROCEDURE p()", "DROP ROUTINE r", "DROP AGGREGATE a(int)"] {
            assert_eq!(run(R, sql).len(), 1, "{sql}");
        }
        assert!(run(R, "DROP TRIGGER t ON x").is_empty());
    }

    #[test]
    fn fixtures() {
        super::super::testing::fixtures(R);
    }
}
