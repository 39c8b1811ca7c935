//! What require-lock-timeout and require-statement-timeout share: both flag a statement that
//! takes a write-blocking lock on an existing table while their setting is off; they differ in
//! the setting and in the consequence they describe.
use super::{Cx, Finding, Rule};
use crate::sql::StatementFacts;

/// Which timeout a rule is about.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Timeout {
    Lock,
    Statement,
}

impl Timeout {
    fn rule(self) -> Rule {
        match self {
            Timeout::Lock => Rule::RequireLockTimeout,
            Timeout::Statement => Rule::RequireStatementTimeout,
        }
    }

    fn setting(self) -> &'static str {
        match self {
            Timeout::Lock => "lock_timeout",
            Timeout::Statement => "statement_timeout",
        }
    }

    /// What goes wrong without it, for the table the statement locks.
    fn consequence(self, table: &str) -> String {
        match self {
            Timeout::Lock => {
                format!("while it waits for the lock, every query on {table} queues behind it")
            }
            Timeout::Statement => {
                format!("if it runs long (a scan, a rewrite), {table} stays blocked for all of it")
            }
        }
    }
}

/// The shared check: reported once per text until the setting is SET to a non-zero value.
pub(crate) fn check(t: Timeout, f: &StatementFacts, cx: &Cx<'_>, out: &mut Vec<Finding>) {
    let current = match t {
        Timeout::Lock => cx.state.timeouts.lock_timeout_ms,
        Timeout::Statement => cx.state.timeouts.statement_timeout_ms,
    };
    if current.is_some_and(|ms| ms > 0) || cx.state.spoken.contains(&t.rule().id()) {
        return;
    }
    let Some((table, mode)) = f
        .locks
        .iter()
        .filter(|(t, m)| m.blocks_writes() && !cx.state.is_new(t))
        .max_by_key(|(_, m)| *m)
    else {
        return;
    };
    let state = if current == Some(0) {
        "0 (off)"
    } else {
        "not set"
    };
    let setting = t.setting();
    out.push(
        Finding::new(
            t.rule(),
            f,
            format!(
                "{} needs the {mode} lock on {} with {setting} {state}: {} \
                 (reported once until {setting} is set)",
                f.kind.label(),
                cx.describe(table),
                t.consequence(&table.to_string()),
            ),
            format!(
                "SET {setting} = '2s' before the statement (SET LOCAL inside a transaction) and \
                 retry on timeout."
            ),
        )
        .lock(Some(*mode)),
    );
}
