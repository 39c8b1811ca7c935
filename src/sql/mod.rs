//! Analysis of statement text: prefilter (lexer), parser adapter, statement facts, lock table.
//!
//! [`analyze`] is the one entry point both front doors use: prefilter split → skip DML → parse
//! DDL/utility (bounded) → facts. It is pure: no I/O, no global state.
use std::ops::Range;

pub mod context;
pub mod encoding;
pub mod facts;
pub mod identity;
pub mod lexer;
pub mod locks;
pub mod parse;
mod prefilter;
pub mod server_lex;
pub(crate) mod tokens;
pub mod txcontrol;

pub use context::{AnalysisContext, ScriptState, TableStats, TxState};
pub use facts::{LockMode, ObjectName, StatementFacts, StatementKind, TextEdit};
use lexer::{StatementClass, Unanalysable};
pub use parse::ParseError;

/// What became of one statement of the text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Only whitespace and comments.
    Empty,
    /// Plain DML: skipped by design (DESIGN.md decision 4).
    Dml,
    /// Parsed: the facts.
    Facts(Box<StatementFacts>),
    /// The prefilter refused to hand it to the parser (too long, too deep, unterminated,
    /// psql meta-command).
    Unanalysable(Unanalysable),
    /// The parser could not read it.
    ParseError(ParseError),
}

/// One statement of the analysed text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnalysedStatement {
    /// Byte range in the text (without the terminating `;`).
    pub span: Range<usize>,
    pub outcome: Outcome,
}

impl AnalysedStatement {
    pub fn facts(&self) -> Option<&StatementFacts> {
        match &self.outcome {
            Outcome::Facts(f) => Some(f),
            _ => None,
        }
    }
}

/// The result of analysing one query string (or one file).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Analysis {
    pub statements: Vec<AnalysedStatement>,
}

/// What the live catalog should be asked before the rules run on an analysis (the proxy does
/// one round trip per DDL statement; `pgwarden check` gets sizes from `--stats`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LookupNeeds {
    /// Relations whose size matters (every relation a statement locks).
    pub tables: Vec<ObjectName>,
    /// (table, column) whose current type decides ALTER COLUMN TYPE, whose validated
    /// `CHECK (col IS NOT NULL)` decides SET NOT NULL, or whose NOT NULL decides what a DROP
    /// DEFAULT breaks.
    pub columns: Vec<(ObjectName, String)>,
    /// Functions in ADD COLUMN defaults whose volatility pgwarden could not tell.
    pub functions: Vec<String>,
    /// Materialized views refreshed (unique index present?).
    pub matviews: Vec<ObjectName>,
}

impl Analysis {
    /// The catalog facts the rules could use for this text.
    pub fn lookup_needs(&self) -> LookupNeeds {
        let mut n = LookupNeeds::default();
        fn visit(f: &StatementFacts, n: &mut LookupNeeds) {
            for (t, _) in &f.locks {
                if !n.tables.contains(t) {
                    n.tables.push(t.clone());
                }
            }
            if f.kind == StatementKind::RefreshMaterializedView {
                n.matviews.extend(f.targets.iter().cloned());
            }
            for a in &f.actions {
                if let (Some(t), Some(c)) = (&f.table, &a.column) {
                    if matches!(
                        a.kind,
                        facts::ActionKind::AlterColumnType
                            | facts::ActionKind::SetNotNull
                            | facts::ActionKind::DropDefault
                    ) {
                        n.columns.push((t.clone(), c.clone()));
                    }
                }
                if let Some(d) = a.column_def.as_ref().and_then(|c| c.default.as_ref()) {
                    if d.volatility == facts::Volatility::Unknown {
                        n.functions.extend(d.functions.iter().cloned());
                    }
                }
            }
            for inner in &f.body {
                visit(inner, n);
            }
        }
        for s in &self.statements {
            if let Some(f) = s.facts() {
                visit(f, &mut n);
            }
        }
        n.functions.sort();
        n.functions.dedup();
        n
    }
}

/// Analyses `text` statement by statement.
pub fn analyze(text: &str, ctx: &AnalysisContext) -> Analysis {
    // Pass 1, sequential and cheap: the prefilter splits and classifies; what needs the parser
    // is set aside. Pass 2 parses those statements; each parse is a pure function of its text,
    // so a file's statements can be parsed on several threads (see [`PARALLEL_MIN_BYTES`]).
    let mut slots: Vec<Slot> = Vec::new();
    let mut splitter = lexer::split(text, &ctx.lex);
    if ctx.file_mode {
        // A file is a psql script (pg_dump output included): COPY ... FROM STDIN data up to
        // `\.` is data, not SQL, and psql sends each statement on its own, so a
        // `SET standard_conforming_strings` changes how the statements after it lex.
        splitter = splitter.psql_script();
    }
    while let Some(raw) = splitter.next() {
        if ctx.file_mode {
            if let Some(on) = standard_conforming_strings(text, &raw, ctx) {
                splitter.set_standard_conforming_strings(on);
            }
        }
        let span = raw.span.clone();
        let unterminated_copy = ctx.file_mode && raw.copy_from_stdin;
        match classify(text, &raw, ctx) {
            Classified::Done(outcome) => {
                slots.push(Slot::Done(AnalysedStatement { span, outcome }))
            }
            Classified::Parse => slots.push(Slot::Parse(span)),
        }
        if unterminated_copy {
            if let Some(data) = unterminated_copy_data(text, raw.span.end) {
                // psql would read the rest of the file as COPY data: nothing after it runs as
                // SQL. Say so loudly instead of silently checking nothing.
                slots.push(Slot::Done(AnalysedStatement {
                    span: data,
                    outcome: Outcome::Unanalysable(Unanalysable::Unterminated),
                }));
            }
        }
    }
    let jobs: Vec<Range<usize>> = slots
        .iter()
        .filter_map(|s| match s {
            Slot::Parse(span) => Some(span.clone()),
            Slot::Done(_) => None,
        })
        .collect();
    let parsed_bytes: usize = jobs.iter().map(|r| r.len()).sum();
    let workers = if ctx.file_mode && parsed_bytes >= PARALLEL_MIN_BYTES {
        std::thread::available_parallelism().map_or(1, |n| n.get().min(MAX_PARSE_THREADS))
    } else {
        1
    };
    let mut parsed = parse_all(text, &jobs, workers).into_iter();
    let mut statements = Vec::with_capacity(slots.len());
    for slot in slots {
        match slot {
            Slot::Done(st) => statements.push(st),
            Slot::Parse(_) => statements.extend(parsed.next().unwrap_or_default()),
        }
    }
    Analysis { statements }
}

/// A statement after the prefilter: done, or waiting for the parser.
enum Slot {
    Done(AnalysedStatement),
    Parse(Range<usize>),
}

/// Below this many bytes of SQL to parse, one thread does it all: a thread costs more to
/// start than a migration file's few statements take to parse. A proxy Query is never
/// parsed on other threads (the proxy's concurrency is its sessions).
pub const PARALLEL_MIN_BYTES: usize = 64 * 1024;
/// Parser threads at most, whatever the machine has.
const MAX_PARSE_THREADS: usize = 8;

/// Parses each range of `text`, in order, on up to `workers` threads (contiguous shares of
/// about equal bytes, so the result order is the input order).
fn parse_all(text: &str, jobs: &[Range<usize>], workers: usize) -> Vec<Vec<AnalysedStatement>> {
    if workers <= 1 || jobs.len() < 2 {
        return jobs
            .iter()
            .map(|span| parse_one(text, span.clone()))
            .collect();
    }
    let total: usize = jobs.iter().map(|r| r.len()).sum();
    let share = total.div_ceil(workers);
    let mut chunks: Vec<&[Range<usize>]> = Vec::with_capacity(workers);
    let (mut start, mut acc) = (0, 0);
    for (k, r) in jobs.iter().enumerate() {
        acc += r.len();
        if acc >= share && chunks.len() + 1 < workers {
            chunks.push(&jobs[start..=k]);
            start = k + 1;
            acc = 0;
        }
    }
    chunks.push(&jobs[start..]);
    let parse_chunk = |chunk: &[Range<usize>]| -> Vec<Vec<AnalysedStatement>> {
        chunk
            .iter()
            .map(|span| parse_one(text, span.clone()))
            .collect()
    };
    std::thread::scope(|scope| {
        // A thread the system refuses (process limit) leaves its share to this thread.
        let handles: Vec<_> = chunks
            .iter()
            .map(|chunk| {
                std::thread::Builder::new()
                    .name("pgwarden-parse".into())
                    .spawn_scoped(scope, move || parse_chunk(chunk))
                    .map_err(|_| *chunk)
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| match h {
                Ok(h) => match h.join() {
                    Ok(v) => v,
                    // A parser panic is a bug; re-raise it on the caller's thread as it would
                    // have been raised without threads.
                    Err(panic) => std::panic::resume_unwind(panic),
                },
                Err(chunk) => parse_chunk(chunk),
            })
            .collect()
    })
}

/// The analysed statements of one range the prefilter sent to the parser (usually one; more
/// when the parser finds several in it).
fn parse_one(text: &str, span: Range<usize>) -> Vec<AnalysedStatement> {
    match parse::parse_statement(text, span.clone()) {
        Ok(facts) if facts.is_empty() => vec![AnalysedStatement {
            span,
            outcome: Outcome::Empty,
        }],
        Ok(facts) => facts
            .into_iter()
            .map(|f| AnalysedStatement {
                span: f.span.clone(),
                outcome: Outcome::Facts(Box::new(f)),
            })
            .collect(),
        Err(ParseError::PsqlMetaCommand { .. }) => vec![AnalysedStatement {
            span,
            outcome: Outcome::Unanalysable(Unanalysable::PsqlMetaCommand),
        }],
        Err(e) => vec![AnalysedStatement {
            span,
            outcome: Outcome::ParseError(e),
        }],
    }
}

/// In a psql script, the COPY FROM STDIN data after the statement ending at `stmt_end` (before
/// its `;`) when no line `\.` ends it and it holds more than whitespace: its range, up to the
/// end of the text. The data starts on the line after the `;`, as in the lexer.
fn unterminated_copy_data(text: &str, stmt_end: usize) -> Option<Range<usize>> {
    let rest = text.get(stmt_end..)?;
    let semi = stmt_end + rest.find(';')?;
    let start = semi + text.get(semi..)?.find('\n')? + 1;
    let data = text.get(start..)?;
    let terminated = data
        .split('\n')
        .any(|l| l.strip_suffix('\r').unwrap_or(l) == "\\.");
    (!terminated && !data.trim().is_empty()).then_some(start..text.len())
}

enum Classified {
    Done(Outcome),
    Parse,
}

/// The single place that reads the prefilter's verdict. Transaction and SET statements are
/// parsed too: they are short, and the rules need their facts (BEGIN/COMMIT, timeouts).
fn classify(text: &str, raw: &lexer::RawStatement, ctx: &AnalysisContext) -> Classified {
    match raw.unanalysable {
        // The length and depth bounds only guard the parser, which DML never reaches: the
        // class of a 2 MB bulk INSERT is still exact.
        Some(Unanalysable::TooLong | Unanalysable::TooDeep) if raw.class == StatementClass::Dml => {
            return Classified::Done(Outcome::Dml)
        }
        Some(u) => return Classified::Done(Outcome::Unanalysable(u)),
        None => {}
    }
    match raw.class {
        StatementClass::Empty => return Classified::Done(Outcome::Empty),
        StatementClass::Dml => return Classified::Done(Outcome::Dml),
        StatementClass::Transaction | StatementClass::Set | StatementClass::DdlOrUtility => {}
    }
    let Some(stmt) = text.get(raw.span.clone()) else {
        return Classified::Done(Outcome::Unanalysable(Unanalysable::Unterminated));
    };
    if stmt.trim().is_empty() {
        return Classified::Done(Outcome::Empty);
    }
    // Defence in depth: the parser must never see unbounded input, whatever the prefilter
    // decided. Counting brackets without lexing can only over-estimate the depth (a `(` in a
    // string counts), which errs on the safe side.
    if stmt.len() > ctx.lex.max_statement_len {
        return Classified::Done(Outcome::Unanalysable(Unanalysable::TooLong));
    }
    if bracket_depth(stmt) > ctx.lex.max_depth {
        return Classified::Done(Outcome::Unanalysable(Unanalysable::TooDeep));
    }
    Classified::Parse
}

/// The new value of `standard_conforming_strings` when `raw` sets it in a psql script
/// (`SET [SESSION|LOCAL] standard_conforming_strings {TO|=} on|off`, `RESET`, `RESET ALL`).
/// pg_dump writes `SET standard_conforming_strings = on;` at the top of every dump.
fn standard_conforming_strings(
    text: &str,
    raw: &lexer::RawStatement,
    ctx: &AnalysisContext,
) -> Option<bool> {
    use lexer::SetKind;
    let set = raw.set.as_ref()?;
    let default = ctx.lex.standard_conforming_strings;
    match set.kind {
        SetKind::ResetAll => Some(default),
        SetKind::Reset if set.name_is(text, "standard_conforming_strings") => Some(default),
        SetKind::Session | SetKind::Local if set.name_is(text, "standard_conforming_strings") => {
            let v = set
                .value(text)
                .trim()
                .trim_matches('\'')
                .to_ascii_lowercase();
            match v.as_str() {
                "on" | "true" | "yes" | "1" => Some(true),
                "off" | "false" | "no" | "0" => Some(false),
                "default" => Some(default),
                _ => None,
            }
        }
        _ => None,
    }
}

fn bracket_depth(s: &str) -> usize {
    let (mut depth, mut max) = (0usize, 0usize);
    for b in s.bytes() {
        match b {
            b'(' | b'[' => {
                depth += 1;
                max = max.max(depth);
            }
            b')' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

/// Proves a rewrite: the edited text parses cleanly into exactly one statement.
pub fn reparse(text: &str) -> Option<StatementFacts> {
    let mut v = parse::parse_statement(text, 0..text.len()).ok()?;
    if v.len() == 1 {
        v.pop()
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (case id, query string) of every case of the migration corpus.
    pub(crate) fn corpus_cases() -> Vec<(String, String)> {
        let corpus = include_str!("../../tests/fixtures/migration-statements.sql");
        let mut cases: Vec<(String, String)> = Vec::new();
        for line in corpus.lines() {
            if let Some(id) = line.strip_prefix("-- case: ") {
                cases.push((id.to_string(), String::new()));
            } else if let Some((_, body)) = cases.last_mut() {
                body.push_str(line);
                body.push('\n');
            }
        }
        cases
    }

    /// Parsing a file's statements on several threads gives what one thread gives, in the
    /// same order, and `analyze` takes that path for a file over the threshold.
    #[test]
    fn parallel_parse_is_the_sequential_parse() {
        // Without the COPY ... FROM STDIN cases: in a psql script their data runs to `\.`.
        let one: String = corpus_cases()
            .into_iter()
            .filter(|(_, body)| !body.to_ascii_lowercase().contains("from stdin"))
            .map(|(_, body)| format!("{};\n", body.trim_end().trim_end_matches(';')))
            .collect();
        let text = one.repeat(PARALLEL_MIN_BYTES / one.len() + 2);
        assert!(text.len() > PARALLEL_MIN_BYTES);
        let ctx = AnalysisContext {
            file_mode: true,
            ..AnalysisContext::default()
        };
        let jobs: Vec<Range<usize>> = lexer::split(&text, &ctx.lex)
            .psql_script()
            .map(|r| r.span)
            .collect();
        let sequential = parse_all(&text, &jobs, 1);
        for workers in [2, 3, 7] {
            assert!(
                parse_all(&text, &jobs, workers) == sequential,
                "{workers} workers"
            );
        }
        let analysed = analyze(&text, &ctx);
        let facts = analysed
            .statements
            .iter()
            .filter(|s| s.facts().is_some())
            .count();
        assert!(facts > 400, "{facts}");
    }

    /// The parser adapter alone (no prefilter split) turns every corpus case into facts.
    #[test]
    fn corpus_parses_into_facts() {
        let mut failures = Vec::new();
        for (id, body) in corpus_cases() {
            match parse::parse_statement(&body, 0..body.len()) {
                Ok(f) if f.len() == parse::reference_statement_count(&body) => {}
                Ok(f) => failures.push(format!("{id}: {} facts", f.len())),
                Err(e) => failures.push(format!("{id}: {e}")),
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    /// Every case of the migration corpus (282 query strings from Alembic, Django, Rails,
    /// Flyway, pg_dump and hand-written DDL) is analysed without error, and the pipeline finds
    /// as many statements as the parser finds in the whole case.
    #[test]
    fn corpus_is_analysed_without_error() {
        let cases = corpus_cases();
        assert_eq!(cases.len(), 282);
        let ctx = AnalysisContext::default();
        let mut failures = Vec::new();
        for (id, body) in &cases {
            let a = analyze(body, &ctx);
            let analysed: Vec<&AnalysedStatement> = a
                .statements
                .iter()
                .filter(|s| !matches!(s.outcome, Outcome::Empty))
                .collect();
            for s in &analysed {
                match &s.outcome {
                    Outcome::ParseError(e) => failures.push(format!("{id}: {e}")),
                    Outcome::Unanalysable(u) => failures.push(format!("{id}: {u:?}")),
                    _ => {}
                }
            }
            let expected = parse::reference_statement_count(body);
            if analysed.len() != expected {
                failures.push(format!(
                    "{id}: {} statements analysed, parser finds {expected}",
                    analysed.len()
                ));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(300))]
        /// No text crashes the analysis, the rules or the policy: client bytes cannot take
        /// the process down.
        #[test]
        fn arbitrary_sqlish_text_never_panics(
            words in proptest::collection::vec(proptest::sample::select(vec![
                "ALTER", "TABLE", "t", "ADD", "COLUMN", "CONSTRAINT", "CHECK", "(", ")", ",",
                ";", "'", "\"", "$$", "$x$", "--", "/*", "*/", "\\copy", "DO", "BEGIN", "END",
                "CREATE", "INDEX", "CONCURRENTLY", "ON", "DROP", "NOT", "VALID", "NULL",
                "DEFAULT", "now()", "REFERENCES", "USING", "TYPE", "int", "SET", "é", "\n",
                "EXECUTE", "COMMIT", "VALUE", "RENAME", "TO", "PARTITION", "DETACH",
            ]), 0..40)
        ) {
            let text = words.join(" ");
            let ctx = AnalysisContext { file_mode: true, ..AnalysisContext::default() };
            let d = crate::policy::Policy::default().check_text(&text, &ctx, true);
            let _ = d.verdict();
        }
    }

    #[test]
    fn deep_nesting_never_reaches_the_parser() {
        let sql = format!("SELECT {}1{}", "(".repeat(100_000), ")".repeat(100_000));
        // The placeholder lexer classifies everything as DDL: the depth cap must still hold.
        let a = analyze(&sql, &AnalysisContext::default());
        assert_eq!(a.statements.len(), 1);
        assert_eq!(a.statements[0].outcome, Outcome::Dml);
    }

    #[test]
    fn dml_beyond_the_parser_bounds_is_still_dml() {
        let ctx = AnalysisContext::default();
        let rows = vec!["(1, 'x; y')"; 200_000].join(", ");
        let insert = format!("INSERT INTO t (a, b) VALUES {rows}");
        assert!(insert.len() > ctx.lex.max_statement_len);
        let deep = format!("SELECT {}1{}", "(".repeat(100_000), ")".repeat(100_000));
        for sql in [insert, deep] {
            let a = analyze(&sql, &ctx);
            assert_eq!(a.statements.len(), 1);
            assert_eq!(a.statements[0].outcome, Outcome::Dml);
        }
        // DDL beyond the bounds still never reaches the parser.
        let ddl = format!(
            "CREATE VIEW v AS SELECT {}1{}",
            "(".repeat(100_000),
            ")".repeat(100_000)
        );
        assert_eq!(
            analyze(&ddl, &ctx).statements[0].outcome,
            Outcome::Unanalysable(Unanalysable::TooDeep)
        );
    }

    /// pg_dump output: the COPY data (an apostrophe, a `;`) is not SQL in a file, and the
    /// statements after `\.` are analysed. The proxy (not file mode) never sees such data in a
    /// query string.
    #[test]
    fn files_are_read_as_psql_scripts() {
        let sql = "SET standard_conforming_strings = on;\n\
                   COPY public.notes (id, body) FROM stdin;\n\
                   1\tit's; done\n\
                   2\t\\N\n\
                   \\.\n\n\
                   CREATE INDEX ix_notes_body ON public.notes (body);\n";
        let file = AnalysisContext {
            file_mode: true,
            ..AnalysisContext::default()
        };
        let a = analyze(sql, &file);
        let kinds: Vec<String> = a
            .statements
            .iter()
            .filter(|s| s.outcome != Outcome::Empty)
            .map(|s| match &s.outcome {
                Outcome::Facts(f) => format!("{:?}", f.kind),
                other => format!("{other:?}"),
            })
            .collect();
        assert_eq!(kinds, vec!["Set", "Dml", "CreateIndex"]);
        assert!(
            a.statements
                .iter()
                .all(|s| !matches!(s.outcome, Outcome::Unanalysable(_) | Outcome::ParseError(_))),
            "{kinds:?}"
        );
        // As one query string the apostrophe opens a string that swallows the CREATE INDEX.
        let wire = analyze(sql, &AnalysisContext::default());
        assert!(!wire.statements.iter().any(|s| s
            .facts()
            .is_some_and(|f| f.kind == StatementKind::CreateIndex)));
    }

    /// COPY data without its `\.` line swallows the rest of a psql script: reported, not
    /// silently skipped.
    #[test]
    fn unterminated_copy_data_is_unanalysable() {
        let sql = "COPY t (a) FROM stdin;\n1\nCREATE INDEX i ON t (a);\n";
        let file = AnalysisContext {
            file_mode: true,
            ..AnalysisContext::default()
        };
        let a = analyze(sql, &file);
        let last = a
            .statements
            .last()
            .map(|s| (&sql[s.span.clone()], &s.outcome));
        assert_eq!(
            last,
            Some((
                "1\nCREATE INDEX i ON t (a);\n",
                &Outcome::Unanalysable(Unanalysable::Unterminated)
            )),
            "{:?}",
            a.statements
        );
        // Terminated or empty data is fine.
        for ok in [
            "COPY t (a) FROM stdin;\n1\n\\.\n",
            "COPY t (a) FROM stdin;\n",
        ] {
            let a = analyze(ok, &file);
            assert!(
                a.statements
                    .iter()
                    .all(|s| matches!(s.outcome, Outcome::Dml | Outcome::Empty)
                        || s.facts().is_some()),
                "{ok:?}: {:?}",
                a.statements
            );
        }
    }

    /// psql sends each statement on its own: after `SET standard_conforming_strings = off` a
    /// backslash escapes the quote in the statements that follow.
    #[test]
    fn psql_scripts_follow_standard_conforming_strings() {
        let sql = "SET standard_conforming_strings = off;\n\
                   INSERT INTO t VALUES ('a\\'; b');\n\
                   CREATE INDEX i ON t (a);\n\
                   RESET standard_conforming_strings;\n\
                   INSERT INTO t VALUES ('c\\');\n\
                   CREATE INDEX j ON t (a);\n";
        let file = AnalysisContext {
            file_mode: true,
            ..AnalysisContext::default()
        };
        let a = analyze(sql, &file);
        let indexes: Vec<&str> = a
            .statements
            .iter()
            .filter_map(|s| s.facts())
            .filter(|f| f.kind == StatementKind::CreateIndex)
            .map(|f| &sql[f.span.clone()])
            .collect();
        assert_eq!(
            indexes,
            vec!["CREATE INDEX i ON t (a)", "CREATE INDEX j ON t (a)"],
            "{:?}",
            a.statements
        );
    }

    #[test]
    fn huge_statement_is_refused() {
        let sql = format!("COMMENT ON TABLE t IS '{}'", "x".repeat(10 << 20));
        let a = analyze(&sql, &AnalysisContext::default());
        assert!(matches!(
            a.statements[0].outcome,
            Outcome::Unanalysable(Unanalysable::TooLong)
        ));
    }

    #[test]
    fn lookup_needs_list_what_the_rules_can_use() {
        let sql = "ALTER TABLE s.orders ALTER COLUMN a TYPE text, ADD COLUMN b int DEFAULT f(), \
                   ADD CONSTRAINT fk FOREIGN KEY (c) REFERENCES cust (id)";
        let n = analyze(sql, &AnalysisContext::default()).lookup_needs();
        assert_eq!(
            n.tables,
            vec![
                ObjectName::new(Some("s"), "orders"),
                ObjectName::new(None, "cust")
            ]
        );
        assert_eq!(
            n.columns,
            vec![(ObjectName::new(Some("s"), "orders"), "a".to_string())]
        );
        assert_eq!(n.functions, vec!["f".to_string()]);
    }

    #[test]
    fn spans_point_into_the_original_text() {
        let sql = "SET lock_timeout = '1s'; CREATE INDEX i ON t (a);";
        let a = analyze(sql, &AnalysisContext::default());
        let facts: Vec<&StatementFacts> = a.statements.iter().filter_map(|s| s.facts()).collect();
        assert_eq!(facts.len(), 2);
        assert_eq!(&sql[facts[1].span.clone()], "CREATE INDEX i ON t (a)");
        assert_eq!(&sql[facts[1].head_span.clone()], "CREATE");
    }
}
