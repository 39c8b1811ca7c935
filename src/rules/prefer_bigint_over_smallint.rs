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

pub fn check(f: &StatementFacts, cx: &Cx<'_>, out: &mut Vec<Finding>) {
    let _ = cx;
    for (column, ty) in declared_types(f) {
        let name = ty.name.as_str();
        if !(matches!(name, "int2" | "serial2")) {
            continue;
        }
        let _ = name;
        out.push(
            Finding::new(Rule::PreferBigintOverSmallint, f, format!("column {column} is a 16-bit integer: it overflows at 32,767 and widening it later rewrites the table"), "Use bigint".to_string())
                .at(ty.span.clone()),
        );
    }
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
