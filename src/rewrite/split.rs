//! ALTER TABLE with several sub-commands, one of which is safe only as a multi-step rewrite
//! (ADD FOREIGN KEY / CHECK / UNIQUE / PRIMARY KEY, SET NOT NULL): pgwarden does not split
//! it. Splitting would change which sub-commands share a transaction and a lock, and a
//! sub-command dropped or reordered would change the end state silently (principle 1); so
//! the whole statement is refused, nothing of it is applied, and the message names the
//! sub-commands that need their own ALTER TABLE.
use crate::enforce::raise::{excerpt, Rejection};
use crate::sql::facts::{ActionKind, ConstraintKind, StatementFacts, StatementKind};

/// What a sub-command that needs steps is, for the message (`None`: it needs none).
fn needs_steps(kind: ActionKind) -> Option<&'static str> {
    match kind {
        ActionKind::AddConstraint(ConstraintKind::ForeignKey) => Some("ADD FOREIGN KEY"),
        ActionKind::AddConstraint(ConstraintKind::Check) => Some("ADD CHECK"),
        ActionKind::AddConstraint(ConstraintKind::Unique) => Some("ADD UNIQUE"),
        ActionKind::AddConstraint(ConstraintKind::PrimaryKey) => Some("ADD PRIMARY KEY"),
        ActionKind::SetNotNull => Some("SET NOT NULL"),
        _ => None,
    }
}

/// The refusal of `f` (its text `text`, the rules that fired `rules`), when it is an ALTER
/// TABLE of several sub-commands and one of them has a multi-step safe form.
pub fn several_subcommands(text: &str, f: &StatementFacts, rules: &[String]) -> Option<Rejection> {
    if f.kind != StatementKind::AlterTable || f.actions.len() < 2 {
        return None;
    }
    let stepped: Vec<&str> = f
        .actions
        .iter()
        .filter_map(|a| {
            needs_steps(a.kind)?;
            text.get(a.span.clone()).map(str::trim)
        })
        .collect();
    if stepped.is_empty() {
        return None;
    }
    let table = f
        .table
        .as_ref()
        .map_or("the table".into(), |t| t.to_string());
    let list = stepped
        .iter()
        .map(|s| format!("`{}`", excerpt(s)))
        .collect::<Vec<_>>()
        .join(", ");
    Some(Rejection {
        message: format!(
            "pgwarden: {}: this ALTER TABLE on {table} has several sub-commands ({} of them), and \
             {list} is safe only as steps (NOT VALID + VALIDATE, or a concurrent index build + \
             USING INDEX) that pgwarden runs only for an ALTER TABLE of that one sub-command: \
             refused, nothing of it was applied",
            rules.join(", "),
            f.actions.len()
        ),
        detail: format!("Statement: {}", excerpt(text)),
        hint: "Give each constraint (and each SET NOT NULL) an ALTER TABLE of its own: in \
               Alembic one op.create_foreign_key / op.create_check_constraint / \
               op.create_unique_constraint / op.create_primary_key / op.alter_column call each \
               (not inside op.batch_alter_table); the other sub-commands (ADD COLUMN, ...) can \
               stay together. pgwarden then runs each safely, in the same transaction."
            .into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::{analyze, AnalysisContext};

    fn facts(sql: &str) -> StatementFacts {
        let a = analyze(sql, &AnalysisContext::default());
        a.statements[0].facts().cloned().expect("facts")
    }

    #[test]
    fn names_the_sub_commands_that_need_steps() {
        let sql = "ALTER TABLE orders ADD COLUMN x int, ADD CONSTRAINT fk FOREIGN KEY (x) \
                   REFERENCES customers (id)";
        let r = several_subcommands(sql, &facts(sql), &["adding-foreign-key-constraint".into()])
            .expect("refused");
        assert!(r.message.contains("2 of them"), "{}", r.message);
        assert!(
            r.message.contains("`ADD CONSTRAINT fk FOREIGN KEY"),
            "{}",
            r.message
        );
        assert!(!r.message.contains("ADD COLUMN"), "{}", r.message);
        assert!(r.hint.contains("an ALTER TABLE of its own"), "{}", r.hint);
        for one in [
            "ALTER TABLE orders ADD CONSTRAINT u UNIQUE (a)",
            "ALTER TABLE orders ADD COLUMN a int, ADD COLUMN b int",
        ] {
            assert!(
                several_subcommands(one, &facts(one), &[]).is_none(),
                "{one}"
            );
        }
        let sql = "ALTER TABLE orders ADD CHECK (a > 0), ALTER COLUMN b SET NOT NULL";
        let r = several_subcommands(sql, &facts(sql), &[]).expect("refused");
        assert!(r.message.contains("SET NOT NULL"), "{}", r.message);
    }
}
