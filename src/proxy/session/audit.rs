//! The audit log's side of a session: which client requests it follows, the `statement`
//! record of a held DDL (before it is forwarded), and the outcome and fate records written
//! from the server's answers (before the client sees them). session.rs owns the bytes; this
//! module owns the bookkeeping (docs/audit.md describes the records).
use std::sync::Mutex;

use bytes::BytesMut;

use super::{
    held_bind_statement, lock, snapshot, wait_answered, ClientSide, Ctx, OwnedSnapshot,
    SessionError, State,
};
use crate::audit::record::{Decision, Record, StatementRecord, TableSize};
use crate::audit::{AuditSession, Durability, SessionInfo, StatementResult};
use crate::protocol::backend;
use crate::protocol::TxStatus;
use crate::proxy::guard::Decided;

/// What the audit log needs to record a prepared DDL statement each time it runs.
pub(super) struct AuditTemplate {
    pub(super) sql: String,
    pub(super) decided: Decided,
    pub(super) injected: Vec<String>,
    /// The text pgwarden sent in the statement's Parse in place of the client's (a rewrite, a
    /// refusal): what the server holds under the name. `None`: the client's text.
    pub(super) sent: Option<String>,
    /// The server holds nothing under the name: pgwarden closed it to prepare it again, and
    /// that Parse failed (`rebind::reprepare`). Every later Bind prepares it again first.
    pub(super) gone: bool,
}

/// One client request the audit log follows to its ReadyForQuery.
pub(super) struct AuditEntry {
    /// The audited statements' `seq`s (empty: none).
    pub(super) seqs: Vec<u64>,
    /// The audited statements of this request (their records are already on disk); handed to
    /// the audit session at the request's first answer.
    pub(super) records: Vec<StatementRecord>,
    /// Statement texts of a simple Query as the server runs them, in order, each with the
    /// audited statements it answers: each CommandComplete/ErrorResponse answers the next.
    /// Empty for an extended-protocol request (every answer goes to `seqs`).
    pub(super) texts: std::collections::VecDeque<(String, Vec<u64>)>,
    /// `texts` says which answer is whose (a simple Query).
    pub(super) by_text: bool,
    /// When the request was forwarded: the audited statement's duration starts here.
    pub(super) sent: std::time::Instant,
    /// Migration bookkeeping of an extended-protocol request: text and Bind values.
    pub(super) dml: Vec<(String, Vec<Option<String>>)>,
}

/// A simple Query joins the audit queue (with its statements' texts) while the log follows
/// the session, when it carries audited statements, or when it finishes a prepared
/// transaction (COMMIT/ROLLBACK PREPARED: the fate of another transaction, maybe another
/// session's). `sent`: the text sent instead of the client's, if any.
pub(super) fn audit_query(
    ctx: &Ctx,
    st: &mut State,
    side: &mut ClientSide,
    sql: &[u8],
    sent: Option<&str>,
) {
    let records = std::mem::take(&mut side.audit_record);
    // Migration bookkeeping in a transaction not followed yet (Alembic's version row after an
    // autocommit block, before the next revision's DDL) names a revision: follow it too.
    // Cheap: one byte scan of the text, as for every Parse.
    if records.is_empty()
        && !st.audit_watch
        && !(ctx.shared.audit.is_enabled()
            && (finishes_prepared(sql) || crate::audit::migration::might_be_bookkeeping_bytes(sql)))
    {
        return;
    }
    // Split as the server does: by its character boundaries (sql/encoding.rs); a text
    // pgwarden sent instead is its own.
    let text = match sent {
        Some(t) => std::borrow::Cow::Borrowed(t),
        None => {
            let family = crate::sql::encoding::Family::from_name(&st.client_encoding)
                .unwrap_or(crate::sql::encoding::Family::AsciiSafe);
            crate::sql::encoding::server_text(sql, family)
        }
    };
    let stmts = split_statements(&text, st.standard_conforming_strings);
    let seqs: Vec<u64> = records.iter().map(|r| r.seq).collect();
    let texts = if stmts.len() == records.len() {
        stmts
            .into_iter()
            .zip(seqs.iter())
            .map(|((_, t), seq)| (t, vec![*seq]))
            .collect()
    } else {
        // The Query was replaced by one statement (a rejection's raise): its answer is every
        // audited statement's.
        stmts
            .into_iter()
            .enumerate()
            .map(|(i, (_, t))| (t, if i == 0 { seqs.clone() } else { Vec::new() }))
            .collect()
    };
    st.audit_watch = true;
    st.audit_queue.push_back(AuditEntry {
        seqs,
        records,
        texts,
        by_text: true,
        sent: std::time::Instant::now(),
        dml: Vec::new(),
    });
}

/// The non-empty statements of a simple Query with their byte ranges, as the prefilter splits
/// them (the server answers each with one CommandComplete, or stops at an ErrorResponse).
fn split_statements(text: &str, scs: bool) -> Vec<(std::ops::Range<usize>, String)> {
    let opts = crate::sql::lexer::LexOptions {
        standard_conforming_strings: scs,
        ..crate::sql::AnalysisContext::default().lex
    };
    crate::sql::lexer::split(text, &opts)
        .filter(|r| r.class != crate::sql::lexer::StatementClass::Empty)
        .filter_map(|r| Some((r.span.clone(), text.get(r.span)?.to_owned())))
        .collect()
}

/// `COMMIT PREPARED` / `ROLLBACK PREPARED` at the start of the text (cheap: a Query that
/// starts otherwise costs a few byte comparisons).
fn finishes_prepared(sql: &[u8]) -> bool {
    let t = sql.trim_ascii_start();
    let rest = if t.len() >= 6 && t[..6].eq_ignore_ascii_case(b"commit") {
        &t[6..]
    } else if t.len() >= 8 && t[..8].eq_ignore_ascii_case(b"rollback") {
        &t[8..]
    } else {
        return false;
    };
    let rest = rest.trim_ascii_start();
    rest.len() >= 8 && rest[..8].eq_ignore_ascii_case(b"prepared")
}

/// Queues one extended-protocol request (or FunctionCall) for the audit log's server-side
/// bookkeeping.
pub(super) fn audit_request(
    st: &mut State,
    record: Option<StatementRecord>,
    dml: Vec<(String, Vec<Option<String>>)>,
) {
    if record.is_none() && !st.audit_watch && dml.is_empty() {
        return;
    }
    st.audit_watch = true;
    let records: Vec<StatementRecord> = record.into_iter().collect();
    st.audit_queue.push_back(AuditEntry {
        seqs: records.iter().map(|r| r.seq).collect(),
        records,
        texts: Default::default(),
        by_text: false,
        sent: std::time::Instant::now(),
        dml,
    });
}

/// Starts the session's audit trail at its first ReadyForQuery (the server pid is known).
pub(super) fn start_audit(ctx: &Ctx, state: &Mutex<State>) -> AuditSession {
    let st = lock(state);
    let mut a = AuditSession::start(
        &ctx.shared.audit,
        ctx.id,
        SessionInfo {
            client_addr: ctx.peer.to_string(),
            user: ctx.user.clone(),
            database: ctx.database.clone(),
            application_name: st.application_name.clone(),
            server_pid: Some(st.backend_pid),
            tls: ctx.client_tls,
        },
    );
    a.set_standard_conforming_strings(st.standard_conforming_strings);
    a.with_mark(ctx.audit_mark.clone())
}

/// Group commit: how the records of a held simple Query whose text as sent is `sent` must be
/// written. Only written (no fsync of their own) when the session is in an open transaction
/// block with nothing in flight (so the status is the one the Query runs in) and every
/// statement sent is bound to that block (`audit::group_commit`); `plain`: pgwarden sends
/// the Query as one (no multi-step rewrite, no split batch). Anything else: durable.
pub(super) fn query_durability(
    ctx: &Ctx,
    state: &Mutex<State>,
    sent: &str,
    scs: bool,
    plain: bool,
) -> Durability {
    if !plain || !ctx.shared.audit.is_enabled() {
        return Durability::Durable;
    }
    {
        let st = lock(state);
        if st.pending > 0 || !matches!(st.tx_status, TxStatus::InTransaction | TxStatus::Failed) {
            return Durability::Durable;
        }
    }
    if crate::audit::group_commit::transaction_bound(sent, scs) {
        Durability::Written
    } else {
        Durability::Durable
    }
}

/// Group commit: before anything at the front of `buf` (complete client frames; `skip` bytes
/// of a frame being streamed come first) is forwarded that could end the session's open
/// transaction — a Query not bound to the block (COMMIT, END, PREPARE TRANSACTION, ROLLBACK,
/// DO, ...), any Execute or FunctionCall (their text is not at hand) — every record this
/// session wrote without an fsync is made durable: the server cannot make a statement durable
/// before its record is. Costs two atomic loads while nothing is pending.
/// `Err`: the records could not be made durable (`on_audit_failure = "reject-ddl"`): the
/// session ends without forwarding it, so the server rolls the transaction back.
///
/// `bound`: the last Query found bound to the block. The scan passes over a held Query several
/// times (held, decided, sent), and lexing it once is enough.
pub(super) async fn barrier_before(
    ctx: &Ctx,
    state: &Mutex<State>,
    buf: &[u8],
    skip: usize,
    bound: &mut BoundQuery,
) -> Result<(), SessionError> {
    if !ctx.shared.audit.unsynced(&ctx.audit_mark) {
        return Ok(());
    }
    let (scs, family) = {
        let st = lock(state);
        (
            st.standard_conforming_strings,
            st.client_family
                .unwrap_or(crate::sql::encoding::Family::AsciiSafe),
        )
    };
    if !may_end_transaction(buf.get(skip..).unwrap_or_default(), scs, family, bound) {
        return Ok(());
    }
    ctx.shared
        .audit
        .barrier(&ctx.audit_mark)
        .await
        .map_err(|e| SessionError::Audit(e.to_string()))
}

/// A Query's body that was found bound to the transaction block, with the settings it was
/// lexed under (the same bytes read under other settings may split differently).
#[derive(Default)]
pub(super) struct BoundQuery {
    body: Vec<u8>,
    under: Option<(bool, crate::sql::encoding::Family)>,
}

impl BoundQuery {
    fn is(&self, body: &[u8], scs: bool, family: crate::sql::encoding::Family) -> bool {
        self.under == Some((scs, family)) && self.body == body
    }

    fn set(&mut self, body: &[u8], scs: bool, family: crate::sql::encoding::Family) {
        self.body.clear();
        self.body.extend_from_slice(body);
        self.under = Some((scs, family));
    }
}

/// Whether the complete frames at the front of `buf` hold a request that could end the
/// transaction block (see [`barrier_before`]); an incomplete Query is not forwarded yet.
fn may_end_transaction(
    mut buf: &[u8],
    scs: bool,
    family: crate::sql::encoding::Family,
    bound: &mut BoundQuery,
) -> bool {
    while let [tag, rest @ ..] = buf {
        let Some(len) = rest
            .get(..4)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map(|b| u32::from_be_bytes(b) as usize)
        else {
            return matches!(tag, b'E' | b'F');
        };
        match tag {
            b'E' | b'F' => return true,
            b'Q' => {
                let Some(body) = rest.get(4..len) else {
                    return false;
                };
                if !bound.is(body, scs, family) {
                    let sql = body.strip_suffix(&[0]).unwrap_or(body);
                    let text = crate::sql::encoding::server_text(sql, family);
                    if !crate::audit::group_commit::transaction_bound(&text, scs) {
                        return true;
                    }
                    bound.set(body, scs, family);
                }
            }
            _ => {}
        }
        match rest.get(len.max(4)..) {
            Some(next) => buf = next,
            None => return false,
        }
    }
    false
}

/// The audit log's turn on the answer at the front of `buf` (CommandComplete, ErrorResponse
/// or ReadyForQuery of a followed request): outcome and fate records are written before the
/// client sees the answer.
pub(super) async fn audit_answer(
    state: &Mutex<State>,
    audit: &mut Option<AuditSession>,
    buf: &[u8],
) {
    let Some((&tag, rest)) = buf.split_first() else {
        return;
    };
    let len = rest
        .get(..4)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map_or(0, |b| u32::from_be_bytes(b) as usize);
    let Some(body) = rest.get(4..len) else { return };
    let (seqs, records, sent, text, dml) = {
        let mut st = lock(state);
        let Some(head) = st.audit_queue.front_mut() else {
            return;
        };
        let (text, seqs) = if tag == b'Z' {
            (None, Vec::new())
        } else if head.by_text {
            match head.texts.pop_front() {
                Some((t, seqs)) => (Some(t), seqs),
                None => (None, Vec::new()),
            }
        } else {
            (None, head.seqs.clone())
        };
        let dml = std::mem::take(&mut head.dml);
        (
            seqs,
            std::mem::take(&mut head.records),
            head.sent,
            text,
            dml,
        )
    };
    let Some(a) = audit.as_mut() else {
        if tag == b'Z' {
            lock(state).audit_queue.pop_front();
        }
        return;
    };
    for rec in records {
        a.seen(rec.decision);
        a.forwarded(rec, sent);
    }
    for (sql, params) in &dml {
        let values: Vec<Option<&str>> = params.iter().map(|v| v.as_deref()).collect();
        a.dml(sql, &values);
    }
    let sql = text.as_deref().unwrap_or("");
    match tag {
        b'C' => {
            let tag = backend::decode_command_complete(body)
                .map(|t| String::from_utf8_lossy(t).into_owned())
                .unwrap_or_default();
            if !sql.is_empty() {
                a.dml(sql, &[]);
            }
            let _ = a
                .completed_many(&seqs, sql, StatementResult::Ok { tag: &tag })
                .await;
        }
        b'E' => {
            let (code, message) = match backend::decode_error(body) {
                Ok(e) => (
                    String::from_utf8_lossy(e.code).into_owned(),
                    String::from_utf8_lossy(e.message).into_owned(),
                ),
                Err(_) => (String::new(), String::new()),
            };
            let _ = a
                .completed_many(
                    &seqs,
                    sql,
                    StatementResult::Error {
                        sqlstate: &code,
                        message: &message,
                    },
                )
                .await;
        }
        _ => {
            let status = match backend::decode_ready_for_query(body) {
                Ok(b'T') => TxStatus::InTransaction,
                Ok(b'E') => TxStatus::Failed,
                _ => TxStatus::Idle,
            };
            let _ = a.ready_for_query(status).await;
            let mut st = lock(state);
            st.audit_queue.pop_front();
            if st.audit_queue.is_empty() && status == TxStatus::Idle {
                st.audit_watch = false;
            }
        }
    }
}

/// The audit log's turn on a Bind of a prepared DDL statement (the statement runs in this
/// request): its record is written before the Bind is forwarded. If it cannot be written the
/// session is closed: the Parse is already on the server, and only ending the connection keeps
/// the statement from running unaudited.
pub(super) async fn audit_held_bind(
    ctx: &Ctx,
    state: &Mutex<State>,
    side: &mut ClientSide,
    buf: &BytesMut,
) -> Result<(), SessionError> {
    let name = held_bind_statement(buf).map_err(SessionError::ClientProtocol)?;
    side.bind_audited = true;
    if !ctx.shared.audit.is_enabled() {
        return Ok(());
    }
    let Some(t) = side.ddl_statements.get(&name) else {
        return Ok(());
    };
    let (sql, decided, injected) = (t.sql.clone(), t.decided.clone(), t.injected.clone());
    if !lock(state).audit_watch {
        wait_answered(ctx, state).await;
    }
    let snap = snapshot(state);
    match write_statement_record(
        ctx,
        side,
        &sql,
        &decided,
        injected,
        &snap,
        Durability::Durable,
    )
    .await
    {
        Ok(rec) => {
            side.request_record = Some(Box::new(rec));
            Ok(())
        }
        Err(e) => Err(SessionError::Audit(e.to_string())),
    }
}

/// Writes one `statement` record per statement of a held simple Query, each with the rules
/// that fired on it, and returns them in order (DESIGN.md: DDL must not run unaudited).
/// `Err` = not every record is on disk.
pub(super) async fn write_query_records(
    ctx: &Ctx,
    side: &mut ClientSide,
    sql: &str,
    decided: &Decided,
    injected: Vec<String>,
    snap: &OwnedSnapshot,
    durability: Durability,
) -> Result<Vec<StatementRecord>, crate::audit::AuditError> {
    let stmts = split_statements(sql, snap.standard_conforming_strings);
    if stmts.len() <= 1 {
        return Ok(vec![
            write_statement_record(ctx, side, sql, decided, injected, snap, durability).await?,
        ]);
    }
    let rejected = decided.decision == Decision::Reject;
    let fired: Vec<Vec<String>> = stmts
        .iter()
        .map(|(span, _)| {
            let mut rules: Vec<String> = Vec::new();
            for (rule, at) in &decided.findings {
                if at.start < span.end
                    && span.start < at.end.max(at.start + 1)
                    && !rules.contains(rule)
                {
                    rules.push(rule.clone());
                }
            }
            rules
        })
        .collect();
    // The raise that replaces a rejected Query goes on the statement it refuses.
    let raise_at = fired.iter().position(|r| !r.is_empty()).unwrap_or(0);
    let mut injected = Some(injected);
    let mut recs = Vec::with_capacity(stmts.len());
    for (i, ((span, text), rules)) in stmts.iter().zip(fired).enumerate() {
        side.audit_seq += 1;
        // A rejected Query runs none of its statements: each is refused with it.
        let decision = if rejected {
            Decision::Reject
        } else if rules.is_empty() {
            Decision::Allow
        } else {
            decided.decision
        };
        let mut rec = StatementRecord::new(
            &ctx.audit_id,
            side.audit_seq,
            snap.tx_status,
            text,
            snap.standard_conforming_strings,
            decision,
        );
        if !rules.is_empty() && decided.intended != decided.decision {
            rec.would = Some(decided.intended);
        }
        rec.rules = rules;
        rec.allowed = allowed_in(decided, span);
        if i == 0 {
            rec.injected = injected.take().unwrap_or_default();
        }
        if crate::enforce::engine::needs_attention(text, snap.standard_conforming_strings) {
            rec.table_sizes = table_sizes(decided);
        }
        if let (Some(sent), true) = (&decided.replace, i == raise_at) {
            rec = rec.with_rewritten(sent, snap.standard_conforming_strings);
        }
        recs.push(rec);
    }
    // Queued together, the records share one write and one fsync.
    let lines: Vec<Record> = recs.iter().cloned().map(Record::Statement).collect();
    let line = ctx.shared.audit.ddl_all_with(&lines, durability).await?;
    note_written(ctx, &recs, line, durability);
    Ok(recs)
}

/// `rule: reason` of the findings allowed deliberately within `span` of the text.
fn allowed_in(decided: &Decided, span: &std::ops::Range<usize>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for (rule, at, reason) in &decided.allowed {
        let line = format!("{rule}: {reason}");
        if at.start < span.end && span.start < at.end.max(at.start + 1) && !out.contains(&line) {
            out.push(line);
        }
    }
    out
}

fn table_sizes(decided: &Decided) -> Vec<TableSize> {
    decided
        .sizes
        .iter()
        .map(|(t, rows, bytes)| TableSize {
            table: t.clone(),
            rows: i64::try_from(*rows).ok(),
            bytes: i64::try_from(*bytes).ok(),
        })
        .collect()
}

/// Writes the `statement` record of a held statement and returns it (DESIGN.md: DDL must
/// not run unaudited). `Err` = the record is not on disk.
pub(super) async fn write_statement_record(
    ctx: &Ctx,
    side: &mut ClientSide,
    sql: &str,
    decided: &Decided,
    injected: Vec<String>,
    snap: &OwnedSnapshot,
    durability: Durability,
) -> Result<StatementRecord, crate::audit::AuditError> {
    side.audit_seq += 1;
    let mut rec = StatementRecord::new(
        &ctx.audit_id,
        side.audit_seq,
        snap.tx_status,
        sql,
        snap.standard_conforming_strings,
        decided.decision,
    );
    rec.rules = decided.rules.clone();
    rec.allowed = allowed_in(decided, &(0..sql.len()));
    rec.injected = injected;
    rec.table_sizes = table_sizes(decided);
    if decided.intended != decided.decision {
        rec.would = Some(decided.intended);
    }
    if let Some(sent) = &decided.replace {
        rec = rec.with_rewritten(sent, snap.standard_conforming_strings);
    }
    let line = ctx
        .shared
        .audit
        .ddl_all_with(&[Record::Statement(rec.clone())], durability)
        .await?;
    note_written(ctx, std::slice::from_ref(&rec), line, durability);
    Ok(rec)
}

/// Written-only records go into the session's mark: its next barrier covers them, and their
/// outcomes are written the same way.
fn note_written(
    ctx: &Ctx,
    recs: &[StatementRecord],
    line: crate::audit::writer::Line,
    d: Durability,
) {
    if d == Durability::Written {
        for r in recs {
            ctx.audit_mark.statement_written(r.seq);
        }
        ctx.audit_mark.note(line);
    }
}

/// The `attempts` record of a statement the executor retried, on disk before the client sees
/// its answer. A write failure is logged: the statement has run, its answer must go out.
pub(super) async fn audit_attempts(ctx: &Ctx, seq: u64, attempts: &[crate::execute::Attempt]) {
    if attempts.len() < 2 && attempts.iter().all(|a| a.outcome == "ok") {
        return;
    }
    let rec = crate::audit::attempts::AttemptsRecord::new(&ctx.audit_id, seq, attempts);
    if let Err(e) = ctx.shared.audit.ddl(&Record::Attempts(rec)).await {
        tracing::warn!(
            session = ctx.id,
            "audit log: cannot write the attempts record: {e}"
        );
    }
}

/// Writes the steps of a multi-step rewrite of statement `seq` (`rewrite.rs`).
pub(super) async fn audit_steps(ctx: &Ctx, seq: u64, steps: &[super::rewrite::StepLog]) {
    if steps.is_empty() {
        return;
    }
    let steps = steps
        .iter()
        .map(|s| crate::audit::steps::Step {
            sql: s.sql.clone(),
            phase: s.phase.to_string(),
            outcome: s.outcome.clone(),
            error: s.error.clone(),
        })
        .collect();
    let rec = crate::audit::steps::StepsRecord::new(&ctx.audit_id, seq, steps);
    if let Err(e) = ctx.shared.audit.ddl(&Record::Steps(rec)).await {
        tracing::warn!(
            session = ctx.id,
            "audit log: cannot write the steps record: {e}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::encoding::Family;

    fn query(sql: &str) -> Vec<u8> {
        let mut v = vec![b'Q'];
        v.extend_from_slice(&((sql.len() + 5) as u32).to_be_bytes());
        v.extend_from_slice(sql.as_bytes());
        v.push(0);
        v
    }

    /// The remembered Query stands only for the settings it was read under: the same bytes
    /// with standard_conforming_strings changed end the block.
    #[test]
    fn a_bound_query_is_remembered_with_the_settings_it_was_read_under() {
        let mut bound = BoundQuery::default();
        let q = query(r"SELECT 'a\'; COMMIT; --'");
        // scs off: one statement, a string; remembered.
        assert!(!may_end_transaction(
            &q,
            false,
            Family::AsciiSafe,
            &mut bound
        ));
        assert!(bound.is(&q[5..], false, Family::AsciiSafe));
        assert!(!may_end_transaction(
            &q,
            false,
            Family::AsciiSafe,
            &mut bound
        ));
        // scs on: `'a\'` ends the string and COMMIT follows.
        assert!(may_end_transaction(&q, true, Family::AsciiSafe, &mut bound));
        // Another Query, or an Execute, is read for itself.
        assert!(may_end_transaction(
            &query("COMMIT"),
            false,
            Family::AsciiSafe,
            &mut bound
        ));
        assert!(may_end_transaction(
            &[b'E', 0, 0, 0, 9, 0, 0, 0, 0, 0],
            false,
            Family::AsciiSafe,
            &mut bound
        ));
    }
}
