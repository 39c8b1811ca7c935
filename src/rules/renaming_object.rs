//! renaming-object: RENAME of a view, sequence, function, type, schema, index, constraint, role, ... breaks code using the old name.
use super::objects::*;
use super::*;
use crate::sql::facts::*;

pub const DOC: &str = r#"## What it does
Flags `RENAME TO` of objects other than tables and columns (views, materialized views, foreign tables, sequences, functions, procedures, aggregates, types, domains, schemas, indexes, triggers, policies, roles, databases) and `RENAME CONSTRAINT`.

## Why is this bad
Running code, other migrations and tooling (`ON CONFLICT ON CONSTRAINT x`, index hints, `SET ROLE`, connection strings) use the old name and fail once the rename commits.

## Example
```sql
ALTER VIEW order_totals RENAME TO customer_totals;
```

## Use instead
Create the object under the new name beside the old (a view, a wrapper function), switch the code, then drop the old name. Table renames are renaming-table's, column renames renaming-column's, enum labels rename-enum-value's.

## Differences from squawk
squawk also reports `ALTER TYPE ... RENAME VALUE` under this id; pgwarden reports it as rename-enum-value (one finding per hazard), so an ignore of renaming-object does not cover it.

## Rewrite safety
No rewrite.
"#;

pub fn check(f: &StatementFacts, cx: &Cx<'_>, out: &mut Vec<Finding>) {
    let pick = |f: &StatementFacts, a: &ActionFacts| match a.kind {
        ActionKind::Rename => Some("RENAME TO"),
        // ALTER FOREIGN TABLE ... RENAME TO (a plain table's rename is renaming-table's).
        ActionKind::RenameTable if f.kind == StatementKind::AlterObject => Some("RENAME TO"),
        ActionKind::RenameConstraint => Some("RENAME CONSTRAINT"),
        _ => None,
    };
    flag_sub_commands(
        f,
        cx,
        out,
        Rule::RenamingObject,
        pick,
        "breaks running code that uses the old name",
        "Add the new name beside the old one, switch the code, then drop the old name",
    );
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    const R: Rule = Rule::RenamingObject;

    #[test]
    fn fires_on_object_renames_not_tables_or_columns() {
        for sql in [
            "ALTER VIEW v RENAME TO w",
            "ALTER SEQUENCE s RENAME TO s2",
            "ALTER INDEX i RENAME TO j",
            "ALTER FUNCTION f(int) RENAME TO g",
            "ALTER TYPE ty RENAME TO ty2",
            "ALTER SCHEMA a RENAME TO b",
            "ALTER ROLE app RENAME TO app2",
            "ALTER TABLE t RENAME CONSTRAINT c TO d",
            "ALTER FOREIGN TABLE ft RENAME TO ft2",
        ] {
            assert_eq!(run(R, sql).len(), 1, "{sql}");
        }
        assert!(run(R, "ALTER TABLE t RENAME TO u").is_empty());
        assert!(run(R, "ALTER TABLE t RENAME COLUMN a TO b").is_empty());
    }

    #[test]
    fn fixtures() {
        super::super::testing::fixtures(R);
    }
}
