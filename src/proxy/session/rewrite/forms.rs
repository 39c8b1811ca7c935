//! The driver's part of the statement forms that need the server before or between their
//! steps (issue 16, "forms"): an ADD PRIMARY KEY whose columns are not all NOT NULL is refused
//! before anything runs, and an unnamed CHECK is added NOT VALID unnamed so that the server
//! names it exactly as a direct run would, and its name is read back for VALIDATE.
use std::sync::Mutex;

use bytes::BytesMut;

use super::{own_request, run_step, Ctx, MultiPending, SessionError, State, StepLog};
use crate::execute::Request;
use crate::rewrite::names;

/// The single text a reply's first row holds (`None`: no row, NULL, or an error).
fn first_text(reply: &crate::execute::Reply) -> Option<String> {
    reply
        .results
        .first()
        .and_then(|r| r.rows.first())
        .and_then(|r| r.first().cloned().flatten())
}

/// ADD PRIMARY KEY through `USING INDEX` is the direct run's end state only when its columns
/// are NOT NULL already: `USING INDEX` would otherwise set them NOT NULL itself, scanning the
/// table under ACCESS EXCLUSIVE — the stall the rewrite is for. `Some(answer)`: refused (the
/// refusal runs on the server as a RAISE, so inside a transaction block it fails the
/// transaction and nothing of it is applied).
pub(super) async fn refuse_nullable_key(
    ctx: &Ctx,
    state: &Mutex<State>,
    sw: &mut super::super::WriteHalf<'_>,
    m: &MultiPending,
    log: &mut Vec<StepLog>,
) -> Result<Option<BytesMut>, SessionError> {
    let cols = m.shape.must_be_not_null();
    if cols.is_empty() {
        return Ok(None);
    }
    let req = Request::Extended(vec![(
        names::NULLABLE_SQL,
        vec![Some(m.shape.table_sql()), Some(names::array_literal(cols))],
    )]);
    let reply = own_request(state, sw, &req).await?;
    if reply.error.is_some() {
        return Ok(Some(reply.into_error_answer()));
    }
    let Some(nullable) = first_text(&reply) else {
        return Ok(None);
    };
    let table = m.shape.table.to_string();
    let size = m.rows.map(|r| format!(" ({r} rows)")).unwrap_or_default();
    let cols_py = cols
        .iter()
        .map(|c| format!("'{c}'"))
        .collect::<Vec<_>>()
        .join(", ");
    let first = nullable.split(", ").next().unwrap_or_default().to_string();
    let r = crate::enforce::raise::Rejection {
        message: format!(
            "pgwarden: adding-serial-primary-key-field: ADD PRIMARY KEY on {table}{size}: column \
             {nullable} is nullable, so the primary key would set it NOT NULL with a scan of the \
             table under ACCESS EXCLUSIVE (no reads or writes until it finishes): refused"
        ),
        detail: format!(
            "Statement: {}. pgwarden builds a primary key with CREATE UNIQUE INDEX \
             CONCURRENTLY and ADD CONSTRAINT ... PRIMARY KEY USING INDEX only when its columns \
             are NOT NULL already. Nothing was applied.",
            crate::enforce::raise::excerpt(m.shape.statement())
        ),
        hint: format!(
            "Make the column NOT NULL first: op.alter_column('{}', '{first}', nullable=False) \
             (pgwarden runs it as CHECK NOT VALID + VALIDATE + SET NOT NULL, without the long \
             lock, and SET NOT NULL happens at COMMIT), then op.create_primary_key(..., '{}', \
             [{cols_py}]) in a later transaction: a later revision with \
             transaction_per_migration=True in context.configure, or a later deploy.",
            m.shape.table.name, m.shape.table.name
        ),
    };
    let sql = crate::enforce::raise::raise_statement(&r, m.ascii_only);
    let ran = super::run_sql(ctx, state, sw, m, &sql, m.in_transaction, m.timeouts).await?;
    log.push(StepLog {
        sql: format!("(refused before any step: {nullable} nullable)"),
        outcome: ran.error.as_ref().map_or("ok".into(), |e| e.0.clone()),
        phase: "refused",
        error: Some(r.message.clone()),
    });
    Ok(Some(ran.answer))
}

/// An unnamed CHECK: runs the first step (the statement with NOT VALID, still unnamed, so
/// the server applies its own naming rule) and reads back the name it chose. `Ok((name,
/// answer))`: the step's answer and the name; `Err(answer)`: what the client gets (the step
/// failed, nothing of it stays).
pub(super) async fn add_unnamed_check(
    ctx: &Ctx,
    state: &Mutex<State>,
    sw: &mut super::super::WriteHalf<'_>,
    m: &MultiPending,
    log: &mut Vec<StepLog>,
    phase: &'static str,
) -> Result<Result<(String, BytesMut), BytesMut>, SessionError> {
    let table = m.shape.table_sql();
    let before = own_request(
        state,
        sw,
        &Request::Extended(vec![(
            names::CONSTRAINT_NAMES_SQL,
            vec![Some(table.clone())],
        )]),
    )
    .await?;
    if before.error.is_some() {
        return Ok(Err(before.into_error_answer()));
    }
    let before = first_text(&before).unwrap_or_else(|| "{}".into());
    // The step's SQL does not depend on the name (it stays unnamed).
    let first = m.shape.steps("").remove(0);
    let ran = run_step(ctx, state, sw, m, &first, m.in_transaction, "", log, phase).await?;
    if ran.error.is_some() {
        return Ok(Err(ran.answer));
    }
    let after = own_request(
        state,
        sw,
        &Request::Extended(vec![(
            names::NEW_CHECK_SQL,
            vec![Some(table), Some(before)],
        )]),
    )
    .await?;
    let found: Vec<String> = after
        .results
        .first()
        .map(|r| {
            r.rows
                .iter()
                .filter_map(|row| row.first().cloned().flatten())
                .collect()
        })
        .unwrap_or_default();
    match found.as_slice() {
        [name] => Ok(Ok((name.clone(), ran.answer))),
        _ => {
            // Another session added a NOT VALID CHECK to the table at the same moment (or
            // the read failed): pgwarden cannot tell which is the client's, so it validates
            // none and says so; the constraint stays NOT VALID, as the message says.
            let e = crate::protocol::errors::PgError::error(
                crate::enforce::raise::REJECT_SQLSTATE,
                format!(
                    "pgwarden: the CHECK was added to {} NOT VALID, but pgwarden could not tell \
                     its name from the catalog ({} new NOT VALID checks): it was not validated",
                    m.shape.table,
                    found.len()
                ),
            )
            .with_hint("Validate it by hand: ALTER TABLE ... VALIDATE CONSTRAINT <name>.");
            let mut out = e.to_bytes();
            out.extend_from_slice(&after.ready);
            Ok(Err(out))
        }
    }
}
