//! ban-uncommitted-transaction: a BEGIN without COMMIT in the file.
use super::*;

pub const DOC: &str = r#"## What it does
In file mode, flags a `BEGIN` that is never followed by `COMMIT` or `ROLLBACK` before the end of the file.

## Why is this bad
A script that ends inside a transaction is usually a truncated one: `alembic upgrade head --sql` that crashed part-way prints `BEGIN;` and the statements up to the crash, and no `COMMIT;`. Checking it would pass a migration nobody has seen the end of, so this is an error (reject level: `pgwarden check` exits 1), not a warning. Run with psql, the open transaction is rolled back at disconnect and the migration silently does nothing; run through a tool, it leaves the session in a transaction that holds every lock taken so far.

## Example
```sql
BEGIN;
ALTER TABLE t ADD COLUMN a int;
```

## Use instead
End every transaction you open: `COMMIT;`.

## Rewrite safety
No rewrite. Only in file mode: the proxy knows the live transaction status.
"#;

/// Called by the engine after the last statement of a file.
pub fn at_end(state: &ScriptState, out: &mut Vec<Finding>) {
    let Some(at) = state.open_begin_at else { return };
    out.push(Finding {
        rule: Rule::BanUncommittedTransaction,
        message: "this transaction is never committed: the script ends inside it (truncated? \
                  `alembic upgrade --sql` that crashed part-way stops like this)"
            .to_string(),
        help: "Check that the tool that wrote the script finished (CI: `set -o pipefail` so a \
               crash fails the pipeline); if the script is complete, add COMMIT; at the end of \
               the transaction."
            .to_string(),
        span: at..at + 5,
        statement: at..at + 5,
        lock: None,
        rewrite: None,
        small_table: false,
    });
}

/// Kept so every rule has the same shape; this one only speaks at the end of a file.
#[allow(dead_code)]
fn check(_: &StatementFacts, _: &Cx<'_>, _: &mut Vec<Finding>) {}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    const R: Rule = Rule::BanUncommittedTransaction;

    #[test]
    fn open_transaction_at_end_fires() {
        assert_eq!(run(R, "BEGIN; ALTER TABLE t ADD COLUMN a int;").len(), 1);
        assert!(run(R, "BEGIN; ALTER TABLE t ADD COLUMN a int; COMMIT;").is_empty());
        assert!(run(R, "BEGIN; ROLLBACK;").is_empty());
    }

    #[test]
    fn fixtures() {
        super::super::testing::fixtures(R);
    }
}
