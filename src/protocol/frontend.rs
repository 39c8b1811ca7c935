//! Client messages pgwarden must read: Query, Parse, Bind, Close. Everything else is forwarded
//! by its header alone. Decoders borrow from the frame body; nothing is copied.
use bytes::BytesMut;

use super::codec::{finish_message, put_cstr, Reader};
use super::ProtocolError;

/// A simple-protocol `Query`: the SQL text, possibly several statements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Query<'a> {
    /// Raw text in the client encoding (not necessarily UTF-8).
    pub sql: &'a [u8],
}

/// Decodes a `Q` body.
pub fn decode_query(body: &[u8]) -> Result<Query<'_>, ProtocolError> {
    let mut r = Reader::new(body, "Query");
    let sql = r.cstr()?;
    r.finish()?;
    Ok(Query { sql })
}

/// An extended-protocol `Parse`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parse<'a> {
    /// Prepared statement name ("" = the unnamed statement).
    pub name: &'a [u8],
    /// Raw SQL text in the client encoding.
    pub sql: &'a [u8],
    /// Number of parameter type OIDs the client specified.
    pub param_types: u16,
}

/// Decodes a `P` body.
pub fn decode_parse(body: &[u8]) -> Result<Parse<'_>, ProtocolError> {
    let mut r = Reader::new(body, "Parse");
    let name = r.cstr()?;
    let sql = r.cstr()?;
    // Counts are unsigned on the wire, as the server reads them: 65,535 parameters are legal.
    let param_types = r.u16()?;
    r.bytes(param_types as usize * 4)?;
    r.finish()?;
    Ok(Parse {
        name,
        sql,
        param_types,
    })
}

/// The parts of a `Bind` pgwarden needs: which portal, which statement, how many parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind<'a> {
    /// Destination portal name.
    pub portal: &'a [u8],
    /// Source prepared statement name.
    pub statement: &'a [u8],
    /// Number of parameter values.
    pub params: u16,
}

/// Decodes a `B` body, walking every field so a malformed Bind is refused.
pub fn decode_bind(body: &[u8]) -> Result<Bind<'_>, ProtocolError> {
    let mut r = Reader::new(body, "Bind");
    let portal = r.cstr()?;
    let statement = r.cstr()?;
    let nfmt = r.u16()?;
    r.bytes(nfmt as usize * 2)?;
    let params = r.u16()?;
    for _ in 0..params {
        let len = r.i32()?;
        if len >= 0 {
            r.bytes(len as usize)?;
        } else if len != -1 {
            return Err(r.err("parameter length below -1"));
        }
    }
    let nres = r.u16()?;
    r.bytes(nres as usize * 2)?;
    r.finish()?;
    Ok(Bind {
        portal,
        statement,
        params,
    })
}

/// The parameter values of a Bind body in text form: `None` for NULL and for values sent in
/// binary format (the audit log reads migration bookkeeping values, which drivers send as text).
pub fn bind_text_params(body: &[u8]) -> Result<Vec<Option<String>>, ProtocolError> {
    let mut r = Reader::new(body, "Bind");
    r.cstr()?;
    r.cstr()?;
    let nfmt = r.u16()?;
    let mut formats = Vec::with_capacity(nfmt as usize);
    for _ in 0..nfmt {
        formats.push(r.i16()?);
    }
    let params = r.u16()?;
    let mut out = Vec::with_capacity(params as usize);
    for i in 0..params as usize {
        let len = r.i32()?;
        let binary = match formats.len() {
            0 => false,
            1 => formats[0] == 1,
            _ => formats.get(i) == Some(&1),
        };
        if len < 0 {
            out.push(None);
            continue;
        }
        let v = r.bytes(len as usize)?;
        out.push((!binary).then(|| String::from_utf8_lossy(v).into_owned()));
    }
    Ok(out)
}

/// What a `Close` closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Close<'a> {
    Statement(&'a [u8]),
    Portal(&'a [u8]),
}

/// Decodes a `C` body.
pub fn decode_close(body: &[u8]) -> Result<Close<'_>, ProtocolError> {
    let mut r = Reader::new(body, "Close");
    let kind = r.u8()?;
    let name = r.cstr()?;
    r.finish()?;
    match kind {
        b'S' => Ok(Close::Statement(name)),
        b'P' => Ok(Close::Portal(name)),
        _ => Err(r.err("unknown close target")),
    }
}

/// Appends a `Query` frame carrying `sql`. Refuses text with a NUL, which would cut the C string.
pub fn encode_query(sql: &str, out: &mut BytesMut) -> Result<(), ProtocolError> {
    no_nul(sql.as_bytes(), "Query")?;
    out.extend_from_slice(b"Q");
    let at = out.len();
    out.extend_from_slice(&[0; 4]);
    put_cstr(out, sql.as_bytes());
    finish_message(out, at);
    Ok(())
}

/// Appends a `Parse` frame for statement `name` with `sql` and no declared parameter types: a
/// replaced statement takes no parameters (its Binds are stripped to match).
pub fn encode_parse(name: &[u8], sql: &str, out: &mut BytesMut) -> Result<(), ProtocolError> {
    no_nul(sql.as_bytes(), "Parse")?;
    no_nul(name, "Parse")?;
    out.extend_from_slice(b"P");
    let at = out.len();
    out.extend_from_slice(&[0; 4]);
    put_cstr(out, name);
    put_cstr(out, sql.as_bytes());
    out.extend_from_slice(&0u16.to_be_bytes());
    finish_message(out, at);
    Ok(())
}

/// Re-encodes a `Bind` body as a whole frame with zero parameters (and zero parameter formats),
/// keeping portal, statement and result formats: the Bind of a replaced Parse.
pub fn encode_bind_without_params(body: &[u8], out: &mut BytesMut) -> Result<(), ProtocolError> {
    let b = decode_bind(body)?;
    // Walk again to find the result-format section, which follows the parameters.
    let mut r = Reader::new(body, "Bind");
    r.cstr()?;
    r.cstr()?;
    let nfmt = r.u16()?;
    r.bytes(nfmt as usize * 2)?;
    let nparams = r.u16()?;
    for _ in 0..nparams {
        let len = r.i32()?;
        if len > 0 {
            r.bytes(len as usize)?;
        }
    }
    let results = r.bytes(r.remaining())?;
    out.extend_from_slice(b"B");
    let at = out.len();
    out.extend_from_slice(&[0; 4]);
    put_cstr(out, b.portal);
    put_cstr(out, b.statement);
    out.extend_from_slice(&0u16.to_be_bytes());
    out.extend_from_slice(&0u16.to_be_bytes());
    out.extend_from_slice(results);
    finish_message(out, at);
    Ok(())
}

fn no_nul(s: &[u8], what: &'static str) -> Result<(), ProtocolError> {
    if s.contains(&0) {
        Err(ProtocolError::malformed(what, "text contains a NUL byte"))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoders_roundtrip() {
        let mut out = BytesMut::new();
        encode_query("select 'x'", &mut out).unwrap();
        assert_eq!(decode_query(&out[5..]).unwrap().sql, b"select 'x'");
        let mut out = BytesMut::new();
        encode_parse(b"s", "do $$ begin end $$", &mut out).unwrap();
        let p = decode_parse(&out[5..]).unwrap();
        assert_eq!((p.name, p.param_types), (&b"s"[..], 0));
        assert!(encode_query("a\0b", &mut BytesMut::new()).is_err());
        // portal "", statement "s", 1 format, 2 params, 1 result format (binary).
        let body = b"\0s\0\0\x01\0\0\0\x02\xff\xff\xff\xff\0\0\0\x02ab\0\x01\0\x01";
        let mut out = BytesMut::new();
        encode_bind_without_params(body, &mut out).unwrap();
        assert_eq!(&out[5..], b"\0s\0\0\0\0\0\0\x01\0\x01");
        let len = i32::from_be_bytes([out[1], out[2], out[3], out[4]]) as usize;
        assert_eq!(len + 1, out.len());
        let b = decode_bind(&out[5..]).unwrap();
        assert_eq!((b.statement, b.params), (&b"s"[..], 0));
    }

    #[test]
    fn query() {
        assert_eq!(decode_query(b"select 1\0").unwrap().sql, b"select 1");
        assert!(decode_query(b"select 1").is_err());
        assert!(decode_query(b"select 1\0x").is_err());
    }

    #[test]
    fn parse() {
        let p = decode_parse(b"s1\0select $1\0\0\x01\0\0\0\x17").unwrap();
        assert_eq!(
            (p.name, p.sql, p.param_types),
            (&b"s1"[..], &b"select $1"[..], 1)
        );
        assert!(decode_parse(b"s1\0select $1\0\0\x02\0\0\0\x17").is_err());
        assert!(decode_parse(b"s1\0select\0\xff\xff").is_err());
    }

    #[test]
    fn bind() {
        // portal "", statement "s", 1 format (text), 2 params (NULL, "ab"), 0 result formats.
        let body = b"\0s\0\0\x01\0\0\0\x02\xff\xff\xff\xff\0\0\0\x02ab\0\0";
        let b = decode_bind(body).unwrap();
        assert_eq!((b.statement, b.params), (&b"s"[..], 2));
        assert!(decode_bind(&body[..body.len() - 1]).is_err());
        let bad = b"\0s\0\0\0\0\x01\xff\xff\xff\xfe\0\0";
        assert!(decode_bind(bad).is_err());
    }

    /// PostgreSQL reads the counts as unsigned 16-bit: 40,000 parameters (0x9C40, negative as
    /// an i16) are a legal Parse and Bind.
    #[test]
    fn counts_above_i16_max_are_legal() {
        let n: u16 = 40_000;
        let mut parse = b"s\0select 1\0".to_vec();
        parse.extend_from_slice(&n.to_be_bytes());
        parse.extend(std::iter::repeat_n(0u8, n as usize * 4));
        assert_eq!(decode_parse(&parse).unwrap().param_types, n);
        let mut bind = b"\0s\0".to_vec();
        bind.extend_from_slice(&0u16.to_be_bytes());
        bind.extend_from_slice(&n.to_be_bytes());
        for _ in 0..n {
            bind.extend_from_slice(&1i32.to_be_bytes());
            bind.push(b'7');
        }
        bind.extend_from_slice(&0u16.to_be_bytes());
        assert_eq!(decode_bind(&bind).unwrap().params, n);
        let values = bind_text_params(&bind).unwrap();
        assert_eq!(values.len(), n as usize);
        let mut out = BytesMut::new();
        encode_bind_without_params(&bind, &mut out).unwrap();
        assert_eq!(decode_bind(&out[5..]).unwrap().params, 0);
    }

    #[test]
    fn close() {
        assert_eq!(decode_close(b"Sx\0"), Ok(Close::Statement(b"x")));
        assert_eq!(decode_close(b"P\0"), Ok(Close::Portal(b"")));
        assert!(decode_close(b"Zx\0").is_err());
        assert!(decode_close(b"").is_err());
    }
}
