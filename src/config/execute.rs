//! The `[execute]` section: the timeouts pgwarden runs lock-taking statements under, and how it
//! retries a lock wait. Every key and its default (with the reasoning) is documented in
//! `config/pgwarden.toml`.
use std::time::Duration;

use serde::Deserialize;

use super::server::duration;

/// Settings of the `[execute]` section.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExecuteConfig {
    /// Inject per-class timeouts and retry lock timeouts at all.
    pub enabled: bool,
    /// Quick lock-taking DDL (ACCESS EXCLUSIVE / SHARE ROW EXCLUSIVE / SHARE on an existing
    /// relation): the longest the application may queue behind one lock wait.
    #[serde(deserialize_with = "duration")]
    pub quick_lock_timeout: Duration,
    /// Quick DDL: how long it may hold its lock once granted (0 = unbounded).
    #[serde(deserialize_with = "duration")]
    pub quick_statement_timeout: Duration,
    /// Concurrent builds, VALIDATE CONSTRAINT, REFRESH CONCURRENTLY, DETACH CONCURRENTLY
    /// (0 = wait as long as it takes: they wait for every older transaction by design).
    #[serde(deserialize_with = "duration")]
    pub concurrent_lock_timeout: Duration,
    #[serde(deserialize_with = "duration")]
    pub concurrent_statement_timeout: Duration,
    /// A client's own non-zero lock_timeout up to this is kept (and its timeouts are the
    /// client's, not retried); above it pgwarden's class value is used.
    #[serde(deserialize_with = "duration")]
    pub max_client_lock_timeout: Duration,
    /// As `max_client_lock_timeout` for statement_timeout (0 = no ceiling).
    #[serde(deserialize_with = "duration")]
    pub max_client_statement_timeout: Duration,
    /// Total time pgwarden keeps retrying one statement (attempts and waits together).
    #[serde(deserialize_with = "duration")]
    pub retry_budget: Duration,
    /// First wait between attempts; doubled each time up to `backoff_max`, with jitter.
    #[serde(deserialize_with = "duration")]
    pub backoff_initial: Duration,
    #[serde(deserialize_with = "duration")]
    pub backoff_max: Duration,
}

impl Default for ExecuteConfig {
    fn default() -> Self {
        ExecuteConfig {
            enabled: true,
            quick_lock_timeout: Duration::from_secs(1),
            quick_statement_timeout: Duration::from_secs(30),
            concurrent_lock_timeout: Duration::ZERO,
            concurrent_statement_timeout: Duration::ZERO,
            max_client_lock_timeout: Duration::from_secs(3),
            max_client_statement_timeout: Duration::ZERO,
            retry_budget: Duration::from_secs(120),
            backoff_initial: Duration::from_millis(200),
            backoff_max: Duration::from_secs(10),
        }
    }
}

impl ExecuteConfig {
    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.enabled && self.quick_lock_timeout.is_zero() {
            return Err(
                "[execute] quick_lock_timeout must be above 0: with 0 a lock wait \
                        blocks the application for as long as it lasts"
                    .into(),
            );
        }
        if self.backoff_initial > self.backoff_max {
            return Err("[execute] backoff_initial must not exceed backoff_max".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    #[test]
    fn defaults_and_overrides() {
        let c = Config::from_toml("").unwrap();
        assert!(c.execute.enabled);
        assert_eq!(c.execute.quick_lock_timeout.as_millis(), 1000);
        let c = Config::from_toml(
            "[execute]\nquick_lock_timeout = \"250ms\"\nconcurrent_lock_timeout = 0\nretry_budget = \"5s\"\n",
        )
        .unwrap();
        assert_eq!(c.execute.quick_lock_timeout.as_millis(), 250);
        assert!(c.execute.concurrent_lock_timeout.is_zero());
        assert_eq!(c.execute.retry_budget.as_secs(), 5);
        assert!(Config::from_toml("[execute]\nquick_lock_timout = \"1s\"\n").is_err());
        assert!(Config::from_toml("[execute]\nquick_lock_timeout = 0\n").is_err());
    }
}
