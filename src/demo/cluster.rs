//! A private throw-away PostgreSQL cluster from the machine's own binaries, for `pgwarden demo`.
//!
//! initdb + pg_ctl in a directory of its own, listening on a free loopback port only, with a
//! random superuser password (scram-sha-256), so nothing else on the machine can use it. The
//! server refuses to run as root: when we are root, every server program runs as the
//! `postgres` OS user through `runuser`, and the cluster directory is handed to that user.
use std::path::{Path, PathBuf};
use std::process::Command;

use super::run::{run, Cmd};
use super::DemoError;

/// The superuser of the private cluster.
pub const SUPERUSER: &str = "postgres";

/// Where the PostgreSQL programs are: `--pg-bindir`, `$PGWARDEN_PG_BINDIR`, `pg_config
/// --bindir`, then Debian's `/usr/lib/postgresql/<major>/bin`, newest first. `need` names the
/// programs that must be there.
pub fn find_bindir(explicit: Option<&Path>, need: &[&str]) -> Result<PathBuf, DemoError> {
    let mut candidates = Vec::new();
    if let Some(dir) = explicit {
        candidates.push(dir.to_path_buf());
    } else {
        if let Some(dir) = std::env::var_os("PGWARDEN_PG_BINDIR") {
            candidates.push(PathBuf::from(dir));
        }
        if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
            if out.status.success() {
                let dir = String::from_utf8_lossy(&out.stdout).trim().to_string();
                candidates.push(PathBuf::from(dir));
            }
        }
        let mut debian: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .map(|rd| rd.flatten().map(|e| e.path().join("bin")).collect())
            .unwrap_or_default();
        // Newest major first: "9.6" < "15" by number, not by text.
        debian.sort_by_key(|p| {
            p.parent()
                .and_then(|v| v.file_name())
                .and_then(|v| v.to_str())
                .and_then(|v| v.split('.').next())
                .and_then(|v| v.parse::<u32>().ok())
                .unwrap_or(0)
        });
        candidates.extend(debian.into_iter().rev());
    }
    candidates
        .iter()
        .find(|dir| need.iter().all(|p| dir.join(p).is_file()))
        .cloned()
        .ok_or_else(|| DemoError::Missing {
            what: format!(
                "the PostgreSQL programs {} (looked in {})",
                need.join(", "),
                candidates
                    .iter()
                    .map(|d| d.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            fix: "apt-get install -y postgresql-15 postgresql-client-15   (as root; or pass --pg-bindir DIR)"
                .into(),
        })
}

/// True when this process runs as root (then the server must run as `postgres`).
pub fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    // /proc/self belongs to the effective uid: no libc call needed.
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

/// Checks what running the server as root needs: `runuser` and the `postgres` OS user.
pub fn check_root_prerequisites() -> Result<(), DemoError> {
    if !is_root() {
        return Ok(());
    }
    let has_user = std::fs::read_to_string("/etc/passwd")
        .map(|p| p.lines().any(|l| l.starts_with("postgres:")))
        .unwrap_or(false);
    if !has_user {
        return Err(DemoError::Missing {
            what: "the `postgres` OS user (PostgreSQL refuses to run as root; the demo runs the server as `postgres`)".into(),
            fix: "apt-get install -y postgresql-15   (creates it; or run the demo as a non-root user)".into(),
        });
    }
    if Command::new("runuser").arg("--help").output().is_err() {
        return Err(DemoError::Missing {
            what: "runuser (to start the server as the `postgres` user)".into(),
            fix: "apt-get install -y util-linux".into(),
        });
    }
    Ok(())
}

/// A command for a server program: through `runuser -u postgres` when we are root.
pub fn server_command(program: &Path) -> Cmd {
    if is_root() {
        let mut c = Cmd::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Cmd::new(program)
    }
}

/// A running private cluster. Stop it with [`PrivateCluster::stop`] (the demo's cleanup does).
#[derive(Debug, Clone)]
pub struct PrivateCluster {
    /// Directory holding everything of the cluster (data, socket, log, password file).
    pub dir: PathBuf,
    pub data: PathBuf,
    pub port: u16,
    pub password: String,
    pub bindir: PathBuf,
}

impl PrivateCluster {
    /// The path where [`PrivateCluster::init`] puts a cluster under `dir`, so cleanup can be
    /// registered before anything exists.
    pub fn data_dir(dir: &Path) -> PathBuf {
        dir.join("data")
    }

    /// initdb in `dir` (created, must not exist yet) and start on a free loopback port.
    pub fn init(dir: &Path, bindir: &Path) -> Result<PrivateCluster, DemoError> {
        std::fs::create_dir(dir).map_err(|e| DemoError::io(dir, e))?;
        let sock = dir.join("sock");
        std::fs::create_dir(&sock).map_err(|e| DemoError::io(&sock, e))?;
        let password = random_hex(16)?;
        let pwfile = dir.join("pwfile");
        write_private(&pwfile, &format!("{password}\n"))?;
        chown_postgres(dir)?;
        let data = Self::data_dir(dir);
        let mut initdb = server_command(&bindir.join("initdb"));
        initdb
            .arg("-D")
            .arg(&data)
            .args(["-U", SUPERUSER, "-A", "scram-sha-256", "-E", "UTF8"])
            .args(["--locale=C", "--no-sync"])
            .arg(format!("--pwfile={}", pwfile.display()));
        run(initdb)?.ok("initdb")?;
        let conf = [
            "listen_addresses = '127.0.0.1'".to_string(),
            format!("unix_socket_directories = '{}'", sock.display()),
            // Throw-away data: durability costs time and buys nothing here.
            "fsync = off".into(),
            "synchronous_commit = off".into(),
            "full_page_writes = off".into(),
            "max_wal_size = '2GB'".into(),
            "log_min_messages = warning".into(),
        ];
        append(&data.join("postgresql.conf"), &(conf.join("\n") + "\n"))?;
        let mut cluster = PrivateCluster {
            dir: dir.to_path_buf(),
            data,
            port: 0,
            password,
            bindir: bindir.to_path_buf(),
        };
        // A free port can be taken by someone else before the server binds it: retry.
        let mut last = String::new();
        for _ in 0..5 {
            cluster.port = free_port()?;
            let mut start = server_command(&bindir.join("pg_ctl"));
            start
                .arg("-D")
                .arg(&cluster.data)
                .arg("-l")
                .arg(dir.join("server.log"))
                .args(["-w", "-t", "60", "-o"])
                .arg(format!("-p {}", cluster.port))
                .arg("start");
            let out = run(start)?;
            if out.status.success() {
                return Ok(cluster);
            }
            last = format!(
                "{}{}{}",
                out.stdout,
                out.stderr,
                std::fs::read_to_string(dir.join("server.log")).unwrap_or_default()
            );
        }
        Err(DemoError::Step {
            step: "pg_ctl start".into(),
            output: last,
        })
    }

    /// Stops the server at once (the data is thrown away anyway).
    pub fn stop(bindir: &Path, data: &Path) {
        if !data.join("postmaster.pid").exists() {
            return;
        }
        let mut stop = server_command(&bindir.join("pg_ctl"));
        stop.arg("-D")
            .arg(data)
            .args(["-w", "-t", "60", "-m", "immediate", "stop"]);
        // Not `run`: this is the cleanup path, which must work after an interrupt too.
        let _ = stop.stdin(std::process::Stdio::null()).output();
    }
}

/// A loopback port nobody listens on right now.
fn free_port() -> Result<u16, DemoError> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| DemoError::io(Path::new("127.0.0.1:0"), e))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| DemoError::io(Path::new("127.0.0.1:0"), e))
}

/// `n` random bytes from the kernel, as hex.
fn random_hex(n: usize) -> Result<String, DemoError> {
    use std::io::Read;
    let path = Path::new("/dev/urandom");
    let mut buf = vec![0u8; n];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut buf))
        .map_err(|e| DemoError::io(path, e))?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

fn write_private(path: &Path, text: &str) -> Result<(), DemoError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(|e| DemoError::io(path, e))
}

fn append(path: &Path, text: &str) -> Result<(), DemoError> {
    use std::io::Write;
    std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(|e| DemoError::io(path, e))
}

fn chown_postgres(path: &Path) -> Result<(), DemoError> {
    if !is_root() {
        return Ok(());
    }
    let mut c = Cmd::new("chown");
    c.args(["-R", "postgres:postgres"]).arg(path);
    run(c)?.ok("chown")
}
