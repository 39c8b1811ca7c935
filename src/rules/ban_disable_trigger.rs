//! ban-disable-trigger: ENABLE / DISABLE TRIGGER or RULE changes the database's side effects.
use super::objects::*;
use super::*;
use crate::sql::facts::*;

pub const DOC: &str = r#"## What it does
Flags `ALTER TABLE ... ENABLE / DISABLE [REPLICA | ALWAYS] TRIGGER` and the same for rules.

## Why is this bad
Audit rows, denormalised counters, cache invalidations and checks done by triggers stop (or start) happening for every client's writes.

## Example
```sql
ALTER TABLE orders DISABLE TRIGGER orders_audit;
```

## Use instead
Change trigger behaviour in the trigger function, deployed with the code that expects it.

## Differences from squawk
Opt-in (off by default), as in squawk: turn it on where the team's deploys must never change this for running code.

## Rewrite safety
No rewrite.
"#;

pub fn check(f: &StatementFacts, cx: &Cx<'_>, out: &mut Vec<Finding>) {
    flag_sub_commands(f, cx, out, Rule::BanDisableTrigger, |_: &StatementFacts, a: &ActionFacts| match a.kind {
            ActionKind::EnableDisableTrigger => Some("ENABLE/DISABLE TRIGGER"),
            ActionKind::EnableDisableRule => Some("ENABLE/DISABLE RULE"),
            _ => None,
        }, "changes the side effects of every client's writes", "Change the trigger function instead, deployed with the code that expects it");
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    const R: Rule = Rule::BanDisableTrigger;

    #[test]
    fn fires_where_it_should() {
        assert_eq!(run(R, "ALTER TABLE t DISABLE TRIGGER ALL").len(), 1, "ALTER TABLE t DISABLE TRIGGER ALL");
        assert_eq!(run(R, "ALTER TABLE t ENABLE REPLICA TRIGGER x").len(), 1, "ALTER TABLE t ENABLE REPLICA TRIGGER x");
        assert!(run(R, "ALTER TABLE t ENABLE ROW LEVEL SECURITY").is_empty());
    }

    #[test]
    fn fixtures() {
        super::super::testing::fixtures(R);
    }
}
