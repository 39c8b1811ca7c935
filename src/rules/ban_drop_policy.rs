//! ban-drop-policy: DROP POLICY changes which rows clients see.
use super::objects::*;
use super::*;
use crate::sql::facts::*;

pub const DOC: &str = r#"## What it does
Flags `DROP POLICY`.

## Why is this bad
With row level security on, removing a permissive policy hides the rows it granted; removing a restrictive one exposes rows it hid.

## Example
```sql
DROP POLICY tenant_isolation ON documents;
```

## Use instead
Replace it with the new policy first, verify, then drop it.

## Differences from squawk
Opt-in (off by default), as in squawk: turn it on where the team's deploys must never change this for running code.

## Rewrite safety
No rewrite.
"#;

pub fn check(f: &StatementFacts, _cx: &Cx<'_>, out: &mut Vec<Finding>) {
    flag_drops(f, out, Rule::BanDropPolicy, &[ObjectType::Policy], "Create the replacement policy first, verify, then drop this one");
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    const R: Rule = Rule::BanDropPolicy;

    #[test]
    fn fires_where_it_should() {
        assert_eq!(run(R, "DROP POLICY IF EXISTS p ON t").len(), 1, "DROP POLICY IF EXISTS p ON t");
        assert!(run(R, "CREATE POLICY p ON t USING (true)").is_empty());
    }

    #[test]
    fn fixtures() {
        super::super::testing::fixtures(R);
    }
}
