//! The audit layer's per-session front: the few calls a proxy session makes, in protocol order.
//!
//! It bundles the writer handle, the transaction-fate tracker, migration detection, the
//! per-session counters and the statements waiting for their answer, so the session cannot
//! forget a step of the contract in docs/audit.md:
//!
//! ```text
//! AuditSession::start(&handle, n, info)            after BackendKeyData (session_start)
//! for every statement:        seen(decision)       counters for session_end
//! DDL/utility/rejected:       before_forward(rec)  await; Err → refuse, do not forward
//! DML:                        dml(sql, params)     migration bookkeeping (no I/O)
//! CommandComplete/Error:      completed(seq, sql, result)   await before forwarding it
//! ReadyForQuery:              ready_for_query(status)       await before forwarding it
//! disconnect:                 closed(in_flight)             fates + session_end
//! ```
use std::collections::HashMap;
use std::time::Instant;

use super::migration::detect;
use super::record::FateReason;
use super::record::{
    now_rfc3339, Decision, Outcome, OutcomeRecord, Record, SessionCounts, SessionEnd, SessionStart,
    StatementRecord,
};
use super::twophase::PreparedTx;
use super::txfate::{Completion, FateDecision, TxFateTracker};
use super::writer::{AuditHandle, Durability, SessionMark};
use super::AuditError;
use crate::protocol::TxStatus;

/// Who is connected (from the StartupMessage, the socket and BackendKeyData).
#[derive(Debug, Clone, Default)]
pub struct SessionInfo {
    pub client_addr: String,
    pub user: String,
    pub database: String,
    pub application_name: String,
    pub server_pid: Option<i32>,
    pub tls: bool,
}

/// How one statement ended, as the server said it.
#[derive(Debug, Clone, Copy)]
pub enum StatementResult<'a> {
    /// CommandComplete.
    Ok { tag: &'a str },
    /// ErrorResponse.
    Error { sqlstate: &'a str, message: &'a str },
}

/// Per-session audit state. Not `Clone`: one per session task.
#[derive(Debug)]
pub struct AuditSession {
    handle: AuditHandle,
    id: String,
    info: SessionInfo,
    tracker: TxFateTracker,
    counts: SessionCounts,
    /// Audited statements forwarded and not yet answered: their record (for the outcome's
    /// secret scrubbing) and when they were forwarded (for the duration).
    pending: HashMap<u64, (StatementRecord, Instant)>,
    /// Pending statements whose records were only written (group commit, see
    /// [`Self::forwarded_written`]): their outcomes are only written too.
    written_only: std::collections::HashSet<u64>,
    /// Where written-only records are noted for the session's next barrier.
    mark: std::sync::Arc<SessionMark>,
    /// The session's `standard_conforming_strings` (from ParameterStatus): changes how the
    /// redactor reads backslashes.
    scs: bool,
}

impl AuditSession {
    /// Starts the session's audit trail and queues its `session_start` record. `n` is the
    /// proxy's per-run session number.
    pub fn start(handle: &AuditHandle, n: u64, info: SessionInfo) -> AuditSession {
        let id = handle.session_id(n);
        handle.session_start(SessionStart {
            time: now_rfc3339(),
            session_id: id.clone(),
            client_addr: info.client_addr.clone(),
            user: info.user.clone(),
            database: info.database.clone(),
            application_name: info.application_name.clone(),
            server_pid: info.server_pid,
            tls: info.tls,
        });
        AuditSession {
            handle: handle.clone(),
            id,
            info,
            tracker: TxFateTracker::new(),
            counts: SessionCounts::default(),
            pending: HashMap::new(),
            written_only: Default::default(),
            mark: Default::default(),
            scs: true,
        }
    }

    /// Shares the session's [`SessionMark`] (the client side notes its statement records
    /// there): outcomes written only are noted in the same one.
    pub fn with_mark(mut self, mark: std::sync::Arc<SessionMark>) -> AuditSession {
        self.mark = mark;
        self
    }

    /// The audit log's session id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Follows ParameterStatus `standard_conforming_strings`.
    pub fn set_standard_conforming_strings(&mut self, on: bool) {
        self.scs = on;
    }

    /// Status from the last ReadyForQuery.
    pub fn tx_status(&self) -> TxStatus {
        self.tracker.status()
    }

    /// Counts one statement the session saw, with its decision (for `session_end`).
    pub fn seen(&mut self, decision: Decision) {
        self.counts.statements += 1;
        match decision {
            Decision::Warn => self.counts.warned += 1,
            Decision::Reject => self.counts.rejected += 1,
            Decision::Rewrite => self.counts.rewritten += 1,
            Decision::Allow => {}
        }
    }

    /// A `statement` record for `sql` (redacted and fingerprinted); fill `rules`,
    /// `injected`, `table_sizes` and `with_rewritten` before [`Self::before_forward`].
    pub fn statement(&self, seq: u64, sql: &str, decision: Decision) -> StatementRecord {
        StatementRecord::new(
            &self.id,
            seq,
            self.tracker.status(),
            sql,
            self.scs,
            decision,
        )
    }

    /// Writes the record of a DDL/utility/rejected statement; returns when it is durable.
    /// `Err`: do not forward the statement — refuse it (`on_audit_failure = "reject-ddl"`).
    pub async fn before_forward(&mut self, rec: StatementRecord) -> Result<(), AuditError> {
        self.handle.ddl(&Record::Statement(rec.clone())).await?;
        self.forwarded(rec, Instant::now());
        Ok(())
    }

    /// The bookkeeping half of [`Self::before_forward`], for a proxy whose client side wrote
    /// the record itself (with [`AuditHandle::ddl`]) and whose server side owns this session:
    /// call it, in server-answer order, before the statement's first completion.
    /// `at`: when the statement was forwarded (its duration runs from there).
    /// The statement joins the fate tracker at its own completion (so a SAVEPOINT or
    /// ROLLBACK TO earlier in the same Query is placed right), or never if the server skips it.
    ///
    /// A statement whose record was written with [`Durability::Written`] (noted with
    /// [`SessionMark::statement_written`]: it runs inside an open transaction block and cannot
    /// become durable before the barrier in front of its COMMIT) gets its outcome written the
    /// same way. The fate record that ends its transaction is always durable and comes after.
    pub fn forwarded(&mut self, rec: StatementRecord, at: Instant) {
        if self.mark.take_statement(rec.seq) {
            self.written_only.insert(rec.seq);
        }
        self.pending.insert(rec.seq, (rec, at));
    }

    /// The session's `standard_conforming_strings`, for [`StatementRecord::with_rewritten`].
    pub fn scs(&self) -> bool {
        self.scs
    }

    /// Looks for migration bookkeeping in a DML statement (`params`: Bind values in text form,
    /// `None` for NULL or binary). Costs a byte scan for ordinary DML.
    pub fn dml(&mut self, sql: &str, params: &[Option<&str>]) {
        for rev in detect(sql, params) {
            self.tracker.migration(rev);
        }
    }

    /// Every statement's completion, in order (DML and transaction control included: the
    /// tracker needs COMMIT/ROLLBACK/SAVEPOINT). For an audited statement this writes its
    /// `outcome` record; await it before forwarding the answer to the client. An `Err` here
    /// means the statement already ran but its outcome is not on disk: forward the answer
    /// anyway (it cannot be undone) — the failure is logged and the report will show the
    /// statement without an outcome.
    pub async fn completed(
        &mut self,
        seq: u64,
        sql: &str,
        result: StatementResult<'_>,
    ) -> Result<(), AuditError> {
        self.completed_many(&[seq], sql, result).await
    }

    /// [`Self::completed`] for one answer that stands for several audited statements (a
    /// rejected multi-statement Query is replaced by one statement that raises).
    pub async fn completed_many(
        &mut self,
        seqs: &[u64],
        sql: &str,
        result: StatementResult<'_>,
    ) -> Result<(), AuditError> {
        let completion = match result {
            StatementResult::Ok { tag } => Completion::Ok(tag),
            // pgwarden's answer in place of a COMMIT that committed but whose completion steps
            // failed (`crate::rewrite`): the transaction's statements did happen.
            StatementResult::Error { sqlstate, .. }
                if sqlstate == crate::rewrite::COMPLETION_FAILED_SQLSTATE =>
            {
                Completion::Ok("COMMIT")
            }
            StatementResult::Error { .. } => Completion::Error,
        };
        let answered: Vec<(StatementRecord, Instant)> =
            seqs.iter().filter_map(|s| self.pending.remove(s)).collect();
        let mut durability = Durability::Written;
        for (rec, _) in &answered {
            if !self.written_only.remove(&rec.seq) {
                durability = Durability::Durable;
            }
        }
        let live: Vec<u64> = answered.iter().map(|(r, _)| r.seq).collect();
        self.tracker.completed_with(&live, sql, completion);
        let mut result_io = Ok(());
        for (rec, started) in answered {
            let outcome = match result {
                StatementResult::Ok { tag } => Outcome::Ok {
                    tag: tag.to_string(),
                },
                StatementResult::Error { sqlstate, message } => Outcome::Error {
                    sqlstate: sqlstate.to_string(),
                    message: message.to_string(),
                },
            };
            let out = OutcomeRecord::new(&rec, outcome, started.elapsed().as_secs_f64() * 1000.0);
            match self
                .handle
                .ddl_all_with(&[Record::Outcome(out)], durability)
                .await
            {
                Ok(line) if durability == Durability::Written => self.mark.note(line),
                Ok(_) => {}
                Err(e) => result_io = Err(e),
            }
        }
        result_io
    }

    /// ReadyForQuery ended a request: writes the fates it decided. Await before forwarding
    /// the ReadyForQuery. Statements the server skipped (after an error earlier in the same
    /// request) have no `outcome` record; their fate says rolled back.
    pub async fn ready_for_query(&mut self, status: TxStatus) -> Result<(), AuditError> {
        let mut result = Ok(());
        // Statements the server skipped (after an error earlier in the same request) never
        // answer: say so, they did not run.
        let mut skipped: Vec<_> = self.pending.drain().collect();
        self.written_only.clear();
        skipped.sort_by_key(|(seq, _)| *seq);
        for (_, (rec, started)) in skipped {
            let out = OutcomeRecord::new(
                &rec,
                Outcome::Skipped,
                started.elapsed().as_secs_f64() * 1000.0,
            );
            if let Err(e) = self.handle.ddl(&Record::Outcome(out)).await {
                result = Err(e);
            }
        }
        for d in self.tracker.ready_for_query(status) {
            let rec = self.fate_record(d);
            if let Err(e) = self.handle.ddl(&Record::Fate(rec)).await {
                result = Err(e);
            }
        }
        result
    }

    /// The `fate` record of a decision; two-phase commit goes through the process registry:
    /// PREPARE registers the gid, COMMIT/ROLLBACK PREPARED (from any session) finds what the
    /// prepared transaction held and writes its fate under the preparing session's id.
    fn fate_record(&self, d: FateDecision) -> super::record::FateRecord {
        let reason = d.reason;
        let mut rec = d.into_record(&self.id);
        let (Some(reg), Some(gid)) = (self.handle.prepared(), rec.gid.clone()) else {
            return rec;
        };
        match reason {
            FateReason::Prepare => reg.prepared(
                &gid,
                PreparedTx {
                    session_id: self.id.clone(),
                    seqs: rec.seqs.clone(),
                    migrations: rec.migrations.clone(),
                },
            ),
            FateReason::CommitPrepared | FateReason::RollbackPrepared => {
                rec.finished_by = Some(self.id.clone());
                if let Some(tx) = reg.finished(&gid) {
                    rec.session_id = tx.session_id;
                    rec.seqs = tx.seqs;
                    rec.migrations = tx.migrations;
                }
            }
            _ => {}
        }
        rec
    }

    /// The connection ended (`request_in_flight`: a request was forwarded whose
    /// ReadyForQuery never came). Writes the remaining fates, `unknown` outcomes for
    /// statements left without an answer, and `session_end`.
    pub async fn closed(mut self, request_in_flight: bool) {
        let mut unanswered: Vec<_> = self.pending.drain().collect();
        self.written_only.clear();
        unanswered.sort_by_key(|(seq, _)| *seq);
        for (seq, _) in &unanswered {
            // It may have run: its transaction's fate covers it.
            self.tracker.statement(*seq);
        }
        for (_, (rec, started)) in unanswered {
            let out = OutcomeRecord::new(
                &rec,
                Outcome::Unknown,
                started.elapsed().as_secs_f64() * 1000.0,
            );
            let _ = self.handle.ddl(&Record::Outcome(out)).await;
        }
        for d in self.tracker.connection_closed(request_in_flight) {
            let rec = self.fate_record(d);
            let _ = self.handle.ddl(&Record::Fate(rec)).await;
        }
        self.handle.session_end(SessionEnd {
            time: now_rfc3339(),
            session_id: self.id.clone(),
            client_addr: self.info.client_addr.clone(),
            user: self.info.user.clone(),
            database: self.info.database.clone(),
            application_name: self.info.application_name.clone(),
            server_pid: self.info.server_pid,
            tls: self.info.tls,
            counts: self.counts,
        });
    }
}
