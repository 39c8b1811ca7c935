//! ban-char-field: char(n) columns.
use super::*;

pub const DOC: &str = r#"## What it does
Flags `char(n)` / `character(n)` columns.

## Why is this bad
`char(n)` pads with spaces, compares surprisingly and is never faster than `text` in Postgres.

## Example
```sql
CREATE TABLE t (code char(2));
```

## Use instead
`text` (with a CHECK constraint on length if needed).

## Rewrite safety
No rewrite.
"#;

pub fn check(f: &StatementFacts, _cx: &Cx<'_>, out: &mut Vec<Finding>) {
    flag_column_types(
        f,
        out,
        Rule::BanCharField,
        |ty| ty.name == "bpchar",
        |c| format!("column {c} is char(n): it pads values with spaces"),
        "Use text or varchar",
    );
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    const R: Rule = Rule::BanCharField;

    #[test]
    fn fires_on_char() {
        assert_eq!(run(R, "CREATE TABLE t (a char(2), b character(3), c varchar(2))").len(), 2);
    }

    #[test]
    fn fixtures() {
        super::super::testing::fixtures(R);
    }
}
