//! adding-foreign-key-constraint: ADD FOREIGN KEY without NOT VALID.
use super::*;
use crate::sql::facts::*;

pub const DOC: &str = r#"## What it does
Flags `ADD FOREIGN KEY` (or `ADD COLUMN ... REFERENCES`) without `NOT VALID` on an existing table.

## Why is this bad
Adding a foreign key takes SHARE ROW EXCLUSIVE on both tables and scans the referencing table to validate every row: writes to both tables stop until the scan finishes.

## Example
```sql
ALTER TABLE orders ADD CONSTRAINT orders_customer_fk FOREIGN KEY (customer_id) REFERENCES customers (id);
```

## Use instead
```sql
ALTER TABLE orders ADD CONSTRAINT orders_customer_fk FOREIGN KEY (customer_id) REFERENCES customers (id) NOT VALID;
-- commit, then:
ALTER TABLE orders VALIDATE CONSTRAINT orders_customer_fk;
```
Rails: `add_foreign_key ..., validate: false` then `validate_foreign_key`.

## Rewrite safety
pgwarden (the proxy; `pgwarden check` only shows the first step) runs `ADD CONSTRAINT ... FOREIGN KEY` as two steps:
`ADD CONSTRAINT name ... NOT VALID` (SHARE ROW EXCLUSIVE for an instant, no scan), then
`VALIDATE CONSTRAINT name` (SHARE UPDATE EXCLUSIVE: reads and writes go on during the scan). An
unnamed constraint gets the name PostgreSQL would give it (`orders_customer_id_fkey`). While the
steps run, new and updated rows are already checked; existing rows are checked by the VALIDATE.
Inside a transaction block the in-place part runs where the statement was; the rest are completion steps pgwarden runs on the same connection after the client's COMMIT succeeded and before COMMIT's answer reaches the client (a ROLLBACK discards them). If one fails, the client gets an ErrorResponse with SQLSTATE `PW002` in place of COMMIT's CommandComplete: the transaction committed, which step failed with the server's error, what remains, and the statement that finishes it. Outside a transaction block the steps run one after another and the client gets one answer; a failed step undoes the earlier ones and its own error is the answer. After a failed VALIDATE past COMMIT the constraint stays NOT VALID. An inline
`REFERENCES` in `ADD COLUMN` has no rewrite (split it into ADD COLUMN and ADD CONSTRAINT).
"#;

pub fn check(f: &StatementFacts, cx: &Cx<'_>, out: &mut Vec<Finding>) {
    let Some((table, size)) = altered_table(f, cx) else { return };
    for a in &f.actions {
        let (constraint, inline) = match (&a.constraint, &a.column_def) {
            (Some(c), _) if c.kind == ConstraintKind::ForeignKey => (c, false),
            (None, Some(col)) => match col
                .constraints
                .iter()
                .find(|c| c.kind == ConstraintKind::ForeignKey)
            {
                Some(c) => (c, true),
                None => continue,
            },
            _ => continue,
        };
        if constraint.not_valid {
            continue;
        }
        let referenced = constraint.references.clone();
        // The validation scans the referencing table; both tables are locked for as long as
        // that scan takes. So the referencing table's size decides (a FK from a 0-row table
        // to a 1M-row one validates in milliseconds).
        let names = match &referenced {
            Some(r) => format!("{table} and {}", cx.describe(r)),
            None => table.to_string(),
        };
        let mut finding = Finding::new(
            Rule::AddingForeignKeyConstraint,
            f,
            format!(
                "ADD FOREIGN KEY blocks all writes to {names} while every row of {} is validated",
                cx.describe(table)
            ),
            if inline {
                "Add the column first, then ADD CONSTRAINT ... FOREIGN KEY ... NOT VALID, and \
                 VALIDATE CONSTRAINT in a later transaction."
                    .to_string()
            } else {
                "Append NOT VALID, commit, then VALIDATE CONSTRAINT in a separate transaction \
                 (Alembic: op.create_foreign_key(..., postgresql_not_valid=True), then \
                 op.execute(\"ALTER TABLE ... VALIDATE CONSTRAINT ...\") in a later revision; \
                 Rails: validate: false, then validate_foreign_key)."
                    .to_string()
            },
        )
        .at(a.span.clone())
        .lock(Some(LockMode::ShareRowExclusive))
        .sized(size, cx);
        if !inline {
            finding = finding.rewrite(Some(TextEdit::insert(constraint.span.end, " NOT VALID")));
        }
        out.push(finding);
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    const R: Rule = Rule::AddingForeignKeyConstraint;

    #[test]
    fn rewrite_appends_not_valid() {
        let fixed = assert_rewrite(
            R,
            "ALTER TABLE o ADD CONSTRAINT fk FOREIGN KEY (c) REFERENCES cust (id) ON DELETE CASCADE;",
        );
        assert!(fixed.ends_with("ON DELETE CASCADE NOT VALID;"), "{fixed}");
    }

    #[test]
    fn inline_reference_fires_without_rewrite() {
        let f = run(R, "ALTER TABLE o ADD COLUMN c int REFERENCES cust (id)");
        assert_eq!(f.len(), 1);
        assert!(f[0].rewrite.is_none());
    }

    #[test]
    fn the_referencing_table_is_what_is_scanned() {
        let c = with_rows(with_rows(ctx(), "o", 10), "cust", 5_000_000);
        let f = run_with(R, "ALTER TABLE o ADD CONSTRAINT fk FOREIGN KEY (c) REFERENCES cust (id)", &c);
        assert!(f[0].small_table, "a 10-row table validates at once");
        assert!(f[0].message.contains("every row of o (10 rows)"), "{}", f[0].message);
        assert!(f[0].message.contains("cust (~5.0M rows)"), "{}", f[0].message);
        let c = with_rows(with_rows(ctx(), "o", 5_000_000), "cust", 10);
        let f = run_with(R, "ALTER TABLE o ADD CONSTRAINT fk FOREIGN KEY (c) REFERENCES cust (id)", &c);
        assert!(!f[0].small_table);
        assert!(f[0].message.contains("every row of o (~5.0M rows)"), "{}", f[0].message);
    }

    #[test]
    fn fixtures() {
        super::super::testing::fixtures(R);
    }
}
