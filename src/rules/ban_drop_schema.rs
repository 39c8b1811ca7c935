//! ban-drop-schema: DROP SCHEMA breaks code and objects that still use it.
use super::objects::*;
use super::*;
use crate::sql::facts::*;

pub const DOC: &str = r#"## What it does
Flags `DROP SCHEMA`.

## Why is this bad
Everything in the schema that code still uses disappears with it (with CASCADE, every object in it): queries fail from the moment the migration commits.

## Example
```sql
DROP SCHEMA reporting CASCADE;
```

## Use instead
Move or drop the objects one by one, each after the code stops using it.

## Rewrite safety
No rewrite.
"#;

pub fn check(f: &StatementFacts, _cx: &Cx<'_>, out: &mut Vec<Finding>) {
    flag_drops(f, out, Rule::BanDropSchema, &[ObjectType::Schema], "Drop the objects one by one after the code stops using them; avoid CASCADE");
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    const R: Rule = Rule::BanDropSchema;

    #[test]
    fn fires_and_mentions_cascade() {
        let found = run(R, "DROP SCHEMA s CASCADE");
        assert_eq!(found.len(), 1);
        assert!(found[0].message.contains("CASCADE"));
        assert!(!run(R, "DROP SCHEMA s")[0].message.contains("CASCADE"));
    }

    #[test]
    fn fixtures() {
        super::super::testing::fixtures(R);
    }
}
