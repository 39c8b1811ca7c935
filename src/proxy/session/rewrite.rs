//! The session's driver for multi-step rewrites (`crate::rewrite`, DESIGN.md "Safe execution"
//! 5 and 6): runs the steps of one client statement under the executor, one after the other
//! outside a transaction block (one answer; a failed step undoes the earlier ones), or the
//! in-place part inside one and the rest — the completion steps — after the client's COMMIT
//! succeeded and before its answer reaches the client.
use std::sync::Mutex;

use bytes::{BufMut, BytesMut};
use tracing::{info, warn};

use super::execute::{drive, send};
use super::{lock, Ctx, SessionError, State};
use crate::execute::{self, Reply, Request};
use crate::protocol::errors::PgError;
use crate::protocol::{backend, frontend};
use crate::rewrite::completion::Queued;
pub(super) use crate::rewrite::completion::{
    extended_commit_refusal, extended_tx_control, is_commit, Completion,
};
use crate::rewrite::{names, Shape, Step, StepKind, COMPLETION_FAILED_SQLSTATE};
use crate::sql::ObjectName;

mod forms;

/// A client statement that runs as a multi-step rewrite.
pub(super) struct MultiPending {
    pub(super) shape: Shape,
    pub(super) in_transaction: bool,
    /// The session's lock_timeout / statement_timeout as the lookup read them.
    pub(super) timeouts: (Option<u64>, Option<u64>),
    pub(super) created: Vec<ObjectName>,
    pub(super) ascii_only: bool,
    /// The audit record's `seq` of the client's statement (0 = not audited).
    pub(super) seq: u64,
    /// The table's rows as the decision saw them (for pgwarden's own refusals).
    pub(super) rows: Option<u64>,
}

/// What the decision on one statement needs to know about the session.
pub(super) struct Situation<'a> {
    pub(super) tx_status: crate::protocol::TxStatus,
    pub(super) in_pipeline: bool,
    /// The session can run steps in place of the statement: a simple Query, or an
    /// extended-protocol request pgwarden holds whole to its Sync (now, or at the Bind of the
    /// statement this request prepares; `execute_extended.rs`).
    pub(super) takes_over: bool,
    /// The statement's text is on the server already (the Bind of an earlier Parse): a
    /// rewrite of its text cannot apply any more.
    pub(super) on_server: bool,
    pub(super) timeouts: (Option<u64>, Option<u64>),
    pub(super) created: &'a [ObjectName],
    pub(super) ascii_only: bool,
    /// The schema this decision's catalog lookup resolved the statement's table to
    /// ([`resolved_schema`]): the steps name the table by it.
    pub(super) table_schema: Option<&'a str>,
}

/// The schema the decision's catalog lookup (`asked`, answered by `live` in that order)
/// resolved the table of `f` to, under the search_path the statement was sent with.
pub(super) fn resolved_schema<'a>(
    f: Option<&crate::sql::StatementFacts>,
    asked: &[crate::enforce::lookup::RelName],
    live: Result<&'a crate::enforce::lookup::LiveFacts, &str>,
) -> Option<&'a str> {
    let table = f?.table.as_ref()?;
    let i = asked
        .iter()
        .position(|r| r.schema == table.schema && r.name == table.name)?;
    Some(live.ok()?.relations.get(i)?.as_ref()?.schema.as_str())
}

/// After the enforcer's decision on `sql` (facts `f`): refuses a statement that needs what a
/// completion step will create, or takes over a statement whose only objections are rules
/// set to `rewrite` with a multi-step safe form (the decision then says `rewrite`, and the
/// session runs the steps instead of sending the text). A rewrite the session cannot run as
/// its steps, and whose one-statement form would not end in the state asked for (a constraint
/// left NOT VALID; a prepared statement's text it can no longer change), is refused instead.
pub(super) fn consider(
    ctx: &Ctx,
    guard: &crate::proxy::guard::Guard,
    sql: &str,
    f: Option<&crate::sql::StatementFacts>,
    decided: &mut crate::proxy::guard::Decided,
    s: Situation<'_>,
    completion: &mut Completion,
) -> Option<MultiPending> {
    use crate::audit::record::Decision;
    use crate::protocol::TxStatus;
    use crate::rules::{Action, Rule};
    if !completion.is_empty() && s.tx_status == TxStatus::Idle {
        // The transaction ended without passing pgwarden's COMMIT (a ROLLBACK in a longer
        // text, an extended-protocol one): nothing it queued applies any more.
        completion.discard(ctx.id, "the transaction ended");
    }
    if !guard.executes() || s.tx_status == TxStatus::Failed {
        return None;
    }
    let f = f?;
    if !completion.is_empty() && decided.decision != Decision::Reject {
        if let Some(why) = completion.deferred.needed_by(sql, f) {
            let r = crate::enforce::raise::Rejection {
                message: format!("pgwarden: this statement cannot run in this transaction: {why}"),
                detail: format!(
                    "Statement: {}. pgwarden runs the concurrent build after the transaction \
                     commits (so writes are not blocked while it runs); nothing of this \
                     transaction was applied.",
                    crate::enforce::raise::excerpt(sql)
                ),
                hint: "Move this statement into a later migration (a later Alembic revision \
                       with transaction_per_migration=True, or after the index exists)."
                    .into(),
            };
            refuse(decided, &r, s.ascii_only);
            return None;
        }
    }
    if !matches!(decided.decision, Decision::Reject | Decision::Rewrite) || decided.rules.is_empty()
    {
        return None;
    }
    let mut primary = false;
    for id in &decided.rules {
        let rule = Rule::ALL.iter().copied().find(|r| r.id() == id)?;
        let action = guard.action(rule);
        if crate::rewrite::PRIMARY.contains(&rule) {
            if action != Action::Rewrite {
                return None;
            }
            primary = true;
        } else if !matches!(action, Action::Warn | Action::Off)
            && !crate::rewrite::ANSWERED_TOO.contains(&rule)
        {
            return None;
        }
    }
    if !primary {
        return None;
    }
    let runnable = s.takes_over && !s.in_pipeline;
    let shape = crate::rewrite::shape(sql, f);
    if shape.is_none() {
        if let Some(r) = crate::rewrite::split::several_subcommands(sql, f, &decided.rules) {
            refuse(decided, &r, s.ascii_only);
            return None;
        }
    }
    let Some(mut shape) = shape.filter(|_| runnable) else {
        let not_valid = decided.rules.iter().any(|r| {
            r == Rule::AddingForeignKeyConstraint.id() || r == Rule::ConstraintMissingNotValid.id()
        });
        // The tables and their sizes, as the decision read them.
        let tables = decided
            .sizes
            .iter()
            .map(|(t, rows, _)| format!("{t} (~{rows} rows)"))
            .collect::<Vec<_>>()
            .join(", ");
        let detail = format!(
            "Statement: {}{}",
            crate::enforce::raise::excerpt(sql),
            if tables.is_empty() {
                String::new()
            } else {
                format!(". Tables: {tables}")
            }
        );
        let why = if !runnable {
            "this execution: the extended-protocol request it is in is not one pgwarden holds \
             whole to its Sync (a Flush before the Sync, several statements before one Sync, or \
             a larger request)"
        } else {
            "this form"
        };
        if decided.decision == Decision::Rewrite && not_valid {
            // The one-statement rewrite (`... NOT VALID`) alone would leave the constraint
            // unvalidated for good (principle 1): refuse rather than change the end state.
            let r = crate::enforce::raise::Rejection {
                message: format!(
                    "pgwarden: {}: this statement is safe only as ADD ... NOT VALID followed by \
                     VALIDATE CONSTRAINT, and pgwarden cannot run that for {why}",
                    decided.rules.join(", ")
                ),
                detail: detail.clone(),
                hint: "Give the constraint a name and add it in an ALTER TABLE of its own \
                       (Alembic: op.create_check_constraint(\"name\", ...)), sent on its own; \
                       pgwarden then adds it NOT VALID and validates it."
                    .into(),
            };
            refuse(decided, &r, s.ascii_only);
        } else if decided.decision == Decision::Rewrite && s.on_server {
            // The prepared text is the original statement: executing it would run exactly
            // what the rewrite exists to avoid.
            let r = crate::enforce::raise::Rejection {
                message: format!(
                    "pgwarden: {}: this prepared statement runs safely only as pgwarden's steps, \
                     and pgwarden cannot run them for {why}",
                    decided.rules.join(", ")
                ),
                detail: detail.clone(),
                hint: "Execute it with Bind/Execute followed by Sync (what asyncpg, psycopg 3 \
                       and pg8000 send outside pipeline mode), or send it as a simple query."
                    .into(),
            };
            refuse(decided, &r, s.ascii_only);
        }
        return None;
    };
    // Steps after the COMMIT run without the transaction's SET LOCAL search_path: they name
    // the table by the schema it resolved to now (qualify.rs). Steps that run at once, outside
    // a transaction block, run under the search_path the statement was sent with.
    if s.tx_status == TxStatus::InTransaction
        && !s.table_schema.is_some_and(|schema| shape.qualify(schema))
    {
        // Not resolved, or the text's table reference not found exactly: the steps after
        // COMMIT could reach another schema's table of that name. Refused, never run so.
        let r = crate::enforce::raise::Rejection {
            message: format!(
                "pgwarden: {}: this statement runs safely only as steps after the transaction \
                 commits, and pgwarden could not tell which schema's {} they would reach then",
                decided.rules.join(", "),
                shape.table
            ),
            detail: format!(
                "Statement: {}. After COMMIT a SET LOCAL search_path of the transaction no \
                 longer applies; nothing of this statement was applied.",
                crate::enforce::raise::excerpt(sql)
            ),
            hint: "Qualify the table with its schema (Alembic: schema=\"...\" in the op call), \
                   or run the migration with transaction_per_migration=True."
                .into(),
        };
        refuse(decided, &r, s.ascii_only);
        return None;
    }
    // What the audit record's `rewritten` shows (the session sends the steps, not this text;
    // an unnamed object's name is the server's choice, PostgreSQL's first candidate here, and
    // the `steps` record has each statement exactly as sent).
    let name = shape
        .name
        .clone()
        .or_else(|| shape.candidates.first().cloned())
        .unwrap_or_else(|| "<the name the server chose>".into());
    let steps: Vec<String> = shape.steps(&name).into_iter().map(|s| s.sql).collect();
    decided.replace = Some(steps.join(";\n"));
    decided.decision = Decision::Rewrite;
    decided.intended = Decision::Rewrite;
    info!(session = ctx.id, form = shape.form.as_str(), table = %shape.table,
          in_transaction = s.tx_status == TxStatus::InTransaction,
          "statement runs as a multi-step rewrite");
    Some(MultiPending {
        shape,
        in_transaction: s.tx_status == TxStatus::InTransaction,
        timeouts: s.timeouts,
        created: s.created.to_vec(),
        ascii_only: s.ascii_only,
        seq: 0,
        rows: decided.sizes.first().map(|(_, rows, _)| *rows),
    })
}

/// Makes the decision a refusal with `r`.
fn refuse(
    decided: &mut crate::proxy::guard::Decided,
    r: &crate::enforce::raise::Rejection,
    ascii_only: bool,
) {
    use crate::audit::record::Decision;
    decided.replace = Some(crate::enforce::raise::raise_statement(r, ascii_only));
    decided.decision = Decision::Reject;
    decided.intended = Decision::Reject;
}

/// How one step went, for the log and the audit record.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct StepLog {
    pub(crate) sql: String,
    /// `ok` or the SQLSTATE.
    pub(crate) outcome: String,
    pub(crate) phase: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<String>,
}

/// A step's answer, read.
struct Ran {
    answer: BytesMut,
    error: Option<(String, String, Option<String>)>,
}

/// Runs the client's statement as its steps and leaves the one answer for the server→client
/// side. Inside a transaction block the completion steps go into `completion`.
pub(super) async fn run(
    ctx: &Ctx,
    state: &Mutex<State>,
    sw: &mut super::WriteHalf<'_>,
    m: MultiPending,
    completion: &mut Completion,
) -> Result<(), SessionError> {
    let answer = answer(ctx, state, sw, &m, completion).await?;
    leave_answer(ctx, state, answer);
    Ok(())
}

/// Runs the client's statement as its steps (audited) and returns its one answer as to a
/// simple Query: the last step's frames, or pgwarden's own CommandComplete, then ReadyForQuery.
/// The extended-protocol takeover (`execute_extended.rs`) reshapes it for its request.
pub(super) async fn answer(
    ctx: &Ctx,
    state: &Mutex<State>,
    sw: &mut super::WriteHalf<'_>,
    m: &MultiPending,
    completion: &mut Completion,
) -> Result<BytesMut, SessionError> {
    let mut log = Vec::new();
    let answer = run_inner(ctx, state, sw, m, completion, &mut log).await?;
    if m.seq > 0 {
        super::audit::audit_steps(ctx, m.seq, &log).await;
    }
    Ok(answer)
}

async fn run_inner(
    ctx: &Ctx,
    state: &Mutex<State>,
    sw: &mut super::WriteHalf<'_>,
    m: &MultiPending,
    completion: &mut Completion,
    log: &mut Vec<StepLog>,
) -> Result<BytesMut, SessionError> {
    let phase = if m.in_transaction { "in place" } else { "step" };
    if let Some(refused) = forms::refuse_nullable_key(ctx, state, sw, m, log).await? {
        return Ok(refused);
    }
    let mut last = None;
    let mut from = 0;
    let name = match &m.shape.name {
        Some(n) => n.clone(),
        None if m.shape.named_by_server => {
            match forms::add_unnamed_check(ctx, state, sw, m, log, phase).await? {
                Ok((n, answer)) => {
                    (last, from) = (Some(answer), 1);
                    n
                }
                Err(answer) => return Ok(answer),
            }
        }
        None => match choose_name(state, sw, &m.shape).await? {
            Ok(n) => n,
            Err(answer) => return Ok(answer),
        },
    };
    let steps = m.shape.steps(&name);
    let upto = if m.in_transaction {
        m.shape.in_place()
    } else {
        steps.len()
    };
    for i in from..upto {
        let ran = run_step(
            ctx,
            state,
            sw,
            m,
            &steps[i],
            m.in_transaction,
            &name,
            log,
            phase,
        )
        .await?;
        if let Some(err) = &ran.error {
            if m.in_transaction {
                // The server aborted the transaction, with every earlier step in it.
                return Ok(ran.answer);
            }
            warn!(session = ctx.id, step = %steps[i].sql, code = %err.0,
                  "multi-step rewrite: a step failed, undoing the earlier ones");
            undo(ctx, state, sw, m, &steps[..i], false, &name, log).await?;
            return Ok(ran.answer);
        }
        last = Some(ran.answer);
    }
    if m.in_transaction {
        let epoch = lock(state).idle_epoch;
        completion.push(
            Queued::new(
                m.shape.clone(),
                name.clone(),
                steps,
                upto,
                m.seq,
                m.ascii_only,
            ),
            epoch,
        );
        info!(session = ctx.id, object = %name, form = m.shape.form.as_str(),
              "multi-step rewrite: completion steps queued for the client's COMMIT");
    }
    Ok(match last {
        Some(a) => a,
        // Nothing ran in place: pgwarden answers for the statement itself.
        None => synthesized(m.shape.tag(), b'T'),
    })
}

/// Asks the server which of PostgreSQL's candidate names is free. `Err`: the answer to give the
/// client instead (the lookup failed: the table does not exist, ...).
async fn choose_name(
    state: &Mutex<State>,
    sw: &mut super::WriteHalf<'_>,
    shape: &Shape,
) -> Result<Result<String, BytesMut>, SessionError> {
    let req = Request::Extended(vec![(
        names::CHOOSE_SQL,
        vec![
            Some(names::array_literal(&shape.candidates)),
            Some(shape.table_sql()),
            Some(shape.taken_by_relations.to_string()),
            Some(shape.taken_by_constraints.to_string()),
        ],
    )]);
    let reply = own_request(state, sw, &req).await?;
    if reply.error.is_some() {
        return Ok(Err(reply.into_answer()));
    }
    match reply
        .results
        .first()
        .and_then(|r| r.rows.first())
        .and_then(|r| r.first().cloned().flatten())
    {
        Some(n) => Ok(Ok(n)),
        None => {
            let e = PgError::error(
                crate::enforce::raise::REJECT_SQLSTATE,
                format!(
                    "pgwarden: every name PostgreSQL would give this object on {} is taken",
                    shape.table
                ),
            )
            .with_hint("Name the constraint or index in the migration.");
            let mut out = e.to_bytes();
            out.extend_from_slice(&reply.ready);
            Ok(Err(out))
        }
    }
}

/// Sends one of pgwarden's own requests and returns its reply.
async fn own_request(
    state: &Mutex<State>,
    sw: &mut super::WriteHalf<'_>,
    req: &Request,
) -> Result<Reply, SessionError> {
    let mut bytes = BytesMut::new();
    req.encode(&mut bytes)
        .map_err(|e| SessionError::ServerIo(std::io::Error::other(e.to_string())))?;
    send(state, sw, &bytes, false).await
}

/// Runs one step under the executor (its class's timeouts and retries).
#[allow(clippy::too_many_arguments)]
async fn run_step(
    ctx: &Ctx,
    state: &Mutex<State>,
    sw: &mut super::WriteHalf<'_>,
    m: &MultiPending,
    step: &Step,
    in_transaction: bool,
    name: &str,
    log: &mut Vec<StepLog>,
    phase: &'static str,
) -> Result<Ran, SessionError> {
    let mut existed = false;
    if step.kind == StepKind::BuildIndex {
        // Unknown (the query failed) counts as existing: pgwarden never drops an index it
        // cannot prove its own build left.
        existed = !matches!(
            index_state(state, sw, &m.shape.index_sql(name)).await?,
            Ok(None)
        );
    }
    let ran = run_sql(ctx, state, sw, m, &step.sql, in_transaction, m.timeouts).await?;
    log.push(StepLog {
        sql: step.sql.clone(),
        outcome: ran.error.as_ref().map_or("ok".into(), |e| e.0.clone()),
        phase,
        error: ran.error.as_ref().map(|e| e.1.clone()),
    });
    crate::metrics::execute::completion_step(ran.error.is_none());
    if ran.error.is_some() && step.kind == StepKind::BuildIndex && !existed {
        drop_invalid_index(ctx, state, sw, m, &m.shape.index_sql(name), log).await?;
    }
    Ok(ran)
}

/// Runs one statement of pgwarden's under the executor (plain when no timeout needs setting).
/// `timeouts`: the session's lock_timeout / statement_timeout as last read (a step keeps a
/// value the client or its role set, principle 2; after the COMMIT the client's SET LOCALs
/// are gone, so the completion steps get `(None, None)`, as does pgwarden's own clean-up,
/// which must not be cut short by the client's statement_timeout and blocks no one).
#[allow(clippy::too_many_arguments)]
async fn run_sql(
    ctx: &Ctx,
    state: &Mutex<State>,
    sw: &mut super::WriteHalf<'_>,
    m: &MultiPending,
    sql: &str,
    in_transaction: bool,
    timeouts: (Option<u64>, Option<u64>),
) -> Result<Ran, SessionError> {
    let mut frame = BytesMut::new();
    frontend::encode_query(sql, &mut frame).map_err(SessionError::ClientProtocol)?;
    let plan = crate::sql::reparse(sql).and_then(|f| {
        let (lock_timeout_ms, statement_timeout_ms) = timeouts;
        let situation = execute::Situation {
            in_transaction,
            lock_timeout_ms,
            statement_timeout_ms,
            created_in_transaction: &m.created,
            ascii_only: m.ascii_only,
            seed: ctx.seed(),
        };
        execute::plan(&f, &ctx.shared.config.execute, situation)
    });
    let kind = crate::sql::reparse(sql).map_or("statement", |f| f.kind.label());
    let answer = match plan {
        Some(p) => drive(ctx, state, sw, p, kind, &frame).await?.0,
        None => send(state, sw, &frame, true).await?.into_answer(),
    };
    let error = error_of(&answer);
    Ok(Ran { answer, error })
}

/// Runs one of pgwarden's own clean-up statements (outside a transaction block, no timeouts:
/// it must not be cut short and blocks no one), again after a stray cancel ([`stray_cancel`]).
async fn run_own(
    ctx: &Ctx,
    state: &Mutex<State>,
    sw: &mut super::WriteHalf<'_>,
    m: &MultiPending,
    sql: &str,
    registration: &crate::proxy::cancels::Registration<'_>,
) -> Result<Ran, SessionError> {
    let mut tries = 0;
    loop {
        let ran = run_sql(ctx, state, sw, m, sql, false, (None, None)).await?;
        let code = ran.error.as_ref().map(|e| e.0.as_str());
        if !stray_cancel(state, code, &mut tries, Some(registration)) {
            return Ok(ran);
        }
    }
}

/// The index's validity: `Ok(None)` no such index, `Ok(Some(valid))`, `Err(code)` the query
/// failed (after the retries of [`stray_cancel`]).
async fn index_state(
    state: &Mutex<State>,
    sw: &mut super::WriteHalf<'_>,
    index: &str,
) -> Result<Result<Option<bool>, String>, SessionError> {
    const SQL: &str = "SELECT i.indisvalid FROM pg_catalog.pg_index i \
         WHERE i.indexrelid OPERATOR(pg_catalog.=) pg_catalog.to_regclass($1::pg_catalog.text)";
    let req = Request::Extended(vec![(SQL, vec![Some(index.into())])]);
    let mut tries = 0;
    let reply = loop {
        let reply = own_request(state, sw, &req).await?;
        let code = reply.error.as_ref().map(|e| e.code.clone());
        if stray_cancel(state, code.as_deref(), &mut tries, None) {
            continue;
        }
        if let Some(code) = code {
            return Ok(Err(code));
        }
        break reply;
    };
    Ok(Ok(reply
        .results
        .first()
        .and_then(|r| r.rows.first())
        .and_then(|r| r.first().cloned().flatten())
        .map(|v| v == "t")))
}

/// True when pgwarden's own statement that just failed with `code` is to be run again: it
/// failed with 57014 (query_canceled) outside a transaction block, no client cancel was taken
/// for it (`taken`: the clean-up's cancel registration), and it has been retried fewer than
/// [`crate::execute::STRAY_CANCEL_RETRIES`] times. PostgreSQL delivers a cancel as two SIGINTs (to the backend,
/// then to its process group); on a loaded machine the second can arrive after the cancelled
/// statement ended, and cancel the next one: pgwarden's clean-up of the build the client
/// cancelled. Those statements are idempotent and, failed outside a block, left nothing.
fn stray_cancel(
    state: &Mutex<State>,
    code: Option<&str>,
    tries: &mut u32,
    taken: Option<&crate::proxy::cancels::Registration<'_>>,
) -> bool {
    let again = code == Some("57014")
        && *tries < crate::execute::STRAY_CANCEL_RETRIES
        && lock(state).tx_status == crate::protocol::TxStatus::Idle
        && !taken.is_some_and(|r| r.wakeup.cancelled());
    if again {
        *tries += 1;
        tracing::debug!(
            tries = *tries,
            "pgwarden's own statement was cancelled by a late signal: running it again"
        );
    }
    again
}

/// Drops the INVALID index a failed concurrent build of pgwarden's left (never a valid one:
/// that one is not pgwarden's to drop). A client cancel meanwhile is taken, not forwarded: it
/// would cancel the clean-up, not the build that already ended.
async fn drop_invalid_index(
    ctx: &Ctx,
    state: &Mutex<State>,
    sw: &mut super::WriteHalf<'_>,
    m: &MultiPending,
    index: &str,
    log: &mut Vec<StepLog>,
) -> Result<(), SessionError> {
    // Registered first: from here a client cancel is taken, so a 57014 is a stray one.
    let (pid, key) = {
        let st = lock(state);
        (st.backend_pid, st.backend_key.clone())
    };
    let registration = ctx.shared.cancels.register(pid, &key);
    if index_state(state, sw, index).await? != Ok(Some(false)) {
        return Ok(());
    }
    let sql = format!("DROP INDEX CONCURRENTLY IF EXISTS {index}");
    let ran = run_own(ctx, state, sw, m, &sql, &registration).await?;
    drop(registration);
    info!(
        session = ctx.id,
        index,
        ok = ran.error.is_none(),
        "dropped the INVALID index of pgwarden's failed concurrent build"
    );
    log.push(StepLog {
        sql,
        outcome: ran.error.as_ref().map_or("ok".into(), |e| e.0.clone()),
        phase: "clean-up",
        error: ran.error.map(|e| e.1),
    });
    Ok(())
}

/// Undoes `done` (newest first). `artifacts_only`: after the client's COMMIT, only pgwarden's
/// own objects are removed.
#[allow(clippy::too_many_arguments)]
async fn undo(
    ctx: &Ctx,
    state: &Mutex<State>,
    sw: &mut super::WriteHalf<'_>,
    m: &MultiPending,
    done: &[Step],
    artifacts_only: bool,
    _name: &str,
    log: &mut Vec<StepLog>,
) -> Result<(), SessionError> {
    let (pid, key) = {
        let st = lock(state);
        (st.backend_pid, st.backend_key.clone())
    };
    let registration = ctx.shared.cancels.register(pid, &key);
    for step in done.iter().rev() {
        let Some((sql, artifact)) = &step.undo else {
            continue;
        };
        if artifacts_only && !artifact {
            continue;
        }
        let ran = run_own(ctx, state, sw, m, sql, &registration).await?;
        log.push(StepLog {
            sql: sql.clone(),
            outcome: ran.error.as_ref().map_or("ok".into(), |e| e.0.clone()),
            phase: "undo",
            error: ran.error.map(|e| e.1),
        });
    }
    drop(registration);
    Ok(())
}

/// Forwards the client's COMMIT (`frame`) and, when it committed, runs the completion steps
/// before its answer reaches the client: COMMIT's own answer when they all succeeded, an
/// ErrorResponse in its place (SQLSTATE PW002) saying what failed and what is left when not.
pub(super) async fn commit(
    ctx: &Ctx,
    state: &Mutex<State>,
    sw: &mut super::WriteHalf<'_>,
    completion: &mut Completion,
    frame: BytesMut,
) -> Result<(), SessionError> {
    let reply = send(state, sw, &frame, true).await?;
    let committed = reply.error.is_none()
        && reply.results.last().is_some_and(|r| r.tag == "COMMIT")
        && reply.status == Some(crate::protocol::TxStatus::Idle);
    if !committed {
        completion.discard(ctx.id, "the transaction did not commit");
        leave_answer(ctx, state, reply.into_answer());
        return Ok(());
    }
    let queued = completion.take_for_commit();
    let mut failures: Vec<String> = Vec::new();
    let mut remains: Vec<String> = Vec::new();
    let mut finish: Vec<String> = Vec::new();
    let mut ascii_only = false;
    for q in queued {
        ascii_only |= q.ascii_only;
        let m = MultiPending {
            shape: q.shape.clone(),
            in_transaction: false,
            timeouts: (None, None),
            created: Vec::new(),
            ascii_only: q.ascii_only,
            seq: q.seq,
            rows: None,
        };
        let mut log = Vec::new();
        for i in q.from..q.steps.len() {
            let step = &q.steps[i];
            let ran = run_step(
                ctx,
                state,
                sw,
                &m,
                step,
                false,
                &q.name,
                &mut log,
                "after COMMIT",
            )
            .await?;
            if let Some((code, message, detail)) = ran.error {
                warn!(session = ctx.id, step = %step.sql, code = %code,
                      "completion step failed after the client's COMMIT");
                undo(ctx, state, sw, &m, &q.steps[..i], true, &q.name, &mut log).await?;
                let detail = detail.map(|d| format!(" ({d})")).unwrap_or_default();
                failures.push(format!(
                    "`{}` failed: {message}{detail} [SQLSTATE {code}]",
                    step.sql
                ));
                let (what, how) = q.shape.remains(&q.name, &q.steps, i);
                remains.push(what);
                finish.push(how);
                break;
            }
        }
        if q.seq > 0 {
            super::audit::audit_steps(ctx, q.seq, &log).await;
        }
    }
    let answer = if failures.is_empty() {
        reply.into_answer()
    } else {
        let e = PgError::error(
            COMPLETION_FAILED_SQLSTATE,
            format!(
                "pgwarden: the transaction COMMITTED, but a completion step pgwarden runs after \
                 the commit failed: {}",
                failures.join("; ")
            ),
        )
        .with_detail(format!("What remains: {}.", remains.join("; ")))
        .with_hint(format!(
            "Fix the data, then finish by hand (through pgwarden): {}",
            finish.join("; ")
        ));
        let mut e = e;
        if ascii_only {
            e.message = e.message.replace(|c: char| !c.is_ascii(), "?");
        }
        let mut out = e.to_bytes();
        out.extend_from_slice(&reply.ready);
        out
    };
    leave_answer(ctx, state, answer);
    Ok(())
}

/// Hands the answer to the server→client side, which replays it as the server's.
fn leave_answer(ctx: &Ctx, state: &Mutex<State>, answer: BytesMut) {
    lock(state).replay = Some(answer);
    ctx.post_replay();
}

/// A CommandComplete with `tag` and a ReadyForQuery with `status`.
fn synthesized(tag: &str, status: u8) -> BytesMut {
    let mut out = BytesMut::new();
    out.put_u8(b'C');
    out.put_i32((tag.len() + 5) as i32);
    out.put_slice(tag.as_bytes());
    out.put_u8(0);
    out.put_u8(b'Z');
    out.put_i32(5);
    out.put_u8(status);
    out
}

/// The first ErrorResponse of an answer: (SQLSTATE, message, detail).
fn error_of(answer: &[u8]) -> Option<(String, String, Option<String>)> {
    let mut pos = 0;
    while pos + 5 <= answer.len() {
        let tag = answer[pos];
        let len = i32::from_be_bytes(answer[pos + 1..pos + 5].try_into().ok()?);
        let end = pos + 1 + usize::try_from(len).ok()?;
        let body = answer.get(pos + 5..end)?;
        if tag == b'E' {
            let (mut code, mut message, mut detail) = (String::new(), String::new(), None);
            for (f, v) in backend::error_fields(body).flatten() {
                let v = String::from_utf8_lossy(v).into_owned();
                match f {
                    b'C' => code = v,
                    b'M' => message = v,
                    b'D' => detail = Some(v),
                    _ => {}
                }
            }
            return Some((code, message, detail));
        }
        pos = end;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_read_and_written_by_length() {
        let a = synthesized("CREATE INDEX", b'T');
        assert!(error_of(&a).is_none());
        let mut e = PgError::error("23503", "violates".into())
            .with_detail("Key (c)=(5)")
            .to_bytes();
        e.extend_from_slice(&a);
        assert_eq!(
            error_of(&e),
            Some((
                "23503".into(),
                "violates".into(),
                Some("Key (c)=(5)".into())
            ))
        );
        assert!(error_of(&[b'E', 0, 0]).is_none());
        assert!(error_of(&[b'E', 0xff, 0xff, 0xff, 0xff, 0]).is_none());
    }
}
