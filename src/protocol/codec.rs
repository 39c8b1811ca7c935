//! Small readers shared by the decoders: C strings and big-endian integers with bounds checks.
use super::ProtocolError;

/// A cursor over a message body that refuses to read past its end.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    what: &'static str,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8], what: &'static str) -> Self {
        Reader { buf, pos: 0, what }
    }

    pub(crate) fn err(&self, why: &'static str) -> ProtocolError {
        ProtocolError::malformed(self.what, why)
    }

    /// Reads a NUL-terminated string; the NUL is consumed, not returned.
    pub(crate) fn cstr(&mut self) -> Result<&'a [u8], ProtocolError> {
        let rest = &self.buf[self.pos..];
        let nul = memchr(rest).ok_or_else(|| self.err("string without terminating NUL"))?;
        self.pos += nul + 1;
        Ok(&rest[..nul])
    }

    /// Reads a NUL-terminated string that must be UTF-8 (names, parameter values).
    pub(crate) fn cstr_utf8(&mut self) -> Result<&'a str, ProtocolError> {
        let raw = self.cstr()?;
        std::str::from_utf8(raw).map_err(|_| self.err("string is not valid UTF-8"))
    }

    pub(crate) fn u8(&mut self) -> Result<u8, ProtocolError> {
        let b = *self
            .buf
            .get(self.pos)
            .ok_or_else(|| self.err("message ends early"))?;
        self.pos += 1;
        Ok(b)
    }

    pub(crate) fn i16(&mut self) -> Result<i16, ProtocolError> {
        let b = self.bytes(2)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }

    /// A 16-bit count as PostgreSQL reads it (`pq_getmsgint(msg, 2)` is unsigned: 0..=65535).
    pub(crate) fn u16(&mut self) -> Result<u16, ProtocolError> {
        let b = self.bytes(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    pub(crate) fn i32(&mut self) -> Result<i32, ProtocolError> {
        let b = self.bytes(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub(crate) fn bytes(&mut self, n: usize) -> Result<&'a [u8], ProtocolError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| self.err("message ends early"))?;
        let out = &self.buf[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Leftover bytes after a typed decode mean the peer and pgwarden disagree about the
    /// message layout; refuse rather than guess.
    pub(crate) fn finish(&self) -> Result<(), ProtocolError> {
        if self.remaining() == 0 {
            Ok(())
        } else {
            Err(self.err("trailing bytes after message"))
        }
    }
}

/// The first NUL: vectorised (`memchr`), where a byte-at-a-time `position` cost ~5
/// instructions per byte of every Parse's query text (BENCHMARKS.md, issue 15).
fn memchr(s: &[u8]) -> Option<usize> {
    memchr::memchr(0, s)
}

/// Appends `s` and a NUL. Callers must have refused interior NULs already.
pub(crate) fn put_cstr(out: &mut bytes::BytesMut, s: &[u8]) {
    out.extend_from_slice(s);
    out.extend_from_slice(&[0]);
}

/// Back-fills the 4-byte length of a message started at `start` (its type byte excluded).
pub(crate) fn finish_message(out: &mut bytes::BytesMut, len_at: usize) {
    let len = (out.len() - len_at) as u32;
    out[len_at..len_at + 4].copy_from_slice(&len.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cstr_stops_at_the_first_nul_wherever_it_is() {
        // Short and longer than one vector of the search, the NUL first, inside and last.
        for len in [0usize, 1, 7, 15, 16, 17, 31, 32, 33, 64, 100, 1000] {
            let text: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
            let mut body = text.clone();
            body.push(0);
            body.extend_from_slice(b"next\0");
            let mut r = Reader::new(&body, "test");
            assert_eq!(r.cstr().unwrap(), &text[..]);
            assert_eq!(r.cstr().unwrap(), b"next");
            assert!(r.cstr().is_err(), "nothing left");
            // Without a NUL anywhere: an error, never a read past the end.
            let mut r = Reader::new(&text, "test");
            assert!(r.cstr().is_err());
        }
    }
}
