//! unbatched-backfill: a large UPDATE/DELETE in one go inside a migration transaction, graded
//! by the server's own estimate of the rows it changes.
//!
//! DML is not parsed (DESIGN.md decision 4). Only in a transaction that already changed the
//! schema (`ScriptState::schema_changed`: a migration) does the proxy ask PostgreSQL for an
//! `EXPLAIN` of an UPDATE/DELETE, inside a savepoint of its own (`enforce::lookup`); the
//! estimate arrives in `CatalogFacts::estimates`. Sessions that never ran DDL pay nothing, and
//! `pgwarden check` (no server) never fires this rule.
use super::*;
use crate::sql::context::Estimate;

pub const DOC: &str = r#"## What it does
Flags an `UPDATE` or `DELETE` that changes many rows of an existing table in one statement, inside a transaction that has already changed the schema (a migration: `ALTER TABLE`, `CREATE TABLE`, `CREATE INDEX`, ... earlier in the same transaction; temporary tables, `SET`, `LOCK`, `TRUNCATE` and maintenance commands do not count). The proxy asks PostgreSQL how many rows the statement changes with an `EXPLAIN` without `ANALYZE` — the statement is planned, never run — and grades that estimate with the large-table thresholds (`large_rows`, or the same share of the table's `large_bytes`). A few rows changed by primary key pass silently. When no estimate can be had (bind parameters, which PostgreSQL cannot plan without their values; a lock wait longer than `estimate_timeout`), a statement with nothing that could narrow it (no WHERE, no `UPDATE ... FROM` / `DELETE ... USING` join, no subquery) changes every row and is graded by the table's size; any other change on a large table is a warning that says why; when PostgreSQL refuses the statement itself (an unknown column), pgwarden stays silent and the client gets the server's own error. Proxy only: `pgwarden check` has no planner to ask. A table this transaction locked earlier is `backfill-under-lock`'s; a table it created is nobody else's yet and is exempt.

## Why is this bad
One transaction holds the row lock of every row it changed until COMMIT (the application's writes to those rows wait), writes the whole change to the WAL at once (replicas lag), and leaves as many dead rows for VACUUM. Inside a migration the transaction also holds every lock its DDL took for as long as the data change runs.

## Example
```sql
BEGIN;
ALTER TABLE package_stats ADD COLUMN score int;
UPDATE package SET name = lower(name);   -- ~12.4M rows in one transaction
COMMIT;
```

## Use instead
Commit the schema change first (a revision of its own); backfill in batches, each in its own transaction (Alembic: a later revision that loops `op.execute("UPDATE package SET name = lower(name) WHERE id BETWEEN ... AND ...")` inside `with op.get_context().autocommit_block():`); then add the constraint (`SET NOT NULL` after a `CHECK (...) NOT VALID` and `VALIDATE CONSTRAINT`) in a third.

## Rewrite safety
No rewrite.
"#;

/// The table an UPDATE/DELETE writes, when pgwarden estimates it: not a migration tool's own
/// bookkeeping table (Alembic updates `alembic_version` after every revision: one row).
pub fn estimated_target(text: &str) -> Option<ObjectName> {
    let first = first_word(text)?;
    if first != "update" && first != "delete" {
        return None;
    }
    let target = backfill_under_lock::dml_target(text)?;
    (!bookkeeping(&target)).then_some(target)
}

/// The first word after whitespace and comments, lower-cased.
fn first_word(text: &str) -> Option<String> {
    let mut rest = text;
    loop {
        let r = rest.trim_start();
        if let Some(after) = r.strip_prefix("--") {
            rest = after.find('\n').map_or("", |n| &after[n..]);
        } else if let Some(after) = r.strip_prefix("/*") {
            rest = after.find("*/").map_or("", |n| &after[n + 2..]);
        } else {
            let end = r
                .find(|c: char| !c.is_ascii_alphabetic())
                .unwrap_or(r.len());
            return (end > 0).then(|| r[..end].to_ascii_lowercase());
        }
    }
}

fn bookkeeping(t: &ObjectName) -> bool {
    lock_held_across_statements::BOOKKEEPING.contains(&t.name.as_str())
}

/// Does the statement use bind parameters (`$1`)? PostgreSQL cannot plan it without their
/// values (PostgreSQL 16's `EXPLAIN (GENERIC_PLAN)` could; pgwarden supports 13+). A `$1`
/// inside a literal only costs the estimate.
pub fn has_bind_parameters(text: &str) -> bool {
    text.as_bytes()
        .windows(2)
        .any(|w| w[0] == b'$' && w[1].is_ascii_digit())
}

/// Does the statement change every row of its table, whatever its parameters? Only when none
/// of the words that could narrow it appears anywhere in the text (a WHERE, an UPDATE ... FROM
/// or DELETE ... USING join, a subquery): a word inside a literal or comment only costs the
/// verdict, never refuses a narrower change.
fn whole_table(text: &str) -> bool {
    !text
        .split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
        .any(|w| {
            ["where", "from", "using", "select", "current"]
                .iter()
                .any(|k| w.eq_ignore_ascii_case(k))
        })
        || first_word(text).as_deref() == Some("delete") && {
            // `DELETE FROM t` names its table with FROM: only a second one narrows it.
            let words: Vec<&str> = text
                .split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
                .filter(|w| !w.is_empty())
                .collect();
            words.iter().filter(|w| w.eq_ignore_ascii_case("from")).count() == 1
                && !words.iter().any(|w| {
                    ["where", "using", "select", "current"]
                        .iter()
                        .any(|k| w.eq_ignore_ascii_case(k))
                })
        }
}

/// A data change in a migration transaction, graded by the server's estimate.
pub fn on_dml(stmt: &AnalysedStatement, cx: &Cx<'_>) -> Option<Finding> {
    if !cx.state.in_transaction() || !cx.state.schema_changed {
        return None;
    }
    let estimate = cx.ctx.catalog.estimates.get(&stmt.span.start)?;
    let text = cx.text.get(stmt.span.clone())?;
    let target = estimated_target(text)?;
    if cx.state.held_locks.iter().any(|h| h.table.same_as(&target)) {
        // backfill-under-lock speaks for a table this transaction locked.
        return None;
    }
    let stats = match cx.size(&target) {
        Size::Small(s) | Size::Large(s) => s,
        // Created in this transaction: nobody else sees it. Unknown: the server did not find
        // the table (the statement fails by itself) or no live facts.
        Size::New | Size::Unknown => return None,
    };
    let t = cx.thresholds;
    let table_large = stats.rows >= t.large_rows || stats.bytes >= t.large_bytes;
    let verb = first_word(text)?.to_ascii_uppercase();
    let trimmed = text.trim_start();
    let start = stmt.span.start + (text.len() - trimmed.len());
    let described = format!("{target} ({})", human_rows(stats.rows));
    let (message, warn_only) = match estimate {
        Estimate::Rows(rows) => {
            // The share of the table the change writes, in bytes: a wide table is large by
            // its bytes long before its row count is.
            let share = if stats.rows == 0 {
                stats.bytes
            } else {
                ((*rows as u128 * stats.bytes as u128) / stats.rows as u128) as u64
            };
            if *rows < t.large_rows && share < t.large_bytes {
                return None;
            }
            (
                format!(
                    "{verb} on {described} changes {} (PostgreSQL's estimate: EXPLAIN without \
                     ANALYZE) in one transaction of a migration: every changed row stays \
                     locked for the application's writes until COMMIT, the whole change goes \
                     to the WAL at once, and as many dead rows are left behind",
                    human_rows(*rows)
                ),
                false,
            )
        }
        Estimate::Unknown { own_error: true, .. } => return None,
        Estimate::Unknown { why, .. } if table_large && whole_table(text) => (
            format!(
                "{verb} on {described} changes every row of it (no WHERE clause; pgwarden could \
                 not EXPLAIN it: {why}) in one transaction of a migration: every changed row \
                 stays locked for the application's writes until COMMIT, the whole change goes \
                 to the WAL at once, and as many dead rows are left behind"
            ),
            false,
        ),
        Estimate::Unknown { why, .. } => {
            if !table_large {
                return None;
            }
            (
                format!(
                    "{verb} on {described} in a migration transaction: pgwarden could not \
                     estimate how many rows it changes ({why}); on a table this size a \
                     whole-table change holds its row locks until COMMIT"
                ),
                true,
            )
        }
    };
    Some(Finding {
        rule: Rule::UnbatchedBackfill,
        message,
        help: format!(
            "Commit the schema change first (a revision of its own), then backfill in batches, \
             each in its own transaction (Alembic: in a later revision, \
             `with op.get_context().autocommit_block():` around a loop of \
             `op.execute(\"{verb} {} ... WHERE id BETWEEN ... AND ...\")`), then add the \
             constraint (NOT NULL, CHECK) in a third revision.",
            target
        ),
        span: start..start + verb.len(),
        statement: stmt.span.clone(),
        lock: Some(LockMode::RowExclusive),
        rewrite: None,
        small_table: warn_only,
    })
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;
    use crate::sql::analyze;

    #[test]
    fn targets() {
        let t = |s: &str| estimated_target(s).map(|n| n.to_string());
        assert_eq!(t("UPDATE package SET a = 1").as_deref(), Some("package"));
        assert_eq!(t("\n  delete FROM s.o WHERE true").as_deref(), Some("s.o"));
        assert_eq!(t("/* c */ UPDATE o SET a = 1").as_deref(), Some("o"));
        assert_eq!(
            t("UPDATE alembic_version SET version_num='2' WHERE alembic_version.version_num = '1'"),
            None
        );
        assert_eq!(t("INSERT INTO o SELECT * FROM p"), None);
        assert_eq!(t("MERGE INTO o USING p ON true WHEN MATCHED THEN DELETE"), None);
        assert_eq!(t("SELECT 1"), None);
        assert!(has_bind_parameters("UPDATE o SET a = $1 WHERE id = $2"));
        assert!(!has_bind_parameters("UPDATE o SET a = 'x$' WHERE id = 2"));
    }

    /// The offset of the statement whose text starts with `head` (the key of its estimate).
    fn start_of(sql: &str, head: &str, c: &AnalysisContext) -> usize {
        analyze(sql, c)
            .statements
            .iter()
            .find(|st| sql[st.span.clone()].trim_start().starts_with(head))
            .expect("statement")
            .span
            .start
    }

    /// Findings of the rule with `estimate` for the statement starting at `at`.
    fn run_est(sql: &str, rows: u64, at: &str, estimate: Estimate) -> Vec<Finding> {
        let mut c = with_rows(ctx(), "package", rows);
        let start = start_of(sql, at, &c);
        c.catalog.estimates.insert(start, estimate);
        let a = analyze(sql, &c);
        evaluate(sql, &a, &c, &SizeThresholds::default())
            .findings
            .into_iter()
            .filter(|f| f.rule == Rule::UnbatchedBackfill)
            .collect()
    }

    #[test]
    fn graded_by_the_estimate_in_a_migration_transaction() {
        let full = "BEGIN; ALTER TABLE other ADD COLUMN b int; UPDATE package SET a = 1; COMMIT;";
        let f = run_est(full, 2_000_000, "UPDATE", Estimate::Rows(2_000_000));
        assert_eq!(f.len(), 1, "{f:?}");
        assert!(f[0].message.contains("package (~2.0M rows)"), "{}", f[0].message);
        assert!(f[0].message.contains("changes ~2.0M rows"), "{}", f[0].message);
        assert!(f[0].help.contains("autocommit_block"), "{}", f[0].help);
        assert!(!f[0].small_table);
        // A few rows by primary key: silent.
        assert!(run_est(full, 2_000_000, "UPDATE", Estimate::Rows(1)).is_empty());
        // Not a migration (no schema change before it), or outside a transaction: silent.
        let app = "BEGIN; UPDATE package SET a = 1; COMMIT;";
        assert!(run_est(app, 2_000_000, "UPDATE", Estimate::Rows(2_000_000)).is_empty());
        let temp = "BEGIN; CREATE TEMP TABLE x (a int); UPDATE package SET a = 1; COMMIT;";
        assert!(run_est(temp, 2_000_000, "UPDATE", Estimate::Rows(2_000_000)).is_empty());
        // The table this transaction locked is backfill-under-lock's.
        let locked = "BEGIN; ALTER TABLE package ADD COLUMN b int; UPDATE package SET b = 1; COMMIT;";
        assert!(run_est(locked, 2_000_000, "UPDATE", Estimate::Rows(2_000_000)).is_empty());
        // No estimate: a warning on a large table, unless the server refused the statement.
        let why = |own_error| Estimate::Unknown {
            why: "bind parameters".into(),
            own_error,
        };
        let narrow = "BEGIN; ALTER TABLE other ADD COLUMN b int; UPDATE package SET a = 1 WHERE b > 2; COMMIT;";
        let f = run_est(narrow, 2_000_000, "UPDATE", why(false));
        assert_eq!(f.len(), 1);
        assert!(f[0].small_table, "a warning only");
        assert!(f[0].message.contains("bind parameters"), "{}", f[0].message);
        assert!(run_est(full, 2_000_000, "UPDATE", why(true)).is_empty());
        assert!(run_est(narrow, 2_000, "UPDATE", why(false)).is_empty());
        // Without an estimate, a change with nothing that could narrow it is the whole table.
        let params = "BEGIN; CREATE TABLE n (a int); UPDATE package SET a = $1; COMMIT;";
        let f = run_est(params, 2_000_000, "UPDATE", why(false));
        assert_eq!(f.len(), 1);
        assert!(!f[0].small_table, "refused");
        assert!(f[0].message.contains("changes every row"), "{}", f[0].message);
        let del = "BEGIN; CREATE TABLE n (a int); DELETE FROM package; COMMIT;";
        assert!(!run_est(del, 2_000_000, "DELETE", why(false))[0].small_table);
        for narrowed in [
            "BEGIN; CREATE TABLE n (a int); UPDATE package SET a = $1 WHERE id = $2; COMMIT;",
            "BEGIN; CREATE TABLE n (a int); UPDATE package SET a = o.a FROM o; COMMIT;",
            "BEGIN; CREATE TABLE n (a int); DELETE FROM package USING o; COMMIT;",
            "BEGIN; CREATE TABLE n (a int); DELETE FROM package WHERE a = $1; COMMIT;",
        ] {
            let head = if narrowed.contains("UPDATE") { "UPDATE" } else { "DELETE" };
            let f = run_est(narrowed, 2_000_000, head, why(false));
            assert!(f[0].small_table, "{narrowed}: a warning only");
        }
    }

    /// A wide table: fewer rows than `large_rows`, but the share of its bytes the change
    /// writes reaches `large_bytes`.
    #[test]
    fn the_bytes_threshold_counts_the_share_of_the_table() {
        let sql = "BEGIN; CREATE TABLE n (a int); DELETE FROM package WHERE a < 5; COMMIT;";
        let mut c = ctx();
        let start = start_of(sql, "DELETE", &c);
        c.catalog.tables.insert(
            "package".into(),
            TableStats {
                rows: 400_000,
                bytes: 4 << 30,
            },
        );
        let grade = |rows: u64| {
            let mut c = c.clone();
            c.catalog.estimates.insert(start, Estimate::Rows(rows));
            let a = analyze(sql, &c);
            evaluate(sql, &a, &c, &SizeThresholds::default())
                .findings
                .into_iter()
                .filter(|f| f.rule == Rule::UnbatchedBackfill)
                .count()
        };
        assert_eq!(grade(200_000), 1, "half of 4 GiB");
        assert_eq!(grade(50_000), 0, "an eighth of 4 GiB");
    }
}
