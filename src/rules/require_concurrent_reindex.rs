//! require-concurrent-reindex: REINDEX without CONCURRENTLY.
use super::*;
use crate::sql::facts::*;

pub const DOC: &str = r#"## What it does
Flags `REINDEX` without `CONCURRENTLY` (PostgreSQL 12 and later support it).

## Why is this bad
`REINDEX` holds a SHARE lock on the table (all writes wait) and an ACCESS EXCLUSIVE lock on each index it rebuilds (queries that would use the index wait too) for the whole rebuild.

## Example
```sql
REINDEX INDEX orders_customer_idx;
```

## Use instead
```sql
REINDEX INDEX CONCURRENTLY orders_customer_idx;
```
outside a transaction block.

## Rewrite safety
pgwarden inserts `CONCURRENTLY` after the target keyword only outside a transaction block and never for `REINDEX SYSTEM` (not supported). A failed concurrent rebuild leaves an invalid `_ccnew` index to drop.
"#;

pub fn check(f: &StatementFacts, cx: &Cx<'_>, out: &mut Vec<Finding>) {
    if f.kind != StatementKind::Reindex || f.flags.concurrently {
        return;
    }
    if cx.version_at_least(12) == Some(false) {
        return;
    }
    let target = f.targets.first().cloned().unwrap_or(ObjectName::new(None, "(all)"));
    let size = cx.size(&target);
    if size == Size::New {
        return;
    }
    let rewrite = match (cx.idle(), f.concurrently_at) {
        (true, Some(p)) => Some(TextEdit::insert(p.at, " CONCURRENTLY")),
        _ => None,
    };
    out.push(
        Finding::new(
            Rule::RequireConcurrentReindex,
            f,
            format!(
                "REINDEX of {} blocks all writes to the table, and reads through the index, \
                 until the rebuild finishes",
                cx.describe(&target)
            ),
            format!("Use REINDEX ... CONCURRENTLY (PostgreSQL 12+) and {OUTSIDE_TX_RECIPE}."),
        )
        .rewrite(rewrite)
        .sized(size, cx),
    );
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    const R: Rule = Rule::RequireConcurrentReindex;

    #[test]
    fn fires_and_rewrites() {
        let fixed = assert_rewrite(R, "REINDEX (VERBOSE) TABLE orders");
        assert_eq!(fixed, "REINDEX (VERBOSE) TABLE CONCURRENTLY orders");
        assert_rewrite(R, "REINDEX INDEX ix");
    }

    #[test]
    fn silent_before_pg12_and_when_concurrent() {
        let mut c = ctx();
        c.pg_version = Some(11);
        assert!(run_with(R, "REINDEX TABLE t", &c).is_empty());
        assert!(run(R, "REINDEX TABLE CONCURRENTLY t").is_empty());
    }

    #[test]
    fn concurrently_switched_off_is_not_concurrent() {
        for opt in ["(CONCURRENTLY false)", "(CONCURRENTLY off)", "(VERBOSE, CONCURRENTLY 0)"] {
            assert_eq!(run(R, &format!("REINDEX {opt} TABLE orders")).len(), 1, "{opt}");
        }
        assert!(run(R, "REINDEX (CONCURRENTLY true) TABLE orders").is_empty());
    }

    #[test]
    fn fixtures() {
        super::super::testing::fixtures(R);
    }
}
