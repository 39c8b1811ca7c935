//! ban-drop-index: DROP INDEX can make queries that used it slow.
use super::*;
use crate::sql::facts::*;

pub const DOC: &str = r#"## What it does
Flags `DROP INDEX` (concurrent or not; the lock is require-concurrent-index-deletion's finding).

## Why is this bad
Queries that relied on the index fall back to sequential scans, and a unique index's guarantee disappears with it.

## Example
```sql
DROP INDEX CONCURRENTLY orders_created_at_idx;
```

## Use instead
Check pg_stat_user_indexes (idx_scan) and the unique guarantees first; drop it when nothing needs it.

## Differences from squawk
Opt-in, as in squawk: In the proxy pg_stat_user_indexes could tell an unused index from one queries depend on; pgwarden does not use that yet.

## Rewrite safety
No rewrite.
"#;

pub fn check(f: &StatementFacts, _cx: &Cx<'_>, out: &mut Vec<Finding>) {
    if f.kind == StatementKind::DropIndex {
        let names: Vec<String> = f.targets.iter().map(ToString::to_string).collect();
        out.push(Finding::new(
            Rule::BanDropIndex,
            f,
            format!("DROP INDEX {}: queries that use it fall back to scans, and a unique index's guarantee goes", names.join(", ")),
            "Check pg_stat_user_indexes.idx_scan and unique guarantees first.".to_string(),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    const R: Rule = Rule::BanDropIndex;

    #[test]
    fn fires_where_it_should() {
        assert_eq!(run(R, "DROP INDEX CONCURRENTLY IF EXISTS i").len(), 1, "DROP INDEX CONCURRENTLY IF EXISTS i");
        assert!(run(R, "CREATE INDEX CONCURRENTLY i ON t (a)").is_empty());
    }

    #[test]
    fn fixtures() {
        super::super::testing::fixtures(R);
    }
}
