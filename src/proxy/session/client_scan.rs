//! The client→server scan: walks the complete client frames at the front of the buffer,
//! keeps the session's bookkeeping of requests and prepared statements, and stops at every
//! frame the enforcer, the executor or a multi-step rewrite must take first.
use super::*;

/// What one scan of the client buffer found.
pub(super) struct ClientScan {
    /// Bytes at the front of the buffer that may be forwarded now.
    pub(super) ready: usize,
    /// Bytes the buffer must hold before the next frame can be decoded (0 = any amount).
    pub(super) need: usize,
    /// A Terminate was among the forwarded frames.
    pub(super) terminate: bool,
    /// A re-encoded frame to send after `ready` bytes, replacing the next `.1` original bytes.
    pub(super) replace: Option<(BytesMut, usize)>,
    /// The frame after `ready` is a Query/Parse the enforcer must decide on first.
    pub(super) attention: bool,
    /// The frame after `ready` is a Bind of a prepared DDL statement: audit it first.
    pub(super) attention_bind: bool,
    /// The Query after `ready` (this frame, replacing the next `.2` original bytes) runs
    /// under the executor instead of being forwarded.
    /// The rare payloads are boxed: the scan result is moved on every read batch.
    pub(super) execute: Option<(Box<execute::Pending>, BytesMut, usize)>,
    /// The Query after `ready` runs as a multi-step rewrite (replacing `.1` original bytes).
    pub(super) multi: Option<(Box<rewrite::MultiPending>, usize)>,
    /// The Query after `ready` is the COMMIT that owes completion steps (`.1` original bytes).
    pub(super) commit: Option<(BytesMut, usize)>,
    /// Earlier requests must be answered before the next frame (a COMMIT owing completion
    /// steps): wait, then scan again.
    pub(super) settle: bool,
    /// The held extended-protocol request is complete (its Sync is in `ready`): run it.
    pub(super) run_held: bool,
    /// The Query after `ready` (replacing the next `.1` original bytes) runs split.
    pub(super) batch: Option<(Box<execute_batch::Batch>, usize)>,
    /// Frames forwarded as read (for the metrics).
    pub(super) messages: u64,
}

/// Walks the complete client frames at the front of `buf`, observing the ones that matter.
pub(super) fn scan_client(
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
            && super::guard_of(&mut side.guard, ctx).is_some_and(|g| g.refuses_function_calls());
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
                        .discard(ctx.id, "their transaction ended before this COMMIT");
                }
                let commit = owes && !side.completion.is_empty();
                let verdict = match inspect(ctx, st, side, q.sql, ProtocolPath::Simple) {
                    Inspected::Attention => {
                        out.attention = true;
                        break;
                    }
                    Inspected::Verdict(v) => v,
                };
                let verdict = match side.completion.follow_query(ctx.id, q.sql, &base_lex()) {
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
                    out.batch = Some((Box::new(batch), h.total));
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
                if !side.ddl_statements.is_empty() && verdict.is_none() && !was_decided {
                    // A new text under this name that needed no decision is not DDL.
                    side.ddl_statements.remove(p.name);
                }
                // Only a prepared DDL statement's Bind is re-decided (`rebind`), and a name
                // enters `ddl_statements` only by its own Parse's decision, made before this
                // point: remembering the other names would change no answer (and hashing
                // every pgbench -M extended Parse cost ~260 instructions per transaction).
                if side.ddl_statements.contains_key(p.name) {
                    side.parsed_this_request.insert(p.name.to_vec());
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
                        match side.ddl_statements.get_mut(p.name) {
                            // pgwarden's own rewrite: a later Bind is decided again against
                            // what the server holds (rebind.rs). A hook's text is the hook's.
                            Some(t) if t.decided.replace.as_deref() == Some(text.as_str()) => {
                                t.sent = Some(text.clone());
                            }
                            _ => {}
                        }
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
                audit_request(st, side.request_record.take().map(|r| *r), dml);
                side.extended = None;
                if let Some(held) = side.holding.as_mut() {
                    // The whole request is held: the executor sends it.
                    held.set_seq(seq);
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
pub(super) enum Inspected {
    /// Forward (`None`) or send this text instead.
    Verdict(Option<String>),
    /// The enforcer must look at it first: stop the scan before this frame.
    Attention,
}

/// Passes one statement text through the hook with the session's current view, and tells
/// whether the enforcer must decide on it (DDL and utility statements) before it goes on.
pub(super) fn inspect(
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
    side.attention_under = None;
    if decided.is_none()
        && side.guard.is_some()
        && ({
            let settings = lex_settings(st, side);
            let attention = server_lex::needs_attention_decoded(
                sql,
                reported_family(st),
                &text,
                &settings,
                &base_lex(),
            );
            if attention {
                side.attention_under = Some(settings);
            }
            attention
        } || super::built_guard(&side.guard).is_some_and(|g| {
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
pub(super) fn reported_family(st: &State) -> Family {
    st.client_family.unwrap_or(Family::AsciiSafe)
}

/// The lexer settings the server will apply to the next client text (sql/server_lex.rs):
/// the reported ones while nothing is in flight, else unknown — an earlier request or an
/// unsynced pipeline may have changed them.
pub(super) fn lex_settings(st: &State, side: &ClientSide) -> LexSettings {
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

pub(super) fn base_lex() -> crate::sql::lexer::LexOptions {
    // Built once: `AnalysisContext::default()` also builds its empty catalog maps, a tenth of
    // a plain Query's instructions when it ran per Query (BENCHMARKS.md, proxy CPU).
    static BASE: std::sync::OnceLock<crate::sql::lexer::LexOptions> = std::sync::OnceLock::new();
    *BASE.get_or_init(|| crate::sql::AnalysisContext::default().lex)
}

/// Drops remembered statements for `DEALLOCATE name`, `DEALLOCATE ALL` and `DISCARD ALL`
/// when that is the whole text (what psycopg 3 and poolers send).
pub(super) fn forget_deallocated(side: &mut ClientSide, sql: &[u8]) {
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
pub(super) enum Dealloc {
    All,
    Name(String),
}

/// Recognises a lone `DEALLOCATE [PREPARE] name|ALL` or `DISCARD ALL` statement.
pub(super) fn deallocate_target(sql: &[u8]) -> Option<Dealloc> {
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
pub(super) struct Tokens<'a> {
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
