//! transaction-nesting: BEGIN inside a transaction block.
use super::*;
use crate::sql::facts::*;

pub const DOC: &str = r#"## What it does
Flags `BEGIN` / `START TRANSACTION` while a transaction is already open (the migration tool's, or an earlier BEGIN in the script).

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
    fn fixtures() {
        super::super::testing::fixtures(R);
    }
}
