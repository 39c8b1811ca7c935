//! The `[audit]` section of the configuration file.
use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// When the writer calls fsync (fdatasync) on the audit file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FsyncPolicy {
    /// After every batch of records, before any DDL waiting on it is let through.
    Always,
    /// At most once per `fsync_interval`; DDL waits for the write, not the fsync.
    Interval,
    /// Never: the OS decides (a power loss can lose acknowledged records).
    Never,
}

/// What happens to DDL whose audit record cannot be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnAuditFailure {
    /// Refuse the DDL (DML continues): DDL must not run unaudited.
    RejectDdl,
    /// Log loudly and let the DDL run.
    Continue,
}

/// Settings of the `[audit]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// Write the audit log at all.
    pub enabled: bool,
    /// File to append to, or `-` for stdout.
    pub path: String,
    /// always | interval | never.
    pub fsync: FsyncPolicy,
    /// Period for `fsync = "interval"`, e.g. `"1s"`, `"250ms"`.
    #[serde(deserialize_with = "de_duration")]
    pub fsync_interval: Duration,
    /// reject-ddl | continue.
    pub on_audit_failure: OnAuditFailure,
    /// Records queued for the writer; when full, non-critical records are dropped (counted and
    /// logged) and DDL waits.
    pub channel_capacity: usize,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            enabled: true,
            path: "pgwarden-audit.jsonl".into(),
            fsync: FsyncPolicy::Always,
            fsync_interval: Duration::from_secs(1),
            on_audit_failure: OnAuditFailure::RejectDdl,
            channel_capacity: 4096,
        }
    }
}

impl AuditConfig {
    /// Checks values serde cannot check (ranges, combinations).
    pub fn validate(&self) -> Result<(), String> {
        if self.enabled && self.path.trim().is_empty() {
            return Err("audit.path must not be empty (use \"-\" for stdout)".into());
        }
        if !(1..=1_000_000).contains(&self.channel_capacity) {
            return Err(format!(
                "audit.channel_capacity must be between 1 and 1000000, got {}",
                self.channel_capacity
            ));
        }
        if self.fsync == FsyncPolicy::Interval && self.fsync_interval.is_zero() {
            return Err(
                "audit.fsync_interval must be greater than 0 when fsync = \"interval\"".into(),
            );
        }
        Ok(())
    }
}

/// Parses `"250ms"`, `"1s"`, `"2m"` (a bare integer is seconds).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("invalid duration {s:?}: expected e.g. \"250ms\", \"1s\", \"2m\""))?;
    match unit.trim() {
        "ms" => Ok(Duration::from_millis(n)),
        "" | "s" => Ok(Duration::from_secs(n)),
        "m" | "min" => Ok(Duration::from_secs(n.saturating_mul(60))),
        other => Err(format!(
            "invalid duration unit {other:?} in {s:?}: use ms, s or m"
        )),
    }
}

fn de_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    parse_duration(&s).map_err(serde::de::Error::custom)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn defaults_and_full_section() {
        let c = Config::from_toml("").unwrap_or_else(|e| panic!("{e}"));
        assert!(c.audit.enabled);
        assert_eq!(c.audit.fsync, FsyncPolicy::Always);
        assert_eq!(c.audit.on_audit_failure, OnAuditFailure::RejectDdl);
        let c = Config::from_toml(
            "[audit]\nenabled = true\npath = \"-\"\nfsync = \"interval\"\nfsync_interval = \"250ms\"\non_audit_failure = \"continue\"\nchannel_capacity = 16\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.audit.fsync_interval, Duration::from_millis(250));
        assert_eq!(c.audit.on_audit_failure, OnAuditFailure::Continue);
        assert_eq!(c.audit.channel_capacity, 16);
    }

    #[test]
    fn errors_name_the_key() {
        let e = Config::from_toml("[audit]\nfsynk = \"always\"\n")
            .err()
            .map(|e| e.to_string());
        assert!(e.as_deref().is_some_and(|e| e.contains("fsynk")), "{e:?}");
        let e = Config::from_toml("[audit]\nfsync = \"sometimes\"\n")
            .err()
            .map(|e| e.to_string());
        assert!(
            e.as_deref().is_some_and(|e| e.contains("sometimes")),
            "{e:?}"
        );
        let e = Config::from_toml("[audit]\nchannel_capacity = 0\n")
            .err()
            .map(|e| e.to_string());
        assert!(
            e.as_deref().is_some_and(|e| e.contains("channel_capacity")),
            "{e:?}"
        );
        let e = Config::from_toml("[audit]\nfsync_interval = \"5 parsecs\"\n")
            .err()
            .map(|e| e.to_string());
        assert!(e.as_deref().is_some_and(|e| e.contains("parsecs")), "{e:?}");
    }

    #[test]
    fn the_shipped_example_file_parses() {
        let text = include_str!("../../config/pgwarden.toml");
        let c = Config::from_toml(text).unwrap_or_else(|e| panic!("{e}"));
        let d = AuditConfig::default();
        assert_eq!(c.audit.path, d.path);
        assert_eq!(c.audit.fsync, d.fsync);
        assert_eq!(c.audit.fsync_interval, d.fsync_interval);
        assert_eq!(c.audit.channel_capacity, d.channel_capacity);
    }
}
