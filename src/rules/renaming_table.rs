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
    flag_actions(
        f,
        cx,
        out,
        Rule::RenamingTable,
        ActionKind::RenameTable,
        |a, table| format!("RENAME TABLE {} TO {} breaks running code that uses the old name", cx.describe(table), new_name(a)),
        "Add a view with the new name, switch the code, then rename and drop the view",
    );
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
