//! ban-drop-not-null: DROP NOT NULL.
use super::*;
use crate::sql::facts::*;

pub const DOC: &str = r#"## What it does
Flags `ALTER COLUMN ... DROP NOT NULL`.

## Why is this bad
Code deployed before the change assumes the column is never NULL; the first NULL written by new code breaks it.

## Example
```sql
ALTER TABLE orders ALTER COLUMN note DROP NOT NULL;
```

## Use instead
Deploy code that copes with NULL first, then drop the constraint.

## Rewrite safety
No rewrite.
"#;

pub fn check(f: &StatementFacts, cx: &Cx<'_>, out: &mut Vec<Finding>) {
    let Some((table, _)) = altered_table(f, cx) else { return };
    for a in &f.actions {
        if !matches!(a.kind, ActionKind::DropNotNull) {
            continue;
        }
        let column = a.column.clone().unwrap_or_default();
        let new_name = a.new_name.clone().unwrap_or_default();
        let _ = (&column, &new_name);
        out.push(
            Finding::new(Rule::BanDropNotNull, f, format!("DROP NOT NULL on {table}.{column} lets NULLs reach code that assumes there are none"), "Deploy code that handles NULL in this column first".to_string())
                .at(a.span.clone())
                .lock(Some(a.lock)),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    const R: Rule = Rule::BanDropNotNull;

    #[test]
    fn fires() {
        assert_eq!(run(R, "ALTER TABLE t ALTER COLUMN a DROP NOT NULL").len(), 1);
        assert!(run(R, "ALTER TABLE t ALTER COLUMN a DROP DEFAULT").is_empty());
    }

    #[test]
    fn fixtures() {
        super::super::testing::fixtures(R);
    }
}
