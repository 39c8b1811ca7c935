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
use crate::audit::record::{Record, StatementRecord, TableSize};
use crate::audit::{AuditSession, SessionInfo, StatementResult};
use crate::protocol::backend;
use crate::protocol::TxStatus;
use crate::proxy::guard::Decided;

/// What the audit log needs to record a prepared DDL statement each time it runs.
pub(super) struct AuditTemplate {
    pub(super) sql: String,
    pub(super) decided: Decided,
    pub(super) injected: Vec<String>,
}

/// One client request the audit log follows to its ReadyForQuery.
pub(super) struct AuditEntry {
    /// The audited statement's `seq` (0: none).
    pub(super) seq: u64,
    /// The audited statement of this request (its record is already on disk); handed to the
    /// audit session at the request's first answer.
    pub(super) record: Option<StatementRecord>,
    /// Statement texts of a simple Query, in order: each CommandComplete answers the next.
    pub(super) texts: std::collections::VecDeque<String>,
    /// When the request was forwarded: the audited statement's duration starts here.
    pub(super) sent: std::time::Instant,
    /// Migration bookkeeping of an extended-protocol request: text and Bind values.
    pub(super) dml: Vec<(String, Vec<Option<String>>)>,
}

/// A simple Query joins the audit queue (with its statements' texts) while the log follows
/// the session, or when it carries the audited statement.
pub(super) fn audit_query(st: &mut State, side: &mut ClientSide, sql: &[u8]) {
    let record = side.audit_record.take();
    if record.is_none() && !st.audit_watch {
        return;
    }
    // Split as the server does: by its character boundaries (sql/encoding.rs).
    let family = crate::sql::encoding::Family::from_name(&st.client_encoding)
        .unwrap_or(crate::sql::encoding::Family::AsciiSafe);
    let text = crate::sql::encoding::server_text(sql, family);
    let opts = crate::sql::lexer::LexOptions {
        standard_conforming_strings: st.standard_conforming_strings,
        ..crate::sql::AnalysisContext::default().lex
    };
    let texts = crate::sql::lexer::split(&text, &opts)
        .filter(|r| r.class != crate::sql::lexer::StatementClass::Empty)
        .filter_map(|r| text.get(r.span).map(str::to_owned))
        .collect();
    audit_request(st, record, texts, Vec::new());
}

/// Queues one request for the audit log's server-side bookkeeping.
pub(super) fn audit_request(
    st: &mut State,
    record: Option<StatementRecord>,
    texts: std::collections::VecDeque<String>,
    dml: Vec<(String, Vec<Option<String>>)>,
) {
    if record.is_none() && !st.audit_watch {
        return;
    }
    st.audit_watch = true;
    let seq = record.as_ref().map_or(0, |r| r.seq);
    st.audit_queue.push_back(AuditEntry {
        seq,
        record,
        texts,
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
    a
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
    let (seq, record, text, dml) = {
        let mut st = lock(state);
        let Some(head) = st.audit_queue.front_mut() else {
            return;
        };
        let text = if tag == b'Z' {
            None
        } else {
            head.texts.pop_front()
        };
        let dml = std::mem::take(&mut head.dml);
        (
            head.seq,
            head.record.take().map(|r| (r, head.sent)),
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
    if let Some((rec, sent)) = record {
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
                .completed(seq, sql, StatementResult::Ok { tag: &tag })
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
                .completed(
                    seq,
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
    match write_statement_record(ctx, side, &sql, &decided, injected, &snap).await {
        Ok(rec) => {
            side.request_record = Some(rec);
            Ok(())
        }
        Err(e) => Err(SessionError::Audit(e.to_string())),
    }
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
    rec.injected = injected;
    rec.table_sizes = decided
        .sizes
        .iter()
        .map(|(t, rows, bytes)| TableSize {
            table: t.clone(),
            rows: i64::try_from(*rows).ok(),
            bytes: i64::try_from(*bytes).ok(),
        })
        .collect();
    if let Some(sent) = &decided.replace {
        rec = rec.with_rewritten(sent, snap.standard_conforming_strings);
    }
    ctx.shared
        .audit
        .ddl(&Record::Statement(rec.clone()))
        .await?;
    Ok(rec)
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
