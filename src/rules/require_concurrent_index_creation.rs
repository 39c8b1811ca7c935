//! require-concurrent-index-creation: CREATE INDEX without CONCURRENTLY on an existing table.
use super::{Cx, Finding, Rule, Size, OUTSIDE_TX_RECIPE};
use crate::sql::facts::{StatementFacts, StatementKind, TextEdit};

pub const DOC: &str = r#"## What it does
Flags `CREATE INDEX` without `CONCURRENTLY` on a table that already exists.

## Why is this bad
A plain `CREATE INDEX` holds a SHARE lock on the table for the whole build: every INSERT,
UPDATE and DELETE waits until the index is built — minutes to hours on a large table.

## Example
```sql
CREATE INDEX orders_customer_idx ON orders (customer_id);
```

## Use instead
```sql
CREATE INDEX CONCURRENTLY orders_customer_idx ON orders (customer_id);
```
outside a transaction block. Alembic: `op.create_index(..., postgresql_concurrently=True)` inside
`with op.get_context().autocommit_block():`.

## Rewrite safety
pgwarden (the proxy) runs `CREATE [UNIQUE] INDEX` as `CREATE [UNIQUE] INDEX CONCURRENTLY`
(an unnamed index gets PostgreSQL's name, `orders_amount_idx`; expression indexes must be named).
Inside a transaction block nothing runs in place: pgwarden answers `CREATE INDEX` itself and
builds the index concurrently after the COMMIT; a later statement of the same transaction that
names the index is refused. Inside a transaction block the in-place part runs where the statement was; the rest are completion steps pgwarden runs on the same connection after the client's COMMIT succeeded and before COMMIT's answer reaches the client (a ROLLBACK discards them). If one fails, the client gets an ErrorResponse with SQLSTATE `PW002` in place of COMMIT's CommandComplete: the transaction committed, which step failed with the server's error, what remains, and the statement that finishes it. Outside a transaction block the steps run one after another and the client gets one answer; a failed step undoes the earlier ones and its own error is the answer. A failed or cancelled concurrent build leaves an INVALID
index: pgwarden drops it (`DROP INDEX CONCURRENTLY`), never an index that existed before.
Tables created in the same transaction are exempt.
"#;

pub fn check(f: &StatementFacts, cx: &Cx<'_>, out: &mut Vec<Finding>) {
    if f.kind != StatementKind::CreateIndex || f.flags.concurrently {
        return;
    }
    // ON ONLY a partitioned parent builds nothing (an invalid parent index), and
    // CONCURRENTLY is not allowed there.
    if f.flags.only {
        return;
    }
    let Some(table) = &f.table else { return };
    let size = cx.size(table);
    if size == Size::New {
        return;
    }
    let rewrite = match (cx.idle(), f.concurrently_at) {
        (true, Some(p)) => Some(TextEdit::insert(p.at, " CONCURRENTLY")),
        _ => None,
    };
    out.push(
        Finding::new(
            Rule::RequireConcurrentIndexCreation,
            f,
            format!(
                "CREATE INDEX on {} blocks all writes to {} until the build finishes",
                cx.describe(table),
                table
            ),
            format!("Use CREATE INDEX CONCURRENTLY and {OUTSIDE_TX_RECIPE}."),
        )
        .lock(f.lock_on(table))
        .rewrite(rewrite)
        .sized(size, cx),
    );
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    const R: Rule = Rule::RequireConcurrentIndexCreation;

    #[test]
    fn fires_with_size_in_message() {
        let c = with_rows(ctx(), "orders", 12_400_000);
        let f = run_with(R, "CREATE INDEX i ON orders (customer_id);", &c);
        assert_eq!(f.len(), 1);
        assert_eq!(
            f[0].message,
            "CREATE INDEX on orders (~12.4M rows) blocks all writes to orders until the build finishes"
        );
        assert!(f[0].help.contains("autocommit_block"));
        assert!(!f[0].small_table);
    }

    #[test]
    fn small_table_is_marked_small() {
        let c = with_rows(ctx(), "orders", 300);
        assert!(run_with(R, "CREATE INDEX i ON orders (a)", &c)[0].small_table);
    }

    #[test]
    fn rewrite_is_proven() {
        let fixed = assert_rewrite(R, "CREATE UNIQUE INDEX i ON orders (a) WHERE b;");
        assert_eq!(fixed, "CREATE UNIQUE INDEX CONCURRENTLY i ON orders (a) WHERE b;");
    }

    #[test]
    fn no_rewrite_inside_transaction() {
        let f = run(R, "BEGIN; CREATE INDEX i ON orders (a); COMMIT;");
        assert_eq!(f.len(), 1);
        assert!(f[0].rewrite.is_none());
    }

    #[test]
    fn exempt_cases() {
        assert!(run(R, "CREATE INDEX CONCURRENTLY i ON orders (a)").is_empty());
        assert!(run(R, "BEGIN; CREATE TABLE t (a int); CREATE INDEX i ON t (a); COMMIT;").is_empty());
        assert!(run(R, "CREATE INDEX i ON ONLY parent (a)").is_empty());
    }

    #[test]
    fn fixtures() {
        super::super::testing::fixtures(R);
    }
}
