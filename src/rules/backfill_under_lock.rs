//! backfill-under-lock: a data change on a table the transaction holds a write-blocking lock on.
//!
//! DML is not parsed (DESIGN.md decision 4); only its target is read, with a few tokens, and
//! only while the transaction holds SHARE or stronger on an existing table (the proxy sends
//! other DML straight on: sessions that never ran DDL pay nothing).
use super::*;
use crate::sql::context::HeldLock;

pub const DOC: &str = r#"## What it does
Flags an `UPDATE`, `DELETE`, `MERGE` or `INSERT ... SELECT` on a table on which an earlier statement of the same transaction took a lock that blocks writes (ACCESS EXCLUSIVE from `ALTER TABLE`, SHARE from `CREATE INDEX`, ...). In the proxy the lock may come from an earlier Query: Alembic sends every operation of a revision on its own.

## Why is this bad
Locks are held until COMMIT. A whole-table UPDATE after `ADD COLUMN` — the "add column, backfill, set NOT NULL in one revision" data migration — runs with the table locked: under ACCESS EXCLUSIVE nobody can even read it for as long as the backfill takes (minutes on a large table).

## Example
```sql
BEGIN;
ALTER TABLE package ADD COLUMN extras jsonb;
UPDATE package SET extras = '{}';
COMMIT;
```

## Use instead
Commit the schema change first (a revision of its own); backfill in batches, each in its own transaction (Alembic: a later revision that loops `op.execute("UPDATE package SET extras = '{}' WHERE id BETWEEN ...")` inside `with op.get_context().autocommit_block():`); then add the constraint (`SET NOT NULL` after a `CHECK (...) NOT VALID` and `VALIDATE CONSTRAINT`) in a third.

## Rewrite safety
No rewrite.
"#;

/// Locks that block writes: SHARE and stronger.
fn blocks_writes(mode: LockMode) -> bool {
    matches!(
        mode,
        LockMode::Share | LockMode::ShareRowExclusive | LockMode::Exclusive | LockMode::AccessExclusive
    )
}

/// After a statement ran: remember the write-blocking locks it took on existing tables.
pub(crate) fn track(f: &StatementFacts, ctx: &AnalysisContext, state: &mut ScriptState) {
    if !state.in_transaction() {
        return;
    }
    let mut add = Vec::new();
    for (table, mode) in &f.locks {
        if !blocks_writes(*mode) || crate::sql::identity::is_new(ctx, state, table) {
            continue;
        }
        let added_columns = if f.table.as_ref() == Some(table) {
            f.actions
                .iter()
                .filter(|a| a.kind == crate::sql::facts::ActionKind::AddColumn)
                .filter_map(|a| a.column_def.as_ref().map(|c| c.name.clone()))
                .collect()
        } else {
            Vec::new()
        };
        add.push(HeldLock {
            table: table.clone(),
            mode: *mode,
            stats: ctx.catalog.table_stats(table),
            added_columns,
        });
    }
    for h in add {
        match state.held_locks.iter_mut().find(|k| k.table == h.table) {
            Some(k) => {
                k.mode = k.mode.max(h.mode);
                k.added_columns.extend(h.added_columns);
            }
            None => state.held_locks.push(h),
        }
    }
    if f.kind != crate::sql::StatementKind::CreateFunction {
        for inner in &f.body {
            track(inner, ctx, state);
        }
    }
}

/// The table a data change writes, read from its first tokens: `UPDATE [ONLY] t`, `DELETE FROM
/// [ONLY] t`, `MERGE INTO t`, `INSERT INTO t ... SELECT` (an INSERT ... VALUES writes the rows
/// it lists, no more). `None` for anything else (a WITH query, a SELECT).
pub fn dml_target(text: &str) -> Option<ObjectName> {
    let mut t = Tokens { rest: text };
    let first = t.word()?.to_ascii_lowercase();
    let mut next = || t.word().map(|w| w.to_ascii_lowercase());
    match first.as_str() {
        "update" => {}
        "delete" | "merge" | "insert" => {
            next()?; // FROM / INTO
        }
        _ => return None,
    }
    let mut name = t.name()?;
    if name.schema.is_none() && name.name == "only" {
        name = t.name()?;
    }
    if first == "insert" {
        let lower = text.to_ascii_lowercase();
        if !lower
            .split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
            .any(|w| w == "select")
        {
            return None;
        }
    }
    Some(name)
}

/// Just enough of a tokenizer for [`dml_target`]: words and (quoted, dotted) names, comments
/// and whitespace skipped.
struct Tokens<'a> {
    rest: &'a str,
}

impl<'a> Tokens<'a> {
    fn skip(&mut self) {
        loop {
            let r = self.rest.trim_start();
            if let Some(after) = r.strip_prefix("--") {
                self.rest = after.find('\n').map_or("", |n| &after[n..]);
            } else if let Some(after) = r.strip_prefix("/*") {
                self.rest = after.find("*/").map_or("", |n| &after[n + 2..]);
            } else {
                self.rest = r;
                return;
            }
        }
    }

    fn word(&mut self) -> Option<&'a str> {
        self.skip();
        let end = self
            .rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(self.rest.len());
        if end == 0 {
            return None;
        }
        let (w, rest) = self.rest.split_at(end);
        self.rest = rest;
        Some(w)
    }

    /// One identifier: folded to lower case unless quoted.
    fn ident(&mut self) -> Option<String> {
        self.skip();
        if let Some(after) = self.rest.strip_prefix('"') {
            let mut out = String::new();
            let mut it = after.char_indices();
            while let Some((i, c)) = it.next() {
                if c == '"' {
                    if after[i + 1..].starts_with('"') {
                        out.push('"');
                        it.next();
                        continue;
                    }
                    self.rest = &after[i + 1..];
                    return Some(out);
                }
                out.push(c);
            }
            return None;
        }
        let end = self
            .rest
            .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == '$'))
            .unwrap_or(self.rest.len());
        if end == 0 {
            return None;
        }
        let (w, rest) = self.rest.split_at(end);
        self.rest = rest;
        Some(w.to_lowercase())
    }

    fn name(&mut self) -> Option<ObjectName> {
        let first = self.ident()?;
        if let Some(after) = self.rest.strip_prefix('.') {
            self.rest = after;
            let second = self.ident()?;
            return Some(ObjectName::new(Some(&first), &second));
        }
        Some(ObjectName::new(None, &first))
    }
}

/// A data change on a table this transaction holds a write-blocking lock on.
pub fn on_dml(stmt: &AnalysedStatement, cx: &Cx<'_>) -> Option<Finding> {
    if !cx.state.in_transaction() || cx.state.held_locks.is_empty() {
        return None;
    }
    let text = cx.text.get(stmt.span.clone())?;
    let target = dml_target(text)?;
    let held = cx
        .state
        .held_locks
        .iter()
        .find(|h| h.table.same_as(&target))?;
    let size = match held.stats {
        Some(s) if s.rows >= cx.thresholds.large_rows || s.bytes >= cx.thresholds.large_bytes => {
            Size::Large(s)
        }
        Some(s) => Size::Small(s),
        None => Size::Unknown,
    };
    let described = match held.stats {
        Some(s) => format!("{} ({})", held.table, human_rows(s.rows)),
        None => held.table.to_string(),
    };
    let verb = text
        .trim_start()
        .split(|c: char| !c.is_ascii_alphabetic())
        .next()
        .unwrap_or("DML")
        .to_ascii_uppercase();
    let start = stmt.span.start + (text.len() - text.trim_start().len());
    let finding = Finding {
        rule: Rule::BackfillUnderLock,
        message: format!(
            "{verb} on {described} runs while this transaction holds {} on it (taken by an \
             earlier statement): {} until COMMIT, for as long as the data change takes",
            held.mode,
            held.mode.blocks()
        ),
        help: "Commit the schema change first (a revision of its own), backfill in batches in \
               separate transactions (Alembic: `with op.get_context().autocommit_block():` \
               around batched `op.execute(\"UPDATE ... WHERE id BETWEEN ...\")`), then add the \
               constraint in a later revision."
            .to_string(),
        span: start..start + verb.len(),
        statement: stmt.span.clone(),
        lock: Some(held.mode),
        rewrite: None,
        small_table: false,
    };
    Some(finding.sized(size, cx))
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    const R: Rule = Rule::BackfillUnderLock;

    #[test]
    fn targets() {
        let t = |s: &str| dml_target(s).map(|n| n.to_string());
        assert_eq!(t("UPDATE package SET a = 1").as_deref(), Some("package"));
        assert_eq!(t("update ONLY s.\"Pkg\" set a = 1").as_deref(), Some("s.Pkg"));
        assert_eq!(t("/* x */ DELETE FROM -- y\n orders WHERE true").as_deref(), Some("orders"));
        assert_eq!(t("INSERT INTO o (a) SELECT a FROM p").as_deref(), Some("o"));
        assert_eq!(t("INSERT INTO o (a) VALUES (1)"), None);
        assert_eq!(t("MERGE INTO o USING p ON true WHEN MATCHED THEN DELETE").as_deref(), Some("o"));
        assert_eq!(t("SELECT 1"), None);
        assert_eq!(t("WITH x AS (SELECT 1) UPDATE o SET a = 1"), None);
    }

    #[test]
    fn backfill_after_alter_in_the_same_transaction_fires() {
        let sql = "BEGIN; ALTER TABLE package ADD COLUMN extras text; \
                   UPDATE package SET extras = ''; COMMIT;";
        assert_eq!(run(R, sql).len(), 1);
        // Another table, bookkeeping, or outside a transaction: nothing.
        assert!(run(R, "BEGIN; ALTER TABLE package ADD COLUMN e text; UPDATE other SET a = 1; COMMIT;").is_empty());
        assert!(run(R, "ALTER TABLE package ADD COLUMN e text; UPDATE package SET e = '';").is_empty());
        // A table created in the same transaction is nobody else's yet.
        assert!(run(R, "BEGIN; CREATE TABLE n (a int); ALTER TABLE n ADD COLUMN b int; UPDATE n SET b = 1; COMMIT;").is_empty());
        // CREATE INDEX takes SHARE: writes wait too.
        assert_eq!(run(R, "BEGIN; CREATE INDEX i ON package (a); DELETE FROM package; COMMIT;").len(), 1);
    }
}
