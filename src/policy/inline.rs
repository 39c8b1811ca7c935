//! Inline escapes: `-- pgwarden:allow <rule>[, <rule>] reason="..."` and `-- squawk-ignore <rule>`.
//!
//! A comment applies to the statement it sits in or directly above (between the previous
//! statement's end and this statement's end). The reason is mandatory for pgwarden's own form
//! (it goes to the audit log); squawk's form is honoured as squawk users wrote it.
use std::ops::Range;

use crate::rules::{Finding, Rule};
use crate::sql::Analysis;

/// One escape comment.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Directive {
    /// (id as written, parsed rule).
    rules: Vec<(String, Option<Rule>)>,
    reason: Option<String>,
    squawk: bool,
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

/// Matches escape comments to findings.
pub fn apply(text: &str, analysis: &Analysis, findings: Vec<Finding>) -> Escapes {
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
            let here = finding.statement.start >= d.statement.start
                && finding.statement.start <= d.statement.end;
            if !here {
                continue;
            }
            for (i, (_, rule)) in d.rules.iter().enumerate() {
                if *rule != Some(finding.rule) {
                    continue;
                }
                match (&d.reason, d.squawk) {
                    (Some(reason), false) => {
                        d.used[i] = true;
                        allowed = Some(reason.clone());
                    }
                    (_, true) => {
                        d.used[i] = true;
                        allowed = Some(
                            d.reason
                                .clone()
                                .unwrap_or_else(|| "squawk-ignore".to_string()),
                        );
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
            } else if let Some(rest) = body.strip_prefix("squawk-ignore") {
                // `squawk-ignore-file` is a different (file-wide) directive squawk has.
                if !rest.starts_with('-') {
                    out.push(directive(rest, true, span, statement));
                }
            }
        }
        offset += line.len();
    }
    out
}

fn directive(rest: &str, squawk: bool, span: Range<usize>, statement: &Range<usize>) -> Directive {
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
    let rules: Vec<(String, Option<Rule>)> = ids
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
        .map(|id| (id.to_string(), id.parse::<Rule>().ok()))
        .collect();
    Directive {
        used: vec![false; rules.len()],
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
}
