//! The frontend messages of an injected lookup, written straight into the send buffer.
//!
//! Byte for byte what pgwire's encoders write (the tests compare them), without building a
//! message value first: a `Bind` value owns its portal and statement names and a `Bytes` per
//! parameter, so every lookup allocated a dozen strings only to copy them into the buffer.
use bytes::{BufMut, BytesMut};
use pgwire::error::PgWireError;

/// pgwire's length limits, kept so that an oversized message fails as it did through pgwire:
/// `Parse` and `Bind` may be large, `Close` and `Execute` are small messages.
const LARGE_LIMIT: usize = 0x3fff_ffff - 1;
const SMALL_LIMIT: usize = 10_000;

/// The message type byte and its length (the length field included), checked against `limit`
/// after the type byte, as pgwire does.
fn header(buf: &mut BytesMut, kind: u8, len: usize, limit: usize) -> Result<(), PgWireError> {
    buf.reserve(1 + len.min(limit));
    buf.put_u8(kind);
    if len > limit {
        return Err(PgWireError::MessageTooLarge(limit, len));
    }
    // `len <= limit < i32::MAX`: the cast keeps the value.
    buf.put_i32(len as i32);
    Ok(())
}

fn cstring(buf: &mut BytesMut, s: &str) {
    buf.put_slice(s.as_bytes());
    buf.put_u8(0);
}

/// `Parse` of `query` under `name`, no parameter types.
pub(super) fn parse(buf: &mut BytesMut, name: &str, query: &str) -> Result<(), PgWireError> {
    header(
        buf,
        b'P',
        4 + name.len() + 1 + query.len() + 1 + 2,
        LARGE_LIMIT,
    )?;
    cstring(buf, name);
    cstring(buf, query);
    buf.put_u16(0);
    Ok(())
}

/// `Bind` of `statement` to `portal`: text parameters (`None` = NULL), no format codes.
pub(super) fn bind(
    buf: &mut BytesMut,
    portal: &str,
    statement: &str,
    params: &[Option<&str>],
) -> Result<(), PgWireError> {
    let values: usize = params.iter().map(|p| 4 + p.map_or(0, str::len)).sum();
    let len = 4 + portal.len() + 1 + statement.len() + 1 + 2 + 2 + values + 2;
    header(buf, b'B', len, LARGE_LIMIT)?;
    cstring(buf, portal);
    cstring(buf, statement);
    buf.put_u16(0);
    // A parameter count beyond u16 is cut as pgwire cut it; lookups bind at most four.
    buf.put_u16(params.len() as u16);
    for p in params {
        match p {
            Some(v) => {
                buf.put_i32(v.len() as i32);
                buf.put_slice(v.as_bytes());
            }
            None => buf.put_i32(-1),
        }
    }
    buf.put_i16(0);
    Ok(())
}

/// `Execute` of `portal`, every row.
pub(super) fn execute(buf: &mut BytesMut, portal: &str) -> Result<(), PgWireError> {
    header(buf, b'E', 4 + portal.len() + 1 + 4, SMALL_LIMIT)?;
    cstring(buf, portal);
    buf.put_i32(0);
    Ok(())
}

/// `Close` of the statement (`b'S'`) or portal (`b'P'`) `name`.
pub(super) fn close(buf: &mut BytesMut, target: u8, name: &str) -> Result<(), PgWireError> {
    header(buf, b'C', 4 + 1 + name.len() + 1, SMALL_LIMIT)?;
    buf.put_u8(target);
    cstring(buf, name);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use pgwire::messages::extendedquery::{Bind, Close, Execute, Parse};
    use pgwire::messages::Message;

    fn ours(f: impl FnOnce(&mut BytesMut) -> Result<(), PgWireError>) -> Vec<u8> {
        let mut buf = BytesMut::from(&b"before"[..]);
        f(&mut buf).unwrap();
        buf.to_vec()
    }

    fn pgwires(f: impl FnOnce(&mut BytesMut) -> Result<(), PgWireError>) -> Vec<u8> {
        ours(f)
    }

    #[test]
    fn every_message_is_pgwires_bytes() {
        for (name, query) in [
            ("", ""),
            ("pgwarden_lookup", "SELECT $1::text"),
            ("n", "é ü"),
        ] {
            assert_eq!(
                ours(|b| parse(b, name, query)),
                pgwires(|b| Parse::new(Some(name.into()), query.into(), vec![]).encode(b)),
            );
        }
        let rows: [&[Option<&str>]; 5] = [
            &[],
            &[None],
            &[Some("")],
            &[Some("public"), Some("item_r1")],
            &[None, Some("tab\0le"), Some("col é"), None],
        ];
        for params in rows {
            for (portal, statement) in [("", ""), ("pgwarden_lookup", "pgwarden_lookup_rel_1")] {
                let owned: Vec<Option<Bytes>> = params
                    .iter()
                    .map(|v| v.map(|s| Bytes::copy_from_slice(s.as_bytes())))
                    .collect();
                assert_eq!(
                    ours(|b| bind(b, portal, statement, params)),
                    pgwires(|b| Bind::new(
                        Some(portal.into()),
                        Some(statement.into()),
                        vec![],
                        owned,
                        vec![],
                    )
                    .encode(b)),
                );
            }
        }
        for portal in ["", "pgwarden_lookup"] {
            assert_eq!(
                ours(|b| execute(b, portal)),
                pgwires(|b| Execute::new(Some(portal.into()), 0).encode(b)),
            );
            for target in [b'S', b'P'] {
                assert_eq!(
                    ours(|b| close(b, target, portal)),
                    pgwires(|b| Close::new(target, Some(portal.into())).encode(b)),
                );
            }
        }
    }

    #[test]
    fn oversized_messages_fail_as_through_pgwire() {
        let long = "x".repeat(SMALL_LIMIT);
        let mut a = BytesMut::new();
        let mut b = BytesMut::new();
        let ours = close(&mut a, b'S', &long).unwrap_err().to_string();
        let theirs = Close::new(b'S', Some(long.clone()))
            .encode(&mut b)
            .unwrap_err()
            .to_string();
        assert_eq!(ours, theirs);
        assert_eq!(a, b, "the same bytes left behind");
        let ours = execute(&mut a, &long).unwrap_err().to_string();
        let theirs = Execute::new(Some(long), 0)
            .encode(&mut b)
            .unwrap_err()
            .to_string();
        assert_eq!(ours, theirs);
        assert_eq!(a, b);
    }
}
