//! renaming-table: RENAME TABLE.
use super::*;
use crate::sql::facts::*;

pub const DOC: &str = r#"## What it does
Flags `ALTER TABLE ... RENAME TO` on an existing table.

## Why is this bad
Running application code uses the old name; every query on it fails from the moment the migration commits.

## Example
```sql
ALTER TABLE orders RENAME TO purchases;
```

## Use instead
Create the new table (or a view with the new name over the old table), switch the code, then drop the old name.

## Rewrite safety
No rewrite.
"#;

pub fn check(f: &StatementFacts, cx: &Cx<'_>, out: &mut Vec<Finding>) {
    let Some((table, _)) = altered_table(f, cx) else { return };
    for a in &f.actions {
        if !matches!(a.kind, ActionKind::RenameTable) {
            continue;
        }
        let column = a.column.clone().unwrap_or_default();
        let new_name = a.new_name.clone().unwrap_or_default();
        let _ = (&column, &new_name);
        out.push(
            Finding::new(Rule::RenamingTable, f, format!("RENAME TABLE {} TO {new_name} breaks running code that uses the old name", cx.describe(table)), "Add a view with the new name, switch the code, then rename and drop the view".to_string())
                .at(a.span.clone())
                .lock(Some(a.lock)),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    const R: Rule = Rule::RenamingTable;

    #[test]
    fn fires() {
        assert_eq!(run(R, "ALTER TABLE t RENAME TO u").len(), 1);
        assert!(run(R, "ALTER TABLE t RENAME COLUMN a TO b").is_empty());
    }

    #[test]
    fn fixtures() {
        super::super::testing::fixtures(R);
    }
}
