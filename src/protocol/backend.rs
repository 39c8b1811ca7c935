//! Server messages pgwarden observes: ReadyForQuery, CommandComplete, ErrorResponse/
//! NoticeResponse fields, ParameterStatus, BackendKeyData.
use super::codec::Reader;
use super::ProtocolError;

/// Decodes a `Z` body into its transaction status byte (`I`, `T` or `E`).
pub fn decode_ready_for_query(body: &[u8]) -> Result<u8, ProtocolError> {
    let mut r = Reader::new(body, "ReadyForQuery");
    let status = r.u8()?;
    r.finish()?;
    match status {
        b'I' | b'T' | b'E' => Ok(status),
        _ => Err(r.err("unknown transaction status")),
    }
}

/// Decodes a `C` (server) body into its command tag, e.g. `INSERT 0 1`.
pub fn decode_command_complete(body: &[u8]) -> Result<&[u8], ProtocolError> {
    let mut r = Reader::new(body, "CommandComplete");
    let tag = r.cstr()?;
    r.finish()?;
    Ok(tag)
}

/// Decodes a `S` body into name and value.
pub fn decode_parameter_status(body: &[u8]) -> Result<(&[u8], &[u8]), ProtocolError> {
    let mut r = Reader::new(body, "ParameterStatus");
    let name = r.cstr()?;
    let value = r.cstr()?;
    r.finish()?;
    Ok((name, value))
}

/// A `K` message: the key a CancelRequest must carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackendKeyData<'a> {
    /// Server process id.
    pub pid: i32,
    /// Secret key (4 bytes in protocol 3.0, up to 256 in 3.2).
    pub key: &'a [u8],
}

/// Decodes a `K` body.
pub fn decode_backend_key_data(body: &[u8]) -> Result<BackendKeyData<'_>, ProtocolError> {
    let mut r = Reader::new(body, "BackendKeyData");
    let pid = r.i32()?;
    let key = r.bytes(r.remaining())?;
    if key.is_empty() || key.len() > 256 {
        return Err(r.err("bad secret key length"));
    }
    Ok(BackendKeyData { pid, key })
}

/// Iterates the `(code, value)` fields of an ErrorResponse or NoticeResponse body.
pub fn error_fields(body: &[u8]) -> impl Iterator<Item = Result<(u8, &[u8]), ProtocolError>> + '_ {
    let mut r = Reader::new(body, "ErrorResponse");
    let mut done = false;
    std::iter::from_fn(move || {
        if done {
            return None;
        }
        let item = (|| {
            let code = r.u8()?;
            if code == 0 {
                r.finish()?;
                return Ok(None);
            }
            Ok(Some((code, r.cstr()?)))
        })();
        match item {
            Ok(Some(f)) => Some(Ok(f)),
            Ok(None) => {
                done = true;
                None
            }
            Err(e) => {
                done = true;
                Some(Err(e))
            }
        }
    })
}

/// The fields of an ErrorResponse that decide what happened.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ErrorSummary<'a> {
    /// `S`: ERROR, FATAL, PANIC (localised).
    pub severity: &'a [u8],
    /// `C`: SQLSTATE.
    pub code: &'a [u8],
    /// `M`: primary message.
    pub message: &'a [u8],
}

/// Decodes an ErrorResponse/NoticeResponse body into its main fields.
pub fn decode_error(body: &[u8]) -> Result<ErrorSummary<'_>, ProtocolError> {
    let mut s = ErrorSummary::default();
    for f in error_fields(body) {
        let (code, value) = f?;
        match code {
            // 'V' is the non-localised severity; prefer it over 'S'.
            b'V' => s.severity = value,
            b'S' if s.severity.is_empty() => s.severity = value,
            b'C' => s.code = value,
            b'M' => s.message = value,
            _ => {}
        }
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_for_query() {
        assert_eq!(decode_ready_for_query(b"T"), Ok(b'T'));
        assert!(decode_ready_for_query(b"X").is_err());
        assert!(decode_ready_for_query(b"").is_err());
        assert!(decode_ready_for_query(b"II").is_err());
    }

    #[test]
    fn parameter_status_and_tag() {
        assert_eq!(
            decode_parameter_status(b"server_version\x0015.18\0"),
            Ok((&b"server_version"[..], &b"15.18"[..]))
        );
        assert!(decode_parameter_status(b"a\0b").is_err());
        assert_eq!(decode_command_complete(b"SELECT 1\0"), Ok(&b"SELECT 1"[..]));
    }

    #[test]
    fn backend_key() {
        let k = decode_backend_key_data(&[0, 0, 1, 0, 9, 9, 9, 9]).unwrap();
        assert_eq!((k.pid, k.key), (256, &[9u8, 9, 9, 9][..]));
        assert!(decode_backend_key_data(&[0, 0, 1]).is_err());
        assert!(decode_backend_key_data(&[0, 0, 1, 0]).is_err());
    }

    #[test]
    fn error_response() {
        let e = decode_error(b"SERROR\0VERROR\0C42P01\0Mno table\0\0").unwrap();
        assert_eq!(
            (e.severity, e.code, e.message),
            (&b"ERROR"[..], &b"42P01"[..], &b"no table"[..])
        );
        assert!(decode_error(b"SERROR\0C42").is_err());
        assert!(decode_error(b"SERROR\0\0x").is_err());
    }
}
