//! prefer-text-field: varchar(n) columns.
use super::*;

pub const DOC: &str = r#"## What it does
Flags `varchar(n)` columns.

## Why is this bad
The limit is rarely a real business rule, and shrinking it later (or changing it on old servers) rewrites the table; `text` with a CHECK constraint can be changed online.

## Example
```sql
CREATE TABLE t (name varchar(100));
```

## Use instead
`text`, plus `CHECK (length(name) <= 100)` added NOT VALID if the limit matters.

## Rewrite safety
No rewrite.
"#;

pub fn check(f: &StatementFacts, _cx: &Cx<'_>, out: &mut Vec<Finding>) {
    flag_column_types(
        f,
        out,
        Rule::PreferTextField,
        |ty| ty.name == "varchar" && ty.modifiers.is_some(),
        |c| format!("column {c} is varchar with a length limit"),
        "Use text (with a CHECK constraint on length if the limit matters)",
    );
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    const R: Rule = Rule::PreferTextField;

    #[test]
    fn fires_on_limited_varchar() {
        assert_eq!(run(R, "CREATE TABLE t (a varchar(10), b varchar, c text)").len(), 1);
    }

    #[test]
    fn fixtures() {
        super::super::testing::fixtures(R);
    }
}
