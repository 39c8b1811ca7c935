//! The offline front door: `pgwarden check` on SQL files, `pgwarden rules`, `pgwarden explain`.
//!
//! This module is pure: it checks texts and renders reports. Reading files, stdin and flags is
//! `cli`'s job.
use std::collections::HashMap;
use std::fmt::Write as _;

pub mod cli;
pub mod discover;
pub mod reports;
pub mod stats;

use crate::policy::{Judged, Outcome, Policy};
use crate::rules::{Action, Rule};
use crate::sql::{AnalysisContext, TableStats};

/// Output formats of `pgwarden check`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
    Github,
    /// SARIF 2.1.0 (GitHub code scanning).
    Sarif,
    /// GitLab Code Quality report (a JSON array of issues).
    Gitlab,
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "text" => Ok(Format::Text),
            "json" => Ok(Format::Json),
            "github" => Ok(Format::Github),
            "sarif" => Ok(Format::Sarif),
            "gitlab" => Ok(Format::Gitlab),
            other => Err(format!(
                "unknown format `{other}` (expected text, json, github, sarif or gitlab)"
            )),
        }
    }
}

/// Options of a check run that are not per file.
#[derive(Debug, Clone, Default)]
pub struct CheckOptions {
    pub pg_version: Option<u32>,
    pub stats: HashMap<String, TableStats>,
    /// The migration tool wraps each file in its own transaction (squawk's
    /// assume-in-transaction): statements start inside a transaction block.
    pub assume_in_transaction: bool,
}

/// One reported problem, located in its file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Diagnostic {
    pub rule: String,
    /// `reject` or `warn`.
    pub severity: String,
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub end_line: usize,
    pub end_column: usize,
    pub message: String,
    pub help: String,
    /// The lock the statement takes, when it matters.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lock: Option<String>,
    /// The statement rewritten into its safe form, when pgwarden can produce it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
    #[serde(skip)]
    excerpt: Vec<(usize, String)>,
}

/// Checks one file's text. The script's own BEGIN/COMMIT decide the transaction state of each
/// statement; nothing is rewritten (files are reports, not traffic).
pub fn check_text(file: &str, text: &str, policy: &Policy, opts: &CheckOptions) -> Vec<Diagnostic> {
    let mut ctx = AnalysisContext {
        pg_version: opts.pg_version,
        file_mode: true,
        ..AnalysisContext::default()
    };
    if opts.assume_in_transaction {
        ctx.tx = crate::sql::TxState::InTransaction;
    }
    ctx.catalog.tables = opts.stats.clone();
    let decision = policy.report_text(text, &ctx);
    // One index per file: locating each finding by rescanning the text from the start made
    // `check` quadratic in the file size (a 10,000-statement dump took seconds).
    let lines = LineIndex::new(text);
    let mut out: Vec<Diagnostic> = decision
        .findings
        .iter()
        .filter_map(|j| diagnostic(file, text, &lines, j))
        .collect();
    out.sort_by_key(|d| (d.line, d.column));
    out
}

fn diagnostic(file: &str, text: &str, lines: &LineIndex, j: &Judged) -> Option<Diagnostic> {
    let severity = match j.outcome {
        Outcome::Reject => "reject",
        Outcome::Warn => "warn",
        // check never rewrites; allowed findings are not problems.
        Outcome::Rewrite | Outcome::Allowed { .. } => return None,
    };
    let f = &j.finding;
    let (line, column) = lines.line_col(text, f.span.start);
    let (end_line, end_column) = lines.line_col(text, f.span.end.max(f.span.start));
    let fix = f.rewrite.as_ref().and_then(|e| {
        let stmt = text.get(f.statement.clone())?;
        let local = crate::sql::TextEdit {
            range: e.range.start.checked_sub(f.statement.start)?
                ..e.range.end.checked_sub(f.statement.start)?,
            replacement: e.replacement.clone(),
        };
        local.apply(stmt).map(|s| s.trim().to_string())
    });
    Some(Diagnostic {
        rule: f.rule.id().to_string(),
        severity: severity.to_string(),
        file: file.to_string(),
        line,
        column,
        end_line,
        end_column,
        message: f.message.clone(),
        help: f.help.clone(),
        lock: f.lock.map(|l| l.sql_name().to_string()),
        fix,
        excerpt: lines.excerpt(text, f.span.start, f.span.end),
    })
}

/// Byte offsets of the line starts of one text, built once so that locating a finding costs a
/// binary search plus the characters of its own line.
#[derive(Debug, Clone)]
pub struct LineIndex {
    /// `starts[k]` is the byte offset where line k+1 begins; `starts[0] == 0`.
    starts: Vec<usize>,
}

impl LineIndex {
    pub fn new(text: &str) -> Self {
        let mut starts = Vec::with_capacity(text.len() / 32 + 1);
        starts.push(0);
        starts.extend(newline_offsets(text).map(|i| i + 1));
        LineIndex { starts }
    }

    /// 1-based line and column (in characters) of a byte offset of `text` (the indexed text).
    pub fn line_col(&self, text: &str, offset: usize) -> (usize, usize) {
        let offset = floor_boundary(text, offset.min(text.len()));
        // The last line start at or before `offset`; an offset just after a `\n` begins the
        // next line, as counting newlines before it would say.
        let line = self.starts.partition_point(|&s| s <= offset);
        let line_start = self.starts[line - 1];
        (line, text[line_start..offset].chars().count() + 1)
    }

    /// The source lines of a span (at most 3) with their numbers, as `str::lines` yields them
    /// (without `\n` or `\r\n`; no empty line after a final newline).
    fn excerpt(&self, text: &str, start: usize, end: usize) -> Vec<(usize, String)> {
        let (first, _) = self.line_col(text, start);
        let (last, _) = self.line_col(text, end);
        (first..=last)
            .take(3)
            .map_while(|n| {
                let s = *self.starts.get(n - 1)?;
                if s >= text.len() {
                    return None;
                }
                let l = match self.starts.get(n) {
                    Some(&next) => {
                        let l = &text[s..next - 1];
                        l.strip_suffix('\r').unwrap_or(l)
                    }
                    None => &text[s..],
                };
                Some((n, l.to_string()))
            })
            .collect()
    }
}

fn newline_offsets(text: &str) -> impl Iterator<Item = usize> + '_ {
    // A one-byte pattern: the standard library searches it a word at a time.
    text.match_indices('\n').map(|(i, _)| i)
}

/// 1-based line and column (in characters) of a byte offset. Builds an index: for one lookup
/// only; [`LineIndex`] for many.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    LineIndex::new(text).line_col(text, offset)
}

fn floor_boundary(text: &str, mut i: usize) -> usize {
    while i > 0 && !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

impl Diagnostic {
    /// `error` for reject, `warning` for warn: how rustc, ruff and GitHub name the two.
    pub(crate) fn level(&self) -> &'static str {
        if self.severity == "reject" {
            "error"
        } else {
            "warning"
        }
    }
}

/// rustc/ruff-style text report.
pub fn render_text(diags: &[Diagnostic], files: usize) -> String {
    let mut out = String::new();
    for d in diags {
        let level = d.level();
        let _ = writeln!(out, "{level}[{}]: {}", d.rule, d.message);
        let width = d
            .excerpt
            .last()
            .map(|(n, _)| n.to_string().len())
            .unwrap_or(1);
        let pad = " ".repeat(width);
        let _ = writeln!(out, "{pad}--> {}:{}:{}", d.file, d.line, d.column);
        let _ = writeln!(out, "{pad} |");
        for (n, line) in &d.excerpt {
            let _ = writeln!(out, "{n:>width$} | {line}");
            if *n == d.line {
                let lead: String = line
                    .chars()
                    .take(d.column - 1)
                    .map(|c| if c == '\t' { '\t' } else { ' ' })
                    .collect();
                let len = if d.end_line == d.line {
                    d.end_column.saturating_sub(d.column).max(1)
                } else {
                    line.chars().count().saturating_sub(d.column - 1).max(1)
                };
                let _ = writeln!(out, "{pad} | {lead}{}", "^".repeat(len));
            }
        }
        let _ = writeln!(out, "{pad} |");
        if let Some(lock) = &d.lock {
            let _ = writeln!(out, "{pad} = lock: {lock}");
        }
        let _ = writeln!(out, "{pad} = help: {}", d.help);
        if let Some(fix) = &d.fix {
            let fix = fix.replace('\n', &format!("\n{pad}        "));
            let _ = writeln!(out, "{pad} = fix: {fix}");
        }
        out.push('\n');
    }
    let rejects = diags.iter().filter(|d| d.severity == "reject").count();
    let warns = diags.len() - rejects;
    let _ = writeln!(
        out,
        "{} file{} checked: {rejects} rejected, {warns} warning{}",
        files,
        if files == 1 { "" } else { "s" },
        if warns == 1 { "" } else { "s" }
    );
    out
}

/// JSON array report.
pub fn render_json(diags: &[Diagnostic]) -> String {
    serde_json::to_string_pretty(diags).unwrap_or_else(|_| "[]".to_string()) + "\n"
}

/// GitHub Actions workflow-command annotations.
pub fn render_github(diags: &[Diagnostic]) -> String {
    let mut out = String::new();
    for d in diags {
        let level = d.level();
        let _ = writeln!(
            out,
            "::{level} file={},line={},col={},endLine={},endColumn={},title={}::{}",
            gh_property(&d.file),
            d.line,
            d.column,
            d.end_line,
            d.end_column,
            gh_property(&format!("pgwarden {}", d.rule)),
            gh_data(&format!("{}\nhelp: {}", d.message, d.help))
        );
    }
    out
}

fn gh_data(s: &str) -> String {
    s.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

fn gh_property(s: &str) -> String {
    gh_data(s).replace(':', "%3A").replace(',', "%2C")
}

/// `pgwarden rules`: every rule with its default action and summary.
pub fn render_rules(markdown: bool) -> String {
    let mut out = String::new();
    if markdown {
        out.push_str("| rule | default | what it flags |\n|---|---|---|\n");
        for r in Rule::ALL {
            let _ = writeln!(
                out,
                "| `{}` | {} | {} |",
                r.id(),
                r.default_action().as_str(),
                r.summary().replace('|', "\\|")
            );
        }
    } else {
        let width = Rule::ALL.iter().map(|r| r.id().len()).max().unwrap_or(0);
        for r in Rule::ALL {
            let _ = writeln!(
                out,
                "{:width$}  {:7}  {}",
                r.id(),
                r.default_action().as_str(),
                r.summary()
            );
        }
    }
    out
}

/// `pgwarden explain <rule>`.
pub fn render_explain(rule: Rule) -> String {
    let sizing = match (rule.default_action(), rule.sizing()) {
        (Action::Off, _) => "",
        (_, crate::rules::Sizing::BySize) => {
            " (on large tables; warn on small ones; silent on tables created in the same transaction)"
        }
        _ => "",
    };
    let mut out = format!(
        "# {}\n\n{}.\n\nDefault action: {}{sizing}\n\n{}",
        rule.id(),
        rule.summary(),
        rule.default_action().as_str(),
        rule.doc()
    );
    if crate::rules::unused::relaxes(rule) {
        out.push('\n');
        out.push_str(crate::rules::unused::EXPLAIN);
    }
    if let Some(text) = crate::policy::setting::explain(rule) {
        out.push('\n');
        out.push_str(&text);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column() {
        let t = "a\nbc\n  déf";
        assert_eq!(line_col(t, 0), (1, 1));
        assert_eq!(line_col(t, 3), (2, 2));
        assert_eq!(line_col(t, t.find('f').unwrap()), (3, 5));
    }

    /// The index answers exactly what rescanning the text from the start answered.
    #[test]
    fn line_index_matches_a_rescan() {
        fn rescan(text: &str, offset: usize) -> (usize, usize) {
            let offset = floor_boundary(text, offset.min(text.len()));
            let before = &text[..offset];
            let line = before.matches('\n').count() + 1;
            let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
            (line, text[line_start..offset].chars().count() + 1)
        }
        fn excerpt_rescan(text: &str, start: usize, end: usize) -> Vec<(usize, String)> {
            let (first, _) = rescan(text, start);
            let (last, _) = rescan(text, end);
            text.lines()
                .enumerate()
                .skip(first - 1)
                .take((last - first + 1).min(3))
                .map(|(i, l)| (i + 1, l.to_string()))
                .collect()
        }
        for text in [
            "",
            "\n",
            "a",
            "a\n",
            "a\r\nb\r\n",
            "a\r",
            "x\n\n\ny\r\nz",
            "é\nàb\n\t c\r\n\nlast",
        ] {
            let idx = LineIndex::new(text);
            for start in 0..=text.len() + 1 {
                assert_eq!(
                    idx.line_col(text, start),
                    rescan(text, start),
                    "{text:?} {start}"
                );
                for end in start..=text.len() + 1 {
                    assert_eq!(
                        idx.excerpt(text, start, end),
                        excerpt_rescan(text, start, end),
                        "{text:?} {start}..{end}"
                    );
                }
            }
        }
    }

    #[test]
    fn text_report_points_at_the_statement() {
        let sql = "SELECT 1;\nCREATE INDEX i ON orders (a);\n";
        let d = check_text("m.sql", sql, &Policy::default(), &CheckOptions::default());
        let r = render_text(&d, 1);
        assert!(
            r.contains("error[require-concurrent-index-creation]"),
            "{r}"
        );
        assert!(r.contains("--> m.sql:2:1"), "{r}");
        assert!(r.contains("2 | CREATE INDEX i ON orders (a);"), "{r}");
        assert!(r.contains("^^^^^^"), "{r}");
        assert!(
            r.contains("= fix: CREATE INDEX CONCURRENTLY i ON orders (a)"),
            "{r}"
        );
    }

    /// A pg_dump file: the COPY data does not hide the CREATE INDEX after it.
    #[test]
    fn pg_dump_copy_data_is_skipped() {
        let sql = "COPY public.notes (id, body) FROM stdin;\n1\tit's\n\\.\n\
                   CREATE INDEX ix ON public.notes (body);\n";
        let d = check_text(
            "dump.sql",
            sql,
            &Policy::default(),
            &CheckOptions::default(),
        );
        let rules: Vec<(&str, usize)> = d.iter().map(|d| (d.rule.as_str(), d.line)).collect();
        assert!(
            rules.contains(&("require-concurrent-index-creation", 4)),
            "{rules:?}"
        );
    }

    #[test]
    fn github_escapes() {
        assert_eq!(gh_property("a:b,c"), "a%3Ab%2Cc");
        assert_eq!(gh_data("50%\nx"), "50%25%0Ax");
    }
}
