//! Transaction-fate tracker: a pure per-session state machine that decides whether the
//! transaction holding each audited statement committed or rolled back.
//!
//! A statement that ran inside a transaction that later rolled back did not happen; pgaudit
//! logs it anyway. The session feeds this tracker what the *server* said, never guesses from
//! statement text alone (DESIGN.md decision 9):
//!
//! - [`TxFateTracker::statement`]: an audited statement was forwarded (its `seq`);
//! - [`TxFateTracker::migration`]: a migration revision was seen in bookkeeping DML;
//! - [`TxFateTracker::completed`]: every statement's completion, in order, with the statement's
//!   own text: CommandComplete tag or ErrorResponse;
//! - [`TxFateTracker::ready_for_query`]: the ReadyForQuery status ending each request; returns
//!   the fates decided during that request;
//! - [`TxFateTracker::connection_closed`].
//!
//! Rules:
//! - Tag `COMMIT` (COMMIT, END, COMMIT AND CHAIN) → everything since the transaction began
//!   committed. Tag `ROLLBACK` (ROLLBACK, ABORT, and COMMIT of a failed transaction, which the
//!   server answers with `ROLLBACK`) → rolled back. `PREPARE TRANSACTION` → prepared. Tags, not
//!   ReadyForQuery alone, are needed because `COMMIT AND CHAIN` keeps status `T` and because
//!   T→I does not say whether it was COMMIT or ROLLBACK.
//! - Statements run outside a transaction block (status I) form an implicit transaction that
//!   lasts until the ReadyForQuery: one statement (autocommit), a multi-statement simple Query,
//!   or an extended-protocol batch up to Sync. At ReadyForQuery `I` it committed if no error
//!   occurred, else it rolled back as a whole (Postgres aborts the whole implicit transaction).
//!   A failed COMMIT (deferred constraint) is the same path: error, then `I` → rolled back.
//! - A `BEGIN` inside an implicit transaction turns it into an explicit one (Postgres keeps the
//!   earlier statements of the same Query in it), so nothing is decided at that point.
//! - Savepoints are tracked as PostgreSQL keeps them: a stack of names folded as the server
//!   folds identifiers; `ROLLBACK TO s` takes the most recent `s`, decides *now* that the
//!   statements after it rolled back (with migration revisions seen after it), keeps `s` and
//!   destroys later ones; `RELEASE s` destroys `s` and later ones, their statements stay in
//!   the transaction. A name the server accepted that the tracker never saw was taken before
//!   the audit log followed the transaction (it follows every request from the first audited
//!   statement to the end of the transaction), so it is older than everything seen: ROLLBACK
//!   TO it undoes every statement seen. Only a savepoint command the tracker cannot place (an
//!   extended-protocol ROLLBACK/SAVEPOINT whose text it does not see) makes the fate `unknown`.
//! - Each audited statement joins the unit at its own completion ([`TxFateTracker::completed_with`]),
//!   so savepoints in the same Query are placed right; a statement the server skipped never
//!   joins.
//! - `PREPARE TRANSACTION 'g'` → prepared, with the gid; `COMMIT/ROLLBACK PREPARED 'g'` yields
//!   a decision for gid `g` (the session joins it to the prepared statements, see twophase.rs).
//! - Connection closed: inside a transaction (T/E) with no request in flight → rolled back
//!   (the server aborts it). With a request in flight (a COMMIT may have reached the server), or
//!   in an implicit transaction whose ReadyForQuery never arrived → unknown.
use super::migration::{MigrationRevision, MigrationTool};
use super::record::{now_rfc3339, Fate, FateReason, FateRecord, MigrationInTx};
use crate::protocol::TxStatus;
use crate::sql::txcontrol::TxCommand;

/// Statements kept for a later revision's bookkeeping (see [`TxFateTracker`]'s `waiting`):
/// enough for any migration run, bounded against a session that never writes one.
const MAX_WAITING: usize = 10_000;

/// How one statement completed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Completion<'a> {
    /// CommandComplete with this tag.
    Ok(&'a str),
    /// ErrorResponse.
    Error,
}

/// A decided fate for a set of audited statements.
#[derive(Debug, Clone, PartialEq)]
pub struct FateDecision {
    /// `seq` of the audited statements it covers (may be empty when only a revision was seen).
    pub seqs: Vec<u64>,
    pub fate: Fate,
    pub reason: FateReason,
    /// Migration revisions seen in the same transaction (or after the savepoint), each with
    /// the statements it covers.
    pub migrations: Vec<MigrationInTx>,
    /// Two-phase commit gid (PREPARE TRANSACTION, COMMIT/ROLLBACK PREPARED).
    pub gid: Option<String>,
    /// Statements of `seqs` after this revision's bookkeeping that no revision covers.
    pub after_revision: Option<MigrationRevision>,
}

impl FateDecision {
    /// The `fate` record for this decision.
    pub fn into_record(self, session_id: &str) -> FateRecord {
        FateRecord {
            time: now_rfc3339(),
            session_id: session_id.to_string(),
            seqs: self.seqs,
            fate: self.fate,
            reason: self.reason,
            migrations: self.migrations,
            gid: self.gid,
            finished_by: None,
            after_revision: self.after_revision,
        }
    }
}

/// Pairs each revision with the statements between the previous revision's mark and its own.
fn attach(seqs: &[u64], migrations: Vec<(MigrationRevision, usize)>) -> Vec<MigrationInTx> {
    let mut prev = 0;
    migrations
        .into_iter()
        .map(|(revision, mark)| {
            let mark = mark.clamp(prev, seqs.len());
            let covered = seqs[prev..mark].to_vec();
            prev = mark;
            MigrationInTx {
                revision,
                seqs: covered,
            }
        })
        .collect()
}

#[derive(Debug, Default)]
struct Unit {
    seqs: Vec<u64>,
    /// Each revision with the number of `seqs` seen before it.
    migrations: Vec<(MigrationRevision, usize)>,
    /// An error happened in the current (implicit or explicit) transaction.
    errored: bool,
    /// A savepoint rollback could not be placed: nothing can be decided for sure.
    uncertain: bool,
    /// A `ROLLBACK` tag whose statement text is unknown (extended protocol): a plain ROLLBACK
    /// if the request ends idle, else ROLLBACK TO or ROLLBACK AND CHAIN (uncertain).
    blind_rollback: bool,
}

#[derive(Debug)]
struct Savepoint {
    /// Folded as the server folds it; `None`: the SAVEPOINT's text was not seen (extended
    /// protocol), so its name is unknown.
    name: Option<String>,
    seqs_len: usize,
    migrations_len: usize,
}

/// Per-session tracker (see the module docs for the rules).
#[derive(Debug)]
pub struct TxFateTracker {
    status: TxStatus,
    unit: Unit,
    /// The savepoint stack the tracker saw, oldest first. Savepoints the tracker did not see
    /// (taken before the audit log began following the transaction) are all older than these.
    savepoints: Vec<Savepoint>,
    /// A RELEASE named a savepoint the tracker could not place: the stack may be wrong.
    stack_unsure: bool,
    decided: Vec<FateDecision>,
    /// Something was fed since the last ReadyForQuery.
    in_request: bool,
    /// The session's last migration bookkeeping (for `after_revision` and direction).
    last_revision: Option<MigrationRevision>,
    /// Audited statements of committed transactions without bookkeeping, since the last
    /// revision: an Alembic `autocommit_block` (CONCURRENTLY) runs a revision's statements
    /// outside the transaction that later writes its version row.
    waiting: Vec<u64>,
}

impl Default for TxFateTracker {
    fn default() -> Self {
        Self::new()
    }
}

impl TxFateTracker {
    /// A session starts idle.
    pub fn new() -> Self {
        TxFateTracker {
            status: TxStatus::Idle,
            unit: Unit::default(),
            savepoints: Vec::new(),
            stack_unsure: false,
            decided: Vec::new(),
            in_request: false,
            last_revision: None,
            waiting: Vec::new(),
        }
    }

    /// Status from the last ReadyForQuery.
    pub fn status(&self) -> TxStatus {
        self.status
    }

    /// An audited statement ran (or may have run) in the current transaction.
    pub fn statement(&mut self, seq: u64) {
        self.in_request = true;
        self.unit.seqs.push(seq);
    }

    /// A migration revision was seen in the current transaction.
    pub fn migration(&mut self, mut rev: MigrationRevision) {
        self.in_request = true;
        // A step continuing the session's previous step (its `from` is where the previous
        // one went) goes the same way.
        if rev.direction.is_none() {
            if let (Some(prev), Some(from)) = (&self.last_revision, &rev.from) {
                if prev.tool == rev.tool && &prev.revision == from {
                    rev.direction = prev.direction;
                }
            }
        }
        let mark = self.unit.seqs.len();
        self.last_revision = Some(rev.clone());
        self.unit.migrations.push((rev, mark));
    }

    /// A statement completed (no audited statement: see [`Self::completed_with`]).
    pub fn completed(&mut self, sql: &str, completion: Completion<'_>) {
        self.completed_with(&[], sql, completion);
    }

    /// A statement completed: `seqs` are the audited statements it answers (several when a
    /// rejected Query was replaced by one statement), `sql` the text the server ran (needed to
    /// tell `ROLLBACK TO SAVEPOINT` from `ROLLBACK`, which share the tag, and for savepoint
    /// names and gids; empty when unknown).
    pub fn completed_with(&mut self, seqs: &[u64], sql: &str, completion: Completion<'_>) {
        self.in_request = true;
        let tag = match completion {
            Completion::Error => {
                self.unit.seqs.extend_from_slice(seqs);
                self.unit.errored = true;
                return;
            }
            Completion::Ok(tag) => tag,
        };
        let cmd = TxCommand::parse(sql);
        match tag {
            "COMMIT" => {
                self.unit.seqs.extend_from_slice(seqs);
                self.decide(Fate::Committed, FateReason::Commit, None);
            }
            "PREPARE TRANSACTION" => {
                self.unit.seqs.extend_from_slice(seqs);
                let gid = match cmd {
                    Some(TxCommand::Prepare(g)) => Some(g),
                    _ => None,
                };
                self.decide(Fate::Prepared, FateReason::Prepare, gid);
            }
            "COMMIT PREPARED" | "ROLLBACK PREPARED" => {
                // Runs outside any transaction block; decides another (prepared) transaction.
                self.unit.seqs.extend_from_slice(seqs);
                let (fate, reason) = if tag == "COMMIT PREPARED" {
                    (Fate::Committed, FateReason::CommitPrepared)
                } else {
                    (Fate::RolledBack, FateReason::RollbackPrepared)
                };
                let gid = match cmd {
                    Some(TxCommand::FinishPrepared(g)) => Some(g),
                    _ => None,
                };
                self.decided.push(FateDecision {
                    seqs: Vec::new(),
                    fate,
                    reason,
                    migrations: Vec::new(),
                    gid,
                    after_revision: None,
                });
            }
            "ROLLBACK" => match cmd {
                Some(TxCommand::RollbackTo(name)) => {
                    self.rollback_to(&name);
                    self.unit.seqs.extend_from_slice(seqs);
                }
                Some(_) => {
                    self.unit.seqs.extend_from_slice(seqs);
                    self.decide(Fate::RolledBack, FateReason::Rollback, None);
                }
                None => {
                    self.unit.seqs.extend_from_slice(seqs);
                    self.unit.blind_rollback = true;
                }
            },
            "SAVEPOINT" => {
                self.unit.seqs.extend_from_slice(seqs);
                let name = match cmd {
                    Some(TxCommand::Savepoint(n)) => Some(n),
                    _ => None,
                };
                self.savepoints.push(Savepoint {
                    name,
                    seqs_len: self.unit.seqs.len(),
                    migrations_len: self.unit.migrations.len(),
                });
            }
            "RELEASE" => {
                self.unit.seqs.extend_from_slice(seqs);
                match cmd {
                    Some(TxCommand::Release(name)) => match self.find(&name) {
                        // RELEASE destroys that savepoint and every later one.
                        Found::At(pos) => self.savepoints.truncate(pos),
                        Found::Unseen => self.savepoints.clear(),
                        Found::Unsure => self.stack_unsure = true,
                    },
                    _ => self.stack_unsure = true,
                }
            }
            _ => self.unit.seqs.extend_from_slice(seqs),
        }
    }

    /// ReadyForQuery ended a request; returns the fates decided since the previous one.
    pub fn ready_for_query(&mut self, status: TxStatus) -> Vec<FateDecision> {
        self.status = status;
        self.in_request = false;
        let blind = std::mem::take(&mut self.unit.blind_rollback);
        match status {
            TxStatus::Idle => {
                let (fate, reason) = if blind {
                    (Fate::RolledBack, FateReason::Rollback)
                } else if self.unit.errored {
                    (Fate::RolledBack, FateReason::Error)
                } else {
                    (Fate::Committed, FateReason::Autocommit)
                };
                self.decide(fate, reason, None);
            }
            TxStatus::InTransaction | TxStatus::Failed => {
                if blind {
                    // ROLLBACK TO or ROLLBACK AND CHAIN: which, the tracker cannot tell.
                    self.unit.uncertain = true;
                    self.stack_unsure = true;
                }
                self.unit.errored = status == TxStatus::Failed;
            }
        }
        std::mem::take(&mut self.decided)
    }

    /// The client or server connection ended. `request_in_flight`: a request was forwarded
    /// whose ReadyForQuery never came back.
    pub fn connection_closed(&mut self, request_in_flight: bool) -> Vec<FateDecision> {
        let in_flight = request_in_flight || self.in_request;
        let fate = match self.status {
            TxStatus::Failed => Fate::RolledBack,
            TxStatus::InTransaction if !in_flight => Fate::RolledBack,
            _ => Fate::Unknown,
        };
        self.decide(fate, FateReason::Disconnect, None);
        std::mem::take(&mut self.decided)
    }

    /// Ends the current unit with `fate` (nothing is recorded for an empty unit).
    fn decide(&mut self, fate: Fate, reason: FateReason, gid: Option<String>) {
        let unit = std::mem::take(&mut self.unit);
        self.savepoints.clear();
        self.stack_unsure = false;
        if unit.seqs.is_empty() && unit.migrations.is_empty() && gid.is_none() {
            return;
        }
        let fate = if unit.uncertain && fate != Fate::RolledBack {
            Fate::Unknown
        } else {
            fate
        };
        let covered = unit.migrations.last().map_or(0, |(_, m)| *m);
        let has_revision = !unit.migrations.is_empty();
        let mut migrations = attach(&unit.seqs, unit.migrations);
        // Statements of committed transactions without bookkeeping since the last revision
        // (an autocommit block) belong to this transaction's first Alembic revision.
        if let Some(first) = migrations.first_mut() {
            if first.revision.tool == MigrationTool::Alembic && !self.waiting.is_empty() {
                let mut w = std::mem::take(&mut self.waiting);
                w.append(&mut first.seqs);
                first.seqs = w;
            }
        }
        if has_revision {
            self.waiting.clear();
        }
        let trailing = &unit.seqs[covered.min(unit.seqs.len())..];
        // A transaction that did not commit with statements after the last revision's
        // bookkeeping: the next revision failed or was refused before its own bookkeeping.
        // (Committed ones wait for the next revision's bookkeeping to claim them, below.)
        let after_revision = if trailing.is_empty() || fate == Fate::Committed {
            None
        } else {
            self.last_revision.clone()
        };
        let in_alembic_run = self
            .last_revision
            .as_ref()
            .is_some_and(|r| r.tool == MigrationTool::Alembic);
        if fate == Fate::Committed
            && in_alembic_run
            && self.waiting.len() + trailing.len() <= MAX_WAITING
        {
            self.waiting.extend_from_slice(trailing);
        }
        self.decided.push(FateDecision {
            seqs: unit.seqs,
            fate,
            reason,
            migrations,
            gid,
            after_revision,
        });
    }

    /// Where savepoint `name` is on the stack (PostgreSQL takes the most recent of that name).
    fn find(&self, name: &str) -> Found {
        for (i, s) in self.savepoints.iter().enumerate().rev() {
            match &s.name {
                Some(n) if n == name => return Found::At(i),
                Some(_) => {}
                // An unnamed one above: it may be the one.
                None => return Found::Unsure,
            }
        }
        if self.stack_unsure {
            Found::Unsure
        } else {
            // The server accepted it, so it exists: taken before the tracker followed the
            // transaction, below everything the tracker saw.
            Found::Unseen
        }
    }

    fn rollback_to(&mut self, name: &str) {
        // The transaction recovers from an earlier error (E → T).
        self.unit.errored = false;
        let (sl, ml) = match self.find(name) {
            Found::At(pos) => {
                // ROLLBACK TO keeps the savepoint and destroys the later ones.
                self.savepoints.truncate(pos + 1);
                (
                    self.savepoints[pos].seqs_len,
                    self.savepoints[pos].migrations_len,
                )
            }
            Found::Unseen => {
                self.savepoints.clear();
                (0, 0)
            }
            Found::Unsure => {
                self.unit.uncertain = true;
                return;
            }
        };
        let seqs = self.unit.seqs.split_off(sl.min(self.unit.seqs.len()));
        let migrations: Vec<(MigrationRevision, usize)> = self
            .unit
            .migrations
            .split_off(ml.min(self.unit.migrations.len()))
            .into_iter()
            .map(|(r, mark)| (r, mark.saturating_sub(sl)))
            .collect();
        let migrations = attach(&seqs, migrations);
        if !seqs.is_empty() || !migrations.is_empty() {
            self.decided.push(FateDecision {
                seqs,
                fate: Fate::RolledBack,
                reason: FateReason::SavepointRollback,
                migrations,
                gid: None,
                after_revision: None,
            });
        }
    }
}

/// Where a savepoint name is on the tracker's stack.
enum Found {
    At(usize),
    /// Not on the stack: an older savepoint the tracker never saw.
    Unseen,
    /// Cannot be placed (unnamed savepoints above, or the stack is unsure).
    Unsure,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::migration::{Direction, MigrationTool};
    use TxStatus::{Failed as E, Idle as I, InTransaction as T};

    fn rev(r: &str) -> MigrationRevision {
        MigrationRevision::new(MigrationTool::Alembic, r)
    }

    fn ok(t: &mut TxFateTracker, sql: &str, tag: &str) {
        t.completed(sql, Completion::Ok(tag));
    }

    fn one(v: Vec<FateDecision>) -> FateDecision {
        assert_eq!(v.len(), 1, "{v:?}");
        v.into_iter().next().unwrap_or_else(|| unreachable!())
    }

    #[test]
    fn explicit_commit_with_alembic_revision_after_ddl() {
        let mut t = TxFateTracker::new();
        ok(&mut t, "BEGIN", "BEGIN");
        assert!(t.ready_for_query(T).is_empty());
        t.statement(2);
        ok(&mut t, "CREATE TABLE a (id int)", "CREATE TABLE");
        assert!(t.ready_for_query(T).is_empty());
        t.statement(3);
        ok(&mut t, "CREATE INDEX i ON a (id)", "CREATE INDEX");
        t.ready_for_query(T);
        t.migration(rev("0001"));
        ok(&mut t, "UPDATE alembic_version ...", "UPDATE 1");
        t.ready_for_query(T);
        ok(&mut t, "COMMIT", "COMMIT");
        let d = one(t.ready_for_query(I));
        assert_eq!(d.seqs, vec![2, 3]);
        assert_eq!((d.fate, d.reason), (Fate::Committed, FateReason::Commit));
        assert_eq!(
            d.migrations,
            vec![MigrationInTx {
                revision: rev("0001"),
                seqs: vec![2, 3]
            }]
        );
    }

    #[test]
    fn alembic_single_transaction_run_splits_statements_by_revision() {
        // Default Alembic: one transaction for the whole run, version row after each revision.
        let mut t = TxFateTracker::new();
        t.ready_for_query(T);
        t.statement(2);
        t.statement(3);
        t.migration(rev("0001"));
        t.statement(5);
        t.migration(rev("0002"));
        t.migration(rev("0003")); // a revision without DDL
        t.statement(8); // DDL of a revision whose bookkeeping never came
        ok(&mut t, "COMMIT", "COMMIT");
        let d = one(t.ready_for_query(I));
        let covered: Vec<(&str, Vec<u64>)> = d
            .migrations
            .iter()
            .map(|m| (m.revision.revision.as_str(), m.seqs.clone()))
            .collect();
        assert_eq!(
            covered,
            vec![("0001", vec![2, 3]), ("0002", vec![5]), ("0003", vec![])]
        );
        assert_eq!(d.seqs, vec![2, 3, 5, 8]);
        let rec = d.into_record("s-1");
        assert_eq!(rec.fate, Fate::Committed);
        let line = serde_json::to_string(&rec).unwrap_or_default();
        assert!(
            line.contains("{\"tool\":\"alembic\",\"revision\":\"0001\",\"seqs\":[2,3]}"),
            "{line}"
        );
    }

    #[test]
    fn explicit_rollback() {
        let mut t = TxFateTracker::new();
        t.ready_for_query(T);
        t.statement(1);
        ok(&mut t, "DROP TABLE a", "DROP TABLE");
        t.ready_for_query(T);
        ok(&mut t, "ROLLBACK", "ROLLBACK");
        let d = one(t.ready_for_query(I));
        assert_eq!((d.fate, d.reason), (Fate::RolledBack, FateReason::Rollback));
    }

    #[test]
    fn failed_transaction_then_commit_answers_rollback() {
        let mut t = TxFateTracker::new();
        t.ready_for_query(T);
        t.statement(1);
        ok(&mut t, "CREATE TABLE a ()", "CREATE TABLE");
        t.ready_for_query(T);
        t.statement(2);
        t.completed("ALTER TABLE nope ADD x int", Completion::Error);
        assert!(t.ready_for_query(E).is_empty());
        // psql without ON_ERROR_STOP sends COMMIT; the server answers ROLLBACK.
        ok(&mut t, "COMMIT", "ROLLBACK");
        let d = one(t.ready_for_query(I));
        assert_eq!(d.seqs, vec![1, 2]);
        assert_eq!(d.fate, Fate::RolledBack);
    }

    #[test]
    fn failed_commit_deferred_constraint() {
        let mut t = TxFateTracker::new();
        t.ready_for_query(T);
        t.statement(1);
        ok(&mut t, "ALTER TABLE a ADD b int", "ALTER TABLE");
        t.ready_for_query(T);
        t.completed("COMMIT", Completion::Error);
        let d = one(t.ready_for_query(I));
        assert_eq!((d.fate, d.reason), (Fate::RolledBack, FateReason::Error));
    }

    #[test]
    fn autocommit_success_and_failure() {
        let mut t = TxFateTracker::new();
        t.statement(1);
        ok(
            &mut t,
            "CREATE INDEX CONCURRENTLY i ON a (x)",
            "CREATE INDEX",
        );
        let d = one(t.ready_for_query(I));
        assert_eq!(
            (d.fate, d.reason),
            (Fate::Committed, FateReason::Autocommit)
        );
        t.statement(2);
        t.completed("CREATE INDEX CONCURRENTLY i ON a (x)", Completion::Error);
        let d = one(t.ready_for_query(I));
        assert_eq!((d.seqs, d.fate), (vec![2], Fate::RolledBack));
        // Requests with no audited statement decide nothing.
        ok(&mut t, "SELECT 1", "SELECT 1");
        assert!(t.ready_for_query(I).is_empty());
    }

    #[test]
    fn implicit_transaction_of_multi_statement_query_rolls_back_as_a_whole() {
        let mut t = TxFateTracker::new();
        // Query "CREATE TABLE a (); CREATE TABLE a ()" — the second fails, the first is undone.
        t.statement(1);
        ok(&mut t, "CREATE TABLE a ()", "CREATE TABLE");
        t.statement(2);
        t.completed("CREATE TABLE a ()", Completion::Error);
        let d = one(t.ready_for_query(I));
        assert_eq!((d.seqs, d.fate), (vec![1, 2], Fate::RolledBack));
    }

    #[test]
    fn commit_inside_multi_statement_query_splits_units() {
        let mut t = TxFateTracker::new();
        // "BEGIN; CREATE TABLE a (); COMMIT; CREATE TABLE b (); CREATE TABLE a ()"
        ok(&mut t, "BEGIN", "BEGIN");
        t.statement(2);
        ok(&mut t, "CREATE TABLE a ()", "CREATE TABLE");
        ok(&mut t, "COMMIT", "COMMIT");
        t.statement(4);
        ok(&mut t, "CREATE TABLE b ()", "CREATE TABLE");
        t.statement(5);
        t.completed("CREATE TABLE a ()", Completion::Error);
        let v = t.ready_for_query(I);
        assert_eq!(v.len(), 2);
        assert_eq!((v[0].seqs.clone(), v[0].fate), (vec![2], Fate::Committed));
        assert_eq!(
            (v[1].seqs.clone(), v[1].fate),
            (vec![4, 5], Fate::RolledBack)
        );
    }

    #[test]
    fn begin_inside_implicit_transaction_keeps_earlier_statements() {
        let mut t = TxFateTracker::new();
        // "CREATE TABLE a (); BEGIN; CREATE TABLE b ()" → status T; a later ROLLBACK undoes both.
        t.statement(1);
        ok(&mut t, "CREATE TABLE a ()", "CREATE TABLE");
        ok(&mut t, "BEGIN", "BEGIN");
        t.statement(3);
        ok(&mut t, "CREATE TABLE b ()", "CREATE TABLE");
        assert!(t.ready_for_query(T).is_empty());
        ok(&mut t, "ROLLBACK", "ROLLBACK");
        let d = one(t.ready_for_query(I));
        assert_eq!((d.seqs, d.fate), (vec![1, 3], Fate::RolledBack));
    }

    #[test]
    fn commit_and_chain_stays_in_transaction() {
        let mut t = TxFateTracker::new();
        t.ready_for_query(T);
        t.statement(1);
        ok(&mut t, "CREATE TABLE a ()", "CREATE TABLE");
        ok(&mut t, "COMMIT AND CHAIN", "COMMIT");
        let d = one(t.ready_for_query(T));
        assert_eq!((d.seqs, d.fate), (vec![1], Fate::Committed));
        t.statement(3);
        ok(&mut t, "CREATE TABLE b ()", "CREATE TABLE");
        t.ready_for_query(T);
        ok(&mut t, "ROLLBACK", "ROLLBACK");
        let d = one(t.ready_for_query(I));
        assert_eq!((d.seqs, d.fate), (vec![3], Fate::RolledBack));
    }

    #[test]
    fn savepoint_rollback_undoes_only_later_statements() {
        let mut t = TxFateTracker::new();
        t.ready_for_query(T);
        t.statement(1);
        ok(&mut t, "CREATE TABLE a ()", "CREATE TABLE");
        ok(&mut t, "SAVEPOINT Sp1", "SAVEPOINT");
        t.statement(3);
        ok(&mut t, "CREATE TABLE b ()", "CREATE TABLE");
        t.migration(rev("0002"));
        ok(&mut t, "SAVEPOINT inner", "SAVEPOINT");
        t.statement(5);
        t.completed("CREATE TABLE b ()", Completion::Error);
        assert!(t.ready_for_query(E).is_empty());
        ok(&mut t, "ROLLBACK TO SAVEPOINT sp1", "ROLLBACK");
        let d = one(t.ready_for_query(T));
        assert_eq!(d.seqs, vec![3, 5]);
        assert_eq!(
            (d.fate, d.reason),
            (Fate::RolledBack, FateReason::SavepointRollback)
        );
        assert_eq!(
            d.migrations,
            vec![MigrationInTx {
                revision: rev("0002"),
                seqs: vec![3]
            }]
        );
        // sp1 still exists; inner is gone.
        t.statement(7);
        ok(&mut t, "CREATE TABLE c ()", "CREATE TABLE");
        ok(&mut t, "release sp1", "RELEASE");
        ok(&mut t, "COMMIT", "COMMIT");
        let d = one(t.ready_for_query(I));
        assert_eq!((d.seqs, d.fate), (vec![1, 7], Fate::Committed));
    }

    #[test]
    fn rollback_to_a_savepoint_taken_before_the_tracker_followed_undoes_everything_seen() {
        // Django: BEGIN; SAVEPOINT s1 (not followed: no DDL yet); CREATE TABLE ...; the
        // server accepted the ROLLBACK TO, so s1 exists and is older than all the tracker saw.
        let mut t = TxFateTracker::new();
        t.ready_for_query(T);
        t.statement(1);
        ok(&mut t, "CREATE TABLE a ()", "CREATE TABLE");
        ok(&mut t, "SAVEPOINT seen", "SAVEPOINT");
        t.statement(3);
        ok(&mut t, "CREATE TABLE b ()", "CREATE TABLE");
        ok(&mut t, "ROLLBACK WORK TO never_seen", "ROLLBACK");
        let d = one(t.ready_for_query(T));
        assert_eq!((d.seqs, d.fate), (vec![1, 3], Fate::RolledBack));
        assert_eq!(d.reason, FateReason::SavepointRollback);
        // `seen` is gone with it: a later ROLLBACK TO seen would have failed on the server.
        t.statement(5);
        ok(&mut t, "CREATE TABLE c ()", "CREATE TABLE");
        ok(&mut t, "COMMIT", "COMMIT");
        let d = one(t.ready_for_query(I));
        assert_eq!((d.seqs, d.fate), (vec![5], Fate::Committed));
    }

    #[test]
    fn release_of_an_unseen_savepoint_keeps_statements_and_commits() {
        let mut t = TxFateTracker::new();
        t.ready_for_query(T);
        t.statement(1);
        ok(&mut t, "CREATE TABLE a ()", "CREATE TABLE");
        ok(&mut t, "RELEASE SAVEPOINT \"s1\"", "RELEASE");
        ok(&mut t, "COMMIT", "COMMIT");
        let d = one(t.ready_for_query(I));
        assert_eq!((d.seqs, d.fate), (vec![1], Fate::Committed));
    }

    #[test]
    fn same_name_twice_release_then_rollback_to_the_older_one() {
        // SAVEPOINT a; CREATE one; SAVEPOINT a; CREATE two; RELEASE a (the newer);
        // CREATE three; ROLLBACK TO a (the older: undoes one, two, three); CREATE four; COMMIT.
        let mut t = TxFateTracker::new();
        t.ready_for_query(T);
        ok(&mut t, "SAVEPOINT a", "SAVEPOINT");
        t.completed_with(&[2], "CREATE TABLE one ()", Completion::Ok("CREATE TABLE"));
        ok(&mut t, "savepoint A", "SAVEPOINT");
        t.completed_with(&[4], "CREATE TABLE two ()", Completion::Ok("CREATE TABLE"));
        ok(&mut t, "RELEASE a", "RELEASE");
        t.completed_with(
            &[6],
            "CREATE TABLE three ()",
            Completion::Ok("CREATE TABLE"),
        );
        ok(
            &mut t,
            "ROLLBACK TRANSACTION TO SAVEPOINT \"a\"",
            "ROLLBACK",
        );
        t.completed_with(&[8], "CREATE TABLE four ()", Completion::Ok("CREATE TABLE"));
        ok(&mut t, "COMMIT", "COMMIT");
        let v = t.ready_for_query(I);
        assert_eq!(v.len(), 2, "{v:?}");
        assert_eq!(
            (v[0].seqs.clone(), v[0].fate),
            (vec![2, 4, 6], Fate::RolledBack)
        );
        assert_eq!((v[1].seqs.clone(), v[1].fate), (vec![8], Fate::Committed));
    }

    #[test]
    fn quoted_names_are_not_folded_and_unquoted_ones_are() {
        let mut t = TxFateTracker::new();
        t.ready_for_query(T);
        ok(&mut t, "SAVEPOINT \"Mixed\"", "SAVEPOINT");
        t.completed_with(&[2], "CREATE TABLE one ()", Completion::Ok("CREATE TABLE"));
        ok(&mut t, "SAVEPOINT mixed", "SAVEPOINT");
        t.completed_with(&[4], "CREATE TABLE two ()", Completion::Ok("CREATE TABLE"));
        // Folds to "mixed": the second one; "Mixed" (the first) stays.
        ok(&mut t, "ROLLBACK TO MIXED", "ROLLBACK");
        let d = one(t.ready_for_query(T));
        assert_eq!(d.seqs, vec![4]);
        ok(&mut t, "ROLLBACK TO \"Mixed\"", "ROLLBACK");
        let d = one(t.ready_for_query(T));
        assert_eq!(d.seqs, vec![2]);
    }

    #[test]
    fn error_inside_a_subtransaction_then_rollback_to_recovers() {
        let mut t = TxFateTracker::new();
        t.ready_for_query(T);
        t.completed_with(&[1], "CREATE TABLE a ()", Completion::Ok("CREATE TABLE"));
        ok(&mut t, "SAVEPOINT s", "SAVEPOINT");
        t.completed_with(&[3], "ALTER TABLE nope ADD x int", Completion::Error);
        assert!(t.ready_for_query(E).is_empty());
        ok(&mut t, "ROLLBACK TO s", "ROLLBACK");
        let d = one(t.ready_for_query(T));
        assert_eq!((d.seqs, d.fate), (vec![3], Fate::RolledBack));
        ok(&mut t, "COMMIT", "COMMIT");
        let d = one(t.ready_for_query(I));
        assert_eq!((d.seqs, d.fate), (vec![1], Fate::Committed));
    }

    #[test]
    fn rollback_and_chain_rolls_back_and_starts_a_new_transaction() {
        let mut t = TxFateTracker::new();
        t.ready_for_query(T);
        t.completed_with(&[1], "CREATE TABLE a ()", Completion::Ok("CREATE TABLE"));
        ok(&mut t, "SAVEPOINT s", "SAVEPOINT");
        ok(&mut t, "ROLLBACK AND CHAIN", "ROLLBACK");
        let d = one(t.ready_for_query(T));
        assert_eq!(
            (d.seqs, d.fate, d.reason),
            (vec![1], Fate::RolledBack, FateReason::Rollback)
        );
        // The savepoint died with the old transaction.
        t.completed_with(&[4], "CREATE TABLE b ()", Completion::Ok("CREATE TABLE"));
        ok(&mut t, "COMMIT AND CHAIN", "COMMIT");
        let d = one(t.ready_for_query(T));
        assert_eq!((d.seqs, d.fate), (vec![4], Fate::Committed));
    }

    #[test]
    fn rollback_without_text_is_decided_by_the_status() {
        // Extended protocol: the tracker does not see the text of `ROLLBACK`.
        let mut t = TxFateTracker::new();
        t.ready_for_query(T);
        t.completed_with(&[1], "", Completion::Ok("CREATE TABLE"));
        t.completed("", Completion::Ok("ROLLBACK"));
        let d = one(t.ready_for_query(I));
        assert_eq!((d.seqs, d.fate), (vec![1], Fate::RolledBack));
        t.ready_for_query(T);
        t.completed_with(&[3], "", Completion::Ok("CREATE TABLE"));
        t.completed("", Completion::Ok("ROLLBACK"));
        assert!(t.ready_for_query(T).is_empty());
        ok(&mut t, "COMMIT", "COMMIT");
        assert_eq!(one(t.ready_for_query(I)).fate, Fate::Unknown);
    }

    #[test]
    fn two_phase_commit_carries_the_gid() {
        let mut t = TxFateTracker::new();
        t.ready_for_query(T);
        t.completed_with(&[1], "CREATE TABLE a ()", Completion::Ok("CREATE TABLE"));
        ok(&mut t, "PREPARE TRANSACTION 'g''1'", "PREPARE TRANSACTION");
        let d = one(t.ready_for_query(I));
        assert_eq!((d.fate, d.gid.as_deref()), (Fate::Prepared, Some("g'1")));
        ok(&mut t, "COMMIT PREPARED 'g''1'", "COMMIT PREPARED");
        let d = one(t.ready_for_query(I));
        assert_eq!(
            (d.fate, d.reason, d.gid.as_deref()),
            (Fate::Committed, FateReason::CommitPrepared, Some("g'1"))
        );
        ok(&mut t, "rollback prepared 'x'", "ROLLBACK PREPARED");
        let d = one(t.ready_for_query(I));
        assert_eq!((d.fate, d.gid.as_deref()), (Fate::RolledBack, Some("x")));
    }

    #[test]
    fn autocommit_block_statements_belong_to_the_next_alembic_revision() {
        let mut t = TxFateTracker::new();
        t.ready_for_query(T);
        t.completed_with(&[1], "CREATE TABLE a ()", Completion::Ok("CREATE TABLE"));
        t.migration(rev("A"));
        // Revision B begins in the same transaction, then autocommit_block commits it.
        t.completed_with(
            &[3],
            "ALTER TABLE a ADD b int",
            Completion::Ok("ALTER TABLE"),
        );
        ok(&mut t, "COMMIT", "COMMIT");
        let d = one(t.ready_for_query(I));
        assert_eq!(d.migrations[0].seqs, vec![1]);
        // Committed: no label yet, the next revision's bookkeeping claims it.
        assert_eq!(d.after_revision, None);
        t.completed_with(
            &[5],
            "CREATE INDEX CONCURRENTLY i ON a (b)",
            Completion::Ok("CREATE INDEX"),
        );
        one(t.ready_for_query(I));
        ok(&mut t, "BEGIN", "BEGIN");
        t.ready_for_query(T);
        t.completed_with(&[7], "CREATE TABLE c ()", Completion::Ok("CREATE TABLE"));
        let mut b = rev("B");
        b.from = Some("A".into());
        t.migration(b);
        ok(&mut t, "COMMIT", "COMMIT");
        let d = one(t.ready_for_query(I));
        assert_eq!(d.migrations[0].seqs, vec![3, 5, 7]);
        assert_eq!(d.after_revision, None);
        // Revision C fails before its bookkeeping: its statements are "after B".
        ok(&mut t, "BEGIN", "BEGIN");
        t.completed_with(&[9], "ALTER TABLE nope ADD x int", Completion::Error);
        ok(&mut t, "ROLLBACK", "ROLLBACK");
        let d = one(t.ready_for_query(I));
        assert_eq!(d.after_revision.map(|r| r.revision).as_deref(), Some("B"));
    }

    #[test]
    fn direction_follows_a_chain_that_starts_with_an_insert() {
        let mut t = TxFateTracker::new();
        let mut a = rev("A");
        a.direction = Some(Direction::Upgrade);
        t.migration(a);
        let mut b = rev("B");
        b.from = Some("A".into());
        t.migration(b);
        ok(&mut t, "COMMIT", "COMMIT");
        let d = one(t.ready_for_query(I));
        assert_eq!(d.migrations[1].revision.direction, Some(Direction::Upgrade));
    }

    #[test]
    fn prepare_transaction() {
        let mut t = TxFateTracker::new();
        t.ready_for_query(T);
        t.statement(1);
        ok(&mut t, "CREATE TABLE a ()", "CREATE TABLE");
        ok(&mut t, "PREPARE TRANSACTION 'x'", "PREPARE TRANSACTION");
        assert_eq!(one(t.ready_for_query(I)).fate, Fate::Prepared);
    }

    #[test]
    fn disconnects() {
        // Idle inside a transaction: the server rolls it back.
        let mut t = TxFateTracker::new();
        t.ready_for_query(T);
        t.statement(1);
        ok(&mut t, "CREATE TABLE a ()", "CREATE TABLE");
        t.ready_for_query(T);
        let d = one(t.connection_closed(false));
        assert_eq!(
            (d.fate, d.reason),
            (Fate::RolledBack, FateReason::Disconnect)
        );
        // A COMMIT in flight: unknown.
        let mut t = TxFateTracker::new();
        t.ready_for_query(T);
        t.statement(1);
        ok(&mut t, "CREATE TABLE a ()", "CREATE TABLE");
        t.ready_for_query(T);
        assert_eq!(one(t.connection_closed(true)).fate, Fate::Unknown);
        // Failed transaction: rolled back even with a request in flight.
        let mut t = TxFateTracker::new();
        t.statement(1);
        t.ready_for_query(T);
        t.ready_for_query(E);
        assert_eq!(one(t.connection_closed(true)).fate, Fate::RolledBack);
        // Autocommit statement whose answer never came: unknown.
        let mut t = TxFateTracker::new();
        t.statement(1);
        assert_eq!(one(t.connection_closed(false)).fate, Fate::Unknown);
        // Nothing pending: nothing to say.
        let mut t = TxFateTracker::new();
        assert!(t.connection_closed(false).is_empty());
    }
}
