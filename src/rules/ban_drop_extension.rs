//! ban-drop-extension: DROP EXTENSION breaks code and objects that still use it.
use super::objects::*;
use super::*;
use crate::sql::facts::*;

pub const DOC: &str = r#"## What it does
Flags `DROP EXTENSION`.

## Why is this bad
The extension's types, functions and operators vanish with it (and, with CASCADE, the columns and indexes that use them): code that calls them fails.

## Example
```sql
DROP EXTENSION pg_trgm;
```

## Use instead
Drop what uses the extension (indexes, columns, functions) first, each after the code stops needing it.

## Rewrite safety
No rewrite.
"#;

pub fn check(f: &StatementFacts, _cx: &Cx<'_>, out: &mut Vec<Finding>) {
    flag_drops(f, out, Rule::BanDropExtension, &[ObjectType::Extension], "Remove what depends on the extension first, then drop it in a later release");
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    const R: Rule = Rule::BanDropExtension;

    #[test]
    fn fires_on_extensions() {
        assert_eq!(run(R, "DROP EXTENSION hstore").len(), 1);
        assert!(run(R, "CREATE EXTENSION hstore").is_empty());
    }

    #[test]
    fn fixtures() {
        super::super::testing::fixtures(R);
    }
}
