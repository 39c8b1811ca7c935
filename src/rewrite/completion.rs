//! What a transaction's COMMIT owes: the completion steps of its multi-step rewrites (DESIGN.md
//! "Safe execution" 5), kept exactly those of the statements the transaction still holds while
//! the client takes savepoints, rolls back to them, releases them or rolls back.
//!
//! Pure bookkeeping: no socket, no session. The session's driver (`proxy::session::rewrite`)
//! queues the steps after the in-place part ran, feeds every simple Query of the client through
//! [`Completion::follow_query`] and takes the queue at a COMMIT that committed
//! ([`Completion::take_for_commit`]). A ROLLBACK discards it.
use tracing::info;

use super::{Deferred, Shape, Step};
use crate::enforce::raise::{excerpt, raise_statement, Rejection};
use crate::sql::lexer::{split, LexOptions, TxKind};
use crate::sql::txcontrol::TxCommand;

/// One statement's completion steps, waiting for the client's COMMIT.
#[derive(Debug, Clone)]
pub struct Queued {
    pub shape: Shape,
    /// The object's name (the statement's own or the server's choice).
    pub name: String,
    pub steps: Vec<Step>,
    /// The first step still to run.
    pub from: usize,
    /// The audit record's `seq` of the client's statement (0 = not audited).
    pub seq: u64,
    pub ascii_only: bool,
    /// How many of the client's savepoints (taken since the first step was queued) were
    /// open when this one was queued: a ROLLBACK TO one of them undoes it.
    level: usize,
}

impl Queued {
    pub fn new(
        shape: Shape,
        name: String,
        steps: Vec<Step>,
        from: usize,
        seq: u64,
        ascii_only: bool,
    ) -> Queued {
        Queued {
            shape,
            name,
            steps,
            from,
            seq,
            ascii_only,
            level: 0,
        }
    }
}

/// What this transaction's COMMIT owes: completion steps, and what they will create.
#[derive(Debug, Default)]
pub struct Completion {
    queue: Vec<Queued>,
    /// What the queued steps will create, for the dependency check of later statements.
    pub deferred: Deferred,
    /// The session's count of ReadyForQuery `I` when they were queued: one since means their
    /// transaction ended.
    pub epoch: u64,
    /// The client's savepoints taken since the first step was queued, oldest first, names
    /// folded as the server folds them.
    savepoints: Vec<String>,
}

impl Completion {
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// The statements whose steps are queued, oldest first.
    pub fn queued(&self) -> &[Queued] {
        &self.queue
    }

    /// Queues `q` at the client's current savepoint level; `epoch`: see [`Completion::epoch`].
    pub fn push(&mut self, mut q: Queued, epoch: u64) {
        self.epoch = epoch;
        self.deferred.add(&q.shape, &q.name);
        q.level = self.savepoints.len();
        self.queue.push(q);
    }

    /// The transaction committed: every queued statement's steps, for the driver to run now.
    pub fn take_for_commit(&mut self) -> Vec<Queued> {
        self.deferred = Deferred::default();
        self.savepoints.clear();
        std::mem::take(&mut self.queue)
    }

    /// The transaction ended without pgwarden's COMMIT path (ROLLBACK, a failed COMMIT).
    /// `session`: the session id, for the log.
    pub fn discard(&mut self, session: u64, why: &str) {
        for q in self.queue.drain(..) {
            info!(session, statement_seq = q.seq, object = %q.name,
                  "completion steps discarded: {why}");
        }
        self.deferred = Deferred::default();
        self.savepoints.clear();
    }

    /// Follows the client's simple Query `sql` (read as the server reads it) through the
    /// transaction-control statements in it, so the queued steps stay exactly those of the
    /// statements the transaction still holds:
    /// - `SAVEPOINT s` opens a level; `ROLLBACK TO s` discards the steps queued after `s` was
    ///   taken (a name taken before the first queued step undoes them all); `RELEASE s` folds
    ///   the levels from `s` on into the one below;
    /// - `ROLLBACK` (any form, also `AND CHAIN`) discards them all.
    ///
    /// `Some(text)`: the Query must be refused with this statement instead, because it ends
    /// the transaction where pgwarden cannot run the steps (`COMMIT AND CHAIN`, `PREPARE
    /// TRANSACTION`, a COMMIT in a longer Query) or names a savepoint it cannot read. The
    /// refusal fails the transaction: nothing of it is applied. A lone COMMIT is not this
    /// function's: the session runs the steps after it.
    pub fn follow_query(&mut self, session: u64, sql: &[u8], opts: &LexOptions) -> Option<String> {
        if self.is_empty() || is_commit(sql) {
            return None;
        }
        let text = String::from_utf8_lossy(sql);
        for st in split(&text, opts) {
            let Some(kind) = st.transaction else {
                continue;
            };
            let one = &text[st.span.clone()];
            match (kind, TxCommand::parse(one)) {
                (TxKind::Savepoint, Some(TxCommand::Savepoint(name))) => {
                    self.savepoints.push(name);
                }
                (TxKind::RollbackToSavepoint, Some(TxCommand::RollbackTo(name))) => {
                    let keep = self.position(&name).map_or(0, |i| i + 1);
                    self.savepoints.truncate(keep);
                    self.drop_above(session, keep, &name);
                }
                (TxKind::Release, Some(TxCommand::Release(name))) => {
                    let at = self.position(&name).unwrap_or(0);
                    self.savepoints.truncate(at);
                    for q in &mut self.queue {
                        q.level = q.level.min(at);
                    }
                }
                (TxKind::Rollback, _) => {
                    self.discard(session, "the client rolled back");
                    return None;
                }
                (TxKind::Begin, _) => {}
                (kind, _) => {
                    let what = match kind {
                        TxKind::Commit => {
                            "a COMMIT that is not a Query of its own (or COMMIT AND CHAIN)"
                        }
                        TxKind::PrepareTransaction => "PREPARE TRANSACTION",
                        _ => "a savepoint command pgwarden cannot read",
                    };
                    return Some(tx_control_refusal(what, one));
                }
            }
        }
        None
    }

    /// The client's `level` a `ROLLBACK TO name` or `RELEASE name` returns to: PostgreSQL
    /// takes the most recent savepoint of that name. `None`: taken before the first step was
    /// queued (the server accepts only names it has).
    fn position(&self, name: &str) -> Option<usize> {
        self.savepoints.iter().rposition(|s| s == name)
    }

    /// Discards the steps queued while `keep` or more savepoints were open: their statements
    /// came after the savepoint rolled back to, which stays (as the `keep`-th).
    fn drop_above(&mut self, session: u64, keep: usize, savepoint: &str) {
        let (gone, kept): (Vec<Queued>, Vec<Queued>) = std::mem::take(&mut self.queue)
            .into_iter()
            .partition(|q| q.level >= keep);
        for q in gone {
            info!(session, statement_seq = q.seq, object = %q.name, savepoint,
                  "completion steps discarded: the client rolled back to a savepoint before their statement");
        }
        self.queue = kept;
        self.deferred = Deferred::default();
        for q in &self.queue {
            self.deferred.add(&q.shape, &q.name);
        }
        if self.queue.is_empty() {
            self.savepoints.clear();
        }
    }
}

/// What replaces a transaction-control statement the queued completion steps cannot follow.
fn tx_control_refusal(what: &str, sql: &str) -> String {
    raise_statement(
        &Rejection {
            message: format!(
                "pgwarden: this transaction owes completion steps (a VALIDATE or a concurrent \
                 index build pgwarden runs after COMMIT), and {what} would end or reshape it \
                 where pgwarden cannot run them: refused"
            ),
            detail: format!(
                "Statement: {}. Nothing of the transaction was applied.",
                excerpt(sql)
            ),
            hint: "End the transaction with a COMMIT sent on its own (what Alembic, psycopg and \
                   psql do), or run the statement in its own transaction."
                .into(),
        },
        false,
    )
}

/// A simple Query that commits the transaction (`COMMIT`, `END`, `COMMIT WORK`, ...).
pub fn is_commit(sql: &[u8]) -> bool {
    let w = words(sql);
    matches!(
        w.iter().map(String::as_str).collect::<Vec<_>>().as_slice(),
        ["commit" | "end"] | ["commit" | "end", "work" | "transaction"]
    )
}

/// A simple Query that rolls the whole transaction back (not `ROLLBACK TO SAVEPOINT`).
pub fn is_rollback(sql: &[u8]) -> bool {
    let w = words(sql);
    matches!(
        w.iter().map(String::as_str).collect::<Vec<_>>().as_slice(),
        ["rollback" | "abort"] | ["rollback" | "abort", "work" | "transaction"]
    )
}

/// A prepared statement the queued completion steps cannot follow: any transaction control
/// but BEGIN and a plain ROLLBACK (whose end of the transaction the session sees in
/// ReadyForQuery). pgwarden does not know at Parse when, or whether, it will be executed, so a
/// savepoint command or a COMMIT there is refused (see [`extended_commit_refusal`]).
pub fn extended_tx_control(sql: &[u8]) -> bool {
    if is_rollback(sql) {
        return false;
    }
    let text = String::from_utf8_lossy(sql);
    split(&text, &crate::sql::AnalysisContext::default().lex)
        .any(|st| st.transaction.is_some_and(|k| k != TxKind::Begin))
}

/// What replaces a COMMIT sent as a prepared statement while completion steps are queued:
/// pgwarden runs them only around a simple-Query COMMIT, and committing without them would
/// leave the constraints NOT VALID and the indexes unbuilt without a word. The raise fails the
/// transaction instead (nothing of it is applied).
pub fn extended_commit_refusal() -> String {
    raise_statement(
        &Rejection {
            message: "pgwarden: this transaction owes completion steps (a VALIDATE or a \
                      concurrent index build pgwarden runs after COMMIT), and a transaction \
                      command (COMMIT, a savepoint) came as a prepared statement, which pgwarden \
                      cannot follow: refused"
                .into(),
            detail: "Nothing of the transaction was applied.".into(),
            hint: "Send COMMIT as a simple query (psycopg: outside pipeline mode), or run \
                   the statement in its own transaction."
                .into(),
        },
        false,
    )
}

fn words(sql: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(sql)
        .split(|c: char| c.is_whitespace() || c == ';')
        .filter(|w| !w.is_empty())
        .map(str::to_ascii_lowercase)
        .collect()
}

#[cfg(test)]
mod tests;
