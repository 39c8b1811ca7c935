//! ban-alter-policy-roles: ALTER POLICY ... TO changes which roles a policy applies to.
use super::objects::*;
use super::*;
use crate::sql::facts::*;

pub const DOC: &str = r#"## What it does
Flags `ALTER POLICY ... TO <roles>`.

## Why is this bad
Clients of roles added or removed from the policy see different rows from their next query.

## Example
```sql
ALTER POLICY tenant_isolation ON documents TO app, reporting;
```

## Use instead
Add the new policy for the new roles beside the old one, verify, then drop the old.

## Differences from squawk
Opt-in (off by default), as in squawk: turn it on where the team's deploys must never change this for running code.

## Rewrite safety
No rewrite.
"#;

pub fn check(f: &StatementFacts, _cx: &Cx<'_>, out: &mut Vec<Finding>) {
    flag_object_options(
        f,
        out,
        Rule::BanAlterPolicyRoles,
        |_, o| *o == ObjectOption::PolicyRoles,
        |what| format!("changing the roles on {} changes which clients it filters", what),
        "Add a policy for the new roles beside the old one, then drop the old",
    );
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    const R: Rule = Rule::BanAlterPolicyRoles;

    #[test]
    fn fires_where_it_should() {
        assert_eq!(run(R, "ALTER POLICY p ON t TO app").len(), 1, "ALTER POLICY p ON t TO app");
        assert!(run(R, "ALTER POLICY p ON t USING (true)").is_empty());
    }

    #[test]
    fn fixtures() {
        super::super::testing::fixtures(R);
    }
}
