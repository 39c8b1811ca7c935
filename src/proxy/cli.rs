//! `pgwarden serve`: load the config, set up logging, bind, run the proxy until a signal.
use std::path::PathBuf;
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::config::Config;
use crate::proxy::hook::{AllowAll, StatementHook};

/// Command-line flags of `pgwarden serve`; flags override the config file.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Configuration file (TOML). See config/pgwarden.toml.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Address to accept clients on (default 127.0.0.1:6432).
    #[arg(long)]
    pub listen: Option<String>,
    /// PostgreSQL server to forward to (default 127.0.0.1:5432).
    #[arg(long)]
    pub upstream: Option<String>,
    /// Log format: text or json.
    #[arg(long)]
    pub log_format: Option<String>,
    /// Admin HTTP listener (/metrics /healthz /readyz /activity), as `[admin] listen`.
    #[arg(long)]
    pub admin_listen: Option<String>,
}

/// Runs the proxy; returns the process exit code (0 after a clean shutdown, 1 on a runtime
/// failure such as a port in use, 2 on a bad configuration; 3 is a shutdown forced by a
/// second SIGTERM/SIGINT, see `signal`).
pub fn run(args: ServeArgs) -> u8 {
    let config = match load(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("pgwarden serve: {}", one_line(&e.to_string()));
            return 2;
        }
    };
    init_logging(&config);
    // The listener, admin endpoint, audit writer and signals run on this thread; sessions on
    // one single-threaded runtime per core (proxy/workers.rs says why).
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("pgwarden serve: cannot start the runtime: {e}");
            return 1;
        }
    };
    let threads = match config.server.session_threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let workers = match crate::proxy::workers::Workers::start(threads) {
        Ok(w) => w,
        Err(e) => {
            eprintln!("pgwarden serve: cannot start the session threads: {e}");
            return 1;
        }
    };
    match runtime.block_on(serve(config, reload_source(&args), workers)) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("pgwarden serve: {}", one_line(&e.to_string()));
            1
        }
    }
}

/// TOML errors come as a multi-line snippet; the first line says where, the last one what.
fn one_line(msg: &str) -> String {
    let lines: Vec<&str> = msg
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    match lines.as_slice() {
        [] => String::new(),
        [only] => (*only).to_owned(),
        [first, .., last] => format!("{first}: {last}"),
    }
}

fn load(args: &ServeArgs) -> anyhow::Result<Config> {
    let mut config = match &args.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    let s = &mut config.server;
    if let Some(v) = &args.listen {
        s.listen = v.clone();
    }
    if let Some(v) = &args.upstream {
        s.upstream = v.clone();
    }
    if let Some(v) = &args.log_format {
        s.log_format = v.clone();
    }
    if let Some(v) = &args.admin_listen {
        config.admin.listen = Some(v.clone());
    }
    config.validate().map_err(anyhow::Error::msg)?;
    crate::proxy::preflight(&config)?;
    Ok(config)
}

fn init_logging(config: &Config) {
    use tracing_subscriber::EnvFilter;
    // RUST_LOG, when set, decides the filter for the whole run; otherwise `log_level` does,
    // and a SIGHUP reload may change it (`proxy::reload`).
    let from_env = EnvFilter::try_from_default_env().ok();
    let reloadable = from_env.is_none();
    let filter = from_env
        .or_else(|| EnvFilter::try_new(&config.server.log_level).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    // A second initialisation (tests) is harmless; ignore it.
    macro_rules! install {
        ($b:expr) => {{
            let b = $b.with_filter_reloading();
            let handle = b.reload_handle();
            if b.try_init().is_ok() && reloadable {
                crate::proxy::reload::set_log_filter_reloader(Box::new(move |level: &str| {
                    let f = EnvFilter::try_new(level)
                        .map_err(|e| format!("[server] log_level {level:?}: {e}"))?;
                    handle
                        .reload(f)
                        .map_err(|e| format!("cannot change the log filter: {e}"))
                }));
            }
        }};
    }
    if config.server.log_format == "json" {
        install!(builder.json())
    } else {
        install!(builder)
    }
}

/// What a SIGHUP reload reads: the same file, with the same command-line overrides.
fn reload_source(args: &ServeArgs) -> Option<crate::proxy::reload::ReloadSource> {
    let path = args.config.clone()?;
    let (listen, upstream, log_format, admin_listen) = (
        args.listen.clone(),
        args.upstream.clone(),
        args.log_format.clone(),
        args.admin_listen.clone(),
    );
    Some(crate::proxy::reload::ReloadSource {
        path,
        overrides: Box::new(move |c: &mut Config| {
            if let Some(v) = &listen {
                c.server.listen = v.clone();
            }
            if let Some(v) = &upstream {
                c.server.upstream = v.clone();
            }
            if let Some(v) = &log_format {
                c.server.log_format = v.clone();
            }
            if let Some(v) = &admin_listen {
                c.admin.listen = Some(v.clone());
            }
        }),
    })
}

async fn serve(
    config: Config,
    reload: Option<crate::proxy::reload::ReloadSource>,
    workers: crate::proxy::workers::Workers,
) -> anyhow::Result<()> {
    // Before `listening on` is logged: whoever waits for that line may signal at once.
    hangup_is_not_fatal(config.audit.enabled, reload.is_some());
    let listen = config.server.listen.clone();
    let listener = TcpListener::bind(&listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {listen}: {e}"))?;
    let addr = listener.local_addr()?;
    // Bound before `listening on` is logged: whoever waits for that line can scrape at once.
    let admin = match &config.admin.listen {
        Some(a) => {
            let l = TcpListener::bind(a)
                .await
                .map_err(|e| anyhow::anyhow!("cannot listen on {a} ([admin] listen): {e}"))?;
            tracing::info!(
                "admin HTTP endpoint at {} (/metrics /healthz /readyz /activity)",
                l.local_addr()?
            );
            Some(l)
        }
        None => None,
    };
    let unix = match &config.server.listen_unix {
        Some(path) => {
            let l = bind_unix(path)?;
            tracing::info!("accepting clients on unix socket {}", path.display());
            Some((l, path.clone()))
        }
        None => None,
    };
    // Handlers are installed before `listening on` is logged: a signal sent right after that
    // line must not meet the default action (which ends the process).
    let term_installed = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| anyhow::anyhow!("cannot install the SIGTERM handler: {e}"))?;
    let int_installed = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .map_err(|e| anyhow::anyhow!("cannot install the SIGINT handler: {e}"))?;
    tracing::info!(upstream = %config.server.upstream, "listening on {addr}");
    let hook: Arc<dyn StatementHook> = Arc::new(AllowAll);
    let extras = crate::proxy::Extras {
        admin,
        reload,
        unix,
        workers: Some(workers),
    };
    let shutdown = signal(term_installed, int_installed);
    crate::proxy::run_with(listener, extras, Arc::new(config), hook, shutdown).await?;
    Ok(())
}

/// SIGHUP's default action ends the process, and `systemctl reload` / logrotate send it. The
/// audit writer reopens its file on SIGHUP (when the audit log is on); this listener makes sure
/// SIGHUP never kills pgwarden otherwise, and says what it did and did not do. With
/// `--config`, `proxy::reload` re-reads the file on the same signal.
fn hangup_is_not_fatal(audit_enabled: bool, reloads: bool) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            return;
        };
        tokio::spawn(async move {
            let audit = if audit_enabled {
                "the audit log is reopened"
            } else {
                "no audit log to reopen"
            };
            while hup.recv().await.is_some() {
                if reloads {
                    // The reload task (proxy::reload) says what it applied.
                    tracing::info!("received SIGHUP: {audit}; reloading the configuration");
                } else {
                    tracing::info!("received SIGHUP: {audit}; no --config file to re-read");
                }
            }
        });
    }
}

/// Completes on SIGTERM or SIGINT (streams registered by the caller).
async fn signal(mut term: tokio::signal::unix::Signal, mut int: tokio::signal::unix::Signal) {
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    tracing::info!("received shutdown signal: draining (a second SIGTERM/SIGINT stops at once)");
    // A second signal means "now": sessions still draining are cut, exit status 3. Audit
    // records already handed to the writer are in the file (each is one append); DDL records
    // were on disk before their statement was forwarded.
    tokio::spawn(async {
        second_signal().await;
        tracing::warn!("second shutdown signal: stopping now, open sessions are cut");
        std::process::exit(3);
    });
}

async fn second_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// Binds the unix socket. A socket file nobody answers on is left over from a process that
/// died: it is replaced; one that answers belongs to a running server and is an error.
fn bind_unix(path: &std::path::Path) -> anyhow::Result<tokio::net::UnixListener> {
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            anyhow::bail!(
                "cannot listen on {}: another server is accepting there",
                path.display()
            );
        }
        let _ = std::fs::remove_file(path);
    }
    let l = tokio::net::UnixListener::bind(path)
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", path.display()))?;
    // As PostgreSQL's default unix_socket_permissions (0777): authentication still applies.
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o777));
    Ok(l)
}
