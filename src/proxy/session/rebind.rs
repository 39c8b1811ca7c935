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
//! When the new decision sends that same text, the statement runs as it is on the server. When
//! it sends another (the Bind comes inside a transaction block now, where a CONCURRENTLY text
//! cannot run; or outside one, where the client's text now gets the rewrite), pgwarden
//! prepares the decided text under the client's name before the Bind is forwarded (Close,
//! Parse, Sync of its own, once nothing else is in flight), so the server runs what was
//! decided for this execution. Where it cannot (inside an unsynced pipeline, in a failed
//! transaction, a non-ASCII text in a session whose encoding is not UTF-8) the execution is
//! refused saying so.
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
    let (sql, before, gone) = (
        template.sql.clone(),
        template.decided.decision,
        template.gone,
    );
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
    // A refused Parse left a RAISE on the server: executing it refuses, whatever is decided now.
    let raise_held = before == AuditDecision::Reject;
    // When this decision would send the very text the server holds (the client's, or the same
    // rewrite), the statement runs as it is there. Otherwise pgwarden prepares the decided text
    // under the client's name first ([`reprepare`]), where it can: nothing else of the request
    // in flight (not inside an unsynced pipeline), a transaction that has not failed, and a
    // text it sends exactly (it sends UTF-8: a UTF-8 session, or an ASCII text, whose bytes
    // read the same under every encoding).
    let holds_decided = !raise_held && !gone && decided.replace == sent;
    let cannot_reprepare = if side.in_pipeline {
        Some("inside an unsynced extended-protocol pipeline")
    } else if snap.tx_status == TxStatus::Failed {
        Some("the transaction has failed: pgwarden sends nothing in it")
    } else if !certain && ascii_only {
        Some(
            "its text is not ASCII and the session's encoding is not UTF-8, so pgwarden cannot \
             send it exactly as the client did",
        )
    } else {
        None
    };
    let can_reprepare = cannot_reprepare.is_none();
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
            on_server: raise_held || (!holds_decided && !can_reprepare),
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
    let mut reprepared = None;
    let mut gone_now = gone;
    if !raise_held && multi.is_none() && !holds_decided && decided.decision != AuditDecision::Reject
    {
        let text = decided.replace.clone().unwrap_or_else(|| sql.clone());
        let failed = match cannot_reprepare {
            Some(why) => Some(why.to_string()),
            None => match reprepare(ctx, state, sw, &name, &text).await? {
                Ok(()) => {
                    reprepared = Some(decided.replace.clone());
                    gone_now = false;
                    None
                }
                Err(why) => {
                    // Its Close went through: the name holds nothing on the server now.
                    gone_now = true;
                    Some(why)
                }
            },
        };
        if let Some(why) = failed {
            let held = match (gone_now, sent.as_deref()) {
                (true, _) => "nothing (pgwarden's Parse of it again failed)",
                (false, Some(text)) => text,
                (false, None) => &sql,
            };
            stale_text(&mut decided, &sql, held, &why, ascii_only);
        }
    }
    if let (Some(text), Some(_), false) = (
        &decided.replace,
        &exec,
        decided.decision == AuditDecision::Reject,
    ) {
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
    if let Some(now) = &reprepared {
        injected.push(format!(
            "pgwarden prepared the statement again under the client's name as {} (Close, \
             Parse, Sync of its own before the Bind)",
            match now {
                Some(_) => "pgwarden's rewrite",
                None => "the client's text",
            }
        ));
        match now {
            Some(_) => side.stripped.insert(name.clone()),
            None => side.stripped.remove(&name),
        };
    }
    if let Some(t) = side.ddl_statements.get_mut(&name) {
        t.decided = decided;
        t.injected = injected;
        if let Some(now) = reprepared {
            t.sent = now;
        }
        t.gone = gone_now;
    }
    side.exec = exec.map(Box::new);
    side.multi = multi.map(Box::new);
    Ok(())
}

/// Makes the statement the server holds under the client's name the text this execution is
/// decided to run: a Close of the name, a Parse of the text, and a Sync, sent once every
/// earlier request is answered, their replies read by pgwarden (not the client's). A Parse of
/// a text that parsed before fails only with the server itself. `Err`: the server's error.
async fn reprepare(
    ctx: &Ctx,
    state: &Mutex<State>,
    sw: &mut WriteHalf<'_>,
    name: &[u8],
    text: &str,
) -> Result<Result<(), String>, SessionError> {
    use super::execute_extended::{encode_close, SYNC};
    wait_answered(ctx, state).await;
    let mut bytes = BytesMut::new();
    encode_close(b'S', name, &mut bytes);
    frontend::encode_parse(name, text, &mut bytes).map_err(SessionError::ClientProtocol)?;
    bytes.extend_from_slice(&SYNC);
    let reply = super::execute::send(state, sw, &bytes, false).await?;
    Ok(match reply.error {
        Some(e) => Err(format!(
            "preparing it again failed: {} ({})",
            e.message, e.code
        )),
        None => Ok(()),
    })
}

/// The server holds a text under the client's name that this execution is not decided to run
/// (pgwarden's rewrite from the Parse, or the client's text where the decision is a rewrite),
/// and it could not be prepared again (`why`): this execution is refused before anything of
/// it runs.
fn stale_text(
    decided: &mut crate::proxy::guard::Decided,
    sql: &str,
    held: &str,
    why: &str,
    ascii_only: bool,
) {
    use crate::enforce::raise::{excerpt, raise_statement, Rejection};
    let rules = if decided.rules.is_empty() {
        "pgwarden".to_string()
    } else {
        format!("pgwarden: {}", decided.rules.join(", "))
    };
    let r = Rejection {
        message: format!(
            "{rules}: this prepared statement is held on the server in a form this execution \
             is not decided to run, and pgwarden cannot prepare it again: {why}"
        ),
        detail: format!(
            "Statement: {}. Prepared on the server as: {}. Nothing of this execution was applied.",
            excerpt(sql),
            excerpt(held)
        ),
        hint: "Execute it with Bind/Execute followed by Sync, outside a pipeline, or send it as a \
               simple query (Alembic: op.execute(...))."
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
