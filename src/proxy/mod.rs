//! The proxy: listener, one session task per client, upstream connection, TLS, shutdown.
//!
//! [`run`] owns the accept loop. Each accepted client gets a session task
//! (`session`) holding a semaphore permit, so `max_connections` is a hard cap. Shutdown is in
//! two phases: stop accepting, then every session ends at its next idle point or when
//! `shutdown_grace` runs out; `run` returns when the last session is gone.
//!
//! # TLS and SCRAM (DESIGN.md decision 2)
//! Authentication is relayed byte-for-byte; pgwarden holds no credentials. Whenever the server
//! leg is TLS, `SCRAM-SHA-256-PLUS` is removed from the server's AuthenticationSASL offer:
//! channel binding would bind the proof to pgwarden's certificate, never the server's, and
//! libpq refuses a PLUS offer on a plaintext client leg outright.
//!
//! | client leg | server leg | trust / md5 | SCRAM-SHA-256 |
//! |---|---|---|---|
//! | plain | plain | yes | yes |
//! | plain | TLS | yes | yes (PLUS not offered) |
//! | TLS | plain | yes | yes (server offers no PLUS on plaintext) |
//! | TLS | TLS | yes | only with `channel_binding=disable` on the client |
//!
//! In the last cell a libpq client with the default `channel_binding=prefer` announces "I can
//! bind but you did not offer it" (`y` flag), which the server rightly treats as a downgrade:
//! `FATAL: SCRAM channel binding negotiation error`. The flag is covered by the SCRAM proof, so a
//! relay cannot rewrite it. `channel_binding=require` cannot work through pgwarden at all.
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch, Semaphore};
use tracing::{info, warn};

use crate::config::Config;
use crate::protocol::FrameLimits;

mod budget;
mod bufpool;
mod cancels;
pub mod cli;
mod guard;
pub mod hook;
pub mod reload;
mod route;
mod session;
pub mod stream;
mod timer;
pub mod tls;
mod upstream;
mod wake;
pub mod workers;

/// How many over-limit clients may be in the middle of being told "too many clients" at once;
/// beyond that they are closed without a word, so a flood cannot cost unbounded work.
const MAX_REJECTING: usize = 64;

/// Why the proxy could not run.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("TLS setup: {0}")]
    Tls(String),
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// What every session shares: configuration, TLS setups, the hook.
pub(crate) struct Shared {
    pub(crate) config: Arc<Config>,
    pub(crate) limits: FrameLimits,
    /// What a SIGHUP reload swaps: routes (upstream per database name, with their TLS), the
    /// client TLS acceptor, timeouts read at session start, `[execute]` (see `reload`).
    /// `config` above stays the start configuration, for what needs a restart.
    pub(crate) live: reload::Live,
    pub(crate) hook: Arc<dyn hook::StatementHook>,
    /// The policy every session's enforcer starts from (profiles applied per session).
    pub(crate) policy: Option<reload::LivePolicy>,
    /// The audit log writer (disabled when `[audit] enabled = false`).
    pub(crate) audit: crate::audit::AuditHandle,
    /// Bytes all sessions together may hold whole (`max_held_bytes`).
    pub(crate) held: Arc<budget::HeldBudget>,
    /// Sessions between attempts of a statement, woken by their client's CancelRequest.
    pub(crate) cancels: cancels::Cancels,
    /// What every session is doing now (the admin listener's `/activity`).
    pub(crate) activity: Arc<crate::admin::activity::Activity>,
}

impl Shared {
    fn new(
        config: Arc<Config>,
        hook: Arc<dyn hook::StatementHook>,
        audit: crate::audit::AuditHandle,
    ) -> Result<Self, ProxyError> {
        let s = &config.server;
        s.validate().map_err(ProxyError::Config)?;
        Ok(Shared {
            limits: s.frame_limits(),
            live: reload::Live::new(reload::Settings::build(config.clone())?),
            hook,
            audit,
            held: budget::HeldBudget::new(s.max_held_bytes),
            cancels: cancels::Cancels::default(),
            activity: Arc::default(),
            policy: Some(reload::LivePolicy::new(
                crate::policy::Policy::from_config(&config.policy)
                    .map_err(|e| ProxyError::Config(e.to_string()))?,
            )),
            config,
        })
    }
}

impl Shared {
    /// Every upstream address sessions may be forwarded to (what `/readyz` probes).
    pub(crate) fn upstreams(&self) -> Vec<String> {
        self.live
            .now()
            .routes
            .upstreams()
            .iter()
            .map(|u| u.name.clone())
            .collect()
    }
}

/// Checks everything `run` would refuse (TLS files, server name) without starting anything,
/// so the command line can fail before it binds.
pub fn preflight(config: &Config) -> Result<(), ProxyError> {
    Shared::new(
        Arc::new(config.clone()),
        Arc::new(hook::AllowAll) as Arc<dyn hook::StatementHook>,
        crate::audit::AuditHandle::disabled(),
    )
    .map(|_| ())
}

/// Runs the proxy on `listener` until `shutdown` completes, then shuts down gracefully and
/// returns once every session has ended (idle ones at once, busy ones within `shutdown_grace`).
pub async fn run(
    listener: TcpListener,
    config: Arc<Config>,
    hook: Arc<dyn hook::StatementHook>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ProxyError> {
    run_with(listener, Extras::default(), config, hook, shutdown).await
}

/// What `pgwarden serve` adds to [`run`]: the admin listener and SIGHUP reload.
#[derive(Default)]
pub struct Extras {
    /// The admin HTTP listener (`[admin] listen`), bound by the caller.
    pub admin: Option<TcpListener>,
    /// Reload the reloadable settings from this file on SIGHUP (see `reload`).
    pub reload: Option<reload::ReloadSource>,
    /// The unix-domain socket listener (`listen_unix`) and its path (removed at shutdown).
    pub unix: Option<(tokio::net::UnixListener, std::path::PathBuf)>,
    /// Run sessions on these threads (one runtime per core) instead of the caller's runtime.
    pub workers: Option<workers::Workers>,
}

/// Clients on the unix socket have no address: sessions get this one, shown as "unix socket".
const UNIX_PEER: std::net::SocketAddr =
    std::net::SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 0);

/// How the activity view names a client.
pub(crate) fn client_label(peer: std::net::SocketAddr) -> String {
    if peer == UNIX_PEER {
        "unix socket".into()
    } else {
        peer.to_string()
    }
}

async fn accept_unix(
    l: Option<&tokio::net::UnixListener>,
) -> std::io::Result<tokio::net::UnixStream> {
    match l {
        Some(l) => l.accept().await.map(|(u, _)| u),
        None => std::future::pending().await,
    }
}

/// [`run`], with the admin HTTP listener (`[admin] listen`) when one is given.
pub async fn run_with(
    listener: TcpListener,
    extras: Extras,
    config: Arc<Config>,
    hook: Arc<dyn hook::StatementHook>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ProxyError> {
    // PGWARDEN_BENCH_NO_METRICS: bench/metrics_cost.sh measures what metrics cost the
    // forwarding path by running a second pgwarden without them (no recorder, /metrics empty).
    if std::env::var_os("PGWARDEN_BENCH_NO_METRICS").is_none() {
        crate::metrics::install();
    }
    let audit = crate::audit::AuditHandle::start(&config.audit)
        .map_err(|e| ProxyError::Config(format!("[audit]: {e}")))?;
    // logrotate renames the file and sends SIGHUP: reopen the path.
    let sighup = if audit.is_enabled() {
        Some(
            audit
                .reopen_on_sighup()
                .map_err(|e| ProxyError::Config(format!("[audit]: {e}")))?,
        )
    } else {
        None
    };
    let shared = Arc::new(Shared::new(config, hook, audit)?);
    let admin = Arc::new(crate::admin::Admin {
        shared: shared.clone(),
        accepting: std::sync::atomic::AtomicBool::new(true),
    });
    let reload_task = match extras.reload {
        Some(src) => reload::spawn(src, shared.clone())?,
        None => None,
    };
    let admin_task = extras
        .admin
        .map(|l| tokio::spawn(crate::admin::serve(l, admin.clone())));
    let server = &shared.config.server;
    let slots = Arc::new(Semaphore::new(server.max_connections));
    let rejecting = Arc::new(Semaphore::new(MAX_REJECTING));
    let (stop_tx, stop_rx) = watch::channel(false);
    // Every session holds a clone of `alive_tx`; `recv` returns None when the last is dropped.
    let (alive_tx, mut alive_rx) = mpsc::channel::<()>(1);
    let ids = AtomicU64::new(1);
    tokio::pin!(shutdown);

    let session_threads = extras.workers;
    let (unix, unix_path) = match extras.unix {
        Some((l, p)) => (Some(l), Some(p)),
        None => (None, None),
    };
    loop {
        let accepted = tokio::select! {
            _ = &mut shutdown => break,
            a = listener.accept() => a.map(|(tcp, peer)| {
                let _ = tcp.set_nodelay(true);
                (stream::Conn::Plain(tcp), peer)
            }),
            a = accept_unix(unix.as_ref()) => a.map(|u| (stream::Conn::Unix(u), UNIX_PEER)),
        };
        let (conn, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors and similar: back off instead of spinning.
                warn!("accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        crate::metrics::connection_accepted();
        let permit = slots.clone().try_acquire_owned().ok();
        let reject_permit = if permit.is_none() {
            match rejecting.clone().try_acquire_owned() {
                Ok(p) => Some(p),
                Err(_) => {
                    warn!(%peer, "too many connections; closing without a message");
                    continue;
                }
            }
        } else {
            None
        };
        let id = ids.fetch_add(1, Ordering::Relaxed);
        let shared = shared.clone();
        let stop = stop_rx.clone();
        let alive = alive_tx.clone();
        let Some(threads) = &session_threads else {
            tokio::spawn(async move {
                session::run(shared, conn, peer, permit, stop, id).await;
                drop(reject_permit);
                drop(alive);
            });
            continue;
        };
        let std_conn = match conn.into_std() {
            Ok(c) => c,
            Err(e) => {
                warn!(%peer, "cannot hand the connection to a session thread: {e}");
                continue;
            }
        };
        threads.spawn(move || async move {
            match std_conn.into_conn() {
                Ok(conn) => session::run(shared, conn, peer, permit, stop, id).await,
                Err(e) => warn!(%peer, "cannot register the connection on its session thread: {e}"),
            }
            drop(reject_permit);
            drop(alive);
        });
    }

    drop(listener);
    drop(unix);
    if let Some(p) = &unix_path {
        let _ = std::fs::remove_file(p);
    }
    admin.accepting.store(false, Ordering::Relaxed);
    info!(
        "shutting down: stopped accepting; sessions get up to {:?} to finish",
        server.shutdown_grace
    );
    let _ = stop_tx.send(true);
    drop(alive_tx);
    // Sessions close themselves after shutdown_grace; the margin covers their final writes.
    let limit = server.shutdown_grace + std::time::Duration::from_secs(5);
    if tokio::time::timeout(limit, alive_rx.recv()).await.is_err() {
        warn!("some sessions did not end within shutdown_grace; abandoning them");
    }
    // Everything queued for the audit log is written and fsynced before the process exits.
    shared.audit.shutdown().await;
    if let Some(task) = sighup {
        task.abort();
    }
    if let Some(task) = admin_task {
        task.abort();
    }
    if let Some(task) = reload_task {
        task.abort();
    }
    info!("shutdown complete");
    Ok(())
}
