//! The `[policy]` section of the configuration file: mode, rule actions, size thresholds,
//! profiles.
use std::collections::BTreeMap;

use serde::Deserialize;

use crate::rules::{Action, Rule};

/// What pgwarden does with its decisions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Reject and rewrite as the rule actions say.
    #[default]
    Enforce,
    /// Never reject or rewrite: everything that would have been is a warning.
    Warn,
    /// Forward everything unchanged; log what would have been done.
    DryRun,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Warn => "warn",
            Mode::DryRun => "dry-run",
        }
    }
}

/// Settings of the `[policy]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    /// enforce | warn | dry-run.
    pub mode: Mode,
    /// A table with at least this many estimated rows is large.
    pub large_rows: u64,
    /// A table with at least this many bytes (with indexes and toast) is large.
    pub large_bytes: u64,
    /// Treat a table whose size cannot be known as large (production default).
    pub unknown_size_is_large: bool,
    /// Longest lock wait and planning time of pgwarden's EXPLAIN of a data change in a
    /// migration transaction (`unbatched-backfill`); past it the change is decided without
    /// an estimate.
    #[serde(deserialize_with = "super::server::duration")]
    pub estimate_timeout: std::time::Duration,
    /// Per-rule action overrides: `rule-id = "off" | "warn" | "reject" | "rewrite"`.
    pub rules: BTreeMap<String, Action>,
    /// Overrides matched by database / user / application_name globs, first match wins.
    pub profiles: Vec<ProfileConfig>,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            mode: Mode::Enforce,
            large_rows: 1_000_000,
            large_bytes: 1 << 30,
            unknown_size_is_large: true,
            estimate_timeout: std::time::Duration::from_secs(1),
            rules: BTreeMap::new(),
            profiles: Vec::new(),
        }
    }
}

/// One `[[policy.profiles]]` entry.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProfileConfig {
    /// Name for logs.
    pub name: String,
    /// Globs (`*`, `?`); absent = any.
    pub database: Option<String>,
    pub user: Option<String>,
    pub application_name: Option<String>,
    /// Mode override.
    pub mode: Option<Mode>,
    /// Size policy override.
    pub unknown_size_is_large: Option<bool>,
    /// Rule action overrides on top of `[policy.rules]`.
    pub rules: BTreeMap<String, Action>,
}

impl PolicyConfig {
    /// Checks values serde cannot check: rule ids (a misspelled id fails, naming it).
    pub fn validate(&self) -> Result<(), String> {
        check_ids(&self.rules, "[policy.rules]")?;
        for (i, p) in self.profiles.iter().enumerate() {
            let label = if p.name.is_empty() {
                format!("[[policy.profiles]] #{}", i + 1)
            } else {
                format!("[[policy.profiles]] `{}`", p.name)
            };
            check_ids(&p.rules, &format!("{label} rules"))?;
        }
        if self.large_rows == 0 && self.large_bytes == 0 {
            return Err("[policy] large_rows and large_bytes cannot both be 0".into());
        }
        // 0 would mean "no limit", and pgwarden closes a session whose injected lookup is not
        // answered within 30 s.
        if self.estimate_timeout.is_zero() || self.estimate_timeout.as_secs() >= 30 {
            return Err("[policy] estimate_timeout must be above 0 and below 30s".into());
        }
        Ok(())
    }
}

fn check_ids(rules: &BTreeMap<String, Action>, section: &str) -> Result<(), String> {
    for id in rules.keys() {
        Rule::expand(id).map_err(|e| format!("{section}: {e}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    #[test]
    fn misspelled_rule_id_fails_naming_it() {
        let err =
            Config::from_toml("[policy.rules]\nrequire-concurent-index-creation = \"warn\"\n")
                .unwrap_err()
                .to_string();
        assert!(err.contains("require-concurent-index-creation"), "{err}");
        assert!(
            err.contains("did you mean `require-concurrent-index-creation`"),
            "{err}"
        );
    }

    #[test]
    fn bad_action_and_unknown_key_fail() {
        assert!(Config::from_toml("[policy.rules]\nban-drop-column = \"maybe\"\n").is_err());
        assert!(Config::from_toml("[policy]\nmodee = \"warn\"\n").is_err());
    }

    #[test]
    fn full_section_parses() {
        let cfg = Config::from_toml(
            r#"
[policy]
mode = "dry-run"
large_rows = 500000
unknown_size_is_large = false
[policy.rules]
ban-drop-column = "warn"
[[policy.profiles]]
name = "prod"
database = "prod*"
mode = "enforce"
[policy.profiles.rules]
ban-drop-column = "reject"
"#,
        )
        .unwrap();
        assert_eq!(cfg.policy.mode, super::Mode::DryRun);
        assert_eq!(cfg.policy.profiles.len(), 1);
    }

    #[test]
    fn estimate_timeout_is_a_bounded_duration() {
        let cfg = Config::from_toml("[policy]\nestimate_timeout = \"250ms\"\n").unwrap();
        assert_eq!(
            cfg.policy.estimate_timeout,
            std::time::Duration::from_millis(250)
        );
        assert_eq!(
            super::PolicyConfig::default().estimate_timeout,
            std::time::Duration::from_secs(1)
        );
        for bad in ["0", "\"30s\"", "\"soon\""] {
            assert!(
                Config::from_toml(&format!("[policy]\nestimate_timeout = {bad}\n")).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn shipped_config_file_is_valid() {
        let text = include_str!("../../config/pgwarden.toml");
        Config::from_toml(text).unwrap();
    }
}
