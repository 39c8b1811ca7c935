//! enum-value-in-transaction: ALTER TYPE ... ADD VALUE in a transaction before PG 12, or the new value used in the same transaction.
use super::*;
use crate::sql::facts::*;

pub const DOC: &str = r#"## What it does
Flags `ALTER TYPE ... ADD VALUE` inside a transaction block on PostgreSQL before 12, and any use of the new label later in the same transaction.

## Why is this bad
Before PostgreSQL 12, ADD VALUE cannot run in a transaction block at all. Since 12 it can, but the new value cannot be used until the transaction commits: "unsafe use of new value" (55P04) fails the migration.

## Example
```sql
BEGIN;
ALTER TYPE order_status ADD VALUE 'refunded';
UPDATE orders SET status = 'refunded' WHERE refunded_at IS NOT NULL;
COMMIT;
```

## Use instead
Add the value in its own transaction (Alembic: `with op.get_context().autocommit_block(): op.execute("ALTER TYPE ... ADD VALUE ...")`), then use it in a later migration.

## Rewrite safety
No rewrite.
"#;

pub fn check(f: &StatementFacts, cx: &Cx<'_>, out: &mut Vec<Finding>) {
    if !cx.state.in_transaction() {
        return;
    }
    // The quoted label is built only when the bare label occurs (an embedded `'` is doubled in
    // the literal, so such a label is always looked up in full).
    let uses = |text: &str, label: &str| {
        (label.contains('\'') || text.contains(label))
            && text.contains(&format!("'{}'", label.replace('\'', "''")))
    };
    if f.kind == StatementKind::AlterType && f.flags.add_value {
        let Some(label) = &f.enum_value else { return };
        let ty = f.targets.first().map(|t| t.to_string()).unwrap_or_default();
        if cx.version_at_least(12) == Some(false) {
            out.push(Finding::new(
                Rule::EnumValueInTransaction,
                f,
                format!("ALTER TYPE {ty} ADD VALUE cannot run inside a transaction block before PostgreSQL 12"),
                "Run it outside the transaction: Alembic `with op.get_context().autocommit_block():`."
                    .to_string(),
            ));
            return;
        }
        // Later statements of the same transaction (DML included: it is where labels are used).
        for later in cx.later {
            if let Some(l) = later.facts() {
                if matches!(l.kind, StatementKind::Commit | StatementKind::Rollback) {
                    break;
                }
            }
            let text = cx.text.get(later.span.clone()).unwrap_or("");
            if uses(text, label) {
                out.push(
                    Finding::new(
                        Rule::EnumValueInTransaction,
                        f,
                        format!(
                            "the new {ty} value '{label}' is used later in the same transaction: \
                             Postgres fails with \"unsafe use of new value\" (55P04)"
                        ),
                        "Add the enum value in its own transaction (Alembic: autocommit_block) and \
                         use it in a later migration."
                            .to_string(),
                    )
                    .at(later.span.clone()),
                );
                return;
            }
        }
        return;
    }
    // In the proxy the use arrives in a later Query: the state remembers the added labels.
    let text = cx.text.get(f.span.clone()).unwrap_or("");
    // Labels added earlier in this same text were already reported at their ADD VALUE.
    let added_here = |label: &String| {
        cx.earlier.iter().filter_map(|s| s.facts()).any(|p| {
            p.kind == StatementKind::AlterType && p.flags.add_value && p.enum_value.as_ref() == Some(label)
        })
    };
    if let Some((ty, label)) = cx
        .state
        .enum_values_added
        .iter()
        .find(|(_, l)| uses(text, l) && !added_here(l))
    {
        out.push(Finding::new(
            Rule::EnumValueInTransaction,
            f,
            format!(
                "the {ty} value '{label}' added in this transaction is used before COMMIT: \
                 Postgres fails with \"unsafe use of new value\" (55P04)"
            ),
            "Add the enum value in its own transaction (Alembic: autocommit_block).".to_string(),
        ));
    }
}

/// A data change of a later Query (the proxy carries the labels added earlier in the
/// transaction) that uses a new label; within one text the ADD VALUE itself reports it.
pub fn on_dml(stmt: &AnalysedStatement, cx: &Cx<'_>) -> Option<Finding> {
    if !cx.state.in_transaction() || cx.ctx.enum_values_added.is_empty() {
        return None;
    }
    let text = cx.text.get(stmt.span.clone())?;
    let (ty, label) = cx
        .ctx
        .enum_values_added
        .iter()
        .find(|(_, l)| text.contains(&format!("'{}'", l.replace('\'', "''"))))?;
    Some(Finding {
        rule: Rule::EnumValueInTransaction,
        message: format!(
            "the {ty} value '{label}' added earlier in this transaction is used before COMMIT: \
             Postgres fails with \"unsafe use of new value\" (55P04)"
        ),
        help: "Add the enum value in its own transaction (Alembic: `with \
               op.get_context().autocommit_block():`) and use it in a later migration."
            .to_string(),
        span: stmt.span.clone(),
        statement: stmt.span.clone(),
        lock: None,
        rewrite: None,
        small_table: false,
    })
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    const R: Rule = Rule::EnumValueInTransaction;

    #[test]
    fn use_in_same_transaction_fires() {
        let sql = "BEGIN; ALTER TYPE s ADD VALUE 'x'; UPDATE t SET s = 'x'; COMMIT;";
        assert_eq!(run(R, sql).len(), 1);
        let sql = "BEGIN; ALTER TYPE s ADD VALUE 'x'; ALTER TABLE t ALTER COLUMN s SET DEFAULT 'x'; COMMIT;";
        assert!(!run(R, sql).is_empty());
    }

    #[test]
    fn own_transaction_passes_and_old_servers_fail() {
        assert!(run(R, "ALTER TYPE s ADD VALUE 'x'; UPDATE t SET s = 'x';").is_empty());
        assert!(run(R, "BEGIN; ALTER TYPE s ADD VALUE 'x'; COMMIT;").is_empty());
        let mut c = ctx();
        c.pg_version = Some(11);
        assert_eq!(run_with(R, "BEGIN; ALTER TYPE s ADD VALUE 'x'; COMMIT;", &c).len(), 1);
    }

    #[test]
    fn fixtures() {
        super::super::testing::fixtures(R);
    }
}
