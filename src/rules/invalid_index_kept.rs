//! invalid-index-kept: `CREATE INDEX [CONCURRENTLY] IF NOT EXISTS` of a name an INVALID index has.
use super::*;
use crate::sql::facts::*;

pub const DOC: &str = r#"## What it does
Flags `CREATE INDEX [CONCURRENTLY] IF NOT EXISTS name ...` when an index of that name exists and is INVALID (live facts: the proxy asks the server for `pg_index.indisvalid`).

## Why is this bad
A `CREATE INDEX CONCURRENTLY` that fails or is cancelled (a `statement_timeout`, a deadlock, a duplicate key) leaves its index behind, marked INVALID: it is maintained on every write but never used by a query. The retry's `IF NOT EXISTS` sees the name, builds nothing and reports success — the index the migration wanted does not exist, silently.

## Example
```sql
-- the first attempt was cancelled by statement_timeout
CREATE INDEX CONCURRENTLY IF NOT EXISTS orders_created_idx ON orders (created_at);
```

## Use instead
Drop the invalid index first, then build it again: `DROP INDEX CONCURRENTLY IF EXISTS orders_created_idx;` then the `CREATE INDEX CONCURRENTLY` (Alembic: `op.drop_index("orders_created_idx", table_name="orders", postgresql_concurrently=True, if_exists=True)` and `op.create_index(..., postgresql_concurrently=True)` inside `with op.get_context().autocommit_block():`).

## Rewrite safety
No rewrite (two statements, outside a transaction block).
"#;

/// The index a CREATE INDEX IF NOT EXISTS names, in its table's schema (where it is created).
fn kept_name(f: &StatementFacts) -> Option<ObjectName> {
    if f.kind != StatementKind::CreateIndex || !f.flags.if_not_exists {
        return None;
    }
    let index = f.targets.first()?;
    let schema = f.table.as_ref().and_then(|t| t.schema.as_deref());
    Some(ObjectName::new(schema, &index.name))
}

/// The index names the lookup must check, for the top-level statements of the text.
pub fn index_names(analysis: &crate::sql::Analysis) -> Vec<ObjectName> {
    let mut out: Vec<ObjectName> = Vec::new();
    for f in analysis.statements.iter().filter_map(|s| s.facts()) {
        if let Some(n) = kept_name(f) {
            if !out.contains(&n) {
                out.push(n);
            }
        }
    }
    out
}

pub fn check(f: &StatementFacts, cx: &Cx<'_>, out: &mut Vec<Finding>) {
    let Some(name) = kept_name(f) else { return };
    if !cx.ctx.catalog.invalid_indexes.contains(&name.to_string()) {
        return;
    }
    if name.schema.is_none() && cx.state.search_path_changed {
        // The lookup resolved the name under another search_path: it proves nothing here.
        return;
    }
    out.push(Finding::new(
        Rule::InvalidIndexKept,
        f,
        format!(
            "index {name} exists and is INVALID (a failed or cancelled CONCURRENTLY build): \
             IF NOT EXISTS keeps it and builds nothing, so the index this migration wants will \
             not exist"
        ),
        format!(
            "Drop it first: DROP INDEX CONCURRENTLY IF EXISTS {name}; then create it again \
             (Alembic: op.drop_index(..., postgresql_concurrently=True, if_exists=True) in \
             `with op.get_context().autocommit_block():`)."
        ),
    ));
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    const R: Rule = Rule::InvalidIndexKept;

    #[test]
    fn fires_only_on_an_invalid_index_the_server_named() {
        let sql = "CREATE INDEX CONCURRENTLY IF NOT EXISTS i ON s.t (a)";
        assert!(run(R, sql).is_empty(), "no live facts: nothing known");
        let mut c = ctx();
        c.catalog.invalid_indexes.insert("s.i".into());
        assert_eq!(run_with(R, sql, &c).len(), 1);
        assert!(run_with(R, "CREATE INDEX CONCURRENTLY i ON s.t (a)", &c).is_empty());
        let a = crate::sql::analyze(sql, &c);
        assert_eq!(index_names(&a), vec![ObjectName::new(Some("s"), "i")]);
    }
}
