//! constraint-missing-not-valid: ADD CHECK without NOT VALID; NOT VALID and VALIDATE in one transaction.
use super::*;
use crate::sql::facts::*;

pub const DOC: &str = r#"## What it does
Flags `ADD CONSTRAINT ... CHECK` without `NOT VALID` on an existing table, and `VALIDATE CONSTRAINT` in the same transaction that added the constraint `NOT VALID`.

## Why is this bad
Adding a CHECK scans every row while holding ACCESS EXCLUSIVE. `NOT VALID` skips the scan; `VALIDATE` then checks the rows under SHARE UPDATE EXCLUSIVE, which blocks neither reads nor writes — but only if it runs in a later transaction: in the same one, the ACCESS EXCLUSIVE lock from the ADD is still held during the scan.

## Example
```sql
ALTER TABLE orders ADD CONSTRAINT orders_amount_positive CHECK (amount > 0);
```

## Use instead
```sql
ALTER TABLE orders ADD CONSTRAINT orders_amount_positive CHECK (amount > 0) NOT VALID;
-- commit, then:
ALTER TABLE orders VALIDATE CONSTRAINT orders_amount_positive;
```

## Rewrite safety
pgwarden (the proxy; `pgwarden check` only shows the first step) runs `ADD [CONSTRAINT name] CHECK` as
`ADD CONSTRAINT name CHECK (...) NOT VALID` (ACCESS EXCLUSIVE for an instant, no scan), then
`VALIDATE CONSTRAINT name` (SHARE UPDATE EXCLUSIVE). While the steps run, new and updated rows
are already checked. Inside a transaction block the in-place part runs where the statement was; the rest are completion steps pgwarden runs on the same connection after the client's COMMIT succeeded and before COMMIT's answer reaches the client (a ROLLBACK discards them). If one fails, the client gets an ErrorResponse with SQLSTATE `PW002` in place of COMMIT's CommandComplete: the transaction committed, which step failed with the server's error, what remains, and the statement that finishes it. Outside a transaction block the steps run one after another and the client gets one answer; a failed step undoes the earlier ones and its own error is the answer. After a failed VALIDATE past COMMIT the constraint stays NOT
VALID. An unnamed CHECK is added `NOT VALID` still unnamed, so the server names it by its own
rule (`orders_amount_check` when the expression reads one column, `orders_check` otherwise,
`...1`, `...2` on a collision, cut to 63 bytes); pgwarden reads that name back from the catalog
and validates it under it. An ALTER TABLE with several sub-commands is refused whole (nothing
applied): give the CHECK an ALTER TABLE of its own.
"#;

pub fn check(f: &StatementFacts, cx: &Cx<'_>, out: &mut Vec<Finding>) {
    let Some((table, size)) = altered_table(f, cx) else { return };
    for a in &f.actions {
        // `ADD COLUMN c int CHECK (...)`: the new constraint is checked on every existing row,
        // under the same lock, and an inline constraint cannot be NOT VALID.
        let inline = a.column_def.iter().flat_map(|c| &c.constraints);
        for c in inline.filter(|c| c.kind == ConstraintKind::Check) {
            out.push(
                Finding::new(
                    Rule::ConstraintMissingNotValid,
                    f,
                    format!(
                        "ADD COLUMN with an inline CHECK scans {} under an ACCESS EXCLUSIVE lock: \
                         no reads or writes until every row is checked",
                        cx.describe(table)
                    ),
                    "Add the column without the CHECK; then ADD CONSTRAINT ... CHECK (...) NOT \
                     VALID and VALIDATE CONSTRAINT in a later transaction (Alembic: \
                     op.create_check_constraint(...) followed by op.execute(\"ALTER TABLE ... \
                     VALIDATE CONSTRAINT ...\") in the next revision)."
                        .to_string(),
                )
                .at(c.span.clone())
                .lock(Some(a.lock))
                .sized(size, cx),
            );
        }
        match (&a.kind, &a.constraint) {
            (ActionKind::AddConstraint(ConstraintKind::Check), Some(c)) if !c.not_valid => {
                out.push(
                    Finding::new(
                        Rule::ConstraintMissingNotValid,
                        f,
                        format!(
                            "ADD CHECK scans {} under an ACCESS EXCLUSIVE lock: no reads or writes \
                             until every row is checked",
                            cx.describe(table)
                        ),
                        "Add it NOT VALID, commit, then VALIDATE CONSTRAINT in a separate \
                         transaction (SHARE UPDATE EXCLUSIVE: reads and writes continue)."
                            .to_string(),
                    )
                    .at(a.span.clone())
                    .lock(Some(a.lock))
                    .rewrite(Some(TextEdit::insert(c.span.end, " NOT VALID")))
                    .sized(size, cx),
                );
            }
            (ActionKind::ValidateConstraint, _) => {
                let Some(name) = &a.constraint_name else { continue };
                if cx.state.in_transaction() && cx.state.not_valid_added.contains(name) {
                    out.push(
                        Finding::new(
                            Rule::ConstraintMissingNotValid,
                            f,
                            format!(
                                "VALIDATE CONSTRAINT {name} runs in the transaction that added it \
                                 NOT VALID: the ACCESS EXCLUSIVE lock on {} is held for the whole scan",
                                cx.describe(table)
                            ),
                            "COMMIT after the ADD ... NOT VALID and VALIDATE in a new transaction."
                                .to_string(),
                        )
                        .at(a.span.clone())
                        .lock(Some(LockMode::AccessExclusive))
                        .sized(size, cx),
                    );
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    const R: Rule = Rule::ConstraintMissingNotValid;

    #[test]
    fn rewrite_appends_not_valid() {
        let fixed = assert_rewrite(R, "ALTER TABLE t ADD CONSTRAINT c CHECK (a > 0);");
        assert_eq!(fixed, "ALTER TABLE t ADD CONSTRAINT c CHECK (a > 0) NOT VALID;");
    }

    #[test]
    fn validate_in_same_transaction_fires() {
        let sql = "BEGIN; ALTER TABLE t ADD CONSTRAINT c CHECK (a > 0) NOT VALID; \
                   ALTER TABLE t VALIDATE CONSTRAINT c; COMMIT;";
        assert_eq!(run(R, sql).len(), 1);
        let sql = "BEGIN; ALTER TABLE t ADD CONSTRAINT c CHECK (a > 0) NOT VALID; COMMIT; \
                   ALTER TABLE t VALIDATE CONSTRAINT c;";
        assert!(run(R, sql).is_empty());
    }

    #[test]
    fn fixtures() {
        super::super::testing::fixtures(R);
    }
}
