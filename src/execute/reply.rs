//! Collects the server's reply to one request pgwarden sent, frame by frame, up to its
//! ReadyForQuery: raw frames to hand on to the client if this reply becomes its answer, and the
//! few decoded facts the executor decides on (error code, rows, transaction status).
use bytes::BytesMut;

use crate::protocol::{backend, TxStatus};

/// What the session does with one server frame while a step is in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feed {
    /// Not part of the reply (NoticeResponse, NotificationResponse, ParameterStatus can come at
    /// any time): pass it on to the client now.
    Forward,
    /// Part of the reply: kept here, not forwarded.
    Swallow,
    /// The reply's ReadyForQuery: the reply is complete.
    Done,
}

/// One CommandComplete-terminated result of a reply, with its rows (text format).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResultSet {
    pub rows: Vec<Vec<Option<String>>>,
    /// The command tag (`ALTER TABLE`, `SELECT 1`).
    pub tag: String,
}

/// The SQLSTATE and message of an ErrorResponse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerError {
    pub code: String,
    pub message: String,
}

/// A whole reply.
#[derive(Debug, Clone, Default)]
pub struct Reply {
    /// Every frame of the reply except the ReadyForQuery and the any-time messages, as sent.
    pub frames: BytesMut,
    /// The ReadyForQuery frame, as sent.
    pub ready: BytesMut,
    pub status: Option<TxStatus>,
    /// Finished results, in order; an error ends the reply's results.
    pub results: Vec<ResultSet>,
    pub error: Option<ServerError>,
    /// Rows of the result not yet finished by a CommandComplete.
    current: ResultSet,
}

impl Reply {
    /// Feeds one whole server frame (type byte, length, body).
    pub fn feed(&mut self, frame: &[u8]) -> Feed {
        let Some((&tag, rest)) = frame.split_first() else {
            return Feed::Swallow;
        };
        let body = rest.get(4..).unwrap_or_default();
        match tag {
            b'N' | b'A' | b'S' => return Feed::Forward,
            b'Z' => {
                self.ready.extend_from_slice(frame);
                self.status = backend::decode_ready_for_query(body)
                    .ok()
                    .map(TxStatus::from_byte);
                return Feed::Done;
            }
            b'D' => {
                if let Some(row) = data_row(body) {
                    self.current.rows.push(row);
                }
            }
            b'C' => {
                let mut done = std::mem::take(&mut self.current);
                done.tag = backend::decode_command_complete(body)
                    .map(|t| String::from_utf8_lossy(t).into_owned())
                    .unwrap_or_default();
                self.results.push(done);
            }
            b'E' => {
                let (code, message) = match backend::decode_error(body) {
                    Ok(e) => (
                        String::from_utf8_lossy(e.code).into_owned(),
                        String::from_utf8_lossy(e.message).into_owned(),
                    ),
                    Err(_) => (String::new(), "malformed error".into()),
                };
                self.error.get_or_insert(ServerError { code, message });
            }
            _ => {}
        }
        self.frames.extend_from_slice(frame);
        Feed::Swallow
    }

    /// The reply as the client would have received it: its frames, then its ReadyForQuery.
    pub fn into_answer(self) -> BytesMut {
        let mut out = self.frames;
        out.extend_from_slice(&self.ready);
        out
    }

    /// The reply of a failed request of pgwarden's own as the client may see it: the error and
    /// the ReadyForQuery, without the acknowledgements of pgwarden's own Parse/Bind.
    pub fn into_error_answer(self) -> BytesMut {
        let skip = self.frames_before_error().len();
        let mut out = BytesMut::from(&self.frames[skip..]);
        out.extend_from_slice(&self.ready);
        out
    }

    /// The SQLSTATE of the reply's error, if any.
    pub fn code(&self) -> Option<&str> {
        self.error.as_ref().map(|e| e.code.as_str())
    }

    /// The frames the server sent before the reply's ErrorResponse (all of them when there is
    /// none): an extended-protocol request answers its Parse, Bind and Describe before the
    /// Execute fails, and a client expects them before the error that replaces the server's.
    pub fn frames_before_error(&self) -> BytesMut {
        let mut pos = 0;
        while let Some(len) = self
            .frames
            .get(pos + 1..pos + 5)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map(|b| u32::from_be_bytes(b) as usize + 1)
        {
            if self.frames[pos] == b'E' || pos + len > self.frames.len() {
                break;
            }
            pos += len;
        }
        BytesMut::from(&self.frames[..pos])
    }
}

/// Columns of a text-format DataRow body; `None` = NULL. `None` overall when malformed.
fn data_row(body: &[u8]) -> Option<Vec<Option<String>>> {
    let (n, mut rest) = body.split_first_chunk::<2>()?;
    let n = i16::from_be_bytes(*n);
    let mut out = Vec::with_capacity(n.max(0) as usize);
    for _ in 0..n {
        let (len, tail) = rest.split_first_chunk::<4>()?;
        let len = i32::from_be_bytes(*len);
        rest = tail;
        if len < 0 {
            out.push(None);
            continue;
        }
        let len = usize::try_from(len).ok()?;
        let value = rest.get(..len)?;
        rest = &rest[len..];
        out.push(Some(String::from_utf8_lossy(value).into_owned()));
    }
    Some(out)
}

#[cfg(test)]
pub(crate) mod script {
    //! Server replies built by hand, for the executor's tests.
    use bytes::BytesMut;

    use super::Reply;

    pub(crate) fn frame(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut v = vec![tag];
        v.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
        v.extend_from_slice(body);
        v
    }

    pub(crate) fn complete(tag: &str) -> Vec<u8> {
        let mut b = tag.as_bytes().to_vec();
        b.push(0);
        frame(b'C', &b)
    }

    pub(crate) fn error(code: &str, message: &str) -> Vec<u8> {
        let mut b = Vec::new();
        for (t, v) in [(b'S', "ERROR"), (b'C', code), (b'M', message)] {
            b.push(t);
            b.extend_from_slice(v.as_bytes());
            b.push(0);
        }
        b.push(0);
        frame(b'E', &b)
    }

    pub(crate) fn row(cols: &[Option<&str>]) -> Vec<u8> {
        let mut b = (cols.len() as i16).to_be_bytes().to_vec();
        for c in cols {
            match c {
                None => b.extend_from_slice(&(-1i32).to_be_bytes()),
                Some(v) => {
                    b.extend_from_slice(&(v.len() as i32).to_be_bytes());
                    b.extend_from_slice(v.as_bytes());
                }
            }
        }
        frame(b'D', &b)
    }

    pub(crate) fn ready(status: u8) -> Vec<u8> {
        frame(b'Z', &[status])
    }

    /// Feeds frames into a fresh reply until its ReadyForQuery.
    pub(crate) fn reply(frames: &[Vec<u8>]) -> Reply {
        let mut r = Reply::default();
        for f in frames {
            r.feed(f);
        }
        r
    }

    pub(crate) fn bytes(frames: &[Vec<u8>]) -> BytesMut {
        let mut b = BytesMut::new();
        for f in frames {
            b.extend_from_slice(f);
        }
        b
    }
}

#[cfg(test)]
mod tests {
    use super::script::*;
    use super::*;

    #[test]
    fn reply_keeps_frames_rows_and_status() {
        let notice = frame(b'N', b"SNOTICE\0Mhi\0\0");
        let mut r = Reply::default();
        assert_eq!(r.feed(&frame(b'T', b"\0\x01")), Feed::Swallow);
        assert_eq!(r.feed(&row(&[Some("1s"), None])), Feed::Swallow);
        assert_eq!(r.feed(&notice), Feed::Forward);
        assert_eq!(r.feed(&complete("SELECT 1")), Feed::Swallow);
        assert_eq!(r.feed(&error("55P03", "lock timeout")), Feed::Swallow);
        assert_eq!(r.feed(&ready(b'E')), Feed::Done);
        assert_eq!(r.results.len(), 1);
        assert_eq!(r.results[0].rows, vec![vec![Some("1s".into()), None]]);
        assert_eq!(r.results[0].tag, "SELECT 1");
        assert_eq!(r.code(), Some("55P03"));
        assert_eq!(r.status, Some(TxStatus::Failed));
        let answer = r.into_answer();
        assert!(!answer.windows(notice.len()).any(|w| w == notice.as_slice()));
        assert!(answer.ends_with(&ready(b'E')));
    }

    #[test]
    fn frames_before_the_error_are_the_extended_acknowledgements() {
        let r = reply(&[
            frame(b'1', b""),
            frame(b'2', b""),
            frame(b'n', b""),
            error("55P03", "lock timeout"),
            ready(b'E'),
        ]);
        assert_eq!(
            r.frames_before_error(),
            bytes(&[frame(b'1', b""), frame(b'2', b""), frame(b'n', b"")])
        );
        let ok = reply(&[complete("ALTER TABLE"), ready(b'I')]);
        assert_eq!(ok.frames_before_error(), bytes(&[complete("ALTER TABLE")]));
    }

    #[test]
    fn malformed_frames_do_not_panic() {
        let mut r = Reply::default();
        for f in [
            vec![b'D', 0, 0, 0, 6, 0, 5],
            vec![b'E'],
            vec![],
            vec![b'Z', 0],
        ] {
            r.feed(&f);
        }
        assert!(r.results.is_empty());
    }
}
