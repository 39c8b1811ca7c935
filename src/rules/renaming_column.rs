//! renaming-column: RENAME COLUMN.
use super::*;
use crate::sql::facts::*;

pub const DOC: &str = r#"## What it does
Flags `ALTER TABLE ... RENAME COLUMN` on an existing table, and renames of the columns of other relations: `ALTER TYPE ... RENAME ATTRIBUTE`, `ALTER VIEW` / `ALTER MATERIALIZED VIEW` / `ALTER FOREIGN TABLE ... RENAME COLUMN`.

## Why is this bad
Running application code uses the old name; every query naming it fails from the moment the migration commits until the new code is deployed everywhere.

## Example
```sql
ALTER TABLE orders RENAME COLUMN amount TO total;
```

## Use instead
Expand and contract: add the new column, write both, backfill, switch reads, drop the old column — or a view that exposes both names during the switch.

## Rewrite safety
No rewrite.
"#;

pub fn check(f: &StatementFacts, cx: &Cx<'_>, out: &mut Vec<Finding>) {
    flag_actions(
        f,
        cx,
        out,
        Rule::RenamingColumn,
        ActionKind::RenameColumn,
        |a, table| format!("RENAME COLUMN {} TO {} on {} breaks running code that uses the old name", column(a), new_name(a), cx.describe(table)),
        "Expand/contract: add the new column, dual-write, backfill, switch reads, drop the old one",
    );
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    const R: Rule = Rule::RenamingColumn;

    #[test]
    fn fires() {
        assert_eq!(run(R, "ALTER TABLE t RENAME COLUMN a TO b").len(), 1);
        assert_eq!(run(R, "ALTER TABLE t RENAME a TO b").len(), 1);
        assert!(run(R, "ALTER TABLE t RENAME TO u").is_empty());
    }

    #[test]
    fn columns_of_other_relations() {
        for sql in [
            "ALTER TYPE address RENAME ATTRIBUTE zip TO postcode",
            "ALTER FOREIGN TABLE remote_orders RENAME COLUMN a TO b",
            "ALTER VIEW order_totals RENAME COLUMN a TO b",
            "ALTER MATERIALIZED VIEW order_stats RENAME COLUMN a TO b",
        ] {
            assert_eq!(run(R, sql).len(), 1, "{sql}");
        }
    }

    #[test]
    fn fixtures() {
        super::super::testing::fixtures(R);
    }
}
