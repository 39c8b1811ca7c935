//! ban-concurrent-index-creation-in-transaction: CONCURRENTLY inside a transaction block.
use super::*;
use crate::sql::facts::*;

pub const DOC: &str = r#"## What it does
Flags `CREATE INDEX CONCURRENTLY`, `DROP INDEX CONCURRENTLY`, `REINDEX ... CONCURRENTLY` and `DETACH PARTITION ... CONCURRENTLY` inside a transaction block.

## Why is this bad
Postgres refuses them there (SQLSTATE 25001, "cannot run inside a transaction block"): the migration fails halfway. Migration tools wrap every revision in a transaction unless told otherwise.

## Example
```sql
BEGIN;
CREATE INDEX CONCURRENTLY orders_customer_idx ON orders (customer_id);
COMMIT;
```

## Use instead
Run the statement outside the transaction. Alembic: `op.create_index(..., postgresql_concurrently=True)` inside `with op.get_context().autocommit_block():`; Django: `atomic = False` on the migration; Rails: `disable_ddl_transaction!`.

## Rewrite safety
No rewrite: pgwarden cannot move a statement out of the client's transaction. It rejects early with the recipe instead of letting Postgres fail the migration.
"#;

pub fn check(f: &StatementFacts, cx: &Cx<'_>, out: &mut Vec<Finding>) {
    if !cx.state.in_transaction() {
        return;
    }
    let concurrent = match f.kind {
        StatementKind::CreateIndex | StatementKind::DropIndex | StatementKind::Reindex => {
            f.flags.concurrently
        }
        StatementKind::AlterTable => f
            .actions
            .iter()
            .any(|a| a.kind == ActionKind::DetachPartition && a.concurrently),
        _ => false,
    };
    if concurrent {
        out.push(Finding::new(
            Rule::BanConcurrentIndexCreationInTransaction,
            f,
            format!(
                "{} ... CONCURRENTLY cannot run inside a transaction block: Postgres will fail \
                 the migration here (25001)",
                f.kind.label()
            ),
            format!("Move it out of the transaction: {OUTSIDE_TX_RECIPE}."),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    const R: Rule = Rule::BanConcurrentIndexCreationInTransaction;

    #[test]
    fn fires_in_transaction_only() {
        assert_eq!(run(R, "BEGIN; CREATE INDEX CONCURRENTLY i ON t (a); COMMIT;").len(), 1);
        assert_eq!(run(R, "BEGIN; DROP INDEX CONCURRENTLY i; COMMIT;").len(), 1);
        assert!(run(R, "CREATE INDEX CONCURRENTLY i ON t (a);").is_empty());
        assert!(run(R, "BEGIN; COMMIT; CREATE INDEX CONCURRENTLY i ON t (a);").is_empty());
    }

    #[test]
    fn fixtures() {
        super::super::testing::fixtures(R);
    }
}
