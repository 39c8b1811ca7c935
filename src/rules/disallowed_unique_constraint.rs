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
No rewrite (two statements, the first outside a transaction block).
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
