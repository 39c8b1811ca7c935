//! The `[audit]` section of the configuration file.
use serde::Deserialize;

/// Settings of the `[audit]` section.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {}

impl AuditConfig {
    /// Checks values serde cannot check (ranges, combinations).
    pub fn validate(&self) -> Result<(), String> {
        Ok(())
    }
}
