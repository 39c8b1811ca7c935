//! ban-table-rewrite-options: SET TABLESPACE / SET LOGGED / SET UNLOGGED / SET ACCESS METHOD.
use super::*;
use crate::sql::facts::*;

pub const DOC: &str = r#"## What it does
Flags `ALTER TABLE ... SET TABLESPACE`, `SET LOGGED`, `SET UNLOGGED` and `SET ACCESS METHOD` on an existing table.

## Why is this bad
Each copies or rewrites the whole table (SET LOGGED also writes all of it to WAL) while holding ACCESS EXCLUSIVE: no reads, no writes until the copy ends.

## Example
```sql
ALTER TABLE events SET TABLESPACE fast_ssd;
```

## Use instead
Do it in a maintenance window, or build a new table online (logical replication, pg_repack with `--tablespace`) and switch over.

## Rewrite safety
No rewrite.
"#;

pub fn check(f: &StatementFacts, cx: &Cx<'_>, out: &mut Vec<Finding>) {
    let Some((table, size)) = altered_table(f, cx) else { return };
    for a in &f.actions {
        let what = match a.kind {
            ActionKind::SetTablespace => "SET TABLESPACE copies",
            ActionKind::SetLogged => "SET LOGGED rewrites (and WAL-logs)",
            ActionKind::SetUnlogged => "SET UNLOGGED rewrites",
            ActionKind::SetAccessMethod => "SET ACCESS METHOD rewrites",
            // PG 17+: recomputes the stored generated column for every row.
            ActionKind::SetExpression => "ALTER COLUMN ... SET EXPRESSION rewrites",
            _ => continue,
        };
        out.push(
            Finding::new(
                Rule::BanTableRewriteOptions,
                f,
                format!(
                    "{what} {} under an ACCESS EXCLUSIVE lock: no reads or writes until it finishes",
                    cx.describe(table)
                ),
                "Schedule a maintenance window, or rebuild online (pg_repack --tablespace, \
                 logical replication) and switch over."
                    .to_string(),
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

    const R: Rule = Rule::BanTableRewriteOptions;

    #[test]
    fn fires_on_each_option() {
        for opt in ["SET TABLESPACE x", "SET LOGGED", "SET UNLOGGED", "SET ACCESS METHOD heap"] {
            assert_eq!(run(R, &format!("ALTER TABLE t {opt}")).len(), 1, "{opt}");
        }
        assert_eq!(
            run(R, "ALTER TABLE t ALTER COLUMN total SET EXPRESSION AS (price * qty)").len(),
            1
        );
        assert!(run(R, "ALTER TABLE t ALTER COLUMN total DROP EXPRESSION").is_empty());
        assert!(run(R, "ALTER TABLE t SET (fillfactor = 70)").is_empty());
    }

    #[test]
    fn fixtures() {
        super::super::testing::fixtures(R);
    }
}
