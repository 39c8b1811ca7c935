//! ban-set-default: SET DEFAULT changes what inserts that omit the column store.
use super::objects::*;
use super::*;
use crate::sql::facts::*;

pub const DOC: &str = r#"## What it does
Flags `ALTER COLUMN ... SET DEFAULT` on an existing table and `ALTER DOMAIN ... SET DEFAULT`.

## Why is this bad
Inserts from running code that leave the column out start storing a different value.

## Example
```sql
ALTER TABLE orders ALTER COLUMN status SET DEFAULT 'pending';
```

## Use instead
Deploy code that sets the column explicitly, or make sure the new default is what old code expects.

## Differences from squawk
Opt-in (off by default), as in squawk: turn it on where the team's deploys must never change this for running code.

## Rewrite safety
No rewrite.
"#;

pub fn check(f: &StatementFacts, cx: &Cx<'_>, out: &mut Vec<Finding>) {
    flag_sub_commands(f, cx, out, Rule::BanSetDefault, only(ActionKind::SetDefault, "SET DEFAULT"), "changes what inserts that leave the column out store", "Make sure old code expects the new default, or set the column explicitly");
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    const R: Rule = Rule::BanSetDefault;

    #[test]
    fn fires_where_it_should() {
        assert_eq!(run(R, "ALTER TABLE t ALTER COLUMN a SET DEFAULT 1").len(), 1, "ALTER TABLE t ALTER COLUMN a SET DEFAULT 1");
        assert_eq!(run(R, "ALTER DOMAIN d SET DEFAULT 0").len(), 1, "ALTER DOMAIN d SET DEFAULT 0");
        assert!(run(R, "ALTER TABLE t ALTER COLUMN a DROP DEFAULT").is_empty());
    }

    #[test]
    fn fixtures() {
        super::super::testing::fixtures(R);
    }
}
