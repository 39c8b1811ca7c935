//! ban-drop-table: DROP TABLE of an existing table.
use super::*;
use crate::sql::facts::*;

pub const DOC: &str = r#"## What it does
Flags `DROP TABLE` of a table not created in the same transaction.

## Why is this bad
Running code that still uses the table fails, and the data is gone: a rollback of the release cannot bring it back.

## Example
```sql
DROP TABLE legacy_orders;
```

## Use instead
Stop using the table in a release, rename it aside (or keep a backup) for a while, then drop it.

## Rewrite safety
No rewrite.
"#;

pub fn check(f: &StatementFacts, cx: &Cx<'_>, out: &mut Vec<Finding>) {
    if f.kind != StatementKind::DropTable {
        return;
    }
    let existing: Vec<String> = f
        .targets
        .iter()
        .filter(|t| cx.size(t) != Size::New)
        .map(|t| cx.describe(t))
        .collect();
    if existing.is_empty() {
        return;
    }
    out.push(Finding::new(
        Rule::BanDropTable,
        f,
        format!(
            "DROP TABLE {} deletes its data and breaks code that still uses it",
            existing.join(", ")
        ),
        "Stop using the table in a release first; keep a backup; drop it later.".to_string(),
    ));
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    const R: Rule = Rule::BanDropTable;

    #[test]
    fn fires_unless_new() {
        assert_eq!(run(R, "DROP TABLE IF EXISTS a, b CASCADE").len(), 1);
        assert!(run(R, "BEGIN; CREATE TABLE a (x int); DROP TABLE a; COMMIT;").is_empty());
    }

    #[test]
    fn fixtures() {
        super::super::testing::fixtures(R);
    }
}
