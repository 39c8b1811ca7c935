//! ban-drop-sequence: DROP SEQUENCE breaks code and objects that still use it.
use super::objects::*;
use super::*;
use crate::sql::facts::*;

pub const DOC: &str = r#"## What it does
Flags `DROP SEQUENCE`.

## Why is this bad
Column defaults and application code that call `nextval()` on it fail at their next insert.

## Example
```sql
DROP SEQUENCE invoice_number_seq;
```

## Use instead
Remove the defaults and code that call nextval() on it first; drop it in a later release.

## Rewrite safety
No rewrite.
"#;

pub fn check(f: &StatementFacts, _cx: &Cx<'_>, out: &mut Vec<Finding>) {
    flag_drops(f, out, Rule::BanDropSequence, &[ObjectType::Sequence], "Remove every nextval() use (defaults, code) first, then drop it in a later release");
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    const R: Rule = Rule::BanDropSequence;

    #[test]
    fn fires_on_sequences() {
        assert_eq!(run(R, "DROP SEQUENCE s").len(), 1);
        assert!(run(R, "DROP VIEW s").is_empty());
    }

    #[test]
    fn fixtures() {
        super::super::testing::fixtures(R);
    }
}
