//! The `[server]` section of the configuration file.
use serde::Deserialize;

/// Settings of the `[server]` section.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {}

impl ServerConfig {
    /// Checks values serde cannot check (ranges, combinations).
    pub fn validate(&self) -> Result<(), String> {
        Ok(())
    }
}
