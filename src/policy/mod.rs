//! Policy: turns findings into decisions (allow, warn, rewrite, reject) per mode and profile.
//!
//! Decisions are values, never `Err`: a rejected statement is an ordinary outcome. The same
//! step serves `pgwarden check` (no rewrites: files are not changed) and the proxy (rewrites
//! when the statement runs alone and outside a transaction block).
use std::collections::HashMap;
use std::fmt;

pub mod inline;
pub mod setting;

use crate::config::policy::{Mode, PolicyConfig, ProfileConfig};
use crate::rules::{
    evaluate, evaluate_proving, evaluate_selected, Action, Evaluation, Finding, Rule,
    SizeThresholds,
};
use crate::sql::{analyze, Analysis, AnalysisContext, TextEdit};

/// Why a policy could not be built from its configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error(transparent)]
    UnknownRule(#[from] crate::rules::UnknownRule),
}

/// The resolved policy for one session (profile applied).
#[derive(Debug, Clone)]
pub struct Policy {
    pub mode: Mode,
    pub thresholds: SizeThresholds,
    /// `[policy] estimate_timeout` in milliseconds (`enforce::estimate`).
    pub estimate_timeout_ms: u64,
    actions: HashMap<Rule, Action>,
    profiles: Vec<ProfileConfig>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy::from_config(&PolicyConfig::default()).unwrap_or_else(|_| Policy {
            mode: Mode::Enforce,
            thresholds: SizeThresholds::default(),
            estimate_timeout_ms: 1000,
            actions: HashMap::new(),
            profiles: Vec::new(),
        })
    }
}

impl Policy {
    pub fn from_config(cfg: &PolicyConfig) -> Result<Policy, PolicyError> {
        let mut actions = HashMap::new();
        // An alias (squawk's `require-timeout-settings`) sets every rule it names.
        for (id, action) in &cfg.rules {
            for rule in Rule::expand(id)? {
                actions.insert(*rule, *action);
            }
        }
        for p in &cfg.profiles {
            for id in p.rules.keys() {
                Rule::expand(id)?;
            }
        }
        Ok(Policy {
            mode: cfg.mode,
            thresholds: SizeThresholds {
                large_rows: cfg.large_rows,
                large_bytes: cfg.large_bytes,
                unknown_is_large: cfg.unknown_size_is_large,
            },
            estimate_timeout_ms: u64::try_from(cfg.estimate_timeout.as_millis()).unwrap_or(1000),
            actions,
            profiles: cfg.profiles.clone(),
        })
    }

    /// Overrides one rule's action (`pgwarden check --include` / `--exclude`).
    pub fn set_action(&mut self, rule: Rule, action: Action) {
        self.actions.insert(rule, action);
    }

    /// The action configured for a rule (its default unless overridden).
    pub fn action(&self, rule: Rule) -> Action {
        self.actions
            .get(&rule)
            .copied()
            .unwrap_or_else(|| rule.default_action())
    }

    /// The policy for a session: the first profile whose globs all match is applied.
    pub fn for_session(&self, database: &str, user: &str, application_name: &str) -> Policy {
        let mut out = self.clone();
        let matches =
            |pat: &Option<String>, value: &str| pat.as_ref().is_none_or(|p| glob(p, value));
        if let Some(p) = self.profiles.iter().find(|p| {
            matches(&p.database, database)
                && matches(&p.user, user)
                && matches(&p.application_name, application_name)
        }) {
            if let Some(m) = p.mode {
                out.mode = m;
            }
            if let Some(u) = p.unknown_size_is_large {
                out.thresholds.unknown_is_large = u;
            }
            for (id, action) in &p.rules {
                for rule in Rule::expand(id).unwrap_or_default() {
                    out.actions.insert(*rule, *action);
                }
            }
        }
        out
    }

    /// Analyses, evaluates and decides on one text in one go, as the proxy does: only the
    /// rewrites this policy may apply are proven (see [`Policy::evaluate`]).
    pub fn check_text(&self, text: &str, ctx: &AnalysisContext, allow_rewrite: bool) -> Decision {
        let analysis = analyze(text, ctx);
        let evaluation = self.evaluate(text, &analysis, ctx, allow_rewrite);
        self.decide(text, &analysis, &evaluation, ctx, allow_rewrite)
    }

    /// Like [`Policy::check_text`] for a report (`pgwarden check`): nothing is rewritten, and
    /// every rewrite a rule offers is proven, to be shown as the finding's fix.
    ///
    /// Rules switched off are not run (their findings would be dropped below), unless the text
    /// holds an escape comment: an ignore that names an off rule is "used" when that rule
    /// fires, and unused-allow must say the same with or without this shortcut.
    pub fn report_text(&self, text: &str, ctx: &AnalysisContext) -> Decision {
        let analysis = analyze(text, ctx);
        let escapes = inline::may_hold_escapes(text);
        let wanted = |rule: Rule| escapes || self.action(rule) != Action::Off;
        let evaluation =
            evaluate_selected(text, &analysis, ctx, &self.thresholds, &wanted, &wanted);
        self.decide(text, &analysis, &evaluation, ctx, false)
    }

    /// Runs the rules for a decision: proves the rewrites of the rules whose action is
    /// `rewrite`, and only when the caller could send a rewritten text. A proof costs a
    /// re-parse; the other findings end in warn or reject whatever their rewrite would be.
    pub fn evaluate(
        &self,
        text: &str,
        analysis: &Analysis,
        ctx: &AnalysisContext,
        allow_rewrite: bool,
    ) -> Evaluation {
        let prove = |rule: Rule| allow_rewrite && self.action(rule) == Action::Rewrite;
        evaluate_proving(text, analysis, ctx, &self.thresholds, &prove)
    }

    /// Like [`Policy::check_text`], also returning the state after the text (transaction,
    /// tables created, timeouts set): the proxy feeds it into the next Query's context.
    pub fn check_text_with_state(
        &self,
        text: &str,
        ctx: &AnalysisContext,
        allow_rewrite: bool,
    ) -> (Decision, crate::sql::ScriptState) {
        let analysis = analyze(text, ctx);
        let evaluation = self.evaluate(text, &analysis, ctx, allow_rewrite);
        let decision = self.decide(text, &analysis, &evaluation, ctx, allow_rewrite);
        (decision, evaluation.state)
    }

    /// Turns findings into a decision. `allow_rewrite`: the caller can send a rewritten text
    /// instead (the proxy, when the Query holds this one statement and the session is idle).
    pub fn decide(
        &self,
        text: &str,
        analysis: &Analysis,
        evaluation: &Evaluation,
        ctx: &AnalysisContext,
        allow_rewrite: bool,
    ) -> Decision {
        let escapes = inline::apply(text, analysis, evaluation.findings.clone());
        let mut judged: Vec<Judged> = Vec::new();
        for (finding, allowed) in escapes.findings {
            let action = self.action(finding.rule);
            if action == Action::Off {
                continue;
            }
            let outcome = if let Some(reason) = allowed {
                Outcome::Allowed { reason }
            } else {
                self.outcome(action, &finding, allow_rewrite)
            };
            judged.push(Judged { finding, outcome });
        }
        let mut decision = Decision {
            mode: self.mode,
            findings: judged,
            rewritten: None,
        };
        if decision
            .findings
            .iter()
            .any(|j| j.outcome == Outcome::Rewrite)
        {
            self.apply_rewrites(text, ctx, &mut decision);
        }
        decision
    }

    fn outcome(&self, action: Action, finding: &Finding, allow_rewrite: bool) -> Outcome {
        let fallback = if finding.small_table {
            Outcome::Warn
        } else {
            Outcome::Reject
        };
        let wanted = match action {
            Action::Off => return Outcome::Warn,
            Action::Warn => Outcome::Warn,
            Action::Reject => fallback,
            Action::Rewrite if allow_rewrite && finding.rewrite.is_some() => Outcome::Rewrite,
            Action::Rewrite => fallback,
        };
        match self.mode {
            Mode::Enforce | Mode::DryRun => wanted,
            Mode::Warn => Outcome::Warn,
        }
    }

    /// Applies every rewrite and re-checks the whole result; if anything it was meant to fix
    /// still fires (or the text no longer parses), the rewrites fall back to reject.
    fn apply_rewrites(&self, text: &str, ctx: &AnalysisContext, d: &mut Decision) {
        let mut edits: Vec<TextEdit> = d
            .findings
            .iter()
            .filter(|j| j.outcome == Outcome::Rewrite)
            .filter_map(|j| j.finding.rewrite.clone())
            .collect();
        edits.sort_by_key(|e| std::cmp::Reverse(e.range.start));
        edits.dedup();
        let overlapping = edits.windows(2).any(|w| w[1].range.end > w[0].range.start);
        let mut new_text = Some(text.to_string());
        if overlapping {
            new_text = None;
        }
        for e in &edits {
            new_text = new_text.and_then(|t| e.apply(&t));
        }
        let fixed: Vec<Rule> = d
            .findings
            .iter()
            .filter(|j| j.outcome == Outcome::Rewrite)
            .map(|j| j.finding.rule)
            .collect();
        // One edit was already proven by the engine on its statement (re-parse + the rule
        // no longer fires); several edits in one text are proven together here.
        let single = edits.len() == 1 && new_text.is_some();
        let proven = single
            || new_text.as_ref().is_some_and(|t| {
                let a = analyze(t, ctx);
                let clean_parse = a.statements.iter().all(|s| {
                    !matches!(
                        s.outcome,
                        crate::sql::Outcome::ParseError(_) | crate::sql::Outcome::Unanalysable(_)
                    )
                });
                let again = evaluate(t, &a, ctx, &self.thresholds);
                clean_parse && !again.findings.iter().any(|f| fixed.contains(&f.rule))
            });
        if proven {
            d.rewritten = new_text;
        } else {
            for j in &mut d.findings {
                if j.outcome == Outcome::Rewrite {
                    j.outcome = if j.finding.small_table {
                        Outcome::Warn
                    } else {
                        Outcome::Reject
                    };
                }
            }
        }
    }
}

/// What happens to one finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Warn,
    Reject,
    /// The statement is rewritten into its safe form.
    Rewrite,
    /// An inline `pgwarden:allow` (with reason) or `squawk-ignore` accepted it.
    Allowed {
        reason: String,
    },
}

impl Outcome {
    /// `reject` / `warn` / `rewrite` / `allowed`, for reports.
    pub fn as_str(&self) -> &'static str {
        match self {
            Outcome::Warn => "warn",
            Outcome::Reject => "reject",
            Outcome::Rewrite => "rewrite",
            Outcome::Allowed { .. } => "allowed",
        }
    }
}

/// One finding with its outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Judged {
    pub finding: Finding,
    pub outcome: Outcome,
}

/// The decision on one text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub mode: Mode,
    pub findings: Vec<Judged>,
    /// The text to send instead, when every rewrite was proven.
    pub rewritten: Option<String>,
}

/// What the caller does with the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    Warn,
    Rewrite,
    Reject,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Verdict::Allow => "allow",
            Verdict::Warn => "warn",
            Verdict::Rewrite => "rewrite",
            Verdict::Reject => "reject",
        })
    }
}

impl Decision {
    /// What pgwarden would do, ignoring dry-run.
    pub fn intended(&self) -> Verdict {
        let has = |o: &Outcome| self.findings.iter().any(|j| &j.outcome == o);
        if has(&Outcome::Reject) {
            Verdict::Reject
        } else if self.rewritten.is_some() {
            Verdict::Rewrite
        } else if has(&Outcome::Warn) {
            Verdict::Warn
        } else {
            Verdict::Allow
        }
    }

    /// What pgwarden does: in dry-run mode it forwards everything (and logs `intended`).
    pub fn verdict(&self) -> Verdict {
        match (self.mode, self.intended()) {
            (Mode::DryRun, Verdict::Reject | Verdict::Rewrite) => Verdict::Warn,
            (_, v) => v,
        }
    }
}

/// Glob match with `*` (any run) and `?` (one char).
pub fn glob(pattern: &str, value: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let v: Vec<char> = value.chars().collect();
    let (mut pi, mut vi, mut star, mut mark) = (0, 0, None, 0);
    while vi < v.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == v[vi]) {
            pi += 1;
            vi += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = vi;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            vi = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::sql::context::TableStats;
    use crate::sql::TxState;

    #[test]
    fn config_aliases_set_every_rule_they_name() {
        let cfg = Config::from_toml(
            "[policy.rules]\nrequire-timeout-settings = \"off\"\nprefer-timestamp-tz = \"reject\"\n",
        )
        .unwrap();
        let p = Policy::from_config(&cfg.policy).unwrap();
        assert_eq!(p.action(Rule::RequireLockTimeout), Action::Off);
        assert_eq!(p.action(Rule::RequireStatementTimeout), Action::Off);
        assert_eq!(p.action(Rule::PreferTimestamptz), Action::Reject);
    }

    fn ctx_rows(rows: Option<u64>) -> AnalysisContext {
        let mut c = AnalysisContext {
            pg_version: Some(15),
            ..AnalysisContext::default()
        };
        if let Some(rows) = rows {
            c.catalog.tables.insert(
                "orders".into(),
                TableStats {
                    rows,
                    bytes: rows * 100,
                },
            );
        }
        c
    }

    fn policy(toml: &str) -> Policy {
        Policy::from_config(&Config::from_toml(toml).unwrap().policy).unwrap()
    }

    const IDX: &str = "CREATE INDEX i ON orders (a)";

    #[test]
    fn size_decides_between_reject_and_warn() {
        let p = Policy::default();
        assert_eq!(
            p.check_text(IDX, &ctx_rows(Some(5_000_000)), false)
                .verdict(),
            Verdict::Reject
        );
        assert_eq!(
            p.check_text(IDX, &ctx_rows(Some(300)), false).verdict(),
            Verdict::Warn
        );
        // Unknown size counts as large unless configured otherwise.
        assert_eq!(
            p.check_text(IDX, &ctx_rows(None), false).verdict(),
            Verdict::Reject
        );
        let lenient = policy("[policy]\nunknown_size_is_large = false\n");
        assert_eq!(
            lenient.check_text(IDX, &ctx_rows(None), false).verdict(),
            Verdict::Warn
        );
    }

    /// A proof costs a re-parse: a decision proves only what it may apply, a report proves
    /// every fix it prints. The verdict is the same either way.
    #[test]
    fn decisions_prove_only_rewrites_they_may_apply() {
        let rewrite = |d: &Decision| d.findings[0].finding.rewrite.is_some();
        let c = ctx_rows(Some(5_000_000));
        let p = Policy::default();
        let in_tx = p.check_text(IDX, &c, false);
        let report = p.report_text(IDX, &c);
        assert!(
            !rewrite(&in_tx),
            "nothing to apply inside a transaction: no proof"
        );
        assert!(rewrite(&report), "the report shows the proven fix");
        assert!(rewrite(&p.check_text(IDX, &c, true)));
        assert_eq!(in_tx.verdict(), report.verdict());
        // The rule set to reject: its rewrite is never applied, so never proven.
        let reject = policy("[policy.rules]\nrequire-concurrent-index-creation = \"reject\"\n");
        assert!(!rewrite(&reject.check_text(IDX, &c, true)));
        assert!(rewrite(&reject.report_text(IDX, &c)));
    }

    #[test]
    fn rewrite_when_allowed_and_proven() {
        let p = Policy::default();
        let d = p.check_text(IDX, &ctx_rows(Some(5_000_000)), true);
        assert_eq!(d.verdict(), Verdict::Rewrite);
        assert_eq!(
            d.rewritten.as_deref(),
            Some("CREATE INDEX CONCURRENTLY i ON orders (a)")
        );
        // Inside a transaction block the rewrite is impossible: fallback reject.
        let mut c = ctx_rows(Some(5_000_000));
        c.tx = TxState::InTransaction;
        assert_eq!(p.check_text(IDX, &c, true).verdict(), Verdict::Reject);
    }

    #[test]
    fn modes() {
        let c = ctx_rows(Some(5_000_000));
        let warn = policy("[policy]\nmode = \"warn\"\n");
        assert_eq!(warn.check_text(IDX, &c, true).verdict(), Verdict::Warn);
        let dry = policy("[policy]\nmode = \"dry-run\"\n");
        let d = dry.check_text(IDX, &c, false);
        assert_eq!(d.intended(), Verdict::Reject);
        assert_eq!(d.verdict(), Verdict::Warn);
    }

    #[test]
    fn rule_actions_and_profiles() {
        let p = policy(
            "[policy.rules]\nban-drop-column = \"off\"\n\
             [[policy.profiles]]\ndatabase = \"prod*\"\n\
             [policy.profiles.rules]\nban-drop-column = \"reject\"\n",
        );
        let c = ctx_rows(None);
        let sql = "ALTER TABLE orders DROP COLUMN a";
        let d = p.check_text(sql, &c, false);
        assert!(!d
            .findings
            .iter()
            .any(|j| j.finding.rule == Rule::BanDropColumn));
        let prod = p.for_session("prod_eu", "app", "alembic");
        assert_eq!(prod.check_text(sql, &c, false).verdict(), Verdict::Reject);
        let dev = p.for_session("dev", "app", "alembic");
        assert!(!dev
            .check_text(sql, &c, false)
            .findings
            .iter()
            .any(|j| j.finding.rule == Rule::BanDropColumn));
    }

    #[test]
    fn safe_migration_passes_defaults() {
        let sql = "SET lock_timeout = '2s';\nSET statement_timeout = '30s';\n\
                   CREATE INDEX CONCURRENTLY IF NOT EXISTS i ON orders (a);\n\
                   ALTER TABLE orders ADD COLUMN note text;\n";
        let d = Policy::default().check_text(sql, &ctx_rows(Some(5_000_000)), false);
        assert_ne!(d.verdict(), Verdict::Reject, "{:?}", d.findings);
    }

    #[test]
    fn globs() {
        assert!(glob("prod*", "prod_eu"));
        assert!(glob("*", ""));
        assert!(glob("a?c", "abc"));
        assert!(!glob("prod*", "dev"));
        assert!(glob("*_ro", "app_ro"));
    }
}
