//! Prefilter: one pass over a query string that splits it into statements and classifies each
//! by its leading keywords, without allocating. Plain DML never reaches the parser.
//!
//! # Lexing follows the server, not a grammar book
//! The splitter only has to agree with PostgreSQL's own scanner (`scan.l`) on one question: which
//! bytes are code and which are inside a comment, string, quoted identifier or dollar quote. If it
//! ever saw a string where the server sees code, a `DROP TABLE` could hide behind a "string" and
//! skip every rule. Where server versions disagree we pick the reading that shows *more* code to
//! the rules (the other versions reject such text as a syntax error anyway):
//! - `--` and `/*` start a comment anywhere outside literals, even inside an operator; block
//!   comments nest.
//! - `'…'` doubles quotes; with `standard_conforming_strings = off` backslashes escape too.
//!   `E'…'` always honours backslashes; `B'…'`/`X'…'` never do; `U&'…'` lexes like a standard
//!   string (the server refuses it when standard_conforming_strings is off). A string followed by
//!   whitespace that contains a newline and then another `'` continues *in the same mode*
//!   (`E'a'\n'\'…'` is still an escape string), exactly as the server's `quotecontinue` rule.
//! - A prefix letter only counts when it is a whole token: `somee'x'` is a word then a string.
//! - Identifiers absorb `$` (`a$b$` is one word, not a dollar quote); `$1` is a parameter;
//!   `$tag$` opens a dollar quote only at a token start and the tag cannot start with a digit.
//! - Numbers never absorb letters (`1abc$$` is `1` then the word `abc$$`, as in PG ≤ 14; newer
//!   servers reject it as trailing junk).
//!
//! # Splitting follows psql
//! A `;` ends a statement only outside parentheses/brackets and outside a `BEGIN ATOMIC … END`
//! body of `CREATE [OR REPLACE] FUNCTION|PROCEDURE` (psql's heuristic, copied: a `;` inside them
//! is either a syntax error for the server or part of the function body). A psql backslash
//! command runs to the end of its line; a backslash in the middle of a statement ends that
//! statement first, as `\g` does in psql.
//!
//! # Classification decisions
//! - DML (skips the parser): SELECT, VALUES, TABLE, WITH, INSERT, UPDATE, DELETE, MERGE, SHOW,
//!   FETCH, MOVE, CLOSE, DECLARE, COPY, EXECUTE, DEALLOCATE, LISTEN, NOTIFY, UNLISTEN.
//!   A SELECT/WITH/VALUES/TABLE that contains the word `INTO` (other than `INSERT INTO` and
//!   `MERGE INTO`) is `SELECT … INTO newtable`, which creates a table: DdlOrUtility.
//! - `EXPLAIN [ANALYZE] [VERBOSE] | EXPLAIN (options)` and `PREPARE name [(types)] AS` are
//!   classified by the statement they wrap, with or without ANALYZE: EXPLAIN ANALYZE executes it,
//!   and plain EXPLAIN of a CREATE TABLE AS is rare enough that parsing it costs nothing.
//! - Transaction: BEGIN, START TRANSACTION, COMMIT, END, ROLLBACK, ABORT, SAVEPOINT, RELEASE,
//!   PREPARE TRANSACTION, COMMIT PREPARED, ROLLBACK PREPARED, with a [`TxKind`].
//! - Set: SET, RESET and DISCARD (DISCARD ALL resets every setting, including a lock_timeout the
//!   proxy set). SET TRANSACTION, SET SESSION CHARACTERISTICS and SET CONSTRAINTS are Set too,
//!   with their own [`SetKind`]: they take no table locks and change no schema.
//! - Everything else is DdlOrUtility, including LOCK (it takes table locks), CHECKPOINT, CALL,
//!   DO, ANALYZE, and any statement whose first token is not a known keyword.
//! - A statement that opens with parentheses is classified by the first word inside them
//!   (`(SELECT 1) UNION …`), but only query statements may start that way; anything else
//!   becomes DdlOrUtility so that the parser judges it.
//!
//! Functions called from DML (`SELECT my_migration()`) can do anything; the prefilter cannot see
//! into them, by design (DESIGN.md decision 4).
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
    /// Longest chain of tokens the parser may nest into one path of its tree: the tokens since
    /// the last `,` or `;` at each open bracket level, summed over the open levels (a closed
    /// bracket group counts as one token of the level around it). `a + b + ... + z`,
    /// `NOT NOT ... x`, `a.b.c...`, `x::t::t...` and nested CASE each make the tree one level
    /// deeper per operator; squawk's tree builder hashes and drops such trees recursively, so
    /// an unbounded chain overflows the stack and takes quadratic time (a 200 KB
    /// `CHECK (a+a+...)` took 45 s before this bound existed, a 1 MB one aborted the process).
    /// Commas reset it: column lists, IN lists and VALUES rows are flat.
    pub max_chain: usize,
}

impl Default for LexOptions {
    fn default() -> Self {
        LexOptions {
            standard_conforming_strings: true,
            max_statement_len: 1 << 20,
            max_depth: 200,
            max_chain: 1000,
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
    /// [`RawStatement::transaction`] says which.
    Transaction,
    /// SET/RESET/DISCARD (session settings: lock_timeout, statement_timeout, ...).
    /// [`RawStatement::set`] locates the setting name and value.
    Set,
    /// Everything that must be parsed: CREATE/ALTER/DROP/REINDEX/VACUUM/CLUSTER/DO/...
    DdlOrUtility,
}

/// Why a statement cannot be analysed safely.
///
/// When several apply, the first in this order wins: Unterminated, PsqlMetaCommand, TooLong,
/// TooDeep. TooLong and TooDeep only matter for statements that go to the parser: the class of
/// such a statement is still exact, so a 5 MB bulk INSERT stays `Dml`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unanalysable {
    /// The statement (span, comments included) is longer than `max_statement_len` bytes.
    TooLong,
    /// Parentheses/brackets nest deeper than `max_depth`, or a chain of operators nests
    /// deeper than `max_chain` (see [`LexOptions::max_chain`]).
    TooDeep,
    /// Unterminated string, quoted identifier, comment or dollar quote, or a `BEGIN ATOMIC`
    /// body without its `END`.
    Unterminated,
    /// A psql backslash command (`\copy`, `\set`, ...).
    PsqlMetaCommand,
    /// The server's `client_encoding` / `standard_conforming_strings` for this text are not
    /// known (an earlier request in flight may have changed them) and the text splits
    /// differently under the possible values (see `sql::server_lex`). Never set by the lexer.
    UnknownSettings,
}

/// A statement-level keyword, as read from the first tokens of a statement.
///
/// Only words that matter for classification (and a few that callers commonly want to look
/// at) have a variant; any other token is `Other`, a missing token is `None`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keyword {
    /// No token at this position (the statement is shorter).
    None,
    /// A token that is not one of the keywords below (identifier, literal, punctuation).
    Other,
    Abort,
    All,
    Alter,
    /// `ANALYZE` or `ANALYSE`.
    Analyze,
    As,
    Authorization,
    Begin,
    Call,
    Characteristics,
    Checkpoint,
    Close,
    Cluster,
    Comment,
    Commit,
    Concurrently,
    Constraints,
    Copy,
    Create,
    Deallocate,
    Declare,
    Delete,
    Discard,
    Do,
    Drop,
    End,
    Execute,
    Explain,
    Fetch,
    Grant,
    Import,
    Index,
    Insert,
    Into,
    Listen,
    Load,
    Local,
    Lock,
    Materialized,
    Merge,
    Move,
    Notify,
    Prepare,
    Prepared,
    Reassign,
    Refresh,
    Reindex,
    Release,
    Reset,
    Revoke,
    Rollback,
    Savepoint,
    Security,
    Select,
    Session,
    Set,
    Show,
    Start,
    Table,
    Time,
    To,
    Transaction,
    Truncate,
    Unique,
    Unlisten,
    Update,
    Vacuum,
    Values,
    Verbose,
    View,
    With,
    Work,
    Zone,
}

/// Which transaction-control statement a `Transaction` statement is.
///
/// The proxy takes transaction state from ReadyForQuery (DESIGN.md decision 9); this is for the
/// offline checker, which has no server to ask.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxKind {
    /// `BEGIN`, `START TRANSACTION`.
    Begin,
    /// `COMMIT`, `END` (with or without `AND CHAIN`).
    Commit,
    /// `ROLLBACK`, `ABORT`.
    Rollback,
    /// `SAVEPOINT name`.
    Savepoint,
    /// `RELEASE [SAVEPOINT] name`.
    Release,
    /// `ROLLBACK [WORK|TRANSACTION] TO [SAVEPOINT] name`: the transaction goes on.
    RollbackToSavepoint,
    /// `PREPARE TRANSACTION 'id'`: ends the transaction block of this session.
    PrepareTransaction,
    /// `COMMIT PREPARED 'id'`: must run outside a transaction block.
    CommitPrepared,
    /// `ROLLBACK PREPARED 'id'`: must run outside a transaction block.
    RollbackPrepared,
}

/// Which settings statement a `Set` statement is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetKind {
    /// `SET [SESSION] name {TO|=} value`, `SET ROLE x`, `SET TIME ZONE x`, ...
    Session,
    /// `SET LOCAL name ...`: lasts until the end of the transaction.
    Local,
    /// `RESET name`.
    Reset,
    /// `RESET ALL`.
    ResetAll,
    /// `DISCARD ALL|PLANS|SEQUENCES|TEMP`: `name` is what is discarded.
    Discard,
    /// `SET CONSTRAINTS ... DEFERRED|IMMEDIATE`.
    Constraints,
    /// `SET TRANSACTION ...` (isolation level, read only, snapshot).
    Transaction,
    /// `SET SESSION CHARACTERISTICS AS TRANSACTION ...`.
    SessionCharacteristics,
}

/// Where the setting name and value of a `Set` statement are, so callers can spot
/// `lock_timeout`/`statement_timeout` without lexing again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetInfo {
    /// Which kind of settings statement.
    pub kind: SetKind,
    /// Byte range of the setting name in the original text (`lock_timeout`, `"my.opt"`,
    /// `TIME ZONE`, `ROLE`); empty when there is none (`SET TRANSACTION`, `RESET ALL`).
    pub name: Range<usize>,
    /// Byte range of the value, from the token after `TO`/`=` (or after the name) to the last
    /// token of the statement; empty when there is none.
    pub value: Range<usize>,
}

impl SetInfo {
    /// The setting name as written (quotes kept).
    pub fn name<'t>(&self, text: &'t str) -> &'t str {
        text.get(self.name.clone()).unwrap_or("")
    }

    /// The value as written (quotes kept).
    pub fn value<'t>(&self, text: &'t str) -> &'t str {
        text.get(self.value.clone()).unwrap_or("")
    }

    /// Whether the name is `name`, ignoring ASCII case and double quotes: setting names are
    /// case-insensitive in Postgres, and `SET "lock_timeout" = …` works.
    pub fn name_is(&self, text: &str, name: &str) -> bool {
        let written = self.name(text);
        let unquoted = written
            .strip_prefix('"')
            .and_then(|s| s.strip_suffix('"'))
            .unwrap_or(written);
        unquoted.eq_ignore_ascii_case(name)
    }
}

/// One statement of a query string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawStatement {
    /// Byte range in the original text, without the terminating `;`. Leading whitespace and
    /// comments belong to the statement they precede (that is where `-- pgwarden:allow` sits).
    pub span: Range<usize>,
    pub class: StatementClass,
    /// Set when the statement must not be handed to the parser.
    pub unanalysable: Option<Unanalysable>,
    /// From the first token to the end of the last token: `span` without the surrounding
    /// whitespace and comments. Empty (at `span.end`) for an `Empty` statement.
    pub body: Range<usize>,
    /// The first three tokens, after any leading `(`. Enough to tell `CREATE INDEX` from
    /// `CREATE TABLE` or `COMMIT` from `COMMIT PREPARED` without lexing again.
    pub leading: [Keyword; 3],
    /// For `Transaction` statements: which one.
    pub transaction: Option<TxKind>,
    /// For `Set` statements: kind, name and value.
    pub set: Option<SetInfo>,
    /// `COPY … FROM STDIN`: the data follows out of band (CopyData messages on the wire, lines
    /// up to `\.` in a psql script; see [`Splitter::psql_script`]).
    pub copy_from_stdin: bool,
}

impl RawStatement {
    /// The statement text (span) in `text`, the string it was split from.
    pub fn text<'t>(&self, text: &'t str) -> &'t str {
        text.get(self.span.clone()).unwrap_or("")
    }

    /// The statement text without surrounding whitespace and comments.
    pub fn body_text<'t>(&self, text: &'t str) -> &'t str {
        text.get(self.body.clone()).unwrap_or("")
    }
}

/// Splits `text` into statements.
///
/// Every piece between top-level `;` is returned, also empty ones (class `Empty`), except a
/// zero-length piece at the very end (`SELECT 1;` yields one statement).
pub fn split<'a>(text: &'a str, opts: &LexOptions) -> Splitter<'a> {
    Splitter {
        text,
        pos: 0,
        opts: *opts,
        done: false,
        psql_script: false,
    }
}

/// Iterator over the statements of a query string; see [`split`].
#[derive(Debug, Clone)]
pub struct Splitter<'a> {
    /// The whole query string; spans index into it.
    text: &'a str,
    /// Where the next statement starts.
    pos: usize,
    /// Copied so the caller may change them between statements.
    opts: LexOptions,
    /// Set once the end of the text has been reached.
    done: bool,
    /// The text is a psql script: COPY FROM STDIN data lines follow their statement.
    psql_script: bool,
}

impl Splitter<'_> {
    /// Changes how the *following* statements lex. A psql script that runs
    /// `SET standard_conforming_strings = off;` lexes differently from there on, because psql
    /// sends each statement on its own; within one simple-protocol Query string the server lexes
    /// everything with the value in force when the string arrived, so the proxy must not call this.
    /// Reads the text as a psql script (`pgwarden check`): after `COPY … FROM STDIN;` the lines
    /// up to a line `\.` are data, as in pg_dump output. They belong to no statement: the next
    /// span starts after the `\.` line. Without this, an apostrophe in the data would open a
    /// "string" that swallows the statements after it. Not for the wire, where the data
    /// travels in CopyData messages and never inside the query text.
    pub fn psql_script(mut self) -> Self {
        self.psql_script = true;
        self
    }

    pub fn set_standard_conforming_strings(&mut self, on: bool) {
        self.opts.standard_conforming_strings = on;
    }
}

impl Iterator for Splitter<'_> {
    type Item = RawStatement;

    fn next(&mut self) -> Option<RawStatement> {
        if self.done {
            return None;
        }
        let bytes = self.text.as_bytes();
        let (stmt, next) = scan_statement(bytes, self.pos, &self.opts);
        match next {
            Some(n) if self.psql_script && stmt.copy_from_stdin => match skip_copy_data(bytes, n) {
                Some(after) => self.pos = after,
                None => self.done = true,
            },
            Some(n) => self.pos = n,
            None => {
                self.done = true;
                if stmt.span.is_empty() {
                    return None;
                }
            }
        }
        Some(stmt)
    }
}

/// Kinds of token the classifier is told about. Literals are strings, numbers, parameters and
/// dollar quotes: their content never matters for classification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok {
    Word,
    Quoted,
    Literal,
    Open,
    Close,
    Punct(u8),
}

/// Where the classifier is in the head of the statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for the first word of the (possibly wrapped) statement; `(` are skipped.
    Start { nested: bool },
    /// After `EXPLAIN`: skipping ANALYZE/VERBOSE or an option list; `opts` holds the depth of
    /// an open option list.
    Explain { opts: Option<u32>, had_list: bool },
    /// After `PREPARE`: the next word is the statement name or TRANSACTION.
    PrepareName,
    /// After `PREPARE name`: waiting for `AS` at this depth.
    PrepareAs { depth: u32 },
    /// Reading a SET/RESET/DISCARD.
    Set(SetPhase),
    /// The class is known; only the INTO check still looks at words.
    Done,
}

/// Steps of reading `SET [SESSION|LOCAL] name {TO|=} value`, `RESET name` and `DISCARD what`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SetPhase {
    /// Right after SET: SESSION/LOCAL may follow.
    AfterSet,
    /// After SET SESSION: CHARACTERISTICS / AUTHORIZATION or a name may follow.
    AfterSession,
    /// After the scope: a name, or TRANSACTION / CONSTRAINTS.
    AfterScope,
    /// After RESET or DISCARD: a name or ALL.
    AfterReset,
    /// Inside a possibly qualified name (`a.b`, `TIME ZONE`); `last` is the previous piece.
    InName { last: NamePiece },
    /// After the name: `TO`/`=` or the value itself.
    AfterName,
    /// Reading the value (its end is the statement's last token).
    Value,
    /// Nothing more to record.
    Finished,
}

/// The last piece of a setting name being read, to know whether it may continue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NamePiece {
    /// A name part; a `.` may follow.
    Part,
    /// `TIME`: `ZONE` may follow.
    Time,
    /// `SESSION` of `SESSION AUTHORIZATION`: `AUTHORIZATION` may follow.
    Session,
    /// A `.`: another part must follow.
    Dot,
    /// A name that cannot continue (RESET/DISCARD ALL, a finished two-word name).
    Closed,
}

/// Bracket levels whose chains are tracked (level 0 and 256 open brackets, the analysis's
/// default depth bound); deeper nesting is too deep whatever `max_depth` says. The array is
/// zeroed for every statement, DML included, so it is kept small (514 bytes).
pub const RUN_LEVELS: usize = 257;

/// Per-statement state of the scan. Lives on the stack; nothing here allocates.
struct Stmt {
    /// Start of the span (after the previous terminator).
    start: usize,
    /// Start of the first token, `usize::MAX` until there is one.
    body_start: usize,
    /// End of the last token.
    body_end: usize,
    /// Current paren/bracket depth.
    depth: u32,
    /// Nesting went beyond `max_depth` or `max_chain`.
    too_deep: bool,
    /// `runs[d]`: tokens since the last `,`/`;` at open bracket level `d` (levels beyond the
    /// array are already too deep). A fixed array: the scan never allocates.
    runs: [u16; RUN_LEVELS],
    /// Sum of `runs[0..=depth]`: the longest path the parser could nest here.
    chain: u32,
    /// Limit from the options.
    max_chain: u32,
    /// Hit end of text inside a literal, comment or BEGIN ATOMIC body.
    unterminated: bool,
    /// A psql backslash command.
    meta: bool,
    /// Limit from the options, as u32 (depth is a u32 counter).
    max_depth: u32,
    /// psql's BEGIN ATOMIC heuristic: words seen so far (counting stops at 4).
    ident_count: u32,
    /// psql's BEGIN ATOMIC heuristic: the statement starts CREATE [OR REPLACE] FUNCTION|PROCEDURE.
    routine: bool,
    /// psql's BEGIN ATOMIC heuristic: first letters of CREATE/OR/REPLACE/FUNCTION/PROCEDURE.
    idents: [u8; 4],
    /// psql's BEGIN ATOMIC heuristic: open BEGIN/CASE blocks of a function body.
    begin_depth: u32,
    /// The first three tokens after leading parens.
    leading: [Keyword; 3],
    /// How many of `leading` are filled.
    nlead: u8,
    /// The statement opened with `(`.
    lead_paren: bool,
    /// Classifier state.
    phase: Phase,
    /// First keyword of the effective statement (inside EXPLAIN/PREPARE), `None` until known.
    eff: Keyword,
    /// The effective statement is a query, where `INTO` means `SELECT … INTO newtable`.
    into_check: bool,
    /// Saw such an `INTO`.
    into_seen: bool,
    /// The previous word was INSERT or MERGE (so a following INTO is harmless).
    prev_insert_or_merge: bool,
    /// `SET`/`RESET`/`DISCARD`: what was found so far.
    set_kind: Option<SetKind>,
    /// Setting name range.
    set_name: (usize, usize),
    /// Start of the setting value, `usize::MAX` if none.
    set_value_start: usize,
    /// `PREPARE TRANSACTION`.
    prepare_tx: bool,
    /// `COPY`: the previous depth-0 word was FROM.
    copy_after_from: bool,
    /// The previous word at depth 0 of a COPY was FROM or TO.
    copy_after_from_to: bool,
    /// `COPY ... FROM PROGRAM` / `TO PROGRAM`: runs a shell command on the server — a
    /// utility statement, analysed and audited, not DML.
    copy_program: bool,
    /// `COPY … FROM STDIN`.
    copy_from_stdin: bool,
}

impl Stmt {
    fn new(start: usize, opts: &LexOptions) -> Stmt {
        Stmt {
            start,
            body_start: usize::MAX,
            body_end: start,
            depth: 0,
            too_deep: false,
            runs: [0; RUN_LEVELS],
            chain: 0,
            max_chain: u32::try_from(opts.max_chain).unwrap_or(u32::MAX),
            unterminated: false,
            meta: false,
            max_depth: u32::try_from(opts.max_depth).unwrap_or(u32::MAX),
            ident_count: 0,
            routine: false,
            idents: [0; 4],
            begin_depth: 0,
            leading: [Keyword::None; 3],
            nlead: 0,
            lead_paren: false,
            phase: Phase::Start { nested: false },
            eff: Keyword::None,
            into_check: false,
            into_seen: false,
            prev_insert_or_merge: false,
            set_kind: None,
            set_name: (0, 0),
            set_value_start: usize::MAX,
            prepare_tx: false,
            copy_after_from: false,
            copy_after_from_to: false,
            copy_program: false,
            copy_from_stdin: false,
        }
    }

    fn has_tokens(&self) -> bool {
        self.body_start != usize::MAX
    }

    /// Records one token `bytes[start..end]`. Kept small: it runs for every token, and a
    /// typical SELECT has ~40 of them.
    #[inline(always)]
    fn token(&mut self, bytes: &[u8], tok: Tok, start: usize, end: usize) {
        if self.body_start == usize::MAX {
            self.body_start = start;
        }
        self.body_end = end;
        let depth_before = self.depth;
        match tok {
            Tok::Open => {
                // A counter, never recursion: 100,000 parens cost nothing but this add.
                self.depth = self.depth.saturating_add(1);
                if self.depth > self.max_depth || self.depth as usize >= RUN_LEVELS {
                    self.too_deep = true;
                } else {
                    self.runs[self.depth as usize] = 0;
                }
            }
            Tok::Close => {
                if (self.depth as usize) < RUN_LEVELS {
                    self.chain -= u32::from(self.runs[self.depth as usize]);
                    self.runs[self.depth as usize] = 0;
                }
                self.depth = self.depth.saturating_sub(1);
                self.chain_token();
            }
            Tok::Punct(b',' | b';') => {
                if (self.depth as usize) < RUN_LEVELS {
                    self.chain -= u32::from(self.runs[self.depth as usize]);
                    self.runs[self.depth as usize] = 0;
                }
            }
            _ => self.chain_token(),
        }
        if self.nlead < 3 || !matches!(self.phase, Phase::Done) {
            self.head_token(bytes, tok, start, end, depth_before);
        }
        if tok == Tok::Word {
            let word = &bytes[start..end];
            if self.ident_count < 4 || self.routine {
                self.psql_begin_heuristic(word, depth_before);
            }
            if self.eff == Keyword::Copy && !self.lead_paren {
                // `COPY t FROM STDIN`; a FROM inside `COPY (query)` sits at depth 1.
                let from = depth_before == 0 && word.eq_ignore_ascii_case(b"from");
                if self.copy_after_from && depth_before == 0 && word.eq_ignore_ascii_case(b"stdin")
                {
                    self.copy_from_stdin = true;
                }
                self.copy_after_from = from;
                if depth_before == 0 {
                    if self.copy_after_from_to && word.eq_ignore_ascii_case(b"program") {
                        self.copy_program = true;
                    }
                    self.copy_after_from_to = from || word.eq_ignore_ascii_case(b"to");
                }
            }
            if self.into_check {
                // Only INTO (4), MERGE (5) and INSERT (6) matter: compare by length first.
                let prev = self.prev_insert_or_merge;
                self.prev_insert_or_merge = false;
                match word.len() {
                    4 => self.into_seen |= !prev && word.eq_ignore_ascii_case(b"into"),
                    5 => self.prev_insert_or_merge = word.eq_ignore_ascii_case(b"merge"),
                    6 => self.prev_insert_or_merge = word.eq_ignore_ascii_case(b"insert"),
                    _ => {}
                }
            }
        }
    }

    /// One more token on the current level's chain.
    #[inline(always)]
    fn chain_token(&mut self) {
        let d = self.depth as usize;
        if d < RUN_LEVELS && !self.too_deep {
            self.runs[d] = self.runs[d].saturating_add(1);
            self.chain += 1;
            if self.chain > self.max_chain {
                self.too_deep = true;
            }
        }
    }

    /// The part of [`Stmt::token`] that only runs while the statement head is being read.
    #[cold]
    fn head_token(&mut self, bytes: &[u8], tok: Tok, start: usize, end: usize, depth: u32) {
        // The token's keyword, looked up once for both uses.
        let mut kw = None;
        if self.nlead < 3 {
            if tok == Tok::Open && self.nlead == 0 {
                self.lead_paren = true;
            } else {
                let k = token_keyword(bytes, tok, start, end);
                self.leading[usize::from(self.nlead)] = k;
                kw = Some(k);
                self.nlead += 1;
            }
        }
        if !matches!(self.phase, Phase::Done) {
            self.classify(bytes, tok, start, end, depth, kw);
        }
    }

    /// psql's heuristic for `CREATE [OR REPLACE] FUNCTION|PROCEDURE … BEGIN ATOMIC … END`,
    /// copied from psqlscan.l so that `;` inside such a body does not split the statement.
    fn psql_begin_heuristic(&mut self, word: &[u8], depth_before: u32) {
        let n = self.ident_count;
        if n < 4 {
            self.ident_count = n + 1;
            let tracked = [&b"create"[..], b"function", b"procedure", b"or", b"replace"]
                .iter()
                .any(|w| word.eq_ignore_ascii_case(w));
            if tracked {
                self.idents[n as usize] = word[0].to_ascii_lowercase();
            }
            let id = self.idents;
            self.routine = id[0] == b'c'
                && (id[1] == b'f'
                    || id[1] == b'p'
                    || (id[1] == b'o' && id[2] == b'r' && (id[3] == b'f' || id[3] == b'p')));
        }
        let routine = self.routine;
        if routine && depth_before == 0 {
            if word.eq_ignore_ascii_case(b"begin") {
                self.begin_depth += 1;
            } else if word.eq_ignore_ascii_case(b"case") {
                // CASE also ends with END; only tracked inside a BEGIN.
                if self.begin_depth >= 1 {
                    self.begin_depth += 1;
                }
            } else if word.eq_ignore_ascii_case(b"end") && self.begin_depth > 0 {
                self.begin_depth -= 1;
            }
        }
    }

    /// Advances the head classifier by one token (`depth` is the depth before the token; `kw`
    /// its keyword when [`Stmt::head_token`] already looked it up).
    fn classify(
        &mut self,
        bytes: &[u8],
        tok: Tok,
        start: usize,
        end: usize,
        depth: u32,
        kw: Option<Keyword>,
    ) {
        let keyword_of = || kw.unwrap_or_else(|| token_keyword(bytes, tok, start, end));
        match self.phase {
            Phase::Start { nested } => {
                if tok == Tok::Open {
                    return;
                }
                let kw = keyword_of();
                self.phase = Phase::Done;
                if !nested {
                    match kw {
                        Keyword::Explain => {
                            self.phase = Phase::Explain {
                                opts: None,
                                had_list: false,
                            };
                            return;
                        }
                        Keyword::Prepare => {
                            self.phase = Phase::PrepareName;
                            return;
                        }
                        Keyword::Set => {
                            self.set_kind = Some(SetKind::Session);
                            self.phase = Phase::Set(SetPhase::AfterSet);
                            return;
                        }
                        Keyword::Reset => {
                            self.set_kind = Some(SetKind::Reset);
                            self.phase = Phase::Set(SetPhase::AfterReset);
                            return;
                        }
                        Keyword::Discard => {
                            self.set_kind = Some(SetKind::Discard);
                            self.phase = Phase::Set(SetPhase::AfterReset);
                            return;
                        }
                        _ => {}
                    }
                }
                self.eff = kw;
                self.into_check = matches!(
                    kw,
                    Keyword::Select | Keyword::With | Keyword::Values | Keyword::Table
                );
            }
            Phase::Explain { opts, had_list } => match opts {
                Some(list_depth) => {
                    if tok == Tok::Close && depth == list_depth + 1 {
                        self.phase = Phase::Explain {
                            opts: None,
                            had_list: true,
                        };
                    }
                }
                None => {
                    if tok == Tok::Open && !had_list && self.nlead <= 2 {
                        // `EXPLAIN (` right after the keyword is the option list.
                        self.phase = Phase::Explain {
                            opts: Some(depth),
                            had_list: false,
                        };
                        return;
                    }
                    if tok == Tok::Word
                        && !had_list
                        && matches!(keyword_of(), Keyword::Analyze | Keyword::Verbose)
                    {
                        return;
                    }
                    self.phase = Phase::Start { nested: true };
                    self.classify(bytes, tok, start, end, depth, kw);
                }
            },
            Phase::PrepareName => {
                if tok == Tok::Word && keyword_of() == Keyword::Transaction {
                    self.prepare_tx = true;
                    self.phase = Phase::Done;
                } else if matches!(tok, Tok::Word | Tok::Quoted) {
                    self.phase = Phase::PrepareAs { depth };
                } else {
                    self.eff = Keyword::Other;
                    self.phase = Phase::Done;
                }
            }
            Phase::PrepareAs { depth: at } => {
                if tok == Tok::Word && depth == at && keyword_of() == Keyword::As {
                    self.phase = Phase::Start { nested: true };
                }
            }
            Phase::Set(step) => self.set_step(bytes, step, tok, start, end, kw),
            Phase::Done => {}
        }
    }

    /// One step of reading a SET/RESET/DISCARD statement.
    fn set_step(
        &mut self,
        bytes: &[u8],
        step: SetPhase,
        tok: Tok,
        start: usize,
        end: usize,
        kw: Option<Keyword>,
    ) {
        let kw = kw.unwrap_or_else(|| token_keyword(bytes, tok, start, end));
        let name_start = |s: &mut Stmt, piece: NamePiece| {
            s.set_name = (start, end);
            s.phase = Phase::Set(SetPhase::InName { last: piece });
        };
        match step {
            SetPhase::AfterSet => match kw {
                Keyword::Session => {
                    // Might be the scope or the first word of SESSION AUTHORIZATION/CHARACTERISTICS.
                    self.set_name = (start, end);
                    self.phase = Phase::Set(SetPhase::AfterSession);
                }
                Keyword::Local => {
                    self.set_kind = Some(SetKind::Local);
                    self.phase = Phase::Set(SetPhase::AfterScope);
                }
                _ => self.set_step(bytes, SetPhase::AfterScope, tok, start, end, Some(kw)),
            },
            SetPhase::AfterSession => match kw {
                Keyword::Characteristics => {
                    self.set_kind = Some(SetKind::SessionCharacteristics);
                    self.set_name = (start, end);
                    self.phase = Phase::Set(SetPhase::AfterName);
                }
                Keyword::Authorization => {
                    self.set_name.1 = end;
                    self.phase = Phase::Set(SetPhase::InName {
                        last: NamePiece::Closed,
                    });
                }
                _ => self.set_step(bytes, SetPhase::AfterScope, tok, start, end, Some(kw)),
            },
            SetPhase::AfterScope => match kw {
                Keyword::Transaction => {
                    self.set_kind = Some(SetKind::Transaction);
                    self.set_name = (start, start);
                    self.set_value_start = start;
                    self.phase = Phase::Set(SetPhase::Value);
                }
                Keyword::Constraints => {
                    self.set_kind = Some(SetKind::Constraints);
                    self.set_name = (start, start);
                    self.phase = Phase::Set(SetPhase::AfterName);
                }
                Keyword::Time => name_start(self, NamePiece::Time),
                Keyword::Session => name_start(self, NamePiece::Session),
                _ if matches!(tok, Tok::Word | Tok::Quoted) => name_start(self, NamePiece::Part),
                _ => self.phase = Phase::Set(SetPhase::Finished),
            },
            SetPhase::AfterReset => {
                if kw == Keyword::All && self.set_kind == Some(SetKind::Reset) {
                    self.set_kind = Some(SetKind::ResetAll);
                    self.set_name = (start, start);
                    self.phase = Phase::Set(SetPhase::Finished);
                } else if kw == Keyword::Time {
                    name_start(self, NamePiece::Time);
                } else if kw == Keyword::Session {
                    name_start(self, NamePiece::Session);
                } else if matches!(tok, Tok::Word | Tok::Quoted) {
                    name_start(self, NamePiece::Part);
                } else {
                    self.phase = Phase::Set(SetPhase::Finished);
                }
            }
            SetPhase::InName { last } => {
                let next = match (last, tok, kw) {
                    (NamePiece::Part, Tok::Punct(b'.'), _) => Some(NamePiece::Dot),
                    (NamePiece::Dot, Tok::Word | Tok::Quoted, _) => Some(NamePiece::Part),
                    (NamePiece::Time, _, Keyword::Zone) => Some(NamePiece::Closed),
                    (NamePiece::Session, _, Keyword::Authorization) => Some(NamePiece::Closed),
                    _ => None,
                };
                match next {
                    Some(piece) => {
                        self.set_name.1 = end;
                        self.phase = Phase::Set(SetPhase::InName { last: piece });
                    }
                    None if matches!(
                        self.set_kind,
                        Some(SetKind::Reset | SetKind::ResetAll | SetKind::Discard)
                    ) =>
                    {
                        self.phase = Phase::Set(SetPhase::Finished);
                    }
                    None => self.set_step(bytes, SetPhase::AfterName, tok, start, end, Some(kw)),
                }
            }
            SetPhase::AfterName => {
                if tok == Tok::Punct(b'=') || kw == Keyword::To {
                    self.phase = Phase::Set(SetPhase::Value);
                } else {
                    self.set_value_start = start;
                    self.phase = Phase::Set(SetPhase::Value);
                }
            }
            SetPhase::Value => {
                if self.set_value_start == usize::MAX {
                    self.set_value_start = start;
                }
            }
            SetPhase::Finished => {}
        }
    }

    /// Turns the state into the statement record; `end` is the span end.
    fn finish(self, end: usize, opts: &LexOptions) -> RawStatement {
        let span = self.start..end;
        let body = if self.has_tokens() {
            self.body_start..self.body_end
        } else {
            end..end
        };
        let unterminated = self.unterminated || self.begin_depth > 0;
        let unanalysable = if unterminated {
            Some(Unanalysable::Unterminated)
        } else if self.meta {
            Some(Unanalysable::PsqlMetaCommand)
        } else if span.len() > opts.max_statement_len {
            Some(Unanalysable::TooLong)
        } else if self.too_deep {
            Some(Unanalysable::TooDeep)
        } else {
            None
        };
        let transaction = if self.lead_paren || self.meta {
            None
        } else {
            tx_kind(self.leading, self.prepare_tx)
        };
        let set = match self.set_kind {
            Some(kind) if !self.lead_paren && !self.meta => {
                let value = if self.set_value_start == usize::MAX {
                    self.body_end..self.body_end
                } else {
                    self.set_value_start..self.body_end.max(self.set_value_start)
                };
                Some(SetInfo {
                    kind,
                    name: self.set_name.0..self.set_name.1,
                    value,
                })
            }
            _ => None,
        };
        let class = if !self.has_tokens() {
            StatementClass::Empty
        } else if self.meta {
            StatementClass::DdlOrUtility
        } else if transaction.is_some() {
            StatementClass::Transaction
        } else if set.is_some() {
            StatementClass::Set
        } else {
            let query = matches!(
                self.eff,
                Keyword::Select | Keyword::With | Keyword::Values | Keyword::Table
            );
            let dml = query
                || (!self.lead_paren
                    && matches!(
                        self.eff,
                        Keyword::Insert
                            | Keyword::Update
                            | Keyword::Delete
                            | Keyword::Merge
                            | Keyword::Show
                            | Keyword::Fetch
                            | Keyword::Move
                            | Keyword::Close
                            | Keyword::Declare
                            | Keyword::Copy
                            | Keyword::Execute
                            | Keyword::Deallocate
                            | Keyword::Listen
                            | Keyword::Notify
                            | Keyword::Unlisten
                    ));
            if dml && !self.into_seen && !self.copy_program && self.phase == Phase::Done {
                StatementClass::Dml
            } else {
                StatementClass::DdlOrUtility
            }
        };
        RawStatement {
            span,
            class,
            unanalysable,
            body,
            leading: self.leading,
            transaction,
            set,
            copy_from_stdin: self.copy_from_stdin && !self.meta,
        }
    }
}

/// The transaction-control statement named by the leading keywords, if any.
fn tx_kind(lead: [Keyword; 3], prepare_tx: bool) -> Option<TxKind> {
    use Keyword as K;
    Some(match lead[0] {
        K::Begin => TxKind::Begin,
        K::Start if lead[1] == K::Transaction => TxKind::Begin,
        K::Commit if lead[1] == K::Prepared => TxKind::CommitPrepared,
        K::Commit | K::End => TxKind::Commit,
        K::Rollback if lead[1] == K::Prepared => TxKind::RollbackPrepared,
        K::Rollback
            if lead[1] == K::To
                || (matches!(lead[1], K::Work | K::Transaction) && lead[2] == K::To) =>
        {
            TxKind::RollbackToSavepoint
        }
        K::Rollback | K::Abort => TxKind::Rollback,
        K::Savepoint => TxKind::Savepoint,
        K::Release => TxKind::Release,
        K::Prepare if prepare_tx => TxKind::PrepareTransaction,
        _ => return None,
    })
}

/// The keyword of a token: [`keyword`] for a word, `Other` for anything else.
#[inline]
fn token_keyword(bytes: &[u8], tok: Tok, start: usize, end: usize) -> Keyword {
    if tok == Tok::Word {
        keyword(&bytes[start..end])
    } else {
        Keyword::Other
    }
}

/// Every spelling [`keyword`] knows (lower case, 2 to [`KEYWORD_MAX`] ASCII letters).
const KEYWORDS: [(&[u8], Keyword); 73] = {
    use Keyword as K;
    [
        (b"abort", K::Abort),
        (b"all", K::All),
        (b"alter", K::Alter),
        (b"analyze", K::Analyze),
        (b"analyse", K::Analyze),
        (b"as", K::As),
        (b"authorization", K::Authorization),
        (b"begin", K::Begin),
        (b"call", K::Call),
        (b"characteristics", K::Characteristics),
        (b"checkpoint", K::Checkpoint),
        (b"close", K::Close),
        (b"cluster", K::Cluster),
        (b"comment", K::Comment),
        (b"commit", K::Commit),
        (b"concurrently", K::Concurrently),
        (b"constraints", K::Constraints),
        (b"copy", K::Copy),
        (b"create", K::Create),
        (b"deallocate", K::Deallocate),
        (b"declare", K::Declare),
        (b"delete", K::Delete),
        (b"discard", K::Discard),
        (b"do", K::Do),
        (b"drop", K::Drop),
        (b"end", K::End),
        (b"execute", K::Execute),
        (b"explain", K::Explain),
        (b"fetch", K::Fetch),
        (b"grant", K::Grant),
        (b"import", K::Import),
        (b"index", K::Index),
        (b"insert", K::Insert),
        (b"into", K::Into),
        (b"listen", K::Listen),
        (b"load", K::Load),
        (b"local", K::Local),
        (b"lock", K::Lock),
        (b"materialized", K::Materialized),
        (b"merge", K::Merge),
        (b"move", K::Move),
        (b"notify", K::Notify),
        (b"prepare", K::Prepare),
        (b"prepared", K::Prepared),
        (b"reassign", K::Reassign),
        (b"refresh", K::Refresh),
        (b"reindex", K::Reindex),
        (b"release", K::Release),
        (b"reset", K::Reset),
        (b"revoke", K::Revoke),
        (b"rollback", K::Rollback),
        (b"savepoint", K::Savepoint),
        (b"security", K::Security),
        (b"select", K::Select),
        (b"session", K::Session),
        (b"set", K::Set),
        (b"show", K::Show),
        (b"start", K::Start),
        (b"table", K::Table),
        (b"time", K::Time),
        (b"to", K::To),
        (b"transaction", K::Transaction),
        (b"truncate", K::Truncate),
        (b"unique", K::Unique),
        (b"unlisten", K::Unlisten),
        (b"update", K::Update),
        (b"vacuum", K::Vacuum),
        (b"values", K::Values),
        (b"verbose", K::Verbose),
        (b"view", K::View),
        (b"with", K::With),
        (b"work", K::Work),
        (b"zone", K::Zone),
    ]
};

/// Longest keyword spelling (`characteristics`).
const KEYWORD_MAX: usize = 15;

/// A word of at most [`KEYWORD_MAX`] bytes as one number: its bytes little-endian, each with
/// bit 5 set, zero above its length. Setting bit 5 lowers the ASCII capitals and maps no other
/// byte a word can hold (digits, `_`, `$`, bytes >= 0x80) onto a letter, so two words that are
/// letters only fold to the same number exactly when they are equal ignoring ASCII case; and
/// since every folded byte is non-zero, the number also encodes the length.
const fn fold(word: &[u8]) -> u128 {
    let mut x = 0u128;
    let mut i = 0;
    while i < word.len() {
        x |= ((word[i] | 0x20) as u128) << (8 * i);
        i += 1;
    }
    x
}

/// Open-addressing hash table of the folded [`KEYWORDS`] (0 = empty slot): a lookup is a
/// multiply, a shift and one or two compares instead of a `match` that lowers the word and
/// compares it with every keyword of its length (~85 instructions per word; four words per
/// pgbench query reach here).
static KEYWORD_SLOTS: ([u128; 256], [Keyword; 256]) = {
    let mut keys = [0u128; 256];
    let mut vals = [Keyword::Other; 256];
    let mut k = 0;
    while k < KEYWORDS.len() {
        let (word, kw) = KEYWORDS[k];
        assert!(word.len() >= 2 && word.len() <= KEYWORD_MAX);
        let x = fold(word);
        let mut i = keyword_slot(x);
        while keys[i] != 0 {
            assert!(keys[i] != x, "a keyword is listed twice");
            i = (i + 1) % 256;
        }
        keys[i] = x;
        vals[i] = kw;
        k += 1;
    }
    (keys, vals)
};

/// Where the probe for folded word `x` starts.
#[inline(always)]
const fn keyword_slot(x: u128) -> usize {
    let h = (x as u64) ^ ((x >> 64) as u64);
    (h.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56) as usize
}

/// Looks a word up case-insensitively without allocating.
#[inline]
pub(super) fn keyword(word: &[u8]) -> Keyword {
    if word.len() < 2 || word.len() > KEYWORD_MAX {
        return Keyword::Other;
    }
    let mut buf = [0u8; 16];
    buf[..word.len()].copy_from_slice(word);
    // `fold` at run time: bit 5 set on the word's bytes only.
    let x = u128::from_le_bytes(buf)
        | (0x2020_2020_2020_2020_2020_2020_2020_2020 >> (8 * (16 - word.len())));
    let (keys, vals) = &KEYWORD_SLOTS;
    let mut i = keyword_slot(x);
    loop {
        let k = keys[i];
        if k == x {
            return vals[i];
        }
        if k == 0 {
            return Keyword::Other;
        }
        i = (i + 1) % 256;
    }
}

/// The keyword lookup as it was before [`KEYWORD_SLOTS`]: a `match` on the lowered word. Kept
/// to prove the table gives the same answer for every word (`tests::keyword_table_*`).
#[cfg(test)]
fn keyword_by_match(word: &[u8]) -> Keyword {
    use Keyword as K;
    const MAX: usize = 15;
    if word.len() < 2 || word.len() > MAX {
        return K::Other;
    }
    let mut buf = [0u8; MAX];
    for (d, s) in buf.iter_mut().zip(word) {
        *d = s.to_ascii_lowercase();
    }
    match &buf[..word.len()] {
        b"abort" => K::Abort,
        b"all" => K::All,
        b"alter" => K::Alter,
        b"analyze" | b"analyse" => K::Analyze,
        b"as" => K::As,
        b"authorization" => K::Authorization,
        b"begin" => K::Begin,
        b"call" => K::Call,
        b"characteristics" => K::Characteristics,
        b"checkpoint" => K::Checkpoint,
        b"close" => K::Close,
        b"cluster" => K::Cluster,
        b"comment" => K::Comment,
        b"commit" => K::Commit,
        b"concurrently" => K::Concurrently,
        b"constraints" => K::Constraints,
        b"copy" => K::Copy,
        b"create" => K::Create,
        b"deallocate" => K::Deallocate,
        b"declare" => K::Declare,
        b"delete" => K::Delete,
        b"discard" => K::Discard,
        b"do" => K::Do,
        b"drop" => K::Drop,
        b"end" => K::End,
        b"execute" => K::Execute,
        b"explain" => K::Explain,
        b"fetch" => K::Fetch,
        b"grant" => K::Grant,
        b"import" => K::Import,
        b"index" => K::Index,
        b"insert" => K::Insert,
        b"into" => K::Into,
        b"listen" => K::Listen,
        b"load" => K::Load,
        b"local" => K::Local,
        b"lock" => K::Lock,
        b"materialized" => K::Materialized,
        b"merge" => K::Merge,
        b"move" => K::Move,
        b"notify" => K::Notify,
        b"prepare" => K::Prepare,
        b"prepared" => K::Prepared,
        b"reassign" => K::Reassign,
        b"refresh" => K::Refresh,
        b"reindex" => K::Reindex,
        b"release" => K::Release,
        b"reset" => K::Reset,
        b"revoke" => K::Revoke,
        b"rollback" => K::Rollback,
        b"savepoint" => K::Savepoint,
        b"security" => K::Security,
        b"select" => K::Select,
        b"session" => K::Session,
        b"set" => K::Set,
        b"show" => K::Show,
        b"start" => K::Start,
        b"table" => K::Table,
        b"time" => K::Time,
        b"to" => K::To,
        b"transaction" => K::Transaction,
        b"truncate" => K::Truncate,
        b"unique" => K::Unique,
        b"unlisten" => K::Unlisten,
        b"update" => K::Update,
        b"vacuum" => K::Vacuum,
        b"values" => K::Values,
        b"verbose" => K::Verbose,
        b"view" => K::View,
        b"with" => K::With,
        b"work" => K::Work,
        b"zone" => K::Zone,
        _ => K::Other,
    }
}

/// Byte classes, looked up once per byte on the hot path.
const IDENT_START: u8 = 1;
/// `ident_cont`: also digits and `$`.
const IDENT_CONT: u8 = 2;
/// `dolq_cont`: a dollar-quote tag character (no `$`).
const TAG_CONT: u8 = 4;
/// scan.l's `space`.
const SPACE: u8 = 8;

/// `ident_start` of scan.l is letters, underscore and every non-ASCII byte.
const CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        if c.is_ascii_alphabetic() || c == b'_' || c >= 0x80 {
            t[b] = IDENT_START | IDENT_CONT | TAG_CONT;
        } else if c.is_ascii_digit() {
            t[b] = IDENT_CONT | TAG_CONT;
        } else if c == b'$' {
            t[b] = IDENT_CONT;
        } else if matches!(c, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c) {
            // PG 16 added \v; treating it as space is safe on 15, where it is a syntax error.
            t[b] = SPACE;
        }
        b += 1;
    }
    t
};

fn is_ident_start(b: u8) -> bool {
    CLASS[usize::from(b)] & IDENT_START != 0
}

fn is_ident_cont(b: u8) -> bool {
    CLASS[usize::from(b)] & IDENT_CONT != 0
}

fn is_tag_cont(b: u8) -> bool {
    CLASS[usize::from(b)] & TAG_CONT != 0
}

/// The statement `scan_statement` returns for an empty rest of the text at `end`:
/// `Stmt::new(end, _).finish(end, _)`, whatever the options.
fn empty_statement(end: usize) -> RawStatement {
    RawStatement {
        span: end..end,
        class: StatementClass::Empty,
        unanalysable: None,
        body: end..end,
        leading: [Keyword::None; 3],
        transaction: None,
        set: None,
        copy_from_stdin: false,
    }
}

/// Scans one statement starting at `start`. Returns it and where the next one starts (`None`
/// at the end of the text).
fn scan_statement(bytes: &[u8], start: usize, opts: &LexOptions) -> (RawStatement, Option<usize>) {
    let n = bytes.len();
    if start >= n {
        // Nothing after the last `;` (the usual end of a query): the empty statement the scan
        // below would build, without setting up its per-statement state.
        return (empty_statement(n), None);
    }
    let mut s = Stmt::new(start, opts);
    let plain_backslash = !opts.standard_conforming_strings;
    let mut i = start;
    while i < n {
        let b = bytes[i];
        // Most bytes are spaces or start words: decide those with one table lookup.
        let class = CLASS[usize::from(b)];
        if class & SPACE != 0 {
            i += 1;
            continue;
        }
        if class & IDENT_START != 0 {
            i = s.word(bytes, i);
            continue;
        }
        match b {
            b';' => {
                if s.depth == 0 && s.begin_depth == 0 {
                    return (s.finish(i, opts), Some(i + 1));
                }
                s.token(bytes, Tok::Punct(b';'), i, i + 1);
                i += 1;
            }
            b'-' if bytes.get(i + 1) == Some(&b'-') => i = skip_line_comment(bytes, i + 2),
            b'/' if bytes.get(i + 1) == Some(&b'*') => match skip_block_comment(bytes, i + 2) {
                Some(j) => i = j,
                None => {
                    s.unterminated = true;
                    i = n;
                }
            },
            b'\'' => i = s.literal(bytes, i, i + 1, plain_backslash),
            b'"' => i = s.quoted_ident(bytes, i, i + 1),
            b'$' => i = s.dollar(bytes, i),
            b'(' | b'[' => {
                s.token(bytes, Tok::Open, i, i + 1);
                i += 1;
            }
            b')' | b']' => {
                s.token(bytes, Tok::Close, i, i + 1);
                i += 1;
            }
            b'\\' => {
                if s.has_tokens() {
                    // psql ends the statement so far before running the command (`\g`, `\gset`).
                    return (s.finish(i, opts), Some(i));
                }
                // A psql meta command runs to the end of its line.
                s.meta = true;
                let eol = bytes[i..]
                    .iter()
                    .position(|&c| c == b'\n')
                    .map_or(n, |p| i + p);
                let mut last = eol;
                while last > i && bytes[last - 1].is_ascii_whitespace() {
                    last -= 1;
                }
                s.token(bytes, Tok::Punct(b'\\'), i, last);
                return if eol < n {
                    (s.finish(eol, opts), Some(eol))
                } else {
                    (s.finish(n, opts), None)
                };
            }
            b'0'..=b'9' => i = s.number(bytes, i),
            b'.' if bytes.get(i + 1).is_some_and(u8::is_ascii_digit) => i = s.number(bytes, i),
            _ => {
                s.token(bytes, Tok::Punct(b), i, i + 1);
                i += 1;
            }
        }
    }
    (s.finish(n, opts), None)
}

impl Stmt {
    /// A string literal whose opening quote is at `open - 1`; the token starts at `tok_start`
    /// (which includes any prefix such as `E`). Returns where scanning continues.
    fn literal(&mut self, bytes: &[u8], tok_start: usize, open: usize, backslash: bool) -> usize {
        match scan_string(bytes, open, backslash) {
            Some(j) => {
                self.token(bytes, Tok::Literal, tok_start, j);
                j
            }
            None => {
                self.token(bytes, Tok::Literal, tok_start, bytes.len());
                self.unterminated = true;
                bytes.len()
            }
        }
    }

    /// A quoted identifier whose opening `"` is at `open - 1`.
    fn quoted_ident(&mut self, bytes: &[u8], tok_start: usize, open: usize) -> usize {
        let mut i = open;
        loop {
            match bytes[i.min(bytes.len())..].iter().position(|&c| c == b'"') {
                Some(p) => {
                    let q = i + p;
                    if bytes.get(q + 1) == Some(&b'"') {
                        i = q + 2;
                        continue;
                    }
                    self.token(bytes, Tok::Quoted, tok_start, q + 1);
                    return q + 1;
                }
                None => {
                    self.token(bytes, Tok::Quoted, tok_start, bytes.len());
                    self.unterminated = true;
                    return bytes.len();
                }
            }
        }
    }

    /// A `$` at a token start: parameter, dollar quote, or a lone `$`.
    fn dollar(&mut self, bytes: &[u8], i: usize) -> usize {
        let n = bytes.len();
        let j = i + 1;
        match bytes.get(j) {
            Some(c) if c.is_ascii_digit() => {
                let mut k = j;
                while k < n && bytes[k].is_ascii_digit() {
                    k += 1;
                }
                self.token(bytes, Tok::Literal, i, k);
                k
            }
            Some(&c) if c == b'$' || is_ident_start(c) => {
                let mut k = j;
                while k < n && is_tag_cont(bytes[k]) {
                    k += 1;
                }
                if bytes.get(k) != Some(&b'$') {
                    // scan.l's dolqfailed: the `$` stands alone, the tag lexes as a word.
                    self.token(bytes, Tok::Punct(b'$'), i, j);
                    return j;
                }
                let delim = &bytes[i..=k];
                let body = k + 1;
                match find(&bytes[body..], delim) {
                    Some(p) => {
                        let end = body + p + delim.len();
                        self.token(bytes, Tok::Literal, i, end);
                        end
                    }
                    None => {
                        self.token(bytes, Tok::Literal, i, n);
                        self.unterminated = true;
                        n
                    }
                }
            }
            _ => {
                self.token(bytes, Tok::Punct(b'$'), i, j);
                j
            }
        }
    }

    /// A numeric literal. It never absorbs letters: `1abc` is `1` then the word `abc`.
    fn number(&mut self, bytes: &[u8], i: usize) -> usize {
        let n = bytes.len();
        let digit = |k: usize| k < n && bytes[k].is_ascii_digit();
        let mut k = i;
        while digit(k) {
            k += 1;
        }
        // `1..5` is an integer followed by `..` (scan.l's decimalfail).
        if k < n && bytes[k] == b'.' && bytes.get(k + 1) != Some(&b'.') {
            k += 1;
            while digit(k) {
                k += 1;
            }
        }
        if k < n && (bytes[k] == b'e' || bytes[k] == b'E') {
            let mut e = k + 1;
            if e < n && (bytes[e] == b'+' || bytes[e] == b'-') {
                e += 1;
            }
            if digit(e) {
                k = e;
                while digit(k) {
                    k += 1;
                }
            }
        }
        self.token(bytes, Tok::Literal, i, k);
        k
    }

    /// An identifier or keyword, or a prefixed literal (`E'…'`, `B'…'`, `X'…'`, `U&'…'`,
    /// `U&"…"`) when the prefix letter is a whole token.
    fn word(&mut self, bytes: &[u8], i: usize) -> usize {
        let n = bytes.len();
        let mut j = i + 1;
        while j < n && is_ident_cont(bytes[j]) {
            j += 1;
        }
        if j == i + 1 {
            let next = bytes.get(j).copied();
            match (bytes[i], next) {
                (b'e' | b'E', Some(b'\'')) => return self.literal(bytes, i, j + 1, true),
                (b'b' | b'B' | b'x' | b'X', Some(b'\'')) => {
                    return self.literal(bytes, i, j + 1, false)
                }
                (b'u' | b'U', Some(b'&')) => match bytes.get(j + 1) {
                    // The server refuses U& strings when standard_conforming_strings is off,
                    // so they always lex as standard strings.
                    Some(b'\'') => return self.literal(bytes, i, j + 2, false),
                    Some(b'"') => return self.quoted_ident(bytes, i, j + 2),
                    _ => {}
                },
                _ => {}
            }
        }
        self.token(bytes, Tok::Word, i, j);
        j
    }
}

/// Scans a string body starting at `i` (just after the opening quote). Returns the index after
/// the closing quote, or `None` if the text ends first.
fn scan_string(bytes: &[u8], mut i: usize, backslash: bool) -> Option<usize> {
    let n = bytes.len();
    loop {
        let rest = bytes.get(i..)?;
        let p = if backslash {
            rest.iter().position(|&c| c == b'\'' || c == b'\\')?
        } else {
            rest.iter().position(|&c| c == b'\'')?
        };
        let q = i + p;
        if bytes[q] == b'\\' {
            // The escaped byte may be a quote or a backslash; a multi-byte character's lead
            // byte is skipped alone, which is harmless because its continuation bytes are
            // never ASCII.
            i = q + 2;
            if i > n {
                return None;
            }
            continue;
        }
        if bytes.get(q + 1) == Some(&b'\'') {
            i = q + 2;
            continue;
        }
        match quote_continuation(bytes, q + 1) {
            Some(open) => i = open + 1,
            None => return Some(q + 1),
        }
    }
}

/// scan.l's `quotecontinue`: after a closing quote, whitespace containing a newline (with `--`
/// comments allowed) and then a quote continue the same literal. Returns the index of that
/// quote.
pub(super) fn quote_continuation(bytes: &[u8], mut i: usize) -> Option<usize> {
    let n = bytes.len();
    let mut newline = false;
    while i < n {
        match bytes[i] {
            b' ' | b'\t' | 0x0c => i += 1,
            0x0b if newline => i += 1,
            b'\n' | b'\r' => {
                newline = true;
                i += 1;
            }
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                // A comment here must end in a newline, which the loop then consumes.
                let eol = bytes[i..].iter().position(|&c| c == b'\n' || c == b'\r')?;
                i += eol;
            }
            b'\'' if newline => return Some(i),
            _ => return None,
        }
    }
    None
}

/// psql's COPY FROM STDIN data: starts on the line after the statement's `;` and ends with a
/// line that is exactly `\.`. Returns where the next statement starts (after that line), or
/// `None` when the data runs to the end of the text.
fn skip_copy_data(bytes: &[u8], from: usize) -> Option<usize> {
    let n = bytes.len();
    let mut line = from + bytes.get(from..)?.iter().position(|&c| c == b'\n')? + 1;
    while line < n {
        let eol = bytes[line..]
            .iter()
            .position(|&c| c == b'\n')
            .map(|p| line + p);
        let content = &bytes[line..eol.unwrap_or(n)];
        let content = content.strip_suffix(b"\r").unwrap_or(content);
        if content == b"\\." {
            return Some(eol.map_or(n, |e| e + 1));
        }
        line = eol? + 1;
    }
    None
}

/// Skips a `--` comment body; returns the index of the line end (or the text end).
fn skip_line_comment(bytes: &[u8], i: usize) -> usize {
    bytes[i..]
        .iter()
        .position(|&c| c == b'\n' || c == b'\r')
        .map_or(bytes.len(), |p| i + p)
}

/// Skips a nested block comment body starting after `/*`; returns the index after the matching
/// `*/`, or `None` if the text ends first. Depth is a counter, never recursion.
fn skip_block_comment(bytes: &[u8], mut i: usize) -> Option<usize> {
    let n = bytes.len();
    let mut depth: usize = 1;
    while i + 1 < n {
        match (bytes[i], bytes[i + 1]) {
            (b'/', b'*') => {
                depth += 1;
                i += 2;
            }
            (b'*', b'/') => {
                depth -= 1;
                i += 2;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => i += 1,
        }
    }
    None
}

/// First occurrence of `needle` in `hay` (needle is a short dollar-quote delimiter).
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    let first = *needle.first()?;
    let mut from = 0;
    while from + needle.len() <= hay.len() {
        let p = hay[from..].iter().position(|&c| c == first)?;
        let at = from + p;
        if hay.get(at..at + needle.len())? == needle {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyword_table_knows_every_spelling_in_any_case() {
        for &(word, kw) in KEYWORDS.iter() {
            let upper = word.to_ascii_uppercase();
            let mixed: Vec<u8> = word
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    if i % 2 == 0 {
                        c.to_ascii_uppercase()
                    } else {
                        *c
                    }
                })
                .collect();
            for w in [word, &upper[..], &mixed[..]] {
                assert_eq!(keyword(w), kw, "{}", String::from_utf8_lossy(w));
                assert_eq!(keyword_by_match(w), kw);
            }
            // One byte more or less, or one changed, is another word.
            let mut longer = word.to_vec();
            longer.push(b's');
            assert_eq!(keyword(&longer), keyword_by_match(&longer));
            assert_eq!(
                keyword(&word[..word.len() - 1]),
                keyword_by_match(&word[..word.len() - 1])
            );
            for (i, sub) in [(0, b'_'), (word.len() - 1, b'1'), (1, 0xc3)] {
                let mut w = word.to_vec();
                w[i] = sub;
                assert_eq!(keyword(&w), keyword_by_match(&w), "{:?}", w);
            }
        }
    }

    #[test]
    fn keyword_table_ignores_bit_5_only_on_letters() {
        // `select` with each byte replaced by the byte that differs from it in bit 5 only:
        // for a letter that is its other case, for anything else a non-letter.
        for i in 0..6 {
            for b in 0..=255u8 {
                let mut w = *b"select";
                w[i] = b;
                assert_eq!(keyword(&w), keyword_by_match(&w), "{:?}", w);
            }
        }
        assert_eq!(keyword(b"SELECT"), Keyword::Select);
        assert_eq!(keyword(b"sElEcT"), Keyword::Select);
        assert_eq!(keyword(b"select\0"), Keyword::Other);
        assert_eq!(keyword(b"s"), Keyword::Other);
        assert_eq!(keyword(b"characteristicss"), Keyword::Other);
        assert_eq!(keyword(b"CHARACTERISTICS"), Keyword::Characteristics);
    }

    proptest::proptest! {
        #[test]
        fn keyword_table_agrees_with_the_match(
            w in "[a-zA-Z_$0-9\u{80}-\u{3000}]{0,17}",
            k in proptest::sample::select(&KEYWORDS[..]),
            upper in proptest::collection::vec(proptest::bool::ANY, 16),
            cut in 0usize..17,
        ) {
            proptest::prop_assert_eq!(keyword(w.as_bytes()), keyword_by_match(w.as_bytes()));
            // A keyword in random case, cut or extended by the random word.
            let mut spelled: Vec<u8> = k.0.iter().zip(&upper)
                .map(|(c, u)| if *u { c.to_ascii_uppercase() } else { *c })
                .collect();
            proptest::prop_assert_eq!(keyword(&spelled), k.1);
            spelled.truncate(cut.max(1));
            spelled.extend_from_slice(&w.as_bytes()[..w.len().min(cut)]);
            proptest::prop_assert_eq!(keyword(&spelled), keyword_by_match(&spelled));
        }
    }

    #[test]
    fn the_empty_end_is_the_statement_the_scan_would_build() {
        for (text, opts) in [
            ("select 1;", LexOptions::default()),
            ("", LexOptions::default()),
            (
                ";",
                LexOptions {
                    standard_conforming_strings: false,
                    max_statement_len: 0,
                    max_depth: 0,
                    max_chain: 0,
                },
            ),
        ] {
            let n = text.len();
            assert_eq!(
                scan_statement(text.as_bytes(), n, &opts),
                (empty_statement(n), None)
            );
            assert_eq!(empty_statement(n), Stmt::new(n, &opts).finish(n, &opts));
        }
    }

    fn opts() -> LexOptions {
        LexOptions::default()
    }

    /// (body text, class) of every statement.
    fn pieces(text: &str) -> Vec<(&str, StatementClass)> {
        split(text, &opts())
            .map(|s| (s.body_text(text), s.class))
            .collect()
    }

    fn bodies(text: &str) -> Vec<&str> {
        split(text, &opts())
            .filter(|s| s.class != StatementClass::Empty)
            .map(|s| s.body_text(text))
            .collect()
    }

    fn one(text: &str) -> RawStatement {
        let all: Vec<_> = split(text, &opts())
            .filter(|s| s.class != StatementClass::Empty)
            .collect();
        assert_eq!(all.len(), 1, "{text:?} -> {all:?}");
        all.into_iter().next().unwrap()
    }

    fn class(text: &str) -> StatementClass {
        one(text).class
    }

    use StatementClass::*;

    #[test]
    fn splits_at_semicolons_and_keeps_spans_without_terminator() {
        let text = "SELECT 1; SELECT 2;SELECT 3";
        let st: Vec<_> = split(text, &opts()).collect();
        assert_eq!(st.len(), 3);
        assert_eq!(st[0].span, 0..8);
        assert_eq!(st[1].text(text), " SELECT 2");
        assert_eq!(st[1].body_text(text), "SELECT 2");
        assert_eq!(st[2].span, 19..27);
    }

    #[test]
    fn empty_pieces_are_reported_but_not_a_trailing_zero_length_one() {
        assert!(split("", &opts()).next().is_none());
        assert_eq!(pieces("SELECT 1;"), vec![("SELECT 1", Dml)]);
        assert_eq!(
            pieces(";; -- c\n;"),
            vec![("", Empty), ("", Empty), ("", Empty)]
        );
        assert_eq!(
            pieces("SELECT 1; /* tail */"),
            vec![("SELECT 1", Dml), ("", Empty)]
        );
    }

    #[test]
    fn line_comments_hide_semicolons() {
        assert_eq!(
            bodies("SELECT 1 -- a; b\n, 2; SELECT 3"),
            vec!["SELECT 1 -- a; b\n, 2", "SELECT 3"]
        );
        // `--` starts a comment even inside an operator.
        assert_eq!(bodies("SELECT 1 +-- ;\n 2"), vec!["SELECT 1 +-- ;\n 2"]);
        // A carriage return ends a line comment too.
        assert_eq!(
            bodies("SELECT 1 -- x\r; SELECT 2"),
            vec!["SELECT 1", "SELECT 2"]
        );
    }

    #[test]
    fn block_comments_nest() {
        assert_eq!(
            bodies("SELECT /* a /* b; */ c; */ 1; SELECT 2"),
            vec!["SELECT /* a /* b; */ c; */ 1", "SELECT 2"]
        );
        assert_eq!(bodies("/* x */ SELECT 1 /* y */;"), vec!["SELECT 1"]);
        let st = one("SELECT 1 /* /* */ ;");
        assert_eq!(st.unanalysable, Some(Unanalysable::Unterminated));
        let only: Vec<_> = split("/* only", &opts()).collect();
        assert_eq!(only.len(), 1);
        assert_eq!(only[0].class, Empty);
        assert_eq!(only[0].unanalysable, Some(Unanalysable::Unterminated));
        // `/*/` opens one level, `*/` right after closes it.
        assert_eq!(bodies("SELECT /*/ ; */ 1; SELECT 2").len(), 2);
    }

    #[test]
    fn standard_strings_double_quotes_and_ignore_backslashes() {
        assert_eq!(
            bodies("SELECT 'a;''b;'; SELECT 2"),
            vec!["SELECT 'a;''b;'", "SELECT 2"]
        );
        // With standard_conforming_strings on, a backslash is an ordinary character.
        assert_eq!(
            bodies(r"SELECT '\'; SELECT 2"),
            vec![r"SELECT '\'", "SELECT 2"]
        );
        assert_eq!(
            one("SELECT 'abc").unanalysable,
            Some(Unanalysable::Unterminated)
        );
    }

    #[test]
    fn backslashes_escape_when_standard_conforming_strings_is_off() {
        let off = LexOptions {
            standard_conforming_strings: false,
            ..LexOptions::default()
        };
        let text = r"SELECT '\'; DROP TABLE t; --'; SELECT 2";
        let st: Vec<_> = split(text, &off).collect();
        assert_eq!(st.len(), 2, "{st:?}");
        assert_eq!(st[0].class, Dml);
        // Same text with the setting on: the DROP is real code.
        let on: Vec<_> = split(text, &opts()).map(|s| s.class).collect();
        assert_eq!(on[1], DdlOrUtility);
        // B'' and X'' never take backslash escapes, even with the setting off.
        let bits: Vec<_> = split(r"SELECT B'1\'; DROP TABLE t", &off).collect();
        assert_eq!(bits.len(), 2);
        assert_eq!(bits[1].class, DdlOrUtility);
    }

    #[test]
    fn escape_strings_honour_backslashes() {
        assert_eq!(
            bodies(r"SELECT E'it\'s; \\'; SELECT 2"),
            vec![r"SELECT E'it\'s; \\'", "SELECT 2"]
        );
        assert_eq!(bodies(r"SELECT e'\\'; SELECT 2").len(), 2);
        // Only a whole-token E is a prefix: `somee'\'` is a word and a standard string.
        assert_eq!(bodies(r"SELECT somee'\'; SELECT 2").len(), 2);
        assert_eq!(
            one(r"SELECT E'\'").unanalysable,
            Some(Unanalysable::Unterminated)
        );
    }

    #[test]
    fn string_continuation_keeps_escape_mode() {
        // scan.l: `E'a'` newline `'\'…'` is one escape string, so the `;` is inside it.
        let text = "SELECT E'a'\n'\\'; DROP TABLE t; --'";
        assert_eq!(bodies(text).len(), 1);
        // Without a newline between them it is not a continuation.
        assert_eq!(bodies("SELECT E'a' '\\'; DROP TABLE t; --'").len(), 2);
        // A `--` comment may sit between the parts; a block comment may not.
        assert_eq!(
            bodies("SELECT E'a' -- c\n '\\'; DROP TABLE t; --'").len(),
            1
        );
        assert_eq!(
            bodies("SELECT E'a' /* c */\n '\\'; DROP TABLE t; --'").len(),
            2
        );
    }

    #[test]
    fn unicode_strings_and_identifiers() {
        assert_eq!(bodies(r#"SELECT U&'d\0061t;' ; SELECT 2"#).len(), 2);
        assert_eq!(
            bodies(r#"SELECT U&"d\0061t;" FROM notes; SELECT 2"#),
            vec![r#"SELECT U&"d\0061t;" FROM notes"#, "SELECT 2"]
        );
        // Backslash does not escape inside U& strings, even with the setting off.
        let off = LexOptions {
            standard_conforming_strings: false,
            ..LexOptions::default()
        };
        assert_eq!(split(r"SELECT U&'\'; SELECT 2", &off).count(), 2);
    }

    #[test]
    fn quoted_identifiers_double_their_quotes() {
        assert_eq!(
            bodies(r#"SELECT "a;""b" FROM "t;"; SELECT 2"#),
            vec![r#"SELECT "a;""b" FROM "t;""#, "SELECT 2"]
        );
        assert_eq!(
            one(r#"SELECT "abc"#).unanalysable,
            Some(Unanalysable::Unterminated)
        );
    }

    #[test]
    fn dollar_quotes_with_and_without_tags() {
        assert_eq!(bodies("DO $$ BEGIN x; END $$; SELECT 1").len(), 2);
        assert_eq!(
            bodies("DO $a$ $$; $b$ ; $a$; SELECT 1"),
            vec!["DO $a$ $$; $b$ ; $a$", "SELECT 1"]
        );
        // `$ab$a$`: the first `$ab$` is not the closing tag, the following `$a$` is.
        assert_eq!(bodies("SELECT $a$x$ab$a$; SELECT 1").len(), 2);
        assert_eq!(
            one("DO $x$ never closed").unanalysable,
            Some(Unanalysable::Unterminated)
        );
        // Non-ASCII tags are allowed.
        assert_eq!(bodies("SELECT $é$;$é$; SELECT 1").len(), 2);
    }

    #[test]
    fn dollar_signs_that_are_not_quotes() {
        // Parameters.
        assert_eq!(bodies("SELECT $1; SELECT $2").len(), 2);
        assert_eq!(bodies("SELECT $1$; SELECT 2").len(), 2);
        // A tag cannot start with a digit: `$1$` is parameter `$1` and a lone `$`.
        assert_eq!(bodies("SELECT $1$ ; $1$").len(), 2);
        // Identifiers absorb `$`: no dollar quote inside `a$$b`.
        assert_eq!(bodies("SELECT a$$b; SELECT c$$").len(), 2);
        // `$abc` without a closing `$` is a lone `$` and the word `abc`.
        assert_eq!(bodies("SELECT $abc ; SELECT 2").len(), 2);
        // A number does not absorb letters: `1abc$$` is `1` and the word `abc$$` (PG <= 14).
        assert_eq!(
            bodies("SELECT 1abc$$; DROP TABLE t; SELECT 1 AS x$$").len(),
            3
        );
        // After a number, `$$` does open a quote.
        assert_eq!(bodies("SELECT 1$$;$$; SELECT 2").len(), 2);
    }

    #[test]
    fn parentheses_and_brackets_hold_semicolons() {
        assert_eq!(bodies("SELECT (1; 2); SELECT a[1;2]; SELECT 3").len(), 3);
        // An unbalanced `)` does not go below zero.
        assert_eq!(bodies("SELECT 1); SELECT 2").len(), 2);
    }

    #[test]
    fn too_deep_is_flagged_but_the_statement_end_is_found() {
        let o = LexOptions {
            max_depth: 3,
            ..LexOptions::default()
        };
        let st: Vec<_> = split("SELECT ((((1)))); SELECT ((1))", &o).collect();
        assert_eq!(st.len(), 2);
        assert_eq!(st[0].unanalysable, Some(Unanalysable::TooDeep));
        assert_eq!(st[1].unanalysable, None);
    }

    #[test]
    fn operator_chains_are_bounded_and_commas_reset_them() {
        let o = LexOptions {
            max_chain: 20,
            ..LexOptions::default()
        };
        let flag = |sql: &str| split(sql, &o).next().and_then(|s| s.unanalysable);
        // 9 operators + 10 operands + CHECK = 20 tokens: at the bound.
        let at = format!("CHECK ({}a)", "a+".repeat(9));
        assert_eq!(flag(&at), None, "{at}");
        for deep in [
            format!("CHECK ({}a)", "a+".repeat(10)),
            format!("CHECK ({}a)", "NOT ".repeat(25)),
            format!("SELECT a{}", ".b".repeat(12)),
            // Chains add up across open brackets: two levels of 12 tokens.
            format!("CHECK ({} ({}a))", "a+".repeat(6), "a+".repeat(6)),
        ] {
            assert_eq!(flag(&deep), Some(Unanalysable::TooDeep), "{deep}");
        }
        // Flat lists are not chains: 1,000 columns or values in one statement.
        let cols: Vec<String> = (0..1000).map(|k| format!("c{k} int NOT NULL")).collect();
        assert_eq!(flag(&format!("CREATE TABLE t ({})", cols.join(", "))), None);
        assert_eq!(
            flag(&format!("CHECK (a IN ({}1))", "1, ".repeat(1000))),
            None
        );
        // A closed group counts once for the level around it.
        let groups = format!("CHECK ({}(a))", "(a = 1) AND ".repeat(9));
        assert_eq!(flag(&groups), None, "{groups}");
        // And the bound is per statement.
        let two = format!("CHECK ({}a); SELECT 1", "a+".repeat(10));
        let st: Vec<_> = split(&two, &o).collect();
        assert_eq!(st[1].unanalysable, None);
    }

    #[test]
    fn too_long_is_flagged_per_statement() {
        let o = LexOptions {
            max_statement_len: 10,
            ..LexOptions::default()
        };
        let st: Vec<_> = split("SELECT 1; SELECT 1234567890", &o).collect();
        assert_eq!(st[0].unanalysable, None);
        assert_eq!(st[1].unanalysable, Some(Unanalysable::TooLong));
        assert_eq!(st[1].class, Dml);
    }

    #[test]
    fn psql_meta_commands_run_to_end_of_line() {
        let text =
            "\\set ON_ERROR_STOP on\nCREATE TABLE t (a int);\n  \\copy t from 'x;y'\nSELECT 1";
        let st: Vec<_> = split(text, &opts()).collect();
        let seen: Vec<_> = st
            .iter()
            .filter(|s| s.class != Empty)
            .map(|s| (s.body_text(text), s.class, s.unanalysable))
            .collect();
        assert_eq!(
            seen,
            vec![
                (
                    "\\set ON_ERROR_STOP on",
                    DdlOrUtility,
                    Some(Unanalysable::PsqlMetaCommand)
                ),
                ("CREATE TABLE t (a int)", DdlOrUtility, None),
                (
                    "\\copy t from 'x;y'",
                    DdlOrUtility,
                    Some(Unanalysable::PsqlMetaCommand)
                ),
                ("SELECT 1", Dml, None),
            ]
        );
        // `\gset` after a query ends that query first, as psql does.
        let text = "SELECT 1 AS x \\gset\nDROP TABLE t;";
        let seen: Vec<_> = split(text, &opts())
            .map(|s| (s.body_text(text), s.unanalysable))
            .collect();
        assert_eq!(
            seen,
            vec![
                ("SELECT 1 AS x", None),
                ("\\gset", Some(Unanalysable::PsqlMetaCommand)),
                ("DROP TABLE t", None),
            ]
        );
        // Backslashes inside literals are not commands.
        assert_eq!(one(r"SELECT E'\\x', '\'").unanalysable, None);
    }

    #[test]
    fn begin_atomic_bodies_hold_semicolons() {
        let text = "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT CASE WHEN true THEN 2 END; END; COMMIT";
        let st: Vec<_> = split(text, &opts()).collect();
        assert_eq!(st.len(), 2, "{st:?}");
        assert_eq!(st[0].class, DdlOrUtility);
        assert_eq!(st[1].transaction, Some(TxKind::Commit));
        assert_eq!(
            bodies("CREATE OR REPLACE PROCEDURE p() BEGIN ATOMIC INSERT INTO t VALUES (1); END; SELECT 1").len(),
            2
        );
        // Not a routine: BEGIN is a transaction start.
        assert_eq!(bodies("CREATE TABLE t (a int); BEGIN; SELECT 1").len(), 3);
        // A body without END is unterminated.
        assert_eq!(
            one("CREATE FUNCTION f() RETURNS int BEGIN ATOMIC SELECT 1;").unanalysable,
            Some(Unanalysable::Unterminated)
        );
    }

    #[test]
    fn dml_classes() {
        for q in [
            "SELECT 1",
            "select * from t",
            "  /* c */ -- d\n (SELECT 1) UNION (SELECT 2)",
            "((VALUES (1)))",
            "WITH x AS (SELECT 1) SELECT * FROM x",
            "WITH x AS (INSERT INTO t VALUES (1) RETURNING *) SELECT * FROM x",
            "WITH s AS (SELECT 1) MERGE INTO t USING s ON true WHEN MATCHED THEN DO NOTHING",
            "INSERT INTO t VALUES (1)",
            "UPDATE t SET a = 1",
            "DELETE FROM t",
            "MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE",
            "TABLE t",
            "VALUES (1)",
            "SHOW lock_timeout",
            "FETCH 10 FROM c",
            "MOVE NEXT IN c",
            "CLOSE c",
            "DECLARE c CURSOR FOR SELECT 1",
            "COPY t FROM stdin",
            "EXECUTE p(1)",
            "DEALLOCATE p",
            "LISTEN ch",
            "NOTIFY ch, 'x'",
            "UNLISTEN *",
            "EXPLAIN SELECT 1",
            "EXPLAIN ANALYZE VERBOSE UPDATE t SET a = 1",
            "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) SELECT 1",
            "PREPARE p (int, text) AS SELECT $1",
            "prepare p as insert into t values ($1)",
            "SELECT \"into\" FROM t",
            "EXPLAIN ANALYZE (SELECT 1)",
            "EXPLAIN (ANALYZE) (SELECT 1) UNION SELECT 2",
            "EXPLAIN ANALYZE EXECUTE p(1)",
            "SELECT 1 FOR UPDATE SKIP LOCKED",
        ] {
            assert_eq!(class(q), Dml, "{q}");
        }
    }

    #[test]
    fn ddl_hiding_in_query_shapes() {
        for q in [
            "SELECT * INTO newtable FROM t",
            "WITH x AS (SELECT 1) SELECT * INTO t2 FROM x",
            "EXPLAIN ANALYZE CREATE TABLE t AS SELECT 1",
            "EXPLAIN (ANALYZE) SELECT 1 INTO t",
            "PREPARE p AS SELECT 1 INTO t",
            "CREATE TABLE t AS SELECT 1",
            "CREATE MATERIALIZED VIEW v AS SELECT 1",
            "LOCK TABLE t IN ACCESS EXCLUSIVE MODE",
            "CHECKPOINT",
            "CALL p()",
            "DO $$ BEGIN END $$",
            "ANALYZE t",
            "VACUUM (FULL) t",
            "SECURITY LABEL ON TABLE t IS 'x'",
            "IMPORT FOREIGN SCHEMA s FROM SERVER x INTO y",
            "(CREATE TABLE t (a int))",
            "(INSERT INTO t VALUES (1))",
            "'not a keyword'",
            "EXPLAIN",
            "PREPARE p",
            "frobnicate t",
        ] {
            assert_eq!(class(q), DdlOrUtility, "{q}");
        }
    }

    #[test]
    fn transaction_kinds() {
        for (q, k) in [
            ("BEGIN", TxKind::Begin),
            ("begin isolation level serializable", TxKind::Begin),
            ("START TRANSACTION READ ONLY", TxKind::Begin),
            ("COMMIT", TxKind::Commit),
            ("END WORK", TxKind::Commit),
            ("COMMIT AND CHAIN", TxKind::Commit),
            ("ROLLBACK", TxKind::Rollback),
            ("ABORT", TxKind::Rollback),
            ("SAVEPOINT s", TxKind::Savepoint),
            ("RELEASE SAVEPOINT s", TxKind::Release),
            ("ROLLBACK TO SAVEPOINT s", TxKind::RollbackToSavepoint),
            ("ROLLBACK WORK TO s", TxKind::RollbackToSavepoint),
            ("PREPARE TRANSACTION 'x'", TxKind::PrepareTransaction),
            ("COMMIT PREPARED 'x'", TxKind::CommitPrepared),
            ("ROLLBACK PREPARED 'x'", TxKind::RollbackPrepared),
        ] {
            let st = one(q);
            assert_eq!((st.class, st.transaction), (Transaction, Some(k)), "{q}");
        }
        assert_eq!(class("START"), DdlOrUtility);
        assert_eq!(one("(COMMIT)").transaction, None);
    }

    fn set_of(q: &str) -> (SetKind, &str, &str) {
        let st = one(q);
        assert_eq!(st.class, Set, "{q}");
        let info = st.set.unwrap_or_else(|| panic!("no set info for {q}"));
        (info.kind, info.name(q), info.value(q))
    }

    #[test]
    fn set_statements_locate_name_and_value() {
        use SetKind as K;
        assert_eq!(
            set_of("SET lock_timeout = '2s'"),
            (K::Session, "lock_timeout", "'2s'")
        );
        assert_eq!(
            set_of("set local statement_timeout to 0 /* c */"),
            (K::Local, "statement_timeout", "0")
        );
        assert_eq!(
            set_of("SET SESSION search_path TO a, \"B\""),
            (K::Session, "search_path", "a, \"B\"")
        );
        assert_eq!(
            set_of("SET \"my.opt\" = 1"),
            (K::Session, "\"my.opt\"", "1")
        );
        assert_eq!(set_of("SET myext.opt = 1"), (K::Session, "myext.opt", "1"));
        assert_eq!(
            set_of("SET TIME ZONE 'UTC'"),
            (K::Session, "TIME ZONE", "'UTC'")
        );
        assert_eq!(
            set_of("SET ROLE app_owner"),
            (K::Session, "ROLE", "app_owner")
        );
        assert_eq!(
            set_of("SET SESSION AUTHORIZATION bob"),
            (K::Session, "SESSION AUTHORIZATION", "bob")
        );
        assert_eq!(
            set_of("SET lock_timeout TO DEFAULT"),
            (K::Session, "lock_timeout", "DEFAULT")
        );
        assert_eq!(
            set_of("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE"),
            (
                K::Transaction,
                "",
                "TRANSACTION ISOLATION LEVEL SERIALIZABLE"
            )
        );
        assert_eq!(
            set_of("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY"),
            (
                K::SessionCharacteristics,
                "CHARACTERISTICS",
                "AS TRANSACTION READ ONLY"
            )
        );
        assert_eq!(
            set_of("SET CONSTRAINTS ALL DEFERRED"),
            (K::Constraints, "", "ALL DEFERRED")
        );
        assert_eq!(set_of("RESET lock_timeout"), (K::Reset, "lock_timeout", ""));
        assert_eq!(set_of("RESET ALL"), (K::ResetAll, "", ""));
        assert_eq!(set_of("DISCARD ALL"), (K::Discard, "ALL", ""));
        let q = "SET \"Lock_Timeout\" = '1s'";
        let st = one(q);
        assert!(st
            .set
            .as_ref()
            .is_some_and(|s| s.name_is(q, "lock_timeout")));
    }

    #[test]
    fn leading_keywords_are_exposed() {
        assert_eq!(
            one("/* x */ CREATE INDEX CONCURRENTLY i ON t (a)").leading,
            [Keyword::Create, Keyword::Index, Keyword::Concurrently]
        );
        assert_eq!(
            one("COMMIT").leading,
            [Keyword::Commit, Keyword::None, Keyword::None]
        );
        assert_eq!(
            one("((SELECT 1))").leading,
            [Keyword::Select, Keyword::Other, Keyword::Other]
        );
    }

    #[test]
    fn multibyte_text_keeps_char_boundaries() {
        let text = "SELECT 'é;'; SELECT \"ü\"; SELECT ñ; -- ☃\n";
        for st in split(text, &opts()) {
            assert!(text.is_char_boundary(st.span.start) && text.is_char_boundary(st.span.end));
            assert!(text.is_char_boundary(st.body.start) && text.is_char_boundary(st.body.end));
        }
        assert_eq!(bodies(text).len(), 3);
    }

    #[test]
    fn psql_scripts_skip_copy_data() {
        let text = "COPY public.users (id, name) FROM stdin;\n1\tO'Brien; DROP\n2\tx\n\\.\nDROP TABLE t;\n";
        let st: Vec<_> = split(text, &opts()).psql_script().collect();
        let seen: Vec<_> = st.iter().map(|s| (s.body_text(text), s.class)).collect();
        assert_eq!(
            seen,
            vec![
                ("COPY public.users (id, name) FROM stdin", Dml),
                ("DROP TABLE t", DdlOrUtility),
                ("", Empty),
            ]
        );
        assert!(st[0].copy_from_stdin);
        // Without psql mode the apostrophe opens a string (the wire never carries the data).
        assert_eq!(
            split(text, &opts()).nth(1).map(|s| s.unanalysable),
            Some(Some(Unanalysable::Unterminated))
        );
        // COPY TO STDOUT and a FROM inside a COPY query are not data sources.
        assert!(!one("COPY (SELECT 1 FROM stdin) TO STDOUT").copy_from_stdin);
        assert!(one("copy t from STDIN with (format csv)").copy_from_stdin);
        // PROGRAM runs a command on the server: utility, not DML.
        for sql in [
            "COPY t FROM PROGRAM 'curl x'",
            "copy t (a, b) to program 'gzip > /tmp/t.gz' with (format csv)",
            "COPY (SELECT 1) TO PROGRAM 'cat'",
        ] {
            assert_eq!(one(sql).class, StatementClass::DdlOrUtility, "{sql}");
        }
        for sql in [
            "COPY t FROM STDIN",
            "COPY t TO STDOUT",
            "COPY program FROM STDIN",
            "COPY (SELECT program FROM x) TO STDOUT",
        ] {
            assert_eq!(one(sql).class, StatementClass::Dml, "{sql}");
        }
        // Data without its terminator runs to the end.
        assert_eq!(
            split("COPY t FROM stdin;\n1\n", &opts())
                .psql_script()
                .count(),
            1
        );
        // CRLF line ends.
        let crlf = "COPY t FROM stdin;\r\n1\r\n\\.\r\nSELECT 1";
        let st: Vec<_> = split(crlf, &opts()).psql_script().collect();
        assert_eq!(st.last().map(|s| s.body_text(crlf)), Some("SELECT 1"));
    }

    #[test]
    fn standard_conforming_strings_can_change_between_statements() {
        let text = r"SELECT '\'; SELECT 2; SELECT '\'; SELECT 3';";
        let mut sp = split(text, &opts());
        let first = sp.next().map(|s| s.body_text(text).to_owned());
        assert_eq!(first.as_deref(), Some(r"SELECT '\'"));
        sp.set_standard_conforming_strings(false);
        let rest: Vec<_> = sp.map(|s| s.body_text(text).to_owned()).collect();
        assert_eq!(rest, vec!["SELECT 2", r"SELECT '\'; SELECT 3'"]);
    }
}
