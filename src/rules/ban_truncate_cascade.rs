//! ban-truncate-cascade: TRUNCATE ... CASCADE.
use super::*;
use crate::sql::facts::*;

pub const DOC: &str = r#"## What it does
Flags `TRUNCATE ... CASCADE`.

## Why is this bad
CASCADE also empties every table that references the truncated ones through a foreign key, and the tables referencing those, recursively — data the author never named.

## Example
```sql
TRUNCATE accounts CASCADE;
```

## Use instead
Name every table to empty explicitly: `TRUNCATE accounts, sessions, invoices;` (it fails loudly if one is missing).

## Rewrite safety
No rewrite.
"#;

pub fn check(f: &StatementFacts, cx: &Cx<'_>, out: &mut Vec<Finding>) {
    let _ = cx;
    if f.kind == StatementKind::Truncate && f.flags.cascade {
        let names: Vec<String> = f.targets.iter().map(|t| t.to_string()).collect();
        out.push(Finding::new(
            Rule::BanTruncateCascade,
            f,
            format!(
                "TRUNCATE {} CASCADE also empties every table that references them, recursively",
                names.join(", ")
            ),
            "List every table to truncate explicitly, without CASCADE.".to_string(),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    const R: Rule = Rule::BanTruncateCascade;

    #[test]
    fn cascade_fires() {
        assert_eq!(run(R, "TRUNCATE a CASCADE").len(), 1);
        assert!(run(R, "TRUNCATE a, b").is_empty());
    }

    #[test]
    fn fixtures() {
        super::super::testing::fixtures(R);
    }
}
