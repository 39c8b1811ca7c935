//! `pgwarden demo`: pgwarden's main job in one command, on a machine with nothing set up.
//!
//! Without `--upstream` it starts a private throw-away PostgreSQL cluster from the machine's
//! own binaries; with `--upstream HOST:PORT` it uses that server and a database of its own.
//! Either way it loads a 1,000,000-row table, starts pgwarden (in this process) in front of it,
//! runs a small real Alembic project through pgwarden one revision at a time — one safe, one
//! pgwarden rewrites into its safe form, one it refuses — and prints each decision (read back
//! from the audit log), Alembic's error for the refused one, and `pgwarden audit report`.
//! Then it removes everything it created, also on Ctrl-C/SIGTERM ([`cleanup`]).
//!
//! It installs nothing: a missing program stops it before anything is created, with the
//! command that installs it. The one download is the Python venv (the test suite's pinned
//! Alembic/psycopg2 from PyPI), cached across runs.
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub mod alembic;
pub mod cleanup;
pub mod cluster;
pub mod db;
pub mod narrate;
pub mod run;

use alembic::Expect;
use db::Server;

/// Set once Ctrl-C/SIGTERM arrived: the cleanup then owns the machine.
pub(crate) static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Flags of `pgwarden demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Use this PostgreSQL server instead of a private throw-away cluster. The demo creates a
    /// database of its own there (pgwarden_demo_<pid>_<time>) and drops it at the end.
    /// Log-in: --user, and libpq's PGPASSWORD / ~/.pgpass.
    #[arg(long, value_name = "HOST:PORT")]
    pub upstream: Option<String>,
    /// Role to log in as with --upstream (must be allowed to CREATE DATABASE; default: $PGUSER,
    /// else postgres).
    #[arg(long)]
    pub user: Option<String>,
    /// Python venv for Alembic, created on first use from PyPI and reused
    /// (default: target/demo-venv in a pgwarden checkout, else ~/.cache/pgwarden/demo-venv).
    #[arg(long, value_name = "DIR")]
    pub venv: Option<PathBuf>,
    /// Directory with the PostgreSQL programs (initdb, pg_ctl, postgres, psql)
    /// (default: `pg_config --bindir`, then /usr/lib/postgresql/*/bin).
    #[arg(long, value_name = "DIR")]
    pub pg_bindir: Option<PathBuf>,
}

/// Why the demo stopped.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// Something the machine must have first; `fix` is the command that provides it.
    #[error("missing {what}.\nInstall it with:\n    {fix}")]
    Missing { what: String, fix: String },
    #[error("{step} failed:\n{output}")]
    Step { step: String, output: String },
    #[error("cannot run {program}: {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// pgwarden did not do what the demo shows (the demo is a test too).
    #[error("{0}")]
    Unexpected(String),
    #[error("--upstream: {0}")]
    Usage(String),
    #[error("interrupted")]
    Interrupted,
}

impl DemoError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> DemoError {
        DemoError::Io {
            path: path.display().to_string(),
            source,
        }
    }
}

/// Runs the demo; exit code 0 when pgwarden did everything shown, 1 when it did not or a step
/// failed, 2 on a missing prerequisite or a bad flag, 130/143 after Ctrl-C/SIGTERM.
pub fn run(args: DemoArgs) -> u8 {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("pgwarden demo: cannot start the runtime: {e}");
            return 1;
        }
    };
    if let Err(e) = runtime.block_on(cleanup::install_signal_handler()) {
        eprintln!("pgwarden demo: cannot install the signal handler: {e}");
        return 1;
    }
    let started = Instant::now();
    let result = demo(&runtime, &args);
    if INTERRUPTED.load(Ordering::SeqCst) {
        // The signal handler cleans up and exits; wait for it.
        std::thread::sleep(Duration::from_secs(120));
    }
    let undone = cleanup::run();
    if !undone.is_empty() {
        println!("\nCleanup:");
        for line in undone {
            println!("  {line}");
        }
    }
    match result {
        Ok(()) => {
            println!(
                "\nDemo finished in {:.1} s.",
                started.elapsed().as_secs_f64()
            );
            0
        }
        Err(e @ (DemoError::Missing { .. } | DemoError::Usage(_))) => {
            eprintln!("pgwarden demo: {e}");
            2
        }
        Err(e) => {
            eprintln!("pgwarden demo: {e}");
            1
        }
    }
}

fn step(n: u32, text: &str) {
    println!("[{n}/6] {text}");
    let _ = std::io::stdout().flush();
}

fn secs(t: Instant) -> String {
    format!("{:.1} s", t.elapsed().as_secs_f64())
}

fn demo(runtime: &tokio::runtime::Runtime, args: &DemoArgs) -> Result<(), DemoError> {
    // Everything the demo needs is checked before anything is created.
    let upstream = args
        .upstream
        .as_deref()
        .map(|u| {
            crate::config::server::split_host_port(u)
                .map(|(h, p)| (h.to_string(), p))
                .map_err(DemoError::Usage)
        })
        .transpose()?;
    let need: &[&str] = match upstream {
        Some(_) => &["psql"],
        None => &["initdb", "pg_ctl", "postgres", "psql"],
    };
    let bindir = cluster::find_bindir(args.pg_bindir.as_deref(), need)?;
    if upstream.is_none() {
        cluster::check_root_prerequisites()?;
    }
    alembic::check_python()?;

    println!(
        "pgwarden demo: a real Alembic project migrates a {}-row table through pgwarden.\n",
        db::ROWS
    );
    let work = std::env::temp_dir().join(format!(
        "pgwarden-demo-{}-{}",
        std::process::id(),
        unix_secs()
    ));
    cleanup::remove_dir(work.clone());
    std::fs::create_dir(&work).map_err(|e| DemoError::io(&work, e))?;
    let dbname = format!("pgwarden_demo_{}_{}", std::process::id(), unix_secs());

    let t = Instant::now();
    let server = match &upstream {
        None => {
            step(
                1,
                &format!(
                    "PostgreSQL: a private throw-away cluster (initdb and pg_ctl from {}{})",
                    bindir.display(),
                    if cluster::is_root() {
                        ", run as the OS user postgres because the server refuses root"
                    } else {
                        ""
                    }
                ),
            );
            let dir = work.join("pg");
            cleanup::stop_cluster(bindir.clone(), cluster::PrivateCluster::data_dir(&dir));
            cleanup::arm_watchdog();
            let c = cluster::PrivateCluster::init(&dir, &bindir)?;
            println!(
                "      in {}, listening on 127.0.0.1:{} only, random superuser password ({})",
                c.dir.display(),
                c.port,
                secs(t)
            );
            Server {
                host: "127.0.0.1".into(),
                port: c.port,
                user: cluster::SUPERUSER.into(),
                password: Some(c.password),
                bindir: bindir.clone(),
            }
        }
        Some((host, port)) => {
            let s = Server {
                host: host.clone(),
                port: *port,
                user: args
                    .user
                    .clone()
                    .or_else(|| std::env::var("PGUSER").ok())
                    .unwrap_or_else(|| "postgres".into()),
                password: None,
                bindir: bindir.clone(),
            };
            step(
                1,
                &format!(
                    "PostgreSQL: {} as {}; the demo works in a new database {dbname}, dropped at the end",
                    s.addr(),
                    s.user
                ),
            );
            s.sql("postgres", "SELECT 1")?;
            cleanup::drop_database(s.clone(), dbname.clone());
            cleanup::arm_watchdog();
            s
        }
    };
    server.sql(
        "postgres",
        &format!("CREATE DATABASE {}", db::ident(&dbname)),
    )?;

    let t = Instant::now();
    step(
        2,
        &format!(
            "table events: {} rows from generate_series, primary key, ANALYZE",
            db::ROWS
        ),
    );
    server.sql(&dbname, db::SETUP_SQL)?;
    let size = server.sql(
        &dbname,
        "SELECT pg_size_pretty(pg_total_relation_size('events'))",
    )?;
    println!("      {size} ({})", secs(t));

    let t = Instant::now();
    let venv = args.venv.clone().unwrap_or_else(alembic::default_venv);
    // Alembic runs in the project directory: the venv path must not be relative.
    let venv = std::path::absolute(&venv).map_err(|e| DemoError::io(&venv, e))?;
    if alembic::venv_ready(&venv) {
        step(
            3,
            &format!("Python venv with Alembic: {} (reused)", venv.display()),
        );
    } else {
        step(
            3,
            &format!(
                "Python venv with Alembic: creating {} from PyPI (first run only, about a minute)",
                venv.display()
            ),
        );
    }
    let python = alembic::ensure_venv(&venv, &work)?;
    println!("      ready ({})", secs(t));

    let audit_path = work.join("audit.jsonl");
    let log_path = work.join("pgwarden.log");
    let proxy = Proxy::start(runtime, &server, &audit_path, &log_path)?;
    step(
        4,
        &format!(
            "pgwarden listening on {} in front of {} (policy: enforce, the default; audit log: {})",
            proxy.addr,
            server.addr(),
            audit_path.display()
        ),
    );

    let project = work.join("alembic");
    alembic::write_project(&project)?;
    let url = format!(
        "postgresql+psycopg2://{}@{}/{}?sslmode=disable",
        url_encode(&server.user),
        proxy.addr,
        url_encode(&dbname)
    );
    let env: Vec<(String, String)> = server
        .env(&dbname)
        .into_iter()
        .filter(|(k, _)| k == "PGPASSWORD" || k == "PGAPPNAME")
        .collect();
    step(
        5,
        "alembic upgrade through pgwarden, one revision at a time (psycopg2)",
    );
    let outcome = migrate(&python, &project, &url, &env, &audit_path);
    if let Err(e) = &outcome {
        print_log_tail(&log_path);
        proxy.stop(runtime);
        return Err(DemoError::Unexpected(e.to_string()));
    }

    // What the refused revision left behind: nothing.
    let version = server.sql(&dbname, "SELECT version_num FROM alembic_version")?;
    let shard = server.sql(
        &dbname,
        "SELECT count(*) FROM information_schema.columns \
         WHERE table_name = 'events' AND column_name = 'shard'",
    )?;
    let index = server.sql(
        &dbname,
        "SELECT coalesce((SELECT indisvalid::text FROM pg_index \
         WHERE indexrelid = to_regclass('ix_events_created_at')), 'missing')",
    )?;
    println!("\n  checked on the server directly:");
    println!("    alembic_version = {version}");
    println!("    index ix_events_created_at valid: {index}");
    println!(
        "    events.shard exists: {}",
        if shard == "0" { "no" } else { "YES" }
    );
    let last_applied = alembic::REVISIONS
        .iter()
        .rev()
        .find(|r| r.expect != Expect::Refused)
        .map_or("", |r| r.id);
    if version != last_applied || shard != "0" || index != "true" {
        proxy.stop(runtime);
        return Err(DemoError::Unexpected(format!(
            "the database is not in the state pgwarden's decisions promise \
             (alembic_version {version}, want {last_applied}; shard columns {shard}; index valid {index})"
        )));
    }

    proxy.stop(runtime);
    step(6, "pgwarden audit report (what a deploy log would keep):\n");
    let bytes = std::fs::read(&audit_path).map_err(|e| DemoError::io(&audit_path, e))?;
    let path = audit_path.display().to_string();
    let report = crate::audit::report::build_report(&path, &bytes)
        .map_err(|e| DemoError::Unexpected(e.to_string()))?;
    print!(
        "{}",
        indent(&crate::audit::report::render_text(&report), "  ")
    );
    Ok(())
}

/// Upgrades revision by revision and prints what pgwarden did with each; an error when a
/// revision's outcome is not the one it is in the demo for.
fn migrate(
    python: &Path,
    project: &Path,
    url: &str,
    env: &[(String, String)],
    audit: &Path,
) -> Result<(), DemoError> {
    let mut offset = 0;
    for rev in alembic::REVISIONS {
        let t = Instant::now();
        println!("\n  {} {}", rev.id, rev.title());
        let out = alembic::upgrade(python, project, url, env, rev.id)?;
        let (decisions, next) = narrate::read_since(audit, offset)?;
        offset = next;
        let applied = out.status.success();
        println!(
            "    alembic upgrade {}: {} ({})",
            rev.id,
            if applied {
                "applied"
            } else {
                "FAILED — refused by pgwarden"
            },
            secs(t)
        );
        for d in decisions.iter().filter(|d| !narrate::is_noise(d)) {
            for line in narrate::render(d) {
                println!("    {line}");
            }
        }
        if !applied {
            println!("    Alembic showed:");
            print!("{}", indent(&alembic::error_block(&out.stderr), "      | "));
        }
        let has = |what: &str| decisions.iter().any(|d| d.decision == what);
        let as_expected = match rev.expect {
            Expect::Applied => applied,
            Expect::Rewritten => applied && has("rewrite"),
            Expect::Refused => !applied && has("reject"),
        };
        if !as_expected {
            return Err(DemoError::Unexpected(format!(
                "revision {} was expected to be {:?} but was not.\nAlembic's output:\n{}{}",
                rev.id, rev.expect, out.stdout, out.stderr
            )));
        }
    }
    Ok(())
}

/// pgwarden running in this process, in front of the demo's server.
struct Proxy {
    addr: std::net::SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), crate::proxy::ProxyError>>,
}

impl Proxy {
    fn start(
        runtime: &tokio::runtime::Runtime,
        server: &Server,
        audit: &Path,
        log: &Path,
    ) -> Result<Proxy, DemoError> {
        let mut config = crate::config::Config::default();
        config.server.upstream = server.addr();
        config.server.listen = "127.0.0.1:0".into();
        config.audit.path = audit.display().to_string();
        // pgwarden's own log (decisions, warnings) goes to a file: the demo prints the audit.
        let file = std::fs::File::create(log).map_err(|e| DemoError::io(log, e))?;
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
            .with_writer(std::sync::Mutex::new(file))
            .with_ansi(false)
            .try_init();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .map_err(|e| DemoError::io(Path::new("127.0.0.1:0"), e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| DemoError::io(Path::new("127.0.0.1:0"), e))?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let hook: Arc<dyn crate::proxy::hook::StatementHook> =
            Arc::new(crate::proxy::hook::AllowAll);
        let task = runtime.spawn(crate::proxy::run(
            listener,
            Arc::new(config),
            hook,
            async move {
                let _ = stopped.await;
            },
        ));
        Ok(Proxy { addr, stop, task })
    }

    /// Graceful shutdown: sessions end, the audit log is complete on disk.
    fn stop(self, runtime: &tokio::runtime::Runtime) {
        let _ = self.stop.send(());
        let _ = runtime
            .block_on(async { tokio::time::timeout(Duration::from_secs(30), self.task).await });
    }
}

fn print_log_tail(log: &Path) {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let from = lines.len().saturating_sub(30);
    eprintln!("pgwarden's log (last {} lines):", lines.len() - from);
    for l in &lines[from..] {
        eprintln!("  {l}");
    }
}

fn indent(text: &str, prefix: &str) -> String {
    text.lines().map(|l| format!("{prefix}{l}\n")).collect()
}

fn unix_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Percent-encodes everything but unreserved URL characters.
fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_parts_are_percent_encoded() {
        assert_eq!(url_encode("postgres"), "postgres");
        assert_eq!(url_encode("a b@c/d:e"), "a%20b%40c%2Fd%3Ae");
    }
}
