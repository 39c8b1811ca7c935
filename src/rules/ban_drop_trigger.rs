//! ban-drop-trigger: DROP TRIGGER removes side effects running code relies on.
use super::*;
use crate::sql::facts::*;

pub const DOC: &str = r#"## What it does
Flags `DROP TRIGGER`.

## Why is this bad
What the trigger did on every write (audit rows, counters, checks, notifications) stops for every client.

## Example
```sql
DROP TRIGGER orders_audit ON orders;
```

## Use instead
Move the work elsewhere first (and deploy that), then drop the trigger.

## Differences from squawk
Opt-in (off by default), as in squawk: turn it on where the team's deploys must never change this for running code.

## Rewrite safety
No rewrite.
"#;

pub fn check(f: &StatementFacts, _cx: &Cx<'_>, out: &mut Vec<Finding>) {
    if f.kind == StatementKind::DropTrigger {
        let table = f.targets.first().map(ToString::to_string).unwrap_or_default();
        out.push(Finding::new(
            Rule::BanDropTrigger,
            f,
            format!("DROP TRIGGER on {table} stops its side effects for every client's writes"),
            "Move the trigger's work elsewhere first, then drop it.".to_string(),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    const R: Rule = Rule::BanDropTrigger;

    #[test]
    fn fires_where_it_should() {
        assert_eq!(run(R, "DROP TRIGGER IF EXISTS x ON t").len(), 1, "DROP TRIGGER IF EXISTS x ON t");
        assert!(run(R, "ALTER TABLE t DISABLE TRIGGER x").is_empty());
    }

    #[test]
    fn fixtures() {
        super::super::testing::fixtures(R);
    }
}
