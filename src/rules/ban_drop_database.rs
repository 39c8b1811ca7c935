//! ban-drop-database: DROP DATABASE.
use super::*;
use crate::sql::facts::*;

pub const DOC: &str = r#"## What it does
Flags `DROP DATABASE`.

## Why is this bad
A migration has no business dropping a database: everything in it is gone, irrecoverably.

## Example
```sql
DROP DATABASE analytics;
```

## Use instead
Do it by hand, deliberately, outside migrations.

## Rewrite safety
No rewrite.
"#;

pub fn check(f: &StatementFacts, cx: &Cx<'_>, out: &mut Vec<Finding>) {
    let _ = cx;
    if f.kind == StatementKind::DropDatabase {
        let name = f.targets.first().map(|t| t.to_string()).unwrap_or_default();
        out.push(Finding::new(
            Rule::BanDropDatabase,
            f,
            format!("DROP DATABASE {name} deletes the whole database"),
            "Drop databases by hand, outside migrations.".to_string(),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    const R: Rule = Rule::BanDropDatabase;

    #[test]
    fn fires() {
        assert_eq!(run(R, "DROP DATABASE x").len(), 1);
        assert!(run(R, "DROP SCHEMA x").is_empty());
    }

    #[test]
    fn fixtures() {
        super::super::testing::fixtures(R);
    }
}
