//! The statement that replaces a rejected one: a `DO` block whose `RAISE` makes the *server*
//! fail the transaction (DESIGN.md decision 5).
//!
//! Answering an ErrorResponse from the proxy would leave the server's transaction healthy, and a
//! later `COMMIT` (psql without ON_ERROR_STOP) would commit half a migration. A server-side error
//! keeps client and server in agreement: the following COMMIT answers ROLLBACK.

/// SQLSTATE of every policy rejection. Class `PW` is not used by PostgreSQL, so no client treats
/// it as retryable (class 40) or as a connection problem (class 08); psycopg2 maps it to
/// `InternalError`, asyncpg to a plain `PostgresError`, and the text still reaches the user.
pub const REJECT_SQLSTATE: &str = "PW001";

/// Longest statement excerpt quoted in DETAIL: a 10 MB statement must not come back 10 MB long.
const MAX_EXCERPT: usize = 400;

/// The three texts a user sees when a statement is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// Rule id, table and size, and what would happen.
    pub message: String,
    /// The lock and the statement.
    pub detail: String,
    /// The safe recipe.
    pub hint: String,
}

/// Builds `DO $tag$ BEGIN RAISE EXCEPTION USING ... ; END $tag$` for `rejection`.
///
/// `ascii_only` is set when the client encoding is not UTF-8: the server would read our UTF-8
/// bytes in the client's encoding, so non-ASCII characters are replaced rather than garbled.
pub fn raise_statement(rejection: &Rejection, ascii_only: bool) -> String {
    raise_with_sqlstate(rejection, REJECT_SQLSTATE, ascii_only)
}

/// As [`raise_statement`] with another SQLSTATE (five characters of `[0-9A-Z]`, pgwarden's own
/// constants: never client text), for errors that must keep the server's own code (the lock
/// timeout pgwarden gave up on stays 55P03, so client retry logic still recognises it).
pub fn raise_with_sqlstate(rejection: &Rejection, sqlstate: &str, ascii_only: bool) -> String {
    let code: String = sqlstate
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(5)
        .collect();
    let message = literal(&rejection.message, ascii_only);
    let detail = literal(&rejection.detail, ascii_only);
    let hint = literal(&rejection.hint, ascii_only);
    let body = format!(
        " BEGIN RAISE EXCEPTION USING ERRCODE = '{code}', MESSAGE = {message}, DETAIL = {detail}, HINT = {hint}; END "
    );
    let tag = dollar_tag(&body);
    format!("DO {tag}{body}{tag}")
}

/// A statement excerpt for DETAIL: trimmed, whitespace runs collapsed, cut at `MAX_EXCERPT` bytes.
pub fn excerpt(sql: &str) -> String {
    if !sql.is_ascii() {
        return excerpt_of_words(sql.len(), sql.split_whitespace());
    }
    // Every DDL statement is excerpted (the activity view): an ASCII text is cut into words by
    // bytes, where `split_whitespace` decodes every character. The ASCII characters
    // `char::is_whitespace` knows are the six below (vertical tab included, unlike
    // `u8::is_ascii_whitespace`), so the words are the same.
    let is_space = |b: u8| matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r');
    let bytes = sql.as_bytes();
    let mut i = 0;
    let words = std::iter::from_fn(|| {
        while i < bytes.len() && is_space(bytes[i]) {
            i += 1;
        }
        let start = i;
        while i < bytes.len() && !is_space(bytes[i]) {
            i += 1;
        }
        // Cut at ASCII bytes of an ASCII text: always a character boundary.
        (start < i).then(|| sql.get(start..i)).flatten()
    });
    excerpt_of_words(sql.len(), words)
}

fn excerpt_of_words<'a>(len: usize, words: impl Iterator<Item = &'a str>) -> String {
    let mut out = String::with_capacity(len.min(MAX_EXCERPT + 3));
    for word in words {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
        if out.len() > MAX_EXCERPT {
            let mut cut = MAX_EXCERPT;
            while !out.is_char_boundary(cut) {
                cut -= 1;
            }
            out.truncate(cut);
            out.push_str("...");
            break;
        }
    }
    out
}

/// An `E''` literal: quotes doubled and backslashes escaped, so the result means the same
/// whatever `standard_conforming_strings` is.
fn literal(text: &str, ascii_only: bool) -> String {
    let mut out = String::with_capacity(text.len() + 4);
    out.push_str("E'");
    for c in text.chars() {
        match c {
            '\'' => out.push_str("''"),
            '\\' => out.push_str("\\\\"),
            '\0' => {}
            c if ascii_only && !c.is_ascii() => out.push('?'),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// A dollar-quote tag that does not occur in `body`, so no text can end the quote early.
fn dollar_tag(body: &str) -> String {
    let mut tag = String::from("$pgwarden$");
    let mut n = 0u32;
    while body.contains(&tag) {
        n += 1;
        tag = format!("$pgwarden{n}$");
    }
    tag
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rejection(message: &str) -> Rejection {
        Rejection {
            message: message.into(),
            detail: "lock".into(),
            hint: "recipe".into(),
        }
    }

    #[test]
    fn quotes_and_backslashes_are_escaped() {
        let s = raise_statement(&rejection(r"it's a \ test"), false);
        assert!(s.contains(r"MESSAGE = E'it''s a \\ test'"), "{s}");
    }

    #[test]
    fn tag_never_occurs_in_body() {
        let s = raise_statement(&rejection("$pgwarden$ and $pgwarden1$"), false);
        assert!(s.starts_with("DO $pgwarden2$"), "{s}");
        assert!(s.ends_with("$pgwarden2$"));
    }

    #[test]
    fn ascii_only_replaces_non_ascii() {
        let s = raise_statement(&rejection("tábla"), true);
        assert!(s.contains("E't?bla'"), "{s}");
    }

    #[test]
    fn excerpt_is_bounded_and_collapsed() {
        assert_eq!(
            excerpt("\n CREATE  INDEX\n\tON t (a)\n"),
            "CREATE INDEX ON t (a)"
        );
        let long = "é".repeat(10_000);
        let e = excerpt(&long);
        assert!(e.len() <= MAX_EXCERPT + 3);
        assert!(e.ends_with("..."));
    }

    #[test]
    fn ascii_excerpt_is_the_whitespace_split_one() {
        let by_chars = |sql: &str| excerpt_of_words(sql.len(), sql.split_whitespace());
        let word = "ab\u{b}c\u{c}d\re\tf\ng h\u{1f}i\u{1c}j";
        let mut texts = vec![
            String::new(),
            " ".into(),
            "\u{b}\u{c}\r\n\t ".into(),
            word.into(),
            format!("  {word}  {word}\n"),
            "CREATE TABLE item (\n    id INTEGER, \n    name VARCHAR(120) NOT NULL\n);\n".into(),
        ];
        // Around the cut: words ending just before, at and after MAX_EXCERPT.
        for n in [
            MAX_EXCERPT - 2,
            MAX_EXCERPT - 1,
            MAX_EXCERPT,
            MAX_EXCERPT + 1,
        ] {
            texts.push(format!("{} tail more", "x".repeat(n)));
            texts.push(format!("ab \t {}  tail", "y".repeat(n)));
        }
        texts.push("word ".repeat(200));
        for t in &texts {
            assert!(t.is_ascii());
            assert_eq!(excerpt(t), by_chars(t), "{t:?}");
        }
        // Non-ASCII texts keep the character split (U+0085 and U+3000 are whitespace).
        assert_eq!(excerpt("a\u{85}b\u{3000}c é"), "a b c é");
    }
}
