//! Verdict-only fast path of the prefilter: proves in one cheap byte loop that a query text
//! holds only statements the full splitter would call DML/transaction/set/empty, or gives up.
//!
//! [`server_lex::needs_attention`](super::server_lex::needs_attention) runs the full splitter
//! ([`super::lexer`]) over every Query and Parse. That splitter also keeps what only a statement
//! handed to the parser needs (chain and depth bounds, spans and bodies, leading keywords, set
//! info, psql's BEGIN ATOMIC heuristic, a token per word and number): ~1,900 instructions for a
//! pgbench `SELECT`, the largest part of the proxy's own work per forwarded query. The verdict
//! needs far less, and [`surely_plain`] reads only that:
//! - the first word of each statement, lexed as the splitter lexes it (after spaces, comments
//!   and, for a query, leading brackets); it must be a plain DML, transaction-control or SET
//!   keyword (or `START TRANSACTION`);
//! - after it, only the bytes that can change the structure: quotes, `"`, `;`, brackets, `--`,
//!   `/*`, `$`. Every one of them outside a literal or comment starts a token for the
//!   splitter too (a word or number never holds one, except `$` inside a word and `-` in an
//!   exponent, which is never followed by `-`), so strings, comments and statement ends fall
//!   where the splitter puts them. Everything in between is skipped four bytes a step;
//! - in a query (SELECT/WITH/VALUES/TABLE) every byte `i`/`I` that may start the word `INTO`,
//!   and in a COPY every `p`/`P` that may start `PROGRAM`: a whole word there (not preceded by
//!   an identifier byte, not followed by one) makes it give up. That is a superset of what the
//!   splitter flags (`SELECT … INTO newtable`, `COPY … TO PROGRAM`), so `INSERT INTO` inside a
//!   query's WITH goes to the splitter too.
//!
//! It is one-sided: `true` means the full splitter finds no DdlOrUtility statement under any
//! reading the server may make; `false` means "don't know", and the caller runs the full path.
//! So it gives up on everything it does not read itself, however harmless: any backslash
//! (psql meta commands, escapes: with none in the text, `standard_conforming_strings` changes
//! nothing and a prefixed `E'…'`/`U&'…'`/`B'…'`/`X'…'` ends where a plain string would), any
//! byte >= 0x80 unless the encoding is known to be ASCII-safe (then there is exactly one reading,
//! and such a byte is an identifier byte or literal content for the server's scanner), dollar
//! quotes and `$` before a letter, string continuations across newlines, anything
//! unterminated, and every statement that opens otherwise (EXPLAIN, PREPARE, CREATE, a literal…).
//! The proof that it never says `true` where the splitter flags something is `tests` below:
//! proptests on SQL-ish texts, on dense combinations of the decision points and on random
//! bytes, under every setting, each of which fails on a deliberately broken fast path.
use super::lexer::{keyword, quote_continuation, Keyword};

/// Byte kinds of a statement's head.
const OTHER: u8 = 0;
/// scan.l's `ident_start`: letters, `_` (and bytes >= 0x80 when they are read).
const WORD: u8 = 1;
const DIGIT: u8 = 2;
const DOLLAR: u8 = 3;
const SPACE: u8 = 4;
const SEMI: u8 = 5;
const OPEN: u8 = 6;
const DASH: u8 = 7;
const SLASH: u8 = 8;

/// Flags of the body loop: a byte that may change the structure (or that the fast path does
/// not read), and the first letters of the words it looks for.
const STRUCTURE: u8 = 1;
const LETTER_I: u8 = 2;
const LETTER_P: u8 = 4;

/// The lookup tables of one encoding mode; `non_ascii`: bytes >= 0x80 are identifier bytes
/// and literal content (a known ASCII-safe encoding) rather than a reason to give up.
struct Tables {
    /// Byte kinds for the head of a statement.
    kind: [u8; 256],
    /// scan.l's `ident_cont`: letters, digits, `_`, `$` (and bytes >= 0x80 when read).
    cont: [bool; 256],
    /// Body loop flags.
    flags: [u8; 256],
    /// Bytes that stop the scan of a string body, a quoted identifier, a line comment and a
    /// block comment: their delimiters, a backslash, and non-ASCII bytes unless read.
    quote: [bool; 256],
    dquote: [bool; 256],
    line: [bool; 256],
    block: [bool; 256],
}

const fn kind_of(c: u8, non_ascii: bool) -> u8 {
    if c.is_ascii_alphabetic() || c == b'_' || (c >= 0x80 && non_ascii) {
        return WORD;
    }
    if c.is_ascii_digit() {
        return DIGIT;
    }
    match c {
        b'$' => DOLLAR,
        // The lexer's `SPACE` class (scan.l's `space`, \v included).
        b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c => SPACE,
        b';' => SEMI,
        b'(' | b'[' => OPEN,
        b'-' => DASH,
        b'/' => SLASH,
        _ => OTHER,
    }
}

const fn flags_of(c: u8, non_ascii: bool) -> u8 {
    match c {
        b'\'' | b'"' | b';' | b'(' | b')' | b'[' | b']' | b'-' | b'/' | b'$' | b'\\' => STRUCTURE,
        b'i' | b'I' => LETTER_I,
        b'p' | b'P' => LETTER_P,
        0x80.. if !non_ascii => STRUCTURE,
        _ => 0,
    }
}

const fn stops(delims: &[u8], non_ascii: bool) -> [bool; 256] {
    let mut t = [false; 256];
    let mut k = 0;
    while k < delims.len() {
        t[delims[k] as usize] = true;
        k += 1;
    }
    t[b'\\' as usize] = true;
    if !non_ascii {
        let mut b = 0x80;
        while b < 256 {
            t[b] = true;
            b += 1;
        }
    }
    t
}

const fn tables(non_ascii: bool) -> Tables {
    let mut kind = [OTHER; 256];
    let mut cont = [false; 256];
    let mut flags = [0; 256];
    let mut b = 0;
    while b < 256 {
        kind[b] = kind_of(b as u8, non_ascii);
        cont[b] = matches!(kind[b], WORD | DIGIT | DOLLAR);
        flags[b] = flags_of(b as u8, non_ascii);
        b += 1;
    }
    Tables {
        kind,
        cont,
        flags,
        quote: stops(b"'", non_ascii),
        dquote: stops(b"\"", non_ascii),
        line: stops(b"\n\r", non_ascii),
        block: stops(b"*/", non_ascii),
    }
}

static ASCII: Tables = tables(false);
static NON_ASCII: Tables = tables(true);

/// A word of 1 to 8 bytes as one number for comparing with a keyword ignoring ASCII case:
/// its first and last four bytes (overlapping when shorter than 8; bytes one by one below 4),
/// each with bit 5 set. Setting bit 5 maps a byte onto a lower-case letter only when it is
/// that letter in either case, and for a given length those bytes cover the whole word, so
/// `(len, key)` is equal for two words of letters exactly when they are equal ignoring case.
/// The caller compares lengths too.
#[inline(always)]
const fn key(w: &[u8]) -> u64 {
    let n = w.len();
    if n >= 4 {
        let a = u32::from_le_bytes([w[0], w[1], w[2], w[3]]);
        let b = u32::from_le_bytes([w[n - 4], w[n - 3], w[n - 2], w[n - 1]]);
        (a as u64 | (b as u64) << 32) | 0x2020_2020_2020_2020
    } else {
        let mut x = 0u64;
        let mut i = 0;
        while i < n {
            x |= ((w[i] | 0x20) as u64) << (8 * i);
            i += 1;
        }
        x
    }
}

/// [`keyword`], with the usual first words of a statement compared directly instead of
/// through the lexer's hash table.
#[inline]
fn head_keyword(word: &[u8]) -> Keyword {
    use Keyword as K;
    const fn k(w: &[u8]) -> (usize, u64) {
        (w.len(), key(w))
    }
    const SELECT: (usize, u64) = k(b"select");
    const WITH: (usize, u64) = k(b"with");
    const VALUES: (usize, u64) = k(b"values");
    const TABLE: (usize, u64) = k(b"table");
    const INSERT: (usize, u64) = k(b"insert");
    const UPDATE: (usize, u64) = k(b"update");
    const DELETE: (usize, u64) = k(b"delete");
    const BEGIN: (usize, u64) = k(b"begin");
    const COMMIT: (usize, u64) = k(b"commit");
    const END: (usize, u64) = k(b"end");
    const SET: (usize, u64) = k(b"set");
    if word.len() > 8 {
        return keyword(word);
    }
    match (word.len(), key(word)) {
        SELECT => K::Select,
        WITH => K::With,
        VALUES => K::Values,
        TABLE => K::Table,
        INSERT => K::Insert,
        UPDATE => K::Update,
        DELETE => K::Delete,
        BEGIN => K::Begin,
        COMMIT => K::Commit,
        END => K::End,
        SET => K::Set,
        _ => keyword(word),
    }
}

/// What the rest of a statement is read for, once its first word is known.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Body {
    /// A SELECT/WITH/VALUES/TABLE: the word `INTO` may make it `SELECT … INTO newtable`.
    Query,
    /// A COPY: the word `PROGRAM` may make it run a command.
    Copy,
    /// `START`: the next token must be the word `TRANSACTION`.
    StartTx,
    /// DML, transaction control or a setting whatever follows.
    Plain,
}

/// What the first word of a statement makes of it (`paren`: after leading brackets, where
/// only a query may follow). `None`: not known to be harmless.
#[inline]
fn first_word(word: &[u8], paren: bool) -> Option<Body> {
    use Keyword as K;
    match head_keyword(word) {
        K::Select | K::With | K::Values | K::Table => Some(Body::Query),
        _ if paren => None,
        K::Insert
        | K::Update
        | K::Delete
        | K::Merge
        | K::Show
        | K::Fetch
        | K::Move
        | K::Close
        | K::Declare
        | K::Execute
        | K::Deallocate
        | K::Listen
        | K::Notify
        | K::Unlisten => Some(Body::Plain),
        // Transaction control whatever follows (the lexer's `tx_kind` on the first word).
        K::Begin | K::Commit | K::End | K::Rollback | K::Abort | K::Savepoint | K::Release => {
            Some(Body::Plain)
        }
        K::Start => Some(Body::StartTx),
        // Always class Set without leading brackets.
        K::Set | K::Reset | K::Discard => Some(Body::Plain),
        K::Copy => Some(Body::Copy),
        _ => None,
    }
}

/// True only when the full splitter, under every reading the server may make of `bytes`,
/// finds no DdlOrUtility statement. `non_ascii_ok`: the encoding is known to be ASCII-safe
/// (UTF-8 and every server encoding), so bytes >= 0x80 need not make it give up.
pub(super) fn surely_plain(bytes: &[u8], non_ascii_ok: bool) -> bool {
    scan(bytes, if non_ascii_ok { &NON_ASCII } else { &ASCII }).is_some()
}

/// The end of the identifier whose bytes continue at `i`.
#[inline(always)]
fn word_end(bytes: &[u8], mut i: usize, cont: &[bool; 256]) -> usize {
    while bytes.get(i).is_some_and(|&b| cont[usize::from(b)]) {
        i += 1;
    }
    i
}

/// The next byte from `i` whose flags meet `mask`, or the end: four bytes a step while it can.
#[inline(always)]
fn skip(bytes: &[u8], mut i: usize, flags: &[u8; 256], mask: u8) -> usize {
    while let Some(q) = bytes.get(i..i + 4) {
        let f = |k: usize| flags[usize::from(q[k])];
        if (f(0) | f(1) | f(2) | f(3)) & mask != 0 {
            break;
        }
        i += 4;
    }
    while bytes
        .get(i)
        .is_some_and(|&b| flags[usize::from(b)] & mask == 0)
    {
        i += 1;
    }
    i
}

/// Whether the splitter may read a word `kw` (lower case) starting at `p`: the bytes are `kw`
/// ignoring case, the next one does not continue an identifier, and the previous one is not
/// a letter, `_` or read non-ASCII byte (no token but a word ends in one, and a word would
/// have taken these bytes in). A digit or `$` before it counts as a possible start.
#[inline]
fn may_be_word(bytes: &[u8], p: usize, kw: &[u8], t: &Tables) -> bool {
    let before = p.checked_sub(1).and_then(|k| bytes.get(k));
    before.is_none_or(|&b| t.kind[usize::from(b)] != WORD)
        && bytes
            .get(p..p + kw.len())
            .is_some_and(|w| w.eq_ignore_ascii_case(kw))
        && bytes
            .get(p + kw.len())
            .is_none_or(|&b| !t.cont[usize::from(b)])
}

/// Skips whitespace and comments from `i`; `None` for an unterminated comment or a byte the
/// mode does not read inside one.
#[inline]
fn skip_blank(bytes: &[u8], mut i: usize, t: &Tables) -> Option<usize> {
    while let Some(&b) = bytes.get(i) {
        match t.kind[usize::from(b)] {
            SPACE => i += 1,
            DASH if bytes.get(i + 1) == Some(&b'-') => i = line_comment(bytes, i + 2, &t.line)?,
            SLASH if bytes.get(i + 1) == Some(&b'*') => i = block_comment(bytes, i + 2, &t.block)?,
            _ => break,
        }
    }
    Some(i)
}

/// The loop of [`surely_plain`]; `None` = give up.
fn scan(bytes: &[u8], t: &Tables) -> Option<()> {
    let mut i = 0;
    'statement: loop {
        // The head: whitespace, comments, empty statements and (for a query) leading
        // brackets, up to the first word.
        let mut depth: u32 = 0;
        let body = loop {
            i = skip_blank(bytes, i, t)?;
            let Some(&b) = bytes.get(i) else {
                // The end of the text: an empty statement is fine, `(` alone is not.
                return (depth == 0).then_some(());
            };
            match t.kind[usize::from(b)] {
                SEMI if depth == 0 => i += 1,
                OPEN => {
                    depth = depth.saturating_add(1);
                    i += 1;
                }
                WORD => {
                    let s = i;
                    i = word_end(bytes, i + 1, &t.cont);
                    break first_word(&bytes[s..i], depth > 0)?;
                }
                _ => return None,
            }
        };
        let body = if body == Body::StartTx {
            // The lexer's `tx_kind`: START is a transaction start only before TRANSACTION.
            i = skip_blank(bytes, i, t)?;
            let s = i;
            if t.kind[usize::from(*bytes.get(i)?)] != WORD {
                return None;
            }
            i = word_end(bytes, i + 1, &t.cont);
            if keyword(&bytes[s..i]) != Keyword::Transaction {
                return None;
            }
            Body::Plain
        } else {
            body
        };
        let mask = match body {
            Body::Query => STRUCTURE | LETTER_I,
            Body::Copy => STRUCTURE | LETTER_P,
            Body::StartTx | Body::Plain => STRUCTURE,
        };
        // The body: only what can end the statement or change its class.
        loop {
            i = skip(bytes, i, &t.flags, mask);
            let Some(&b) = bytes.get(i) else {
                return Some(());
            };
            match b {
                b'\'' => i = string(bytes, i + 1, &t.quote)?,
                b'"' => i = quoted_ident(bytes, i + 1, &t.dquote)?,
                b';' => {
                    i += 1;
                    if depth == 0 {
                        continue 'statement;
                    }
                }
                b'(' | b'[' => {
                    depth = depth.saturating_add(1);
                    i += 1;
                }
                b')' | b']' => {
                    depth = depth.saturating_sub(1);
                    i += 1;
                }
                b'-' if bytes.get(i + 1) == Some(&b'-') => {
                    i = line_comment(bytes, i + 2, &t.line)?;
                }
                b'/' if bytes.get(i + 1) == Some(&b'*') => {
                    i = block_comment(bytes, i + 2, &t.block)?;
                }
                b'-' | b'/' => i += 1,
                b'$' => match bytes.get(i + 1) {
                    // `$$`, `$tag$`, or the dolqfailed `$` before a word: not read here (a `$`
                    // inside a word lands here too, and is left to the splitter as well).
                    Some(&c) if c == b'$' || t.kind[usize::from(c)] == WORD || c >= 0x80 => {
                        return None
                    }
                    _ => i += 1,
                },
                b'i' | b'I' => {
                    if may_be_word(bytes, i, b"into", t) {
                        return None;
                    }
                    i += 1;
                }
                b'p' | b'P' => {
                    if may_be_word(bytes, i, b"program", t) {
                        return None;
                    }
                    i += 1;
                }
                // A backslash, or a byte >= 0x80 the mode does not read.
                _ => return None,
            }
        }
    }
}

/// A standard string body from `i` (after the opening `'`): returns the end after the closing
/// quote, or `None` for a backslash, a byte the mode does not read, the end of the text, or a
/// continuation (`'a'\n'b'`), which the full path reads.
#[inline]
fn string(bytes: &[u8], mut i: usize, stop: &[bool; 256]) -> Option<usize> {
    loop {
        while i < bytes.len() && !stop[usize::from(bytes[i])] {
            i += 1;
        }
        if *bytes.get(i)? != b'\'' {
            return None;
        }
        if bytes.get(i + 1) == Some(&b'\'') {
            i += 2;
            continue;
        }
        return match quote_continuation(bytes, i + 1) {
            Some(_) => None,
            None => Some(i + 1),
        };
    }
}

/// A quoted identifier body from `i` (after the opening `"`); `""` is a quote.
#[inline]
fn quoted_ident(bytes: &[u8], mut i: usize, stop: &[bool; 256]) -> Option<usize> {
    loop {
        while i < bytes.len() && !stop[usize::from(bytes[i])] {
            i += 1;
        }
        if *bytes.get(i)? != b'"' {
            return None;
        }
        if bytes.get(i + 1) == Some(&b'"') {
            i += 2;
            continue;
        }
        return Some(i + 1);
    }
}

/// A `--` comment body from `i`: returns the line end (or the text end).
#[inline]
fn line_comment(bytes: &[u8], mut i: usize, stop: &[bool; 256]) -> Option<usize> {
    while i < bytes.len() && !stop[usize::from(bytes[i])] {
        i += 1;
    }
    match bytes.get(i) {
        None | Some(b'\n' | b'\r') => Some(i),
        Some(_) => None,
    }
}

/// A nested block comment body from `i` (after `/*`): returns the end after the matching `*/`.
#[inline]
fn block_comment(bytes: &[u8], mut i: usize, stop: &[bool; 256]) -> Option<usize> {
    let mut depth: u32 = 1;
    loop {
        while i < bytes.len() && !stop[usize::from(bytes[i])] {
            i += 1;
        }
        match (*bytes.get(i)?, bytes.get(i + 1)) {
            (b'/', Some(b'*')) => {
                depth += 1;
                i += 2;
            }
            (b'*', Some(b'/')) => {
                depth -= 1;
                i += 2;
                if depth == 0 {
                    return Some(i);
                }
            }
            (b'/' | b'*', _) => i += 1,
            _ => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::encoding::{server_text, Family, ALL_FAMILIES};
    use super::super::lexer::LexOptions;
    use super::super::server_lex::LexSettings;
    use super::super::server_lex::{full_verdict, needs_attention, needs_attention_decoded};
    use super::*;
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};

    /// Every setting that reads a text differently: unknown, and each family under both values
    /// of standard_conforming_strings (KLINGON: a name pgwarden does not know).
    fn all_settings() -> Vec<LexSettings> {
        let mut all = vec![LexSettings::unknown()];
        for name in [
            "UTF8", "LATIN1", "SJIS", "BIG5", "GB18030", "JOHAB", "KLINGON",
        ] {
            for scs in [true, false] {
                all.push(LexSettings::known(name, scs));
            }
        }
        all
    }

    /// The fast path said "no attention" for `bytes` under `settings`.
    fn fast(bytes: &[u8], settings: &LexSettings) -> bool {
        surely_plain(bytes, settings.encoding == Some(Family::AsciiSafe))
    }

    /// The property: wherever the fast path answers, the full splitter (every reading) finds no
    /// DdlOrUtility statement, so `needs_attention` is the splitter's verdict on every input,
    /// with or without a decoded text, whatever the lexer's bounds. Returns how many settings
    /// the fast path answered for.
    fn check(bytes: &[u8], base: &LexOptions) -> Result<usize, TestCaseError> {
        let mut answered = 0;
        for settings in &all_settings() {
            let full = full_verdict(bytes, None, settings, base);
            if fast(bytes, settings) {
                answered += 1;
                prop_assert!(
                    !full,
                    "fast path passed what the splitter flags: {:?} {:?}",
                    String::from_utf8_lossy(bytes),
                    settings
                );
            }
            prop_assert_eq!(needs_attention(bytes, settings, base), full);
            for family in ALL_FAMILIES {
                let text = server_text(bytes, family);
                prop_assert_eq!(
                    needs_attention_decoded(bytes, family, &text, settings, base),
                    full,
                    "{:?} {:?}",
                    family,
                    settings
                );
            }
        }
        Ok(answered)
    }

    /// Pieces of SQL that decide or disturb a verdict: keywords of every class, the words the
    /// classifier looks for, every quoting, comment and bracket, backslashes, prefixes,
    /// numbers, parameters, operators and non-ASCII bytes (valid UTF-8 and not).
    const PIECES: &[&str] = &[
        // Query and DML heads, and the words inside them that matter.
        "SELECT",
        "select",
        "SeLeCt",
        "WITH",
        "VALUES",
        "TABLE",
        "INSERT",
        "insert",
        "INTO",
        "into",
        "InTo",
        "MERGE",
        "merge",
        "UPDATE",
        "DELETE",
        "SHOW",
        "FETCH",
        "MOVE",
        "CLOSE",
        "DECLARE",
        "EXECUTE",
        "DEALLOCATE",
        "LISTEN",
        "NOTIFY",
        "UNLISTEN",
        "RETURNING",
        "COPY",
        "copy",
        "FROM",
        "TO",
        "PROGRAM",
        "program",
        "STDIN",
        "STDOUT",
        // Wrappers.
        "EXPLAIN",
        "ANALYZE",
        "ANALYSE",
        "VERBOSE",
        "PREPARE",
        "AS",
        "as",
        // Transaction and settings.
        "BEGIN",
        "START",
        "TRANSACTION",
        "COMMIT",
        "END",
        "ROLLBACK",
        "ABORT",
        "SAVEPOINT",
        "RELEASE",
        "PREPARED",
        "WORK",
        "SET",
        "RESET",
        "DISCARD",
        "ALL",
        "LOCAL",
        "SESSION",
        // DDL and utility, and psql's BEGIN ATOMIC heuristic.
        "CREATE",
        "create",
        "OR",
        "REPLACE",
        "FUNCTION",
        "PROCEDURE",
        "ATOMIC",
        "CASE",
        "DROP",
        "ALTER",
        "LOCK",
        "DO",
        "CALL",
        "VACUUM",
        "CHECKPOINT",
        "GRANT",
        "TRUNCATE",
        // Plain words, prefix letters, words that look like keywords.
        "t",
        "abc",
        "a$b",
        "a$",
        "x1",
        "_",
        "e",
        "E",
        "u",
        "U",
        "b",
        "X",
        "intox",
        "inserts",
        "nto",
        "pgbench_accounts",
        // Brackets and separators.
        "(",
        ")",
        "[",
        "]",
        ";",
        ";",
        ",",
        ".",
        "=",
        "+",
        "-",
        "*",
        "/",
        "&",
        ":",
        "::",
        "<",
        "|",
        "%",
        "^",
        "~",
        "!",
        "@",
        "#",
        "?",
        // Literals and quoting.
        "'",
        "''",
        "'a'",
        "'a;'",
        "'--'",
        "'/*'",
        "'a''b'",
        "\"",
        "\"\"",
        "\"id\"",
        "\"into\"",
        "\"a;\"",
        "E'",
        "e'x'",
        "E'\\''",
        "U&'",
        "u&'d'",
        "U&\"",
        "B'1'",
        "X'f'",
        "$",
        "$1",
        "$12",
        "$$",
        "$t$",
        "$a$b$",
        "$1a",
        "$_",
        "$é",
        // Comments.
        "--",
        "-- c\n",
        "/*",
        "*/",
        "/* c */",
        "/* /* n */ */",
        "*/*",
        // Whitespace the lexer distinguishes.
        " ",
        "\n",
        "\r",
        "\t",
        "\x0b",
        "\x0c",
        "\n'",
        "'\n'",
        // Numbers.
        "1",
        "12345",
        "1.5",
        ".5",
        "1..2",
        "1e5",
        "1e",
        "1e+",
        "1.e3",
        "0x1F",
        "1_000",
        // Backslashes.
        "\\",
        "\\\\",
        "\\g",
        "\\copy",
        // Non-ASCII: UTF-8, and bytes that are not (a lossy reading).
        "é",
        "表",
        "\u{0}",
    ];

    /// Raw bytes no `&str` can hold: lone high bytes, and client-encoding characters whose
    /// later bytes are ASCII structure (SJIS `\x95\x5c` ends in a backslash; in BIG5/GBK/UHC
    /// any high byte takes the next byte along, so `\xa4;` hides a `;`; JOHAB `\x8e;` too;
    /// GB18030's four-byte characters hold digits).
    const RAW: &[&[u8]] = &[
        b"\xe9",
        b"\xff",
        b"\x80",
        b"\xc3",
        b"\x95\x5c",
        b"\x95[",
        b"\x95]",
        b"\xa4;",
        b"\xa4'",
        b"\xa4\"",
        b"\xa4(",
        b"\xa4)",
        b"\xa4-",
        b"\xa4*",
        b"\x8e;",
        b"\x81\x30\x81\x30",
        b"\x81\x30;",
    ];

    fn piece() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            8 => prop::sample::select(PIECES).prop_map(|p| p.as_bytes().to_vec()),
            1 => prop::sample::select(RAW).prop_map(|p| p.to_vec()),
        ]
    }

    /// SQL-ish text: pieces with or without a space between them.
    /// Half of them open with a head the fast path reads, so that it gets far enough to err.
    fn sqlish() -> impl Strategy<Value = Vec<u8>> {
        const HEADS: &[&str] = &[
            "",
            "SELECT ",
            "WITH ",
            "(SELECT ",
            "INSERT ",
            "UPDATE ",
            "COPY ",
            "BEGIN ",
            "SET ",
            "START ",
            "VALUES ",
            "EXPLAIN ",
            "PREPARE p AS ",
            "CREATE ",
            "COPY t TO ",
        ];
        (
            prop::sample::select(HEADS),
            prop::collection::vec(
                (piece(), prop::sample::select(&["", " ", " ", "\n"][..])),
                0..40,
            ),
        )
            .prop_map(|(head, v)| {
                head.bytes()
                    .chain(
                        v.into_iter()
                            .flat_map(|(p, sep)| p.into_iter().chain(sep.bytes())),
                    )
                    .collect()
            })
    }

    /// Mostly-plain statements with one piece from anywhere spliced in: close to the DML the
    /// fast path answers for, so that a wrong answer there is found.
    fn near_dml() -> impl Strategy<Value = Vec<u8>> {
        const STMTS: &[&str] = &[
            "SELECT abalance FROM pgbench_accounts WHERE aid = 12345;",
            "SELECT abalance FROM pgbench_accounts WHERE aid = $1",
            "UPDATE pgbench_accounts SET abalance = abalance + -17 WHERE aid = 5;",
            "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (1, 2, 3, 4, CURRENT_TIMESTAMP);",
            "BEGIN;",
            "END;",
            "WITH x AS (INSERT INTO t VALUES (1) RETURNING *) SELECT * FROM x",
            "(SELECT 1) UNION (SELECT 2)",
            "SELECT 'it''s', \"Col\", 1.5e3 FROM t /* c */ -- d\n",
            "COPY t FROM STDIN",
            "SET search_path TO a, b",
            "START TRANSACTION READ ONLY",
        ];
        (
            prop::collection::vec(prop::sample::select(STMTS), 1..4),
            prop::collection::vec((any::<prop::sample::Index>(), piece()), 0..5),
        )
            .prop_map(|(stmts, splices)| {
                let mut text: Vec<u8> = stmts.concat().into_bytes();
                for (at, p) in splices {
                    let at = at.index(text.len() + 1);
                    text.splice(at..at, p);
                }
                text
            })
    }

    /// Few pieces, each a decision point of the fast path, so that the combinations that
    /// matter come up often: `INSERT x ] INTO` after a `[` that holds a `;`, `TO PROGRAM`,
    /// `1e5into`, `START (`, `EXPLAIN … CREATE`.
    fn dense() -> impl Strategy<Value = Vec<u8>> {
        const HEADS: &[&str] = &[
            "", "SELECT ", "SELECT ", "WITH ", "(", "COPY t ", "START ", "EXPLAIN ", "INSERT ",
        ];
        const DENSE: &[&str] = &[
            "DROP",
            "-- '",
            "'",
            "$a",
            "$x$",
            "SELECT",
            "INSERT",
            "UPDATE",
            "MERGE",
            "INTO",
            "into",
            "x",
            "e5into",
            "1e5",
            "1",
            "(",
            ")",
            "[",
            "]",
            ";",
            "'a'",
            "\"",
            "$1",
            "--",
            "\n",
            "/*",
            "*/",
            "COPY",
            "TO",
            "FROM",
            "PROGRAM",
            "START",
            "TRANSACTION",
            "ANALYZE",
            "AS",
            "CREATE",
            "SET",
            "E",
            "U&",
        ];
        (
            prop::sample::select(HEADS),
            prop::collection::vec(
                (
                    prop::sample::select(DENSE),
                    prop::sample::select(&["", " "][..]),
                ),
                0..12,
            ),
        )
            .prop_map(|(head, v)| {
                std::iter::once(head)
                    .chain(v.into_iter().flat_map(|(p, sep)| [p, sep]))
                    .collect::<String>()
                    .into_bytes()
            })
    }

    /// A delimited group (string, quoted identifier, comment, dollar quote, brackets) whose
    /// content holds lone delimiters of other kinds, then something that needs attention
    /// unless the group hides it, then more lone delimiters: exactly the texts where reading
    /// one delimiter wrong shows or hides a DROP, an INTO or a PROGRAM.
    fn hiders() -> impl Strategy<Value = Vec<u8>> {
        const HEADS: &[&str] = &[
            "SELECT ",
            "SELECT 1 ",
            "(SELECT ",
            "WITH x AS (SELECT ",
            "INSERT INTO t VALUES (",
            "UPDATE t SET a = ",
            "COPY t ",
            "BEGIN ",
            "SET a = ",
        ];
        const GROUPS: &[(&str, &str)] = &[
            ("'", "'"),
            ("\"", "\""),
            ("--", "\n"),
            ("/*", "*/"),
            ("$x$", "$x$"),
            ("$$", "$$"),
            ("(", ")"),
            ("[", "]"),
            ("E'", "'"),
            ("U&'", "'"),
            ("", ""),
        ];
        const LONE: &[&str] = &[
            "'", "\"", "--", "/*", "*/", "$x$", "$$", "(", ")", "[", "]", ";", "\n", "\\", "x",
            " ", "UPDATE x", "é",
        ];
        const MIDDLE: &[&str] = &[
            "; DROP TABLE t",
            " INTO t",
            " TO PROGRAM 'x'",
            "; UPDATE x INTO t",
            ";",
        ];
        let lone = || prop::collection::vec(prop::sample::select(LONE), 0..4);
        (
            prop::sample::select(HEADS),
            prop::sample::select(GROUPS),
            lone(),
            prop::sample::select(MIDDLE),
            lone(),
        )
            .prop_map(|(head, (open, close), inner, middle, tail)| {
                let mut text = format!("{head}{open}{}{close}{middle}", inner.concat());
                text.push_str(&tail.concat());
                text.into_bytes()
            })
    }

    /// Bounds small enough to flag statements TooLong/TooDeep: they must not change a class.
    fn bases() -> impl Strategy<Value = LexOptions> {
        prop_oneof![
            3 => Just(LexOptions::default()),
            1 => (1usize..40, 1usize..4, 1usize..8).prop_map(|(len, depth, chain)| LexOptions {
                standard_conforming_strings: true,
                max_statement_len: len,
                max_depth: depth,
                max_chain: chain,
            }),
        ]
    }

    proptest! {
        #![proptest_config(Config { cases: 3000, failure_persistence: None, ..Config::default() })]

        #[test]
        fn agrees_with_the_splitter_on_sqlish_text(data in sqlish(), base in bases()) {
            check(&data, &base)?;
        }

        #[test]
        fn agrees_with_the_splitter_near_plain_dml(data in near_dml(), base in bases()) {
            check(&data, &base)?;
        }

        #[test]
        fn agrees_with_the_splitter_on_random_bytes(data in prop::collection::vec(any::<u8>(), 0..64)) {
            check(&data, &LexOptions::default())?;
        }

        /// Random bytes from the characters that matter: mostly ASCII structure.
        #[test]
        fn agrees_with_the_splitter_on_random_structure(
            data in prop::collection::vec(prop::sample::select(
                &b"SELECTINTOsaeEuUbBxX_ \n\r\t;,()[]'\"$-/*.+=&:1092\\\x0b\xc3\xa9\xff"[..]), 0..48)
        ) {
            check(&data, &LexOptions::default())?;
        }
    }

    proptest! {
        // Cheap cases, and the combinations that break a wrong fast path are rare: many.
        #![proptest_config(Config { cases: 12000, failure_persistence: None, ..Config::default() })]

        #[test]
        fn agrees_with_the_splitter_on_dense_decisions(data in dense(), base in bases()) {
            check(&data, &base)?;
        }

        #[test]
        fn agrees_with_the_splitter_where_delimiters_hide_things(data in hiders()) {
            check(&data, &LexOptions::default())?;
        }
    }

    /// Identifier bytes, with the letters of the keywords the fast path compares.
    fn identish() -> impl Strategy<Value = Vec<u8>> {
        const KWS: &[&str] = &[
            "select",
            "with",
            "values",
            "table",
            "insert",
            "update",
            "delete",
            "begin",
            "commit",
            "end",
            "set",
            "into",
            "merge",
            "program",
            "transaction",
            "deallocate",
        ];
        prop_oneof![
            (
                prop::sample::select(KWS),
                prop::collection::vec(any::<bool>(), 11)
            )
                .prop_map(|(w, up)| {
                    w.bytes()
                        .zip(up)
                        .map(|(c, u)| if u { c.to_ascii_uppercase() } else { c })
                        .collect()
                }),
            prop::collection::vec(
                prop::sample::select(&b"selctwhinsrtupdamgoEILNT_$09@`[{\x80\xc3\xe9"[..]),
                1..12
            ),
        ]
    }

    proptest! {
        /// The direct comparisons agree with the lexer's keyword table and with a plain
        /// case-insensitive comparison on every word.
        #[test]
        fn keys_compare_like_the_lexer(word in identish()) {
            prop_assert_eq!(head_keyword(&word), keyword(&word));
            for kw in [&b"into"[..], b"select", b"begin", b"set", b"deallocate"] {
                prop_assert_eq!(
                    word.len() == kw.len() && key(&word) == key(kw),
                    word.eq_ignore_ascii_case(kw)
                );
            }
        }
    }

    /// The comparisons above are not vacuous: the fast path answers for a good share of the
    /// generated texts, and the splitter flags a good share of them.
    #[test]
    fn the_generators_reach_both_verdicts() {
        for (name, strategy) in [
            ("sqlish", sqlish().boxed()),
            ("near_dml", near_dml().boxed()),
            ("dense", dense().boxed()),
            ("hiders", hiders().boxed()),
        ] {
            let mut runner = TestRunner::deterministic();
            let (mut fast_yes, mut flagged) = (0, 0);
            let cases = 2000;
            for _ in 0..cases {
                let data = strategy
                    .new_tree(&mut runner)
                    .map(|t| t.current())
                    .unwrap_or_default();
                let u = LexSettings::known("UTF8", true);
                fast_yes += usize::from(fast(&data, &u));
                flagged += usize::from(full_verdict(&data, None, &u, &LexOptions::default()));
            }
            assert!(
                fast_yes * 20 > cases,
                "{name}: fast path answered {fast_yes}/{cases}"
            );
            assert!(
                flagged * 20 > cases,
                "{name}: splitter flagged {flagged}/{cases}"
            );
        }
    }

    fn utf8() -> LexSettings {
        LexSettings::known("UTF8", true)
    }

    /// Texts the fast path must answer for itself (the hot path), each checked against the
    /// splitter under every setting.
    #[test]
    fn ordinary_dml_is_answered_by_the_fast_path() {
        for sql in [
            "SELECT abalance FROM pgbench_accounts WHERE aid = 12345;",
            "SELECT abalance FROM pgbench_accounts WHERE aid = $1",
            "UPDATE pgbench_accounts SET abalance = abalance + -4321 WHERE aid = 17;",
            "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (1, 2, 3, -4, CURRENT_TIMESTAMP);",
            "BEGIN;",
            "END;",
            "begin isolation level serializable; commit",
            "START TRANSACTION READ ONLY",
            "ROLLBACK TO SAVEPOINT s; RELEASE s",
            "SET lock_timeout = '2s'",
            "RESET ALL; DISCARD ALL",
            "SELECT 1; SELECT 2;;",
            "",
            " ;\n",
            "(SELECT 1) UNION (SELECT 2)",
            "[SELECT 1]",
            "((VALUES (1)))",
            "TABLE t",
            "WITH x AS (SELECT 1) SELECT * FROM x",
            "SELECT 'a;' ; SELECT \"b;\" /* ; */ -- ;\n",
            // A prefix without a backslash ends where a plain string would.
            "SELECT E'x', U&'d', U&\"i\", B'1', X'f' FROM t",
            "INSERT INTO t VALUES ($1, 'into', \"into\") RETURNING id",
            "UPDATE t SET a = 1 WHERE b IN (SELECT 1) -- into\n",
            "SELECT 'it''s' AS \"x\"\"y\"",
            "SELECT 1.5e-3, .5, 1..2, 0x1F, $1::int, a_b1",
            "SELECT \"into\" FROM t",
            "SELECT intox FROM t",
            "SELECT 1 /* /* nested */ into */",
            "SELECT 'é' FROM \"表\" WHERE ñ = 1",
            "COPY t FROM STDIN",
            "copy t (a) to stdout with (format csv)",
            "DECLARE c CURSOR FOR SELECT 1",
            "FETCH 10 FROM c; CLOSE c",
            "NOTIFY ch, 'x'",
            "SELECT 1); SELECT 2",
            "SELECT a[1;2]; SELECT (1; 2)",
            "SELECT 1--c",
            "SELECT 'a'  AND",
        ] {
            assert!(fast(sql.as_bytes(), &utf8()), "fast path gave up on {sql:?}");
            let answered = check(sql.as_bytes(), &LexOptions::default())
                .unwrap_or_else(|e| panic!("{sql:?}: {e}"));
            assert!(answered > 0, "{sql:?}");
        }
    }

    /// Texts that need attention, and texts the fast path must leave to the splitter: every
    /// one is sent on, and the verdict is the splitter's.
    #[test]
    fn tricky_texts_go_to_the_splitter() {
        for (sql, attention) in [
            ("SELECT 1 INTO t", true),
            ("select/**/into t from x", true),
            ("SELECT * INTO newtable FROM t", true),
            ("WITH x AS (SELECT 1) SELECT * INTO t FROM x", true),
            ("SELECT 1 INTO", true),
            ("SELECT 1\ninto t", true),
            ("VALUES (1) INTO t", true),
            ("copy t to program 'x'", true),
            ("COPY t FROM PROGRAM 'curl x'", true),
            ("COPY program FROM STDIN", false),
            ("(SELECT 1) ; CREATE TABLE t()", true),
            // A `;` inside brackets does not split: the INTO belongs to the SELECT.
            ("SELECT a[1; UPDATE x INTO t]", true),
            ("SELECT (1; UPDATE x INTO t)", true),
            ("SELECT a[1; INSERT INTO t]", false),
            ("SELECT 'a;' ; DROP TABLE t", true),
            ("SELECT 1; DROP TABLE t", true),
            ("EXPLAIN ANALYZE CREATE TABLE t AS SELECT 1", true),
            ("EXPLAIN SELECT 1", false),
            ("PREPARE p AS CREATE TABLE t (a int)", true),
            ("PREPARE p AS SELECT $1", false),
            ("PREPARE TRANSACTION 'x'", false),
            ("(INSERT INTO t VALUES (1))", true),
            ("(BEGIN)", true),
            ("(SET a = 1)", true),
            ("((", true),
            ("START", true),
            ("START;", true),
            ("START x", true),
            ("1; SELECT 1", true),
            ("'x'", true),
            ("frobnicate t", true),
            (
                "CREATE FUNCTION f() RETURNS int BEGIN ATOMIC SELECT 1; SELECT 2; END",
                true,
            ),
            // A string continued across a newline: the second part is still the string.
            ("SELECT 'a'\n'; DROP TABLE t; '", false),
            ("SELECT 'a' ; DROP TABLE t; --'", true),
            // A comment hides a quote; a quote hides a comment.
            ("SELECT 1 -- '\n; DROP TABLE t; '", true),
            ("SELECT 1 /* ' */ ; DROP TABLE t; '", true),
            ("SELECT '--' ; DROP TABLE t", true),
            // Backslashes: under scs=off `\'` does not end the string.
            ("SELECT 'a\\'; DROP TABLE t; --'", true),
            ("SELECT E'\\'; DROP TABLE t; --'", false),
            ("SELECT 1 \\gset\nDROP TABLE t", true),
            ("\\copy t from 'x'", true),
            // Prefixes and dollar quotes.
            ("SELECT U&'d' ; DROP TABLE t", true),
            ("SELECT x'1f'", false),
            ("SELECT $$;$$; DROP TABLE t", true),
            ("SELECT $a$ ; DROP TABLE t ; $a$", false),
            ("SELECT $a ; DROP TABLE t", true),
            // Unterminated: the class stays, the splitter decides.
            ("SELECT 'abc", false),
            ("SELECT /* x", false),
            ("SELECT \"x", false),
            // Multibyte characters whose second byte is a backslash.
            ("SELECT '\u{0}'", false),
        ] {
            let bytes = sql.as_bytes();
            assert!(!fast(bytes, &utf8()) || !attention, "{sql:?}");
            assert_eq!(
                needs_attention(bytes, &utf8(), &LexOptions::default()),
                attention,
                "{sql:?}"
            );
            check(bytes, &LexOptions::default()).unwrap_or_else(|e| panic!("{sql:?}: {e}"));
        }
        // Everything unusual is left to the splitter, whatever its verdict.
        for sql in [
            "SELECT 'a\\b'",
            "WITH x AS (INSERT INTO t VALUES (1) RETURNING *) SELECT * FROM x",
            "WITH s AS (SELECT 1) MERGE INTO t USING s ON true WHEN MATCHED THEN DO NOTHING",
            "SELECT 1into",
            "SELECT a$b",
            "SELECT $$x$$",
            "SELECT 'a'\n'b'",
            "SELECT 'abc",
            "SELECT /* x",
            "EXPLAIN SELECT 1",
            "PREPARE p AS SELECT 1",
            "COPY program FROM STDIN",
            "WITH x AS (SELECT 1) INSERT INTO t SELECT * FROM x RETURNING 1 INTO",
        ] {
            assert!(!fast(sql.as_bytes(), &utf8()), "{sql:?}");
        }
        // SJIS: 0x95 0x5C is one character; a byte-wise reader sees a backslash.
        let sjis = b"SELECT '\x95\x5c'; DROP TABLE t; SELECT '1'";
        assert!(!fast(sjis, &LexSettings::known("SJIS", true)));
        assert!(!fast(sjis, &LexSettings::unknown()));
        assert!(needs_attention(
            sjis,
            &LexSettings::known("SJIS", false),
            &LexOptions::default()
        ));
        // Non-ASCII is read only when the encoding is known to be ASCII-safe.
        let e = "SELECT 'é'".as_bytes();
        assert!(fast(e, &utf8()));
        assert!(!fast(e, &LexSettings::unknown()));
        assert!(!fast(e, &LexSettings::known("BIG5", true)));
        // Invalid UTF-8 under UTF8: the splitter reads the lossy text; same structure.
        let lossy = b"SELECT '\xe9', \xff\xfe FROM t WHERE a = '\xc3'";
        assert!(fast(lossy, &utf8()));
        check(lossy, &LexOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    }
}
