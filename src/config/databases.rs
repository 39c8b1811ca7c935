//! The `[databases]` section: which upstream serves the database a client asks for, as
//! pgbouncer's `[databases]`. Empty (the default): every client goes to `[server] upstream`.
use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use super::server::{ServerConfig, UpstreamTls};

/// One entry: `[databases.NAME]`, or `[databases."*"]` for every name not listed.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseRoute {
    /// `host:port` of the server that holds the database.
    pub upstream: String,
    /// The database name on that server, when it differs from the name clients use.
    pub database: Option<String>,
    /// TLS to this upstream (libpq sslmode names); unset: `[server] upstream_tls`.
    pub upstream_tls: Option<UpstreamTls>,
    /// CA bundle for this upstream's verify-ca/verify-full; unset: `[server] upstream_tls_ca_file`.
    pub upstream_tls_ca_file: Option<PathBuf>,
    /// Name checked in verify-full; unset: `[server] upstream_tls_server_name`, else the host.
    pub upstream_tls_server_name: Option<String>,
}

/// The TLS settings one upstream is reached with, after inheriting from `[server]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamTlsSettings {
    pub mode: UpstreamTls,
    pub ca_file: Option<PathBuf>,
    pub server_name: Option<String>,
}

impl UpstreamTlsSettings {
    /// `[server]`'s own settings (no `[databases]`, or an entry that sets none).
    pub fn of_server(s: &ServerConfig) -> UpstreamTlsSettings {
        UpstreamTlsSettings {
            mode: s.upstream_tls,
            ca_file: s.upstream_tls_ca_file.clone(),
            server_name: s.upstream_tls_server_name.clone(),
        }
    }
}

impl DatabaseRoute {
    /// This entry's TLS settings: its own keys, each falling back to `[server]`'s.
    pub fn tls(&self, server: &ServerConfig) -> UpstreamTlsSettings {
        let base = UpstreamTlsSettings::of_server(server);
        UpstreamTlsSettings {
            mode: self.upstream_tls.unwrap_or(base.mode),
            ca_file: self.upstream_tls_ca_file.clone().or(base.ca_file),
            server_name: self.upstream_tls_server_name.clone().or(base.server_name),
        }
    }
}

/// Database name (or `*`) → route.
pub type Databases = BTreeMap<String, DatabaseRoute>;

/// Checks every entry's address and TLS settings.
pub fn validate(dbs: &Databases, server: &ServerConfig) -> Result<(), String> {
    for (name, r) in dbs {
        super::server::split_host_port(&r.upstream)
            .map_err(|e| format!("[databases.{name:?}] upstream {:?}: {e}", r.upstream))?;
        if r.database.as_deref() == Some("") {
            return Err(format!("[databases.{name:?}] database must not be empty"));
        }
        let tls = r.tls(server);
        if matches!(tls.mode, UpstreamTls::VerifyCa | UpstreamTls::VerifyFull)
            && tls.ca_file.is_none()
        {
            return Err(format!(
                "[databases.{name:?}] upstream_tls verify-ca/verify-full needs \
                 upstream_tls_ca_file (in the entry or in [server])"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::config::server::UpstreamTls;
    use crate::config::Config;

    #[test]
    fn per_database_tls_inherits_from_server_and_is_checked() {
        let c = Config::from_toml(
            "[server]\nupstream_tls = \"disable\"\n\
             [databases.a]\nupstream = \"10.0.0.1:5432\"\n\
             [databases.b]\nupstream = \"10.0.0.2:5432\"\nupstream_tls = \"verify-full\"\n\
             upstream_tls_ca_file = \"/etc/ca.pem\"\nupstream_tls_server_name = \"db-b\"\n",
        )
        .unwrap();
        let a = c.databases["a"].tls(&c.server);
        assert_eq!(a.mode, UpstreamTls::Disable);
        let b = c.databases["b"].tls(&c.server);
        assert_eq!(b.mode, UpstreamTls::VerifyFull);
        assert_eq!(b.server_name.as_deref(), Some("db-b"));
        // verify-full without a CA anywhere is refused, naming the entry.
        let e = Config::from_toml(
            "[databases.b]\nupstream = \"10.0.0.2:5432\"\nupstream_tls = \"verify-ca\"\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("[databases.\"b\"]"), "{e}");
        // ... but a CA in [server] is inherited.
        Config::from_toml(
            "[server]\nupstream_tls_ca_file = \"/etc/ca.pem\"\n\
             [databases.b]\nupstream = \"10.0.0.2:5432\"\nupstream_tls = \"verify-ca\"\n",
        )
        .unwrap();
        assert!(Config::from_toml(
            "[databases.b]\nupstream = \"10.0.0.2:5432\"\nupstream_tls = \"sometimes\"\n"
        )
        .is_err());
    }
}
