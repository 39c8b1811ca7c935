//! prefer-timestamptz: timestamp without time zone.
use super::*;

pub const DOC: &str = r#"## What it does
Flags `timestamp` (without time zone) columns.

## Why is this bad
A `timestamp` stores wall-clock time without the zone: values written from servers in different time zones (or across DST changes) cannot be compared.

## Example
```sql
CREATE TABLE t (created_at timestamp);
```

## Use instead
`timestamptz` (`timestamp with time zone`).

## Rewrite safety
No rewrite.
"#;

pub fn check(f: &StatementFacts, _cx: &Cx<'_>, out: &mut Vec<Finding>) {
    flag_column_types(
        f,
        out,
        Rule::PreferTimestamptz,
        |ty| ty.name == "timestamp",
        |c| format!("column {c} is timestamp without time zone"),
        "Use timestamptz",
    );
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    const R: Rule = Rule::PreferTimestamptz;

    #[test]
    fn fires_on_timestamp() {
        assert_eq!(
            run(R, "CREATE TABLE t (a timestamp, b timestamp with time zone, c timestamptz, d timestamp without time zone)").len(),
            2
        );
    }

    #[test]
    fn fixtures() {
        super::super::testing::fixtures(R);
    }
}
