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
    let lower = cx.text.get(f.span.clone()).unwrap_or("").to_lowercase();
    if BOOKKEEPING.iter().any(|t| lower.contains(t)) {
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

/// Tables migration tools write their bookkeeping to after every revision: an instant
/// one-row write that should not count as "more work under the lock".
pub(crate) const BOOKKEEPING: &[&str] = &[
    "alembic_version",
    "django_migrations",
    "schema_migrations",
    "ar_internal_metadata",
    "flyway_schema_history",
];

/// DML is not parsed (DESIGN.md decision 4), but a backfill after an ACCESS EXCLUSIVE
/// statement is the classic way to hold that lock for minutes.
pub fn on_dml(stmt: &AnalysedStatement, cx: &Cx<'_>) -> Option<Finding> {
    if !cx.state.in_transaction() || cx.state.ael_held.is_empty() || cx.state.ael_reported {
        return None;
    }
    let text = cx.text.get(stmt.span.clone())?;
    let lower = text.to_lowercase();
    if BOOKKEEPING.iter().any(|t| lower.contains(t)) {
        return None;
    }
    let tables: Vec<String> = cx.state.ael_held.iter().map(|(t, _)| cx.describe(t)).collect();
    let start = stmt.span.start + (text.len() - text.trim_start().len());
    let head_end = text.trim_start().find(char::is_whitespace).map_or(stmt.span.end, |n| start + n);
    Some(Finding {
        rule: Rule::LockHeldAcrossStatements,
        message: format!(
            "the ACCESS EXCLUSIVE lock on {} taken earlier in this transaction is still held while \
             this data change runs: reads and writes on it wait until COMMIT",
            tables.join(", ")
        ),
        help: "Run backfills in their own transactions, after the DDL has committed.".to_string(),
        span: start..head_end,
        statement: stmt.span.clone(),
        lock: Some(LockMode::AccessExclusive),
        rewrite: None,
        small_table: false,
    })
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

    /// Needs the real prefilter (branch `lexer`) to classify UPDATE as DML; with any
    /// classification the backfill after the ALTER is reported once.
    #[test]
    fn backfill_after_ddl_fires_bookkeeping_does_not() {
        let sql = "BEGIN; ALTER TABLE o ADD COLUMN n text; UPDATE o SET n = ''; COMMIT;";
        assert_eq!(run(R, sql).len(), 1);
        let sql = "BEGIN; ALTER TABLE o ADD COLUMN n text; \
                   UPDATE alembic_version SET version_num='2' WHERE version_num = '1'; COMMIT;";
        assert!(run(R, sql).is_empty());
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
