//! prefer-robust-stmts: DDL outside a transaction without IF [NOT] EXISTS.
use super::*;
use crate::sql::facts::*;

pub const DOC: &str = r#"## What it does
Flags, when they run outside a transaction block: `CREATE TABLE` / `CREATE INDEX` / `ADD COLUMN` without `IF NOT EXISTS`; `DROP TABLE` / `DROP INDEX` / `DROP TYPE` (and the other object drops) / `DROP COLUMN` / `DROP CONSTRAINT` without `IF EXISTS`; `ADD CONSTRAINT`, which has no `IF NOT EXISTS`, unless a `DROP CONSTRAINT IF EXISTS` of the same name comes before it (in the same statement or earlier in the file).

Unlike squawk, `VALIDATE CONSTRAINT` is not flagged (validating twice is harmless), and the "DDL committed apart from the alembic_version bump" case is not detected.

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
        StatementKind::DropTable | StatementKind::DropIndex | StatementKind::DropObject => {
            (!f.flags.if_exists).then_some("IF EXISTS")
        }
        _ => None,
    };
    if let Some(clause) = missing {
        out.push(finding(f, f.kind.label(), clause));
    }
    if f.kind != StatementKind::AlterTable {
        return;
    }
    for (i, a) in f.actions.iter().enumerate() {
        let (what, clause) = match a.kind {
            ActionKind::AddColumn if !a.guarded => ("ADD COLUMN", "IF NOT EXISTS"),
            ActionKind::DropColumn if !a.guarded => ("DROP COLUMN", "IF EXISTS"),
            ActionKind::DropConstraint if !a.guarded => ("DROP CONSTRAINT", "IF EXISTS"),
            ActionKind::AddConstraint(_) if !dropped_before(f, i, a, cx) => (
                "ADD CONSTRAINT",
                "a DROP CONSTRAINT IF EXISTS of the same name before it",
            ),
            _ => continue,
        };
        out.push(finding(f, what, clause).at(a.span.clone()));
    }
}

fn finding(f: &StatementFacts, what: &str, clause: &str) -> Finding {
    Finding::new(
        Rule::PreferRobustStmts,
        f,
        format!(
            "{what} outside a transaction without {clause} cannot be re-run after a partial failure"
        ),
        format!("Add {clause} so the migration can be retried."),
    )
}

/// ADD CONSTRAINT c is re-runnable when a DROP CONSTRAINT [IF EXISTS] c on the same table
/// precedes it: in this statement, or in an earlier one of the text.
fn dropped_before(f: &StatementFacts, i: usize, a: &ActionFacts, cx: &Cx<'_>) -> bool {
    let Some(name) = a.constraint.as_ref().and_then(|c| c.name.as_ref()) else {
        return false;
    };
    let drops = |g: &StatementFacts, upto: usize| {
        g.actions[..upto].iter().any(|d| {
            d.kind == ActionKind::DropConstraint && d.constraint_name.as_ref() == Some(name)
        })
    };
    if drops(f, i) {
        return true;
    }
    let Some(table) = &f.table else { return false };
    cx.earlier.iter().rev().filter_map(|s| s.facts()).any(|g| {
        g.kind == StatementKind::AlterTable
            && g.table.as_ref().is_some_and(|t| t.same_as(table))
            && drops(g, g.actions.len())
    })
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
    fn alter_table_sub_commands_and_object_drops() {
        assert_eq!(run(R, "ALTER TABLE t ADD COLUMN a int").len(), 1);
        assert!(run(R, "ALTER TABLE t ADD COLUMN IF NOT EXISTS a int").is_empty());
        assert_eq!(run(R, "ALTER TABLE t DROP COLUMN a, DROP CONSTRAINT c").len(), 2);
        assert!(run(R, "ALTER TABLE t DROP COLUMN IF EXISTS a, DROP CONSTRAINT IF EXISTS c").is_empty());
        assert_eq!(run(R, "ALTER TABLE t ADD CONSTRAINT c CHECK (a > 0)").len(), 1);
        assert!(run(R, "ALTER TABLE t DROP CONSTRAINT IF EXISTS c, ADD CONSTRAINT c CHECK (a > 0)").is_empty());
        assert!(run(R, "ALTER TABLE t DROP CONSTRAINT IF EXISTS c; ALTER TABLE t ADD CONSTRAINT c CHECK (a > 0);").is_empty());
        // A drop on another table does not make this ADD re-runnable.
        assert_eq!(run(R, "ALTER TABLE u DROP CONSTRAINT IF EXISTS c; ALTER TABLE t ADD CONSTRAINT c CHECK (a > 0);").len(), 1);
        assert_eq!(run(R, "DROP TYPE mood").len(), 1);
        assert!(run(R, "DROP TYPE IF EXISTS mood").is_empty());
        assert!(run(R, "BEGIN; ALTER TABLE t ADD COLUMN a int; COMMIT;").is_empty());
    }

    #[test]
    fn fixtures() {
        super::super::testing::fixtures(R);
    }
}
