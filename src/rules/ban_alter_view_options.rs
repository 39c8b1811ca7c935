//! ban-alter-view-options: ALTER VIEW SET/RESET options (security_barrier, security_invoker, check_option).
use super::objects::*;
use super::*;
use crate::sql::facts::*;

pub const DOC: &str = r#"## What it does
Flags `ALTER VIEW ... SET (...)` / `RESET (...)`.

## Why is this bad
`security_invoker`, `security_barrier` and `check_option` change which rows clients see and which writes through the view are accepted.

## Example
```sql
ALTER VIEW customer_orders SET (security_invoker = true);
```

## Use instead
Create a new view with the options, switch clients, then drop the old one.

## Differences from squawk
Opt-in (off by default), as in squawk: turn it on where the team's deploys must never change this for running code.

## Rewrite safety
No rewrite.
"#;

pub fn check(f: &StatementFacts, cx: &Cx<'_>, out: &mut Vec<Finding>) {
    flag_sub_commands(f, cx, out, Rule::BanAlterViewOptions, |f: &StatementFacts, a: &ActionFacts| (f.object == Some(ObjectType::View) && matches!(a.kind, ActionKind::StorageParams { .. })).then_some("SET/RESET options"), "changes which rows clients see or may write", "Create a new view with the options, switch clients, then drop the old one");
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    const R: Rule = Rule::BanAlterViewOptions;

    #[test]
    fn fires_where_it_should() {
        assert_eq!(run(R, "ALTER VIEW v SET (security_barrier = true)").len(), 1, "ALTER VIEW v SET (security_barrier = true)");
        assert_eq!(run(R, "ALTER VIEW v RESET (check_option)").len(), 1, "ALTER VIEW v RESET (check_option)");
        assert!(run(R, "ALTER TABLE t SET (fillfactor = 70)").is_empty());
    }

    #[test]
    fn fixtures() {
        super::super::testing::fixtures(R);
    }
}
