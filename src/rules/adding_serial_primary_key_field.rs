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
No rewrite (two statements, the first outside a transaction block).
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
