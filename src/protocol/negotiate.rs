//! NegotiateProtocolVersion: pgwarden's answer to a client asking for protocol 3.x > 3.0 or for
//! `_pq_.` options, so it never forwards a protocol it cannot read.
use bytes::BytesMut;
use pgwire::messages::startup::NegotiateProtocolVersion;
use pgwire::messages::Message;

use super::startup::PROTOCOL_3_0;

/// Appends a NegotiateProtocolVersion frame offering 3.0 and naming the unsupported options.
///
/// PostgreSQL (up to 17) sends the full version number (196608) in the first field, and both
/// libpq 17 and 18 read it that way; so does pgwarden.
pub fn encode_negotiate_protocol_version(options: &[String], out: &mut BytesMut) {
    let msg = NegotiateProtocolVersion::new(PROTOCOL_3_0, options.to_vec());
    // Encoding into a BytesMut cannot fail: pgwire only errors on decoding.
    if msg.encode(out).is_err() {
        debug_assert!(false, "encoding NegotiateProtocolVersion failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout() {
        let mut out = BytesMut::new();
        encode_negotiate_protocol_version(&["_pq_.x".to_owned()], &mut out);
        let mut expect = vec![b'v', 0, 0, 0, 19, 0, 3, 0, 0, 0, 0, 0, 1];
        expect.extend_from_slice(b"_pq_.x\0");
        assert_eq!(&out[..], &expect[..]);
    }
}
