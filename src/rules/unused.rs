//! Breaking-change rules on objects nobody else can be using (issue 11 deliver 2): a DROP or
//! RENAME of a table that is provably empty, in a database where no other client session is
//! connected, breaks no running code and loses no data. That is a fresh install, a test run,
//! and the seed's "upgrade, downgrade, upgrade" check; there those findings stay warnings
//! instead of refusals. In a database that is in use (any other session connected), or on a
//! table with a row in it, nothing changes: they are refused as before.
//!
//! "Provably empty" is a zero-length heap (`pg_relation_size = 0`), not `reltuples`: the
//! estimate is as old as the last ANALYZE, while a heap that was never extended cannot hold a
//! row, committed or not. Only with the server's answers (the proxy); `pgwarden check` has no
//! live database and keeps the rules as they are.
use super::*;
use crate::sql::facts::{ActionKind, ObjectType, StatementKind};

/// Rules whose findings are relaxed here, with what they need to be relaxed.
const TABLE_RULES: &[Rule] = &[
    Rule::BanDropTable,
    Rule::BanDropColumn,
    Rule::RenamingTable,
    Rule::RenamingColumn,
];

/// Drops of objects that hold no rows: relaxed in an unused database unless CASCADE (a
/// `DROP TYPE ... CASCADE` drops the columns of that type, with their data).
const OBJECT_RULES: &[Rule] = &[
    Rule::BanDropView,
    Rule::BanDropFunction,
    Rule::BanDropType,
    Rule::BanDropDomain,
    Rule::BanDropSequence,
];

/// Is `rule` one this module can relax (for `pgwarden explain`)?
pub fn relaxes(rule: Rule) -> bool {
    TABLE_RULES.contains(&rule) || OBJECT_RULES.contains(&rule)
}

/// The paragraph `pgwarden explain` adds to the rules above.
pub const EXPLAIN: &str = "## Empty tables in an unused database
In the proxy, this rule warns instead of refusing when nobody else can be affected: every \
table the statement drops or renames is empty (its heap is zero bytes long: no row was ever \
stored, so no estimate is involved) and no other client session is connected to the database \
(a fresh install, a test run, an `alembic downgrade` before anyone uses the database). \
Objects without rows (views, functions, types, domains, sequences) need only the second \
condition, and no CASCADE. The same statement on a table with data, or while another session \
is connected, is refused as usual. `pgwarden check` has no live database: there the rule \
applies as written.
";

/// The database has no other client session (live facts only).
fn unused_database(cx: &Cx<'_>) -> bool {
    !cx.ctx.file_mode && cx.ctx.catalog.live.is_some() && cx.ctx.catalog.other_sessions == Some(0)
}

/// The tables a finding of a table rule is about.
fn tables_of(f: &StatementFacts) -> Vec<&ObjectName> {
    match f.kind {
        StatementKind::DropTable => f.targets.iter().collect(),
        _ => f.table.iter().collect(),
    }
}

/// `ADD COLUMN ... NOT NULL` without a default succeeds on a table without rows: on a
/// provably empty one adding-required-field has nothing to say (its own check trusts only an
/// estimate of 0 rows).
pub(crate) fn drop_required_field_on_empty(
    f: &StatementFacts,
    cx: &Cx<'_>,
    out: &mut Vec<Finding>,
    first: usize,
) {
    let Some(table) = f.table.as_ref() else {
        return;
    };
    if cx.ctx.file_mode
        || !cx.ctx.catalog.is_empty_table(table)
        || crate::sql::identity::resolved_elsewhere(cx.ctx, cx.state, table)
    {
        return;
    }
    let mut i = first;
    while i < out.len() {
        if out[i].rule == Rule::AddingRequiredField {
            out.remove(i);
        } else {
            i += 1;
        }
    }
}

/// Can [`relax`] change a finding of this statement? Only a DROP TABLE, a DROP of another
/// object, or an ALTER TABLE that drops or renames can: the lookup asks the server how many
/// other sessions use the database only then (`LookupRequest::sessions`), and every other
/// statement is decided with that count unknown, which relaxes nothing.
pub fn may_relax(f: &StatementFacts) -> bool {
    match f.kind {
        StatementKind::DropTable | StatementKind::DropObject => true,
        StatementKind::AlterTable => f.actions.iter().any(|a| {
            matches!(
                a.kind,
                ActionKind::DropColumn | ActionKind::RenameTable | ActionKind::RenameColumn
            )
        }),
        _ => false,
    }
}

/// Caps the findings `found` (this statement's) at warn when the statement touches nothing
/// anyone else could be using, saying why in the message.
pub(crate) fn relax(f: &StatementFacts, cx: &Cx<'_>, found: &mut [Finding]) {
    if found.is_empty() || !may_relax(f) || !unused_database(cx) {
        return;
    }
    let tables_empty = || {
        let tables = tables_of(f);
        !tables.is_empty()
            && tables.iter().all(|t| {
                cx.ctx.catalog.is_empty_table(t)
                    && !crate::sql::identity::resolved_elsewhere(cx.ctx, cx.state, t)
            })
    };
    for finding in found.iter_mut() {
        let ok = if TABLE_RULES.contains(&finding.rule) {
            // DROP COLUMN / RENAME of a table, not of a type's attribute or a view's column.
            let on_table = f.kind == StatementKind::DropTable
                || (f.kind == StatementKind::AlterTable
                    && f.actions.iter().any(|a| {
                        matches!(
                            a.kind,
                            ActionKind::DropColumn
                                | ActionKind::RenameTable
                                | ActionKind::RenameColumn
                        )
                    }));
            on_table && tables_empty()
        } else if OBJECT_RULES.contains(&finding.rule) {
            f.kind == StatementKind::DropObject
                && !f.flags.cascade
                && !matches!(f.object, Some(ObjectType::MaterializedView))
                // A routine the catalog says something depends on: refused as usual.
                && !super::ban_drop_function::has_dependents(f, cx)
        } else {
            false
        };
        if ok {
            finding.small_table = true;
            finding.message.push_str(
                " (allowed as a warning: it is empty and no other session is connected to this \
                 database; with data or other users it is refused)",
            );
        }
    }
}
