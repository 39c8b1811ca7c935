//! The `[databases]` section: which upstream serves the database a client asks for, as
//! pgbouncer's `[databases]`. Empty (the default): every client goes to `[server] upstream`.
use std::collections::BTreeMap;

use serde::Deserialize;

/// One entry: `[databases.NAME]`, or `[databases."*"]` for every name not listed.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseRoute {
    /// `host:port` of the server that holds the database.
    pub upstream: String,
    /// The database name on that server, when it differs from the name clients use.
    pub database: Option<String>,
}

/// Database name (or `*`) → route.
pub type Databases = BTreeMap<String, DatabaseRoute>;

/// Checks every entry's address.
pub fn validate(dbs: &Databases) -> Result<(), String> {
    for (name, r) in dbs {
        super::server::split_host_port(&r.upstream)
            .map_err(|e| format!("[databases.{name:?}] upstream {:?}: {e}", r.upstream))?;
        if r.database.as_deref() == Some("") {
            return Err(format!("[databases.{name:?}] database must not be empty"));
        }
    }
    Ok(())
}
