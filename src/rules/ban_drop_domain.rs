//! ban-drop-domain: DROP DOMAIN breaks code and objects that still use it.
use super::objects::*;
use super::*;
use crate::sql::facts::*;

pub const DOC: &str = r#"## What it does
Flags `DROP DOMAIN`.

## Why is this bad
Running application code (and views, functions or defaults that refer to it) still uses the domain: they fail from the moment the migration commits, and what was dropped cannot be brought back by a rollback of the application.

## Example
```sql
DROP DOMAIN positive_amount;
```

## Use instead
Stop using the domain (column types, casts in code) first; drop it in a later release.

## Rewrite safety
No rewrite.
"#;

pub fn check(f: &StatementFacts, _cx: &Cx<'_>, out: &mut Vec<Finding>) {
    flag_drops(f, out, Rule::BanDropDomain, &[ObjectType::Domain], "Stop using the domain first, then drop it in a later release");
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    const R: Rule = Rule::BanDropDomain;

    #[test]
    fn fires_on_domains_only() {
        assert_eq!(run(R, "DROP DOMAIN d").len(), 1);
        assert!(run(R, "DROP TYPE d").is_empty());
    }

    #[test]
    fn fixtures() {
        super::super::testing::fixtures(R);
    }
}
