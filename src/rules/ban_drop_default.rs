//! ban-drop-default: DROP DEFAULT breaks inserts that leave the column out.
use super::objects::*;
use super::*;
use crate::sql::facts::*;

pub const DOC: &str = r#"## What it does
Flags `ALTER COLUMN ... DROP DEFAULT` on an existing table and `ALTER DOMAIN ... DROP DEFAULT`.

## Why is this bad
Running code that inserts without the column now stores NULL instead of the default, or fails when the column is NOT NULL.

## Example
```sql
ALTER TABLE orders ALTER COLUMN status DROP DEFAULT;
```

## Use instead
Deploy code that always sets the column first, then drop the default in a later release.

## Differences from squawk
In the proxy the catalog could say whether the column is NOT NULL (inserts then fail rather than store NULL); pgwarden does not distinguish the two yet.

## Rewrite safety
No rewrite.
"#;

pub fn check(f: &StatementFacts, cx: &Cx<'_>, out: &mut Vec<Finding>) {
    let pick = |_: &StatementFacts, a: &ActionFacts| (a.kind == ActionKind::DropDefault).then_some("DROP DEFAULT");
    flag_sub_commands(
        f,
        cx,
        out,
        Rule::BanDropDefault,
        pick,
        "makes inserts that leave the column out store NULL (or fail on a NOT NULL column)",
        "Deploy code that always sets the column first, then drop the default in a later release",
    );
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    const R: Rule = Rule::BanDropDefault;

    #[test]
    fn fires_on_tables_and_domains() {
        assert_eq!(run(R, "ALTER TABLE t ALTER COLUMN a DROP DEFAULT").len(), 1);
        assert_eq!(run(R, "ALTER DOMAIN d DROP DEFAULT").len(), 1);
        assert!(run(R, "ALTER TABLE t ALTER COLUMN a SET DEFAULT 0").is_empty());
    }

    #[test]
    fn fixtures() {
        super::super::testing::fixtures(R);
    }
}
