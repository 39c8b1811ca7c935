//! A small SQL tokenizer with byte spans and literal values: the audit layer's redaction,
//! fingerprints and migration rows, and the transaction-control reader ([`super::txcontrol`]).
//!
//! The statement splitter and classifier is `sql::lexer`; this one answers what they need:
//! comments skipped, every string form recognised as one token (so a `PASSWORD` inside a string
//! or a comment is never mistaken for the keyword), string and identifier values, and byte spans
//! to edit the original text. It never fails: unterminated constructs run to the end of the
//! text, which is the safe reading for redaction (everything after an opening quote is treated
//! as secret).

/// Kind of one token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Unquoted identifier or keyword (compare with [`Token::is_word`]).
    Word,
    /// `"..."` or `U&"..."`.
    QuotedIdent,
    /// Any string constant: `'..'`, `E'..'`, `N'..'`, `B'..'`, `X'..'`, `U&'..'`, `$tag$..$tag$`.
    String,
    /// Numeric constant.
    Number,
    /// `$1`, `$2`, ...
    Param,
    /// Any other single character or operator run (`(`, `,`, `=`, `::`, ...).
    Punct,
}

/// One token: kind and byte range in the source text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Token {
    pub kind: Kind,
    pub start: usize,
    pub end: usize,
}

impl Token {
    /// Source text of the token.
    pub fn text<'a>(&self, src: &'a str) -> &'a str {
        &src[self.start..self.end]
    }

    /// True for an unquoted word equal to `kw` ignoring ASCII case (`kw` is lowercase).
    pub fn is_word(&self, src: &str, kw: &str) -> bool {
        self.kind == Kind::Word && self.text(src).eq_ignore_ascii_case(kw)
    }

    /// True for a punctuation token equal to `p`.
    pub fn is_punct(&self, src: &str, p: &str) -> bool {
        self.kind == Kind::Punct && self.text(src) == p
    }
}

/// Splits `src` into tokens, dropping whitespace and comments.
///
/// `scs` is the server's `standard_conforming_strings`: when off, a backslash escapes the next
/// character inside plain `'...'` strings too, and a wrong guess would move every later string
/// boundary, so the session passes what the server reported.
pub(crate) fn tokenize(src: &str, scs: bool) -> Vec<Token> {
    Tokens::new(src, scs).collect()
}

/// [`tokenize`] one token at a time: a caller that needs only the first tokens (is this
/// transaction control?) stops there instead of reading the whole text.
pub(crate) struct Tokens<'a> {
    b: &'a [u8],
    i: usize,
    scs: bool,
}

impl<'a> Tokens<'a> {
    pub(crate) fn new(src: &'a str, scs: bool) -> Tokens<'a> {
        Tokens {
            b: src.as_bytes(),
            i: 0,
            scs,
        }
    }
}

impl Iterator for Tokens<'_> {
    type Item = Token;

    fn next(&mut self) -> Option<Token> {
        let (b, scs) = (self.b, self.scs);
        let mut i = self.i;
        let token = loop {
            if i >= b.len() {
                self.i = i;
                return None;
            }
            let c = b[i];
            if c.is_ascii_whitespace() {
                i += 1;
                continue;
            }
            // `--` comment to end of line.
            if c == b'-' && b.get(i + 1) == Some(&b'-') {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            // `/* */` comments nest in Postgres.
            if c == b'/' && b.get(i + 1) == Some(&b'*') {
                i = skip_block_comment(b, i);
                continue;
            }
            let start = i;
            // String prefixes: E'', N'', B'', X'', U&'' and U&"".
            if matches!(c, b'e' | b'E') && b.get(i + 1) == Some(&b'\'') {
                i = skip_quoted(b, i + 1, b'\'', true);
                break tok(Kind::String, start, i);
            }
            if matches!(c, b'n' | b'N' | b'b' | b'B' | b'x' | b'X') && b.get(i + 1) == Some(&b'\'')
            {
                i = skip_quoted(b, i + 1, b'\'', !scs);
                break tok(Kind::String, start, i);
            }
            if matches!(c, b'u' | b'U') && b.get(i + 1) == Some(&b'&') {
                match b.get(i + 2) {
                    Some(b'\'') => {
                        i = skip_quoted(b, i + 2, b'\'', !scs);
                        break tok(Kind::String, start, i);
                    }
                    Some(b'"') => {
                        i = skip_quoted(b, i + 2, b'"', false);
                        break tok(Kind::QuotedIdent, start, i);
                    }
                    _ => {}
                }
            }
            match c {
                b'\'' => {
                    i = skip_quoted(b, i, b'\'', !scs);
                    break tok(Kind::String, start, i);
                }
                b'"' => {
                    i = skip_quoted(b, i, b'"', false);
                    break tok(Kind::QuotedIdent, start, i);
                }
                b'$' => {
                    if let Some(end) = dollar_tag_end(b, i) {
                        // `$tag$ ... $tag$`
                        let tag = &b[i..end];
                        let body = end;
                        let close = find(b, body, tag);
                        i = match close {
                            Some(p) => p + tag.len(),
                            None => b.len(),
                        };
                        break tok(Kind::String, start, i);
                    } else if b.get(i + 1).is_some_and(u8::is_ascii_digit) {
                        i += 1;
                        while i < b.len() && b[i].is_ascii_digit() {
                            i += 1;
                        }
                        break tok(Kind::Param, start, i);
                    } else {
                        i += 1;
                        break tok(Kind::Punct, start, i);
                    }
                }
                b'0'..=b'9' => {
                    i = skip_number(b, i);
                    break tok(Kind::Number, start, i);
                }
                b'.' if b.get(i + 1).is_some_and(u8::is_ascii_digit) => {
                    i = skip_number(b, i);
                    break tok(Kind::Number, start, i);
                }
                _ if is_ident_start(c) => {
                    i += 1;
                    while i < b.len() && is_ident_cont(b[i]) {
                        i += 1;
                    }
                    break tok(Kind::Word, start, i);
                }
                _ => {
                    // Operators: a run of operator characters is one token (`::`, `<>`, `>=`);
                    // single-character punctuation otherwise.
                    if is_op_char(c) {
                        i += 1;
                        while i < b.len()
                            && is_op_char(b[i])
                            && !(b[i] == b'-' && b.get(i + 1) == Some(&b'-'))
                            && !(b[i] == b'/' && b.get(i + 1) == Some(&b'*'))
                        {
                            i += 1;
                        }
                    } else {
                        // Advance by a whole UTF-8 character so spans stay on char boundaries.
                        i += utf8_len(c);
                    }
                    i = i.min(b.len());
                    break tok(Kind::Punct, start, i);
                }
            }
        };
        self.i = i;
        Some(token)
    }
}

fn tok(kind: Kind, start: usize, end: usize) -> Token {
    Token { kind, start, end }
}

fn utf8_len(first: u8) -> usize {
    match first {
        0xF0..=0xFF => 4,
        0xE0..=0xEF => 3,
        0xC0..=0xDF => 2,
        _ => 1,
    }
}

fn is_ident_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_' || c >= 0x80
}

fn is_ident_cont(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'$' || c >= 0x80
}

fn is_op_char(c: u8) -> bool {
    matches!(
        c,
        b'+' | b'-'
            | b'*'
            | b'/'
            | b'<'
            | b'>'
            | b'='
            | b'~'
            | b'!'
            | b'@'
            | b'#'
            | b'%'
            | b'^'
            | b'&'
            | b'|'
            | b'`'
            | b'?'
            | b':'
    )
}

fn skip_block_comment(b: &[u8], mut i: usize) -> usize {
    let mut depth = 0usize;
    while i < b.len() {
        if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
            depth += 1;
            i += 2;
        } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
            depth -= 1;
            i += 2;
            if depth == 0 {
                return i;
            }
        } else {
            i += 1;
        }
    }
    b.len()
}

/// Skips a quoted run starting at the opening quote `b[i]`; a doubled quote is an escaped quote,
/// and with `backslash` a backslash escapes the next byte. Returns the index after the closing
/// quote (or the end of the text when unterminated).
fn skip_quoted(b: &[u8], mut i: usize, q: u8, backslash: bool) -> usize {
    i += 1;
    while i < b.len() {
        let c = b[i];
        if backslash && c == b'\\' {
            i += 2;
            continue;
        }
        if c == q {
            if b.get(i + 1) == Some(&q) {
                i += 2;
                continue;
            }
            return i + 1;
        }
        i += 1;
    }
    b.len()
}

/// If `b[i..]` starts a dollar-quote tag (`$$` or `$ident$`), returns the index after it.
fn dollar_tag_end(b: &[u8], i: usize) -> Option<usize> {
    let mut j = i + 1;
    if b.get(j) == Some(&b'$') {
        return Some(j + 1);
    }
    // A tag cannot start with a digit (that is a parameter `$1`).
    if !b.get(j).is_some_and(|&c| is_ident_start(c)) {
        return None;
    }
    while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_' || b[j] >= 0x80) {
        j += 1;
    }
    if b.get(j) == Some(&b'$') {
        Some(j + 1)
    } else {
        None
    }
}

fn find(hay: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || from > hay.len() {
        return None;
    }
    hay[from..]
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

fn skip_number(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b'.') {
        // Exponent sign: `1e-5`.
        if (b[i] == b'e' || b[i] == b'E') && matches!(b.get(i + 1), Some(b'+') | Some(b'-')) {
            i += 2;
            continue;
        }
        i += 1;
    }
    i
}

/// Decodes a string token to its value; `None` for forms this module does not decode
/// (`B''`, `X''`, `U&''` with escapes), so callers can fall back to redacting the whole token.
pub(crate) fn string_value(text: &str, scs: bool) -> Option<String> {
    let bytes = text.as_bytes();
    if bytes.first() == Some(&b'$') {
        let tag_end = dollar_tag_end(bytes, 0)?;
        let tag = &text[..tag_end];
        let body = text.get(tag_end..)?;
        return Some(body.strip_suffix(tag).unwrap_or(body).to_string());
    }
    let (body, backslash) = match bytes.first()? {
        b'\'' => (&text[1..], !scs),
        b'e' | b'E' => (text.get(2..)?, true),
        b'n' | b'N' => (text.get(2..)?, !scs),
        _ => return None,
    };
    let mut out = String::with_capacity(body.len());
    let mut chars = body.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                if chars.peek() == Some(&'\'') {
                    chars.next();
                    out.push('\'');
                } else {
                    return Some(out);
                }
            }
            '\\' if backslash => match chars.next() {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some('r') => out.push('\r'),
                Some('b') => out.push('\u{8}'),
                Some('f') => out.push('\u{c}'),
                Some(other) => out.push(other),
                None => return Some(out),
            },
            other => out.push(other),
        }
    }
    // Unterminated: the value runs to the end of the text.
    Some(out)
}

/// Quotes `value` as a standard SQL string literal (`'` doubled).
pub(crate) fn quote_literal(value: &str) -> String {
    let mut s = String::with_capacity(value.len() + 2);
    s.push('\'');
    for c in value.chars() {
        if c == '\'' {
            s.push('\'');
        }
        s.push(c);
    }
    s.push('\'');
    s
}

/// The identifier a word or quoted-identifier token names: unquoted words fold to lower case,
/// quoted ones keep their case with `""` unescaped.
pub(crate) fn ident_value(t: &Token, src: &str) -> Option<String> {
    match t.kind {
        Kind::Word => Some(t.text(src).to_lowercase()),
        Kind::QuotedIdent => {
            let s = t.text(src);
            let inner = s.strip_prefix('"')?;
            let inner = inner.strip_suffix('"').unwrap_or(inner);
            Some(inner.replace("\"\"", "\""))
        }
        _ => None,
    }
}

/// ASCII case-insensitive substring test without allocating: the cheap gate before tokenizing.
pub(crate) fn contains_ci(hay: &str, needle: &str) -> bool {
    let h = hay.as_bytes();
    let n = needle.as_bytes();
    if n.is_empty() {
        return true;
    }
    if h.len() < n.len() {
        return false;
    }
    h.windows(n.len()).any(|w| w.eq_ignore_ascii_case(n))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(src: &str) -> Vec<(Kind, &str)> {
        tokenize(src, true)
            .into_iter()
            .map(|t| (t.kind, t.text(src)))
            .collect()
    }

    #[test]
    fn strings_comments_and_quotes() {
        let src = "SELECT 'it''s', E'a\\'b', $x$ ' $x$, \"Col\"\"x\" -- 'no\n/* a /* b */ 'c' */ 1.5e-3 $2";
        assert_eq!(
            kinds(src),
            vec![
                (Kind::Word, "SELECT"),
                (Kind::String, "'it''s'"),
                (Kind::Punct, ","),
                (Kind::String, "E'a\\'b'"),
                (Kind::Punct, ","),
                (Kind::String, "$x$ ' $x$"),
                (Kind::Punct, ","),
                (Kind::QuotedIdent, "\"Col\"\"x\""),
                (Kind::Number, "1.5e-3"),
                (Kind::Param, "$2"),
            ]
        );
    }

    #[test]
    fn unterminated_runs_to_end() {
        let src = "ALTER ROLE a PASSWORD 'sec";
        let t = tokenize(src, true);
        assert_eq!(t.last().map(|t| t.text(src)), Some("'sec"));
        assert_eq!(tokenize("/* open", true), vec![]);
        assert_eq!(kinds("$q$ body"), vec![(Kind::String, "$q$ body")]);
    }

    #[test]
    fn scs_off_backslash_escapes_plain_strings() {
        let src = r"'a\' z' x";
        assert_eq!(kinds(src).len(), 3); // scs on: 'a\' , z , ' x (unterminated)
        let off: Vec<_> = tokenize(src, false).iter().map(|t| t.text(src)).collect();
        assert_eq!(off, vec![r"'a\' z'", "x"]);
        // `b'...'` is a bit-string literal, not the word b.
        assert_eq!(kinds("b'101'"), vec![(Kind::String, "b'101'")]);
    }

    #[test]
    fn decode_values() {
        assert_eq!(string_value("'it''s'", true).as_deref(), Some("it's"));
        assert_eq!(string_value("E'a\\'b\\n'", true).as_deref(), Some("a'b\n"));
        assert_eq!(string_value("$t$x'y$t$", true).as_deref(), Some("x'y"));
        assert_eq!(string_value("X'ff'", true), None);
        assert_eq!(quote_literal("it's"), "'it''s'");
    }

    #[test]
    fn non_ascii_punctuation_keeps_char_boundaries() {
        let src = "SELECT « 1";
        let t = tokenize(src, true);
        for tk in &t {
            assert!(src.is_char_boundary(tk.start) && src.is_char_boundary(tk.end));
        }
    }

    proptest::proptest! {
        /// Client text is arbitrary: nothing in the audit layer may panic on it, and every span
        /// must be sliceable.
        #[test]
        fn arbitrary_text_never_panics(s in "\\PC{0,200}", scs in proptest::bool::ANY) {
            for t in tokenize(&s, scs) {
                proptest::prop_assert!(s.is_char_boundary(t.start) && s.is_char_boundary(t.end));
                proptest::prop_assert!(t.start < t.end);
                let _ = string_value(t.text(&s), scs);
            }
            let _ = crate::audit::redact::redact(&s, scs);
            let _ = crate::audit::redact::redact_conninfo(&s);
            let _ = crate::audit::fingerprint::fingerprint(&s, scs);
            let _ = crate::audit::migration::detect(&s, &[Some("x")]);
        }

        /// Whatever follows, a password literal never survives redaction.
        #[test]
        fn password_literal_is_always_redacted(
            prefix in "[a-zA-Z ,()]{0,30}",
            secret in "[a-zA-Z0-9!#%&*+]{6,20}",
            suffix in "\\PC{0,60}",
            form in 0usize..4,
        ) {
            let lit = match form {
                0 => format!("'{secret}'"),
                1 => format!("E'{secret}'"),
                2 => format!("$pw${secret}$pw$"),
                _ => format!("'{secret}''s'"),
            };
            let sql = format!("ALTER ROLE {prefix} PASSWORD {lit} {suffix}");
            let r = crate::audit::redact::redact(&sql, true);
            let before_suffix = &r[..r.len() - suffix.len()];
            proptest::prop_assert!(!before_suffix.contains(&secret), "{}", r);
        }
    }

    #[test]
    fn contains_ci_works() {
        assert!(contains_ci(
            "insert into ALEMBIC_version",
            "alembic_version"
        ));
        assert!(!contains_ci("select 1", "alembic_version"));
    }
}
