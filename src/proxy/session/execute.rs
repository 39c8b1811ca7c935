//! The session's driver for the executor (`crate::execute`): decides whether a held simple
//! Query runs under it, sends what it says, routes the replies to it, sleeps its backoffs
//! (a client cancel ends them) and hands its one answer to the server→client side, which
//! replays it as if the server had sent it (so pending requests, the transaction status and
//! the audit log see exactly the client's answer).
use std::sync::Mutex;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tokio::sync::oneshot;
use tracing::{info, warn};

use super::{lock, Ctx, SessionError, State, LOOKUP_TIMEOUT};
use crate::enforce::lookup::LiveFacts;
use crate::execute::{self, Action, Attempt, Executor, Plan, Reply, Request};
use crate::protocol::TxStatus;
use crate::proxy::stream::WriteHalf;
use crate::sql::context::Timeouts;

/// A client statement that will run under the executor.
pub(super) struct Pending {
    pub(super) plan: Plan,
    /// The statement kind for messages (`ALTER TABLE`).
    pub(super) kind: &'static str,
    /// The audit record's `seq` of the statement (0 = not audited).
    pub(super) seq: u64,
}

/// The client's request as the executor's [`Request::Client`] sends it.
pub(super) struct ClientStatement {
    /// The frames of the first attempt: a Query, or an extended-protocol request up to its Sync.
    pub(super) first: BytesMut,
    /// The frames of every later attempt (the same, after Close messages for the named
    /// statement and portal the first attempt created: see `execute_extended`).
    pub(super) again: BytesMut,
    /// How many CloseComplete replies of those Close messages lead each later reply.
    pub(super) closes: usize,
    /// Answers the client is owed before this request's (to messages it sent before it).
    pub(super) owed: BytesMut,
}

impl ClientStatement {
    /// A simple Query: every attempt sends the same frame.
    pub(super) fn query(frame: BytesMut) -> ClientStatement {
        ClientStatement {
            again: frame.clone(),
            first: frame,
            closes: 0,
            owed: BytesMut::new(),
        }
    }
}

/// A step in flight: the server→client side feeds the reply and hands it over at its
/// ReadyForQuery.
pub(super) struct ExecStep {
    pub(super) reply: Reply,
    pub(super) done: oneshot::Sender<Reply>,
}

/// Plans the held text: one statement, simple protocol, outside a pipeline, in a healthy or
/// no transaction. `f`: the facts of the statement as it will be sent.
pub(super) fn plan_for(
    ctx: &Ctx,
    f: &crate::sql::StatementFacts,
    created: &[crate::sql::ObjectName],
    facts: Result<&LiveFacts, &str>,
    tx_status: TxStatus,
    in_pipeline: bool,
    ascii_only: bool,
) -> Option<Pending> {
    if tx_status == TxStatus::Failed || in_pipeline {
        return None;
    }
    let live = facts.ok();
    let situation = execute::Situation {
        in_transaction: tx_status == TxStatus::InTransaction,
        lock_timeout_ms: live.and_then(|l| l.lock_timeout_ms),
        statement_timeout_ms: live.and_then(|l| l.statement_timeout_ms),
        created_in_transaction: created,
        ascii_only,
        seed: ctx.seed() ^ nanos(),
    };
    // `[execute]` as in force now: a SIGHUP reload applies from the next statement.
    let plan = execute::plan(f, &ctx.shared.live.now().config.execute, situation)?;
    Some(Pending {
        kind: f.kind.label(),
        plan,
        seq: 0,
    })
}

fn nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as u64)
        .unwrap_or(0)
}

/// The timeouts the statement will run under, for the decision's timeout rules.
pub(super) fn in_force(p: &Pending, facts: Result<&LiveFacts, &str>) -> Timeouts {
    let live = facts.ok();
    Timeouts {
        lock_timeout_ms: p
            .plan
            .lock_timeout_ms
            .or(live.and_then(|l| l.lock_timeout_ms)),
        statement_timeout_ms: p
            .plan
            .statement_timeout_ms
            .or(live.and_then(|l| l.statement_timeout_ms)),
    }
}

/// How the audit record names what pgwarden sends around the statement.
pub(super) fn describe(p: &Pending) -> Vec<String> {
    let scope = if p.plan.in_transaction {
        "SET LOCAL"
    } else {
        "SET, restored after the statement"
    };
    let v = |ms: Option<u64>| ms.map_or("the session's own".to_string(), |m| format!("{m} ms"));
    let mut out = vec![format!(
        "pgwarden {} class timeouts ({scope}): lock_timeout {}, statement_timeout {}",
        p.plan.class.as_str(),
        v(p.plan.lock_timeout_ms),
        v(p.plan.statement_timeout_ms)
    )];
    if p.plan.retries() {
        out.push(if p.plan.in_transaction {
            "pgwarden SAVEPOINT pgwarden_lock_retry before the statement: lock timeouts are \
             rolled back to it and retried"
                .to_string()
        } else {
            "pgwarden retries lock timeouts of the statement".to_string()
        });
    }
    out
}

/// Runs the client's statement (`client`: the frames to send) under the executor and leaves
/// its answer for the server→client side to replay.
pub(super) async fn run(
    ctx: &Ctx,
    state: &Mutex<State>,
    sw: &mut WriteHalf<'_>,
    pending: Pending,
    mut client: ClientStatement,
) -> Result<(), SessionError> {
    let mut owed = std::mem::take(&mut client.owed);
    let answer = answer(ctx, state, sw, pending, client).await?;
    owed.extend_from_slice(&answer);
    lock(state).replay = Some(owed);
    ctx.post_replay();
    Ok(())
}

/// Runs the client's statement under the executor and returns its one answer (its frames and
/// the ReadyForQuery after pgwarden's last step).
pub(super) async fn answer(
    ctx: &Ctx,
    state: &Mutex<State>,
    sw: &mut WriteHalf<'_>,
    pending: Pending,
    client: ClientStatement,
) -> Result<BytesMut, SessionError> {
    let Pending { plan, kind, seq } = pending;
    let (answer, attempts) = drive_client(ctx, state, sw, plan, kind, &client).await?;
    if seq > 0 {
        super::audit::audit_attempts(ctx, seq, &attempts).await;
    }
    Ok(answer)
}

/// Runs one statement (`frame`: its Query) under the executor and returns its answer for the
/// client with every attempt; the multi-step rewrites (`rewrite.rs`) run each step this way.
pub(super) async fn drive(
    ctx: &Ctx,
    state: &Mutex<State>,
    sw: &mut WriteHalf<'_>,
    plan: Plan,
    kind: &str,
    frame: &[u8],
) -> Result<(BytesMut, Vec<Attempt>), SessionError> {
    let client = ClientStatement::query(BytesMut::from(frame));
    drive_client(ctx, state, sw, plan, kind, &client).await
}

/// [`drive`] for any client request: a Query, or an extended-protocol request
/// (`execute_extended.rs`) whose later attempts differ from its first.
async fn drive_client(
    ctx: &Ctx,
    state: &Mutex<State>,
    sw: &mut WriteHalf<'_>,
    plan: Plan,
    kind: &str,
    client: &ClientStatement,
) -> Result<(BytesMut, Vec<Attempt>), SessionError> {
    let started = std::time::Instant::now();
    let (pid, key) = {
        let st = lock(state);
        (st.backend_pid, st.backend_key.clone())
    };
    let mut exec = Executor::new(plan, kind);
    let mut action = exec.start();
    let mut client_sent = false;
    let answer = loop {
        match action {
            Action::Answer(bytes) => break bytes,
            Action::Send(req) => {
                let mut bytes = BytesMut::new();
                let mut closes = 0;
                match &req {
                    Request::Client if client_sent => {
                        bytes.extend_from_slice(&client.again);
                        closes = client.closes;
                    }
                    Request::Client => {
                        client_sent = true;
                        bytes.extend_from_slice(&client.first);
                    }
                    other => {
                        if let Err(e) = other.encode(&mut bytes) {
                            // pgwarden's own values come from the server as text: a NUL cannot
                            // be in them. Were it so, the stream position is still known.
                            warn!(session = ctx.id, pid, "{e}");
                            return Err(SessionError::ServerIo(std::io::Error::other(
                                e.to_string(),
                            )));
                        }
                    }
                }
                let mut reply = send(state, sw, &bytes, req == Request::Client).await?;
                if closes > 0 {
                    drop_close_completes(&mut reply, closes);
                }
                action = exec.on_reply(reply, started.elapsed());
            }
            Action::Sleep(d) => {
                // Registered before the log line: whoever reads it and cancels is heard.
                let registration = ctx.shared.cancels.register(pid, &key);
                log_attempt(ctx, pid, &exec, d);
                let wakeup = std::sync::Arc::clone(&registration.wakeup);
                tokio::select! {
                    _ = crate::proxy::timer::sleep(d) => {}
                    _ = wakeup.notify.notified() => {}
                }
                // Leaving the registry first: from here a cancel goes to the server, and one
                // taken before (even as the sleep ended) is acted on below.
                drop(registration);
                action = if wakeup.cancelled() {
                    info!(
                        session = ctx.id,
                        pid, "client cancelled its statement during pgwarden's backoff"
                    );
                    exec.on_cancel(started.elapsed())
                        .unwrap_or_else(|| exec.on_woke(started.elapsed()))
                } else {
                    exec.on_woke(started.elapsed())
                };
            }
        }
    };
    let attempts = exec.attempts();
    let plan = exec.plan();
    if plan.lock_timeout_ms.is_some() || plan.statement_timeout_ms.is_some() {
        crate::metrics::execute::injected_timeout();
    }
    for a in attempts.iter().filter(|a| a.outcome == "lock_timeout") {
        crate::metrics::execute::lock_wait(
            Duration::from_millis(a.waited_ms),
            a.backoff_ms.is_some(),
        );
    }
    if attempts.len() > 1 || attempts.iter().any(|a| a.outcome != "ok") {
        let last = attempts.last().map_or("", |a| a.outcome.as_str());
        info!(
            session = ctx.id,
            pid,
            attempts = attempts.len(),
            outcome = last,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "{kind}: pgwarden's lock-timeout retries ended"
        );
    }
    Ok((answer, attempts.to_vec()))
}

/// Removes the CloseComplete replies of pgwarden's own Close messages from the front of a
/// later attempt's reply: the client sent no Close and must not see their answers.
fn drop_close_completes(reply: &mut Reply, n: usize) {
    const CLOSE_COMPLETE: [u8; 5] = [b'3', 0, 0, 0, 4];
    for _ in 0..n {
        if !reply.frames.starts_with(&CLOSE_COMPLETE) {
            break;
        }
        let _ = reply.frames.split_to(CLOSE_COMPLETE.len());
    }
}

fn log_attempt(ctx: &Ctx, pid: i32, exec: &Executor, backoff: Duration) {
    let Some(a): Option<&Attempt> = exec.attempts().last() else {
        return;
    };
    ctx.activity
        .ddl_lock_timeout(a.number, a.waited_ms, backoff, &a.blockers);
    let blockers: Vec<String> = a.blockers.iter().map(|b| b.describe()).collect();
    let target = exec
        .plan()
        .main_target()
        .map(|(r, _)| r.name.clone())
        .unwrap_or_default();
    warn!(session = ctx.id, pid, attempt = a.number, waited_ms = a.waited_ms,
          lock_timeout_ms = a.lock_timeout_ms, backoff_ms = backoff.as_millis() as u64,
          table = %target, blockers = ?blockers,
          "lock timeout: pgwarden rolls back the attempt and retries after a backoff");
}

/// Sends one request and waits for its whole reply. The client's own statement may run as
/// long as its timeouts allow; pgwarden's own requests are answered at once or the session
/// is closed (the stream position would be unknown).
pub(super) async fn send(
    state: &Mutex<State>,
    sw: &mut WriteHalf<'_>,
    bytes: &[u8],
    client: bool,
) -> Result<Reply, SessionError> {
    let (tx, rx) = oneshot::channel();
    lock(state).executing = Some(Box::new(ExecStep {
        reply: Reply::default(),
        done: tx,
    }));
    sw.write_all(bytes).await.map_err(SessionError::ServerIo)?;
    sw.flush().await.map_err(SessionError::ServerIo)?;
    let gone = || {
        SessionError::ServerIo(std::io::Error::new(
            std::io::ErrorKind::ConnectionAborted,
            "the server connection ended during pgwarden's statement",
        ))
    };
    if client {
        return rx.await.map_err(|_| gone());
    }
    match crate::proxy::timer::timeout(LOOKUP_TIMEOUT, rx).await {
        Ok(r) => r.map_err(|_| gone()),
        Err(_) => Err(SessionError::ServerIo(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "no answer to pgwarden's own statement",
        ))),
    }
}
