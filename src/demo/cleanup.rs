//! Leaving the machine as the demo found it: the private cluster stopped and its directory
//! removed, or the demo database dropped — on success, on failure, on Ctrl-C/SIGTERM, and (by
//! a watchdog process) even when the demo itself is killed with SIGKILL.
//!
//! Everything to undo is registered here *before* it is created; [`run`] undoes it once,
//! whoever calls it first (the main flow or the signal handler).
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;

use super::cluster::{is_root, PrivateCluster};
use super::db::{ident, Server};

/// What to undo, in this order.
#[derive(Default)]
struct State {
    watchdog: Option<Child>,
    cluster: Option<(PathBuf, PathBuf)>,
    database: Option<(Server, String)>,
    dirs: Vec<PathBuf>,
}

static STATE: Mutex<Option<State>> = Mutex::new(None);

fn with_state<R>(f: impl FnOnce(&mut State) -> R) -> R {
    let mut guard = STATE.lock().unwrap_or_else(|p| p.into_inner());
    f(guard.get_or_insert_with(State::default))
}

/// Remove `dir` (recursively) at the end.
pub fn remove_dir(dir: PathBuf) {
    with_state(|s| s.dirs.push(dir));
}

/// Stop the cluster in `data` (pg_ctl from `bindir`) at the end.
pub fn stop_cluster(bindir: PathBuf, data: PathBuf) {
    with_state(|s| s.cluster = Some((bindir, data)));
}

/// Drop database `name` on `server` at the end.
pub fn drop_database(server: Server, name: String) {
    with_state(|s| s.database = Some((server, name)));
}

/// Starts (or replaces) the watchdog: a shell in its own process group that waits for this
/// process to disappear and then undoes what is registered, for the case where [`run`] never
/// runs (SIGKILL). A normal end kills the watchdog first.
pub fn arm_watchdog() {
    with_state(|s| {
        if let Some(mut w) = s.watchdog.take() {
            let _ = w.kill();
            let _ = w.wait();
        }
        let mut script = format!(
            "while kill -0 {} 2>/dev/null; do sleep 1; done\n",
            std::process::id()
        );
        if let Some((bindir, data)) = &s.cluster {
            let runas = if is_root() {
                "runuser -u postgres -- "
            } else {
                ""
            };
            script.push_str(&format!(
                "{runas}{} -D {} -m immediate stop >/dev/null 2>&1\n",
                sh_quote(&bindir.join("pg_ctl").display().to_string()),
                sh_quote(&data.display().to_string())
            ));
        }
        if let Some((server, name)) = &s.database {
            script.push_str(&format!(
                "{} -X -q -c {} >/dev/null 2>&1\n",
                sh_quote(&server.bindir.join("psql").display().to_string()),
                sh_quote(&drop_sql(name))
            ));
        }
        for dir in &s.dirs {
            script.push_str(&format!(
                "rm -rf {}\n",
                sh_quote(&dir.display().to_string())
            ));
        }
        let mut cmd = Command::new("sh");
        cmd.arg("-c").arg(script);
        if let Some((server, _)) = &s.database {
            cmd.envs(server.env("postgres"));
        }
        use std::os::unix::process::CommandExt;
        s.watchdog = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own process group: the Ctrl-C that ends the demo must not end the watchdog.
            .process_group(0)
            .spawn()
            .ok();
    });
}

/// Undoes everything registered; returns one line per thing undone. Safe to call twice.
pub fn run() -> Vec<String> {
    let Some(mut s) = STATE.lock().unwrap_or_else(|p| p.into_inner()).take() else {
        return Vec::new();
    };
    let mut done = Vec::new();
    if let Some(mut w) = s.watchdog.take() {
        let _ = w.kill();
        let _ = w.wait();
    }
    if let Some((bindir, data)) = s.cluster.take() {
        PrivateCluster::stop(&bindir, &data);
        done.push(format!("PostgreSQL cluster in {} stopped", data.display()));
    }
    if let Some((server, name)) = s.database.take() {
        let mut drop = server.psql_command("postgres", &drop_sql(&name));
        match drop.stdin(Stdio::null()).output() {
            Ok(out) if out.status.success() => {
                done.push(format!("database {name} dropped on {}", server.addr()))
            }
            Ok(out) => done.push(format!(
                "could not drop database {name} on {}: {}{} — drop it by hand",
                server.addr(),
                String::from_utf8_lossy(&out.stdout).trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            )),
            Err(e) => done.push(format!(
                "could not drop database {name}: {e} — drop it by hand"
            )),
        }
    }
    for dir in s.dirs.drain(..) {
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => done.push(format!("{} removed", dir.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => done.push(format!("could not remove {}: {e}", dir.display())),
        }
    }
    done
}

/// `WITH (FORCE)` (PostgreSQL 13+) ends sessions a killed client may have left behind.
fn drop_sql(name: &str) -> String {
    format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", ident(name))
}

fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// Registers SIGINT/SIGTERM now (so no signal falls through to the default action once this
/// returns) and spawns the task that, on either, ends the running program, undoes everything
/// and exits 130/143. Call inside the runtime.
pub async fn install_signal_handler() -> std::io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::spawn(async move {
        let code = tokio::select! {
            _ = term.recv() => 143,
            _ = int.recv() => 130,
        };
        super::INTERRUPTED.store(true, std::sync::atomic::Ordering::SeqCst);
        eprintln!("\npgwarden demo: interrupted, cleaning up");
        super::run::kill_current();
        let done = tokio::task::spawn_blocking(run).await.unwrap_or_default();
        for line in done {
            eprintln!("  {line}");
        }
        std::process::exit(code);
    });
    Ok(())
}
