//! The escape hatch an Alembic user can reach (issue 11 deliver 3): a custom setting the
//! server accepts as a no-op, `SET LOCAL pgwarden.allow = '<rule>[, <rule>]: <reason>'`
//! (`op.execute(...)` in the revision), several groups separated by `;`.
//!
//! The contract:
//! - **What the server holds, not what the text says.** pgwarden reads the value with
//!   `current_setting('pgwarden.allow', true)` in its catalog lookup, on the client's own
//!   connection, right before the statement runs; it never parses the `SET`. So the scope is
//!   exactly PostgreSQL's: `SET LOCAL` lasts until the transaction (or the savepoint it was set
//!   under) ends — one revision with `transaction_per_migration=True`, otherwise the rest of the
//!   run — a plain `SET` lasts for the session, `RESET` or `= ''` ends it, and a `SET LOCAL`
//!   outside a transaction block does nothing. Because the value is read before the Query,
//!   statements of the same Query that come after anything that may change it (a `SET`/`RESET`
//!   /`set_config`/`DISCARD`, a transaction or savepoint end) are judged without it.
//! - **A reason is mandatory.** A group without one is ignored (allow-without-reason); an id
//!   that is not a rule is reported (unused-allow). The reason goes to the audit log with the
//!   rule it allowed (`allowed` in the statement record) and into pgwarden's log.
//! - **What it cannot bypass:** `cannot-analyse` (a text pgwarden cannot read as the server
//!   will: it cannot know what it would be allowing), a text read lossily in a non-UTF-8
//!   encoding, a decision taken without the server's answer (a failed transaction, an unsynced
//!   pipeline: nothing is read there), and the session's identity facts (which tables are new,
//!   their sizes): it turns a finding into "allowed", it changes no fact.
use std::ops::Range;

use super::{Decision, Judged, Outcome, Policy};
use crate::rules::{Finding, Rule};
use crate::sql::{Analysis, Outcome as StatementOutcome, StatementKind};

/// The setting's name, as `SET` and `current_setting` spell it.
pub const NAME: &str = "pgwarden.allow";

/// One `ids: reason` group of the value.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Group {
    rules: Vec<Rule>,
    /// Ids that name no rule, as written.
    unknown: Vec<String>,
    reason: Option<String>,
}

/// The parsed value of `pgwarden.allow`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SettingAllow {
    groups: Vec<Group>,
}

impl SettingAllow {
    /// Parses the server's value; `None` when it allows nothing (unset, empty).
    pub fn parse(value: &str) -> Option<SettingAllow> {
        let mut groups = Vec::new();
        for part in value.split(';') {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            let (ids, reason) = match part.split_once(':') {
                Some((ids, reason)) => (ids, Some(reason.trim()).filter(|r| !r.is_empty())),
                None => (part, None),
            };
            let mut g = Group {
                rules: Vec::new(),
                unknown: Vec::new(),
                reason: reason.map(str::to_string),
            };
            for id in ids.split(',').map(str::trim).filter(|i| !i.is_empty()) {
                match Rule::expand(id) {
                    Ok(rules) => g.rules.extend_from_slice(rules),
                    Err(_) => g.unknown.push(id.to_string()),
                }
            }
            groups.push(g);
        }
        (!groups.is_empty()).then_some(SettingAllow { groups })
    }

    /// The reason a group gives for `rule`; `Some(None)`: named without a reason.
    fn reason_for(&self, rule: Rule) -> Option<Option<&str>> {
        let mut named = None;
        for g in &self.groups {
            if g.rules.contains(&rule) {
                match &g.reason {
                    Some(r) => return Some(Some(r)),
                    None => named = Some(None),
                }
            }
        }
        named
    }
}

/// Byte offset of the first statement of the text that may change the setting: the value read
/// before the Query does not hold from there on. Textual and generous on purpose (a false
/// "yes" only withdraws the allow for the rest of the text).
pub fn cutoff(text: &str, analysis: &Analysis) -> usize {
    const WORDS: [&[u8]; 4] = [b"pgwarden.allow", b"set_config", b"reset", b"discard"];
    for st in &analysis.statements {
        // A transaction or savepoint end restores what SET LOCAL changed; a SET or RESET of
        // this setting (or RESET ALL) changes it: the words below catch those.
        let control = match &st.outcome {
            StatementOutcome::Facts(f) => matches!(
                f.kind,
                StatementKind::Commit | StatementKind::Rollback | StatementKind::Savepoint
            ),
            _ => false,
        };
        let own = text.get(st.span.clone()).unwrap_or_default().as_bytes();
        let mentions = WORDS.iter().any(|w| {
            own.len() >= w.len() && own.windows(w.len()).any(|win| win.eq_ignore_ascii_case(w))
        });
        if control || mentions {
            return st.span.start;
        }
    }
    text.len() + 1
}

/// Applies the server's `pgwarden.allow` value to a decision: refusals and warnings of the
/// rules it names (with a reason) become `allowed`, for the statements before `cutoff`.
pub fn apply(policy: &Policy, decision: &mut Decision, allow: &SettingAllow, cutoff: usize) {
    let mut notes: Vec<Judged> = Vec::new();
    for j in &mut decision.findings {
        if !matches!(j.outcome, Outcome::Reject | Outcome::Warn)
            || j.finding.statement.start >= cutoff
            || matches!(
                j.finding.rule,
                Rule::CannotAnalyse | Rule::AllowWithoutReason | Rule::UnusedAllow
            )
        {
            continue;
        }
        match allow.reason_for(j.finding.rule) {
            Some(Some(reason)) => {
                j.outcome = Outcome::Allowed {
                    reason: format!("{NAME}: {reason}"),
                };
            }
            Some(None) => notes.push(note(
                Rule::AllowWithoutReason,
                &j.finding,
                format!(
                    "{NAME} names {} without a reason: it is ignored",
                    j.finding.rule
                ),
                format!(
                    "Give the reason after a colon: SET LOCAL {NAME} = '{}: why this is safe \
                     here' (it goes to the audit log).",
                    j.finding.rule
                ),
            )),
            None => {}
        }
    }
    if let Some(first) = decision.findings.first().map(|j| j.finding.clone()) {
        for id in allow.groups.iter().flat_map(|g| &g.unknown) {
            let hint = Rule::closest(id)
                .map(|s| format!(" (did you mean `{s}`?)"))
                .unwrap_or_default();
            notes.push(note(
                Rule::UnusedAllow,
                &first,
                format!("{NAME} names `{id}`, which is not a rule{hint}: it allows nothing"),
                "Fix the rule id (`pgwarden rules` lists them).".to_string(),
            ));
        }
    }
    for n in notes {
        if policy.action(n.finding.rule) != crate::rules::Action::Off
            && !decision.findings.iter().any(|j| j.finding == n.finding)
        {
            decision.findings.push(n);
        }
    }
}

fn note(rule: Rule, at: &Finding, message: String, help: String) -> Judged {
    Judged {
        finding: Finding {
            rule,
            message,
            help,
            span: at.span.clone(),
            statement: at.statement.clone(),
            lock: None,
            rewrite: None,
            small_table: false,
        },
        outcome: Outcome::Warn,
    }
}

/// What a refusal's HINT adds: how to accept this finding deliberately, Alembic's spelling
/// first. `None` for a rule the setting cannot allow.
pub fn hint(rule: Rule) -> Option<String> {
    if rule == Rule::CannotAnalyse {
        return None;
    }
    Some(format!(
        "If this is deliberate: op.execute(\"SET LOCAL {NAME} = '{rule}: <reason>'\") before it \
         in the revision (SQL: SET LOCAL {NAME} = '{rule}: <reason>'; the reason goes to the \
         audit log), or a -- pgwarden:allow {rule} reason=\"...\" comment on the statement."
    ))
}

/// The paragraph `pgwarden explain` adds about the escape hatch.
pub fn explain(rule: Rule) -> Option<String> {
    if matches!(
        rule,
        Rule::CannotAnalyse | Rule::AllowWithoutReason | Rule::UnusedAllow
    ) {
        return None;
    }
    Some(format!(
        "## Accepting it deliberately\nIn the proxy: `SET LOCAL {NAME} = '{rule}: <reason>'` \
         before the statement, in the same transaction (Alembic: \
         `op.execute(\"SET LOCAL {NAME} = '{rule}: <reason>'\")` in the revision). pgwarden \
         reads the value the server holds when the statement runs, so it lasts as long as \
         PostgreSQL keeps it (SET LOCAL: until the transaction ends); the reason is mandatory \
         and goes to the audit log. In a file: `-- pgwarden:allow {rule} reason=\"...\"`.\n"
    ))
}

/// Byte ranges of statements allowed by the setting, with the rule and reason (audit).
pub fn allowed(decision: &Decision) -> Vec<(String, Range<usize>, String)> {
    decision
        .findings
        .iter()
        .filter_map(|j| match &j.outcome {
            Outcome::Allowed { reason } => Some((
                j.finding.rule.id().to_string(),
                j.finding.statement.clone(),
                reason.clone(),
            )),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::{analyze, AnalysisContext};

    #[test]
    fn parse_groups_reasons_and_unknown_ids() {
        let a = SettingAllow::parse("ban-drop-column, renaming-table: downgrade of r7; x-y: z")
            .expect("parsed");
        assert_eq!(
            a.reason_for(Rule::BanDropColumn),
            Some(Some("downgrade of r7"))
        );
        assert_eq!(
            a.reason_for(Rule::RenamingTable),
            Some(Some("downgrade of r7"))
        );
        assert_eq!(a.reason_for(Rule::BanDropTable), None);
        assert_eq!(a.groups[1].unknown, vec!["x-y".to_string()]);
        let no_reason = SettingAllow::parse("ban-drop-table").expect("parsed");
        assert_eq!(no_reason.reason_for(Rule::BanDropTable), Some(None));
        let blank = SettingAllow::parse("ban-drop-table:   ").expect("parsed");
        assert_eq!(blank.reason_for(Rule::BanDropTable), Some(None));
        assert!(SettingAllow::parse("").is_none());
        assert!(SettingAllow::parse(" ; ").is_none());
    }

    #[test]
    fn cutoff_at_the_first_statement_that_may_change_it() {
        let ctx = AnalysisContext::default();
        for (sql, at) in [
            ("ALTER TABLE t DROP COLUMN a", None),
            (
                "ALTER TABLE t DROP COLUMN a; RESET pgwarden.allow",
                Some("RESET"),
            ),
            (
                "ALTER TABLE t DROP COLUMN a; COMMIT; DROP TABLE u",
                Some("COMMIT"),
            ),
            (
                "SELECT set_config('pgwarden.allow', '', true); DROP TABLE u",
                Some("SELECT"),
            ),
            ("ROLLBACK TO SAVEPOINT s; DROP TABLE u", Some("ROLLBACK")),
        ] {
            let a = analyze(sql, &ctx);
            let c = cutoff(sql, &a);
            match at {
                None => assert!(c > sql.len(), "{sql}"),
                Some(w) => assert_eq!(c, sql.find(w).unwrap(), "{sql}"),
            }
        }
    }

    #[test]
    fn apply_allows_named_rules_before_the_cutoff_only() {
        let p = Policy::default();
        let ctx = AnalysisContext {
            pg_version: Some(15),
            ..AnalysisContext::default()
        };
        let sql = "ALTER TABLE t DROP COLUMN a; ALTER TABLE u DROP COLUMN b";
        let mut d = p.check_text(sql, &ctx, false);
        assert_eq!(d.intended(), super::super::Verdict::Reject);
        let allow = SettingAllow::parse("ban-drop-column: r7 downgrade").expect("parsed");
        let second = sql.find("ALTER TABLE u").unwrap();
        apply(&p, &mut d, &allow, second);
        let drops: Vec<&Judged> = d
            .findings
            .iter()
            .filter(|j| j.finding.rule == Rule::BanDropColumn)
            .collect();
        assert_eq!(drops.len(), 2);
        assert_eq!(
            drops[0].outcome,
            Outcome::Allowed {
                reason: "pgwarden.allow: r7 downgrade".into()
            }
        );
        assert_eq!(drops[1].outcome, Outcome::Reject);
    }

    #[test]
    fn cannot_analyse_is_never_allowed_and_missing_reasons_are_reported() {
        let p = Policy::default();
        let ctx = AnalysisContext::default();
        let sql = "ALTER TABLE t DROP COLUMN a; \\gset";
        let mut d = p.check_text(sql, &ctx, false);
        let allow =
            SettingAllow::parse("cannot-analyse: trust me; ban-drop-column").expect("parsed");
        apply(&p, &mut d, &allow, usize::MAX);
        assert!(d
            .findings
            .iter()
            .any(|j| j.finding.rule == Rule::CannotAnalyse && j.outcome == Outcome::Reject));
        assert!(d
            .findings
            .iter()
            .any(|j| j.finding.rule == Rule::BanDropColumn && j.outcome == Outcome::Reject));
        assert!(d
            .findings
            .iter()
            .any(|j| j.finding.rule == Rule::AllowWithoutReason));
    }
}
