//! prefer-bigint-over-int: integer columns.
use super::*;

pub const DOC: &str = r#"## What it does
Flags `integer` / `int` / `serial` columns.

## Why is this bad
A 32-bit key runs out at 2,147,483,647; changing the type later rewrites the table under ACCESS EXCLUSIVE.

## Example
```sql
CREATE TABLE events (id serial PRIMARY KEY);
```

## Use instead
`bigint` / `bigserial` (or `bigint GENERATED ... AS IDENTITY`).

## Rewrite safety
No rewrite.
"#;

pub fn check(f: &StatementFacts, _cx: &Cx<'_>, out: &mut Vec<Finding>) {
    flag_column_types(
        f,
        out,
        Rule::PreferBigintOverInt,
        |ty| matches!(ty.name.as_str(), "int4" | "serial4"),
        |c| format!("column {c} is a 32-bit integer: it overflows at 2^31 and widening it later rewrites the table"),
        "Use bigint",
    );
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    const R: Rule = Rule::PreferBigintOverInt;

    #[test]
    fn fires_on_int() {
        assert_eq!(run(R, "CREATE TABLE t (id int, b bigint)").len(), 1);
        assert_eq!(run(R, "ALTER TABLE t ADD COLUMN c serial").len(), 1);
    }

    #[test]
    fn fixtures() {
        super::super::testing::fixtures(R);
    }
}
