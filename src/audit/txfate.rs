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
//! - Savepoints are tracked by name: `SAVEPOINT s` marks a position; `ROLLBACK TO s` decides
//!   *now* that the statements after the mark rolled back (and drops migration revisions seen
//!   after it); the savepoint stays, later ones are gone; `RELEASE s` forgets `s` and later
//!   ones, their statements stay in the transaction. A `ROLLBACK TO` naming a savepoint the
//!   tracker never saw makes the fate of everything in the transaction `unknown`.
//! - Connection closed: inside a transaction (T/E) with no request in flight → rolled back
//!   (the server aborts it). With a request in flight (a COMMIT may have reached the server), or
//!   in an implicit transaction whose ReadyForQuery never arrived → unknown.
use super::lex::{ident_value, tokenize};
use super::migration::MigrationRevision;
use super::record::{now_rfc3339, Fate, FateReason, FateRecord, MigrationInTx};
use crate::protocol::TxStatus;

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
    /// A savepoint rollback named an unknown savepoint: nothing can be decided for sure.
    uncertain: bool,
}

#[derive(Debug)]
struct Savepoint {
    name: String,
    seqs_len: usize,
    migrations_len: usize,
}

/// Per-session tracker (see the module docs for the rules).
#[derive(Debug)]
pub struct TxFateTracker {
    status: TxStatus,
    unit: Unit,
    savepoints: Vec<Savepoint>,
    decided: Vec<FateDecision>,
    /// Something was fed since the last ReadyForQuery.
    in_request: bool,
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
            decided: Vec::new(),
            in_request: false,
        }
    }

    /// Status from the last ReadyForQuery.
    pub fn status(&self) -> TxStatus {
        self.status
    }

    /// An audited statement was forwarded.
    pub fn statement(&mut self, seq: u64) {
        self.in_request = true;
        self.unit.seqs.push(seq);
    }

    /// A migration revision was seen in the current transaction.
    pub fn migration(&mut self, rev: MigrationRevision) {
        self.in_request = true;
        let mark = self.unit.seqs.len();
        self.unit.migrations.push((rev, mark));
    }

    /// A statement completed. `sql` is that one statement's text (needed only to tell
    /// `ROLLBACK TO SAVEPOINT` from `ROLLBACK`, which share the tag, and for savepoint names).
    pub fn completed(&mut self, sql: &str, completion: Completion<'_>) {
        self.in_request = true;
        let tag = match completion {
            Completion::Error => {
                self.unit.errored = true;
                return;
            }
            Completion::Ok(tag) => tag,
        };
        match tag {
            "COMMIT" => self.decide(Fate::Committed, FateReason::Commit),
            "PREPARE TRANSACTION" => self.decide(Fate::Prepared, FateReason::Prepare),
            "ROLLBACK" => match savepoint_target(sql, &["rollback", "abort"]) {
                Some(name) => self.rollback_to(&name),
                None => self.decide(Fate::RolledBack, FateReason::Rollback),
            },
            "SAVEPOINT" => {
                if let Some(name) = savepoint_target(sql, &["savepoint"]) {
                    self.savepoints.push(Savepoint {
                        name,
                        seqs_len: self.unit.seqs.len(),
                        migrations_len: self.unit.migrations.len(),
                    });
                }
            }
            "RELEASE" => {
                if let Some(name) = savepoint_target(sql, &["release"]) {
                    if let Some(pos) = self.savepoints.iter().rposition(|s| s.name == name) {
                        self.savepoints.truncate(pos);
                    }
                }
            }
            _ => {}
        }
    }

    /// ReadyForQuery ended a request; returns the fates decided since the previous one.
    pub fn ready_for_query(&mut self, status: TxStatus) -> Vec<FateDecision> {
        self.status = status;
        self.in_request = false;
        match status {
            TxStatus::Idle => {
                let (fate, reason) = if self.unit.errored {
                    (Fate::RolledBack, FateReason::Error)
                } else {
                    (Fate::Committed, FateReason::Autocommit)
                };
                self.decide(fate, reason);
            }
            TxStatus::InTransaction => self.unit.errored = false,
            TxStatus::Failed => self.unit.errored = true,
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
        self.decide(fate, FateReason::Disconnect);
        std::mem::take(&mut self.decided)
    }

    /// Ends the current unit with `fate` (nothing is recorded for an empty unit).
    fn decide(&mut self, fate: Fate, reason: FateReason) {
        let unit = std::mem::take(&mut self.unit);
        self.savepoints.clear();
        if unit.seqs.is_empty() && unit.migrations.is_empty() {
            return;
        }
        let fate = if unit.uncertain && fate != Fate::RolledBack {
            Fate::Unknown
        } else {
            fate
        };
        let migrations = attach(&unit.seqs, unit.migrations);
        self.decided.push(FateDecision {
            seqs: unit.seqs,
            fate,
            reason,
            migrations,
        });
    }

    fn rollback_to(&mut self, name: &str) {
        // The transaction recovers from an earlier error (E → T).
        self.unit.errored = false;
        let Some(pos) = self.savepoints.iter().rposition(|s| s.name == name) else {
            self.unit.uncertain = true;
            return;
        };
        self.savepoints.truncate(pos + 1);
        let (sl, ml) = (
            self.savepoints[pos].seqs_len,
            self.savepoints[pos].migrations_len,
        );
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
            });
        }
    }
}

/// For `SAVEPOINT s`, `RELEASE [SAVEPOINT] s`, `ROLLBACK|ABORT [WORK|TRANSACTION] TO
/// [SAVEPOINT] s`: the savepoint name (case-folded unless quoted). `None` for a plain ROLLBACK.
fn savepoint_target(sql: &str, leading: &[&str]) -> Option<String> {
    let toks = tokenize(sql, true);
    let first = toks.first()?;
    if !leading.iter().any(|k| first.is_word(sql, k)) {
        return None;
    }
    let mut i = 1;
    if first.is_word(sql, "savepoint") {
        return ident_value(toks.get(1)?, sql);
    }
    if first.is_word(sql, "rollback") || first.is_word(sql, "abort") {
        if toks
            .get(i)
            .is_some_and(|t| t.is_word(sql, "work") || t.is_word(sql, "transaction"))
        {
            i += 1;
        }
        if !toks.get(i)?.is_word(sql, "to") {
            return None;
        }
        i += 1;
    }
    if toks.get(i)?.is_word(sql, "savepoint") {
        i += 1;
    }
    ident_value(toks.get(i)?, sql)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::migration::MigrationTool;
    use TxStatus::{Failed as E, Idle as I, InTransaction as T};

    fn rev(r: &str) -> MigrationRevision {
        MigrationRevision {
            tool: MigrationTool::Alembic,
            revision: r.into(),
            description: None,
            dirty: None,
        }
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
    fn rollback_to_unknown_savepoint_makes_fate_unknown() {
        let mut t = TxFateTracker::new();
        t.ready_for_query(T);
        t.statement(1);
        ok(&mut t, "CREATE TABLE a ()", "CREATE TABLE");
        ok(&mut t, "ROLLBACK WORK TO never_seen", "ROLLBACK");
        ok(&mut t, "COMMIT", "COMMIT");
        assert_eq!(one(t.ready_for_query(I)).fate, Fate::Unknown);
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

    #[test]
    fn savepoint_names() {
        assert_eq!(savepoint_target("ROLLBACK", &["rollback"]), None);
        assert_eq!(
            savepoint_target("ROLLBACK TRANSACTION", &["rollback"]),
            None
        );
        assert_eq!(
            savepoint_target("rollback to savepoint \"Sp\"", &["rollback"]).as_deref(),
            Some("Sp")
        );
        assert_eq!(
            savepoint_target("RELEASE SAVEPOINT X", &["release"]).as_deref(),
            Some("x")
        );
        assert_eq!(
            savepoint_target("SAVEPOINT a1", &["savepoint"]).as_deref(),
            Some("a1")
        );
    }
}
