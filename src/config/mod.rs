//! Settings from `pgwarden.toml`: one struct per section, unknown keys are an error naming the key.
//!
//! Each section lives in its own file next to this one and is owned by the layer it configures.
use std::path::Path;

use serde::Deserialize;

pub mod admin;
pub mod audit;
pub mod databases;
pub mod execute;
pub mod policy;
pub mod server;

pub use admin::AdminConfig;
pub use audit::AuditConfig;
pub use execute::ExecuteConfig;
pub use policy::PolicyConfig;
pub use server::ServerConfig;

/// The whole configuration file. Every section has defaults, so an empty file is valid.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Listener, upstream, TLS, limits, shutdown, logging.
    pub server: ServerConfig,
    /// Mode, rule actions, size thresholds, profiles.
    pub policy: PolicyConfig,
    /// Audit log sink and durability.
    pub audit: AuditConfig,
    /// Timeouts and lock-wait retries for the statements pgwarden runs.
    pub execute: ExecuteConfig,
    /// Admin HTTP listener: metrics, health, activity.
    pub admin: AdminConfig,
    /// Upstream per database name, with an optional `*` fallback.
    pub databases: databases::Databases,
}

/// Why a configuration file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {message}")]
    Parse { path: String, message: String },
    #[error("invalid config file {path}: {message}")]
    Invalid { path: String, message: String },
}

impl Config {
    /// Reads and validates a TOML file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_toml(&text).map_err(|e| match e {
            ConfigError::Parse { message, .. } => ConfigError::Parse {
                path: path.display().to_string(),
                message,
            },
            ConfigError::Invalid { message, .. } => ConfigError::Invalid {
                path: path.display().to_string(),
                message,
            },
            other => other,
        })
    }

    /// Parses TOML text; `path` in errors is `<string>`.
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        let cfg: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: "<string>".into(),
            message: e.to_string(),
        })?;
        cfg.validate().map_err(|message| ConfigError::Invalid {
            path: "<string>".into(),
            message,
        })?;
        Ok(cfg)
    }

    pub(crate) fn validate(&self) -> Result<(), String> {
        self.server.validate()?;
        self.policy.validate()?;
        self.audit.validate()?;
        self.execute.validate()?;
        self.admin.validate()?;
        databases::validate(&self.databases, &self.server)?;
        Ok(())
    }
}
