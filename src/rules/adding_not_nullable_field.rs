//! adding-not-nullable-field: ALTER COLUMN SET NOT NULL.
use super::*;
use crate::sql::facts::*;

pub const DOC: &str = r#"## What it does
Flags `ALTER COLUMN ... SET NOT NULL` on an existing table, unless a validated `CHECK (col IS NOT NULL)` already proves it (PostgreSQL 12+ then skips the scan).

## Why is this bad
Postgres scans the whole table to check for NULLs while holding ACCESS EXCLUSIVE: no reads, no writes for the duration of the scan.

## Example
```sql
ALTER TABLE orders ALTER COLUMN status SET NOT NULL;
```

## Use instead
Four steps, the VALIDATE in its own transaction:
```sql
ALTER TABLE orders ADD CONSTRAINT orders_status_nn CHECK (status IS NOT NULL) NOT VALID;
ALTER TABLE orders VALIDATE CONSTRAINT orders_status_nn;
ALTER TABLE orders ALTER COLUMN status SET NOT NULL;
ALTER TABLE orders DROP CONSTRAINT orders_status_nn;
```

## Rewrite safety
No rewrite (four statements in separate transactions).
"#;

pub fn check(f: &StatementFacts, cx: &Cx<'_>, out: &mut Vec<Finding>) {
    let Some((table, size)) = altered_table(f, cx) else { return };
    for a in &f.actions {
        if a.kind != ActionKind::SetNotNull {
            continue;
        }
        let Some(col) = &a.column else { continue };
        let proven = cx.ctx.catalog.has_not_null_check(table, col)
            || cx
                .state
                .validated_not_null
                .iter()
                .any(|(t, c)| t.same_as(table) && c == col);
        if proven && cx.version_at_least(12) != Some(false) {
            continue;
        }
        // Already NOT NULL (the server said so before this text ran, and nothing earlier in
        // the text dropped it): the server does nothing. Alembic emits this for every
        // `nullable=False`.
        let dropped_earlier = cx.earlier.iter().filter_map(|s| s.facts()).any(|e| {
            e.table.as_ref().is_some_and(|t| t.same_as(table))
                && e.actions.iter().any(|x| {
                    x.column.as_deref() == Some(col.as_str())
                        && matches!(x.kind, ActionKind::DropNotNull | ActionKind::AlterColumnType)
                })
        }) || f.actions.iter().any(|x| {
            x.column.as_deref() == Some(col.as_str()) && x.kind == ActionKind::DropNotNull
        });
        if cx.ctx.catalog.is_not_null(table, col) && !dropped_earlier {
            continue;
        }
        out.push(
            Finding::new(
                Rule::AddingNotNullableField,
                f,
                format!(
                    "SET NOT NULL on {}.{col} scans {} under an ACCESS EXCLUSIVE lock: no reads or \
                     writes until the scan finishes",
                    table,
                    cx.describe(table)
                ),
                format!(
                    "ADD CONSTRAINT {col}_not_null CHECK ({col} IS NOT NULL) NOT VALID; then \
                     VALIDATE CONSTRAINT in its own transaction; then SET NOT NULL (no scan on \
                     PostgreSQL 12+); then DROP the CHECK."
                ),
            )
            .at(a.span.clone())
            .lock(Some(a.lock))
            .sized(size, cx),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    const R: Rule = Rule::AddingNotNullableField;

    #[test]
    fn fires_without_proof() {
        assert_eq!(run(R, "ALTER TABLE t ALTER COLUMN s SET NOT NULL").len(), 1);
    }

    #[test]
    fn safe_recipe_in_the_same_file_passes() {
        let sql = "ALTER TABLE orders ADD CONSTRAINT nn CHECK (status IS NOT NULL) NOT VALID;\n\
                   ALTER TABLE orders VALIDATE CONSTRAINT nn;\n\
                   ALTER TABLE orders ALTER COLUMN status SET NOT NULL;";
        assert!(run(R, sql).is_empty());
    }

    #[test]
    fn live_check_constraint_passes() {
        let mut c = ctx();
        c.catalog.not_null_checks.insert(("t".into(), "s".into()));
        assert!(run_with(R, "ALTER TABLE t ALTER COLUMN s SET NOT NULL", &c).is_empty());
    }

    #[test]
    fn fixtures() {
        super::super::testing::fixtures(R);
    }
}
