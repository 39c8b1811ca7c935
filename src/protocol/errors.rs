//! Every error and notice pgwarden itself sends, as named constructors with their SQLSTATE.
//!
//! All in one place so the wording and codes stay consistent and are easy to test.
use bytes::BytesMut;
use pgwire::messages::response::{ErrorResponse, NoticeResponse};
use pgwire::messages::Message;

/// Severity of a message pgwarden sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// The connection is closed after the message.
    Fatal,
    /// The statement failed, the session goes on.
    Error,
    /// Informational (NoticeResponse).
    Warning,
}

impl Severity {
    fn as_str(self) -> &'static str {
        match self {
            Severity::Fatal => "FATAL",
            Severity::Error => "ERROR",
            Severity::Warning => "WARNING",
        }
    }
}

/// An error or notice pgwarden builds itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgError {
    pub severity: Severity,
    /// SQLSTATE.
    pub code: &'static str,
    pub message: String,
    pub detail: Option<String>,
    pub hint: Option<String>,
}

impl PgError {
    fn new(severity: Severity, code: &'static str, message: String) -> Self {
        PgError {
            severity,
            code,
            message,
            detail: None,
            hint: None,
        }
    }

    /// An ERROR with pgwarden's own SQLSTATE.
    pub fn error(code: &'static str, message: String) -> Self {
        PgError::new(Severity::Error, code, message)
    }

    /// Adds a HINT.
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Adds a DETAIL.
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    fn fields(&self) -> Vec<(u8, String)> {
        let sev = self.severity.as_str().to_owned();
        // Interior NULs would cut the C string short; the texts are pgwarden's own, but an
        // upstream error cause can echo anything.
        let clean = |s: &str| s.replace('\0', " ");
        let mut f = vec![
            (b'S', sev.clone()),
            (b'V', sev),
            (b'C', self.code.to_owned()),
            (b'M', clean(&self.message)),
        ];
        if let Some(d) = &self.detail {
            f.push((b'D', clean(d)));
        }
        if let Some(h) = &self.hint {
            f.push((b'H', clean(h)));
        }
        f
    }

    /// Appends the message as an ErrorResponse (or NoticeResponse for warnings).
    pub fn encode(&self, out: &mut BytesMut) {
        let res = if self.severity == Severity::Warning {
            NoticeResponse::new(self.fields()).encode(out)
        } else {
            ErrorResponse::new(self.fields()).encode(out)
        };
        // Encoding into a BytesMut cannot fail: pgwire only errors on decoding.
        debug_assert!(res.is_ok());
    }

    /// The message as a new buffer.
    pub fn to_bytes(&self) -> BytesMut {
        let mut out = BytesMut::new();
        self.encode(&mut out);
        out
    }
}

/// 53300: the proxy's `max_connections` is reached.
/// A policy warning (pgwarden's `warn` decision), sent as a NoticeResponse before the
/// statement's own answer. SQLSTATE 01000 (warning) like PostgreSQL's own WARNINGs.
pub fn policy_warning(message: &str, hint: &str) -> PgError {
    PgError::new(Severity::Warning, "01000", message.to_owned()).with_hint(hint)
}

/// The audit record of a prepared DDL statement could not be written when it was about to
/// run; the Parse is already on the server, so the session is closed (FATAL) to keep the
/// statement from running unaudited. SQLSTATE 58030 (io_error).
pub fn audit_unavailable(why: &str) -> PgError {
    PgError::new(
        Severity::Fatal,
        "58030",
        format!("pgwarden: audit log unavailable, DDL refused and connection closed: {why}"),
    )
    .with_hint("Fix the audit log (disk space, permissions of the [audit] path); plain queries keep working.")
}

pub fn too_many_connections(max: usize) -> PgError {
    PgError::new(
        Severity::Fatal,
        "53300",
        format!("sorry, too many clients already: pgwarden accepts at most {max} connections"),
    )
    .with_hint(
        "Raise [server] max_connections in the pgwarden configuration, or close idle connections.",
    )
}

/// 08006: the upstream server could not be reached.
pub fn upstream_unreachable(upstream: &str, cause: &str) -> PgError {
    PgError::new(
        Severity::Fatal,
        "08006",
        format!("pgwarden could not connect to the upstream server {upstream}: {cause}"),
    )
}

/// 08006: the upstream connection broke mid-session.
pub fn upstream_lost(upstream: &str, cause: &str) -> PgError {
    PgError::new(
        Severity::Fatal,
        "08006",
        format!("pgwarden lost the connection to the upstream server {upstream}: {cause}"),
    )
}

/// 08006: authentication did not finish within `startup_timeout`; `waiting` says who was
/// silent. A client must get an error, not a bare close, whichever side stalled.
pub fn startup_timed_out(upstream: &str, timeout: std::time::Duration, waiting: &str) -> PgError {
    PgError::new(
        Severity::Fatal,
        "08006",
        format!(
            "pgwarden: connection startup did not finish within startup_timeout ({}s): \
             waiting for {waiting}",
            timeout.as_secs()
        ),
    )
    .with_hint(format!(
        "Check that the upstream server {upstream} is up and answering, or raise [server] \
         startup_timeout in the pgwarden configuration."
    ))
}

/// 53200: the bytes held whole by all sessions together would exceed `max_held_bytes`.
pub fn held_bytes_exhausted(len: usize, cap: usize) -> PgError {
    PgError::new(
        Severity::Fatal,
        "53200",
        format!(
            "pgwarden: cannot hold a {len}-byte message: all sessions together may hold at \
             most {cap} bytes of messages being read whole (max_held_bytes)"
        ),
    )
    .with_hint(
        "Retry when other large statements have finished, send smaller statements (COPY \
         streams instead of one huge INSERT), or raise [server] max_held_bytes.",
    )
}

/// 3D000: no `[databases]` entry and no `*` fallback for the name the client asked for.
pub fn unknown_database(name: &str) -> PgError {
    PgError::new(
        Severity::Fatal,
        "3D000",
        format!("database \"{name}\" does not exist"),
    )
    .with_hint("pgwarden has no [databases] entry for it and no \"*\" fallback.")
}

/// 57P01: pgwarden is shutting down.
pub fn shutting_down() -> PgError {
    PgError::new(
        Severity::Fatal,
        "57P01",
        "terminating connection because pgwarden is shutting down".to_owned(),
    )
}

/// 08P01: the client broke the protocol.
pub fn protocol_violation(why: &str) -> PgError {
    PgError::new(
        Severity::Fatal,
        "08P01",
        format!("protocol violation: {why}"),
    )
}

/// 54000: a message over the configured cap.
pub fn message_too_large(tag: char, len: u64, cap: usize) -> PgError {
    PgError::new(
        Severity::Fatal,
        "54000",
        format!("message of type '{tag}' is {len} bytes, over pgwarden's limit of {cap} bytes"),
    )
    .with_hint(
        "The caps are [server] max_message_size, max_small_message_size and \
         max_auth_message_size in the pgwarden configuration.",
    )
}

/// 08P01: TLS is required by the client but not configured, or the reverse.
pub fn tls_unavailable(why: &str) -> PgError {
    PgError::new(Severity::Fatal, "08P01", why.to_owned())
}

/// Maps a frame error to the error the client is told before its connection is closed.
pub fn from_protocol(e: &super::ProtocolError) -> PgError {
    match e {
        super::ProtocolError::TooLarge { tag, len, cap } => message_too_large(*tag, *len, *cap),
        other => protocol_violation(&other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::backend::decode_error;

    #[test]
    fn codes_and_layout() {
        let cases = [
            (too_many_connections(3), "53300"),
            (
                upstream_unreachable("127.0.0.1:1", "connection refused"),
                "08006",
            ),
            (shutting_down(), "57P01"),
            (protocol_violation("x"), "08P01"),
            (message_too_large('Q', 10, 5), "54000"),
        ];
        for (e, code) in cases {
            let b = e.to_bytes();
            assert_eq!(b[0], b'E');
            let len = i32::from_be_bytes([b[1], b[2], b[3], b[4]]) as usize;
            assert_eq!(len + 1, b.len());
            let s = decode_error(&b[5..]).unwrap();
            assert_eq!(s.code, code.as_bytes());
            assert_eq!(s.severity, b"FATAL");
        }
        let m = upstream_unreachable("db:5432", "timed out").message;
        assert!(m.contains("db:5432") && m.contains("timed out"));
        let w = PgError::new(Severity::Warning, "01000", "w".into()).to_bytes();
        assert_eq!(w[0], b'N');
    }
}
