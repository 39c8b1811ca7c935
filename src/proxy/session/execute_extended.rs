//! Safe execution for the extended protocol: a lock-taking DDL sent as Parse/Bind/Execute/Sync
//! (psycopg 3 with parameters or `prepare=True`, asyncpg's named statements, pg8000) runs under
//! the executor exactly as a simple Query does: its class's timeouts, the savepoint and retries,
//! blockers named, one answer; or, with a multi-step safe form, as its steps.
//!
//! # Which requests
//! A request is every message from one Sync to the next. pgwarden runs one under the executor
//! when it starts with the DDL's Parse or with the Bind of a prepared DDL statement (so nothing
//! of it was sent yet and every earlier request can be waited for), and holds nothing but
//! `[Parse] Bind [Describe] Execute Sync`: one Execute, of the portal its Bind created from that
//! statement. A request that only prepares (`Parse [Describe] Sync`, asyncpg's and pg8000's first
//! round trip) is decided as one that will run under the executor: its Bind is, in the next
//! request.
//!
//! The whole request must be in pgwarden's buffer before the enforcer decides, so pgwarden
//! reads on to its Sync ([`look_ahead`]). That cannot wait for nothing: the server answers no
//! part of a request before its Sync or a Flush either, so a client waiting for an answer has
//! sent one of them. A Flush (the client reads answers as they come), a second Execute (a
//! psycopg 3 pipeline: several statements before one Sync, which the server runs in one implicit
//! transaction), any other message, or more than [`MAX_LOOKAHEAD`] bytes: the request is
//! forwarded as it arrives, nothing is injected into it, and the log and the statement's audit
//! record say so (DESIGN.md decision 7: injected statements only at sync points).
//!
//! # Multi-step rewrites
//! A held request whose statement has a multi-step safe form (`rewrite.rs`) runs as its steps
//! instead of its Execute: the same driver as for a simple Query, the same completion steps
//! inside a transaction block, one answer in the shape of the request ([`run_steps`]). A request
//! that only prepares such a statement sends its Parse as the client wrote it, so the client's
//! statement cache and the server agree, and the Bind that executes it is decided again and
//! taken over.
//!
//! # Retries
//! A retry sends the client's request again. PostgreSQL keeps a named prepared statement when
//! the transaction or savepoint that created it rolls back, so parsing it again would fail
//! (42P05): a later attempt first closes the named statement and portal the request creates,
//! and the CloseComplete answers of those Close messages are taken out of the reply. The client
//! gets the reply of the attempt that ran, as from a direct run.
use std::sync::Mutex;

use bytes::{Buf, BufMut, BytesMut};

use super::execute::{ClientStatement, Pending};
use super::rewrite::{Completion, MultiPending};
use super::{ClientSide, Ctx, SessionError, State};
use crate::protocol::frame::{check_header, FrameLimits, Origin};
use crate::protocol::{frontend, ProtocolError};
use crate::proxy::stream::{ReadHalf, WriteHalf};

/// Longest request pgwarden holds whole to run it under the executor. DDL requests are a few
/// hundred bytes; a larger one carries data, and is forwarded as it comes.
pub(super) const MAX_LOOKAHEAD: usize = 64 * 1024;

/// What the request at the front of the client's buffer is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Lookahead {
    /// `[Parse] Bind [Describe] Execute Sync`: it runs under the executor.
    Runs(Shape),
    /// `Parse [Describe] Sync`: prepares a statement that a later request executes.
    Prepares,
    /// Forwarded as it comes, without injection: why.
    Not(&'static str),
}

/// The names a request creates, closed before it is sent again.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Shape {
    /// Answers to messages of the same request that went before it (see [`barrier`]), owed to
    /// the client before the request's own.
    owed: BytesMut,
    /// A named statement the request parses.
    statement: Option<Vec<u8>>,
    /// A named portal its Bind creates.
    portal: Option<Vec<u8>>,
}

/// Reads the request at the front of `buf` to its Sync; `None` = more bytes are needed.
pub(super) fn classify(
    buf: &[u8],
    limits: &FrameLimits,
) -> Result<Option<Lookahead>, ProtocolError> {
    let mut pos = 0;
    let mut parsed: Option<Vec<u8>> = None;
    let mut bound: Option<Vec<u8>> = None;
    let mut executed = false;
    loop {
        let Some(h) = check_header(&buf[pos..], limits, Origin::Client)? else {
            return Ok((pos >= MAX_LOOKAHEAD).then_some(Lookahead::Not(TOO_LONG)));
        };
        if pos + h.total > MAX_LOOKAHEAD {
            return Ok(Some(Lookahead::Not(TOO_LONG)));
        }
        if buf.len() - pos < h.total {
            return Ok(None);
        }
        let body = &buf[pos + 5..pos + h.total];
        match h.tag {
            b'P' if pos == 0 => parsed = Some(frontend::decode_parse(body)?.name.to_vec()),
            b'B' if bound.is_none() => {
                let b = frontend::decode_bind(body)?;
                if parsed.as_deref().is_some_and(|p| p != b.statement) {
                    return Ok(Some(Lookahead::Not(OTHER_STATEMENT)));
                }
                // The executor's own simple Queries (SAVEPOINT, ROLLBACK TO) would destroy
                // an unnamed statement parsed before this request.
                if parsed.is_none() && b.statement.is_empty() {
                    return Ok(Some(Lookahead::Not(UNNAMED)));
                }
                bound = Some(b.portal.to_vec());
            }
            b'D' => {}
            b'E' if !executed => {
                let Some(portal) = &bound else {
                    return Ok(Some(Lookahead::Not(OTHER_STATEMENT)));
                };
                let (name, max_rows) = decode_execute(body)?;
                if name != portal.as_slice() || max_rows != 0 {
                    return Ok(Some(Lookahead::Not(OTHER_STATEMENT)));
                }
                executed = true;
            }
            b'S' => {
                return Ok(Some(match (parsed, bound, executed) {
                    (statement, Some(portal), true) => Lookahead::Runs(Shape {
                        statement: statement.filter(|s| !s.is_empty()),
                        portal: Some(portal).filter(|p| !p.is_empty()),
                        owed: BytesMut::new(),
                    }),
                    (Some(_), None, false) => Lookahead::Prepares,
                    _ => Lookahead::Not(OTHER_STATEMENT),
                }));
            }
            // asyncpg prepares with Parse/Describe/Flush and binds after reading the answers:
            // the statement runs in the Bind/Execute/Sync that follows (see `barrier`).
            b'H' if parsed.is_some() && bound.is_none() => return Ok(Some(Lookahead::Prepares)),
            b'H' => return Ok(Some(Lookahead::Not(FLUSH))),
            b'P' | b'B' | b'E' => return Ok(Some(Lookahead::Not(PIPELINE))),
            _ => return Ok(Some(Lookahead::Not(OTHER_STATEMENT))),
        }
        pos += h.total;
    }
}

const TOO_LONG: &str = "the extended-protocol request is longer than pgwarden holds whole";
const OTHER_STATEMENT: &str =
    "the extended-protocol request does more than bind and execute this one statement";
const UNNAMED: &str = "the request executes the unnamed statement of an earlier request, which \
     pgwarden's own statements would destroy";
const FLUSH: &str = "the client sent a Flush before its Sync and reads the answers as they come";
/// Also said for a statement that is not the first of its request (session.rs).
pub(super) const PIPELINE: &str =
    "inside an unsynced extended-protocol pipeline (several statements before one Sync, run \
     in one implicit transaction): pgwarden injects nothing there";

/// Execute's portal name and row limit.
fn decode_execute(body: &[u8]) -> Result<(&[u8], i32), ProtocolError> {
    let malformed = || ProtocolError::malformed("Execute", "bad body");
    let nul = body.iter().position(|&b| b == 0).ok_or_else(malformed)?;
    let rows = body
        .get(nul + 1..nul + 5)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .ok_or_else(malformed)?;
    Ok((&body[..nul], i32::from_be_bytes(rows)))
}

/// Before the enforcer decides on the Parse/Bind at the front of `buf`: when it starts a request
/// that could run under the executor, reads the client's request to its Sync (see the module
/// docs) and says what it is. `Ok(None)`: the client went away meanwhile.
pub(super) async fn look_ahead(
    ctx: &Ctx,
    cr: &mut ReadHalf<'_>,
    buf: &mut BytesMut,
) -> Result<Option<Lookahead>, SessionError> {
    use tokio::io::AsyncReadExt;
    loop {
        if let Some(l) = classify(buf, &ctx.shared.limits).map_err(SessionError::ClientProtocol)? {
            return Ok(Some(l));
        }
        if buf.capacity() - buf.len() < 1024 {
            buf.reserve(4096);
        }
        match cr.read_buf(buf).await {
            Ok(0) => return Ok(None),
            Ok(_) => {}
            Err(e) => return Err(SessionError::ClientIo(e)),
        }
    }
}

/// The enforcer is about to decide on the Parse/Bind at the front of `buf`: when it is the
/// first message of a request and pgwarden runs statements under the executor, reads the
/// request to its Sync and leaves what it is in `side.extended` for the decision.
/// `Ok(false)`: the client went away meanwhile.
pub(super) async fn prepare(
    ctx: &Ctx,
    state: &Mutex<State>,
    side: &mut ClientSide,
    cr: &mut ReadHalf<'_>,
    sw: &mut WriteHalf<'_>,
    buf: &mut BytesMut,
) -> Result<Prepared, SessionError> {
    side.extended = None;
    let executes = ctx.shared.config.execute.enabled
        && super::guard_of(&mut side.guard, ctx).is_some_and(|g| g.executes());
    // A Bind may follow messages that executed nothing (asyncpg's Parse/Describe/Flush).
    let first = match buf.first() {
        Some(b'P') => !side.in_pipeline,
        Some(b'B') => !side.executed,
        _ => false,
    };
    // A Bind inside a request already held (its Parse was the first message) is part of it.
    if !first || !executes || side.holding.is_some() {
        return Ok(Prepared::Decide);
    }
    match look_ahead(ctx, cr, buf).await? {
        None => Ok(Prepared::ClientGone),
        Some(Lookahead::Runs(mut shape)) if side.in_pipeline => {
            if !barrier(ctx, state, side, sw, buf, &mut shape).await? {
                return Ok(Prepared::Answered);
            }
            side.extended = Some(Box::new(Lookahead::Runs(shape)));
            Ok(Prepared::Decide)
        }
        Some(l) => {
            side.extended = Some(Box::new(l));
            Ok(Prepared::Decide)
        }
    }
}

/// What [`prepare`] left to do.
pub(super) enum Prepared {
    /// The enforcer decides on the message at the front of the buffer.
    Decide,
    /// The request was answered without being sent (see [`barrier`]): scan on.
    Answered,
    /// The client went away.
    ClientGone,
}

/// The scan reached the Parse/Bind the decision was about (at `pos` in the buffer): if the
/// decision planned to run its request under the executor, the request is held from here to
/// its Sync. The plan is used up either way (it is for this message only).
pub(super) fn hold(side: &mut ClientSide, pos: usize) {
    let run = match (side.exec.take(), side.multi.take()) {
        (_, Some(m)) => Some(HeldRun::Steps(m)),
        (Some(p), None) => Some(HeldRun::Executor(*p)),
        (None, None) => None,
    };
    let extended = side.extended.take().map(|l| *l);
    let first = !side.in_pipeline;
    if let (Some(run), Some(Lookahead::Runs(shape)), 0, true, None) =
        (run, extended, pos, first, side.holding.as_ref())
    {
        side.holding = Some(Box::new(Held::new(run, shape)));
    }
}

/// Why a prepared DDL statement is not run under the executor, when the request it is in could
/// not be (said in the log and the audit record); `None` when it is, or when nothing would
/// have been set for it anyway (`would_plan`).
pub(super) fn not_run_reason(
    extended: Option<&Lookahead>,
    in_pipeline: bool,
    would_plan: bool,
) -> Option<&'static str> {
    if !would_plan {
        return None;
    }
    match extended {
        Some(Lookahead::Not(why)) => Some(why),
        None if in_pipeline => Some(PIPELINE),
        _ => None,
    }
}

/// The request is run under the executor now (or, for a request that only prepares, at the
/// Bind that executes the statement): the decision may count on pgwarden's timeouts.
pub(super) fn runs(extended: Option<&Lookahead>) -> bool {
    matches!(extended, Some(Lookahead::Runs(_) | Lookahead::Prepares))
}

/// Only this request runs under the executor; a request that only prepares does not.
pub(super) fn runs_now(extended: Option<&Lookahead>) -> bool {
    matches!(extended, Some(Lookahead::Runs(_)))
}

/// A request held from its first frame to its Sync, then run under the executor or as the
/// steps of a multi-step rewrite.
pub(super) struct Held {
    run: HeldRun,
    /// The frames as pgwarden would have forwarded them (a rewritten Parse, a Bind without
    /// parameters): what the server gets.
    pub(super) frames: BytesMut,
    shape: Shape,
}

/// How a held request runs.
enum HeldRun {
    /// The client's request, under the executor's timeouts and retries.
    Executor(Pending),
    /// The statement's safe steps in place of its execution (`rewrite.rs`).
    Steps(Box<MultiPending>),
}

impl Held {
    fn new(run: HeldRun, shape: Shape) -> Held {
        Held {
            run,
            frames: BytesMut::new(),
            shape,
        }
    }

    /// The audit record's `seq` of the statement the request executes.
    pub(super) fn set_seq(&mut self, seq: u64) {
        match &mut self.run {
            HeldRun::Executor(p) => p.seq = seq,
            HeldRun::Steps(m) => m.seq = seq,
        }
    }
}

/// The first attempt sends the request; later ones close what it created first.
fn client_statement(shape: &Shape, frames: BytesMut) -> ClientStatement {
    let owed = shape.owed.clone();
    let mut again = BytesMut::new();
    let mut closes = 0;
    for (kind, name) in [(b'P', &shape.portal), (b'S', &shape.statement)] {
        if let Some(name) = name {
            encode_close(kind, name, &mut again);
            closes += 1;
        }
    }
    again.extend_from_slice(&frames);
    ClientStatement {
        first: frames,
        again,
        closes,
        owed,
    }
}

/// A Sync of pgwarden's own (the barrier's).
pub(super) const SYNC: [u8; 5] = [b'S', 0, 0, 0, 4];

/// Runs a held request under the executor, or as its statement's steps (`completion`: what
/// this transaction's COMMIT owes).
pub(super) async fn run(
    ctx: &Ctx,
    state: &Mutex<State>,
    sw: &mut WriteHalf<'_>,
    held: Held,
    completion: &mut Completion,
) -> Result<(), SessionError> {
    let Held { run, frames, shape } = held;
    match run {
        HeldRun::Executor(pending) => {
            let client = client_statement(&shape, frames);
            super::execute::run(ctx, state, sw, pending, client).await
        }
        HeldRun::Steps(m) => run_steps(ctx, state, sw, *m, &shape, &frames, completion).await,
    }
}

/// Runs the statement a held request executes as its multi-step rewrite, through the one
/// driver of the simple Query (`rewrite.rs`), and answers the request as the server would
/// have: what its Parse and statement Describe get (they are sent, so the client's prepared
/// statement exists on the server as the client believes), BindComplete, NoData for the
/// portal's Describe (a DDL statement returns no rows), the steps' CommandComplete or error,
/// ReadyForQuery.
///
/// The client's Bind and Execute are never sent: its portal does not exist on the server
/// afterwards (no client executes a finished DDL portal again), and an unnamed statement
/// parsed in the request is replaced by pgwarden's steps, as any simple Query would replace it.
async fn run_steps(
    ctx: &Ctx,
    state: &Mutex<State>,
    sw: &mut WriteHalf<'_>,
    m: MultiPending,
    shape: &Shape,
    frames: &[u8],
    completion: &mut Completion,
) -> Result<(), SessionError> {
    let messages = request_messages(frames);
    let mut prepare = BytesMut::new();
    for msg in &messages {
        if matches!(msg.kind, Kind::Parse | Kind::DescribeStatement) {
            prepare.extend_from_slice(&frames[msg.at.clone()]);
        }
    }
    let mut prepared = BytesMut::new();
    if !prepare.is_empty() {
        prepare.extend_from_slice(&SYNC);
        let reply = super::execute::send(state, sw, &prepare, false).await?;
        if reply.error.is_some() {
            // The server would have skipped the rest of the request up to its Sync.
            let mut answer = shape.owed.clone();
            answer.extend_from_slice(&reply.into_answer());
            leave(ctx, state, answer);
            return Ok(());
        }
        prepared = reply.frames;
    }
    let steps = super::rewrite::answer(ctx, state, sw, &m, completion).await?;
    let mut answer = shape.owed.clone();
    answer.extend_from_slice(&extended_answer(&messages, &prepared, &steps));
    leave(ctx, state, answer);
    Ok(())
}

/// Hands the answer to the server→client side, which replays it as the server's.
fn leave(ctx: &Ctx, state: &Mutex<State>, answer: BytesMut) {
    super::lock(state).replay = Some(answer);
    ctx.post_replay();
}

/// The kinds of message a held request holds (`classify` admits no others).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Parse,
    Bind,
    DescribeStatement,
    DescribePortal,
    Execute,
    Sync,
}

/// One message of a held request: its kind and where its frame is.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Message {
    kind: Kind,
    at: std::ops::Range<usize>,
}

/// The messages of a held request, in order (frames pgwarden itself held whole, cut by their
/// length).
fn request_messages(frames: &[u8]) -> Vec<Message> {
    frame_list(frames)
        .into_iter()
        .filter_map(|at| {
            let kind = match frames.get(at.start)? {
                b'P' => Kind::Parse,
                b'B' => Kind::Bind,
                b'D' if frames.get(at.start + 5) == Some(&b'S') => Kind::DescribeStatement,
                b'D' => Kind::DescribePortal,
                b'E' => Kind::Execute,
                b'S' => Kind::Sync,
                _ => return None,
            };
            Some(Message { kind, at })
        })
        .collect()
}

/// The answer to a held request whose Execute ran as steps: `prepared` holds the server's
/// answers to its Parse and statement Describe (sent ahead), `steps` the steps' answer as to a
/// simple Query (its frames, then ReadyForQuery). An error in the steps is the Execute's: the
/// server would skip the request's later messages up to its Sync.
fn extended_answer(messages: &[Message], prepared: &[u8], steps: &[u8]) -> BytesMut {
    const BIND_COMPLETE: [u8; 5] = [b'2', 0, 0, 0, 4];
    const NO_DATA: [u8; 5] = [b'n', 0, 0, 0, 4];
    let step_frames = frame_list(steps);
    let (ready, body) = match step_frames.split_last() {
        Some((last, rest)) if steps.get(last.start) == Some(&b'Z') => (last.clone(), rest),
        _ => (steps.len()..steps.len(), &step_frames[..]),
    };
    let failed = body.iter().any(|r| steps.get(r.start) == Some(&b'E'));
    let prepared_frames = frame_list(prepared);
    let mut prepared_frames = prepared_frames.iter();
    let mut out = BytesMut::new();
    let mut skipping = false;
    for msg in messages {
        if skipping && msg.kind != Kind::Sync {
            continue;
        }
        match msg.kind {
            Kind::Parse => {
                if let Some(r) = prepared_frames.next() {
                    out.extend_from_slice(&prepared[r.clone()]);
                }
            }
            Kind::DescribeStatement => {
                // ParameterDescription, then NoData or RowDescription.
                for r in prepared_frames.by_ref() {
                    out.extend_from_slice(&prepared[r.clone()]);
                    if matches!(prepared.get(r.start), Some(b'n' | b'T')) {
                        break;
                    }
                }
            }
            Kind::Bind => out.extend_from_slice(&BIND_COMPLETE),
            Kind::DescribePortal => out.extend_from_slice(&NO_DATA),
            Kind::Execute => {
                for r in body {
                    out.extend_from_slice(&steps[r.clone()]);
                }
                skipping = failed;
            }
            Kind::Sync => out.extend_from_slice(&steps[ready.clone()]),
        }
    }
    out
}

/// Where each whole frame of `bytes` is (a frame it cannot read ends the list).
fn frame_list(bytes: &[u8]) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut pos = 0;
    while let Some(header) = bytes.get(pos..pos + 5) {
        let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
        let end = pos + 1 + len;
        if len < 4 || end > bytes.len() {
            break;
        }
        out.push(pos..end);
        pos = end;
    }
    out
}

/// Makes the Bind at the front of `buf` the start of a request, when messages of the same
/// request went before it that executed nothing (asyncpg: Parse/Describe/Flush, then
/// Bind/Execute/Sync once it has read the answers).
///
/// pgwarden sends a Sync of its own: a barrier whose reply holds whatever the server still
/// owed for those messages, so that nothing pgwarden sends next (a catalog lookup, the
/// executor's steps) can be mistaken for theirs or they for its. It changes nothing on the
/// server: they executed nothing, so the Sync ends an implicit transaction that did nothing.
/// Their answers, if not forwarded yet, are passed on before the request's own (`owed`). If
/// one of them was an error, the server would have skipped the rest of the request up to its
/// Sync: the client gets that error and the barrier's ReadyForQuery for its Sync, and the rest
/// of the request is not sent. `Ok(false)`: answered so (the caller scans on).
async fn barrier(
    ctx: &Ctx,
    state: &Mutex<State>,
    side: &mut ClientSide,
    sw: &mut WriteHalf<'_>,
    buf: &mut BytesMut,
    shape: &mut Shape,
) -> Result<bool, SessionError> {
    super::wait_answered(ctx, state).await;
    let reply = super::execute::send(state, sw, &SYNC, false).await?;
    side.in_pipeline = false;
    side.parsed_this_request.clear();
    if reply.error.is_some() {
        let len = request_len(buf, &ctx.shared.limits).map_err(SessionError::ClientProtocol)?;
        buf.advance(len);
        side.request_dml.clear();
        {
            let mut st = super::lock(state);
            st.pending += 1;
            st.replay = Some(reply.into_answer());
        }
        ctx.post_replay();
        super::wait_answered(ctx, state).await;
        return Ok(false);
    }
    shape.owed = reply.frames;
    Ok(true)
}

/// A Close message for a statement (`S`) or portal (`P`), names as the client sent them (bytes:
/// they need not be UTF-8).
pub(super) fn encode_close(kind: u8, name: &[u8], out: &mut BytesMut) {
    out.put_u8(b'C');
    out.put_u32((4 + 1 + name.len() + 1) as u32);
    out.put_u8(kind);
    out.put_slice(name);
    out.put_u8(0);
}

/// Bytes from the front of `buf` to the end of its first Sync (the look-ahead saw it whole).
fn request_len(buf: &[u8], limits: &FrameLimits) -> Result<usize, ProtocolError> {
    let mut pos = 0;
    while let Some(h) = check_header(&buf[pos..], limits, Origin::Client)? {
        pos += h.total;
        if h.tag == b'S' {
            return Ok(pos.min(buf.len()));
        }
    }
    Err(ProtocolError::malformed("Sync", "request not complete"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut v = vec![tag];
        v.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
        v.extend_from_slice(body);
        v
    }

    fn parse(name: &str) -> Vec<u8> {
        msg(
            b'P',
            format!("{name}\0ALTER TABLE t ADD c int\0\0\0").as_bytes(),
        )
    }

    fn bind(portal: &str, stmt: &str) -> Vec<u8> {
        msg(b'B', format!("{portal}\0{stmt}\0\0\0\0\0\0\0").as_bytes())
    }

    fn execute(portal: &str, rows: i32) -> Vec<u8> {
        let mut b = format!("{portal}\0").into_bytes();
        b.extend_from_slice(&rows.to_be_bytes());
        msg(b'E', &b)
    }

    fn describe() -> Vec<u8> {
        msg(b'D', b"P\0")
    }

    fn sync() -> Vec<u8> {
        msg(b'S', b"")
    }

    fn classify_all(frames: &[Vec<u8>]) -> Option<Lookahead> {
        let wire: Vec<u8> = frames.concat();
        // Every prefix short of the Sync needs more bytes or is already decided.
        for cut in 0..wire.len() {
            if let Some(l) = classify(&wire[..cut], &FrameLimits::default()).unwrap() {
                assert!(!matches!(l, Lookahead::Runs(_)), "decided early at {cut}");
            }
        }
        classify(&wire, &FrameLimits::default()).unwrap()
    }

    #[test]
    fn requests_that_run_under_the_executor() {
        // psycopg 3 with parameters: unnamed P/B/D/E/S.
        assert_eq!(
            classify_all(&[parse(""), bind("", ""), describe(), execute("", 0), sync()]),
            Some(Lookahead::Runs(Shape::default()))
        );
        // prepare=True: a named statement, closed before a retry.
        assert_eq!(
            classify_all(&[parse("_pg3_0"), bind("", "_pg3_0"), execute("", 0), sync()]),
            Some(Lookahead::Runs(Shape {
                statement: Some(b"_pg3_0".to_vec()),
                portal: None,
                owed: BytesMut::new(),
            }))
        );
        // asyncpg: Bind/Execute/Sync of a statement prepared before, into a named portal.
        assert_eq!(
            classify_all(&[bind("p1", "__asyncpg_stmt_1__"), execute("p1", 0), sync()]),
            Some(Lookahead::Runs(Shape {
                statement: None,
                portal: Some(b"p1".to_vec()),
                owed: BytesMut::new(),
            }))
        );
        assert_eq!(
            classify_all(&[parse("s"), msg(b'D', b"Ss\0"), sync()]),
            Some(Lookahead::Prepares)
        );
        // asyncpg: Parse/Describe/Flush, reads the answers, then Bind/Execute/Sync.
        assert_eq!(
            classify_all(&[parse("s"), msg(b'D', b"Ss\0"), msg(b'H', b"")]),
            Some(Lookahead::Prepares)
        );
    }

    #[test]
    fn everything_else_is_forwarded_as_it_comes() {
        let pipeline = [
            parse(""),
            bind("", ""),
            execute("", 0),
            parse(""),
            bind("", ""),
            execute("", 0),
            sync(),
        ];
        assert_eq!(classify_all(&pipeline), Some(Lookahead::Not(PIPELINE)));
        let flush = [parse(""), bind("", ""), execute("", 0), msg(b'H', b"")];
        assert_eq!(classify_all(&flush), Some(Lookahead::Not(FLUSH)));
        // A Bind of another statement, a limited Execute, an Execute of another portal.
        for frames in [
            vec![parse("a"), bind("", "b"), execute("", 0), sync()],
            vec![parse(""), bind("", ""), execute("", 5), sync()],
            vec![bind("x", "s"), execute("y", 0), sync()],
            vec![msg(b'Q', b"select 1\0")],
        ] {
            assert_eq!(
                classify_all(&frames),
                Some(Lookahead::Not(OTHER_STATEMENT)),
                "{frames:?}"
            );
        }
        assert_eq!(
            classify_all(&[bind("", ""), execute("", 0), sync()]),
            Some(Lookahead::Not(UNNAMED))
        );
        // No Sync within the bound: decided without waiting for one.
        let mut big = b"\0\0\0\0\0\x01".to_vec();
        big.extend_from_slice(&(MAX_LOOKAHEAD as i32).to_be_bytes());
        big.extend_from_slice(&vec![b'x'; MAX_LOOKAHEAD]);
        big.extend_from_slice(b"\0\0");
        let long = vec![parse(""), msg(b'B', &big)];
        assert_eq!(classify_all(&long), Some(Lookahead::Not(TOO_LONG)));
        // Hostile bytes are an error, as in the scan.
        assert!(classify(&msg(b'P', b"x"), &FrameLimits::default()).is_err());
    }

    #[test]
    fn steps_answer_in_the_shape_of_the_request() {
        let complete = msg(b'C', b"ALTER TABLE\0");
        let ready = msg(b'Z', b"I");
        let steps = [complete.clone(), ready.clone()].concat();
        // psycopg 3: Parse/Bind/Describe(portal)/Execute/Sync; the Parse was sent ahead.
        let frames = [parse(""), bind("", ""), describe(), execute("", 0), sync()].concat();
        let messages = request_messages(&frames);
        let kinds: Vec<Kind> = messages.iter().map(|m| m.kind).collect();
        use Kind::*;
        assert_eq!(kinds, [Parse, Bind, DescribePortal, Execute, Sync]);
        assert_eq!(&frames[messages[0].at.clone()], &parse("")[..]);
        let prepared = msg(b'1', b"");
        let answer = extended_answer(&messages, &prepared, &steps);
        let expect = [
            msg(b'1', b""),
            msg(b'2', b""),
            msg(b'n', b""),
            complete.clone(),
            ready.clone(),
        ]
        .concat();
        assert_eq!(&answer[..], &expect[..]);
        // asyncpg after its Parse/Describe/Flush: Bind/Execute/Sync.
        let frames = [bind("", "s1"), execute("", 0), sync()].concat();
        let answer = extended_answer(&request_messages(&frames), b"", &steps);
        assert_eq!(&answer[..], &[msg(b'2', b""), complete, ready].concat()[..]);
    }

    #[test]
    fn a_failed_step_is_the_executes_error_and_skips_to_the_sync() {
        let error = msg(b'E', b"SERROR\0C23503\0Mviolates\0\0");
        let ready = msg(b'Z', b"I");
        let steps = [error.clone(), ready.clone()].concat();
        // A statement Describe before the Bind gets the server's own answers; a portal
        // Describe after the Execute is skipped, as the server would skip it.
        let frames = [
            parse("s"),
            msg(b'D', b"Ss\0"),
            bind("", "s"),
            execute("", 0),
            describe(),
            sync(),
        ]
        .concat();
        let prepared = [msg(b'1', b""), msg(b't', b"\0\0"), msg(b'n', b"")].concat();
        let answer = extended_answer(&request_messages(&frames), &prepared, &steps);
        let expect = [prepared.clone(), msg(b'2', b""), error, ready].concat();
        assert_eq!(&answer[..], &expect[..]);
        // Truncated bytes end the lists instead of panicking.
        assert!(request_messages(&frames[..frames.len() - 2]).len() == 5);
        assert!(frame_list(&[b'C', 0, 0, 0, 2]).is_empty());
    }

    #[test]
    fn retries_close_what_the_first_attempt_created() {
        let shape = Shape {
            statement: Some(b"s1".to_vec()),
            portal: Some(b"p1".to_vec()),
            owed: BytesMut::new(),
        };
        let frames = BytesMut::from(&[bind("p1", "s1"), execute("p1", 0), sync()].concat()[..]);
        let client = client_statement(&shape, frames);
        assert_eq!(client.closes, 2);
        let mut expect = msg(b'C', b"Pp1\0");
        expect.extend(msg(b'C', b"Ss1\0"));
        expect.extend_from_slice(&client.first);
        assert_eq!(&client.again[..], &expect[..]);
    }
}
