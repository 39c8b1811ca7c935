//! Statement fingerprints: normalise the text, then a stable 64-bit FNV-1a hash in hex.
//!
//! The fingerprint groups "the same statement" across runs and environments (staging vs prod,
//! today vs next month), so it must not depend on literal values, formatting, comments or
//! keyword case, and the hash must never change between pgwarden versions: FNV-1a is fixed by
//! its published constants, unlike `std`'s `DefaultHasher`, whose algorithm is unspecified.
use super::lex::{Kind, Tokens};

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// 64-bit FNV-1a of `bytes`.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h = FNV_OFFSET;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(FNV_PRIME);
    }
    h
}

/// The normalised form: comments dropped, string and numeric constants replaced by `?`,
/// unquoted words lower-cased, quoted identifiers kept verbatim, tokens joined by one space,
/// a trailing `;` dropped. Bind parameters (`$1`) stay as they are.
pub fn normalize(sql: &str, standard_conforming_strings: bool) -> String {
    let mut toks = Tokens::new(sql, standard_conforming_strings).peekable();
    let mut out = String::with_capacity(sql.len().min(4096));
    while let Some(t) = toks.next() {
        let text = t.text(sql);
        if t.kind == Kind::Punct && text == ";" && toks.peek().is_none() {
            break;
        }
        if !out.is_empty() {
            out.push(' ');
        }
        match t.kind {
            Kind::String | Kind::Number => out.push('?'),
            // The same as `to_lowercase` for ASCII, without a String per word.
            Kind::Word if text.is_ascii() => {
                out.extend(text.bytes().map(|b| char::from(b.to_ascii_lowercase())))
            }
            Kind::Word => out.push_str(&text.to_lowercase()),
            Kind::QuotedIdent | Kind::Param | Kind::Punct => out.push_str(text),
        }
    }
    out
}

/// Fingerprint of a statement: 16 lowercase hex digits.
pub fn fingerprint(sql: &str, standard_conforming_strings: bool) -> String {
    format!(
        "{:016x}",
        fnv1a64(normalize(sql, standard_conforming_strings).as_bytes())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv_reference_vectors() {
        // Published FNV-1a 64 test vectors.
        assert_eq!(fnv1a64(b""), 0xcbf29ce484222325);
        assert_eq!(fnv1a64(b"a"), 0xaf63dc4c8601ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x85944171f73967e8);
    }

    #[test]
    fn normalisation() {
        assert_eq!(
            normalize(
                "\nALTER TABLE  Users /* why */ ADD COLUMN \"Age\" int DEFAULT 42 -- x\n;",
                true
            ),
            "alter table users add column \"Age\" int default ?"
        );
        assert_eq!(
            normalize("INSERT INTO t VALUES ('a', E'b\\'c', $$d$$, 1.5, $1)", true),
            "insert into t values ( ? , ? , ? , ? , $1 )"
        );
    }

    #[test]
    fn words_are_lower_cased_as_unicode_says() {
        assert_eq!(
            normalize("SELECT ÄÖ, Ǆ FROM Straße;", true),
            "select äö , ǆ from straße"
        );
        assert_eq!(normalize("a; b;", true), "a ; b");
        assert_eq!(normalize(";", true), "");
    }

    #[test]
    fn same_statement_same_fingerprint() {
        let a = fingerprint("CREATE INDEX i ON t (a) WHERE b = 'x'", true);
        let b = fingerprint("create   index i\n on T(a) where b='yy'; ", true);
        assert_eq!(a, b);
        assert_eq!(a.len(), 16);
        let c = fingerprint("CREATE INDEX i ON \"T\" (a) WHERE b = 'x'", true);
        assert_ne!(a, c);
    }

    #[test]
    fn fingerprint_is_stable_across_versions() {
        // Pinned value: if this changes, every stored fingerprint in users' logs breaks.
        assert_eq!(
            fingerprint("CREATE TABLE users (id int)", true),
            format!("{:016x}", fnv1a64(b"create table users ( id int )"))
        );
        assert_eq!(
            fingerprint("CREATE TABLE users (id int)", true),
            "79bbf6c048af8fc0"
        );
    }
}
