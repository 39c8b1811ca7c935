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
    let mut out = String::with_capacity(sql.len().min(MAX_EXCERPT + 3));
    for word in sql.split_whitespace() {
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
}
