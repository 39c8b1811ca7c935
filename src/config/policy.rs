//! The `[policy]` section of the configuration file.
use serde::Deserialize;

/// Settings of the `[policy]` section.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {}

impl PolicyConfig {
    /// Checks values serde cannot check (ranges, combinations).
    pub fn validate(&self) -> Result<(), String> {
        Ok(())
    }
}
