//! One client connection: startup negotiation, upstream connect, then raw forwarding in both
//! directions with the few observations the upper layers need.
//!
//! # Shape
//! The session task drives two futures, client→server and server→client, each polled only
//! when its own waker fired (`proxy::wake::first_of`). Each reads into its own `BytesMut`,
//! walks the frame headers of what it got, decodes only the message types it must (client
//! `Q`/`P`/`C`; server `Z`/`S`/`K`/`R`), and writes the complete frames as one slice with one
//! write. A frame that is not decoded is streamed through as it
//! arrives, so a 100 MB DataRow never sits whole in memory. Both futures share a small
//! [`State`] behind a `std::sync::Mutex`, locked once per read batch and never across an await.
//!
//! # Rooms
//! This file holds the session's life (startup, upstream connect, the two direction loops, the
//! farewell) and the state both directions share. The rest lives in submodules:
//! `handshake` (first packets, TLS), `client_scan` / `server_scan` (the frame walks of each
//! direction), `decide` (the enforcer's turn on a held statement), `inject` (the catalog
//! lookup on the client's connection), `execute*` (timeouts and retries of lock-taking DDL),
//! `rewrite` (multi-step rewrites and completion steps), `rebind`, `fresh` and `audit`.
//!
//! # Rewriting and injected statements
//! (a) Rewriting: the client-side scan stops at every `Q`/`P` with the whole frame in the
//! buffer. A [`Verdict::Replace`] makes the scan return "forward `buf[..ready]`, then this
//! re-encoded frame, then skip the original frame", and the loop scans on. A replaced `Parse`
//! declares no parameter types and its name is remembered in `ClientSide::stripped` (the
//! unnamed statement until the next unnamed `Parse`; `Close` and a new non-replaced `Parse`
//! clear it). While that set is non-empty, `Bind` frames are decoded and a `Bind` of a
//! stripped statement is re-encoded with zero parameters. The hot path is unchanged when
//! nothing was replaced.
//!
//! (b) Injecting (`inject`; the executor and the rewrites send their statements at the same
//! point). The point is where the client→server side holds a complete `Q`/`P` that needs live
//! facts. If `State::pending == 0` (every earlier client request answered: `pending` already
//! counts Query/Sync/FunctionCall and ReadyForQuery decrements it), the status is not `E` and
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
use std::future::{poll_fn, Future};
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Poll;

use super::timer::sleep_until;
use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{oneshot, watch, Notify, OwnedSemaphorePermit};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::guard::{Guard, LazyGuard, Snapshot};
use super::hook::{ProtocolPath, SessionView, Verdict};
use super::stream::{split, Conn, ReadHalf, WriteHalf};
use super::wake::Registered;
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
mod client_scan;
mod decide;
mod execute;
mod execute_batch;
mod execute_extended;
mod fresh;
mod handshake;
mod inject;
mod rebind;
mod rewrite;
mod server_scan;
use audit::{
    audit_answer, audit_held_bind, audit_query, audit_request, start_audit, write_query_records,
    AuditEntry, AuditTemplate,
};
use client_scan::{base_lex, lex_settings, reported_family, scan_client};
use decide::{decide_held, held_bind_statement, held_body, snapshot, utf8_encoding, OwnedSnapshot};
use handshake::{negotiate_client, NegotiateEnd};
use inject::{inject_lookup, LOOKUP_TIMEOUT};
use server_scan::scan_server;

/// Initial capacity of each direction's read buffer. Small, because most sessions sit idle
/// and only touched pages count; a buffer that a read fills is doubled (up to
/// [`MAX_READ_CHUNK`]) so bulk transfers still move in large reads.
const INITIAL_BUF: usize = 2 * 1024;
/// Largest capacity the buffer grows to for streaming; a single frame that must be decoded
/// whole (a large Query) may need more, and gets exactly that.
const MAX_READ_CHUNK: usize = 128 * 1024;
/// How long pgwarden tries to deliver its own final message to a client.
const FAREWELL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);
/// After refusing a message the client is still sending, how much more of it pgwarden reads
/// and discards (at most) before closing, so that the client's write completes and it reads
/// the error (see [`linger`]).
const LINGER_BYTES: usize = 64 << 20;

/// State both directions see. Locked once per read batch. Inline in every session's future:
/// the injected lookup and executor step in flight are boxed, as in [`ClientSide`].
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
    injecting: Option<Box<Injection>>,
    /// The lookup statements an earlier lookup prepared on this server session.
    lookup_prepared: lookup::Prepared,
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
    executing: Option<Box<execute::ExecStep>>,
    /// The executor's answer for the client, replayed by the server→client side.
    replay: Option<BytesMut>,
    /// From BackendKeyData: a cancel during a backoff must carry it.
    backend_key: Vec<u8>,
}

impl State {
    /// A session's state before the server has said anything.
    fn new(application_name: String) -> State {
        State {
            tx_status: TxStatus::Idle,
            pending: 0,
            closing: false,
            auth_ok: false,
            application_name,
            server_version: String::new(),
            client_encoding: String::new(),
            client_family: Family::from_name(""),
            standard_conforming_strings: true,
            backend_pid: 0,
            injecting: None,
            lookup_prepared: lookup::Prepared::NONE,
            outbox: BytesMut::new(),
            idle_epoch: 0,
            audit_queue: std::collections::VecDeque::new(),
            audit_watch: false,
            executing: None,
            replay: None,
            backend_key: Vec::new(),
        }
    }
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
    /// Woken when the executor left an answer in `State::replay` ([`Ctx::post_replay`]).
    replay_ready: Notify,
    /// Set with that wake-up, cleared when the server→client side takes the answer: lets
    /// that side skip both the state lock and the wait's poll while nothing was posted.
    replay_posted: AtomicBool,
    /// The audit log's id of this session.
    audit_id: String,
    /// Audit records of this session written without an fsync (group commit): both
    /// directions note theirs, the client side's barrier covers them.
    audit_mark: Arc<crate::audit::SessionMark>,
    /// For the audit log's session records.
    peer: SocketAddr,
    client_tls: bool,
    /// This session in the admin listener's activity view.
    activity: crate::admin::activity::Slot,
}

impl Ctx {
    /// Tells the server→client side that `State::replay` holds an answer (set it first).
    fn post_replay(&self) {
        self.replay_posted.store(true, Ordering::Release);
        self.replay_ready.notify_one();
    }

    /// Seeds the executor's retry jitter: this session's id and the process's (read once:
    /// every `std::process::id()` is a getpid(2), and this is asked once per DDL statement).
    fn seed(&self) -> u64 {
        static PID: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
        self.id ^ u64::from(*PID.get_or_init(std::process::id))
    }
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
    // The start-up phase runs on the heap and is gone when it ends: a future is as large as
    // its largest state, and start-up's (TLS handshakes, authentication, the startup packet,
    // the route) would otherwise size every idle session's task
    // (`tests::the_session_future_stays_small`). Bound by a pattern, its result is not kept
    // a second time.
    let Some(Started {
        mut client,
        mut server,
        buf,
        user,
        database,
        application_name,
        upstream_name,
        startup_deadline,
        _permit,
    }) = Box::pin(start(&shared, client_conn, peer, permit, &shutdown, id)).await
    else {
        return;
    };
    let upstream_name = &upstream_name;
    let state = Mutex::new(State::new(application_name));
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
        replay_posted: AtomicBool::new(false),
        audit_id: shared.audit.session_id(id),
        audit_mark: Default::default(),
        peer,
        client_tls: client.is_tls(),
    };
    debug!(session = id, %peer, user = %ctx.user, database = %ctx.database,
           client_tls = client.is_tls(), server_tls = server.is_tls(), "session started");

    // Whatever the client sent after its startup packet (pipelining clients do) stays in `buf`.
    let mut cbuf = buf;
    let mut sbuf = BytesMut::with_capacity(INITIAL_BUF);
    let mut audit: Option<AuditSession> = None;
    let outcome = {
        let (mut cr, mut cw) = split(&mut client);
        let (mut sr, mut sw) = split(&mut server);
        let mut client_side = ClientSide {
            guard: shared
                .policy
                .as_ref()
                .map(|_| LazyGuard::new(&lock(&state).application_name)),
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
        // Each direction is polled only when its own waker fired (`wake`): under `select!` the
        // idle one was polled, and re-registered its waits, on every wake-up of the other.
        let result = super::wake::first_of(pin!(c2s), pin!(s2c)).await;
        if let Some(guard) = built_guard(&client_side.guard) {
            guard.log_summary();
        }
        result
    };
    if let Some(a) = audit.take() {
        // A request forwarded and never answered: its statements' fate is unknown to the
        // client, and the audit log says so.
        let in_flight = lock(&state).pending > 0;
        Box::pin(a.closed(in_flight)).await;
    }
    // Both directions are dropped here; the session may write its own last words.
    let pid = lock(&state).backend_pid;
    // A client refused in the middle of a message is still writing it: closing at once would
    // reset its connection before it reads why.
    let mid_message = matches!(
        outcome,
        Err(SessionError::HeldBytes(_)) | Err(SessionError::ClientProtocol(_))
    );
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
        if mid_message {
            linger(&mut client).await;
        }
    }
    debug!(session = id, pid, "session ended");
}

/// What the start-up phase hands to the forwarding phase.
struct Started {
    client: Conn,
    server: Conn,
    /// Whatever the client sent after its startup packet (pipelining clients do).
    buf: BytesMut,
    user: String,
    /// The database the client asked for: policies and the activity view keep that name.
    database: String,
    application_name: String,
    /// For error messages.
    upstream_name: String,
    startup_deadline: Instant,
    /// Held for the whole session: `max_connections`.
    _permit: OwnedSemaphorePermit,
}

/// Startup negotiation, refusals and the upstream connect, up to the startup packet sent to
/// the server. `None`: the session ended here (its farewell, if any, is sent).
async fn start(
    shared: &Arc<Shared>,
    client_conn: Conn,
    peer: SocketAddr,
    permit: Option<OwnedSemaphorePermit>,
    shutdown: &watch::Receiver<bool>,
    id: u64,
) -> Option<Started> {
    let startup_deadline = Instant::now() + shared.live.now().config.server.startup_timeout;
    let mut slot = Some(client_conn);
    let mut buf = BytesMut::with_capacity(512);

    let negotiated = super::timer::timeout_at(
        startup_deadline,
        negotiate_client(shared, &mut slot, &mut buf),
    )
    .await;
    // The slot is empty only if a TLS handshake failed, and then there is no one to talk to.
    let mut client = slot?;
    let startup = match negotiated {
        Err(_) => {
            debug!(session = id, %peer, "client did not finish its startup packet in time");
            crate::metrics::session_refused("startup_timeout");
            return None;
        }
        Ok(Err(NegotiateEnd::Quiet)) => return None,
        Ok(Err(NegotiateEnd::Error(e))) => {
            warn!(session = id, %peer, "closing connection: {}", e.message);
            crate::metrics::session_refused("protocol_error");
            farewell(&mut client, &e).await;
            return None;
        }
        Ok(Err(NegotiateEnd::Cancel(raw))) => {
            // A session backing off between attempts takes it itself (the server would drop
            // it, or deliver it late into pgwarden's next statement).
            if shared.cancels.cancel(&raw) {
                return None;
            }
            // Cancels are honoured even when the proxy is full, as PostgreSQL does.
            if let Err(e) = upstream::send_cancel(shared, &raw).await {
                warn!(session = id, %peer, "could not forward cancel request: {e}");
            }
            return None;
        }
        Ok(Ok(m)) => m,
    };
    let mut startup = startup;
    let Some(permit) = permit else {
        let max = shared.config.server.max_connections;
        warn!(session = id, %peer, "refusing connection: max_connections ({max}) reached");
        crate::metrics::session_refused("max_connections");
        farewell(&mut client, &errors::too_many_connections(max)).await;
        return None;
    };
    if *shutdown.borrow() {
        crate::metrics::session_refused("shutting_down");
        farewell(&mut client, &errors::shutting_down()).await;
        return None;
    }
    if startup.needs_negotiation() {
        let mut out = BytesMut::new();
        negotiate::encode_negotiate_protocol_version(&startup.protocol_options, &mut out);
        if client.write_all(&out).await.is_err() {
            return None;
        }
    }

    let requested = startup.database().to_owned();
    let Some(route) = shared.live.now().routes.resolve(&requested) else {
        let name = requested;
        info!(session = id, %peer, "refusing connection: no [databases] entry for {name:?}");
        crate::metrics::session_refused("unknown_database");
        farewell(&mut client, &errors::unknown_database(&name)).await;
        return None;
    };
    let upstream_name = &route.upstream.name;
    let connected =
        super::timer::timeout_at(startup_deadline, upstream::connect(shared, &route.upstream))
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
            return None;
        }
        Err(_) => {
            warn!(session = id, %peer, "cannot reach upstream {upstream_name}: startup_timeout");
            crate::metrics::session_refused("upstream_unreachable");
            farewell(
                &mut client,
                &errors::upstream_unreachable(upstream_name, "startup_timeout expired"),
            )
            .await;
            return None;
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
        return None;
    }

    Some(Started {
        user: startup.param("user").unwrap_or_default().to_owned(),
        application_name: startup
            .setting("application_name")
            .unwrap_or_default()
            .to_owned(),
        client,
        server,
        buf,
        database: client_database,
        upstream_name: upstream_name.clone(),
        startup_deadline,
        _permit: permit,
    })
}

/// The session's guard (`ClientSide::guard`), built now if this is its first use; `None` when
/// the policy is off. Takes the field, not the whole `ClientSide`, so the caller may use the
/// other fields while it holds the guard.
fn guard_of<'a>(slot: &'a mut Option<LazyGuard>, ctx: &Ctx) -> Option<&'a mut Guard> {
    let live = ctx.shared.policy.as_ref()?;
    Some(slot.as_mut()?.build(live, ctx.id, &ctx.database, &ctx.user))
}

/// The session's guard if something built it already: an unbuilt one is a fresh one.
fn built_guard(slot: &Option<LazyGuard>) -> Option<&Guard> {
    slot.as_ref()?.built()
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    // A poisoned lock only means another direction panicked mid-update; the fields are plain
    // values, so continuing is safe.
    state.lock().unwrap_or_else(|p| p.into_inner())
}

/// Sends pgwarden's final error to the client and closes the stream, bounded in time.
async fn farewell(client: &mut Conn, msg: &PgError) {
    let bytes = msg.to_bytes();
    let _ = Box::pin(super::timer::timeout(FAREWELL_TIMEOUT, async {
        client.write_all(&bytes).await?;
        client.flush().await?;
        client.shutdown().await
    }))
    .await;
}

/// Reads and discards what the client goes on sending, until it closes, [`LINGER_BYTES`] or
/// [`FAREWELL_TIMEOUT`]. Closing a socket with unread input makes the kernel answer with a
/// reset: a client still writing the refused message then fails with "broken pipe" or
/// "connection reset" and never reads the FATAL pgwarden sent. Draining for a bounded moment
/// lets its write finish, so it reads the error (a "lingering close").
async fn linger(client: &mut Conn) {
    // On the heap, allocated only when lingering: an array here would sit inline in every
    // session's future, and moving a new session's future into its task touches all of it
    // (≈ +8-10 KiB of RSS per idle connection, bench/idle_memory.sh).
    let mut sink = vec![0u8; 16 * 1024];
    let mut left = LINGER_BYTES;
    let _ = Box::pin(super::timer::timeout(FAREWELL_TIMEOUT, async {
        while left > 0 {
            match client.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    }))
    .await;
}

/// Client-side bookkeeping that only the client→server direction touches. It sits inline in
/// every session's future: what only a request in progress has (a plan, a held request, an
/// audit record) is boxed, so that an idle session holds a pointer for it, not the value
/// (`tests::the_session_future_stays_small`).
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
    /// The enforcer (None when the policy is off), built at its first use: [`guard_of`].
    guard: Option<LazyGuard>,
    /// The decision on the Query/Parse at the front of the buffer, made by the enforcer while
    /// the scan was stopped there: `Some(None)` forward, `Some(Some(text))` replace.
    decided: Option<Option<String>>,
    /// The settings under which [`client_scan::inspect`] lexed the Query/Parse it stopped at
    /// and found that it needs the enforcer: `decide_held` does not lex it again under the
    /// same settings. Reset by every inspection.
    attention_under: Option<LexSettings>,
    /// The audit record of the held statement, written; it joins the audit queue with the
    /// request that carries the statement.
    audit_record: Vec<StatementRecord>,
    /// The audited statement of the extended-protocol request in progress (written at its
    /// Bind), waiting for the Sync that ends the request.
    request_record: Option<Box<StatementRecord>>,
    /// Prepared DDL statements by name ("" = unnamed): audited again at every Bind.
    ddl_statements: std::collections::HashMap<Vec<u8>, AuditTemplate>,
    /// The Bind at the front of the buffer has had its audit turn.
    bind_audited: bool,
    /// The last Query the audit log's group commit found bound to the open transaction block
    /// (`audit::barrier_before`); boxed, made at the first such Query.
    bound_query: Option<Box<audit::BoundQuery>>,
    /// Prepared DDL statements (names in `ddl_statements`) parsed since the last Sync: their
    /// Parse-time decision is current.
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
    exec: Option<Box<execute::Pending>>,
    /// The held Query runs as a multi-step rewrite (`rewrite.rs`).
    multi: Option<Box<rewrite::MultiPending>>,
    /// Completion steps this transaction's COMMIT owes.
    completion: rewrite::Completion,
    /// What the extended-protocol request starting at the held Parse/Bind is.
    extended: Option<Box<execute_extended::Lookahead>>,
    /// An extended-protocol request held to its Sync, to run under the executor.
    holding: Option<Box<execute_extended::Held>>,
    /// The held multi-statement Query runs split, under the executor (execute_batch.rs).
    batch: Option<execute_batch::Batch>,
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
            if ctx.shared.audit.unsynced(&ctx.audit_mark) {
                Box::pin(audit::barrier_before(
                    ctx,
                    state,
                    buf,
                    side.skip,
                    side.bound_query.get_or_insert_default(),
                ))
                .await?;
            }
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
                        .write_all_now(&buf[..scan.ready])
                        .await
                        .map_err(SessionError::ServerIo)?,
                }
                buf.advance(scan.ready);
            }
            // The DDL and executor paths below are boxed: their futures are large and rarely
            // live, and inline they would sit in every idle session's task.
            if let Some(held) = side.holding.take_if(|_| scan.run_held) {
                sw.flush_now().await.map_err(SessionError::ServerIo)?;
                Box::pin(execute_extended::run(
                    ctx,
                    state,
                    sw,
                    *held,
                    &mut side.completion,
                ))
                .await?;
                wait_answered(ctx, state).await;
                continue;
            }
            if let Some((batch, original)) = scan.batch {
                sw.flush_now().await.map_err(SessionError::ServerIo)?;
                Box::pin(execute_batch::run(ctx, state, sw, *batch)).await?;
                buf.advance(original);
                wait_answered(ctx, state).await;
                continue;
            }
            if let Some((pending, frame, original)) = scan.execute {
                sw.flush_now().await.map_err(SessionError::ServerIo)?;
                Box::pin(execute::run(
                    ctx,
                    state,
                    sw,
                    *pending,
                    execute::ClientStatement::query(frame),
                ))
                .await?;
                buf.advance(original);
                // The answer reaches the client before anything else is forwarded.
                wait_answered(ctx, state).await;
                continue;
            }
            if scan.settle {
                sw.flush_now().await.map_err(SessionError::ServerIo)?;
                wait_answered(ctx, state).await;
                continue;
            }
            if let Some((m, original)) = scan.multi {
                sw.flush_now().await.map_err(SessionError::ServerIo)?;
                Box::pin(rewrite::run(ctx, state, sw, *m, &mut side.completion)).await?;
                buf.advance(original);
                wait_answered(ctx, state).await;
                continue;
            }
            if let Some((frame, original)) = scan.commit {
                sw.flush_now().await.map_err(SessionError::ServerIo)?;
                Box::pin(rewrite::commit(ctx, state, sw, &mut side.completion, frame)).await?;
                buf.advance(original);
                wait_answered(ctx, state).await;
                continue;
            }
            let replaced = scan.replace.is_some();
            if let Some((frame, original)) = scan.replace {
                match side.holding.as_mut() {
                    Some(held) => held.frames.extend_from_slice(&frame),
                    None => sw
                        .write_all_now(&frame)
                        .await
                        .map_err(SessionError::ServerIo)?,
                }
                buf.advance(original);
            }
            sw.flush_now().await.map_err(SessionError::ServerIo)?;
            if scan.terminate {
                return Ok(End::ClientGone);
            }
            if scan.attention_bind || scan.attention {
                // A request that may run under the executor is read to its Sync first.
                match Box::pin(execute_extended::prepare(ctx, state, side, cr, sw, buf)).await? {
                    execute_extended::Prepared::Decide => {}
                    execute_extended::Prepared::Answered => continue,
                    execute_extended::Prepared::ClientGone => return Ok(End::ClientGone),
                }
            }
            if scan.attention_bind {
                Box::pin(rebind::redecide_bind(ctx, state, side, sw, buf)).await?;
                Box::pin(audit_held_bind(ctx, state, side, buf)).await?;
                continue;
            }
            if scan.attention {
                // The held Query/Parse is now at the front of the buffer, everything before it
                // is on its way to the server: decide, then scan again to send it.
                Box::pin(decide_held(ctx, state, side, sw, buf)).await?;
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
        }
        match read_idle(cr, buf).await {
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

/// Reads what the socket has. An empty buffer no larger than [`INITIAL_BUF`] goes to the
/// thread's buffer pool while the socket has nothing to read and one comes back when it has
/// (no extra syscall and one readiness poll per read: see `ReadHalf::read_idle`; no allocation
/// per read: `bufpool`): an idle connection holds no read buffer.
async fn read_idle(r: &mut ReadHalf<'_>, buf: &mut BytesMut) -> std::io::Result<usize> {
    r.read_idle(buf, INITIAL_BUF, |b| prepare_read(b, 0)).await
}

/// Gives memory back at an idle point: a buffer that grew for a large message or a bulk
/// transfer is replaced by a small one once it is empty. Costs one allocation per idle point,
/// and only after growth.
#[inline]
fn shrink_if_idle(buf: &mut BytesMut) {
    if buf.is_empty() && buf.capacity() > 8 * INITIAL_BUF {
        *buf = BytesMut::with_capacity(INITIAL_BUF);
    }
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
    // deadline, after shutdown the grace deadline; in between there is none: a timer left in
    // the runtime's wheel makes every turn of the event loop compute its next expiry and read
    // the clock (~300 instructions per turn). Boxed: an idle session holds no timer.
    let mut timer = Some(Box::pin(sleep_until(startup_deadline)));
    if shutting_down {
        timer = Some(Box::pin(sleep_until(Instant::now() + grace)));
    }
    // Both waits live across reads (made per read, each registered and unregistered itself
    // under a lock every round trip; the shutdown watch's lock is shared by all sessions), and
    // are polled only when a flag says they may be done (`wake::Registered`).
    let shutdown_seen = shutdown.clone();
    let replay_ready = pin!(ctx.replay_ready.notified());
    let mut replay_ready = Registered::new(replay_ready);
    let shutdown_changed = pin!(shutdown.changed());
    let mut shutdown_changed = Registered::new(shutdown_changed);
    // Answers held back until the ReadyForQuery after them has had its audit turn (see
    // `server_scan::hold_for_ready`).
    let mut held: Vec<u8> = Vec::new();
    loop {
        // The executor's answer goes first, read as if the server had sent it.
        if skip == 0 && ctx.replay_posted.swap(false, Ordering::AcqRel) {
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
            if authenticated && !shutting_down && timer.is_some() {
                timer = None;
            }
            if authenticated && audit.is_none() && ctx.shared.audit.is_enabled() {
                *audit = Some(start_audit(ctx, state));
            }
            crate::metrics::server_to_client(scan.ready, scan.messages);
            let replaced = scan.replace.is_some() || scan.discard > 0 || scan.rescan;
            if server_scan::hold_for_ready(&scan, buf, &held) {
                held.extend_from_slice(scan.notices.as_deref().unwrap_or_default());
                held.extend_from_slice(&buf[..scan.ready]);
                buf.advance(scan.ready);
            } else {
                if !held.is_empty() {
                    held.extend_from_slice(scan.notices.as_deref().unwrap_or_default());
                    held.extend_from_slice(&buf[..scan.ready]);
                    cw.write_all_now(&std::mem::take(&mut held))
                        .await
                        .map_err(SessionError::ClientIo)?;
                } else {
                    if let Some(notices) = &scan.notices {
                        cw.write_all_now(notices)
                            .await
                            .map_err(SessionError::ClientIo)?;
                    }
                    if scan.ready > 0 {
                        cw.write_all_now(&buf[..scan.ready])
                            .await
                            .map_err(SessionError::ClientIo)?;
                    }
                }
                buf.advance(scan.ready);
            }
            if let Some((frame, original)) = scan.replace {
                cw.write_all_now(&frame)
                    .await
                    .map_err(SessionError::ClientIo)?;
                buf.advance(original);
            }
            buf.advance(scan.discard);
            if scan.audit_frame {
                // Everything before this answer is on its way; its audit record goes to disk
                // before the answer reaches the client.
                cw.flush_now().await.map_err(SessionError::ClientIo)?;
                Box::pin(audit_answer(state, audit, buf)).await;
                audited_front = true;
                continue;
            }
            cw.flush_now().await.map_err(SessionError::ClientIo)?;
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
        }
        if !held.is_empty() {
            cw.write_all_now(&std::mem::take(&mut held))
                .await
                .map_err(SessionError::ClientIo)?;
        }
        tokio::select! {
            // Fixed order: a random one costs a random number per poll.
            biased;
            _ = poll_fn(|cx| replay_ready.poll_if(cx, ctx.replay_posted.load(Ordering::Acquire))) => {
                replay_ready.set(ctx.replay_ready.notified());
            }
            r = read_idle(sr, buf) => match r {
                Ok(0) => return Ok(End::ServerGone),
                Ok(_) => {}
                Err(e) => return Err(SessionError::ServerIo(e)),
            },
            // Completes once; `shutting_down` keeps it from being polled again.
            changed = poll_fn(|cx| {
                shutdown_changed.poll_if(cx, shutdown_seen.has_changed().unwrap_or(true))
            }), if !shutting_down => {
                // A dropped sender also means shutdown: the proxy is gone.
                let _ = changed;
                shutting_down = true;
                timer = Some(Box::pin(sleep_until(Instant::now() + grace)));
                let mut st = lock(state);
                if authenticated && st.pending == 0 && st.tx_status == TxStatus::Idle
                    && st.injecting.is_none()
                {
                    st.closing = true;
                    return Ok(End::ShutdownIdle);
                }
            }
            _ = poll_fn(|cx| timer.as_mut().map_or(Poll::Pending, |t| t.as_mut().poll(cx))),
                if shutting_down || !authenticated => {
                lock(state).closing = true;
                return Ok(if shutting_down { End::GraceExpired } else { End::StartupTimeout });
            }
        }
    }
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
            replay_posted: AtomicBool::new(false),
            audit_id: String::new(),
            audit_mark: Default::default(),
            peer: "127.0.0.1:1".parse().unwrap(),
            client_tls: false,
            activity: crate::admin::activity::Slot::detached(),
        }
    }

    fn state() -> State {
        State {
            auth_ok: true,
            ..State::new(String::new())
        }
    }

    /// What every connection's task holds for its whole life, idle or not: the session future.
    /// Whatever sits inline in it is memory per idle connection (BENCHMARKS.md, idle memory).
    /// A 16 KiB drain buffer declared inside `linger` once doubled that figure unnoticed; a
    /// large local belongs on the heap, allocated when it is needed.
    #[tokio::test]
    async fn the_session_future_stays_small() {
        let shared = Arc::new(
            Shared::new(
                Arc::new(Config::default()),
                Arc::new(Recorder::default()),
                crate::audit::AuditHandle::disabled(),
            )
            .unwrap(),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (_stop, rx) = watch::channel(false);
        let session = run(shared, Conn::Plain(client), addr, None, rx.clone(), 1);
        let size = std::mem::size_of_val(&session);
        // The two direction loops, which the forwarding phase holds.
        let (mut a, mut b) = (
            Conn::Plain(tokio::net::TcpStream::connect(addr).await.unwrap()),
            Conn::Plain(tokio::net::TcpStream::connect(addr).await.unwrap()),
        );
        let ((mut cr, mut cw), (mut sr, mut sw)) = (split(&mut a), split(&mut b));
        let (c, st) = (
            ctx(Arc::new(Recorder::default()), false),
            Mutex::new(state()),
        );
        let (mut cbuf, mut sbuf, mut side) =
            (BytesMut::new(), BytesMut::new(), ClientSide::default());
        let (mut shutdown, mut audit) = (rx, None);
        let c2s = client_to_server(&c, &st, &mut cr, &mut sw, &mut cbuf, &mut side);
        let s2c = server_to_client(
            &c,
            &st,
            &mut sr,
            &mut cw,
            &mut sbuf,
            &mut shutdown,
            Instant::now(),
            &mut audit,
        );
        eprintln!(
            "session future: {size} bytes (of it: State {}, Ctx {}, ClientSide {}, Conn {}, \
             client→server loop {}, server→client loop {})",
            std::mem::size_of::<State>(),
            std::mem::size_of::<Ctx>(),
            std::mem::size_of::<ClientSide>(),
            std::mem::size_of::<Conn>(),
            std::mem::size_of_val(&c2s),
            std::mem::size_of_val(&s2c),
        );
        assert!(
            size <= SESSION_FUTURE_BOUND,
            "the session future is {size} bytes"
        );
    }

    /// The bound for [`the_session_future_stays_small`], in a debug build (the test profile):
    /// 3,776 bytes on 2026-12-02 (7,984 before the plans, held requests and injected lookups
    /// that an idle session does not have moved behind a `Box`; 5,968 before the start-up
    /// phase moved to the heap and the guard was built at its first use), plus room for a few
    /// more locals.
    const SESSION_FUTURE_BOUND: usize = 4608;

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
            replay_posted: AtomicBool::new(false),
            audit_id: String::new(),
            audit_mark: Default::default(),
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
}
