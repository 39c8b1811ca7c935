//! require-lock-timeout: a lock-taking statement while lock_timeout is 0.
use super::*;

pub const DOC: &str = r#"## What it does
Flags a statement that takes a lock blocking writes (SHARE or stronger) on an existing table while `lock_timeout` is off (0) or not known to be set.

## Why is this bad
A statement that needs a strong lock waits behind every running transaction on the table, and every later query — even plain SELECTs — waits behind it. Without `lock_timeout` that queue can last as long as the longest transaction: an outage caused by a statement that would itself take milliseconds.

## Example
```sql
ALTER TABLE orders ADD COLUMN note text;
```

## Use instead
```sql
SET lock_timeout = '2s';  -- SET LOCAL inside a transaction
ALTER TABLE orders ADD COLUMN note text;
```
and retry on timeout. Concurrent index builds and VALIDATE need a long value or 0, not the short one.

## Rewrite safety
No text rewrite here; the proxy will inject the setting for the statement class itself (issue 4).
"#;

pub fn check(f: &StatementFacts, cx: &Cx<'_>, out: &mut Vec<Finding>) {
    super::timeouts::check(super::timeouts::Timeout::Lock, f, cx, out);
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    const R: Rule = Rule::RequireLockTimeout;

    #[test]
    fn fires_until_set() {
        assert_eq!(run(R, "ALTER TABLE t ADD COLUMN a int").len(), 1);
        assert!(run(R, "SET lock_timeout = '2s'; ALTER TABLE t ADD COLUMN a int;").is_empty());
        assert_eq!(run(R, "SET lock_timeout = 0; ALTER TABLE t ADD COLUMN a int;").len(), 1);
    }

    #[test]
    fn set_local_ends_with_the_transaction() {
        let sql = "BEGIN; SET LOCAL lock_timeout = '1s'; ALTER TABLE t ADD COLUMN a int; COMMIT; \
                   ALTER TABLE t ADD COLUMN b int;";
        assert_eq!(run(R, sql).len(), 1);
    }

    #[test]
    fn reported_once_until_set_again() {
        let sql = "ALTER TABLE t ADD COLUMN a int; ALTER TABLE t ADD COLUMN b int;";
        assert_eq!(run(R, sql).len(), 1);
        let sql = "ALTER TABLE t ADD COLUMN a int; SET lock_timeout = 0; ALTER TABLE t ADD COLUMN b int;";
        assert_eq!(run(R, sql).len(), 2);
    }

    #[test]
    fn concurrent_builds_and_new_tables_are_not_flagged() {
        assert!(run(R, "CREATE INDEX CONCURRENTLY i ON t (a)").is_empty());
        assert!(run(R, "BEGIN; CREATE TABLE n (a int); ALTER TABLE n ADD COLUMN b int; COMMIT;").is_empty());
    }

    #[test]
    fn fixtures() {
        super::super::testing::fixtures(R);
    }
}
