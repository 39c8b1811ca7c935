//! The server→client scan: walks the complete server frames, observes ReadyForQuery,
//! ParameterStatus, BackendKeyData and authentication, routes the replies of pgwarden's own
//! statements away from the client and writes policy notices at frame boundaries.
use super::*;

/// What one scan of the server buffer found.
pub(super) struct ServerScan {
    pub(super) ready: usize,
    pub(super) need: usize,
    /// A rewritten frame to send after `ready` bytes, replacing `skip_original` bytes.
    pub(super) replace: Option<(BytesMut, usize)>,
    /// Shutdown reached an idle point at the end of `ready`.
    pub(super) idle_stop: bool,
    /// The last frame was a ReadyForQuery answering the last outstanding client request.
    pub(super) idle: bool,
    /// Policy warnings to write before `ready` (taken at a frame boundary).
    pub(super) notices: Option<BytesMut>,
    /// Bytes after `ready` that belong to an injected lookup: dropped, not forwarded.
    pub(super) discard: usize,
    /// The frame after `ready` answers a request the audit log follows: record it first.
    pub(super) audit_frame: bool,
    /// The scan stopped before a complete frame that needs its own turn: scan again before
    /// reading more.
    pub(super) rescan: bool,
    /// That frame is a ReadyForQuery whose audit turn comes next: `ready` may wait for it.
    pub(super) before_audited_ready: bool,
    /// Frames forwarded as read (for the metrics).
    pub(super) messages: u64,
}

/// Whether this scan's output waits in `held` for the ReadyForQuery after it: the scan stopped
/// before (or at) a ReadyForQuery that gets an audit turn, and what goes before it is a small
/// answer (a CommandComplete and its notices). Written at once, it cost a write of its own and
/// a client wake-up for every statement of an audited transaction, though the client does
/// nothing with it before the ReadyForQuery; it goes out with it, after its turn (issue 15,
/// BENCHMARKS.md "Writing the audit log on the session thread"). Large output is never held.
pub(super) fn hold_for_ready(scan: &ServerScan, buf: &[u8], held: &[u8]) -> bool {
    const SMALL: usize = 4096;
    let at_ready = scan.before_audited_ready || (scan.audit_frame && buf.first() == Some(&b'Z'));
    at_ready
        && !scan.idle_stop
        && scan.replace.is_none()
        && scan.discard == 0
        && held.len() + scan.ready + scan.notices.as_ref().map_or(0, |n| n.len()) <= SMALL
}

pub(super) fn scan_server(
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
        before_audited_ready: false,
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
            out.before_audited_ready = pos > 0 && h.tag == b'Z';
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
