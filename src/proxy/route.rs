//! Routing a session to its upstream by the database name the client asks for (`[databases]`).
//!
//! Resolved before any upstream connection: a name with no entry and no `*` fallback gets the
//! FATAL 3D000 a server gives for a database that does not exist. Policy profiles keep
//! matching the name the client asked for (what the application and the operator know).
//! Each entry may set its own upstream TLS (`upstream_tls`, CA file, server name), inheriting
//! what it does not set from `[server]`; a SIGHUP reload builds a new [`Routes`] (`reload`).
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use rustls::pki_types::ServerName;

use super::{tls, ProxyError};
use crate::config::databases::UpstreamTlsSettings;
use crate::config::server::{split_host_port, UpstreamTls};
use crate::config::Config;
use crate::protocol::startup::StartupMessage;

/// One upstream server.
pub(crate) struct Upstream {
    /// As configured (`host:port`), for messages and logs.
    pub(crate) name: String,
    /// The address when it is written as one (no name lookup needed).
    pub(crate) addr: Option<SocketAddr>,
    /// SNI and the name checked in verify-full.
    pub(crate) server_name: ServerName<'static>,
    /// TLS mode of this leg (libpq sslmode meanings).
    pub(crate) tls: UpstreamTls,
    /// `None` when `tls` is `disable`.
    pub(crate) connector: Option<tokio_rustls::TlsConnector>,
    /// The settings it was built from: two entries share an upstream only if these match.
    settings: UpstreamTlsSettings,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("name", &self.name)
            .field("tls", &self.settings)
            .finish()
    }
}

impl Upstream {
    fn new(name: &str, settings: UpstreamTlsSettings) -> Result<Arc<Upstream>, ProxyError> {
        let (host, _) = split_host_port(name).map_err(ProxyError::Config)?;
        Ok(Arc::new(Upstream {
            name: name.to_owned(),
            addr: name.parse().ok(),
            server_name: tls::upstream_server_name(&settings, host)?,
            tls: settings.mode,
            connector: tls::upstream_connector(&settings)?,
            settings,
        }))
    }

    /// Same server reached the same way (what cancels and `/readyz` count once).
    pub(crate) fn same_as(&self, other: &Upstream) -> bool {
        self.name == other.name && self.settings == other.settings
    }
}

/// Where a session goes.
#[derive(Debug, Clone)]
pub(crate) struct Route {
    pub(crate) upstream: Arc<Upstream>,
    /// Database name to ask the upstream for instead of the client's.
    pub(crate) database: Option<String>,
}

#[derive(Debug)]
pub(crate) struct Routes {
    /// No `[databases]`: everything goes here.
    default: Option<Route>,
    named: HashMap<String, Route>,
    fallback: Option<Route>,
    all: Vec<Arc<Upstream>>,
}

impl Routes {
    pub(crate) fn new(config: &Config) -> Result<Routes, ProxyError> {
        let mut all: Vec<Arc<Upstream>> = Vec::new();
        let mut upstream =
            |name: &str, tls: UpstreamTlsSettings| -> Result<Arc<Upstream>, ProxyError> {
                if let Some(u) = all.iter().find(|u| u.name == name && u.settings == tls) {
                    return Ok(u.clone());
                }
                let u = Upstream::new(name, tls)?;
                all.push(u.clone());
                Ok(u)
            };
        if config.databases.is_empty() {
            let route = Route {
                upstream: upstream(
                    &config.server.upstream,
                    UpstreamTlsSettings::of_server(&config.server),
                )?,
                database: None,
            };
            return Ok(Routes {
                default: Some(route),
                named: HashMap::new(),
                fallback: None,
                all,
            });
        }
        let mut named = HashMap::new();
        let mut fallback = None;
        for (name, r) in &config.databases {
            let route = Route {
                upstream: upstream(&r.upstream, r.tls(&config.server))?,
                database: r.database.clone(),
            };
            if name == "*" {
                fallback = Some(route);
            } else {
                named.insert(name.clone(), route);
            }
        }
        Ok(Routes {
            default: None,
            named,
            fallback,
            all,
        })
    }

    /// The route for a requested database; `None`: no entry and no fallback.
    pub(crate) fn resolve(&self, database: &str) -> Option<Route> {
        if let Some(r) = &self.default {
            return Some(r.clone());
        }
        self.named.get(database).or(self.fallback.as_ref()).cloned()
    }

    /// Every distinct upstream.
    pub(crate) fn upstreams(&self) -> &[Arc<Upstream>] {
        &self.all
    }
}

/// Asks the upstream for the route's database name instead of the client's.
pub(crate) fn apply(route: &Route, startup: &mut StartupMessage) {
    let Some(name) = &route.database else { return };
    // A repeated key: the server reads the last one; leave exactly one.
    startup.params.retain(|(k, _)| k != "database");
    startup.params.push(("database".into(), name.clone()));
}
