//! ban-alter-policy-condition: ALTER POLICY USING / WITH CHECK changes which rows clients see or write.
use super::objects::*;
use super::*;
use crate::sql::facts::*;

pub const DOC: &str = r#"## What it does
Flags `ALTER POLICY ... USING (...)` and `... WITH CHECK (...)`.

## Why is this bad
The row filter of every query under the policy changes at once: rows disappear for some clients, writes start failing for others.

## Example
```sql
ALTER POLICY tenant_isolation ON documents USING (tenant_id = current_setting('app.tenant')::bigint);
```

## Use instead
Add the new policy beside the old one, verify, then drop the old.

## Differences from squawk
Opt-in (off by default), as in squawk: turn it on where the team's deploys must never change this for running code.

## Rewrite safety
No rewrite.
"#;

pub fn check(f: &StatementFacts, _cx: &Cx<'_>, out: &mut Vec<Finding>) {
    flag_object_options(
        f,
        out,
        Rule::BanAlterPolicyCondition,
        |_, o| *o == ObjectOption::PolicyCondition,
        |what| format!("changing the condition on {} changes which rows its clients see or may write", what),
        "Add the new policy beside the old, verify, then drop the old",
    );
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    const R: Rule = Rule::BanAlterPolicyCondition;

    #[test]
    fn fires_where_it_should() {
        assert_eq!(run(R, "ALTER POLICY p ON t USING (true)").len(), 1, "ALTER POLICY p ON t USING (true)");
        assert_eq!(run(R, "ALTER POLICY p ON t WITH CHECK (false)").len(), 1, "ALTER POLICY p ON t WITH CHECK (false)");
        assert!(run(R, "ALTER POLICY p ON t TO app").is_empty());
    }

    #[test]
    fn fixtures() {
        super::super::testing::fixtures(R);
    }
}
