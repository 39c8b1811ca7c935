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
//! # Next issue: rewriting and injected statements (design, not built yet)
//! (a) Rewriting: the client-side scan already stops at every `Q`/`P` with the whole frame in
//! the buffer. A verdict `Replace(text)` would make the scan return "forward `buf[..pos]`, then
//! this re-encoded frame, then skip the original": the write step becomes a short list of
//! slices (prefix, new frame, rest) sent with `write_vectored`. A replaced `Parse` is recorded
//! by statement name (and for the unnamed statement, until the next unnamed `Parse`); a `Bind`
//! whose source statement is marked "parameters stripped" is re-encoded with zero parameters
//! (formats kept empty), which needs the full Bind decode already in `protocol::frontend`.
//!
//! (b) Injecting: `State` gets a queue of expected replies (`VecDeque<Expect>`) owned by the
//! session, not the client. At a ReadyForQuery with `pending == 0` (every client request
//! answered, status not `E`), the server→client side may push its own Parse/Bind/Execute/Sync
//! to the server (through a channel to the side that owns the server writer, or by having the
//! server→client side own the writer during the injection), append `Expect::Injected` entries,
//! and swallow server frames until that injection's ReadyForQuery, handing the rows to the
//! requester. Client bytes that arrive meanwhile stay buffered: the client→server side waits
//! while `State::injecting` is set. Because `pending` already counts client syncs, the
//! condition "no client request outstanding" is one comparison.
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{watch, OwnedSemaphorePermit};
use tokio::time::{sleep_until, Instant};
use tracing::{debug, info, warn};

use super::hook::{ProtocolPath, SessionView, TxStatus, Verdict};
use super::stream::{split, Conn, ReadHalf, WriteHalf};
use super::{upstream, Shared};
use crate::protocol::errors::{self, PgError};
use crate::protocol::frame::{check_header, Origin};
use crate::protocol::startup::{check_startup, parse_startup, StartupMessage, StartupRequest};
use crate::protocol::{auth, backend, frontend, negotiate, ProtocolError};

/// Initial capacity of each direction's read buffer; it grows for large messages and is
/// given back once they are forwarded, to keep idle sessions small.
const INITIAL_BUF: usize = 8 * 1024;
/// A buffer that grew past this is replaced by a fresh small one once empty.
const SHRINK_ABOVE: usize = 64 * 1024;
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
    /// ParameterStatus values the hook sees.
    application_name: String,
    server_version: String,
    client_encoding: String,
    standard_conforming_strings: bool,
    /// From BackendKeyData; kept for logs (the client gets the message unchanged).
    backend_pid: i32,
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
}

/// Everything the session knows that does not change after startup.
struct Ctx {
    shared: Arc<Shared>,
    id: u64,
    user: String,
    database: String,
    /// True when the server leg is TLS: SCRAM-SHA-256-PLUS must not be offered to the client.
    strip_plus: bool,
}

/// Runs one client connection to its end. Never panics on client or server bytes.
pub(crate) async fn run(
    shared: Arc<Shared>,
    tcp: TcpStream,
    peer: SocketAddr,
    permit: Option<OwnedSemaphorePermit>,
    mut shutdown: watch::Receiver<bool>,
    id: u64,
) {
    let startup_deadline = Instant::now() + shared.config.server.startup_timeout;
    let mut slot = Some(Conn::Plain(tcp));
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
            return;
        }
        Ok(Err(NegotiateEnd::Quiet)) => return,
        Ok(Err(NegotiateEnd::Error(e))) => {
            warn!(session = id, %peer, "closing connection: {}", e.message);
            farewell(&mut client, &e).await;
            return;
        }
        Ok(Err(NegotiateEnd::Cancel(raw))) => {
            // Cancels are honoured even when the proxy is full, as PostgreSQL does.
            if let Err(e) = upstream::send_cancel(&shared, &raw).await {
                warn!(session = id, %peer, "could not forward cancel request: {e}");
            }
            return;
        }
        Ok(Ok(m)) => m,
    };
    let Some(_permit) = permit else {
        let max = shared.config.server.max_connections;
        warn!(session = id, %peer, "refusing connection: max_connections ({max}) reached");
        farewell(&mut client, &errors::too_many_connections(max)).await;
        return;
    };
    if *shutdown.borrow() {
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

    let upstream_name = &shared.config.server.upstream;
    let connected = tokio::time::timeout_at(startup_deadline, upstream::connect(&shared)).await;
    let mut server = match connected {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            warn!(session = id, %peer, "cannot reach upstream {upstream_name}: {e}");
            farewell(
                &mut client,
                &errors::upstream_unreachable(upstream_name, &e.to_string()),
            )
            .await;
            return;
        }
        Err(_) => {
            warn!(session = id, %peer, "cannot reach upstream {upstream_name}: startup_timeout");
            farewell(
                &mut client,
                &errors::upstream_unreachable(upstream_name, "startup_timeout expired"),
            )
            .await;
            return;
        }
    };
    let mut packet = BytesMut::new();
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
    let database = startup.param("database").unwrap_or(&user).to_owned();
    let state = Mutex::new(State {
        tx_status: TxStatus::Idle,
        pending: 0,
        closing: false,
        application_name: startup.param("application_name").unwrap_or("").to_owned(),
        server_version: String::new(),
        client_encoding: String::new(),
        standard_conforming_strings: true,
        backend_pid: 0,
    });
    let ctx = Ctx {
        shared: shared.clone(),
        id,
        user,
        database,
        strip_plus: server.is_tls(),
    };
    debug!(session = id, %peer, user = %ctx.user, database = %ctx.database,
           client_tls = client.is_tls(), server_tls = server.is_tls(), "session started");
    drop(startup);

    // Whatever the client sent after its startup packet (pipelining clients do) stays in `buf`.
    let mut cbuf = buf;
    let mut sbuf = BytesMut::with_capacity(INITIAL_BUF);
    let outcome = {
        let (mut cr, mut cw) = split(&mut client);
        let (mut sr, mut sw) = split(&mut server);
        let mut client_side = ClientSide::default();
        let c2s = client_to_server(&ctx, &state, &mut cr, &mut sw, &mut cbuf, &mut client_side);
        let s2c = server_to_client(
            &ctx,
            &state,
            &mut sr,
            &mut cw,
            &mut sbuf,
            &mut shutdown,
            startup_deadline,
        );
        tokio::select! {
            r = c2s => r,
            r = s2c => r,
        }
    };
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
            None
        }
        Err(SessionError::ClientIo(e)) => {
            debug!(session = id, pid, "client connection ended: {e}");
            None
        }
        Err(SessionError::ServerIo(e)) => {
            warn!(session = id, pid, "lost upstream connection: {e}");
            Some(errors::upstream_lost(upstream_name, &e.to_string()))
        }
        Err(SessionError::ClientProtocol(e)) => {
            warn!(session = id, %peer, "closing connection: client protocol error: {e}");
            Some(errors::from_protocol(&e))
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
                let Some(acceptor) = &shared.acceptor else {
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
    /// Named prepared statements: name → SQL text (DESIGN.md decision 8).
    prepared: std::collections::HashMap<Vec<u8>, String>,
}

/// What one scan of the client buffer found.
struct ClientScan {
    /// Bytes at the front of the buffer that may be forwarded now.
    ready: usize,
    /// Bytes the buffer must hold before the next frame can be decoded (0 = any amount).
    need: usize,
    /// A Terminate was among the forwarded frames.
    terminate: bool,
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
            let scan = {
                let mut st = lock(state);
                if st.closing {
                    return Ok(End::Closing);
                }
                scan_client(ctx, &mut st, side, buf).map_err(SessionError::ClientProtocol)?
            };
            if scan.ready > 0 {
                sw.write_all(&buf[..scan.ready])
                    .await
                    .map_err(SessionError::ServerIo)?;
                sw.flush().await.map_err(SessionError::ServerIo)?;
                buf.advance(scan.ready);
            }
            if scan.terminate {
                return Ok(End::ClientGone);
            }
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

/// Makes room for the next read: at least `need` bytes in total, else a normal chunk; gives
/// memory back after a large message.
fn prepare_read(buf: &mut BytesMut, need: usize) {
    if buf.is_empty() && buf.capacity() > SHRINK_ABOVE && need <= INITIAL_BUF {
        *buf = BytesMut::with_capacity(INITIAL_BUF);
        return;
    }
    let want = need.saturating_sub(buf.len()).max(1024);
    if buf.capacity() - buf.len() < want {
        buf.reserve(want.max(INITIAL_BUF));
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
        let decode = matches!(h.tag, b'Q' | b'P' | b'C');
        let avail = buf.len() - pos;
        if decode && avail < h.total {
            out.need = h.total;
            break;
        }
        let body = &buf[pos + 5..pos + h.total.min(avail)];
        match h.tag {
            b'Q' => {
                let q = frontend::decode_query(body)?;
                inspect(ctx, st, side, q.sql, ProtocolPath::Simple);
                forget_deallocated(side, q.sql);
                st.pending += 1;
            }
            b'P' => {
                let p = frontend::decode_parse(body)?;
                let name = String::from_utf8_lossy(p.name);
                inspect(
                    ctx,
                    st,
                    side,
                    p.sql,
                    ProtocolPath::Extended { statement: &name },
                );
                side.in_pipeline = true;
                forget_deallocated(side, p.sql);
                if !p.name.is_empty() {
                    let sql = String::from_utf8_lossy(p.sql).into_owned();
                    side.prepared.insert(p.name.to_vec(), sql);
                }
            }
            b'C' => {
                if let frontend::Close::Statement(name) = frontend::decode_close(body)? {
                    side.prepared.remove(name);
                }
                side.in_pipeline = true;
            }
            b'B' | b'E' | b'D' | b'H' => side.in_pipeline = true,
            b'S' => {
                side.in_pipeline = false;
                st.pending += 1;
            }
            b'F' => st.pending += 1,
            b'X' => out.terminate = true,
            _ => {}
        }
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

/// Passes one statement text through the hook with the session's current view.
fn inspect(ctx: &Ctx, st: &State, side: &ClientSide, sql: &[u8], path: ProtocolPath<'_>) {
    // The hook takes text; non-UTF-8 client encodings are shown lossily (no allocation for UTF-8).
    let text = String::from_utf8_lossy(sql);
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
    match ctx.shared.hook.inspect(&view, &text, path) {
        Verdict::Forward => {}
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
) -> Result<End, SessionError> {
    let mut skip = 0usize;
    let mut authenticated = false;
    let mut shutting_down = *shutdown.borrow();
    let grace = ctx.shared.config.server.shutdown_grace;
    let mut grace_deadline = Instant::now() + grace;
    loop {
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
                )
                .map_err(SessionError::ServerProtocol)?;
                if scan.idle_stop {
                    st.closing = true;
                }
                scan
            };
            if scan.ready > 0 {
                cw.write_all(&buf[..scan.ready])
                    .await
                    .map_err(SessionError::ClientIo)?;
                buf.advance(scan.ready);
            }
            if let Some((frame, original)) = scan.replace {
                cw.write_all(&frame).await.map_err(SessionError::ClientIo)?;
                buf.advance(original);
            }
            cw.flush().await.map_err(SessionError::ClientIo)?;
            if scan.idle_stop {
                return Ok(End::ShutdownIdle);
            }
            if !buf.is_empty() && scan.need == 0 && scan.ready > 0 {
                // More complete frames may follow a replaced one; scan again before reading.
                continue;
            }
            prepare_read(buf, scan.need);
        } else {
            prepare_read(buf, 0);
        }
        tokio::select! {
            r = sr.read_buf(buf) => match r {
                Ok(0) => return Ok(End::ServerGone),
                Ok(_) => {}
                Err(e) => return Err(SessionError::ServerIo(e)),
            },
            changed = shutdown.changed(), if !shutting_down => {
                // A dropped sender also means shutdown: the proxy is gone.
                let _ = changed;
                shutting_down = true;
                grace_deadline = Instant::now() + grace;
                let mut st = lock(state);
                if authenticated && st.pending == 0 && st.tx_status == TxStatus::Idle {
                    st.closing = true;
                    return Ok(End::ShutdownIdle);
                }
            }
            _ = sleep_until(grace_deadline), if shutting_down => {
                lock(state).closing = true;
                return Ok(End::GraceExpired);
            }
            _ = sleep_until(startup_deadline), if !authenticated => {
                lock(state).closing = true;
                return Ok(End::StartupTimeout);
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
) -> Result<ServerScan, ProtocolError> {
    let limits = ctx.shared.limits;
    let mut out = ServerScan {
        ready: 0,
        need: 0,
        replace: None,
        idle_stop: false,
    };
    let mut pos = 0;
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
        let decode = matches!(h.tag, b'Z' | b'S' | b'K') || (h.tag == b'R' && !*authenticated);
        let avail = buf.len() - pos;
        if decode && avail < h.total {
            out.need = h.total;
            break;
        }
        if !decode {
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
                    b"client_encoding" => st.client_encoding = value.into_owned(),
                    b"application_name" => st.application_name = value.into_owned(),
                    b"standard_conforming_strings" => {
                        st.standard_conforming_strings = value == "on"
                    }
                    _ => {}
                }
            }
            b'K' => st.backend_pid = backend::decode_backend_key_data(body)?.pid,
            b'R' if ctx.strip_plus && auth::decode_auth_code(body)? == auth::AUTH_SASL => {
                if let Some(frame) = auth::strip_scram_plus(body)? {
                    out.replace = Some((frame, h.total));
                    break;
                }
            }
            _ => {}
        }
        pos += h.total;
    }
    out.ready = pos;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

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
