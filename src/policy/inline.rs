//! Inline escapes: `-- pgwarden:allow <rule>[, <rule>] reason="..."`, `-- squawk-ignore <rule>`
//! and `-- squawk-ignore-file [<rule>, ...]`.
//!
//! A comment applies to the statement it sits in or directly above (between the previous
//! statement's end and this statement's end); `squawk-ignore-file` applies to the whole text.
//! The reason is mandatory for pgwarden's own form (it goes to the audit log); squawk's forms
//! are honoured as squawk users wrote them: ids separated by commas, a trailing `-- why` is the
//! reason, no ids at all means every rule (except cannot-analyse and opaque-ddl, which only an
//! explicit id silences: a blanket ignore must not hide a statement pgwarden could not read).
//! Ids go through [`Rule::expand`], so squawk's aliases work here as in the config.
use std::ops::Range;

use crate::rules::{Finding, Rule};
use crate::sql::Analysis;

/// One escape comment.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Directive {
    /// (id as written, the rules it names; `None`: not a rule).
    rules: Vec<(String, Option<&'static [Rule]>)>,
    reason: Option<String>,
    squawk: bool,
    /// `squawk-ignore-file`: applies to every statement of the text.
    file: bool,
    /// A squawk form without ids: every rule (but the two above).
    all: bool,
    /// Something matched an `all` directive.
    all_used: bool,
    span: Range<usize>,
    statement: Range<usize>,
    used: Vec<bool>,
}

/// Findings with the allow reason that accepted each (if any), plus findings about the
/// escapes themselves (allow-without-reason, unused-allow).
#[derive(Debug, Clone, Default)]
pub struct Escapes {
    pub findings: Vec<(Finding, Option<String>)>,
}

/// Can `text` hold an escape comment at all? A directive always contains one of these words,
/// so `false` is certain; `true` may be a word in a string or an unrelated comment.
pub fn may_hold_escapes(text: &str) -> bool {
    text.contains("pgwarden:allow") || text.contains("squawk-ignore")
}

/// Matches escape comments to findings.
pub fn apply(text: &str, analysis: &Analysis, findings: Vec<Finding>) -> Escapes {
    // Most texts hold no escape at all: skip reading every comment line of a long file.
    if !may_hold_escapes(text) {
        return Escapes {
            findings: findings.into_iter().map(|f| (f, None)).collect(),
        };
    }
    let mut directives = Vec::new();
    let mut prev_end = 0;
    for s in &analysis.statements {
        let region = prev_end.min(s.span.start)..s.span.end;
        if let Some(part) = text.get(region.clone()) {
            directives.extend(parse_region(part, region.start, &s.span));
        }
        prev_end = s.span.end;
    }
    let mut out = Escapes::default();
    for finding in findings {
        let mut allowed = None;
        for d in directives.iter_mut() {
            let here = d.file
                || (finding.statement.start >= d.statement.start
                    && finding.statement.start <= d.statement.end);
            if !here {
                continue;
            }
            if d.all && !matches!(finding.rule, Rule::CannotAnalyse | Rule::OpaqueDdl) {
                d.all_used = true;
                allowed = Some(d.reason.clone().unwrap_or_else(|| d.label().to_string()));
            }
            for (i, (_, rule)) in d.rules.iter().enumerate() {
                if !rule.is_some_and(|rs| rs.contains(&finding.rule)) {
                    continue;
                }
                match (&d.reason, d.squawk) {
                    (Some(reason), false) => {
                        d.used[i] = true;
                        allowed = Some(reason.clone());
                    }
                    (_, true) => {
                        d.used[i] = true;
                        allowed = Some(d.reason.clone().unwrap_or_else(|| d.label().to_string()));
                    }
                    // Without a reason the allow is not honoured (reported below).
                    (None, false) => d.used[i] = true,
                }
            }
        }
        out.findings.push((finding, allowed));
    }
    for d in &directives {
        if d.reason.is_none() && !d.squawk {
            out.findings.push((
                meta(
                    Rule::AllowWithoutReason,
                    d,
                    "this pgwarden:allow has no reason=\"...\": it is ignored".to_string(),
                    "Add reason=\"why this is safe here\" (it goes to the audit log).".to_string(),
                ),
                None,
            ));
        }
        if d.all && !d.all_used {
            out.findings.push((
                meta(
                    Rule::UnusedAllow,
                    d,
                    format!("this {} (every rule) matched no finding", d.label()),
                    "Remove the stale ignore.".to_string(),
                ),
                None,
            ));
        }
        for (i, (id, rule)) in d.rules.iter().enumerate() {
            if d.used[i] {
                continue;
            }
            let message = match rule {
                Some(_) => format!("`{id}` is allowed here but did not fire on this statement"),
                None => {
                    let hint = Rule::closest(id)
                        .map(|s| format!(" (did you mean `{s}`?)"))
                        .unwrap_or_default();
                    format!("`{id}` is not a rule{hint}: this allow matches nothing")
                }
            };
            out.findings.push((
                meta(
                    Rule::UnusedAllow,
                    d,
                    message,
                    "Remove the stale allow, or fix the rule id.".to_string(),
                ),
                None,
            ));
        }
    }
    out
}

impl Directive {
    /// The directive's name, the reason recorded when a squawk form gives none.
    fn label(&self) -> &'static str {
        if self.file {
            "squawk-ignore-file"
        } else {
            "squawk-ignore"
        }
    }
}

fn meta(rule: Rule, d: &Directive, message: String, help: String) -> Finding {
    Finding {
        rule,
        message,
        help,
        span: d.span.clone(),
        statement: d.statement.clone(),
        lock: None,
        rewrite: None,
        small_table: false,
    }
}

/// Finds escape comments in `part` (which starts at byte `base` of the text).
fn parse_region(part: &str, base: usize, statement: &Range<usize>) -> Vec<Directive> {
    let mut out = Vec::new();
    let mut offset = 0;
    for line in part.split_inclusive('\n') {
        if let Some(pos) = line.find("--") {
            let body = line[pos + 2..].trim();
            let start = base + offset + pos;
            let span = start..base + offset + line.trim_end().len();
            if let Some(rest) = body.strip_prefix("pgwarden:allow") {
                out.push(directive(rest, false, span, statement));
            } else if let Some(rest) = body.strip_prefix("squawk-ignore-file") {
                let mut d = directive(rest, true, span, statement);
                d.file = true;
                out.push(d);
            } else if let Some(rest) = body.strip_prefix("squawk-ignore") {
                // Another word that starts the same (`squawk-ignore-next`) is not squawk's.
                if rest.is_empty() || rest.starts_with(char::is_whitespace) {
                    out.push(directive(rest, true, span, statement));
                }
            }
        }
        offset += line.len();
    }
    out
}

fn directive(rest: &str, squawk: bool, span: Range<usize>, statement: &Range<usize>) -> Directive {
    // squawk: `-- squawk-ignore a, b -- why` — the trailing comment is the reason.
    let (rest, trailing) = match rest.find("--") {
        Some(i) if squawk => (&rest[..i], Some(rest[i + 2..].trim().to_string())),
        _ => (rest, None),
    };
    let trailing = trailing.filter(|r| !r.is_empty());
    let (ids, reason) = match rest.find("reason=") {
        Some(i) => {
            let r = rest[i + "reason=".len()..].trim();
            let r = r
                .strip_prefix('"')
                .and_then(|r| r.find('"').map(|end| r[..end].to_string()))
                .filter(|r| !r.trim().is_empty());
            (&rest[..i], r)
        }
        None => (rest, None),
    };
    let reason = reason.or(trailing);
    let rules: Vec<(String, Option<&'static [Rule]>)> = ids
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
        .map(|id| (id.to_string(), Rule::expand(id).ok()))
        .collect();
    Directive {
        used: vec![false; rules.len()],
        all: squawk && rules.is_empty(),
        all_used: false,
        file: false,
        rules,
        reason,
        squawk,
        span,
        statement: statement.clone(),
    }
}

#[cfg(test)]
mod tests {
    use crate::policy::{Outcome, Policy, Verdict};
    use crate::rules::Rule;
    use crate::sql::AnalysisContext;

    fn decide(sql: &str) -> crate::policy::Decision {
        Policy::default().check_text(sql, &AnalysisContext::default(), false)
    }

    #[test]
    fn allow_with_reason_accepts() {
        let d = decide(
            "-- pgwarden:allow ban-drop-column reason=\"unused since v42\"\n\
             ALTER TABLE orders DROP COLUMN legacy;",
        );
        let j = d
            .findings
            .iter()
            .find(|j| j.finding.rule == Rule::BanDropColumn)
            .unwrap();
        assert_eq!(
            j.outcome,
            Outcome::Allowed {
                reason: "unused since v42".into()
            }
        );
    }

    #[test]
    fn allow_without_reason_is_ignored_and_reported() {
        let d = decide("-- pgwarden:allow ban-drop-column\nALTER TABLE orders DROP COLUMN legacy;");
        assert_eq!(d.verdict(), Verdict::Reject);
        assert!(d
            .findings
            .iter()
            .any(|j| j.finding.rule == Rule::AllowWithoutReason));
    }

    #[test]
    fn squawk_ignore_is_honoured() {
        let d = decide("-- squawk-ignore ban-drop-column\nALTER TABLE orders DROP COLUMN legacy;");
        assert!(d
            .findings
            .iter()
            .any(|j| j.finding.rule == Rule::BanDropColumn
                && matches!(j.outcome, Outcome::Allowed { .. })));
    }

    #[test]
    fn unused_and_misspelled_allows_are_reported() {
        let d = decide(
            "-- pgwarden:allow ban-drop-column, ban-drop-colum reason=\"x\"\n\
             ALTER TABLE orders ADD COLUMN note text;",
        );
        let unused: Vec<&str> = d
            .findings
            .iter()
            .filter(|j| j.finding.rule == Rule::UnusedAllow)
            .map(|j| j.finding.message.as_str())
            .collect();
        assert_eq!(unused.len(), 2, "{unused:?}");
        assert!(unused[1].contains("did you mean `ban-drop-column`"));
    }

    #[test]
    fn allow_applies_only_to_its_statement() {
        let d = decide(
            "-- pgwarden:allow ban-drop-column reason=\"x\"\n\
             ALTER TABLE a DROP COLUMN x;\n\
             ALTER TABLE b DROP COLUMN y;",
        );
        let outcomes: Vec<&Outcome> = d
            .findings
            .iter()
            .filter(|j| j.finding.rule == Rule::BanDropColumn)
            .map(|j| &j.outcome)
            .collect();
        assert_eq!(outcomes.len(), 2);
        assert!(matches!(outcomes[0], Outcome::Allowed { .. }));
        assert_eq!(outcomes[1], &Outcome::Reject);
    }

    fn outcome_of(d: &crate::policy::Decision, rule: Rule) -> Vec<&Outcome> {
        d.findings
            .iter()
            .filter(|j| j.finding.rule == rule)
            .map(|j| &j.outcome)
            .collect()
    }

    #[test]
    fn squawk_ignore_file_covers_every_statement() {
        let d = decide(
            "-- squawk-ignore-file ban-drop-column\n\
             ALTER TABLE a DROP COLUMN x;\n\
             ALTER TABLE b DROP COLUMN y;",
        );
        let o = outcome_of(&d, Rule::BanDropColumn);
        assert_eq!(o.len(), 2);
        assert!(
            o.iter().all(|o| matches!(o, Outcome::Allowed { .. })),
            "{o:?}"
        );
        assert!(outcome_of(&d, Rule::UnusedAllow).is_empty());
    }

    #[test]
    fn squawk_ignore_file_without_ids_covers_every_rule_but_cannot_analyse() {
        let d = decide(
            "-- squawk-ignore-file\n\
             ALTER TABLE a DROP COLUMN x;\n\
             ALTER TABLE b RENAME TO c;\n\
             ALTER TABLE ((( ;",
        );
        assert!(outcome_of(&d, Rule::BanDropColumn)
            .iter()
            .all(|o| matches!(o, Outcome::Allowed { .. })));
        assert!(outcome_of(&d, Rule::RenamingTable)
            .iter()
            .all(|o| matches!(o, Outcome::Allowed { .. })));
        assert_eq!(outcome_of(&d, Rule::CannotAnalyse), vec![&Outcome::Reject]);
    }

    #[test]
    fn squawk_aliases_suppress_the_rules_they_name() {
        let d = decide(
            "-- squawk-ignore require-timeout-settings, prefer-timestamp-tz\n\
             ALTER TABLE a ADD COLUMN at timestamp;",
        );
        for rule in [
            Rule::RequireLockTimeout,
            Rule::RequireStatementTimeout,
            Rule::PreferTimestamptz,
        ] {
            let o = outcome_of(&d, rule);
            assert!(!o.is_empty(), "{rule} did not fire");
            assert!(
                o.iter().all(|o| matches!(o, Outcome::Allowed { .. })),
                "{rule}: {o:?}"
            );
        }
        assert!(outcome_of(&d, Rule::UnusedAllow).is_empty());
    }

    #[test]
    fn trailing_comment_is_the_reason_not_rule_ids() {
        let d = decide(
            "-- squawk-ignore ban-drop-column -- legacy is unused since v42\n\
             ALTER TABLE a DROP COLUMN legacy;",
        );
        assert_eq!(
            outcome_of(&d, Rule::BanDropColumn),
            vec![&Outcome::Allowed {
                reason: "legacy is unused since v42".into()
            }]
        );
        assert!(outcome_of(&d, Rule::UnusedAllow).is_empty());
    }

    #[test]
    fn pgwarden_allow_accepts_aliases_too() {
        let d = decide(
            "-- pgwarden:allow prefer-timestamp-tz reason=\"legacy column\"\n\
             ALTER TABLE a ADD COLUMN at timestamp;",
        );
        assert_eq!(
            outcome_of(&d, Rule::PreferTimestamptz),
            vec![&Outcome::Allowed {
                reason: "legacy column".into()
            }]
        );
    }

    /// `pgwarden check` skips the rules its policy switches off only when the text holds no
    /// escape comment: the report is the same as with every rule run, and an ignore naming an
    /// off rule is still "used" when that rule would fire.
    #[test]
    fn off_rules_are_skipped_only_where_no_escape_can_see_them() {
        let ctx = AnalysisContext {
            file_mode: true,
            ..AnalysisContext::default()
        };
        let p = Policy::default();
        let every_rule = |sql: &str| {
            let a = crate::sql::analyze(sql, &ctx);
            let e = crate::rules::evaluate(sql, &a, &ctx, &p.thresholds);
            p.decide(sql, &a, &e, &ctx, false).findings
        };
        for sql in [
            "ALTER TABLE orders ADD COLUMN b int;\nCREATE TABLE t (id int);\nDROP TABLE x;",
            "-- squawk-ignore require-table-schema\nALTER TABLE orders DROP COLUMN a;",
            "-- pgwarden:allow ban-add-column reason=\"off anyway\"\nALTER TABLE orders ADD COLUMN c int;",
        ] {
            assert_eq!(p.report_text(sql, &ctx).findings, every_rule(sql), "{sql}");
        }
        // require-table-schema is off but would fire on `orders`: the ignore is used.
        let d = p.report_text(
            "-- squawk-ignore require-table-schema\nALTER TABLE orders DROP COLUMN a;",
            &ctx,
        );
        assert!(
            !d.findings
                .iter()
                .any(|j| j.finding.rule == Rule::UnusedAllow),
            "{:?}",
            d.findings
        );
    }
}
