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

In `pgwarden check` a `VALIDATE CONSTRAINT` on the same table earlier in the file is taken as the cross-migration form of this recipe (the CHECK added NOT VALID by an earlier migration, which a file check cannot see): the finding stays, at warn instead of reject. The proxy reads the constraint from the catalog instead. PostgreSQL 18's `ADD CONSTRAINT nn NOT NULL col` scans the same way and is flagged unless it is `NOT VALID`.

## Rewrite safety
pgwarden (the proxy) runs `ALTER COLUMN c SET NOT NULL` (alone in its ALTER TABLE) as four
steps: `ADD CONSTRAINT pgwarden_c_not_null CHECK (c IS NOT NULL) NOT VALID`, `VALIDATE
CONSTRAINT` (SHARE UPDATE EXCLUSIVE: writes go on during the scan), `SET NOT NULL` (PostgreSQL 12+
proves it from the validated CHECK: no scan, ACCESS EXCLUSIVE for an instant), `DROP CONSTRAINT
pgwarden_c_not_null`. While they run, the helper CHECK already refuses new NULLs. Inside a transaction block the in-place part runs where the statement was; the rest are completion steps pgwarden runs on the same connection after the client's COMMIT succeeded and before COMMIT's answer reaches the client (a ROLLBACK discards them). If one fails, the client gets an ErrorResponse with SQLSTATE `PW002` in place of COMMIT's CommandComplete: the transaction committed, which step failed with the server's error, what remains, and the statement that finishes it. Outside a transaction block the steps run one after another and the client gets one answer; a failed step undoes the earlier ones and its own error is the answer.
After a failure pgwarden drops its helper constraint: the column stays nullable.
"#;

pub fn check(f: &StatementFacts, cx: &Cx<'_>, out: &mut Vec<Finding>) {
    let Some((table, size)) = altered_table(f, cx) else { return };
    for a in &f.actions {
        let (col, what) = match a.kind {
            ActionKind::SetNotNull => match &a.column {
                Some(col) => (col, "SET NOT NULL"),
                None => continue,
            },
            // PG 18: `ADD CONSTRAINT nn NOT NULL col` scans like SET NOT NULL, unless NOT VALID.
            ActionKind::AddConstraint(ConstraintKind::NotNull) => {
                match a.constraint.as_ref().filter(|c| !c.not_valid) {
                    Some(ConstraintFacts { columns, .. }) if columns.len() == 1 => {
                        (&columns[0], "ADD CONSTRAINT ... NOT NULL")
                    }
                    _ => continue,
                }
            }
            _ => continue,
        };
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
        // File mode cannot see a CHECK defined by an earlier migration. A VALIDATE on this
        // table earlier in the file is the documented cross-migration recipe: warn, not reject.
        let recipe = cx.ctx.file_mode
            && a.kind == ActionKind::SetNotNull
            && cx.state.validated_tables.iter().any(|t| t.same_as(table));
        let mut message = format!(
            "{what} on {table}.{col} scans {} under an ACCESS EXCLUSIVE lock: no reads or \
             writes until the scan finishes",
            cx.describe(table)
        );
        if recipe {
            message.push_str(&format!(
                " (unless the VALIDATE CONSTRAINT earlier in this file validated a \
                 CHECK ({col} IS NOT NULL) from an earlier migration, which check cannot see)"
            ));
        }
        let mut finding = Finding::new(
            Rule::AddingNotNullableField,
            f,
            message,
            format!(
                "ADD CONSTRAINT {col}_not_null CHECK ({col} IS NOT NULL) NOT VALID; then \
                 VALIDATE CONSTRAINT in its own transaction; then SET NOT NULL (no scan on \
                 PostgreSQL 12+); then DROP the CHECK."
            ),
        )
        .at(a.span.clone())
        .lock(Some(a.lock))
        .sized(size, cx);
        finding.small_table |= recipe;
        out.push(finding);
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
    fn pg18_not_null_constraint_fires_unless_not_valid() {
        assert_eq!(run(R, "ALTER TABLE t ADD CONSTRAINT nn NOT NULL s").len(), 1);
        assert!(run(R, "ALTER TABLE t ADD CONSTRAINT nn NOT NULL s NOT VALID").is_empty());
    }

    #[test]
    fn cross_migration_recipe_is_capped_at_warn() {
        let sql = "ALTER TABLE orders VALIDATE CONSTRAINT orders_status_nn;\n\
                   ALTER TABLE orders ALTER COLUMN status SET NOT NULL;";
        let found = run(R, sql);
        assert_eq!(found.len(), 1);
        assert!(found[0].small_table, "capped at warn");
        assert!(found[0].message.contains("CHECK (status IS NOT NULL)"));
        // A VALIDATE on another table proves nothing about this one.
        let other = "ALTER TABLE users VALIDATE CONSTRAINT x;\n\
                     ALTER TABLE orders ALTER COLUMN status SET NOT NULL;";
        assert!(!run(R, other)[0].small_table);
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
