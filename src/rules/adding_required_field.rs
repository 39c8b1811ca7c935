//! adding-required-field: ADD COLUMN NOT NULL without a default.
use super::*;

pub const DOC: &str = r#"## What it does
Flags `ADD COLUMN ... NOT NULL` without a default on an existing table.

## Why is this bad
Existing rows would get NULL in a NOT NULL column, so Postgres fails the statement on any non-empty table: the migration breaks in production although it passed on an empty development database.

## Example
```sql
ALTER TABLE orders ADD COLUMN region text NOT NULL;
```

## Use instead
Add the column with a constant default (instant since PostgreSQL 11), or nullable, backfill, then SET NOT NULL the safe way (see `adding-not-nullable-field`).

## Rewrite safety
No rewrite. Silent when the table is known to be empty (live row count 0) or was created in the same transaction.
"#;

pub fn check(f: &StatementFacts, cx: &Cx<'_>, out: &mut Vec<Finding>) {
    let Some((table, size)) = altered_table(f, cx) else { return };
    if let Size::Small(s) | Size::Large(s) = size {
        if s.rows == 0 {
            return;
        }
    }
    for a in &f.actions {
        let Some(col) = &a.column_def else { continue };
        let serial = col.ty.as_ref().is_some_and(|t| t.is_serial());
        if col.not_null && col.default.is_none() && !col.generated_stored && !col.identity && !serial {
            out.push(
                Finding::new(
                    Rule::AddingRequiredField,
                    f,
                    format!(
                        "ADD COLUMN {} NOT NULL without a default fails on {} as soon as it has rows",
                        col.name,
                        cx.describe(table)
                    ),
                    "Add it with a constant DEFAULT, or nullable; backfill; then SET NOT NULL \
                     via a NOT VALID CHECK."
                        .to_string(),
                )
                .at(a.span.clone())
                .lock(Some(a.lock)),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    const R: Rule = Rule::AddingRequiredField;

    #[test]
    fn fires_without_default() {
        assert_eq!(run(R, "ALTER TABLE t ADD COLUMN r text NOT NULL").len(), 1);
        assert!(run(R, "ALTER TABLE t ADD COLUMN r text NOT NULL DEFAULT 'eu'").is_empty());
        assert!(run(R, "ALTER TABLE t ADD COLUMN r text").is_empty());
    }

    #[test]
    fn empty_table_is_fine() {
        let c = with_rows(ctx(), "t", 0);
        assert!(run_with(R, "ALTER TABLE t ADD COLUMN r text NOT NULL", &c).is_empty());
    }

    #[test]
    fn fixtures() {
        super::super::testing::fixtures(R);
    }
}
