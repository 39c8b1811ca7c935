//! prefer-robust-stmts: DDL outside a transaction without IF [NOT] EXISTS.
use super::*;
use crate::sql::facts::*;

pub const DOC: &str = r#"## What it does
Flags `CREATE TABLE` / `CREATE INDEX` without `IF NOT EXISTS` and `DROP TABLE` / `DROP INDEX` without `IF EXISTS`, when they run outside a transaction block.

## Why is this bad
Outside a transaction a migration that fails halfway leaves its first statements applied: re-running it then fails on "already exists". `CREATE INDEX CONCURRENTLY` must run outside a transaction, so this is where it matters.

## Example
```sql
CREATE INDEX CONCURRENTLY orders_customer_idx ON orders (customer_id);
```

## Use instead
```sql
CREATE INDEX CONCURRENTLY IF NOT EXISTS orders_customer_idx ON orders (customer_id);
```
(and drop an INVALID index left by a failed build before retrying).

## Rewrite safety
No rewrite.
"#;

pub fn check(f: &StatementFacts, cx: &Cx<'_>, out: &mut Vec<Finding>) {
    if cx.state.tx != TxState::Idle {
        return;
    }
    let missing = match f.kind {
        StatementKind::CreateTable | StatementKind::CreateIndex => {
            (!f.flags.if_not_exists).then_some("IF NOT EXISTS")
        }
        StatementKind::DropTable | StatementKind::DropIndex => {
            (!f.flags.if_exists).then_some("IF EXISTS")
        }
        _ => None,
    };
    if let Some(clause) = missing {
        out.push(Finding::new(
            Rule::PreferRobustStmts,
            f,
            format!(
                "{} outside a transaction without {clause} cannot be re-run after a partial failure",
                f.kind.label()
            ),
            format!("Add {clause} so the migration can be retried."),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    const R: Rule = Rule::PreferRobustStmts;

    #[test]
    fn fires_only_outside_transactions() {
        assert_eq!(run(R, "CREATE INDEX CONCURRENTLY i ON t (a)").len(), 1);
        assert!(run(R, "CREATE INDEX CONCURRENTLY IF NOT EXISTS i ON t (a)").is_empty());
        assert!(run(R, "BEGIN; CREATE TABLE t (a int); COMMIT;").is_empty());
        assert_eq!(run(R, "DROP INDEX CONCURRENTLY i").len(), 1);
    }

    #[test]
    fn fixtures() {
        super::super::testing::fixtures(R);
    }
}
