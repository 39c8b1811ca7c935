//! Server `Authentication*` messages. pgwarden relays authentication byte-for-byte, except that
//! it may remove `SCRAM-SHA-256-PLUS` from the SASL mechanism list (DESIGN.md decision 2).
use bytes::BytesMut;

use super::codec::{finish_message, put_cstr, Reader};
use super::ProtocolError;

/// AuthenticationOk.
pub const AUTH_OK: i32 = 0;
/// AuthenticationCleartextPassword.
pub const AUTH_CLEARTEXT: i32 = 3;
/// AuthenticationMD5Password.
pub const AUTH_MD5: i32 = 5;
/// AuthenticationSASL: a list of mechanisms follows.
pub const AUTH_SASL: i32 = 10;
/// AuthenticationSASLContinue.
pub const AUTH_SASL_CONTINUE: i32 = 11;
/// AuthenticationSASLFinal.
pub const AUTH_SASL_FINAL: i32 = 12;

/// The channel-binding SCRAM variant that cannot work through a TLS-terminating relay.
pub const SCRAM_PLUS: &[u8] = b"SCRAM-SHA-256-PLUS";

/// Decodes the request code of an `R` body.
pub fn decode_auth_code(body: &[u8]) -> Result<i32, ProtocolError> {
    Reader::new(body, "Authentication").i32()
}

/// Mechanism names of an AuthenticationSASL body.
pub fn sasl_mechanisms(body: &[u8]) -> Result<Vec<&[u8]>, ProtocolError> {
    let mut r = Reader::new(body, "AuthenticationSASL");
    if r.i32()? != AUTH_SASL {
        return Err(r.err("not an AuthenticationSASL message"));
    }
    let mut out = Vec::new();
    loop {
        let m = r.cstr()?;
        if m.is_empty() {
            break;
        }
        out.push(m);
    }
    r.finish()?;
    Ok(out)
}

/// If an AuthenticationSASL body offers `SCRAM-SHA-256-PLUS`, returns the whole `R` frame
/// rebuilt without it; `Ok(None)` when there was nothing to strip (forward unchanged).
///
/// Why: channel binding binds the SCRAM proof to the TLS certificate of the connection the
/// client sees, which is pgwarden's and not the server's, so it can never verify. libpq also
/// refuses a PLUS offer on a plaintext connection ("server offered SCRAM-SHA-256-PLUS
/// authentication over a non-SSL connection"), so the offer must go whenever the server leg is TLS.
pub fn strip_scram_plus(body: &[u8]) -> Result<Option<BytesMut>, ProtocolError> {
    let mechs = sasl_mechanisms(body)?;
    if !mechs.contains(&SCRAM_PLUS) {
        return Ok(None);
    }
    let mut out = BytesMut::with_capacity(body.len() + 5);
    out.extend_from_slice(b"R");
    let at = out.len();
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&AUTH_SASL.to_be_bytes());
    for m in mechs.iter().filter(|m| **m != SCRAM_PLUS) {
        put_cstr(&mut out, m);
    }
    out.extend_from_slice(&[0]);
    finish_message(&mut out, at);
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sasl_body(mechs: &[&str]) -> Vec<u8> {
        let mut v = AUTH_SASL.to_be_bytes().to_vec();
        for m in mechs {
            v.extend_from_slice(m.as_bytes());
            v.push(0);
        }
        v.push(0);
        v
    }

    #[test]
    fn strips_plus_only() {
        let body = sasl_body(&["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"]);
        let frame = strip_scram_plus(&body).unwrap().unwrap();
        let expect = sasl_body(&["SCRAM-SHA-256"]);
        assert_eq!(&frame[5..], &expect[..]);
        assert_eq!(frame[0], b'R');
        assert_eq!(
            i32::from_be_bytes([frame[1], frame[2], frame[3], frame[4]]) as usize,
            frame.len() - 1
        );
        assert_eq!(strip_scram_plus(&sasl_body(&["SCRAM-SHA-256"])), Ok(None));
    }

    #[test]
    fn malformed_sasl_is_refused() {
        assert!(strip_scram_plus(&AUTH_SASL.to_be_bytes()).is_err());
        assert!(sasl_mechanisms(&AUTH_MD5.to_be_bytes()).is_err());
        assert_eq!(decode_auth_code(&[0, 0, 0, 5, 1, 2, 3, 4]), Ok(AUTH_MD5));
    }
}
