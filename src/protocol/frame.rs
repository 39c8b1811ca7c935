//! Frame checker and cutter: type byte + 4-byte length, checked before anything is parsed.
//!
//! "Not enough bytes yet" is `Ok(None)`, never an error. The length must be at least 4 (it counts
//! itself) and at most the cap for the message type, the same caps PostgreSQL applies
//! (`PQ_LARGE_MESSAGE_LIMIT` for Query/Parse/Bind/CopyData/FunctionCall, `PQ_SMALL_MESSAGE_LIMIT`
//! for the rest, `PG_MAX_AUTH_TOKEN_LENGTH` for password/SASL responses), so a client cannot
//! make pgwarden buffer more than the server would accept.
use bytes::{Bytes, BytesMut};

use super::ProtocolError;

/// Bytes of the frame header: type byte and length.
pub const HEADER_LEN: usize = 5;

/// Per-type size caps, in bytes of the length field's value (which includes the 4 length bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameLimits {
    /// Query, Parse, Bind, CopyData, FunctionCall from clients; every server message.
    pub large: usize,
    /// Every other client message (Sync, Execute, Describe, Close, Flush, Terminate, ...).
    pub small: usize,
    /// PasswordMessage / SASLInitialResponse / SASLResponse / GSSResponse (all type `p`).
    pub auth: usize,
}

impl Default for FrameLimits {
    fn default() -> Self {
        FrameLimits {
            // PostgreSQL's PQ_LARGE_MESSAGE_LIMIT (MaxAllocSize - 1).
            large: 0x3fff_ffff - 1,
            // PostgreSQL's PQ_SMALL_MESSAGE_LIMIT.
            small: 10_000,
            // PostgreSQL's PG_MAX_AUTH_TOKEN_LENGTH.
            auth: 65_535,
        }
    }
}

/// Which peer produced the bytes: client messages get per-type caps, server messages the large one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Client,
    Server,
}

impl FrameLimits {
    /// The cap for one message type from `origin`.
    pub fn cap(&self, origin: Origin, tag: u8) -> usize {
        match origin {
            // The server is trusted to the same degree libpq trusts it: one generous cap.
            Origin::Server => self.large,
            Origin::Client => match tag {
                b'Q' | b'P' | b'B' | b'd' | b'F' => self.large,
                b'p' => self.auth,
                _ => self.small,
            },
        }
    }
}

/// A checked frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// Message type byte.
    pub tag: u8,
    /// Whole frame length on the wire: type byte + length field value.
    pub total: usize,
}

impl FrameHeader {
    /// Length of the body (after the 5-byte header).
    pub fn body_len(&self) -> usize {
        self.total - HEADER_LEN
    }
}

/// Reads and checks the header at the start of `buf`. `Ok(None)` when fewer than 5 bytes are
/// there. Does not require the body to be present: large pass-through frames are streamed.
pub fn check_header(
    buf: &[u8],
    limits: &FrameLimits,
    origin: Origin,
) -> Result<Option<FrameHeader>, ProtocolError> {
    if buf.len() < HEADER_LEN {
        return Ok(None);
    }
    let tag = buf[0];
    let len = i32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]);
    if len < 4 {
        return Err(ProtocolError::BadLength {
            tag: tag as char,
            len: len.into(),
        });
    }
    // A non-negative i32 always fits in usize on the 32/64-bit targets pgwarden builds for.
    let len = len as usize;
    let cap = limits.cap(origin, tag);
    if len > cap {
        return Err(ProtocolError::TooLarge {
            tag: tag as char,
            len: len as u64,
            cap,
        });
    }
    Ok(Some(FrameHeader {
        tag,
        total: len + 1,
    }))
}

/// A complete frame cut out of a buffer without copying.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Message type byte.
    pub tag: u8,
    /// The whole frame as it was on the wire, header included, for raw forwarding.
    pub raw: Bytes,
}

impl Frame {
    /// The body after the 5-byte header.
    pub fn body(&self) -> &[u8] {
        &self.raw[HEADER_LEN..]
    }
}

/// Cuts one complete frame off the front of `buf`. `Ok(None)` until the whole frame is there.
pub fn cut_frame(
    buf: &mut BytesMut,
    limits: &FrameLimits,
    origin: Origin,
) -> Result<Option<Frame>, ProtocolError> {
    let Some(h) = check_header(buf, limits, origin)? else {
        return Ok(None);
    };
    if buf.len() < h.total {
        return Ok(None);
    }
    Ok(Some(Frame {
        tag: h.tag,
        raw: buf.split_to(h.total).freeze(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut v = vec![tag];
        v.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn partial_header_and_body_are_not_errors() {
        let l = FrameLimits::default();
        let f = frame(b'Q', b"select 1\0");
        for cut in 0..f.len() {
            let mut b = BytesMut::from(&f[..cut]);
            assert_eq!(
                cut_frame(&mut b, &l, Origin::Client),
                Ok(None),
                "cut at {cut}"
            );
            assert_eq!(b.len(), cut, "nothing consumed");
        }
        let mut b = BytesMut::from(&f[..]);
        let got = cut_frame(&mut b, &l, Origin::Client).unwrap().unwrap();
        assert_eq!(got.tag, b'Q');
        assert_eq!(got.body(), b"select 1\0");
        assert!(b.is_empty());
    }

    #[test]
    fn two_frames_in_one_read_are_cut_in_order() {
        let l = FrameLimits::default();
        let mut v = frame(b'P', b"\0select 1\0\0\0");
        v.extend(frame(b'S', b""));
        let mut b = BytesMut::from(&v[..]);
        assert_eq!(
            cut_frame(&mut b, &l, Origin::Client).unwrap().unwrap().tag,
            b'P'
        );
        let s = cut_frame(&mut b, &l, Origin::Client).unwrap().unwrap();
        assert_eq!((s.tag, s.raw.len()), (b'S', 5));
        assert_eq!(cut_frame(&mut b, &l, Origin::Client), Ok(None));
    }

    #[test]
    fn negative_and_short_lengths_are_refused() {
        let l = FrameLimits::default();
        for len in [-1i32, i32::MIN, 0, 3] {
            let mut v = vec![b'Q'];
            v.extend_from_slice(&len.to_be_bytes());
            let err = check_header(&v, &l, Origin::Client).unwrap_err();
            assert!(
                matches!(err, ProtocolError::BadLength { .. }),
                "{len}: {err}"
            );
        }
    }

    #[test]
    fn per_type_caps_apply_to_clients() {
        let l = FrameLimits::default();
        let hdr = |tag: u8, len: i32| {
            let mut v = vec![tag];
            v.extend_from_slice(&len.to_be_bytes());
            v
        };
        // Sync over the small cap is refused even though the body is absent.
        assert!(matches!(
            check_header(&hdr(b'S', 10_001), &l, Origin::Client),
            Err(ProtocolError::TooLarge { cap: 10_000, .. })
        ));
        assert!(check_header(&hdr(b'S', 10_000), &l, Origin::Client).is_ok());
        assert!(matches!(
            check_header(&hdr(b'p', 65_536), &l, Origin::Client),
            Err(ProtocolError::TooLarge { .. })
        ));
        assert!(check_header(&hdr(b'Q', 100_000_000), &l, Origin::Client).is_ok());
        assert!(matches!(
            check_header(&hdr(b'Q', i32::MAX), &l, Origin::Client),
            Err(ProtocolError::TooLarge { .. })
        ));
        // Server DataRows may be large.
        assert!(check_header(&hdr(b'D', 100_000_000), &l, Origin::Server).is_ok());
    }

    #[test]
    fn configured_caps_are_honoured() {
        let l = FrameLimits {
            large: 1000,
            small: 100,
            auth: 200,
        };
        let mut v = vec![b'Q'];
        v.extend_from_slice(&1001i32.to_be_bytes());
        assert!(check_header(&v, &l, Origin::Client).is_err());
    }

    mod prop {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn cutter_never_panics(data in proptest::collection::vec(any::<u8>(), 0..512),
                                   small in 4usize..64, origin_server in any::<bool>()) {
                let l = FrameLimits { large: 256, small, auth: 128 };
                let origin = if origin_server { Origin::Server } else { Origin::Client };
                let mut b = BytesMut::from(&data[..]);
                let mut consumed = 0;
                while let Ok(Some(f)) = cut_frame(&mut b, &l, origin) {
                    prop_assert!(f.raw.len() >= HEADER_LEN);
                    consumed += f.raw.len();
                }
                prop_assert_eq!(consumed + b.len(), data.len());
            }

            #[test]
            fn valid_frames_roundtrip(bodies in proptest::collection::vec(
                proptest::collection::vec(any::<u8>(), 0..100), 0..8)) {
                let l = FrameLimits::default();
                let mut wire = Vec::new();
                for body in &bodies { wire.extend(frame(b'd', body)); }
                let mut b = BytesMut::from(&wire[..]);
                for body in &bodies {
                    let f = cut_frame(&mut b, &l, Origin::Client).unwrap().unwrap();
                    prop_assert_eq!(f.body(), &body[..]);
                }
                prop_assert!(b.is_empty());
            }
        }
    }
}
