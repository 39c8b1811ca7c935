//! A prepared DDL statement is decided again at every Bind of a later request (issue 9 class 3):
//! PostgreSQL resolves a utility statement's names when it runs, so the `search_path` or the
//! table behind a name may have changed since its Parse was decided.
//!
//! The statement's text is already on the server and cannot be exchanged any more. When the
//! new decision is a refusal the Bind is replaced by one that names a prepared statement that
//! does not exist, spelled as the refusal: the server fails the Bind (26000, naming pgwarden's
//! reason), the client's Execute is skipped until its Sync, and a transaction block is aborted
//! — as with every refusal, nothing half-applies.
//!
//! What the server holds is the text pgwarden sent at the Parse: the client's, or pgwarden's
//! one-statement rewrite of it (`CREATE INDEX CONCURRENTLY ...`, outside a transaction block).
//! When the new decision sends that same rewrite, the statement runs as it is on the server;
//! when it would not (the Bind comes inside a transaction block now), the execution is refused
//! saying so, since the server would run a text nobody decided for this execution.
use std::sync::Mutex;

use bytes::BytesMut;
use pgwire::messages::extendedquery::Bind;
use pgwire::messages::Message;

use super::{
    held_body, inject_lookup, lock, snapshot, wait_answered, ClientSide, Ctx, SessionError, State,
    WriteHalf,
};
use crate::audit::record::Decision as AuditDecision;
use crate::enforce::lookup;
use crate::protocol::frontend;
use crate::protocol::TxStatus;

/// Longest refusal text put into the statement name of the failing Bind.
const MAX_REASON: usize = 240;

/// Re-decides the prepared DDL statement the Bind at the front of `buf` executes, unless it was
/// parsed in this same request (its Parse-time decision is then current).
pub(super) async fn redecide_bind(
    ctx: &Ctx,
    state: &Mutex<State>,
    side: &mut ClientSide,
    sw: &mut WriteHalf<'_>,
    buf: &BytesMut,
) -> Result<(), SessionError> {
    let body = held_body(buf).map_err(SessionError::ClientProtocol)?;
    let bind = frontend::decode_bind(body).map_err(SessionError::ClientProtocol)?;
    let (name, portal) = (bind.statement.to_vec(), bind.portal.to_vec());
    if side.parsed_this_request.contains(&name) {
        return Ok(());
    }
    let Some(template) = side.ddl_statements.get(&name) else {
        return Ok(());
    };
    let (sql, before) = (template.sql.clone(), template.decided.decision);
    // A rewrite sent in place of the client's Parse is what the server holds (not a refusal:
    // executing that refuses anyway).
    let sent = template
        .sent
        .clone()
        .filter(|_| before != AuditDecision::Reject);
    // The request may run under the executor (execute_extended.rs): its first step waits for
    // every earlier answer, and so does the plan (the transaction status is the server's).
    let runs = super::execute_extended::runs_now(side.extended.as_deref());
    if runs {
        wait_answered(ctx, state).await;
    }
    let Some(guard) = super::guard_of(&mut side.guard, ctx) else {
        return Ok(());
    };
    // The text is the one the server parsed at Parse time; an ASCII text reads the same under
    // every encoding, any other is treated as read lossily (fail closed).
    let certain = sql.is_ascii();
    let mut snap = snapshot(state);
    snap.pipelined = side.executed;
    snap.lex_certain = certain;
    let prepared = guard.prepare(&sql, snap.view());
    let facts: Result<lookup::LiveFacts, String> = match &prepared.lookup {
        None => Err("no catalog facts needed".into()),
        Some(_) if snap.tx_status == TxStatus::Failed => {
            Err("the transaction has failed: pgwarden sends nothing in it".into())
        }
        Some(_) if side.in_pipeline => Err(
            "inside an unsynced extended-protocol pipeline: pgwarden injects nothing there".into(),
        ),
        Some(req) => inject_lookup(ctx, state, sw, req).await?,
    };
    let mut snap = snapshot(state);
    snap.pipelined = side.executed;
    snap.lex_certain = certain;
    let live = facts.as_ref().map_err(String::as_str);
    let ascii_only = !super::utf8_encoding(&snap.client_encoding);
    let created = prepared.created_tables().to_vec();
    let plan = |in_pipeline| {
        prepared.single_statement().and_then(|f| {
            super::execute::plan_for(
                ctx,
                f,
                &created,
                live,
                snap.tx_status,
                in_pipeline,
                ascii_only,
            )
        })
    };
    let mut exec = if runs && guard.executes() {
        plan(false)
    } else {
        None
    };
    let not_run = match exec {
        None if guard.executes() => super::execute_extended::not_run_reason(
            side.extended.as_deref(),
            side.in_pipeline,
            plan(false).is_some(),
        ),
        _ => None,
    };
    if let Some(p) = &exec {
        guard.will_inject(super::execute::in_force(p, live));
    }
    let single = prepared.single_statement().cloned();
    let asked: Vec<crate::enforce::lookup::RelName> = prepared
        .lookup
        .as_ref()
        .map(|r| r.relations.clone())
        .unwrap_or_default();
    let mut outbox = BytesMut::new();
    let mut decided = guard.decide(
        &sql,
        prepared,
        facts.as_ref().map_err(String::as_str),
        snap.view(),
        &mut outbox,
    );
    // When this decision would send the very rewrite the server holds, the statement runs as
    // it is there, as it would have at its Parse.
    let holds_decided = sent.is_some() && decided.replace == sent;
    // A statement with a multi-step safe form runs as its steps in place of this execution
    // (rewrite.rs), when the request is held whole; when it cannot be, it is refused.
    let multi = super::rewrite::consider(
        ctx,
        guard,
        &sql,
        single.as_ref(),
        &mut decided,
        super::rewrite::Situation {
            tx_status: snap.tx_status,
            in_pipeline: side.in_pipeline,
            takes_over: runs,
            on_server: !holds_decided,
            timeouts: live.map_or((None, None), |l| {
                (l.lock_timeout_ms, l.statement_timeout_ms)
            }),
            created: &created,
            ascii_only,
            table_schema: super::rewrite::resolved_schema(single.as_ref(), &asked, live),
        },
        &mut side.completion,
    );
    if multi.is_some() {
        exec = None;
    }
    if let Some(held) = sent.as_deref() {
        if multi.is_none() && !holds_decided && decided.decision != AuditDecision::Reject {
            stale_rewrite(&mut decided, &sql, held, snap.tx_status, ascii_only);
        }
    }
    if let (Some(text), true, Some(_)) = (&decided.replace, holds_decided, &exec) {
        // The rewrite (CONCURRENTLY) changes the statement's class: plan what the server runs.
        exec = crate::sql::reparse(text).and_then(|f| {
            super::execute::plan_for(ctx, &f, &created, live, snap.tx_status, false, ascii_only)
        });
    }
    if !outbox.is_empty() {
        lock(state).outbox.extend_from_slice(&outbox);
    }
    if decided.decision == AuditDecision::Reject && before != AuditDecision::Reject {
        let reason = refusal_reason(decided.replace.as_deref().unwrap_or_default());
        let mut frame = BytesMut::new();
        Bind::new(
            Some(String::from_utf8_lossy(&portal).into_owned()),
            Some(reason),
            vec![],
            vec![],
            vec![],
        )
        .encode(&mut frame)
        .map_err(|_| {
            SessionError::ClientProtocol(crate::protocol::ProtocolError::malformed(
                "Bind",
                "cannot encode the refused Bind",
            ))
        })?;
        side.bind_replacement = Some(frame);
    }
    if decided.decision == AuditDecision::Reject {
        exec = None;
    }
    let mut injected = match &facts {
        Ok(_) => vec![lookup::DESCRIPTION.to_string()],
        Err(_) => Vec::new(),
    };
    injected.extend(decided.estimated.iter().cloned());
    if let Some(p) = exec.as_mut() {
        p.plan.created_oids = guard.created_in_transaction();
        injected.extend(super::execute::describe(p));
    }
    if let Some(why) = not_run {
        tracing::info!(session = ctx.id, statement = %crate::enforce::raise::excerpt(&sql),
                       "not run under pgwarden's timeouts: {why}");
        injected.push(format!("not run under pgwarden's timeouts: {why}"));
    }
    if let Some(t) = side.ddl_statements.get_mut(&name) {
        t.decided = decided;
        t.injected = injected;
    }
    side.exec = exec.map(Box::new);
    side.multi = multi.map(Box::new);
    Ok(())
}

/// The server holds the rewrite pgwarden sent at the statement's Parse, and this decision
/// would not run that text (the session is inside a transaction block now, or the policy
/// changed): the text on the server cannot be exchanged, so this execution is refused,
/// before anything of it runs.
fn stale_rewrite(
    decided: &mut crate::proxy::guard::Decided,
    sql: &str,
    held: &str,
    tx_status: TxStatus,
    ascii_only: bool,
) {
    use crate::enforce::raise::{excerpt, raise_statement, Rejection};
    let rules = if decided.rules.is_empty() {
        "pgwarden".to_string()
    } else {
        format!("pgwarden: {}", decided.rules.join(", "))
    };
    let now = if tx_status == TxStatus::InTransaction {
        "it is executed inside a transaction block now, where that text cannot run as prepared"
    } else {
        "the decision at this execution is not that rewrite any more"
    };
    let r = Rejection {
        message: format!(
            "{rules}: this prepared statement was prepared as pgwarden's safe rewrite, and {now}"
        ),
        detail: format!(
            "Statement: {}. Prepared on the server as: {}. Nothing of this execution was applied.",
            excerpt(sql),
            excerpt(held)
        ),
        hint: "Prepare the statement where it runs (a new prepared statement, inside the same \
               transaction block), or send it as a simple query (Alembic: op.execute(...))."
            .into(),
    };
    decided.replace = Some(raise_statement(&r, ascii_only));
    decided.decision = AuditDecision::Reject;
    decided.intended = AuditDecision::Reject;
}

/// `pgwarden refused this execution: <message>`, from the `RAISE` statement's MESSAGE literal.
fn refusal_reason(raise: &str) -> String {
    let message = raise
        .split_once("MESSAGE = E'")
        .and_then(|(_, rest)| rest.split_once("', DETAIL"))
        .map(|(m, _)| m.replace("''", "'").replace("\\\\", "\\"))
        .unwrap_or_else(|| "pgwarden: statement refused".into());
    let mut reason = format!(
        "pgwarden refused this execution of a prepared statement (decided again at Bind): \
         {message}"
    );
    reason.retain(|c| c != '\0');
    if reason.len() > MAX_REASON {
        let mut cut = MAX_REASON;
        while !reason.is_char_boundary(cut) {
            cut -= 1;
        }
        reason.truncate(cut);
    }
    reason
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_is_the_raise_message() {
        let raise = crate::enforce::raise::raise_statement(
            &crate::enforce::raise::Rejection {
                message: "pgwarden: rule: it's big".into(),
                detail: "d".into(),
                hint: "h".into(),
            },
            false,
        );
        let r = refusal_reason(&raise);
        assert!(r.ends_with("pgwarden: rule: it's big"), "{r}");
        assert!(refusal_reason(&"x".repeat(1000)).len() <= MAX_REASON);
    }
}
