//! The `[admin] section`: the admin HTTP listener (metrics, health, activity).
use std::time::Duration;

use serde::Deserialize;

/// Settings of the `[admin]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// `host:port` of the admin HTTP listener; `None` (the default) = no listener.
    pub listen: Option<String>,
    /// How long `/readyz` waits for a TCP connection to the upstream.
    #[serde(deserialize_with = "super::server::duration")]
    pub ready_timeout: Duration,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            listen: None,
            ready_timeout: Duration::from_secs(2),
        }
    }
}

impl AdminConfig {
    /// Checks values serde cannot check.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(l) = &self.listen {
            super::server::split_host_port(l).map_err(|e| format!("[admin] listen {l:?}: {e}"))?;
        }
        if self.ready_timeout.is_zero() {
            return Err("[admin] ready_timeout must be more than 0".into());
        }
        Ok(())
    }
}
