//! disallowed-unique-constraint: ADD UNIQUE not USING INDEX.
use super::*;
use crate::sql::facts::*;

pub const DOC: &str = r#"## What it does
Flags `ADD UNIQUE` on an existing table that is not `USING INDEX` (also inline in `ADD COLUMN`).

## Why is this bad
Postgres builds the UNIQUE index while holding ACCESS EXCLUSIVE on the table: no reads, no writes until the build finishes.

## Example
```sql
ALTER TABLE account ADD CONSTRAINT account_email_key UNIQUE (email);
```

## Use instead
```sql
CREATE UNIQUE INDEX CONCURRENTLY account_email_key ON account (email);
ALTER TABLE account ADD CONSTRAINT account_email_key UNIQUE USING INDEX account_email_key;
```

## Rewrite safety
pgwarden (the proxy) runs `ADD [CONSTRAINT name] UNIQUE (cols)` as `CREATE UNIQUE INDEX
CONCURRENTLY name ON t (cols)` (writes go on during the build), then `ADD CONSTRAINT name UNIQUE
USING INDEX name` (ACCESS EXCLUSIVE for an instant). Its options go where they give the same end
state: `INCLUDE (...)`, `NULLS NOT DISTINCT`, `WITH (...)` and `USING INDEX TABLESPACE ts` (as
`TABLESPACE ts`) to the index build; `DEFERRABLE` / `INITIALLY ...` to the `USING INDEX` step. An
unnamed constraint gets PostgreSQL's name (`orders_ref_key`; INCLUDE columns are part of it:
`orders_ref_note_key`). While the steps run there is no constraint yet: duplicates written
meanwhile make the build fail (as they would a direct run). Inside a
transaction block both are completion steps; a later statement of the same transaction that uses
the index or a foreign key referencing the table is refused. Inside a transaction block the in-place part runs where the statement was; the rest are completion steps pgwarden runs on the same connection after the client's COMMIT succeeded and before COMMIT's answer reaches the client (a ROLLBACK discards them). If one fails, the client gets an ErrorResponse with SQLSTATE `PW002` in place of COMMIT's CommandComplete: the transaction committed, which step failed with the server's error, what remains, and the statement that finishes it. Outside a transaction block the steps run one after another and the client gets one answer; a failed step undoes the earlier ones and its own error is the answer. After a failure (duplicates, a
cancel, a statement_timeout) pgwarden drops the INVALID index its build left (never an index it did
not create). An ALTER TABLE with several sub-commands is refused whole (nothing applied).
"#;

pub fn check(f: &StatementFacts, cx: &Cx<'_>, out: &mut Vec<Finding>) {
    let Some((table, size)) = altered_table(f, cx) else { return };
    for a in &f.actions {
        let hit = match (&a.constraint, &a.column_def) {
            (Some(c), _) => c.kind == ConstraintKind::Unique && !c.using_index,
            (None, Some(col)) => col.constraints.iter().any(|c| c.kind == ConstraintKind::Unique),
            _ => false,
        };
        if !hit {
            continue;
        }
        out.push(
            Finding::new(
                Rule::DisallowedUniqueConstraint,
                f,
                format!(
                    "ADD UNIQUE builds an index on {} under an ACCESS EXCLUSIVE lock: no reads or \
                     writes until the build finishes",
                    cx.describe(table)
                ),
                format!(
                    "CREATE UNIQUE INDEX CONCURRENTLY first ({OUTSIDE_TX_RECIPE}), then ADD \
                     CONSTRAINT ... UNIQUE USING INDEX."
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

    const R: Rule = Rule::DisallowedUniqueConstraint;

    #[test]
    fn fires_unless_using_index() {
        assert_eq!(run(R, "ALTER TABLE t ADD CONSTRAINT c UNIQUE (a)").len(), 1);
        assert_eq!(run(R, "ALTER TABLE t ADD COLUMN x int UNIQUE").len(), 1);
        assert!(run(R, "ALTER TABLE t ADD CONSTRAINT c UNIQUE USING INDEX i").is_empty());
        assert!(run(R, "BEGIN; CREATE TABLE t (a int); ALTER TABLE t ADD CONSTRAINT c UNIQUE (a); COMMIT;").is_empty());
    }

    #[test]
    fn fixtures() {
        super::super::testing::fixtures(R);
    }
}
