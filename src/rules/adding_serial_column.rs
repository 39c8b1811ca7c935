//! adding-serial-column: ADD COLUMN serial / bigserial / identity.
use super::*;

pub const DOC: &str = r#"## What it does
Flags `ADD COLUMN` of type `serial`, `bigserial`, `smallserial` or with `GENERATED ... AS IDENTITY` on an existing table.

## Why is this bad
Every existing row needs its own sequence value, so Postgres rewrites the whole table under ACCESS EXCLUSIVE.

## Example
```sql
ALTER TABLE events ADD COLUMN id bigserial;
```

## Use instead
Add a nullable `bigint` column, attach a sequence as its default for new rows, backfill existing rows in batches, then add the constraints the safe way.

## Rewrite safety
No rewrite.
"#;

pub fn check(f: &StatementFacts, cx: &Cx<'_>, out: &mut Vec<Finding>) {
    let Some((table, size)) = altered_table(f, cx) else { return };
    for a in &f.actions {
        let Some(col) = &a.column_def else { continue };
        if col.identity || col.ty.as_ref().is_some_and(|t| t.is_serial()) {
            out.push(
                Finding::new(
                    Rule::AddingSerialColumn,
                    f,
                    format!(
                        "ADD COLUMN {} with a sequence rewrites {} under an ACCESS EXCLUSIVE lock \
                         to number every existing row",
                        col.name,
                        cx.describe(table)
                    ),
                    "Add a nullable bigint column with a sequence default, backfill in batches, \
                     then add constraints with NOT VALID / USING INDEX."
                        .to_string(),
                )
                .at(a.span.clone())
                .lock(Some(a.lock))
                .sized(size, cx),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    const R: Rule = Rule::AddingSerialColumn;

    #[test]
    fn fires_on_serial_and_identity() {
        assert_eq!(run(R, "ALTER TABLE t ADD COLUMN id bigserial").len(), 1);
        assert_eq!(run(R, "ALTER TABLE t ADD COLUMN id int GENERATED ALWAYS AS IDENTITY").len(), 1);
        assert!(run(R, "ALTER TABLE t ADD COLUMN id bigint").is_empty());
        assert!(run(R, "CREATE TABLE t (id bigserial)").is_empty());
    }

    #[test]
    fn fixtures() {
        super::super::testing::fixtures(R);
    }
}
