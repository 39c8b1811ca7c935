//! Prefilter: one pass over a query string that splits it into statements and classifies each
//! by its leading keywords, without allocating. Plain DML never reaches the parser.
//!
//! INTERFACE PLACEHOLDER: the real lexer replaces this file (comments, strings, dollar quotes,
//! bounds). The types below are the contract the parser adapter and the proxy code against.
use std::ops::Range;

/// Options that change how text lexes.
#[derive(Debug, Clone, Copy)]
pub struct LexOptions {
    /// `standard_conforming_strings`: when off, backslash escapes in plain `''` strings.
    pub standard_conforming_strings: bool,
    /// Statements longer than this (bytes) are not handed to the parser.
    pub max_statement_len: usize,
    /// Parenthesis/bracket nesting deeper than this is not handed to the parser.
    pub max_depth: usize,
}

impl Default for LexOptions {
    fn default() -> Self {
        LexOptions {
            standard_conforming_strings: true,
            max_statement_len: 1 << 20,
            max_depth: 200,
        }
    }
}

/// What a statement is, from its leading keywords.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatementClass {
    /// Only whitespace and comments.
    Empty,
    /// SELECT/INSERT/UPDATE/DELETE/WITH/VALUES/TABLE/MERGE/SHOW/FETCH/... with no DDL inside.
    Dml,
    /// BEGIN/START TRANSACTION/COMMIT/END/ROLLBACK/SAVEPOINT/RELEASE/PREPARE TRANSACTION.
    Transaction,
    /// SET/RESET (session settings: lock_timeout, statement_timeout, ...).
    Set,
    /// Everything that must be parsed: CREATE/ALTER/DROP/REINDEX/VACUUM/CLUSTER/DO/...
    DdlOrUtility,
}

/// Why a statement cannot be analysed safely.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unanalysable {
    TooLong,
    TooDeep,
    /// Unterminated string, quoted identifier, comment or dollar quote.
    Unterminated,
    /// A psql backslash command (`\copy`, `\set`, ...).
    PsqlMetaCommand,
}

/// One statement of a query string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawStatement {
    /// Byte range in the original text, without the terminating `;`.
    pub span: Range<usize>,
    pub class: StatementClass,
    /// Set when the statement must not be handed to the parser.
    pub unanalysable: Option<Unanalysable>,
}

/// Splits `text` into statements.
pub fn split<'a>(text: &'a str, _opts: &LexOptions) -> impl Iterator<Item = RawStatement> + 'a {
    let mut start = 0;
    text.split_inclusive(';').map(move |piece| {
        let span = start..start + piece.trim_end_matches(';').len();
        start += piece.len();
        RawStatement {
            span,
            class: StatementClass::DdlOrUtility,
            unanalysable: None,
        }
    })
}
