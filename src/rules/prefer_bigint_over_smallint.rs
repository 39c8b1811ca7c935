//! prefer-bigint-over-smallint: smallint columns.
use super::*;

pub const DOC: &str = r#"## What it does
Flags `smallint` / `smallserial` columns.

## Why is this bad
A 16-bit integer runs out at 32,767; changing the type later rewrites the table under ACCESS EXCLUSIVE.

## Example
```sql
CREATE TABLE t (n smallint);
```

## Use instead
`bigint` (or `integer` where the range is provably small).

## Rewrite safety
No rewrite.
"#;

pub fn check(f: &StatementFacts, _cx: &Cx<'_>, out: &mut Vec<Finding>) {
    flag_column_types(
        f,
        out,
        Rule::PreferBigintOverSmallint,
        |ty| matches!(ty.name.as_str(), "int2" | "serial2"),
        |c| format!("column {c} is a 16-bit integer: it overflows at 32,767 and widening it later rewrites the table"),
        "Use bigint",
    );
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    const R: Rule = Rule::PreferBigintOverSmallint;

    #[test]
    fn fires_on_smallint() {
        assert_eq!(run(R, "CREATE TABLE t (n smallint, m int)").len(), 1);
    }

    #[test]
    fn fixtures() {
        super::super::testing::fixtures(R);
    }
}
