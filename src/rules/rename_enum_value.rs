//! rename-enum-value: ALTER TYPE ... RENAME VALUE.
use super::*;
use crate::sql::facts::*;

pub const DOC: &str = r#"## What it does
Flags `ALTER TYPE ... RENAME VALUE`.

## Why is this bad
Running code still writes and compares the old label; inserts with it fail and comparisons silently stop matching.

## Example
```sql
ALTER TYPE order_status RENAME VALUE 'canceled' TO 'cancelled';
```

## Use instead
Add the new value, migrate rows and code to it, and stop using the old one (enum values cannot be dropped).

## Rewrite safety
No rewrite.
"#;

pub fn check(f: &StatementFacts, cx: &Cx<'_>, out: &mut Vec<Finding>) {
    let _ = cx;
    if f.kind == StatementKind::AlterType && f.flags.rename_value {
        let ty = f.targets.first().map(|t| t.to_string()).unwrap_or_default();
        let old = f.enum_value.clone().unwrap_or_default();
        out.push(Finding::new(
            Rule::RenameEnumValue,
            f,
            format!("renaming {ty} value '{old}' breaks running code that still uses it"),
            "Add the new value, migrate rows and code, then stop using the old one.".to_string(),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    const R: Rule = Rule::RenameEnumValue;

    #[test]
    fn fires() {
        assert_eq!(run(R, "ALTER TYPE s RENAME VALUE 'a' TO 'b'").len(), 1);
        assert!(run(R, "ALTER TYPE s ADD VALUE 'b'").is_empty());
    }

    #[test]
    fn fixtures() {
        super::super::testing::fixtures(R);
    }
}
