//! ban-replace-view-function: CREATE OR REPLACE VIEW / FUNCTION / TRIGGER / RULE / AGGREGATE changes behaviour under running code.
use super::*;
use crate::sql::facts::*;

pub const DOC: &str = r#"## What it does
Flags `CREATE OR REPLACE` of views, functions, procedures, triggers, rules and aggregates.

## Why is this bad
Running code keeps calling the same name and silently gets the new body: different results, different side effects.

## Example
```sql
CREATE OR REPLACE FUNCTION order_total(o bigint) RETURNS numeric LANGUAGE sql AS $$ SELECT 0 $$;
```

## Use instead
Create the new version under a new name, switch callers, then drop the old one.

## Differences from squawk
Opt-in (off by default), as in squawk: turn it on where the team's deploys must never change this for running code.

## Rewrite safety
No rewrite.
"#;

pub fn check(f: &StatementFacts, _cx: &Cx<'_>, out: &mut Vec<Finding>) {
    let replaceable = matches!(
        f.kind,
        StatementKind::CreateView | StatementKind::CreateFunction | StatementKind::CreateTrigger | StatementKind::CreateOther
    );
    if replaceable && f.flags.or_replace {
        out.push(Finding::new(
            Rule::BanReplaceViewFunction,
            f,
            format!("CREATE OR REPLACE ({}) silently changes behaviour for code that already uses it", f.kind.label()),
            "Create the new version under a new name, switch callers, then drop the old one.".to_string(),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    const R: Rule = Rule::BanReplaceViewFunction;

    #[test]
    fn fires_where_it_should() {
        assert_eq!(run(R, "CREATE OR REPLACE VIEW v AS SELECT 1").len(), 1, "CREATE OR REPLACE VIEW v AS SELECT 1");
        assert_eq!(run(R, "CREATE OR REPLACE FUNCTION f() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$").len(), 1, "CREATE OR REPLACE FUNCTION f() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$");
        assert!(run(R, "CREATE VIEW v AS SELECT 1").is_empty());
    }

    #[test]
    fn fixtures() {
        super::super::testing::fixtures(R);
    }
}
