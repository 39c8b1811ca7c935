//! lock-held-across-statements: more statements after an ACCESS EXCLUSIVE lock in the same transaction.
use super::*;

pub const DOC: &str = r#"## What it does
Flags the first statement that runs after an ACCESS EXCLUSIVE lock was taken on an existing table earlier in the same transaction.

## Why is this bad
Locks are held until COMMIT. Everything that runs after the lock is taken — other DDL, backfills, index builds — extends the time every reader and writer of that table waits.

## Example
```sql
BEGIN;
ALTER TABLE orders ADD COLUMN note text;
UPDATE orders SET note = '';
COMMIT;
```

## Use instead
Put the ACCESS EXCLUSIVE statement last in its transaction, or in a transaction of its own; run backfills in separate transactions.

## Rewrite safety
No rewrite.
"#;

pub fn check(f: &StatementFacts, cx: &Cx<'_>, out: &mut Vec<Finding>) {
    if !cx.state.in_transaction() || cx.state.ael_held.is_empty() || cx.state.ael_reported {
        return;
    }
    if f.is_control() {
        return;
    }
    let tables: Vec<String> = cx.state.ael_held.iter().map(|(t, _)| cx.describe(t)).collect();
    out.push(Finding::new(
        Rule::LockHeldAcrossStatements,
        f,
        format!(
            "the ACCESS EXCLUSIVE lock on {} taken earlier in this transaction is still held while \
             this statement runs: reads and writes on it wait until COMMIT",
            tables.join(", ")
        ),
        "Put the ACCESS EXCLUSIVE statement last in its transaction, or give it a transaction of \
         its own."
            .to_string(),
    ));
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    const R: Rule = Rule::LockHeldAcrossStatements;

    #[test]
    fn fires_once_per_transaction() {
        let sql = "BEGIN; ALTER TABLE o ADD COLUMN n text; ALTER TABLE o ADD COLUMN m text; \
                   CREATE INDEX i ON x (a); COMMIT;";
        assert_eq!(run(R, sql).len(), 1);
    }

    #[test]
    fn silent_when_last_or_new_table() {
        assert!(run(R, "BEGIN; ALTER TABLE o ADD COLUMN n text; COMMIT;").is_empty());
        assert!(run(R, "ALTER TABLE o ADD COLUMN n text; ALTER TABLE o ADD COLUMN m text;").is_empty());
        assert!(run(R, "BEGIN; CREATE TABLE n (a int); ALTER TABLE n ADD COLUMN b int; ALTER TABLE n ADD COLUMN c int; COMMIT;").is_empty());
    }

    #[test]
    fn fixtures() {
        super::super::testing::fixtures(R);
    }
}
