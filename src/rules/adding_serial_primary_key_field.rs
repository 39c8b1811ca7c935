//! adding-serial-primary-key-field: ADD PRIMARY KEY not USING INDEX.
use super::*;
use crate::sql::facts::*;

pub const DOC: &str = r#"## What it does
Flags `ADD PRIMARY KEY` on an existing table that is not `USING INDEX` (also inline in `ADD COLUMN`).

## Why is this bad
Postgres builds the PRIMARY KEY index while holding ACCESS EXCLUSIVE on the table: no reads, no writes until the build finishes. If the key columns are not yet NOT NULL, it also scans the table for NULLs under that lock.

## Example
```sql
ALTER TABLE events ADD PRIMARY KEY (id);
```

## Use instead
```sql
CREATE UNIQUE INDEX CONCURRENTLY events_pkey ON events (id);
ALTER TABLE events ADD CONSTRAINT events_pkey PRIMARY KEY USING INDEX events_pkey;
```
(the columns must already be NOT NULL, or Postgres scans for NULLs under the same lock).

## Rewrite safety
pgwarden (the proxy) runs `ADD [CONSTRAINT name] PRIMARY KEY (cols)` whose columns are all NOT NULL
already (the server is asked just before) as `CREATE UNIQUE INDEX CONCURRENTLY name ON t (cols)`
(writes go on during the build), then `ADD CONSTRAINT name PRIMARY KEY USING INDEX name` (ACCESS
EXCLUSIVE for an instant, no scan). `INCLUDE`, `WITH (...)` and `USING INDEX TABLESPACE` go to the
build, `DEFERRABLE` / `INITIALLY ...` to the `USING INDEX` step. An unnamed key gets PostgreSQL's
name (`orders_pkey`; `orders_pkey1` when a relation or constraint of the schema has that name; cut
to 63 bytes). While the steps run there is no key yet: duplicates written meanwhile make the build
fail. Inside a transaction block the in-place part runs where the statement was; the rest are completion steps pgwarden runs on the same connection after the client's COMMIT succeeded and before COMMIT's answer reaches the client (a ROLLBACK discards them). If one fails, the client gets an ErrorResponse with SQLSTATE `PW002` in place of COMMIT's CommandComplete: the transaction committed, which step failed with the server's error, what remains, and the statement that finishes it. Outside a transaction block the steps run one after another and the client gets one answer; a failed step undoes the earlier ones and its own error is the answer. After a failure (duplicates, a cancel, a statement_timeout)
pgwarden drops the INVALID index its build left (never an index it did not create).
When a key column is nullable the statement is refused before anything runs (inside a
transaction block the refusal fails the transaction, so nothing of it is applied): `USING INDEX`
would set the column NOT NULL with a scan under ACCESS EXCLUSIVE, the stall the rewrite avoids.
Make the column NOT NULL first (`op.alter_column(..., nullable=False)`, which pgwarden runs
without the long lock), then add the key. An ALTER TABLE with several sub-commands is refused
whole.
"#;

pub fn check(f: &StatementFacts, cx: &Cx<'_>, out: &mut Vec<Finding>) {
    let Some((table, size)) = altered_table(f, cx) else { return };
    for a in &f.actions {
        let hit = match (&a.constraint, &a.column_def) {
            (Some(c), _) => c.kind == ConstraintKind::PrimaryKey && !c.using_index,
            (None, Some(col)) => col.constraints.iter().any(|c| c.kind == ConstraintKind::PrimaryKey),
            _ => false,
        };
        if !hit {
            continue;
        }
        out.push(
            Finding::new(
                Rule::AddingSerialPrimaryKeyField,
                f,
                format!(
                    "ADD PRIMARY KEY builds an index on {} under an ACCESS EXCLUSIVE lock: no reads or \
                     writes until the build finishes",
                    cx.describe(table)
                ),
                format!(
                    "CREATE UNIQUE INDEX CONCURRENTLY first ({OUTSIDE_TX_RECIPE}), then ADD \
                     CONSTRAINT ... PRIMARY KEY USING INDEX."
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

    const R: Rule = Rule::AddingSerialPrimaryKeyField;

    #[test]
    fn fires_unless_using_index() {
        assert_eq!(run(R, "ALTER TABLE t ADD CONSTRAINT c PRIMARY KEY (a)").len(), 1);
        assert_eq!(run(R, "ALTER TABLE t ADD COLUMN x int PRIMARY KEY").len(), 1);
        assert!(run(R, "ALTER TABLE t ADD CONSTRAINT c PRIMARY KEY USING INDEX i").is_empty());
        assert!(run(R, "BEGIN; CREATE TABLE t (a int); ALTER TABLE t ADD CONSTRAINT c PRIMARY KEY (a); COMMIT;").is_empty());
    }

    #[test]
    fn fixtures() {
        super::super::testing::fixtures(R);
    }
}
