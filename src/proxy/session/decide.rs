//! The enforcer's turn on a held Query/Parse: analyse it, fetch the live facts it needs with
//! one injected round trip when that is safe, decide, and leave the decision for the next scan.
use super::*;

/// DML the enforcer watches (`Guard::watches_dml`), decided on the server's word: every
/// earlier request answered first, so a COMMIT in flight has ended the transaction.
pub(super) async fn watched_dml(
    ctx: &Ctx,
    state: &Mutex<State>,
    side: &ClientSide,
    sql: &[u8],
) -> bool {
    let Some(guard) = super::built_guard(&side.guard) else {
        return false;
    };
    let quick = {
        let st = lock(state);
        guard.watches_dml(
            &server_text(sql, reported_family(&st)),
            st.idle_epoch,
            st.tx_status,
            st.standard_conforming_strings,
        )
    };
    if !quick || side.in_pipeline {
        return quick;
    }
    wait_answered(ctx, state).await;
    let st = lock(state);
    guard.watches_dml(
        &server_text(sql, reported_family(&st)),
        st.idle_epoch,
        st.tx_status,
        st.standard_conforming_strings,
    )
}

/// The enforcer's turn on the Query/Parse frame at the front of `buf`: analyse it, fetch the
/// live facts it needs with one injected round trip when that is safe, decide, and leave the
/// decision in `side.decided` for the next scan.
pub(super) async fn decide_held(
    ctx: &Ctx,
    state: &Mutex<State>,
    side: &mut ClientSide,
    sw: &mut WriteHalf<'_>,
    buf: &BytesMut,
) -> Result<(), SessionError> {
    let (sql_bytes, parse_name) = held_sql(buf).map_err(SessionError::ClientProtocol)?;
    if side.guard.is_none() {
        side.decided = Some(None);
        return Ok(());
    }
    // Read the text as the server will (sql/server_lex.rs): when the settings it will apply
    // are unknown and the text splits differently under them, wait for every earlier answer
    // (the server has then reported them); inside an unsynced pipeline there is no answer to
    // wait for, and the text fails closed.
    let base = base_lex();
    let mut settings = lex_settings(&lock(state), side);
    let mut reading = server_lex::exact_reading(sql_bytes, &settings, &base);
    if reading.is_none() && !side.in_pipeline {
        wait_answered(ctx, state).await;
        settings = lex_settings(&lock(state), side);
        reading = server_lex::exact_reading(sql_bytes, &settings, &base);
    }
    // The scan that stopped here lexed this text already; under the same settings its verdict
    // stands (one lexer pass less per DDL statement).
    let lexed = side.attention_under.take() == Some(settings);
    let ddl = lexed || server_lex::needs_attention(sql_bytes, &settings, &base);
    if !ddl && !watched_dml(ctx, state, side, sql_bytes).await {
        // Known now, and plain DML after all.
        if let Some(name) = &parse_name {
            side.ddl_statements.remove(name);
        }
        side.decided = Some(None);
        return Ok(());
    }
    let certain = settings != LexSettings::unknown();
    let sql = match reading {
        Some(r) => r.text(sql_bytes).into_owned(),
        None => server_text(sql_bytes, reported_family(&lock(state))).into_owned(),
    };
    let Some(guard) = super::guard_of(&mut side.guard, ctx) else {
        side.decided = Some(None);
        return Ok(());
    };
    let mut snap_owned = snapshot(state);
    snap_owned.pipelined = side.executed;
    snap_owned.lex_certain = certain;
    snap_owned.unreadable = reading.is_none();
    if let Some(r) = reading {
        snap_owned.standard_conforming_strings = r.standard_conforming_strings;
    }
    ctx.activity.ddl_begin(&sql);
    let prepared = guard.prepare(&sql, snap_owned.view());
    ctx.activity.ddl_analysed(prepared.analysis());
    let facts: Result<LiveFacts, String> = match &prepared.lookup {
        None => Err("no catalog facts needed".into()),
        Some(_) if snap_owned.tx_status == TxStatus::Failed => {
            Err("the transaction has failed: pgwarden sends nothing in it".into())
        }
        Some(_) if side.in_pipeline => Err(
            "inside an unsynced extended-protocol pipeline: pgwarden injects nothing there".into(),
        ),
        Some(req) => {
            ctx.activity.ddl_phase("catalog lookup");
            let started = Instant::now();
            let r = inject_lookup(ctx, state, sw, req).await?;
            crate::metrics::lookup_took(started.elapsed(), r.is_ok());
            r
        }
    };
    // The lookup may have changed what the session knows (its ReadyForQuery status).
    let scs = snap_owned.standard_conforming_strings;
    let mut snap_owned = snapshot(state);
    snap_owned.pipelined = side.executed;
    snap_owned.lex_certain = certain;
    snap_owned.unreadable = reading.is_none();
    snap_owned.standard_conforming_strings = scs;
    // Dry-run forwards everything as sent. A Parse runs under the executor with the request it
    // is in (execute_extended.rs), when that request allows it.
    let executes = guard.executes()
        && (parse_name.is_none() || execute_extended::runs(side.extended.as_deref()));
    let runs_now = parse_name.is_none() || execute_extended::runs_now(side.extended.as_deref());
    let ascii_only = !utf8_encoding(&snap_owned.client_encoding);
    let live = facts.as_ref().map_err(String::as_str);
    let created = prepared.created_tables().to_vec();
    let mut exec = match prepared.single_statement() {
        Some(f) if executes => execute::plan_for(
            ctx,
            f,
            &created,
            live,
            snap_owned.tx_status,
            side.in_pipeline,
            ascii_only,
        ),
        _ => None,
    };
    let not_run = match prepared.single_statement() {
        Some(f) if parse_name.is_some() && exec.is_none() && guard.executes() => {
            let would = execute::plan_for(
                ctx,
                f,
                &created,
                live,
                snap_owned.tx_status,
                false,
                ascii_only,
            );
            execute_extended::not_run_reason(
                side.extended.as_deref(),
                side.in_pipeline,
                would.is_some(),
            )
        }
        _ => None,
    };
    // Several statements in one Query: split for the executor (execute_batch.rs).
    let batch = match (&exec, &parse_name) {
        // Completion steps owed to a COMMIT (rewrite.rs) run only for a COMMIT of its own.
        (None, None) if executes && certain && side.completion.is_empty() => execute_batch::plan(
            prepared.analysis(),
            sql_bytes,
            &sql,
            snap_owned.tx_status,
            &created,
            &ctx.shared.config.execute,
            ascii_only,
            ctx.seed(),
        ),
        _ => Ok(None),
    };
    if let Some(p) = &exec {
        guard.will_inject(execute::in_force(p, live));
    } else if let Some(p) = batch
        .as_ref()
        .ok()
        .and_then(Option::as_ref)
        .and_then(|b| execute_batch::first_plan(b, &ctx.shared.config.execute))
    {
        guard.will_inject(execute::in_force(
            &execute::Pending {
                plan: p,
                kind: "",
                seq: 0,
            },
            live,
        ));
    }
    let single = prepared.single_statement().cloned();
    // The relations the lookup resolved, in its answer's order (`fresh`).
    let asked: Vec<lookup::RelName> = prepared
        .lookup
        .as_ref()
        .map(|r| r.relations.clone())
        .unwrap_or_default();
    let mut outbox = BytesMut::new();
    let mut decided = guard.decide(
        &sql,
        prepared,
        facts.as_ref().map_err(String::as_str),
        snap_owned.view(),
        &mut outbox,
    );
    let mut multi = rewrite::consider(
        ctx,
        guard,
        &sql,
        single.as_ref(),
        &mut decided,
        rewrite::Situation {
            tx_status: snap_owned.tx_status,
            in_pipeline: side.in_pipeline,
            takes_over: parse_name.is_none() || execute_extended::runs(side.extended.as_deref()),
            on_server: false,
            timeouts: live.map_or((None, None), |l| {
                (l.lock_timeout_ms, l.statement_timeout_ms)
            }),
            created: &created,
            ascii_only,
            table_schema: rewrite::resolved_schema(single.as_ref(), &asked, live),
        },
        &mut side.completion,
    );
    guard.settle(&decided);
    if multi.is_some() {
        exec = None;
    }
    if !outbox.is_empty() {
        lock(state).outbox.extend_from_slice(&outbox);
    }
    let mut injected = match &facts {
        Ok(_) => vec![lookup::DESCRIPTION.to_string()],
        Err(_) => Vec::new(),
    };
    injected.extend(decided.estimated.iter().cloned());
    if let Some(why) = not_run.or(batch.as_ref().err().copied()) {
        info!(session = ctx.id, statement = %crate::enforce::raise::excerpt(&sql),
              "not run under pgwarden's timeouts: {why}");
        injected.push(format!("not run under pgwarden's timeouts: {why}"));
    }
    let mut batch = batch.ok().flatten();
    if decided.decision == crate::audit::record::Decision::Reject
        || decided.replace.is_some()
        || multi.is_some()
    {
        batch = None;
    }
    if let Some(b) = &batch {
        injected.push(format!(
            "pgwarden split the Query at its statement boundaries and ran {} of its statements \
             under its timeouts (SET LOCAL, SAVEPOINT pgwarden_lock_retry, retries)",
            b.executed()
        ));
    }
    if decided.decision == crate::audit::record::Decision::Reject {
        exec = None;
    } else if let (Some(text), true) = (&decided.replace, exec.is_some()) {
        // A rewrite (CONCURRENTLY) changes the statement's class: plan what is sent.
        exec = crate::sql::reparse(text).and_then(|f| {
            execute::plan_for(
                ctx,
                &f,
                &created,
                facts.as_ref().map_err(String::as_str),
                snap_owned.tx_status,
                side.in_pipeline,
                ascii_only,
            )
        });
    }
    if let (Some(p), Some(guard)) = (exec.as_mut(), super::built_guard(&side.guard)) {
        // Confirmed by this decision's lookup: what this transaction created itself.
        p.plan.created_oids = guard.created_in_transaction();
    }
    if let (Some(p), Ok(live)) = (&exec, &facts) {
        if fresh::only_fresh_targets(&p.plan, &asked, live) {
            // Nobody else can see what it locks: it runs as sent, in one round trip.
            exec = None;
        }
    }
    if let Some(p) = &exec {
        injected.extend(execute::describe(p));
    }
    let prepared_statement = parse_name.is_some();
    if let Some(name) = parse_name {
        // A prepared statement runs when it is executed, maybe many times, maybe never: it is
        // re-decided (`rebind`) and its record written at each Bind (see `audit_held_bind`).
        side.ddl_statements.insert(
            name,
            AuditTemplate {
                sql,
                decided: decided.clone(),
                injected,
                // Set by the scan when it sends the Parse (client_scan.rs).
                sent: None,
                gone: false,
            },
        );
    } else if ctx.shared.audit.is_enabled() {
        // The audit log follows requests in order from here on: nothing may be in flight
        // that it has not seen.
        wait_answered(ctx, state).await;
        let durability = audit::query_durability(
            ctx,
            state,
            decided.replace.as_deref().unwrap_or(&sql),
            snap_owned.standard_conforming_strings,
            multi.is_none() && batch.is_none(),
        );
        match write_query_records(ctx, side, &sql, &decided, injected, &snap_owned, durability)
            .await
        {
            Ok(recs) => {
                // The executor runs single-statement Queries only: their one record.
                if let (Some(p), [rec]) = (exec.as_mut(), recs.as_slice()) {
                    p.seq = rec.seq;
                }
                if let (Some(m), [rec]) = (multi.as_mut(), recs.as_slice()) {
                    m.seq = rec.seq;
                }
                if let Some(b) = batch.as_mut() {
                    b.set_seqs(recs.iter().map(|r| r.seq).collect());
                }
                side.audit_record = recs
            }
            Err(e) => {
                // DDL must not run unaudited (on_audit_failure = "reject-ddl"): the refusal
                // is sent, not the steps.
                multi = None;
                decided.replace = Some(crate::enforce::raise::raise_statement(
                    &crate::enforce::raise::Rejection {
                        message: format!("pgwarden: audit log unavailable, DDL refused: {e}"),
                        detail: format!("Statement: {}", crate::enforce::raise::excerpt(&sql)),
                        hint: "Fix the audit log (disk space, permissions of [audit] path) and \
                               retry; plain queries keep working meanwhile."
                            .into(),
                    },
                    false,
                ));
            }
        }
    }
    if exec.is_some() || multi.is_some() || batch.is_some() {
        // The executor's first step is injected: every earlier request must be answered.
        wait_answered(ctx, state).await;
    }
    side.batch = batch;
    side.exec = exec.filter(|_| runs_now).map(Box::new);
    // A prepared statement that runs as steps is prepared as the client wrote it (its Bind is
    // taken over, now or in a later request), so the server's and the client's statement
    // agree; the decision's text is what the audit record shows.
    let verdict = match &multi {
        Some(_) if prepared_statement => None,
        _ => decided.replace,
    };
    side.multi = multi.filter(|_| runs_now).map(Box::new);
    ctx.activity
        .ddl_decided(decided.decision.as_str(), &decided.rules);
    side.decided = Some(verdict);
    Ok(())
}

/// The client encoding is UTF-8 (or not yet reported: the database default, read as UTF-8).
pub(super) fn utf8_encoding(enc: &str) -> bool {
    let enc = enc.to_ascii_uppercase();
    enc.is_empty() || enc == "UTF8" || enc == "UTF-8" || enc == "UNICODE"
}

/// The body of the complete frame at the front of `buf` (the scan stopped there with the
/// whole frame buffered).
pub(super) fn held_body(buf: &[u8]) -> Result<&[u8], ProtocolError> {
    let len = buf
        .get(1..5)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map(|b| u32::from_be_bytes(b) as usize + 1)
        .unwrap_or(0);
    buf.get(5..len)
        .ok_or_else(|| ProtocolError::malformed("held frame", "frame not complete"))
}

/// The statement bytes of the Query/Parse frame at the front of `buf`, and the Parse's
/// statement name (`None` for a Query).
pub(super) fn held_sql(buf: &[u8]) -> Result<(&[u8], Option<Vec<u8>>), ProtocolError> {
    let body = held_body(buf)?;
    match buf[0] {
        b'Q' => Ok((frontend::decode_query(body)?.sql, None)),
        _ => {
            let p = frontend::decode_parse(body)?;
            Ok((p.sql, Some(p.name.to_vec())))
        }
    }
}

/// The statement name of the Bind frame at the front of `buf`.
pub(super) fn held_bind_statement(buf: &[u8]) -> Result<Vec<u8>, ProtocolError> {
    Ok(frontend::decode_bind(held_body(buf)?)?.statement.to_vec())
}

/// What the enforcer needs from the shared state, copied out so no lock is held across awaits.
pub(super) struct OwnedSnapshot {
    pub(super) tx_status: TxStatus,
    pub(super) idle_epoch: u64,
    pub(super) server_version: String,
    pub(super) client_encoding: String,
    pub(super) standard_conforming_strings: bool,
    pub(super) pipelined: bool,
    pub(super) lex_certain: bool,
    pub(super) unreadable: bool,
}

impl OwnedSnapshot {
    pub(super) fn view(&self) -> Snapshot<'_> {
        Snapshot {
            tx_status: self.tx_status,
            idle_epoch: self.idle_epoch,
            server_version: &self.server_version,
            client_encoding: &self.client_encoding,
            standard_conforming_strings: self.standard_conforming_strings,
            pipelined: self.pipelined,
            lex_certain: self.lex_certain,
            unreadable: self.unreadable,
        }
    }
}

pub(super) fn snapshot(state: &Mutex<State>) -> OwnedSnapshot {
    let st = lock(state);
    OwnedSnapshot {
        tx_status: st.tx_status,
        idle_epoch: st.idle_epoch,
        server_version: st.server_version.clone(),
        client_encoding: st.client_encoding.clone(),
        standard_conforming_strings: st.standard_conforming_strings,
        pipelined: false,
        lex_certain: false,
        unreadable: false,
    }
}
