//! Configuration reload on SIGHUP, pgbouncer-style: what sessions read when they start or plan
//! a statement is swapped as one, and every later statement and session uses it; no session
//! is dropped.
//!
//! What reloads (the allow-list in [`in_force`]): `[policy]` (mode, rule actions, thresholds,
//! profiles; the next DDL statement of every open session), `[execute]` (timeouts and lock-wait
//! retries; the next statement), routing (`[databases]`, `[server] upstream`, the upstream TLS
//! settings; new sessions), the client-leg certificate and key files (re-read; new TLS
//! handshakes), `startup_timeout`, `connect_timeout`, `[admin] ready_timeout` and `log_level`.
//! Everything else (listen addresses, `max_connections`, message-size limits, `max_held_bytes`,
//! `shutdown_grace`, `log_format`, `[audit]`) is read at start only: a changed value is logged
//! as needing a restart and the running value stays. A file that does not load, validate, or
//! whose TLS files or policy cannot be built is refused as a whole: the error is logged, the
//! old configuration stays, and `pgwarden_config_last_reload_successful` drops to 0.
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use tracing::{error, info, warn};

use super::route::{Routes, Upstream};
use super::{tls, ProxyError};
use crate::config::Config;
use crate::policy::Policy;

/// The policy in force, shared by all sessions; a generation number tells a session's
/// enforcer that it changed (checked once per DDL statement, never on the forwarding path).
#[derive(Debug, Clone)]
pub(crate) struct LivePolicy {
    inner: Arc<(AtomicU64, RwLock<Arc<Policy>>)>,
}

impl LivePolicy {
    pub(crate) fn new(policy: Policy) -> LivePolicy {
        LivePolicy {
            inner: Arc::new((AtomicU64::new(0), RwLock::new(Arc::new(policy)))),
        }
    }

    pub(crate) fn generation(&self) -> u64 {
        self.inner.0.load(Ordering::Acquire)
    }

    /// The policy in force now.
    pub(crate) fn current(&self) -> Arc<Policy> {
        self.inner
            .1
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn store(&self, policy: Policy) {
        *self.inner.1.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(policy);
        self.inner.0.fetch_add(1, Ordering::AcqRel);
    }
}

/// The reloadable settings in force, built as one so a reload is all or nothing.
pub(crate) struct Settings {
    /// The configuration in force: the reloaded file's reloadable values, the start values
    /// of everything else (so what is read here is what applies).
    pub(crate) config: Arc<Config>,
    /// Upstream per database name, each with its TLS connector.
    pub(crate) routes: Routes,
    /// The acceptor for clients' SSLRequest (`None`: client TLS off).
    pub(crate) acceptor: Option<tokio_rustls::TlsAcceptor>,
}

impl Settings {
    /// Builds routes and TLS from `config`, reading the certificate files now.
    pub(crate) fn build(config: Arc<Config>) -> Result<Settings, ProxyError> {
        Ok(Settings {
            routes: Routes::new(&config)?,
            acceptor: tls::client_acceptor(&config.server)?,
            config,
        })
    }
}

/// What sessions read the reloadable settings from (read once per session start and per
/// planned statement, never per forwarded message).
pub(crate) struct Live {
    now: RwLock<Arc<Settings>>,
    /// Every upstream routes pointed at since the start: a CancelRequest may be for a session
    /// routed before a reload changed its entry.
    ever: Mutex<Vec<Arc<Upstream>>>,
}

impl Live {
    pub(crate) fn new(settings: Settings) -> Live {
        let ever = settings.routes.upstreams().to_vec();
        Live {
            now: RwLock::new(Arc::new(settings)),
            ever: Mutex::new(ever),
        }
    }

    /// The settings in force now.
    pub(crate) fn now(&self) -> Arc<Settings> {
        self.now.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn store(&self, settings: Settings) {
        {
            let mut ever = self.ever.lock().unwrap_or_else(|p| p.into_inner());
            for u in settings.routes.upstreams() {
                if !ever.iter().any(|e| e.same_as(u)) {
                    ever.push(u.clone());
                }
            }
        }
        *self.now.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(settings);
    }

    /// Where a CancelRequest is delivered: every upstream a session may be connected to.
    pub(crate) fn cancel_targets(&self) -> Vec<Arc<Upstream>> {
        self.ever.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Where a reload reads the configuration from, and the command-line flags that override it.
pub struct ReloadSource {
    pub path: PathBuf,
    pub overrides: Box<dyn Fn(&mut Config) + Send + Sync>,
}

type LogFilterFn = Box<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

/// Set by `pgwarden serve` when `log_level` decides the filter (no `RUST_LOG`).
static LOG_FILTER: OnceLock<LogFilterFn> = OnceLock::new();

/// Registers how a reload changes the log filter (called once, when logging is set up).
pub fn set_log_filter_reloader(f: LogFilterFn) {
    let _ = LOG_FILTER.set(f);
}

/// The start configuration with `next`'s reloadable values: an allow-list, so a setting not
/// named here (a new key included) is restart-only by default.
fn in_force(start: &Config, next: &Config) -> Config {
    let mut c = start.clone();
    c.policy = next.policy.clone();
    c.execute = next.execute.clone();
    c.databases = next.databases.clone();
    c.admin.ready_timeout = next.admin.ready_timeout;
    let (s, n) = (&mut c.server, &next.server);
    s.upstream = n.upstream.clone();
    s.upstream_tls = n.upstream_tls;
    s.upstream_tls_ca_file = n.upstream_tls_ca_file.clone();
    s.upstream_tls_server_name = n.upstream_tls_server_name.clone();
    s.tls_cert_file = n.tls_cert_file.clone();
    s.tls_key_file = n.tls_key_file.clone();
    s.startup_timeout = n.startup_timeout;
    s.connect_timeout = n.connect_timeout;
    s.log_level = n.log_level.clone();
    c
}

/// Reads the file again and applies what may change; returns the sections that changed, or
/// why the file was refused.
pub(crate) fn reload(
    src: &ReloadSource,
    start: &Config,
    live: &Live,
    policy: &LivePolicy,
) -> Result<Vec<&'static str>, String> {
    let mut next = Config::load(&src.path).map_err(|e| e.to_string())?;
    (src.overrides)(&mut next);
    let effective = in_force(start, &next);
    effective.validate()?;
    let new_policy = Policy::from_config(&effective.policy).map_err(|e| e.to_string())?;
    let old = live.now();
    let changed = reloaded_changes(&old.config, &effective);
    // Routes (their CA files) and the client certificate are read here: a file that cannot be
    // read refuses the whole reload, before anything is swapped.
    let settings = Settings::build(Arc::new(effective)).map_err(|e| e.to_string())?;
    if old.config.server.log_level != settings.config.server.log_level {
        match LOG_FILTER.get() {
            Some(apply) => apply(&settings.config.server.log_level)?,
            None => warn!(
                "config reload: log_level changed, but RUST_LOG is set and decides the log \
                 filter (unset it to use log_level)"
            ),
        }
    }
    for what in restart_only_changes(start, &next) {
        warn!("config reload: {what} changed; that takes a restart (the running value stays)");
    }
    policy.store(new_policy);
    live.store(settings);
    Ok(changed)
}

/// Which reloadable parts differ (for the log line).
fn reloaded_changes(a: &Config, b: &Config) -> Vec<&'static str> {
    let (s, t) = (&a.server, &b.server);
    let dbg =
        |x: &dyn std::fmt::Debug, y: &dyn std::fmt::Debug| format!("{x:?}") != format!("{y:?}");
    [
        ("[policy]", dbg(&a.policy, &b.policy)),
        ("[execute]", a.execute != b.execute),
        (
            "routing ([databases], upstream, upstream TLS)",
            a.databases != b.databases
                || s.upstream != t.upstream
                || s.upstream_tls != t.upstream_tls
                || s.upstream_tls_ca_file != t.upstream_tls_ca_file
                || s.upstream_tls_server_name != t.upstream_tls_server_name,
        ),
        (
            "client TLS files",
            s.tls_cert_file != t.tls_cert_file || s.tls_key_file != t.tls_key_file,
        ),
        (
            "startup_timeout/connect_timeout/ready_timeout",
            s.startup_timeout != t.startup_timeout
                || s.connect_timeout != t.connect_timeout
                || a.admin.ready_timeout != b.admin.ready_timeout,
        ),
        ("log_level", s.log_level != t.log_level),
    ]
    .into_iter()
    .filter_map(|(what, changed)| changed.then_some(what))
    .collect()
}

/// What differs between the start configuration and the new file outside the allow-list.
fn restart_only_changes(start: &Config, next: &Config) -> Vec<&'static str> {
    let (s, t) = (&start.server, &next.server);
    let named: Vec<&'static str> = [
        ("[server] listen", s.listen != t.listen),
        ("[server] listen_unix", s.listen_unix != t.listen_unix),
        (
            "[server] max_connections",
            s.max_connections != t.max_connections,
        ),
        (
            "[server] session_threads",
            s.session_threads != t.session_threads,
        ),
        (
            "[server] message-size limits (max_message_size, max_small_message_size, \
             max_auth_message_size, max_held_bytes)",
            s.max_message_size != t.max_message_size
                || s.max_small_message_size != t.max_small_message_size
                || s.max_auth_message_size != t.max_auth_message_size
                || s.max_held_bytes != t.max_held_bytes,
        ),
        (
            "[server] shutdown_grace",
            s.shutdown_grace != t.shutdown_grace,
        ),
        ("[server] log_format", s.log_format != t.log_format),
        ("[admin] listen", start.admin.listen != next.admin.listen),
        (
            "[audit]",
            format!("{:?}", start.audit) != format!("{:?}", next.audit),
        ),
    ]
    .into_iter()
    .filter_map(|(what, changed)| changed.then_some(what))
    .collect();
    // A restart-only key not named above still must not change silently.
    if named.is_empty() && format!("{:?}", in_force(start, next)) != format!("{next:?}") {
        return vec!["a setting that is read at start only"];
    }
    named
}

/// Reloads on every SIGHUP until aborted. (The audit log's own SIGHUP task reopens its file.)
pub(crate) fn spawn(
    src: ReloadSource,
    shared: Arc<super::Shared>,
) -> std::io::Result<Option<tokio::task::JoinHandle<()>>> {
    use tokio::signal::unix::{signal, SignalKind};
    let Some(policy) = shared.policy.clone() else {
        return Ok(None);
    };
    let mut hup = signal(SignalKind::hangup())?;
    Ok(Some(tokio::spawn(async move {
        while hup.recv().await.is_some() {
            match reload(&src, &shared.config, &shared.live, &policy) {
                Ok(changed) => {
                    crate::metrics::config_reloaded(true);
                    let what = if changed.is_empty() {
                        "nothing reloadable changed".to_string()
                    } else {
                        format!("changed: {}", changed.join(", "))
                    };
                    info!(path = %src.path.display(), "config reloaded ({what}); applies to the next statement and session");
                }
                Err(e) => {
                    crate::metrics::config_reloaded(false);
                    error!(path = %src.path.display(), "config reload refused, the old configuration stays: {e}");
                }
            }
        }
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(text: &str) -> Config {
        Config::from_toml(text).unwrap()
    }

    #[test]
    fn reloadable_values_come_from_the_new_file_the_rest_from_the_start() {
        let start = cfg("[server]\nlisten = \"127.0.0.1:1\"\nconnect_timeout = \"1s\"\n");
        let next = cfg(
            "[server]\nlisten = \"127.0.0.1:2\"\nconnect_timeout = \"2s\"\nmax_connections = 5\n\
             [execute]\nquick_lock_timeout = \"777ms\"\n\
             [databases.a]\nupstream = \"127.0.0.1:3\"\n",
        );
        let f = in_force(&start, &next);
        assert_eq!(f.server.listen, "127.0.0.1:1");
        assert_eq!(f.server.max_connections, start.server.max_connections);
        assert_eq!(f.server.connect_timeout, std::time::Duration::from_secs(2));
        assert_eq!(
            f.execute.quick_lock_timeout,
            std::time::Duration::from_millis(777)
        );
        assert!(f.databases.contains_key("a"));
        assert_eq!(
            restart_only_changes(&start, &next),
            vec!["[server] listen", "[server] max_connections"]
        );
        assert_eq!(
            reloaded_changes(&start, &f),
            vec![
                "[execute]",
                "routing ([databases], upstream, upstream TLS)",
                "startup_timeout/connect_timeout/ready_timeout"
            ]
        );
        assert!(restart_only_changes(&start, &start).is_empty());
        assert!(reloaded_changes(&start, &in_force(&start, &start)).is_empty());
    }
}
