//! ban-drop-column: DROP COLUMN.
use super::*;
use crate::sql::facts::*;

pub const DOC: &str = r#"## What it does
Flags `ALTER TABLE ... DROP COLUMN` on an existing table, and the same drop on the columns of other relations: `ALTER TYPE ... DROP ATTRIBUTE` (composite types), `ALTER FOREIGN TABLE ... DROP COLUMN`.

## Why is this bad
Application servers still running the previous release keep selecting and inserting the column: their queries fail from the moment the migration commits (and ORMs that list columns explicitly fail even on SELECT).

## Example
```sql
ALTER TABLE orders DROP COLUMN legacy_code;
```

## Use instead
Deploy code that no longer reads or writes the column first (Rails `ignored_columns`, Django `SeparateDatabaseAndState`), then drop it in a later migration.

## Rewrite safety
No rewrite.
"#;

pub fn check(f: &StatementFacts, cx: &Cx<'_>, out: &mut Vec<Finding>) {
    flag_actions(
        f,
        cx,
        out,
        Rule::BanDropColumn,
        ActionKind::DropColumn,
        |a, table| format!("DROP COLUMN {} on {} breaks application code that still reads or writes it", column(a), cx.describe(table)),
        "Deploy code that ignores the column first, then drop it in a later release",
    );
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    const R: Rule = Rule::BanDropColumn;

    #[test]
    fn fires() {
        assert_eq!(run(R, "ALTER TABLE t DROP COLUMN a").len(), 1);
        assert!(run(R, "BEGIN; CREATE TABLE t (a int); ALTER TABLE t DROP COLUMN a; COMMIT;").is_empty());
    }

    #[test]
    fn columns_of_other_relations() {
        for sql in [
            "ALTER TYPE address DROP ATTRIBUTE zip",
            "ALTER FOREIGN TABLE remote_orders DROP COLUMN legacy",
        ] {
            assert_eq!(run(R, sql).len(), 1, "{sql}");
        }
        assert!(run(R, "ALTER TYPE mood ADD VALUE 'meh'").is_empty());
    }

    #[test]
    fn created_here_ends_with_rollback_and_starts_with_select_into() {
        // The CREATE was rolled back: the table that is altered later is an existing one.
        for end in ["ROLLBACK", "ROLLBACK AND CHAIN"] {
            let sql = format!("BEGIN; CREATE TABLE t (a int); {end}; ALTER TABLE t DROP COLUMN a;");
            assert_eq!(run(R, &sql).len(), 1, "{end}");
        }
        // Committed, or created before the rolled-back transaction: still new to this file.
        assert!(run(R, "BEGIN; CREATE TABLE t (a int); COMMIT; ALTER TABLE t DROP COLUMN a;").is_empty());
        assert!(run(R, "CREATE TABLE t (a int); BEGIN; ROLLBACK; ALTER TABLE t DROP COLUMN a;").is_empty());
        assert!(run(R, "SELECT a, b INTO t FROM orders; ALTER TABLE t DROP COLUMN a;").is_empty());
    }

    #[test]
    fn fixtures() {
        super::super::testing::fixtures(R);
    }
}
