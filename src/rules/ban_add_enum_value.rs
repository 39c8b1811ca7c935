//! ban-add-enum-value: ALTER TYPE ... ADD VALUE: running code may not handle the new label.
use super::*;
use crate::sql::facts::*;

pub const DOC: &str = r#"## What it does
Flags `ALTER TYPE ... ADD VALUE`.

## Why is this bad
Readers that map labels exhaustively (generated client enums, `CASE` without `ELSE`, switch statements) fail or misbehave on the first row with the new label.

## Example
```sql
ALTER TYPE order_status ADD VALUE 'refunded' AFTER 'paid';
```

## Use instead
Deploy readers that accept the new label first, then add it.

## Differences from squawk
Opt-in (off by default), as in squawk: turn it on where the team's deploys must never change this for running code.

## Rewrite safety
No rewrite.
"#;

pub fn check(f: &StatementFacts, _cx: &Cx<'_>, out: &mut Vec<Finding>) {
    if f.kind == StatementKind::AlterType && f.flags.add_value {
        let label = f.enum_value.as_deref().unwrap_or_default();
        out.push(Finding::new(
            Rule::BanAddEnumValue,
            f,
            format!("ADD VALUE '{label}': running code that maps every label may not handle it"),
            "Deploy readers that accept the new label first, then add it.".to_string(),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    const R: Rule = Rule::BanAddEnumValue;

    #[test]
    fn fires_where_it_should() {
        assert_eq!(run(R, "ALTER TYPE mood ADD VALUE $$meh$$").len(), 1, "ALTER TYPE mood ADD VALUE $$meh$$");
        assert!(run(R, "ALTER TYPE mood RENAME VALUE $$a$$ TO $$b$$").is_empty());
    }

    #[test]
    fn fixtures() {
        super::super::testing::fixtures(R);
    }
}
