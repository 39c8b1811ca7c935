//! transaction-nesting: BEGIN inside a transaction block.
use super::*;
use crate::sql::facts::*;

pub const DOC: &str = r#"## What it does
Flags `BEGIN` / `START TRANSACTION` while a transaction is already open (the migration tool's, or an earlier BEGIN in the script). In `pgwarden check`, also a `COMMIT` / `ROLLBACK` that ends a transaction the file did not open: the migration tool's (with `--assume-in-transaction`), or none.

## Why is this bad
Postgres only warns and carries on in the outer transaction: the inner COMMIT then commits the tool's transaction halfway, and the tool's own bookkeeping (alembic_version) runs outside any transaction.

## Example
```sql
BEGIN;
BEGIN;
ALTER TABLE t ADD COLUMN a int;
COMMIT;
COMMIT;
```

## Use instead
Let the migration tool own the transaction; use SAVEPOINT for nested work.

## Rewrite safety
No rewrite.
"#;

pub fn check(f: &StatementFacts, cx: &Cx<'_>, out: &mut Vec<Finding>) {
    // File mode: a COMMIT/ROLLBACK with no BEGIN of this file before it ends either the
    // migration tool's transaction (`check --assume-in-transaction`) or nothing at all.
    if cx.ctx.file_mode
        && matches!(f.kind, StatementKind::Commit | StatementKind::Rollback)
        && cx.state.open_begin_at.is_none()
    {
        let message = if cx.state.in_transaction() {
            format!(
                "{} ends the transaction the migration tool opened: the tool's own bookkeeping \
                 then runs outside it, and what follows is no longer atomic",
                f.kind.label()
            )
        } else {
            format!("{} without a BEGIN: there is no transaction to end", f.kind.label())
        };
        out.push(Finding::new(
            Rule::TransactionNesting,
            f,
            message,
            "Remove it (the migration tool owns the transaction), or put the statements that \
             need their own transaction in a separate migration."
                .to_string(),
        ));
    }
    if f.kind == StatementKind::Begin && cx.state.in_transaction() {
        out.push(Finding::new(
            Rule::TransactionNesting,
            f,
            "BEGIN inside an open transaction does nothing: the next COMMIT ends the outer \
             transaction early"
                .to_string(),
            "Remove the inner BEGIN/COMMIT (the migration tool owns the transaction) or use SAVEPOINT."
                .to_string(),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    const R: Rule = Rule::TransactionNesting;

    #[test]
    fn nested_begin_fires() {
        assert_eq!(run(R, "BEGIN; BEGIN; COMMIT;").len(), 1);
        assert!(run(R, "BEGIN; COMMIT; BEGIN; COMMIT;").is_empty());
    }

    #[test]
    fn stray_commit_or_rollback_fires() {
        assert_eq!(run(R, "ALTER TABLE t ADD COLUMN a int; COMMIT;").len(), 1);
        let mut c = ctx();
        c.tx = TxState::InTransaction;
        for end in ["COMMIT", "ROLLBACK", "COMMIT AND CHAIN"] {
            let found = run_with(R, &format!("CREATE TABLE t (a int); {end};"), &c);
            assert_eq!(found.len(), 1, "{end}");
            assert!(found[0].message.contains("migration tool"), "{found:?}");
        }
        // The file's own BEGIN ... COMMIT inside the tool's: the BEGIN nests, the COMMIT ends
        // the tool's transaction.
        assert_eq!(run_with(R, "BEGIN; CREATE TABLE t (a int); COMMIT;", &c).len(), 2);
    }

    #[test]
    fn fixtures() {
        super::super::testing::fixtures(R);
    }
}
