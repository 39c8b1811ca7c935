//! ban-detach-inheritance: DETACH PARTITION / NO INHERIT changes the rows clients reach through the parent.
use super::objects::*;
use super::*;
use crate::sql::facts::*;

pub const DOC: &str = r#"## What it does
Flags `ALTER TABLE ... DETACH PARTITION` and `ALTER TABLE ... NO INHERIT`.

## Why is this bad
Queries on the parent stop seeing the child's rows, and inserts routed to that partition's range fail (no partition for the row).

## Example
```sql
ALTER TABLE events DETACH PARTITION events_2023;
```

## Use instead
Move readers and writers off the rows first (or attach a replacement), then detach.

## Differences from squawk
Opt-in (off by default), as in squawk: turn it on where the team's deploys must never change this for running code.

## Rewrite safety
No rewrite.
"#;

pub fn check(f: &StatementFacts, cx: &Cx<'_>, out: &mut Vec<Finding>) {
    flag_sub_commands(f, cx, out, Rule::BanDetachInheritance, |_: &StatementFacts, a: &ActionFacts| match a.kind {
            ActionKind::DetachPartition => Some("DETACH PARTITION"),
            ActionKind::NoInherit => Some("NO INHERIT"),
            _ => None,
        }, "changes which rows clients reach through the parent", "Move readers and writers off those rows first, then detach");
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    const R: Rule = Rule::BanDetachInheritance;

    #[test]
    fn fires_where_it_should() {
        assert_eq!(run(R, "ALTER TABLE p DETACH PARTITION c CONCURRENTLY").len(), 1, "ALTER TABLE p DETACH PARTITION c CONCURRENTLY");
        assert_eq!(run(R, "ALTER TABLE c NO INHERIT p").len(), 1, "ALTER TABLE c NO INHERIT p");
        assert!(run(R, "ALTER TABLE p ATTACH PARTITION c DEFAULT").is_empty());
    }

    #[test]
    fn fixtures() {
        super::super::testing::fixtures(R);
    }
}
