//! One client connection: startup negotiation, upstream connect, then raw forwarding in both
//! directions with the few observations the upper layers need.
//!
//! # Shape
//! The session task drives two futures with `select!`: client→server and server→client. Each
//! reads into its own `BytesMut`, walks the frame headers of what it got, decodes only the
//! message types it must (client `Q`/`P`/`C`; server `Z`/`S`/`K`/`R`), and writes the complete
//! frames as one slice with one write. A frame that is not decoded is streamed through as it
//! arrives, so a 100 MB DataRow never sits whole in memory. Both futures share a small
//! [`State`] behind a `std::sync::Mutex`, locked once per read batch and never across an await.
//!
//! # Rewriting (built) and injected statements (design only)
//! (a) Rewriting: the client-side scan stops at every `Q`/`P` with the whole frame in the
//! buffer. A [`Verdict::Replace`] makes the scan return "forward `buf[..ready]`, then this
//! re-encoded frame, then skip the original frame", and the loop scans on. A replaced `Parse`
//! declares no parameter types and its name is remembered in `ClientSide::stripped` (the
//! unnamed statement until the next unnamed `Parse`; `Close` and a new non-replaced `Parse`
//! clear it). While that set is non-empty, `Bind` frames are decoded and a `Bind` of a
//! stripped statement is re-encoded with zero parameters. The hot path is unchanged when
//! nothing was replaced.
//!
//! (b) Injecting (not built: it needs the next issue's async/two-phase hook API). The point
//! is where the client→server side holds a complete `Q`/`P` that needs live facts. If
//! `State::pending == 0` (every earlier client request answered: `pending` already counts
//! Query/Sync/FunctionCall and ReadyForQuery decrements it), the status is not `E` and
//! `in_pipeline` is false, that side, which owns the server writer, first writes its own
//! Parse/Bind/Execute/Sync (values as bind parameters) and pushes an `Expect` entry (a oneshot
//! sender for the rows, "until ReadyForQuery") onto a `VecDeque` in `State`. The server→client
//! scan, seeing a non-empty queue, routes RowDescription/DataRow/CommandComplete/ErrorResponse
//! into the entry instead of the client (forwarding NoticeResponse/ParameterStatus/
//! NotificationResponse, which may arrive at any time), completes the oneshot at the
//! injection's ReadyForQuery and pops it without touching `pending` or `tx_status`. The
//! client→server side awaits the oneshot (bounded by a timeout that closes the session on
//! expiry, since the stream position is then unknown), decides, and forwards the held frame;
//! client bytes arriving meanwhile simply stay in its buffer. Otherwise (pipeline, status `E`)
//! it decides without live facts.
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{oneshot, watch, Notify, OwnedSemaphorePermit};
use tokio::time::{sleep_until, Instant};
use tracing::{debug, info, warn};

use super::guard::{Guard, Snapshot};
use super::hook::{ProtocolPath, SessionView, Verdict};
use super::stream::{split, Conn, ReadHalf, WriteHalf};
use super::{upstream, Shared};
use crate::audit::record::StatementRecord;
use crate::audit::AuditSession;
use crate::enforce::lookup::{self, LiveFacts, LookupError, ReplyReader, Step};
use crate::protocol::errors::{self, PgError};
use crate::protocol::frame::{check_header, Origin};
use crate::protocol::startup::{check_startup, parse_startup, StartupMessage, StartupRequest};
use crate::protocol::TxStatus;
use crate::protocol::{auth, backend, frontend, negotiate, ProtocolError};
use crate::sql::encoding::{server_text, Family};
use crate::sql::server_lex::{self, LexSettings};

mod audit;
mod execute;
mod execute_batch;
mod execute_extended;
mod fresh;
mod rebind;
mod rewrite;
use audit::{
    audit_answer, audit_held_bind, audit_query, audit_request, start_audit, write_query_records,
    AuditEntry, AuditTemplate,
};

/// Initial capacity of each direction's read buffer. Small, because most sessions sit idle
/// and only touched pages count; a buffer that a read fills is doubled (up to
/// [`MAX_READ_CHUNK`]) so bulk transfers still move in large reads.
const INITIAL_BUF: usize = 2 * 1024;
/// Largest capacity the buffer grows to for streaming; a single frame that must be decoded
/// whole (a large Query) may need more, and gets exactly that.
const MAX_READ_CHUNK: usize = 128 * 1024;
/// How long pgwarden tries to deliver its own final message to a client.
const FAREWELL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// State both directions see. Locked once per read batch.
struct State {
    /// From the last ReadyForQuery.
    tx_status: TxStatus,
    /// Client requests (Query, Sync, FunctionCall) not yet answered by a ReadyForQuery.
    pending: u32,
    /// Set when the session is ending: nothing more may be forwarded to the server.
    closing: bool,
    /// The server sent AuthenticationOk: until then the client may send only
    /// authentication responses (`p`), which are never held whole.
    auth_ok: bool,
    /// ParameterStatus values the hook sees.
    application_name: String,
    server_version: String,
    client_encoding: String,
    /// `Family::from_name(client_encoding)`, kept with it: every Query is read under it.
    client_family: Option<Family>,
    standard_conforming_strings: bool,
    /// From BackendKeyData; kept for logs (the client gets the message unchanged).
    backend_pid: i32,
    /// A catalog lookup pgwarden injected and whose replies the server→client side swallows.
    injecting: Option<Injection>,
    /// Messages pgwarden owes the client (policy warnings as NoticeResponse); written by the
    /// server→client side at the next frame boundary, before the statement's own answer.
    outbox: BytesMut,
    /// Counts ReadyForQuery `I`: the enforcer's per-transaction state is reset when it moves.
    idle_epoch: u64,
    /// Requests whose answers the audit log follows, oldest first (one per Query, Sync or
    /// FunctionCall sent while `audit_watch` is on).
    audit_queue: std::collections::VecDeque<AuditEntry>,
    /// An audited statement's transaction has not ended yet: follow every request's answers.
    audit_watch: bool,
    /// A step of the executor in flight: its replies go there, not to the client.
    executing: Option<execute::ExecStep>,
    /// The executor's answer for the client, replayed by the server→client side.
    replay: Option<BytesMut>,
    /// From BackendKeyData: a cancel during a backoff must carry it.
    backend_key: Vec<u8>,
}

/// An injected lookup in flight (DESIGN.md decision 7).
struct Injection {
    reader: ReplyReader,
    done: oneshot::Sender<Result<LiveFacts, LookupError>>,
}

/// How a direction ended without an error.
#[derive(Debug, PartialEq, Eq)]
enum End {
    /// The client closed its socket or sent Terminate.
    ClientGone,
    /// The server closed its socket.
    ServerGone,
    /// Shutdown reached an idle point: tell the client 57P01.
    ShutdownIdle,
    /// Shutdown grace ran out while the session was busy.
    GraceExpired,
    /// Authentication did not finish within startup_timeout.
    StartupTimeout,
    /// The other direction decided to close.
    Closing,
}

/// Why a direction failed.
#[derive(Debug, thiserror::Error)]
enum SessionError {
    #[error("client connection: {0}")]
    ClientIo(std::io::Error),
    #[error("server connection: {0}")]
    ServerIo(std::io::Error),
    #[error("client: {0}")]
    ClientProtocol(ProtocolError),
    #[error("server: {0}")]
    ServerProtocol(ProtocolError),
    /// A message that must be held whole does not fit in `max_held_bytes`.
    #[error("max_held_bytes reached by a {0}-byte message")]
    HeldBytes(usize),
    /// The audit record of a prepared DDL statement could not be written at its Bind.
    #[error("audit log: {0}")]
    Audit(String),
}

/// Everything the session knows that does not change after startup.
struct Ctx {
    shared: Arc<Shared>,
    id: u64,
    user: String,
    database: String,
    /// True when the server leg is TLS: SCRAM-SHA-256-PLUS must not be offered to the client.
    strip_plus: bool,
    /// Woken when every client request has been answered (`pending` reached 0): an injected
    /// lookup waits for that point.
    answered: Notify,
    /// Woken when the executor left an answer in `State::replay`.
    replay_ready: Notify,
    /// The audit log's id of this session.
    audit_id: String,
    /// For the audit log's session records.
    peer: SocketAddr,
    client_tls: bool,
    /// This session in the admin listener's activity view.
    activity: crate::admin::activity::Slot,
}

/// Runs one client connection to its end. Never panics on client or server bytes.
pub(crate) async fn run(
    shared: Arc<Shared>,
    client_conn: Conn,
    peer: SocketAddr,
    permit: Option<OwnedSemaphorePermit>,
    mut shutdown: watch::Receiver<bool>,
    id: u64,
) {
    let startup_deadline = Instant::now() + shared.live.now().config.server.startup_timeout;
    let mut slot = Some(client_conn);
    let mut buf = BytesMut::with_capacity(512);

    let negotiated = tokio::time::timeout_at(
        startup_deadline,
        negotiate_client(&shared, &mut slot, &mut buf),
    )
    .await;
    // The slot is empty only if a TLS handshake failed, and then there is no one to talk to.
    let Some(mut client) = slot else {
        return;
    };
    let startup = match negotiated {
        Err(_) => {
            debug!(session = id, %peer, "client did not finish its startup packet in time");
            crate::metrics::session_refused("startup_timeout");
            return;
        }
        Ok(Err(NegotiateEnd::Quiet)) => return,
        Ok(Err(NegotiateEnd::Error(e))) => {
            warn!(session = id, %peer, "closing connection: {}", e.message);
            crate::metrics::session_refused("protocol_error");
            farewell(&mut client, &e).await;
            return;
        }
        Ok(Err(NegotiateEnd::Cancel(raw))) => {
            // A session backing off between attempts takes it itself (the server would drop
            // it, or deliver it late into pgwarden's next statement).
            if shared.cancels.cancel(&raw) {
                return;
            }
            // Cancels are honoured even when the proxy is full, as PostgreSQL does.
            if let Err(e) = upstream::send_cancel(&shared, &raw).await {
                warn!(session = id, %peer, "could not forward cancel request: {e}");
            }
            return;
        }
        Ok(Ok(m)) => m,
    };
    let mut startup = startup;
    let Some(_permit) = permit else {
        let max = shared.config.server.max_connections;
        warn!(session = id, %peer, "refusing connection: max_connections ({max}) reached");
        crate::metrics::session_refused("max_connections");
        farewell(&mut client, &errors::too_many_connections(max)).await;
        return;
    };
    if *shutdown.borrow() {
        crate::metrics::session_refused("shutting_down");
        farewell(&mut client, &errors::shutting_down()).await;
        return;
    }
    if startup.needs_negotiation() {
        let mut out = BytesMut::new();
        negotiate::encode_negotiate_protocol_version(&startup.protocol_options, &mut out);
        if client.write_all(&out).await.is_err() {
            return;
        }
    }

    let requested = startup.database().to_owned();
    let Some(route) = shared.live.now().routes.resolve(&requested) else {
        let name = requested;
        info!(session = id, %peer, "refusing connection: no [databases] entry for {name:?}");
        crate::metrics::session_refused("unknown_database");
        farewell(&mut client, &errors::unknown_database(&name)).await;
        return;
    };
    let upstream_name = &route.upstream.name;
    let connected = tokio::time::timeout_at(
        startup_deadline,
        upstream::connect(&shared, &route.upstream),
    )
    .await;
    let mut server = match connected {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            warn!(session = id, %peer, "cannot reach upstream {upstream_name}: {e}");
            crate::metrics::session_refused("upstream_unreachable");
            farewell(
                &mut client,
                &errors::upstream_unreachable(upstream_name, &e.to_string()),
            )
            .await;
            return;
        }
        Err(_) => {
            warn!(session = id, %peer, "cannot reach upstream {upstream_name}: startup_timeout");
            crate::metrics::session_refused("upstream_unreachable");
            farewell(
                &mut client,
                &errors::upstream_unreachable(upstream_name, "startup_timeout expired"),
            )
            .await;
            return;
        }
    };
    let mut packet = BytesMut::new();
    // Policies and the activity view keep the name the client asked for.
    let client_database = requested;
    super::route::apply(&route, &mut startup);
    startup.encode_v30(&mut packet);
    if let Err(e) = server.write_all(&packet).await {
        farewell(
            &mut client,
            &errors::upstream_lost(upstream_name, &e.to_string()),
        )
        .await;
        return;
    }

    let user = startup.param("user").unwrap_or_default().to_owned();
    let database = client_database;
    let state = Mutex::new(State {
        tx_status: TxStatus::Idle,
        pending: 0,
        closing: false,
        auth_ok: false,
        application_name: startup.setting("application_name").unwrap_or_default(),
        server_version: String::new(),
        client_encoding: String::new(),
        client_family: Family::from_name(""),
        standard_conforming_strings: true,
        backend_pid: 0,
        injecting: None,
        outbox: BytesMut::new(),
        idle_epoch: 0,
        audit_queue: std::collections::VecDeque::new(),
        audit_watch: false,
        executing: None,
        replay: None,
        backend_key: Vec::new(),
    });
    let app = lock(&state).application_name.clone();
    let client_label = super::client_label(peer);
    let activity = (shared.activity).register(id, &user, &database, &client_label, &app);
    let ctx = Ctx {
        activity,
        shared: shared.clone(),
        id,
        user,
        database,
        strip_plus: server.is_tls(),
        answered: Notify::new(),
        replay_ready: Notify::new(),
        audit_id: shared.audit.session_id(id),
        peer,
        client_tls: client.is_tls(),
    };
    debug!(session = id, %peer, user = %ctx.user, database = %ctx.database,
           client_tls = client.is_tls(), server_tls = server.is_tls(), "session started");
    drop(startup);

    // Whatever the client sent after its startup packet (pipelining clients do) stays in `buf`.
    let mut cbuf = buf;
    let mut sbuf = BytesMut::with_capacity(INITIAL_BUF);
    let mut audit: Option<AuditSession> = None;
    let outcome = {
        let (mut cr, mut cw) = split(&mut client);
        let (mut sr, mut sw) = split(&mut server);
        let mut client_side = ClientSide {
            guard: shared.policy.as_ref().map(|p| {
                let app = lock(&state).application_name.clone();
                Guard::new(p, id, &ctx.database, &ctx.user, &app)
            }),
            ..ClientSide::default()
        };
        let c2s = client_to_server(&ctx, &state, &mut cr, &mut sw, &mut cbuf, &mut client_side);
        let s2c = server_to_client(
            &ctx,
            &state,
            &mut sr,
            &mut cw,
            &mut sbuf,
            &mut shutdown,
            startup_deadline,
            &mut audit,
        );
        let result = tokio::select! {
            r = c2s => r,
            r = s2c => r,
        };
        if let Some(guard) = &client_side.guard {
            guard.log_summary();
        }
        result
    };
    if let Some(a) = audit.take() {
        // A request forwarded and never answered: its statements' fate is unknown to the
        // client, and the audit log says so.
        let in_flight = lock(&state).pending > 0;
        a.closed(in_flight).await;
    }
    // Both directions are dropped here; the session may write its own last words.
    let pid = lock(&state).backend_pid;
    let farewell_msg = match outcome {
        Ok(End::ClientGone) | Ok(End::ServerGone) | Ok(End::Closing) => None,
        Ok(End::ShutdownIdle) => {
            let _ = server.write_all(b"X\0\0\0\x04").await;
            Some(errors::shutting_down())
        }
        Ok(End::GraceExpired) => {
            info!(
                session = id,
                pid, "closing session still busy after shutdown_grace"
            );
            Some(errors::shutting_down())
        }
        Ok(End::StartupTimeout) => {
            debug!(session = id, %peer, "authentication did not finish within startup_timeout");
            let waiting = if lock(&state).auth_ok {
                "the server to finish its startup"
            } else {
                "authentication to complete"
            };
            Some(errors::startup_timed_out(
                upstream_name,
                shared.config.server.startup_timeout,
                waiting,
            ))
        }
        Err(SessionError::ClientIo(e)) => {
            debug!(session = id, pid, "client connection ended: {e}");
            None
        }
        Err(SessionError::ServerIo(e)) => {
            warn!(session = id, pid, "lost upstream connection: {e}");
            Some(errors::upstream_lost(upstream_name, &e.to_string()))
        }
        Err(SessionError::HeldBytes(len)) => {
            warn!(session = id, %peer, "closing connection: max_held_bytes reached ({len}-byte message)");
            Some(errors::held_bytes_exhausted(len, shared.held.cap()))
        }
        Err(SessionError::ClientProtocol(e)) => {
            warn!(session = id, %peer, "closing connection: client protocol error: {e}");
            Some(errors::from_protocol(&e))
        }
        Err(SessionError::Audit(e)) => {
            warn!(
                session = id,
                pid, "closing session: DDL refused, audit log unavailable: {e}"
            );
            Some(errors::audit_unavailable(&e))
        }
        Err(SessionError::ServerProtocol(e)) => {
            warn!(
                session = id,
                pid, "closing connection: server protocol error: {e}"
            );
            Some(errors::protocol_violation(&format!(
                "upstream server sent invalid data: {e}"
            )))
        }
    };
    if let Some(msg) = farewell_msg {
        farewell(&mut client, &msg).await;
    }
    debug!(session = id, pid, "session ended");
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    // A poisoned lock only means another direction panicked mid-update; the fields are plain
    // values, so continuing is safe.
    state.lock().unwrap_or_else(|p| p.into_inner())
}

/// Sends pgwarden's final error to the client and closes the stream, bounded in time.
async fn farewell(client: &mut Conn, msg: &PgError) {
    let bytes = msg.to_bytes();
    let _ = tokio::time::timeout(FAREWELL_TIMEOUT, async {
        client.write_all(&bytes).await?;
        client.flush().await?;
        client.shutdown().await
    })
    .await;
}

/// How negotiation ended when it did not produce a StartupMessage.
enum NegotiateEnd {
    /// Client went away; nothing to say.
    Quiet,
    /// Tell the client this and close.
    Error(PgError),
    /// A CancelRequest to deliver.
    Cancel(Vec<u8>),
}

/// Reads first packets until a StartupMessage arrives, answering SSLRequest/GSSENCRequest.
async fn negotiate_client(
    shared: &Shared,
    slot: &mut Option<Conn>,
    buf: &mut BytesMut,
) -> Result<StartupMessage, NegotiateEnd> {
    loop {
        let Some(client) = slot.as_mut() else {
            return Err(NegotiateEnd::Quiet);
        };
        let len = loop {
            match check_startup(buf) {
                Ok(Some(len)) => break len,
                Ok(None) => {}
                Err(e) => return Err(NegotiateEnd::Error(errors::from_protocol(&e))),
            }
            match client.read_buf(buf).await {
                Ok(0) | Err(_) => return Err(NegotiateEnd::Quiet),
                Ok(_) => {}
            }
        };
        let packet = buf.split_to(len);
        let req =
            parse_startup(&packet).map_err(|e| NegotiateEnd::Error(errors::from_protocol(&e)))?;
        match req {
            StartupRequest::SslRequest => {
                if client.is_tls() {
                    return Err(NegotiateEnd::Error(errors::protocol_violation(
                        "SSLRequest on an encrypted connection",
                    )));
                }
                // No TLS on the unix socket, as PostgreSQL: the socket file's permissions guard it.
                let tcp_client = matches!(client, Conn::Plain(_));
                let Some(acceptor) = shared.live.now().acceptor.clone().filter(|_| tcp_client)
                else {
                    write_byte(client, b'N').await?;
                    continue;
                };
                // Bytes that came with the SSLRequest were sent before encryption started:
                // accepting them would let a man in the middle inject commands (CVE-2021-23214).
                if !buf.is_empty() {
                    return Err(NegotiateEnd::Error(errors::protocol_violation(
                        "received unencrypted data after SSL request",
                    )));
                }
                write_byte(client, b'S').await?;
                let Some(Conn::Plain(tcp)) = slot.take() else {
                    return Err(NegotiateEnd::Quiet);
                };
                match acceptor.accept(tcp).await {
                    Ok(tls) => *slot = Some(Conn::TlsServer(Box::new(tls))),
                    Err(e) => {
                        debug!("client TLS handshake failed: {e}");
                        return Err(NegotiateEnd::Quiet);
                    }
                }
            }
            // pgwarden cannot relay GSSAPI encryption (the Debian server would answer 'G').
            StartupRequest::GssEncRequest => write_byte(client, b'N').await?,
            StartupRequest::Cancel { raw, .. } => return Err(NegotiateEnd::Cancel(raw)),
            // Bytes after the startup packet (pipelining clients) stay in `buf` and are
            // forwarded after it, as the server would read them.
            StartupRequest::Startup(m) => return Ok(m),
        }
    }
}

async fn write_byte(client: &mut Conn, b: u8) -> Result<(), NegotiateEnd> {
    client
        .write_all(&[b])
        .await
        .map_err(|_| NegotiateEnd::Quiet)?;
    client.flush().await.map_err(|_| NegotiateEnd::Quiet)
}

/// Client-side bookkeeping that only the client→server direction touches.
#[derive(Default)]
struct ClientSide {
    /// Bytes of a pass-through frame still to be forwarded as they arrive.
    skip: usize,
    /// Extended-protocol messages sent since the last Sync.
    in_pipeline: bool,
    /// An Execute was sent since the last Sync: the server runs what follows in the implicit
    /// transaction block of a pipeline (no CONCURRENTLY, no VACUUM there).
    executed: bool,
    /// Named prepared statements: name → SQL text (DESIGN.md decision 8).
    prepared: std::collections::HashMap<Vec<u8>, String>,
    /// Statements whose Parse text was replaced: their Binds are sent without parameters.
    /// The unnamed statement ("") is in here until the next unnamed Parse.
    stripped: std::collections::HashSet<Vec<u8>>,
    /// The enforcer (None when the policy is off).
    guard: Option<Guard>,
    /// The decision on the Query/Parse at the front of the buffer, made by the enforcer while
    /// the scan was stopped there: `Some(None)` forward, `Some(Some(text))` replace.
    decided: Option<Option<String>>,
    /// The audit record of the held statement, written; it joins the audit queue with the
    /// request that carries the statement.
    audit_record: Vec<StatementRecord>,
    /// The audited statement of the extended-protocol request in progress (written at its
    /// Bind), waiting for the Sync that ends the request.
    request_record: Option<StatementRecord>,
    /// Prepared DDL statements by name ("" = unnamed): audited again at every Bind.
    ddl_statements: std::collections::HashMap<Vec<u8>, AuditTemplate>,
    /// The Bind at the front of the buffer has had its audit turn.
    bind_audited: bool,
    /// Statements parsed since the last Sync: their Parse-time decision is current.
    parsed_this_request: std::collections::HashSet<Vec<u8>>,
    /// The Bind at the front of the buffer, re-decided and refused: send this instead.
    bind_replacement: Option<BytesMut>,
    /// Prepared statements that may be migration bookkeeping (`alembic_version`, ...): their
    /// Bind values tell the audit log the revision.
    bookkeeping: std::collections::HashMap<Vec<u8>, String>,
    /// Bookkeeping statements bound in the request in progress, with their values.
    request_dml: Vec<(String, Vec<Option<String>>)>,
    /// Audited statements so far (the audit log's `seq`).
    audit_seq: u64,
    /// This session's share of `max_held_bytes` while it holds a large message.
    held: Option<super::budget::Reservation>,
    /// The held Query runs under the executor (set by the enforcer's decision).
    exec: Option<execute::Pending>,
    /// The held Query runs as a multi-step rewrite (`rewrite.rs`).
    multi: Option<rewrite::MultiPending>,
    /// Completion steps this transaction's COMMIT owes.
    completion: rewrite::Completion,
    /// What the extended-protocol request starting at the held Parse/Bind is.
    extended: Option<execute_extended::Lookahead>,
    /// An extended-protocol request held to its Sync, to run under the executor.
    holding: Option<execute_extended::Held>,
    /// The held multi-statement Query runs split, under the executor (execute_batch.rs).
    batch: Option<execute_batch::Batch>,
}

/// What one scan of the client buffer found.
struct ClientScan {
    /// Bytes at the front of the buffer that may be forwarded now.
    ready: usize,
    /// Bytes the buffer must hold before the next frame can be decoded (0 = any amount).
    need: usize,
    /// A Terminate was among the forwarded frames.
    terminate: bool,
    /// A re-encoded frame to send after `ready` bytes, replacing the next `.1` original bytes.
    replace: Option<(BytesMut, usize)>,
    /// The frame after `ready` is a Query/Parse the enforcer must decide on first.
    attention: bool,
    /// The frame after `ready` is a Bind of a prepared DDL statement: audit it first.
    attention_bind: bool,
    /// The Query after `ready` (this frame, replacing the next `.2` original bytes) runs
    /// under the executor instead of being forwarded.
    execute: Option<(execute::Pending, BytesMut, usize)>,
    /// The Query after `ready` runs as a multi-step rewrite (replacing `.1` original bytes).
    multi: Option<(rewrite::MultiPending, usize)>,
    /// The Query after `ready` is the COMMIT that owes completion steps (`.1` original bytes).
    commit: Option<(BytesMut, usize)>,
    /// Earlier requests must be answered before the next frame (a COMMIT owing completion
    /// steps): wait, then scan again.
    settle: bool,
    /// The held extended-protocol request is complete (its Sync is in `ready`): run it.
    run_held: bool,
    /// The Query after `ready` (replacing the next `.1` original bytes) runs split.
    batch: Option<(execute_batch::Batch, usize)>,
    /// Frames forwarded as read (for the metrics).
    messages: u64,
}

async fn client_to_server(
    ctx: &Ctx,
    state: &Mutex<State>,
    cr: &mut ReadHalf<'_>,
    sw: &mut WriteHalf<'_>,
    buf: &mut BytesMut,
    side: &mut ClientSide,
) -> Result<End, SessionError> {
    loop {
        if !buf.is_empty() {
            let carrying = side.decided.is_some();
            let scan = {
                let mut st = lock(state);
                if st.closing {
                    return Ok(End::Closing);
                }
                scan_client(ctx, &mut st, side, buf).map_err(SessionError::ClientProtocol)?
            };
            crate::metrics::client_to_server(scan.ready, scan.messages);
            if carrying {
                ctx.activity.ddl_forwarded();
            }
            if scan.ready > 0 {
                match side.holding.as_mut() {
                    Some(held) => held.frames.extend_from_slice(&buf[..scan.ready]),
                    None => sw
                        .write_all(&buf[..scan.ready])
                        .await
                        .map_err(SessionError::ServerIo)?,
                }
                buf.advance(scan.ready);
            }
            if let Some(held) = side.holding.take_if(|_| scan.run_held) {
                sw.flush().await.map_err(SessionError::ServerIo)?;
                execute_extended::run(ctx, state, sw, held).await?;
                wait_answered(ctx, state).await;
                continue;
            }
            if let Some((batch, original)) = scan.batch {
                sw.flush().await.map_err(SessionError::ServerIo)?;
                execute_batch::run(ctx, state, sw, batch).await?;
                buf.advance(original);
                wait_answered(ctx, state).await;
                continue;
            }
            if let Some((pending, frame, original)) = scan.execute {
                sw.flush().await.map_err(SessionError::ServerIo)?;
                execute::run(
                    ctx,
                    state,
                    sw,
                    pending,
                    execute::ClientStatement::query(frame),
                )
                .await?;
                buf.advance(original);
                // The answer reaches the client before anything else is forwarded.
                wait_answered(ctx, state).await;
                continue;
            }
            if scan.settle {
                sw.flush().await.map_err(SessionError::ServerIo)?;
                wait_answered(ctx, state).await;
                continue;
            }
            if let Some((m, original)) = scan.multi {
                sw.flush().await.map_err(SessionError::ServerIo)?;
                rewrite::run(ctx, state, sw, m, &mut side.completion).await?;
                buf.advance(original);
                wait_answered(ctx, state).await;
                continue;
            }
            if let Some((frame, original)) = scan.commit {
                sw.flush().await.map_err(SessionError::ServerIo)?;
                rewrite::commit(ctx, state, sw, &mut side.completion, frame).await?;
                buf.advance(original);
                wait_answered(ctx, state).await;
                continue;
            }
            let replaced = scan.replace.is_some();
            if let Some((frame, original)) = scan.replace {
                match side.holding.as_mut() {
                    Some(held) => held.frames.extend_from_slice(&frame),
                    None => sw.write_all(&frame).await.map_err(SessionError::ServerIo)?,
                }
                buf.advance(original);
            }
            sw.flush().await.map_err(SessionError::ServerIo)?;
            if scan.terminate {
                return Ok(End::ClientGone);
            }
            if scan.attention_bind || scan.attention {
                // A request that may run under the executor is read to its Sync first.
                match execute_extended::prepare(ctx, state, side, cr, sw, buf).await? {
                    execute_extended::Prepared::Decide => {}
                    execute_extended::Prepared::Answered => continue,
                    execute_extended::Prepared::ClientGone => return Ok(End::ClientGone),
                }
            }
            if scan.attention_bind {
                rebind::redecide_bind(ctx, state, side, sw, buf).await?;
                audit_held_bind(ctx, state, side, buf).await?;
                continue;
            }
            if scan.attention {
                // The held Query/Parse is now at the front of the buffer, everything before it
                // is on its way to the server: decide, then scan again to send it.
                decide_held(ctx, state, side, sw, buf).await?;
                continue;
            }
            if replaced && !buf.is_empty() {
                // Frames after a replaced one are already here; scan them before reading.
                continue;
            }
            // A client buffer holds only requests, so empty means nothing is in flight.
            shrink_if_idle(buf);
            reserve_held(ctx, side, buf, scan.need)?;
            prepare_read(buf, scan.need);
        } else {
            prepare_read(buf, 0);
        }
        match cr.read_buf(buf).await {
            Ok(0) => return Ok(End::ClientGone),
            Ok(_) => {}
            Err(e) => return Err(SessionError::ClientIo(e)),
        }
    }
}

/// Accounts a message that must be held whole against the shared `max_held_bytes` before the
/// buffer grows for it; gives the reservation back once the buffer is small again.
fn reserve_held(
    ctx: &Ctx,
    side: &mut ClientSide,
    buf: &BytesMut,
    need: usize,
) -> Result<(), SessionError> {
    if need > MAX_READ_CHUNK && side.held.as_ref().is_none_or(|r| r.bytes() < need) {
        // The new reservation covers the whole message; the old one goes when it is replaced.
        let r = ctx
            .shared
            .held
            .reserve(need)
            .ok_or(SessionError::HeldBytes(need))?;
        side.held = Some(r);
    } else if need <= MAX_READ_CHUNK && buf.capacity() <= MAX_READ_CHUNK {
        side.held = None;
    }
    Ok(())
}

/// Makes room for the next read: at least `need` bytes in total; doubles the buffer when the
/// last read filled it (bulk traffic), up to [`MAX_READ_CHUNK`].
fn prepare_read(buf: &mut BytesMut, need: usize) {
    let spare = buf.capacity() - buf.len();
    if need > buf.len() && need - buf.len() > spare {
        buf.reserve(need - buf.len());
    } else if spare == 0 || (buf.is_empty() && spare < INITIAL_BUF) {
        let grow = buf.capacity().clamp(INITIAL_BUF, MAX_READ_CHUNK);
        buf.reserve(grow);
    }
}

/// Gives memory back at an idle point: a buffer that grew for a large message or a bulk
/// transfer is replaced by a small one once it is empty. Costs one allocation per idle point,
/// and only after growth.
fn shrink_if_idle(buf: &mut BytesMut) {
    if buf.is_empty() && buf.capacity() > 8 * INITIAL_BUF {
        *buf = BytesMut::with_capacity(INITIAL_BUF);
    }
}

/// Walks the complete client frames at the front of `buf`, observing the ones that matter.
fn scan_client(
    ctx: &Ctx,
    st: &mut State,
    side: &mut ClientSide,
    buf: &[u8],
) -> Result<ClientScan, ProtocolError> {
    let limits = ctx.shared.limits;
    let mut pos = 0;
    let mut out = ClientScan {
        ready: 0,
        need: 0,
        terminate: false,
        replace: None,
        attention: false,
        attention_bind: false,
        execute: None,
        multi: None,
        commit: None,
        settle: false,
        run_held: false,
        batch: None,
        messages: 0,
    };
    if side.skip > 0 {
        let take = side.skip.min(buf.len());
        side.skip -= take;
        pos = take;
        if side.skip > 0 {
            out.ready = pos;
            return Ok(out);
        }
    }
    while let Some(h) = check_header(&buf[pos..], &limits, Origin::Client)? {
        if !st.auth_ok && !matches!(h.tag, b'p' | b'X') {
            // PostgreSQL reads nothing but authentication responses before AuthenticationOk;
            // holding a Query here would let an unauthenticated client fill pgwarden's memory.
            return Err(ProtocolError::BeforeAuthentication { tag: h.tag as char });
        }
        // A Bind is decoded only while some statement has replaced text: the hot path of
        // pgbench -M prepared / asyncpg re-executions stays header-only.
        // A FunctionCall is held whole only when it is going to be refused.
        let refuse_call = h.tag == b'F'
            && side
                .guard
                .as_ref()
                .is_some_and(Guard::refuses_function_calls);
        let decode = matches!(h.tag, b'Q' | b'P' | b'C')
            || (h.tag == b'B'
                && (!side.stripped.is_empty()
                    || !side.ddl_statements.is_empty()
                    || !side.bookkeeping.is_empty()))
            || refuse_call;
        let avail = buf.len() - pos;
        if decode && avail < h.total {
            out.need = h.total;
            break;
        }
        let body = &buf[pos + 5..pos + h.total.min(avail)];
        match h.tag {
            b'Q' => {
                let q = frontend::decode_query(body)?;
                let owes = !side.completion.is_empty() && rewrite::is_commit(q.sql);
                if owes && st.pending > 0 {
                    out.settle = true;
                    break;
                }
                if owes && st.idle_epoch != side.completion.epoch {
                    // The transaction that queued them ended another way (an extended-protocol
                    // ROLLBACK): this COMMIT is another transaction's.
                    side.completion
                        .discard(ctx, "their transaction ended before this COMMIT");
                }
                let commit = owes && !side.completion.is_empty();
                let verdict = match inspect(ctx, st, side, q.sql, ProtocolPath::Simple) {
                    Inspected::Attention => {
                        out.attention = true;
                        break;
                    }
                    Inspected::Verdict(v) => v,
                };
                let verdict = match side.completion.follow_query(ctx, q.sql, &base_lex()) {
                    Some(refusal) => {
                        side.exec = None;
                        side.multi = None;
                        Some(refusal)
                    }
                    None => verdict,
                };
                st.pending += 1;
                // A multi-step rewrite answers as the client's one statement.
                let sent = if side.multi.is_some() {
                    None
                } else {
                    verdict.as_deref()
                };
                audit_query(ctx, st, side, q.sql, sent);
                if commit && verdict.is_none() && side.multi.is_none() {
                    out.commit = Some((BytesMut::from(&buf[pos..pos + h.total]), h.total));
                    break;
                }
                if let Some(m) = side.multi.take() {
                    out.multi = Some((m, h.total));
                    break;
                }
                if let Some(exec) = side.exec.take() {
                    let frame = match &verdict {
                        None => BytesMut::from(&buf[pos..pos + h.total]),
                        Some(text) => {
                            let mut frame = BytesMut::new();
                            frontend::encode_query(text, &mut frame)?;
                            frame
                        }
                    };
                    out.execute = Some((exec, frame, h.total));
                    break;
                }
                if let Some(batch) = side.batch.take().filter(|_| verdict.is_none()) {
                    out.batch = Some((batch, h.total));
                    break;
                }
                match verdict {
                    None => forget_deallocated(side, q.sql),
                    Some(text) => {
                        forget_deallocated(side, text.as_bytes());
                        let mut frame = BytesMut::new();
                        frontend::encode_query(&text, &mut frame)?;
                        out.replace = Some((frame, h.total));
                        break;
                    }
                }
            }
            b'P' => {
                let p = frontend::decode_parse(body)?;
                let name = String::from_utf8_lossy(p.name);
                let path = ProtocolPath::Extended { statement: &name };
                let was_decided = side.decided.is_some();
                let verdict = match inspect(ctx, st, side, p.sql, path) {
                    Inspected::Attention => {
                        out.attention = true;
                        break;
                    }
                    Inspected::Verdict(v) => v,
                };
                let verdict = if !side.completion.is_empty() && rewrite::extended_tx_control(p.sql)
                {
                    Some(rewrite::extended_commit_refusal())
                } else {
                    verdict
                };
                // The decision planned to run this request under the executor: hold it.
                execute_extended::hold(side, pos);
                side.in_pipeline = true;
                side.parsed_this_request.insert(p.name.to_vec());
                if !side.ddl_statements.is_empty() && verdict.is_none() && !was_decided {
                    // A new text under this name that needed no decision is not DDL.
                    side.ddl_statements.remove(p.name);
                }
                if ctx.shared.audit.is_enabled() {
                    if crate::audit::migration::might_be_bookkeeping_bytes(p.sql) {
                        let sql = String::from_utf8_lossy(p.sql).into_owned();
                        side.bookkeeping.insert(p.name.to_vec(), sql);
                    } else if !side.bookkeeping.is_empty() {
                        side.bookkeeping.remove(p.name);
                    }
                }
                if !p.name.is_empty() {
                    let sql = String::from_utf8_lossy(p.sql).into_owned();
                    side.prepared.insert(p.name.to_vec(), sql);
                }
                match verdict {
                    None => {
                        forget_deallocated(side, p.sql);
                        if !side.stripped.is_empty() {
                            side.stripped.remove(p.name);
                        }
                    }
                    Some(text) => {
                        forget_deallocated(side, text.as_bytes());
                        let mut frame = BytesMut::new();
                        frontend::encode_parse(p.name, &text, &mut frame)?;
                        side.stripped.insert(p.name.to_vec());
                        out.replace = Some((frame, h.total));
                        break;
                    }
                }
            }
            b'C' => {
                if let frontend::Close::Statement(name) = frontend::decode_close(body)? {
                    side.prepared.remove(name);
                    side.stripped.remove(name);
                    side.ddl_statements.remove(name);
                    side.bookkeeping.remove(name);
                }
                side.in_pipeline = true;
            }
            b'B' if decode => {
                let b = frontend::decode_bind(body)?;
                if side.ddl_statements.contains_key(b.statement)
                    && !std::mem::take(&mut side.bind_audited)
                {
                    out.attention_bind = true;
                    break;
                }
                execute_extended::hold(side, pos);
                if let Some(frame) = side.bind_replacement.take() {
                    side.in_pipeline = true;
                    out.replace = Some((frame, h.total));
                    break;
                }
                if let Some(sql) = side.bookkeeping.get(b.statement) {
                    let params = frontend::bind_text_params(body)?;
                    side.request_dml.push((sql.clone(), params));
                }
                side.in_pipeline = true;
                if b.params > 0 && side.stripped.contains(b.statement) {
                    let mut frame = BytesMut::new();
                    frontend::encode_bind_without_params(body, &mut frame)?;
                    out.replace = Some((frame, h.total));
                    break;
                }
            }
            b'E' => {
                side.in_pipeline = true;
                side.executed = true;
            }
            b'B' | b'D' | b'H' => side.in_pipeline = true,
            b'S' => {
                side.in_pipeline = false;
                side.executed = false;
                side.parsed_this_request.clear();
                st.pending += 1;
                let dml = std::mem::take(&mut side.request_dml);
                let seq = side.request_record.as_ref().map_or(0, |r| r.seq);
                audit_request(st, side.request_record.take(), dml);
                side.extended = None;
                if let Some(held) = side.holding.as_mut() {
                    // The whole request is held: the executor sends it.
                    held.pending.seq = seq;
                    out.run_held = true;
                    out.messages += 1;
                    pos += h.total;
                    break;
                }
            }
            b'F' => {
                st.pending += 1;
                audit_request(st, None, Vec::new());
                if refuse_call {
                    // pgwarden cannot see what a fastpath call does (DESIGN.md decision 10):
                    // a Query that raises takes its place, so the server answers with the
                    // ErrorResponse + ReadyForQuery a failed FunctionCall gets.
                    let mut frame = BytesMut::new();
                    frontend::encode_query(&Guard::function_call_refusal(), &mut frame)?;
                    out.replace = Some((frame, h.total));
                    break;
                }
            }
            b'X' => out.terminate = true,
            _ => {}
        }
        out.messages += 1;
        if avail < h.total {
            // Stream the rest of this pass-through frame as it arrives.
            side.skip = h.total - avail;
            pos = buf.len();
            break;
        }
        pos += h.total;
        if out.terminate {
            break;
        }
    }
    out.ready = pos;
    Ok(out)
}

/// What [`inspect`] found for one statement text.
enum Inspected {
    /// Forward (`None`) or send this text instead.
    Verdict(Option<String>),
    /// The enforcer must look at it first: stop the scan before this frame.
    Attention,
}

/// Passes one statement text through the hook with the session's current view, and tells
/// whether the enforcer must decide on it (DDL and utility statements) before it goes on.
fn inspect(
    ctx: &Ctx,
    st: &State,
    side: &mut ClientSide,
    sql: &[u8],
    path: ProtocolPath<'_>,
) -> Inspected {
    // The hook takes text: the structure the server's lexer will see (encoding.rs); non-ASCII
    // characters of a non-UTF-8 encoding are shown as U+FFFD. No allocation for UTF-8.
    let text = server_text(sql, reported_family(st));
    let decided = side.decided.take();
    if decided.is_none()
        && side.guard.is_some()
        && (server_lex::needs_attention(sql, &lex_settings(st, side), &base_lex())
            || side.guard.as_ref().is_some_and(|g| {
                g.watches_dml(
                    &text,
                    st.idle_epoch,
                    st.tx_status,
                    st.standard_conforming_strings,
                )
            }))
    {
        return Inspected::Attention;
    }
    let view = SessionView {
        session_id: ctx.id,
        user: &ctx.user,
        database: &ctx.database,
        application_name: &st.application_name,
        server_version: &st.server_version,
        client_encoding: &st.client_encoding,
        standard_conforming_strings: st.standard_conforming_strings,
        tx_status: st.tx_status,
        in_pipeline: side.in_pipeline,
    };
    let hooked = match ctx.shared.hook.inspect(&view, &text, path) {
        Verdict::Forward => None,
        Verdict::Replace(new) => Some(new),
    };
    // The enforcer's word comes first; the hook still sees every statement.
    Inspected::Verdict(match decided {
        Some(d) => d.or(hooked),
        None => hooked,
    })
}

/// The encoding the server last reported; ASCII-safe (UTF-8) until it has.
fn reported_family(st: &State) -> Family {
    st.client_family.unwrap_or(Family::AsciiSafe)
}

/// The lexer settings the server will apply to the next client text (sql/server_lex.rs):
/// the reported ones while nothing is in flight, else unknown — an earlier request or an
/// unsynced pipeline may have changed them.
fn lex_settings(st: &State, side: &ClientSide) -> LexSettings {
    if st.pending == 0 && !side.in_pipeline && st.injecting.is_none() {
        // `LexSettings::known`, with the encoding's family looked up once per change.
        LexSettings {
            encoding: st.client_family,
            standard_conforming_strings: Some(st.standard_conforming_strings),
        }
    } else {
        LexSettings::unknown()
    }
}

fn base_lex() -> crate::sql::lexer::LexOptions {
    // Built once: `AnalysisContext::default()` also builds its empty catalog maps, a tenth of
    // a plain Query's instructions when it ran per Query (BENCHMARKS.md, proxy CPU).
    static BASE: std::sync::OnceLock<crate::sql::lexer::LexOptions> = std::sync::OnceLock::new();
    *BASE.get_or_init(|| crate::sql::AnalysisContext::default().lex)
}

/// DML the enforcer watches (`Guard::watches_dml`), decided on the server's word: every
/// earlier request answered first, so a COMMIT in flight has ended the transaction.
async fn watched_dml(ctx: &Ctx, state: &Mutex<State>, side: &ClientSide, sql: &[u8]) -> bool {
    let Some(guard) = side.guard.as_ref() else {
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
async fn decide_held(
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
    if !server_lex::needs_attention(sql_bytes, &settings, &base)
        && !watched_dml(ctx, state, side, sql_bytes).await
    {
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
    let Some(guard) = side.guard.as_mut() else {
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
    let executes =
        guard.executes() && (parse_name.is_none() || execute_extended::runs(&side.extended));
    let runs_now = parse_name.is_none() || execute_extended::runs_now(&side.extended);
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
            execute_extended::not_run_reason(&side.extended, side.in_pipeline, would.is_some())
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
            ctx.id ^ u64::from(std::process::id()),
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
            simple: parse_name.is_none(),
            timeouts: live.map_or((None, None), |l| {
                (l.lock_timeout_ms, l.statement_timeout_ms)
            }),
            created: &created,
            ascii_only,
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
    if let (Some(p), Some(guard)) = (exec.as_mut(), side.guard.as_ref()) {
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
    if let Some(name) = parse_name {
        // A prepared statement runs when it is executed, maybe many times, maybe never: it is
        // re-decided (`rebind`) and its record written at each Bind (see `audit_held_bind`).
        side.ddl_statements.insert(
            name,
            AuditTemplate {
                sql,
                decided: decided.clone(),
                injected,
            },
        );
    } else if ctx.shared.audit.is_enabled() {
        // The audit log follows requests in order from here on: nothing may be in flight
        // that it has not seen.
        wait_answered(ctx, state).await;
        match write_query_records(ctx, side, &sql, &decided, injected, &snap_owned).await {
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
                // DDL must not run unaudited (on_audit_failure = "reject-ddl").
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
    side.exec = exec.filter(|_| runs_now);
    side.multi = multi;
    ctx.activity
        .ddl_decided(decided.decision.as_str(), &decided.rules);
    side.decided = Some(decided.replace);
    Ok(())
}

/// The client encoding is UTF-8 (or not yet reported: the database default, read as UTF-8).
fn utf8_encoding(enc: &str) -> bool {
    let enc = enc.to_ascii_uppercase();
    enc.is_empty() || enc == "UTF8" || enc == "UTF-8" || enc == "UNICODE"
}

/// Waits until every client request sent so far has been answered.
async fn wait_answered(ctx: &Ctx, state: &Mutex<State>) {
    loop {
        // `notify_one` stores a permit when nobody waits, so a wakeup between the check and
        // the await is not lost.
        let answered = ctx.answered.notified();
        {
            let st = lock(state);
            if st.closing || st.pending == 0 {
                return;
            }
        }
        answered.await;
    }
}

/// The body of the complete frame at the front of `buf` (the scan stopped there with the
/// whole frame buffered).
fn held_body(buf: &[u8]) -> Result<&[u8], ProtocolError> {
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
fn held_sql(buf: &[u8]) -> Result<(&[u8], Option<Vec<u8>>), ProtocolError> {
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
fn held_bind_statement(buf: &[u8]) -> Result<Vec<u8>, ProtocolError> {
    Ok(frontend::decode_bind(held_body(buf)?)?.statement.to_vec())
}

/// What the enforcer needs from the shared state, copied out so no lock is held across awaits.
struct OwnedSnapshot {
    tx_status: TxStatus,
    idle_epoch: u64,
    server_version: String,
    client_encoding: String,
    standard_conforming_strings: bool,
    pipelined: bool,
    lex_certain: bool,
    unreadable: bool,
}

impl OwnedSnapshot {
    fn view(&self) -> Snapshot<'_> {
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

fn snapshot(state: &Mutex<State>) -> OwnedSnapshot {
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

/// Longest wait for the answer to an injected lookup. Past it the position in the server's
/// stream is unknown, so the session is closed rather than guessed at.
const LOOKUP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Sends the catalog lookup once every earlier client request has been answered, and waits
/// for the server→client side to hand back its rows (DESIGN.md decision 7).
async fn inject_lookup(
    ctx: &Ctx,
    state: &Mutex<State>,
    sw: &mut WriteHalf<'_>,
    req: &lookup::LookupRequest,
) -> Result<Result<LiveFacts, String>, SessionError> {
    wait_answered(ctx, state).await;
    if lock(state).closing {
        return Ok(Err("the session is closing".into()));
    }
    let mut bytes = BytesMut::new();
    if let Err(e) = lookup::encode(req, &mut bytes) {
        return Ok(Err(e.to_string()));
    }
    let (tx, rx) = oneshot::channel();
    {
        let mut st = lock(state);
        if st.tx_status == TxStatus::Failed {
            return Ok(Err(
                "the transaction has failed: pgwarden sends nothing in it".into(),
            ));
        }
        st.injecting = Some(Injection {
            reader: ReplyReader::new(req),
            done: tx,
        });
    }
    sw.write_all(&bytes).await.map_err(SessionError::ServerIo)?;
    sw.flush().await.map_err(SessionError::ServerIo)?;
    match tokio::time::timeout(LOOKUP_TIMEOUT, rx).await {
        Ok(Ok(result)) => Ok(result.map_err(|e| e.to_string())),
        // The server→client side ended (server gone): the select! ends the session anyway.
        Ok(Err(_)) => Ok(Err("the server connection ended during the lookup".into())),
        Err(_) => Err(SessionError::ServerIo(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "no answer to pgwarden's catalog lookup",
        ))),
    }
}

/// Drops remembered statements for `DEALLOCATE name`, `DEALLOCATE ALL` and `DISCARD ALL`
/// when that is the whole text (what psycopg 3 and poolers send).
fn forget_deallocated(side: &mut ClientSide, sql: &[u8]) {
    if side.prepared.is_empty() {
        return;
    }
    match deallocate_target(sql) {
        Some(Dealloc::All) => side.prepared.clear(),
        Some(Dealloc::Name(n)) => {
            side.prepared.remove(n.as_bytes());
        }
        None => {}
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Dealloc {
    All,
    Name(String),
}

/// Recognises a lone `DEALLOCATE [PREPARE] name|ALL` or `DISCARD ALL` statement.
fn deallocate_target(sql: &[u8]) -> Option<Dealloc> {
    let text = std::str::from_utf8(sql).ok()?;
    let mut words = Tokens {
        s: text.trim_start(),
    };
    let first = words.word()?;
    if first.eq_ignore_ascii_case("discard") {
        let w = words.word()?;
        return (w.eq_ignore_ascii_case("all") && words.at_end()).then_some(Dealloc::All);
    }
    if !first.eq_ignore_ascii_case("deallocate") {
        return None;
    }
    let mut name = words.ident()?;
    if name.eq_ignore_ascii_case("prepare") && !words.at_end() {
        name = words.ident()?;
    }
    if !words.at_end() {
        return None;
    }
    if name.eq_ignore_ascii_case("all") {
        Some(Dealloc::All)
    } else {
        Some(Dealloc::Name(name))
    }
}

/// Minimal word reader for [`deallocate_target`].
struct Tokens<'a> {
    s: &'a str,
}

impl<'a> Tokens<'a> {
    fn word(&mut self) -> Option<&'a str> {
        self.s = self.s.trim_start();
        let end = self
            .s
            .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == '$'))
            .unwrap_or(self.s.len());
        if end == 0 {
            return None;
        }
        let (w, rest) = self.s.split_at(end);
        self.s = rest;
        Some(w)
    }

    /// An identifier as Postgres folds it: unquoted → lower case; `"..."` with `""` escapes.
    fn ident(&mut self) -> Option<String> {
        self.s = self.s.trim_start();
        if let Some(rest) = self.s.strip_prefix('"') {
            let mut out = String::new();
            let mut chars = rest.char_indices();
            while let Some((i, c)) = chars.next() {
                if c == '"' {
                    if rest[i + 1..].starts_with('"') {
                        out.push('"');
                        chars.next();
                    } else {
                        self.s = &rest[i + 1..];
                        return Some(out);
                    }
                } else {
                    out.push(c);
                }
            }
            None
        } else {
            self.word().map(str::to_lowercase)
        }
    }

    fn at_end(&self) -> bool {
        let rest = self.s.trim();
        rest.is_empty() || rest == ";"
    }
}

/// What one scan of the server buffer found.
struct ServerScan {
    ready: usize,
    need: usize,
    /// A rewritten frame to send after `ready` bytes, replacing `skip_original` bytes.
    replace: Option<(BytesMut, usize)>,
    /// Shutdown reached an idle point at the end of `ready`.
    idle_stop: bool,
    /// The last frame was a ReadyForQuery answering the last outstanding client request.
    idle: bool,
    /// Policy warnings to write before `ready` (taken at a frame boundary).
    notices: Option<BytesMut>,
    /// Bytes after `ready` that belong to an injected lookup: dropped, not forwarded.
    discard: usize,
    /// The frame after `ready` answers a request the audit log follows: record it first.
    audit_frame: bool,
    /// The scan stopped before a complete frame that needs its own turn: scan again before
    /// reading more.
    rescan: bool,
    /// Frames forwarded as read (for the metrics).
    messages: u64,
}

#[allow(clippy::too_many_arguments)]
async fn server_to_client(
    ctx: &Ctx,
    state: &Mutex<State>,
    sr: &mut ReadHalf<'_>,
    cw: &mut WriteHalf<'_>,
    buf: &mut BytesMut,
    shutdown: &mut watch::Receiver<bool>,
    startup_deadline: Instant,
    audit: &mut Option<AuditSession>,
) -> Result<End, SessionError> {
    let mut skip = 0usize;
    let mut authenticated = false;
    // The frame at the front of `buf` has had its audit turn: scan it normally now.
    let mut audited_front = false;
    let mut shutting_down = *shutdown.borrow();
    let grace = ctx.shared.config.server.shutdown_grace;
    // One timer for both deadlines, created once: building a Sleep per read would cost
    // scheduler-handle clones on the hot path. Before authentication it is the startup
    // deadline, after shutdown the grace deadline; otherwise it is not polled.
    let timer = sleep_until(startup_deadline);
    tokio::pin!(timer);
    if shutting_down {
        timer.as_mut().reset(Instant::now() + grace);
    }
    // Both waits live across reads: made per read, each registered and unregistered itself
    // under a lock every round trip (the shutdown watch's lock is shared by all sessions).
    let replay_ready = ctx.replay_ready.notified();
    tokio::pin!(replay_ready);
    let shutdown_changed = shutdown.changed();
    tokio::pin!(shutdown_changed);
    loop {
        if skip == 0 {
            // The executor's answer goes first, read as if the server had sent it.
            if let Some(answer) = lock(state).replay.take() {
                let rest = buf.split();
                buf.extend_from_slice(&answer);
                buf.extend_from_slice(&rest);
            }
        }
        if !buf.is_empty() {
            let scan = {
                let mut st = lock(state);
                let scan = scan_server(
                    ctx,
                    &mut st,
                    buf,
                    &mut skip,
                    &mut authenticated,
                    shutting_down,
                    std::mem::take(&mut audited_front),
                )
                .map_err(SessionError::ServerProtocol)?;
                if scan.idle_stop {
                    st.closing = true;
                }
                scan
            };
            if let Some(notices) = &scan.notices {
                cw.write_all(notices)
                    .await
                    .map_err(SessionError::ClientIo)?;
            }
            if authenticated && audit.is_none() && ctx.shared.audit.is_enabled() {
                *audit = Some(start_audit(ctx, state));
            }
            crate::metrics::server_to_client(scan.ready, scan.messages);
            if scan.ready > 0 {
                cw.write_all(&buf[..scan.ready])
                    .await
                    .map_err(SessionError::ClientIo)?;
                buf.advance(scan.ready);
            }
            let replaced = scan.replace.is_some() || scan.discard > 0 || scan.rescan;
            if let Some((frame, original)) = scan.replace {
                cw.write_all(&frame).await.map_err(SessionError::ClientIo)?;
                buf.advance(original);
            }
            buf.advance(scan.discard);
            if scan.audit_frame {
                // Everything before this answer is on its way; its audit record goes to disk
                // before the answer reaches the client.
                cw.flush().await.map_err(SessionError::ClientIo)?;
                audit_answer(state, audit, buf).await;
                audited_front = true;
                continue;
            }
            cw.flush().await.map_err(SessionError::ClientIo)?;
            if scan.idle_stop {
                return Ok(End::ShutdownIdle);
            }
            if scan.idle {
                shrink_if_idle(buf);
            }
            if replaced && !buf.is_empty() {
                // More complete frames may follow a replaced one; scan again before reading.
                continue;
            }
            prepare_read(buf, scan.need);
        } else {
            prepare_read(buf, 0);
        }
        tokio::select! {
            _ = &mut replay_ready => replay_ready.set(ctx.replay_ready.notified()),
            r = sr.read_buf(buf) => match r {
                Ok(0) => return Ok(End::ServerGone),
                Ok(_) => {}
                Err(e) => return Err(SessionError::ServerIo(e)),
            },
            // Completes once; `shutting_down` keeps it from being polled again.
            changed = &mut shutdown_changed, if !shutting_down => {
                // A dropped sender also means shutdown: the proxy is gone.
                let _ = changed;
                shutting_down = true;
                timer.as_mut().reset(Instant::now() + grace);
                let mut st = lock(state);
                if authenticated && st.pending == 0 && st.tx_status == TxStatus::Idle
                    && st.injecting.is_none()
                {
                    st.closing = true;
                    return Ok(End::ShutdownIdle);
                }
            }
            _ = &mut timer, if shutting_down || !authenticated => {
                lock(state).closing = true;
                return Ok(if shutting_down { End::GraceExpired } else { End::StartupTimeout });
            }
        }
    }
}

fn scan_server(
    ctx: &Ctx,
    st: &mut State,
    buf: &[u8],
    skip: &mut usize,
    authenticated: &mut bool,
    shutting_down: bool,
    audited_front: bool,
) -> Result<ServerScan, ProtocolError> {
    let limits = ctx.shared.limits;
    let mut out = ServerScan {
        ready: 0,
        need: 0,
        replace: None,
        idle_stop: false,
        idle: false,
        notices: None,
        discard: 0,
        audit_frame: false,
        rescan: false,
        messages: 0,
    };
    let mut pos = 0;
    // Only at a frame boundary may pgwarden put its own messages into the stream.
    if *skip == 0 && !st.outbox.is_empty() {
        out.notices = Some(std::mem::take(&mut st.outbox));
    }
    if *skip > 0 {
        let take = (*skip).min(buf.len());
        *skip -= take;
        pos = take;
        if *skip > 0 {
            out.ready = pos;
            return Ok(out);
        }
    }
    while let Some(h) = check_header(&buf[pos..], &limits, Origin::Server)? {
        let injecting = st.injecting.is_some() || st.executing.is_some();
        let had_turn = audited_front && pos == 0;
        let audited = !injecting
            && !had_turn
            && !st.audit_queue.is_empty()
            && matches!(h.tag, b'C' | b'E' | b'Z');
        let decode = injecting
            || audited
            || matches!(h.tag, b'Z' | b'S' | b'K')
            || (h.tag == b'R' && !*authenticated);
        let avail = buf.len() - pos;
        if decode && avail < h.total {
            out.need = h.total;
            break;
        }
        out.idle = false;
        if audited {
            // Stop before it: the async side writes the audit record, then scans it normally.
            out.audit_frame = pos == 0;
            out.rescan = pos > 0;
            break;
        }
        if let Some(step) = st.executing.as_mut() {
            // Replies to the executor's requests are its to read (DESIGN.md decision 7).
            match step.reply.feed(&buf[pos..pos + h.total]) {
                crate::execute::Feed::Forward => {}
                crate::execute::Feed::Swallow => {
                    out.discard = h.total;
                    break;
                }
                crate::execute::Feed::Done => {
                    if let Some(status) = step.reply.status {
                        st.tx_status = status;
                    }
                    if let Some(step) = st.executing.take() {
                        let _ = step.done.send(step.reply);
                    }
                    out.discard = h.total;
                    break;
                }
            }
        } else if let Some(inj) = st.injecting.as_mut() {
            // While a lookup is in flight every client request has been answered, so what the
            // server sends is the lookup's reply, or a message that can come at any time.
            let body = &buf[pos + 5..pos + h.total];
            match inj.reader.step(h.tag, body) {
                Step::Forward => {}
                Step::Swallow => {
                    out.discard = h.total;
                    break;
                }
                Step::Done(result) => {
                    // The lookup's own ReadyForQuery: the status is the server's truth, but it
                    // answers no client request, so `pending` is untouched.
                    if let Ok(status) = backend::decode_ready_for_query(body) {
                        st.tx_status = match status {
                            b'T' => TxStatus::InTransaction,
                            b'E' => TxStatus::Failed,
                            _ => TxStatus::Idle,
                        };
                    }
                    if let Some(inj) = st.injecting.take() {
                        // The requester may be gone (session ending): nothing to do then.
                        let _ = inj.done.send(result);
                    }
                    out.discard = h.total;
                    break;
                }
            }
        }
        if !decode {
            out.messages += 1;
            if avail < h.total {
                *skip = h.total - avail;
                pos = buf.len();
                break;
            }
            pos += h.total;
            continue;
        }
        let body = &buf[pos + 5..pos + h.total];
        match h.tag {
            b'Z' => {
                st.tx_status = match backend::decode_ready_for_query(body)? {
                    b'T' => TxStatus::InTransaction,
                    b'E' => TxStatus::Failed,
                    _ => TxStatus::Idle,
                };
                st.pending = st.pending.saturating_sub(1);
                *authenticated = true;
                out.idle = st.pending == 0;
                if st.tx_status == TxStatus::Idle {
                    st.idle_epoch += 1;
                }
                if st.pending == 0 {
                    ctx.answered.notify_one();
                }
                ctx.activity.ready_for_query(st.tx_status, st.pending);
                if shutting_down && st.pending == 0 && st.tx_status == TxStatus::Idle {
                    out.idle_stop = true;
                    pos += h.total;
                    break;
                }
            }
            b'S' => {
                let (name, value) = backend::decode_parameter_status(body)?;
                let value = String::from_utf8_lossy(value);
                match name {
                    b"server_version" => st.server_version = value.into_owned(),
                    b"client_encoding" => {
                        st.client_family = Family::from_name(&value);
                        st.client_encoding = value.into_owned();
                    }
                    b"application_name" => {
                        ctx.activity.application_name(&value);
                        st.application_name = value.into_owned();
                    }
                    b"standard_conforming_strings" => {
                        st.standard_conforming_strings = value == "on"
                    }
                    _ => {}
                }
            }
            b'K' => {
                let k = backend::decode_backend_key_data(body)?;
                st.backend_pid = k.pid;
                st.backend_key = k.key.to_vec();
                ctx.activity.backend_pid(st.backend_pid);
            }
            b'R' => {
                let code = auth::decode_auth_code(body)?;
                if code == auth::AUTH_OK {
                    st.auth_ok = true;
                } else if ctx.strip_plus && code == auth::AUTH_SASL {
                    if let Some(frame) = auth::strip_scram_plus(body)? {
                        out.replace = Some((frame, h.total));
                        break;
                    }
                }
            }
            _ => {}
        }
        out.messages += 1;
        pos += h.total;
    }
    out.ready = pos;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::proxy::hook::StatementHook;

    /// One hook call: text, statement name (None = simple), in_pipeline, tx status.
    type Seen = (String, Option<String>, bool, TxStatus);

    /// Records every statement the hook sees.
    #[derive(Default)]
    struct Recorder(Mutex<Vec<Seen>>);

    impl StatementHook for Recorder {
        fn inspect(&self, v: &SessionView<'_>, sql: &str, path: ProtocolPath<'_>) -> Verdict {
            let name = match path {
                ProtocolPath::Simple => None,
                ProtocolPath::Extended { statement } => Some(statement.to_owned()),
            };
            self.0
                .lock()
                .unwrap()
                .push((sql.to_owned(), name, v.in_pipeline, v.tx_status));
            Verdict::Forward
        }
    }

    fn ctx(hook: Arc<Recorder>, strip_plus: bool) -> Ctx {
        let shared = Shared::new(
            Arc::new(Config::default()),
            hook,
            crate::audit::AuditHandle::disabled(),
        )
        .unwrap();
        Ctx {
            shared: Arc::new(shared),
            id: 1,
            user: "u".into(),
            database: "d".into(),
            strip_plus,
            answered: Notify::new(),
            replay_ready: Notify::new(),
            audit_id: String::new(),
            peer: "127.0.0.1:1".parse().unwrap(),
            client_tls: false,
            activity: crate::admin::activity::Slot::detached(),
        }
    }

    fn state() -> State {
        State {
            tx_status: TxStatus::Idle,
            pending: 0,
            closing: false,
            auth_ok: true,
            application_name: String::new(),
            server_version: String::new(),
            client_encoding: String::new(),
            client_family: Family::from_name(""),
            standard_conforming_strings: true,
            backend_pid: 0,
            injecting: None,
            outbox: BytesMut::new(),
            idle_epoch: 0,
            audit_queue: std::collections::VecDeque::new(),
            audit_watch: false,
            executing: None,
            replay: None,
            backend_key: Vec::new(),
        }
    }

    fn msg(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut v = vec![tag];
        v.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
        v.extend_from_slice(body);
        v
    }

    fn client_stream() -> Vec<u8> {
        let mut w = Vec::new();
        w.extend(msg(b'P', b"s1\0select $1\0\0\0"));
        w.extend(msg(b'B', b"\0s1\0\0\0\0\x01\0\0\0\x011\0\0"));
        w.extend(msg(b'E', b"\0\0\0\0\0"));
        w.extend(msg(b'S', b""));
        w.extend(msg(b'Q', b"select 2; select 3\0"));
        // A large pass-through frame (CopyData) is streamed, never decoded.
        w.extend(msg(b'd', &[7u8; 5000]));
        w.extend(msg(b'P', b"\0select 4\0\0\0"));
        w.extend(msg(b'C', b"Ss1\0"));
        w.extend(msg(b'S', b""));
        w
    }

    /// Feeds `wire` in chunks of `step` bytes the way the session loop does and returns the
    /// bytes it would have forwarded.
    fn drive_client(
        c: &Ctx,
        st: &mut State,
        side: &mut ClientSide,
        wire: &[u8],
        step: usize,
    ) -> Vec<u8> {
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for chunk in wire.chunks(step) {
            buf.extend_from_slice(chunk);
            let scan = scan_client(c, st, side, &buf).unwrap();
            out.extend_from_slice(&buf[..scan.ready]);
            buf.advance(scan.ready);
            if scan.need > 0 {
                assert!(scan.need > buf.len(), "asked for bytes it already has");
            }
        }
        assert!(buf.is_empty(), "bytes left behind");
        out
    }

    #[test]
    fn client_frames_forward_unchanged_and_hook_sees_every_statement() {
        let wire = client_stream();
        for step in [1, 3, 7, 64, 4096, wire.len()] {
            let rec = Arc::new(Recorder::default());
            let c = ctx(rec.clone(), false);
            let mut st = state();
            let mut side = ClientSide::default();
            let out = drive_client(&c, &mut st, &mut side, &wire, step);
            assert_eq!(out, wire, "step {step}");
            let seen = rec.0.lock().unwrap().clone();
            assert_eq!(
                seen,
                vec![
                    ("select $1".into(), Some("s1".into()), false, TxStatus::Idle),
                    ("select 2; select 3".into(), None, false, TxStatus::Idle),
                    (
                        "select 4".into(),
                        Some(String::new()),
                        false,
                        TxStatus::Idle
                    ),
                ],
                "step {step}"
            );
            // Two Syncs and one Query await a ReadyForQuery each.
            assert_eq!(st.pending, 3);
            // Close of s1 forgot it.
            assert!(side.prepared.is_empty());
            assert!(!side.in_pipeline);
        }
    }

    /// Replaces every text containing "danger" by a parameterless DO block.
    struct Replacer;

    impl StatementHook for Replacer {
        fn inspect(&self, _: &SessionView<'_>, sql: &str, _: ProtocolPath<'_>) -> Verdict {
            if sql.contains("danger") {
                Verdict::Replace("DO $x$ BEGIN RAISE EXCEPTION 'no'; END $x$".into())
            } else {
                Verdict::Forward
            }
        }
    }

    #[test]
    fn replaced_statements_are_reencoded_and_their_binds_stripped() {
        let shared = Shared::new(
            Arc::new(Config::default()),
            Arc::new(Replacer),
            crate::audit::AuditHandle::disabled(),
        )
        .unwrap();
        let c = Ctx {
            shared: Arc::new(shared),
            id: 1,
            user: "u".into(),
            database: "d".into(),
            strip_plus: false,
            answered: Notify::new(),
            replay_ready: Notify::new(),
            audit_id: String::new(),
            peer: "127.0.0.1:1".parse().unwrap(),
            client_tls: false,
            activity: crate::admin::activity::Slot::detached(),
        };
        let bind = |stmt: &[u8]| {
            let mut b = vec![0u8];
            b.extend_from_slice(stmt);
            b.extend_from_slice(b"\0\0\0\0\x01\0\0\0\x017\0\0");
            msg(b'B', &b)
        };
        let do_block = "DO $x$ BEGIN RAISE EXCEPTION 'no'; END $x$";
        let mut wire = Vec::new();
        wire.extend(msg(b'Q', b"select 1\0"));
        wire.extend(msg(b'Q', b"alter table danger add x int\0"));
        wire.extend(msg(
            b'P',
            b"s1\0alter table danger alter x type text using $1\0\0\x01\0\0\0\x19",
        ));
        wire.extend(bind(b"s1"));
        wire.extend(msg(b'S', b""));
        wire.extend(msg(b'C', b"Ss1\0"));
        wire.extend(msg(b'P', b"s1\0select $1\0\0\0"));
        wire.extend(bind(b"s1"));
        wire.extend(msg(b'S', b""));

        let mut expect = Vec::new();
        expect.extend(msg(b'Q', b"select 1\0"));
        let mut q = BytesMut::new();
        frontend::encode_query(do_block, &mut q).unwrap();
        expect.extend_from_slice(&q);
        let mut p = BytesMut::new();
        frontend::encode_parse(b"s1", do_block, &mut p).unwrap();
        expect.extend_from_slice(&p);
        expect.extend(msg(b'B', b"\0s1\0\0\0\0\0\0\0"));
        expect.extend(msg(b'S', b""));
        expect.extend(msg(b'C', b"Ss1\0"));
        expect.extend(msg(b'P', b"s1\0select $1\0\0\0"));
        expect.extend(bind(b"s1"));
        expect.extend(msg(b'S', b""));

        for step in [1, 9, wire.len()] {
            let (mut st, mut side) = (state(), ClientSide::default());
            let mut buf = BytesMut::new();
            let mut out = Vec::new();
            for chunk in wire.chunks(step) {
                buf.extend_from_slice(chunk);
                loop {
                    let scan = scan_client(&c, &mut st, &mut side, &buf).unwrap();
                    out.extend_from_slice(&buf[..scan.ready]);
                    buf.advance(scan.ready);
                    match scan.replace {
                        Some((frame, original)) => {
                            out.extend_from_slice(&frame);
                            buf.advance(original);
                        }
                        None => break,
                    }
                }
            }
            assert!(buf.is_empty());
            assert_eq!(out, expect, "step {step}");
            assert_eq!(st.pending, 4);
            // The client's original text is what the session remembers for s1.
            assert_eq!(
                side.prepared.get(&b"s1"[..]).map(String::as_str),
                Some("select $1")
            );
            assert!(side.stripped.is_empty());
        }
    }

    #[test]
    fn in_pipeline_and_prepared_statements() {
        let rec = Arc::new(Recorder::default());
        let c = ctx(rec.clone(), false);
        let mut st = state();
        let mut side = ClientSide::default();
        let mut w = Vec::new();
        w.extend(msg(b'P', b"a\0select 1\0\0\0"));
        w.extend(msg(b'P', b"b\0select 2\0\0\0"));
        w.extend(msg(b'H', b""));
        drive_client(&c, &mut st, &mut side, &w, 1000);
        let seen = rec.0.lock().unwrap().clone();
        assert!(
            !seen[0].2 && seen[1].2,
            "second Parse is inside the pipeline"
        );
        assert_eq!(side.prepared.len(), 2);
        assert_eq!(
            side.prepared.get(&b"a"[..]).map(String::as_str),
            Some("select 1")
        );
        let q = msg(b'Q', b"DEALLOCATE b\0");
        drive_client(&c, &mut st, &mut side, &q, 1000);
        assert!(side.prepared.contains_key(&b"a"[..]) && side.prepared.len() == 1);
        let q = msg(b'Q', b"deallocate all;\0");
        drive_client(&c, &mut st, &mut side, &q, 1000);
        assert!(side.prepared.is_empty());
    }

    /// Before AuthenticationOk only `p` (streamed, never held) and Terminate pass; a Query
    /// header alone is refused, before any of its body is buffered.
    #[test]
    fn only_authentication_before_auth_ok() {
        let c = ctx(Arc::new(Recorder::default()), false);
        let mut st = state();
        st.auth_ok = false;
        let mut side = ClientSide::default();
        let p = msg(b'p', b"SCRAM-SHA-256\0\0\0\0\x01n");
        let scan = scan_client(&c, &mut st, &mut side, &p).unwrap();
        assert_eq!(scan.ready, p.len());
        let mut q = vec![b'Q'];
        q.extend_from_slice(&900_000_000u32.to_be_bytes());
        assert!(matches!(
            scan_client(&c, &mut st, &mut side, &q),
            Err(ProtocolError::BeforeAuthentication { tag: 'Q' })
        ));
        st.auth_ok = true;
        let q = msg(b'Q', b"select 1\0");
        assert_eq!(
            scan_client(&c, &mut st, &mut side, &q).unwrap().ready,
            q.len()
        );
    }

    #[test]
    fn hostile_client_frames_are_errors_not_panics() {
        let rec = Arc::new(Recorder::default());
        let c = ctx(rec, false);
        let mut st = state();
        let mut side = ClientSide::default();
        for bad in [
            msg(b'Q', b"no terminator"),
            msg(b'P', b"x\0select\0\xff\xff"),
            msg(b'C', b"Zx\0"),
            vec![b'Q', 0xff, 0xff, 0xff, 0xfb],
            vec![b'S', 0, 1, 0, 0],
        ] {
            assert!(
                scan_client(&c, &mut st, &mut side, &bad).is_err(),
                "{bad:?}"
            );
        }
    }

    fn drive_server(c: &Ctx, st: &mut State, wire: &[u8], step: usize) -> Vec<u8> {
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        let (mut skip, mut auth) = (0, false);
        for chunk in wire.chunks(step) {
            buf.extend_from_slice(chunk);
            loop {
                let scan = scan_server(c, st, &buf, &mut skip, &mut auth, false, false).unwrap();
                out.extend_from_slice(&buf[..scan.ready]);
                buf.advance(scan.ready);
                match scan.replace {
                    Some((frame, original)) => {
                        out.extend_from_slice(&frame);
                        buf.advance(original);
                    }
                    None => break,
                }
            }
        }
        assert!(buf.is_empty());
        out
    }

    #[test]
    fn server_state_is_observed_and_plus_is_stripped() {
        let sasl = |mechs: &[&str]| {
            let mut b = 10i32.to_be_bytes().to_vec();
            for m in mechs {
                b.extend_from_slice(m.as_bytes());
                b.push(0);
            }
            b.push(0);
            msg(b'R', &b)
        };
        let mut w = Vec::new();
        w.extend(sasl(&["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"]));
        w.extend(msg(b'R', &0i32.to_be_bytes()));
        w.extend(msg(b'S', b"server_version\x0015.18\0"));
        w.extend(msg(b'S', b"standard_conforming_strings\0off\0"));
        w.extend(msg(b'K', &[0, 0, 0, 42, 1, 2, 3, 4]));
        w.extend(msg(b'Z', b"I"));
        w.extend(msg(b'D', &[1u8; 3000]));
        w.extend(msg(b'Z', b"T"));
        let mut expect = sasl(&["SCRAM-SHA-256"]);
        expect.extend_from_slice(&w[sasl(&["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"]).len()..]);
        for step in [1, 5, 100, w.len()] {
            let c = ctx(Arc::new(Recorder::default()), true);
            let mut st = state();
            st.pending = 1;
            let out = drive_server(&c, &mut st, &w, step);
            assert_eq!(out, expect, "step {step}");
            assert_eq!(st.server_version, "15.18");
            assert!(!st.standard_conforming_strings);
            assert_eq!(st.backend_pid, 42);
            assert_eq!(st.tx_status, TxStatus::InTransaction);
            assert_eq!(st.pending, 0);
        }
        // Without a TLS server leg the offer is relayed unchanged.
        let c = ctx(Arc::new(Recorder::default()), false);
        let out = drive_server(&c, &mut state(), &w, w.len());
        assert_eq!(out, w);
    }

    mod prop {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn scans_never_panic_and_never_overrun(
                data in proptest::collection::vec(any::<u8>(), 0..400),
                step in 1usize..64,
            ) {
                let c = ctx(Arc::new(Recorder::default()), true);
                let (mut st, mut side) = (state(), ClientSide::default());
                let mut buf = BytesMut::new();
                for chunk in data.chunks(step) {
                    buf.extend_from_slice(chunk);
                    match scan_client(&c, &mut st, &mut side, &buf) {
                        Ok(scan) => {
                            prop_assert!(scan.ready <= buf.len());
                            buf.advance(scan.ready);
                        }
                        Err(_) => break,
                    }
                }
                let mut buf = BytesMut::new();
                let (mut skip, mut auth) = (0, false);
                let mut st = state();
                for chunk in data.chunks(step) {
                    buf.extend_from_slice(chunk);
                    match scan_server(&c, &mut st, &buf, &mut skip, &mut auth, true, false) {
                        Ok(scan) => {
                            let used = scan.ready + scan.replace.map_or(0, |(_, n)| n);
                            prop_assert!(used <= buf.len());
                            buf.advance(used);
                        }
                        Err(_) => break,
                    }
                }
            }
        }
    }

    #[test]
    fn deallocate_forms() {
        assert_eq!(deallocate_target(b"DEALLOCATE ALL"), Some(Dealloc::All));
        assert_eq!(
            deallocate_target(b"  deallocate prepare all;"),
            Some(Dealloc::All)
        );
        assert_eq!(
            deallocate_target(b"DEALLOCATE _pg3_1"),
            Some(Dealloc::Name("_pg3_1".into()))
        );
        assert_eq!(
            deallocate_target(b"DEALLOCATE \"My\"\"S\""),
            Some(Dealloc::Name("My\"S".into()))
        );
        assert_eq!(
            deallocate_target(b"DEALLOCATE Foo"),
            Some(Dealloc::Name("foo".into()))
        );
        assert_eq!(
            deallocate_target(b"DEALLOCATE prepare"),
            Some(Dealloc::Name("prepare".into()))
        );
        assert_eq!(deallocate_target(b"discard all"), Some(Dealloc::All));
        assert_eq!(deallocate_target(b"DEALLOCATE a; SELECT 1"), None);
        assert_eq!(deallocate_target(b"SELECT 1"), None);
        assert_eq!(deallocate_target(b"DEALLOCATE \"unterminated"), None);
    }
}
