//! A DROP COLUMN after an ADD COLUMN on the same table in the same transaction is what Alembic's
//! autogenerate emits for a column rename (it cannot tell a rename from a drop and an add): the
//! data of the dropped column is lost, not moved (the seed: "Column renames (sees as drop + add
//! = DATA LOSS)"). ban-drop-column says so when it sees the pair, within one text or across the
//! Queries of the transaction (the proxy carries the added columns with the table's lock).
use super::*;
use crate::sql::facts::ActionKind;

/// Columns added to `table` earlier: by this statement's own sub-commands, or by an earlier
/// statement of the transaction.
fn added_before(f: &StatementFacts, cx: &Cx<'_>, table: &ObjectName) -> Vec<String> {
    let mut out: Vec<String> = f
        .actions
        .iter()
        .filter(|a| a.kind == ActionKind::AddColumn)
        .filter_map(|a| a.column_def.as_ref().map(|c| c.name.clone()))
        .collect();
    if cx.state.in_transaction() {
        for h in cx
            .state
            .held_locks
            .iter()
            .filter(|h| h.table.same_as(table))
        {
            out.extend(h.added_columns.iter().cloned());
        }
    }
    out.dedup();
    out
}

/// Adds the rename warning to this statement's ban-drop-column findings.
pub(crate) fn annotate(f: &StatementFacts, cx: &Cx<'_>, found: &mut [Finding]) {
    if f.kind != crate::sql::StatementKind::AlterTable
        || !found.iter().any(|x| x.rule == Rule::BanDropColumn)
    {
        return;
    }
    let Some(table) = f.table.as_ref() else {
        return;
    };
    let added = added_before(f, cx, table);
    if added.is_empty() {
        return;
    }
    for finding in found.iter_mut().filter(|x| x.rule == Rule::BanDropColumn) {
        finding.message.push_str(&format!(
            "; {} was added to the same table in this migration: if the pair is meant as a \
             rename (Alembic's autogenerate writes a rename as add + drop), the data of the \
             dropped column is LOST, not moved",
            added.join(", ")
        ));
        finding.help = format!(
            "For a rename, replace the add_column/drop_column pair with \
             op.alter_column(\"{}\", \"<old>\", new_column_name=\"<new>\") (ALTER TABLE ... \
             RENAME COLUMN), or copy the data in between; otherwise: {}",
            table.name, finding.help
        );
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    #[test]
    fn add_then_drop_on_the_same_table_is_called_a_lossy_rename() {
        let sql = "BEGIN; ALTER TABLE account ADD COLUMN handle text; \
                   ALTER TABLE account DROP COLUMN nick; COMMIT;";
        let f = run(Rule::BanDropColumn, sql);
        assert_eq!(f.len(), 1);
        assert!(f[0].message.contains("LOST"), "{}", f[0].message);
        assert!(f[0].help.contains("new_column_name"), "{}", f[0].help);
        // One statement doing both.
        let f = run(
            Rule::BanDropColumn,
            "ALTER TABLE account ADD COLUMN handle text, DROP COLUMN nick",
        );
        assert!(f[0].message.contains("LOST"), "{}", f[0].message);
        // Another table, or no add: a plain drop.
        let f = run(
            Rule::BanDropColumn,
            "BEGIN; ALTER TABLE other ADD COLUMN handle text; ALTER TABLE account DROP COLUMN nick; COMMIT;",
        );
        assert!(!f[0].message.contains("LOST"), "{}", f[0].message);
    }
}
