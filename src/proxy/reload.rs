//! Configuration reload on SIGHUP: the policy every session decides with is swapped, and the
//! next DDL statement of every open session (and every new one) uses it.
//!
//! What reloads: the whole `[policy]` section (mode, rule actions, thresholds, profiles).
//! Everything else is read once at start: a changed value there is logged as "needs a
//! restart" and the old value stays in force. A file that does not load or validate is
//! refused as a whole: the error is logged, the old configuration stays, and
//! `pgwarden_config_last_reload_successful` drops to 0.
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use tracing::{error, info, warn};

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

/// Where a reload reads the configuration from, and the command-line flags that override it.
pub struct ReloadSource {
    pub path: PathBuf,
    pub overrides: Box<dyn Fn(&mut Config) + Send + Sync>,
}

/// Reads the file again and applies what may change; returns why it was refused.
pub(crate) fn reload(
    src: &ReloadSource,
    running: &Config,
    live: &LivePolicy,
) -> Result<(), String> {
    let mut next = Config::load(&src.path).map_err(|e| e.to_string())?;
    (src.overrides)(&mut next);
    next.server.validate()?;
    let policy = Policy::from_config(&next.policy).map_err(|e| e.to_string())?;
    for (what, changed) in restart_only_changes(running, &next) {
        if changed {
            warn!("config reload: {what} changed; that takes a restart (the old value stays)");
        }
    }
    live.store(policy);
    Ok(())
}

fn restart_only_changes(a: &Config, b: &Config) -> Vec<(&'static str, bool)> {
    let (s, t) = (&a.server, &b.server);
    vec![
        ("[server] listen", s.listen != t.listen),
        ("[server] upstream", s.upstream != t.upstream),
        (
            "[server] max_connections",
            s.max_connections != t.max_connections,
        ),
        (
            "[server] TLS settings",
            s.tls_cert_file != t.tls_cert_file
                || s.tls_key_file != t.tls_key_file
                || s.upstream_tls != t.upstream_tls
                || s.upstream_tls_ca_file != t.upstream_tls_ca_file
                || s.upstream_tls_server_name != t.upstream_tls_server_name,
        ),
        (
            "[server] timeouts and limits",
            s.startup_timeout != t.startup_timeout
                || s.connect_timeout != t.connect_timeout
                || s.shutdown_grace != t.shutdown_grace
                || s.max_message_size != t.max_message_size
                || s.max_small_message_size != t.max_small_message_size
                || s.max_auth_message_size != t.max_auth_message_size,
        ),
        (
            "[server] log_format/log_level",
            s.log_format != t.log_format || s.log_level != t.log_level,
        ),
        ("[admin] listen", a.admin.listen != b.admin.listen),
        ("[databases]", a.databases != b.databases),
        (
            "[audit]",
            format!("{:?}", a.audit) != format!("{:?}", b.audit),
        ),
    ]
}

/// Reloads on every SIGHUP until aborted. (The audit log's own SIGHUP task reopens its file.)
pub(crate) fn spawn(
    src: ReloadSource,
    running: Arc<Config>,
    live: LivePolicy,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hup = signal(SignalKind::hangup())?;
    Ok(tokio::spawn(async move {
        while hup.recv().await.is_some() {
            match reload(&src, &running, &live) {
                Ok(()) => {
                    crate::metrics::config_reloaded(true);
                    info!(path = %src.path.display(), "config reloaded: [policy] applies to the next statement of every session");
                }
                Err(e) => {
                    crate::metrics::config_reloaded(false);
                    error!(path = %src.path.display(), "config reload refused, the old configuration stays: {e}");
                }
            }
        }
    }))
}
