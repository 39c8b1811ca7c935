//! require-concurrent-partition-detach: DETACH PARTITION without CONCURRENTLY.
use super::*;
use crate::sql::facts::*;

pub const DOC: &str = r#"## What it does
Flags `ALTER TABLE ... DETACH PARTITION` without `CONCURRENTLY` (PostgreSQL 14 and later).

## Why is this bad
A plain detach takes ACCESS EXCLUSIVE on the partitioned parent: every query on any partition of the table waits.

## Example
```sql
ALTER TABLE measurements DETACH PARTITION measurements_2023;
```

## Use instead
```sql
ALTER TABLE measurements DETACH PARTITION measurements_2023 CONCURRENTLY;
```
outside a transaction block (not possible while a DEFAULT partition exists).

## Rewrite safety
pgwarden appends `CONCURRENTLY` only outside a transaction block and when the ALTER TABLE has this single sub-command. If the concurrent detach is interrupted, finish it with `DETACH PARTITION ... FINALIZE`.
"#;

pub fn check(f: &StatementFacts, cx: &Cx<'_>, out: &mut Vec<Finding>) {
    if f.kind != StatementKind::AlterTable || cx.version_at_least(14) == Some(false) {
        return;
    }
    let Some(table) = &f.table else { return };
    for a in &f.actions {
        if a.kind != ActionKind::DetachPartition || a.concurrently || a.finalize {
            continue;
        }
        let size = cx.size(table);
        if size == Size::New {
            return;
        }
        let rewrite = (cx.idle() && f.actions.len() == 1)
            .then(|| TextEdit::insert(a.span.end, " CONCURRENTLY"));
        out.push(
            Finding::new(
                Rule::RequireConcurrentPartitionDetach,
                f,
                format!(
                    "DETACH PARTITION locks {} ACCESS EXCLUSIVE: all reads and writes on every \
                     partition wait",
                    cx.describe(table)
                ),
                format!("Use DETACH PARTITION ... CONCURRENTLY (PostgreSQL 14+) and {OUTSIDE_TX_RECIPE}."),
            )
            .at(a.span.clone())
            .lock(Some(a.lock))
            .rewrite(rewrite)
            .sized(size, cx),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    const R: Rule = Rule::RequireConcurrentPartitionDetach;

    #[test]
    fn fires_and_rewrites() {
        let fixed = assert_rewrite(R, "ALTER TABLE m DETACH PARTITION m_2023;");
        assert_eq!(fixed, "ALTER TABLE m DETACH PARTITION m_2023 CONCURRENTLY;");
    }

    #[test]
    fn silent_cases() {
        assert!(run(R, "ALTER TABLE m DETACH PARTITION m_2023 CONCURRENTLY").is_empty());
        assert!(run(R, "ALTER TABLE m DETACH PARTITION m_2023 FINALIZE").is_empty());
        let mut c = ctx();
        c.pg_version = Some(13);
        assert!(run_with(R, "ALTER TABLE m DETACH PARTITION m_2023", &c).is_empty());
    }

    #[test]
    fn fixtures() {
        super::super::testing::fixtures(R);
    }
}
