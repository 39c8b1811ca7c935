//! Client encodings as the server reads them: where each character of a query string ends.
//!
//! PostgreSQL converts a Query/Parse text from `client_encoding` to the database encoding
//! before its lexer sees a byte, and every encoding it can store (the server encodings) keeps
//! ASCII bytes ASCII. Seven encodings are client-only because a multibyte character's later
//! bytes may be ASCII: SJIS, SHIFT_JIS_2004, BIG5, GBK, UHC, GB18030 and JOHAB. In SJIS
//! `0x95 0x5C` is one character ("表"), but read byte by byte it ends in a backslash: lexed
//! naively, that backslash escapes the next quote and the rest of the Query looks like a
//! string. So pgwarden walks such text by PostgreSQL's own character lengths
//! (`pg_encoding_mblen` in `src/common/wchar.c`) and replaces each non-ASCII character by one
//! U+FFFD: the copy has exactly the ASCII bytes the server's lexer will see, in the same
//! places, and a non-ASCII character wherever the server sees one (PostgreSQL's lexer treats
//! every byte >= 0x80 alike: part of an identifier, or content of a literal).
//!
//! The copy is exact in *structure* (statement boundaries, classes, quoting) but not in the
//! characters themselves, so non-ASCII names in it are not the real names: the enforcer fails
//! closed on non-ASCII DDL read in a non-UTF-8 encoding (see `enforce::engine`).
use std::borrow::Cow;

/// How an encoding delimits characters, which is all the lexer needs to know.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    /// UTF-8 and every server encoding (LATIN1..10, WIN125x, EUC_*, KOI8, MULE_INTERNAL,
    /// SQL_ASCII, ...): a byte < 0x80 is always an ASCII character.
    AsciiSafe,
    /// SJIS and SHIFT_JIS_2004: 0xA1..=0xDF is a one-byte half-width katakana, any other byte
    /// >= 0x80 starts a two-byte character whose second byte may be ASCII.
    Sjis,
    /// BIG5, GBK and UHC: any byte >= 0x80 starts a two-byte character.
    TwoByte,
    /// GB18030: a byte >= 0x80 starts a four-byte character when the next byte is an ASCII
    /// digit, else a two-byte one.
    Gb18030,
    /// JOHAB (PostgreSQL measures it as EUC): 0x8E starts two bytes, 0x8F three, any other
    /// byte >= 0x80 two.
    Johab,
}

/// Every family, for when the encoding the server will apply is not known.
pub const ALL_FAMILIES: [Family; 5] = [
    Family::AsciiSafe,
    Family::Sjis,
    Family::TwoByte,
    Family::Gb18030,
    Family::Johab,
];

/// PostgreSQL's encoding names that are ASCII-safe (its server encodings), normalised as in
/// [`normalise`].
const ASCII_SAFE: &[&str] = &[
    "sqlascii",
    "utf8",
    "unicode",
    "eucjp",
    "euccn",
    "euckr",
    "euctw",
    "eucjis2004",
    "muleinternal",
    "latin1",
    "latin2",
    "latin3",
    "latin4",
    "latin5",
    "latin6",
    "latin7",
    "latin8",
    "latin9",
    "latin10",
    "iso88591",
    "iso88592",
    "iso88593",
    "iso88594",
    "iso88595",
    "iso88596",
    "iso88597",
    "iso88598",
    "iso88599",
    "iso885910",
    "iso885913",
    "iso885914",
    "iso885915",
    "iso885916",
    "win866",
    "win874",
    "win1250",
    "win1251",
    "win1252",
    "win1253",
    "win1254",
    "win1255",
    "win1256",
    "win1257",
    "win1258",
    "windows866",
    "windows874",
    "windows1250",
    "windows1251",
    "windows1252",
    "windows1253",
    "windows1254",
    "windows1255",
    "windows1256",
    "windows1257",
    "windows1258",
    "koi8",
    "koi8r",
    "koi8u",
    "alt",
    "tcvn",
    "tcvn5712",
    "vscii",
    "abc",
];

/// Longest encoding name pgwarden compares (after [`normalise`]); longer is unknown.
const MAX_NAME: usize = 24;

/// Lower-case, only letters and digits: PostgreSQL's `clean_encoding_name` comparison
/// (`Shift_JIS`, `shift-jis` and `SHIFTJIS` are one name). On the stack: this runs for every
/// Query.
fn normalise(name: &str) -> Option<([u8; MAX_NAME], usize)> {
    let mut out = [0u8; MAX_NAME];
    let mut n = 0;
    for b in name.bytes().filter(u8::is_ascii_alphanumeric) {
        *out.get_mut(n)? = b.to_ascii_lowercase();
        n += 1;
    }
    Some((out, n))
}

impl Family {
    /// The family of a PostgreSQL encoding name (as ParameterStatus `client_encoding`
    /// reports it, or any alias the server accepts); `None` for a name pgwarden does not know.
    pub fn from_name(name: &str) -> Option<Family> {
        let (buf, len) = normalise(name)?;
        let n = std::str::from_utf8(&buf[..len]).ok()?;
        match n {
            "sjis" | "shiftjis" | "mskanji" | "win932" | "windows932" | "shiftjis2004" => {
                Some(Family::Sjis)
            }
            "big5" | "win950" | "windows950" | "gbk" | "win936" | "windows936" | "cp936"
            | "uhc" | "win949" | "windows949" => Some(Family::TwoByte),
            "gb18030" => Some(Family::Gb18030),
            "johab" => Some(Family::Johab),
            _ if ASCII_SAFE.contains(&n) => Some(Family::AsciiSafe),
            _ => None,
        }
    }

    /// Length of the character starting at `s[0]`, as PostgreSQL's `pg_encoding_mblen`
    /// computes it (it may run past the end of a truncated text; callers clamp).
    pub fn mblen(self, s: &[u8]) -> usize {
        let Some(&b) = s.first() else { return 1 };
        if b < 0x80 {
            return 1;
        }
        match self {
            // Not used for AsciiSafe text (it is decoded as UTF-8), but a high byte alone is
            // the safe answer: it never swallows the next byte.
            Family::AsciiSafe => 1,
            Family::Sjis if (0xa1..=0xdf).contains(&b) => 1,
            Family::Sjis | Family::TwoByte => 2,
            Family::Gb18030 => match s.get(1) {
                Some(d) if d.is_ascii_digit() => 4,
                _ => 2,
            },
            Family::Johab => match b {
                0x8f => 3,
                _ => 2,
            },
        }
    }
}

/// The text the server's lexer will see for `bytes` sent under `family`, structurally: see
/// the module documentation. Borrowed (no allocation) when the bytes are ASCII, or valid UTF-8
/// in an ASCII-safe encoding. For an ASCII-safe encoding, invalid UTF-8 is shown lossily,
/// which keeps every ASCII byte in place.
pub fn server_text(bytes: &[u8], family: Family) -> Cow<'_, str> {
    if family == Family::AsciiSafe || bytes.is_ascii() {
        // Valid UTF-8 (every plain query) borrows; `from_utf8` checks it several times faster
        // than `from_utf8_lossy`, which walks the text in chunks even when nothing is invalid.
        return match std::str::from_utf8(bytes) {
            Ok(s) => Cow::Borrowed(s),
            Err(_) => String::from_utf8_lossy(bytes),
        };
    }
    let mut out = String::with_capacity(bytes.len() + bytes.len() / 2);
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b < 0x80 {
            out.push(b as char);
            i += 1;
        } else {
            out.push(char::REPLACEMENT_CHARACTER);
            i += family.mblen(&bytes[i..]).min(bytes.len() - i);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_aliases() {
        assert_eq!(Family::from_name("SJIS"), Some(Family::Sjis));
        assert_eq!(Family::from_name("Shift_JIS"), Some(Family::Sjis));
        assert_eq!(Family::from_name("SHIFT_JIS_2004"), Some(Family::Sjis));
        assert_eq!(Family::from_name("BIG5"), Some(Family::TwoByte));
        assert_eq!(Family::from_name("gbk"), Some(Family::TwoByte));
        assert_eq!(Family::from_name("UHC"), Some(Family::TwoByte));
        assert_eq!(Family::from_name("GB18030"), Some(Family::Gb18030));
        assert_eq!(Family::from_name("JOHAB"), Some(Family::Johab));
        assert_eq!(Family::from_name("UTF8"), Some(Family::AsciiSafe));
        assert_eq!(Family::from_name("utf-8"), Some(Family::AsciiSafe));
        assert_eq!(Family::from_name("LATIN1"), Some(Family::AsciiSafe));
        assert_eq!(Family::from_name("EUC_JP"), Some(Family::AsciiSafe));
        assert_eq!(Family::from_name("WIN1252"), Some(Family::AsciiSafe));
        assert_eq!(Family::from_name("SQL_ASCII"), Some(Family::AsciiSafe));
        assert_eq!(Family::from_name(""), None);
        assert_eq!(Family::from_name("EBCDIC"), None);
    }

    #[test]
    fn sjis_second_byte_backslash_is_part_of_the_character() {
        // '表' in SJIS is 0x95 0x5C: the 0x5C is not a backslash for the server.
        let sql = b"SELECT '\x95\x5c'; DROP TABLE t";
        let t = server_text(sql, Family::Sjis);
        assert_eq!(t, "SELECT '\u{fffd}'; DROP TABLE t");
        // Read as bytes, the backslash would escape the quote.
        assert!(String::from_utf8_lossy(sql).contains('\\'));
        // Half-width katakana is one byte: the quote after it is a quote.
        assert_eq!(server_text(b"'\xb1'", Family::Sjis), "'\u{fffd}'");
    }

    #[test]
    fn other_families() {
        // BIG5 "許" = 0xB3 0x5C; GBK and UHC measure the same way.
        assert_eq!(server_text(b"'\xb3\x5c'", Family::TwoByte), "'\u{fffd}'");
        // GB18030 four-byte: 0x81 0x30 0x81 0x30 (digits inside).
        assert_eq!(
            server_text(b"x\x81\x30\x81\x30y", Family::Gb18030),
            "x\u{fffd}y"
        );
        assert_eq!(server_text(b"'\x81\x5c'", Family::Gb18030), "'\u{fffd}'");
        assert_eq!(server_text(b"\x8f\xa1\xa1'", Family::Johab), "\u{fffd}'");
        // A truncated last character does not read past the end.
        assert_eq!(server_text(b"a\x95", Family::Sjis), "a\u{fffd}");
        // ASCII and UTF-8 stay borrowed.
        assert!(matches!(
            server_text(b"select 1", Family::Sjis),
            Cow::Borrowed(_)
        ));
        assert!(matches!(
            server_text("select 'é'".as_bytes(), Family::AsciiSafe),
            Cow::Borrowed(_)
        ));
        // Invalid UTF-8 in an ASCII-safe encoding keeps its ASCII bytes.
        assert_eq!(server_text(b"'\xe9'", Family::AsciiSafe), "'\u{fffd}'");
    }
}
