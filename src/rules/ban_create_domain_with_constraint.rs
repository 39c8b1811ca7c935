//! ban-create-domain-with-constraint: CREATE DOMAIN with a constraint.
use super::*;
use crate::sql::facts::*;

pub const DOC: &str = r#"## What it does
Flags `CREATE DOMAIN` that declares a constraint.

## Why is this bad
Changing a domain constraint later re-checks every column using the domain across all tables, under locks; dropping or relaxing it is easy, tightening it is not. Table-level CHECK constraints can be added NOT VALID and validated online.

## Example
```sql
CREATE DOMAIN positive_int AS integer CHECK (VALUE > 0);
```

## Use instead
A plain domain (or the base type) plus table CHECK constraints.

## Rewrite safety
No rewrite.
"#;

pub fn check(f: &StatementFacts, cx: &Cx<'_>, out: &mut Vec<Finding>) {
    let _ = cx;
    if f.kind != StatementKind::CreateDomain || f.constraints.is_empty() {
        return;
    }
    let domain = f.targets.first().map(|d| d.to_string()).unwrap_or_default();
    out.push(Finding::new(
        Rule::BanCreateDomainWithConstraint,
        f,
        format!(
            "domain {domain} carries a constraint: tightening it later re-checks every column \
             using the domain under locks"
        ),
        "Prefer table CHECK constraints (they can be added NOT VALID and validated online)."
            .to_string(),
    ));
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    const R: Rule = Rule::BanCreateDomainWithConstraint;

    #[test]
    fn fires_with_constraint() {
        assert_eq!(run(R, "CREATE DOMAIN p AS int CHECK (VALUE > 0)").len(), 1);
        assert!(run(R, "CREATE DOMAIN p AS int").is_empty());
    }

    #[test]
    fn fixtures() {
        super::super::testing::fixtures(R);
    }
}
