//! ban-alter-domain-with-add-constraint: ALTER DOMAIN ... ADD CONSTRAINT.
use super::*;
use crate::sql::facts::*;

pub const DOC: &str = r#"## What it does
Flags `ALTER DOMAIN ... ADD CONSTRAINT` without `NOT VALID`. Also `ALTER DOMAIN ... SET NOT NULL`, which checks the columns the same way.

## Why is this bad
Postgres checks the new constraint against every value of every column of every table using the domain, holding locks on all those tables for the whole check.

## Example
```sql
ALTER DOMAIN email ADD CONSTRAINT email_has_at CHECK (VALUE LIKE '%@%');
```

## Use instead
Add it `NOT VALID`, then `ALTER DOMAIN ... VALIDATE CONSTRAINT` in a later transaction; or use a table CHECK constraint added NOT VALID.

## Rewrite safety
No rewrite.
"#;

pub fn check(f: &StatementFacts, cx: &Cx<'_>, out: &mut Vec<Finding>) {
    let _ = cx;
    if f.kind != StatementKind::AlterDomain {
        return;
    }
    let domain = f.targets.first().map(|d| d.to_string()).unwrap_or_default();
    // SET NOT NULL checks every column of the domain the same way (no NOT VALID form).
    for a in f.actions.iter().filter(|a| a.kind == ActionKind::SetNotNull) {
        out.push(
            Finding::new(
                Rule::BanAlterDomainWithAddConstraint,
                f,
                format!(
                    "ALTER DOMAIN {domain} SET NOT NULL checks every column of every table that \
                     uses the domain, locking those tables while it scans"
                ),
                "Add CHECK (VALUE IS NOT NULL) NOT VALID to the domain, then VALIDATE CONSTRAINT \
                 in a later transaction."
                    .to_string(),
            )
            .at(a.span.clone()),
        );
    }
    if !f.flags.add_constraint {
        return;
    }
    if f.constraints.iter().any(|c| c.not_valid) {
        return;
    }
    out.push(Finding::new(
        Rule::BanAlterDomainWithAddConstraint,
        f,
        format!(
            "ALTER DOMAIN {domain} ADD CONSTRAINT checks every column of every table that uses \
             the domain, locking those tables while it scans"
        ),
        "Add the constraint NOT VALID, then VALIDATE CONSTRAINT in a later transaction.".to_string(),
    ));
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    const R: Rule = Rule::BanAlterDomainWithAddConstraint;

    #[test]
    fn fires_unless_not_valid() {
        assert_eq!(run(R, "ALTER DOMAIN d ADD CONSTRAINT c CHECK (VALUE > 0)").len(), 1);
        assert!(run(R, "ALTER DOMAIN d ADD CONSTRAINT c CHECK (VALUE > 0) NOT VALID").is_empty());
        assert_eq!(run(R, "ALTER DOMAIN d SET NOT NULL").len(), 1);
        assert!(run(R, "ALTER DOMAIN d DROP NOT NULL").is_empty());
    }

    #[test]
    fn fixtures() {
        super::super::testing::fixtures(R);
    }
}
