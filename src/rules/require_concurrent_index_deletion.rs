//! require-concurrent-index-deletion: DROP INDEX without CONCURRENTLY.
use super::*;
use crate::sql::facts::*;

pub const DOC: &str = r#"## What it does
Flags `DROP INDEX` without `CONCURRENTLY`.

## Why is this bad
A plain `DROP INDEX` takes an ACCESS EXCLUSIVE lock on the index's table. The drop itself is quick, but the lock request queues behind every running query on the table and every later query queues behind it: reads and writes stop until the longest running transaction ends.

## Example
```sql
DROP INDEX orders_customer_idx;
```

## Use instead
```sql
DROP INDEX CONCURRENTLY orders_customer_idx;
```
outside a transaction block (Alembic: `op.drop_index(..., postgresql_concurrently=True)` inside `with op.get_context().autocommit_block():`).

## Rewrite safety
pgwarden inserts `CONCURRENTLY` only outside a transaction block, for a single index without CASCADE (Postgres forbids both with CONCURRENTLY). An index that backs a constraint cannot be dropped this way; drop the constraint instead.
"#;

pub fn check(f: &StatementFacts, cx: &Cx<'_>, out: &mut Vec<Finding>) {
    if f.kind != StatementKind::DropIndex || f.flags.concurrently {
        return;
    }
    let Some(index) = f.targets.first() else { return };
    // The index's table is only known to the live catalog; stats given for the index name
    // (or its table under the same key) size it.
    let size = cx.size(index);
    if size == Size::New {
        return;
    }
    let rewrite = match (cx.idle(), f.targets.len(), f.flags.cascade, f.concurrently_at) {
        (true, 1, false, Some(p)) => Some(TextEdit::insert(p.at, " CONCURRENTLY")),
        _ => None,
    };
    // The live catalog knows the index's table: that is what is locked and what is named
    // (the size looked up for the index name is already the table's).
    let on = match cx.ctx.catalog.index_table(index) {
        Some(table) => {
            let described = cx.describe(index);
            let size = described.strip_prefix(&index.to_string()).unwrap_or_default();
            format!("on its table {table}{size}")
        }
        None => format!("on the table of {}", cx.describe(index)),
    };
    out.push(
        Finding::new(
            Rule::RequireConcurrentIndexDeletion,
            f,
            format!(
                "DROP INDEX {index} takes an ACCESS EXCLUSIVE lock {on}: all reads and writes \
                 queue behind it until every running query on the table finishes"
            ),
            format!("Use DROP INDEX CONCURRENTLY and {OUTSIDE_TX_RECIPE}."),
        )
        .rewrite(rewrite)
        .sized(size, cx),
    );
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    const R: Rule = Rule::RequireConcurrentIndexDeletion;

    #[test]
    fn fires_and_rewrites() {
        let fixed = assert_rewrite(R, "DROP INDEX IF EXISTS public.ix_a;");
        assert_eq!(fixed, "DROP INDEX CONCURRENTLY IF EXISTS public.ix_a;");
    }

    #[test]
    fn no_rewrite_for_several_or_cascade() {
        let f = run(R, "DROP INDEX a, b");
        assert!(f[0].rewrite.is_none());
        let f = run(R, "DROP INDEX a CASCADE");
        assert!(f[0].rewrite.is_none());
        assert!(run(R, "DROP INDEX CONCURRENTLY a").is_empty());
    }

    #[test]
    fn fixtures() {
        super::super::testing::fixtures(R);
    }
}
