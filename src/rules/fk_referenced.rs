//! Dropping a foreign key locks the table it references ACCESS EXCLUSIVE as well (PostgreSQL
//! removes the key's triggers on both tables): the findings on such a DROP CONSTRAINT name that
//! table and its size too, from the server's answer (issue 11 deliver 5).
use super::*;
use crate::sql::facts::ActionKind;

/// Appends the referenced table to this statement's findings that are about a lock.
pub(crate) fn annotate(f: &StatementFacts, cx: &Cx<'_>, found: &mut [Finding]) {
    let Some(table) = f.table.as_ref() else {
        return;
    };
    let dropped = &cx.ctx.catalog.dropped_foreign_keys;
    if dropped.is_empty() || found.is_empty() {
        return;
    }
    let referenced: Vec<String> = f
        .actions
        .iter()
        .filter(|a| a.kind == ActionKind::DropConstraint)
        .filter_map(|a| a.constraint_name.as_ref())
        .filter_map(|c| {
            dropped
                .iter()
                .find(|(t, k, _)| t == table && k == c)
                .map(|(_, _, r)| cx.describe(r))
        })
        .collect();
    if referenced.is_empty() {
        return;
    }
    for finding in found.iter_mut().filter(|x| x.lock.is_some()) {
        finding.message.push_str(&format!(
            "; dropping the foreign key also takes ACCESS EXCLUSIVE on the table it references, \
             {}: no reads or writes there either until COMMIT",
            referenced.join(", ")
        ));
    }
}
